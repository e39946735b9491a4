//! The side channel: statements the router runs on other servers as the session's user
//! (`KILL` of a statement running on a replica, a mirrored `SET GLOBAL`).

use std::sync::Arc;
use std::time::Duration;

use hapress_wire::consts::cmd;
use hapress_wire::handshake::HandshakeResponse;

use crate::config::Config;
use crate::conn::{login, query, Conn, Credential};
use crate::topology::{OnReplica, Topology};

use super::login::backend_hello;
use super::Session;

/// After the primary accepted `KILL [QUERY] id`: if session `id` is running a statement on a
/// replica, kills it there too (as that session's own user, which may always kill its own
/// threads; MariaDB has just said the killer may kill that session), so the statement stops
/// as it would on one server. `KILL CONNECTION` kills the replica connection: the session then
/// ends closed, as a killed MariaDB session does.
pub(super) async fn kill_on_replica(topo: &Topology, config: &Config, id: u32, query_only: bool) {
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

impl Session {
    /// Records that this session's statement runs on its replica connection; false if it has
    /// none or no way to log in there again.
    pub(super) fn note_on_replica(&mut self) -> bool {
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
    /// (`Effect::SetGlobal { mirrored: true }`) is run on every replica that is up too, as this
    /// session's user, before the primary gets it: reads on replicas then behave as on the
    /// primary, as on one server. The primary's answer is the client's.
    pub(super) async fn mirror_global(&mut self, sql: &[u8]) {
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
}
