#!/usr/bin/env bash
# The router's own work per statement, counted rather than timed: the router and the null
# proxy (crates/router/examples/null_proxy.rs, bytes copied both ways, nothing parsed) run
# under valgrind's callgrind while sysbench drives the same statements through each, and the
# user-space instructions each executed are divided by the statements it carried. The count
# does not depend on how busy the machine is, so a change to the router's hot path shows up
# here when bench/router.sh cannot tell it from noise. Kernel work (the syscalls) is not
# counted: compare syscalls with `strace -c -f -p <router pid>`. The count covers the proxy's
# whole life (start-up, the probes, the logins): a few million instructions, under 1 % here.
# Pairs: the router given the primary alone against the null proxy to the primary (the
# router's cost per statement), and the router with read splitting against the null proxy
# spreading sessions over the two replicas.
# Usage: sudo bench/router-callgrind.sh [--seconds S] [--test oltp_point_select[:ps]]
#        ROUTER=/path/to/hapress bench/router-callgrind.sh   counts another build's router
#        (writes callgrind profiles to bench/callgrind.<proxy>.out for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=6; TEST=oltp_point_select:ps
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --test) TEST=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--test oltp_point_select[:ps]]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-rcg
HTTP=18680; DB=18606; RT=18691; PORT=18699
cleanup() {
  [ -n "${VPID:-}" ] && kill -9 "$VPID" 2>/dev/null || true
  "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_cluster rcg $HTTP $DB $RT unused.yaml
R=${ROUTER:-$H}
bench_router_config $DB $PORT split.yaml
bench_router_config $DB $PORT primary.yaml primary
cargo build --release --quiet --example null_proxy -p hapress-router
NULL=$PWD/target/release/examples/null_proxy
bench_sysbench_tables $DB
mode=disable; [ "${TEST#*:}" = ps ] && mode=auto

# Runs "$@" under callgrind listening on $PORT, drives $TEST through it (2 threads) and prints
# the statements and the user-space instructions per statement.
measure() {
  local name=$1; shift
  valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$WORK/cg.$name" "$@" >"$WORK/$name.log" 2>&1 & VPID=$!
  bench_wait_login $PORT
  local q
  q=$(sysbench "${TEST%:ps}" "${SB[@]}" --db-ps-mode=$mode --mysql-port=$PORT --threads=2 --time="$SECS" run \
    | awk '/queries:/ {print $2}')
  [ -n "$q" ] && [ "$q" -gt 0 ] || { echo "sysbench through $name failed; its log: $WORK/$name.log" >&2; exit 1; }
  callgrind_control -d "$VPID" >/dev/null 2>&1
  kill -9 "$VPID"; wait "$VPID" 2>/dev/null || true; VPID=
  local f; f=$(ls "$WORK/cg.$name".* | awk -F. '{print $NF, $0}' | sort -n | tail -1 | cut -d' ' -f2-); cp "$f" "bench/callgrind.$name.out"
  local ir; ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(/,/,"",$1); print $1}')
  IR[$name]=$((ir / q))
  printf '%-16s %10s statements %10s instructions per statement\n' "$name" "$q" "${IR[$name]}"
}
declare -A IR
echo "router $R; $TEST, 2 sysbench threads, ${SECS}s under callgrind each (user-space instructions; kernel not counted)"
measure null-proxy "$NULL" 127.0.0.1:$PORT "$S/run/db-0.sock"
measure router-primary "$R" router --config "$WORK/primary.yaml"
measure null-replicas "$NULL" 127.0.0.1:$PORT "$S/run/db-1.sock" "$S/run/db-2.sock"
measure router "$R" router --config "$WORK/split.yaml"
echo "router-primary/null-proxy $(ratio "${IR[router-primary]}" "${IR[null-proxy]}")   router/null-replicas $(ratio "${IR[router]}" "${IR[null-replicas]}")   (instructions per statement)"
echo "top of the router's profile (callgrind_annotate bench/callgrind.router.out):"
callgrind_annotate --inclusive=no bench/callgrind.router.out 2>/dev/null | grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | sed -n '1,15s/ \[.*//p'
