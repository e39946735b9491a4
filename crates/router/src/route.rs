//! The routing decision: a pure function of the classified statement, the session's state and
//! whether a replica can serve it. Table-tested below; the session layer only executes it.

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
}

/// Where `st` runs.
pub fn decide(st: &Statement, s: &SessionView, ryw: ReadYourWrites) -> Target {
    if st.place == Where::Previous {
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
            ("SELECT 1 INTO @x", free, s, Target::Primary),
        ];
        for (sql, view, ryw, want) in table {
            assert_eq!(
                decide(&classify(sql.as_bytes()), view, *ryw),
                *want,
                "{sql} {view:?}"
            );
        }
    }
}
