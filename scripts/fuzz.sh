#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz/, docs/fuzzing.md) with clang-14, replays the saved
# crash reproducers, then fuzzes every target for SECONDS (default 60) from a temporary copy of
# its seed corpus, so runs never change the checked-in corpus.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 300 fuzz_frame
#
# Prints the executions of each target. Fails if a target crashes (or times out, runs out of
# memory, leaks, trips a sanitizer or a FUZZ_CHECK): the input goes to
# test/fuzz/regressions/<target>/, which every later run replays first.
#
# Environment: PGPILOT_FUZZ_BUILD_DIR (default build-fuzz), PGPILOT_FUZZ_JOBS (targets run at
# once, default: number of cores), PGPILOT_FUZZ_KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
build_dir=${PGPILOT_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${PGPILOT_FUZZ_JOBS:-$(nproc)}
fuzz_dir=test/fuzz
all_targets=(fuzz_frame fuzz_startup fuzz_scram_server fuzz_scram_client fuzz_config
             fuzz_pgpool_import)
[[ -f router/classify.hpp && -f $fuzz_dir/fuzz_classify.cpp ]] && all_targets+=(fuzz_classify)
if (($#)); then targets=("$@"); else targets=("${all_targets[@]}"); fi

# --- toolchain: clang-14 with libFuzzer (libclang-rt-14-dev) --------------------------------
if ! command -v clang++-14 >/dev/null 2>&1 ||
   ! compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "fuzz.sh: clang-14 and libclang-rt-14-dev are needed (run as root to install)" >&2; exit 1; }
  echo "fuzz.sh: installing clang-14 libclang-rt-14-dev"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/tmp/pgpilot-apt.log 2>&1 || {
    apt-get update -qq >/tmp/pgpilot-apt.log 2>&1 &&
    apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev >/tmp/pgpilot-apt.log 2>&1
  } || { cat /tmp/pgpilot-apt.log >&2; exit 1; }
fi
bash scripts/deps.sh  # the rest of the project's build dependencies (CMake configures it all)

# --- build -------------------------------------------------------------------------------------
build_start=$SECONDS
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGPILOT_FUZZ=ON \
      -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
if ! ninja -C "$build_dir" -j"$(nproc)" pgpilot_fuzz >/tmp/pgpilot-fuzz-build.log 2>&1; then
  cat /tmp/pgpilot-fuzz-build.log >&2
  echo "fuzz.sh: build failed" >&2
  exit 1
fi
echo "fuzz.sh: build took $((SECONDS - build_start)) s"
bin_dir=$build_dir/test/fuzz

work=$(mktemp -d /tmp/pgpilot-fuzz.XXXXXX)
[[ ${PGPILOT_FUZZ_KEEP:-0} == 1 ]] || trap 'rm -rf "$work"' EXIT
failed=()

# --- replay saved reproducers --------------------------------------------------------------
for t in "${targets[@]}"; do
  [[ -x $bin_dir/$t ]] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
  reg=$fuzz_dir/regressions/$t
  compgen -G "$reg/*" >/dev/null || continue
  n=$(find "$reg" -maxdepth 1 -type f | wc -l)
  if "$bin_dir/$t" -timeout=60 -rss_limit_mb=2048 "$reg"/* >"$work/$t.replay.log" 2>&1; then
    echo "fuzz.sh: $t: $n saved reproducer(s) pass"
  else
    echo "fuzz.sh: $t: a saved reproducer in $reg still fails:" >&2
    grep -E 'Running:|ERROR|SUMMARY|runtime error|fuzz check failed|#[0-9]+ ' "$work/$t.replay.log" | head -40 >&2
    failed+=("$t (regression)")
  fi
done

# --- fuzz ----------------------------------------------------------------------------------
run_target() {
  local t=$1 corpus=$work/corpus/$1 artifacts=$work/artifacts/$1/ dict=()
  mkdir -p "$corpus" "$artifacts"
  cp "$fuzz_dir/corpus/$t"/* "$corpus"/ 2>/dev/null || true
  cp "$fuzz_dir/regressions/$t"/* "$corpus"/ 2>/dev/null || true
  [[ -f $fuzz_dir/dict/$t.dict ]] && dict=(-dict="$fuzz_dir/dict/$t.dict")
  local status=0
  "$bin_dir/$t" "${dict[@]}" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" >"$work/$t.log" 2>&1 || status=$?
  echo "$status" >"$work/$t.rc"
}

echo "fuzz.sh: fuzzing ${targets[*]} for ${seconds} s each, $jobs at a time"
fuzz_start=$SECONDS
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then wait -n || true; running=$((running - 1)); fi
  run_target "$t" &
  running=$((running + 1))
done
wait

printf '%-20s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  status=$(cat "$work/$t.rc" 2>/dev/null || echo "?")
  log=$work/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [[ -n $execs ]] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corp=$(find "$work/corpus/$t" -type f | wc -l)
  artifacts=$(find "$work/artifacts/$t" -type f ! -name 'slow-unit-*' 2>/dev/null || true)
  if [[ $status == 0 && -z $artifacts ]]; then
    printf '%-20s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corp" ok
    continue
  fi
  printf '%-20s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corp" "FAILED (exit $status)"
  failed+=("$t")
  mkdir -p "$fuzz_dir/regressions/$t"
  for a in $artifacts; do
    known=""
    for r in "$fuzz_dir/regressions/$t"/*; do
      [[ -f $r ]] && cmp -s "$a" "$r" && known=$r
    done
    if [[ -n $known ]]; then
      echo "  failed on the saved reproducer $known" >&2
      continue
    fi
    cp "$a" "$fuzz_dir/regressions/$t/"
    echo "  saved $fuzz_dir/regressions/$t/$(basename "$a") ($(stat -c %s "$a") bytes):" >&2
    od -An -tx1 -v "$a" | head -8 | sed 's/^/    /' >&2
  done
  echo "  --- end of the $t log ---" >&2
  grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -60 | sed 's/^/  /' >&2
done
echo "fuzz.sh: fuzzing took $((SECONDS - fuzz_start)) s"

if ((${#failed[@]})); then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  [[ ${PGPILOT_FUZZ_KEEP:-0} == 1 ]] && echo "fuzz.sh: logs and corpora in $work" >&2
  exit 1
fi
echo "fuzz.sh: all targets ok"
