//! Opening a backend connection for a session, and the router's own refusal of a login.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hapress_wire::consts::{errcode, header};
use hapress_wire::handshake::Greeting;

use crate::config::Config;
use crate::conn::Conn;
use crate::pool::Lease;
use crate::topology::Topology;

use super::error::{on_backend, on_client};
use super::{SessionError, R};

/// Opens a connection to backend `idx` under a permit of its pool and reads its greeting; on
/// failure the client gets the error (packet number `seq`): 1927 (08S01) when the server
/// cannot be reached, or the server's own ERR (its 1040 beyond `max_connections`).
pub(super) async fn connect(
    topo: &Topology,
    config: &Config,
    idx: usize,
    client: &mut Conn,
    seq: u8,
) -> R<Lease> {
    connect_or(topo, config, idx, client, seq, false, None)
        .await?
        .ok_or_else(|| SessionError::backend(idx, "unreachable"))
}

/// [`connect`]; with `quiet`, a server that cannot be reached is `None`, and the client has
/// been sent nothing, so the caller can try another.
pub(super) async fn connect_or(
    topo: &Topology,
    config: &Config,
    idx: usize,
    client: &mut Conn,
    seq: u8,
    quiet: bool,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> R<Option<Lease>> {
    let b = &topo.backends[idx];
    let permit = permit.or_else(|| b.pool.permit());
    if permit.is_none() && b.pool.enabled() && b.pool.seems_full() {
        // Beyond the pool while the server refuses new connections: its answer, at once.
        topo.refused.fetch_add(1, Ordering::Relaxed);
        let msg = "Too many connections (hapress router: the server refused one just before)";
        let _ = refuse(client, seq, 1040, "08004", msg).await;
        return Err(SessionError::backend(idx, msg));
    }
    b.pool.opened.fetch_add(1, Ordering::Relaxed);
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut conn = match Conn::connect(&b.addr, timeout).await {
        Ok(c) => c,
        Err(_) if quiet => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Err(e) => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            let msg = format!("hapress router: cannot reach the primary ({}): {e}", b.addr);
            let _ = refuse(client, seq, errcode::ER_CONNECTION_KILLED, "08S01", &msg).await;
            return Err(SessionError::backend(idx, msg));
        }
    };
    let (_, g) = match tokio::time::timeout(timeout, conn.read_packet()).await {
        Ok(r) => r.map_err(on_backend(idx, "greeting"))?,
        Err(_) => {
            b.counters.errors.fetch_add(1, Ordering::Relaxed);
            let msg = format!(
                "hapress router: {} did not greet within {timeout:?}",
                b.addr
            );
            let _ = refuse(client, seq, errcode::ER_CONNECTION_KILLED, "08S01", &msg).await;
            return Err(SessionError::backend(idx, msg));
        }
    };
    if g.first() == Some(&header::ERR) {
        if hapress_wire::response::parse_err(&g).is_ok_and(|e| e.code == 1040) {
            b.pool.note_full();
        }
        client
            .write_packet(seq, &g)
            .await
            .map_err(on_client("refusal"))?;
        return Err(SessionError::backend(idx, "refused the connection"));
    }
    let g = Greeting::parse(&g).map_err(on_backend(idx, "greeting"))?;
    Ok(Some(Lease::new(conn, g, permit, &b.pool)))
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
