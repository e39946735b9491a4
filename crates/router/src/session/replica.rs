//! The session's replica connection (opened in the session's state, released, waited on for
//! read-your-writes) and the move of a session to a new primary.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hapress_wire::command;
use hapress_wire::consts::header;
use hapress_wire::packet::HEADER;

use crate::conn::{login, query, Conn};
use crate::pool::{self, Key, Lease, ReplicaState};
use crate::route::{Target, WaitFor};

use super::login::{backend_hello, live};
use super::{Backend, Session};

impl Session {
    pub(super) fn primary_moved(&self) -> bool {
        self.topo.primary().is_some_and(|p| p != self.primary.idx)
    }

    /// Makes the replica ready for a read that must see `wait_for` (the session's last write,
    /// or the newest write seen by the router): opens it, and if its last probe does not show
    /// the GTID applied yet, waits for it there (bounded). Falls back to the primary.
    pub(super) async fn replica_ready(&mut self, wait_for: WaitFor) -> Target {
        if self.ensure_replica().await.is_err() {
            return Target::Primary;
        }
        let needed = match wait_for {
            WaitFor::Nothing => None,
            WaitFor::SessionWrite => self.last_gtid.clone(),
            WaitFor::NewestWrite => self.topo.newest_gtid(),
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
    pub(super) fn release_replica(&mut self, reuse: bool) {
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
    /// state (as a replica connection is set up). The caller checked it may
    /// ([`crate::route::movable`]); false: the login or the setup failed.
    pub(super) async fn move_to_primary(&mut self) -> bool {
        let Some(new) = self.topo.primary() else {
            return false;
        };
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
                .map(|stmt| command::query(stmt))
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
                setup.push(command::query(stmt));
            }
        };
        let (mut lease, reused) = if let Some(l) = live(|| pool.take_in_state(&key, &state)).await {
            (l, true)
        } else if let Some(l) = match self.topo.resettable(idx) {
            true => live(|| pool.take(&key)).await,
            false => None,
        } {
            setup.push(command::reset_connection().to_vec());
            setup.push(command::init_db(&db));
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
        ok &= p.first() == Some(&header::OK);
    }
    Ok(ok)
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
