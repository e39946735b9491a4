# Shared by the bench scripts (sourced, from the repository root).

# Installs what is missing (scripts/setup.sh with the given options), builds the release binary
# and sets $H to it.
bench_prepare() {
  scripts/setup.sh "$@" >/dev/null
  export PATH="$HOME/.cargo/bin:$PATH"
  cargo build --release --quiet -p hapress
  H=$PWD/target/release/hapress
}

# Sets $WORK to a new directory under /tmp named after $1; www-data workers must reach it.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$WORK"
}

# Brings up a cluster named $1 in $WORK/state (HTTP port $2, database ports $3, $3+1, $3+2),
# exports MYSQL_PWD (the WordPress account's password) and writes router config $WORK/$5 for
# a second router on TCP 127.0.0.1:$4 (the cluster's own listens on a unix socket), with the
# same monitor account.
bench_cluster() {
  printf 'apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: %s}\nspec:\n  web: {replicas: 1}\n' "$1" > "$WORK/hapress.yaml"
  "$H" up --detach -f "$WORK/hapress.yaml" --state-dir "$WORK/state" --http-port "$2" --database-port "$3" >/dev/null
  S=$WORK/state
  export MYSQL_PWD; MYSQL_PWD=$(cat "$S/secrets/db-wordpress-password")
  bench_router_config "$3" "$4" "$5"
}

# Writes router config $WORK/$3 listening on 127.0.0.1:$2 for the cluster whose databases
# listen on $1, $1+1, $1+2. Backends are the servers' unix sockets, as `hapress up` configures
# its own router; with $4 = tcp, their TCP ports.
bench_router_config() {
  local b="$S/run/db-0.sock, $S/run/db-1.sock, $S/run/db-2.sock"
  [ "${4:-}" = tcp ] && b="127.0.0.1:$1, 127.0.0.1:$(($1+1)), 127.0.0.1:$(($1+2))"
  cat > "$WORK/$3" <<YAML
listen: 127.0.0.1:$2
backends: [$b]
monitorUser: hapress_router
monitorPasswordFile: $S/secrets/db-router-password
YAML
}

# Requests per second of PHP's connection per request to 127.0.0.1:$1 over $THREADS workers
# (bench/connect.php) for $SECS seconds.
bench_connect_run() {
  local pids=() i total=0
  for i in $(seq "$THREADS"); do php bench/connect.php "$1" "$SECS" > "$WORK/c.$i" & pids+=($!); done
  wait "${pids[@]}"
  for i in $(seq "$THREADS"); do total=$((total + $(cat "$WORK/c.$i"))); done
  echo $((total / SECS))
}

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
