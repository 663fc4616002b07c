#!/usr/bin/env bash
# Install missing dependencies, configure (build/, Ninja, RelWithDebInfo) and build.
# Extra arguments go to CMake's configure step, e.g. -DPGPILOT_SANITIZE=ON.
# PGPILOT_BUILD_DIR overrides the build directory (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
build_dir=${PGPILOT_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
ninja -C "$build_dir" -j2
