#!/usr/bin/env bash
# One command for the benchmark: build, then bench/pgbench_compare.py (arguments pass through):
# direct PostgreSQL vs pgpilot vs PgBouncer vs pgpool-II, report in bench/results/<date>-compare.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec /usr/bin/python3 bench/pgbench_compare.py --pgpilot "${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot" "$@"
