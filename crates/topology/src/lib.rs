//! hapress's topology decisions, with no I/O and no async runtime, shared by the router (which
//! runs the failover manager in both runtimes), the embedded supervisor and `hapress status`.
//!
//! # Layout
//! - [`gtid`]: GTID positions: parse, compare, the most advanced.
//! - [`decide`]: the primary routers send writes to, what the acting manager does (fail over,
//!   fence, re-point, report a diverged server), and which manager acts.
//! - This file: the records of what the manager did, as the router reports them.

pub mod decide;
pub mod gtid;

/// One failover, for the status and the history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// When it finished (seconds since the Unix epoch).
    pub at: u64,
    /// The lost primary's replication address, if one was known.
    pub from: Option<String>,
    /// The new primary's replication address.
    pub to: String,
    /// Why.
    pub reason: String,
    /// From the decision to the promoted server being writable, milliseconds.
    pub took_ms: u64,
    /// From the lost primary's first unanswered probe to the decision, milliseconds (0 when
    /// it answered: restarted read-only).
    #[serde(default)]
    pub detected_ms: u64,
}

/// What the manager of one router is doing, for `/status`, metrics and `hapress status`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagerStatus {
    /// Automatic failover is configured on this router.
    pub enabled: bool,
    /// This router holds the lock on a majority of the servers and acts.
    pub leader: bool,
    /// Locks this router holds, by server.
    pub locks_held: usize,
    /// Failovers this router performed (the newest last, at most [`HISTORY`]).
    pub failovers: Vec<FailoverRecord>,
    /// Failovers this router performed since it started.
    #[serde(default)]
    pub failovers_total: u64,
    /// Servers that cannot replicate any more and need a rebuild: replication address and
    /// why.
    pub diverged: Vec<(String, String)>,
    /// Actions this router executed (failovers, fences, re-points), and how many failed.
    pub actions: u64,
    /// Actions that failed.
    pub action_errors: u64,
}

/// Failovers kept in [`ManagerStatus::failovers`].
pub const HISTORY: usize = 20;

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
