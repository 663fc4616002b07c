#!/usr/bin/python3
"""Transaction pooling: pgbench against PostgreSQL directly, PgBouncer and pgpilot (both in
transaction mode), side by side in one run.

Starts a throwaway PostgreSQL 15 primary (test/integration/pgcluster.py, no standbys) with
max_connections raised so that 256 direct clients fit, creates the database `bench` with
`pgbench -i -s 10`, then starts the targets (bench/targets.py):

  direct     the primary, over TCP
  pgbouncer  Debian's PgBouncer, pool_mode = transaction, default_pool_size = 20
  pgpilot    [pool] pool_mode = "transaction", pool_size = 20

In each round and for each workload the same pgbench runs against every target one after the
other (never two at once), rotating which target goes first from one round to the next:

  select-16   pgbench -S -c 16            one primary-key SELECT per transaction
  select-256  pgbench -S -c 256           the same with 256 clients (over 20 server connections
                                          through the poolers)
  connect     pgbench -S -C -c 16         a new connection for every transaction
  prepared    pgbench -S -M prepared -c 16
  tpcb        pgbench -c 16               the built-in TPC-B-like script (5 statements in a
                                          BEGIN/END block)

Prints TPS per run, and writes a markdown report with medians and the ratios pgpilot/PgBouncer
and pgpilot/direct to bench/results/<date>-<name>.md (default name `pooling`). A failed run
(pgbench error, timeout, a pooler that died) is reported with pgbench's output and the
pooler's log lines written during that run; the other runs go on.

    bash bench/pooling_compare.sh            (builds first; arguments pass through)
    /usr/bin/python3 bench/pooling_compare.py [--workloads select-16,select-256,connect,prepared,tpcb]
        [--targets direct,pgbouncer,pgpilot] [--duration 15] [--rounds 3] [--max-load 3]
"""

import argparse
import contextlib
import datetime
import os
import shlex
import signal
import statistics
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as T  # noqa: E402
import pgbench_compare as PC  # noqa: E402  (helpers: median, fmt_tps, ratio, csv_list, summary, write_report)
from pgcluster import Cluster  # noqa: E402  (targets.py put test/integration on the path)

REPO = T.REPO
DB = "bench"
TARGETS = ["direct", "pgbouncer", "pgpilot"]
LABELS = {"direct": "direct", "pgbouncer": "PgBouncer", "pgpilot": "pgpilot"}


class Workload:
    def __init__(self, key, title, extra, *, many=False, select_only=True):
        self.key, self.title, self.extra, self.many, self.select_only = key, title, extra, many, select_only

    def clients(self, args):
        return args.many_clients if self.many else args.clients

    def command(self, args):
        return (f"pgbench {'-S ' if self.select_only else ''}{' '.join(self.extra) + ' ' if self.extra else ''}"
                f"-c {self.clients(args)} -j {args.threads} -T {args.duration}").replace("  ", " ")


WORKLOADS = {
    "select-16": Workload("select-16", "-S, 16 clients", []),
    "select-256": Workload("select-256", "-S, 256 clients", [], many=True),
    "connect": Workload("connect", "-S -C (new connection per transaction)", ["-C"]),
    "prepared": Workload("prepared", "-S -M prepared", ["-M", "prepared"]),
    "tpcb": Workload("tpcb", "TPC-B-like (built-in script)", [], select_only=False),
}
# The targets the issue sets (issue 4, "Memory and speed"): (workload, minimum pgpilot/PgBouncer).
GOALS = [("connect", 1.2), ("select-256", 1.0)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--targets", type=PC.csv_list(TARGETS), default=",".join(TARGETS),
                        help="comma-separated, from " + ",".join(TARGETS))
    parser.add_argument("--workloads", type=PC.csv_list(list(WORKLOADS)), default=",".join(WORKLOADS),
                        help="comma-separated, from " + ",".join(WORKLOADS))
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16, help="clients of every workload but select-256")
    parser.add_argument("--many-clients", type=int, default=256, help="clients of select-256")
    parser.add_argument("--threads", type=int, default=2, help="pgbench -j")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="pgpilot [server] workers")
    parser.add_argument("--pool-size", type=int, default=20,
                        help="pgpilot pool_size and PgBouncer default_pool_size")
    parser.add_argument("--max-backend-connections", type=int, default=100,
                        help="pgpilot [pool] max_backend_connections")
    parser.add_argument("--max-connections", type=int, default=300,
                        help="PostgreSQL max_connections (the direct target needs more than --many-clients)")
    parser.add_argument("--max-load", type=float, default=0,
                        help="before the runs, wait while the 1-minute load average is above this "
                             "(0: do not wait)")
    parser.add_argument("--load-interval", type=float, default=120, help="seconds between load checks")
    parser.add_argument("--max-wait", type=float, default=1500, help="give up waiting for the load after this")
    parser.add_argument("--name", default="pooling", help="report file: <results-dir>/<date>-<name>.md")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.clients, args.many_clients, args.pool_size) < 1:
        parser.error("--rounds, --duration, --clients, --many-clients and --pool-size must be positive")
    if args.max_connections < args.many_clients + 10:
        parser.error("--max-connections must leave room for --many-clients direct clients (+10)")
    return args


