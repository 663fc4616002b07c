#!/usr/bin/env bash
# One command for the idle-client memory benchmark: build, then bench/idle_clients.py
# (arguments pass through): RSS of pgpilot and of PgBouncer with 10,000 idle clients each;
# report in bench/results/<date>-idle-clients.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec /usr/bin/python3 bench/idle_clients.py --pgpilot "${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot" "$@"
