//! What a command leaves behind in the session: transaction state, replayed `SET`s, the
//! current database, prepared statements, pinning, the last write's GTID.

use hapress_wire::command::Command;
use hapress_wire::consts::status;
use hapress_wire::response::Outcome;

use crate::classify::{classify, Effect, Statement, Where};
use crate::route::Target;

use super::prepared::Prepared;
use super::Session;

impl Session {
    /// Session bookkeeping after a command.
    pub(super) fn after(
        &mut self,
        command: &Command,
        stmt: Option<Statement>,
        target: Target,
        outcome: Option<Outcome>,
    ) {
        let ok = matches!(
            outcome,
            Some(Outcome::Ok(_)) | Some(Outcome::Prepared { .. }) | None
        );
        if let Some(Outcome::Ok(Some(st))) = outcome {
            self.status = st & super::LASTING_STATUS;
        }
        if target == Target::Primary {
            if let Some(Outcome::Ok(Some(st))) = outcome {
                self.view.in_transaction =
                    st & status::IN_TRANS != 0 || st & status::AUTOCOMMIT == 0;
            }
        }
        // Where the previous statement ran (`SHOW WARNINGS`, `FOUND_ROWS()` run there).
        // Commands that run none leave it as it is: closing a statement, long data, and the
        // prepare of one of those readers that neither failed nor warned (mysqltest's and
        // PDO's prepare of `SHOW WARNINGS` goes to the primary, its execution where the
        // statement before ran). Preparing anything else may clear the primary's warnings
        // (MariaDB does when the statement uses a table): it counts as run there.
        let prepared = match (command, &outcome) {
            (Command::StmtPrepare(sql), Some(Outcome::Prepared { .. })) => Some(classify(sql)),
            _ => None,
        };
        let ran_nothing = match (command, &outcome, &prepared) {
            (_, Some(Outcome::Prepared { warnings: 0, .. }), Some(p)) => p.place == Where::Previous,
            (Command::StmtClose(_) | Command::StmtSendLongData(_), _, _) => true,
            _ => false,
        };
        if !ran_nothing {
            self.view.previous = Some(target);
        }
        if !command.resettable() {
            // Replication, shutdown, debug...: what they leave behind is unknown.
            self.reusable = false;
        }
        match command {
            Command::InitDb(db) if ok => {
                self.db = Some(db.to_vec());
                self.release_replica(true); // the next replica login uses the new database
            }
            Command::ResetConnection if ok => {
                self.replay.clear();
                self.view.connection_state = false;
                self.release_replica(true);
                self.prepared.clear();
            }
            Command::StmtPrepare(sql) => {
                if let (Some(Outcome::Prepared { id, params, .. }), Some(stmt)) =
                    (outcome, prepared)
                {
                    // A prepared `SET` of session state without parameters is replayed like
                    // the text one each time it runs (PDO without emulation prepares every
                    // query); with parameters its values are unknown here: pinned.
                    let replayable = stmt.effect == Effect::Replay && params == 0;
                    // A prepared `USE` changes the database when it runs, as the text one; a
                    // prepared `SET GLOBAL` without parameters is run on the replicas too (with
                    // them, its values are unknown here: pinned, as a session `SET`).
                    let kept = match stmt.effect {
                        Effect::None | Effect::Write | Effect::UseDb(_) => true,
                        Effect::SetGlobal { .. } => params == 0,
                        _ => false,
                    };
                    if kept || replayable {
                        let sql = sql.to_vec();
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
            Command::StmtSendLongData(id) => {
                if let Some(p) = self.prepared.get_mut(id) {
                    p.primary_only = true;
                }
            }
            Command::SetOption => {
                self.view.pinned = true;
                self.reusable = false;
            }
            _ => {}
        }
        if let Some(db) = self.schema_seen.take() {
            // The server says the connection's database changed: `USE` inside `EXECUTE
            // IMMEDIATE` or a procedure, or a `DROP DATABASE` of the current one (none now;
            // text, prepared or not). The replica connection, still in the old one, is given
            // up (`SELECT DATABASE()` there would name it); the reads of a session without a
            // database go to the primary.
            let db = (!db.is_empty()).then_some(db);
            if db != self.db {
                self.db = db;
                self.release_replica(true);
            }
        }
        let Some(st) = stmt else {
            return;
        };
        if target == Target::Primary && st.connection_state {
            self.view.connection_state = true;
        }
        if !ok {
            return;
        }
        match st.effect {
            Effect::Replay => {
                // An execution of a prepared SET: its text, as prepared.
                match self.statement_text(command).map(<[u8]>::to_vec) {
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
                // A `USE` among several statements is not seen.
                self.db_exact &= why != "multi-statement query";
                // A reset keeps the active role: such a connection is not pooled.
                self.reusable &= why != "SET ROLE";
                self.release_replica(true);
            }
            Effect::Write => {
                self.view.wrote = true;
                // `DROP DATABASE` of the current one leaves none (any write naming a drop,
                // comments included, makes the pool ask the server), prepared or not.
                if let Some(sql) = self.statement_text(command) {
                    let head = &sql[..sql.len().min(256)];
                    let drop = head.windows(4).any(|w| w.eq_ignore_ascii_case(b"drop"));
                    self.db_exact &= !drop;
                }
                if target == Target::Primary && !self.answer_gtid {
                    // A write whose GTID the answer did not carry (a sequence advanced by a
                    // SELECT, a result set without DEPRECATE_EOF): no replica can be known
                    // to have it, so the session's reads go to the primary until its next
                    // write with a GTID.
                    self.last_gtid = None;
                }
                if st.changes_accounts {
                    self.topo.forget_logins();
                }
            }
            Effect::SetGlobal { .. } => self.topo.backends.iter().for_each(|b| b.pool.renew()),
            Effect::None => {}
        }
    }
}
