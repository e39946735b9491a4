//! What the router reports on its status listener (`GET /status`, JSON): produced by the
//! router from its probes and counters, read by `hapress status`, `hapress up`'s supervisor,
//! `hapress chaos` and `hapress switchover`, and turned into the Prometheus metrics.

use serde::{Deserialize, Serialize};

pub use hapress_topology::decide::Io;
pub use hapress_topology::{FailoverRecord, ManagerStatus};

/// Upper bounds of the statement latency histogram's buckets, seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The router's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouterStatus {
    /// The address (as in the config's `backends`) writes go to, if there is a primary.
    pub primary: Option<String>,
    /// Client sessions open.
    pub clients: u64,
    /// Client sessions refused (connection limit reached, or no primary).
    pub refused: u64,
    /// Statements routed to the primary.
    pub routed_to_primary: u64,
    /// Statements routed to replicas.
    pub routed_to_replicas: u64,
    /// What this router's failover manager is doing.
    pub manager: ManagerStatus,
    /// Every backend, in config order.
    pub backends: Vec<BackendStatus>,
}

/// What a backend is, as far as routing goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes go to it.
    Primary,
    /// Up and not the primary: reads may go to it when it replicates and is caught up.
    Replica,
    /// Missed its last probe.
    #[default]
    Down,
}

/// One backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackendStatus {
    /// Its address in the config's `backends`.
    pub address: String,
    /// Primary, replica or down.
    pub role: Role,
    /// Answered its last probe.
    pub up: bool,
    /// `@@read_only`.
    pub read_only: bool,
    /// Its replica IO and SQL threads both run.
    pub replicating: bool,
    /// `Seconds_Behind_Master`, when it replicates.
    pub lag_seconds: Option<u64>,
    /// Has everything the primary had `maxReplicationLag` seconds ago (by GTID).
    pub caught_up: bool,
    /// Where replicas reach it (`host:port`, as in `CHANGE MASTER TO`).
    pub replication_address: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// Probes in a row it failed.
    pub failures: u32,
    /// `Master_Host:Master_Port`, when it has a replication configuration.
    pub replicates_from: Option<String>,
    /// Its IO thread, when it has a replication configuration.
    pub io_thread: Option<Io>,
    /// `Last_IO_Error` / `Last_SQL_Error`.
    pub replication_error: Option<String>,
    /// `@@gtid_current_pos`.
    pub gtid: String,
    /// Why its last probe failed.
    pub error: Option<String>,
    /// Client sessions using it now.
    pub sessions: u64,
    /// Statements routed to it.
    pub statements: u64,
    /// Connection or login failures.
    pub errors: u64,
    /// Its connection pool.
    pub pool: PoolStatus,
    /// Statement latency (command sent to answer complete).
    pub latency: Latency,
}

impl BackendStatus {
    /// A replica that replicates and has caught up: one that may take reads, and a candidate
    /// for a switchover.
    pub fn is_caught_up_replica(&self) -> bool {
        self.role == Role::Replica && self.replicating && self.caught_up
    }
}

/// A backend's connection pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolStatus {
    /// Connections open, in use or idle.
    pub open: u64,
    /// Connections idle in the pool.
    pub idle: u64,
    /// Connections opened since the start.
    pub opened: u64,
    /// Sessions that got a pooled connection.
    pub reused: u64,
    /// Pooled connections that could not serve a session (another user) and were closed.
    pub mismatched: u64,
    /// Connections opened beyond the pool's size.
    pub overflow: u64,
    /// Connections reset (`COM_RESET_CONNECTION`) when their session ended; a session that
    /// sent its connection nothing needs none.
    pub resets: u64,
}

/// A latency histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Latency {
    /// Statements per bucket of [`LATENCY_BUCKETS`] (not cumulative), then the ones slower
    /// than the last bound.
    pub counts: Vec<u64>,
    /// The sum of all latencies, microseconds.
    pub sum_us: u64,
}

impl RouterStatus {
    /// The backend writes go to.
    pub fn primary_backend(&self) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.role == Role::Primary)
    }

    /// The backend replicas reach at `replication_address`.
    pub fn by_replication_address(&self, replication_address: &str) -> Option<&BackendStatus> {
        self.backends
            .iter()
            .find(|b| b.replication_address == replication_address)
    }
}

/// The answer to `POST /switchover[?to=N]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverAnswer {
    /// The switchover happened (or there was nothing to do).
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_are_the_documented_ones() {
        let s = RouterStatus {
            primary: Some("a".into()),
            backends: vec![BackendStatus {
                address: "a".into(),
                role: Role::Primary,
                lag_seconds: Some(1),
                io_thread: Some(Io::Connecting),
                ..BackendStatus::default()
            }],
            ..RouterStatus::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["primary"], "a");
        assert_eq!(v["routedToReplicas"], 0);
        assert_eq!(v["backends"][0]["role"], "primary");
        assert_eq!(v["backends"][0]["lagSeconds"], 1);
        assert_eq!(v["backends"][0]["ioThread"], "connecting");
        assert_eq!(v["backends"][0]["pool"]["overflow"], 0);
        assert_eq!(v["manager"]["failoversTotal"], 0);
        assert_eq!(serde_json::from_value::<RouterStatus>(v).unwrap(), s);
        // What an older router left out reads as its default.
        let old: RouterStatus =
            serde_json::from_str(r#"{"primary":null,"backends":[{}]}"#).unwrap();
        assert_eq!(old.backends[0].role, Role::Down);
    }
}
