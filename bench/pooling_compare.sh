#!/usr/bin/env bash
# One command for the transaction-pooling benchmark: build, then bench/pooling_compare.py
# (arguments pass through): direct PostgreSQL vs PgBouncer vs pgpilot, both poolers in
# transaction mode; report in bench/results/<date>-pooling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec /usr/bin/python3 bench/pooling_compare.py --pgpilot "${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot" "$@"
