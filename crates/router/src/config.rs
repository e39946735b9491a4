//! `hapress router --config FILE`: the router's settings (YAML, camelCase).

use std::path::{Path, PathBuf};

use crate::route::ReadYourWrites;

/// Router settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where clients connect: `host:port`, or an absolute path for a unix socket.
    pub listen: String,
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
    /// Timeout for connecting and logging in to a backend (milliseconds).
    #[serde(default = "default_connect")]
    pub connect_timeout_ms: u64,
    /// Client connections accepted at once; more get ERR 1040 (too many connections).
    #[serde(default = "default_max_clients")]
    pub max_client_connections: usize,
    /// Backend connections per backend, in use or idle in its pool: a finished session's
    /// connections are reset and reused by the next session of the same user. 0 turns pooling
    /// (and this limit) off.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a session waits for a free backend connection when `poolSize` are in use
    /// before it gets ERR 1040 (milliseconds).
    #[serde(default = "default_pool_wait")]
    pub pool_wait_ms: u64,
    /// Idle pooled connections are closed after this long (milliseconds).
    #[serde(default = "default_pool_idle")]
    pub pool_idle_timeout_ms: u64,
    /// Optional HTTP listener for `/metrics` (Prometheus) and `/status` (JSON).
    #[serde(default)]
    pub status_listen: Option<String>,
}

fn default_lag() -> u64 {
    5
}
fn default_gtid_wait() -> u64 {
    50
}
fn default_probe() -> u64 {
    300
}
fn default_connect() -> u64 {
    2000
}
fn default_pool_size() -> usize {
    64
}
fn default_pool_wait() -> u64 {
    2000
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
        Ok(())
    }

    /// The monitor account's password.
    pub fn monitor_password(&self) -> Result<Vec<u8>, String> {
        let mut p = std::fs::read(&self.monitor_password_file)
            .map_err(|e| format!("reading {}: {e}", self.monitor_password_file.display()))?;
        while p.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            p.pop();
        }
        Ok(p)
    }
}
