#!/bin/bash
# Main command of a galera node. Join when any peer answers on the group port; bootstrap a new
# cluster only when no peer does AND this node may: ordinal 0 on the very first start (no
# data yet), or the node whose grastate.dat says safe_to_bootstrap: 1 (the last one to leave).
# Otherwise wait: bootstrapping a node without the newest state would lose transactions.
set -euo pipefail
[[ $HOSTNAME =~ -([0-9]+)$ ]]
ordinal=${BASH_REMATCH[1]}
data=/var/lib/mysql/data
for peer in $PEERS; do
  [[ $peer == "$HOSTNAME".* ]] && continue
  if timeout 2 bash -c "exec 3<>/dev/tcp/$peer/4567" 2>/dev/null; then
    echo "galera: joining through $peer"
    exec mariadbd
  fi
done
if [[ ! -d $data/mysql && $ordinal -eq 0 ]]; then
  echo "galera: first start, bootstrapping a new cluster"
  exec docker-entrypoint.sh mariadbd --wsrep-new-cluster
fi
if grep -q '^safe_to_bootstrap: *1' "$data/grastate.dat" 2>/dev/null; then
  echo "galera: no peer answers and this node left last; bootstrapping from its state"
  exec mariadbd --wsrep-new-cluster
fi
echo "galera: no peer answers and this node may not bootstrap; retrying" >&2
sleep 10
exit 1
