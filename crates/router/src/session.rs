//! One client session: the handshake (on a pooled connection to the primary, checked by the
//! router; else relayed, so the client sees MariaDB's own greeting and auth errors; either
//! way the thread id the client is given is its primary connection's), then the command loop,
//! which routes each statement with [`crate::route::decide`] and forwards the answer chunk by
//! chunk. At the end the backend connections are reset and pooled.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hapress_wire::consts::{cap, cmd, errcode, status};
use hapress_wire::handshake::{self, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::packet::HEADER;
use hapress_wire::response::{
    ok_last_gtid, ok_without_session_state, Outcome, ResponseTracker, Step,
};
use hapress_wire::stmt;

use crate::classify::{classify, kill_target, Effect, Statement};
use crate::config::Config;
use crate::conn::{login, query, Conn, Credential, SMALL_PACKET_LIMIT};
use crate::pool::{self, Key, Lease, ReplicaState};
use crate::route::{decide, ReadYourWrites, SessionView, Target};
use crate::topology::{OnReplica, Topology};

/// A backend connection held by a session, with the backend's index.
struct Backend {
    idx: usize,
    lease: Lease,
}

/// Why a session ended abnormally (logged, never sent to other sessions).
#[derive(Debug)]
pub struct SessionEnd(pub String);

type R<T> = Result<T, SessionEnd>;

fn end<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SessionEnd + '_ {
    move |e| SessionEnd(format!("{what}: {e}"))
}

struct Session {
    topo: Arc<Topology>,
    config: Arc<Config>,
    client: Conn,
    primary: Backend,
    replica: Option<Backend>,
    /// Handshake response of the client, kept to log in to replicas the same way.
    hello: HandshakeResponse,
    /// The nonce the client scrambles its password with: the greeting's, which is the
    /// router's own when the router checked the login on a pooled connection.
    client_nonce: Vec<u8>,
    /// How to log in to a replica as this user (`None`: reads stay on the primary).
    credential: Option<Credential>,
    deprecate_eof: bool,
    /// `MARIADB_CLIENT_CACHE_METADATA` is in effect (result sets may skip their metadata).
    cache_metadata: bool,
    view: SessionView,
    /// Statements replayed on every new replica connection (`SET NAMES`, `SET SESSION ...`).
    replay: Vec<Vec<u8>>,
    /// Current database.
    db: Option<Vec<u8>>,
    /// The router turned `CLIENT_SESSION_TRACK` on for its backend connections (to read each
    /// write's GTID) although the client did not ask for it: OK packets are re-encoded.
    track_added: bool,
    /// GTID of the session's last write, from the primary's OK packet.
    last_gtid: Option<String>,
    /// The GTID position the replica connection is known to have reached.
    replica_reached: Option<String>,
    /// The session's backend connections may be reset and pooled when it ends (false after
    /// `COM_CHANGE_USER` or `COM_SET_OPTION`, whose effects a reset may not undo).
    reusable: bool,
    /// A statement used state of the primary connection that cannot be carried elsewhere
    /// (user variables, named locks, `LAST_INSERT_ID()`): the session cannot move to a new
    /// primary (see `Statement::connection_state`).
    connection_state: bool,
    /// The last answer carried the GTID of a write.
    answer_gtid: bool,
    /// Binary-protocol prepared statements, by the id the client knows (the primary's).
    prepared: HashMap<u32, Prepared>,
    /// How the router logs in to another server as this session's user (to kill a statement
    /// of it on a replica, to mirror a `SET GLOBAL`); made on first use.
    login_elsewhere: Option<Arc<(Vec<u8>, Credential, HandshakeResponse)>>,
    /// The buffer answers are relayed through, kept between statements.
    relay: Vec<u8>,
}

/// A prepared statement of a session: prepared on the primary, and on the session's replica
/// connection the first time one of its executions is routed there.
struct Prepared {
    /// Its classification (statements that change session state are not kept: they pin the
    /// session to the primary).
    stmt: Statement,
    /// Its text.
    sql: Vec<u8>,
    /// Number of parameters.
    params: u16,
    /// The parameter types the client last bound (a replica that has not executed the
    /// statement yet needs them).
    types: Option<Vec<u8>>,
    /// Long data was sent for it, or it was executed with a cursor: it stays on the primary.
    primary_only: bool,
    /// Its id on the session's replica connection.
    on_replica: Option<u32>,
    /// The primary has been sent the current parameter types.
    primary_has_types: bool,
}

/// Commands after which a connection may still be reset and pooled.
const KNOWN_COMMANDS: [u8; 16] = [
    cmd::QUIT,
    cmd::INIT_DB,
    cmd::QUERY,
    cmd::FIELD_LIST,
    cmd::STATISTICS,
    cmd::PROCESS_KILL,
    cmd::PING,
    cmd::CHANGE_USER,
    cmd::STMT_PREPARE,
    cmd::STMT_EXECUTE,
    cmd::STMT_SEND_LONG_DATA,
    cmd::STMT_CLOSE,
    cmd::STMT_RESET,
    cmd::SET_OPTION,
    cmd::STMT_FETCH,
    cmd::RESET_CONNECTION,
];

/// Waits until `client` hangs up. Bytes it sends meanwhile (a pipelined command) stay
/// buffered for later, up to a bound; past it the client is no longer watched. Costs no
/// syscall while the client is quiet (tokio knows its socket has nothing to read) and no timer.
async fn hung_up(client: &mut Conn) {
    while client.fill_bounded(SMALL_PACKET_LIMIT).await {}
}

/// The largest relay buffer a session keeps between statements.
const KEPT_RELAY_BUFFER: usize = 256 * 1024;

/// A client must finish logging in within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client must answer the greeting within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one accepted client until it quits or fails.
pub async fn run(topo: Arc<Topology>, config: Arc<Config>, client: Conn) -> R<()> {
    // A login waiting on a primary that another server replaced (it hung) ends: the client
    // connects again, to the new one.
    let primary = topo.primary();
    let login = tokio::select! {
        login = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(topo.clone(), config, client)) => login,
        () = topo.demoted(primary) => {
            return Err(SessionEnd("the primary changed during the login".into()));
        }
    };
    let Ok(login) = login else {
        return Err(SessionEnd("handshake timed out".into()));
    };
    let Some(mut s) = login? else {
        return Ok(());
    };
    let r = s.command_loop().await;
    // Ended between commands (quit or hang-up): the backend connections can be reset and
    // reused.
    let reuse = r.is_ok() && s.reusable && topo.resettable(s.primary.idx);
    s.release_replica(reuse);
    let p = s.primary;
    topo.backends[p.idx]
        .counters
        .sessions
        .fetch_sub(1, Ordering::Relaxed);
    if reuse {
        pool::release(&topo.backends[p.idx].pool, p.lease);
    } else if r.is_ok() {
        pool::close(p.lease);
    }
    r
}

/// The client's handshake response as the router sends it to a backend: with
/// `CLIENT_SESSION_TRACK` when the server offers it (each write's GTID comes back in its OK).
fn backend_hello(hello: &HandshakeResponse, server: &Greeting) -> HandshakeResponse {
    let mut h = hello.clone();
    h.capabilities |= server.capabilities & cap::SESSION_TRACK;
    // Compression is between the client and the router only.
    h.capabilities &= !cap::COMPRESS;
    h
}

/// A fresh nonce, printable like MariaDB's.
fn nonce() -> Vec<u8> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..20).map(|_| rng.gen_range(33u8..127)).collect()
}

/// Opens a connection to backend `idx` under a permit of its pool and reads its greeting; on
/// failure the client gets the error (packet number `seq`): 1927 (08S01) when the server
/// cannot be reached, or the server's own ERR (its 1040 beyond `max_connections`).
async fn connect(
    topo: &Topology,
    config: &Config,
    idx: usize,
    client: &mut Conn,
    seq: u8,
) -> R<Lease> {
    connect_or(topo, config, idx, client, seq, false, None).await
}

/// Why [`connect_or`] failed quietly: the server cannot be reached.
const UNREACHABLE: &str = "unreachable";

