//! Relayed authentication exchanges (the login, `COM_CHANGE_USER`) and the credential the
//! router keeps to log in elsewhere as the session's user.

use hapress_wire::command;
use hapress_wire::consts::header;
use hapress_wire::handshake::{self, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::response::ok_without_session_state;

use crate::conn::{Conn, Credential};
use crate::pool::Lease;
use crate::topology::Topology;

use super::error::{on_backend, on_client};
use super::{Session, SessionError, R};

/// The state of a `mysql_native_password` exchange: plugin, nonce and the client's token.
pub(super) struct Auth {
    pub(super) plugin: String,
    pub(super) nonce: Vec<u8>,
    pub(super) token: Vec<u8>,
}

/// A client that scrambles its password with another nonce than the server's (it was greeted
/// with the router's own, on a pooled connection): native-password auth switches are shown to
/// it with its nonce, and its answers scrambled again for the server's (the password's SHA1
/// recovered with one of the user's hashes, as at login). An answer that matches no hash (a
/// wrong password) goes as it is, and the server denies it as it would directly.
pub(super) struct Rescramble {
    pub(super) client_nonce: Vec<u8>,
    pub(super) stage2s: Vec<[u8; 20]>,
}

/// Relays the auth exchange between client and backend `idx` until OK or ERR (the client's
/// packet numbers are the backend's plus `offset`). `None` when the login failed (the client
/// has MariaDB's own ERR).
pub(super) async fn relay_auth(
    client_conn: &mut Conn,
    (idx, backend_conn): (usize, &mut Conn),
    mut auth: Auth,
    offset: u8,
    track_added: bool,
    rescramble: Option<&Rescramble>,
) -> R<Option<Auth>> {
    loop {
        let (s, p) = backend_conn
            .read_packet()
            .await
            .map_err(on_backend(idx, "auth"))?;
        let switch = (p.first() == Some(&header::EOF))
            .then(|| handshake::AuthSwitch::parse(&p))
            .transpose()
            .map_err(on_backend(idx, "auth switch"))?;
        let translate = rescramble.filter(|_| {
            switch
                .as_ref()
                .is_some_and(|sw| sw.plugin == NATIVE_PASSWORD)
        });
        let shown = match (p.first(), translate, &switch) {
            (Some(&header::OK), ..) if track_added => {
                ok_without_session_state(&p).unwrap_or_else(|| p.clone())
            }
            (_, Some(r), Some(sw)) => handshake::AuthSwitch {
                plugin: sw.plugin.clone(),
                data: r.client_nonce.clone(),
            }
            .encode(),
            _ => p.clone(),
        };
        client_conn
            .write_packet(s.wrapping_add(offset), &shown)
            .await
            .map_err(on_client("auth"))?;
        match p.first() {
            Some(&header::OK) => return Ok(Some(auth)),
            Some(&header::ERR) => return Ok(None), // wrong password etc.
            _ => {}
        }
        if let Some(sw) = &switch {
            auth.plugin.clone_from(&sw.plugin);
            auth.nonce.clone_from(&sw.data);
        }
        let (cs, cp) = client_conn.read_packet().await.map_err(on_client("auth"))?;
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
        backend_conn
            .write_packet(cs.wrapping_sub(offset), &reply)
            .await
            .map_err(on_backend(idx, "auth"))?;
    }
}

/// How the router can log in elsewhere as the user of a finished native-password exchange.
pub(super) fn credential(topo: &Topology, user: &[u8], auth: &Auth) -> Option<Credential> {
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

/// `COM_CHANGE_USER` on a pooled connection to the same user with no database (it also
/// resets the session), answered with `SHA1(password)`; the server's final OK or ERR.
pub(super) async fn reset_pooled_to_user(
    lease: &mut Lease,
    hello: &HandshakeResponse,
    stage1: &[u8; 20],
) -> std::io::Result<Vec<u8>> {
    let token = handshake::native_token_from_stage1(stage1, &lease.greeting.nonce);
    let c = command::change_user_native(&hello.user, &token, hello.charset);
    lease.conn.write_packet(0, &c).await?;
    loop {
        let (seq, p) = lease.conn.read_packet().await?;
        if p.first() != Some(&header::EOF) {
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

impl Session {
    /// `COM_CHANGE_USER` (first chunk `c`) to `user`: relayed to the primary with its auth
    /// exchange; afterwards the session stays on the primary (its replica login would be for
    /// the old user).
    pub(super) async fn change_user(
        &mut self,
        c: hapress_wire::packet::Chunk,
        user: &[u8],
    ) -> R<()> {
        self.release_replica(true);
        self.credential = None;
        self.view.pinned = true;
        self.reusable = false;
        self.prepared.clear();
        let raw = self.client.chunk_bytes(&c).to_vec();
        self.client.consume(&c);
        let idx = self.primary.idx;
        let conn = &mut self.primary.lease.conn;
        if let Err(e) = conn.write_raw(&raw).await {
            return Err(SessionError::lost(idx, format!("COM_CHANGE_USER: {e}")));
        }
        // A client greeted with the router's nonce (a pooled connection) answers MariaDB's
        // auth switch with its old scramble (libmariadb does): scrambled again for the server.
        let rescramble =
            (self.client_nonce != self.primary.lease.greeting.nonce).then(|| Rescramble {
                client_nonce: self.client_nonce.clone(),
                stage2s: self.topo.stage2s(user),
            });
        let auth = Auth {
            plugin: String::new(),
            nonce: Vec::new(),
            token: Vec::new(),
        };
        relay_auth(
            &mut self.client,
            (idx, conn),
            auth,
            0,
            self.track_added,
            rescramble.as_ref(),
        )
        .await
        // The user change may have happened on the server.
        .map_err(|e| SessionError {
            retry_safe: false,
            ..e
        })?;
        Ok(())
    }
}
