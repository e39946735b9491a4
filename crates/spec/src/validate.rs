//! Validation of a parsed spec: every problem is reported with its field path and what is
//! allowed, all at once, so a user fixes the file in one pass.

use std::fmt;
use std::net::IpAddr;

use crate::types::{
    AntiAffinity, DatabaseMode, QosClass, Resources, ServiceType, WordPressClusterSpec,
};

/// One invalid field: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the document root, e.g. `spec.web.replicas`.
    pub path: String,
    /// What is allowed and what was given.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Settings hapress owns; letting `spec.database.config` override them would break replication
/// or the runtime's layout.
pub const RESERVED_DB_SETTINGS: &[&str] = &[
    "server_id",
    "server-id",
    "log_bin",
    "log-bin",
    "log_slave_updates",
    "log-slave-updates",
    "gtid_strict_mode",
    "gtid-strict-mode",
    "read_only",
    "read-only",
    "binlog_format",
    "binlog-format",
    "sync_binlog",
    "sync-binlog",
    "innodb_flush_log_at_trx_commit",
    "innodb-flush-log-at-trx-commit",
    "datadir",
    "port",
    "socket",
    "bind_address",
    "bind-address",
    "pid_file",
    "pid-file",
    "user",
    "log_error",
    "log-error",
];

#[derive(Default)]
struct Collector(Vec<FieldError>);

impl Collector {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, path: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(path, format!("must be {min}..={max}, got {value}"));
        }
    }

    fn quantity(&mut self, path: &str, value: &str) {
        if !is_quantity(value) {
            self.fail(
                path,
                format!("must be a Kubernetes quantity like `500m`, `2`, `512Mi`, `10Gi`, got {value:?}"),
            );
        }
    }

    fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.fail(
                path,
                format!("must be one of {}, got {value:?}", allowed.join(", ")),
            );
        }
    }
}

/// A Kubernetes resource quantity: digits, optional fraction, optional suffix.
pub fn is_quantity(s: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        "", "m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi",
    ];
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let mut parts = number.split('.');
    let whole_ok = parts
        .next()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = parts.next().is_none_or(|f| !f.is_empty());
    whole_ok && frac_ok && parts.next().is_none() && SUFFIXES.contains(&suffix)
}

/// A DNS-1123 label (what Kubernetes accepts as an object name prefix).
pub fn is_dns_label(s: &str, max_len: usize) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Longest cluster name: object names get suffixes like `-db-replicas` and must stay <= 63.
pub const MAX_NAME_LEN: usize = 40;

/// Validates the cluster name.
pub fn validate_name(name: &str) -> Option<FieldError> {
    (!is_dns_label(name, MAX_NAME_LEN)).then(|| FieldError {
        path: "metadata.name".into(),
        message: format!(
            "must be 1..={MAX_NAME_LEN} lowercase letters, digits or '-', starting and ending with a letter or digit, got {name:?}"
        ),
    })
}

fn validate_resources(c: &mut Collector, path: &str, r: &Resources) {
    c.quantity(&format!("{path}.requests.cpu"), &r.requests.cpu);
    c.quantity(&format!("{path}.requests.memory"), &r.requests.memory);
    if let Some(limits) = &r.limits {
        c.quantity(&format!("{path}.limits.cpu"), &limits.cpu);
        c.quantity(&format!("{path}.limits.memory"), &limits.memory);
    }
    match (r.qos_class, &r.limits) {
        (QosClass::Burstable, None) => {
            c.fail(&format!("{path}.limits"), "must be set when qosClass is Burstable")
        }
        (QosClass::Guaranteed, Some(l)) if *l != r.requests => c.fail(
            &format!("{path}.limits"),
            "must equal requests (or be omitted) when qosClass is Guaranteed; use qosClass: Burstable for higher limits",
        ),
        _ => {}
    }
}

