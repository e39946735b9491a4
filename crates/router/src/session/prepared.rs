//! Binary-protocol prepared statements: prepared on the primary, re-prepared on the replica
//! connection when an execution is routed there, re-addressed to the id they have there.

use hapress_wire::command::{self, Command};
use hapress_wire::response::{Outcome, ResponseTracker, Step};
use hapress_wire::stmt;

use crate::classify::Statement;
use crate::conn::Conn;

use super::Session;

/// A prepared statement of a session: prepared on the primary, and on the session's replica
/// connection the first time one of its executions is routed there.
pub(super) struct Prepared {
    /// Its classification (of the statements that change session state only `USE`,
    /// `SET GLOBAL` and a session `SET` without parameters are kept, the others pin the
    /// session to the primary).
    pub(super) stmt: Statement,
    /// Its text.
    pub(super) sql: Vec<u8>,
    /// Number of parameters.
    pub(super) params: u16,
    /// The parameter types the client last bound (a replica that has not executed the
    /// statement yet needs them).
    pub(super) types: Option<Vec<u8>>,
    /// Long data was sent for it, or it was executed with a cursor: it stays on the primary.
    pub(super) primary_only: bool,
    /// Its id on the session's replica connection.
    pub(super) on_replica: Option<u32>,
    /// The primary has been sent the current parameter types.
    pub(super) primary_has_types: bool,
}

impl Prepared {
    /// The client's execute packet `payload` for statement id `rid` on another server, with
    /// the remembered parameter types when the packet binds none.
    fn execute_as(&self, rid: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let types = self.types.as_deref().unwrap_or_default();
        stmt::readdress_execute(payload, self.params, rid, types).ok()
    }
}

/// The session's prepared statements by the id the client knows (looked up several times per
/// execution).
pub(super) type Statements = crate::ids::IdMap<Prepared>;

impl Session {
    /// The text of the statement `command` runs: a query's, or a prepared statement's as it
    /// was prepared. `None` for other commands.
    pub(super) fn statement_text<'a>(&'a self, command: &Command<'a>) -> Option<&'a [u8]> {
        match command {
            Command::Query(sql) => Some(sql),
            Command::StmtExecute { id, .. } => self.prepared.get(id).map(|p| &p.sql[..]),
            _ => None,
        }
    }

    /// `COM_STMT_EXECUTE`: the statement it runs (for the bookkeeping after it) and whether
    /// a replica may run it: a known statement, in one packet, without a cursor or long data,
    /// whose parameter types are known. Remembers the types the packet binds.
    pub(super) fn executing(
        &mut self,
        id: u32,
        payload: &[u8],
        whole: bool,
    ) -> (Option<Statement>, bool) {
        let Some(p) = self.prepared.get_mut(&id) else {
            return (None, false);
        };
        let Ok(e) = stmt::parse_execute(payload, p.params) else {
            return (Some(p.stmt.clone()), false);
        };
        if let Some(t) = e.types {
            if p.types.as_deref() != Some(t) {
                p.types = Some(t.to_vec());
                p.primary_has_types = false;
            }
        }
        if e.flags != 0 {
            p.primary_only = true; // COM_STMT_FETCH must find the cursor on the same server
        }
        let routable = whole && !p.primary_only && (p.params == 0 || p.types.is_some());
        (Some(p.stmt.clone()), routable)
    }

    /// The execute packet for the replica connection: the statement prepared there (once per
    /// connection), its id and the remembered parameter types. `None`: run it on the primary.
    pub(super) async fn readdress(&mut self, id: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let p = self.prepared.get(&id)?;
        if let Some(rid) = p.on_replica {
            return p.execute_as(rid, payload);
        }
        let command = command::stmt_prepare(&p.sql);
        let b = self.replica.as_mut()?;
        let rid = match prepare(&mut b.lease.conn, &command, self.deprecate_eof).await {
            Ok(Some(rid)) => rid,
            Ok(None) => return None, // the replica refused it: the primary runs it
            Err(_) => {
                self.release_replica(false);
                return None;
            }
        };
        let p = self.prepared.get_mut(&id)?;
        p.on_replica = Some(rid);
        p.execute_as(rid, payload)
    }

    /// An execution going to the primary without parameter types (the client bound them
    /// once, in an execution a replica ran): the packet with the types the primary lacks.
    pub(super) fn types_for_primary(
        &mut self,
        id: u32,
        payload: &[u8],
        whole: bool,
    ) -> Option<Vec<u8>> {
        let p = self.prepared.get_mut(&id)?;
        let e = stmt::parse_execute(payload, p.params).ok()?;
        if e.types.is_some() {
            p.primary_has_types = true;
            return None;
        }
        if p.params == 0 || p.primary_has_types || !whole {
            return None;
        }
        p.types.as_ref()?;
        p.primary_has_types = true;
        p.execute_as(id, payload)
    }

    /// `COM_STMT_CLOSE` of a statement also prepared on the replica: closed there too.
    pub(super) async fn close_on_replica(&mut self, id: u32) {
        let Some(p) = self.prepared.remove(&id) else {
            return;
        };
        if let (Some(rid), Some(b)) = (p.on_replica, self.replica.as_mut()) {
            if b.lease
                .conn
                .write_packet(0, &stmt::close(rid))
                .await
                .is_err()
            {
                self.release_replica(false);
            }
        }
    }
}

/// `COM_STMT_PREPARE` on a connection of the router's own: the statement id, or `None` when
/// the server answered with an error.
async fn prepare(
    conn: &mut Conn,
    command: &[u8],
    deprecate_eof: bool,
) -> std::io::Result<Option<u32>> {
    conn.write_packet(0, command).await?;
    let mut t = ResponseTracker::new(command, deprecate_eof)
        .ok_or_else(|| std::io::Error::other("no tracker"))?;
    loop {
        let (_, p) = conn.read_packet().await?;
        match t.feed(&p, true).map_err(std::io::Error::other)? {
            Step::More => {}
            Step::Done(Outcome::Prepared { id, .. }) => return Ok(Some(id)),
            Step::Done(_) => return Ok(None),
            Step::LocalInfile => return Err(std::io::Error::other("LOCAL INFILE in a prepare")),
        }
    }
}
