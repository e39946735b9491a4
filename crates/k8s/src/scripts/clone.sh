#!/bin/bash
# Init container: a replica with an empty data directory, or one whose role watcher asked for a
# rebuild (it diverged: $HAPRESS_DATA/hapress-rebuild says why), copies a healthy peer with
# `mariadb-backup --stream` (served by the peer's agent on port 3307), prepares the copy and
# leaves its GTID position for the agent, which then starts replication from exactly there.
# Nothing is deleted: a diverged data directory is renamed to diverged-<unix time> beside it
# (with its reason in hapress-why) before the copy; remove it once you have looked at it. A
# half-finished clone never becomes the data directory: it is unpacked aside and renamed.
# The donor: a peer that answers as a replica (read_only=1), else the primary. CLONE_DONORS
# ("host:port ...") replaces the search (the tests that run this script on one machine).
set -euo pipefail
root=${HAPRESS_DATA:-/var/lib/mysql}
run=${HAPRESS_RUN:-/run/hapress}
data=$root/data
marker=$root/hapress-rebuild
if [[ -s $marker ]]; then
  if [[ $(<"$run/role") != replica ]]; then
    # No peer is writable: this server is the best copy there is. Keep it.
    echo "clone: a rebuild was asked ($(<"$marker")) but no peer is the primary; keeping the data" >&2
    exit 0
  fi
  if [[ -d $data ]]; then
    aside=$root/diverged-$(date +%s)
    mv "$data" "$aside"
    cp "$marker" "$aside/hapress-why"
    echo "clone: $(<"$marker"); the data directory is kept as $aside"
  fi
else
  [[ -d $data/mysql ]] && exit 0
  [[ $(<"$run/role") == replica ]] || exit 0
fi
# Peers' backup servers, replicas first (the primary keeps its I/O for the site).
donors() {
  if [[ -n ${CLONE_DONORS:-} ]]; then
    echo "$CLONE_DONORS"
    return
  fi
  local i peer ro replicas= primary=
  for ((i = 0; i < ${DB_INSTANCES:-0}; i++)); do
    peer="${HOSTNAME%-*}-$i.$DB_SERVICE"
    [[ $peer == "$HOSTNAME".* ]] && continue
    ro=$(printf '[client]\nuser = root\npassword = %s\n' "$(<"${HAPRESS_SECRETS:-/secrets}/root-password")" |
      mariadb --defaults-extra-file=/dev/stdin --connect-timeout=2 -h "$peer" -Nse 'SELECT @@read_only' 2>/dev/null) || true
    case $ro in
      1) replicas+=" $peer:3307" ;;
      0) primary+=" $peer:3307" ;;
    esac
  done
  echo $replicas $primary
}
tmp=$root/clone.tmp
for attempt in $(seq 60); do
  for donor in $(donors); do
    rm -rf "$tmp" && mkdir -p "$tmp"
    echo "clone: streaming a backup from $donor"
    if socat -u "TCP:$donor" STDOUT | mbstream -x -C "$tmp" &&
      [[ -s $tmp/mariadb_backup_binlog_info || -s $tmp/xtrabackup_binlog_info ]]; then
      mariadb-backup --prepare --target-dir="$tmp"
      # mariadb_backup_binlog_info: <file> <position> <gtid>; the GTID is where replication
      # resumes.
      info=$tmp/mariadb_backup_binlog_info
      [[ -s $info ]] || info=$tmp/xtrabackup_binlog_info
      gtid=$(awk '{print $3}' "$info")
      rm -rf "$data" && mv "$tmp" "$data"
      echo "$gtid" > "$root/hapress-clone-gtid"
      rm -f "$marker"
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
