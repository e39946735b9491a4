//! Why a session ended abnormally: which side failed and whether what the client was doing may
//! safely be sent again (pingora's error sides and retry flag are the model).

/// The side of a session that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: it hung up, broke the protocol, or did not log in in time.
    Client,
    /// Backend `0` (an index into the topology's backends): it could not be reached, refused,
    /// or failed during a command.
    Backend(usize),
    /// The router ended the session on purpose: no primary, the primary changed under a
    /// session that cannot move, TLS asked for.
    Router,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Side::Client => f.write_str("client"),
            Side::Backend(i) => write!(f, "backend {i}"),
            Side::Router => f.write_str("router"),
        }
    }
}

/// A session's end, other than the client's quit or hang-up between commands. Logged, never
/// sent to other sessions.
#[derive(Debug, thiserror::Error)]
#[error("{side}: {what}")]
pub struct SessionError {
    /// Who failed.
    pub side: Side,
    /// Nothing of the client's current command can have run on a server, so it may be sent
    /// again on a new connection. False when a backend was lost (or the client hung up) with
    /// the command sent: it may have run, and the router never re-runs it (the client gets
    /// 2013, as from a server that died mid-statement).
    pub retry_safe: bool,
    /// What happened.
    pub what: String,
}

impl SessionError {
    /// The client failed (outside a running statement).
    pub fn client(what: impl Into<String>) -> Self {
        Self {
            side: Side::Client,
            retry_safe: true,
            what: what.into(),
        }
    }

    /// Backend `idx` failed before the client's command reached it (connect, greeting, login).
    pub fn backend(idx: usize, what: impl Into<String>) -> Self {
        Self {
            side: Side::Backend(idx),
            retry_safe: true,
            what: what.into(),
        }
    }

    /// Backend `idx` was lost with a command sent to it.
    pub fn lost(idx: usize, what: impl Into<String>) -> Self {
        Self {
            side: Side::Backend(idx),
            retry_safe: false,
            what: what.into(),
        }
    }

    /// The router ended the session on purpose, between commands.
    pub fn router(what: impl Into<String>) -> Self {
        Self {
            side: Side::Router,
            retry_safe: true,
            what: what.into(),
        }
    }

    /// The client hung up while its command ran.
    pub fn client_gone_mid_command() -> Self {
        Self {
            side: Side::Client,
            retry_safe: false,
            what: "the client hung up during a statement".into(),
        }
    }
}

/// Maps an I/O or protocol error of the client to a [`SessionError`].
pub(super) fn on_client<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SessionError + '_ {
    move |e| SessionError::client(format!("{what}: {e}"))
}

/// Maps an I/O or protocol error of backend `idx`, before a command reached it, to a
/// [`SessionError`].
pub(super) fn on_backend<E: std::fmt::Display>(
    idx: usize,
    what: &str,
) -> impl FnOnce(E) -> SessionError + '_ {
    move |e| SessionError::backend(idx, format!("{what}: {e}"))
}
