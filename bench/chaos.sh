#!/usr/bin/env bash
# Failover benchmark: `hapress chaos` on one cluster that stays up, each fault repeated N times
# in a row (kill, hang, lag, load, wipe, switchover), then the WordPress homepage under wrk
# while the primary hangs (SIGSTOP until the routers promote another server) against the same
# wrk run with no fault, in the same run.
# Usage: sudo bench/chaos.sh [--rounds N] [--seconds S] [--faults "kill hang ..."]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=20; SECONDS_PER=15; FAULTS="kill hang lag load wipe switchover"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --faults) FAULTS=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--faults \"kill hang ...\"]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-chaos
cleanup() { "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: chaos}\nspec:\n  web: {replicas: 3}\n' > "$WORK/hapress.yaml"
"$H" up --detach -f "$WORK/hapress.yaml" --state-dir "$WORK/state" --http-port 18480 --database-port 18406 >/dev/null
echo "== hapress chaos, $ROUNDS rounds per fault, one cluster"
for fault in $FAULTS; do
  # Every round's row, then the summary; a failed drill is reported, not fatal.
  "$H" chaos --state-dir "$WORK/state" --fault "$fault" --rounds "$ROUNDS" || echo "!! chaos --fault $fault failed"
done
primary_pid() {
  local p
  p=$("$H" status --state-dir "$WORK/state" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([c["name"] for c in s["components"] if c["role"]=="primary"][0])')
  cat "$WORK/state/run/$p.pgid"
}
wrk_run() { # label
  # Past the page cache (its cookie): every page is rendered by PHP from the database.
  wrk -t2 -c16 -d"${SECONDS_PER}s" --latency -H "Cookie: wordpress_no_cache=1" "http://127.0.0.1:18480/" > "$WORK/wrk.txt"
  local rps non2xx p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt"); non2xx=${non2xx:-0}
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
  echo "$1: $rps req/s, non-2xx $non2xx, p99 $p99"
}
echo "== homepage under wrk (${SECONDS_PER}s, 16 connections)"
wrk_run "no fault"
pid=$(primary_pid)
( sleep 3; kill -STOP "$pid"; sleep 6; kill -CONT "$pid" 2>/dev/null || true ) &
wrk_run "primary hung 3 s into the run (resumed after 6 s, or killed by the supervisor)"
wait
