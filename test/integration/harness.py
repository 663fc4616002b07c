#!/usr/bin/python3
"""Helpers for the integration tests (Python 3.11 standard library only).

A test file defines `def test_something(env):` functions and ends with
`harness.main()`. It runs as

    test_x.py --cluster-dir DIR --pgpilot BIN [test_name ...]

(ctest runs one test function per entry). `env` gives the cluster
(pgcluster.Cluster) and `env.pgpilot(**overrides)`, a context manager that
writes a config for the cluster, starts pgpilot on a free port, waits until it
accepts, and on exit stops it with SIGTERM and checks that it exited 0. If the
block raises, the pgpilot log is printed.

PGPILOT_ITEST_DIRECT=1 points every "pgpilot" at the primary instead, to check
the tests themselves against plain PostgreSQL; tests marked @pgpilot_only are
then skipped.

Clients: psql()/pgbench() run the real programs; Connection is libpq through
ctypes; RawConnection speaks the wire protocol over a plain socket.

As a command, `harness.py write-config --cluster-dir DIR --out FILE` writes a
pgpilot config for a cluster (used by scripts/demo.sh and the benchmark).
"""

import argparse
import ctypes
import hashlib
import hmac
import base64
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgcluster import Cluster, free_port  # noqa: E402

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "postgres"
PGPILOT_READY_TIMEOUT_S = 15
PGPILOT_STOP_TIMEOUT_S = 15
SKIP_EXIT_CODE = 77  # ctest SKIP_RETURN_CODE
DIRECT = os.environ.get("PGPILOT_ITEST_DIRECT", "") not in ("", "0")


class TestFailure(AssertionError):
    pass


def check(condition, message):
    """assert that survives python -O and reads as part of the test."""
    if not condition:
        raise TestFailure(message)


def check_equal(actual, expected, what):
    if actual != expected:
        raise TestFailure(f"{what}: expected {expected!r}, got {actual!r}")


# --------------------------------------------------------------------------- pgpilot config

def default_config(cluster, port, *, primary_only=False):
    """The config the tests start from: the cluster's nodes as backends, trust auth."""
    nodes = [cluster.primary] if primary_only else cluster.nodes
    return {
        "server": {"listen_addresses": HOST, "port": port, "workers": 2, "log_level": "info"},
        # Budgets well above what the tests' clients need (the test servers allow 200
        # connections): only test_pool_limits.py is about pool_size and its waits.
        "pool": {"max_pool": 16, "connection_life_time": 0, "pool_size": 100,
                 "max_backend_connections": 150},
        "backend": [{"host": n["host"], "port": n["port"], "weight": 1, "flag": "ALLOW_TO_FAILOVER"}
                    for n in nodes],
        "auth": {"method": "trust", "backend_password": ""},
    }


def merge_config(config, overrides):
    """Overrides by section: a table (dict) is updated key by key (a key set to None is
    removed), an array of tables replaced."""
    merged = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in config.items()}
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section].update(value)
            merged[section] = {k: v for k, v in merged[section].items() if v is not None}
        else:
            merged[section] = value
    return merged


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(config):
    """Tables as [name], lists of tables as [[name]]; inside a table, a list of dicts is an
    array of tables [[name.key]]."""
    out = []
    for section, value in config.items():
        for table in (value if isinstance(value, list) else [value]):
            out.append(f"[[{section}]]" if isinstance(value, list) else f"[{section}]")
            nested = {k: v for k, v in table.items()
                      if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
            out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in nested]
            out.append("")
            for key, tables in nested.items():
                for sub in tables:
                    out.append(f"[[{section}.{key}]]")
                    out += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
                    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- pgpilot process

