#!/usr/bin/python3
"""pgbench through pgpilot: initialisation, then the select-only and TPC-B scripts in every query mode."""

import re

import harness
from harness import check, pgbench

SCALE = 5
CLIENTS = 4
TRANSACTIONS_PER_CLIENT = 200


def check_pgbench_run(port, *args):
    """Run pgbench; every transaction must complete and none fail."""
    out = pgbench(port, "-c", str(CLIENTS), "-j", "2", "-t", str(TRANSACTIONS_PER_CLIENT), *args).stdout
    total = CLIENTS * TRANSACTIONS_PER_CLIENT
    check(f"number of transactions actually processed: {total}/{total}" in out,
          f"pgbench {' '.join(args)}: not all {total} transactions processed:\n{out}")
    check(re.search(r"^number of failed transactions: 0 ", out, re.M),
          f"pgbench {' '.join(args)}: failed transactions:\n{out}")


def test_pgbench(env):
    with env.pgpilot() as px:
        try:
            init = pgbench(px.port, "-i", "-s", str(SCALE), "-q")
            check("done in" in init.stderr, f"pgbench -i did not finish:\n{init.stderr}")
            check_pgbench_run(px.port, "-S")
            for mode in ("simple", "extended", "prepared"):
                check_pgbench_run(px.port, "-M", mode)
                check_pgbench_run(px.port, "-S", "-M", mode)
        finally:
            pgbench(env.primary_port, "-i", "-I", "d", check_exit=False)  # drop the pgbench tables


if __name__ == "__main__":
    raise SystemExit(harness.main())
