#!/usr/bin/python3
"""pgbench -S directly against PostgreSQL and through pgpilot, in alternating rounds.

Starts a throwaway primary (pgcluster.py), pgpilot in session mode in front of it,
initialises pgbench at scale 10, then runs `pgbench -S -c 16 -j 2 -T 20`, with
and without -C (a new connection per transaction), alternating direct and
pgpilot, 3 rounds each. Prints TPS per round, the medians and pgpilot/direct,
and writes the same table to bench/results/<date>.md. Cleans up after itself.

    bash bench/pgbench_compare.sh            (builds first)
    /usr/bin/python3 bench/pgbench_compare.py [--pgpilot build/proxy/pgpilot] [--duration 20] [--rounds 3]
"""

import argparse
import contextlib
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
from harness import Pgpilot, pgbench  # noqa: E402
from pgcluster import Cluster  # noqa: E402

MODES = {"-S": [], "-S -C": ["-C"]}


def run_pgbench(port, clients, threads, duration, extra):
    out = pgbench(port, "-S", "-c", str(clients), "-j", str(threads), "-T", str(duration), *extra,
                  timeout=duration + 120).stdout
    m = re.search(r"^tps = ([\d.]+)", out, re.M)
    if not m:
        raise RuntimeError(f"no tps in pgbench output:\n{out}")
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if failed and failed.group(1) != "0":
        raise RuntimeError(f"pgbench reported failed transactions:\n{out}")
    return float(m.group(1))


def table(results, rounds):
    """Markdown: one row per mode and target, TPS per round, median; then the ratios."""
    header = ["mode", "target"] + [f"round {i + 1}" for i in range(rounds)] + ["median"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    targets = list(next(iter(results.values())).keys())
    for mode in MODES:
        for target in targets:
            tps = results[mode][target]
            cells = [f"`pgbench {mode}`", target] + [f"{t:,.0f}" for t in tps] + [f"{statistics.median(tps):,.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for mode in MODES:
        for target in targets[1:]:
            ratio = statistics.median(results[mode][target]) / statistics.median(results[mode]["direct"])
            lines.append(f"- `pgbench {mode}`: {target}/direct = {ratio:.2f}")
    return "\n".join(lines)


def git_revision():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pgpilot", default=os.path.join(REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--duration", type=int, default=20, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="pgpilot [server] workers")
    parser.add_argument("--backend-socket", action="store_true",
                        help="also run a second pgpilot that reaches PostgreSQL through its Unix "
                             "socket (the co-located deployment), reported as 'pgpilot-unix'")
    parser.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    args = parser.parse_args()
    if not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")

    names = ["direct", "pgpilot"] + (["pgpilot-unix"] if args.backend_socket else [])
    results = {mode: {name: [] for name in names} for mode in MODES}
    load_at_start = os.getloadavg()[0]  # a busy machine makes the rounds disagree
    with tempfile.TemporaryDirectory(prefix="pgpilot-bench-") as work:
        os.chmod(work, 0o755)
        with Cluster.start(os.path.join(work, "cluster"), standbys=0) as cluster:
            overrides = {"server": {"workers": args.workers, "log_level": "warning"},
                         "pool": {"max_pool": args.clients * 2}}
            with contextlib.ExitStack() as stack:
                px = stack.enter_context(Pgpilot(args.pgpilot, cluster, overrides, work, primary_only=True))
                targets = {"direct": cluster.primary["port"], "pgpilot": px.port}
                if args.backend_socket:
                    unix = dict(overrides, backend=[{"host": cluster.socket_dir,
                                                     "port": cluster.primary["port"]}])
                    pxu = stack.enter_context(Pgpilot(args.pgpilot, cluster, unix, work, primary_only=True))
                    targets["pgpilot-unix"] = pxu.port
                print(f"pgbench -i -s {args.scale} ...", flush=True)
                pgbench(targets["direct"], "-i", "-s", str(args.scale), "-q", timeout=600)
                for rnd in range(args.rounds):
                    for mode, extra in MODES.items():
                        # Rotate which target goes first so none always runs on a warmer cache.
                        order = names[rnd % len(names):] + names[:rnd % len(names)]
                        for target in order:
                            tps = run_pgbench(targets[target], args.clients, args.threads, args.duration, extra)
                            results[mode][target].append(tps)
                            print(f"round {rnd + 1} pgbench {mode:6} {target:12} {tps:10,.0f} tps", flush=True)

    today = datetime.date.today().isoformat()
    report = (f"# pgbench: direct vs pgpilot, {today}\n\n"
              f"pgbench -S -c {args.clients} -j {args.threads} -T {args.duration} (and with -C), scale {args.scale}, "
              f"{args.rounds} alternating rounds; pgpilot session mode, {args.workers} workers"
              f"{' (pgpilot-unix: backend over the Unix socket)' if args.backend_socket else ''}; "
              f"PostgreSQL 15 primary on the same machine ({os.cpu_count()} cores, {platform.machine()}); "
              f"revision {git_revision()}; load average {load_at_start:.2f} at the start, "
              f"{os.getloadavg()[0]:.2f} at the end.\n\n" + table(results, args.rounds) + "\n")
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"{today}.md")
    with open(path, "w") as f:
        f.write(report)
    print("\n" + report)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