def _die_with_parent():
    """preexec_fn: the kernel kills pgpilot if the test process dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def wait_for_port(port, host=HOST, timeout=PGPILOT_READY_TIMEOUT_S, alive=lambda: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Pgpilot:
    """One pgpilot process for the duration of a `with` block."""

    def __init__(self, binary, cluster, overrides, workdir, unix_socket=False, primary_only=False,
                 args=()):
        self.binary = binary
        self.args = list(args)
        self.cluster = cluster
        self.port = free_port()
        self.host = HOST
        self.workdir = workdir
        self.socket_dir = tempfile.mkdtemp(prefix="sock-", dir=workdir) if unix_socket else None
        config = default_config(cluster, self.port, primary_only=primary_only)
        if self.socket_dir:
            config["server"]["unix_socket_dir"] = self.socket_dir
        self.config = merge_config(config, overrides)
        self.config_path = os.path.join(workdir, f"pgpilot-{self.port}.toml")
        self.log_path = os.path.join(workdir, f"pgpilot-{self.port}.log")
        self.proc = None
        self.exit_code = None
        with open(self.config_path, "w") as f:
            f.write(to_toml(self.config))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop(check_exit=exc_type is None)
        except BaseException:
            self.print_log()
            raise
        if exc_type is not None:
            print_failure(exc)
            self.print_log()
        return False

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([self.binary, "-f", self.config_path] + self.args,
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        if not wait_for_port(self.port, alive=lambda: self.proc.poll() is None):
            code = self.proc.poll()
            self.stop(check_exit=False)
            self.print_log()
            raise TestFailure(f"pgpilot did not accept connections on port {self.port} "
                              f"within {PGPILOT_READY_TIMEOUT_S}s (exit code {code})")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=PGPILOT_STOP_TIMEOUT_S):
        """SIGTERM and wait; returns the exit code (SIGKILL and None after timeout)."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_code = None
        self.proc = None
        return self.exit_code

    def stop(self, check_exit=True):
        if self.proc is None:
            return  # never started, or the test already terminated it and checked the exit code
        was_running = self.alive()
        code = self.terminate()
        if check_exit:
            check(was_running, f"pgpilot died during the test (exit code {code})")
            check(code is not None, f"pgpilot did not exit within {PGPILOT_STOP_TIMEOUT_S}s of SIGTERM")
            check_equal(code, 0, "pgpilot exit code after SIGTERM")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def print_log(self, max_chars=20000):
        text = self.log()
        print(f"----- pgpilot log ({self.log_path}) -----")
        print(text[-max_chars:] if text else "(empty)")
        print("----- config -----")
        print(to_toml(self.config))
        print("----- end of pgpilot log -----", flush=True)


def print_failure(exc):
    """Names the failure before a process log is printed: CI shows the head and the tail of a
    long output, and the traceback at the end may be cut off with the middle."""
    if exc is not None:
        print(f"----- the test failed: {type(exc).__name__}: {exc} -----", flush=True)


def ha_watch_binary(pgpilot_binary):
    """PGPILOT_HA_WATCH (set by ctest), else next to the build's test binaries."""
    path = os.environ.get("PGPILOT_HA_WATCH")
    if path:
        return path
    build = os.path.dirname(os.path.dirname(os.path.abspath(pgpilot_binary)))
    return os.path.join(build, "test", "pgpilot_ha_watch")


