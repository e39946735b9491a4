//! The routing decision: a pure function of the classified statement, the session's state and
//! whether a replica can serve it, returning the whole plan (target, what a replica must have
//! applied first, the fallback), and whether a session may follow a new primary. Table-tested
//! below; the session layer only executes the plan.

use crate::classify::{Effect, Statement, Where};
pub use crate::config::ReadYourWrites;

/// Which side a statement goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The session's primary connection.
    Primary,
    /// The session's replica connection.
    Replica,
}

/// What the session layer knows when a statement arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionView {
    /// Tied to the primary (temporary tables, locks, prepared statements, ...).
    pub pinned: bool,
    /// Inside a transaction, or `autocommit=0` (from the server's status flags).
    pub in_transaction: bool,
    /// The session has written data.
    pub wrote: bool,
    /// The GTID of the session's last write is known (a replica can wait for it).
    pub gtid_known: bool,
    /// Where the previous statement ran.
    pub previous: Option<Target>,
    /// A healthy replica within the lag limit exists and this session can log in to it.
    pub replica_available: bool,
    /// A statement used state of the primary connection that cannot be carried elsewhere
    /// (user variables, named locks, `LAST_INSERT_ID()`).
    pub connection_state: bool,
    /// Binary-protocol prepared statements are open.
    pub prepared_statements: bool,
    /// The router can log in elsewhere as the session's user.
    pub credential: bool,
}

/// What a replica must have applied before it runs a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Nothing (`readYourWrites: none`, or the session has not written).
    Nothing,
    /// The session's last write (`readYourWrites: session`).
    SessionWrite,
    /// The newest write the router has seen (`readYourWrites: global`).
    NewestWrite,
}

/// How a command is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// On the session's primary connection. When another server has become the primary since,
    /// the session moves to it first if [`movable`], else it is closed (the client reconnects,
    /// to the new primary, and re-runs what it had not sent): nothing is ever sent to a server
    /// that stopped being the primary.
    Primary,
    /// On the session's replica connection, once the replica has applied `wait_for`. The
    /// fallback is always the primary, as a read: when no replica connection can be opened or
    /// set up, the replica does not reach `wait_for` within `gtidWaitMs`, or a prepared
    /// statement cannot be prepared there; and as a write when the replica refuses the
    /// statement as read-only (a read that writes after all, such as `NEXTVAL` in a view).
    Replica {
        /// What the replica must have applied first.
        wait_for: WaitFor,
    },
}

impl Plan {
    /// The side the plan starts on.
    pub fn target(&self) -> Target {
        match self {
            Plan::Primary => Target::Primary,
            Plan::Replica { .. } => Target::Replica,
        }
    }
}

/// The plan for `st`.
pub fn decide(st: &Statement, s: &SessionView, ryw: ReadYourWrites) -> Plan {
    let wait_for = match ryw {
        ReadYourWrites::None => WaitFor::Nothing,
        ReadYourWrites::Session if s.wrote => WaitFor::SessionWrite,
        ReadYourWrites::Session => WaitFor::Nothing,
        ReadYourWrites::Global => WaitFor::NewestWrite,
    };
    match target(st, s, ryw) {
        Target::Primary => Plan::Primary,
        Target::Replica => Plan::Replica { wait_for },
    }
}

/// True when a session can move to a new primary between statements (a new login there, in the
/// same database, with the same replayed state): nothing else of it lives on the old primary
/// connection (no transaction, pinned state, prepared statements or connection state) and the
/// router can log in as its user.
pub fn movable(s: &SessionView) -> bool {
    !(s.pinned || s.in_transaction || s.connection_state || s.prepared_statements) && s.credential
}

