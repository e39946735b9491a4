//! The MySQL/MariaDB client-server protocol as pure functions over bytes: no sockets, no async
//! runtime, so every rule is table-tested and fuzzable.
//!
//! # Layout
//! - [`packet`]: physical packets (4-byte header, 16 MB splits), the incremental [`packet::Framer`].
//! - [`codec`]: length-encoded integers and strings, a bounds-checked [`codec::Reader`].
//! - [`consts`]: command bytes, capability and status flags.
//! - [`command`]: client commands decoded once ([`command::Command`]) and the encoders of the
//!   commands a proxy sends itself.
//! - [`handshake`]: the server greeting, the client's handshake response, auth scrambles.
//! - [`response`]: OK/ERR packets and [`response::ResponseTracker`], which tells where a
//!   server's answer to one command ends (result sets, multi-results, prepared statements).
//! - [`rows`]: text result sets decoded into rows (the queries a proxy runs itself).
//! - [`stmt`]: binary-protocol prepared statements re-addressed to another server.

pub mod codec;
pub mod command;
pub mod consts;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod rows;
pub mod stmt;

/// A protocol violation by the peer: the session that saw it must end, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Result of parsing.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ProtocolError(msg.into()))
}
