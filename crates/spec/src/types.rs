//! The `WordPressCluster` spec types. Every field has a default, so an empty spec is valid.
//!
//! These types are the single source of truth for `hapress.yaml`, the Kubernetes CRD (via
//! `CustomResource` + `JsonSchema`), validation and the spec reference in the README.

use std::collections::BTreeMap;

use hapress_contract::config::defaults;
pub use hapress_contract::config::ReadYourWrites;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of one highly available WordPress site.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "hapress.dev",
    version = "v1alpha1",
    kind = "WordPressCluster",
    namespaced,
    status = "WordPressClusterStatus",
    shortname = "wpc",
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WordPressClusterSpec {
    /// The WordPress site: title, URL, administrator.
    pub site: SiteSpec,
    /// The stateless web tier (php-fpm or Apache+mod_php replicas).
    pub web: WebSpec,
    /// The MariaDB tier.
    pub database: DatabaseSpec,
    /// The hapress SQL router between WordPress and MariaDB (read/write splitting).
    pub router: RouterSpec,
    /// The shared content volume (`wp-content/uploads`).
    pub storage: StorageSpec,
    /// How the site is exposed in Kubernetes (Ingress, TLS).
    pub ingress: IngressSpec,
    /// Horizontal autoscaling of the web tier (Kubernetes).
    pub autoscaling: AutoscalingSpec,
    /// Caches in front of and behind WordPress.
    pub cache: CacheSpec,
    /// Loopback addresses and ports for the embedded runtime (`hapress up`).
    pub embedded: EmbeddedSpec,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WordPressClusterStatus {
    /// `Pending`, `Ready` or `Degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Name of the database pod currently acting as primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Generation of the spec last acted upon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The WordPress site itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SiteSpec {
    /// Site title shown in the header and `<title>`.
    pub title: String,
    /// Public URL of the site (`https://blog.example.com`). Embedded default:
    /// `http://<bindAddress>:<httpPort>`; Kubernetes default: from `ingress.host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Login name of the first administrator.
    pub admin_user: String,
    /// E-mail address of the first administrator.
    pub admin_email: String,
    /// WordPress locale (`en_US`, `de_DE`, ...).
    pub locale: String,
    /// `WP_ENVIRONMENT_TYPE`: production, staging, development or local. Application passwords
    /// (REST API writes) over plain HTTP need `local`.
    pub environment: String,
}

impl Default for SiteSpec {
    fn default() -> Self {
        Self {
            title: "My WordPress Site".into(),
            url: None,
            admin_user: "admin".into(),
            admin_email: "admin@example.com".into(),
            locale: "en_US".into(),
            environment: "production".into(),
        }
    }
}

/// CPU and memory amounts in Kubernetes quantity notation (`500m`, `512Mi`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComputeResources {
    /// CPU, e.g. `500m` or `2`.
    pub cpu: String,
    /// Memory, e.g. `512Mi`.
    pub memory: String,
}

impl ComputeResources {
    fn new(cpu: &str, memory: &str) -> Self {
        Self {
            cpu: cpu.into(),
            memory: memory.into(),
        }
    }
}

/// Kubernetes QoS class to produce for a workload.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum QosClass {
    /// requests == limits: never evicted before Burstable pods.
    #[default]
    Guaranteed,
    /// requests < limits (`limits` must be set).
    Burstable,
}

/// Requests and limits of one container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    pub requests: ComputeResources,
    /// Upper bound; must be set for `Burstable`, must be absent or equal for `Guaranteed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<ComputeResources>,
    /// The QoS class the rendered pods must get.
    pub qos_class: QosClass,
}

impl Resources {
    fn with_requests(cpu: &str, memory: &str) -> Self {
        Self {
            requests: ComputeResources::new(cpu, memory),
            limits: None,
            qos_class: QosClass::Guaranteed,
        }
    }
}

impl Default for Resources {
    fn default() -> Self {
        Self::with_requests("500m", "512Mi")
    }
}

/// Pod anti-affinity strength.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AntiAffinity {
    /// Prefer spreading replicas over nodes.
    #[default]
    Soft,
    /// Require one replica per node (needs at least `replicas` nodes).
    Hard,
}

