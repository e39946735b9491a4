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
scripts/setup.sh --bench >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --quiet -p hapress
H=$PWD/target/release/hapress
WORK=$(mktemp -d /tmp/hapress-bench.XXXXXX); chmod 755 "$WORK"  # www-data workers must reach it
cleanup() { for d in "$WORK"/*/state; do "$H" down --state-dir "$d" >/dev/null 2>&1 || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

spec() { # name replicas workers [router enabled]
  printf 'apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: %s}\nspec:\n  web: {replicas: %s, phpWorkers: %s}\n  router: {enabled: %s}\n' "$1" "$2" "$3" "${4:-true}"
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

echo "== homepage req/s, wrk -t2 -c12 -d${SECONDS_PER}s, $ROUNDS rounds"
for pair in "ha 3 4 18580 18506" "single 1 12 18680 18606"; do
  set -- $pair
  mkdir -p "$WORK/$1"; spec "$1" "$2" "$3" > "$WORK/$1/hapress.yaml"
  "$H" up --detach -f "$WORK/$1/hapress.yaml" --state-dir "$WORK/$1/state" --http-port "$4" --database-port "$5" >/dev/null
  "$H" down --state-dir "$WORK/$1/state" >/dev/null
done
rps() { wrk -t2 -c12 -d"${SECONDS_PER}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
ha_all=(); single_all=()
for r in $(seq 1 "$ROUNDS"); do
  for which in ha single; do
    port=$([ $which = ha ] && echo 18580 || echo 18680); dbp=$([ $which = ha ] && echo 18506 || echo 18606)
    "$H" up --detach -f "$WORK/$which/hapress.yaml" --state-dir "$WORK/$which/state" --http-port "$port" --database-port "$dbp" >/dev/null
    wrk -t2 -c12 -d3s "http://127.0.0.1:$port/" >/dev/null   # warm caches and opcache
    v=$(rps "$port"); echo "round $r $which: $v req/s"
    if [ $which = ha ]; then ha_all+=("$v"); else single_all+=("$v"); fi
    "$H" down --state-dir "$WORK/$which/state" >/dev/null
  done
done
HA=$(printf '%s\n' "${ha_all[@]}" | awk '{s+=$1} END {print s/NR}')
SINGLE=$(printf '%s\n' "${single_all[@]}" | awk '{s+=$1} END {print s/NR}')
printf 'HA cluster (3 x 4 workers): %.1f req/s\n' "$HA"
printf 'single pool (1 x 12 workers): %.1f req/s\n' "$SINGLE"
printf 'ratio HA / single: %.3f   target >= 0.95\n' "$(echo "$HA / $SINGLE" | bc -l)"

echo "== homepage req/s through the SQL router vs direct to the primary, $ROUNDS rounds"
mkdir -p "$WORK/direct"; spec direct 3 4 false > "$WORK/direct/hapress.yaml"
"$H" up --detach -f "$WORK/direct/hapress.yaml" --state-dir "$WORK/direct/state" --http-port 18880 --database-port 18806 >/dev/null
"$H" down --state-dir "$WORK/direct/state" >/dev/null
routed_all=(); direct_all=()
for r in $(seq 1 "$ROUNDS"); do
  for which in ha direct; do
    port=$([ $which = ha ] && echo 18580 || echo 18880); dbp=$([ $which = ha ] && echo 18506 || echo 18806)
    "$H" up --detach -f "$WORK/$which/hapress.yaml" --state-dir "$WORK/$which/state" --http-port "$port" --database-port "$dbp" >/dev/null
    wrk -t2 -c12 -d3s "http://127.0.0.1:$port/" >/dev/null
    v=$(rps "$port"); echo "round $r $([ $which = ha ] && echo router || echo direct): $v req/s"
    if [ $which = ha ]; then routed_all+=("$v"); else direct_all+=("$v"); fi
    "$H" down --state-dir "$WORK/$which/state" >/dev/null
  done
done
ROUTED=$(printf '%s\n' "${routed_all[@]}" | awk '{s+=$1} END {print s/NR}')
DIRECT=$(printf '%s\n' "${direct_all[@]}" | awk '{s+=$1} END {print s/NR}')
printf 'through the router: %.1f req/s\n' "$ROUTED"
printf 'direct to the primary: %.1f req/s\n' "$DIRECT"
printf 'ratio router / direct: %.3f   target >= 0.95\n' "$(echo "$ROUTED / $DIRECT" | bc -l)"
