//! One client session: the handshake (on a pooled connection to the primary, checked by the
//! router; else relayed, so the client sees MariaDB's own greeting and auth errors; either
//! way the thread id the client is given is its primary connection's), then the command loop,
//! which decodes each command once ([`Command`]), plans it with [`crate::route::decide`],
//! executes the plan and forwards the answer chunk by chunk. At the end the backend
//! connections are reset and pooled.
//!
//! # Layout
//! - this file: the session's state and the command loop (plan, execute, fall back);
//! - [`login`]: the connection phase; [`connect`]: backend connections for a login;
//!   [`auth`]: relayed auth exchanges and the credential kept to log in elsewhere;
//! - [`relay`]: sending a command and relaying its answer; [`bookkeeping`]: what an answered
//!   command leaves in the session; [`prepared`]: prepared statements on two servers;
//! - [`replica`]: the replica connection and moving to a new primary; [`elsewhere`]: `KILL`
//!   and `SET GLOBAL` on other servers;
//! - [`error`]: why a session ended ([`SessionError`]: the side, retry safety).
//!
//! Unit tests run sessions against scripted fake backends (`tests`); the MariaDB tests of
//! the `hapress` crate are the integration layer.

mod auth;
mod bookkeeping;
mod connect;
mod elsewhere;
mod error;
mod login;
mod prepared;
mod relay;
mod replica;
#[cfg(test)]
mod tests;

pub use self::error::{SessionError, Side};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hapress_wire::command::Command;
use hapress_wire::consts::{cap, status};
use hapress_wire::handshake::HandshakeResponse;
use hapress_wire::packet::{Chunk, HEADER};
use hapress_wire::response::Outcome;

use crate::classify::{classify, Effect, Statement};
use crate::config::Config;
use crate::conn::{Conn, Credential};
use crate::pool::{self, Lease};
use crate::route::{decide, movable, Plan, SessionView, Target};
use crate::topology::Topology;

use self::elsewhere::kill_on_replica;
use self::login::handshake;

/// A backend connection held by a session, with the backend's index.
pub(super) struct Backend {
    idx: usize,
    lease: Lease,
}

type R<T> = Result<T, SessionError>;

pub(super) struct Session {
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
    /// `db` is exactly the primary connection's database: false after a statement that may
    /// change it unseen (a multi-statement query, a `DROP`).
    db_exact: bool,
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
    /// The last answer carried the GTID of a write.
    answer_gtid: bool,
    /// The primary connection's database as the last answer's session state reported it
    /// (`session_track_schema`), when it reported one; taken by the bookkeeping.
    schema_seen: Option<Vec<u8>>,
    /// Binary-protocol prepared statements, by the id the client knows (the primary's).
    prepared: prepared::Statements,
    /// How the router logs in to another server as this session's user (to kill a statement
    /// of it on a replica, to mirror a `SET GLOBAL`); made on first use.
    login_elsewhere: Option<Arc<(Vec<u8>, Credential, HandshakeResponse)>>,
    /// The buffer answers are relayed through, kept between statements.
    relay: Vec<u8>,
    /// The current command's first chunk (its payload), kept for the bookkeeping after its
    /// answer while the client's buffer moves on; the buffer is reused between commands.
    command: Vec<u8>,
    /// The lasting server status flags of the last OK (autocommit, transaction,
    /// `NO_BACKSLASH_ESCAPES`): what an OK the router gives itself must say.
    status: u16,
}

/// Status flags that last beyond one statement.
const LASTING_STATUS: u16 = status::IN_TRANS
    | status::AUTOCOMMIT
    | status::NO_BACKSLASH_ESCAPES
    | status::IN_TRANS_READONLY;

/// The largest command buffer a session keeps between commands.
const KEPT_COMMAND_BUFFER: usize = 64 * 1024;

/// Whether the session goes on after a command.
enum Flow {
    Next,
    Quit,
}

/// A client must finish logging in within this time.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client must answer the greeting within this time.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one accepted client until it quits or fails.
pub async fn run(topo: Arc<Topology>, config: Arc<Config>, client: Conn) -> R<()> {
    // A login waiting on a primary that another server replaced (it hung) ends: the client
    // connects again, to the new one.
    let primary = topo.primary();
    let login = tokio::select! {
        login = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(topo.clone(), config, client)) => login,
        () = topo.demoted(primary) => {
            return Err(SessionError::router("the primary changed during the login"));
        }
    };
    let Ok(login) = login else {
        return Err(SessionError::client("handshake timed out"));
    };
    let Some(mut s) = login? else {
        return Ok(());
    };
    let r = s.command_loop().await;
    // Ended between commands (quit or hang-up): the backend connections can be reset and
    // reused.
    let reuse = r.is_ok() && s.reusable && topo.resettable(s.primary.idx);
    s.release_replica(reuse);
    let mut p = s.primary;
    // Its database, when the session can tell (the pool asks the server otherwise).
    p.lease.db = s.db_exact.then(|| s.db.unwrap_or_default());
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

