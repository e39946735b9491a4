#!/usr/bin/env bash
# Installs what hapress needs on a fresh Debian 12 / Ubuntu machine, only what is missing.
#   scripts/setup.sh          runtime: MariaDB, php-fpm, nginx, WordPress, Redis, and a Rust toolchain
#   scripts/setup.sh --test   also the test tools (Python: kubernetes-validate, checkov; sysbench)
#   scripts/setup.sh --bench  also the benchmark tools (wrk, sysbench, haproxy, bc, python3-yaml, valgrind)
#   scripts/setup.sh --conformance  also MariaDB's test suite (bench/conformance.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

# `php apache2-` keeps apt from pulling Apache in as the wordpress package's web server.
PKGS=(mariadb-server mariadb-client mariadb-backup php-fpm php-mysql php-cli php-redis redis-server wordpress nginx ca-certificates curl gcc)
for arg in "$@"; do
  case "$arg" in
    --test) PKGS+=(python3 python3-pip sysbench) ;;
    --bench) PKGS+=(wrk sysbench haproxy bc python3-yaml valgrind) ;;
    --conformance) PKGS+=(mariadb-test) ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Debian's postinst scripts try to start system services; hapress never uses them.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" php apache2- >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain (rustup)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

for arg in "$@"; do
  if [ "$arg" = --test ] && [ -f scripts/requirements-test.txt ]; then
    if ! python3 -m pip install -q -r scripts/requirements-test.txt 2>/tmp/hapress-pip.err; then
      if grep -q externally-managed /tmp/hapress-pip.err; then
        python3 -m pip install -q --break-system-packages -r scripts/requirements-test.txt
      else
        cat /tmp/hapress-pip.err >&2; exit 1
      fi
    fi
  fi
done