# --------------------------------------------------------------------------- setup

def raise_max_connections(cluster, value):
    """pgcluster.py starts PostgreSQL with max_connections 200: too few for 256 direct clients.
    ALTER SYSTEM and restart the primary (there are no standbys, which would need as many)."""
    node = cluster.primary
    cluster.psql(node, f"ALTER SYSTEM SET max_connections = {int(value)}")
    cluster.stop_node(node)
    cluster.start_node(node)
    got = cluster.psql(node, "SHOW max_connections").strip()
    if got != str(value):
        raise T.BenchError(f"max_connections is {got} after the restart, wanted {value}")


def max_client_conn(args):
    return max(1000, 4 * args.many_clients)


def start_target(name, args, cluster, work, stack):
    if name == "direct":
        target = T.Direct(cluster)
        target.limits = f"PostgreSQL max_connections = {args.max_connections}: one backend per client"
    elif name == "pgbouncer":
        target = T.Pgbouncer(work, cluster, pool_mode="transaction", pool_size=args.pool_size,
                             max_client_conn=max_client_conn(args))
        target.limits = (f"default_pool_size = {args.pool_size} (server connections per user and database), "
                         f"max_client_conn = {max_client_conn(args)}, max_db_connections = 0 (no limit), "
                         "reserve_pool_size = 0")
    elif name == "pgpilot":
        pool = {"pool_mode": "transaction", "pool_size": args.pool_size,
                "max_backend_connections": args.max_backend_connections}
        target = T.PgpilotTarget(args.pgpilot, cluster, work, primary_only=True, workers=args.workers,
                                 max_pool=args.pool_size, pool=pool)
        target.limits = (f"pool_size = {args.pool_size} (server connections per user, database and node, "
                         f"all workers together), max_backend_connections = {args.max_backend_connections}, "
                         "max_client_connections = 10000 (default), query_wait_timeout = 120 s (default)")
    else:
        raise ValueError(name)
    return stack.enter_context(target)


def server_connections(target, cluster):
    """The pooler's open TCP connections to the primary (it keeps them after a run: both
    poolers close idle server connections only after 600 s); None for direct."""
    pid = getattr(target, "pid", None)
    return None if pid is None else T.connections_to(pid, cluster.primary["port"])


def log_size(target):
    path = getattr(target, "log_path", None)
    try:
        return os.path.getsize(path) if path else None
    except OSError:
        return None


def log_since(target, offset, max_lines=40):
    """The pooler's log lines written since offset (at most max_lines, the first ones)."""
    path = getattr(target, "log_path", None)
    if not path or offset is None:
        return []
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
    except OSError:
        return []
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return lines


# --------------------------------------------------------------------------- runs

