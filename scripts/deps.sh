#!/usr/bin/env bash
# Install the Debian packages pgpilot needs to build, test, demo and benchmark,
# only those that are missing (apt-get update only when a package can't be found).
# Run as root. Node.js: Debian's nodejs/npm only when there is no `node` at all
# (a nodesource Node.js conflicts with Debian's npm package).
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config
  libboost1.81-dev libboost-json1.81-dev libssl-dev libpq-dev libtomlplusplus-dev libfmt-dev catch2
  clang-format
  # integration tests, demo and benchmark
  postgresql-15 postgresql-client-15 python3 procps util-linux
  # non-libpq drivers in the integration tests (test_drivers.py)
  python3-asyncpg libpostgresql-jdbc-java openjdk-17-jdk-headless
  # comparisons with the existing poolers
  pgbouncer pgpool2
)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/pgpilot-apt.log 2>&1; }
if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null || ! apt_install; then
  apt-get update -qq >/tmp/pgpilot-apt.log 2>&1 || { cat /tmp/pgpilot-apt.log >&2; exit 1; }
  apt_install || { cat /tmp/pgpilot-apt.log >&2; exit 1; }
fi
