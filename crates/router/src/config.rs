//! `hapress router --config FILE`: the router's settings (YAML, camelCase).

use std::path::{Path, PathBuf};

use crate::route::ReadYourWrites;

/// Router settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where clients connect: `host:port`, or an absolute path for a unix socket.
    pub listen: String,
    /// More addresses clients may connect to, as `listen`.
    #[serde(default)]
    pub also_listen: Vec<String>,
    /// The MariaDB servers (`host:port` or unix socket path), primary and replicas in any order;
    /// the router finds the primary itself (the one server with `read_only=OFF`).
    pub backends: Vec<String>,
    /// Account the router probes with and reads password hashes with (needs `SLAVE MONITOR`,
    /// `SELECT ON mysql.global_priv`).
    pub monitor_user: String,
    /// File holding that account's password (mode 0600; never on a command line).
    pub monitor_password_file: PathBuf,
    /// Replicas further behind than this many seconds get no reads.
    #[serde(default = "default_lag")]
    pub max_replication_lag: u64,
    /// `none`, `session` (a session reads its own writes) or `global` (every read sees every
    /// write acknowledged through this router).
    #[serde(default)]
    pub read_your_writes: ReadYourWrites,
    /// How long a replica may take to reach the GTID a read must see before the read goes to
    /// the primary instead (milliseconds).
    #[serde(default = "default_gtid_wait")]
    pub gtid_wait_ms: u64,
    /// How often every backend is probed (milliseconds).
    #[serde(default = "default_probe")]
    pub probe_interval_ms: u64,
    /// Timeout of one probe: connect, login and its queries (milliseconds). A server that
    /// does not answer within it counts as down for routing; missed probes in a row are how the
    /// failover manager detects a lost primary.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout_ms: u64,
    /// Where replicas reach each backend (`host:port`, as in `CHANGE MASTER TO`), in the order
    /// of `backends`; by default the backends' own addresses. The router compares it with each
    /// replica's `Master_Host:Master_Port` to see which server it follows, and the failover
    /// manager points replicas at it.
    #[serde(default)]
    pub replication_addresses: Option<Vec<String>>,
    /// Automatic failover by this router (absent: the router only follows the primary). Any
    /// number of routers may have it: only the one holding the lock on a majority of the
    /// servers acts.
    #[serde(default)]
    pub failover: Option<FailoverConfig>,
    /// Timeout for connecting and logging in to a backend (milliseconds).
    #[serde(default = "default_connect")]
    pub connect_timeout_ms: u64,
    /// Client connections accepted at once; more get ERR 1040 (too many connections).
    #[serde(default = "default_max_clients")]
    pub max_client_connections: usize,
    /// Backend connections kept per backend, in use or idle in its pool: a finished session's
    /// connections are reset and reused by the next session of the same user. Sessions beyond
    /// it open connections of their own, closed when they end (the server's `max_connections`
    /// is the limit). 0 turns pooling off.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Idle pooled connections are closed after this long (milliseconds).
    #[serde(default = "default_pool_idle")]
    pub pool_idle_timeout_ms: u64,
    /// Optional HTTP listener for `/metrics` (Prometheus) and `/status` (JSON).
    #[serde(default)]
    pub status_listen: Option<String>,
}

/// Automatic failover settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverConfig {
    /// The account replicas replicate with (`CHANGE MASTER TO MASTER_USER`).
    pub replication_user: String,
    /// File holding its password (mode 0600).
    pub replication_password_file: PathBuf,
    /// Probes in a row the primary must miss before it is taken for lost.
    #[serde(default = "default_detect_probes")]
    pub detect_probes: u32,
    /// How long (milliseconds) every replica of a primary that misses probes must have
    /// received nothing from it (no event, no heartbeat) to confirm it is gone.
    #[serde(default = "default_silence")]
    pub silence_ms: u64,
    /// The heartbeat period replicas are given (`MASTER_HEARTBEAT_PERIOD`, milliseconds): a
    /// primary that is alive but idle still sends this often.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Turn semi-synchronous replication's primary side on for a promoted server.
    #[serde(default = "default_true")]
    pub semi_sync: bool,
    /// The backend (as written in `backends`) that should be the primary: when another one
    /// is and this one is a caught-up replica, the acting router switches over to it.
    #[serde(default)]
    pub preferred_primary: Option<String>,
}

impl FailoverConfig {
    /// The replication account's password.
    pub fn replication_password(&self) -> Result<String, String> {
        read_secret(&self.replication_password_file)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
    }
}

fn default_true() -> bool {
    true
}
fn default_detect_probes() -> u32 {
    3
}
fn default_silence() -> u64 {
    1500
}
fn default_heartbeat() -> u64 {
    500
}
fn default_probe_timeout() -> u64 {
    500
}
fn default_lag() -> u64 {
    5
}
fn default_gtid_wait() -> u64 {
    50
}
fn default_probe() -> u64 {
    250
}
fn default_connect() -> u64 {
    2000
}
fn default_pool_size() -> usize {
    64
}
fn default_pool_idle() -> u64 {
    60_000
}
fn default_max_clients() -> usize {
    10_000
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let c: Config =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        c.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(c)
    }

    /// Checks values a YAML parser cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("backends: at least one server is needed".into());
        }
        if self.probe_interval_ms < 50 {
            return Err(format!(
                "probeIntervalMs: must be >= 50, got {}",
                self.probe_interval_ms
            ));
        }
        if self.max_client_connections == 0 {
            return Err("maxClientConnections: must be >= 1".into());
        }
        if self.probe_timeout_ms < 10 {
            return Err(format!(
                "probeTimeoutMs: must be >= 10, got {}",
                self.probe_timeout_ms
            ));
        }
        if let Some(r) = &self.replication_addresses {
            if r.len() != self.backends.len() {
                return Err(format!(
                    "replicationAddresses: one per backend ({}), got {}",
                    self.backends.len(),
                    r.len()
                ));
            }
        }
        if let Some(f) = &self.failover {
            if let Some(p) = &f.preferred_primary {
                if !self.backends.contains(p) {
                    return Err(format!(
                        "failover.preferredPrimary: must be one of the backends, got {p:?}"
                    ));
                }
            }
            if f.detect_probes == 0 {
                return Err("failover.detectProbes: must be >= 1".into());
            }
            if f.heartbeat_ms < 100 || f.silence_ms < f.heartbeat_ms * 2 {
                return Err(format!(
                    "failover: heartbeatMs must be >= 100 and silenceMs at least twice it (a silent replica must have missed two heartbeats), got {} and {}",
                    f.heartbeat_ms, f.silence_ms
                ));
            }
        }
        Ok(())
    }

    /// Where replicas reach each backend, in `backends` order.
    pub fn replication_addresses(&self) -> Vec<String> {
        self.replication_addresses
            .clone()
            .unwrap_or_else(|| self.backends.clone())
    }

    /// The monitor account's password.
    pub fn monitor_password(&self) -> Result<Vec<u8>, String> {
        read_secret(&self.monitor_password_file)
    }
}

/// A secret file's content without its trailing newline.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut p = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    while p.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        p.pop();
    }
    Ok(p)
}
