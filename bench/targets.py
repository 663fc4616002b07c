#!/usr/bin/python3
"""What the benchmarks run against, and how they measure it (Python 3.11 standard library only).

Targets, each a context manager with a `port` (clients connect to 127.0.0.1:port):

- `Direct`: the primary itself.
- `PgpilotTarget`: the pgpilot binary (harness.Pgpilot), optionally with a `[load_balance]`
  table; `PgpilotTarget.check()` runs `pgpilot --check` first, so a build that does not know
  a table is reported as unsupported instead of failing the run.
- `Pgbouncer`: Debian's pgbouncer, as the postgres OS user, with an ini generated in a
  temporary directory, pointing at the primary.
- `Pgpool`: Debian's pgpool-II in the foreground (`pgpool -n`), as the postgres OS user, with a
  pgpool.conf generated in a temporary directory: streaming-replication mode, every node of the
  cluster as a backend. Never the system service.

Pgbouncer and Pgpool run in a process group of their own; stopping them signals the main
process, waits, then SIGKILLs whatever is left of that group (pgpool's children). They also
get SIGKILL from the kernel if the benchmark process dies (PR_SET_PDEATHSIG).

Measuring: `run_pgbench` (TPS of one pgbench run; `run_pgbench_counted` also its transactions),
`process_cpu` (a process's user and system time), `xact_commits` (pg_stat_database per node),
`pool_nodes` (SHOW POOL_NODES through a pooler), `proc_status` (VmRSS and friends of a process),
`machine_info`, `package_versions`, `wait_for_load` (wait for a quieter machine).

`run_main`: the benchmark scripts' `if __name__ == "__main__"` (Ctrl-C exits 130).
"""

import contextlib
import ctypes
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
from harness import HOST, SUPERUSER, Pgpilot, client_env  # noqa: E402
from pgcluster import free_port  # noqa: E402

OS_USER = "postgres"
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
PGBOUNCER_BIN = "/usr/sbin/pgbouncer"
PGPOOL_BIN = "/usr/sbin/pgpool"
# Debian packages behind each target, for install and for the report.
PACKAGES = {"pgbouncer": ["pgbouncer"], "pgpool": ["pgpool2"]}
REPORTED_PACKAGES = ["postgresql-15", "postgresql-client-15", "pgbouncer", "pgpool2"]


class BenchError(RuntimeError):
    pass


class Unsupported(BenchError):
    """The target cannot run this workload with this build (reported, not fatal)."""


# --------------------------------------------------------------------------- packages, machine

def dpkg_version(package):
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", package],
                          capture_output=True, text=True)
    status, _, version = proc.stdout.partition(" ")
    return version if proc.returncode == 0 and status == "installed" else None


def ensure_packages(packages):
    """apt-get install the Debian packages that are missing (like scripts/deps.sh)."""
    missing = [p for p in packages if dpkg_version(p) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(f"missing packages {missing} (run as root to install them)")
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=True)
        proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"apt-get install {' '.join(missing)} failed:\n{proc.stdout}{proc.stderr}")


def package_versions():
    return {p: dpkg_version(p) or "not installed" for p in REPORTED_PACKAGES}


def machine_info():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": mem_gib, "kernel": os.uname().release}


def proc_status(pid, keys=("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")):
    """{key: value} from /proc/PID/status; memory sizes in bytes (the file gives kB)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in keys:
                parts = value.split()
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def connections_to(pid, port):
    """Established TCP connections of process pid to `port` (e.g. a pooler's server
    connections to PostgreSQL): its socket inodes (/proc/PID/fd) matched against
    /proc/net/tcp and tcp6. None when the process is gone."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    except OSError:
        return None
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                fields = line.split()
                # sl local_address rem_address st ... inode (field 9); state 01 = ESTABLISHED
                if (len(fields) > 9 and fields[3] == "01" and fields[9] in inodes
                        and int(fields[2].rsplit(":", 1)[1], 16) == port):
                    count += 1
    return count