/// [`connect`]; with `quiet`, a server that cannot be reached is an error the client has not
/// been sent ([`UNREACHABLE`]), so the caller can try another.
async fn connect_or(
    topo: &Topology,
    config: &Config,
    idx: usize,
    client: &mut Conn,
    seq: u8,
    quiet: bool,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> R<Lease> {
    let b = &topo.backends[idx];
    let permit = permit.or_else(|| b.pool.permit());
    if permit.is_none() && b.pool.enabled() && b.pool.seems_full() {
        // Beyond the pool while the server refuses new connections: its answer, at once.
        topo.refused.fetch_add(1, Ordering::Relaxed);
        let msg = "Too many connections (hapress router: the server refused one just before)";
        let _ = refuse(client, seq, 1040, "08004", msg).await;
        return Err(SessionEnd(msg.into()));
    }
    b.pool.opened.fetch_add(1, Ordering::Relaxed);
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut conn = match Conn::connect(&b.addr, timeout).await {
        Ok(c) => c,
        Err(_) if quiet => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(SessionEnd(UNREACHABLE.into()));
        }
        Err(e) => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            let msg = format!("hapress router: cannot reach the primary ({}): {e}", b.addr);
            let _ = refuse(client, seq, errcode::ER_CONNECTION_KILLED, "08S01", &msg).await;
            return Err(SessionEnd(msg));
        }
    };
    let (_, g) = match tokio::time::timeout(timeout, conn.read_packet()).await {
        Ok(r) => r.map_err(end("primary greeting"))?,
        Err(_) => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "hapress router: {} did not greet within {timeout:?}",
                b.addr
            );
            let _ = refuse(client, seq, errcode::ER_CONNECTION_KILLED, "08S01", &msg).await;
            return Err(SessionEnd(msg));
        }
    };
    if g.first() == Some(&0xff) {
        if hapress_wire::response::parse_err(&g).is_ok_and(|e| e.code == 1040) {
            b.pool.note_full();
        }
        client.write_packet(seq, &g).await.map_err(end("client"))?;
        return Err(SessionEnd("primary refused the connection".into()));
    }
    let g = Greeting::parse(&g).map_err(end("primary greeting"))?;
    Ok(Lease::new(conn, g, permit, &b.pool))
}

/// The router's own refusal of a login: in place of the greeting (packet 0) without an SQL
/// state, as MariaDB does there; later with one.
async fn refuse(
    client: &mut Conn,
    seq: u8,
    code: u16,
    state: &str,
    msg: &str,
) -> std::io::Result<()> {
    if seq == 0 {
        client.send_greeting_err(code, msg).await
    } else {
        client.send_err(seq, code, state, msg).await
    }
}

/// The state of a `mysql_native_password` exchange: plugin, nonce and the client's token.
struct Auth {
    plugin: String,
    nonce: Vec<u8>,
    token: Vec<u8>,
}

/// A client that scrambles its password with another nonce than the server's (it was greeted
/// with the router's own, on a pooled connection): native-password auth switches are shown to
/// it with its nonce, and its answers scrambled again for the server's (the password's SHA1
/// recovered with one of the user's hashes, as at login). An answer that matches no hash (a
/// wrong password) goes as it is, and the server denies it as it would directly.
struct Rescramble {
    client_nonce: Vec<u8>,
    stage2s: Vec<[u8; 20]>,
}

/// Relays the auth exchange between client and backend until OK or ERR (the client's packet
/// numbers are the backend's plus `offset`). `None` when the login failed (the client has
/// MariaDB's own ERR).
async fn relay_auth(
    client: &mut Conn,
    backend: &mut Conn,
    mut auth: Auth,
    offset: u8,
    track_added: bool,
    rescramble: Option<&Rescramble>,
) -> R<Option<Auth>> {
    loop {
        let (s, p) = backend.read_packet().await.map_err(end("primary auth"))?;
        let switch = (p.first() == Some(&0xfe))
            .then(|| handshake::AuthSwitch::parse(&p))
            .transpose()
            .map_err(end("auth switch"))?;
        let translate = rescramble.filter(|_| {
            switch
                .as_ref()
                .is_some_and(|sw| sw.plugin == NATIVE_PASSWORD)
        });
        let shown = match (p.first(), translate, &switch) {
            (Some(0x00), ..) if track_added => {
                ok_without_session_state(&p).unwrap_or_else(|| p.clone())
            }
            (_, Some(r), Some(sw)) => handshake::AuthSwitch {
                plugin: sw.plugin.clone(),
                data: r.client_nonce.clone(),
            }
            .encode(),
            _ => p.clone(),
        };
        client
            .write_packet(s.wrapping_add(offset), &shown)
            .await
            .map_err(end("client"))?;
        match p.first() {
            Some(0x00) => return Ok(Some(auth)),
            Some(0xff) => return Ok(None), // wrong password etc.
            _ => {}
        }
        if let Some(sw) = &switch {
            auth.plugin.clone_from(&sw.plugin);
            auth.nonce.clone_from(&sw.data);
        }
        let (cs, cp) = client.read_packet().await.map_err(end("client auth"))?;
        if switch.is_some() {
            auth.token.clone_from(&cp);
        }
        let reply = match (translate, &switch) {
            (Some(r), Some(sw)) => r
                .stage2s
                .iter()
                .find_map(|s2| handshake::native_recover_stage1(&cp, &r.client_nonce, s2))
                .map_or(cp, |s1| {
                    handshake::native_token_from_stage1(&s1, &sw.data).to_vec()
                }),
            _ => cp,
        };
        backend
            .write_packet(cs.wrapping_sub(offset), &reply)
            .await
            .map_err(end("primary"))?;
    }
}

/// How the router can log in elsewhere as the user of a finished native-password exchange.
fn credential(topo: &Topology, user: &[u8], auth: &Auth) -> Option<Credential> {
    if auth.plugin != NATIVE_PASSWORD {
        None
    } else if auth.token.is_empty() {
        Some(Credential::Empty)
    } else {
        topo.stage2s(user)
            .iter()
            .find_map(|s2| handshake::native_recover_stage1(&auth.token, &auth.nonce, s2))
            .map(Credential::Stage1)
    }
}

/// After the primary accepted `KILL [QUERY] id`: if session `id` is running a statement on a
/// replica, kills it there too (as that session's own user, which may always kill its own
/// threads; MariaDB has just said the killer may kill that session), so the statement stops
/// as it would on one server. `KILL CONNECTION` kills the replica connection: the session then
/// ends closed, as a killed MariaDB session does.
async fn kill_on_replica(topo: &Topology, config: &Config, id: u32, query_only: bool) {
    let Some(run) = topo.on_replica(id) else {
        return;
    };
    let what = if query_only { "QUERY" } else { "CONNECTION" };
    let sql = format!("KILL {what} {}", run.thread_id);
    run_as(topo, config, run.idx, &run.login, &sql).await;
}

/// Runs `sql` on backend `idx` over a new connection logged in as `who` (user, credential,
/// handshake template), within the connect timeout; an error is logged.
async fn run_as(
    topo: &Topology,
    config: &Config,
    idx: usize,
    who: &(Vec<u8>, Credential, HandshakeResponse),
    sql: &str,
) {
    let (user, cred, tpl) = who;
    let addr = &topo.backends[idx].addr;
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let work = async {
        let mut conn = Conn::connect(addr, timeout).await.ok()?;
        login(&mut conn, user, cred, tpl).await.ok()?;
        let r = query(&mut conn, sql, false).await;
        let _ = conn.write_packet(0, &[cmd::QUIT]).await;
        r.ok()
    };
    if let Ok(Some(Err((code, msg)))) = tokio::time::timeout(timeout, work).await {
        let shown: String = sql.chars().take(80).collect();
        eprintln!("hapress router: {shown} on {addr}: {code} {msg}");
    }
}

