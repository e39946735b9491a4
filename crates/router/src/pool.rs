//! Backend connection pools, one per backend: connections a finished client session left
//! behind (reset with `COM_RESET_CONNECTION`), ready for the next session of the same user with
//! the same protocol capabilities, so PHP's connection-per-request pays no backend handshake.
//!
//! Every backend connection a session opens holds a permit of its backend's pool, so a backend
//! never gets more than `poolSize` connections from the router; a session that finds none free
//! waits up to `poolWaitMs`, then gets MariaDB's own ERR 1040.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hapress_wire::consts::{cap, cmd};
use hapress_wire::handshake::{Greeting, HandshakeResponse};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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
    | 1 << 5 // compression
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
    /// Permit of the backend's pool (`None` when pooling is off).
    _permit: Option<OwnedSemaphorePermit>,
    since: Instant,
    /// The pool generation the connection was opened in (see [`Pool::renew`]).
    generation: u64,
}

impl Lease {
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
            _permit: permit,
            since: Instant::now(),
            generation: pool.generation.load(Ordering::Relaxed),
        }
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub struct Exhausted;

/// One backend's pool.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Lease>>,
    /// Signalled when a connection is returned (a waiter for a slot can close it).
    returned: Notify,
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
    /// Sessions refused after waiting `poolWaitMs` for a free slot.
    pub exhausted: AtomicU64,
    /// Bumped by [`Pool::renew`]: connections opened before are not pooled again.
    generation: AtomicU64,
}

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
            returned: Notify::new(),
            last_key: Mutex::new(None),
            permits: (size > 0).then(|| Arc::new(Semaphore::new(size))),
            size,
            opened: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
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

    /// Puts a connection (reset, or untouched since it left) back.
    pub fn put(&self, mut lease: Lease) {
        if lease.generation != self.generation.load(Ordering::Relaxed) {
            close(lease);
            return;
        }
        lease.since = Instant::now();
        self.idle().push(lease);
        self.returned.notify_waiters();
    }

    /// A slot for a new connection: free at once, or by closing the longest-idle connection
    /// (also one that a session returns while this waits), or freed within `wait`.
    pub async fn permit(&self, wait: Duration) -> Result<Option<OwnedSemaphorePermit>, Exhausted> {
        let Some(sem) = &self.permits else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a `put` between the look and the wait is not missed.
            let returned = self.returned.notified();
            if let Ok(p) = sem.clone().try_acquire_owned() {
                return Ok(Some(p));
            }
            let evicted = {
                let mut idle = self.idle();
                (!idle.is_empty()).then(|| idle.remove(0))
            };
            if let Some(l) = evicted {
                close(l); // frees its permit
                continue;
            }
            tokio::select! {
                p = sem.clone().acquire_owned() => {
                    if let Ok(p) = p {
                        return Ok(Some(p));
                    }
                }
                _ = returned => continue,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            return Err(Exhausted);
        }
    }

    /// Closes connections idle for longer than `timeout`.
    pub fn reap(&self, timeout: Duration) {
        let stale: Vec<Lease> = {
            let mut idle = self.idle();
            let (old, keep) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|l| l.since.elapsed() > timeout);
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
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut lease = lease;
        lease.state = None;
        let reset = async {
            lease.conn.write_packet(0, &[cmd::RESET_CONNECTION]).await?;
            lease.conn.read_packet().await
        };
        if let Ok(Ok((_, p))) = tokio::time::timeout(Duration::from_secs(2), reset).await {
            // A clean answer: an OK, outside any transaction, and nothing else pending.
            let ok = hapress_wire::response::parse_ok(&p)
                .is_ok_and(|ok| ok.status & hapress_wire::consts::status::IN_TRANS == 0);
            if ok && !lease.conn.gone().await {
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
        let permit = pool.permit(Duration::from_millis(10)).await.unwrap();
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
    async fn a_full_pool_evicts_idle_connections_then_refuses_after_the_wait() {
        let pool = Pool::new(2);
        let busy = lease(&pool, 1, None).await;
        let idle = lease(&pool, 2, None).await;
        pool.put(idle);
        assert_eq!((pool.open_count(), pool.idle_count()), (2, 1));
        // The idle connection is closed to make room.
        let second = lease(&pool, 3, None).await;
        assert_eq!((pool.open_count(), pool.idle_count()), (2, 0));
        // Nothing idle: a bounded wait, then a refusal.
        let started = Instant::now();
        assert!(pool.permit(Duration::from_millis(50)).await.is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(pool.exhausted.load(Ordering::Relaxed), 1);
        drop(busy);
        assert!(pool.permit(Duration::from_millis(50)).await.is_ok());
        drop(second);
        // Pooling off: no limit.
        assert!(Pool::new(0).permit(Duration::ZERO).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_of_a_connection_returned_meanwhile() {
        let pool = Arc::new(Pool::new(1));
        let busy = lease(&pool, 1, None).await;
        let p2 = pool.clone();
        let returner = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p2.put(busy); // a session ends: its connection goes idle, keeping its slot
        });
        let started = Instant::now();
        let got = pool.permit(Duration::from_secs(5)).await;
        assert!(got.is_ok());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited for the deadline"
        );
        returner.await.unwrap();
    }

    #[tokio::test]
    async fn reap_closes_connections_idle_too_long() {
        let pool = Pool::new(2);
        pool.put(lease(&pool, 1, None).await);
        pool.reap(Duration::from_secs(60));
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        pool.reap(Duration::from_millis(10));
        assert_eq!(pool.idle_count(), 0);
        // Closed by a task that says COM_QUIT first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.open_count(), 0);
    }
}