/// Where `st` runs.
fn target(st: &Statement, s: &SessionView, ryw: ReadYourWrites) -> Target {
    if st.place == Where::Previous {
        // Unless it is forced to the primary, writes or needs the primary connection's own
        // state (`SELECT @@warning_count INTO @w`).
        if st.hint_primary || st.effect != Effect::None || st.connection_state {
            return Target::Primary;
        }
        return s.previous.unwrap_or(Target::Primary);
    }
    let read = st.place == Where::AnyServer && matches!(st.effect, Effect::None);
    let replica_allowed = read
        && !st.hint_primary
        && !s.pinned
        && !s.in_transaction
        && s.replica_available
        && (!s.wrote || ryw != ReadYourWrites::Session || s.gtid_known);
    if replica_allowed {
        Target::Replica
    } else {
        Target::Primary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    #[test]
    fn decisions() {
        let free = SessionView {
            replica_available: true,
            ..SessionView::default()
        };
        let s = ReadYourWrites::Session;
        let table: &[(&str, SessionView, ReadYourWrites, Target)] = &[
            ("SELECT 1", free, s, Target::Replica),
            (
                "SELECT 1",
                SessionView {
                    replica_available: false,
                    ..free
                },
                s,
                Target::Primary,
            ),
            (
                "SELECT 1",
                SessionView {
                    in_transaction: true,
                    ..free
                },
                s,
                Target::Primary,
            ),
            (
                "SELECT 1",
                SessionView {
                    pinned: true,
                    ..free
                },
                s,
                Target::Primary,
            ),
            (
                "SELECT 1",
                SessionView {
                    wrote: true,
                    ..free
                },
                s,
                Target::Primary,
            ),
            (
                "SELECT 1",
                SessionView {
                    wrote: true,
                    ..free
                },
                ReadYourWrites::None,
                Target::Replica,
            ),
            (
                "SELECT 1",
                SessionView {
                    wrote: true,
                    gtid_known: true,
                    ..free
                },
                s,
                Target::Replica,
            ),
            (
                "SELECT 1",
                SessionView {
                    wrote: true,
                    ..free
                },
                ReadYourWrites::Global,
                Target::Replica,
            ),
            ("/* hapress:primary */ SELECT 1", free, s, Target::Primary),
            ("INSERT INTO t VALUES (1)", free, s, Target::Primary),
            ("SET NAMES utf8mb4", free, s, Target::Primary),
            (
                "SELECT FOUND_ROWS()",
                SessionView {
                    previous: Some(Target::Replica),
                    ..free
                },
                s,
                Target::Replica,
            ),
            (
                "SHOW WARNINGS",
                SessionView {
                    previous: Some(Target::Replica),
                    ..free
                },
                s,
                Target::Replica,
            ),
            ("SHOW WARNINGS", free, s, Target::Primary),
            (
                "/* hapress:primary */ SELECT @@warning_count",
                SessionView {
                    previous: Some(Target::Replica),
                    ..free
                },
                s,
                Target::Primary,
            ),
            (
                "SELECT @@warning_count INTO @w",
                SessionView {
                    previous: Some(Target::Replica),
                    ..free
                },
                s,
                Target::Primary,
            ),
            ("SELECT 1 INTO @x", free, s, Target::Primary),
        ];
        for (sql, view, ryw, want) in table {
            let plan = decide(&classify(sql.as_bytes()), view, *ryw);
            assert_eq!(plan.target(), *want, "{sql} {view:?}");
        }
    }

    #[test]
    fn a_replica_read_waits_for_what_read_your_writes_asks() {
        let free = SessionView {
            replica_available: true,
            ..SessionView::default()
        };
        let wrote = SessionView {
            wrote: true,
            gtid_known: true,
            ..free
        };
        let read = classify(b"SELECT 1");
        let table = [
            (free, ReadYourWrites::None, WaitFor::Nothing),
            (wrote, ReadYourWrites::None, WaitFor::Nothing),
            (free, ReadYourWrites::Session, WaitFor::Nothing),
            (wrote, ReadYourWrites::Session, WaitFor::SessionWrite),
            (free, ReadYourWrites::Global, WaitFor::NewestWrite),
            (wrote, ReadYourWrites::Global, WaitFor::NewestWrite),
        ];
        for (view, ryw, wait_for) in table {
            assert_eq!(
                decide(&read, &view, ryw),
                Plan::Replica { wait_for },
                "{view:?} {ryw:?}"
            );
        }
    }

    #[test]
    fn only_a_session_with_nothing_on_its_primary_connection_follows_a_new_primary() {
        let free = SessionView {
            credential: true,
            ..SessionView::default()
        };
        assert!(movable(&free));
        // Written, read from replicas, last statement on a replica: still movable.
        assert!(movable(&SessionView {
            wrote: true,
            gtid_known: true,
            previous: Some(Target::Replica),
            replica_available: true,
            ..free
        }));
        for stuck in [
            SessionView {
                pinned: true,
                ..free
            },
            SessionView {
                in_transaction: true,
                ..free
            },
            SessionView {
                connection_state: true,
                ..free
            },
            SessionView {
                prepared_statements: true,
                ..free
            },
            SessionView {
                credential: false,
                ..free
            },
        ] {
            assert!(!movable(&stuck), "{stuck:?}");
        }
    }
}
