#!/usr/bin/env bash
# Everything CI runs: dependencies, build, the node-postgres modules, then ctest
# (unit tests and the integration tests; ctest's summary is the last output).
# PGPILOT_BUILD_DIR overrides the build directory (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${PGPILOT_BUILD_DIR:-build}
cluster_dir=$build_dir/itest-cluster
# ctest's cleanup fixture stops the test cluster; this covers an interrupted ctest.
trap '/usr/bin/python3 test/integration/pgcluster.py stop --dir "$cluster_dir" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM

bash scripts/build.sh
(cd test/integration/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
ctest --test-dir "$build_dir" --output-on-failure
