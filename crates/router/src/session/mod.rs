//! One client session: the handshake (on a pooled connection to the primary, checked by the
//! router; else relayed, so the client sees MariaDB's own greeting and auth errors; either
//! way the thread id the client is given is its primary connection's), then the command loop,
//! which routes each statement with [`crate::route::decide`] and forwards the answer chunk by
//! chunk. At the end the backend connections are reset and pooled.

mod auth;
mod bookkeeping;
mod connect;
mod elsewhere;
mod login;
mod prepared;
mod relay;
mod replica;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hapress_wire::consts::cmd;
use hapress_wire::handshake::HandshakeResponse;
use hapress_wire::packet::HEADER;
use hapress_wire::response::Outcome;

use crate::classify::{classify, kill_target, Effect};
use crate::config::Config;
use crate::conn::{Conn, Credential};
use crate::pool::{self, Lease};
use crate::route::{SessionView, Target};
use crate::topology::Topology;

use self::elsewhere::kill_on_replica;
use self::login::handshake;
use self::prepared::Prepared;

/// A backend connection held by a session, with the backend's index.
pub(super) struct Backend {
    idx: usize,
    lease: Lease,
}

/// Why a session ended abnormally (logged, never sent to other sessions).
#[derive(Debug)]
pub struct SessionEnd(pub String);

pub(super) type R<T> = Result<T, SessionEnd>;

pub(super) fn end<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SessionEnd + '_ {
    move |e| SessionEnd(format!("{what}: {e}"))
}

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
}

/// `HAPRESS_ROUTER_TRACE=1`: log every command, its target and its outcome to stderr (the
/// statement's first 100 bytes: never on in production, statements can hold data).
pub(crate) fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HAPRESS_ROUTER_TRACE").is_some_and(|v| v == "1"))
}