def wait_for_load(max_load, interval=120, max_wait=1500, log=print):
    """Before a measurement: while the 1-minute load average is above max_load, sleep
    `interval` seconds and look again, for at most max_wait seconds. Returns the 1-minute
    loads seen, as [(seconds since the first look, load)]; the last one is where it stopped.
    max_load None or <= 0: look once, never wait."""
    start = time.monotonic()
    seen = []
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - start
        seen.append((waited, load))
        if not max_load or max_load <= 0 or load <= max_load:
            return seen
        if waited + interval > max_wait:
            log(f"1-minute load {load:.2f} is still above {max_load:g} after {waited:.0f} s: going on anyway")
            return seen
        log(f"1-minute load {load:.2f} is above {max_load:g}: waiting {interval:g} s "
            f"({waited:.0f} of at most {max_wait:g} s waited)")
        time.sleep(interval)


def describe_load_wait(seen, max_load):
    """One sentence for a report from wait_for_load's list."""
    loads = ", ".join(f"{l:.2f}" for _, l in seen)
    if not max_load or max_load <= 0:
        return f"1-minute load average before the runs: {loads} (no waiting asked for)."
    waited = seen[-1][0]
    if seen[-1][1] <= max_load:
        return (f"1-minute load average checked before the runs (wait while above {max_load:g}): "
                f"{loads}; started after {waited / 60:.0f} min.")
    return (f"1-minute load average checked before the runs (wait while above {max_load:g}): {loads}; "
            f"**still above after {waited / 60:.0f} min, measured anyway**.")


def run_main(main):
    """A benchmark script's entry point: main(); a KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP
    that the script turned into one) has stopped everything on its way out: say so, exit 130."""
    try:
        main()
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}): everything started was stopped", file=sys.stderr)
        sys.exit(130)