/// The web tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct WebSpec {
    /// Number of web replicas (1..=64).
    pub replicas: u32,
    /// PHP worker processes per replica (1..=256).
    pub php_workers: u32,
    /// PHP `memory_limit` per worker (`128M`, `1G`).
    pub php_memory_limit: String,
    /// Container image for Kubernetes.
    pub image: String,
    /// Requests/limits of each web pod (Kubernetes).
    pub resources: Resources,
    /// Spread replicas over nodes softly or strictly (Kubernetes).
    pub anti_affinity: AntiAffinity,
    /// Number of zones available for `anti_affinity: hard` checks; 0 means unknown.
    pub zones: u32,
}

impl Default for WebSpec {
    fn default() -> Self {
        Self {
            replicas: 3,
            php_workers: 4,
            php_memory_limit: "256M".into(),
            image: "wordpress:6.8-php8.3-apache".into(),
            resources: Resources::default(),
            anti_affinity: AntiAffinity::Soft,
            zones: 0,
        }
    }
}

/// The SQL router: WordPress connects to it as to one MariaDB server; it sends writes to the
/// primary and plain reads to healthy replicas.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RouterSpec {
    /// Route WordPress through the router (false: WordPress talks to the primary directly).
    pub enabled: bool,
    /// Replicas further behind than this (seconds) get no reads (0..=3600).
    pub max_replication_lag_seconds: u32,
    /// `none`, `session` or `global`.
    pub read_your_writes: ReadYourWrites,
    /// Connections the router keeps to each database server, in use or idle: a finished
    /// session's connection is reset and serves the next one (0..=10000; 0 turns pooling
    /// off). Sessions beyond it open connections of their own, closed when they end: the
    /// server's `max_connections` is the only limit, as without the router. Per router: on
    /// Kubernetes every web pod has its own.
    pub pool_size: u32,
    /// Image of the router sidecar (Kubernetes): the hapress image (`deploy/Dockerfile`).
    pub image: String,
    /// Requests/limits of the router sidecar (Kubernetes).
    pub resources: Resources,
}

impl Default for RouterSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_replication_lag_seconds: defaults::MAX_REPLICATION_LAG as u32,
            read_your_writes: ReadYourWrites::Session,
            pool_size: defaults::POOL_SIZE as u32,
            image: "ghcr.io/hapress/hapress:0.1.0".into(),
            resources: Resources::with_requests("100m", "64Mi"),
        }
    }
}

/// How the database tier keeps copies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseMode {
    /// One primary, asynchronous/semi-synchronous GTID replicas.
    #[default]
    Replication,
    /// Synchronous multi-primary Galera cluster.
    Galera,
}

/// Semi-synchronous replication settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SemiSyncSpec {
    /// Wait for a replica to acknowledge each commit (`wait_point=AFTER_SYNC`).
    pub enabled: bool,
    /// With no replica acknowledging, commit anyway after `timeoutMs` (asynchronous
    /// replication until a replica is back). false (the default): a commit is acknowledged only
    /// once a replica has it, so a failover never loses an acknowledged write; with every
    /// replica gone, writes wait until one returns.
    pub fallback_to_async: bool,
    /// With `fallbackToAsync`: milliseconds a commit waits for an acknowledgement before
    /// falling back.
    pub timeout_ms: u64,
}

impl Default for SemiSyncSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            fallback_to_async: false,
            timeout_ms: 10_000,
        }
    }
}

impl SemiSyncSpec {
    /// `rpl_semi_sync_master_timeout`: without `fallbackToAsync`, as long as MariaDB can wait
    /// (about 585 million years), so no commit is acknowledged before a replica has it.
    pub fn master_timeout_ms(&self) -> u64 {
        if self.fallback_to_async {
            self.timeout_ms
        } else {
            u64::MAX
        }
    }

    /// The replication settings' semi-sync part: `None` when it is off.
    pub fn settings(&self) -> Option<hapress_contract::replication::SemiSync> {
        self.enabled
            .then(|| hapress_contract::replication::SemiSync {
                timeout_ms: self.master_timeout_ms(),
                fallback_to_async: self.fallback_to_async,
            })
    }
}

