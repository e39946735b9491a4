#!/bin/bash
# Sidecar of every replication-mode database pod. Once MariaDB answers: a replica points
# itself at the primary Service (GTID, slave_pos; from the cloned position on first start;
# the router sidecars' failover manager re-points it at the primary's own address); every pod
# (re)creates the SQL router's monitor account locally, outside the binary log, so the failover
# manager can act on any server; then every pod serves `mariadb-backup --stream` on port 3307
# so the next replica can clone it, and runs the role watcher (role.sh) beside it.
# Port 3307 is reachable only from the site's database pods (NetworkPolicy). Passwords travel
# on the client's stdin, never on a command line. The HAPRESS_* variables only move the paths
# for the tests that run this script against a real server.
set -euo pipefail
run=${HAPRESS_RUN:-/run/hapress}
cnf=${HAPRESS_CLIENT_CNF:-$run/client.cnf}
secrets=${HAPRESS_SECRETS:-/secrets}
config=${HAPRESS_CONFIG:-/config}
sql() { mariadb --defaults-extra-file="$cnf" -Nse "$1"; }
sql_stdin() { mariadb --defaults-extra-file="$cnf" -N; }
until mariadb-admin --defaults-extra-file="$cnf" --silent ping 2>/dev/null && sql 'SELECT 1' >/dev/null 2>&1; do
  sleep 2
done
role=$(<"$run/role")
if [[ $role == replica ]]; then
  pending=${HAPRESS_DATA:-/var/lib/mysql}/hapress-clone-gtid
  if [[ -s $pending ]]; then
    sql "SET GLOBAL gtid_slave_pos = '$(<"$pending")'"
  fi
  if [[ -z $(sql 'SHOW SLAVE STATUS') ]]; then
    password=$(<"$secrets/replication-password")
    sql_stdin <<SQL
CHANGE MASTER TO MASTER_HOST='$PRIMARY_HOST', MASTER_PORT=3306, MASTER_USER='$REPLICATION_USER', MASTER_PASSWORD='$password', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=10;
START SLAVE;
SQL
    echo "agent: replicating from $PRIMARY_HOST"
  fi
  rm -f "$pending"
fi
if [[ -n ${ROUTER_USER:-} ]]; then
  # Probes every server (SLAVE MONITOR, REPLICATION CLIENT), reads password hashes to log in to
  # replicas on a client's behalf (mysql.global_priv) and, as the failover manager, stops,
  # resets and re-points replication, kills an IO thread stuck on a hung primary and sets
  # read_only and the semi-sync variables. ALTER picks up a rotated Secret. Not binlogged: no
  # server ever has a transaction of its own that another lacks.
  # The grants come from hapress (ROUTER_GRANTS, ';'-separated), as the embedded runtime's.
  password=$(<"$secrets/router-password")
  IFS=';' read -ra grants <<<"$ROUTER_GRANTS"
  {
    echo "SET SESSION sql_log_bin = 0;"
    echo "CREATE USER IF NOT EXISTS '$ROUTER_USER'@'%' IDENTIFIED BY '$password';"
    echo "ALTER USER '$ROUTER_USER'@'%' IDENTIFIED BY '$password';"
    for g in "${grants[@]}"; do
      echo "GRANT $g TO '$ROUTER_USER'@'%';"
    done
  } | sql_stdin
  echo "agent: monitor account $ROUTER_USER is current"
fi
socat "TCP-LISTEN:3307,reuseaddr,fork,max-children=1" \
  "SYSTEM:mariadb-backup --defaults-extra-file=$cnf --backup --stream=mbstream --target-dir=/tmp --slave-info" &
# For as long as the backup server runs, the role watcher publishes this server's role when a
# failover changes it (the label sidecar applies it); when either ends, the container restarts.
WATCH_PID=$! exec bash "$config/role.sh"
