//! Backend connection pools, one per backend: connections a finished client session left
//! behind (reset with `COM_RESET_CONNECTION`), ready for the next session of the same user with
//! the same protocol capabilities, so PHP's connection-per-request pays no backend handshake.
//!
//! The pool bounds what is kept, not what is allowed: up to `poolSize` backend connections
//! per backend hold a permit of its pool and are reset and kept when their session ends. A
//! session that finds every permit taken (and none idle to close) opens a connection of its
//! own, closed when the session ends; so, as with MariaDB directly, the server's
//! `max_connections` is the only limit on sessions, and its own ERR 1040 is what a client
//! gets beyond it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hapress_wire::consts::{cap, cmd};
use hapress_wire::handshake::{Greeting, HandshakeResponse};
use hapress_wire::packet;
use hapress_wire::rows::TextRows;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::Conn;

/// What a pooled connection must match to serve a client: the same user, the same
/// capabilities (they change how the server answers: found rows, multi-statements, EOF
/// packets...), the same extended MariaDB capabilities and the same connection collation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// User name.
    pub user: Vec<u8>,
    /// Capabilities in effect on the connection (client's & server's), minus those that
    /// only matter during the handshake.
    pub caps: u32,
    /// MariaDB extended capabilities in effect.
    pub mariadb_caps: u32,
    /// Collation id of the handshake.
    pub charset: u8,
}

/// Capability bits that only shape the handshake itself.
const HANDSHAKE_ONLY: u32 = cap::CONNECT_WITH_DB
    | cap::CONNECT_ATTRS
    | cap::PLUGIN_AUTH_LENENC_DATA
    | cap::SSL
    | cap::LONG_PASSWORD
    | cap::COMPRESS
    | 1 << 22 // can handle expired passwords
    | 1 << 25; // TLS verify server cert

impl Key {
    /// The key of a connection logged in with `hello` (after the router added its own
    /// capabilities) to a server that greeted with `server`.
    pub fn new(hello: &HandshakeResponse, server: &Greeting) -> Self {
        Self {
            user: hello.user.clone(),
            caps: hello.capabilities & (server.capabilities | cap::MYSQL) & !HANDSHAKE_ONLY,
            mariadb_caps: hello.mariadb_capabilities & server.mariadb_capabilities,
            charset: hello.charset,
        }
    }
}

/// The session state of a replica connection: its database and the statements replayed on it
/// (`SET NAMES`, `SET SESSION ...`), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// Database.
    pub db: Vec<u8>,
    /// Replayed statements.
    pub replay: Vec<Vec<u8>>,
}

/// A backend connection owned by a session or idle in a pool.
pub struct Lease {
    /// The connection.
    pub conn: Conn,
    /// The server's greeting on this connection (its thread id, version, capabilities).
    pub greeting: Greeting,
    /// What the connection matches (`None`: not reusable, e.g. after `COM_CHANGE_USER`).
    pub key: Option<Key>,
    /// A replica connection's session state, as the router set it up (`None` on a primary
    /// connection, whose state a session may change in any way: it is reset instead).
    pub state: Option<ReplicaState>,
    /// A primary connection's current database (`COM_RESET_CONNECTION` keeps it): as its
    /// session knew it when it ended, else read from the server after the reset; `Some(b"")`
    /// for none, `None` when not known. A login into that same database needs no
    /// `COM_INIT_DB`.
    pub db: Option<Vec<u8>>,
    /// Permit of the backend's pool (`None` when pooling is off, or for a connection opened
    /// beyond `poolSize`: it is closed, never pooled).
    permit: Option<OwnedSemaphorePermit>,
    since: Instant,
    /// The pool generation the connection was opened in (see [`Pool::renew`]).
    generation: u64,
    /// [`Conn::writes`] when a reset last left the connection clean (`None`: never).
    clean_at: Option<u64>,
}

