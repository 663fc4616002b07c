#!/usr/bin/python3
"""Soak test: 64 pgbench clients through pgpilot for a long time, watching pgpilot's memory and fds.

Starts its own cluster (test/integration/pgcluster.py: a primary and --standbys hot
standbys) and pgpilot in front of it (the integration-test config: session pooling,
2 workers), initialises pgbench at --scale, then runs three pgbench processes at once
for --seconds (default 600):

    pgbench           -c 24 -j 2    TPC-B (writes)
    pgbench -S        -c 32 -j 2    select-only
    pgbench -S -C     -c 8  -j 1    select-only, a new connection per transaction

Every --interval seconds (10) it records pgpilot's RSS, open fds, threads and CPU, the
client connections to pgpilot, the primary's client backends, the pgbench TPS (from
`pgbench -P`) and how many of the pgbench processes still run into
bench/results/soak-<stamp>.csv; at the end it plots them (gnuplot) into soak-<stamp>.png,
fits a line (least squares) to RSS and fds over the second half of the run (after the
warm-up) and prints the slopes per hour with a verdict, also written to soak-<stamp>.txt:

    flat      |slope| <= the threshold (--rss-threshold MiB/h, --fd-threshold fds/h)
    flat (within noise)  the slope is above the threshold but under 2 standard errors
    GROWING / SHRINKING  otherwise

The fds include pgpilot's idle backend connections, whose number may grow towards
[pool] max_pool per worker during the run (a ceiling, not a leak); so it also fits a line
to the fds that are neither client nor backend connections (other_fds = fds -
client_conns - backends), where a leaked socket or file would show.

Exit status: 0 all clean and flat; 1 a pgbench error, a failed transaction or pgpilot
died; 2 RSS or other_fds not flat.

    bash bench/soak.sh [--seconds 600]        (builds first, installs gnuplot-nox if missing)
    /usr/bin/python3 bench/soak.py [--seconds N] [--pgpilot build/proxy/pgpilot] [--interval 10]
"""

import argparse
import datetime
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
from harness import Pgpilot, client_env, pgbench, HOST, SUPERUSER, DATABASE  # noqa: E402
from pgcluster import Cluster  # noqa: E402
import hostile  # noqa: E402

COLUMNS = ["elapsed_s", "rss_mib", "hwm_mib", "fds", "threads", "cpu_pct", "client_conns",
           "backends", "backends_active", "backends_idle", "tps_tpcb", "tps_select", "tps_connect",
           "pgbench_running", "other_fds"]
PROGRESS = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps", re.M)


