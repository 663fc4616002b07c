#!/usr/bin/env bash
# Builds pgpilot with sanitizers and runs the tests against that build.
#
#   scripts/sanitize.sh                 AddressSanitizer + UndefinedBehaviorSanitizer
#                                       (-DPGPILOT_SANITIZE=ON: every report aborts,
#                                       -fno-sanitize-recover) in build-asan/: the unit tests
#                                       (every ctest entry but the integration ones)
#   scripts/sanitize.sh --integration   also every integration test (test/integration/, a real
#                                       PostgreSQL cluster and the sanitized pgpilot binary)
#   scripts/sanitize.sh --thread        ThreadSanitizer (-DPGPILOT_TSAN=ON) in build-tsan/: the
#                                       unit tests and the multi-worker integration tests
#                                       (tsan_suites below); with --integration, every one
#
# Exits non-zero when a test fails or any sanitizer reported anything, even in a test that
# passed: the full output of every test (ctest's Testing/Temporary/LastTest.log) is searched for
# sanitizer reports, and reports of processes whose exit status nobody checks (a pgpilot started
# by an integration test) are written to <build dir>/sanitizer-reports/ (log_path).
# ThreadSanitizer suppressions: test/tsan.supp (each with its reason).
# Environment: PGPILOT_ASAN_BUILD_DIR (default build-asan), PGPILOT_TSAN_BUILD_DIR (default
# build-tsan); extra arguments after the options go to ctest (e.g. -R '^protocol:').
set -euo pipefail
cd "$(dirname "$0")/.."

integration=0
thread=0
ctest_args=()
for arg in "$@"; do
  case $arg in
    --integration) integration=1 ;;
    --thread) thread=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) ctest_args+=("$arg") ;;
  esac
done
# The integration suites whose pgpilot runs several worker threads against shared state: a
# CancelRequest handled on another worker than its session (cancel), the node registry read by
# every worker and written by the HA thread (health, failover, control, replication_check,
# routing), the client and pool budgets shared by the workers (limits, pooling, pool_limits), and
# transaction pooling, where the cancel map entry of a session changes with every transaction's
# backend connection (transaction_pooling), and sessions parking and waking on their workers
# while shutdown and idle limits reach them (idle_clients), and the HTTP admin endpoint on worker
# 0 reading the pools, slots and counters the other workers change (admin).
tsan_suites=(cancel health failover control replication_check routing limits pooling
             transaction_pooling pool_limits idle_clients admin)
# Left out under TSan: 2,000 clients at once took 525 s there on the busy 2-core VM, every client
# failed, and the shared test cluster came out of it with a standby promoted (pgpilot's log ended
# in "no primary node is available"), which failed every later test. ASan and the normal build
# run it.
tsan_skip=(pool_limits.two_thousand_clients_share_ten_connections)

if ((thread)); then
  name=ThreadSanitizer
  build_dir=${PGPILOT_TSAN_BUILD_DIR:-build-tsan}
  cmake_options=(-DPGPILOT_TSAN=ON -DPGPILOT_SANITIZE=OFF)
else
  name=ASan+UBSan
  build_dir=${PGPILOT_ASAN_BUILD_DIR:-build-asan}
  cmake_options=(-DPGPILOT_SANITIZE=ON -DPGPILOT_TSAN=OFF)
fi

bash scripts/deps.sh
start=$SECONDS
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${cmake_options[@]}" >/dev/null
if ! ninja -C "$build_dir" -j"$(nproc)" >"$build_dir/sanitize-build.log" 2>&1; then
  cat "$build_dir/sanitize-build.log" >&2
  echo "sanitize.sh: build failed" >&2
  exit 1
fi
echo "sanitize.sh: $name build in $build_dir took $((SECONDS - start)) s"

reports=$PWD/$build_dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
if ((thread)); then
  # log_path: one file per process that reported (tsan.<pid>), pgpilot and pgpilot_ha_watch
  # started by the integration tests included. halt_on_error=0 (the default): a process goes on
  # after a report, so one run shows them all; it then exits with exitcode (66), which fails a
  # unit test or the integration test that checks pgpilot's exit status. history_size=7 (the
  # largest): enough history to print the stack of the earlier access of a race too.
  export TSAN_OPTIONS="halt_on_error=0:exitcode=66:history_size=7:second_deadlock_stack=1:suppressions=$PWD/test/tsan.supp:log_path=$reports/tsan${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
  # For tests that measure memory (hostile.sanitizer_build()): TSan's shadow memory is never
  # given back, so RSS bounds tuned for the normal build do not hold here.
  export PGPILOT_TSAN=1
  report_re='(WARNING|ERROR|FATAL): ThreadSanitizer|SUMMARY: ThreadSanitizer|ThreadSanitizer: CHECK failed|ThreadSanitizer:DEADLYSIGNAL'
else
  # log_path: one file per process that reported (asan.<pid>). GCC's UBSan runtime ignores it
  # when combined with ASan and keeps writing to stderr; the LastTest.log scan below catches
  # those. detect_leaks: LeakSanitizer is on by default with ASan on Linux; say so explicitly.
  export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # For tests that measure memory: ASan keeps freed memory in quarantine and adds redzones, so
  # RSS bounds tuned for the normal build do not hold here; such a test can look at this variable.
  export PGPILOT_SANITIZED=1
  export LSAN_OPTIONS="log_path=$reports/lsan${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  report_re='runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer'
fi

status=0
start=$SECONDS
# Sanitizer reports in the output of the tests ctest just ran, whether they passed or not.
scan_test_output() {
  local log=$build_dir/Testing/Temporary/LastTest.log
  [[ -f $log ]] || return 0
  if grep -qE "$report_re" "$log"; then
    echo "sanitize.sh: sanitizer reports in the output of $1 (from $log):" >&2
    grep -nE -B2 -A30 "$report_re" "$log" | head -300 >&2
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
if ((integration || thread)); then
  if [[ -f test/integration/CMakeLists.txt ]]; then
    select=()
    if ((thread && !integration)); then
      # The fixtures that start and stop the cluster come along (FIXTURES_REQUIRED).
      select=(-R "^integration: ($(IFS='|'; echo "${tsan_suites[*]}"))[.]"
              -E "^integration: ($(IFS='|'; echo "${tsan_skip[*]}"))\$")
      echo "sanitize.sh: integration tests ${tsan_suites[*]} (not ${tsan_skip[*]})"
    else
      echo "sanitize.sh: integration tests"
    fi
    # As scripts/test.sh: the node-postgres client modules, and stop the test cluster if ctest
    # is interrupted (its cleanup fixture normally does).
    if [[ -f test/integration/node/package.json ]]; then
      (cd test/integration/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    trap '/usr/bin/python3 test/integration/pgcluster.py stop --dir "$build_dir/itest-cluster" >/dev/null 2>&1 || true' EXIT
    ctest --test-dir "$build_dir" -L integration "${select[@]}" --output-on-failure \
          "${ctest_args[@]}" || status=1
    scan_test_output "the integration tests"
  else
    echo "sanitize.sh: integration tests asked for but there is no test/integration/CMakeLists.txt" >&2
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
  echo "sanitize.sh: $name: FAILED" >&2
else
  echo "sanitize.sh: $name: no test failure and no sanitizer report"
fi
exit $status
