#!/usr/bin/env bash
# hapress embedded-runtime benchmark. Prints figures and ratios against baselines measured in
# the same run (these machines are noisy):
#   1. cold `hapress up` (new state dir) and warm `hapress up` (existing one), median of N
#   2. homepage req/s with wrk: the HA cluster (3 pools x 4 workers) vs one php-fpm pool with
#      the same 12 workers, alternated A/B/A/B so drift hits both alike.
#   3. homepage req/s with wrk: the HA cluster through the SQL router vs the same cluster with
#      spec.router.enabled false (WordPress straight to the primary), alternated.
# Usage: sudo bench/run.sh [--rounds N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=2; SECONDS_PER=15; UPS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-bench
cleanup() { for d in "$WORK"/*/state; do "$H" down --state-dir "$d" >/dev/null 2>&1 || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

spec() { # name replicas workers [router enabled]
  # The page cache is off: these figures are PHP's and the database's (bench/cache.sh has the cache's).
  printf 'apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: %s}\nspec:\n  web: {replicas: %s, phpWorkers: %s}\n  router: {enabled: %s}\n  cache: {page: {enabled: false}}\n' "$1" "$2" "$3" "${4:-true}"
}
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== up times (median of $UPS)"
cold=(); warm=()
for i in $(seq 1 "$UPS"); do
  d="$WORK/up$i"; mkdir -p "$d"; spec "up$i" 3 4 > "$d/hapress.yaml"
  t0=$(now); "$H" up --detach -f "$d/hapress.yaml" --state-dir "$d/state" --http-port 18480 --database-port 18406 >/dev/null; t1=$(now)
  cold+=("$(echo "$t1 - $t0" | bc)")
  "$H" down --state-dir "$d/state" >/dev/null
  t0=$(now); "$H" up --detach -f "$d/hapress.yaml" --state-dir "$d/state" --http-port 18480 --database-port 18406 >/dev/null; t1=$(now)
  warm+=("$(echo "$t1 - $t0" | bc)")
  "$H" down --state-dir "$d/state" >/dev/null
done
COLD=$(printf '%s\n' "${cold[@]}" | median); WARM=$(printf '%s\n' "${warm[@]}" | median)
printf 'cold up: %.2f s (runs: %s)   target <= 20 s\n' "$COLD" "${cold[*]}"
printf 'warm up: %.2f s (runs: %s)   target <= 5 s\n' "$WARM" "${warm[*]}"

# Each homepage cluster is created once (initialised, then stopped), with its own ports.
declare -A HTTP_PORT DB_PORT
make_cluster() { # name replicas workers router-enabled http-port db-port
  HTTP_PORT[$1]=$5; DB_PORT[$1]=$6
  mkdir -p "$WORK/$1"; spec "$1" "$2" "$3" "$4" > "$WORK/$1/hapress.yaml"
  "$H" up --detach -f "$WORK/$1/hapress.yaml" --state-dir "$WORK/$1/state" --http-port "$5" --database-port "$6" >/dev/null
  "$H" down --state-dir "$WORK/$1/state" >/dev/null
}
rps() { wrk -t2 -c12 -d"${SECONDS_PER}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
mean() { printf '%s\n' "$@" | awk '{s+=$1} END {print s/NR}'; }
ab() { # cluster-a label-a cluster-b label-b: alternated rounds, means and the ratio a/b
  local a_all=() b_all=() which label port v r
  for r in $(seq 1 "$ROUNDS"); do
    for which in "$1" "$3"; do
      label=$([ "$which" = "$1" ] && echo "$2" || echo "$4"); port=${HTTP_PORT[$which]}
      "$H" up --detach -f "$WORK/$which/hapress.yaml" --state-dir "$WORK/$which/state" --http-port "$port" --database-port "${DB_PORT[$which]}" >/dev/null
      wrk -t2 -c12 -d3s "http://127.0.0.1:$port/" >/dev/null   # warm caches and opcache
      v=$(rps "$port"); echo "round $r $label: $v req/s"
      if [ "$which" = "$1" ]; then a_all+=("$v"); else b_all+=("$v"); fi
      "$H" down --state-dir "$WORK/$which/state" >/dev/null
    done
  done
  local A B; A=$(mean "${a_all[@]}"); B=$(mean "${b_all[@]}")
  printf '%s: %.1f req/s\n%s: %.1f req/s\n' "$2" "$A" "$4" "$B"
  printf 'ratio %s / %s: %.3f   target >= 0.95\n' "$2" "$4" "$(echo "$A / $B" | bc -l)"
}

make_cluster ha 3 4 true 18580 18506
make_cluster single 1 12 true 18680 18606
make_cluster direct 3 4 false 18880 18806
echo "== homepage req/s, wrk -t2 -c12 -d${SECONDS_PER}s, $ROUNDS rounds: HA cluster vs one pool, same 12 workers"
ab ha "HA cluster (3 x 4 workers)" single "single pool (1 x 12 workers)"
echo "== homepage req/s through the SQL router vs direct to the primary, $ROUNDS rounds"
ab ha "through the router" direct "direct to the primary"
