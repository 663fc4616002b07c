#!/usr/bin/python3
"""pgbench -S against PostgreSQL directly, pgpilot, PgBouncer and pgpool-II, side by side in one run.

Starts a throwaway primary and two streaming standbys (test/integration/pgcluster.py), then
every target in front of them (bench/targets.py), creates a database `bench` and initialises
it with `pgbench -i` (scale 10). Then, in each round and for each workload, it runs the same
pgbench against every target one after the other, rotating which target goes first from one
round to the next. Workloads:

  select   `pgbench -S -c 16 -j 2 -T 20`: direct, pgpilot, pgbouncer, pgpool
  connect  the same with -C (a new connection per transaction): same targets
  lb       `pgbench -S` spread over the primary and both standbys: direct (primary only),
           pgpilot with `[load_balance] enabled = true`, pgpool-II with load_balance_mode = on.
           Also reports which node served the reads: select_cnt from SHOW POOL_NODES through
           the pooler, and pg_stat_database.xact_commit deltas on each node.

Prints TPS per round, medians and ratios, and writes a markdown report to
bench/results/<date>-<name>.md. Stops everything it started, also on failure or Ctrl-C.
A target that fails (or that this pgpilot build does not support, e.g. an unknown
[load_balance] table) is reported as such; the other targets still run.

    bash bench/pgbench_compare.sh            (builds first; arguments pass through)
    /usr/bin/python3 bench/pgbench_compare.py [--targets direct,pgpilot,pgbouncer,pgpool]
        [--workloads select,connect,lb] [--duration 20] [--rounds 3] [--name compare]
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
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as T  # noqa: E402
from pgcluster import Cluster  # noqa: E402  (targets.py put test/integration on the path)

REPO = T.REPO
DB = "bench"  # not "postgres": pgpool-II never caches connections to postgres, template0/1, regression
TARGETS = ["direct", "pgpilot", "pgbouncer", "pgpool"]


class Workload:
    def __init__(self, key, title, extra, targets, lb=False):
        self.key, self.title, self.extra, self.targets, self.lb = key, title, extra, targets, lb


WORKLOADS = {
    "select": Workload("select", "pgbench -S", [], ["direct", "pgpilot", "pgpilot-unix", "pgbouncer", "pgpool"]),
    "connect": Workload("connect", "pgbench -S -C", ["-C"],
                        ["direct", "pgpilot", "pgpilot-unix", "pgbouncer", "pgpool"]),
    "lb": Workload("lb", "pgbench -S, load balancing over primary + 2 standbys", [],
                   ["direct", "pgpilot-lb", "pgpool-lb"], lb=True),
}
# Which --targets name selects each instance.
INSTANCE_KIND = {"direct": "direct", "pgpilot": "pgpilot", "pgpilot-unix": "pgpilot", "pgpilot-lb": "pgpilot",
                 "pgbouncer": "pgbouncer", "pgpool": "pgpool", "pgpool-lb": "pgpool"}


def csv_list(allowed):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}; got {text!r}")
        return items
    return parse


def key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--targets", type=csv_list(TARGETS), default=",".join(TARGETS),
                        help="comma-separated, from " + ",".join(TARGETS))
    parser.add_argument("--workloads", type=csv_list(list(WORKLOADS)), default=",".join(WORKLOADS),
                        help="comma-separated, from " + ",".join(WORKLOADS))
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="pgpilot [server] workers")
    parser.add_argument("--backend-socket", action="store_true",
                        help="also run a second pgpilot that reaches PostgreSQL through its Unix "
                             "socket (the co-located deployment), reported as 'pgpilot-unix' "
                             "(select and connect workloads)")
    parser.add_argument("--pgbouncer-pool-mode", choices=["session", "transaction"], default="session")
    parser.add_argument("--pgpool-load-balance", choices=["off", "on"], default="off",
                        help="pgpool's load_balance_mode in the select and connect workloads "
                             "(always on in the lb workload)")
    parser.add_argument("--pgpool-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="extra pgpool.conf setting for every pgpool (VALUE as pgpool.conf wants it, "
                             "e.g. statement_level_load_balance=on)")
    parser.add_argument("--pgpilot-lb", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="extra key of pgpilot's [load_balance] table in the lb workload "
                             "(besides enabled = true), e.g. consistency=eventual, statement_level=true")
    parser.add_argument("--stats-settle", type=float, default=11.0,
                        help="lb workload: seconds to wait after a run before reading pg_stat_database "
                             "(idle backends flush their counters within 10 s in PostgreSQL 15)")
    parser.add_argument("--name", default="compare", help="report file: <results-dir>/<date>-<name>.md")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.clients < 1:
        parser.error("--rounds, --duration and --clients must be positive")
    return args


def instances_for(args):
    """Instance names to start, in display order (only those some selected workload uses)."""
    names = []
    for key in args.workloads:
        for name in WORKLOADS[key].targets:
            if INSTANCE_KIND[name] not in args.targets or name in names:
                continue
            if name == "pgpilot-unix" and not args.backend_socket:
                continue
            names.append(name)
    return names


def start_instance(name, args, cluster, work, stack):
    """Start one target; returns it (entered in stack)."""
    px_common = dict(workers=args.workers, max_pool=args.clients * 2)
    pgpool_options = dict(args.pgpool_option)
    if name == "direct":
        target = T.Direct(cluster)
    elif name == "pgpilot":
        target = T.PgpilotTarget(args.pgpilot, cluster, work, primary_only=True, **px_common)
    elif name == "pgpilot-unix":
        target = T.PgpilotTarget(args.pgpilot, cluster, work, primary_only=True, label="pgpilot-unix",
                                 backend_override=[{"host": cluster.socket_dir, "port": cluster.primary["port"]}],
                                 **px_common)
    elif name == "pgpilot-lb":
        lb = {"enabled": True}
        lb.update({k: T.parse_toml_scalar(v) for k, v in args.pgpilot_lb})
        target = T.PgpilotTarget(args.pgpilot, cluster, work, primary_only=False, load_balance=lb,
                                 label="pgpilot-lb", **px_common)
    elif name == "pgbouncer":
        target = T.Pgbouncer(work, cluster, pool_mode=args.pgbouncer_pool_mode, pool_size=args.clients,
                             max_client_conn=max(100, args.clients * 4))
    elif name == "pgpool":
        target = T.Pgpool(work, cluster, load_balance=args.pgpool_load_balance == "on",
                          num_init_children=args.clients + 4, options=pgpool_options, label="pgpool")
    elif name == "pgpool-lb":
        target = T.Pgpool(work, cluster, load_balance=True, num_init_children=args.clients + 4,
                          options=pgpool_options, label="pgpool-lb")
    else:
        raise ValueError(name)
    return stack.enter_context(target)


def fmt_tps(x):
    return "–" if x is None else f"{x:,.0f}"


def median(values):
    ok = [v for v in values if v is not None]
    return statistics.median(ok) if ok else None


class Results:
    def __init__(self, workloads, names):
        self.tps = {w: {n: [] for n in names} for w in workloads}      # None for a failed run
        self.errors = {w: {n: [] for n in names} for w in workloads}
        self.select_cnt = {n: {} for n in names}   # lb: summed deltas per node, or None
        self.xacts = {n: {} for n in names}
        self.node_status = {}
        self.loads = []                           # (workload, target, round, 1-min load at start)
        self.cpu = {w: {n: [] for n in names} for w in workloads}   # CpuMeter.usage per run


def run_round(rnd, args, cluster, running, results, meter):
    for key in args.workloads:
        w = WORKLOADS[key]
        names = [n for n in w.targets if n in running]
        if not names:
            continue
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            target = running[name]
            load = os.getloadavg()[0]
            results.loads.append((key, name, rnd, load))
            before = after = cpu = None
            if w.lb:
                before = (T.xact_commits(cluster, DB), T.pool_nodes(target.port, DB, cluster)[0])
            try:
                if not target.alive():
                    raise T.BenchError(f"{target.label} is no longer running")
                cpu0 = meter.snapshot()
                tps = T.run_pgbench(target.port, DB, args.clients, args.threads, args.duration, w.extra)
                meter.settle()
                cpu = T.CpuMeter.usage(cpu0, meter.snapshot())
                if cpu:
                    results.cpu[key][name].append(cpu)
            except T.BenchError as e:
                tps = None
                results.errors[key][name].append(f"round {rnd + 1}: {e}")
                print(f"round {rnd + 1} {w.title}: {name} FAILED: {e}", flush=True)
            results.tps[key][name].append(tps)
            if tps is not None:
                cpu_text = (f", CPU ours {100 * cpu['ours']:.0f} % others {100 * cpu['others']:.0f} %"
                            if cpu else "")
                print(f"round {rnd + 1} {key:8} {name:14} {tps:10,.0f} tps   (load {load:.2f}{cpu_text})",
                      flush=True)
            if w.lb:
                time.sleep(args.stats_settle)
                counts, status = T.pool_nodes(target.port, DB, cluster)
                after = (T.xact_commits(cluster, DB), counts)
                add_deltas(results.xacts[name], before[0], after[0])
                if before[1] is None or after[1] is None:
                    results.select_cnt[name] = None
                elif results.select_cnt[name] is not None:
                    add_deltas(results.select_cnt[name], before[1], after[1])
                if status:
                    results.node_status[name] = status


def add_deltas(acc, before, after):
    for node, value in after.items():
        acc[node] = acc.get(node, 0) + value - before.get(node, 0)


# --------------------------------------------------------------------------- report

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def tps_table(args, results, key, names, not_started):
    header = (["target"] + [f"round {i + 1}" for i in range(args.rounds)]
              + ["median", "vs direct", "CPU: bench / others"])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    direct = median(results.tps[key].get("direct", [])) if "direct" in names else None
    for name in names:
        if name in not_started:
            unsupported = not_started[name].startswith("not supported")
            why = "not supported by this build" if unsupported else "failed to start"
            lines.append(f"| {name} | {why} |" + " |" * (len(header) - 2))
            continue
        tps = results.tps[key][name]
        r = ratio(median(tps), direct)
        cpu = results.cpu[key][name]
        cpu_cell = (f"{100 * statistics.median(c['ours'] for c in cpu):.0f} % / "
                    f"{100 * statistics.median(c['others'] for c in cpu):.0f} %") if cpu else "–"
        cells = ([name] + [fmt_tps(t) for t in tps]
                 + [fmt_tps(median(tps)), "–" if r is None else f"{r:.2f}", cpu_cell])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio_lines(results, key, names):
    med = {n: median(results.tps[key][n]) for n in names}
    out = []
    pilots = [n for n in names if n.startswith("pgpilot")]
    for base in ("direct", "pgbouncer", "pgpool", "pgpool-lb"):
        if base not in names:
            continue
        for p in pilots:
            r = ratio(med[p], med[base])
            if r is not None:
                out.append(f"- {p}/{base} = {r:.2f}")
    for other in ("pgbouncer", "pgpool", "pgpool-lb"):
        if other in names and "direct" in names:
            r = ratio(med[other], med["direct"])
            if r is not None:
                out.append(f"- {other}/direct = {r:.2f}")
    return out


def share_table(cluster, results, names):
    nodes = [n["name"] for n in cluster.nodes]
    lines = ["| target | counter | " + " | ".join(nodes) + " | total |", "|---|---|" + "---:|" * (len(nodes) + 1)]
    for name in names:
        for label, data in (("SHOW POOL_NODES select_cnt", results.select_cnt.get(name)),
                            ("pg_stat_database xact_commit", results.xacts.get(name))):
            if data is None or not data:
                cells = ["not answered"] + [""] * len(nodes)
                if name == "direct" and label.startswith("SHOW"):
                    continue
            else:
                total = sum(max(0, data.get(n, 0)) for n in nodes)
                cells = [f"{data.get(n, 0):,} ({100 * data.get(n, 0) / total:.0f} %)" if total else "0"
                         for n in nodes] + [f"{total:,}"]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return lines


def report(args, cluster, running, failed_to_start, results, meta):
    today = meta["date"]
    lines = [f"# pgbench: direct vs pgpilot vs PgBouncer vs pgpool-II, {today}", ""]
    m = meta["machine"]
    la0, la1 = meta["load_start"], meta["load_end"]
    loads = [l for *_, l in results.loads]
    cpus = [c for per in results.cpu.values() for runs in per.values() for c in runs]
    lines += [
        f"**Load average {la0[0]:.2f} at the start, {la1[0]:.2f} at the end** "
        f"(1-minute; during the runs {min(loads):.2f} to {max(loads):.2f})." if loads else
        f"**Load average {la0[0]:.2f} at the start, {la1[0]:.2f} at the end.**",
        "",
    ]
    if cpus:
        others = sorted(100 * c["others"] for c in cpus)
        ours = sorted(100 * c["ours"] for c in cpus)
        lines += [
            f"During the pgbench runs, processes that are not the benchmark's used "
            f"{others[0]:.0f} to {others[-1]:.0f} % (median {statistics.median(others):.0f} %) of the "
            f"machine's {m['cores']} cores; the benchmark's own processes {ours[0]:.0f} to {ours[-1]:.0f} % "
            f"(median {statistics.median(ours):.0f} %). The load average counts the benchmark's own "
            f"runnable processes too ({args.clients} clients, as many busy backends, the pooler), so it "
            "is high during the runs even on an otherwise idle machine.",
            "",
        ]
    lines += [
        "## How this was measured",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {T.machine_text(m)}. "
        f"Load average (1, 5, 15 min) at the start {', '.join(f'{x:.2f}' for x in la0)}, "
        f"at the end {', '.join(f'{x:.2f}' for x in la1)}.",
        f"- Everything runs on this one machine and shares its {m['cores']} cores: the three PostgreSQL "
        "servers, pgpilot, PgBouncer, pgpool-II (and its children), pgbench, and whatever else was "
        "running on the machine (other engineers' builds and tests). The figures compare the targets "
        "with each other under the same conditions; they are not what any of them does on "
        "dedicated hardware.",
        f"- Revision: {meta['revision']}; pgpilot binary {meta['pgpilot']}.",
        f"- Packages (Debian 12): {T.packages_text(meta['packages'])}.",
        f"- Cluster: test/integration/pgcluster.py, a PostgreSQL 15 primary and 2 streaming hot "
        "standbys on 127.0.0.1 (fsync off, shared_buffers 16MB, max_connections 200), "
        f"database `{DB}` made by `pgbench -i -s {args.scale}` on the primary; the standbys had "
        "replayed it before the first run.",
        f"- Each run: `pgbench -h 127.0.0.1 -U postgres -S -c {args.clients} -j {args.threads} "
        f"-T {args.duration} [-C] {DB}`; the figure is pgbench's `tps`. {args.rounds} "
        f"round{'s' if args.rounds > 1 else ''}; in a round every workload runs on every target once, "
        "one run at a time, and the target that goes first rotates from round to round. Medians are "
        "over the rounds.",
        "- CPU column: share of the machine's CPU capacity (100 % = every core busy) during each "
        "pgbench run, median over the rounds, for the benchmark's processes (this script and its "
        "children: pgbench, pgpilot, the poolers; the PostgreSQL servers and their backends; "
        "utime + stime from /proc, exited children included) and for all other processes "
        "(/proc/stat user + nice + system minus the benchmark's). Interrupt time (loopback "
        "networking) is in neither.",
        "- Targets:",
    ]
    for name in running:
        lines.append(f"  - `{name}`: {running[name].description}")
    for name, why in failed_to_start.items():
        lines.append(f"  - `{name}`: **{why}**")
    if "lb" in args.workloads:
        lines.append(f"- Load balancing shares: deltas of `select_cnt` in `SHOW POOL_NODES` (through the "
                     f"pooler) and of `pg_stat_database.xact_commit` for `{DB}` on each node, summed over the "
                     f"rounds; read before each run and {args.stats_settle:g} s after it (PostgreSQL 15 "
                     "backends that go idle flush their counters within 10 s). Each pgbench -S transaction "
                     "is one SELECT, committed on the node that ran it.")
    notes = []
    if "pgpool" in args.targets:
        notes += [
            f"  - The database is `{DB}`, not `postgres`: pgpool-II never caches backend connections to "
            "`postgres`, `template0`, `template1` and `regression`, which would make its `-C` figure "
            "meaningless.",
            "  - pgpool-II in streaming-replication mode opens a connection to every backend (here 3) for "
            "each client session, also with load_balance_mode = off; each pgpool child keeps them "
            "(max_pool = 1, one user and database). Its load balancing picks a node per session unless "
            "statement_level_load_balance = on.",
        ]
    if "pgbouncer" in args.targets or "pgpool" in args.targets:
        notes.append("  - pgpilot resets a backend connection with `DISCARD ALL` before the next client gets it; "
                     "so does PgBouncer in session mode (server_reset_query), pgpool-II sends "
                     "`ABORT; DISCARD ALL` (reset_query_list).")
    if notes:
        lines += ["- Notes on the other poolers:"] + notes
    lines.append("")

    for key in args.workloads:
        w = WORKLOADS[key]
        names = [n for n in w.targets if n in running]
        shown = [n for n in w.targets if n in running or n in failed_to_start]
        lines += [f"## `{w.title}`" if key != "lb" else f"## {w.title}", ""]
        if not shown:
            lines += ["No target selected for this workload.", ""]
            continue
        lines += tps_table(args, results, key, shown, failed_to_start) + [""]
        rl = ratio_lines(results, key, names)
        if rl:
            lines += ["Ratios of medians:", ""] + rl + [""]
        errs = [(n, e) for n in names for e in results.errors[key][n]]
        if errs:
            lines += ["Failed runs:", ""] + [f"- {n}: {e.splitlines()[0]}" for n, e in errs] + [""]
        missing = [n for n in w.targets if INSTANCE_KIND[n] in args.targets and n in failed_to_start]
        for n in missing:
            lines += [f"- `{n}`: {failed_to_start[n]}", ""]
        if w.lb and names:
            lines += ["Share of the reads each node served:", ""] + share_table(cluster, results, names) + [""]
            for name in names:
                x = results.xacts.get(name) or {}
                on_standbys = sum(max(0, x.get(n["name"], 0)) for n in cluster.standbys)
                if name != "direct" and sum(x.values()) > 0 and on_standbys == 0:
                    lines += [f"- {name}: every read ran on the primary: nothing was load-balanced.", ""]
            for name, status in results.node_status.items():
                down = [n for n, s in status.items() if s != "up"]
                if down:
                    lines += [f"- {name}: SHOW POOL_NODES status not up at the end: {down}", ""]
    return "\n".join(lines).rstrip() + "\n"


def report_path(args, today):
    path = os.path.join(args.results_dir, f"{today}-{args.name}.md")
    if os.path.exists(path):  # never overwrite an earlier report
        path = os.path.join(args.results_dir, f"{today}-{args.name}-{datetime.datetime.now():%H%M%S}.md")
    return path


def write_report(args, today, text, path_for=report_path):
    """Write a report to args.results_dir (made if missing) under path_for(args, today), a name
    no earlier report has; print it and where it went. Returns the path."""
    os.makedirs(args.results_dir, exist_ok=True)
    path = path_for(args, today)
    with open(path, "w") as f:
        f.write(text)
    print("\n" + text)
    print(f"written to {path}")
    return path


def summary(error):
    """One line for the report: the first line of the error (without the path of a log that is
    gone by then) and the first FATAL or ERROR line of the log it quotes."""
    lines = str(error).splitlines() or [type(error).__name__]
    first = lines[0].split("; log /")[0]
    fatal = next((line.split(": ", 1)[-1].strip() for line in lines[1:]
                  if "FATAL" in line or "ERROR" in line), None)
    return f"{first}: {fatal}" if fatal else first


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    args = parse_args(argv)
    if "pgpilot" in args.targets and not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")
    args.pgpilot = os.path.abspath(args.pgpilot)
    # SIGTERM and SIGHUP unwind like Ctrl-C, so that everything started gets stopped.
    # (SIGINT explicitly too: a shell starts background jobs with SIGINT ignored.)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    T.ensure_packages([p for t in args.targets for p in T.PACKAGES.get(t, [])])

    meta = {"date": datetime.date.today().isoformat(), "machine": T.machine_info(),
            "load_start": os.getloadavg(), "revision": T.git_revision(), "packages": T.package_versions(),
            "pgpilot": os.path.relpath(args.pgpilot, REPO) if args.pgpilot.startswith(REPO) else args.pgpilot,
            "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/pgbench_compare.py"]
                                + (sys.argv[1:] if argv is None else argv))}
    names = instances_for(args)
    results = Results(args.workloads, names)
    running, failed_to_start = {}, {}
    with tempfile.TemporaryDirectory(prefix="pgpilot-bench-") as work:
        os.chmod(work, 0o755)
        with Cluster.start(os.path.join(work, "cluster"), standbys=2) as cluster, contextlib.ExitStack() as stack:
            ports = ", ".join(f"{n['name']}={n['port']}" for n in cluster.nodes)
            print(f"cluster: {ports}", flush=True)
            cluster.psql(cluster.primary, f"CREATE DATABASE {DB}")
            print(f"pgbench -i -s {args.scale} {DB} ...", flush=True)
            T.run_init(cluster.primary["port"], DB, args.scale)
            T.wait_replayed(cluster)
            for name in names:
                try:
                    running[name] = start_instance(name, args, cluster, work, stack)
                    print(f"{name}: port {running[name].port}: {running[name].description}", flush=True)
                except T.Unsupported as e:
                    failed_to_start[name] = str(e)
                    print(f"{name}: {e}", flush=True)
                except Exception as e:  # noqa: BLE001 - reported, the other targets still run
                    failed_to_start[name] = f"failed to start: {summary(e)}"
                    print(f"{name}: failed to start:\n{e}", flush=True)
                    if not isinstance(e, T.BenchError):
                        traceback.print_exc()
            meter = T.CpuMeter(lambda: [os.getpid()] + T.postmaster_pids(cluster))
            for rnd in range(args.rounds):
                run_round(rnd, args, cluster, running, results, meter)
            meta["load_end"] = os.getloadavg()
            text = report(args, cluster, running, failed_to_start, results, meta)
            for name, target in running.items():
                if hasattr(target, "alive") and not target.alive():
                    print(f"warning: {name} died during the run; log:\n{target.log()[-3000:]}", flush=True)

    write_report(args, meta["date"], text)


if __name__ == "__main__":
    T.run_main(main)