def proc_status(pid):
    """VmRSS, VmHWM (KiB) and Threads from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def established_to_port(port):
    """TCP connections in ESTABLISHED state whose local port is `port` (pgpilot's clients).
    The kernel's table may list an entry twice while it changes: count distinct pairs."""
    seen = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        seen.add((parts[1], parts[2]))
        except FileNotFoundError:
            pass
    return len(seen)


def primary_backends(cluster):
    """(total, active, idle) client backends on the primary, not counting this query's own."""
    out = cluster.psql(cluster.primary,
                       "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
                       "count(*) FILTER (WHERE state = 'idle') FROM pg_stat_activity "
                       "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    return tuple(int(x) for x in out.strip().split("|"))


def last_tps(path):
    """The TPS of the last `pgbench -P` progress line in a pgbench stderr file."""
    try:
        with open(path, errors="replace") as f:
            matches = PROGRESS.findall(f.read())
    except OSError:
        return ""
    return matches[-1][1] if matches else ""


def regression(xs, ys):
    """Least squares y = a + b x: (slope b, its standard error)."""
    n = len(xs)
    if n < 3:
        return float("nan"), float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return float("nan"), float("nan")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ssr = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return b, math.sqrt(ssr / (n - 2) / sxx)


def verdict(slope, stderr, threshold):
    if math.isnan(slope):
        return "UNKNOWN (too few samples)"
    if abs(slope) <= threshold:
        return "flat"
    if abs(slope) <= 2 * stderr:
        return "flat (within noise: slope under 2 standard errors)"
    return "GROWING" if slope > 0 else "SHRINKING"


def plot(csv_path, png_path, title, minutes):
    if not shutil.which("gnuplot"):
        print("gnuplot not found (apt-get install -y gnuplot-nox): no plot", file=sys.stderr)
        return False
    script = f"""
set terminal pngcairo size 1100,900 font ",10"
set output "{png_path}"
set datafile separator ","
set key autotitle columnhead left top opaque box
set offsets 0, 0, graph 0.35, 0
set lmargin 12
set grid
set multiplot layout 3,1 title "{title}"
set xlabel "minutes"
set xrange [0:{minutes:.2f}]
set ylabel "MiB"
set yrange [0:*]
plot "{csv_path}" using ($1/60):2 with linespoints pt 7 ps 0.5 title "pgpilot RSS", \\
     "" using ($1/60):3 with lines dt 2 title "pgpilot VmHWM"
set ylabel "count"
plot "{csv_path}" using ($1/60):4 with linespoints pt 7 ps 0.5 title "pgpilot open fds", \\
     "" using ($1/60):7 with linespoints pt 7 ps 0.5 title "client connections to pgpilot", \\
     "" using ($1/60):8 with linespoints pt 7 ps 0.5 title "backends on the primary"
set ylabel "tps (log scale)"
set logscale y
set yrange [*:*]
plot "{csv_path}" using ($1/60):11 with linespoints pt 7 ps 0.5 title "TPC-B", \\
     "" using ($1/60):12 with linespoints pt 7 ps 0.5 title "select-only", \\
     "" using ($1/60):13 with linespoints pt 7 ps 0.5 title "select-only -C"
unset multiplot
"""
    proc = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if proc.returncode != 0:
        print(f"gnuplot failed: {proc.stderr}", file=sys.stderr)
        return False
    return True


def pgbench_summary(name, path, code):
    """(ok, one-line summary) from a finished pgbench's stdout file."""
    with open(path, errors="replace") as f:
        out = f.read()
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    ok = code == 0 and tps and done and failed and failed.group(1) == "0"
    line = (f"{name:16} exit {code}, {done.group(1) if done else '?'} transactions, "
            f"{failed.group(1) if failed else '?'} failed, "
            f"{float(tps.group(1)) if tps else float('nan'):,.0f} tps")
    return ok, line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=600, help="how long pgbench runs (600)")
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples (10)")
    parser.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--standbys", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="pgpilot [server] workers")
    parser.add_argument("--max-pool", type=int, default=16,
                        help="pgpilot [pool] max_pool: idle backend connections kept per worker (16)")
    parser.add_argument("--tpcb-clients", type=int, default=24)
    parser.add_argument("--select-clients", type=int, default=32)
    parser.add_argument("--connect-clients", type=int, default=8, help="select-only with -C")
    parser.add_argument("--rss-threshold", type=float, default=8.0, help="MiB per hour (8)")
    parser.add_argument("--fd-threshold", type=float, default=60.0, help="fds per hour (60)")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args()
    if not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.results_dir, exist_ok=True)
    base = os.path.join(args.results_dir, f"soak-{stamp}")
    csv_path, png_path, txt_path = base + ".csv", base + ".png", base + ".txt"
    clients = args.tpcb_clients + args.select_clients + args.connect_clients
    hostile.raise_nofile(4 * clients + 4096)  # pgpilot inherits it
    runs = {  # name: (clients, jobs, extra pgbench arguments)
        "tpcb": (args.tpcb_clients, 2, []),
        "select": (args.select_clients, 2, ["-S"]),
        "connect": (args.connect_clients, 1, ["-S", "-C"]),
    }
    problems = []
    with tempfile.TemporaryDirectory(prefix="pgpilot-soak-") as work:
        os.chmod(work, 0o755)
        print(f"starting a primary and {args.standbys} standbys ...", flush=True)
        with Cluster.start(os.path.join(work, "cluster"), standbys=args.standbys) as cluster:
            overrides = {"server": {"workers": args.workers, "log_level": "info"},
                         "pool": {"max_pool": args.max_pool}}
            with Pgpilot(args.pgpilot, cluster, overrides, work) as px:
                pid = px.proc.pid
                print(f"pgpilot pid {pid} on port {px.port}; pgbench -i -s {args.scale} ...", flush=True)
                pgbench(px.port, "-i", "-s", str(args.scale), "-q", timeout=600)
                procs = {}
                for name, (n, jobs, extra) in runs.items():
                    if n <= 0:
                        continue
                    cmd = ["pgbench", "-h", HOST, "-p", str(px.port), "-U", SUPERUSER, "-c", str(n),
                           "-j", str(jobs), "-T", str(args.seconds), "-P", str(args.interval)] \
                        + extra + [DATABASE]
                    out = open(os.path.join(work, f"{name}.out"), "w")
                    err = open(os.path.join(work, f"{name}.err"), "w")
                    procs[name] = (subprocess.Popen(cmd, env=client_env(), stdin=subprocess.DEVNULL,
                                                    stdout=out, stderr=err), out, err)
                print(f"{clients} clients for {args.seconds}s ({', '.join(f'{k} {v[0]}' for k, v in runs.items())});"
                      f" sampling every {args.interval}s into {csv_path}", flush=True)
                t0 = time.monotonic()
                hz = os.sysconf("SC_CLK_TCK")
                rows = []
                prev_ticks, prev_t = cpu_ticks(pid), t0
                with open(csv_path, "w") as csv:
                    csv.write(",".join(COLUMNS) + "\n")
                    next_sample = t0
                    while True:
                        now = time.monotonic()
                        if not px.alive():
                            problems.append(f"pgpilot died (exit {px.proc.poll()}) at {now - t0:.0f}s")
                            break
                        running = sum(p.poll() is None for p, _, _ in procs.values())
                        status = proc_status(pid)
                        ticks = cpu_ticks(pid)
                        cpu = 100.0 * (ticks - prev_ticks) / hz / max(now - prev_t, 1e-6)
                        prev_ticks, prev_t = ticks, now
                        backends = primary_backends(cluster)
                        row = [round(now - t0, 1), round(status["VmRSS"] / 1024, 2),
                               round(status["VmHWM"] / 1024, 2), hostile.fd_count(pid),
                               status["Threads"], round(cpu, 1), established_to_port(px.port),
                               *backends] + [last_tps(os.path.join(work, f"{n}.err"))
                                          if n in procs and procs[n][0].poll() is None else ""
                                          for n in runs] + [running]
                        # fds that are neither a client nor a backend connection: listeners,
                        # the log, eventfds... A leak of sockets or files shows here even
                        # while the pool of idle backend connections fills up.
                        row.append(row[3] - row[6] - row[7])
                        rows.append(row)
                        csv.write(",".join(str(v) for v in row) + "\n")
                        csv.flush()
                        print("  " + "  ".join(f"{k}={v}" for k, v in zip(COLUMNS, row)), flush=True)
                        if all(p.poll() is not None for p, _, _ in procs.values()):
                            break
                        if now - t0 > args.seconds + 120:
                            problems.append("pgbench still running 120 s after its -T")
                            break
                        next_sample += args.interval
                        time.sleep(max(0.0, next_sample - time.monotonic()))
                summaries = []
                for name, (p, out, err) in procs.items():
                    try:
                        code = p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        code = p.wait()
                    out.close()
                    err.close()
                    ok, line = pgbench_summary(name, os.path.join(work, f"{name}.out"), code)
                    summaries.append(line)
                    if not ok:
                        problems.append(f"pgbench {name}: {line}")
                        with open(os.path.join(work, f"{name}.err"), errors="replace") as f:
                            tail = [l for l in f.read().splitlines() if not l.startswith("progress:")]
                        print(f"--- pgbench {name} stderr ---\n" + "\n".join(tail[-20:]))
                alive = px.alive()
                log_copy = base + ".log"
                shutil.copyfile(px.log_path, log_copy)
            if not alive:
                problems.append("pgpilot was not running at the end")

    # Slopes over the second half (after the warm-up), while every pgbench still ran (a
    # sample at the very end may catch the clients disconnecting).
    half = [r for r in rows
            if args.seconds / 2 <= r[0] < args.seconds - 1
            and r[COLUMNS.index("pgbench_running")] == len(procs)]
    hours = [r[0] / 3600 for r in half]
    rss_slope, rss_se = regression(hours, [r[1] for r in half])
    fd_slope, fd_se = regression(hours, [r[3] for r in half])
    other_slope, other_se = regression(hours, [r[COLUMNS.index("other_fds")] for r in half])
    backend_slope, backend_se = regression(hours, [r[COLUMNS.index("backends")] for r in half])
    rss_verdict = verdict(rss_slope, rss_se, args.rss_threshold)
    fd_verdict = verdict(fd_slope, fd_se, args.fd_threshold)
    other_verdict = verdict(other_slope, other_se, args.fd_threshold)
    rss = [r[1] for r in rows]
    fds = [r[3] for r in rows]
    title = (f"pgpilot soak {stamp}: {clients} pgbench clients, {args.seconds}s "
             f"(RSS {rss_slope:+.1f} MiB/h, fds {fd_slope:+.0f}/h over the 2nd half)")
    plotted = plot(csv_path, png_path, title, (rows[-1][0] if rows else args.seconds) / 60 + 0.05)
    report = [
        f"pgpilot soak {stamp}: {args.seconds}s, {clients} pgbench clients "
        f"(TPC-B {args.tpcb_clients}, -S {args.select_clients}, -S -C {args.connect_clients}), "
        f"scale {args.scale}, {args.standbys} standbys, pgpilot workers {args.workers}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end",
        *summaries,
        f"samples: {len(rows)} every {args.interval}s; second half: {len(half)} samples",
        f"RSS MiB: first {rss[0] if rss else '?'}, min {min(rss, default='?')}, "
        f"max {max(rss, default='?')}, last {rss[-1] if rss else '?'}",
        f"fds: first {fds[0] if fds else '?'}, min {min(fds, default='?')}, "
        f"max {max(fds, default='?')}, last {fds[-1] if fds else '?'}",
        f"RSS slope over the second half: {rss_slope:+.2f} MiB/h (standard error {rss_se:.2f}; "
        f"threshold {args.rss_threshold}): {rss_verdict}",
        f"fds slope over the second half: {fd_slope:+.1f} /h (standard error {fd_se:.1f}; "
        f"threshold {args.fd_threshold}): {fd_verdict}",
        f"  of which backend connections (primary's client backends): {backend_slope:+.1f} /h "
        f"(standard error {backend_se:.1f}) -- the idle pool fills up to max_pool "
        f"({args.max_pool}) per worker, which is growth with a ceiling",
        f"fds that are neither client nor backend connections: slope {other_slope:+.1f} /h "
        f"(standard error {other_se:.1f}): {other_verdict}",
        f"csv: {csv_path}",
        f"png: {png_path if plotted else '(none)'}",
        f"pgpilot log: {log_copy}",
    ] + [f"PROBLEM: {p}" for p in problems]
    text = "\n".join(report) + "\n"
    with open(txt_path, "w") as f:
        f.write(text)
    print("\n" + text, end="")
    if problems:
        return 1
    # fds may grow while the idle pool fills: a leak shows in the fds that are not connections.
    if not (rss_verdict.startswith("flat") and other_verdict.startswith("flat")):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