impl Session {
    async fn command_loop(&mut self) -> R<()> {
        loop {
            let Ok(c) = self.client.next_chunk().await else {
                return Ok(()); // the client went away
            };
            if !c.first {
                return Err(SessionError::client("unexpected continuation chunk"));
            }
            let mut payload = std::mem::take(&mut self.command);
            payload.clear();
            payload.extend_from_slice(&self.client.chunk_bytes(&c)[HEADER..]);
            let flow = self.one_command(c, &payload).await;
            if payload.capacity() <= KEPT_COMMAND_BUFFER {
                self.command = payload;
            }
            if let Flow::Quit = flow? {
                return Ok(());
            }
        }
    }

    /// Plans, runs and books one command whose first chunk `c` (payload `payload`, a > 16 MB
    /// command's first 16 MB) the client sent.
    async fn one_command(&mut self, c: Chunk, payload: &[u8]) -> R<Flow> {
        // Bytes the router cannot decode go to the primary as they are, which answers them.
        let command = Command::parse(payload)
            .unwrap_or_else(|_| Command::Other(payload.first().copied().unwrap_or(0)));
        // The statement: the text of COM_QUERY (its first chunk: enough to classify), or the
        // prepared statement COM_STMT_EXECUTE runs; and whether a replica may run it.
        let (stmt, routable) = match command {
            Command::Query(sql) => (Some(classify(sql)), true),
            Command::StmtExecute { id, .. } => self.executing(id, payload, c.last),
            _ => (None, false),
        };
        let plan = match &stmt {
            Some(st) if routable => {
                decide(st, &self.view_for_routing(), self.config.read_your_writes)
            }
            _ => Plan::Primary,
        };
        if let (Command::Query(sql), Some(st)) = (command, &stmt) {
            if c.last && self.may_hold_back(st, sql) {
                // Answered here, sent with the primary's next command (if any): a session
                // that then only reads from replicas costs the primary nothing.
                self.client.consume(&c);
                self.primary.lease.conn.defer(payload);
                self.client
                    .write_packet(1, &hapress_wire::response::ok_packet(self.status))
                    .await
                    .map_err(error::on_client("relay"))?;
                self.client
                    .flush()
                    .await
                    .map_err(error::on_client("relay"))?;
                let ok = Some(Outcome::Ok(Some(self.status)));
                self.after(&command, stmt, Target::Primary, ok);
                return Ok(Flow::Next);
            }
        }
        match command {
            Command::Quit => return Ok(Flow::Quit),
            Command::ChangeUser { user } => {
                self.change_user(c, user).await?;
                return Ok(Flow::Next);
            }
            Command::StmtClose(id) => self.close_on_replica(id).await,
            _ => {}
        }
        // The plan's fallbacks: a replica that cannot serve the read sends it to the primary.
        let mut target = match plan {
            Plan::Replica { wait_for } => self.replica_ready(wait_for).await,
            Plan::Primary => Target::Primary,
        };
        // A prepared statement runs on the replica under the id it has there; on the primary
        // with the parameter types it may lack.
        let mut readdressed = None;
        if let (Target::Replica, Command::StmtExecute { id, .. }) = (target, command) {
            readdressed = self.readdress(id, payload).await;
            if readdressed.is_none() {
                target = Target::Primary;
            }
        }
        if let (Target::Primary, Command::StmtExecute { id, .. }) = (target, command) {
            readdressed = self.types_for_primary(id, payload, c.last);
        }
        // Counted from before the check of a planned switchover's hold until the answer,
        // so the switchover fences the old primary only once nothing is on its way there.
        let _in_flight = (target == Target::Primary).then(|| self.topo.to_primary());
        if target == Target::Primary {
            self.follow_primary().await?;
        }
        if target == Target::Replica && self.primary.lease.conn.gone().await {
            // The session's own connection was killed (`KILL <its id>`): end the session
            // as MariaDB would, rather than answer from a replica.
            return Err(SessionError::router("the primary connection was closed"));
        }
        if trace_enabled() {
            let text =
                String::from_utf8_lossy(payload.get(1..payload.len().min(100)).unwrap_or(&[]));
            eprintln!(
                "hapress router: trace: cmd {:#04x} -> {target:?}: {text}",
                command.code()
            );
        }
        if let Some(Statement {
            effect: Effect::SetGlobal { mirrored: true },
            ..
        }) = &stmt
        {
            // (A prepared one is kept only without parameters: its text runs as it is.)
            if let Some(text) = self.statement_text(&command).map(<[u8]>::to_vec) {
                self.mirror_global(&text).await;
            }
        }
        // While a statement runs on a replica, a KILL of this session must reach it there.
        let on_replica = target == Target::Replica && self.note_on_replica();
        let whole = c.last;
        let outcome = self
            .forward(Some(c), target, readdressed.as_deref(), payload)
            .await;
        if on_replica {
            self.topo
                .running_on_replica(self.primary.lease.greeting.connection_id, None);
        }
        let mut outcome = outcome?;
        let mut stmt = stmt;
        // Every command a replica runs has an answer: none relayed means the replica refused
        // it as read-only (see `relay_answer`). The plan's last fallback: the primary runs it,
        // as a write (later reads of the session must see what it did).
        if target == Target::Replica && outcome.is_none() {
            debug_assert!(whole, "a replica runs only whole commands");
            let again = match command {
                Command::StmtExecute { id, .. } => self.types_for_primary(id, payload, whole),
                _ => None,
            };
            let _in_flight = self.topo.to_primary();
            self.follow_primary().await?;
            target = Target::Primary;
            let text = self.statement_text(&command).map(<[u8]>::to_vec);
            if let (Some(st), Some(text)) = (stmt.as_mut(), text) {
                st.writes_after_all(&text);
            }
            outcome = self
                .forward(None, target, again.as_deref(), payload)
                .await?;
        }
        if trace_enabled() {
            eprintln!("hapress router: trace: done {outcome:?}");
        }
        // A `KILL` (text, prepared or `COM_PROCESS_KILL`) also reaches the statement its
        // target session runs on a replica.
        let killed = match (command, &outcome, &stmt) {
            (Command::Query(_) | Command::StmtExecute { .. }, Some(Outcome::Ok(_)), Some(st)) => {
                st.kill
            }
            (Command::Kill(id), Some(Outcome::Ok(_)), _) => Some((id, false)),
            _ => None,
        };
        self.after(&command, stmt, target, outcome);
        if let Some((id, query_only)) = killed {
            kill_on_replica(&self.topo, &self.config, id, query_only).await;
        }
        Ok(Flow::Next)
    }

