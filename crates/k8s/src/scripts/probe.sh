#!/bin/bash
# Database probes. live: the server process answers (a DB that is merely overloaded or
# replicating is not restarted). ready: it runs queries with InnoDB up; in galera mode it must
# also be Synced (wsrep_ready=ON, wsrep_local_state=4).
set -uo pipefail
cnf=/run/hapress/client.cnf
case ${1:-} in
  live) exec mariadb-admin --defaults-extra-file="$cnf" --silent ping ;;
  ready)
    out=$(mariadb --defaults-extra-file="$cnf" -Nse "SELECT SUPPORT FROM information_schema.ENGINES WHERE ENGINE='InnoDB'") || exit 1
    [[ $out == YES || $out == DEFAULT ]] ;;
  galera)
    out=$(mariadb --defaults-extra-file="$cnf" -Nse "SELECT GROUP_CONCAT(VARIABLE_VALUE ORDER BY VARIABLE_NAME) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('wsrep_local_state','wsrep_ready')") || exit 1
    [[ $out == 4,ON ]] ;;
  *) echo "usage: probe.sh live|ready|galera" >&2; exit 2 ;;
esac