/// Automatic failover of the primary, by the SQL routers (any number; the one holding a lock
/// on a majority of the database servers acts).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FailoverSpec {
    /// Promote a replica when the primary is lost (needs 3 or more instances: a majority must
    /// remain to decide).
    pub enabled: bool,
    /// How often every database server is probed, milliseconds (50..=10000).
    pub probe_interval_ms: u32,
    /// A probe not answered within this many milliseconds failed (10..=10000).
    pub probe_timeout_ms: u32,
    /// Probes in a row the primary must miss before it is taken for lost (1..=20).
    pub detect_probes: u32,
    /// Milliseconds every replica must have received nothing from a primary that misses
    /// probes, to confirm it is gone (200..=60000); replicas get a heartbeat a third as often.
    pub silence_ms: u32,
    /// The server that should be the primary (`0..instances`; unset: whichever is). When
    /// another one is, and this one replicates and has caught up, the acting router moves the
    /// primary there by a planned switchover: how to switch over through the spec (GitOps),
    /// and where the primary returns after a failover once this server is back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_primary: Option<u32>,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            probe_interval_ms: defaults::PROBE_INTERVAL_MS as u32,
            probe_timeout_ms: defaults::PROBE_TIMEOUT_MS as u32,
            detect_probes: defaults::DETECT_PROBES,
            silence_ms: defaults::SILENCE_MS as u32,
            preferred_primary: None,
        }
    }
}

/// A persistent volume request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct VolumeSpec {
    /// Capacity (`10Gi`).
    pub size: String,
    /// StorageClass; the cluster default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl VolumeSpec {
    fn sized(size: &str) -> Self {
        Self {
            size: size.into(),
            storage_class: None,
        }
    }
}

impl Default for VolumeSpec {
    fn default() -> Self {
        Self::sized("10Gi")
    }
}

/// The MariaDB tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DatabaseSpec {
    /// `replication` (primary + replicas) or `galera`.
    pub mode: DatabaseMode,
    /// Number of MariaDB servers (1..=9; galera needs an odd number >= 3).
    pub instances: u32,
    /// MariaDB container image for Kubernetes (the LTS line by default).
    pub image: String,
    /// Semi-synchronous replication.
    pub semi_sync: SemiSyncSpec,
    /// Automatic failover.
    pub failover: FailoverSpec,
    /// Per-server data volume (Kubernetes).
    pub storage: VolumeSpec,
    /// Extra `[mariadbd]` settings (`max_connections: "500"`); replication settings that
    /// hapress relies on cannot be overridden.
    pub config: BTreeMap<String, String>,
    /// Requests/limits of each database pod (Kubernetes).
    pub resources: Resources,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            mode: DatabaseMode::Replication,
            instances: 3,
            image: "mariadb:11.4".into(),
            semi_sync: SemiSyncSpec::default(),
            failover: FailoverSpec::default(),
            storage: VolumeSpec::default(),
            config: BTreeMap::new(),
            resources: Resources::with_requests("1", "1Gi"),
        }
    }
}

/// In-cluster NFS server for clusters without ReadWriteMany storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NfsSpec {
    /// Run an NFS server pod (a single point of failure; prefer a RWX storage class).
    pub enabled: bool,
    /// StorageClass of the NFS server's own (ReadWriteOnce) disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// The shared content volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct StorageSpec {
    /// Capacity of the shared content volume.
    pub size: String,
    /// A ReadWriteMany StorageClass (CephFS, NFS CSI, EFS...). Mutually exclusive with `nfs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Serve the content volume from an in-cluster NFS server instead.
    pub nfs: NfsSpec,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: "20Gi".into(),
            storage_class: None,
            nfs: NfsSpec::default(),
        }
    }
}

/// TLS for the Ingress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TlsSpec {
    /// Serve HTTPS and redirect HTTP to it.
    pub enabled: bool,
    /// cert-manager ClusterIssuer that issues the certificate.
    pub cluster_issuer: String,
    /// Secret holding the certificate; `<name>-tls` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            cluster_issuer: "letsencrypt".into(),
            secret_name: None,
        }
    }
}

