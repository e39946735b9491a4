//! One client session: the handshake relayed to the primary (so the client sees the primary's
//! greeting, thread id and exact auth errors), then the command loop, which routes each
//! statement with [`crate::route::decide`] and forwards the answer chunk by chunk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hapress_wire::consts::{cap, cmd, errcode, status};
use hapress_wire::handshake::{self, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::packet::HEADER;
use hapress_wire::response::{
    ok_last_gtid, ok_without_session_state, Outcome, ResponseTracker, Step,
};

use crate::classify::{classify, Effect, Statement};
use crate::config::Config;
use crate::conn::{login, query, Conn, Credential};
use crate::route::{decide, ReadYourWrites, SessionView, Target};
use crate::topology::Topology;

/// A backend connection held by a session, with the backend's index.
struct Backend {
    idx: usize,
    conn: Conn,
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
    /// How to log in to a replica as this user (`None`: reads stay on the primary).
    credential: Option<Credential>,
    deprecate_eof: bool,
    view: SessionView,
    /// Statements replayed on every new replica connection (`SET NAMES`, `SET SESSION ...`).
    replay: Vec<Vec<u8>>,
    /// Current database.
    db: Option<Vec<u8>>,
    /// The router turned `CLIENT_SESSION_TRACK` on for the primary connection (to read each
    /// write's GTID) although the client did not ask for it: OK packets are re-encoded.
    track_added: bool,
    /// GTID of the session's last write, from the primary's OK packet.
    last_gtid: Option<String>,
    /// The GTID position the replica connection is known to have reached.
    replica_reached: Option<String>,
}

/// A client must finish logging in within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted client until it quits or fails.
pub async fn run(topo: Arc<Topology>, config: Arc<Config>, client: Conn) -> R<()> {
    let topo2 = topo.clone();
    let Ok(login) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(topo, config, client)).await
    else {
        return Err(SessionEnd("handshake timed out".into()));
    };
    let Some(mut s) = login? else {
        return Ok(());
    };
    let pidx = s.primary.idx;
    let r = s.command_loop().await;
    topo2.backends[pidx]
        .counters
        .sessions
        .fetch_sub(1, Ordering::Relaxed);
    if let Some(b) = &s.replica {
        topo2.backends[b.idx]
            .counters
            .sessions
            .fetch_sub(1, Ordering::Relaxed);
    }
    r
}

