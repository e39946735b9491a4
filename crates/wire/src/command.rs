//! Client commands: [`Command::parse`] decodes the first chunk of a command packet once, and
//! the encoders build the commands a proxy sends on its own connections (`COM_INIT_DB`,
//! `COM_QUERY` of a replayed statement, `COM_RESET_CONNECTION`, `COM_STMT_PREPARE`,
//! `COM_CHANGE_USER`).

use crate::consts::cmd;
use crate::handshake::NATIVE_PASSWORD;
use crate::{err, Result};

/// A client command, decoded from its packet's payload (its first 16 MB for a longer one).
/// Borrowed fields point into that payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `COM_QUIT`.
    Quit,
    /// `COM_INIT_DB`: the database to switch to.
    InitDb(&'a [u8]),
    /// `COM_QUERY`: the statement text.
    Query(&'a [u8]),
    /// `COM_PROCESS_KILL`: the thread id to kill (the connection, as `KILL CONNECTION`).
    Kill(u32),
    /// `COM_CHANGE_USER`: the user it changes to (the rest is an auth exchange).
    ChangeUser {
        /// User name.
        user: &'a [u8],
    },
    /// `COM_STMT_PREPARE`: the statement text.
    StmtPrepare(&'a [u8]),
    /// `COM_STMT_EXECUTE` (the rest needs the statement's parameter count:
    /// [`crate::stmt::parse_execute`]).
    StmtExecute {
        /// Statement id.
        id: u32,
        /// Cursor flags (0: no cursor).
        flags: u8,
    },
    /// `COM_STMT_SEND_LONG_DATA` (not answered).
    StmtSendLongData(u32),
    /// `COM_STMT_CLOSE` (not answered).
    StmtClose(u32),
    /// `COM_STMT_RESET`.
    StmtReset(u32),
    /// `COM_STMT_FETCH`.
    StmtFetch(u32),
    /// `COM_RESET_CONNECTION`.
    ResetConnection,
    /// `COM_SET_OPTION`.
    SetOption,
    /// Any other command (`COM_PING`, `COM_STATISTICS`, `COM_FIELD_LIST`, replication,
    /// shutdown, debug, unknown bytes): forwarded as it is.
    Other(u8),
}

impl<'a> Command<'a> {
    /// Decodes a command payload. An empty payload, or a statement command too short for its
    /// statement id, is an error.
    pub fn parse(p: &'a [u8]) -> Result<Self> {
        let Some((&code, rest)) = p.split_first() else {
            return err("empty command packet");
        };
        let id = || -> Result<u32> {
            match rest.get(..4) {
                Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                None => err(format!("command {code:#04x} without its statement id")),
            }
        };
        Ok(match code {
            cmd::QUIT => Self::Quit,
            cmd::INIT_DB => Self::InitDb(rest),
            cmd::QUERY => Self::Query(rest),
            cmd::PROCESS_KILL => Self::Kill(id()?),
            cmd::CHANGE_USER => Self::ChangeUser {
                user: rest.split(|&b| b == 0).next().unwrap_or_default(),
            },
            cmd::STMT_PREPARE => Self::StmtPrepare(rest),
            cmd::STMT_EXECUTE => Self::StmtExecute {
                id: id()?,
                flags: rest.get(4).copied().unwrap_or(0),
            },
            cmd::STMT_SEND_LONG_DATA => Self::StmtSendLongData(id()?),
            cmd::STMT_CLOSE => Self::StmtClose(id()?),
            cmd::STMT_RESET => Self::StmtReset(id()?),
            cmd::STMT_FETCH => Self::StmtFetch(id()?),
            cmd::RESET_CONNECTION => Self::ResetConnection,
            cmd::SET_OPTION => Self::SetOption,
            other => Self::Other(other),
        })
    }

    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Self::Quit => cmd::QUIT,
            Self::InitDb(_) => cmd::INIT_DB,
            Self::Query(_) => cmd::QUERY,
            Self::Kill(_) => cmd::PROCESS_KILL,
            Self::ChangeUser { .. } => cmd::CHANGE_USER,
            Self::StmtPrepare(_) => cmd::STMT_PREPARE,
            Self::StmtExecute { .. } => cmd::STMT_EXECUTE,
            Self::StmtSendLongData(_) => cmd::STMT_SEND_LONG_DATA,
            Self::StmtClose(_) => cmd::STMT_CLOSE,
            Self::StmtReset(_) => cmd::STMT_RESET,
            Self::StmtFetch(_) => cmd::STMT_FETCH,
            Self::ResetConnection => cmd::RESET_CONNECTION,
            Self::SetOption => cmd::SET_OPTION,
            Self::Other(c) => *c,
        }
    }

    /// True for the commands whose effects a connection reset undoes, so the connection may
    /// be pooled after them (not replication, shutdown, debug or unknown commands). Decided by
    /// the command byte, so a malformed known command (kept as [`Command::Other`]) is one too.
    pub fn resettable(&self) -> bool {
        matches!(
            self.code(),
            cmd::QUIT
                | cmd::INIT_DB
                | cmd::QUERY
                | cmd::FIELD_LIST
                | cmd::STATISTICS
                | cmd::PROCESS_KILL
                | cmd::PING
                | cmd::CHANGE_USER
                | cmd::STMT_PREPARE
                | cmd::STMT_EXECUTE
                | cmd::STMT_SEND_LONG_DATA
                | cmd::STMT_CLOSE
                | cmd::STMT_RESET
                | cmd::SET_OPTION
                | cmd::STMT_FETCH
                | cmd::RESET_CONNECTION
        )
    }
}

