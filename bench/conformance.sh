#!/usr/bin/env bash
# Transparency check of the SQL router with MariaDB's own test suite: runs the same
# mariadb-test-run cases against a fresh cluster's primary directly and against another fresh
# cluster through `hapress router`, then compares the verdicts case by case.
# Usage: sudo bench/conformance.sh [--suite main[,json,compat/oracle,...]] [--ps] [--limit N]
#        [--tests "main.a main.b"] [--chunk N]
# --ps runs both sides with --ps-protocol (every statement a prepared statement).
# --chunk N runs the cases N at a time, each chunk on two new clusters: a case that breaks its
# server (shuts it down, leaves it read-only or locked) then spoils only its own chunk.
# Writes bench/conformance-<suite>[-ps].txt per suite (verdicts side by side; "hang" for a case
# stopped by mtr's 2-minute timeout) and prints identical/total per suite.
# ONLY=direct or ONLY=routed runs one side (for investigating; the comparison is then moot).
# PARALLEL=1 runs both sides at once (half the time; timing-sensitive cases may then differ:
# re-run the differences with --tests).
# POOL_SIZE=0 runs the router without pooling (cases that count server sessions then agree).
# PORT_BASE=N moves the clusters' ports (default 18900: 18906-18908, 18916-18918, 18980, 18990).
# KEEP=1 leaves the work directory, its logs and both clusters running, for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=main; LIMIT=0; TESTS=""; PS=""; MODE=""; CHUNK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) SUITE=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --tests) TESTS=$2; TESTS_GIVEN=1; shift 2 ;;
    --ps) PS=--ps-protocol; MODE=-ps; shift ;;
    --chunk) CHUNK=$2; shift 2 ;;
    *) echo "usage: $0 [--suite S] [--ps] [--limit N] [--tests LIST] [--chunk N]" >&2; exit 2 ;;
  esac
