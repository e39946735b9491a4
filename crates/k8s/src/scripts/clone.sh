#!/bin/bash
# Init container: a replica with an empty data directory, or one whose role watcher asked for a
# rebuild (it diverged: $HAPRESS_DATA/hapress-rebuild says why), copies a healthy peer with
# `mariadb-backup --stream` (served by the peer's agent on port 3307), prepares the copy and
# leaves its GTID position for the agent, which then starts replication from exactly there.
# Nothing is deleted: a data directory that is not empty is renamed beside it first
# (diverged-<unix time>, with the reason in hapress-why; incomplete-<unix time> for one without
# a `mysql` schema); remove it once you have looked at it. A rebuild happens only while a peer
# answers as the primary: otherwise this server is the best copy there is and starts as it is.
# A half-finished clone never becomes the data directory: it is unpacked aside and renamed.
# Donors: a peer replicating without errors (read_only=1), else the primary.
# CLONE_PEERS, CLONE_SQL_PORT, CLONE_BACKUP_PORT move the peers (the tests on one machine).
set -euo pipefail
root=${HAPRESS_DATA:-/var/lib/mysql}
run=${HAPRESS_RUN:-/run/hapress}
data=$root/data
marker=$root/hapress-rebuild
sql_port=${CLONE_SQL_PORT:-3306}
backup_port=${CLONE_BACKUP_PORT:-3307}
peer_sql() { # host statement
  printf '[client]\nuser = root\npassword = %s\n' "$(<"${HAPRESS_SECRETS:-/secrets}/root-password")" |
    mariadb --defaults-extra-file=/dev/stdin --connect-timeout=2 -h "$1" -P "$sql_port" -e "$2" 2>/dev/null
}
# Sets `replicas` (peers replicating without errors) and `primary` (peers answering
# read_only=0), as host:backup-port lists.
find_peers() {
  local peers=${CLONE_PEERS:-} i peer ro
  if [[ -z $peers ]]; then
    [[ $HOSTNAME =~ -([0-9]+)$ ]]
    for ((i = 0; i < ${DB_INSTANCES:-0}; i++)); do
      [[ $i -eq ${BASH_REMATCH[1]} ]] || peers+=" ${HOSTNAME%-*}-$i.$DB_SERVICE"
    done
  fi
  replicas= primary=
  for peer in $peers; do
    ro=$(peer_sql "$peer" 'SELECT @@read_only' | tail -n 1) || true
    if [[ $ro == 0 ]]; then
      primary+=" $peer:$backup_port"
    elif [[ $ro == 1 ]] && peer_sql "$peer" 'SHOW SLAVE STATUS\G' | awk -F': ' '
        $1 ~ /^ *Slave_(IO|SQL)_Running$/ && $2 == "Yes" { up++ }
        $1 ~ /^ *Last_(IO|SQL)_Errno$/ && $2 != 0 { bad++ }
        END { exit !(up == 2 && !bad) }'; then
      replicas+=" $peer:$backup_port"
    fi
  done
}
# Moves a data directory that is not empty aside as $1-<unix time>; an empty one is removed.
set_aside() {
  [[ -d $data ]] || return 0
  if [[ -z $(ls -A "$data") ]]; then
    rmdir "$data"
    return 0
  fi
  aside=$root/$1-$(date +%s)
  mv "$data" "$aside"
  echo "clone: the data directory is kept as $aside"
}
if [[ -s $marker ]]; then
  why=$(<"$marker")
  find_peers
  if [[ $(<"$run/role") != replica || -z $primary ]]; then
    # No peer is the primary: this server is the best copy there is. Keep it, and the request
    # for a person to read.
    mv "$marker" "$marker.kept-$(date +%s)"
    echo "clone: a rebuild was asked ($why) but no peer answers as the primary; keeping the data" >&2
    exit 0
  fi
  if [[ -d $data/mysql ]]; then
    set_aside diverged
    echo "$why" > "$aside/hapress-why"
  fi
else
  [[ -d $data/mysql ]] && exit 0
  [[ $(<"$run/role") == replica ]] || exit 0
  find_peers
fi
tmp=$root/clone.tmp
for attempt in $(seq 60); do
  [[ $attempt -gt 1 ]] && find_peers
  for donor in $replicas $primary; do
    rm -rf "$tmp" && mkdir -p "$tmp"
    echo "clone: streaming a backup from $donor"
    info=
    # A donor lost mid-stream ends the attempt (no data for 10 minutes), not the container.
    if socat -T600 -u "TCP:$donor,connect-timeout=10" STDOUT | mbstream -x -C "$tmp"; then
      for f in mariadb_backup_binlog_info xtrabackup_binlog_info; do
        [[ -s $tmp/$f ]] && info=$tmp/$f && break
      done
    fi
    # <file> <position> <gtid>: the GTID is where replication resumes.
    gtid=$([[ -n $info ]] && awk '{print $3}' "$info" || true)
    if [[ -n $gtid ]] && mariadb-backup --prepare --target-dir="$tmp"; then
      echo "$gtid" > "$root/hapress-clone-gtid"
      rm -f "$marker"
      set_aside incomplete
      mv "$tmp" "$data"
      echo "clone: done at GTID $gtid"
      exit 0
    fi
    echo "clone: $donor gave no complete backup" >&2
  done
  echo "clone: no peer could be copied (attempt $attempt of 60); retrying in 5 s" >&2
  sleep 5
done
echo "clone: giving up; the pod restarts and tries again" >&2
exit 1
