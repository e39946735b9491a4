#!/bin/bash
# Role watcher, run by the agent of every replication-mode database pod for the pod's
# lifetime: every ROLE_INTERVAL seconds (2) it asks the local server whether it is writable
# (read_only=0: the primary; the router sidecars' failover manager sets it on a promotion and
# clears it on a fence) and, when the answer changes, publishes the role:
#   $HAPRESS_RUN/role             the role, which the `label` sidecar puts on the pod (so the
#                                 -primary and -replicas Services follow a failover);
#   $HAPRESS_DATA/hapress-role    the role stored next to the data, which `configure` uses
#                                 when no peer is writable (a whole-cluster restart starts the
#                                 last primary as the primary, not the ordinal that began as one).
# Every file is written to a temporary name and renamed: a reader never sees half a file.
# With WATCH_PID set it ends (status 1) when that process does: the agent's backup server.
set -uo pipefail
run=${HAPRESS_RUN:-/run/hapress}
data=${HAPRESS_DATA:-/var/lib/mysql}
cnf=${HAPRESS_CLIENT_CNF:-$run/client.cnf}
interval=${ROLE_INTERVAL:-2}
publish() { # file content
  printf '%s\n' "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"
}
last=
while [[ -z ${WATCH_PID:-} ]] || kill -0 "$WATCH_PID" 2>/dev/null; do
  ro=$(mariadb --defaults-extra-file="$cnf" --connect-timeout=2 -Nse 'SELECT @@read_only' 2>/dev/null)
  case $ro in
    0) role=primary ;;
    1) role=replica ;;
    *) role= ;; # not answering (starting, hung, stopped): keep what was published
  esac
  if [[ -n $role && $role != "$last" ]]; then
    if publish "$run/role" "$role" && publish "$data/hapress-role" "$role"; then
      echo "role: this server is the $role"
      last=$role
    fi
  fi
  sleep "$interval"
done
echo "role: the backup server (pid $WATCH_PID) ended" >&2
exit 1