done
. bench/common.sh
bench_prepare --conformance
MTR=/usr/share/mysql/mysql-test
bench_workdir hapress-conf
down_clusters() { for d in "$WORK"/*/state; do [ -d "$d" ] && "$H" down --state-dir "$d" >/dev/null 2>&1 || true; done; }
cleanup() { kill ${MEND1:-} ${MEND2:-} ${RPID:-} 2>/dev/null || true; [ -n "${KEEP:-}" ] && { echo "kept $WORK"; return; }; down_clusters; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "$TESTS" ]; then
  # Cases that wreck the server for every case after them under --extern:
  # - bad_user_table truncates mysql.global_priv and fails (it needs mtr's own server) before
  #   it puts the accounts back: every later login is refused, on both sides;
  # - these set GLOBAL read_only=1 and, failing under --extern before they reset it, leave the
  #   primary read-only: the router then has no primary (it never sends a statement to a
  #   read-only server) and refuses every later session, while direct runs go on;
  EXCLUDE="main.bad_user_table main.alter_user main.events_bugs main.flush main.flush_read_lock
    main.log_state main.multi_update main.read_only main.read_only_innodb main.xa"
  # - and, in every suite, cases that shut the server down or restart it ("# restart"): under
  #   --extern mtr cannot start it again, the cluster's supervisor does, and on the routed
  #   side the cluster fails over meanwhile, so every later case of the run meets a new
  #   primary; and cases that run RESET MASTER, which leaves the replicas behind a binlog that
  #   is gone (see mend() below). In the text-protocol run of main, 1 of them passed directly
  #   under --extern (ps_error); the others failed (27), were skipped (28) or disabled (1)
  #   both ways.
  for S in ${SUITE//,/ }; do
    if [ -d "$MTR/$S" ]; then T=$MTR/$S; elif [ -d "$MTR/suite/$S/t" ]; then T=$MTR/suite/$S/t; else T=$MTR/suite/$S; fi
    [ -d "$T" ] || { echo "no suite $S under $MTR" >&2; exit 2; }
    TESTS+=$'\n'$(cd "$T" && ls *.test | sed "s|\.test$||; s|^|$S.|" | sort)
    EXCLUDE+=" "$(cd "$T" && grep -liE 'restart_mysqld|shutdown_server|kill_mysqld|restart_and_wait|^\s*shutdown\s*;|^\s*reset\s+master' -- *.test | sed "s|\.test$||; s|^|$S.|" | tr '\n' ' ' || true)
  done
  TESTS=$(echo "$TESTS" | sed '/^$/d' | grep -vxF -f <(echo $EXCLUDE | tr ' ' '\n'))
  echo "excluded: $(echo $EXCLUDE | wc -w) case(s) that break the server for the cases after them (restarts, RESET MASTER, read_only, accounts)"
  [ "$LIMIT" -gt 0 ] && TESTS=$(echo "$TESTS" | head -n "$LIMIT")
fi
N=$(echo "$TESTS" | wc -w)

# The servers get mtr's own defaults where tests depend on them (latin1, MyISAM, local infile).
# Both runs use the account mtr@localhost over unix sockets, so user names and hosts printed by
# tests agree; the second run's router reaches the servers over their unix sockets.
cluster() { # name httpport dbport -> prints the mtr user's password
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/hapress.yaml" <<YAML
apiVersion: hapress.dev/v1alpha1
kind: WordPressCluster
metadata: {name: $1}
spec:
  web: {replicas: 1}
  database:
    # No failover manager: cases break replication on purpose (engines the replicas lack,
    # accounts); mend() below puts the replicas back, where the manager would have the
    # supervisor rebuild them (both at once) in the middle of the run.
    failover: {enabled: false}
    config:
      character_set_server: latin1
      collation_server: latin1_swedish_ci
      default_storage_engine: MyISAM
      local_infile: "ON"
      log_bin_trust_function_creators: "ON"
YAML
  "$H" up --detach -f "$WORK/$1/hapress.yaml" --state-dir "$WORK/$1/state" --http-port "$2" --database-port "$3" >/dev/null
  # (`hapress up` made the router's monitor account for its socket, hapress_router@localhost.)
  local pw; pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mariadb --no-defaults -uroot -S "$WORK/$1/state/run/db-0.sock" <<SQL
CREATE USER 'mtr'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'mtr'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS test; CREATE DATABASE IF NOT EXISTS mtr;
SQL
  # mtr.add_suppression(), which most cases call first: mtr installs it only in servers it
  # starts itself (mysqltest's delimiter syntax turned into the mariadb client's).
  sed -E 's/^delimiter \|\|;/DELIMITER ||/I; s/^delimiter ;\|\|/DELIMITER ;/I; s/^(\s*)--SELECT/\1-- SELECT/' \
    "$MTR/include/mtr_warnings.sql" | mariadb --no-defaults -uroot -S "$WORK/$1/state/run/db-0.sock"
  echo "$pw"
}
run_mtr() { # label extern-args... ; adds to $WORK/<label>.verdicts ("test verdict")
  local label=$1; shift
  rm -rf "$WORK/var-$label"
  (cd "$MTR" && ./mariadb-test-run "$@" $PS --vardir="$WORK/var-$label" --force --max-test-fail=0 \
      --retry=0 --testcase-timeout=2 $CASES 2>&1) > "$WORK/$label-$C.log" || true
  # A case mtr stopped after its timeout is a hang, not an ordinary failure.
  grep -E '^[a-z0-9_./-]+[a-z0-9_ ,.'"'"'-]*\[ (pass|fail|skipped|disabled) \]' "$WORK/$label-$C.log" \
    | sed -E '/\[ fail \].*[Tt]imeout/s/\[ fail \]/[ hang ]/; s/^([^ ]+).*\[ ([a-z]+) \].*$/\1 \2/' \
    | sort -u >> "$WORK/$label.verdicts"
}

echo "conformance: $N case(s) of suite $SUITE${PS:+ with --ps-protocol}, direct vs through the router$([ "$CHUNK" -gt 0 ] && echo " (chunks of $CHUNK)")"
# PORT_BASE moves every port (two runs at once need different ones).
PB=${PORT_BASE:-18900}
# Many cases run RESET MASTER (25 in main). A replica connected at that moment keeps waiting at
# the end of the deleted binlog: the primary's next write then waits for its semi-sync ACK for
# ever, and so does every write after it. When a replica has read further than the primary's
# binlog goes, or its next GTID is not in the primary's binlog (1236), or, with
# gtid_strict_mode, the new 0-1-1 is "out of order" (1950), this resets its own binlog and puts
# it back on the primary's new one from its start (it had applied everything before the reset:
# semi-sync). Without this the router would, rightly, send every read to the primary and the
# run would not exercise read splitting. An event the replica's SQL thread stops on (a case
# that broke a system table on the primary: "different errors on master and slave") is skipped.
# Replicas may then differ from the primary in what those cases broke; a verdict that differs
# is re-run on its own on fresh clusters.
seq0() { tr ',' '\n' | sed -n 's/^ *0-[0-9]*-\([0-9]*\).*/\1/p' | head -1; }
mend() { # cluster password
  local i s st read_ prim p
  while sleep 0.5; do
    # The primary is the writable server (a case may have made the cluster fail over).
    p=""
    for i in 0 1 2; do
      [ "$(MYSQL_PWD=$2 mariadb --no-defaults -umtr -N -S "$WORK/$1/state/run/db-$i.sock" -e 'SELECT @@read_only' 2>/dev/null)" = 0 ] && { p=$i; break; }
    done
    [ -n "$p" ] || continue
    for i in 0 1 2; do
      [ "$i" = "$p" ] && continue
      s="$WORK/$1/state/run/db-$i.sock"
      st=$(MYSQL_PWD=$2 mariadb --no-defaults -umtr -S "$s" -e 'SHOW SLAVE STATUS\G' 2>/dev/null) || continue
      [ -n "$st" ] || continue
      # The replica first, then the primary: a primary behind it can only be a reset one.
      read_=$(echo "$st" | sed -n 's/^ *Gtid_IO_Pos: //p' | seq0)
      prim=$(MYSQL_PWD=$2 mariadb --no-defaults -umtr -N -S "$WORK/$1/state/run/db-$p.sock" -e 'SELECT @@gtid_binlog_pos' 2>/dev/null | seq0) || continue
      if echo "$st" | grep -qE 'Last_IO_Errno: 1236|Last_SQL_Errno: 1950' || [ "${read_:-0}" -gt "${prim:-0}" ]; then
        MYSQL_PWD=$2 mariadb --no-defaults -umtr -S "$s" -e "STOP SLAVE; RESET MASTER; SET GLOBAL gtid_slave_pos = ''; START SLAVE" 2>/dev/null || true
        echo "$(date +%T) db-$i: reset to db-$p's new binlog (read ${read_:-none}, db-$p at ${prim:-none})" >> "$WORK/$1.mended"
      elif echo "$st" | grep -q 'Slave_SQL_Running: No' && echo "$st" | grep -q 'Slave_IO_Running: Yes'; then
        MYSQL_PWD=$2 mariadb --no-defaults -umtr -S "$s" -e "SET GLOBAL sql_slave_skip_counter = 1; START SLAVE SQL_THREAD" 2>/dev/null || true
        echo "$(date +%T) db-$i: skipped $(echo "$st" | grep -m1 'Last_Error:' | cut -c1-150)" >> "$WORK/$1.mended"
      fi
    done
  done
}
TO_PRIMARY=0; TO_REPLICAS=0
: > "$WORK/direct.verdicts"; : > "$WORK/routed.verdicts"
t0=$(date +%s)
run_chunk() { # the chunk's cases; brings up two new clusters and the router, runs both sides
  CASES=$1
  down_clusters; rm -rf "$WORK/direct" "$WORK/routed"
  PWA=$(cluster direct $((PB + 80)) $((PB + 6)))
  PWB=$(cluster routed $((PB + 90)) $((PB + 16)))
  R=$WORK/routed/state
  cat > "$WORK/router.yaml" <<YAML
listen: $WORK/router.sock
backends: [$R/run/db-0.sock, $R/run/db-1.sock, $R/run/db-2.sock]
monitorUser: hapress_router
monitorPasswordFile: $R/secrets/db-router-password
statusListen: $WORK/router-http.sock
readYourWrites: global   # the suite interleaves connections: every read sees every acknowledged write
poolSize: ${POOL_SIZE:-64}
YAML
  "$H" router --config "$WORK/router.yaml" 2>>"$WORK/router.log" & RPID=$!
  # Start only once the router knows the primary, both replicas and the password hashes.
  for _ in $(seq 1 100); do
    curl -s --unix-socket "$WORK/router-http.sock" http://router/status 2>/dev/null \
      | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["primary"] and sum(b["replicating"] and b["caughtUp"] for b in s["backends"]) == 2 else 1)' 2>/dev/null && break
    sleep 0.2
  done
  mend direct "$PWA" & MEND1=$!
  mend routed "$PWB" & MEND2=$!
  direct() { [ "${ONLY:-}" = routed ] || run_mtr direct --extern socket="$WORK/direct/state/run/db-0.sock" --extern user=mtr --extern password="$PWA"; }
  routed() { [ "${ONLY:-}" = direct ] || run_mtr routed --extern socket="$WORK/router.sock" --extern user=mtr --extern password="$PWB"; }
  if [ -n "${PARALLEL:-}" ]; then
    direct & D=$!; routed & R2=$!; wait $D $R2
  else
    direct; routed
  fi
  kill "$MEND1" "$MEND2" 2>/dev/null || true
  local counts
  counts=$(curl -s --unix-socket "$WORK/router-http.sock" http://router/status \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["routedToPrimary"], s["routedToReplicas"])' 2>/dev/null || echo "0 0")
  TO_PRIMARY=$((TO_PRIMARY + ${counts% *})); TO_REPLICAS=$((TO_REPLICAS + ${counts#* }))
  kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true
}
if [ "$CHUNK" -gt 0 ]; then
  echo "$TESTS" | tr ' ' '\n' | sed '/^$/d' | split -l "$CHUNK" -d -a 3 - "$WORK/chunk."
  n=0; total=$(ls "$WORK"/chunk.* | wc -l)
  for f in "$WORK"/chunk.*; do
    n=$((n + 1)); C=$n; c0=$(date +%s)
    run_chunk "$(tr '\n' ' ' < "$f")"
    echo "  chunk $n/$total ($(head -1 "$f") .. $(tail -1 "$f")): $(( $(date +%s) - c0 )) s," \
      "$(wc -l < "$WORK/routed.verdicts") routed verdicts so far, $TO_REPLICAS statements to replicas"
  done
else
  C=all; run_chunk "$TESTS"
fi
t1=$(date +%s)
for side in direct routed; do [ -s "$WORK/$side.mended" ] && echo "$side: $(wc -l < "$WORK/$side.mended") replica mend(s) ($(grep -c reset "$WORK/$side.mended") after a RESET MASTER)"; done
sort -u -o "$WORK/direct.verdicts" "$WORK/direct.verdicts"; sort -u -o "$WORK/routed.verdicts" "$WORK/routed.verdicts"
join -a1 -a2 -e missing -o 0,1.2,2.2 "$WORK/direct.verdicts" "$WORK/routed.verdicts" > "$WORK/joined"
echo "router: $TO_PRIMARY statements to the primary, $TO_REPLICAS to replicas; $((t1 - t0)) s"
# Per suite: bench/conformance-<suite>.txt, and the cases that pass directly. A hand-picked
# --tests list writes beside the suite's file, never over it.
for S in $(cut -d. -f1 "$WORK/joined" | sort -u); do
  F=${S//\//-}
  grep "^$S\." "$WORK/joined" > "$WORK/joined-$F" || true
  OUT=bench/conformance-$F$MODE${TESTS_GIVEN:+-selected}.txt
  {
    echo "# bench/conformance.sh --suite $SUITE${PS:+ --ps} ($(date -u +%F)): test direct routed"
    cat "$WORK/joined-$F"
  } > "$OUT"
  total=$(wc -l < "$WORK/joined-$F")
  same=$(awk '$2 == $3' "$WORK/joined-$F" | wc -l)
  passd=$(awk '$2 == "pass"' "$WORK/joined-$F" | wc -l)
  passr=$(awk '$3 == "pass"' "$WORK/joined-$F" | wc -l)
  hangs=$(awk '$2 == "hang" || $3 == "hang"' "$WORK/joined-$F" | wc -l)
  echo "$S${PS:+ (ps)}: verdicts identical: $same / $total  (pass direct: $passd, pass routed: $passr; hangs: $hangs; $OUT)"
  awk '$2 != $3' "$WORK/joined-$F" | sed 's/^/  differs: /'
  [ -n "${TESTS_GIVEN:-}" ] || awk '$2 == "pass" {print $1}' "$WORK/joined-$F" > "bench/conformance-$F$MODE-pass-direct.txt"
done
