#!/usr/bin/python3
"""Instructions per transaction: PgBouncer and pgpilot counted by callgrind, side by side.

TPS ratios of two poolers on this shared 2-core machine move by 15 % from one run to the next
(bench/pooling_compare.py); the instructions a pooler executes for a given number of
transactions do not (a few per cent, with the timing of pool waits). Both poolers run under
`valgrind --tool=callgrind --instr-atstart=no` in front of the same primary, in transaction
pooling with the same pool size. After a warm-up run, instrumentation is switched on
(`callgrind_control -i on`) for exactly one pgbench run of a fixed number of transactions,
then off, and the pooler is stopped: valgrind's "I refs" total divided by the transactions
pgbench reports is the figure. It counts the pooler's own user-space instructions (its
libraries included, the kernel not): what the pooler makes the CPU do per transaction,
apart from system calls. Under valgrind a pooler runs 20-50 times slower, so only the counts
mean anything here, not the rates.

The report goes to bench/results/<date>-instructions.md. Needs valgrind (installed if
missing) and the pgbouncer package.
"""

import argparse
import contextlib
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import targets as T  # noqa: E402
import pgbench_compare as PC  # noqa: E402  (write_report)
from pgcluster import Cluster  # noqa: E402  (targets.py put test/integration on the path)

DB = "bench"
TARGETS = ["pgbouncer", "pgpilot"]
VALGRIND = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pgpilot", default=os.path.join(T.REPO, "build", "proxy", "pgpilot"))
    parser.add_argument("--targets", type=PC.csv_list(TARGETS), default=",".join(TARGETS))
    parser.add_argument("--pgbench-args", default="-S",
                        help="the workload: pgbench options besides clients, threads and -t "
                             "(e.g. \"-S -M prepared\", or \"\" for TPC-B)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--transactions", type=int, default=500, help="per client (pgbench -t)")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1,
                        help="pgpilot [server] workers (PgBouncer has one thread)")
    parser.add_argument("--pool-size", type=int, default=20,
                        help="pgpilot pool_size and PgBouncer default_pool_size")
    parser.add_argument("--name", default="instructions", help="report file: <results-dir>/<date>-<name>.md")
    parser.add_argument("--results-dir", default=os.path.join(T.REPO, "bench", "results"))
    args = parser.parse_args(argv)
    if min(args.clients, args.threads, args.transactions, args.pool_size, args.workers) < 1:
        parser.error("--clients, --threads, --transactions, --pool-size and --workers must be positive")
    return args


class CallgrindPgbouncer(T.Pgbouncer):
    """PgBouncer under callgrind; it runs as the postgres OS user, and so must
    callgrind_control (valgrind's gdbserver files are per user)."""

    def __init__(self, work, cluster, pool_size):
        super().__init__(work, cluster, pool_mode="transaction", pool_size=pool_size, max_client_conn=1000)
        self.out = os.path.join(self.dir, "callgrind.out")

    def command(self):
        # vgdb's files carry the user name from LOGNAME: the same one callgrind_control will
        # have under runuser (the harness starts the process as postgres, with root's
        # environment otherwise).
        return (["env", f"LOGNAME={T.OS_USER}", f"USER={T.OS_USER}"] + VALGRIND
                + [f"--callgrind-out-file={self.out}"] + super().command())

    def control(self, *args):
        prefix = ["runuser", "-u", T.OS_USER, "--"] if os.geteuid() == 0 else []
        _control(prefix, self.pid, args)

    def finish(self):
        self.stop()
        return self.log()


class CallgrindPgpilot(T.PgpilotTarget):
    """pgpilot under callgrind, started through a wrapper script that execs valgrind (so that
    the process the harness starts and signals is valgrind's)."""

    def __init__(self, binary, work, cluster, args):
        wrapper = os.path.join(work, "pgpilot-callgrind.sh")
        out = os.path.join(work, "pgpilot.callgrind.%p")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in VALGRIND + [
                f"--callgrind-out-file={out}", binary]) + ' "$@"\n')
        os.chmod(wrapper, 0o755)
        pool = {"pool_mode": "transaction", "pool_size": args.pool_size}
        super().__init__(wrapper, cluster, work, primary_only=True, workers=args.workers,
                         max_pool=args.pool_size, pool=pool)

    def control(self, *args):
        _control([], self.pid, args)

    def finish(self):
        code = self.px.terminate()
        if code != 0:
            raise T.BenchError(f"pgpilot under valgrind exited with {code}:\n{self.px.log()[-3000:]}")
        return self.px.log()

    def __exit__(self, *exc):
        if self.px.proc is None:  # finish() stopped it and checked its exit
            return False
        return super().__exit__(*exc)