    /// Before a command goes to the primary: waits for a planned switchover's hold to pass,
    /// and if another server has become the primary, moves the session there; a session that
    /// cannot move ([`movable`]) is closed, so the client reconnects (to the new primary) and
    /// re-runs what it had not sent. Nothing is sent to a server that stopped being the primary.
    async fn follow_primary(&mut self) -> R<()> {
        self.topo.hold_passed().await;
        if self.primary_moved() && !(movable(&self.view_now()) && self.move_to_primary().await) {
            return Err(SessionError::router(
                "the primary changed; closing the session",
            ));
        }
        Ok(())
    }

    /// Whether the session `SET` `st` (text `sql`) may be answered by the router and held
    /// back: its outcome is certain ([`crate::certain`]), the client reads no session-state
    /// changes from OKs, and the session is in autocommit mode outside a transaction with no
    /// other lasting status flag (so the OK the server would send is known exactly).
    fn may_hold_back(&self, st: &Statement, sql: &[u8]) -> bool {
        st.effect == Effect::Replay
            && self.hello.capabilities & cap::SESSION_TRACK == 0
            && !self.view.in_transaction
            && self.status == status::AUTOCOMMIT
            && crate::certain::certain_set(sql)
    }

    /// The session's state as [`crate::route`] sees it, without the replica's availability.
    fn view_now(&self) -> SessionView {
        SessionView {
            gtid_known: self.last_gtid.is_some(),
            prepared_statements: !self.prepared.is_empty(),
            credential: self.credential.is_some(),
            ..self.view
        }
    }

    /// [`Self::view_now`] with whether a replica can serve this session now.
    fn view_for_routing(&self) -> SessionView {
        let replica_available = self.credential.is_some()
            && match &self.replica {
                Some(b) => self.topo.replica_fit(b.idx),
                None => self.topo.pick_replica().is_some(),
            };
        SessionView {
            replica_available,
            ..self.view_now()
        }
    }
}

/// `HAPRESS_ROUTER_TRACE=1`: log every command, its target and its outcome to stderr (the
/// statement's first 100 bytes: never on in production, statements can hold data).
pub(crate) fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HAPRESS_ROUTER_TRACE").is_some_and(|v| v == "1"))
}