/// The connection phase: greeting, handshake response and auth exchange relayed with the
/// primary. `None` when the login failed (the client already has MariaDB's ERR).
async fn handshake(
    topo: Arc<Topology>,
    config: Arc<Config>,
    mut client: Conn,
) -> R<Option<Session>> {
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let Some(pidx) = topo.primary() else {
        topo.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client
            .send_err(
                0,
                2003,
                "HY000",
                "hapress router: no primary database server is available",
            )
            .await;
        return Err(SessionEnd("no primary".into()));
    };
    let addr = topo.backends[pidx].addr.clone();
    let mut pconn = match Conn::connect(&addr, timeout).await {
        Ok(c) => c,
        Err(e) => {
            topo.backends[pidx]
                .counters
                .errors
                .fetch_add(1, Ordering::Relaxed);
            let msg = format!("hapress router: cannot reach the primary ({addr}): {e}");
            let _ = client.send_err(0, 2003, "HY000", &msg).await;
            return Err(SessionEnd(msg));
        }
    };
    // Greeting: the primary's, minus TLS and compression (the router speaks neither).
    let (gseq, g) = pconn.read_packet().await.map_err(end("primary greeting"))?;
    if g.first() == Some(&0xff) {
        client.write_packet(gseq, &g).await.map_err(end("client"))?;
        return Err(SessionEnd("primary refused the connection".into()));
    }
    let mut greeting = Greeting::parse(&g).map_err(end("primary greeting"))?;
    greeting.capabilities &= !(cap::SSL | 1 << 5);
    client
        .write_packet(gseq, &greeting.encode())
        .await
        .map_err(end("client"))?;
    // Handshake response: relayed as is.
    let (hseq, h) = client
        .read_packet()
        .await
        .map_err(end("client handshake"))?;
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
    let hello = HandshakeResponse::parse(&h).map_err(end("client handshake"))?;
    // Ask the primary for session-state tracking (each write's GTID comes back in its OK
    // packet); the capability bits are not part of the auth scramble.
    let mut h = h;
    let track_added = greeting.capabilities & cap::SESSION_TRACK != 0
        && hello.capabilities & cap::SESSION_TRACK == 0
        && h.len() >= 4;
    if track_added {
        let caps = hello.capabilities | cap::SESSION_TRACK;
        h[..4].copy_from_slice(&caps.to_le_bytes());
    }
    pconn.write_packet(hseq, &h).await.map_err(end("primary"))?;
    // Auth exchange, relayed until OK or ERR; remember the native-password token and nonce.
    let mut plugin = hello
        .auth_plugin
        .clone()
        .unwrap_or_else(|| greeting.auth_plugin.clone());
    let mut nonce = greeting.nonce.clone();
    let mut token = hello.auth.clone();
    loop {
        let (s, p) = pconn.read_packet().await.map_err(end("primary auth"))?;
        let shown = match p.first() {
            Some(0x00) if track_added => ok_without_session_state(&p).unwrap_or_else(|| p.clone()),
            _ => p.clone(),
        };
        client
            .write_packet(s, &shown)
            .await
            .map_err(end("client"))?;
        match p.first() {
            Some(0x00) => break,
            Some(0xff) => return Ok(None), // wrong password etc.: the client got MariaDB's own ERR
            Some(0xfe) => {
                let sw = handshake::AuthSwitch::parse(&p).map_err(end("auth switch"))?;
                plugin = sw.plugin;
                nonce = sw.data;
                let (cs, cp) = client.read_packet().await.map_err(end("client auth"))?;
                token.clone_from(&cp);
                pconn.write_packet(cs, &cp).await.map_err(end("primary"))?;
            }
            _ => {
                let (cs, cp) = client.read_packet().await.map_err(end("client auth"))?;
                pconn.write_packet(cs, &cp).await.map_err(end("primary"))?;
            }
        }
    }
    let credential = if plugin != NATIVE_PASSWORD {
        None
    } else if token.is_empty() {
        Some(Credential::Empty)
    } else {
        topo.stage2s(&hello.user)
            .iter()
            .find_map(|s2| handshake::native_recover_stage1(&token, &nonce, s2))
            .map(Credential::Stage1)
    };
    let deprecate_eof = hello.capabilities & greeting.capabilities & cap::DEPRECATE_EOF != 0;
    topo.backends[pidx]
        .counters
        .sessions
        .fetch_add(1, Ordering::Relaxed);
    let s = Session {
        db: hello.database.clone(),
        topo: topo.clone(),
        config,
        client,
        primary: Backend {
            idx: pidx,
            conn: pconn,
        },
        replica: None,
        hello,
        credential,
        deprecate_eof,
        view: SessionView::default(),
        replay: Vec::new(),
        track_added,
        last_gtid: None,
        replica_reached: None,
    };
    Ok(Some(s))
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
            // The statement text of COM_QUERY (the first chunk: enough to classify; a > 16 MB
            // statement is classified by its first 16 MB).
            let stmt = (command == Some(cmd::QUERY)).then(|| classify(&bytes[HEADER + 1..]));
            let target = self.target(stmt.as_ref());
            match command {
                Some(cmd::QUIT) => {
                    let raw = bytes.to_vec();
                    let _ = self.primary.conn.write_raw(&raw).await;
                    if let Some(r) = &mut self.replica {
                        let _ = r.conn.write_raw(&raw).await;
                    }
                    return Ok(());
                }
                Some(cmd::CHANGE_USER) => return self.change_user(c).await,
                _ => {}
            }
            if target == Target::Primary && self.primary_moved() {
                // Never send to a server that stopped being the primary: close, so the client
                // reconnects (to the new primary) and re-runs what it had not sent.
                return Err(SessionEnd(
                    "the primary changed; closing the session".into(),
                ));
            }
            let first_payload = bytes[HEADER..].to_vec();
            let target = if target == Target::Replica {
                self.replica_ready().await
            } else {
                target
            };
            if trace_enabled() {
                let text = String::from_utf8_lossy(&first_payload[1..first_payload.len().min(100)]);
                eprintln!(
                    "hapress router: trace: cmd {:#04x} -> {target:?}: {text}",
                    first_payload[0]
                );
            }
            let outcome = self.forward(c, target, &first_payload).await?;
            if trace_enabled() {
                eprintln!("hapress router: trace: done {outcome:?}");
            }
            self.after(command, stmt, target, outcome, &first_payload);
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

    /// Sends the command (all its chunks) to `target` and relays the answer.
    async fn forward(
        &mut self,
        first: hapress_wire::packet::Chunk,
        target: Target,
        payload: &[u8],
    ) -> R<Option<Outcome>> {
        let mut target = target;
        if target == Target::Replica && self.ensure_replica().await.is_err() {
            target = Target::Primary;
        }
        let topo = self.topo.clone();
        let (idx, backend) = match target {
            Target::Primary => (self.primary.idx, &mut self.primary.conn),
            Target::Replica => {
                let b = self
                    .replica
                    .as_mut()
                    .ok_or_else(|| SessionEnd("replica vanished".into()))?;
                (b.idx, &mut b.conn)
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
        let mut c = first;
        loop {
            let raw = self.client.chunk_bytes(&c);
            if let Err(e) = backend.write_raw(raw).await {
                self.client.consume(&c);
                return self
                    .lost(idx, &format!("sending to {}: {e}", topo.backends[idx].addr))
                    .await;
            }
            self.client.consume(&c);
            if c.last {
                break;
            }
            c = self.client.next_chunk().await.map_err(end("client"))?;
        }
        let Some(mut tracker) = ResponseTracker::new(payload, self.deprecate_eof) else {
            return Ok(None);
        };
        // Relay the answer; flush whenever the backend has nothing more buffered.
        let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut captured: Option<String> = None;
        loop {
            let rc = match backend.next_chunk().await {
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
            let ok_packet = rc.first && rc.last && tracker.last_was_ok();
            if ok_packet && target == Target::Primary {
                let payload = &raw[HEADER..];
                if let Some(g) = ok_last_gtid(payload) {
                    topo.note_gtid(&g);
                    captured = Some(g);
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

    /// A backend failed mid-command: the client gets error 2013 and the session ends, so nothing
    /// is ever silently re-run.
    async fn lost(&mut self, idx: usize, why: &str) -> R<Option<Outcome>> {
        self.topo.backends[idx]
            .counters
            .errors
            .fetch_add(1, Ordering::Relaxed);
        let msg = format!("Lost connection to server during query (hapress router: {why})");
        let _ = self
            .client
            .send_err(1, errcode::CR_SERVER_LOST, "HY000", &msg)
            .await;
        Err(SessionEnd(msg))
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
        match command {
            Some(cmd::INIT_DB) if ok => {
                self.db = Some(payload[1..].to_vec());
                self.drop_replica(); // the next replica login uses the new database
            }
            Some(cmd::RESET_CONNECTION) if ok => {
                self.replay.clear();
                self.drop_replica();
            }
            Some(cmd::STMT_PREPARE) | Some(cmd::SET_OPTION) => self.view.pinned = true,
            _ => {}
        }
        let Some(st) = stmt else {
            return;
        };
        if !ok {
            return;
        }
        match st.effect {
            Effect::Replay => {
                self.replay.push(payload[1..].to_vec());
                self.drop_replica();
            }
            Effect::UseDb(name) => {
                self.db = Some(name.into_bytes());
                self.drop_replica(); // the next replica login uses the new database
            }
            Effect::Pin(_) => {
                self.view.pinned = true;
                self.drop_replica();
            }
            Effect::Write => self.view.wrote = true,
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
        match wait_gtid(&mut b.conn, &needed, ms, self.deprecate_eof).await {
            Ok(true) => {
                self.replica_reached = Some(needed);
                Target::Replica
            }
            Ok(false) => Target::Primary,
            Err(_) => {
                self.drop_replica();
                Target::Primary
            }
        }
    }

    fn drop_replica(&mut self) {
        if let Some(b) = self.replica.take() {
            self.topo.backends[b.idx]
                .counters
                .sessions
                .fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Opens (or keeps) a replica connection with the session's state replayed.
    async fn ensure_replica(&mut self) -> Result<(), ()> {
        if let Some(b) = &self.replica {
            if self.topo.replica_fit(b.idx) {
                return Ok(());
            }
            self.drop_replica();
        }
        let idx = self.topo.pick_replica().ok_or(())?;
        let cred = self.credential.clone().ok_or(())?;
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let addr = self.topo.backends[idx].addr.clone();
        let attempt = async {
            let mut conn = Conn::connect(&addr, timeout).await.map_err(|_| ())?;
            let mut tpl = self.hello.clone();
            tpl.database.clone_from(&self.db);
            if tpl.database.is_none() {
                tpl.capabilities &= !cap::CONNECT_WITH_DB;
            }
            // Replica logins never negotiate DEPRECATE_EOF differently from the client's.
            login(&mut conn, &self.hello.user, &cred, &tpl)
                .await
                .map_err(|_| ())?;
            for stmt in &self.replay {
                let sql = String::from_utf8_lossy(stmt).into_owned();
                match exec(&mut conn, &sql).await {
                    Ok(true) => {}
                    _ => return Err(()),
                }
            }
            Ok(conn)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(conn)) => {
                self.topo.backends[idx]
                    .counters
                    .sessions
                    .fetch_add(1, Ordering::Relaxed);
                self.replica = Some(Backend { idx, conn });
                Ok(())
            }
            _ => {
                self.topo.backends[idx]
                    .counters
                    .errors
                    .fetch_add(1, Ordering::Relaxed);
                // This session stays on the primary (a replay or login that fails would change
                // behaviour).
                self.credential = None;
                Err(())
            }
        }
    }

    /// `COM_CHANGE_USER`: relayed to the primary with its auth exchange; afterwards the session
    /// stays on the primary (its replica login would be for the old user).
    async fn change_user(&mut self, c: hapress_wire::packet::Chunk) -> R<()> {
        self.drop_replica();
        self.credential = None;
        self.view.pinned = true;
        let raw = self.client.chunk_bytes(&c).to_vec();
        self.client.consume(&c);
        self.primary
            .conn
            .write_raw(&raw)
            .await
            .map_err(end("primary"))?;
        loop {
            let (s, p) = self
                .primary
                .conn
                .read_packet()
                .await
                .map_err(end("primary"))?;
            let shown = match p.first() {
                Some(0x00) if self.track_added => {
                    ok_without_session_state(&p).unwrap_or_else(|| p.clone())
                }
                _ => p.clone(),
            };
            self.client
                .write_packet(s, &shown)
                .await
                .map_err(end("client"))?;
            match p.first() {
                Some(0x00) => break,
                Some(0xff) => break,
                _ => {
                    let (cs, cp) = self.client.read_packet().await.map_err(end("client"))?;
                    self.primary
                        .conn
                        .write_packet(cs, &cp)
                        .await
                        .map_err(end("primary"))?;
                }
            }
        }
        Box::pin(self.command_loop()).await
    }
}

/// Runs a statement that answers with OK or ERR (state replay); true on OK.
async fn exec(conn: &mut Conn, sql: &str) -> std::io::Result<bool> {
    conn.write_packet(0, &[&[cmd::QUERY][..], sql.as_bytes()].concat())
        .await?;
    let (_, p) = conn.read_packet().await?;
    Ok(p.first() == Some(&0x00))
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
fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HAPRESS_ROUTER_TRACE").is_some_and(|v| v == "1"))
}
