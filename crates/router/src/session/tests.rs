//! Session behaviour without MariaDB: the router's own session code against scripted fake
//! servers on `127.0.0.1:0`, with tokio's clock paused (timeouts pass at once, and only when
//! nothing else can happen). A fake server greets, accepts any login, and answers each
//! statement as its script says; it records every command it receives, so a test can say which
//! server ran what, and how often. The MariaDB tests of the `hapress` crate stay the
//! integration layer; these pin the session's decisions and failure sides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hapress_wire::codec::put_lenenc_bytes;
use hapress_wire::command::{self, Command};
use hapress_wire::consts::{cap, cmd, status};
use hapress_wire::handshake::{Greeting, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::response::{ok_packet, Outcome, ResponseTracker, Step};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::{Config, ReadYourWrites};
use crate::conn::{login, query, Conn, Credential};
use crate::topology::{Probe, Topology};

use super::{run, SessionError, Side};

/// How a fake server answers a statement.
#[derive(Debug, Clone)]
enum Answer {
    /// OK; a write's OK carries its GTID (as `last_gtid` session state).
    Ok(Option<&'static str>),
    /// A text result set: one column of that name, these rows.
    Rows(&'static str, Vec<String>),
    /// An ERR packet.
    Err(u16, &'static str),
    /// No answer, ever (a hung server).
    Hang,
    /// The connection closes (a server that died).
    Close,
}

type Script = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// Capabilities of the fake servers (no `DEPRECATE_EOF`: result sets end with EOF packets).
const SERVER_CAPS: u32 = cap::LONG_PASSWORD
    | cap::CONNECT_WITH_DB
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
    | cap::SECURE_CONNECTION
    | cap::MULTI_RESULTS
    | cap::PS_MULTI_RESULTS
    | cap::PLUGIN_AUTH
    | cap::PLUGIN_AUTH_LENENC_DATA
    | cap::SESSION_TRACK;

/// A scripted server.
struct Fake {
    addr: String,
    /// Every command payload it received, on any connection, in order.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Connections it accepted.
    accepted: Arc<AtomicUsize>,
}

impl Fake {
    /// Starts a server whose thread ids and statement ids start above `base`.
    async fn start(base: u32, script: impl Fn(&str) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let script: Script = Arc::new(script);
        let log = seen.clone();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((sock, _)) = listener.accept().await {
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
                let conn = Conn::new(Box::new(sock));
                tokio::spawn(serve(conn, base + n, base, log.clone(), script.clone()));
            }
        });
        Self {
            addr,
            seen,
            accepted,
        }
    }

    /// The texts of the statements it was sent (`COM_QUERY`).
    fn queries(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter_map(|p| match Command::parse(p) {
                Ok(Command::Query(sql)) => Some(String::from_utf8_lossy(sql).into_owned()),
                _ => None,
            })
            .collect()
    }

    /// How many of its statements contain `text`.
    fn ran(&self, text: &str) -> usize {
        self.queries().iter().filter(|q| q.contains(text)).count()
    }

    /// The commands it was sent with command byte `code`.
    fn commands(&self, code: u8) -> Vec<Vec<u8>> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|p| p.first() == Some(&code))
            .cloned()
            .collect()
    }
}

