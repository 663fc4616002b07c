#!/usr/bin/env bash
# Build pgpilot, start a PostgreSQL 15 primary with two streaming standbys, and run
# pgpilot in front of them in the foreground. Ctrl-C stops pgpilot and the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
pgpilot=${PGPILOT_BUILD_DIR:-build}/proxy/pgpilot

python=/usr/bin/python3
demo_dir=$(mktemp -d /tmp/pgpilot-demo-XXXXXX)
cleanup() {
  set +e
  trap - EXIT INT TERM
  [[ -n "${pgpilot_pid:-}" ]] && kill -TERM "$pgpilot_pid" 2>/dev/null && wait "$pgpilot_pid" 2>/dev/null
  "$python" test/integration/pgcluster.py stop --dir "$demo_dir/cluster"
  rm -rf "$demo_dir"
  echo "demo.sh: pgpilot and the cluster are stopped."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$python" test/integration/pgcluster.py start --dir "$demo_dir/cluster" --standbys 2
eval "$("$python" test/integration/pgcluster.py env --dir "$demo_dir/cluster")"
read -r port admin_port < <("$python" test/integration/harness.py write-config \
                             --cluster-dir "$demo_dir/cluster" --out "$demo_dir/pgpilot.toml" --admin)

cat <<INFO

PostgreSQL: primary on 127.0.0.1:$PGC_PRIMARY_PORT, standbys on $PGC_STANDBY_PORTS (trust auth).
pgpilot config: $demo_dir/pgpilot.toml

Connect through pgpilot from another terminal:

    psql -h 127.0.0.1 -p $port -U postgres postgres

The nodes, pools and Prometheus metrics over HTTP (docs/admin.md):

    curl -s http://127.0.0.1:$admin_port/nodes
    curl -s http://127.0.0.1:$admin_port/metrics

Ctrl-C here stops pgpilot and the cluster.

INFO

"$pgpilot" -f "$demo_dir/pgpilot.toml" &
pgpilot_pid=$!
wait "$pgpilot_pid" || true
pgpilot_pid=
