#!/usr/bin/env bash
# Everything CI runs (.ci/run, as root on a fresh Debian 12): dependencies, build, the
# node-postgres modules, then
#   1. fuzz   every libFuzzer target for 60 s       scripts/fuzz.sh 60
#   2. asan   ASan+UBSan build, unit + integration  scripts/sanitize.sh --integration
#   3. tsan   TSan build, unit + multi-worker       scripts/sanitize.sh --thread
#             integration tests
#   4. ctest  unit and integration tests of the normal build (build/)
# Every stage runs even when an earlier one failed; any failure fails the script. The stages'
# results come after ctest, and ctest's summary is printed again as the last output.
#
# PGPILOT_QUICK=1 runs only the build and stage 4 (a quick local run).
# PGPILOT_BUILD_DIR overrides the build directory of stage 4 (default: build); the other
# stages use their scripts' directories (build-fuzz, build-asan, build-tsan) and variables.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${PGPILOT_BUILD_DIR:-build}
cluster_dir=$build_dir/itest-cluster
quick=0
if [[ -n ${PGPILOT_QUICK:-} && ${PGPILOT_QUICK} != 0 ]]; then quick=1; fi
# ctest's cleanup fixture stops the test cluster; this covers an interrupted ctest.
trap '/usr/bin/python3 test/integration/pgcluster.py stop --dir "$cluster_dir" >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM

results=()
failed=0
# run_stage NAME COMMAND...: runs it, records "NAME ok|FAILED (exit N), S s".
run_stage() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo "test.sh: === stage $name: $* ==="
  "$@" || rc=$?
  local took=$((SECONDS - start))
  if ((rc == 0)); then
    results+=("$(printf '%-6s ok                %5d s' "$name" "$took")")
  else
    results+=("$(printf '%-6s FAILED (exit %3d) %5d s' "$name" "$rc" "$took")")
    failed=1
  fi
  echo "test.sh: === stage $name: exit $rc after $took s ==="
}

start=$SECONDS
bash scripts/build.sh
(cd test/integration/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
results+=("$(printf '%-6s ok                %5d s' build $((SECONDS - start)))")

if ((quick)); then
  echo "test.sh: PGPILOT_QUICK=1: skipping the fuzz, asan and tsan stages"
else
  run_stage fuzz bash scripts/fuzz.sh 60
  run_stage asan bash scripts/sanitize.sh --integration
  run_stage tsan bash scripts/sanitize.sh --thread
fi

ctest_log=$(mktemp /tmp/pgpilot-ctest.XXXXXX)
ctest_start=$SECONDS
ctest_rc=0
echo "test.sh: === stage ctest: ctest --test-dir $build_dir --output-on-failure ==="
ctest --test-dir "$build_dir" --output-on-failure 2>&1 | tee "$ctest_log" || ctest_rc=${PIPESTATUS[0]}
if ((ctest_rc == 0)); then
  results+=("$(printf '%-6s ok                %5d s' ctest $((SECONDS - ctest_start)))")
else
  results+=("$(printf '%-6s FAILED (exit %3d) %5d s' ctest "$ctest_rc" $((SECONDS - ctest_start)))")
  failed=1
fi

echo
echo "test.sh: stages ($((SECONDS - start)) s in all$( ((quick)) && echo ", PGPILOT_QUICK=1"))"
printf '  %s\n' "${results[@]}"
echo
# ctest's summary again, last: from "NN% tests passed" to the end of its output.
sed -n '/^[0-9]*% tests passed/,$p' "$ctest_log"
rm -f "$ctest_log"
exit $((failed || ctest_rc != 0))
