"""Helpers for test_hostile.py and bench/soak.py (Python 3.11 standard library only).

- process figures of pgpilot: rss_kib(), fd_count(), nofile_limit(), ProcSampler;
- raise_nofile(): more file descriptors for this process (and so for a pgpilot it starts);
- HealthyPgbench: 16 well-behaved pgbench clients in the background, in rounds, whose
  every round must exit 0 with "number of failed transactions: 0";
- backend_rows(): what the primary's pg_stat_activity shows for an application_name;
- FakePostgres: a PostgreSQL server in Python that misbehaves on request, to stand
  behind pgpilot in place of a real backend.
"""

import os
import random
import re
import resource
import select
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import HOST, SUPERUSER, DATABASE, check, client_env

MiB = 1024  # in KiB, the unit of /proc/PID/status


# --------------------------------------------------------------------------- process figures

def rss_kib(pid):
    """VmRSS of a process in KiB (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile_limit(pid):
    """(soft, hard) 'Max open files' of a process, as strings ('unlimited' possible)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return parts[3], parts[4]
    return "?", "?"


def raise_nofile(want):
    """Raise this process's RLIMIT_NOFILE soft limit to at least `want` if it can (the hard
    limit too, as root). Children started afterwards (pgpilot) inherit it. Returns the new
    soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard == resource.RLIM_INFINITY or hard >= want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        else:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root only
            except (ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ProcSampler:
    """Samples a process's RSS (KiB) and open fds every `interval` seconds in a thread:
    .rss_peak, .fd_peak."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.rss, self.fds = [], []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.rss.append(rss_kib(self.pid))
                self.fds.append(fd_count(self.pid))
            except (OSError, RuntimeError):
                return  # the process is gone; the test will notice
            self.stop_event.wait(self.interval)

    @property
    def rss_peak(self):
        return max(self.rss, default=0)

    @property
    def fd_peak(self):
        return max(self.fds, default=0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)


def sanitizer_build(pid):
    """Why pgpilot's RSS cannot be held to the normal build's bounds in this run, or None.

    scripts/sanitize.sh exports PGPILOT_SANITIZED=1 (ASan+UBSan: freed memory sits in ASan's
    quarantine, up to 256 MB, and every allocation has redzones, so RSS neither stays near the
    baseline nor comes back); the ThreadSanitizer run exports PGPILOT_TSAN=1 (shadow memory for
    every byte touched, kept after it is freed). Without either variable, a sanitizer runtime
    mapped into the running pgpilot (GCC links them as shared libraries) says the same, for a
    ctest run by hand in build-asan/ or build-tsan/."""
    if os.environ.get("PGPILOT_SANITIZED", "") not in ("", "0"):
        return "ASan+UBSan build (PGPILOT_SANITIZED=1)"
    if os.environ.get("PGPILOT_TSAN", "") not in ("", "0"):
        return "ThreadSanitizer build (PGPILOT_TSAN=1)"
    try:
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
    except OSError:
        return None
    if "/libtsan.so" in maps:
        return "ThreadSanitizer build (libtsan mapped)"
    if "/libasan.so" in maps:
        return "ASan build (libasan mapped)"
    return None


