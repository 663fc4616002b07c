#!/usr/bin/python3
"""Failover outage: kill -9 of the primary's postmaster, pgpilot beside pgpool-II.

Each run starts a fresh private cluster (test/integration/pgcluster.py: a PostgreSQL 15
primary and two streaming hot standbys), creates the database `bench` (`pgbench -i -s 1` and a
table `failover_writes`), starts one target in front of all three nodes, and then, through
that target:

  writer   autocommit `INSERT ... RETURNING inet_server_port()` in a loop (a new connection
           after any error), recording when each commit returned and on which server;
  reader   `SELECT inet_server_port()` in a loop, the same way;
  pgbench  `pgbench -S -c 4 -j 2 -T 8 -R 500 bench` (read-only), started 2 s before the kill.

After --warmup seconds it kills the primary's postmaster (kill -9, `Cluster.kill`) and measures:

  write outage   from the kill to the first commit on another server (the new primary);
  read outage    the longest gap between two successful reads of which the second came after
                 the kill (and the reader's errors from the kill on);
  pgbench        whether it had failed transactions or aborted clients;
  follow         whether the standby that was not promoted streams from the new primary
                 (its pg_stat_replication, polled directly) within 20 s of the kill;
  lost writes    INSERTs acknowledged by the old primary and missing on the new one
                 (replication is asynchronous; for information).

Targets (both with the same health-check settings where pgpool-II allows them):

  pgpilot  [health_check] period = 0.5, timeout = 2, connect_timeout = 1; [[backend]]
           data_directory set; built-in promotion and follow; [load_balance] defaults.
  pgpool   Debian's pgpool-II 4.3 (bench/targets.py Pgpool), load_balance_mode = on,
           health_check_period = 1 (an integer in 4.3), health_check_timeout = 2,
           connect_timeout = 1000 ms, health_check_max_retries = 0, sr_check_period = 1,
           failover_on_backend_error = on, and a failover_command that promotes the new main
           node with `pg_ctl promote`, in the style of the seed write-up's failover_stream.sh.
           No follow_primary_command (the seed has none).

Runs alternate the order of the targets (run 1: pgpilot first, run 2: pgpool first, ...).
Prints median/min/max over the runs per target and the pgpilot/pgpool ratio of the median
write outages, and writes a markdown report to bench/results/failover-<date>.md.

    bash bench/failover.sh                     (installs, builds if needed; arguments pass through)
    /usr/bin/python3 bench/failover.py [--runs 5] [--targets pgpilot,pgpool] [--pgpilot BIN]
"""

import argparse
import datetime
import hashlib
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as T  # noqa: E402  (puts test/integration on the path)
import pgbench_compare as PC  # noqa: E402  (write_report)
from harness import Connection, PgError, to_toml  # noqa: E402
from pgcluster import PG_BIN, Cluster  # noqa: E402

REPO = T.REPO
DB = "bench"
TABLE = "failover_writes"
TARGETS = ["pgpilot", "pgpool"]
FOLLOW_TIMEOUT_S = 20.0
PGPILOT_HEALTH_CHECK = {"period": 0.5, "timeout": 2, "connect_timeout": 1}


# --------------------------------------------------------------------------- clients

