//! The database ConfigMap: `my.cnf` fragments (replication settings from FIELD-NOTES, or the
//! galera settings) and the pod scripts. Pure text, tested on its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hapress_contract::replication;
use hapress_spec::{DatabaseMode, DatabaseSpec};

use crate::names::Names;

/// Scripts run by the database pods, mounted at `/config`.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("agent.sh", include_str!("scripts/agent.sh")),
    ("clone.sh", include_str!("scripts/clone.sh")),
    ("configure.sh", include_str!("scripts/configure.sh")),
    ("galera-start.sh", include_str!("scripts/galera-start.sh")),
    ("label.sh", include_str!("scripts/label.sh")),
    ("probe.sh", include_str!("scripts/probe.sh")),
    ("role.sh", include_str!("scripts/role.sh")),
];

/// Where the data volume is mounted; the data directory is a subdirectory so the volume's own
/// `lost+found` never shows up as a database, and the role file can live beside it.
pub const DATA_MOUNT: &str = "/var/lib/mysql";

fn common(out: &mut String) {
    out.push_str(
        "[mariadbd]\n\
         datadir = /var/lib/mysql/data\n\
         skip_name_resolve = ON\n\
         character_set_server = utf8mb4\n\
         collation_server = utf8mb4_unicode_ci\n\
         # Strict mode: bad data is an error, not a silent truncation.\n\
         sql_mode = STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION\n",
    );
    let _ = writeln!(
        out,
        "# The SQL router reads each write's GTID and lets a replica wait for it.\nsession_track_system_variables = {}",
        replication::SESSION_TRACK_SYSTEM_VARIABLES
    );
    replication::write_cnf(out, &replication::durability());
}

/// `base.cnf` for replication mode: GTID replication that survives failover.
fn replication_cnf(db: &DatabaseSpec) -> String {
    let mut s = String::new();
    common(&mut s);
    s.push_str("log_bin = mariadb-bin\nrelay_log = mariadb-relay\n");
    replication::write_cnf(&mut s, &replication::replication(db.semi_sync.settings()));
    s
}

/// `base.cnf` for galera mode.
fn galera_cnf(names: &Names, db: &DatabaseSpec) -> String {
    let mut s = String::new();
    common(&mut s);
    let peers: Vec<String> = (0..db.instances).map(|i| names.db_pod_host(i)).collect();
    let _ = write!(
        s,
        "# Galera: synchronous multi-primary; peers found through the headless Service.\n\
         innodb_autoinc_lock_mode = 2\n\
         wsrep_on = ON\n\
         wsrep_provider = /usr/lib/galera/libgalera_smm.so\n\
         wsrep_cluster_name = {}\n\
         wsrep_cluster_address = gcomm://{}\n\
         wsrep_sst_method = mariabackup\n",
        names.cluster,
        peers.join(",")
    );
    s
}

/// Space-separated peer host names (galera-start.sh probes them).
pub fn peers(names: &Names, db: &DatabaseSpec) -> String {
    (0..db.instances)
        .map(|i| names.db_pod_host(i))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every key of the database ConfigMap.
pub fn data(names: &Names, db: &DatabaseSpec) -> BTreeMap<String, String> {
    let mut d = BTreeMap::new();
    let base = match db.mode {
        DatabaseMode::Replication => replication_cnf(db),
        DatabaseMode::Galera => galera_cnf(names, db),
    };
    d.insert("base.cnf".into(), base);
    d.insert(
        "primary.cnf".into(),
        if db.semi_sync.enabled {
            "[mariadbd]\nread_only = OFF\ninit_rpl_role = MASTER\nrpl_semi_sync_master_enabled = ON\n"
        } else {
            "[mariadbd]\nread_only = OFF\ninit_rpl_role = MASTER\n"
        }
        .into(),
    );
    d.insert(
        "replica.cnf".into(),
        "[mariadbd]\n# Only the replication thread writes.\nread_only = ON\n".into(),
    );
    d.insert(
        "galera.cnf".into(),
        "[mariadbd]\n# Every galera node accepts writes.\nread_only = OFF\n".into(),
    );
    let mut extra = String::from("[mariadbd]\n# spec.database.config\n");
    for (k, v) in &db.config {
        let _ = writeln!(extra, "{k} = {v}");
    }
    d.insert("extra.cnf".into(), extra);
    for (name, text) in SCRIPTS {
        let used = match db.mode {
            DatabaseMode::Replication => *name != "galera-start.sh",
            DatabaseMode::Galera => !matches!(*name, "agent.sh" | "clone.sh"),
        };
        if used {
            d.insert((*name).into(), (*text).into());
        }
    }
    d
}

/// FNV-1a over the ConfigMap's keys and values: a pod-template annotation that changes (and
/// rolls the pods) exactly when the configuration does. Stable across Rust versions, unlike
/// `DefaultHasher`.
pub fn hash(data: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in data {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hapress_spec::Cluster;

    #[test]
    fn replication_settings_match_the_field_notes() {
        let c = Cluster::default();
        let d = data(&Names::new(&c), &c.spec.database);
        let base = &d["base.cnf"];
        for line in [
            "log_bin = mariadb-bin",
            "binlog_format = ROW",
            "log_slave_updates = ON",
            "gtid_strict_mode = ON",
            "sync_binlog = 1",
            "innodb_flush_log_at_trx_commit = 1",
            "rpl_semi_sync_master_wait_point = AFTER_SYNC",
            "rpl_semi_sync_master_timeout = 18446744073709551615",
            "init_rpl_role = SLAVE",
            "sql_mode = STRICT_TRANS_TABLES",
        ] {
            assert!(base.contains(line), "missing {line} in\n{base}");
        }
        assert!(d["replica.cnf"].contains("read_only = ON"));
        assert!(base.contains("rpl_semi_sync_master_enabled = OFF"));
        assert!(d["primary.cnf"].contains("rpl_semi_sync_master_enabled = ON"));
        assert!(!d["replica.cnf"].contains("rpl_semi_sync_master_enabled"));
        assert!(base.contains("last_gtid"));
        assert!(!d.contains_key("galera-start.sh"));
    }

    #[test]
    fn galera_lists_every_peer_and_user_config_is_kept() {
        let mut c = Cluster::default();
        c.spec.database.mode = DatabaseMode::Galera;
        c.spec
            .database
            .config
            .insert("max_connections".into(), "500".into());
        let d = data(&Names::new(&c), &c.spec.database);
        assert!(d["base.cnf"].contains(
            "gcomm://wordpress-db-0.wordpress-db,wordpress-db-1.wordpress-db,wordpress-db-2.wordpress-db"
        ));
        assert!(!d["base.cnf"].contains("log_slave_updates"));
        assert!(d["extra.cnf"].contains("max_connections = 500"));
        assert!(d.contains_key("galera-start.sh") && !d.contains_key("clone.sh"));
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let b = BTreeMap::from([("a".to_string(), "2".to_string())]);
        assert_eq!(hash(&a), hash(&a.clone()));
        assert_ne!(hash(&a), hash(&b));
    }
}
