#!/usr/bin/env bash
# Builds pgpilot with AddressSanitizer + UndefinedBehaviorSanitizer (-DPGPILOT_SANITIZE=ON: every
# report aborts, -fno-sanitize-recover) in build-asan/ and runs the unit tests there.
#
#   scripts/sanitize.sh                 unit tests (every ctest entry but the integration ones)
#   scripts/sanitize.sh --integration   also the integration tests (test/integration/, a real
#                                       PostgreSQL cluster and the sanitized pgpilot binary)
#
# Exits non-zero when a test fails or any sanitizer reported anything, even in a test that
# passed: the full output of every test (ctest's Testing/Temporary/LastTest.log) is searched for
# sanitizer reports, and ASan/LSan reports of processes whose exit status nobody checks (a
# pgpilot started by an integration test) are written to build-asan/sanitizer-reports/.
# Environment: PGPILOT_ASAN_BUILD_DIR (default build-asan); extra arguments after the options go
# to ctest (e.g. -R '^protocol:').
set -euo pipefail
cd "$(dirname "$0")/.."

integration=0
ctest_args=()
for arg in "$@"; do
  case $arg in
    --integration) integration=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) ctest_args+=("$arg") ;;
  esac
done
build_dir=${PGPILOT_ASAN_BUILD_DIR:-build-asan}

bash scripts/deps.sh
start=$SECONDS
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPILOT_SANITIZE=ON >/dev/null
if ! ninja -C "$build_dir" -j"$(nproc)" >"$build_dir/sanitize-build.log" 2>&1; then
  cat "$build_dir/sanitize-build.log" >&2
  echo "sanitize.sh: build failed" >&2
  exit 1
fi
echo "sanitize.sh: build took $((SECONDS - start)) s"

reports=$PWD/$build_dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
# log_path: one file per process that reported (asan.<pid>). GCC's UBSan runtime ignores it
# when combined with ASan and keeps writing to stderr; the LastTest.log scan below catches those.
# detect_leaks: LeakSanitizer is on by default with ASan on Linux; say so explicitly.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# For tests that measure memory: ASan keeps freed memory in quarantine and adds redzones, so RSS
# bounds tuned for the normal build do not hold here; such a test can look at this variable.
export PGPILOT_SANITIZED=1
export LSAN_OPTIONS="log_path=$reports/lsan${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

status=0
start=$SECONDS
# Sanitizer reports in the output of the tests ctest just ran, whether they passed or not.
scan_test_output() {
  local log=$build_dir/Testing/Temporary/LastTest.log
  [[ -f $log ]] || return 0
  if grep -qE 'runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer' "$log"; then
    echo "sanitize.sh: sanitizer reports in the output of $1 (from $log):" >&2
    grep -nE -B2 -A20 'runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)' "$log" | head -200 >&2
    status=1
  fi
}
echo "sanitize.sh: unit tests"
ctest --test-dir "$build_dir" -LE integration -E '^(integration|fuzz):' -j"$(nproc)" \
      --output-on-failure "${ctest_args[@]}" || status=1
scan_test_output "the unit tests"

# Integration tests: they exist once test/integration/CMakeLists.txt does (test/CMakeLists.txt
# adds the directory then); ctest labels them "integration" and runs them one at a time against a
# shared cluster (see that file).
if ((integration)); then
  if [[ -f test/integration/CMakeLists.txt ]]; then
    echo "sanitize.sh: integration tests"
    # As scripts/test.sh: the node-postgres client modules, and stop the test cluster if ctest
    # is interrupted (its cleanup fixture normally does).
    if [[ -f test/integration/node/package.json ]]; then
      (cd test/integration/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    trap '/usr/bin/python3 test/integration/pgcluster.py stop --dir "$build_dir/itest-cluster" >/dev/null 2>&1 || true' EXIT
    ctest --test-dir "$build_dir" -L integration --output-on-failure "${ctest_args[@]}" || status=1
    scan_test_output "the integration tests"
  else
    echo "sanitize.sh: --integration given but there is no test/integration/CMakeLists.txt" >&2
    status=1
  fi
fi
echo "sanitize.sh: tests took $((SECONDS - start)) s"

if compgen -G "$reports/*" >/dev/null; then
  echo "sanitize.sh: sanitizer reports:" >&2
  for f in "$reports"/*; do
    echo "=== $f" >&2
    cat "$f" >&2
  done
  status=1
fi
if ((status)); then
  echo "sanitize.sh: FAILED" >&2
else
  echo "sanitize.sh: no test failure and no sanitizer report"
fi
exit $status
