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
# A replica that cannot replicate any more (its IO thread stopped with 1236, the primary lacks
# a transaction it has; or its SQL thread stopped with an error), seen so on DIVERGED_CHECKS
# rounds in a row (15, about 30 s), is diverged, the same rule the failover manager reports
# with (crates/topology): the watcher asks for a rebuild from a copy of a healthy peer, once
# (not again while a directory kept from an earlier rebuild exists: then a person looks), and
# withdraws the request if the server replicates again before the pod restarts:
#   $HAPRESS_DATA/hapress-rebuild why, next to the data: `clone` (on the pod's next start)
#                                 moves the data directory aside, kept, and clones a peer;
#   $HAPRESS_RUN/rebuild          the same, for the `label` sidecar, which deletes the pod so
#                                 that it starts again (and its init containers run).
# With WATCH_PID set it ends (status 1) when that process does: the agent's backup server.
set -uo pipefail
run=${HAPRESS_RUN:-/run/hapress}
data=${HAPRESS_DATA:-/var/lib/mysql}
cnf=${HAPRESS_CLIENT_CNF:-$run/client.cnf}
interval=${ROLE_INTERVAL:-2}
checks=${DIVERGED_CHECKS:-15}
publish() { # file content
  printf '%s\n' "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"
}
# The replica's state from SHOW SLAVE STATUS: why it cannot replicate any more, or "healthy"
# (both threads running, no error), or nothing (no answer, starting, reconnecting).
replication() {
  mariadb --defaults-extra-file="$cnf" --connect-timeout=2 -e 'SHOW SLAVE STATUS\G' 2>/dev/null |
    awk -F': ' '
      $1 ~ /^ *Slave_(IO|SQL)_Running$/ && $2 == "Yes" { up++ }
      $1 ~ /^ *Last_IO_Errno$/ { io = $2 }
      $1 ~ /^ *Last_IO_Error$/ { ioe = substr($0, index($0, ": ") + 2) }
      $1 ~ /^ *Last_SQL_Errno$/ { sq = $2 }
      $1 ~ /^ *Last_SQL_Error$/ { sqe = substr($0, index($0, ": ") + 2) }
      END {
        if (io == 1236) print "its IO thread stopped with error 1236: " ioe
        else if (sq != "" && sq != 0) print "its SQL thread stopped with error " sq ": " sqe
        else if (up == 2 && io == 0) print "healthy"
      }'
}
last=
seen=0
asked=
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
  state=
  [[ $role == replica ]] && state=$(replication)
  case $state in
    healthy)
      # Repaired meanwhile (or never diverged): no rebuild is wanted any more.
      seen=0
      if [[ -e $data/hapress-rebuild || -e $run/rebuild ]]; then
        rm -f "$data/hapress-rebuild" "$run/rebuild"
        echo "role: this server replicates again; the rebuild request is withdrawn"
        asked=
      fi
      ;;
    '') ;;
    *)
      seen=$((seen + 1))
      if ((seen >= checks)) && [[ -z $asked ]]; then
        kept=$(ls -d "$data"/diverged-* 2>/dev/null | head -n 1)
        if [[ -n $kept ]]; then
          # Rebuilt once already and diverged again: a copy would not help. A person looks.
          echo "role: this server diverged again ($state); $kept is kept from the last time, so it is not rebuilt again" >&2
          asked=1
        elif publish "$data/hapress-rebuild" "$state" && publish "$run/rebuild" "$state"; then
          echo "role: this server diverged ($state); asking for a rebuild from a copy of a peer" >&2
          asked=1
        fi
      fi
      ;;
  esac
  sleep "$interval"
done
echo "role: the backup server (pid $WATCH_PID) ended" >&2
exit 1