impl Lease {
    /// Takes the connection's slot in its pool (for another connection); this one is then
    /// never pooled.
    pub fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }

    /// A connection just opened under `permit`, for `pool`.
    pub fn new(
        conn: Conn,
        greeting: Greeting,
        permit: Option<OwnedSemaphorePermit>,
        pool: &Pool,
    ) -> Self {
        Self {
            conn,
            greeting,
            key: None,
            state: None,
            db: None,
            permit,
            since: Instant::now(),
            generation: pool.generation.load(Ordering::Relaxed),
            clean_at: None,
        }
    }

    /// Nothing was sent on the connection since a reset left it clean: it is in the state it
    /// was returned in (its session's held-back `SET`s were never sent).
    pub fn untouched(&self) -> bool {
        self.clean_at == Some(self.conn.writes())
    }
}

/// One backend's pool.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Lease>>,
    /// Key of the latest login: the best guess for the next client's.
    last_key: Mutex<Option<Key>>,
    permits: Option<Arc<Semaphore>>,
    size: usize,
    /// Connections opened (not taken from the pool).
    pub opened: AtomicU64,
    /// Sessions that got a pooled connection.
    pub reused: AtomicU64,
    /// Clients greeted with a pooled connection's thread id that was not for them (another
    /// user or other capabilities): their session runs on a new connection, so its
    /// `CONNECTION_ID()` differs from the greeting's id.
    pub mismatched: AtomicU64,
    /// Connections opened beyond `poolSize` (closed when their session ends).
    pub overflow: AtomicU64,
    /// Resets sent when sessions ended.
    pub resets: AtomicU64,
    /// Bumped by [`Pool::renew`]: connections opened before are not pooled again.
    generation: AtomicU64,
    /// Until when the server counts as full: it refused a connection with its ERR 1040.
    full_until: Mutex<Option<Instant>>,
}

/// How long a server that refused a connection as full (ERR 1040) is not asked for another
/// one beyond the pool: sessions get the same error at once instead of adding to the storm.
pub const FULL_FOR: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("thread_id", &self.greeting.connection_id)
            .field("key", &self.key)
            .finish()
    }
}

