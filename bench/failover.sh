#!/usr/bin/env bash
# One command for the failover benchmark (bench/failover.py; arguments pass through, e.g.
# --runs 1): installs pgpool2 and postgresql-15 when missing, builds pgpilot when there is no
# binary yet, then runs the benchmark under `nice -n 5` (the machine is shared).
# Report: bench/results/failover-<date>.md. PGPILOT_BUILD_DIR overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in pgpool2 postgresql-15 postgresql-client-15; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "failover.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "failover.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/pgpilot-failover-apt.log 2>&1; then
    apt-get update -qq >>/tmp/pgpilot-failover-apt.log 2>&1 || { cat /tmp/pgpilot-failover-apt.log >&2; exit 1; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/pgpilot-failover-apt.log 2>&1 \
      || { cat /tmp/pgpilot-failover-apt.log >&2; exit 1; }
  fi
fi

binary="${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot"
if [[ ! -x "$binary" ]]; then
  nice -n 5 bash scripts/build.sh
fi
exec nice -n 5 /usr/bin/python3 bench/failover.py --pgpilot "$binary" "$@"
