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
# its own router; with $4 = tcp, their TCP ports; with $4 = primary, the primary's socket alone.
bench_router_config() {
  local b="$S/run/db-0.sock, $S/run/db-1.sock, $S/run/db-2.sock"
  [ "${4:-}" = tcp ] && b="127.0.0.1:$1, 127.0.0.1:$(($1+1)), 127.0.0.1:$(($1+2))"
  [ "${4:-}" = primary ] && b="$S/run/db-0.sock"
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

# Waits (up to 20 s) until the WordPress account can log in through 127.0.0.1:$1.
bench_wait_login() {
  local _
  for _ in $(seq 100); do
    mariadb --no-defaults -h127.0.0.1 -P"$1" -uwordpress wordpress -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "nothing answers on 127.0.0.1:$1" >&2; return 1
}

# The median of the numbers on stdin, one per line.
median() { sort -n | awk '{v[NR]=$1} END {printf "%.2f\n", (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# $1 / $2 to two decimals.
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

# sysbench's options for the bench tables (SB; the password in a 0600 options file, never in
# a process's arguments), the tables created on the primary (port $1) and applied on both
# replicas before anything is measured.
bench_sysbench_tables() {
  (umask 077; echo "mysql-password=$MYSQL_PWD" > "$WORK/sysbench.conf")
  SB=(--config-file="$WORK/sysbench.conf" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=wordpress --mysql-db=wordpress --tables=4 --table-size=10000)
  sysbench oltp_read_only "${SB[@]}" --mysql-port="$1" prepare >/dev/null
  local pos i
  pos=$(mariadb --no-defaults -uroot -S "$S/run/db-0.sock" -N -e 'SELECT @@gtid_binlog_pos')
  for i in 1 2; do
    mariadb --no-defaults -uroot -S "$S/run/db-$i.sock" -N -e "SELECT MASTER_GTID_WAIT('$pos', 30)" >/dev/null
  done
}
