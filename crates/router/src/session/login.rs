//! The connection phase: greet the client (on a pooled connection the router checks the
//! password itself, else the login is relayed to a new connection), then build the session.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hapress_wire::command;
use hapress_wire::consts::{cap, errcode, header, status};
use hapress_wire::handshake::{self, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::response::{ok_packet, ok_without_session_state};

use crate::config::Config;
use crate::conn::{Conn, Credential};
use crate::pool::{self, Key, Lease};
use crate::route::SessionView;
use crate::topology::Topology;

use super::auth::{credential, relay_auth, reset_pooled_to_user, Auth};
use super::connect::{connect, connect_or};
use super::error::{on_backend, on_client};
use super::{Backend, Session, SessionError, HELLO_TIMEOUT, R};

/// The client's handshake response as the router sends it to a backend: with
/// `CLIENT_SESSION_TRACK` when the server offers it (each write's GTID comes back in its OK).
pub(super) fn backend_hello(hello: &HandshakeResponse, server: &Greeting) -> HandshakeResponse {
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

/// The first connection `take` gives that its server has not closed meanwhile (a restart, a
/// `KILL`, `wait_timeout`); closed ones are dropped.
pub(super) async fn live(mut take: impl FnMut() -> Option<Lease>) -> Option<Lease> {
    while let Some(mut l) = take() {
        if !l.conn.gone().await {
            return Some(l);
        }
    }
    None
}

/// A replica fit for reads, waiting for one up to the connect timeout.
async fn replica_soon(topo: &Topology, config: &Config) -> Option<usize> {
    let until = tokio::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    loop {
        let r = topo.pick_replica();
        if r.is_some() || tokio::time::Instant::now() >= until {
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
pub(super) async fn handshake(
    topo: Arc<Topology>,
    config: Arc<Config>,
    mut client: Conn,
) -> R<Option<Session>> {
    // Without a primary (lost, another not yet promoted) the session lives on a replica: its
    // reads are served, its writes get MariaDB's own read-only error, and it ends at its first
    // statement for the primary once there is one again.
    // With neither (servers restarting, a failover under way), the login waits a moment for
    // the topology to settle rather than fail at once.
    let settle = tokio::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    let (primary, home) = loop {
        let primary = topo.primary();
        let home = primary.or_else(|| topo.pick_replica());
        if home.is_some() || tokio::time::Instant::now() >= settle {
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
        return Err(SessionError::router("no primary"));
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
            let l =
                match connect_or(&topo, &config, pidx, &mut client, 0, !on_replica, None).await? {
                    Some(l) => l,
                    None => match replica_soon(&topo, &config).await {
                        Some(r) => {
                            (pidx, on_replica) = (r, true);
                            pool = topo.backends[r].pool.clone();
                            connect(&topo, &config, r, &mut client, 0).await?
                        }
                        None => connect(&topo, &config, pidx, &mut client, 0).await?,
                    },
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
        .map_err(on_client("login"))?;
    // A client that never answers (a health check that only connects, a stalled client) does
    // not cost the pooled connection it was greeted with.
    let answer = tokio::time::timeout(HELLO_TIMEOUT, client.read_packet()).await;
    let Ok(Ok((hseq, h))) = answer else {
        if pooled {
            pool.put(lease);
        }
        return Err(SessionError::client(
            "the client sent no handshake response",
        ));
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
        return Err(SessionError::router("the client asked for TLS"));
    }
    let mut hello = HandshakeResponse::parse(&h).map_err(on_client("handshake response"))?;
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
    // The status of the login's OK when the router read it (else unknown: 0).
    let mut login_status = 0;
    let credential = if let Some(s1) = stage1 {
        // Checked here. Switch the pooled connection to the client's database (its OK, or
        // MariaDB's 1049/1044, answers the login); a client without one gets a connection
        // without one (`COM_CHANGE_USER` to the same user, the only way back to no database),
        // and the OK a fresh login gets.
        let p = match &hello.database {
            // Reset with the client's database already current (the session before used
            // it): the OK a `COM_INIT_DB` would give, without asking the server. Access to it
            // was checked for this user when that session logged in; every statement is
            // checked again by the server as it runs.
            Some(db) if lease.db.as_ref() == Some(db) => ok_packet(status::AUTOCOMMIT),
            Some(db) => {
                lease
                    .conn
                    .write_packet(0, &command::init_db(db))
                    .await
                    .map_err(on_backend(pidx, "login"))?;
                lease
                    .conn
                    .read_packet()
                    .await
                    .map_err(on_backend(pidx, "login"))?
                    .1
            }
            None => {
                let p = reset_pooled_to_user(&mut lease, &hello, &s1)
                    .await
                    .map_err(on_backend(pidx, "login"))?;
                match hapress_wire::response::parse_ok(&p) {
                    Ok(ok) => {
                        let st = ok.status & !status::SESSION_STATE_CHANGED;
                        ok_packet(st)
                    }
                    Err(_) => p,
                }
            }
        };
        login_status = hapress_wire::response::parse_ok(&p).map_or(0, |ok| ok.status);
        let shown = match p.first() {
            Some(&header::OK) if track_added => {
                ok_without_session_state(&p).unwrap_or_else(|| p.clone())
            }
            _ => p.clone(),
        };
        client
            .write_packet(next, &shown)
            .await
            .map_err(on_client("login"))?;
        if p.first() != Some(&header::OK) {
            // 1049 or 1044: the client has MariaDB's ERR. The connection is closed: the thread
            // id it was shown is never anyone else's.
            pool::close(lease);
            return Ok(None);
        }
        pool.reused.fetch_add(1, Ordering::Relaxed);
        Some(Credential::Stage1(s1))
    } else {
        // The login is relayed; what differs is how the exchange starts and the offset of the
        // client's packet numbers over the server's.
        let (auth, offset) = if pooled {
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
                return Err(SessionError::client(msg));
            }
            lease = connect_or(&topo, &config, pidx, &mut client, next, false, permit)
                .await?
                .ok_or_else(|| SessionError::backend(pidx, "unreachable"))?;
            let g = lease.greeting.clone();
            let sw = handshake::AuthSwitch {
                plugin: g.auth_plugin.clone(),
                data: g.nonce.clone(),
            };
            client
                .write_packet(next, &sw.encode())
                .await
                .map_err(on_client("login"))?;
            let (_, token) = client.read_packet().await.map_err(on_client("auth"))?;
            let mut h2 = backend_hello(&hello, &g);
            h2.auth.clone_from(&token);
            h2.auth_plugin = Some(g.auth_plugin.clone());
            lease
                .conn
                .write_packet(1, &h2.encode())
                .await
                .map_err(on_backend(pidx, "login"))?;
            let auth = Auth {
                plugin: g.auth_plugin,
                nonce: g.nonce,
                token,
            };
            (auth, 2)
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
                .map_err(on_backend(pidx, "login"))?;
            let auth = Auth {
                plugin: hello
                    .auth_plugin
                    .clone()
                    .unwrap_or_else(|| greeting.auth_plugin.clone()),
                nonce: greeting.nonce.clone(),
                token: hello.auth.clone(),
            };
            (auth, 0)
        };
        let relayed = relay_auth(
            &mut client,
            (pidx, &mut lease.conn),
            auth,
            offset,
            track_added,
            None,
        );
        match relayed.await? {
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
        command: Vec::new(),
        db_exact: true,
        answer_gtid: false,
        schema_seen: None,
        prepared: Default::default(),
        login_elsewhere: None,
        relay: Vec::new(),
        status: login_status & super::LASTING_STATUS,
    }))
}
