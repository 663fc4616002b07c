#!/usr/bin/env bash
# One command for the instruction count: build, then bench/instructions.py (arguments pass
# through): PgBouncer and pgpilot under callgrind, the user-space instructions each executes
# per pgbench transaction; report in bench/results/<date>-instructions.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec /usr/bin/python3 bench/instructions.py --pgpilot "${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot" "$@"
