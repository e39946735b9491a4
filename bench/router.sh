#!/usr/bin/env bash
# SQL router benchmark: sysbench against the primary directly, through HAProxy (TCP mode, the
# usual alternative) and through `hapress router` (read/write splitting on), in one run, so the
# ratios compare like with like on this machine. Clients always connect over TCP. The router
# reaches the servers over their unix sockets, as `hapress up` configures it ("router"); two
# controls: the router over TCP ("router-tcp"), HAProxy to the primary's unix socket
# ("haproxy-sock") and a null proxy to that socket ("null-proxy": bytes copied both ways on one
# tokio thread, no parsing; the floor for any proxy hop here, crates/router/examples), and the
# same null proxy handing sessions in turn to the two replicas ("null-replicas": the floor for
# a proxy that reads from replicas, as the router does with read splitting on; all three
# servers share this machine's cores); and the router given the primary alone
# ("router-primary": every statement to the server null-proxy uses, so router-primary/null-proxy
# is the router's own cost per statement).
# Then PHP's connection per request (what WordPress does): each of N PHP processes connects,
# sets utf8mb4, reads one option and disconnects, in a loop; through the router with pooling
# on (the default) and off (poolSize: 0).
# Each figure is the median of --rounds runs; within a round every path runs once, in an
# order that reverses from round to round, so a host that speeds up or slows down during the
# run is spread over the paths rather than landing on one (these machines are noisy: one run
# per path is not enough; compare ratios of the same run only).
# Usage: sudo bench/router.sh [--seconds S] [--threads N] [--rounds R]
#        PERF=1 bench/router.sh   also profiles the router (perf) into bench/router-profile.txt
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=30; THREADS=8; ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--threads N] [--rounds R]" >&2; exit 2 ;;
  esac