class Loop:
    """A client thread: one statement through the proxy in a loop, `interval` apart, on one
    connection, opening a new one after any error. Records (time the answer arrived, sequence
    number, value) for each success and (time, first line) for each error, on the monotonic
    clock. `{n}` in the SQL is the sequence number."""

    def __init__(self, name, port, sql, interval):
        self.name, self.port, self.sql, self.interval = name, port, sql, interval
        self.ok, self.errors = [], []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        conn = None
        n = 0
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = Connection(self.port, db=DB, connect_timeout=2)
                n += 1
                value = conn.scalar(self.sql.format(n=n))
                self.ok.append((time.monotonic(), n, value))
                time.sleep(self.interval)
            except PgError as e:
                self.errors.append((time.monotonic(), (str(e).strip().splitlines() or ["?"])[0]))
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(max(self.interval, 0.01))
        if conn is not None:
            conn.close()

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.ok:
            if time.monotonic() > deadline:
                self.__exit__()
                raise T.BenchError(f"{self.name}: no success within 15 s: {self.errors[-3:]}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        # A statement held by the proxy (pgpilot's hold_timeout is 30 s) may keep it a while;
        # the thread is a daemon and its connection closes when the target stops.
        self.thread.join(35)
        return False

    def first_on_other_server(self, old_port, since, timeout):
        """(time, port) of the first success after `since` whose value is not old_port."""
        deadline = since + timeout
        while True:
            for t, _, value in list(self.ok):
                if t > since and int(value) != old_port:
                    return t, int(value)
            if time.monotonic() > deadline:
                return None, None
            time.sleep(0.005)


class Pgbench(threading.Thread):
    """`pgbench -S` through the target in the background; `result` when done."""

    def __init__(self, port, clients, duration, rate):
        super().__init__(daemon=True)
        self.cmd = ["pgbench", "-h", T.HOST, "-p", str(port), "-U", T.SUPERUSER, "-S", "-n",
                    "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(duration)]
        if rate > 0:
            self.cmd += ["-R", str(rate)]
        self.cmd.append(DB)
        self.duration = duration
        self.result = None

    def run(self):
        try:
            proc = subprocess.run(self.cmd, env=T.client_env(), capture_output=True, text=True,
                                  errors="replace", timeout=self.duration + 60)
            out = proc.stdout + proc.stderr
            code = proc.returncode
        except subprocess.TimeoutExpired as e:
            out, code = f"{e.stdout or ''}{e.stderr or ''}", "timeout"
        m = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
        aborted = sorted(set(re.findall(r"client (\d+) (?:script \d+ )?aborted", out)))
        errors = [line for line in out.splitlines()
                  if "error" in line.lower() or "aborted" in line or "FATAL" in line]
        self.result = {"exit": code, "processed": int(m.group(1)) if m else None,
                       "failed": int(failed.group(1)) if failed else None,
                       "aborted": len(aborted), "clients": int(self.cmd[self.cmd.index("-c") + 1]),
                       "first_error": errors[0].strip() if errors else ""}


# --------------------------------------------------------------------------- targets

def backend_list(cluster):
    return [{"host": n["host"], "port": n["port"], "weight": 1, "flag": "ALLOW_TO_FAILOVER",
             "data_directory": n["data_dir"]} for n in cluster.nodes]


class FailoverPgpilot(T.PgpilotTarget):
    """PgpilotTarget over every node, with data_directory and the fast health check."""

    def __init__(self, binary, cluster, workdir, lb_options):
        super().__init__(binary, cluster, workdir, workers=2, max_pool=16, primary_only=False,
                         backend_override=backend_list(cluster), load_balance=lb_options or None,
                         label="pgpilot", log_level="info")
        self.px.config["health_check"] = dict(PGPILOT_HEALTH_CHECK)
        with open(self.px.config_path, "w") as f:
            f.write(to_toml(self.px.config))
        hc = ", ".join(f"{k} = {v}" for k, v in PGPILOT_HEALTH_CHECK.items())
        lb = ("[load_balance] " + T._inline(lb_options)) if lb_options else \
             "[load_balance] defaults (enabled, per session, consistency = \"global\")"
        self.description = (f"workers = 2, max_pool = 16, backends: primary, standby1, standby2 "
                            f"(weight 1, data_directory set); [health_check] {hc}; [failover] "
                            f"defaults (built-in promotion and follow, hold_timeout = 30, "
                            f"on_backend_error = true); {lb}")

    def failover_log(self, wall_kill):
        """(failure found, new primary, follow): seconds after the kill of the log lines for
        node 0 going down, for the new primary and for the other standby's primary_conninfo
        rewritten (pgpilot logs UTC times), None when absent."""
        log = self.log()
        return (_log_time(log, r"(\S+ \S+) UTC WARNING node 0 \(.*\) up -> down", wall_kill, utc=True),
                _log_time(log, r"(\S+ \S+) UTC INFO failover: node \d+ is the new primary", wall_kill, utc=True),
                _log_time(log, r"(\S+ \S+) UTC INFO follow: node \d+ now streams from", wall_kill, utc=True))


def _log_time(log, pattern, wall_kill, utc=False):
    m = re.search(pattern, log)
    if not m:
        return None
    text = m.group(1)
    try:
        t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    if utc:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() - wall_kill


PROMOTE_SCRIPT = f"""#!/bin/sh
# failover_command = '<this script> %d %P %m %R' (pgpool-II 4.3 placeholders: failed node,
# old primary, new main node, its data directory). In the style of the seed write-up's
# failover_stream.sh (pg_ctl promote of the new main node), on this host instead of over ssh:
# pgpool-II and the servers run as the same postgres OS user here. The standby check is
# pgpool-II's failover.sh.sample's: when a standby failed, or no node is left, nothing to do.
failed_node=$1
old_primary=$2
new_main=$3
new_main_pgdata=$4
if [ "$failed_node" != "$old_primary" ] || [ "$new_main" -lt 0 ]; then
    exit 0
fi
echo "failover_promote.sh: promoting node $new_main ($new_main_pgdata)"
{PG_BIN}/pg_ctl promote -D "$new_main_pgdata"
exit 0
"""


class FailoverPgpool(T.Pgpool):
    """bench/targets.py's Pgpool with health checks, sr_check and a promoting failover_command."""

    def __init__(self, workdir, cluster, health_check_period):
        script = os.path.join(workdir, "failover_promote.sh")  # workdir is 0755: postgres reads it
        with open(script, "w") as f:
            f.write(PROMOTE_SCRIPT)
        os.chmod(script, 0o755)
        options = {
            "health_check_period": health_check_period,
            "health_check_timeout": 2,
            "connect_timeout": 1000,  # ms: pgpilot's connect_timeout = 1
            "health_check_max_retries": 0,
            "health_check_retry_delay": 1,
            "sr_check_period": 1,
            "failover_command": f"'{script} %d %P %m %R'",
            "failover_on_backend_error": "on",
            "log_min_messages": "log",  # the failover steps, with timestamps
        }
        for i, node in enumerate(cluster.nodes):
            options[f"backend_data_directory{i}"] = f"'{node['data_dir']}'"
        super().__init__(workdir, cluster, load_balance=True, num_init_children=16, max_pool=1,
                         options=options, label="pgpool")
        self.health_check_period = health_check_period
        self.description = (
            "streaming_replication mode, backend0..2 = primary, standby1, standby2 (weight 1, "
            "backend_data_directoryN set), load_balance_mode = on, num_init_children = 16, "
            f"max_pool = 1; health_check_period = {health_check_period}, health_check_timeout = 2, "
            "connect_timeout = 1000 (ms), health_check_max_retries = 0; sr_check_period = 1 as "
            "postgres; failover_on_backend_error = on; failover_command = "
            "'failover_promote.sh %d %P %m %R' (`pg_ctl promote -D %R` when the failed node is the "
            "primary); no follow_primary_command")

    def ready(self):
        """Also check the health-check period pgpool-II actually uses: 4.3 reads it as an
        integer, and a fraction such as 0.5 silently becomes 0, which turns health checks off."""
        super().ready()
        rows = T.psql_rows(self.port, "PGPOOL SHOW health_check_period", "postgres")
        values = {r.get("item"): r.get("value") for r in rows}
        if values.get("health_check_period") != str(self.health_check_period):
            raise T.BenchError(f"pgpool runs with health_check_period = {values.get('health_check_period')!r}, "
                               f"not {self.health_check_period}")

    def log(self):
        """The whole log (Service.log() keeps only its end)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def failover_log(self, wall_kill):
        """(failure found, failover done): seconds after the kill of the first 'degenerate
        backend request' and of 'failover done' in the log (local times), None when absent."""
        log = self.log()
        stamp = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?): "
        return (_log_time(log, stamp + r"[^\n]*LOG:\s+received degenerate backend request for node_id: 0", wall_kill),
                _log_time(log, stamp + r"main pid \d+: LOG:\s+failover done", wall_kill),
                None)


# --------------------------------------------------------------------------- one run

def setup_database(cluster):
    cluster.psql(cluster.primary, f"CREATE DATABASE {DB}")
    T.run_init(cluster.primary["port"], DB, 1)
    cluster.psql(cluster.primary, f"CREATE TABLE {TABLE} (i bigint)", db=DB)
    T.wait_replayed(cluster)


def replication_states(cluster, node):
    """{application_name: state} of pg_stat_replication on node ({} when it does not answer)."""
    try:
        out = cluster.psql(node, "SELECT application_name || '=' || state FROM pg_stat_replication")
    except Exception as e:  # noqa: BLE001 - not answering counts as no standby
        return {"(psql failed)": " ".join(str(e).split())[-200:]}
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


class FollowWatch(threading.Thread):
    """Polls pg_stat_replication on the new primary (directly, every 0.1 s) until every other
    standby is `streaming` there, or until `deadline` (monotonic). Records when they were first
    all listed (any state) and first all `streaming`, in seconds after t_kill, and the states
    seen in between."""

    def __init__(self, cluster, new_node, others, t_kill, deadline):
        super().__init__(daemon=True)
        self.cluster, self.node, self.others = cluster, new_node, others
        self.t_kill, self.deadline = t_kill, deadline
        self.listed = self.streaming = None
        self.states = []

    def run(self):
        while time.monotonic() < self.deadline:
            states = replication_states(self.cluster, self.node)
            now = time.monotonic() - self.t_kill
            seen = tuple(sorted((k, v) for k, v in states.items() if k in self.others or k.startswith("(")))
            if not self.states or self.states[-1][1] != seen:
                self.states.append((round(now, 2), seen))
            if self.listed is None and self.others <= set(states):
                self.listed = now
            if all(states.get(o) == "streaming" for o in self.others):
                self.streaming = now
                return
            time.sleep(0.1)


def read_gaps(ok, t_kill, t_end, baseline_s):
    """(outage, unrecovered, baseline): the longest gap between two successful reads whose
    second one came after the kill; when no read succeeded in the last second before t_end
    (and that stretch is longer), the outage lasts at least to t_end (unrecovered). Baseline:
    the longest gap entirely within the baseline_s seconds before the kill."""
    times = sorted(t for t, _, _ in ok if t <= t_end)
    before = [t for t in times if t <= t_kill]
    prev = before[-1] if before else t_kill
    outage = 0.0
    for t in (t for t in times if t > t_kill):
        outage = max(outage, t - prev)
        prev = t
    unrecovered = t_end - prev > 1.0 and t_end - prev > outage
    if unrecovered:
        outage = t_end - prev
    window = [t for t in before if t >= t_kill - baseline_s]
    baseline = max((b - a for a, b in zip(window, window[1:])), default=None)
    return outage, unrecovered, baseline


def pool_nodes_after(port, cluster):
    """'name: status role' per node from SHOW POOL_NODES through the target, or None."""
    try:
        rows = T.psql_rows(port, "SHOW POOL_NODES", "postgres", timeout=10)
    except Exception:  # noqa: BLE001 - not answered
        return None
    by_address = {(n["host"], str(n["port"])): n["name"] for n in cluster.nodes}
    out = []
    for row in rows:
        name = by_address.get((row.get("hostname"), row.get("port")), f"{row.get('hostname')}:{row.get('port')}")
        out.append(f"{name} {row.get('status', '?')} {row.get('role', '?')}")
    return ", ".join(out) or None


def run_once(kind, index, args, binary, root):
    work = tempfile.mkdtemp(prefix=f"run{index + 1}-{kind}-", dir=root)
    os.chmod(work, 0o755)
    r = {"target": kind, "run": index + 1, "load": os.getloadavg()[0], "error": None}
    cluster = Cluster.start(os.path.join(work, "cluster"), standbys=2)
    with cluster:
        setup_database(cluster)
        names = {n["port"]: n["name"] for n in cluster.nodes}
        old = cluster.primary
        if kind == "pgpilot":
            target = FailoverPgpilot(binary, cluster, work, dict(args.pgpilot_lb))
        else:
            target = FailoverPgpool(work, cluster, args.pgpool_health_check_period)
        r["description"] = target.description
        meter = T.CpuMeter(lambda: [os.getpid()] + T.postmaster_pids(cluster))
        with target:
            writer = Loop("writer", target.port, f"INSERT INTO {TABLE} VALUES ({{n}}) RETURNING inet_server_port()",
                          args.interval)
            reader = Loop("reader", target.port, "SELECT inet_server_port()", args.interval)
            with writer, reader:
                pgbench = Pgbench(target.port, args.pgbench_clients, args.pgbench_duration, args.pgbench_rate)
                pgbench.start()
                cpu0 = meter.snapshot()
                time.sleep(args.warmup)
                # The old primary's processes leave the CpuMeter's tree with the kill: keep
                # their ticks up to now, so that they do not count as other jobs' time.
                old_pid = cluster.postmaster_pid(old)
                old_ticks = T.CpuMeter(lambda: [old_pid])._ours()
                t_kill, wall_kill = time.monotonic(), time.time()
                cluster.kill(old)
                t_new, new_port = writer.first_on_other_server(old["port"], t_kill, args.timeout)
                r["write_outage"] = None if t_new is None else t_new - t_kill
                r["new_primary"] = names.get(new_port, str(new_port)) if new_port else None
                # The other standby: does it replicate from the new primary within 20 s of the kill?
                follow = None
                if new_port:
                    new_node = next(n for n in cluster.nodes if n["port"] == new_port)
                    others = {n["name"] for n in cluster.standbys if n is not new_node}
                    follow = FollowWatch(cluster, new_node, others, t_kill, t_kill + FOLLOW_TIMEOUT_S)
                    follow.start()
                # Observe the reader until pgbench is over, and at least 2 s after writes resumed.
                t_end = max(t_kill + args.pgbench_duration - args.warmup,
                            (t_new or t_kill + args.timeout) + 2.0)
                while time.monotonic() < t_end:
                    time.sleep(0.05)
                ok, errors = list(reader.ok), list(reader.errors)
                outage, unrecovered, baseline = read_gaps(ok, t_kill, t_end, args.warmup)
                r["read_outage"], r["read_unrecovered"], r["read_baseline"] = outage, unrecovered, baseline
                r["read_errors"] = sum(1 for t, _ in errors if t > t_kill - 0.05)
                r["read_first_error"] = next((e for t, e in errors if t > t_kill - 0.05), "")
                pre = [names.get(int(v), v) for t, _, v in ok if t_kill - 1.0 <= t <= t_kill]
                post = [names.get(int(v), v) for t, _, v in ok if t_end - 1.0 <= t <= t_end]
                r["reads_before"] = share(pre)
                r["reads_after"] = share(post)
                if follow is not None:
                    follow.join(FOLLOW_TIMEOUT_S + 30)
                r["follow"] = follow.streaming if follow else None
                r["follow_listed"] = follow.listed if follow else None
                r["follow_states"] = follow.states if follow else []
                pgbench.join(args.pgbench_duration + 90)
                r["pgbench"] = pgbench.result
                r["pool_nodes"] = pool_nodes_after(target.port, cluster)
                end = meter.snapshot()
                cpu = T.CpuMeter.usage(cpu0, end[:4] + (end[4] + old_ticks,))
                r["cpu_others"] = cpu["others"] if cpu else None
                r["cpu_ours"] = cpu["ours"] if cpu else None
            w_ok, w_err = list(writer.ok), list(writer.errors)
            r["write_errors"] = sum(1 for t, _ in w_err if t > t_kill - 0.05)
            r["write_first_error"] = next((e for t, e in w_err if t > t_kill - 0.05), "")
            on_old_after = [t for t, _, v in w_ok if t > t_kill and int(v) == old["port"]]
            r["old_commits_after_kill"] = len(on_old_after)
            r["old_last_commit"] = (max(on_old_after) - t_kill) if on_old_after else None
            r["lost"] = None
            if new_port:
                new_node = next(n for n in cluster.nodes if n["port"] == new_port)
                rows = set(int(x) for x in cluster.psql(new_node, f"SELECT i FROM {TABLE}", db=DB).split())
                acked_old = [n for _, n, v in w_ok if int(v) == old["port"]]
                r["lost"] = sum(1 for n in acked_old if n not in rows)
                r["acked_old"] = len(acked_old)
            r["internal"] = target.failover_log(wall_kill)
            if not target.alive():
                r["error"] = f"{kind} died during the run"
            log = target.log()
            r["log_tail"] = log[-3000:]
            if args.logs:
                os.makedirs(args.logs, exist_ok=True)
                with open(os.path.join(args.logs, f"run{index + 1}-{kind}.log"), "w") as f:
                    f.write(f"# kill at {datetime.datetime.fromtimestamp(wall_kill):%Y-%m-%d %H:%M:%S.%f} "
                            f"(local time)\n{log}")
                for node in cluster.standbys:  # the servers' own logs (a standby's reconnection)
                    try:
                        shutil.copy(node["log"], os.path.join(args.logs, f"run{index + 1}-{kind}-{node['name']}.log"))
                    except OSError:
                        pass
    return r


def share(names):
    if not names:
        return "–"
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join(f"{n} {100 * c / len(names):.0f} %" for n, c in sorted(counts.items()))


# --------------------------------------------------------------------------- report

def fmt_s(x, unrecovered=False):
    if x is None:
        return "none"
    return f"≥ {x:.2f}" if unrecovered else f"{x:.2f}"


def stats(values):
    ok = [v for v in values if v is not None]
    if not ok:
        return None
    return statistics.median(ok), min(ok), max(ok)


def fmt_stats(values, unit=" s", digits=2, missing_label="none"):
    s = stats(values)
    missing = sum(1 for v in values if v is None)
    if s is None:
        return missing_label
    text = f"{s[0]:.{digits}f}{unit} ({s[1]:.{digits}f} – {s[2]:.{digits}f})"
    if missing:
        text += f", {missing} run{'s' if missing > 1 else ''} {missing_label}"
    return text


def pgbench_cell(p):
    if p is None:
        return "did not run"
    if p["exit"] == 0 and not p["aborted"] and not p["failed"]:
        return f"ok ({p['processed']:,} xacts)" if p["processed"] is not None else "ok"
    parts = []
    if p["aborted"]:
        parts.append(f"{p['aborted']}/{p['clients']} clients aborted")
    if p["failed"]:
        parts.append(f"{p['failed']} failed")
    parts.append(f"exit {p['exit']}")
    return ", ".join(parts)


def summary_table(results, kinds):
    lines = ["| target | write outage, s: median (min – max) | read outage, s: median (min – max) "
             "| reader errors: median (min – max) | writer errors: median (min – max) "
             "| pgbench -S across the kill | other standby follows within 20 s |",
             "|---|---|---|---|---|---|---|"]
    for kind in kinds:
        rs = [r for r in results if r["target"] == kind and not r.get("failed_run")]
        if not rs:
            lines.append(f"| {kind} | no successful run | | | | | |")
            continue
        w = fmt_stats([r["write_outage"] for r in rs], unit="", missing_label="no new primary")
        rd = fmt_stats([r["read_outage"] for r in rs], unit="")
        unrec = sum(1 for r in rs if r["read_unrecovered"])
        if unrec:
            rd += f"; reads had not resumed at the end in {unrec} run(s)"
        re_ = fmt_stats([r["read_errors"] for r in rs], unit="", digits=0)
        we = fmt_stats([r["write_errors"] for r in rs], unit="", digits=0)
        clean = sum(1 for r in rs if r["pgbench"] and pgbench_cell(r["pgbench"]).startswith("ok"))
        aborted = [r["pgbench"]["aborted"] for r in rs if r["pgbench"]]
        pg = f"no errors in {clean}/{len(rs)} runs"
        if clean < len(rs):
            pg += f"; aborted clients per run: {', '.join(str(a) for a in aborted)} (of 4)"
        follows = [r["follow"] for r in rs if r["follow"] is not None]
        fo = f"{len(follows)}/{len(rs)} runs"
        if follows:
            fo += f" (after {statistics.median(follows):.2f} s, median)"
        lines.append(f"| {kind} | {w} | {rd} | {re_} | {we} | {pg} | {fo} |")
    return lines


def detail_table(results):
    lines = ["| run | target | load (1 min) | CPU: other jobs / the benchmark | write outage, s | writer errors "
             "| last commit on the old primary, s after the kill | acked writes lost | read outage, s "
             "(longest gap before the kill) | reader errors | reads served by (1 s before / after) "
             "| pgbench -S | new primary | other standby follows, s | the proxy's log, s after the kill |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---|"]
    for r in results:
        if r.get("failed_run"):
            lines.append(f"| {r['run']} | {r['target']} | {r['load']:.2f} | | **run failed: "
                         f"{r['error']}** | | | | | | | | | | |")
            continue
        cpu = "–" if r.get("cpu_others") is None else \
            f"{100 * r['cpu_others']:.0f} % / {100 * r['cpu_ours']:.0f} %"
        if r["follow"] is not None:
            follow = f"{r['follow']:.2f}"
        elif r.get("follow_listed") is not None:
            follow = f"no (connected at {r['follow_listed']:.2f}, never `streaming`)"
        else:
            follow = "no"
        old_last = "–" if r["old_last_commit"] is None else \
            f"{r['old_last_commit']:+.3f} ({r['old_commits_after_kill']} commits)"
        lost = "–" if r["lost"] is None else f"{r['lost']} of {r['acked_old']}"
        base = "–" if r["read_baseline"] is None else f"{r['read_baseline']:.3f}"
        internal = internal_cell(r)
        lines.append(
            f"| {r['run']} | {r['target']} | {r['load']:.2f} | {cpu} | {fmt_s(r['write_outage'])} "
            f"| {r['write_errors']} | {old_last} | {lost} "
            f"| {fmt_s(r['read_outage'], r['read_unrecovered'])} ({base}) | {r['read_errors']} "
            f"| {r['reads_before']} / {r['reads_after']} | {pgbench_cell(r['pgbench'])} "
            f"| {r['new_primary'] or 'none'} | {follow} "
            f"| {internal} |")
    return lines


def internal_cell(r):
    found, done, follow = r.get("internal") or (None, None, None)
    what = "new primary" if r["target"] == "pgpilot" else "failover done"
    parts = []
    if found is not None:
        parts.append(f"failure found {found:+.2f}")
    if done is not None:
        parts.append(f"{what} {done:+.2f}")
    if follow is not None:
        parts.append(f"follow {follow:+.2f}")
    return ", ".join(parts) if parts else "–"


def pool_nodes_lines(results):
    out = []
    for r in results:
        if not r.get("failed_run"):
            out.append(f"- run {r['run']}, {r['target']}: {r.get('pool_nodes') or 'not answered'}")
    return out


def first_errors(results):
    out = []
    for r in results:
        if r.get("failed_run"):
            continue
        items = []
        if r["write_first_error"]:
            items.append(f"writer: `{short(r['write_first_error'])}`")
        if r["read_first_error"]:
            items.append(f"reader: `{short(r['read_first_error'])}`")
        if r["pgbench"] and r["pgbench"]["first_error"]:
            items.append(f"pgbench: `{short(r['pgbench']['first_error'])}`")
        if items:
            out.append(f"- run {r['run']}, {r['target']}: " + "; ".join(items))
    return out


def short(text, n=160):
    text = " ".join(text.replace("`", "'").split())
    return text if len(text) <= n else text[:n - 1] + "…"


def report(args, results, kinds, meta):
    m = meta["machine"]
    la0, la1 = meta["load_start"], meta["load_end"]
    lines = [f"# Failover outage: pgpilot beside pgpool-II, {meta['date']}", "",
             f"kill -9 of the primary's postmaster, {args.runs} run{'s' if args.runs > 1 else ''} per target, "
             "each on a fresh cluster (a PostgreSQL 15 primary and two streaming standbys). "
             f"**Busy machine**: {m['cores']} cores shared with other engineers' builds and test suites "
             f"(load average {la0[0]:.2f} at the start, {la1[0]:.2f} at the end; the load and the CPU "
             "share of other jobs at each run are in the per-run table).", ""]
    lines += summary_table(results, kinds) + [""]
    med = {k: stats([r["write_outage"] for r in results if r["target"] == k and not r.get("failed_run")])
           for k in kinds}
    if med.get("pgpilot") and med.get("pgpool") and med["pgpool"][0] > 0:
        lines += [f"**Write outage, pgpilot/pgpool (ratio of medians): "
                  f"{med['pgpilot'][0] / med['pgpool'][0]:.2f}** "
                  f"({med['pgpilot'][0]:.2f} s against {med['pgpool'][0]:.2f} s).", ""]
    lines += ["## Per run", ""] + detail_table(results) + [""]
    errs = first_errors(results)
    if errs:
        lines += ["First error each client saw after the kill:", ""] + errs + [""]
    lines += ["`SHOW POOL_NODES` through the target at the end of each run (node, status, role):", ""]
    lines += pool_nodes_lines(results) + [""]
    lines += [
        "## How this was measured",
        "",
        f"- Command: `{meta['command']}`, under `nice -n {meta['nice']}`.",
        f"- Machine: {T.machine_text(m)}, "
        "shared with other engineers' builds and test suites while this ran. Load average (1, 5, 15 "
        f"min) at the start {', '.join(f'{x:.2f}' for x in la0)}, at the end "
        f"{', '.join(f'{x:.2f}' for x in la1)}. \"CPU: other jobs / the benchmark\": shares of the "
        "machine's CPU capacity (100 % = both cores busy) from the start of pgbench to the end of the "
        "follow check, used by processes that are not the benchmark's, and by the benchmark's own "
        "(this script and its children: the clients, pgbench, the proxy; the PostgreSQL servers; the "
        "killed primary's until the kill), from /proc (bench/targets.py CpuMeter).",
        f"- Revision: {meta['revision']}; pgpilot binary {meta['pgpilot']}"
        + (f" ({meta['note']})" if meta.get("note") else "") + ".",
        f"- Packages (Debian 12): {T.packages_text(meta['packages'])}.",
        "- Each run: a fresh cluster from test/integration/pgcluster.py (primary, standby1, standby2 on "
        "127.0.0.1; fsync off, synchronous_commit off, asynchronous streaming replication without "
        f"slots), database `{DB}` with `pgbench -i -s 1` and a table `{TABLE} (i bigint)`, replayed "
        "on both standbys; then one target in front of all three nodes, started fresh.",
        f"- Clients, all through the target, as postgres, over TCP: a writer (`INSERT INTO {TABLE} "
        "VALUES (n) RETURNING inet_server_port()`, autocommit) and a reader (`SELECT "
        "inet_server_port()`), each a thread with one libpq connection (harness.Connection), "
        f"{1000 * args.interval:g} ms between statements, a new connection (connect_timeout 2 s) "
        f"after any error; and `{' '.join(meta['pgbench_cmd'])}` (read-only; `-R` keeps it from "
        "saturating the two cores). The writer and reader ran first until each had one success, "
        f"then pgbench started, and {args.warmup:g} s later `Cluster.kill(primary)` sent SIGKILL "
        "to the primary's postmaster (its backends exit when they notice).",
        "- Write outage: from the kill to the moment the first INSERT returned whose "
        "`inet_server_port()` was not the old primary's. The old primary's backends can still "
        "commit for a moment after the kill (column \"last commit on the old primary\"); with "
        "asynchronous replication such commits may be lost (column \"acked writes lost\": "
        "INSERTs acknowledged by the old primary and missing on the new one; the cluster runs "
        "with `synchronous_commit = off`, so a commit is acknowledged before its WAL is even "
        "written: these losses come from the cluster's settings more than from the proxies, though "
        "which standby is promoted matters too).",
        "- Read outage: the longest gap between two consecutive successful reads of which the "
        "second returned after the kill, up to the end of pgbench and at least 2 s after writes "
        "resumed (\"≥\" when reads had not resumed by then); in brackets the longest gap in the "
        f"{args.warmup:g} s before the kill, for comparison. Reader and writer errors: failed "
        "statements and failed connection attempts from the kill on. \"Reads served by\": the "
        "node the reader's `inet_server_port()` named, in the second before the kill and in the "
        "last second the reader was observed. pgpool-II picks the node once per session; pgpilot "
        "too, but with `consistency = \"global\"` (its default) a read goes to the primary when "
        "the chosen standby has not replayed the writes made through pgpilot within "
        "`consistency_wait_ms` (100 ms), which with a writer always running is often.",
        "- Other standby follows: from the writer's first commit on the new primary on, "
        "`pg_stat_replication` on the new primary (directly, over its Unix socket, not through the "
        "target) every 0.1 s until the standby that was not promoted is there with state "
        f"`streaming`; the figure is when, in seconds after the kill; \"no\" when not within "
        f"{FOLLOW_TIMEOUT_S:g} s of the kill.",
        "- Order: the targets alternate (odd runs pgpilot first, even runs pgpool first), one at a "
        "time, never together.",
        "- Targets:",
    ]
    for kind in kinds:
        lines.append(f"  - `{kind}`: {meta['descriptions'].get(kind, '')}")
    lines += [
        "- Notes:",
        f"  - pgpool-II 4.3's `health_check_period` is an integer (seconds); it was "
        f"{args.pgpool_health_check_period} here against pgpilot's 0.5. pgpool-II also fails a node "
        "at once on a backend read/write error (`failover_on_backend_error = on`), which usually "
        "comes before the next health check.",
        "  - pgpool-II's `%m` is the live standby with the lowest node id (standby1), whatever its "
        "WAL position; pgpilot promotes the standby that has received the most WAL.",
        "  - pgpool-II ends every client session when the primary fails (its documentation: "
        "\"If the primary server goes down, still all sessions will be disconnected\"); pgpilot "
        "holds statements that need the primary for up to `hold_timeout` and keeps sessions "
        "outside a transaction (docs/ha.md, \"Sessions during failures\").",
        "  - Without a `follow_primary_command` (the seed write-ups have none) pgpool-II leaves "
        "the other standby pointing at the dead primary; pgpilot's built-in follow rewrites its "
        "`primary_conninfo`.",
        "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def report_path(args, today):
    """failover-<date>.md (not pgbench_compare's <date>-<name>.md)."""
    path = os.path.join(args.results_dir, f"failover-{today}.md")
    if os.path.exists(path):  # never overwrite an earlier report
        path = os.path.join(args.results_dir, f"failover-{today}-{datetime.datetime.now():%H%M%S}.md")
    return path


# --------------------------------------------------------------------------- main

def csv_targets(text):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or any(t not in TARGETS for t in items):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(TARGETS)}; got {text!r}")
    return items


def key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"),
                   help="binary; copied once at the start, so a rebuild during the runs changes nothing")
    p.add_argument("--targets", type=csv_targets, default=",".join(TARGETS))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the kill")
    p.add_argument("--interval", type=float, default=0.005, help="seconds between two statements of "
                   "the writer, and of the reader")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a commit on a new primary")
    p.add_argument("--pgbench-clients", type=int, default=4)
    p.add_argument("--pgbench-duration", type=int, default=8, help="-T; pgbench starts --warmup s before the kill")
    p.add_argument("--pgbench-rate", type=int, default=500, help="-R (transactions/s, all clients); 0 = unthrottled")
    p.add_argument("--pgpool-health-check-period", type=int, default=1,
                   help="pgpool-II 4.3 takes whole seconds")
    p.add_argument("--pgpilot-lb", type=key_value,
                   action="append", default=[], metavar="KEY=VALUE",
                   help="a key of pgpilot's [load_balance] table (default: none, the defaults)")
    p.add_argument("--note", default="", help="added after the binary in the report (e.g. what it was built from)")
    p.add_argument("--logs", default="", metavar="DIR", help="keep each run's pgpilot/pgpool log in DIR")
    p.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = p.parse_args(argv)
    if args.runs < 1 or args.pgbench_duration <= args.warmup:
        p.error("--runs must be positive and --pgbench-duration longer than --warmup")
    args.pgpilot_lb = [(k, T.parse_toml_scalar(v)) for k, v in args.pgpilot_lb]
    return args


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    kinds = args.targets
    if "pgpilot" in kinds and not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")
    T.ensure_packages(["pgpool2"] if "pgpool" in kinds else [])
    source = os.path.abspath(args.pgpilot)
    meta = {"date": datetime.date.today().isoformat(), "machine": T.machine_info(),
            "load_start": os.getloadavg(), "revision": T.git_revision(), "packages": T.package_versions(),
            "nice": os.nice(0), "note": args.note, "descriptions": {},
            "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/failover.py"]
                                + (sys.argv[1:] if argv is None else argv))}
    results = []
    with tempfile.TemporaryDirectory(prefix="pgpilot-failover-") as root:
        os.chmod(root, 0o755)
        binary = None
        if "pgpilot" in kinds:
            binary = os.path.join(root, "pgpilot")
            shutil.copy2(source, binary)
            with open(binary, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            built = datetime.datetime.fromtimestamp(os.stat(source).st_mtime, datetime.timezone.utc)
            shown = os.path.relpath(source, REPO) if source.startswith(REPO + os.sep) else source
            meta["pgpilot"] = f"`{shown}` (built {built:%Y-%m-%d %H:%M} UTC, sha256 {digest}…)"
        else:
            meta["pgpilot"] = "not used"
        pgb = Pgbench(0, args.pgbench_clients, args.pgbench_duration, args.pgbench_rate)
        meta["pgbench_cmd"] = ["pgbench", "-S", "-n"] + pgb.cmd[pgb.cmd.index("-c"):-1] + [DB]
        for i in range(args.runs):
            order = kinds if i % 2 == 0 else list(reversed(kinds))
            for kind in order:
                print(f"run {i + 1}/{args.runs} {kind}: starting (load {os.getloadavg()[0]:.2f})", flush=True)
                try:
                    r = run_once(kind, i, args, binary, root)
                except Exception as e:  # noqa: BLE001 - reported; the other runs go on
                    traceback.print_exc()
                    r = {"target": kind, "run": i + 1, "load": os.getloadavg()[0], "failed_run": True,
                         "error": short(str(e).splitlines()[0] if str(e) else type(e).__name__)}
                results.append(r)
                print_run(r)
    meta["load_end"] = os.getloadavg()
    for r in results:
        if r.get("description"):
            meta["descriptions"].setdefault(r["target"], r["description"])
    text = report(args, results, kinds, meta)
    PC.write_report(args, meta["date"], text, path_for=report_path)


def print_run(r):
    if r.get("failed_run"):
        print(f"  run {r['run']} {r['target']}: FAILED: {r['error']}", flush=True)
        return
    p = r["pgbench"]
    print(f"  run {r['run']} {r['target']}: write outage {fmt_s(r['write_outage'])} s "
          f"(new primary {r['new_primary']}, {r['write_errors']} writer errors), read outage "
          f"{fmt_s(r['read_outage'], r['read_unrecovered'])} s ({r['read_errors']} reader errors; "
          f"baseline gap {fmt_s(r['read_baseline'])} s; reads {r['reads_before']} / {r['reads_after']}), "
          f"pgbench {pgbench_cell(p)}, follow {fmt_s(r['follow']) if r['follow'] is not None else 'no'}, "
          f"lost {r['lost']}, log: {internal_cell(r)}, load {r['load']:.2f}; "
          f"other standby in pg_stat_replication: {r.get('follow_states')}", flush=True)
    if r.get("error"):
        print(f"  warning: {r['error']}\n{r['log_tail']}", flush=True)


if __name__ == "__main__":
    T.run_main(main)
