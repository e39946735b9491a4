<?php
// The protocol's corners through mysqli (mysqlnd, what WordPress uses), printed as JSON so a run
// straight to MariaDB and a run through the router can be compared byte for byte.
// Usage: PW=... php -d mysqli.allow_local_infile=1 corners.php PORT
mysqli_report(MYSQLI_REPORT_OFF);
$port = (int) $argv[1];
$o = [];

function connect($port, $local_infile = false) {
    $m = mysqli_init();
    if ($local_infile) {
        $m->options(MYSQLI_OPT_LOCAL_INFILE, true);
    }
    if (!@$m->real_connect('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', $port)) {
        fwrite(STDERR, "connect to port $port: $m->connect_errno $m->connect_error\n");
        exit(1);
    }
    return $m;
}

// Everything a client can see of one answer: an error, an OK, or a result set with its
// column metadata.
function answer($m, $r) {
    if ($r === false) {
        return ['err' => [$m->errno, $m->sqlstate, $m->error]];
    }
    if ($r === true) {
        return ['ok' => [$m->affected_rows, $m->insert_id, $m->info, $m->warning_count]];
    }
    $fields = array_map(fn($f) => [$f->name, $f->orgname, $f->table, $f->orgtable, $f->db,
        $f->type, $f->length, $f->max_length, $f->flags, $f->decimals, $f->charsetnr],
        $r->fetch_fields());
    return ['rs' => [$fields, $r->fetch_all(MYSQLI_NUM), $m->warning_count]];
}

function q($m, $sql) {
    global $o;
    $o[] = [substr($sql, 0, 80), answer($m, $m->query($sql))];
}

// A multi-statement query (mysqlnd turns multi-statements on with COM_SET_OPTION first):
// every answer in order, an error ending the list.
function multi($m, $sql) {
    global $o;
    $all = [];
    $ok = $m->multi_query($sql);
    while (true) {
        if (!$ok) {
            $all[] = answer($m, false);
            break;
        }
        $r = $m->store_result();
        $all[] = answer($m, ($r === false && $m->errno == 0) ? true : $r);
        if (!$m->more_results()) {
            break;
        }
        $ok = $m->next_result();
    }
    $o[] = [$sql, $all];
}

$m = connect($port);
// (The thread id is compared in router.rs: after another kind of client, the router's
// greeting may carry another connection's id; see "Greeting guess" in the README.)
q($m, "CREATE OR REPLACE TABLE corners (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10), b LONGBLOB)");
q($m, "CREATE OR REPLACE PROCEDURE corners_p() BEGIN SELECT 1 AS a; SELECT id, v FROM corners ORDER BY id; END");
// A procedure reading through a cursor while it returns rows: MariaDB flags those text result
// sets with "cursor exists".
q($m, "CREATE OR REPLACE PROCEDURE corners_c() BEGIN DECLARE x INT; DECLARE c CURSOR FOR SELECT id FROM corners ORDER BY id; OPEN c; FETCH c INTO x; SELECT x; FETCH c INTO x; SELECT x; CLOSE c; END");
q($m, "INSERT INTO corners (v) VALUES ('a'), ('b'), ('c')");
q($m, "SELECT LAST_INSERT_ID(), ROW_COUNT()");
q($m, "INSERT INTO corners (v) VALUES ('much too long')");
q($m, "SET SESSION sql_mode = ''");
q($m, "INSERT INTO corners (v) VALUES ('much too long')");
q($m, "SHOW WARNINGS");
q($m, "SELECT CAST('12abc' AS INT), 1/0");
q($m, "SHOW WARNINGS");
q($m, "SELECT * FROM no_such_table");
q($m, "SELECT SQL_CALC_FOUND_ROWS id FROM corners ORDER BY id LIMIT 1");
q($m, "SELECT FOUND_ROWS()");
q($m, "CREATE TEMPORARY TABLE corners_tmp (a INT)");
q($m, "INSERT INTO corners_tmp VALUES (1), (2)");
q($m, "SELECT SUM(a) FROM corners_tmp");
q($m, "SELECT id, v, CAST(id AS DECIMAL(10,3)) d, NOW() IS NOT NULL n, 1.5e0 f FROM corners ORDER BY id");
multi($m, "SELECT 1 AS one; CALL corners_p(); UPDATE corners SET v = 'z' WHERE id = 1; SELECT v FROM corners WHERE id = 1");
multi($m, "SELECT 1; SELECT * FROM no_such_table; SELECT 3");
multi($m, "CALL corners_c()");
q($m, "SELECT 'after multi'");

// Packets over 16 MB both ways (split into 16 MB - 1 chunks): a 17 MB literal, the same
// value sent as long data of a prepared statement, and both read back whole.
$big = str_repeat('0123456789abcdef', 17 * 65536);
q($m, "INSERT INTO corners (v, b) VALUES ('big', '$big')");
$st = $m->prepare("INSERT INTO corners (v, b) VALUES ('long', ?)");
$null = null;
$st->bind_param('b', $null);
foreach (str_split($big, 1 << 20) as $chunk) {
    $st->send_long_data(0, $chunk);
}
$o[] = ['long data', $st->execute(), $st->affected_rows, $st->errno];
$st->close();
$r = $m->query("SELECT v, b FROM corners WHERE v IN ('big', 'long') ORDER BY id");
foreach ($r->fetch_all(MYSQLI_NUM) as [$v, $b]) {
    $o[] = ['read back', $v, strlen($b), $b === $big];
}