done
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { echo "$0: --rounds must be a whole number >= 1" >&2; exit 2; }
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-rbench
HTTP=18780; DB=18706; HAP=18790; RT=18791; RT0=18792; RTT=18793; HAPS=18794; NUL=18795; NULR=18796; RTP=18797
cleanup() {
  [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null || true
  [ -n "${R0PID:-}" ] && kill "$R0PID" 2>/dev/null || true
  [ -n "${RTPID:-}" ] && kill "$RTPID" 2>/dev/null || true
  [ -n "${NPID:-}" ] && kill "$NPID" 2>/dev/null || true
  [ -n "${NRPID:-}" ] && kill "$NRPID" 2>/dev/null || true
  [ -n "${RPPID:-}" ] && kill "$RPPID" 2>/dev/null || true
  [ -n "${HPID:-}" ] && kill "$HPID" 2>/dev/null || true
  "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bench_cluster rbench $HTTP $DB $RT router.yaml
"$H" router --config "$WORK/router.yaml" 2>"$WORK/router.log" & RPID=$!
bench_router_config $DB $RT0 router0.yaml; echo 'poolSize: 0' >> "$WORK/router0.yaml"
"$H" router --config "$WORK/router0.yaml" 2>"$WORK/router0.log" & R0PID=$!
bench_router_config $DB $RTT router-tcp.yaml tcp
"$H" router --config "$WORK/router-tcp.yaml" 2>"$WORK/router-tcp.log" & RTPID=$!
bench_router_config $DB $RTP router-primary.yaml primary
"$H" router --config "$WORK/router-primary.yaml" 2>"$WORK/router-primary.log" & RPPID=$!
cargo build --release --quiet --example null_proxy -p hapress-router
target/release/examples/null_proxy 127.0.0.1:$NUL "$S/run/db-0.sock" & NPID=$!
target/release/examples/null_proxy 127.0.0.1:$NULR "$S/run/db-1.sock" "$S/run/db-2.sock" & NRPID=$!
cat > "$WORK/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
listen mariadb
  bind 127.0.0.1:$HAP
  server db0 127.0.0.1:$DB
listen mariadb-sock
  bind 127.0.0.1:$HAPS
  server db0 $S/run/db-0.sock
CFG
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 & HPID=$!
sleep 1

bench_sysbench_tables $DB

run() { # test[:ps] port -> "qps p95" (":ps": server-side prepared statements)
  local mode=disable; [ "${1#*:}" = ps ] && mode=auto
  sysbench "${1%:ps}" "${SB[@]}" --db-ps-mode=$mode --mysql-port="$2" --threads="$THREADS" --time="$SECS" --percentile=95 run \
    | awk '/queries:/ {gsub(/[(]/,"",$3); q=$3} /95th percentile:/ {p=$3} END {print q, p}'
}
round_order() { # round paths... -> the paths, reversed in even rounds
  local r=$1; shift
  if [ $((r % 2)) = 0 ]; then printf '%s\n' "$@" | tac; else printf '%s\n' "$@"; fi
}
declare -A PORT=([direct]=$DB [haproxy]=$HAP [haproxy-sock]=$HAPS [null-proxy]=$NUL [null-replicas]=$NULR
  [router]=$RT [router-primary]=$RTP [router-tcp]=$RTT [router-nopool]=$RT0)
PATHS=(direct haproxy haproxy-sock null-proxy null-replicas router router-primary router-tcp)
echo "sysbench, $THREADS threads, ${SECS}s each, median of $ROUNDS rounds (paths interleaved, order reversed each round);"
echo "text protocol (--db-ps-mode=disable); :ps = prepared statements (--db-ps-mode=auto)"
printf '%-18s %-14s %12s %10s   %s\n' test path qps p95_ms "qps of each round"
declare -A R P ALL
for t in oltp_point_select oltp_read_only oltp_point_select:ps; do
  for r in $(seq "$ROUNDS"); do
    for path in $(round_order "$r" "${PATHS[@]}"); do
      if [ -n "${PERF:-}" ] && [ $path = router ] && [ "$t" = oltp_point_select ] && [ "$r" = 1 ]; then
        perf record -F 999 -g -p "$RPID" -o "$WORK/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
      fi
      read -r q p < <(run $t "${PORT[$path]}")
      [ -n "$q" ] || { echo "$0: sysbench $t through $path failed" >&2; exit 1; }
      ALL[$t.$path]+="$q "; P[$t.$path]+="$p "
    done
  done
  for path in "${PATHS[@]}"; do
    R[$t.$path]=$(printf '%s\n' ${ALL[$t.$path]} | median)
    printf '%-18s %-14s %12.0f %10s   %s\n' "$t" "$path" "${R[$t.$path]}" "$(printf '%s\n' ${P[$t.$path]} | median)" "${ALL[$t.$path]}"
  done
  printf '%-18s router/haproxy %.2f   router/direct %.2f   router/haproxy-sock %.2f   router-tcp/haproxy %.2f   null-proxy/haproxy %.2f   router/null-proxy %.2f   router/null-replicas %.2f   router-primary/null-proxy %.2f   null-replicas/null-proxy %.2f\n' "$t" \
    "$(ratio "${R[$t.router]}" "${R[$t.haproxy]}")" "$(ratio "${R[$t.router]}" "${R[$t.direct]}")" \
    "$(ratio "${R[$t.router]}" "${R[$t.haproxy-sock]}")" "$(ratio "${R[$t.router-tcp]}" "${R[$t.haproxy]}")" \
    "$(ratio "${R[$t.null-proxy]}" "${R[$t.haproxy]}")" "$(ratio "${R[$t.router]}" "${R[$t.null-proxy]}")" \
    "$(ratio "${R[$t.router]}" "${R[$t.null-replicas]}")" "$(ratio "${R[$t.router-primary]}" "${R[$t.null-proxy]}")" "$(ratio "${R[$t.null-replicas]}" "${R[$t.null-proxy]}")"
done
echo "connection per request (PHP mysqli: connect, SET NAMES, one SELECT, close), $THREADS workers, ${SECS}s each, median of $ROUNDS rounds"
printf '%-18s %-14s %12s   %s\n' test path req/s "req/s of each round"
CPATHS=(direct haproxy router router-nopool)
for r in $(seq "$ROUNDS"); do
  for path in $(round_order "$r" "${CPATHS[@]}"); do
    ALL[connect.$path]+="$(bench_connect_run "${PORT[$path]}") "
  done
done
for path in "${CPATHS[@]}"; do
  R[connect.$path]=$(printf '%s\n' ${ALL[connect.$path]} | median)
  printf '%-18s %-14s %12.0f   %s\n' connect "$path" "${R[connect.$path]}" "${ALL[connect.$path]}"
done
printf '%-18s router/haproxy %.2f   router/direct %.2f   pooling on/off %.2f\n' connect \
  "$(ratio "${R[connect.router]}" "${R[connect.haproxy]}")" "$(ratio "${R[connect.router]}" "${R[connect.direct]}")" \
  "$(ratio "${R[connect.router]}" "${R[connect.router-nopool]}")"
if [ -n "${PERF:-}" ]; then
  sleep 1; perf report -i "$WORK/perf.data" --no-children --stdio --sort symbol 2>/dev/null | grep -v '^#' | grep '%' | sed -n 1,40p > bench/router-profile.txt
  echo "profile of the router under oltp_point_select: bench/router-profile.txt"
fi
curl -s --unix-socket "$S/run/router-http.sock" http://router/status | python3 -c 'import json,sys; s=json.load(sys.stdin); print("cluster router:", s["routedToPrimary"], "to primary,", s["routedToReplicas"], "to replicas")' || true
