//! The SQL router against a real cluster: three MariaDB servers from `hapress up`, real
//! clients (the `mariadb` CLI, `mariadb-dump`, PHP mysqli and PDO) through `hapress router`.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Router {
    child: Child,
    port: u16,
    status_port: u16,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hapress router --config cfg`, listening on `port` and serving its status on `port + 1`.
/// With `HAPRESS_ROUTER_TRACE=1` its trace goes to the test's stderr.
fn spawn_router(cfg: &std::path::Path, port: u16) -> Router {
    let traced = std::env::var_os("HAPRESS_ROUTER_TRACE").is_some_and(|v| v == "1");
    let child = hapress()
        .args(["router", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(if traced {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    Router {
        child,
        port,
        status_port: port + 1,
    }
}

fn start_router(c: &Cluster, max_lag: u64) -> Router {
    // `hapress up` created the monitor account; a second router uses the same one.
    let dir = c.dir.path();
    let pwf = format!("{}/secrets/db-router-password", c.state_dir());
    let ports = free_ports(2);
    let cfg = dir.join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{}\nbackends: [127.0.0.1:{}, 127.0.0.1:{}, 127.0.0.1:{}]\nmonitorUser: hapress_router\nmonitorPasswordFile: {}\nstatusListen: 127.0.0.1:{}\nmaxReplicationLag: {max_lag}\nprobeIntervalMs: 200\npoolSize: 6\n",
            ports,
            c.db_port,
            c.db_port + 1,
            c.db_port + 2,
            pwf,
            ports + 1
        ),
    )
    .unwrap();
    let r = spawn_router(&cfg, ports);
    let ready = wait_for(Duration::from_secs(10), || {
        let s = r.status();
        s["primary"].is_string()
            && s["backends"].as_array().is_some_and(|b| {
                b.iter()
                    .filter(|b| b["replicating"] == true && b["caughtUp"] == true)
                    .count()
                    == 2
            })
    });
    assert!(
        ready.is_some(),
        "router never saw the topology: {}",
        r.status()
    );
    r
}

impl Router {
    fn get(&self, path: &str) -> String {
        // The router may not listen yet: no panic, just an empty body.
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.status_port)) else {
            return String::new();
        };
        use std::io::Write;
        let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }
    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status")).unwrap_or_default()
    }
    fn routed_to_replicas(&self) -> u64 {
        self.status()["routedToReplicas"].as_u64().unwrap()
    }
}

fn wp_password(c: &Cluster) -> String {
    std::fs::read_to_string(format!("{}/secrets/db-wordpress-password", c.state_dir()))
        .unwrap()
        .trim()
        .to_string()
}

/// `mariadb` as the WordPress user on `port` (password through the environment, never argv).
fn client(port: u16, password: &str, db: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uwordpress",
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ])
        .env("MYSQL_PWD", password)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `php -r script` with the WordPress password in `$PW` (never in argv): success, stdout
/// (trimmed), stderr.
fn run_php(password: &str, script: &str) -> (bool, String, String) {
    let out = Command::new("php")
        .args(["-r", script])
        .env("PW", password)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `mariadb` as the WordPress user on `port`, database `wordpress`, reading `script` from
/// stdin (so client commands such as `status` work).
fn piped(port: u16, password: &str, script: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", &format!("-P{port}")])
        .args(["-uwordpress", "-N", "-B", "wordpress"])
        .env("MYSQL_PWD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// A named part of the router test.
type Scenario = (&'static str, fn(&Ctx));

/// The cluster and router every scenario below runs against.
struct Ctx {
    c: Cluster,
    r: Router,
    pw: String,
}

impl Ctx {
    /// A pool counter of the primary's backend (`open`, `idle`, `opened`, `reused`, ...).
    /// Waits until every open primary connection is idle in the pool (`what` just ended).
    fn wait_pooled(&self, what: &str) {
        let idle = wait_for(Duration::from_secs(5), || {
            let open = self.pool("open");
            open > 0 && self.pool("idle") == open
        });
        assert!(idle.is_some(), "{what} was not pooled: {}", self.r.status());
    }

    fn pool(&self, field: &str) -> u64 {
        let s = self.r.status();
        let b = s["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == format!("127.0.0.1:{}", self.c.db_port))
            .cloned();
        b.unwrap()["pool"][field].as_u64().unwrap()
    }

    /// A global status counter of the primary, read directly.
    fn primary_status(&self, name: &str) -> u64 {
        let sql = format!("SHOW GLOBAL STATUS LIKE '{name}'");
        let (ok, out, err) = client(self.c.db_port, &self.pw, "wordpress", &sql);
        assert!(ok, "{err}");
        out.split('\t').nth(1).unwrap().trim().parse().unwrap()
    }
}

/// One cluster (three servers from `hapress up`, failover manager off) and one router for
/// every scenario, run in order; a failing scenario does not stop the others, and the test
/// fails naming every one that failed. `ROUTER_SCENARIO=name` runs only the scenarios whose
/// name contains `name` (the failover is always last: it moves the primary).
#[test]
fn router_splits_reads_keeps_sessions_transparent_and_follows_the_primary() {
    // max_allowed_packet 64M: room for packets over 16 MB (split packets) below. The stack's
    // own failover manager is off: the last scenario moves the primary by hand and checks that
    // a router without a manager follows it (tests/failover.rs covers the manager).
    let (c, _) = Cluster::up("apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: rt}\nspec:\n  web: {replicas: 1}\n  database:\n    config: {max_allowed_packet: 64M}\n    failover: {enabled: false}\n");
    let r = start_router(&c, 3600);
    let pw = wp_password(&c);
    // A table several scenarios read: ids 1 and 2, on every server.
    c.sql(
        0,
        "CREATE TABLE wordpress.ryw (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT); INSERT INTO wordpress.ryw (v) VALUES ('fresh'), ('waited')",
    );
    let replicated = wait_for(Duration::from_secs(20), || {
        [1, 2]
            .iter()
            .all(|&db| c.sql(db, "SELECT COUNT(*) FROM wordpress.ryw") == "2")
    });
    assert!(replicated.is_some(), "the replicas never got the table");
    let t = Ctx { c, r, pw };
    let scenarios: &[Scenario] = &[
        ("errors_are_mariadbs_own", errors_are_mariadbs_own),
        (
            "bad_input_costs_only_its_session",
            bad_input_costs_only_its_session,
        ),
        (
            "reads_go_to_replicas_with_the_session_state",
            reads_go_to_replicas_with_the_session_state,
        ),
        ("read_your_writes", read_your_writes),
        (
            "metrics_count_routing_and_latency",
            metrics_count_routing_and_latency,
        ),
        (
            "dump_through_the_router_equals_direct",
            dump_through_the_router_equals_direct,
        ),
        ("php_mysqli_and_pdo", php_mysqli_and_pdo),
        ("pooled_connections_are_reset", pooled_connections_are_reset),
        ("certain_sets_are_held_back", certain_sets_are_held_back),
        ("php_kill_of_the_thread_id", php_kill_of_the_thread_id),
        (
            "kill_reaches_a_statement_on_a_replica",
            kill_reaches_a_statement_on_a_replica,
        ),
        (
            "a_lost_backend_closes_the_client",
            a_lost_backend_closes_the_client,
        ),
        ("a_hangup_abandons_the_wait", a_hangup_abandons_the_wait),
        (
            "a_health_check_keeps_the_pool",
            a_health_check_keeps_the_pool,
        ),
        (
            "passwords_are_checked_as_mariadb_does",
            passwords_are_checked_as_mariadb_does,
        ),
        ("the_pool_bounds_what_is_kept", the_pool_bounds_what_is_kept),
        (
            "change_user_on_a_pooled_connection",
            change_user_on_a_pooled_connection,
        ),
        ("a_prepared_set_is_replayed", a_prepared_set_is_replayed),
        (
            "prepared_diagnostics_follow_their_statement",
            prepared_diagnostics_follow_their_statement,
        ),
        (
            "a_prepared_use_and_drop_database",
            a_prepared_use_and_drop_database,
        ),
        (
            "prepared_statements_run_on_replicas",
            prepared_statements_run_on_replicas,
        ),
        ("a_login_without_a_database", a_login_without_a_database),
        ("sysbench_prepared_statements", sysbench_prepared_statements),
        (
            "protocol_corners_match_direct",
            protocol_corners_match_direct,
        ),
        (
            "set_global_reaches_the_replicas",
            set_global_reaches_the_replicas,
        ),
        (
            "the_monitor_losing_its_privileges",
            the_monitor_losing_its_privileges,
        ),
        ("failover_by_hand", failover_by_hand),
    ];
    let only = std::env::var("ROUTER_SCENARIO").unwrap_or_default();
    let mut failed = Vec::new();
    for (name, scenario) in scenarios.iter().filter(|(n, _)| n.contains(only.as_str())) {
        eprintln!("scenario {name}");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&t))).is_err() {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "failed scenarios (each panic is printed above): {failed:?}"
    );
}

/// Errors are MariaDB's own: wrong password, unknown database.
fn errors_are_mariadbs_own(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    for (password, db) in [("wrong", "wordpress"), (pw.as_str(), "no_such_db")] {
        let direct = client(c.db_port, password, db, "SELECT 1");
        let routed = client(r.port, password, db, "SELECT 1");
        assert!(!direct.0 && !routed.0);
        assert_eq!(routed.2, direct.2, "error differs from MariaDB's");
    }
}

/// Bad input costs only the session that sent it: garbage after the greeting, a client that
/// stalls mid-packet, a truncated header; the router stays up for everyone else.
fn bad_input_costs_only_its_session(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    {
        use std::io::Write;
        let mut garbage = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        garbage
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut greeting = [0u8; 4];
        garbage.read_exact(&mut greeting).unwrap();
        garbage.write_all(&[0xff; 64]).unwrap();
        let mut stalled = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        stalled.write_all(&[0x20, 0x00]).unwrap(); // half a header, then nothing
        let (ok, out, err) = client(r.port, pw, "wordpress", "SELECT 1");
        assert!(ok && out == "1", "router unusable after bad input: {err}");
        let mut rest = Vec::new();
        // The bad session is closed (EOF or reset), not left hanging until the read timeout.
        let closed = garbage.read_to_end(&mut rest);
        assert!(
            !matches!(&closed, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "the router left a garbage-sending client hanging: {closed:?}"
        );
        drop(stalled);
    }
}

/// Plain reads go to replicas; writes and session-bound statements to the primary.
fn reads_go_to_replicas_with_the_session_state(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let before = r.routed_to_replicas();
    let (ok, out, err) = client(
        r.port,
        pw,
        "wordpress",
        "SELECT COUNT(*) FROM wp_options WHERE option_name = 'blogname'",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1");
    assert!(
        r.routed_to_replicas() > before,
        "the read did not reach a replica: {}",
        r.status()
    );

    // Session state follows the session to the replica (SET NAMES / sql_mode replayed).
    let (ok, out, err) = client(
        r.port,
        pw,
        "wordpress",
        "SET NAMES latin1; SET SESSION sql_mode = 'ANSI_QUOTES'; SELECT @@character_set_client, @@sql_mode; SELECT \"option_name\" FROM wp_options WHERE option_name = 'siteurl'; SELECT CHARSET('x')",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out, "latin1\tANSI_QUOTES\nsiteurl\nlatin1",
        "session state was not replayed on the replica"
    );
}

/// Read-your-writes while the replicas are held 60 s behind (MASTER_DELAY): a session that
/// wrote reads its write; a session that did not reads the (stale) replica.
fn read_your_writes(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    for db in [1, 2] {
        c.sql(
            db,
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 60; START SLAVE",
        );
    }
    let (ok, out, err) = client(
        r.port,
        pw,
        "wordpress",
        "CREATE TABLE ryw_lag (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT); INSERT INTO ryw_lag (v) VALUES ('fresh'); SELECT v FROM ryw_lag; SELECT LAST_INSERT_ID()",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "fresh\n1", "a session did not read its own write");
    // Another session never wrote: its read goes to a replica, which is behind, so it must
    // not see the table yet (proves the read was not silently sent to the primary).
    let (_, _, err) = client(r.port, pw, "wordpress", "SELECT v FROM ryw_lag");
    assert!(
        err.contains("1146"),
        "expected the lagging replica's 'doesn't exist', got: {err}"
    );
    for db in [1, 2] {
        c.sql(
            db,
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
        );
    }
    // Caught up as the router sees it: a replica (not the primary) serves the read.
    let caught_up = wait_for(Duration::from_secs(20), || {
        let before = r.routed_to_replicas();
        client(r.port, pw, "wordpress", "SELECT v FROM ryw_lag").1 == "fresh"
            && r.routed_to_replicas() > before
    });
    assert!(caught_up.is_some(), "replicas never caught up");
    // With the replicas current, a read after a write goes to a replica that first waits for
    // the write's GTID (read from the OK packet): it sees the write and the primary is spared.
    let before = r.routed_to_replicas();
    let (ok, out, err) = client(
        r.port,
        pw,
        "wordpress",
        "INSERT INTO ryw_lag (v) VALUES ('waited'); SELECT COUNT(*) FROM ryw_lag WHERE v = 'waited'; SELECT ROW_COUNT()",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1\n-1", "read after write did not see the write");
    assert!(
        r.routed_to_replicas() > before,
        "the read after a write did not use a replica: {}",
        r.status()
    );
}

/// Prometheus metrics: routing counters and per-backend latency histograms.
fn metrics_count_routing_and_latency(t: &Ctx) {
    let (c, r) = (&t.c, &t.r);
    let metrics = r.get("/metrics");
    let primary_count = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "hapress_router_backend_latency_seconds_count{{backend=\"127.0.0.1:{}\"}}",
                c.db_port
            ))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        primary_count > 0,
        "no latency observations for the primary:\n{metrics}"
    );
    assert!(metrics.contains("hapress_router_routed_total{target=\"replica\"}"));
}

/// mariadb-dump through the router equals mariadb-dump direct.
fn dump_through_the_router_equals_direct(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let dump = |port: u16| {
        let out = Command::new("mariadb-dump")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uwordpress",
                "--skip-dump-date",
                "--single-transaction",
                "wordpress",
            ])
            .env("MYSQL_PWD", pw)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (d1, d2) = (dump(c.db_port), dump(r.port));
    assert!(d1.contains("INSERT INTO `wp_options`"));
    assert!(
        d1 == d2,
        "mariadb-dump through the router differs from direct"
    );
}

/// PHP mysqli and PDO (what WordPress uses) through the router.
fn php_mysqli_and_pdo(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let php = format!(
        r#"$m = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
$m->set_charset('utf8mb4');
$m->query("SET SESSION sql_mode='NO_ENGINE_SUBSTITUTION'");
$r = $m->query("SELECT SQL_CALC_FOUND_ROWS option_name FROM wp_options LIMIT 1");
$f = $m->query("SELECT FOUND_ROWS()")->fetch_row()[0];
$m->query("INSERT INTO ryw (v) VALUES ('php')");
$id = $m->insert_id;
$m->query("INSERT INTO ryw (v) VALUES ('a'), ('b')");
$info = $m->info;
$p = new PDO('mysql:host=127.0.0.1;port={port};dbname=wordpress', 'wordpress', getenv('PW'), [PDO::ATTR_EMULATE_PREPARES => false]);
$s = $p->prepare('SELECT v FROM ryw WHERE id = ?');
$s->execute([$id]);
echo $r->num_rows, ' ', $f > 1 ? 'found' : 'none', ' ', $id > 2 ? 'new id' : $id, ' ', $s->fetchColumn(), ' ', $info, "\n";"#,
        port = r.port
    );
    let (_, out, err) = run_php(pw, &php);
    assert_eq!(
        out, "1 found new id php Records: 2  Duplicates: 0  Warnings: 0",
        "{err}"
    );
}

/// Pooling: a finished session's primary connection is reset and serves the next session
/// without a backend handshake. The thread id in the greeting is that connection's, so it
/// equals CONNECTION_ID(), and nothing of one session's state reaches the next.
fn pooled_connections_are_reset(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    // (The greeting is sent before the client says who it is: the router greets with a
    // connection of the latest login's user and capabilities. The PHP clients above had
    // others, so the first `mariadb` session gets a new connection.)
    assert!(piped(r.port, pw, "SELECT 1;\n").0);
    let (opened, reused) = (t.pool("opened"), t.pool("reused"));
    for _ in 0..10 {
        let (ok, out, err) = piped(r.port, pw, "SELECT CONNECTION_ID();\nstatus;\n");
        assert!(ok, "{err}");
        let id = out.lines().next().unwrap().trim().to_string();
        assert!(
            out.lines()
                .any(|l| l.starts_with("Connection id:") && l.ends_with(&format!("\t{id}"))),
            "greeting thread id differs from CONNECTION_ID() {id}:\n{out}"
        );
    }
    assert!(
        t.pool("reused") >= reused + 9 && t.pool("opened") <= opened + 1,
        "sessions did not reuse pooled connections: {}",
        r.status()
    );
    // A pooled connection already in the client's database needs no COM_INIT_DB; one a session
    // left in another database gets it (COM_RESET_CONNECTION keeps the database).
    let changes = || t.primary_status("Com_change_db");
    let (ok, _, err) = piped(r.port, pw, "USE information_schema;\nSELECT 1;\n");
    assert!(ok, "{err}");
    // A USE the router does not see on its own (inside a multi-statement query).
    let (ok, _, err) = piped(
        r.port,
        pw,
        "DELIMITER //\nSELECT 1; USE information_schema//\n",
    );
    assert!(ok, "{err}");
    let (before, calibrated) = (changes(), changes());
    let own = calibrated - before; // what reading the counter costs
    for _ in 0..5 {
        let (ok, out, err) = piped(r.port, pw, "SELECT DATABASE();\n");
        assert!(ok, "{err}");
        assert_eq!(
            out, "wordpress",
            "a session started in another session's database"
        );
    }
    let after = changes();
    // (At most one COM_INIT_DB for each of the two connections left in information_schema.)
    assert!(
        after - calibrated <= own + 2,
        "pooled logins into the same database ran COM_INIT_DB: {} changes",
        after - calibrated - own
    );
    let (ok, a, err) = piped(
        r.port,
        pw,
        "SET @leak = 42; SET SESSION sql_mode = 'ANSI_QUOTES'; SET NAMES latin1; CREATE TABLE leak_t (i INT); CREATE TEMPORARY TABLE leak_tmp (i INT); SELECT GET_LOCK('leak', 0); BEGIN; INSERT INTO leak_t VALUES (1); SELECT CONNECTION_ID();\n",
    );
    assert!(ok, "{err}");
    let a_id = a.lines().last().unwrap().to_string();
    let (ok, b, err) = piped(
        r.port,
        pw,
        "SELECT CONNECTION_ID(), @leak IS NULL, @@sql_mode = @@GLOBAL.sql_mode, @@character_set_client, IS_FREE_LOCK('leak'), (SELECT COUNT(*) FROM leak_t);\n",
    );
    assert!(ok, "{err}");
    let charset = client(c.db_port, pw, "wordpress", "SELECT @@character_set_client").1;
    assert_eq!(
        b,
        format!("{a_id}\t1\t1\t{charset}\t1\t0"),
        "the next session on the same connection saw the previous one's state"
    );
    let (_, _, err) = piped(r.port, pw, "SELECT * FROM leak_tmp;\n");
    assert!(err.contains("1146"), "temporary table leaked: {err}");
    // Errors on the pooled path are still MariaDB's own (the login of a client the router
    // cannot check is relayed to a new connection).
    for (password, db) in [("wrong", "wordpress"), (pw.as_str(), "no_such_db")] {
        let direct = client(c.db_port, password, db, "SELECT 1");
        let routed = client(r.port, password, db, "SELECT 1");
        assert!(!direct.0 && !routed.0);
        assert_eq!(routed.2, direct.2, "error differs from MariaDB's");
    }
}

/// Session `SET`s whose outcome is certain (PHP's `set_charset`, WordPress's `SET NAMES ...
/// COLLATE` and `sql_mode`) are answered by the router and sent with the primary's next
/// command: a request that then only reads from replicas costs the primary no command at all
/// (no `SET`, no reset when it ends), and every statement still runs under the settings.
fn certain_sets_are_held_back(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    // A WordPress request's start, then `body`.
    let php = |port: u16, body: &str| {
        let (ok, out, err) = run_php(
            pw,
            &format!(
                r#"$m = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
$m->set_charset('utf8mb4');
$m->query("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_520_ci'");
$m->query("SET SESSION sql_mode='ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'");
{body}"#
            ),
        );
        assert!(ok, "{err}");
        out
    };
    let read = r#"$v = $m->query("SELECT option_value FROM wp_options WHERE option_name = 'siteurl'")->fetch_row()[0];
echo $v === null ? 'none' : 'read', "
";"#;
    // The first sessions of PHP's kind log in on new connections.
    for _ in 0..2 {
        assert_eq!(php(r.port, read), "read");
    }
    let counters = || (t.primary_status("Com_set_option"), t.pool("resets"));
    let before = counters();
    let calibrated = counters();
    let own = calibrated.0 - before.0; // reading them
    for _ in 0..10 {
        assert_eq!(php(r.port, read), "read");
    }
    let after = counters();
    let (sets, resets) = (after.0 - calibrated.0 - own, after.1 - calibrated.1);
    // Without holding back: 30 SETs and 10 resets on the primary.
    assert!(
        sets <= 3 && resets <= 1,
        "10 read-only PHP requests cost the primary {sets} SETs and {resets} resets"
    );
    // Every statement runs under the settings, wherever it runs: a read, a transaction on
    // the primary, a write (strict mode refuses what the default mode turns into a warning),
    // as directly.
    let settings = r#"echo implode(' ', $m->query('SELECT @@character_set_client, @@collation_connection, @@sql_mode')->fetch_row()), "\n";
$m->begin_transaction();
echo implode(' ', $m->query('SELECT @@collation_connection, @@sql_mode')->fetch_row()), "\n";
$m->commit();
$m->query("SET SESSION sql_mode='STRICT_ALL_TABLES'");
try { $m->query("INSERT INTO ryw (id, v) VALUES ('x', 'strict')"); echo "inserted\n"; }
catch (mysqli_sql_exception $e) { echo $e->getCode(), "\n"; }"#;
    let direct = php(c.db_port, settings);
    assert_eq!(php(r.port, settings), direct);
    assert!(direct.ends_with("1366"), "{direct}");
    // A `SET` whose outcome is not certain is the server's to answer, as before.
    let bad = r#"try { $m->query("SET NAMES 'nosuchset'"); echo "ok\n"; }
catch (mysqli_sql_exception $e) { echo $e->getCode(), "\n"; }"#;
    assert_eq!(php(r.port, bad), php(c.db_port, bad));
}