def git_revision(repo=REPO):
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        rev = git("rev-parse", "--short", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return f"{rev}{' (uncommitted changes)' if dirty else ''} on {branch}"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------------- clients

def psql_rows(port, sql, db, host=HOST, timeout=30):
    """Rows of a query as dicts (column name -> text), through psql over TCP."""
    cmd = ["psql", "-X", "-q", "-A", "-F", "\x1f", "-P", "footer=off", "-v", "ON_ERROR_STOP=1",
           "-h", host, "-p", str(port), "-U", SUPERUSER, "-d", db, "-c", sql]
    proc = subprocess.run(cmd, env=client_env(), capture_output=True, text=True, errors="replace",
                          timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"{sql!r} on port {port}: {proc.stderr.strip() or proc.stdout.strip()}")
    lines = proc.stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split("\x1f")
    return [dict(zip(header, line.split("\x1f"))) for line in lines[1:]]


def run_pgbench(port, db, clients, threads, duration, extra, host=HOST, select_only=True):
    """TPS of `pgbench -S -c clients -j threads -T duration [extra]` (without -S when
    select_only is false: pgbench's built-in TPC-B-like script); BenchError on any failure."""
    return run_pgbench_counted(port, db, clients, threads, duration, extra, host, select_only)[0]


def run_pgbench_counted(port, db, clients, threads, duration, extra, host=HOST, select_only=True,
                        transactions=None, timeout=None):
    """run_pgbench(), returning (TPS, transactions processed). With `transactions`, each client
    runs that many (-t) instead of running for `duration` seconds (-T); `timeout` defaults to
    duration + 120 s."""
    length = ["-t", str(transactions)] if transactions is not None else ["-T", str(duration)]
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", SUPERUSER, *(["-S"] if select_only else []),
           "-c", str(clients), "-j", str(threads), *length, *extra, db]
    timeout = timeout if timeout is not None else duration + 120
    try:
        proc = subprocess.run(cmd, env=client_env(), capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"pgbench did not finish within {timeout}s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BenchError(f"pgbench exited {proc.returncode}:\n{out[-2000:]}")
    m = re.search(r"^tps = ([\d.]+)", out, re.M)
    if not m:
        raise BenchError(f"no tps in pgbench output:\n{out[-2000:]}")
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if failed and failed.group(1) != "0":
        raise BenchError(f"pgbench reported failed transactions:\n{out[-2000:]}")
    done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    return float(m.group(1)), int(done.group(1)) if done else None


def machine_text(machine):
    """machine_info() for a report: "2 cores (AMD EPYC), 24 GiB, Linux 6.1.0"."""
    m = machine
    return f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, Linux {m['kernel']}"


def packages_text(packages):
    """package_versions() for a report: "postgresql-15 15.18-0+deb12u1, pgbouncer 1.18.0-1"."""
    return ", ".join(f"{p} {v}" for p, v in packages.items())


def run_init(port, db, scale, host=HOST):
    """pgbench -i -s scale -q db."""
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", SUPERUSER, "-i", "-s", str(scale), "-q", db]
    proc = subprocess.run(cmd, env=client_env(), capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise BenchError(f"pgbench -i exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


# --------------------------------------------------------------------------- per-node statistics

def xact_commits(cluster, db):
    """{node name: pg_stat_database.xact_commit of db} on every node of the cluster.

    A backend flushes its counters at most once a second while busy and, when it goes idle
    with counters pending, within PGSTAT_IDLE_INTERVAL (10 s, PostgreSQL 15); a pooler keeps
    its backends, so wait that long after a run before reading the counters again."""
    out = {}
    for node in cluster.nodes:
        value = cluster.psql(node, f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'").strip()
        out[node["name"]] = int(value or 0)
    return out


def pool_nodes(port, db, cluster):
    """{node name: select_cnt} from SHOW POOL_NODES through a pooler at port; None when the
    pooler does not answer it (or answers without select_cnt). Also {node name: status}."""
    try:
        rows = psql_rows(port, "SHOW POOL_NODES", db)
    except (BenchError, subprocess.TimeoutExpired):
        return None, None
    by_address = {(n["host"], str(n["port"])): n["name"] for n in cluster.nodes}
    counts, status = {}, {}
    for row in rows:
        name = by_address.get((row.get("hostname"), row.get("port")))
        if name is None or "select_cnt" not in row:
            return None, None
        try:
            counts[name] = int(row["select_cnt"])
        except ValueError:
            return None, None
        status[name] = row.get("status", "?")
    return (counts, status) if counts else (None, None)


def wait_replayed(cluster, timeout=120):
    """Wait until every standby has replayed everything the primary has written so far."""
    lsn = cluster.psql(cluster.primary, "SELECT pg_current_wal_lsn()").strip()
    deadline = time.monotonic() + timeout
    for node in cluster.standbys:
        while True:
            caught_up = cluster.psql(node, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn").strip()
            if caught_up == "t":
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{node['name']} did not replay up to {lsn} within {timeout}s")
            time.sleep(0.2)


# --------------------------------------------------------------------------- CPU accounting

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (fields[0] is field 3, the state;
    the name may hold spaces and parentheses); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _proc_table():
    """{pid: (ppid, utime + stime + cutime + cstime in ticks, state)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
            table[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]), fields[0])
    return table


def process_cpu(pid):
    """(user, system) seconds one process (all its threads) has used so far; None if gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)


class CpuMeter:
    """How much CPU the benchmark's own processes used during an interval, and how much the
    rest of the machine used.

    Ours: this process and its descendants (pgbench, psql, pgpilot, the poolers) and the
    PostgreSQL servers with their backends (pg_ctl daemonizes the postmasters, so they are
    given as extra roots). Each counts utime + stime + cutime + cstime, so a process that
    exits during the interval is still counted, through its parent's cutime once reaped.
    Machine: /proc/stat. Process time is user + nice + system; irq + softirq are kept apart
    (with IRQ time accounting, as on the development VM, they are not charged to any process,
    and loopback networking, much of it the benchmark's own, is softirq time)."""

    def __init__(self, roots_fn):
        self.roots_fn = roots_fn  # called at each snapshot: pids whose process trees are ours

    def _tree(self):
        table = _proc_table()
        children = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        seen, todo = set(), [r for r in self.roots_fn() if r in table]
        while todo:
            pid = todo.pop()
            if pid not in seen:
                seen.add(pid)
                todo += children.get(pid, [])
        return {p: table[p] for p in seen}

    def _ours(self):
        return sum(ticks for _, ticks, _ in self._tree().values())

    def settle(self, timeout=3.0):
        """Wait until no process of ours is exiting: a process reaped between the listing of
        /proc and the reading of its parent's cutime would be lost (or counted twice). Call it
        before the snapshot that ends a run, e.g. after pgbench closed 16 direct connections."""
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            tree = self._tree()
            pids = set(tree)
            if pids == previous and not any(state in ("Z", "X") for _, _, state in tree.values()):
                return
            previous = pids
            time.sleep(0.1)

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
        return user + nice + system, irq + softirq, steal

    def snapshot(self):
        busy, irq, steal = self._machine()
        return time.monotonic(), busy, irq, steal, self._ours()

    @staticmethod
    def usage(before, after):
        """{"ours", "others", "irq", "steal"}: shares of the machine's CPU capacity over the
        interval (1.0 = every core busy the whole time)."""
        capacity = (after[0] - before[0]) * CLOCK_TICKS * (os.cpu_count() or 1)
        if capacity <= 0:
            return None
        ours = after[4] - before[4]
        busy = after[1] - before[1]
        return {"ours": ours / capacity, "others": max(0, busy - ours) / capacity,
                "irq": (after[2] - before[2]) / capacity, "steal": (after[3] - before[3]) / capacity}


def postmaster_pids(cluster):
    pids = []
    for node in cluster.nodes:
        try:
            with open(os.path.join(node["data_dir"], "postmaster.pid")) as f:
                pids.append(int(f.readline()))
        except (OSError, ValueError):
            pass
    return pids


# --------------------------------------------------------------------------- processes

def _wait_for_port(port, alive, timeout=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _die_with_parent():
    """preexec_fn (runs after the switch to the postgres user, so the setting survives it)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _tail(path, chars=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-chars:]
    except OSError:
        return ""


def _group_members(pgid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
            if int(fields[2]) == pgid:  # state, ppid, pgrp
                pids.append(int(entry))
    return pids


class Service:
    """A server program run as the postgres OS user in a work directory of its own, in its own
    process group (the group id is the pid of the process started here)."""

    name = "service"
    stop_signal = signal.SIGTERM

    def __init__(self, workdir, label):
        self.label = label
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir)
        self.log_path = os.path.join(self.dir, f"{self.name}.log")
        self.proc = None
        self.description = ""

    def _write(self, filename, text):
        path = os.path.join(self.dir, filename)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _chown_dir(self):
        if os.geteuid() == 0:
            pw = pwd.getpwnam(OS_USER)
            for root, _, files in os.walk(self.dir):
                os.chown(root, pw.pw_uid, pw.pw_gid)
                for f in files:
                    os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)

    def command(self):
        raise NotImplementedError

    def __enter__(self):
        self._chown_dir()
        as_user = {"user": OS_USER, "group": OS_USER, "extra_groups": []} if os.geteuid() == 0 else {}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent, **as_user)
        try:
            if not _wait_for_port(self.port, lambda: self.proc.poll() is None):
                raise BenchError(f"{self.label} did not accept connections on port {self.port} "
                                 f"(exit code {self.proc.poll()}); log {self.log_path}:\n{_tail(self.log_path)}")
            self.ready()
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self):
        """Called once the port accepts connections; raise if the service is not usable."""

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Children the main process left behind (pgpool's), found by our group id.
        deadline = time.monotonic() + 5
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in _group_members(pgid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def log(self):
        return _tail(self.log_path, 20000)


class Pgbouncer(Service):
    """PgBouncer in front of the primary; auth_type trust; pool_mode session or transaction."""

    name = "pgbouncer"
    stop_signal = signal.SIGINT  # "safe shutdown": SIGTERM waits for clients in 1.18

    def __init__(self, workdir, cluster, *, pool_mode="session", pool_size=16, max_client_conn=200):
        super().__init__(workdir, f"pgbouncer ({pool_mode})")
        primary = cluster.primary
        self._write("userlist.txt", f'"{SUPERUSER}" ""\n')
        self.ini = self._write("pgbouncer.ini", "\n".join([
            "[databases]",
            f"* = host={primary['host']} port={primary['port']}",
            "",
            "[pgbouncer]",
            f"listen_addr = {HOST}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {os.path.join(self.dir, 'userlist.txt')}",
            f"pool_mode = {pool_mode}",
            f"default_pool_size = {pool_size}",
            f"max_client_conn = {max_client_conn}",
            f"pidfile = {os.path.join(self.dir, 'pgbouncer.pid')}",
            "log_connections = 0",  # pgpilot and pgpool do not log every connection either
            "log_disconnections = 0",
            "ignore_startup_parameters = extra_float_digits",
            "",
        ]))
        self.description = (f"pool_mode = {pool_mode}, default_pool_size = {pool_size}, "
                            f"max_client_conn = {max_client_conn}, auth_type = trust, server: the primary")

    def command(self):
        return [PGBOUNCER_BIN, self.ini]


class Pgpool(Service):
    """pgpool-II in streaming-replication mode over every node of the cluster, in the foreground."""

    name = "pgpool"
    stop_signal = signal.SIGINT  # fast shutdown

    def __init__(self, workdir, cluster, *, load_balance, num_init_children, max_pool=1,
                 options=None, label=None):
        super().__init__(workdir, label or f"pgpool (load_balance_mode {'on' if load_balance else 'off'})")
        self.cluster = cluster
        d = self.dir
        settings = {
            "backend_clustering_mode": "'streaming_replication'",
            "listen_addresses": f"'{HOST}'",
            "port": self.port,
            "socket_dir": f"'{d}'",  # pgpool-II 4.3's name (unix_socket_directories from 4.4)
            "pcp_listen_addresses": "''",
            "pcp_port": free_port(),
            "pcp_socket_dir": f"'{d}'",
            "wd_ipc_socket_dir": f"'{d}'",
            "pid_file_name": f"'{os.path.join(d, 'pgpool.pid')}'",
            "logdir": f"'{d}'",  # pgpool_status
            "log_destination": "'stderr'",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "enable_pool_hba": "off",
            "pool_passwd": "''",
            "num_init_children": num_init_children,
            "max_pool": max_pool,
            "load_balance_mode": "on" if load_balance else "off",
            "sr_check_period": 10,
            "sr_check_user": f"'{SUPERUSER}'",
            "sr_check_database": "'postgres'",
            "health_check_period": 10,
            "health_check_timeout": 20,
            "health_check_max_retries": 3,
            "health_check_user": f"'{SUPERUSER}'",
            "health_check_database": "'postgres'",
            "failover_on_backend_error": "off",
            "use_watchdog": "off",
        }
        for key, value in (options or {}).items():
            settings[key] = value
        lines = [f"{k} = {v}" for k, v in settings.items()]
        for i, node in enumerate(cluster.nodes):
            lines += [f"backend_hostname{i} = '{node['host']}'", f"backend_port{i} = {node['port']}",
                      f"backend_weight{i} = 1",
                      f"backend_flag{i} = 'ALLOW_TO_FAILOVER'",
                      f"backend_application_name{i} = '{node['name']}'"]
        self.conf = self._write("pgpool.conf", "\n".join(lines) + "\n")
        self.pcp = self._write("pcp.conf", "")
        self.hba = self._write("pool_hba.conf", "")
        extra = ", ".join(f"{k} = {v}" for k, v in (options or {}).items())
        self.description = (f"streaming_replication mode, backends: "
                            f"{', '.join(n['name'] for n in cluster.nodes)} (weight 1 each), "
                            f"load_balance_mode = {'on' if load_balance else 'off'}, "
                            f"num_init_children = {num_init_children}, max_pool = {max_pool}, "
                            f"sr_check_period = 10, health_check_period = 10"
                            + (f", {extra}" if extra else ""))

    def command(self):
        # -D: ignore a pgpool_status file (there is none: a fresh directory each time).
        return [PGPOOL_BIN, "-n", "-D", "-f", self.conf, "-F", self.pcp, "-a", self.hba]

    def ready(self):
        """pgpool accepts before it has found the primary: wait until SHOW POOL_NODES says every
        node is up with the right role."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        want = {n["name"]: n["role"] for n in self.cluster.nodes}
        rows = []
        while time.monotonic() < deadline:
            try:
                rows = psql_rows(self.port, "SHOW POOL_NODES", "postgres")
            except (BenchError, subprocess.TimeoutExpired):
                rows = []
            roles = {n["name"]: r.get("role") for r in rows for n in self.cluster.nodes
                     if (r.get("hostname"), r.get("port")) == (n["host"], str(n["port"]))
                     and r.get("status") == "up"}
            if roles == want:
                return
            time.sleep(0.3)
        raise BenchError(f"{self.label}: nodes not all up with their roles after {READY_TIMEOUT_S}s: "
                         f"{rows}\n{_tail(self.log_path)}")


class Direct:
    """The primary itself."""

    def __init__(self, cluster, label="direct"):
        self.label = label
        self.port = cluster.primary["port"]
        self.description = "the primary, over TCP on 127.0.0.1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def alive(self):
        return True


class PgpilotTarget:
    """pgpilot through harness.Pgpilot; `load_balance` (a dict) adds a [load_balance] table;
    `pool` (a dict) adds keys to the [pool] table (e.g. pool_mode = "transaction")."""

    def __init__(self, binary, cluster, workdir, *, workers, max_pool, primary_only, load_balance=None,
                 backend_override=None, label="pgpilot", log_level="warning", pool=None):
        self.label = label
        overrides = {"server": {"workers": workers, "log_level": log_level},
                     "pool": {"max_pool": max_pool, **(pool or {})}}
        if backend_override is not None:
            overrides["backend"] = backend_override
        if load_balance is not None:
            overrides["load_balance"] = load_balance
        self.px = Pgpilot(binary, cluster, overrides, workdir, primary_only=primary_only)
        self.port = self.px.port
        self.binary = binary
        backends = "the primary" if primary_only else ", ".join(n["name"] for n in cluster.nodes)
        mode = (pool or {}).get("pool_mode", "session")
        pool_text = (f"max_pool = {max_pool}" if not pool else
                     ", ".join(f"{k} = {v}" for k, v in pool.items() if k != "pool_mode"))
        self.description = (f"{mode} pooling, workers = {workers}, {pool_text}, backends: {backends}"
                            + (", over the primary's Unix socket" if backend_override else "")
                            + (f", [load_balance] {_inline(load_balance)}" if load_balance is not None else ""))

    def check(self):
        """`pgpilot --check` on the config; Unsupported when this build rejects it."""
        proc = subprocess.run([self.binary, "--check", "-f", self.px.config_path], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            message = " ".join((proc.stderr + proc.stdout).replace(self.px.config_path, "pgpilot.toml").split())
            raise Unsupported(f"not supported by this build: `pgpilot --check` exits {proc.returncode}: {message}")

    def __enter__(self):
        self.check()
        self.px.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        # Reported, not raised: a bad exit must not lose the other targets' figures.
        was_running = self.px.alive()
        code = self.px.terminate()
        if not was_running or code != 0:
            print(f"warning: {self.label} {'had died' if not was_running else 'exited'} "
                  f"with code {code} (expected 0 after SIGTERM)", flush=True)
            self.px.print_log(4000)
        return False

    def alive(self):
        return self.px.alive()

    @property
    def pid(self):
        return self.px.proc.pid if self.px.proc is not None else None

    @property
    def log_path(self):
        return self.px.log_path

    def log(self):
        return self.px.log()


def _inline(table):
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v) if not isinstance(v, str) else f'"{v}"'
    return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in table.items()) + " }"


def parse_toml_scalar(text):
    """KEY=VALUE from the command line: true/false, integers, floats, else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip('"')