// A prepared statement with a read-only cursor (COM_STMT_FETCH, one row at a time), then
// reset and executed again.
$st = $m->prepare("SELECT id, v FROM corners WHERE id <= ? ORDER BY id");
$st->attr_set(MYSQLI_STMT_ATTR_CURSOR_TYPE, MYSQLI_CURSOR_TYPE_READ_ONLY);
$st->attr_set(MYSQLI_STMT_ATTR_PREFETCH_ROWS, 1);
$limit = 3;
$st->bind_param('i', $limit);
for ($run = 0; $run < 2; $run++) {
    $st->execute();
    $st->bind_result($id, $v);
    $rows = [];
    while ($st->fetch()) {
        $rows[] = [$id, $v];
    }
    $o[] = ['cursor', $run, $rows, $st->errno];
    $st->reset();
}
$st->close();

// A prepared CALL of a procedure that reads through a cursor, executed without a cursor: its
// binary result sets say "cursor exists" (the procedure's), yet every row follows.
$st = $m->prepare("CALL corners_c()");
$sets = [];
$ok = $st->execute();
do {
    if ($r = $st->get_result()) {
        $sets[] = $r->fetch_all(MYSQLI_NUM);
    }
} while ($st->more_results() && $st->next_result());
$o[] = ['prepared call with a cursor inside', $ok, $sets, $st->errno];
$st->close();

// COM_CHANGE_USER resets the session; with a wrong password it fails as MariaDB says.
q($m, "SET @kept = 1");
$o[] = ['change_user', $m->change_user('wordpress', getenv('PW'), 'wordpress')];
q($m, "SELECT @kept, @@sql_mode = @@global.sql_mode");
$o[] = ['change_user wrong', $m->change_user('wordpress', 'wrong', 'wordpress'), $m->errno, $m->error];
$m->close();

// COM_CHANGE_USER on a session whose login the router answered from its pool (the second
// connection after the first one closed).
connect($port)->close();
$m = connect($port);
$o[] = ['change_user after a pooled login', $m->change_user('wordpress', getenv('PW'), 'wordpress'), $m->errno];
q($m, "SELECT CURRENT_USER(), DATABASE()");
$m->close();

// Reads that write: a view and a column default calling a sequence, run by a replica
// (read-only) first through the router, and sequence functions in a SELECT. Each read follows
// a write, so a replica has the objects (read-your-writes).
$n = connect($port);
q($n, "CREATE OR REPLACE SEQUENCE corners_s");
q($n, "CREATE OR REPLACE TABLE corners_d (a INT DEFAULT (NEXT VALUE FOR corners_s))");
q($n, "CREATE OR REPLACE VIEW corners_v AS SELECT NEXT VALUE FOR corners_s AS n");
$st = $n->prepare("SELECT n FROM corners_v");
$o[] = ['prepared read of a view that writes', $st->execute(), $st->get_result()->fetch_all(), $st->errno];
$st->close();
q($n, "INSERT INTO corners_d VALUES (1)");
q($n, "SELECT DEFAULT(a) FROM corners_d");
q($n, "SELECT NEXTVAL(corners_s), NEXT VALUE FOR corners_s");
q($n, "SELECT SETVAL(corners_s, 5000)");
q($n, "SELECT next_not_cached_value FROM corners_s");
q($n, "DROP VIEW corners_v");
q($n, "DROP TABLE corners_d");
q($n, "DROP SEQUENCE corners_s");
$n->close();

// The optimizer trace describes the session's previous statement: the read must run where
// the trace is read (the session is pinned to the primary once tracing is on).
$t = connect($port);
q($t, "SET optimizer_trace = 'enabled=on'");
q($t, "SELECT COUNT(*) FROM wp_options WHERE option_id < 3");
q($t, "SELECT QUERY FROM information_schema.OPTIMIZER_TRACE");
$t->close();

// LOAD DATA LOCAL INFILE: the file goes from the client through the router.
$file = tempnam(sys_get_temp_dir(), 'corners');
file_put_contents($file, "x1\nx2\nx3\n");
$m = connect($port, true);
$o[] = ['load data local infile', answer($m, $m->query("LOAD DATA LOCAL INFILE '$file' INTO TABLE corners (v)"))];
q($m, "SELECT COUNT(*) FROM corners WHERE v LIKE 'x%'");
unlink($file);

// Over max_allowed_packet (64 MB in this cluster): MariaDB's error.
$huge = str_repeat('x', 65 << 20);
q($m, "SELECT LENGTH('$huge')");
$m = connect($port);
q($m, "SELECT 'a new session works'");
q($m, "DROP TABLE corners");
echo json_encode($o, JSON_PRETTY_PRINT | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
