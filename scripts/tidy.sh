#!/usr/bin/env bash
# Runs clang-tidy-14 (checks in .clang-tidy) over the sources of protocol/ config/ router/ ha/
# proxy/ (and their headers, through HeaderFilterRegex), using a compilation database.
#
#   scripts/tidy.sh                 every source file of those directories
#   scripts/tidy.sh proxy/pool.cpp  just these files
#
# Database: build/compile_commands.json when it exists, else build-tidy/ is configured (no
# build needed); PGPILOT_TIDY_BUILD_DIR overrides. Prints every finding, then a count per check
# and per file; exits 1 if there is any finding outside the excluded files.
#
# Excluded files: `excluded_re` below, empty (no file excluded). A file whose findings must be
# printed but not fail the run for a while (one being rewritten on another branch) can be put
# there; say why here and in docs/fuzzing.md.
# Environment: PGPILOT_TIDY_JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-tidy-14 >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { echo "tidy.sh: clang-tidy-14 is needed (run as root to install)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends clang-tidy-14 >/tmp/pgpilot-apt.log 2>&1 || {
    apt-get update -qq >/tmp/pgpilot-apt.log 2>&1 &&
    apt-get install -y -qq --no-install-recommends clang-tidy-14 >/tmp/pgpilot-apt.log 2>&1
  } || { cat /tmp/pgpilot-apt.log >&2; exit 1; }
fi

db_dir=${PGPILOT_TIDY_BUILD_DIR:-}
if [[ -z $db_dir ]]; then
  if [[ -f build/compile_commands.json ]]; then db_dir=build; else db_dir=build-tidy; fi
fi
if [[ ! -f $db_dir/compile_commands.json ]]; then
  bash scripts/deps.sh
  echo "tidy.sh: configuring $db_dir for its compilation database"
  cmake -S . -B "$db_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi

if (($#)); then
  files=("$@")
else
  mapfile -t files < <(find protocol config router ha proxy -maxdepth 1 -name '*.cpp' | sort)
fi
jobs=${PGPILOT_TIDY_JOBS:-$(nproc)}
# A file the database does not know would be skipped silently: say so (reconfigure the build
# directory after adding a source file).
missing=0
for f in "${files[@]}"; do
  if ! grep -qF "\"file\": \"$PWD/$f\"" "$db_dir/compile_commands.json"; then
    echo "tidy.sh: $f is not in $db_dir/compile_commands.json (re-run cmake there)" >&2
    missing=1
  fi
done
((missing == 0)) || exit 2
outdir=$(mktemp -d /tmp/pgpilot-tidy.XXXXXX)
trap 'rm -rf "$outdir"' EXIT

start=$SECONDS
echo "tidy.sh: clang-tidy-14 on ${#files[@]} files with $db_dir/compile_commands.json"
# One process per file, each into its own log so that the findings do not interleave.
printf '%s\n' "${files[@]}" |
  xargs -P "$jobs" -I{} sh -c \
    'clang-tidy-14 -p "$1" --quiet "$2" >"$3/$(echo "$2" | tr / _).log" 2>/dev/null || true' \
    sh "$db_dir" {} "$outdir"
out=$outdir/all
cat "$outdir"/*.log >"$out"

# Findings: "path:line:col: warning|error: message [check]"; a header finding is reported once
# per including file, so de-duplicate. The static analyzer places some findings inside library
# headers (a path that starts in our code, e.g. Asio's awaitable.hpp for coroutines), where
# HeaderFilterRegex does not apply: only findings in the project's own directories count.
project_re="^$PWD/(protocol|config|router|ha|proxy)/[^/]+:[0-9]+:[0-9]+: (warning|error): "
excluded_re=""
mapfile -t all_findings < <(grep -E "$project_re" "$out" | sort -u)
findings=() excluded=()
for f in "${all_findings[@]}"; do
  if [[ -n $excluded_re && $f =~ $excluded_re ]]; then excluded+=("$f"); else findings+=("$f"); fi
done
ignored=$(grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$out" | grep -vcE "$project_re" || true)
((ignored == 0)) || echo "tidy.sh: $ignored finding(s) inside library headers ignored"
if ((${#excluded[@]})); then
  echo "tidy.sh: ${#excluded[@]} finding(s) in excluded files (excluded_re, see the top of this script), not counted:"
  printf '  %s\n' "${excluded[@]}"
fi
if ((${#findings[@]} == 0)); then
  echo "tidy.sh: no findings$( ((${#excluded[@]})) && echo " outside the excluded files") ($((SECONDS - start)) s)"
  exit 0
fi
# Each finding with its context lines.
awk -v re="$project_re" -v ex="$excluded_re" '
  /^[^ ].*:[0-9]+:[0-9]+: (warning|error): / {
    skip = ($0 !~ re) || (ex != "" && $0 ~ ex) || seen[$0]++
  }
  !skip { print }
' "$out"
echo
echo "tidy.sh: ${#findings[@]} finding(s) in $((SECONDS - start)) s; per check:"
printf '%s\n' "${findings[@]}" | sed -E 's/.*\[([^]]+)\]$/\1/' | sort | uniq -c | sort -rn
echo "per file:"
printf '%s\n' "${findings[@]}" | sed -E 's/:[0-9]+:[0-9]+: .*//; s|^'"$PWD"'/||' | sort | uniq -c | sort -rn
exit 1
