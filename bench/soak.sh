#!/usr/bin/env bash
# One command for the soak test: build, install gnuplot-nox if missing (for the plot),
# then bench/soak.py (arguments pass through, e.g. --seconds 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if ! command -v gnuplot >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y gnuplot-nox >/dev/null || { apt-get update >/dev/null && apt-get install -y gnuplot-nox >/dev/null; }
    else
        echo "soak.sh: gnuplot not found (apt-get install gnuplot-nox): the run will have no plot" >&2
    fi
fi
exec /usr/bin/python3 bench/soak.py --pgpilot "${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot" "$@"