impl Pool {
    /// A pool of at most `size` connections (0: no pooling and no limit).
    pub fn new(size: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            last_key: Mutex::new(None),
            permits: (size > 0).then(|| Arc::new(Semaphore::new(size))),
            size,
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            full_until: Mutex::new(None),
        }
    }

    /// The server refused a connection with "Too many connections".
    pub fn note_full(&self) {
        self.note_full_at(Instant::now());
    }

    /// [`Self::note_full`] at `now`.
    fn note_full_at(&self, now: Instant) {
        *self.full_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(now + FULL_FOR);
    }

    /// The server refused a connection as full less than [`FULL_FOR`] ago.
    pub fn seems_full(&self) -> bool {
        self.seems_full_at(Instant::now())
    }

    /// [`Self::seems_full`] at `now`.
    fn seems_full_at(&self, now: Instant) -> bool {
        self.full_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| now < t)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Lease>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pooling is on.
    pub fn enabled(&self) -> bool {
        self.permits.is_some()
    }

    /// Connections idle in the pool.
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Connections open to this backend (in use or idle); 0 when pooling is off.
    pub fn open_count(&self) -> usize {
        self.permits
            .as_ref()
            .map_or(0, |p| self.size - p.available_permits())
    }

    /// The idle connection a new client is greeted with (its thread id becomes the client's,
    /// before the client has said who it is): the latest reset one of the latest login's key,
    /// else the latest reset one (a replica connection pooled in its state is never handed
    /// out as a primary connection). A client of another user or capabilities gets a new
    /// connection.
    pub fn take_guess(&self) -> Option<Lease> {
        let key = self
            .last_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut idle = self.idle();
        let i = key
            .and_then(|k| {
                idle.iter()
                    .rposition(|l| l.key.as_ref() == Some(&k) && l.state.is_none())
            })
            .or_else(|| idle.iter().rposition(|l| l.state.is_none()))?;
        Some(idle.remove(i))
    }

    /// Remembers the key of a successful login.
    pub fn note_login(&self, key: &Key) {
        let mut k = self.last_key.lock().unwrap_or_else(|e| e.into_inner());
        if k.as_ref() != Some(key) {
            *k = Some(key.clone());
        }
    }

    /// The most recently returned idle connection for `key`.
    pub fn take(&self, key: &Key) -> Option<Lease> {
        let mut idle = self.idle();
        let i = idle.iter().rposition(|l| l.key.as_ref() == Some(key))?;
        Some(idle.remove(i))
    }

    /// The most recently returned idle connection for `key` already in `state`.
    pub fn take_in_state(&self, key: &Key, state: &ReplicaState) -> Option<Lease> {
        let mut idle = self.idle();
        let i = idle
            .iter()
            .rposition(|l| l.key.as_ref() == Some(key) && l.state.as_ref() == Some(state))?;
        Some(idle.remove(i))
    }

    /// Connections opened from now on differ from those opened before (a `SET GLOBAL` went
    /// through the router: a new connection takes the new global values, and some of them,
    /// such as `max_allowed_packet`, a reset does not refresh): the idle connections are
    /// closed, and those in use are closed when their sessions end.
    pub fn renew(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        let stale = std::mem::take(&mut *self.idle());
        stale.into_iter().for_each(close);
    }

    /// Puts a connection (reset, or untouched since it left) back; one opened beyond
    /// `poolSize` or before a [`Pool::renew`] is closed instead.
    pub fn put(&self, mut lease: Lease) {
        let beyond = self.enabled() && lease.permit.is_none();
        if beyond || lease.generation != self.generation.load(Ordering::Relaxed) {
            close(lease);
            return;
        }
        lease.since = Instant::now();
        self.idle().push(lease);
    }

    /// The slot for a new connection: a free one, or the one of the longest-idle connection
    /// (closed for it). `None`: pooling is off, or all `poolSize` are in use and the new
    /// connection is one beyond the pool (counted in [`Pool::overflow`]).
    pub fn permit(&self) -> Option<OwnedSemaphorePermit> {
        let sem = self.permits.as_ref()?;
        loop {
            if let Ok(p) = sem.clone().try_acquire_owned() {
                return Some(p);
            }
            let evicted = {
                let mut idle = self.idle();
                (!idle.is_empty()).then(|| idle.remove(0))
            };
            match evicted {
                // Its permit is freed when the lease is dropped, before the closing task runs.
                Some(mut l) => {
                    let p = l.permit.take();
                    close(l);
                    if p.is_some() {
                        return p;
                    }
                }
                None => {
                    self.overflow.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
    }

    /// Closes connections idle for longer than `timeout`.
    pub fn reap(&self, timeout: Duration) {
        self.reap_at(timeout, Instant::now());
    }

    /// [`Self::reap`] at `now`.
    fn reap_at(&self, timeout: Duration, now: Instant) {
        let stale: Vec<Lease> = {
            let mut idle = self.idle();
            let (old, keep) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|l| now.saturating_duration_since(l.since) > timeout);
            *idle = keep;
            old
        };
        stale.into_iter().for_each(close);
    }
}

/// Resets a connection a session is done with (`COM_RESET_CONNECTION`: rolls back, drops
/// temporary tables, user variables and prepared statements, releases locks, restores the
/// session variables) and returns it to `pool`; a connection that is not reusable or fails
/// the reset is closed.
pub fn release(pool: &Arc<Pool>, lease: Lease) {
    if !pool.enabled() || lease.key.is_none() {
        return;
    }
    if lease.permit.is_none() {
        close(lease); // opened beyond poolSize
        return;
    }
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut lease = lease;
        if lease.untouched() {
            // No command reached the server since the last reset (a session whose `SET`s
            // were held back and whose reads went to replicas): nothing to undo, and its
            // database is the one it had then.
            lease.conn.drop_deferred();
            if !lease.conn.gone().await {
                pool.put(lease);
            }
            return;
        }
        lease.state = None;
        pool.resets.fetch_add(1, Ordering::Relaxed);
        // The reset, and when the session could not tell, the database it leaves, in one write
        // (the client is gone: this is off any client's path).
        let known = lease.db.is_some();
        let database = hapress_wire::command::query(b"SELECT DATABASE()");
        let reset = async {
            let mut out = Vec::with_capacity(32);
            packet::write_packet(&mut out, 0, &[cmd::RESET_CONNECTION]);
            if !known {
                packet::write_packet(&mut out, 0, &database);
            }
            lease.conn.write_raw(&out).await?;
            let (_, p) = lease.conn.read_packet().await?;
            if known {
                return Ok((p, None));
            }
            let deprecate_eof = lease
                .key
                .as_ref()
                .is_some_and(|k| k.caps & cap::DEPRECATE_EOF != 0);
            let mut rows =
                TextRows::new(&database, deprecate_eof).map_err(std::io::Error::other)?;
            loop {
                let (_, r) = lease.conn.read_packet().await?;
                if let Some(done) = rows.feed(&r).map_err(std::io::Error::other)? {
                    return Ok::<_, std::io::Error>((p, Some(done.ok())));
                }
            }
        };
        if let Ok(Ok((p, rows))) = tokio::time::timeout(Duration::from_secs(2), reset).await {
            let rows = rows.flatten();
            // A clean answer: an OK, outside any transaction, and nothing else pending.
            let ok = hapress_wire::response::parse_ok(&p)
                .is_ok_and(|ok| ok.status & hapress_wire::consts::status::IN_TRANS == 0);
            if ok && !lease.conn.gone().await {
                if !known {
                    lease.db = rows
                        .filter(|r| r.rows.len() == 1 && r.columns.len() == 1)
                        .map(|r| r.rows[0][0].clone().unwrap_or_default().into_bytes());
                }
                lease.clean_at = Some(lease.conn.writes());
                pool.put(lease);
                return;
            }
        }
        close(lease);
    });
}

