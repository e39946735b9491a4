#!/usr/bin/env bash
# The one command for a fresh machine: install what is missing, build hapress, run the site.
#   sudo scripts/run.sh [hapress up options...]     e.g. --detach, -f hapress.yaml
# State lives in $HAPRESS_STATE_DIR (default /var/lib/hapress/default): the PHP and nginx
# workers (www-data) must be able to reach it, which a clone under /root does not allow.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet -p hapress
export HAPRESS_STATE_DIR="${HAPRESS_STATE_DIR:-/var/lib/hapress/default}"
mkdir -p "$(dirname "$HAPRESS_STATE_DIR")"
echo "hapress: state directory $HAPRESS_STATE_DIR (binary: target/release/hapress)"
exec target/release/hapress up "$@"