/// `COM_CHANGE_USER` on a pooled connection to the same user with no database (it also
/// resets the session), answered with `SHA1(password)`; the server's final OK or ERR.
async fn change_user(
    lease: &mut Lease,
    hello: &HandshakeResponse,
    stage1: &[u8; 20],
) -> std::io::Result<Vec<u8>> {
    let token = handshake::native_token_from_stage1(stage1, &lease.greeting.nonce);
    let mut c = vec![cmd::CHANGE_USER];
    c.extend_from_slice(&hello.user);
    c.push(0);
    c.push(token.len() as u8);
    c.extend_from_slice(&token);
    c.push(0); // no database
    c.extend_from_slice(&u16::from(hello.charset).to_le_bytes());
    c.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    c.push(0);
    c.push(0); // no connection attributes
    lease.conn.write_packet(0, &c).await?;
    loop {
        let (seq, p) = lease.conn.read_packet().await?;
        if p.first() != Some(&0xfe) {
            return Ok(p);
        }
        let sw = handshake::AuthSwitch::parse(&p).map_err(std::io::Error::other)?;
        if sw.plugin != NATIVE_PASSWORD {
            return Err(std::io::Error::other(
                "unexpected auth plugin in COM_CHANGE_USER",
            ));
        }
        let token = handshake::native_token_from_stage1(stage1, &sw.data);
        lease.conn.write_packet(seq.wrapping_add(1), &token).await?;
    }
}

/// The first connection `take` gives that its server has not closed meanwhile (a restart, a
/// `KILL`, `wait_timeout`); closed ones are dropped.
async fn live(mut take: impl FnMut() -> Option<Lease>) -> Option<Lease> {
    while let Some(mut l) = take() {
        if !l.conn.gone().await {
            return Some(l);
        }
    }
    None
}