class Results:
    def __init__(self, workloads, names):
        self.tps = {w: {n: [] for n in names} for w in workloads}       # None for a failed run
        self.errors = {w: {n: [] for n in names} for w in workloads}    # (round, message, log lines)
        self.cpu = {w: {n: [] for n in names} for w in workloads}
        self.pooler_cpu = {w: {n: [] for n in names} for w in workloads}  # (user, system) us per txn
        self.servers = {w: {n: [] for n in names} for w in workloads}   # server connections after a run
        self.log_lines = {n: [] for n in names}                         # (workload, round, line) on success
        self.loads = []


def run_round(rnd, args, cluster, running, results, meter):
    for key in args.workloads:
        w = WORKLOADS[key]
        names = [n for n in TARGETS if n in running]
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            target = running[name]
            load = os.getloadavg()[0]
            results.loads.append(load)
            offset = log_size(target)
            cpu = None
            pooler = None
            try:
                if not target.alive():
                    raise T.BenchError(f"{target.label} is no longer running")
                pid = getattr(target, "pid", None)
                pooler0 = T.process_cpu(pid) if pid else None
                cpu0 = meter.snapshot()
                tps, done = T.run_pgbench_counted(target.port, DB, w.clients(args), args.threads, args.duration,
                                                  w.extra, select_only=w.select_only)
                pooler1 = T.process_cpu(pid) if pid else None
                meter.settle()
                cpu = T.CpuMeter.usage(cpu0, meter.snapshot())
                if cpu:
                    results.cpu[key][name].append(cpu)
                if pooler0 and pooler1 and done:
                    pooler = tuple(1e6 * (b - a) / done for a, b in zip(pooler0, pooler1))
                    results.pooler_cpu[key][name].append(pooler)
                for line in log_since(target, offset):
                    results.log_lines[name].append((key, rnd, line))
            except T.BenchError as e:
                tps = None
                alive = target.alive()
                lines = log_since(target, offset)
                if not alive:
                    lines.append(f"({target.label} is no longer running)")
                results.errors[key][name].append((rnd, str(e), lines))
                print(f"round {rnd + 1} {key}: {name} FAILED: {e}", flush=True)
                for line in lines:
                    print(f"    {name} log: {line}", flush=True)
            results.servers[key][name].append(server_connections(target, cluster))
            results.tps[key][name].append(tps)
            if tps is not None:
                cpu_text = (f", CPU ours {100 * cpu['ours']:.0f} % others {100 * cpu['others']:.0f} %"
                            if cpu else "")
                if pooler:
                    cpu_text += f", pooler {pooler[0]:.1f} + {pooler[1]:.1f} µs/txn"
                print(f"round {rnd + 1} {key:10} {name:10} {tps:10,.0f} tps   (load {load:.2f}{cpu_text}, "
                      f"server connections after: {results.servers[key][name][-1]})", flush=True)


# --------------------------------------------------------------------------- report

def med(results, key, name):
    return PC.median(results.tps[key].get(name, []))


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}"


def summary_table(args, results, names):
    cols = [n for n in TARGETS if n in names]
    header = ["workload", "pgbench"] + [f"{LABELS[n]} TPS" for n in cols]
    if "pgpilot" in cols and "pgbouncer" in cols:
        header.append("pgpilot / PgBouncer")
    if "pgpilot" in cols and "direct" in cols:
        header.append("pgpilot / direct")
    if "pgbouncer" in cols and "direct" in cols:
        header.append("PgBouncer / direct")
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for key in args.workloads:
        w = WORKLOADS[key]
        m = {n: med(results, key, n) for n in cols}
        cells = [f"`{key}`", f"`{w.command(args)}`"] + [PC.fmt_tps(m[n]) for n in cols]
        if "pgpilot" in cols and "pgbouncer" in cols:
            cells.append(f"**{fmt_ratio(PC.ratio(m['pgpilot'], m['pgbouncer']))}**")
        if "pgpilot" in cols and "direct" in cols:
            cells.append(fmt_ratio(PC.ratio(m["pgpilot"], m["direct"])))
        if "pgbouncer" in cols and "direct" in cols:
            cells.append(fmt_ratio(PC.ratio(m["pgbouncer"], m["direct"])))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pooler_cpu(results, key, name):
    """Median user and system microseconds per transaction of the pooler process; None."""
    runs = results.pooler_cpu[key].get(name) or []
    if not runs:
        return None
    return statistics.median(u for u, _ in runs), statistics.median(s for _, s in runs)


