//! The SQL router sidecar of every web pod (`hapress router`): WordPress connects to
//! `127.0.0.1:3306` as to one MariaDB server; the router sends writes to the primary and plain
//! reads to healthy replicas, and follows the primary when it moves.
//!
//! Rendered only in replication mode. Galera nodes are all writable and synchronous, so a
//! router would have no read/write split to make and would just pick one node as "primary";
//! WordPress talks to the galera client Service instead (see `docs/kubernetes.md`).
//!
//! The sidecar is a native sidecar (an init container with `restartPolicy: Always`, on by
//! default since Kubernetes 1.29): it is up, with its startup probe passed, before WordPress
//! starts, and it is stopped only after WordPress has stopped, so no request meets a missing
//! router.

use std::collections::BTreeMap;

use hapress_spec::{Cluster, DatabaseMode, RouterPlacement};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Volume};

use crate::names::{Component, Names};
use crate::pod::{self, container, http_probe, mount};
use crate::{db_config, secrets, ROUTER_UID};

/// The router's monitor account ([`hapress_contract::accounts`]); every database pod's
/// `agent` creates it locally, with the grants it gets in its environment.
pub use hapress_contract::accounts::MONITOR_USER;
/// Where WordPress reaches the router: loopback inside the pod, never exposed.
pub const LISTEN: &str = "127.0.0.1:3306";
/// Port of the router's `/metrics` (Prometheus) and `/status` (JSON) HTTP listener.
pub const METRICS_PORT: i32 = 9104;
/// Directory of the router's config file (the ConfigMap).
pub const CONFIG_DIR: &str = "/etc/hapress";
/// The config file's name (the ConfigMap key).
pub const CONFIG_FILE: &str = "router.yaml";
/// Directory of the monitor and replication password files (two Secret keys).
pub const PASSWORD_DIR: &str = "/run/secrets/router";

/// Whether the web pods get a router sidecar: `spec.router.enabled` in replication mode.
pub fn enabled(c: &Cluster) -> bool {
    c.spec.router.enabled && c.spec.database.mode == DatabaseMode::Replication
}

/// `router.yaml`: every database pod by its stable DNS name (the router finds the primary
/// itself), the monitor account, and the status listener on all addresses so the kubelet and
/// Prometheus reach it.
pub fn config(c: &Cluster, names: &Names) -> String {
    c.spec
        .router_config(RouterPlacement {
            listen: LISTEN.into(),
            backends: (0..c.spec.database.instances)
                .map(|i| format!("{}:3306", names.db_pod_fqdn(i)))
                .collect(),
            status_listen: format!("0.0.0.0:{METRICS_PORT}"),
            monitor_password_file: format!("{PASSWORD_DIR}/{}", secrets::ROUTER_PASSWORD).into(),
            replication_user: crate::database::REPLICATION_USER.into(),
            replication_password_file: format!("{PASSWORD_DIR}/{}", secrets::REPLICATION_PASSWORD)
                .into(),
            ..RouterPlacement::default()
        })
        .to_yaml("hapress router config, rendered by `hapress render`; no secrets here.")
}

/// The ConfigMap holding `router.yaml`.
pub fn config_map(c: &Cluster, names: &Names) -> ConfigMap {
    ConfigMap {
        metadata: pod::meta(names, &names.router_config(), names.labels(Component::Web)),
        data: Some(config_data(c, names)),
        ..ConfigMap::default()
    }
}

fn config_data(c: &Cluster, names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([(CONFIG_FILE.into(), config(c, names))])
}

/// Pod-template annotations: a hash of the config (a change rolls the web pods; the router
/// reads its config once) and the conventional Prometheus scrape hints.
pub fn pod_annotations(c: &Cluster, names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "hapress.dev/router-config-hash".into(),
            db_config::hash(&config_data(c, names)),
        ),
        ("prometheus.io/scrape".into(), "true".into()),
        ("prometheus.io/port".into(), METRICS_PORT.to_string()),
        ("prometheus.io/path".into(), "/metrics".into()),
    ])
}

/// The sidecar container (goes into `initContainers`, restarted always).
pub fn sidecar(c: &Cluster) -> Container {
    let r = &c.spec.router;
    Container {
        args: Some(
            ["router", "--config", &format!("{CONFIG_DIR}/{CONFIG_FILE}")]
                .map(String::from)
                .to_vec(),
        ),
        // A native sidecar: started before WordPress, stopped after it.
        restart_policy: Some("Always".into()),
        ports: Some(vec![pod::port("metrics", METRICS_PORT)]),
        resources: Some(pod::resources(&r.resources)),
        // WordPress starts only once this passes. `/status` answers as soon as the router
        // runs; whether it found a primary shows in WordPress's own readiness (a real page).
        startup_probe: Some(http_probe("/status", "metrics", 1, 2, 30)),
        readiness_probe: Some(http_probe("/status", "metrics", 5, 2, 3)),
        // The router runs on one thread: a wedged event loop stops answering HTTP too.
        liveness_probe: Some(http_probe("/status", "metrics", 10, 3, 6)),
        volume_mounts: Some(vec![
            mount("router-config", CONFIG_DIR, true),
            mount("router-password", PASSWORD_DIR, true),
        ]),
        ..container("router", &r.image, ROUTER_UID)
    }
}

/// The sidecar's volumes: its config, the monitor password and the replication password (a
/// promotion points the replicas at the new primary).
pub fn volumes(names: &Names) -> Vec<Volume> {
    let mut config = pod::config_map_volume("router-config", &names.router_config(), 0o444);
    if let Some(cm) = config.config_map.as_mut() {
        cm.items = Some(vec![KeyToPath {
            key: CONFIG_FILE.into(),
            path: CONFIG_FILE.into(),
            ..KeyToPath::default()
        }]);
    }
    vec![
        config,
        pod::secret_volume(
            "router-password",
            &names.db_secret(),
            &[secrets::ROUTER_PASSWORD, secrets::REPLICATION_PASSWORD],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use hapress_spec::ReadYourWrites;

    #[test]
    fn config_lists_every_database_pod_and_no_secret() {
        let mut c = Cluster::default();
        c.spec.database.instances = 5;
        c.spec.router.read_your_writes = ReadYourWrites::None;
        let text = config(&c, &Names::new(&c));
        for i in 0..5 {
            assert!(
                text.contains(&format!(
                    "- wordpress-db-{i}.wordpress-db.wordpress.svc.cluster.local:3306\n"
                )),
                "{text}"
            );
        }
        assert!(text.contains("listen: 127.0.0.1:3306\n"));
        assert!(text.contains("monitorPasswordFile: /run/secrets/router/router-password\n"));
        assert!(text.contains("readYourWrites: none\n"));
        assert!(text.contains("statusListen: 0.0.0.0:9104\n"));
        // Every sidecar may act for the cluster (one does at a time).
        assert!(
            text.contains("failover:\n  replicationUser: replicator\n  replicationPasswordFile: /run/secrets/router/replication-password\n  detectProbes: 3\n"),
            "{text}"
        );
        c.spec.database.failover.enabled = false;
        assert!(!config(&c, &Names::new(&c)).contains("failover:"));
    }

    #[test]
    fn galera_and_disabled_get_no_router() {
        let mut c = Cluster::default();
        assert!(enabled(&c));
        c.spec.database.mode = DatabaseMode::Galera;
        assert!(!enabled(&c));
        c.spec.database.mode = DatabaseMode::Replication;
        c.spec.router.enabled = false;
        assert!(!enabled(&c));
    }
}