/// A replica fit for reads, waiting for one up to the connect timeout.
async fn replica_soon(topo: &Topology, config: &Config) -> Option<usize> {
    let until = std::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    loop {
        let r = topo.pick_replica();
        if r.is_some() || std::time::Instant::now() >= until {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The connection phase. With a pooled connection to the primary at hand, the router greets
/// the client itself (that connection's thread id and a fresh nonce), checks the password
/// against the hash MariaDB stores and switches the connection to the client's database: no
/// backend handshake. Otherwise (nothing pooled, another user or other capabilities, a
/// password the router cannot check) the login is relayed to a new connection, so the client
/// gets MariaDB's own greeting, auth exchange and errors. `None` when the login failed (the
/// client already has MariaDB's ERR).
async fn handshake(
    topo: Arc<Topology>,
    config: Arc<Config>,
    mut client: Conn,
) -> R<Option<Session>> {
    // Without a primary (lost, another not yet promoted) the session lives on a replica: its
    // reads are served, its writes get MariaDB's own read-only error, and it ends at its first
    // statement for the primary once there is one again.
    // With neither (servers restarting, a failover under way), the login waits a moment for
    // the topology to settle rather than fail at once.
    let settle = std::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    let (primary, home) = loop {
        let primary = topo.primary();
        let home = primary.or_else(|| topo.pick_replica());
        if home.is_some() || std::time::Instant::now() >= settle {
            break (primary, home);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let Some(pidx) = home else {
        topo.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client
            .send_greeting_err(
                errcode::ER_CONNECTION_KILLED,
                "hapress router: no primary database server is available",
            )
            .await;
        return Err(SessionEnd("no primary".into()));
    };
    let mut on_replica = primary.is_none();
    let mut pidx = pidx;
    let mut pool = topo.backends[pidx].pool.clone();
    let pooled_lease = if on_replica {
        None
    } else {
        live(|| pool.take_guess()).await
    };
    let (greeting, mut lease, pooled) = match pooled_lease {
        Some(l) => {
            let mut g = l.greeting.clone();
            g.nonce = nonce();
            g.auth_plugin = NATIVE_PASSWORD.into();
            (g, l, true)
        }
        None => {
            // A primary that just died (its probe has not noticed yet): a replica serves the
            // session, as while there is no primary.
            let l = match connect_or(&topo, &config, pidx, &mut client, 0, !on_replica, None).await
            {
                Err(e) if e.0 == UNREACHABLE => match replica_soon(&topo, &config).await {
                    Some(r) => {
                        (pidx, on_replica) = (r, true);
                        pool = topo.backends[r].pool.clone();
                        connect(&topo, &config, r, &mut client, 0).await?
                    }
                    None => connect(&topo, &config, pidx, &mut client, 0).await?,
                },
                other => other?,
            };
            (l.greeting.clone(), l, false)
        }
    };
    // What the client sees: the router does not speak TLS; it compresses (its own side of
    // the session only) when the client asks.
    let mut shown = greeting.clone();
    shown.capabilities &= !cap::SSL;
    shown.capabilities |= cap::COMPRESS;
    client
        .write_packet(0, &shown.encode())
        .await
        .map_err(end("client"))?;
    // A client that never answers (a health check that only connects, a stalled client) does
    // not cost the pooled connection it was greeted with.
    let answer = tokio::time::timeout(HELLO_TIMEOUT, client.read_packet()).await;
    let Ok(Ok((hseq, h))) = answer else {
        if pooled {
            pool.put(lease);
        }
        return Err(SessionEnd("the client sent no handshake response".into()));
    };
    if HandshakeResponse::is_ssl_request(&h) {
        let _ = client
            .send_err(
                hseq.wrapping_add(1),
                1043,
                "08S01",
                "hapress router: TLS is not supported on this port",
            )
            .await;
        return Err(SessionEnd("client asked for TLS".into()));
    }
    let mut hello = HandshakeResponse::parse(&h).map_err(end("client handshake"))?;
    if hello.database.as_deref() == Some(b"") {
        hello.database = None; // MariaDB logs such a client in with no database
    }
    let sent = backend_hello(&hello, &greeting);
    let track_added = (sent.capabilities ^ hello.capabilities) & cap::SESSION_TRACK != 0;
    let next = hseq.wrapping_add(1);
    let stage1 = (pooled
        && hello.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD) == NATIVE_PASSWORD
        && lease.key.as_ref() == Some(&Key::new(&sent, &greeting)))
    .then(|| {
        let s2 = topo.checkable(&hello.user)?;
        handshake::native_recover_stage1(&hello.auth, &greeting.nonce, &s2)
    })
    .flatten();
    // The nonce the client's later password scrambles use (COM_CHANGE_USER): the router's
    // own when it checked the login itself, else the server's.
    let answered_here = stage1.is_some();
    let credential = if let Some(s1) = stage1 {
        // Checked here. Switch the pooled connection to the client's database (its OK, or
        // MariaDB's 1049/1044, answers the login); a client without one gets a connection
        // without one (`COM_CHANGE_USER` to the same user, the only way back to no database),
        // and the OK a fresh login gets.
        let p = match &hello.database {
            Some(db) => {
                let command = [&[cmd::INIT_DB][..], db].concat();
                lease
                    .conn
                    .write_packet(0, &command)
                    .await
                    .map_err(end("primary"))?;
                lease.conn.read_packet().await.map_err(end("primary"))?.1
            }
            None => {
                let p = change_user(&mut lease, &hello, &s1)
                    .await
                    .map_err(end("primary"))?;
                match hapress_wire::response::parse_ok(&p) {
                    Ok(ok) => {
                        let st = ok.status & !status::SESSION_STATE_CHANGED;
                        vec![0, 0, 0, st as u8, (st >> 8) as u8, 0, 0]
                    }
                    Err(_) => p,
                }
            }
        };
        let shown = match p.first() {
            Some(0x00) if track_added => ok_without_session_state(&p).unwrap_or_else(|| p.clone()),
            _ => p.clone(),
        };
        client
            .write_packet(next, &shown)
            .await
            .map_err(end("client"))?;
        if p.first() != Some(&0x00) {
            // 1049 or 1044: the client has MariaDB's ERR. The connection is closed: the thread
            // id it was shown is never anyone else's.
            pool::close(lease);
            return Ok(None);
        }
        pool.reused.fetch_add(1, Ordering::Relaxed);
        Some(Credential::Stage1(s1))
    } else if pooled {
        // Not for this client: relay its login to a new connection, asking the client to
        // scramble its password again with that server's nonce. The connection whose thread
        // id the client was given is closed, so no other session ever gets that id.
        if hello.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD) == NATIVE_PASSWORD
            && topo.stage2s(&hello.user).iter().any(|s2| {
                handshake::native_recover_stage1(&hello.auth, &greeting.nonce, s2).is_some()
            })
        {
            pool.mismatched.fetch_add(1, Ordering::Relaxed);
        }
        // Its slot in the pool goes to the new connection.
        let permit = lease.take_permit();
        pool::close(lease);
        if hello.capabilities & cap::PLUGIN_AUTH == 0 {
            let msg = "hapress router: this client cannot switch authentication methods";
            let _ = client.send_err(next, 1045, "28000", msg).await;
            return Err(SessionEnd(msg.into()));
        }
        lease = connect_or(&topo, &config, pidx, &mut client, next, false, permit).await?;
        let g = lease.greeting.clone();
        let sw = handshake::AuthSwitch {
            plugin: g.auth_plugin.clone(),
            data: g.nonce.clone(),
        };
        client
            .write_packet(next, &sw.encode())
            .await
            .map_err(end("client"))?;
        let (_, token) = client.read_packet().await.map_err(end("client auth"))?;
        let mut h2 = backend_hello(&hello, &g);
        h2.auth.clone_from(&token);
        h2.auth_plugin = Some(g.auth_plugin.clone());
        lease
            .conn
            .write_packet(1, &h2.encode())
            .await
            .map_err(end("primary"))?;
        let auth = Auth {
            plugin: g.auth_plugin,
            nonce: g.nonce,
            token,
        };
        match relay_auth(&mut client, &mut lease.conn, auth, 2, track_added, None).await? {
            Some(a) => credential(&topo, &hello.user, &a),
            None => return Ok(None),
        }
    } else {
        // A new connection: the client's response goes to it as is (the capability bits are
        // not part of the scramble).
        let mut h = h;
        if h.len() >= 4 {
            h[..4].copy_from_slice(&sent.capabilities.to_le_bytes());
        }
        lease
            .conn
            .write_packet(hseq, &h)
            .await
            .map_err(end("primary"))?;
        let auth = Auth {
            plugin: hello
                .auth_plugin
                .clone()
                .unwrap_or_else(|| greeting.auth_plugin.clone()),
            nonce: greeting.nonce.clone(),
            token: hello.auth.clone(),
        };
        match relay_auth(&mut client, &mut lease.conn, auth, 0, track_added, None).await? {
            Some(a) => credential(&topo, &hello.user, &a),
            None => return Ok(None),
        }
    };
    lease.key = credential
        .is_some()
        .then(|| Key::new(&backend_hello(&hello, &lease.greeting), &lease.greeting));
    if let Some(k) = &lease.key {
        pool.note_login(k);
    }
    let deprecate_eof = hello.capabilities & greeting.capabilities & cap::DEPRECATE_EOF != 0;
    let cache_metadata = hello.capabilities & cap::MYSQL == 0
        && hello.mariadb_capabilities
            & greeting.mariadb_capabilities
            & hapress_wire::consts::mariadb_cap::CACHE_METADATA
            != 0;
    topo.backends[pidx]
        .counters
        .sessions
        .fetch_add(1, Ordering::Relaxed);
    let client_nonce = if answered_here {
        greeting.nonce.clone()
    } else {
        lease.greeting.nonce.clone()
    };
    // The login's OK went out uncompressed; everything after it is compressed.
    if hello.capabilities & cap::COMPRESS != 0 {
        client.compress();
    }
    Ok(Some(Session {
        client_nonce,
        db: hello.database.clone(),
        topo: topo.clone(),
        config,
        client,
        primary: Backend { idx: pidx, lease },
        replica: None,
        hello,
        credential,
        deprecate_eof,
        cache_metadata,
        view: SessionView::default(),
        replay: Vec::new(),
        track_added,
        last_gtid: None,
        replica_reached: None,
        reusable: !on_replica,
        connection_state: false,
        answer_gtid: false,
        prepared: HashMap::new(),
        login_elsewhere: None,
        relay: Vec::new(),
    }))
}

impl Session {
    async fn command_loop(&mut self) -> R<()> {
        loop {
            let c = match self.client.next_chunk().await {
                Ok(c) => c,
                Err(_) => return Ok(()), // client went away
            };
            if !c.first {
                return Err(SessionEnd("unexpected continuation chunk".into()));
            }
            let bytes = self.client.chunk_bytes(&c);
            let command = bytes.get(HEADER).copied();
            let first_payload = bytes[HEADER..].to_vec();
            // The statement: the text of COM_QUERY (the first chunk: enough to classify; a
            // > 16 MB statement is classified by its first 16 MB), or the prepared statement
            // COM_STMT_EXECUTE runs. `routable`: a replica may run it.
            let (stmt, routable) = match command {
                Some(cmd::QUERY) => (Some(classify(&first_payload[1..])), true),
                Some(cmd::STMT_EXECUTE) => self.executing(&first_payload, c.last),
                _ => (None, false),
            };
            let target = if routable {
                self.target(stmt.as_ref())
            } else {
                Target::Primary
            };
            match command {
                Some(cmd::QUIT) => return Ok(()),
                Some(cmd::CHANGE_USER) => return self.change_user(c).await,
                _ => {}
            }
            if command == Some(cmd::STMT_CLOSE) {
                self.close_on_replica(&first_payload).await;
            }
            let target = if target == Target::Replica {
                self.replica_ready().await
            } else {
                target
            };
            // A prepared statement runs on the replica under the id it has there.
            let (target, readdressed) = match (target, command) {
                (Target::Replica, Some(cmd::STMT_EXECUTE)) => {
                    match self.readdress(&first_payload).await {
                        Some(p) => (Target::Replica, Some(p)),
                        None => (Target::Primary, None),
                    }
                }
                _ => (target, None),
            };
            let readdressed = match (target, command) {
                (Target::Primary, Some(cmd::STMT_EXECUTE)) => {
                    self.types_for_primary(&first_payload, c.last)
                }
                _ => readdressed,
            };
            // Counted from before the check of a planned switchover's hold until the answer,
            // so the switchover fences the old primary only once nothing is on its way there.
            let _in_flight = (target == Target::Primary).then(|| self.topo.to_primary());
            if target == Target::Primary {
                self.topo.hold_passed().await;
            }
            if target == Target::Primary && self.primary_moved() && !self.move_to_primary().await {
                // Never send to a server that stopped being the primary: a session that cannot
                // move (a transaction, temporary tables, prepared statements...) is closed, so
                // the client reconnects (to the new primary) and re-runs what it had not sent.
                return Err(SessionEnd(
                    "the primary changed; closing the session".into(),
                ));
            }
            if target == Target::Replica && self.primary.lease.conn.gone().await {
                // The session's own connection was killed (`KILL <its id>`): end the session
                // as MariaDB would, rather than answer from a replica.
                return Err(SessionEnd("the primary connection was closed".into()));
            }
            if trace_enabled() {
                let text = String::from_utf8_lossy(
                    first_payload
                        .get(1..first_payload.len().min(100))
                        .unwrap_or(&[]),
                );
                eprintln!(
                    "hapress router: trace: cmd {:#04x} -> {target:?}: {text}",
                    first_payload[0]
                );
            }
            if command == Some(cmd::QUERY)
                && stmt.as_ref().is_some_and(|s| s.effect == Effect::SetGlobal)
                && crate::classify::mirrored_global(&first_payload[1..])
            {
                self.mirror_global(&first_payload[1..]).await;
            }
            // While a statement runs on a replica, a KILL of this session must reach it there.
            let on_replica = target == Target::Replica && self.note_on_replica();
            let whole = c.last;
            let outcome = self
                .forward(Some(c), target, readdressed.as_deref(), &first_payload)
                .await;
            if on_replica {
                self.topo
                    .running_on_replica(self.primary.lease.greeting.connection_id, None);
            }
            let mut outcome = outcome?;
            let (mut target, mut stmt) = (target, stmt);
            // Every command a replica runs has an answer: none relayed means the replica
            // refused it as read-only (see `relay_answer`).
            if target == Target::Replica && outcome.is_none() {
                // Re-run on the primary (a replica runs only whole commands), as a write:
                // later reads of the session must see what it did.
                debug_assert!(whole);
                let again = match command {
                    Some(cmd::STMT_EXECUTE) => self.types_for_primary(&first_payload, whole),
                    _ => None,
                };
                let _in_flight = self.topo.to_primary();
                self.topo.hold_passed().await;
                if self.primary_moved() && !self.move_to_primary().await {
                    return Err(SessionEnd(
                        "the primary changed; closing the session".into(),
                    ));
                }
                target = Target::Primary;
                if let Some(st) = stmt.as_mut() {
                    st.effect = Effect::Write;
                }
                outcome = self
                    .forward(None, target, again.as_deref(), &first_payload)
                    .await?;
            }
            if trace_enabled() {
                eprintln!("hapress router: trace: done {outcome:?}");
            }
            let killed = match (command, &outcome) {
                (Some(cmd::QUERY), Some(Outcome::Ok(_))) => kill_target(&first_payload[1..]),
                (Some(cmd::PROCESS_KILL), Some(Outcome::Ok(_))) => first_payload
                    .get(1..5)
                    .map(|b| (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), false)),
                _ => None,
            };
            self.after(command, stmt, target, outcome, &first_payload);
            if let Some((id, query_only)) = killed {
                kill_on_replica(&self.topo, &self.config, id, query_only).await;
            }
        }
    }

    /// Records that this session's statement runs on its replica connection; false if it has
    /// none or no way to log in there again.
    fn note_on_replica(&mut self) -> bool {
        let Some(login) = self.own_login() else {
            return false;
        };
        let Some(b) = &self.replica else {
            return false;
        };
        self.topo.running_on_replica(
            self.primary.lease.greeting.connection_id,
            Some(OnReplica {
                idx: b.idx,
                thread_id: b.lease.greeting.connection_id,
                login,
            }),
        );
        true
    }

    /// How the router logs in to another server as this session's user (no database).
    fn own_login(&mut self) -> Option<Arc<(Vec<u8>, Credential, HandshakeResponse)>> {
        if self.login_elsewhere.is_none() {
            let cred = self.credential.clone()?;
            let mut tpl = backend_hello(&self.hello, &self.primary.lease.greeting);
            tpl.database = None;
            self.login_elsewhere = Some(Arc::new((self.hello.user.clone(), cred, tpl)));
        }
        self.login_elsewhere.clone()
    }

    /// A `SET GLOBAL` of a variable that changes what statements return
    /// ([`crate::classify::mirrored_global`]) is run on every replica that is up too, as this
    /// session's user, before the primary gets it: reads on replicas then behave as on the
    /// primary, as on one server. The primary's answer is the client's.
    async fn mirror_global(&mut self, sql: &[u8]) {
        let Some(login) = self.own_login() else {
            return;
        };
        let Ok(text) = std::str::from_utf8(sql) else {
            return;
        };
        for idx in 0..self.topo.backends.len() {
            if idx != self.primary.idx && self.topo.replica_up(idx) {
                run_as(&self.topo, &self.config, idx, &login, text).await;
            }
        }
    }

    /// `COM_STMT_EXECUTE`: the statement it runs (for the bookkeeping after it) and whether
    /// a replica may run it: a known statement, in one packet, without a cursor or long data,
    /// whose parameter types are known. Remembers the types the packet binds.
    fn executing(&mut self, payload: &[u8], whole: bool) -> (Option<Statement>, bool) {
        let Some(p) = stmt::statement_id(payload).and_then(|id| self.prepared.get_mut(&id)) else {
            return (None, false);
        };
        let Ok(e) = stmt::parse_execute(payload, p.params) else {
            return (Some(p.stmt.clone()), false);
        };
        if let Some(t) = e.types {
            if p.types.as_deref() != Some(t) {
                p.types = Some(t.to_vec());
                p.primary_has_types = false;
            }
        }
        if e.flags != 0 {
            p.primary_only = true; // COM_STMT_FETCH must find the cursor on the same server
        }
        let routable = whole && !p.primary_only && (p.params == 0 || p.types.is_some());
        (Some(p.stmt.clone()), routable)
    }

    /// The execute packet for the replica connection: the statement prepared there (once per
    /// connection), its id and the remembered parameter types. `None`: run it on the primary.
    async fn readdress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let id = stmt::statement_id(payload)?;
        let p = self.prepared.get(&id)?;
        let (params, types) = (p.params, p.types.clone().unwrap_or_default());
        let rid = match p.on_replica {
            Some(rid) => rid,
            None => {
                let command = [&[cmd::STMT_PREPARE][..], &p.sql].concat();
                let b = self.replica.as_mut()?;
                match prepare(&mut b.lease.conn, &command, self.deprecate_eof).await {
                    Ok(Some(rid)) => {
                        self.prepared.get_mut(&id)?.on_replica = Some(rid);
                        rid
                    }
                    Ok(None) => return None, // the replica refused it: the primary runs it
                    Err(_) => {
                        self.release_replica(false);
                        return None;
                    }
                }
            }
        };
        stmt::readdress_execute(payload, params, rid, &types).ok()
    }

    /// An execution going to the primary without parameter types (the client bound them
    /// once, in an execution a replica ran): the packet with the types the primary lacks.
    fn types_for_primary(&mut self, payload: &[u8], whole: bool) -> Option<Vec<u8>> {
        let id = stmt::statement_id(payload)?;
        let p = self.prepared.get_mut(&id)?;
        let e = stmt::parse_execute(payload, p.params).ok()?;
        if e.types.is_some() {
            p.primary_has_types = true;
            return None;
        }
        if p.params == 0 || p.primary_has_types || !whole {
            return None;
        }
        let types = p.types.clone()?;
        p.primary_has_types = true;
        stmt::readdress_execute(payload, p.params, id, &types).ok()
    }

    /// `COM_STMT_CLOSE` of a statement also prepared on the replica: closed there too.
    async fn close_on_replica(&mut self, payload: &[u8]) {
        let Some(p) = stmt::statement_id(payload).and_then(|id| self.prepared.remove(&id)) else {
            return;
        };
        if let (Some(rid), Some(b)) = (p.on_replica, self.replica.as_mut()) {
            if b.lease
                .conn
                .write_packet(0, &stmt::close(rid))
                .await
                .is_err()
            {
                self.release_replica(false);
            }
        }
    }

    fn primary_moved(&self) -> bool {
        self.topo.primary().is_some_and(|p| p != self.primary.idx)
    }

    /// Where a command goes.
    fn target(&self, stmt: Option<&Statement>) -> Target {
        let Some(st) = stmt else {
            return Target::Primary;
        };
        let mut view = self.view;
        view.gtid_known = self.last_gtid.is_some();
        view.replica_available = self.credential.is_some()
            && match &self.replica {
                Some(b) => self.topo.replica_fit(b.idx),
                None => self.topo.pick_replica().is_some(),
            };
        decide(st, &view, self.config.read_your_writes)
    }

    /// Sends the command (all its chunks; `first: None`: only `readdressed`, a command the
    /// client already sent) to `target` and relays the answer. A replica's refusal of a read
    /// as read-only is not relayed: the answer is `None`, which an answered command
    /// on a replica never is otherwise.
    async fn forward(
        &mut self,
        first: Option<hapress_wire::packet::Chunk>,
        target: Target,
        readdressed: Option<&[u8]>,
        payload: &[u8],
    ) -> R<Option<Outcome>> {
        let topo = self.topo.clone();
        let (idx, backend) = match target {
            Target::Primary => (self.primary.idx, &mut self.primary.lease.conn),
            Target::Replica => {
                let b = self
                    .replica
                    .as_mut()
                    .ok_or_else(|| SessionEnd("replica vanished".into()))?;
                (b.idx, &mut b.lease.conn)
            }
        };
        topo.backends[idx]
            .counters
            .statements
            .fetch_add(1, Ordering::Relaxed);
        match target {
            Target::Primary => topo.routed_primary.fetch_add(1, Ordering::Relaxed),
            Target::Replica => topo.routed_replica.fetch_add(1, Ordering::Relaxed),
        };
        // Forward the command chunk by chunk.
        let started = std::time::Instant::now();
        let Some(mut c) = first else {
            let resend = readdressed.unwrap_or(payload);
            if let Err(e) = backend.write_packet(0, resend).await {
                return self.send_failed(idx, target, payload, started, e).await;
            }
            return self.relay_answer(idx, target, payload, started).await;
        };
        let mut readdressed = readdressed;
        loop {
            let raw = self.client.chunk_bytes(&c);
            let sent = match readdressed.take() {
                Some(p) => backend.write_packet(0, p).await.map(|_| ()),
                None => backend.write_raw(raw).await,
            };
            if let Err(e) = sent {
                self.client.consume(&c);
                return self.send_failed(idx, target, payload, started, e).await;
            }
            self.client.consume(&c);
            if c.last {
                break;
            }
            c = self.client.next_chunk().await.map_err(end("client"))?;
        }
        self.relay_answer(idx, target, payload, started).await
    }

    /// Sending a command to backend `idx` failed. A server that refuses a command part-way (a
    /// packet over `max_allowed_packet`) answers with an error and closes: that answer is
    /// relayed, as a direct client gets it, when it is already there; else the backend is lost.
    async fn send_failed(
        &mut self,
        idx: usize,
        target: Target,
        payload: &[u8],
        started: std::time::Instant,
        e: impl std::fmt::Display,
    ) -> R<Option<Outcome>> {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.relay_answer(idx, target, payload, started),
        )
        .await;
        if let Ok(Ok(outcome)) = answer {
            return Ok(outcome);
        }
        let addr = self.topo.backends[idx].addr.clone();
        self.lost(idx, &format!("sending to {addr}: {e}")).await
    }

    /// Relays the answer of backend `idx` to the command `payload` (its first chunk).
    async fn relay_answer(
        &mut self,
        idx: usize,
        target: Target,
        payload: &[u8],
        started: std::time::Instant,
    ) -> R<Option<Outcome>> {
        let topo = self.topo.clone();
        let backend = match target {
            Target::Primary => &mut self.primary.lease.conn,
            Target::Replica => {
                &mut self
                    .replica
                    .as_mut()
                    .ok_or_else(|| SessionEnd("replica vanished".into()))?
                    .lease
                    .conn
            }
        };
        let Some(mut tracker) = ResponseTracker::new(payload, self.deprecate_eof)
            .map(|t| t.cache_metadata(self.cache_metadata))
        else {
            return Ok(None);
        };
        // Relay the answer; flush whenever the backend has nothing more buffered.
        let mut out = std::mem::take(&mut self.relay);
        out.clear();
        let mut captured: Option<String> = None;
        let mut answered = false;
        loop {
            let next = if answered || !backend.nothing_buffered() {
                backend.next_chunk().await
            } else {
                // Until the answer starts, a client that hangs up ends the session and closes
                // the backend connection, so the server sees the hang-up as it would directly
                // (a statement waiting on a lock is abandoned, the lock released).
                tokio::select! {
                    biased;
                    r = backend.next_chunk() => r,
                    () = hung_up(&mut self.client) => {
                        return Err(SessionEnd("the client hung up during a statement".into()));
                    }
                    // A primary that hangs and is replaced never answers: the client's
                    // connection is closed (2013, as for a server that dies mid-statement) and
                    // the statement is never re-run.
                    () = topo.demoted((target == Target::Primary).then_some(idx)) => {
                        return self.lost(idx, "another server became the primary").await;
                    }
                }
            };
            answered = true;
            let rc = match next {
                Ok(rc) => rc,
                Err(e) => {
                    let _ = self.client.write_raw(&out).await;
                    return self
                        .lost(
                            idx,
                            &format!("reading from {}: {e}", topo.backends[idx].addr),
                        )
                        .await;
                }
            };
            let raw = backend.chunk_bytes(&rc);
            let step = if rc.first {
                tracker
                    .feed(&raw[HEADER..], rc.last)
                    .map_err(|e| SessionEnd(format!("backend {}: {e}", topo.backends[idx].addr)))?
            } else {
                Step::More
            };
            if trace_enabled() && rc.first && raw.get(HEADER) == Some(&0xff) {
                eprintln!(
                    "hapress router: trace: ERR {} {}",
                    rc.len,
                    String::from_utf8_lossy(&raw[HEADER..raw.len().min(HEADER + 200)])
                );
            }
            if target == Target::Replica
                && rc.first
                && rc.last
                && step == Step::Done(Outcome::Err)
                && out.is_empty()
                && read_only_refusal(&raw[HEADER..])
            {
                // The read writes after all (a view or a column default calling a sequence, a
                // stored function that modifies data): it did nothing on the replica; the
                // primary runs it.
                backend.consume(&rc);
                return Ok(None);
            }
            let ok_packet = rc.first && rc.last && tracker.last_was_ok();
            if ok_packet {
                // Every backend connection tracks session state; the GTID of a write is read
                // from the primary's OK, and the state is removed for a client that did not
                // ask for it.
                let payload = &raw[HEADER..];
                if target == Target::Primary {
                    if let Some(g) = ok_last_gtid(payload) {
                        topo.note_gtid(&g);
                        captured = Some(g);
                    }
                }
                match self
                    .track_added
                    .then(|| ok_without_session_state(payload))
                    .flatten()
                {
                    Some(plain) => {
                        hapress_wire::packet::write_packet(&mut out, rc.seq, &plain);
                    }
                    None => out.extend_from_slice(raw),
                }
            } else {
                out.extend_from_slice(raw);
            }
            backend.consume(&rc);
            if out.len() >= 64 * 1024 || backend.nothing_buffered() || step != Step::More {
                self.client.write_raw(&out).await.map_err(end("client"))?;
                out.clear();
            }
            match step {
                Step::More => {}
                Step::Done(o) => {
                    topo.backends[idx].counters.observe(started.elapsed());
                    if out.capacity() <= KEPT_RELAY_BUFFER {
                        self.relay = out;
                    }
                    self.answer_gtid = captured.is_some();
                    if captured.is_some() {
                        self.last_gtid = captured;
                        self.replica_reached = None;
                    }
                    return Ok(Some(o));
                }
                Step::LocalInfile => {
                    // The client now sends the file, ending with an empty packet.
                    loop {
                        let fc = self.client.next_chunk().await.map_err(end("client"))?;
                        let raw = self.client.chunk_bytes(&fc);
                        backend.write_raw(raw).await.map_err(end("backend"))?;
                        let empty = fc.first && fc.len == 0;
                        self.client.consume(&fc);
                        if empty {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// A backend failed mid-command: the session ends and the client connection is closed
    /// without an error packet, exactly as when a server goes away mid-statement (shutdown,
    /// crash, `KILL CONNECTION`), so the client library reports its own "Lost connection"
    /// (2013) or "gone away" (2006). The statement is never re-run by the router.
    async fn lost(&mut self, idx: usize, why: &str) -> R<Option<Outcome>> {
        if idx != self.primary.idx && self.primary.lease.conn.gone().await {
            // `KILL CONNECTION` of this session, which reached its replica connection too.
            return Err(SessionEnd("the session was killed".into()));
        }
        self.topo.backends[idx]
            .counters
            .errors
            .fetch_add(1, Ordering::Relaxed);
        let addr = &self.topo.backends[idx].addr;
        eprintln!("hapress router: lost {addr} during a statement ({why}); session closed");
        Err(SessionEnd(format!("lost {addr} during a statement: {why}")))
    }

    /// Session bookkeeping after a command.
    fn after(
        &mut self,
        command: Option<u8>,
        stmt: Option<Statement>,
        target: Target,
        outcome: Option<Outcome>,
        payload: &[u8],
    ) {
        let ok = matches!(
            outcome,
            Some(Outcome::Ok(_)) | Some(Outcome::Prepared { .. }) | None
        );
        if target == Target::Primary {
            if let Some(Outcome::Ok(Some(st))) = outcome {
                self.view.in_transaction =
                    st & status::IN_TRANS != 0 || st & status::AUTOCOMMIT == 0;
            }
        }
        self.view.previous = Some(target);
        if !command.is_some_and(|c| KNOWN_COMMANDS.contains(&c)) {
            // Replication, shutdown, debug...: what they leave behind is unknown.
            self.reusable = false;
        }
        match command {
            Some(cmd::INIT_DB) if ok => {
                self.db = Some(payload[1..].to_vec());
                self.release_replica(true); // the next replica login uses the new database
            }
            Some(cmd::RESET_CONNECTION) if ok => {
                self.replay.clear();
                self.connection_state = false;
                self.release_replica(true);
                self.prepared.clear();
            }
            Some(cmd::STMT_PREPARE) => {
                if let Some(Outcome::Prepared { id, params }) = outcome {
                    let stmt = classify(&payload[1..]);
                    // A prepared `SET` of session state without parameters is replayed like
                    // the text one each time it runs (PDO without emulation prepares every
                    // query); with parameters its values are unknown here: pinned.
                    let replayable = stmt.effect == Effect::Replay && params == 0;
                    if matches!(stmt.effect, Effect::None | Effect::Write) || replayable {
                        let sql = payload[1..].to_vec();
                        self.prepared.insert(
                            id,
                            Prepared {
                                stmt,
                                sql,
                                params,
                                types: None,
                                primary_only: false,
                                on_replica: None,
                                primary_has_types: false,
                            },
                        );
                    } else {
                        self.view.pinned = true;
                    }
                }
            }
            Some(cmd::STMT_SEND_LONG_DATA) => {
                if let Some(p) =
                    stmt::statement_id(payload).and_then(|id| self.prepared.get_mut(&id))
                {
                    p.primary_only = true;
                }
            }
            Some(cmd::SET_OPTION) => {
                self.view.pinned = true;
                self.reusable = false;
            }
            _ => {}
        }
        let Some(st) = stmt else {
            return;
        };
        if target == Target::Primary && st.connection_state {
            self.connection_state = true;
        }
        if !ok {
            return;
        }
        match st.effect {
            Effect::Replay => {
                let text = match command {
                    // An execution of a prepared SET: its text, as prepared.
                    Some(cmd::STMT_EXECUTE) => stmt::statement_id(payload)
                        .and_then(|id| self.prepared.get(&id))
                        .map(|p| p.sql.clone()),
                    _ => Some(payload[1..].to_vec()),
                };
                match text {
                    Some(t) => self.replay.push(t),
                    None => self.view.pinned = true,
                }
                self.release_replica(true);
            }
            Effect::UseDb(name) => {
                self.db = Some(name.into_bytes());
                self.release_replica(true); // the next replica login uses the new database
            }
            Effect::Pin(why) => {
                self.view.pinned = true;
                // A reset keeps the active role: such a connection is not pooled.
                self.reusable &= why != "SET ROLE";
                self.release_replica(true);
            }
            Effect::Write => {
                self.view.wrote = true;
                if target == Target::Primary && !self.answer_gtid {
                    // A write whose GTID the answer did not carry (a sequence advanced by a
                    // SELECT, a result set without DEPRECATE_EOF): no replica can be known
                    // to have it, so the session's reads go to the primary until its next
                    // write with a GTID.
                    self.last_gtid = None;
                }
                if may_change_accounts(&payload[1..]) {
                    self.topo.forget_logins();
                }
            }
            Effect::SetGlobal => self.topo.backends.iter().for_each(|b| b.pool.renew()),
            Effect::None => {}
        }
    }

    /// Makes the replica ready for a read that must see `needed` (the session's last write, or
    /// with `global` the newest write seen by the router): opens it, and if its last probe does
    /// not show the GTID applied yet, waits for it there (bounded). Falls back to the primary.
    async fn replica_ready(&mut self) -> Target {
        if self.ensure_replica().await.is_err() {
            return Target::Primary;
        }
        let needed = match self.config.read_your_writes {
            ReadYourWrites::None => None,
            ReadYourWrites::Session => self.last_gtid.clone().filter(|_| self.view.wrote),
            ReadYourWrites::Global => self.topo.newest_gtid(),
        };
        let Some(needed) = needed else {
            return Target::Replica;
        };
        let Some(b) = self.replica.as_mut() else {
            return Target::Primary;
        };
        if self.replica_reached.as_deref() == Some(needed.as_str())
            || self.topo.has_applied(b.idx, &needed)
        {
            return Target::Replica;
        }
        let ms = self.config.gtid_wait_ms;
        match wait_gtid(&mut b.lease.conn, &needed, ms, self.deprecate_eof).await {
            Ok(true) => {
                self.replica_reached = Some(needed);
                Target::Replica
            }
            Ok(false) => Target::Primary,
            Err(_) => {
                self.release_replica(false);
                Target::Primary
            }
        }
    }

    /// Gives the replica connection up. Its session state is exactly the database and the
    /// replayed statements it was set up with (only autocommit reads run there), so when
    /// `reuse` it goes back to the pool as is, for a session in the same state.
    fn release_replica(&mut self, reuse: bool) {
        if let Some(b) = self.replica.take() {
            let backend = &self.topo.backends[b.idx];
            backend.counters.sessions.fetch_sub(1, Ordering::Relaxed);
            let mut had_statements = false;
            for p in self.prepared.values_mut() {
                had_statements |= p.on_replica.take().is_some();
            }
            if reuse
                && self.reusable
                && backend.pool.enabled()
                && b.lease.key.is_some()
                && b.lease.state.is_some()
            {
                if had_statements {
                    // Prepared statements are state too: reset it (which drops them).
                    pool::release(&backend.pool, b.lease);
                } else {
                    backend.pool.put(b.lease);
                }
            }
        }
    }

    /// Moves a session whose primary was replaced to the new one, between statements: a new
    /// login there as the same user, into the same database, with the same replayed session
    /// state (as a replica connection is set up). Only a session with nothing else on the old
    /// connection (no transaction, no pinned state, no prepared statements, no user variables
    /// or named locks) and a credential the router can log in with moves; false: it could not.
    async fn move_to_primary(&mut self) -> bool {
        let Some(new) = self.topo.primary() else {
            return false;
        };
        if self.view.pinned
            || self.view.in_transaction
            || self.connection_state
            || !self.prepared.is_empty()
        {
            return false;
        }
        let Some(cred) = self.credential.clone() else {
            return false;
        };
        let backend = &self.topo.backends[new];
        let pool = backend.pool.clone();
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let permit = pool.permit();
        pool.opened.fetch_add(1, Ordering::Relaxed);
        let mut tpl = backend_hello(&self.hello, &self.primary.lease.greeting);
        tpl.database.clone_from(&self.db);
        let opened = async {
            let mut conn = Conn::connect(&backend.addr, timeout).await.ok()?;
            let g = login(&mut conn, &self.hello.user, &cred, &tpl).await.ok()?;
            let mut l = Lease::new(conn, g, permit, &pool);
            l.key = Some(Key::new(&tpl, &l.greeting));
            let setup: Vec<Vec<u8>> = self
                .replay
                .iter()
                .map(|stmt| [&[cmd::QUERY][..], stmt].concat())
                .collect();
            all_ok(&mut l.conn, &setup).await.ok()?.then_some(l)
        };
        let Ok(Some(lease)) = tokio::time::timeout(timeout, opened).await else {
            backend.counters.errors.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let old = std::mem::replace(&mut self.primary, Backend { idx: new, lease });
        self.topo.backends[old.idx]
            .counters
            .sessions
            .fetch_sub(1, Ordering::Relaxed);
        backend.counters.sessions.fetch_add(1, Ordering::Relaxed);
        pool::close(old.lease);
        true
    }

    /// Opens (or keeps) a replica connection in the session's state (database, replayed
    /// statements): a pooled one already in that state, else a pooled one reset and set up,
    /// else a new login; the setup commands are pipelined (one write, one wait).
    async fn ensure_replica(&mut self) -> Result<(), ()> {
        if let Some(b) = &self.replica {
            if self.topo.replica_fit(b.idx) {
                return Ok(());
            }
            self.release_replica(true);
        }
        let idx = self.topo.pick_replica().ok_or(())?;
        let cred = self.credential.clone().ok_or(())?;
        let db = self.db.clone().ok_or(())?; // (reads of a session without a database stay on the primary)
        let state = ReplicaState {
            db: db.clone(),
            replay: self.replay.clone(),
        };
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let backend = &self.topo.backends[idx];
        let pool = backend.pool.clone();
        let key = self.primary.lease.key.clone().ok_or(())?;
        let mut setup: Vec<Vec<u8>> = Vec::new();
        let replays = |setup: &mut Vec<Vec<u8>>| {
            for stmt in &self.replay {
                setup.push([&[cmd::QUERY][..], stmt].concat());
            }
        };
        let (mut lease, reused) = if let Some(l) = live(|| pool.take_in_state(&key, &state)).await {
            (l, true)
        } else if let Some(l) = match self.topo.resettable(idx) {
            true => live(|| pool.take(&key)).await,
            false => None,
        } {
            setup.push(vec![cmd::RESET_CONNECTION]);
            setup.push([&[cmd::INIT_DB][..], &db].concat());
            replays(&mut setup);
            (l, true)
        } else {
            let permit = pool.permit();
            pool.opened.fetch_add(1, Ordering::Relaxed);
            let mut tpl = backend_hello(&self.hello, &self.primary.lease.greeting);
            tpl.database = Some(db.clone());
            let login = async {
                let mut conn = Conn::connect(&backend.addr, timeout).await.ok()?;
                // Replica logins never negotiate DEPRECATE_EOF differently from the client's.
                let g = login(&mut conn, &self.hello.user, &cred, &tpl).await.ok()?;
                let mut l = Lease::new(conn, g, permit, &pool);
                l.key = Some(Key::new(&tpl, &l.greeting));
                Some(l)
            };
            match tokio::time::timeout(timeout, login).await {
                Ok(Some(l)) => {
                    replays(&mut setup);
                    (l, false)
                }
                _ => {
                    backend.counters.errors.fetch_add(1, Ordering::Relaxed);
                    // This session stays on the primary (a login that fails would change
                    // behaviour).
                    self.credential = None;
                    return Err(());
                }
            }
        };
        match tokio::time::timeout(timeout, all_ok(&mut lease.conn, &setup)).await {
            Ok(Ok(true)) => {
                if reused {
                    pool.reused.fetch_add(1, Ordering::Relaxed);
                }
                lease.state = Some(state);
                backend.counters.sessions.fetch_add(1, Ordering::Relaxed);
                self.replica = Some(Backend { idx, lease });
                Ok(())
            }
            _ => {
                backend.counters.errors.fetch_add(1, Ordering::Relaxed);
                // A replay that fails would change behaviour: this session stays on the
                // primary.
                self.credential = None;
                Err(())
            }
        }
    }

    /// `COM_CHANGE_USER`: relayed to the primary with its auth exchange; afterwards the session
    /// stays on the primary (its replica login would be for the old user).
    async fn change_user(&mut self, c: hapress_wire::packet::Chunk) -> R<()> {
        self.release_replica(true);
        self.credential = None;
        self.view.pinned = true;
        self.reusable = false;
        self.prepared.clear();
        let raw = self.client.chunk_bytes(&c).to_vec();
        self.client.consume(&c);
        let conn = &mut self.primary.lease.conn;
        conn.write_raw(&raw).await.map_err(end("primary"))?;
        // A client greeted with the router's nonce (a pooled connection) answers MariaDB's
        // auth switch with its old scramble (libmariadb does): scrambled again for the server.
        let rescramble = (self.client_nonce != self.primary.lease.greeting.nonce).then(|| {
            // The user it changes to: the packet's first, NUL-terminated field.
            let user = raw
                .get(HEADER + 1..)
                .and_then(|b| b.split(|&c| c == 0).next())
                .unwrap_or_default();
            Rescramble {
                client_nonce: self.client_nonce.clone(),
                stage2s: self.topo.stage2s(user),
            }
        });
        let auth = Auth {
            plugin: String::new(),
            nonce: Vec::new(),
            token: Vec::new(),
        };
        relay_auth(
            &mut self.client,
            conn,
            auth,
            0,
            self.track_added,
            rescramble.as_ref(),
        )
        .await?;
        Box::pin(self.command_loop()).await
    }
}

/// A write that may create, drop or change an account or its password (`CREATE USER`,
/// `GRANT`, `SET PASSWORD`, `FLUSH PRIVILEGES`, any write to the `mysql` schema...).
fn may_change_accounts(sql: &[u8]) -> bool {
    let head = &sql[..sql.len().min(512)];
    let lower = head.to_ascii_lowercase();
    [
        &b"user"[..],
        b"grant",
        b"revoke",
        b"password",
        b"privileges",
        b"role",
        b"mysql",
    ]
    .iter()
    .any(|w| lower.windows(w.len()).any(|x| x == *w))
}

/// Sends `commands` (each answered by one OK or ERR: `COM_INIT_DB`, state replay) in one
/// write and reads their answers; true when all are OK.
async fn all_ok(conn: &mut Conn, commands: &[Vec<u8>]) -> std::io::Result<bool> {
    if commands.is_empty() {
        return Ok(true);
    }
    let mut out = Vec::with_capacity(commands.iter().map(|c| c.len() + HEADER).sum());
    for c in commands {
        hapress_wire::packet::write_packet(&mut out, 0, c);
    }
    conn.write_raw(&out).await?;
    let mut ok = true;
    for _ in commands {
        let (_, p) = conn.read_packet().await?;
        ok &= p.first() == Some(&0x00);
    }
    Ok(ok)
}

/// `COM_STMT_PREPARE` on a connection of the router's own: the statement id, or `None` when
/// the server answered with an error.
async fn prepare(
    conn: &mut Conn,
    command: &[u8],
    deprecate_eof: bool,
) -> std::io::Result<Option<u32>> {
    conn.write_packet(0, command).await?;
    let mut t = ResponseTracker::new(command, deprecate_eof)
        .ok_or_else(|| std::io::Error::other("no tracker"))?;
    loop {
        let (_, p) = conn.read_packet().await?;
        match t.feed(&p, true).map_err(std::io::Error::other)? {
            Step::More => {}
            Step::Done(Outcome::Prepared { id, .. }) => return Ok(Some(id)),
            Step::Done(_) => return Ok(None),
            Step::LocalInfile => return Err(std::io::Error::other("LOCAL INFILE in a prepare")),
        }
    }
}

/// `SELECT MASTER_GTID_WAIT(gtid, timeout)` on a replica connection: true when the replica
/// reached `gtid` in time (0; -1 is a timeout, NULL or an error a failure).
async fn wait_gtid(
    conn: &mut Conn,
    gtid: &str,
    ms: u64,
    deprecate_eof: bool,
) -> std::io::Result<bool> {
    let sql = format!(
        "SELECT MASTER_GTID_WAIT('{}', {}.{:03}) AS w",
        gtid.replace(['\'', '\\'], ""),
        ms / 1000,
        ms % 1000
    );
    let rows = query(conn, &sql, deprecate_eof).await?;
    Ok(rows.is_ok_and(|r| r.get(0, "w") == Some("0")))
}

/// `HAPRESS_ROUTER_TRACE=1`: log every command, its target and its outcome to stderr (the
/// statement's first 100 bytes: never on in production, statements can hold data).
pub(crate) fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HAPRESS_ROUTER_TRACE").is_some_and(|v| v == "1"))
}

/// ERR 1290 (`ER_OPTION_PREVENTS_STATEMENT`) from a server running with `--read-only`.
fn read_only_refusal(payload: &[u8]) -> bool {
    hapress_wire::response::parse_err(payload)
        .is_ok_and(|e| e.code == 1290 && e.message.contains("read-only"))
}
