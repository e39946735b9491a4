//! Object names and labels: every object is prefixed by the cluster name and carries the
//! recommended `app.kubernetes.io/*` labels, so `kubectl get all -l app.kubernetes.io/instance=X`
//! shows one site.

use std::collections::BTreeMap;

use hapress_spec::Cluster;

/// Label holding a database pod's replication role (`primary` or `replica`), maintained by the
/// pod's `label` init container on start and by the operator on failover.
pub const ROLE_LABEL: &str = "hapress.dev/role";
/// Pod-template annotation listing labels set at runtime rather than in the template; the lint
/// accepts Service selectors on them.
pub const RUNTIME_LABELS_ANNOTATION: &str = "hapress.dev/runtime-labels";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGER: &str = "hapress";
/// Label value the operator's pods carry (`app.kubernetes.io/name`); the database admits them.
pub const OPERATOR_NAME: &str = "hapress-operator";
/// Label value Prometheus server pods carry (`app.kubernetes.io/name`, as the Prometheus
/// Operator and the community chart set it); they may scrape the router's metrics port.
pub const PROMETHEUS_NAME: &str = "prometheus";

/// One tier of the site; becomes `app.kubernetes.io/component`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// WordPress pods.
    Web,
    /// MariaDB pods.
    Database,
    /// The in-cluster NFS server.
    Nfs,
    /// Redis, the object cache.
    Cache,
    /// nginx, the page cache in front of the web pods.
    PageCache,
}

impl Component {
    /// The label value and name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Web => "web",
            Component::Database => "database",
            Component::Nfs => "nfs",
            Component::Cache => "cache",
            Component::PageCache => "page-cache",
        }
    }

    fn app_name(self) -> &'static str {
        match self {
            Component::Web => "wordpress",
            Component::Database => "mariadb",
            Component::Nfs => "nfs-server",
            Component::Cache => "redis",
            Component::PageCache => "nginx",
        }
    }
}

/// Names of every object of one cluster.
#[derive(Clone, Debug)]
pub struct Names {
    /// `metadata.name` of the spec.
    pub cluster: String,
    /// Namespace of every namespaced object.
    pub namespace: String,
}

impl Names {
    /// Names for `cluster`; the namespace defaults to the cluster name.
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.name.clone(),
            namespace: cluster
                .namespace
                .clone()
                .unwrap_or_else(|| cluster.name.clone()),
        }
    }

    /// `<cluster>-<suffix>`.
    pub fn of(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.cluster)
    }

    /// Web Deployment, Service, PDB, HPA, ServiceAccount.
    pub fn web(&self) -> String {
        self.of("web")
    }
    /// Database StatefulSet, its headless Service (stable pod DNS), PDB, ServiceAccount.
    pub fn db(&self) -> String {
        self.of("db")
    }
    /// Service selecting the current primary.
    pub fn db_primary(&self) -> String {
        self.of("db-primary")
    }
    /// Service selecting the replicas (reads).
    pub fn db_replicas(&self) -> String {
        self.of("db-replicas")
    }
    /// The Service WordPress connects to: the primary (replication) or any galera node.
    pub fn db_writer(&self, mode: hapress_spec::DatabaseMode) -> String {
        match mode {
            hapress_spec::DatabaseMode::Replication => self.db_primary(),
            hapress_spec::DatabaseMode::Galera => self.of("db-nodes"),
        }
    }
    /// ConfigMap with `my.cnf` fragments and the pod scripts.
    pub fn db_config(&self) -> String {
        self.of("db-config")
    }
    /// Secret with the database passwords.
    pub fn db_secret(&self) -> String {
        self.of("db-credentials")
    }
    /// Secret with the WordPress authentication keys and salts.
    pub fn web_secret(&self) -> String {
        self.of("auth-keys")
    }
    /// The object cache's Redis: Deployment, Service, ServiceAccount, NetworkPolicy.
    pub fn cache(&self) -> String {
        self.of("cache")
    }
    /// ConfigMap with `redis.conf` and its start script.
    pub fn cache_config(&self) -> String {
        self.of("cache-config")
    }
    /// Secret with Redis's password.
    pub fn cache_secret(&self) -> String {
        self.of("cache-credentials")
    }
    /// The page cache's Deployment, Service, PDB, ServiceAccount, NetworkPolicy.
    pub fn page_cache(&self) -> String {
        self.of("page-cache")
    }
    /// Headless Service listing every page-cache pod (the purge reaches each).
    pub fn page_cache_peers(&self) -> String {
        self.of("page-cache-peers")
    }
    /// ConfigMap with the page cache's `nginx.conf`.
    pub fn page_cache_config(&self) -> String {
        self.of("page-cache-config")
    }
    /// Secret with the page cache's purge key.
    pub fn page_cache_secret(&self) -> String {
        self.of("page-cache-key")
    }
    /// ConfigMap with hapress's PHP for WordPress (the object-cache drop-in, the page
    /// cache's must-use plugin).
    pub fn web_php(&self) -> String {
        self.of("web-php")
    }
    /// The shared content PVC.
    pub fn content(&self) -> String {
        self.of("content")
    }
    /// The in-cluster NFS server's StatefulSet and Service.
    pub fn nfs(&self) -> String {
        self.of("nfs")
    }
    /// The PersistentVolume pointing at the in-cluster NFS server (cluster-scoped: namespaced
    /// in its name so two sites never collide).
    pub fn nfs_pv(&self) -> String {
        format!("{}-{}-content", self.namespace, self.cluster)
    }
    /// The TLS certificate Secret.
    pub fn tls_secret(&self, spec_name: Option<&String>) -> String {
        spec_name.cloned().unwrap_or_else(|| self.of("tls"))
    }
    /// DNS name of database pod `ordinal` through the headless Service.
    pub fn db_pod_host(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}.{}", self.db(), self.db())
    }
    /// Fully qualified DNS name of database pod `ordinal` (the router resolves it on every
    /// backend connection: a full name costs one lookup, a short one walks the search list).
    /// Assumes the default cluster domain `cluster.local`.
    pub fn db_pod_fqdn(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.svc.cluster.local",
            self.db_pod_host(ordinal),
            self.namespace
        )
    }
    /// ConfigMap with the SQL router sidecar's `router.yaml`.
    pub fn router_config(&self) -> String {
        self.of("router-config")
    }

    /// Labels every object of the cluster carries.
    pub fn labels(&self, component: Component) -> BTreeMap<String, String> {
        let mut l = self.selector(component);
        l.insert("app.kubernetes.io/part-of".into(), "hapress".into());
        l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        l
    }

    /// The immutable subset used in selectors.
    pub fn selector(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), component.app_name().into()),
            ("app.kubernetes.io/instance".into(), self.cluster.clone()),
            (
                "app.kubernetes.io/component".into(),
                component.as_str().into(),
            ),
        ])
    }

    /// Labels of objects that belong to no single component (namespace, policies).
    pub fn site_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/instance".into(), self.cluster.clone()),
            ("app.kubernetes.io/part-of".into(), "hapress".into()),
            ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        ])
    }

    /// Selector matching every pod of the site.
    pub fn site_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("app.kubernetes.io/instance".into(), self.cluster.clone())])
    }
}