/// Closes a connection politely (`COM_QUIT`, so the server does not count an aborted client).
pub fn close(lease: Lease) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut lease = lease;
        // Held-back settings of a session that is over are not worth the server's time.
        lease.conn.drop_deferred();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            lease.conn.write_packet(0, &[cmd::QUIT]),
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(id: u32) -> Greeting {
        Greeting {
            server_version: b"10.11".to_vec(),
            connection_id: id,
            nonce: vec![b'x'; 20],
            capabilities: cap::PROTOCOL_41 | cap::SESSION_TRACK | cap::MULTI_RESULTS,
            mariadb_capabilities: 0,
            charset: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        }
    }

    fn hello(user: &str, caps: u32) -> HandshakeResponse {
        HandshakeResponse {
            capabilities: caps,
            charset: 45,
            user: user.as_bytes().to_vec(),
            ..HandshakeResponse::default()
        }
    }

    async fn lease(pool: &Pool, id: u32, key: Option<Key>) -> Lease {
        let permit = pool.permit();
        let (a, _b) = tokio::io::duplex(64);
        let mut l = Lease::new(Conn::new(Box::new(a)), greeting(id), permit, pool);
        l.key = key;
        l
    }

    #[tokio::test]
    async fn a_set_global_retires_every_connection_opened_before_it() {
        let pool = Pool::new(4);
        let k = Key::new(&hello("wp", cap::PROTOCOL_41), &greeting(1));
        let idle = lease(&pool, 1, Some(k.clone())).await;
        let busy = lease(&pool, 2, Some(k.clone())).await;
        pool.put(idle);
        pool.renew();
        assert_eq!(pool.idle_count(), 0, "idle connections are closed at once");
        pool.put(busy);
        assert_eq!(
            pool.idle_count(),
            0,
            "one in use is closed when its session ends"
        );
        let fresh = lease(&pool, 3, Some(k)).await;
        pool.put(fresh);
        assert_eq!(
            pool.idle_count(),
            1,
            "connections opened after it are pooled"
        );
    }

    #[test]
    fn keys_ignore_handshake_only_bits_but_not_behaviour() {
        let g = greeting(1);
        let base = Key::new(&hello("wp", cap::PROTOCOL_41 | cap::MULTI_RESULTS), &g);
        let with_db = hello(
            "wp",
            cap::PROTOCOL_41 | cap::MULTI_RESULTS | cap::CONNECT_WITH_DB,
        );
        assert_eq!(Key::new(&with_db, &g), base);
        // A capability the server does not offer is not in effect either.
        let found_rows = hello("wp", cap::PROTOCOL_41 | cap::MULTI_RESULTS | 2);
        assert_eq!(Key::new(&found_rows, &g), base);
        let multi = hello(
            "wp",
            cap::PROTOCOL_41 | cap::MULTI_RESULTS | cap::SESSION_TRACK,
        );
        assert_ne!(Key::new(&multi, &g), base);
        assert_ne!(
            Key::new(&hello("other", cap::PROTOCOL_41 | cap::MULTI_RESULTS), &g),
            base
        );
    }

    #[tokio::test]
    async fn take_matches_the_key_and_guess_prefers_the_latest_login() {
        let g = greeting(1);
        let (a, b) = (
            Key::new(&hello("a", cap::PROTOCOL_41), &g),
            Key::new(&hello("b", cap::PROTOCOL_41), &g),
        );
        let pool = Pool::new(4);
        pool.put(lease(&pool, 1, Some(a.clone())).await);
        pool.put(lease(&pool, 2, Some(b.clone())).await);
        pool.put(lease(&pool, 3, Some(a.clone())).await);
        assert_eq!(pool.take(&b).unwrap().greeting.connection_id, 2);
        assert!(pool.take(&b).is_none());
        pool.put(lease(&pool, 4, Some(b.clone())).await);
        pool.note_login(&a);
        assert_eq!(pool.take_guess().unwrap().greeting.connection_id, 3);
        pool.note_login(&b);
        assert_eq!(pool.take_guess().unwrap().greeting.connection_id, 4);
        assert_eq!(pool.take_guess().unwrap().greeting.connection_id, 1);
        assert!(pool.take_guess().is_none());
    }

    #[tokio::test]
    async fn a_full_pool_evicts_idle_connections_then_opens_beyond_and_keeps_at_most_its_size() {
        let pool = Pool::new(2);
        let k = Key::new(&hello("wp", cap::PROTOCOL_41), &greeting(1));
        let busy = lease(&pool, 1, Some(k.clone())).await;
        let idle = lease(&pool, 2, Some(k.clone())).await;
        pool.put(idle);
        assert_eq!((pool.open_count(), pool.idle_count()), (2, 1));
        // The idle connection is closed to make room.
        let second = lease(&pool, 3, Some(k.clone())).await;
        assert_eq!((pool.open_count(), pool.idle_count()), (2, 0));
        // Nothing idle: a connection beyond the pool, at once.
        let beyond = lease(&pool, 4, Some(k.clone())).await;
        assert_eq!(pool.overflow.load(Ordering::Relaxed), 1);
        assert_eq!(pool.open_count(), 2);
        // It is closed when its session ends; those holding a permit are kept.
        pool.put(beyond);
        pool.put(busy);
        pool.put(second);
        assert_eq!((pool.open_count(), pool.idle_count()), (2, 2));
        // Pooling off: no limit, nothing counted.
        assert!(Pool::new(0).permit().is_none());
    }

    #[test]
    fn a_server_that_refused_as_full_counts_as_full_for_a_while() {
        let pool = Pool::new(1);
        let t0 = Instant::now();
        assert!(!pool.seems_full_at(t0));
        pool.note_full_at(t0);
        assert!(pool.seems_full_at(t0));
        assert!(pool.seems_full_at(t0 + FULL_FOR - Duration::from_millis(1)));
        assert!(!pool.seems_full_at(t0 + FULL_FOR));
    }

    #[tokio::test]
    async fn reap_closes_connections_idle_too_long() {
        let pool = Pool::new(2);
        let now = Instant::now();
        pool.put(lease(&pool, 1, None).await); // idle since a moment after `now`
        pool.reap_at(Duration::from_secs(60), now + Duration::from_secs(60));
        assert_eq!(pool.idle_count(), 1, "idle for exactly the timeout: kept");
        pool.reap_at(Duration::from_secs(60), now + Duration::from_secs(61));
        assert_eq!(pool.idle_count(), 0);
        // Closed by a task that says COM_QUIT first.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while pool.open_count() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(closed.is_ok(), "the reaped connection was never closed");
    }
}