/// How the web Service is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ServiceType {
    /// Behind an Ingress.
    #[default]
    ClusterIP,
    /// A cloud load balancer instead of an Ingress.
    LoadBalancer,
}

/// Ingress settings (Kubernetes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct IngressSpec {
    /// Render an Ingress.
    pub enabled: bool,
    /// Host name (`blog.example.com`).
    pub host: String,
    /// `ingressClassName`.
    pub class_name: String,
    /// HTTPS through cert-manager.
    pub tls: TlsSpec,
    /// Service type of the web Service.
    pub service_type: ServiceType,
    /// Namespace of the ingress controller's pods: the only source the web NetworkPolicy admits
    /// (with `serviceType: LoadBalancer`, web pods accept traffic from anywhere instead).
    pub controller_namespace: String,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "wordpress.example.com".into(),
            class_name: "nginx".into(),
            tls: TlsSpec::default(),
            service_type: ServiceType::ClusterIP,
            controller_namespace: "ingress-nginx".into(),
        }
    }
}

/// Horizontal autoscaling of the web tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AutoscalingSpec {
    /// Render a HorizontalPodAutoscaler.
    pub enabled: bool,
    /// Lower bound of web replicas.
    pub min_replicas: u32,
    /// Upper bound of web replicas.
    pub max_replicas: u32,
    /// Average CPU utilisation (percent of requests) to aim for.
    pub target_cpu_percent: u32,
    /// Seconds of lower load before scaling down.
    pub scale_down_stabilization_seconds: u32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_replicas: 3,
            max_replicas: 10,
            target_cpu_percent: 50,
            scale_down_stabilization_seconds: 300,
        }
    }
}

/// Caches in front of and behind WordPress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CacheSpec {
    /// Full-page cache of anonymous pages, in front of the web replicas.
    pub page: PageCacheSpec,
    /// Persistent object cache (Redis) behind the web replicas.
    pub object_cache: ObjectCacheSpec,
}

/// WordPress's object cache kept in Redis and shared by every web replica, through an
/// `object-cache.php` drop-in. Redis being down never takes the site down: the drop-in goes
/// on without it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ObjectCacheSpec {
    /// On or off.
    pub enabled: bool,
    /// Memory Redis may use (8..=65536 MiB); the least recently used entries go first.
    pub max_memory_mb: u32,
    /// Redis image of the Kubernetes render (the last BSD-licensed Redis line by default).
    pub image: String,
}

impl Default for ObjectCacheSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_memory_mb: 64,
            image: "redis:7.2-alpine".into(),
        }
    }
}

impl ObjectCacheSpec {
    /// The `redis.conf` lines both runtimes write: nothing saved to disk (an emptied cache is
    /// only slower), one database, the least recently used entries evicted at
    /// `maxMemoryMb`, and Redis 7's refusals of `CONFIG SET` of paths, `DEBUG` and `MODULE`
    /// stated.
    pub fn redis_settings(&self) -> String {
        format!(
            concat!(
                "save \"\"\nappendonly no\ndatabases 1\n",
                "maxmemory {}mb\nmaxmemory-policy allkeys-lru\n",
                "enable-protected-configs no\nenable-debug-command no\nenable-module-command no\n",
            ),
            self.max_memory_mb
        )
    }
}

/// The full-page cache: anonymous `GET`/`HEAD` pages are served from it; logged-in users,
/// commenters, POSTs, the admin, logins, cron, REST, XML-RPC and previews never are. A
/// must-use plugin empties it whenever content changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PageCacheSpec {
    /// On or off.
    pub enabled: bool,
    /// How long a cached page is served before it is rendered again (1..=86400 seconds).
    pub ttl_seconds: u32,
    /// Disk the cache may use (1..=102400 MiB); the least recently used pages go first.
    pub max_size_mb: u32,
    /// Kubernetes render: cache pods in front of the web pods (1..=20). Each keeps its own
    /// copy; a change empties every one before it returns.
    pub replicas: u32,
    /// Kubernetes render: the nginx image of the cache pods (its `nginx` binary and
    /// `mime.types`; hapress mounts its own `nginx.conf`).
    pub image: String,
}

impl Default for PageCacheSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_seconds: 600,
            max_size_mb: 256,
            replicas: 2,
            image: "nginx:1.27-alpine".into(),
        }
    }
}

