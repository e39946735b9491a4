#!/bin/bash
# Init container of every database pod: derives server_id from the pod ordinal, picks the
# replication role and writes the option files MariaDB, the probes and the agent read.
# Role: on first start ordinal 0 is the primary; afterwards the role stored next to the data
# (/var/lib/mysql/hapress-role, rewritten by the operator on failover) wins, so a restarted
# ex-primary never comes back as a second primary.
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
if [[ ${DB_MODE:-replication} == galera ]]; then
  role=galera
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
printf '{"metadata":{"labels":{"hapress.dev/role":"%s"}}}\n' "$role" > /run/hapress/role-patch.json
umask 077
root_password=$(</secrets/root-password)
printf '[client]\nuser = root\npassword = %s\nsocket = /run/mysqld/mysqld.sock\n' \
  "$root_password" > /run/hapress/client.cnf
if [[ $role == galera ]]; then
  # The node's own address and the SST credentials (mariabackup connects as root locally).
  printf '[mariadbd]\nwsrep_node_name = %s\nwsrep_node_address = %s.%s\nwsrep_sst_auth = root:%s\n' \
    "$HOSTNAME" "$HOSTNAME" "$DB_SERVICE" "$root_password" > "$conf/40-node.cnf"
fi