def _control(prefix, pid, args):
    proc = subprocess.run(prefix + ["callgrind_control", *args, str(pid)], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0 or "OK." not in proc.stdout:
        raise T.BenchError(f"callgrind_control {' '.join(args)} {pid} failed: {proc.stdout} {proc.stderr}")


def instructions_in(log):
    """valgrind's total of executed instructions ("==123== I   refs:      32,539,366")."""
    found = re.findall(r"I\s+refs:\s+([\d,]+)", log)
    if not found:
        raise T.BenchError(f"no \"I refs\" total in the log:\n{log[-3000:]}")
    return int(found[-1].replace(",", ""))


def pgbench(port, args, transactions):
    """Runs `transactions` per client; (transactions processed, the command without its port)."""
    extra = ["-n"] + shlex.split(args.pgbench_args)
    _, done = T.run_pgbench_counted(port, DB, args.clients, args.threads, None, extra, select_only=False,
                                    transactions=transactions, timeout=3600)
    command = " ".join(["-h", T.HOST, "-p", "PORT", "-U", T.SUPERUSER, "-c", str(args.clients), "-j",
                        str(args.threads), "-t", str(transactions)] + extra + [DB])
    return done, command


def measure(name, target, args):
    """Warm up, count one run, stop: (instructions, transactions, the pgbench command)."""
    pgbench(target.port, args, max(1, args.transactions // 10))  # pools filled, code paged in
    target.control("-i", "on")
    transactions, command = pgbench(target.port, args, args.transactions)
    target.control("-i", "off")
    total = instructions_in(target.finish())
    print(f"{name}: {total:,} instructions, {transactions:,} transactions: "
          f"{total / transactions:,.0f} per transaction", flush=True)
    return total, transactions, command


def report(args, results, meta):
    lines = [f"# Instructions per transaction, {meta['date']}", "",
             f"- Command: `{meta['command']}`",
             f"- Revision: {meta['revision']}",
             f"- Machine: {T.machine_text(meta['machine'])}",
             f"- Packages (Debian 12): {T.packages_text(meta['packages'])}", "",
             "Each pooler under `valgrind --tool=callgrind --instr-atstart=no`, transaction pooling, "
             f"pool size {args.pool_size}, in front of one PostgreSQL 15 primary (pgbench scale {args.scale}); "
             "instrumentation on only during the counted pgbench run (after a warm-up run of a tenth as "
             "many transactions). User-space instructions of the pooler process, its libraries "
             "included, the kernel not (bench/instructions.py).", "",
             "| pooler | instructions | transactions | per transaction | vs PgBouncer |",
             "|---|---:|---:|---:|---:|"]
    base = results.get("pgbouncer")
    for name in TARGETS:
        if name not in results:
            continue
        total, transactions, _ = results[name]
        per = total / transactions
        ratio = f"{per / (base[0] / base[1]):.2f}x" if base else "-"
        lines.append(f"| {name} | {total:,} | {transactions:,} | {per:,.0f} | {ratio} |")
    commands = sorted({r[2] for r in results.values()})
    lines += ["", "Counted run: " + "; ".join(f"`pgbench {c}`" for c in commands) + ".",
              f"pgpilot: `{meta['pgpilot']}`, workers = {args.workers}.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if "pgpilot" in args.targets and not os.access(args.pgpilot, os.X_OK):
        sys.exit(f"no pgpilot binary at {args.pgpilot}: run bash scripts/build.sh")
    args.pgpilot = os.path.abspath(args.pgpilot)
    T.ensure_packages(["valgrind"] + [p for t in args.targets for p in T.PACKAGES.get(t, [])])
    meta = {"date": datetime.date.today().isoformat(), "machine": T.machine_info(),
            "revision": T.git_revision(), "packages": T.package_versions(),
            "pgpilot": os.path.relpath(args.pgpilot, T.REPO) if args.pgpilot.startswith(T.REPO) else args.pgpilot,
            "command": " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/instructions.py"]
                                + (sys.argv[1:] if argv is None else argv))}
    results = {}
    with tempfile.TemporaryDirectory(prefix="pgpilot-bench-") as work:
        os.chmod(work, 0o755)
        with Cluster.start(os.path.join(work, "cluster"), standbys=0) as cluster:
            cluster.psql(cluster.primary, f"CREATE DATABASE {DB}")
            T.run_init(cluster.primary["port"], DB, args.scale)
            cluster.psql(cluster.primary, "CHECKPOINT")
            for name in [n for n in TARGETS if n in args.targets]:
                target = (CallgrindPgbouncer(work, cluster, args.pool_size) if name == "pgbouncer"
                          else CallgrindPgpilot(args.pgpilot, work, cluster, args))
                with contextlib.ExitStack() as stack:
                    stack.enter_context(target)
                    print(f"{name}: port {target.port} under callgrind", flush=True)
                    results[name] = measure(name, target, args)
    PC.write_report(args, meta["date"], report(args, results, meta))


if __name__ == "__main__":
    T.run_main(main)