/// `COM_QUERY` of `sql`.
pub fn query(sql: &[u8]) -> Vec<u8> {
    [&[cmd::QUERY][..], sql].concat()
}

/// `COM_INIT_DB` of `db`.
pub fn init_db(db: &[u8]) -> Vec<u8> {
    [&[cmd::INIT_DB][..], db].concat()
}

/// `COM_STMT_PREPARE` of `sql`.
pub fn stmt_prepare(sql: &[u8]) -> Vec<u8> {
    [&[cmd::STMT_PREPARE][..], sql].concat()
}

/// `COM_RESET_CONNECTION`.
pub fn reset_connection() -> [u8; 1] {
    [cmd::RESET_CONNECTION]
}

/// `COM_CHANGE_USER` to `user` with no database, answered with the `mysql_native_password`
/// `token`, collation `charset` and no connection attributes.
pub fn change_user_native(user: &[u8], token: &[u8], charset: u8) -> Vec<u8> {
    let mut c = vec![cmd::CHANGE_USER];
    c.extend_from_slice(user);
    c.push(0);
    c.push(token.len() as u8);
    c.extend_from_slice(token);
    c.push(0); // no database
    c.extend_from_slice(&u16::from(charset).to_le_bytes());
    c.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    c.push(0);
    c.push(0); // no connection attributes
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_to_their_fields_and_back_to_their_byte() {
        let table: &[(&[u8], Command)] = &[
            (&[cmd::QUIT], Command::Quit),
            (b"\x02wp", Command::InitDb(b"wp")),
            (b"\x03SELECT 1", Command::Query(b"SELECT 1")),
            (&[cmd::PROCESS_KILL, 7, 1, 0, 0], Command::Kill(263)),
            (b"\x11bob\x00\x14xxxx", Command::ChangeUser { user: b"bob" }),
            (b"\x16SELECT ?", Command::StmtPrepare(b"SELECT ?")),
            (
                &[cmd::STMT_EXECUTE, 2, 0, 0, 0, 1, 1, 0, 0, 0],
                Command::StmtExecute { id: 2, flags: 1 },
            ),
            (
                &[cmd::STMT_SEND_LONG_DATA, 3, 0, 0, 0, 0, 0, b'x'],
                Command::StmtSendLongData(3),
            ),
            (&[cmd::STMT_CLOSE, 4, 0, 0, 0], Command::StmtClose(4)),
            (&[cmd::STMT_RESET, 5, 0, 0, 0], Command::StmtReset(5)),
            (
                &[cmd::STMT_FETCH, 6, 0, 0, 0, 10, 0, 0, 0],
                Command::StmtFetch(6),
            ),
            (&[cmd::RESET_CONNECTION], Command::ResetConnection),
            (&[cmd::SET_OPTION, 0, 0], Command::SetOption),
            (&[cmd::PING], Command::Other(cmd::PING)),
            (&[0x12], Command::Other(0x12)), // COM_BINLOG_DUMP
        ];
        for (bytes, want) in table {
            let got = Command::parse(bytes).unwrap();
            assert_eq!(&got, want, "{bytes:?}");
            assert_eq!(got.code(), bytes[0], "{want:?}");
        }
    }

    #[test]
    fn truncated_commands_are_errors_and_unknown_ones_are_not_resettable() {
        assert!(Command::parse(&[]).is_err());
        for c in [
            cmd::PROCESS_KILL,
            cmd::STMT_EXECUTE,
            cmd::STMT_CLOSE,
            cmd::STMT_FETCH,
        ] {
            assert!(Command::parse(&[c, 1, 0, 0]).is_err(), "{c:#04x}");
        }
        assert!(Command::Other(cmd::PING).resettable());
        assert!(!Command::Other(cmd::SHUTDOWN).resettable());
        assert!(!Command::Other(0x12).resettable());
        assert!(Command::Query(b"SELECT 1").resettable());
        // A known command too short to decode is forwarded as `Other`: still resettable.
        assert!(Command::Other(cmd::STMT_CLOSE).resettable());
    }

    #[test]
    fn encoded_commands_decode_to_what_was_encoded() {
        assert_eq!(
            Command::parse(&query(b"SET NAMES utf8mb4")).unwrap(),
            Command::Query(b"SET NAMES utf8mb4")
        );
        assert_eq!(
            Command::parse(&init_db(b"wp")).unwrap(),
            Command::InitDb(b"wp")
        );
        assert_eq!(
            Command::parse(&stmt_prepare(b"SELECT ?")).unwrap(),
            Command::StmtPrepare(b"SELECT ?")
        );
        assert_eq!(
            Command::parse(&reset_connection()).unwrap(),
            Command::ResetConnection
        );
        let cu = change_user_native(b"wp", &[9; 20], 45);
        assert_eq!(
            Command::parse(&cu).unwrap(),
            Command::ChangeUser { user: b"wp" }
        );
        // user NUL, token length 20, token, empty database NUL, charset 45, plugin NUL, no attrs.
        assert_eq!(
            cu.len(),
            1 + 3 + 1 + 20 + 1 + 2 + NATIVE_PASSWORD.len() + 1 + 1
        );
        assert_eq!(&cu[26..28], &[45, 0]);
    }
}