def settle_rss(pid, seconds=1.0):
    """The median of a few RSS samples over `seconds` (less noise than one reading)."""
    samples = []
    deadline = time.monotonic() + seconds
    while True:
        samples.append(rss_kib(pid))
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    samples.sort()
    return samples[len(samples) // 2]


def wait_fds_at_most(pid, limit, timeout):
    """Wait until the process has at most `limit` open fds; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        n = fd_count(pid)
        if n <= limit or time.monotonic() >= deadline:
            return n
        time.sleep(0.1)


# --------------------------------------------------------------------------- healthy load

FAILED_ZERO = re.compile(r"^number of failed transactions: 0 ", re.M)
PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


def pgbench_init(port, scale=2):
    init = harness.pgbench(port, "-i", "-s", str(scale), "-q", timeout=120)
    check("done in" in init.stderr, f"pgbench -i did not finish:\n{init.stderr}")


def pgbench_drop(port):
    harness.pgbench(port, "-i", "-I", "d", check_exit=False)


class HealthyPgbench:
    """Well-behaved clients next to the hostile ones: `pgbench -c 16 -j 2 -T round_s ARGS`
    through pgpilot, again and again until stopped (so the load covers exactly the hostile
    part, and new healthy connections are made during it too). With `round_s=None`, one run
    of `total_s` seconds instead (clients that stay connected throughout).

    stop_and_check() waits for the current round and checks that every round exited 0,
    processed transactions and reported "number of failed transactions: 0"."""

    def __init__(self, port, args=("-S",), clients=16, jobs=2, round_s=3, total_s=None,
                 host=HOST):
        self.cmd_base = ["pgbench", "-h", host, "-p", str(port), "-U", SUPERUSER,
                         "-c", str(clients), "-j", str(jobs)] + list(args)
        self.round_s, self.total_s = round_s, total_s
        self.rounds = []  # (returncode, stdout, stderr, seconds)
        self.stop_event = threading.Event()
        self.proc = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, seconds):
        cmd = self.cmd_base + ["-T", str(seconds), DATABASE]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=client_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            err += f"\n(killed: still running {seconds + 60}s after a -T {seconds} start)"
        self.rounds.append((self.proc.returncode, out, err, time.monotonic() - t0))

    def _run(self):
        if self.round_s is None:
            self._one(self.total_s)
            return
        while not self.stop_event.is_set():
            self._one(self.round_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        if exc[0] is not None and self.proc and self.proc.poll() is None:
            self.proc.kill()
        self.thread.join(self.round_s + 90 if self.round_s else (self.total_s or 0) + 90)
        return False

    def running(self):
        return self.thread.is_alive() and self.proc is not None and self.proc.poll() is None

    def stop_and_check(self):
        """Returns (rounds, transactions) after checking that every round was clean."""
        self.stop_event.set()
        self.thread.join((self.round_s or self.total_s or 0) + 90)
        check(not self.thread.is_alive(), "pgbench did not finish")
        check(self.rounds, "pgbench never ran")
        total = 0
        for i, (code, out, err, secs) in enumerate(self.rounds):
            what = f"healthy pgbench round {i + 1}/{len(self.rounds)} ({' '.join(self.cmd_base)})"
            check(code == 0, f"{what} exited {code}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
            check(FAILED_ZERO.search(out), f"{what}: failed transactions\n{out}\n{err}")
            m = PROCESSED.search(out)
            check(m and int(m.group(1)) > 0, f"{what}: no transaction processed\n{out}\n{err}")
            total += int(m.group(1))
        return len(self.rounds), total


def write_script(workdir, text, name="select1.sql"):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------- the primary's view

_monitors = {}  # (host, port) -> harness.Connection kept open for backend_rows()


def _query_node(node, sql):
    """Rows of `sql` on `node` over a libpq connection kept open between calls. (psql, three
    processes a sample, took seconds on a busy machine: longer than the tests' waits.)"""
    key = (node["host"], node["port"])
    for attempt in (1, 2):
        try:
            conn = _monitors.get(key)
            if conn is None:
                conn = _monitors[key] = harness.Connection(
                    node["port"], host=node["host"], db="postgres",
                    application_name="pgpilot_itest_monitor")
            return conn.query(sql)
        except harness.PgError:
            stale = _monitors.pop(key, None)  # the node restarted: connect again, once
            if stale is not None:
                stale.close()
            if attempt == 2:
                raise
    return []


def backend_rows(cluster, application_name, columns="pid, state, left(query, 60)"):
    """[(pid, state, query)] of the backends with this application_name on every node (with
    load balancing a session's reads run on a standby); NULL reads as ''."""
    rows = []
    for node in cluster.nodes:
        out = _query_node(node, f"SELECT {columns} FROM pg_stat_activity "
                                f"WHERE application_name = '{application_name}'")
        rows += [tuple("" if v is None else v for v in row) for row in out]
    return rows


def all_client_backends(cluster):
    """Every client backend on every node but the monitors, as (node, application_name, state,
    wait_event, query): what a failure message shows when the backend it looked for is not
    there."""
    rows = []
    for i, node in enumerate(cluster.nodes):
        out = _query_node(node, "SELECT application_name, state, coalesce(wait_event, '-'), "
                                "left(query, 40) FROM pg_stat_activity WHERE backend_type = "
                                "'client backend' AND application_name <> 'pgpilot_itest_monitor'")
        rows += [(i,) + tuple("" if v is None else v for v in row) for row in out]
    return rows


def wait_no_busy_backend(cluster, application_name, timeout):
    """Wait until no backend with this application_name is in a state other than 'idle'
    (a session pgpilot pooled after a clean end is idle; a leftover of an abandoned query is
    'active' or 'idle in transaction'). Returns (busy rows, all rows) at the end."""
    deadline = time.monotonic() + timeout
    while True:
        rows = backend_rows(cluster, application_name)
        busy = [r for r in rows if r[1] != "idle"]
        if not busy or time.monotonic() >= deadline:
            return busy, rows
        time.sleep(0.2)


# --------------------------------------------------------------------------- raw hostile clients

def logged_in(port, timeout=10, small_window=False, **params):
    """A harness.RawConnection past startup (ReadyForQuery received)."""
    raw = (SmallWindowConnection if small_window else harness.RawConnection)(port, timeout=timeout)
    received = raw.startup(**params)
    check(received[-1][0] == b"Z", f"startup did not end with ReadyForQuery: {raw.error(received)}")
    return raw


class SmallWindowConnection(harness.RawConnection):
    """A RawConnection whose socket has tiny kernel buffers (set before connecting, so the
    advertised TCP window stays small): a client that does not read makes the server's
    writes block after a few KiB instead of after the megabytes loopback TCP buffers."""

    def __init__(self, port, host=HOST, timeout=10, buffer_bytes=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""


def read_until_closed_or(raw, seconds):
    """Messages from the server until it closes ('closed') or `seconds` pass ('open')."""
    raw.timeout = seconds
    received = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            raw.timeout = max(0.01, deadline - time.monotonic())
            received.append(raw.read_message())
    except harness.Closed:
        return "closed", received
    except harness.TestFailure:  # timeout
        return "open", received
    except (ConnectionResetError, BrokenPipeError):
        return "closed", received
    except struct.error:
        return "garbled", received
    return "open", received


def open_silent(port, count, host=HOST):
    """`count` TCP connections to pgpilot that send nothing (a slowloris)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect((host, port))
        socks.append(s)
    return socks


def closed_by_peer(sock):
    """Whether the server has closed this socket (reads and drops anything it sent first).
    Never blocks."""
    poller = select.poll()  # not select.select(): these fds may be above FD_SETSIZE
    poller.register(sock, select.POLLIN)
    while True:
        if not poller.poll(0):
            return False
        try:
            if not sock.recv(65536, socket.MSG_DONTWAIT):
                return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True


# --------------------------------------------------------------------------- a fake backend

def _msg(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def _cstr(s):
    return s.encode() + b"\0"


def row_description(name, type_oid):
    # name, table oid, column number, type oid, type size, type modifier, format code
    return _msg(b"T", struct.pack("!H", 1) + _cstr(name) + struct.pack("!IhIhih", 0, 0, type_oid, -1, -1, 0))


def data_row(*values):
    """A DataRow of text columns; None is NULL."""
    body = struct.pack("!H", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!I", len(value)) + value
    return _msg(b"D", body)


def command_complete(tag):
    return _msg(b"C", _cstr(tag))


def ready_for_query(status=b"I"):
    return _msg(b"Z", status)


class FakePostgres:
    """A PostgreSQL server in Python, enough for pgpilot and libpq: trust login, simple
    Query protocol, pgpilot's health check (`SELECT pg_is_in_recovery(), ...`) and replication
    check (`SELECT 'node', ...`) answered as a primary without standbys would, DISCARD
    ALL/ABORT answered, every other query answered with one row '1' -- except these, which
    misbehave:

        SELECT 'hostile:truncated_row'  RowDescription, then a DataRow header promising
                                         1000 bytes, 10 of them, and close
        SELECT 'hostile:random_bytes'   RowDescription, then 4 KiB of random bytes, and the
                                         connection stays open (until the peer closes it)
        SELECT 'hostile:bad_length'     RowDescription, then a DataRow with length field
                                         0xFFFFFFFF, and the connection stays open

    and a connection whose startup packet has application_name=hostile:huge_startup gets
    AuthenticationOk, then a ParameterStatus whose length says 1 GiB - 2 and
    `huge_startup_bytes` of it, then nothing.

    Each connection is served by its own thread. `events` records what happened."""

    PARAMETERS = {
        "server_version": "15.0 (fake)", "server_encoding": "UTF8", "client_encoding": "UTF8",
        "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC",
        "integer_datetimes": "on", "standard_conforming_strings": "on", "is_superuser": "on",
        "session_authorization": SUPERUSER, "application_name": "",
    }

    def __init__(self, host=HOST, seed=20240611, huge_startup_bytes=128 << 20):
        self.huge_startup_bytes = huge_startup_bytes
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(256)
        self.host, self.port = host, self.listener.getsockname()[1]
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.events = []
        self.conns = set()
        self.next_pid = 1000
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    def backend_spec(self):
        """A [[backend]] entry for pgpilot's config."""
        return {"host": self.host, "port": self.port, "weight": 1, "flag": "ALLOW_TO_FAILOVER"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.thread.join(5)

    def _event(self, what):
        with self.lock:
            self.events.append((time.monotonic(), what))

    def _accept_loop(self):
        self.listener.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _recv_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self, conn):
        try:
            self._session(conn)
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _session(self, conn):
        conn.settimeout(60)
        while True:
            (length,) = struct.unpack("!I", self._recv_exact(conn, 4))
            body = self._recv_exact(conn, length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                conn.sendall(b"N")
                continue
            if code == 80877102:  # CancelRequest
                self._event("cancel request")
                return
            break
        parts = body[4:].split(b"\0")
        params = dict(zip(parts[0::2], parts[1::2]))
        app = params.get(b"application_name", b"").decode()
        self._event(f"startup {app or '-'}")
        with self.lock:
            self.next_pid += 1
            pid = self.next_pid
        if app == "hostile:huge_startup":
            # AuthenticationOk, then a ParameterStatus whose length field says 1 GiB - 2,
            # and huge_startup_bytes of it as fast as the peer reads, then a stall.
            self._event("huge_startup")
            conn.sendall(_msg(b"R", struct.pack("!I", 0)) + b"S" + struct.pack("!I", 0x3ffffffe))
            chunk = b"x" * 65536
            for _ in range(self.huge_startup_bytes // len(chunk)):
                conn.sendall(chunk)
            self._event("huge_startup sent")
            while conn.recv(65536):
                pass
            return
        hello = _msg(b"R", struct.pack("!I", 0))
        for k, v in self.PARAMETERS.items():
            hello += _msg(b"S", _cstr(k) + _cstr(v))
        hello += _msg(b"K", struct.pack("!II", pid, 12345)) + ready_for_query()
        conn.sendall(hello)
        while True:
            tag = self._recv_exact(conn, 1)
            (length,) = struct.unpack("!I", self._recv_exact(conn, 4))
            body = self._recv_exact(conn, length - 4)
            if tag == b"X":
                return
            if tag == b"Q":
                sql = body.rstrip(b"\0").decode(errors="replace").strip().rstrip(";").strip()
                if not self._answer(conn, sql):
                    return
            elif tag == b"S":
                conn.sendall(ready_for_query())

    def _answer(self, conn, sql):
        """Answer a simple Query; False to end the connection."""
        upper = sql.upper()
        if sql.startswith("SELECT pg_is_in_recovery()"):
            # Not in recovery, WAL file on timeline 1, no walsenders.
            conn.sendall(row_description("pg_is_in_recovery", 16)
                         + data_row(b"f", b"000000010000000000000001", b"0")
                         + command_complete("SELECT 1") + ready_for_query())
        elif sql.startswith("SELECT 'node'"):
            conn.sendall(row_description("?column?", 25)
                         + data_row(b"node", b"false", b"0/1000000", None, None, b"", None)
                         + command_complete("SELECT 1") + ready_for_query())
        elif upper in ("DISCARD ALL", "ABORT", "ROLLBACK", "BEGIN", "COMMIT"):
            tag = {"ABORT": "ROLLBACK"}.get(upper, upper)
            conn.sendall(command_complete(tag) + ready_for_query())
        elif sql == "SELECT 'hostile:truncated_row'":
            self._event("truncated_row")
            row = struct.pack("!H", 1) + struct.pack("!I", 994) + b"x" * 994  # 1000-byte body
            conn.sendall(row_description("?column?", 25) + b"D" + struct.pack("!I", 1004) + row[:10])
            time.sleep(0.05)
            conn.shutdown(socket.SHUT_RDWR)
            return False
        elif sql == "SELECT 'hostile:random_bytes'":
            self._event("random_bytes")
            with self.lock:
                garbage = self.rng.randbytes(4096)
            conn.sendall(row_description("?column?", 25) + garbage)
        elif sql == "SELECT 'hostile:bad_length'":
            self._event("bad_length")
            conn.sendall(row_description("?column?", 25) + b"D" + struct.pack("!I", 0xFFFFFFFF)
                         + b"\0\1\0\0\0\1x")
        else:
            conn.sendall(row_description("?column?", 23) + data_row(b"1")
                         + command_complete("SELECT 1") + ready_for_query())
        return True


def psql_raw(port, sql, timeout, host=HOST, db=DATABASE):
    """psql -c SQL as harness.psql, but output decoded leniently: a client fed garbage may
    print bytes that are not UTF-8 (harness.run would raise). Returns (exit code, stdout,
    stderr); subprocess.TimeoutExpired when psql is still running after `timeout` s."""
    cmd = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
           "-U", SUPERUSER, "-d", db, "-c", sql]
    proc = subprocess.run(cmd, env=client_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))