/// PHP: mysqli's thread_id is CONNECTION_ID(), and KILL of it from another session works
/// (after one mysqli session, so that the router greets with a mysqli connection).
fn php_kill_of_the_thread_id(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let warm = format!(
        "new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {});",
        r.port
    );
    let (ok, _, err) = run_php(pw, &warm);
    assert!(ok, "{err}");
    let php = format!(
        r#"$a = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
$same = $a->thread_id == $a->query('SELECT CONNECTION_ID()')->fetch_row()[0];
$b = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
$b->query('KILL ' . $a->thread_id);
try {{ $a->query('SELECT 1'); $r = 'alive'; }} catch (mysqli_sql_exception $e) {{ $r = 'killed'; }}
echo $same ? 'same' : 'differs', ' ', $r, "\n";"#,
        port = r.port
    );
    let (_, out, err) = run_php(pw, &php);
    assert_eq!(out, "same killed", "{err}");
}

/// KILL QUERY / KILL CONNECTION of a session whose statement runs on a replica (a plain
/// SELECT SLEEP) stops it there, as on one server: the same outcome as direct, at once; a
/// prepared KILL QUERY too (PDO without emulation, mysqltest --ps-protocol).
fn kill_reaches_a_statement_on_a_replica(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    // The script sends each KILL once the test has seen the SLEEP running on a server.
    let kill_sleep = |port: u16| {
        let dir = c.dir.path().join(format!("kill-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let php = format!(
            r#"mysqli_report(MYSQLI_REPORT_OFF);
$out = [];
foreach (['QUERY', 'PREPARED_QUERY', 'CONNECTION'] as $kind) {{
    $a = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
    $b = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
    $id = $a->query('SELECT CONNECTION_ID()')->fetch_row()[0];
    $t = microtime(true);
    $a->query("SELECT SLEEP(20) AS k_$kind", MYSQLI_ASYNC);
    while (!file_exists('{dir}/' . $kind)) {{ usleep(10000); }}
    if ($kind == 'PREPARED_QUERY') {{ $b->prepare("KILL QUERY $id")->execute(); }}
    else {{ $b->query("KILL $kind $id"); }}
    $read = $errors = $rejects = [$a];
    mysqli::poll($read, $errors, $rejects, 25);
    $r = $a->reap_async_query();
    $v = $r ? $r->fetch_row()[0] : 'error';
    $out[] = "$kind: $v " . $a->errno . ' ' . (microtime(true) - $t < 10 ? 'at once' : 'after the sleep');
}}
echo implode("; ", $out);"#,
            dir = dir.display()
        );
        let mut php = KillOnDrop(Some(
            Command::new("php")
                .args(["-r", &php])
                .env("PW", pw)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        for kind in ["QUERY", "PREPARED_QUERY", "CONNECTION"] {
            let running = format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(20) AS k_{kind}'"
            );
            let seen = wait_for(Duration::from_secs(10), || {
                (0..3).any(|db| c.sql(db, &running) != "0")
            });
            assert!(seen.is_some(), "the SLEEP to KILL {kind} never ran");
            std::fs::write(dir.join(kind), "").unwrap();
        }
        let out = php.0.take().unwrap().wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let before = r.routed_to_replicas();
    let (direct, routed) = (kill_sleep(c.db_port), kill_sleep(r.port));
    assert!(
        direct.1.starts_with(
            "QUERY: error 1317 at once; PREPARED_QUERY: error 1317 at once; CONNECTION: error "
        ),
        "{direct:?}"
    );
    assert_eq!(routed.1, direct.1, "{routed:?}");
    assert!(
        r.routed_to_replicas() >= before + 3,
        "the sleeps did not run on a replica"
    );
}

/// A backend that goes away mid-statement (here: its connection killed on the replica by
/// root): the client connection is closed as MariaDB closes it, so libmariadb reports its
/// own 2013, exactly as direct (not an ERR packet it would call "malformed").
fn a_lost_backend_closes_the_client(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let sleeper = Command::new("mariadb")
        .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", r.port)])
        .args([
            "-uwordpress",
            "wordpress",
            "-e",
            "SELECT SLEEP(7) AS hapress_lost",
        ])
        .env("MYSQL_PWD", pw)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let find = "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(7) AS hapress_lost%'";
    let on = wait_for(Duration::from_secs(5), || {
        [1, 2].iter().any(|&db| !c.sql(db, find).is_empty())
    });
    assert!(on.is_some(), "the sleep never showed on a replica");
    for db in [1, 2] {
        let id = c.sql(db, find);
        if !id.is_empty() {
            c.sql(db, &format!("KILL CONNECTION {id}"));
        }
    }
    let out = sleeper.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ERROR 2013") && err.contains("Lost connection"),
        "{err}"
    );
}

/// A client that hangs up while its statement waits (for a user lock held by another
/// session) abandons the wait on the server too, as it would directly (main.dirty_close).
fn a_hangup_abandons_the_wait(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let mysql = |port: u16, sql: &str| {
        Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", &format!("-P{port}")])
            .args(["-uwordpress", "wordpress", "-e", sql])
            .env("MYSQL_PWD", pw)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let _holder = KillOnDrop(Some(mysql(
        c.db_port,
        "SELECT GET_LOCK('hapress_held', 0); SELECT SLEEP(30)",
    )));
    let held = wait_for(Duration::from_secs(5), || {
        c.sql(0, "SELECT IS_USED_LOCK('hapress_held') IS NOT NULL") == "1"
    });
    assert!(held.is_some(), "the direct session never took the lock");
    let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' AND INFO LIKE 'SELECT GET_LOCK(''hapress_held'', 3600)%'";
    let mut waiter = KillOnDrop(Some(mysql(r.port, "SELECT GET_LOCK('hapress_held', 3600)")));
    let seen = wait_for(Duration::from_secs(5), || c.sql(0, waiting) == "1");
    assert!(
        seen.is_some(),
        "the routed GET_LOCK never waited on the primary"
    );
    drop(waiter.0.take().map(|mut w| w.kill()));
    let released = wait_for(Duration::from_secs(5), || c.sql(0, waiting) == "0");
    assert!(
        released.is_some(),
        "the primary still waits for a client that hung up"
    );
}

/// A client that connects and leaves without logging in (a health check) does not cost
/// the pooled connection it was greeted with.
fn a_health_check_keeps_the_pool(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    // A session that ends leaves its connection idle in the pool.
    assert!(piped(r.port, pw, "SELECT 1;\n").0);
    assert!(
        wait_for(Duration::from_secs(5), || t.pool("idle") > 0).is_some(),
        "no idle pooled connection to greet with: {}",
        r.status()
    );
    let (idle, opened) = (t.pool("idle"), t.pool("opened"));
    {
        let mut probe = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap();
        let mut greeting = [0u8; 4];
        probe.read_exact(&mut greeting).unwrap();
        // The greeting came from a pooled connection: it is out of the pool meanwhile.
        assert!(
            wait_for(Duration::from_secs(5), || t.pool("idle") == idle - 1).is_some(),
            "the greeting did not use a pooled connection: {}",
            r.status()
        );
    }
    let kept = wait_for(Duration::from_secs(5), || t.pool("idle") == idle);
    assert!(
        kept.is_some() && t.pool("opened") == opened,
        "a health check cost a pooled connection: {}",
        r.status()
    );
}

/// The router checks a password itself only for a user name with one account, unlocked:
/// with two accounts of different passwords, the one MariaDB would not pick for this host
/// is refused exactly as MariaDB refuses it, even once a connection of that user is pooled.
fn passwords_are_checked_as_mariadb_does(t: &Ctx) {
    let (c, r) = (&t.c, &t.r);
    c.sql(
        0,
        "CREATE USER twin@'127.0.0.1' IDENTIFIED BY 'pw-a'; CREATE USER twin@'%' IDENTIFIED BY 'pw-b'; GRANT SELECT ON wordpress.* TO twin@'127.0.0.1'; GRANT SELECT ON wordpress.* TO twin@'%'",
    );
    let as_twin = |port: u16, password: &str| {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-utwin",
            ])
            .args(["-N", "-B", "wordpress", "-e", "SELECT CURRENT_USER()"])
            .env("MYSQL_PWD", password)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let seen = wait_for(Duration::from_secs(10), || {
        as_twin(r.port, "pw-a") == as_twin(c.db_port, "pw-a")
    });
    assert!(seen.is_some(), "{:?}", as_twin(r.port, "pw-a"));
    assert_eq!(as_twin(r.port, "pw-a"), as_twin(c.db_port, "pw-a"));
    assert_eq!(as_twin(r.port, "pw-b"), as_twin(c.db_port, "pw-b"));
    // A locked account is refused with MariaDB's own error, pooled connection or not.
    c.sql(
        0,
        "ALTER USER twin@'127.0.0.1' ACCOUNT LOCK; DROP USER twin@'%'",
    );
    let locked = wait_for(Duration::from_secs(10), || {
        let (r1, d1) = (as_twin(r.port, "pw-a"), as_twin(c.db_port, "pw-a"));
        r1 == d1 && d1.1.contains("locked")
    });
    assert!(locked.is_some(), "{:?}", as_twin(r.port, "pw-a"));
}

/// The pool bounds what is kept, not what is allowed: with poolSize (6) connections to the
/// primary in use, another session opens one of its own at once (the server's
/// max_connections is the limit, as directly), and it is closed when the session ends.
fn the_pool_bounds_what_is_kept(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let sleepers: Vec<_> = (0..6)
        .map(|_| {
            KillOnDrop(Some(
                Command::new("mariadb")
                    .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", r.port)])
                    .args(["-uwordpress", "wordpress", "-e", "SELECT SLEEP(3)"])
                    .env("MYSQL_PWD", pw)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            ))
        })
        .collect();
    let full = wait_for(Duration::from_secs(5), || {
        t.pool("open") == 6 && t.pool("idle") == 0
    });
    assert!(
        full.is_some(),
        "sleepers did not take the pool: {}",
        r.status()
    );
    let (ok, id, err) = client(r.port, pw, "wordpress", "SELECT CONNECTION_ID()");
    assert!(ok, "a 7th session beyond the pool: {err}");
    for mut s in sleepers {
        let _ = s.0.take().unwrap().wait();
    }
    // The pool keeps its 6; the connection beyond it is closed.
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
    let kept = wait_for(Duration::from_secs(5), || {
        c.sql(0, &gone) == "0" && t.pool("open") == 6 && t.pool("idle") == 6
    });
    assert!(
        kept.is_some(),
        "connection {id} of the 7th session: {}; {}",
        c.sql(0, &gone),
        r.status()
    );
    let metrics = r.get("/metrics");
    let overflow = format!(
        "hapress_router_backend_pool_overflow_total{{backend=\"127.0.0.1:{}\"}} 1",
        c.db_port
    );
    assert!(metrics.contains(&overflow), "{metrics}");
}

/// COM_CHANGE_USER from libmariadb on a session greeted with a pooled connection (the
/// router's own nonce): libmariadb answers MariaDB's auth switch with its old scramble, which
/// the router scrambles again for the server. A wrong password is still denied.
fn change_user_on_a_pooled_connection(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let script = format!("{}/tests/py/change_user.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([script.as_str(), &r.port.to_string()])
        .env("PW", pw)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pooled ok\npooled 1045",
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PDO without emulation prepares every query, SET included: a prepared SET of session
/// state is replayed like the text one, so the reads after it still go to replicas and
/// see the session's time zone there.
fn a_prepared_set_is_replayed(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let before = r.routed_to_replicas();
    let php = format!(
        r#"$p = new PDO('mysql:host=127.0.0.1;port={port};dbname=wordpress', 'wordpress', getenv('PW'), [PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$p->query("SET time_zone = '+03:00'");
$out = [];
for ($i = 0; $i < 4; $i++) {{ $out[] = $p->query("SELECT FROM_UNIXTIME(0)")->fetchColumn(); }}
echo implode(',', array_unique($out)), "\n";"#,
        port = r.port
    );
    let (_, out, err) = run_php(pw, &php);
    assert_eq!(out, "1970-01-01 03:00:00", "{err}");
    assert!(
        r.routed_to_replicas() >= before + 4,
        "reads after a prepared SET stayed on the primary: {}",
        r.status()
    );
}

/// `USE` and `DROP DATABASE` as prepared statements (PDO without emulation prepares every
/// query; mysqltest --ps-protocol too): a prepared `USE` moves the session like the text one
/// (its reads still go to replicas, in the new database), and a prepared `DROP DATABASE` of
/// the current one leaves the pooled connection without a database, which the next session
/// of the same user, asking for `wordpress`, must not inherit; nor the session's replica
/// connection.
fn a_prepared_use_and_drop_database(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    c.sql(
        0,
        "CREATE DATABASE hx1; CREATE TABLE hx1.t (a INT); CREATE DATABASE hx2; GRANT ALL ON hx1.* TO wordpress@'127.0.0.1'; GRANT ALL ON hx2.* TO wordpress@'127.0.0.1'",
    );
    let replicated = wait_for(Duration::from_secs(20), || {
        [1, 2].iter().all(|&db| {
            c.sql(
                db,
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name IN ('hx1', 'hx2')",
            ) == "2"
        })
    });
    assert!(replicated.is_some(), "the replicas never got hx1 and hx2");
    let pdo = |db: &str, then: &str| {
        format!(
            r#"$p = new PDO('mysql:host=127.0.0.1;port={port};dbname={db}', 'wordpress', getenv('PW'), [PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
function q($p, $sql) {{ $s = $p->prepare($sql); $s->execute(); return $s->columnCount() ? $s->fetchColumn() : 'ok'; }}
{then}"#,
            port = r.port
        )
    };
    let before = r.routed_to_replicas();
    let (_, out, err) = run_php(
        pw,
        &pdo("wordpress", "echo q($p, 'USE hx1'), ',', q($p, 'SELECT DATABASE()'), ',', q($p, 'SELECT COUNT(*) FROM t'), PHP_EOL;"),
    );
    assert_eq!(out, "ok,hx1,0", "{err}");
    assert!(
        r.routed_to_replicas() >= before + 2,
        "reads after a prepared USE stayed on the primary: {}",
        r.status()
    );
    // The current database dropped and made again: the connection has none now; the next
    // session asking for that same database must get it.
    let (_, out, err) = run_php(
        pw,
        &pdo(
            "hx2",
            "echo q($p, 'DROP DATABASE hx2'), ',', q($p, 'CREATE DATABASE hx2'), PHP_EOL;",
        ),
    );
    assert_eq!(out, "ok,ok", "{err}");
    t.wait_pooled("the session's connection");
    let (_, out, err) = run_php(
        pw,
        &pdo("hx2", "echo q($p, '/* hapress:primary */ SELECT DATABASE()'), ',', q($p, 'CREATE TABLE t2 (a INT)'), PHP_EOL;"),
    );
    assert_eq!(out, "hx2,ok", "{err}");
    // `mariadb` reading `script` through the router: its output and how many statements
    // went to replicas.
    let through = |script: &str| {
        let before = r.routed_to_replicas();
        let (_, out, err) = piped(r.port, pw, script);
        (out, err, r.routed_to_replicas() - before)
    };
    // Dropping the current database after a read on a replica: the session has none, and its
    // replica connection, still in it, must not answer for it (mariadb's prompt asks
    // `SELECT DATABASE()` at once: main.mysql-interactive).
    let (out, err, reads) =
        through("USE hx2;\nSELECT 1;\nDROP DATABASE hx2;\nSELECT DATABASE();\n");
    assert_eq!(out, "1\nNULL", "{err}");
    assert!(reads >= 2, "the reads did not run on a replica");
    // Dropping another database (MariaDB flags every drop in the OK) changes nothing.
    let (out, err, reads) = through("USE hx1;\nDROP DATABASE IF EXISTS hx2;\nSELECT DATABASE();\n");
    assert_eq!(out, "hx1", "{err}");
    assert!(
        reads >= 2,
        "the session's reads left the replicas after dropping another database: {}",
        r.status()
    );
    c.sql(0, "DROP DATABASE hx1");
}

/// Binary-protocol prepared statements run on replicas too: prepared there on first use,
/// executed under the replica's id with the types the client bound (mysqli binds them once:
/// later executions carry none); a prepared write is followed by a prepared read that sees
/// it; closed statements are gone on both servers.
fn prepared_statements_run_on_replicas(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let before = r.routed_to_replicas();
    let php = format!(
        r#"mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
$m = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port});
$out = [];
$st = $m->prepare('SELECT v FROM ryw WHERE id = ?');
$st->bind_param('i', $id);
foreach ([1, 2, 1] as $id) {{ $st->execute(); $st->bind_result($v); $st->fetch(); $out[] = $v; $st->free_result(); }}
$ins = $m->prepare('INSERT INTO ryw (v) VALUES (?)');
$w = 'ps'; $ins->bind_param('s', $w); $ins->execute();
$id = $ins->insert_id;
$st->execute(); $st->bind_result($v); $st->fetch(); $out[] = $v; $st->free_result();
$m->begin_transaction(); $id = 2;
$st->execute(); $st->bind_result($v); $st->fetch(); $out[] = $v; $st->free_result();
$m->commit();
$st->close();
$p = new PDO('mysql:host=127.0.0.1;port={port};dbname=wordpress', 'wordpress', getenv('PW'), [PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$s = $p->prepare('SELECT COUNT(*), MAX(v) FROM ryw WHERE v = ?');
foreach (['ps', 'fresh', 'none'] as $x) {{ $s->execute([$x]); $out[] = implode(':', $s->fetch(PDO::FETCH_NUM)); }}
echo implode(',', $out), "\n";"#,
        port = r.port
    );
    let (_, out, err) = run_php(pw, &php);
    assert_eq!(out, "fresh,waited,fresh,ps,waited,1:ps,1:fresh,0:", "{err}");
    assert!(
        r.routed_to_replicas() >= before + 5,
        "prepared reads did not reach replicas: {}",
        r.status()
    );
}

/// A client without a database greeted with a pooled connection of its kind (a mysqli
/// session just ended: its connection is reset and idle) logs in on it: no database, and
/// the greeting's thread id is its CONNECTION_ID().
fn a_login_without_a_database(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let mysqli = |db: &str, then: &str| {
        format!(
            "$e = new mysqli('127.0.0.1', 'wordpress', getenv('PW'), '{db}', {port}); {then}",
            port = r.port
        )
    };
    run_php(pw, &mysqli("wordpress", "$e->close();"));
    t.wait_pooled("the mysqli session's connection");
    let reused = t.pool("reused");
    let (_, out, err) = run_php(
        pw,
        &mysqli(
            "",
            "echo ($e->query('SELECT DATABASE()')->fetch_row()[0] === null ? 'no db' : 'a db'), ($e->thread_id == $e->query('SELECT CONNECTION_ID()')->fetch_row()[0] ? ' same id' : ' other id');",
        ),
    );
    assert_eq!(out, "no db same id", "{err}");
    assert!(t.pool("reused") > reused, "{}", r.status());
}

/// libmariadb's prepared statements (sysbench: binary protocol, cached metadata, several
/// threads) run through the router and reach the replicas.
fn sysbench_prepared_statements(t: &Ctx) {
    let (r, pw) = (&t.r, &t.pw);
    let before = r.routed_to_replicas();
    let sysbench = |phase: &str, extra: &[&str]| {
        let out = Command::new("sysbench")
            .arg("oltp_point_select")
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                "--mysql-user=wordpress",
            ])
            .arg(format!("--mysql-port={}", r.port))
            .arg(format!("--mysql-password={pw}"))
            .args(["--mysql-db=wordpress", "--tables=1", "--table-size=100"])
            .args(["--db-ps-mode=auto", "--threads=2"])
            .args(extra)
            .arg(phase)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !text.contains("FATAL"), "{text}");
        text
    };
    sysbench("prepare", &[]);
    let text = sysbench("run", &["--time=2"]);
    assert!(text.contains("queries:"), "{text}");
    assert!(
        r.routed_to_replicas() > before + 100,
        "sysbench's prepared reads did not reach replicas: {}",
        r.status()
    );
}

/// The protocol's corners, seen by mysqli directly and through the router, must be identical
/// (tests/php/corners.php): warnings, errors, affected rows, insert ids, info strings,
/// column metadata, multi-statements with a procedure's several result sets (and
/// COM_SET_OPTION), a 17 MB value both ways (split packets) as a literal and as long data,
/// a read-only cursor (COM_STMT_FETCH), COM_CHANGE_USER right and wrong, LOAD DATA LOCAL
/// INFILE, a temporary table, SQL_CALC_FOUND_ROWS, a query over max_allowed_packet.
fn protocol_corners_match_direct(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let corners = |port: u16| {
        let script = format!("{}/tests/php/corners.php", env!("CARGO_MANIFEST_DIR"));
        // Bounded: an answer the router ends in the wrong place leaves the client waiting.
        let out = Command::new("timeout")
            .args([
                "120",
                "php",
                "-d",
                "mysqli.allow_local_infile=1",
                &script,
                &port.to_string(),
            ])
            .env("PW", pw)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "corners.php on port {port}: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let direct = corners(c.db_port);
    let routed = corners(r.port);
    for expected in [
        "\"read back\",\n        \"big\",\n        17825792,\n        true",
        "\"read back\",\n        \"long\",\n        17825792,\n        true",
        "\"cursor\",\n        1,",
        "Records: 3  Duplicates: 0  Warnings: 0",
        "\"a new session works\"",
        "Records: 3  Deleted: 0  Skipped: 0  Warnings: 0",
        "Got a packet bigger than 'max_allowed_packet' bytes",
    ] {
        assert!(direct.contains(expected), "{expected:?} missing:\n{direct}");
    }
    if direct != routed {
        let first = direct
            .lines()
            .zip(routed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let context = |t: &str| {
            t.lines()
                .skip(first.saturating_sub(12))
                .take(24)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "corners.php differs through the router at line {first}:\n--- direct\n{}\n--- routed\n{}",
            context(&direct),
            context(&routed)
        );
    }
}

/// A SET GLOBAL of a variable that changes results, through the router, reaches the
/// replicas too (and retires pooled connections): a new session's read on a replica then
/// answers as the primary would (main.func_str).
fn set_global_reaches_the_replicas(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    c.sql(
        0,
        "CREATE USER 'hpadmin'@'%' IDENTIFIED BY 'Adm1n-pw'; GRANT ALL ON *.* TO 'hpadmin'@'%'",
    );
    let admin = |sql: &str| {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", r.port)])
            .args(["-uhpadmin", "-e", sql])
            .env("MYSQL_PWD", "Adm1n-pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The router logs in to replicas as a user once a probe has read its password hash: from
    // then on, the new account's SET GLOBAL reaches every replica.
    let everywhere =
        |v: &str| (0..3).all(|db| c.sql(db, "SELECT @@global.max_allowed_packet") == v);
    let reached = wait_for(Duration::from_secs(10), || {
        admin("SET GLOBAL max_allowed_packet = 1048576");
        everywhere("1048576")
    });
    assert!(
        reached.is_some(),
        "the SET GLOBAL never reached the replicas"
    );
    let big = "SELECT REPEAT('a', 2000000) IS NULL AS truncated; SHOW WARNINGS";
    let before = r.routed_to_replicas();
    let routed = client(r.port, pw, "wordpress", big);
    assert!(
        r.routed_to_replicas() > before,
        "the read did not run on a replica"
    );
    let direct = client(c.db_port, pw, "wordpress", big);
    assert!(direct.1.contains("(1048576)"), "{direct:?}");
    assert_eq!(routed, direct);
    // A prepared one (PDO without emulation, mysqltest --ps-protocol) too.
    let (_, out, err) = run_php(
        pw,
        &format!(
            r#"$p = new PDO('mysql:host=127.0.0.1;port={port}', 'hpadmin', 'Adm1n-pw', [PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$p->prepare('SET GLOBAL max_allowed_packet = 2097152')->execute(); echo 'ok';"#,
            port = r.port
        ),
    );
    assert_eq!(out, "ok", "{err}");
    assert!(
        everywhere("2097152"),
        "a prepared SET GLOBAL did not reach the replicas"
    );
    admin("SET GLOBAL max_allowed_packet = 67108864");
    assert!(everywhere("67108864"));
}

/// What a prepared read that ran on a replica leaves behind (`FOUND_ROWS()`, `SHOW WARNINGS`,
/// `@@warning_count`, each itself prepared: PDO without emulation, mysqltest
/// --ps-protocol) is read there, as on one server: preparing them (on the primary) does not
/// move them; preparing a statement that uses a table clears the warnings, as on one server.
fn prepared_diagnostics_follow_their_statement(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let run = |port: u16| {
        let (_, out, err) = run_php(
            pw,
            &format!(
                r#"$p = new PDO('mysql:host=127.0.0.1;port={port};dbname=wordpress', 'wordpress', getenv('PW'), [PDO::ATTR_EMULATE_PREPARES => false, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
function q($p, $sql) {{ $s = $p->prepare($sql); $s->execute(); return json_encode($s->fetchAll(PDO::FETCH_NUM)); }}
echo implode(' ', [
    q($p, 'SELECT SQL_CALC_FOUND_ROWS id FROM ryw WHERE id <= 2 LIMIT 1'),
    q($p, 'SELECT FOUND_ROWS()'),
    q($p, 'SELECT CAST(v AS SIGNED) FROM ryw WHERE id <= 2'),
    q($p, 'SHOW WARNINGS'),
    q($p, 'SELECT CAST(v AS SIGNED) FROM ryw WHERE id <= 2'),
    q($p, 'SELECT @@warning_count'),
    q($p, 'SELECT CAST(v AS SIGNED) FROM ryw WHERE id <= 2'),
    $p->prepare('SELECT id FROM ryw') ? 'prepared' : 'not prepared',
    q($p, 'SHOW WARNINGS'),
]);"#
            ),
        );
        assert!(!out.is_empty(), "{err}");
        out
    };
    let direct = run(c.db_port);
    assert!(
        direct.starts_with(r#"[[1]] [[2]] [[0],[0]] [["Warning",1292,"#),
        "{direct}"
    );
    let before = r.routed_to_replicas();
    let routed = run(r.port);
    assert!(
        r.routed_to_replicas() >= before + 3,
        "the reads did not run on a replica: {}",
        r.status()
    );
    assert_eq!(routed, direct);
}

/// The monitor account losing its privileges (MariaDB's own test suite revokes and drops
/// accounts) does not take the site down: the primary is still known by @@read_only, the
/// status says what failed, and logins are relayed to MariaDB, which still checks them.
/// (The probe's open session keeps its global privileges; the table grant goes at once.)
fn the_monitor_losing_its_privileges(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let monitor = c.sql(
        0,
        // (this router reaches the servers over TCP; the cluster's own, over their sockets)
        "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user WHERE User = 'hapress_router' AND Host = '127.0.0.1'",
    );
    let grants = c.sql(0, &format!("SHOW GRANTS FOR {monitor}"));
    c.sql(
        0,
        &format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {monitor}"),
    );
    let degraded = || {
        let s = r.status();
        s["primary"].is_string()
            && s["backends"][0]["up"] == true
            && s["backends"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("mysql.global_priv"))
    };
    assert!(
        wait_for(Duration::from_secs(10), degraded).is_some(),
        "{}",
        r.status()
    );
    let ok = client(r.port, pw, "wordpress", "SELECT COUNT(*) FROM ryw");
    assert!(ok.0, "{ok:?}");
    let direct = client(c.db_port, "wrong", "wordpress", "SELECT 1");
    let routed = client(r.port, "wrong", "wordpress", "SELECT 1");
    assert!(!routed.0 && routed.2 == direct.2, "{routed:?} {direct:?}");
    for g in grants.lines().filter(|g| g.starts_with("GRANT")) {
        c.sql(0, g);
    }
    let restored = wait_for(Duration::from_secs(10), || {
        r.status()["backends"][0]["error"].is_null()
    });
    assert!(restored.is_some(), "{}", r.status());
}

/// Three sessions opened before the failover, which write afterwards: one idle between
/// statements (with replayable state: a time zone), one holding a user variable, one inside
/// a transaction.
fn failover_by_hand(t: &Ctx) {
    let (c, r, pw) = (&t.c, &t.r, &t.pw);
    let go = c.dir.path().join("go");
    let ready = c.dir.path().join("sessions-open");
    let old_session = format!(
        r#"mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
function session() {{ return new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {port}); }}
$m = session();
$m->query("SET time_zone = '+05:00'");
$v = session();
$v->query("SET @who = 'old variable'");
$t = session();
$t->query("BEGIN");
$t->query("SELECT COUNT(*) FROM ryw")->fetch_all();
touch('{ready}');
while (!file_exists('{go}')) {{ usleep(50000); }}
foreach ([[$m, "CONCAT('old session ', @@time_zone)"], [$v, "@who"], [$t, "'old transaction'"]] as [$s, $val]) {{
    try {{ $s->query("INSERT INTO ryw (v) VALUES ($val)"); $s->query("COMMIT"); echo "written "; }}
    catch (mysqli_sql_exception $e) {{ echo $e->getCode(), " "; }}
}}"#,
        port = r.port,
        go = go.display(),
        ready = ready.display()
    );
    let old = Command::new("php")
        .args(["-r", &old_session])
        .env("PW", pw)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed if the test fails before it lets the script finish.
    let mut old = KillOnDrop(Some(old));
    assert!(
        wait_for(Duration::from_secs(10), || ready.exists()).is_some(),
        "the three sessions never opened"
    );

    // Failover by hand (FIELD-NOTES): db-1 becomes the primary; new sessions write there
    // without restarting the router, and nothing is sent to the now read-only db-0.
    c.sql(0, "SET GLOBAL read_only = ON");
    c.sql(1, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    c.sql(
        2,
        &format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_PORT = {}; START SLAVE",
            c.db_port + 1
        ),
    );
    let moved = wait_for(Duration::from_secs(5), || {
        r.status()["primary"] == format!("127.0.0.1:{}", c.db_port + 1)
    });
    assert!(
        moved.is_some(),
        "router did not follow the new primary: {}",
        r.status()
    );
    let (ok, out, err) = client(
        r.port,
        pw,
        "wordpress",
        "INSERT INTO ryw (v) VALUES ('after failover'); SELECT @@server_id",
    );
    assert!(ok, "write after failover failed: {err}");
    assert_eq!(out, "2");
    assert_eq!(
        c.sql(
            1,
            "SELECT COUNT(*) FROM wordpress.ryw WHERE v = 'after failover'"
        ),
        "1"
    );

    // Nothing is sent to the ex-primary. The idle session moves to the new primary between
    // statements with its replayed state (the time zone) and writes there once. The sessions
    // with a user variable or inside a transaction cannot move (that state lived on db-0):
    // their connections are closed, the client sees "server has gone away" (2006) and may
    // reconnect; nothing of theirs is written.
    std::fs::write(&go, "").unwrap();
    let out = old.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "written 2006 2006"
    );
    for (db, v, n) in [
        (0, "old session +05:00", "0"),
        (1, "old session +05:00", "1"),
        (0, "old variable", "0"),
        (1, "old variable", "0"),
        (0, "old transaction", "0"),
        (1, "old transaction", "0"),
    ] {
        let q = format!("SELECT COUNT(*) FROM wordpress.ryw WHERE v = '{v}'");
        assert_eq!(c.sql(db, &q), n, "db-{db}: {v}");
    }
}

/// With no primary (here: no server at all), a client is refused in place of the greeting with
/// an error every client library can read: the `mariadb` CLI (libmariadb) prints the router's
/// reason, not "2027 Received malformed packet", and PHP gets the same code.
#[test]
fn router_without_a_primary_refuses_with_a_readable_error() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let pwf = dir.path().join("pw");
    std::fs::write(&pwf, "unused\n").unwrap();
    let cfg = dir.path().join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{ports}\nbackends: [127.0.0.1:{}]\nmonitorUser: m\nmonitorPasswordFile: {}\nstatusListen: 127.0.0.1:{}\n",
            ports + 2,
            pwf.display(),
            ports + 1
        ),
    )
    .unwrap();
    let r = spawn_router(&cfg, ports);
    assert!(
        wait_for(Duration::from_secs(10), || r.status()["backends"][0]
            ["error"]
            .is_string())
        .is_some()
    );
    let (ok, _, err) = client(r.port, "x", "wordpress", "SELECT 1");
    assert!(!ok);
    assert!(
        err.contains("1927") && err.contains("no primary database server is available"),
        "{err}"
    );
    let (_, out, _) = run_php(
        "x",
        &format!(
            "mysqli_report(MYSQLI_REPORT_OFF); $m = @new mysqli('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {}); echo $m->connect_errno, ' ', $m->connect_error;",
            r.port
        ),
    );
    assert!(
        out.starts_with("1927 ") && out.contains("no primary"),
        "{out}"
    );
}