/// One connection of a fake server.
async fn serve(
    mut c: Conn,
    thread: u32,
    base: u32,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    script: Script,
) -> Option<()> {
    let greeting = Greeting {
        server_version: b"5.5.5-10.11.6-MariaDB-fake".to_vec(),
        connection_id: thread,
        nonce: b"abcdefghijklmnopqrst".to_vec(),
        capabilities: SERVER_CAPS,
        mariadb_capabilities: 0,
        charset: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
    };
    c.write_packet(0, &greeting.encode()).await.ok()?;
    let (seq, h) = c.read_packet().await.ok()?;
    let hello = HandshakeResponse::parse(&h).ok()?;
    let track = hello.capabilities & cap::SESSION_TRACK != 0;
    c.write_packet(seq.wrapping_add(1), &ok_packet(status::AUTOCOMMIT))
        .await
        .ok()?;
    let mut statements: HashMap<u32, String> = HashMap::new();
    let mut next_id = base;
    loop {
        let (_, p) = c.read_packet().await.ok()?;
        seen.lock().unwrap().push(p.clone());
        let answer = match Command::parse(&p).ok()? {
            Command::Quit => return None,
            Command::Query(sql) => script(&String::from_utf8_lossy(sql)),
            Command::StmtPrepare(sql) => {
                let sql = String::from_utf8_lossy(sql).into_owned();
                next_id += 1;
                let params = sql.matches('?').count() as u16;
                statements.insert(next_id, sql);
                prepared(&mut c, next_id, params).await?;
                continue;
            }
            Command::StmtExecute { id, .. } => match statements.get(&id) {
                Some(sql) => script(sql),
                None => Answer::Err(1243, "Unknown prepared statement handler"),
            },
            Command::StmtClose(_) | Command::StmtSendLongData(_) => continue,
            _ => Answer::Ok(None),
        };
        answer_with(&mut c, answer, track).await?;
    }
}

/// The answer to `COM_STMT_PREPARE`: statement `id`, no columns, `params` parameters.
async fn prepared(c: &mut Conn, id: u32, params: u16) -> Option<()> {
    let mut ok = vec![0];
    ok.extend_from_slice(&id.to_le_bytes());
    ok.extend_from_slice(&0u16.to_le_bytes());
    ok.extend_from_slice(&params.to_le_bytes());
    ok.extend_from_slice(&[0, 0, 0]);
    let mut seq = c.write_packet(1, &ok).await.ok()?;
    if params > 0 {
        for _ in 0..params {
            seq = c.write_packet(seq, &column("?")).await.ok()?;
        }
        c.write_packet(seq, &eof()).await.ok()?;
    }
    Some(())
}

fn column(name: &str) -> Vec<u8> {
    let mut d = Vec::new();
    for part in ["def", "", "", "", name, name] {
        put_lenenc_bytes(&mut d, part.as_bytes());
    }
    d.push(0x0c);
    d.extend_from_slice(&45u16.to_le_bytes()); // collation
    d.extend_from_slice(&255u32.to_le_bytes()); // length
    d.push(0xfd); // VAR_STRING
    d.extend_from_slice(&[0, 0, 0, 0, 0]); // flags, decimals, filler
    d
}

fn eof() -> Vec<u8> {
    let mut e = vec![0xfe, 0, 0];
    e.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
    e
}

async fn answer_with(c: &mut Conn, answer: Answer, track: bool) -> Option<()> {
    match answer {
        Answer::Ok(gtid) => {
            let ok = match gtid.filter(|_| track) {
                Some(g) => {
                    let st = status::AUTOCOMMIT | status::SESSION_STATE_CHANGED;
                    let mut o = vec![0, 1, 0];
                    o.extend_from_slice(&st.to_le_bytes());
                    o.extend_from_slice(&[0, 0, 0]); // warnings, empty info
                    let mut var = Vec::new();
                    put_lenenc_bytes(&mut var, b"last_gtid");
                    put_lenenc_bytes(&mut var, g.as_bytes());
                    let mut entry = vec![0]; // SESSION_TRACK_SYSTEM_VARIABLES
                    put_lenenc_bytes(&mut entry, &var);
                    put_lenenc_bytes(&mut o, &entry);
                    o
                }
                None => ok_packet(status::AUTOCOMMIT),
            };
            c.write_packet(1, &ok).await.ok()?;
        }
        Answer::Rows(name, rows) => {
            let mut out = Vec::new();
            let mut seq = hapress_wire::packet::write_packet(&mut out, 1, &[1]);
            seq = hapress_wire::packet::write_packet(&mut out, seq, &column(name));
            seq = hapress_wire::packet::write_packet(&mut out, seq, &eof());
            for r in rows {
                let mut row = Vec::new();
                put_lenenc_bytes(&mut row, r.as_bytes());
                seq = hapress_wire::packet::write_packet(&mut out, seq, &row);
            }
            hapress_wire::packet::write_packet(&mut out, seq, &eof());
            c.write_raw(&out).await.ok()?;
        }
        Answer::Err(code, msg) => {
            let e = hapress_wire::response::err_packet(code, "HY000", msg);
            c.write_packet(1, &e).await.ok()?;
        }
        Answer::Hang => std::future::pending::<()>().await,
        Answer::Close => return None,
    }
    Some(())
}