/// Checks every field and returns all problems found.
pub fn validate_spec(spec: &WordPressClusterSpec) -> Vec<FieldError> {
    let mut c = Collector::default();
    let site = &spec.site;
    if site.title.trim().is_empty()
        || site.title.len() > 200
        || site.title.chars().any(char::is_control)
    {
        c.fail("spec.site.title", "must be 1..=200 printable characters");
    }
    if let Some(url) = &site.url {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            c.fail(
                "spec.site.url",
                format!("must be an absolute http:// or https:// URL, got {url:?}"),
            );
        }
    }
    let user_ok = |u: &str| {
        !u.is_empty()
            && u.len() <= 60
            && u.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_.@-".contains(ch))
    };
    if !user_ok(&site.admin_user) {
        c.fail(
            "spec.site.adminUser",
            format!(
                "must be 1..=60 of letters, digits, '_', '.', '@', '-', got {:?}",
                site.admin_user
            ),
        );
    }
    let email_ok = site
        .admin_email
        .split_once('@')
        .is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !site.admin_email.contains(char::is_whitespace);
    if !email_ok {
        c.fail(
            "spec.site.adminEmail",
            format!("must be an e-mail address, got {:?}", site.admin_email),
        );
    }
    let locale_ok = {
        let (lang, region) = site.locale.split_once('_').unwrap_or((&site.locale, "AA"));
        (2..=3).contains(&lang.len())
            && lang.bytes().all(|b| b.is_ascii_lowercase())
            && region.len() == 2
            && region.bytes().all(|b| b.is_ascii_uppercase())
    };
    if !locale_ok {
        c.fail(
            "spec.site.locale",
            format!("must look like `en` or `en_US`, got {:?}", site.locale),
        );
    }
    c.one_of(
        "spec.site.environment",
        &site.environment,
        &["production", "staging", "development", "local"],
    );

    let web = &spec.web;
    c.range("spec.web.replicas", web.replicas.into(), 1, 64);
    c.range("spec.web.phpWorkers", web.php_workers.into(), 1, 256);
    let mem = web.php_memory_limit.trim_end_matches(['K', 'M', 'G']);
    if mem.is_empty()
        || !mem.bytes().all(|b| b.is_ascii_digit())
        || web.php_memory_limit.len() - mem.len() > 1
    {
        c.fail(
            "spec.web.phpMemoryLimit",
            format!(
                "must be a number with optional K, M or G suffix (`256M`), got {:?}",
                web.php_memory_limit
            ),
        );
    }
    if web.image.trim().is_empty() {
        c.fail("spec.web.image", "must not be empty");
    }
    validate_resources(&mut c, "spec.web.resources", &web.resources);
    if web.anti_affinity == AntiAffinity::Hard && web.zones > 0 {
        if web.replicas > web.zones {
            c.fail(
                "spec.web.antiAffinity",
                format!(
                    "hard anti-affinity allows at most one web pod per node/zone, but replicas ({}) exceeds zones ({}); use antiAffinity: soft or raise zones",
                    web.replicas, web.zones
                ),
            );
        }
        if spec.autoscaling.enabled && spec.autoscaling.max_replicas > web.zones {
            c.fail(
                "spec.autoscaling.maxReplicas",
                format!(
                    "hard anti-affinity allows at most {} web pods (spec.web.zones), but maxReplicas is {}; pods above that would stay Pending",
                    web.zones, spec.autoscaling.max_replicas
                ),
            );
        }
    }

    let db = &spec.database;
    c.range("spec.database.instances", db.instances.into(), 1, 9);
    if db.mode == DatabaseMode::Galera && (db.instances < 3 || db.instances.is_multiple_of(2)) {
        c.fail(
            "spec.database.instances",
            format!(
                "galera mode needs an odd number >= 3 to keep quorum, got {}",
                db.instances
            ),
        );
    }
    if db.image.trim().is_empty() {
        c.fail("spec.database.image", "must not be empty");
    }
    c.range(
        "spec.database.semiSync.timeoutMs",
        db.semi_sync.timeout_ms,
        1,
        600_000,
    );
    let f = &db.failover;
    c.range(
        "spec.database.failover.probeIntervalMs",
        f.probe_interval_ms.into(),
        50,
        10_000,
    );
    c.range(
        "spec.database.failover.probeTimeoutMs",
        f.probe_timeout_ms.into(),
        10,
        10_000,
    );
    c.range(
        "spec.database.failover.detectProbes",
        f.detect_probes.into(),
        1,
        20,
    );
    c.range(
        "spec.database.failover.silenceMs",
        f.silence_ms.into(),
        200,
        60_000,
    );
    if let Some(p) = f.preferred_primary {
        if p >= db.instances {
            c.fail(
                "spec.database.failover.preferredPrimary",
                format!(
                    "must name one of the {} servers (0..={}), got {p}",
                    db.instances,
                    db.instances.saturating_sub(1)
                ),
            );
        }
    }
    c.quantity("spec.database.storage.size", &db.storage.size);
    for (key, value) in &db.config {
        let path = format!("spec.database.config.{key}");
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            c.fail(
                &path,
                "setting names must be lowercase letters, digits, '_' or '-'",
            );
        } else if RESERVED_DB_SETTINGS.contains(&key.as_str()) {
            c.fail(&path, "is managed by hapress (replication and layout depend on it) and cannot be overridden");
        }
        if value.contains(['\n', '\r']) {
            c.fail(&path, "value must be a single line");
        }
    }
    validate_resources(&mut c, "spec.database.resources", &db.resources);
    let router = &spec.router;
    c.range(
        "spec.router.maxReplicationLagSeconds",
        u64::from(router.max_replication_lag_seconds),
        0,
        3600,
    );
    c.range(
        "spec.router.poolSize",
        u64::from(router.pool_size),
        0,
        10_000,
    );
    if router.image.trim().is_empty() {
        c.fail("spec.router.image", "must name a container image");
    }
    validate_resources(&mut c, "spec.router.resources", &router.resources);

    c.quantity("spec.storage.size", &spec.storage.size);
    if spec.storage.nfs.enabled && spec.storage.storage_class.is_some() {
        c.fail(
            "spec.storage",
            "set either storageClass (a ReadWriteMany class) or nfs.enabled, not both",
        );
    }

    let ing = &spec.ingress;
    if ing.enabled && !ing.host.is_empty() && !ing.host.split('.').all(|l| is_dns_label(l, 63)) {
        c.fail(
            "spec.ingress.host",
            format!("must be a lowercase DNS name, got {:?}", ing.host),
        );
    }
    if ing.tls.enabled && ing.tls.cluster_issuer.is_empty() && ing.tls.secret_name.is_none() {
        c.fail(
            "spec.ingress.tls",
            "needs clusterIssuer (cert-manager) or secretName (an existing certificate)",
        );
    }

    // The controller namespace is only used by the web NetworkPolicy behind an Ingress.
    if ing.service_type == ServiceType::ClusterIP && !is_dns_label(&ing.controller_namespace, 63) {
        c.fail(
            "spec.ingress.controllerNamespace",
            format!(
                "must be a namespace name, got {:?}",
                ing.controller_namespace
            ),
        );
    }

    let auto = &spec.autoscaling;
    if auto.enabled {
        c.range(
            "spec.autoscaling.minReplicas",
            auto.min_replicas.into(),
            1,
            64,
        );
        c.range(
            "spec.autoscaling.maxReplicas",
            auto.max_replicas.into(),
            1,
            256,
        );
        if auto.min_replicas > auto.max_replicas {
            c.fail(
                "spec.autoscaling",
                format!(
                    "minReplicas ({}) must not exceed maxReplicas ({})",
                    auto.min_replicas, auto.max_replicas
                ),
            );
        }
        c.range(
            "spec.autoscaling.targetCpuPercent",
            auto.target_cpu_percent.into(),
            1,
            100,
        );
    }

    let page = &spec.cache.page;
    c.range(
        "spec.cache.page.ttlSeconds",
        page.ttl_seconds.into(),
        1,
        86_400,
    );
    c.range(
        "spec.cache.page.maxSizeMb",
        page.max_size_mb.into(),
        1,
        102_400,
    );
    c.range("spec.cache.page.replicas", page.replicas.into(), 1, 20);
    if page.image.trim().is_empty() {
        c.fail("spec.cache.page.image", "must name a container image");
    }
    c.range(
        "spec.cache.objectCache.maxMemoryMb",
        spec.cache.object_cache.max_memory_mb.into(),
        8,
        65_536,
    );

    let emb = &spec.embedded;
    if emb.bind_address.parse::<IpAddr>().is_err() {
        c.fail(
            "spec.embedded.bindAddress",
            format!(
                "must be an IP address such as 127.0.0.1, got {:?}",
                emb.bind_address
            ),
        );
    }
    c.range("spec.embedded.httpPort", emb.http_port.into(), 1, 65535);
    let db_last = u32::from(emb.database_port) + db.instances.saturating_sub(1);
    if emb.database_port == 0 || db_last > 65535 {
        c.fail("spec.embedded.databasePort", format!("databasePort..databasePort+instances-1 must be within 1..=65535, got {}..={db_last}", emb.database_port));
    } else if (u32::from(emb.database_port)..=db_last).contains(&u32::from(emb.http_port)) {
        c.fail(
            "spec.embedded.httpPort",
            format!(
                "{} collides with the database ports {}..={db_last}",
                emb.http_port, emb.database_port
            ),
        );
    }
    if spec.router.enabled {
        let rp = emb.router_port(db.instances);
        if rp > 65535 {
            c.fail(
                "spec.embedded.routerPort",
                format!("databasePort + instances = {rp} is beyond 65535: set routerPort"),
            );
        } else if rp == u32::from(emb.http_port)
            || (u32::from(emb.database_port)..=db_last).contains(&rp)
        {
            c.fail(
                "spec.embedded.routerPort",
                format!("{rp} collides with the HTTP port or the database ports"),
            );
        }
    }
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "0.5", "512Mi", "10Gi", "2G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1.", ".5", "10GB", "ten", "1..2", "-1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate_spec(&WordPressClusterSpec::default()), vec![]);
    }
}