def fmt_pooler_cpu(results, key, name):
    m = pooler_cpu(results, key, name)
    return "–" if m is None else f"{m[0]:.1f} + {m[1]:.1f} µs"


def pooler_cpu_table(args, results, names):
    cols = [n for n in ("pgbouncer", "pgpilot") if n in names]
    if not cols:
        return []
    lines = ["| workload | " + " | ".join(f"{LABELS[n]} user + system" for n in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for key in args.workloads:
        lines.append(f"| `{key}` | " + " | ".join(fmt_pooler_cpu(results, key, n) for n in cols) + " |")
    return lines


def goal_lines(args, results, names):
    out = []
    if not ("pgpilot" in names and "pgbouncer" in names):
        return out
    for key, minimum in GOALS:
        if key not in args.workloads:
            continue
        r = PC.ratio(med(results, key, "pgpilot"), med(results, key, "pgbouncer"))
        verdict = "no figure" if r is None else ("**met**" if r >= minimum else "**not met**")
        out.append(f"- `{WORKLOADS[key].command(args)}`: pgpilot/PgBouncer "
                   f"{fmt_ratio(r)}, target at least {minimum:.2f}: {verdict}")
    return out


def detail_table(args, results, key, names):
    header = (["target"] + [f"round {i + 1}" for i in range(args.rounds)]
              + ["median", "vs direct", "vs PgBouncer", "CPU: bench / others",
                 "pooler CPU per transaction (user + system)", "server connections after"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    direct = med(results, key, "direct") if "direct" in names else None
    bouncer = med(results, key, "pgbouncer") if "pgbouncer" in names else None
    for name in names:
        tps = results.tps[key][name]
        m = PC.median(tps)
        cpu = results.cpu[key][name]
        cpu_cell = (f"{100 * statistics.median(c['ours'] for c in cpu):.0f} % / "
                    f"{100 * statistics.median(c['others'] for c in cpu):.0f} %") if cpu else "–"
        servers = [s for s in results.servers[key][name] if s is not None]
        server_cell = (f"{min(servers)}–{max(servers)}" if servers and min(servers) != max(servers)
                       else (str(servers[0]) if servers else "–"))
        cells = ([name] + [PC.fmt_tps(t) if t is not None else "failed" for t in tps]
                 + [PC.fmt_tps(m), fmt_ratio(PC.ratio(m, direct)), fmt_ratio(PC.ratio(m, bouncer)),
                    cpu_cell, fmt_pooler_cpu(results, key, name), server_cell])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def failure_section(args, results, names):
    lines = []
    for key in args.workloads:
        for name in names:
            for rnd, message, log_lines in results.errors[key][name]:
                lines += [f"### {name}, `{WORKLOADS[key].command(args)}`, round {rnd + 1}", "",
                          "pgbench (last lines) / error:", "", "```", message.strip(), "```", ""]
                if name != "direct":
                    lines += [f"{LABELS[name]}'s log lines written during that run:", "", "```",
                              *(log_lines or ["(none)"]), "```", ""]
    return lines


def report(args, results, running, failed_to_start, meta):
    m = meta["machine"]
    la0, la1 = meta["load_start"], meta["load_end"]
    names = [n for n in TARGETS if n in running]
    cpus = [c for per in results.cpu.values() for runs in per.values() for c in runs]
    lines = [f"# Transaction pooling: direct vs PgBouncer vs pgpilot, {meta['date']}", ""]
    lines += [T.describe_load_wait(meta["load_wait"], args.max_load), ""]
    if results.loads:
        lines += [f"**Load average {la0[0]:.2f} at the start of the runs, {la1[0]:.2f} at the end** "
                  f"(1-minute; at the start of each run {min(results.loads):.2f} to {max(results.loads):.2f}; "
                  "it counts the benchmark's own clients and backends too).", ""]
    if cpus:
        others = sorted(100 * c["others"] for c in cpus)
        ours = sorted(100 * c["ours"] for c in cpus)
        lines += [f"During the pgbench runs, processes that are not the benchmark's used {others[0]:.0f} to "
                  f"{others[-1]:.0f} % (median {statistics.median(others):.0f} %) of the machine's "
                  f"{m['cores']} cores; the benchmark's own {ours[0]:.0f} to {ours[-1]:.0f} % "
                  f"(median {statistics.median(ours):.0f} %).", ""]
    lines += ["## Summary (TPS: median over the rounds; ratios of medians)", ""]
    lines += summary_table(args, results, names) + [""]
    cpu_table = pooler_cpu_table(args, results, names)
    if cpu_table:
        lines += ["Pooler CPU per transaction (the pooler process's user and system time over the run, "
                  "all its threads, divided by the transactions pgbench processed; median over the "
                  "rounds; `-C` counts a connection per transaction):", ""] + cpu_table + [""]
    goals = goal_lines(args, results, names)
    if goals:
        lines += ["Targets of issue 4 on this machine:", ""] + goals + [""]
    failed = [(key, n) for key in args.workloads for n in names if results.errors[key][n]]
    if failed:
        lines += ["Failed runs (details below): " + ", ".join(
            f"{n} `{key}` ({len(results.errors[key][n])} of {args.rounds})" for key, n in failed) + ".", ""]
    lines += [
        "## How this was measured",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {T.machine_text(m)}; "
        f"load average (1, 5, 15 min) at the start {', '.join(f'{x:.2f}' for x in la0)}, "
        f"at the end {', '.join(f'{x:.2f}' for x in la1)}. Everything (PostgreSQL, the poolers, pgbench) "
        "shares these cores with whatever else runs on the machine; compare targets within this "
        "report, not figures across reports.",
        f"- Revision: {meta['revision']}; pgpilot binary {meta['pgpilot']}.",
        f"- Packages (Debian 12): {T.packages_text(meta['packages'])}.",
        f"- Cluster: test/integration/pgcluster.py, one PostgreSQL 15 server on 127.0.0.1, no standbys "
        f"(fsync off, synchronous_commit off, shared_buffers 16MB, trust), max_connections raised to "
        f"{args.max_connections} (ALTER SYSTEM and a restart) so that {args.many_clients} direct clients fit; "
        f"database `{DB}` made by `pgbench -i -s {args.scale}`.",
        f"- Each run: `pgbench -h 127.0.0.1 -U postgres [-S] -c N -j {args.threads} -T {args.duration} "
        f"[...] {DB}` (see the table); the figure is pgbench's `tps`. A run fails when pgbench exits "
        "non-zero, reports failed transactions, prints no tps or does not finish within 120 s of its "
        f"duration. {args.rounds} round{'s' if args.rounds > 1 else ''}; in a round every workload runs on "
        "every target once, one run at a time; the target that goes first rotates from round to round.",
        "- CPU column: share of the machine's CPU capacity during each run, median over the rounds, for "
        "the benchmark's processes (this script's descendants and the PostgreSQL server) and for all "
        "other processes, as in bench/pgbench_compare.py.",
        "- Server connections after: the pooler's established TCP connections to PostgreSQL right after "
        "each run (its socket descriptors in /proc/PID/fd matched in /proc/net/tcp; both poolers keep "
        "idle server connections for 600 s, so this is how many it opened; range over the rounds). "
        "pgpilot's count includes its own health-check and replication-check connections (to the "
        "database postgres, `[health_check]`), so its pool of 20 shows as 21 or 22. "
        "Direct: one backend per client.",
        "- Targets and their pool limits:",
    ]
    for name in names:
        lines.append(f"  - `{name}`: {running[name].description}. Limits: {running[name].limits}.")
    for name, why in failed_to_start.items():
        lines.append(f"  - `{name}`: **{why}**")
    enough = args.pool_size >= args.clients
    lines.append(
        f"- Pool limits against the workloads: with {args.clients} clients, pool_size {args.pool_size} "
        + ("is enough for every client at once: none waits for a server connection" if enough else
           "is less than the clients: they queue for server connections")
        + f"; with {args.many_clients} clients both poolers multiplex them over at most {args.pool_size} "
        f"server connections (the others wait in the pooler's queue) while direct runs {args.many_clients} "
        f"backends. pgpilot's max_backend_connections ({args.max_backend_connections}) is above "
        "pool_size, so pool_size is the limit that applies.")
    lines += [
        "- PgBouncer 1.18 does not track protocol-level prepared statements in transaction mode "
        "(that came with 1.21's max_prepared_statements): a `-M prepared` client whose Bind lands on "
        "another server connection than its Parse gets `prepared statement \"P_0\" does not exist` "
        "(and `already exists` where another client's Parse ran). "
        "pgpilot re-prepares such statements on the connection it hands out (docs/pooling.md).",
        "",
        "## Per workload",
        "",
    ]
    for key in args.workloads:
        lines += [f"### `{WORKLOADS[key].command(args)}`", ""] + detail_table(args, results, key, names) + [""]
    for name in names:
        seen = results.log_lines.get(name) or []
        if seen and name == "pgpilot":
            lines += [f"{LABELS[name]} logged {len(seen)} line(s) during runs that succeeded "
                      "(log_level warning); the first ones:", "", "```"]
            lines += [f"[{key} round {rnd + 1}] {line}" for key, rnd, line in seen[:20]] + ["```", ""]
    fs = failure_section(args, results, names)
    if fs:
        lines += ["## Failures", ""] + fs
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    args = parse_args(argv)
    if "pgpilot" in args.targets and not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")
    args.pgpilot = os.path.abspath(args.pgpilot)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, PC._raise_interrupt)
    T.ensure_packages([p for t in args.targets for p in T.PACKAGES.get(t, [])])
    load_wait = T.wait_for_load(args.max_load, args.load_interval, args.max_wait,
                                log=lambda s: print(s, flush=True))
    meta = {"date": datetime.date.today().isoformat(), "machine": T.machine_info(), "load_wait": load_wait,
            "revision": T.git_revision(), "packages": T.package_versions(),
            "pgpilot": os.path.relpath(args.pgpilot, REPO) if args.pgpilot.startswith(REPO) else args.pgpilot,
            "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/pooling_compare.py"]
                                + (sys.argv[1:] if argv is None else argv))}
    names = [n for n in TARGETS if n in args.targets]
    results = Results(args.workloads, names)
    running, failed_to_start = {}, {}
    with tempfile.TemporaryDirectory(prefix="pgpilot-bench-") as work:
        os.chmod(work, 0o755)
        with Cluster.start(os.path.join(work, "cluster"), standbys=0) as cluster, contextlib.ExitStack() as stack:
            print(f"cluster: primary={cluster.primary['port']}", flush=True)
            raise_max_connections(cluster, args.max_connections)
            cluster.psql(cluster.primary, f"CREATE DATABASE {DB}")
            print(f"pgbench -i -s {args.scale} {DB} ...", flush=True)
            T.run_init(cluster.primary["port"], DB, args.scale)
            cluster.psql(cluster.primary, "CHECKPOINT")
            for name in names:
                try:
                    running[name] = start_target(name, args, cluster, work, stack)
                    print(f"{name}: port {running[name].port}: {running[name].description}", flush=True)
                except Exception as e:  # noqa: BLE001 - reported, the other targets still run
                    failed_to_start[name] = f"failed to start: {PC.summary(e)}"
                    print(f"{name}: failed to start:\n{e}", flush=True)
                    if not isinstance(e, T.BenchError):
                        traceback.print_exc()
            meter = T.CpuMeter(lambda: [os.getpid()] + T.postmaster_pids(cluster))
            meta["load_start"] = os.getloadavg()
            for rnd in range(args.rounds):
                run_round(rnd, args, cluster, running, results, meter)
            meta["load_end"] = os.getloadavg()
            for name, target in running.items():
                if not target.alive():
                    print(f"warning: {name} died during the run; log:\n{target.log()[-3000:]}", flush=True)
            text = report(args, results, running, failed_to_start, meta)

    PC.write_report(args, meta["date"], text)


if __name__ == "__main__":
    T.run_main(main)