class HaWatch:
    """pgpilot_ha_watch for the duration of a `with` block: the node registry pgpilot would
    build from the same config, without the proxy. snapshot() returns the registry's current
    cluster_snapshot as a dict; check() and detect() call request_replication_check() and
    request_detect()."""

    def __init__(self, pgpilot_binary, cluster, overrides, workdir, args=()):
        self.binary = ha_watch_binary(pgpilot_binary)
        self.args = list(args)
        self.config = merge_config(default_config(cluster, free_port()), overrides)
        fd, self.config_path = tempfile.mkstemp(prefix="ha-watch-", suffix=".toml", dir=workdir)
        with os.fdopen(fd, "w") as f:
            f.write(to_toml(self.config))
        self.log_path = self.config_path[:-len(".toml")] + ".log"
        self.proc = None

    def __enter__(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([self.binary, "-f", self.config_path] + self.args,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=log, text=True, preexec_fn=_die_with_parent)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            code = self.proc.wait(PGPILOT_STOP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            code = None
        if exc_type is not None or code != 0:
            print_failure(exc)
            print(f"----- pgpilot_ha_watch log (exit code {code}) -----")
            print(self.log()[-20000:])
            print("----- end of pgpilot_ha_watch log -----", flush=True)
        if exc_type is None:
            check_equal(code, 0, "pgpilot_ha_watch exit code")
        return False

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def command(self, line):
        """Sends one command line; returns the answer line."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        check(answer, f"pgpilot_ha_watch exited (command {line!r})")
        return answer

    def snapshot(self):
        return json.loads(self.command("snapshot"))

    def check(self):
        check_equal(self.command("check").strip(), "ok", "answer to check")

    def detect(self):
        check_equal(self.command("detect").strip(), "ok", "answer to detect")

    def wait_for_log(self, text, timeout=10):
        """Waits until the log contains `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise TestFailure(f"not in the log within {timeout}s: {text!r}")
            time.sleep(0.02)

    def wait_for(self, what, predicate, timeout=10, interval=0.02):
        """Polls snapshot() until predicate(snapshot) is true; returns that snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if predicate(snap):
                return snap
            if time.monotonic() > deadline:
                raise TestFailure(f"not within {timeout}s: {what}; last snapshot: {snap}")
            time.sleep(interval)


class Direct:
    """Stands in for Pgpilot in direct mode: the 'proxy' is the primary itself."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.host = HOST
        self.port = cluster.primary["port"]
        self.socket_dir = cluster.socket_dir
        self.log_path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def alive(self):
        return True

    def log(self):
        return ""

    def print_log(self):
        pass


class TestEnv:
    def __init__(self, cluster, pgpilot_binary, workdir):
        self.cluster = cluster
        self.pgpilot_binary = pgpilot_binary
        self.workdir = workdir
        self.direct = DIRECT

    @property
    def primary_port(self):
        return self.cluster.primary["port"]

    def pgpilot(self, unix_socket=False, primary_only=False, cluster=None, args=(), **overrides):
        """pgpilot in front of the cluster (or `cluster`, e.g. a private one); overrides per
        config section, e.g. server={"workers": 1}; `args` are extra command-line arguments."""
        if self.direct:
            return Direct(cluster or self.cluster)
        return Pgpilot(self.pgpilot_binary, cluster or self.cluster, overrides, self.workdir,
                       unix_socket=unix_socket, primary_only=primary_only, args=args)

    def private_cluster(self, standbys=2):
        """A cluster of this test's own (a primary and `standbys` streaming standbys), for tests
        that kill or promote nodes; stopped and removed when the `with` block ends."""
        self._clusters = getattr(self, "_clusters", 0) + 1
        return Cluster.start(os.path.join(self.workdir, f"cluster-{self._clusters}"),
                             standbys=standbys)

    def ha_watch(self, cluster=None, args=(), **overrides):
        """pgpilot's node registry alone (test/tools/ha_watch.cpp) for the cluster, with the
        config pgpilot would get; see HaWatch."""
        return HaWatch(self.pgpilot_binary, cluster or self.cluster, overrides, self.workdir,
                       args=args)

    def write_config(self, text, name="pgpilot.toml"):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


# --------------------------------------------------------------------------- command-line clients

def client_env(password=None, **extra):
    """The environment for psql/pgbench/node: no inherited PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    if password is not None:
        env["PGPASSWORD"] = password
    env.update(extra)
    return env


def run(cmd, *, check_exit=True, input=None, env=None, timeout=60, cwd=None):
    # errors="replace": a server message in another encoding must not crash the test.
    proc = subprocess.run(cmd, input=input, env=env or client_env(), capture_output=True, text=True,
                          errors="replace", timeout=timeout, cwd=cwd)
    if check_exit and proc.returncode != 0:
        raise TestFailure(f"{' '.join(cmd)} exited {proc.returncode}\n"
                          f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


def psql(port, sql=None, *, host=HOST, user=SUPERUSER, db=DATABASE, args=(), password=None,
         check_exit=True, input=None, timeout=60):
    """psql as the OS root user, logging in as `user`; ON_ERROR_STOP unless args say otherwise."""
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port), "-U", user, "-d", db]
    cmd += list(args)
    if sql is not None:
        cmd += ["-c", sql]
    return run(cmd, check_exit=check_exit, input=input, env=client_env(password), timeout=timeout)


def psql_value(port, sql, **kw):
    """The single value a query returns, as text."""
    return psql(port, sql, args=["-A", "-t", "-q"], **kw).stdout.strip()


def pgbench(port, *args, host=HOST, timeout=120, check_exit=True, env=None):
    """pgbench against pgpilot or a server; `env` adds variables (PGAPPNAME, ...)."""
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", SUPERUSER] + list(args) + [DATABASE]
    return run(cmd, check_exit=check_exit, timeout=timeout,
               env={**client_env(), **env} if env else None)


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it is true; TestFailure naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestFailure(f"not within {timeout}s: {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- libpq via ctypes

class _PGnotify(ctypes.Structure):
    _fields_ = [("relname", ctypes.c_char_p), ("be_pid", ctypes.c_int),
                ("extra", ctypes.c_char_p), ("next", ctypes.c_void_p)]


def _load_libpq():
    lib = ctypes.CDLL("libpq.so.5")
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures = {
        "PQconnectdb": ([S], P), "PQstatus": ([P], I), "PQerrorMessage": ([P], S),
        "PQfinish": ([P], None), "PQbackendPID": ([P], I), "PQsocket": ([P], I),
        "PQexec": ([P, S], P), "PQresultStatus": ([P], I), "PQresultErrorField": ([P, I], S),
        "PQresultErrorMessage": ([P], S), "PQntuples": ([P], I), "PQnfields": ([P], I),
        "PQgetvalue": ([P, I, I], S), "PQgetisnull": ([P, I, I], I), "PQclear": ([P], None),
        "PQsendQuery": ([P, S], I), "PQgetResult": ([P], P), "PQisBusy": ([P], I),
        "PQconsumeInput": ([P], I), "PQnotifies": ([P], ctypes.POINTER(_PGnotify)),
        "PQfreemem": ([P], None), "PQgetCancel": ([P], P), "PQfreeCancel": ([P], None),
        "PQcancel": ([P, S, I], I), "PQfname": ([P, I], S), "PQparameterStatus": ([P, S], S),
        "PQprepare": ([P, S, S, I, P], P),
        "PQexecPrepared": ([P, S, I, ctypes.POINTER(S), P, P, I], P),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    return lib


libpq = _load_libpq()
CONNECTION_OK = 0
PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_FATAL_ERROR = 1, 2, 7
PG_DIAG_SQLSTATE = ord("C")


def _text(b):
    return None if b is None else b.decode("utf-8", "replace")


class PgError(Exception):
    def __init__(self, message, sqlstate=None):
        super().__init__(f"{message.strip()} (SQLSTATE {sqlstate})")
        self.message = message
        self.sqlstate = sqlstate


class Result:
    """A PGresult copied into Python: status, sqlstate/error for errors, rows as text or None."""

    def __init__(self, res):
        self.status = libpq.PQresultStatus(res)
        self.sqlstate = _text(libpq.PQresultErrorField(res, PG_DIAG_SQLSTATE))
        self.error = _text(libpq.PQresultErrorMessage(res)) or ""
        self.rows = [tuple(None if libpq.PQgetisnull(res, r, c) else _text(libpq.PQgetvalue(res, r, c))
                           for c in range(libpq.PQnfields(res)))
                     for r in range(libpq.PQntuples(res))]
        self.columns = [_text(libpq.PQfname(res, c)) for c in range(libpq.PQnfields(res))]

    @property
    def ok(self):
        return self.status in (PGRES_COMMAND_OK, PGRES_TUPLES_OK)

    def raise_if_error(self):
        if not self.ok:
            raise PgError(self.error or f"result status {self.status}", self.sqlstate)
        return self


def conninfo(port, host=HOST, user=SUPERUSER, db=DATABASE, **params):
    parts = {"host": host, "port": port, "user": user, "dbname": db, "connect_timeout": 10, **params}
    return " ".join(f"{k}='{v}'" for k, v in parts.items())


class Connection:
    """A libpq connection, used the way an application uses libpq."""

    def __init__(self, port, host=HOST, user=SUPERUSER, db=DATABASE, **params):
        self.conn = libpq.PQconnectdb(conninfo(port, host, user, db, **params).encode())
        if libpq.PQstatus(self.conn) != CONNECTION_OK:
            message = self.error_message()
            self.close()
            raise PgError(f"connection failed: {message}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.conn:
            libpq.PQfinish(self.conn)
            self.conn = None

    def error_message(self):
        return _text(libpq.PQerrorMessage(self.conn)) or ""

    def execute(self, sql):
        """PQexec: the last result of the query string, errors included (never raises)."""
        return self._result(libpq.PQexec(self.conn, sql.encode()))

    def _result(self, res):
        if not res:
            raise PgError(f"libpq returned no result: {self.error_message()}")
        try:
            return Result(res)
        finally:
            libpq.PQclear(res)

    def prepare(self, name, sql):
        """PQprepare (protocol-level Parse + Sync); raises PgError on an error."""
        self._result(libpq.PQprepare(self.conn, name.encode(), sql.encode(), 0, None)).raise_if_error()

    def execute_prepared(self, name, params):
        """PQexecPrepared with text parameters: the first value of the result."""
        values = (ctypes.c_char_p * len(params))(*[p.encode() for p in params])
        res = libpq.PQexecPrepared(self.conn, name.encode(), len(params), values, None, None, 0)
        return self._result(res).raise_if_error().rows[0][0]

    def query(self, sql):
        """Rows of the last result; raises PgError on an error."""
        return self.execute(sql).raise_if_error().rows

    def scalar(self, sql):
        return self.query(sql)[0][0]

    @property
    def backend_pid(self):
        """PQbackendPID: the pid from BackendKeyData (pgpilot's own, through pgpilot)."""
        return libpq.PQbackendPID(self.conn)

    def parameter_status(self, name):
        """PQparameterStatus: what the last ParameterStatus for `name` said (None: none came)."""
        return _text(libpq.PQparameterStatus(self.conn, name.encode()))

    def send_query(self, sql):
        if not libpq.PQsendQuery(self.conn, sql.encode()):
            raise PgError(f"PQsendQuery failed: {self.error_message()}")

    def _wait_readable(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # poll, not select: tests may hold more than FD_SETSIZE descriptors.
        poller = select.poll()
        poller.register(libpq.PQsocket(self.conn), select.POLLIN)
        readable = poller.poll(remaining * 1000)
        if readable and not libpq.PQconsumeInput(self.conn):
            raise PgError(f"PQconsumeInput failed: {self.error_message()}")
        return True

    def wait_result(self, timeout):
        """After send_query: the query's (last) result, or TestFailure after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            while libpq.PQisBusy(self.conn):
                if not self._wait_readable(deadline):
                    raise TestFailure(f"no result within {timeout}s")
            res = libpq.PQgetResult(self.conn)
            if not res:
                if last is None:
                    raise PgError(f"no result: {self.error_message()}")
                return last
            last = Result(res)
            libpq.PQclear(res)

    def cancel(self):
        """PQcancel: a CancelRequest on a new connection with this session's key."""
        handle = libpq.PQgetCancel(self.conn)
        check(handle, "PQgetCancel returned NULL")
        errbuf = ctypes.create_string_buffer(256)
        try:
            ok = libpq.PQcancel(handle, errbuf, len(errbuf))
        finally:
            libpq.PQfreeCancel(handle)
        check(ok, f"PQcancel failed: {errbuf.value.decode(errors='replace')}")

    def notifications(self, timeout):
        """Wait up to `timeout` seconds for notifications: [(channel, sender pid, payload)]."""
        deadline = time.monotonic() + timeout
        received = []
        while True:
            libpq.PQconsumeInput(self.conn)
            while True:
                p = libpq.PQnotifies(self.conn)
                if not p:
                    break
                n = p.contents
                received.append((_text(n.relname), n.be_pid, _text(n.extra)))
                libpq.PQfreemem(p)
            if received or not self._wait_readable(deadline):
                return received


def next_query_error(conn):
    """(sqlstate or None, text) of the error the client's next query meets after the server
    ended the session (libpq reads the pending FATAL, or reports the lost connection)."""
    try:
        result = conn.execute("SELECT 1")
    except PgError as e:  # no PGresult at all: only the connection's error message
        return None, str(e)
    check(not result.ok, "a query on a session the server had ended succeeded")
    return result.sqlstate, result.error + conn.error_message()


def expect_error(conn, sql, sqlstate):
    """Run SQL that must fail with `sqlstate`; returns the Result."""
    result = conn.execute(sql)
    check(not result.ok, f"{sql!r} succeeded, expected SQLSTATE {sqlstate}")
    check_equal(result.sqlstate, sqlstate, f"SQLSTATE of {sql!r} ({result.error.strip()})")
    return result


# --------------------------------------------------------------------------- raw protocol

PROTOCOL_3_0 = (3, 0)
CANCEL_REQUEST_CODE = 80877102
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12


def startup_packet(params, version=PROTOCOL_3_0):
    """StartupMessage: length, protocol major.minor, name/value pairs, terminator."""
    body = struct.pack("!HH", *version)
    body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, key)


def message(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def error_fields(body):
    """ErrorResponse/NoticeResponse body -> {field code: value}, e.g. {'C': '08P01', 'M': ...}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class Closed(Exception):
    """The server closed the connection."""


class RawConnection:
    """The PostgreSQL wire protocol over a plain socket, for what libpq would not send."""

    def __init__(self, port, host=HOST, timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestFailure(f"nothing from the server within {self.timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TestFailure(f"nothing from the server within {self.timeout}s") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(f"connection closed ({len(self.buf)} bytes pending)")
            self.buf += chunk

    def _take(self, n):
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_message(self):
        """(tag, body) of the next message; raises Closed on EOF, TestFailure on timeout."""
        deadline = time.monotonic() + self.timeout
        self._fill(5, deadline)
        tag = self.buf[:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        if tag == b"E" and length > 0x00FFFFFF:
            # Not a length: a protocol-2 error ("E" + text + NUL), as PostgreSQL
            # sends to a client that asked for protocol 2.0.
            while b"\0" not in self.buf[1:]:
                self._fill(len(self.buf) + 1, deadline)
            text = self._take(self.buf.index(b"\0", 1) + 1)[1:-1]
            return b"E2", text
        self._fill(1 + length, deadline)
        self._take(5)
        return tag, self._take(length - 4)

    def read_until_closed(self):
        """Every message until the server closes: [(tag, body)]."""
        received = []
        try:
            while True:
                received.append(self.read_message())
        except Closed:
            return received

    def expect_closed(self, allowed_error_sqlstates):
        """The server must close the connection within the timeout, optionally sending an
        ErrorResponse first whose SQLSTATE is one of `allowed_error_sqlstates`."""
        for tag, body in self.read_until_closed():
            check_equal(tag, b"E", "message before the close")
            sqlstate = error_fields(body).get("C")
            check(sqlstate in allowed_error_sqlstates,
                  f"ErrorResponse SQLSTATE {sqlstate} not in {allowed_error_sqlstates}: {error_fields(body)}")

    def startup(self, user=SUPERUSER, database=DATABASE, password=None, version=PROTOCOL_3_0, **params):
        """Send a StartupMessage, answer authentication requests, and read up to
        ReadyForQuery or an ErrorResponse. Returns every message received."""
        args = ({"user": user} if user else {}) | ({"database": database} if database else {}) | params
        self.send(startup_packet(args, version))
        received = []
        scram = None
        while True:
            tag, body = self.read_message()
            received.append((tag, body))
            if tag in (b"Z", b"E", b"E2"):
                return received
            if tag == b"K":
                self.backend_key = struct.unpack("!II", body)
            if tag != b"R":
                continue
            (code,) = struct.unpack("!I", body[:4])
            if code == AUTH_CLEARTEXT:
                self.send(message(b"p", password.encode() + b"\0"))
            elif code == AUTH_MD5:
                self.send(message(b"p", md5_password(user, password, body[4:8]).encode() + b"\0"))
            elif code == AUTH_SASL:
                scram = ScramClient(password)
                first = scram.client_first()
                self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            elif code == AUTH_SASL_CONTINUE:
                self.send(message(b"p", scram.client_final(body[4:])))

    def error(self, received):
        """The fields of the ErrorResponse among received messages (None if there is none)."""
        for tag, body in received:
            if tag == b"E":
                return error_fields(body)
        return None


def md5_password(user, password, salt):
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


class ScramClient:
    """SCRAM-SHA-256 client side (RFC 5802/7677), enough to log in as libpq does."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18))

    def client_first(self):
        self.first_bare = b"n=,r=" + self.nonce
        return b"n,," + self.first_bare

    def client_final(self, server_first):
        attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs[b"s"]),
                                     int(attrs[b"i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = b"c=biws,r=" + attrs[b"r"]
        auth_message = self.first_bare + b"," + server_first + b"," + without_proof
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return without_proof + b",p=" + base64.b64encode(proof)


# --------------------------------------------------------------------------- background load

class QueryLoop:
    """A healthy libpq session running queries in a loop in a thread, recording any error."""

    def __init__(self, port, sql="SELECT count(*) FROM generate_series(1, 100)", expected="100"):
        self.port, self.sql, self.expected = port, sql, expected
        self.errors, self.count = [], 0
        self.stop_event = threading.Event()
        self.ran = threading.Event()  # set after each query (and when the loop ends)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with Connection(self.port) as conn:
                while not self.stop_event.is_set():
                    value = conn.scalar(self.sql)
                    if value != self.expected:
                        self.errors.append(f"got {value!r}, expected {self.expected!r}")
                    self.count += 1
                    self.ran.set()
        except Exception as e:  # noqa: BLE001 - recorded and reported by the test
            self.errors.append(repr(e))
        finally:
            self.ran.set()

    def _wait_for_a_query(self, timeout=10):
        self.ran.clear()
        self.ran.wait(timeout)
        check(not self.errors, f"the concurrent session saw errors: {self.errors}")
        check(self.thread.is_alive(), "the concurrent session stopped")

    def __enter__(self):
        self.thread.start()
        self._wait_for_a_query()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)

    def check_healthy(self):
        """No error so far, and the session still completes queries."""
        before = self.count
        self._wait_for_a_query()
        check(self.count > before, "the concurrent session completed no query")


# --------------------------------------------------------------------------- runner

def pgpilot_only(fn):
    """The test checks pgpilot's own behaviour: skipped in direct mode."""
    fn.pgpilot_only = True
    return fn


def _tests_in(module):
    return {name: fn for name, fn in vars(module).items() if name.startswith("test_") and callable(fn)}


class _TerminatedByRunner(BaseException):
    pass


def _raise_terminated(signum, frame):
    raise _TerminatedByRunner(f"signal {signum}")


def main():
    """Entry point of a test file: run the named test functions (default: all)."""
    module = sys.modules["__main__"]
    tests = _tests_in(module)
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--cluster-dir", required=True, help="where pgcluster.py start wrote cluster.json")
    parser.add_argument("--pgpilot", default="build/proxy/pgpilot", help="the pgpilot binary")
    parser.add_argument("tests", nargs="*", help=f"default: all of {', '.join(tests)}")
    args = parser.parse_args()
    # A ctest timeout or Ctrl-C: unwind so that the `with` blocks stop pgpilot.
    signal.signal(signal.SIGTERM, _raise_terminated)

    selected = args.tests or list(tests)
    unknown = [t for t in selected if t not in tests]
    if unknown:
        parser.error(f"unknown tests: {unknown}")
    binary = os.path.abspath(args.pgpilot)
    if not DIRECT and not os.access(binary, os.X_OK):
        print(f"pgpilot binary not found: {binary} (build it, or set PGPILOT_ITEST_DIRECT=1)")
        return 1
    cluster = Cluster.load(args.cluster_dir)
    passed, failed, skipped = 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="pgpilot-itest-") as workdir:
        os.chmod(workdir, 0o755)
        for name in selected:
            fn = tests[name]
            if DIRECT and getattr(fn, "pgpilot_only", False):
                print(f"SKIP {name} (pgpilot only; PGPILOT_ITEST_DIRECT is set)")
                skipped += 1
                continue
            print(f"=== {name}" + (" (direct to the primary)" if DIRECT else ""), flush=True)
            t0 = time.monotonic()
            # A directory per test: configs, logs, status files and private clusters of one
            # test never meet another's.
            test_dir = os.path.join(workdir, name)
            os.mkdir(test_dir)
            os.chmod(test_dir, 0o755)
            try:
                fn(TestEnv(cluster, binary, test_dir))
                _check_shared_cluster_roles(cluster, name)
            except Exception:  # noqa: BLE001 - every failure is reported the same way
                traceback.print_exc(file=sys.stdout)
                print(f"FAIL {name} ({time.monotonic() - t0:.1f}s)", flush=True)
                failed += 1
            else:
                print(f"PASS {name} ({time.monotonic() - t0:.1f}s)", flush=True)
                passed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    if failed:
        return 1
    return SKIP_EXIT_CODE if skipped and not passed else 0


def _check_shared_cluster_roles(cluster, test):
    """Every test shares one cluster; a pgpilot that failed over on it (a standby promoted)
    would break every later test. Fail the test that did it, by name."""
    for i, node in enumerate(cluster.nodes):
        in_recovery = psql_value(node["port"], "SELECT pg_is_in_recovery()")
        if in_recovery != ("f" if i == 0 else "t"):
            raise TestFailure(f"{test} left the shared cluster broken: node {i} "
                              f"pg_is_in_recovery() = {in_recovery!r}")


def _write_config_command(argv):
    parser = argparse.ArgumentParser(prog="harness.py write-config",
                                     description="Write a pgpilot config for a pgcluster.py cluster; prints the port.")
    parser.add_argument("--cluster-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-pool", type=int, default=16)
    parser.add_argument("--primary-only", action="store_true", help="no standbys as backends")
    parser.add_argument("--admin", action="store_true",
                        help="also the HTTP admin endpoint on a free port (printed after the port)")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    overrides = {"server": {"workers": args.workers}, "pool": {"max_pool": args.max_pool}}
    if args.admin:
        overrides["admin"] = {"port": free_port()}
    config = merge_config(default_config(Cluster.load(args.cluster_dir), port, primary_only=args.primary_only),
                          overrides)
    with open(args.out, "w") as f:
        f.write(to_toml(config))
    print(f"{port} {config['admin']['port']}" if args.admin else port)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["write-config"]:
        sys.exit(_write_config_command(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)