/// A primary (backend 0) and replicas behind a router listening on `127.0.0.1:0`.
struct Cluster {
    topo: Arc<Topology>,
    servers: Vec<Fake>,
    addr: String,
    /// How each session ended, in the order they ended.
    ends: mpsc::UnboundedReceiver<Result<(), SessionError>>,
}

impl Cluster {
    /// A primary and a caught-up replica, each answering `SELECT` with its role; reads wait
    /// for the session's writes.
    async fn primary_and_replica() -> Self {
        let primary = Fake::start(1000, server("primary", "0")).await;
        let replica = Fake::start(2000, server("replica", "0")).await;
        Self::start(vec![primary, replica], ReadYourWrites::Session).await
    }

    /// Backend 0 is the primary, the others fit replicas.
    async fn start(servers: Vec<Fake>, ryw: ReadYourWrites) -> Self {
        Self::with_primary(servers, ryw, true).await
    }

    /// As [`Self::start`]; without `primary`, no server is (it was lost, none promoted yet).
    async fn with_primary(servers: Vec<Fake>, ryw: ReadYourWrites, primary: bool) -> Self {
        let addrs = servers.iter().map(|f| f.addr.clone()).collect();
        let mut config = Config::new("127.0.0.1:0".into(), addrs, "/nonexistent".into());
        config.read_your_writes = ryw;
        let topo = Arc::new(Topology::new(&config));
        if primary {
            topo.set_primary(0);
        }
        for i in 1..servers.len() {
            let fit = Probe {
                up: true,
                read_only: true,
                replicating: true,
                lag_seconds: Some(0),
                caught_up: true,
                ..Probe::default()
            };
            topo.probed(i, fit, String::new(), std::time::Instant::now());
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, ends) = mpsc::unbounded_channel();
        let (t, config) = (topo.clone(), Arc::new(config));
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (t, config, tx) = (t.clone(), config.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = tx.send(run(t, config, Conn::new(Box::new(sock))).await);
                });
            }
        });
        Self {
            topo,
            servers,
            addr,
            ends,
        }
    }

    /// A client logged in as `wp` (no password) into database `wp`.
    async fn client(&self) -> Conn {
        let mut conn = Conn::connect(&self.addr, Duration::from_secs(5))
            .await
            .unwrap();
        let template = HandshakeResponse {
            capabilities: cap::LONG_PASSWORD
                | cap::PROTOCOL_41
                | cap::TRANSACTIONS
                | cap::SECURE_CONNECTION
                | cap::MULTI_RESULTS
                | cap::PS_MULTI_RESULTS
                | cap::PLUGIN_AUTH,
            max_packet: 1 << 24,
            charset: 45,
            database: Some(b"wp".to_vec()),
            ..HandshakeResponse::default()
        };
        login(&mut conn, b"wp", &Credential::Empty, &template)
            .await
            .unwrap();
        conn
    }

    /// How the next session to end ended.
    async fn next_end(&mut self) -> Result<(), SessionError> {
        self.ends.recv().await.unwrap()
    }
}

/// A server that answers every `SELECT` with `who`, writes with OK and GTID `0-1-5`, and a
/// `MASTER_GTID_WAIT` with `wait` (`"0"`: reached).
fn server(who: &'static str, wait: &'static str) -> impl Fn(&str) -> Answer + Send + Sync {
    move |sql: &str| {
        if sql.starts_with("SELECT MASTER_GTID_WAIT") {
            Answer::Rows("w", vec![wait.into()])
        } else if sql.starts_with("SELECT") {
            Answer::Rows("who", vec![who.into()])
        } else {
            Answer::Ok(Some("0-1-5"))
        }
    }
}

/// The single value of a one-row answer.
async fn value(c: &mut Conn, sql: &str) -> String {
    let rows = query(c, sql, false).await.unwrap().unwrap();
    rows.rows[0][0].clone().unwrap()
}

