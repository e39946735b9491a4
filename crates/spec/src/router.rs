//! The SQL router's config made from the spec: what both runtimes give every router they run.
//! Where the router listens and how it reaches the servers is the runtime's
//! ([`RouterPlacement`]); everything else comes from `spec.router` and `spec.database`.

use std::path::PathBuf;

use hapress_contract::config::{heartbeat_ms, Config, FailoverConfig};

use crate::WordPressClusterSpec;

/// What a runtime decides about one router.
#[derive(Debug, Clone, Default)]
pub struct RouterPlacement {
    /// Where clients connect (`host:port` or a unix socket path).
    pub listen: String,
    /// More such addresses.
    pub also_listen: Vec<String>,
    /// Every database server, in instance order.
    pub backends: Vec<String>,
    /// Where replicas reach each server, when not at `backends`.
    pub replication_addresses: Option<Vec<String>>,
    /// The `/status` and `/metrics` listener.
    pub status_listen: String,
    /// The monitor account's password file.
    pub monitor_password_file: PathBuf,
    /// The account replicas replicate with.
    pub replication_user: String,
    /// Its password file.
    pub replication_password_file: PathBuf,
}

impl WordPressClusterSpec {
    /// The router config this spec asks for, placed as `at` says. Failover is on when the spec
    /// turns it on and there is more than one server.
    pub fn router_config(&self, at: RouterPlacement) -> Config {
        let r = &self.router;
        let db = &self.database;
        let f = &db.failover;
        let preferred = f
            .preferred_primary
            .and_then(|i| at.backends.get(i as usize).cloned());
        let mut c = Config::new(at.listen, at.backends, at.monitor_password_file);
        c.also_listen = at.also_listen;
        c.replication_addresses = at.replication_addresses;
        c.status_listen = Some(at.status_listen);
        c.max_replication_lag = r.max_replication_lag_seconds.into();
        c.read_your_writes = r.read_your_writes;
        c.pool_size = r.pool_size as usize;
        c.probe_interval_ms = f.probe_interval_ms.into();
        c.probe_timeout_ms = f.probe_timeout_ms.into();
        c.failover = (f.enabled && db.instances > 1).then(|| FailoverConfig {
            detect_probes: f.detect_probes,
            silence_ms: f.silence_ms.into(),
            heartbeat_ms: heartbeat_ms(f.silence_ms.into()),
            semi_sync: db.semi_sync.enabled,
            preferred_primary: preferred,
            ..FailoverConfig::new(at.replication_user, at.replication_password_file)
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hapress_contract::config::ReadYourWrites;

    fn placement(n: u32) -> RouterPlacement {
        RouterPlacement {
            listen: "l".into(),
            backends: (0..n).map(|i| format!("db-{i}")).collect(),
            status_listen: "s".into(),
            monitor_password_file: "/m".into(),
            replication_user: "repl".into(),
            replication_password_file: "/r".into(),
            ..RouterPlacement::default()
        }
    }

    #[test]
    fn every_router_setting_comes_from_the_spec() {
        let mut spec = WordPressClusterSpec::default();
        spec.router.read_your_writes = ReadYourWrites::Global;
        spec.router.pool_size = 0;
        spec.router.max_replication_lag_seconds = 9;
        spec.database.failover.silence_ms = 3000;
        spec.database.failover.preferred_primary = Some(2);
        spec.database.semi_sync.enabled = false;
        let c = spec.router_config(placement(spec.database.instances));
        assert_eq!(c.read_your_writes, ReadYourWrites::Global);
        assert_eq!((c.pool_size, c.max_replication_lag), (0, 9));
        let f = c.failover.as_ref().unwrap();
        assert_eq!((f.silence_ms, f.heartbeat_ms), (3000, 1000));
        assert_eq!(f.preferred_primary.as_deref(), Some("db-2"));
        assert!(!f.semi_sync);
        c.check().unwrap();
    }

    #[test]
    fn one_server_or_failover_off_has_no_failover_section() {
        let mut spec = WordPressClusterSpec::default();
        spec.database.failover.enabled = false;
        assert!(spec.router_config(placement(3)).failover.is_none());
        spec.database.failover.enabled = true;
        spec.database.instances = 1;
        assert!(spec.router_config(placement(1)).failover.is_none());
    }
}
