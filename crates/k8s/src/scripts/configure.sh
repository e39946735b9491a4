#!/bin/bash
# Init container of every database pod: derives server_id from the pod ordinal, picks the
# replication role and writes the option files MariaDB, the probes and the agent read.
# Role: a pod whose peers include a writable server (the current primary, wherever the router
# sidecars' failover manager put it) starts as a replica; otherwise the role stored next to the
# data (/var/lib/mysql/hapress-role) wins, and on a cluster's very first start ordinal 0 is the
# primary. So a restarted ex-primary never comes back as a second primary. Every server starts
# with init_rpl_role=SLAVE (base.cnf) unless it is the primary: crash recovery then truncates
# what no replica acknowledged.
set -euo pipefail
[[ $HOSTNAME =~ -([0-9]+)$ ]] || { echo "configure: no ordinal in hostname $HOSTNAME" >&2; exit 1; }
ordinal=${BASH_REMATCH[1]}
conf=/etc/mysql/conf.d
mkdir -p /var/lib/mysql/data
printf '[mariadbd]\nserver_id = %d\nreport_host = %s.%s\n' \
  $((100 + ordinal)) "$HOSTNAME" "$DB_SERVICE" > "$conf/10-server.cnf"
cp /config/base.cnf "$conf/20-base.cnf"
cp /config/extra.cnf "$conf/90-extra.cnf"
role_file=/var/lib/mysql/hapress-role
# A peer that answers read_only=0 is the primary (the root password never leaves stdin).
primary_elsewhere() {
  local i peer
  for ((i = 0; i < ${DB_INSTANCES:-0}; i++)); do
    [[ $i -eq $ordinal ]] && continue
    peer="${HOSTNAME%-*}-$i.$DB_SERVICE"
    if printf '[client]\nuser = root\npassword = %s\n' "$(</secrets/root-password)" |
      mariadb --defaults-extra-file=/dev/stdin --connect-timeout=2 -h "$peer" -Nse 'SELECT @@read_only' 2>/dev/null |
      grep -qx 0; then
      echo "configure: $peer is the primary"
      return 0
    fi
  done
  return 1
}
if [[ ${DB_MODE:-replication} == galera ]]; then
  role=galera
elif primary_elsewhere; then
  role=replica
elif [[ -s $role_file ]]; then
  role=$(<"$role_file")
elif [[ $ordinal -eq 0 ]]; then
  role=primary
else
  role=replica
fi
case $role in primary|replica|galera) ;; *) echo "configure: bad role '$role' in $role_file" >&2; exit 1 ;; esac
echo "$role" > "$role_file"
cp "/config/$role.cnf" "$conf/30-role.cnf"
echo "$role" > /run/hapress/role
umask 077
root_password=$(</secrets/root-password)
printf '[client]\nuser = root\npassword = %s\nsocket = /run/mysqld/mysqld.sock\n' \
  "$root_password" > /run/hapress/client.cnf
if [[ $role == galera ]]; then
  # The node's own address and the SST credentials (mariabackup connects as root locally).
  printf '[mariadbd]\nwsrep_node_name = %s\nwsrep_node_address = %s.%s\nwsrep_sst_auth = root:%s\n' \
    "$HOSTNAME" "$HOSTNAME" "$DB_SERVICE" "$root_password" > "$conf/40-node.cnf"
fi