#[tokio::test(start_paused = true)]
async fn reads_go_to_the_replica_and_wait_there_for_the_sessions_write() {
    let cl = Cluster::primary_and_replica().await;
    let mut c = cl.client().await;
    assert_eq!(value(&mut c, "SELECT 1").await, "replica");
    query(&mut c, "INSERT INTO t VALUES (1)", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value(&mut c, "SELECT 2").await, "replica");
    let (p, r) = (&cl.servers[0], &cl.servers[1]);
    assert_eq!(p.ran("INSERT"), 1);
    assert_eq!(r.ran("INSERT"), 0);
    assert_eq!(p.ran("SELECT"), 0, "{:?}", p.queries());
    // The read after the write waited for the write's GTID on the replica, once.
    let waits: Vec<String> = r
        .queries()
        .into_iter()
        .filter(|q| q.contains("MASTER_GTID_WAIT"))
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(waits[0].contains("'0-1-5'"), "{waits:?}");
    assert_eq!(cl.topo.newest_gtid().as_deref(), Some("0-1-5"));
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_reach_the_write_in_time_leaves_the_read_to_the_primary() {
    let primary = Fake::start(1000, server("primary", "0")).await;
    let replica = Fake::start(2000, server("replica", "-1")).await;
    let cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    query(&mut c, "UPDATE t SET a = 1", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value(&mut c, "SELECT 1").await, "primary");
    assert_eq!(cl.servers[1].ran("MASTER_GTID_WAIT"), 1);
    assert_eq!(cl.servers[1].ran("SELECT 1"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_read_the_replica_refuses_as_read_only_runs_once_on_the_primary_as_a_write() {
    const READ_ONLY: &str =
        "The MariaDB server is running with the --read-only option so it cannot execute this statement";
    let primary = Fake::start(1000, |sql: &str| match sql {
        s if s.contains("NEXTVAL") => Answer::Rows("n", vec!["7".into()]),
        _ => Answer::Rows("who", vec!["primary".into()]),
    })
    .await;
    let replica = Fake::start(2000, |sql: &str| match sql {
        s if s.contains("NEXTVAL") => Answer::Err(1290, READ_ONLY),
        _ => Answer::Rows("who", vec!["replica".into()]),
    })
    .await;
    let cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    // A view over a sequence: the text looks like a read.
    assert_eq!(
        value(&mut c, "SELECT n FROM v_next /* NEXTVAL */").await,
        "7"
    );
    assert_eq!(cl.servers[1].ran("NEXTVAL"), 1);
    assert_eq!(cl.servers[0].ran("NEXTVAL"), 1);
    // It counted as a write whose GTID no answer carried: the session's reads stay on the
    // primary, where the write is.
    assert_eq!(value(&mut c, "SELECT 1").await, "primary");
}

#[tokio::test(start_paused = true)]
async fn a_primary_lost_mid_statement_closes_the_client_without_an_error_and_never_reruns() {
    let primary = Fake::start(1000, |sql: &str| match sql {
        s if s.starts_with("UPDATE") => Answer::Close,
        _ => Answer::Ok(None),
    })
    .await;
    let replica = Fake::start(2000, server("replica", "0")).await;
    let mut cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    // The client sees its connection closed (its library reports 2013), not an ERR packet.
    let r = query(&mut c, "UPDATE t SET a = 2", false).await;
    assert!(r.is_err(), "{r:?}");
    let end = cl.next_end().await.unwrap_err();
    assert_eq!(end.side, Side::Backend(0), "{end}");
    assert!(!end.retry_safe, "the UPDATE may have run: {end}");
    assert_eq!(cl.servers[0].ran("UPDATE"), 1, "sent once, never re-run");
}

#[tokio::test(start_paused = true)]
async fn a_hung_primary_replaced_by_another_ends_its_statement_and_no_router_write_reaches_it() {
    let primary = Fake::start(1000, |sql: &str| match sql {
        s if s.starts_with("UPDATE") => Answer::Hang,
        _ => Answer::Ok(None),
    })
    .await;
    let replica = Fake::start(2000, server("replica", "0")).await;
    let mut cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    let topo = cl.topo.clone();
    let promote = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        topo.set_primary(1);
    });
    let started = tokio::time::Instant::now();
    let r = query(&mut c, "UPDATE t SET a = 3", false).await;
    assert!(r.is_err(), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    promote.await.unwrap();
    let end = cl.next_end().await.unwrap_err();
    assert_eq!(end.side, Side::Backend(0), "{end}");
    assert!(!end.retry_safe, "{end}");
    // A new session writes to the new primary only.
    let mut c2 = cl.client().await;
    query(&mut c2, "DELETE FROM t", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cl.servers[1].ran("DELETE"), 1);
    assert_eq!(cl.servers[0].ran("DELETE"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_follows_a_new_primary_between_statements_unless_its_state_is_on_the_old_one() {
    let mut cl = Cluster::primary_and_replica().await;
    let mut free = cl.client().await;
    let mut tied = cl.client().await;
    query(&mut tied, "SELECT GET_LOCK('x', 0)", false)
        .await
        .unwrap()
        .unwrap();
    cl.topo.set_primary(1);
    // Nothing on the old connection: the write goes to the new primary.
    query(&mut free, "INSERT INTO t VALUES (4)", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cl.servers[1].ran("INSERT INTO t VALUES (4)"), 1);
    // A named lock lives on the old connection: the session is closed, the write never sent.
    let r = query(&mut tied, "INSERT INTO t VALUES (5)", false).await;
    assert!(r.is_err(), "{r:?}");
    let end = cl.next_end().await.unwrap_err();
    assert_eq!(end.side, Side::Router, "{end}");
    assert!(end.retry_safe, "nothing was sent: {end}");
    assert_eq!(
        cl.servers[0].ran("VALUES (5)") + cl.servers[1].ran("VALUES (5)"),
        0
    );
    // It did not even log in there: the one connection the new primary got is the moved
    // session's.
    assert_eq!(cl.servers[1].accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_prepared_read_runs_on_the_replica_under_the_id_it_has_there() {
    let answer = |_: &str| Answer::Ok(None);
    let primary = Fake::start(1000, answer).await;
    let replica = Fake::start(2000, answer).await;
    let cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    let prepare = command::stmt_prepare(b"SELECT * FROM t WHERE id = ?");
    c.write_packet(0, &prepare).await.unwrap();
    let id = match answer_of(&mut c, &prepare).await {
        Outcome::Prepared { id, params: 1, .. } => id,
        other => panic!("{other:?}"),
    };
    assert!(
        id > 1000 && id < 2000,
        "the id the client knows is the primary's: {id}"
    );
    // Execute with one LONGLONG parameter, types bound: 42.
    let mut exec = vec![cmd::STMT_EXECUTE];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.extend_from_slice(&[0, 1, 0, 0, 0]); // no cursor, iteration count 1
    exec.extend_from_slice(&[0, 1, 0x08, 0]); // NULL bitmap, types bound, LONGLONG
    exec.extend_from_slice(&42u64.to_le_bytes());
    c.write_packet(0, &exec).await.unwrap();
    assert_eq!(
        answer_of(&mut c, &exec).await,
        Outcome::Ok(Some(status::AUTOCOMMIT))
    );
    let on_replica = cl.servers[1].commands(cmd::STMT_EXECUTE);
    assert_eq!(on_replica.len(), 1);
    let rid = u32::from_le_bytes(on_replica[0][1..5].try_into().unwrap());
    assert!(rid > 2000, "re-addressed to the replica's id: {rid}");
    assert_eq!(
        &on_replica[0][5..],
        &exec[5..],
        "same flags, types and values"
    );
    assert!(cl.servers[0].commands(cmd::STMT_EXECUTE).is_empty());
    assert_eq!(cl.servers[1].commands(cmd::STMT_PREPARE).len(), 1);
}

/// Reads the answer to `command` from the router.
async fn answer_of(c: &mut Conn, command: &[u8]) -> Outcome {
    let mut t = ResponseTracker::new(command, false).unwrap();
    loop {
        let (_, p) = c.read_packet().await.unwrap();
        if let Step::Done(o) = t.feed(&p, true).unwrap() {
            return o;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_the_greeting_is_let_go_after_the_hello_timeout() {
    let primary = Fake::start(1000, server("primary", "0")).await;
    let mut cl = Cluster::start(vec![primary], ReadYourWrites::Session).await;
    let mut c = Conn::connect(&cl.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let (_, greeting) = c.read_packet().await.unwrap();
    assert_eq!(greeting.first(), Some(&10));
    let started = tokio::time::Instant::now();
    let end = cl.next_end().await.unwrap_err();
    assert!(
        started.elapsed() >= super::HELLO_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(end.side, Side::Client, "{end}");
    assert!(end.what.contains("no handshake response"), "{end}");
}

#[tokio::test(start_paused = true)]
async fn without_any_server_a_login_waits_for_the_topology_then_is_refused() {
    let primary = Fake::start(1000, server("primary", "0")).await;
    let mut cl = Cluster::with_primary(vec![primary], ReadYourWrites::Session, false).await;
    let started = tokio::time::Instant::now();
    let mut c = Conn::connect(&cl.addr, Duration::from_secs(5))
        .await
        .unwrap();
    let (_, p) = c.read_packet().await.unwrap();
    // It waited the connect timeout for a server to come (a failover under way).
    let settle = Duration::from_millis(crate::config::defaults::CONNECT_TIMEOUT_MS);
    assert!(started.elapsed() >= settle, "{:?}", started.elapsed());
    let err = hapress_wire::response::parse_err(&p).unwrap();
    assert_eq!(
        err.code,
        hapress_wire::consts::errcode::ER_CONNECTION_KILLED
    );
    let end = cl.next_end().await.unwrap_err();
    assert_eq!(end.side, Side::Router, "{end}");
}

#[tokio::test(start_paused = true)]
async fn a_certain_set_is_answered_here_and_sent_with_the_primarys_next_command() {
    let cl = Cluster::primary_and_replica().await;
    let mut c = cl.client().await;
    // The relayed login's OK was not read here: the first answer tells the session's status.
    assert_eq!(value(&mut c, "SELECT 1").await, "replica");
    query(&mut c, "SET NAMES utf8mb4", false)
        .await
        .unwrap()
        .unwrap();
    let p = &cl.servers[0];
    assert!(p.queries().is_empty(), "{:?}", p.queries());
    // The primary's next command carries it, in front. (That a replica read after it runs
    // with it, and that a session which only reads never sends it, the MariaDB scenario
    // `certain_sets_are_held_back` shows.)
    query(&mut c, "INSERT INTO t VALUES (1)", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.queries(),
        vec!["SET NAMES utf8mb4", "INSERT INTO t VALUES (1)"]
    );
    // One whose outcome is not certain goes to the server at once.
    query(&mut c, "SET NAMES ucs2", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.ran("SET NAMES ucs2"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_held_back_set_the_server_refuses_ends_the_session_on_the_backend_side() {
    let primary = Fake::start(1000, |sql: &str| match sql {
        s if s.starts_with("SET") => Answer::Err(1115, "Unknown character set"),
        _ => Answer::Ok(Some("0-1-5")),
    })
    .await;
    let replica = Fake::start(2000, server("replica", "0")).await;
    let mut cl = Cluster::start(vec![primary, replica], ReadYourWrites::Session).await;
    let mut c = cl.client().await;
    assert_eq!(value(&mut c, "SELECT 1").await, "replica");
    query(&mut c, "SET NAMES latin1", false)
        .await
        .unwrap()
        .unwrap();
    // The write is not answered as if the setting applied: the session ends.
    let write = query(&mut c, "INSERT INTO t VALUES (1)", false).await;
    assert!(!matches!(write, Ok(Ok(_))), "{write:?}");
    let end = cl.next_end().await.unwrap_err();
    assert_eq!(end.side, Side::Backend(0), "{end:?}");
    assert!(end.what.contains("a session setting"), "{end:?}");
}