impl PageCacheSpec {
    /// The `http`-block rules both runtimes' nginx use: which requests skip the cache
    /// (`$hapress_skip`) and the `hapress_cache` log format (one `$upstream_cache_status` a
    /// line, counted for `status` and metrics).
    ///
    /// Never served from or stored in the cache: methods other than GET and HEAD; requests
    /// with a logged-in, commenter, post-password or `wordpress_no_cache` cookie or with
    /// credentials (`Authorization`); the admin, logins, sign-ups, cron, REST, XML-RPC,
    /// comment posts and previews.
    pub const NGINX_SKIP_RULES: &'static str = r#"    map $request_method $hapress_skip_method { GET 0; HEAD 0; default 1; }
    map $http_cookie $hapress_skip_cookie {
        default 0;
        "~*(wordpress_logged_in_|wordpress_sec_|wp-postpass_|comment_author_|wordpress_no_cache|wp-settings-)" 1;
    }
    map $request_uri $hapress_skip_uri {
        default 0;
        "~*^/(wp-admin/|wp-login\.php|wp-cron\.php|xmlrpc\.php|wp-json/|wp-comments-post\.php|wp-signup\.php|wp-activate\.php|wp-trackback\.php)" 1;
        "~*[?&](preview|rest_route|doing_wp_cron)=" 1;
    }
    map $http_authorization $hapress_skip_auth { "" 0; default 1; }
    map "$hapress_skip_method$hapress_skip_cookie$hapress_skip_uri$hapress_skip_auth" $hapress_skip { "0000" 0; default 1; }
    # One line per request that reached the cache, with what the cache did.
    log_format hapress_cache '$upstream_cache_status';
"#;

    /// The location directives of the cache for nginx's `module` (`fastcgi` or `proxy`),
    /// keyed by `key`: the copy is valid `ttlSeconds`; one request renders an expired page
    /// while the others get the old copy; a copy is served while every web replica fails;
    /// responses that set a cookie or say `Cache-Control: private/no-store/no-cache` (nginx's
    /// rules) and pages marked `X-Hapress-No-Cache` (rendered across a purge) are not stored;
    /// `X-Cache` tells what happened.
    pub fn nginx_location(&self, module: &str, key: &str) -> String {
        format!(
            r#"            {module}_cache hapress_pages;
            {module}_cache_key "{key}";
            {module}_cache_valid 200 301 302 {ttl}s;
            {module}_cache_bypass $hapress_skip;
            {module}_no_cache $hapress_skip $upstream_http_x_hapress_no_cache;
            {module}_cache_lock on;
            {module}_cache_lock_timeout 10s;
            {module}_cache_use_stale updating error timeout invalid_header {codes};
            {module}_cache_background_update on;
            {module}_hide_header X-Hapress-No-Cache;
            add_header X-Cache $upstream_cache_status always;
"#,
            ttl = self.ttl_seconds,
            // FastCGI has no gateway errors of its own; a proxy's upstream may answer them.
            codes = if module == "proxy" {
                "http_500 http_502 http_503 http_504"
            } else {
                "http_500 http_503"
            },
        )
    }
}

/// Loopback addresses of the embedded runtime.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EmbeddedSpec {
    /// Address every component listens on.
    pub bind_address: String,
    /// nginx HTTP port.
    pub http_port: u16,
    /// Port of database server 0; server N listens on `databasePort + N`.
    pub database_port: u16,
    /// TCP port of the SQL router, for your own MySQL tools and scripts (WordPress uses its
    /// unix socket); 0: `databasePort + instances`.
    pub router_port: u16,
}

impl EmbeddedSpec {
    /// The SQL router's TCP port for a cluster of `instances` database servers.
    pub fn router_port(&self, instances: u32) -> u32 {
        if self.router_port == 0 {
            u32::from(self.database_port) + instances
        } else {
            u32::from(self.router_port)
        }
    }
}

impl Default for EmbeddedSpec {
    fn default() -> Self {
        Self {
            bind_address: "127.0.0.1".into(),
            http_port: 8080,
            database_port: 13306,
            router_port: 0,
        }
    }
}
