#!/bin/bash
# Init container: a replica with an empty data directory clones the previous peer with
# `mariadb-backup --stream` (served by the peer's agent on port 3307), prepares the copy and
# leaves its GTID position for the agent, which then starts replication from exactly there.
# A half-finished clone never becomes the data directory: it is unpacked aside and renamed.
set -euo pipefail
data=/var/lib/mysql/data
[[ -d $data/mysql ]] && exit 0
[[ $(</run/hapress/role) == replica ]] || exit 0
[[ $HOSTNAME =~ -([0-9]+)$ ]]
ordinal=${BASH_REMATCH[1]}
donor="${HOSTNAME%-*}-$((ordinal - 1)).$DB_SERVICE"
tmp=/var/lib/mysql/clone.tmp
rm -rf "$tmp" && mkdir -p "$tmp"
echo "clone: streaming a backup from $donor"
socat -u "TCP:$donor:3307,retry=60,interval=5" STDOUT | mbstream -x -C "$tmp"
mariadb-backup --prepare --target-dir="$tmp"
# mariadb_backup_binlog_info: <file> <position> <gtid>; the GTID is where replication resumes.
gtid=$(awk '{print $3}' "$tmp/mariadb_backup_binlog_info")
rm -rf "$data" && mv "$tmp" "$data"
echo "$gtid" > /var/lib/mysql/hapress-clone-gtid
echo "clone: done at GTID $gtid"
