#!/usr/bin/env bash
# Page cache benchmark: anonymous visitors on one `hapress up` cluster (3 web replicas), the
# homepage and a single post with wrk, served from the page cache against the same pages
# rendered by PHP (the `wordpress_no_cache` cookie bypasses the cache), in the same run; then
# the homepage under wrk while a post is published, counting old pages served afterwards;
# then the object cache: the uncached homepage and a logged-in administrator's dashboard with
# the object-cache.php drop-in (Redis) and without it (moved aside: WordPress's per-request
# cache), alternating on the same cluster, ROUNDS times each.
# Usage: sudo bench/cache.sh [--seconds S] [--connections C] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=15; CONNS=16; ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--connections C] [--rounds N]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --bench
bench_workdir hapress-cache
HTTP=18780; DB=18706
cleanup() { "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: cachebench}\nspec:\n  site: {environment: local}\n  web: {replicas: 3}\n' > "$WORK/hapress.yaml"
"$H" up --detach -f "$WORK/hapress.yaml" --state-dir "$WORK/state" --http-port $HTTP --database-port $DB >/dev/null
URL=http://127.0.0.1:$HTTP
# wrk label path [cookie] -> "req/s p50 p99" on stdout, the full report in $WORK/wrk.txt
run() {
  local hdr=()
  [ -n "${3:-}" ] && hdr=(-H "Cookie: $3")
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "${hdr[@]}" "$URL$2" > "$WORK/wrk.txt"
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt"); non2xx=${non2xx:-0}
  printf '%-34s %10s req/s  p50 %-9s p99 %-9s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "$non2xx" >&2
  echo "$rps"
}
curl -s -o /dev/null "$URL/"; curl -s -o /dev/null "$URL/?p=1"
echo "== anonymous visitors, wrk ${SECS}s, $CONNS connections, 3 web replicas (2 cores)"
for page in / /?p=1; do
  uncached=$(run "$page uncached (PHP)" "$page" wordpress_no_cache=1)
  cached=$(run "$page cached" "$page")
  echo "$page: cached / uncached = $(echo "scale=1; $cached / $uncached" | bc)x"
done
echo "== the Kubernetes cache pod: the rendered nginx.conf (proxy_cache) in front of the same site"
# Only the addresses differ from a pod: the pod's scratch directory, a loopback port, and the
# cluster's nginx instead of the web Service.
KPORT=$((HTTP + 1))
mkdir -p "$WORK/cachepod" && chmod 777 "$WORK/cachepod"
"$H" render -f "$WORK/hapress.yaml" | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-page-cache-config"):
        print(d["data"]["nginx.conf"])' \
  | sed -e "s|/var/cache/hapress|$WORK/cachepod|g" -e "s|listen 8080;|listen 127.0.0.1:$KPORT;|" \
        -e "s|server cachebench-web:80;|server 127.0.0.1:$HTTP;|" > "$WORK/cachepod.conf"
nginx -c "$WORK/cachepod.conf" -e stderr &
NGINX_POD=$!
cleanup() { kill "$NGINX_POD" 2>/dev/null || true; "$H" down --state-dir "$WORK/state" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$KPORT/" && break; sleep 0.1; done
curl -s -o /dev/null "http://127.0.0.1:$KPORT/"; curl -s -o /dev/null "http://127.0.0.1:$KPORT/?p=1"
for page in / /?p=1; do
  uncached=$(run "$page uncached (PHP)" "$page" wordpress_no_cache=1)
  cached=$(URL=http://127.0.0.1:$KPORT run "$page cache pod" "$page")
  echo "$page: cache pod / uncached = $(echo "scale=1; $cached / $uncached" | bc)x"
done
kill "$NGINX_POD"; wait "$NGINX_POD" 2>/dev/null || true
echo "== homepage under wrk while a post is published (REST, application password)"
APP=$(cd "$WORK/state/site" && php -r '$_SERVER["HTTP_HOST"]="127.0.0.1:'$HTTP'"; require "wp-load.php"; list($p) = WP_Application_Passwords::create_new_application_password(1, ["name" => "bench"]); echo $p;')
TITLE="Bench post $$"
python3 - "$URL" "admin:$APP" "$TITLE" <<'PY'
import base64, json, sys, threading, time, urllib.request
url, cred, title = sys.argv[1:4]
auth = "Basic " + base64.b64encode(cred.encode()).decode()
published, stop = [None], [False]
stats = {"after": 0, "stale": 0, "hit": 0, "all": 0}
lock = threading.Lock()
def visitor():
    while not stop[0]:
        sent = time.monotonic()
        with urllib.request.urlopen(url + "/") as r:
            body, cache = r.read().decode(), r.headers.get("X-Cache", "")
        with lock:
            stats["all"] += 1
            if published[0] is not None and sent > published[0]:
                stats["after"] += 1
                stats["hit"] += cache == "HIT"
                stats["stale"] += title not in body
threads = [threading.Thread(target=visitor) for _ in range(8)]
[t.start() for t in threads]
time.sleep(2)
req = urllib.request.Request(url + "/?rest_route=/wp/v2/posts", method="POST",
    data=json.dumps({"title": title, "content": "x", "status": "publish"}).encode(),
    headers={"Authorization": auth, "Content-Type": "application/json"})
t0 = time.monotonic()
urllib.request.urlopen(req).read()
published[0] = time.monotonic()
print(f"publish request: {published[0] - t0:.2f}s")
time.sleep(5)
stop[0] = True
[t.join() for t in threads]
print(f"{stats['all']} answers; {stats['after']} to requests sent after the publish returned, "
      f"{stats['hit']} of them from the cache, {stats['stale']} old pages")
PY

echo "== object cache (Redis): PHP-rendered pages with and without the drop-in, $ROUNDS rounds"
DROP=$WORK/state/site/wp-content/object-cache.php
# This machine has no route to api.wordpress.org: the dashboard's PHP-version check would wait
# on it in every request (a connected site caches the answer for a week). Remote requests fail
# at once instead, for this benchmark only.
printf '<?php\nadd_filter("pre_http_request", function () { return new WP_Error("offline", "bench"); });\n' \
  > "$WORK/state/site/wp-content/mu-plugins/bench-offline.php"
# The administrator's login cookies (auth + logged-in), made by WordPress itself.
ADMIN_COOKIE=$(cd "$WORK/state/site" && php -r '$_SERVER["HTTP_HOST"]="127.0.0.1:'$HTTP'"; require "wp-load.php"; $e = time() + 3600; echo AUTH_COOKIE, "=", wp_generate_auth_cookie(1, $e, "auth"), "; ", LOGGED_IN_COOKIE, "=", wp_generate_auth_cookie(1, $e, "logged_in");')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $ADMIN_COOKIE" "$URL/wp-admin/")
[ "$code" = 200 ] || { echo "the dashboard answered $code with the admin's cookies" >&2; exit 1; }
declare -A SUM
for r in $(seq "$ROUNDS"); do
  for mode in redis none; do
    if [ $mode = none ]; then mv "$DROP" "$DROP.off"; else [ -f "$DROP.off" ] && mv "$DROP.off" "$DROP"; fi
    curl -s -o /dev/null -b wordpress_no_cache=1 "$URL/"
    h=$(run "/ uncached, object cache $mode" / wordpress_no_cache=1)
    d=$(run "/wp-admin/ (admin), object cache $mode" /wp-admin/ "$ADMIN_COOKIE")
    SUM[$mode/home]=$(echo "${SUM[$mode/home]:-0} + $h" | bc)
    SUM[$mode/dash]=$(echo "${SUM[$mode/dash]:-0} + $d" | bc)
  done
done
[ -f "$DROP.off" ] && mv "$DROP.off" "$DROP"
echo "uncached homepage: with / without the object cache = $(echo "scale=2; ${SUM[redis/home]} / ${SUM[none/home]}" | bc)x"
echo "admin dashboard:   with / without the object cache = $(echo "scale=2; ${SUM[redis/dash]} / ${SUM[none/dash]}" | bc)x"
"$H" status --state-dir "$WORK/state" | grep 'object cache' || true
