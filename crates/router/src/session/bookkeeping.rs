//! What a command leaves behind in the session: transaction state, replayed `SET`s, the
//! current database, prepared statements, pinning, the last write's GTID.

use hapress_wire::consts::{cmd, status};
use hapress_wire::response::Outcome;
use hapress_wire::stmt;

use crate::classify::{classify, Effect, Statement};
use crate::route::Target;

use super::prepared::Prepared;
use super::Session;

/// Commands after which a connection may still be reset and pooled.
const KNOWN_COMMANDS: [u8; 16] = [
    cmd::QUIT,
    cmd::INIT_DB,
    cmd::QUERY,
    cmd::FIELD_LIST,
    cmd::STATISTICS,
    cmd::PROCESS_KILL,
    cmd::PING,
    cmd::CHANGE_USER,
    cmd::STMT_PREPARE,
    cmd::STMT_EXECUTE,
    cmd::STMT_SEND_LONG_DATA,
    cmd::STMT_CLOSE,
    cmd::STMT_RESET,
    cmd::SET_OPTION,
    cmd::STMT_FETCH,
    cmd::RESET_CONNECTION,
];

impl Session {
    /// Session bookkeeping after a command.
    pub(super) fn after(
        &mut self,
        command: Option<u8>,
        stmt: Option<Statement>,
        target: Target,
        outcome: Option<Outcome>,
        payload: &[u8],
    ) {
        let ok = matches!(
            outcome,
            Some(Outcome::Ok(_)) | Some(Outcome::Prepared { .. }) | None
        );
        if target == Target::Primary {
            if let Some(Outcome::Ok(Some(st))) = outcome {
                self.view.in_transaction =
                    st & status::IN_TRANS != 0 || st & status::AUTOCOMMIT == 0;
            }
        }
        self.view.previous = Some(target);
        if !command.is_some_and(|c| KNOWN_COMMANDS.contains(&c)) {
            // Replication, shutdown, debug...: what they leave behind is unknown.
            self.reusable = false;
        }
        match command {
            Some(cmd::INIT_DB) if ok => {
                self.db = Some(payload[1..].to_vec());
                self.release_replica(true); // the next replica login uses the new database
            }
            Some(cmd::RESET_CONNECTION) if ok => {
                self.replay.clear();
                self.connection_state = false;
                self.release_replica(true);
                self.prepared.clear();
            }
            Some(cmd::STMT_PREPARE) => {
                if let Some(Outcome::Prepared { id, params }) = outcome {
                    let stmt = classify(&payload[1..]);
                    // A prepared `SET` of session state without parameters is replayed like
                    // the text one each time it runs (PDO without emulation prepares every
                    // query); with parameters its values are unknown here: pinned.
                    let replayable = stmt.effect == Effect::Replay && params == 0;
                    if matches!(stmt.effect, Effect::None | Effect::Write) || replayable {
                        let sql = payload[1..].to_vec();
                        self.prepared.insert(
                            id,
                            Prepared {
                                stmt,
                                sql,
                                params,
                                types: None,
                                primary_only: false,
                                on_replica: None,
                                primary_has_types: false,
                            },
                        );
                    } else {
                        self.view.pinned = true;
                    }
                }
            }
            Some(cmd::STMT_SEND_LONG_DATA) => {
                if let Some(p) =
                    stmt::statement_id(payload).and_then(|id| self.prepared.get_mut(&id))
                {
                    p.primary_only = true;
                }
            }
            Some(cmd::SET_OPTION) => {
                self.view.pinned = true;
                self.reusable = false;
            }
            _ => {}
        }
        let Some(st) = stmt else {
            return;
        };
        if target == Target::Primary && st.connection_state {
            self.connection_state = true;
        }
        if !ok {
            return;
        }
        match st.effect {
            Effect::Replay => {
                let text = match command {
                    // An execution of a prepared SET: its text, as prepared.
                    Some(cmd::STMT_EXECUTE) => stmt::statement_id(payload)
                        .and_then(|id| self.prepared.get(&id))
                        .map(|p| p.sql.clone()),
                    _ => Some(payload[1..].to_vec()),
                };
                match text {
                    Some(t) => self.replay.push(t),
                    None => self.view.pinned = true,
                }
                self.release_replica(true);
            }
            Effect::UseDb(name) => {
                self.db = Some(name.into_bytes());
                self.release_replica(true); // the next replica login uses the new database
            }
            Effect::Pin(why) => {
                self.view.pinned = true;
                // A reset keeps the active role: such a connection is not pooled.
                self.reusable &= why != "SET ROLE";
                self.release_replica(true);
            }
            Effect::Write => {
                self.view.wrote = true;
                if target == Target::Primary && !self.answer_gtid {
                    // A write whose GTID the answer did not carry (a sequence advanced by a
                    // SELECT, a result set without DEPRECATE_EOF): no replica can be known
                    // to have it, so the session's reads go to the primary until its next
                    // write with a GTID.
                    self.last_gtid = None;
                }
                if may_change_accounts(&payload[1..]) {
                    self.topo.forget_logins();
                }
            }
            Effect::SetGlobal => self.topo.backends.iter().for_each(|b| b.pool.renew()),
            Effect::None => {}
        }
    }
}

/// A write that may create, drop or change an account or its password (`CREATE USER`,
/// `GRANT`, `SET PASSWORD`, `FLUSH PRIVILEGES`, any write to the `mysql` schema...).
fn may_change_accounts(sql: &[u8]) -> bool {
    let head = &sql[..sql.len().min(512)];
    let lower = head.to_ascii_lowercase();
    [
        &b"user"[..],
        b"grant",
        b"revoke",
        b"password",
        b"privileges",
        b"role",
        b"mysql",
    ]
    .iter()
    .any(|w| lower.windows(w.len()).any(|x| x == *w))
}
