//! `hapress router --config FILE`: the router's settings (YAML, camelCase), written by
//! `hapress up` and `hapress render` from the spec and read by the router.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a session reads after it writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadYourWrites {
    /// Reads may lag behind the session's own writes (replication delay).
    None,
    /// After a session writes, its reads see the write.
    #[default]
    Session,
    /// Every read sees every write acknowledged through the router, from any session.
    Global,
}

impl ReadYourWrites {
    /// The spelling in `hapress.yaml` and in the router's own config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Session => "session",
            Self::Global => "global",
        }
    }
}

/// Router settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where clients connect: `host:port`, or an absolute path for a unix socket.
    pub listen: String,
    /// More addresses clients may connect to, as `listen`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    #[serde(default = "defaults::max_replication_lag")]
    pub max_replication_lag: u64,
    /// `none`, `session` (a session reads its own writes) or `global` (every read sees every
    /// write acknowledged through this router).
    #[serde(default)]
    pub read_your_writes: ReadYourWrites,
    /// How long a replica may take to reach the GTID a read must see before the read goes to
    /// the primary instead (milliseconds).
    #[serde(default = "defaults::gtid_wait")]
    pub gtid_wait_ms: u64,
    /// How often every backend is probed (milliseconds).
    #[serde(default = "defaults::probe_interval")]
    pub probe_interval_ms: u64,
    /// Timeout of one probe: connect, login and its queries (milliseconds). A server that
    /// does not answer within it counts as down for routing; missed probes in a row are how the
    /// failover manager detects a lost primary.
    #[serde(default = "defaults::probe_timeout")]
    pub probe_timeout_ms: u64,
    /// Where replicas reach each backend (`host:port`, as in `CHANGE MASTER TO`), in the order
    /// of `backends`; by default the backends' own addresses. The router compares it with each
    /// replica's `Master_Host:Master_Port` to see which server it follows, and the failover
    /// manager points replicas at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_addresses: Option<Vec<String>>,
    /// Automatic failover by this router (absent: the router only follows the primary). Any
    /// number of routers may have it: only the one holding the lock on a majority of the
    /// servers acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverConfig>,
    /// Timeout for connecting and logging in to a backend (milliseconds).
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Client connections accepted at once; more get ERR 1040 (too many connections).
    #[serde(default = "defaults::max_client_connections")]
    pub max_client_connections: usize,
    /// Backend connections kept per backend, in use or idle in its pool: a finished session's
    /// connections are reset and reused by the next session of the same user. Sessions beyond
    /// it open connections of their own, closed when they end (the server's `max_connections`
    /// is the limit). 0 turns pooling off.
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// Idle pooled connections are closed after this long (milliseconds).
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout_ms: u64,
    /// Optional HTTP listener for `/metrics` (Prometheus) and `/status` (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_listen: Option<String>,
}

/// Automatic failover settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverConfig {
    /// The account replicas replicate with (`CHANGE MASTER TO MASTER_USER`).
    pub replication_user: String,
    /// File holding its password (mode 0600).
    pub replication_password_file: PathBuf,
    /// Probes in a row the primary must miss before it is taken for lost.
    #[serde(default = "defaults::detect_probes")]
    pub detect_probes: u32,
    /// How long (milliseconds) every replica of a primary that misses probes must have
    /// received nothing from it (no event, no heartbeat) to confirm it is gone.
    #[serde(default = "defaults::silence")]
    pub silence_ms: u64,
    /// The heartbeat period replicas are given (`MASTER_HEARTBEAT_PERIOD`, milliseconds): a
    /// primary that is alive but idle still sends this often.
    #[serde(default = "defaults::heartbeat")]
    pub heartbeat_ms: u64,
    /// Turn semi-synchronous replication's primary side on for a promoted server.
    #[serde(default = "defaults::yes")]
    pub semi_sync: bool,
    /// The backend (as written in `backends`) that should be the primary: when another one
    /// is and this one is a caught-up replica, the acting router switches over to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_primary: Option<String>,
}

impl FailoverConfig {
    /// Failover with the replication account `user` (password in `password_file`) and every
    /// other setting at its default.
    pub fn new(user: String, password_file: PathBuf) -> Self {
        Self {
            replication_user: user,
            replication_password_file: password_file,
            detect_probes: defaults::DETECT_PROBES,
            silence_ms: defaults::SILENCE_MS,
            heartbeat_ms: defaults::HEARTBEAT_MS,
            semi_sync: true,
            preferred_primary: None,
        }
    }

    /// The replication account's password.
    pub fn replication_password(&self) -> Result<String, String> {
        read_secret(&self.replication_password_file)
            .map(|p| String::from_utf8_lossy(&p).into_owned())
    }
}

