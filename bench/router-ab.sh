#!/usr/bin/env bash
# A/B of two `hapress router` binaries on PHP's connection per request (what WordPress does):
# both routers run side by side against one `hapress up` cluster with the same config, and
# the rounds alternate (A B, B A, A B, ...) so a busy machine weighs on both alike. Prints each
# round and the ratio B/A of the medians. Use it to tell a router change from noise.
# Usage: bench/router-ab.sh OLD_HAPRESS_BINARY [--rounds N] [--seconds S] [--threads N]
#        (B is this checkout's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: $0 OLD_HAPRESS_BINARY [--rounds N] [--seconds S] [--threads N]" >&2; exit 2; }
A_BIN=$1; shift
ROUNDS=6; SECS=10; THREADS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "usage: $0 OLD_HAPRESS_BINARY [--rounds N] [--seconds S] [--threads N]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-rab
HTTP=18880; DB=18806; RA=18891; RB=18892
cleanup() {
  [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null || true
  "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_cluster rab $HTTP $DB $RA a.yaml
bench_router_config $DB $RB b.yaml
"$A_BIN" router --config "$WORK/a.yaml" 2>"$WORK/a.log" & APID=$!
"$H" router --config "$WORK/b.yaml" 2>"$WORK/b.log" & BPID=$!
bench_wait_login $RA; bench_wait_login $RB
echo "connection per request, $THREADS PHP workers, ${SECS}s rounds; A = $A_BIN, B = $H"
: > "$WORK/a"; : > "$WORK/b"
for r in $(seq "$ROUNDS"); do
  # Which goes first alternates too.
  if [ $((r % 2)) = 1 ]; then a=$(bench_connect_run $RA); b=$(bench_connect_run $RB); else b=$(bench_connect_run $RB); a=$(bench_connect_run $RA); fi
  echo "$a" >> "$WORK/a"; echo "$b" >> "$WORK/b"
  printf 'round %d  A %6d req/s  B %6d req/s  B/A %.2f\n' "$r" "$a" "$b" "$(echo "$b / $a" | bc -l)"
done
ma=$(median < "$WORK/a"); mb=$(median < "$WORK/b")
printf 'median    A %6s req/s  B %6s req/s  B/A %.2f\n' "$ma" "$mb" "$(echo "$mb / $ma" | bc -l)"
