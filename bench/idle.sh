#!/usr/bin/env bash
# Idle clients against `hapress router`: N clients connect at once and log in, then stay idle;
# prints how many got a session and how many an ERR 1040 (the server's max_connections; sessions
# beyond poolSize open connections of their own), and the router's resident memory before, at the peak
# and after they leave, in waves (later waves must not need more).
# Usage: sudo bench/idle.sh [--clients N] [--waves W]
set -euo pipefail
cd "$(dirname "$0")/.."
N=10000; WAVES=3
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) N=$2; shift 2 ;;
    --waves) WAVES=$2; shift 2 ;;
    *) echo "usage: $0 [--clients N]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-idle
HTTP=18980; DB=18906; RT=18991
cleanup() {
  [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null || true
  "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_cluster idle $HTTP $DB $RT router.yaml
ulimit -n $((N + 1024)) 2>/dev/null || true
"$H" router --config "$WORK/router.yaml" 2>"$WORK/router.log" & RPID=$!
sleep 1.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$RPID/status"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$RPID/status"; }
before=$(rss)
echo "router RSS before: $((before / 1024)) MiB"
for wave in $(seq "$WAVES"); do
  python3 bench/idle.py 127.0.0.1 $RT wordpress wordpress "$N" 3 > "$WORK/idle.out" &
  IPID=$!
  sleep 2.5; during=$(rss)
  wait $IPID
  sleep 2; after=$(rss)
  echo "wave $wave: $N clients at once: $(cat "$WORK/idle.out")"
  echo "wave $wave: router RSS with the clients $((during / 1024)) MiB, peak so far $(( $(hwm) / 1024)) MiB, after they left $((after / 1024)) MiB; open files after $(ls /proc/$RPID/fd | wc -l)"
done
# The baseline: the same storm straight at the primary (MariaDB's own max_connections and
# accept queue), in the same run.
sleep 2
echo "direct to the primary: $N clients at once: $(python3 bench/idle.py 127.0.0.1 $DB wordpress wordpress "$N" 3)"