/// The defaults of the settings a config file may leave out; the spec's defaults are the same
/// values.
pub mod defaults {
    /// `maxReplicationLag`, seconds.
    pub const MAX_REPLICATION_LAG: u64 = 5;
    /// `gtidWaitMs`.
    pub const GTID_WAIT_MS: u64 = 50;
    /// `probeIntervalMs`.
    pub const PROBE_INTERVAL_MS: u64 = 250;
    /// `probeTimeoutMs`.
    pub const PROBE_TIMEOUT_MS: u64 = 500;
    /// `connectTimeoutMs`.
    pub const CONNECT_TIMEOUT_MS: u64 = 2000;
    /// `poolSize`.
    pub const POOL_SIZE: usize = 64;
    /// `poolIdleTimeoutMs`.
    pub const POOL_IDLE_TIMEOUT_MS: u64 = 60_000;
    /// `maxClientConnections`.
    pub const MAX_CLIENT_CONNECTIONS: usize = 10_000;
    /// `failover.detectProbes`.
    pub const DETECT_PROBES: u32 = 3;
    /// `failover.silenceMs`.
    pub const SILENCE_MS: u64 = 1500;
    /// `failover.heartbeatMs`: [`super::heartbeat_ms`] of [`SILENCE_MS`].
    pub const HEARTBEAT_MS: u64 = 500;

    pub(super) fn max_replication_lag() -> u64 {
        MAX_REPLICATION_LAG
    }
    pub(super) fn gtid_wait() -> u64 {
        GTID_WAIT_MS
    }
    pub(super) fn probe_interval() -> u64 {
        PROBE_INTERVAL_MS
    }
    pub(super) fn probe_timeout() -> u64 {
        PROBE_TIMEOUT_MS
    }
    pub(super) fn connect_timeout() -> u64 {
        CONNECT_TIMEOUT_MS
    }
    pub(super) fn pool_size() -> usize {
        POOL_SIZE
    }
    pub(super) fn pool_idle_timeout() -> u64 {
        POOL_IDLE_TIMEOUT_MS
    }
    pub(super) fn max_client_connections() -> usize {
        MAX_CLIENT_CONNECTIONS
    }
    pub(super) fn detect_probes() -> u32 {
        DETECT_PROBES
    }
    pub(super) fn silence() -> u64 {
        SILENCE_MS
    }
    pub(super) fn heartbeat() -> u64 {
        HEARTBEAT_MS
    }
    pub(super) fn yes() -> bool {
        true
    }
}

/// The heartbeat period replicas get for a given `silenceMs`: three heartbeats in the silence
/// that confirms a lost primary, at least 100 ms.
pub fn heartbeat_ms(silence_ms: u64) -> u64 {
    (silence_ms / 3).max(100)
}

impl Config {
    /// A config with every optional setting at its default.
    pub fn new(listen: String, backends: Vec<String>, monitor_password_file: PathBuf) -> Self {
        Self {
            listen,
            also_listen: Vec::new(),
            backends,
            monitor_user: crate::accounts::MONITOR_USER.into(),
            monitor_password_file,
            max_replication_lag: defaults::MAX_REPLICATION_LAG,
            read_your_writes: ReadYourWrites::default(),
            gtid_wait_ms: defaults::GTID_WAIT_MS,
            probe_interval_ms: defaults::PROBE_INTERVAL_MS,
            probe_timeout_ms: defaults::PROBE_TIMEOUT_MS,
            replication_addresses: None,
            failover: None,
            connect_timeout_ms: defaults::CONNECT_TIMEOUT_MS,
            max_client_connections: defaults::MAX_CLIENT_CONNECTIONS,
            pool_size: defaults::POOL_SIZE,
            pool_idle_timeout_ms: defaults::POOL_IDLE_TIMEOUT_MS,
            status_listen: None,
        }
    }

    /// The file's text: a comment line, then the YAML.
    pub fn to_yaml(&self, comment: &str) -> String {
        // Strings, numbers, lists and options: serialising cannot fail.
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!("# {comment}\n{body}")
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::load_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a config file's text.
    pub fn load_str(text: &str) -> Result<Self, String> {
        let c: Config = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_reads_as_the_defaults() {
        let c: Config = serde_yaml::from_str(
            "listen: a\nbackends: [b]\nmonitorUser: hapress_router\nmonitorPasswordFile: /p\nfailover:\n  replicationUser: r\n  replicationPasswordFile: /q\n",
        )
        .unwrap();
        let mut want = Config::new("a".into(), vec!["b".into()], "/p".into());
        want.failover = Some(FailoverConfig::new("r".into(), "/q".into()));
        assert_eq!(c, want);
        assert_eq!(defaults::HEARTBEAT_MS, heartbeat_ms(defaults::SILENCE_MS));
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let mut c = Config::new(
            "/run/router.sock".into(),
            vec!["/run/db 0.sock".into(), "db-1:3306".into()],
            "/secrets/it's here".into(),
        );
        c.also_listen = vec!["[::1]:6446".into()];
        c.read_your_writes = ReadYourWrites::Global;
        c.replication_addresses = Some(vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()]);
        let mut f = FailoverConfig::new("repl".into(), "/secrets/repl: #1".into());
        f.preferred_primary = Some("db-1:3306".into());
        c.failover = Some(f);
        let text = c.to_yaml("generated");
        assert!(text.starts_with("# generated\n"));
        assert_eq!(serde_yaml::from_str::<Config>(&text).unwrap(), c);
        c.check().unwrap();
    }

    #[test]
    fn checks_name_the_field() {
        let mut c = Config::new("a".into(), vec!["b".into()], "/p".into());
        c.probe_interval_ms = 10;
        assert!(c.check().unwrap_err().starts_with("probeIntervalMs"));
        c.probe_interval_ms = 250;
        c.replication_addresses = Some(vec![]);
        assert!(c.check().unwrap_err().starts_with("replicationAddresses"));
    }
}
