//! The database accounts hapress creates for its own use, and what they may do. Both runtimes
//! create them (embedded: `bootstrap`; Kubernetes: the database pods' `agent.sh`, which gets
//! the grants in its environment).

/// The account the router probes every server with, reads password hashes with (to log in to
/// replicas on a client's behalf) and, as the acting failover manager, promotes, fences and
/// re-points servers with.
pub const MONITOR_USER: &str = "hapress_router";

/// What the monitor account may do: probe (`SLAVE MONITOR`, `REPLICATION CLIENT`), read
/// password hashes, and as the failover manager stop, reset (`RELOAD`) and re-point
/// replication, kill an IO thread stuck on a hung primary (`PROCESS`, `CONNECTION ADMIN`), set
/// `read_only` and the semi-sync and GTID variables (measured on MariaDB 10.11: nothing less
/// lets it). Each is the text between `GRANT` and `TO`.
pub const MONITOR_GRANTS: [&str; 2] = [
    "SLAVE MONITOR, REPLICATION CLIENT, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, READ_ONLY ADMIN, BINLOG ADMIN, RELOAD, PROCESS, CONNECTION ADMIN ON *.*",
    "SELECT ON mysql.global_priv",
];

/// What the replication account may do.
pub const REPLICATION_GRANTS: [&str; 1] = ["REPLICATION SLAVE ON *.*"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_whole_grant_clauses() {
        for g in MONITOR_GRANTS.iter().chain(&REPLICATION_GRANTS) {
            assert!(g.contains(" ON "), "{g}");
            // agent.sh splits the list on ';'.
            assert!(!g.contains(';'), "{g}");
        }
    }
}
