//! Renders a `WordPressCluster` spec into the Kubernetes objects of a highly available
//! WordPress site, serialises them deterministically, and lints the object graph.
//!
//! Rendering is a pure function of the spec (plus random values only with
//! `generate_secrets`): the same spec gives byte-identical YAML, fit for GitOps.
//!
//! # Layout
//! - [`names`]: object names and the `app.kubernetes.io/*` labels.
//! - [`object`]: the closed set of rendered kinds, their apply order and YAML.
//! - [`pod`]: hardened security contexts, resources per QoS class, probes, volumes.
//! - [`scheduling`]: anti-affinity and zone spreading.
//! - [`secrets`]: which Secrets the pods read; optional generation.
//! - [`db_config`] and `scripts/`: MariaDB option files and pod scripts (ConfigMap data).
//! - [`database`]: the MariaDB StatefulSet (replication or galera) and its Services.
//! - [`web`]: the WordPress Deployment, Service and autoscaler.
//! - [`router`]: the SQL router sidecar of the web pods and its config.
//! - [`cache`]: the object cache's Redis and the web pods' drop-in.
//! - [`page_cache`]: the nginx tier caching anonymous pages, and its purge.
//! - [`storage`]: the shared content volume (RWX claim or in-cluster NFS server).
//! - [`edge`]: the Ingress.
//! - [`policy`]: disruption budgets and network policies.
//! - [`lint`]: checks over the rendered graph (`hapress render --check`).
//! - [`crd`]: the `WordPressCluster` CustomResourceDefinition.

pub mod cache;
pub mod crd;
pub mod database;
pub mod db_config;
pub mod edge;
pub mod lint;
pub mod names;
pub mod object;
pub mod page_cache;
pub mod pod;
pub mod policy;
pub mod router;
pub mod scheduling;
pub mod secrets;
pub mod storage;
pub mod web;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hapress_spec::Cluster;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use names::{Component, Names};
pub use object::Object;

/// User and group of the MariaDB containers (the image's `mysql` 999, moved above 10000 so it
/// never matches a host account).
pub const DB_UID: i64 = 10_999;
/// User and group of the WordPress containers (the image's `www-data` 33, moved likewise).
pub const WEB_UID: i64 = 10_033;
/// User and group of the SQL router sidecar: the `USER` of `deploy/Dockerfile`, and not the
/// WordPress user, so PHP code cannot signal or inspect the router.
pub const ROUTER_UID: i64 = 10_306;
/// User and group of the object cache's Redis (the image's `redis` 999 moved likewise).
pub const CACHE_UID: i64 = 10_379;
/// User and group of the page cache's nginx and purger (nginx's 101 moved likewise).
pub const PAGE_CACHE_UID: i64 = 10_101;

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object could not be serialised (a bug: every rendered type is serialisable).
    #[error("cannot serialise {object}: {source}")]
    Serialize {
        /// `Kind/name`.
        object: String,
        /// The serialiser's error.
        source: serde_yaml::Error,
    },
}

/// Crate result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rendering choices that are not part of the spec.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Render Secrets with random values instead of referencing them by name.
    pub generate_secrets: bool,
}

/// An object the output refers to but does not contain: created by the user, by another
/// controller, or by Kubernetes itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct External {
    /// Kind.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Who provides it.
    pub provider: String,
    /// The keys the output reads from it (Secrets the user creates); empty when not known.
    pub keys: Vec<String>,
}

/// The rendered site.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Names used.
    pub names: Names,
    /// Objects in apply order.
    pub objects: Vec<Object>,
    /// Objects referenced but not rendered.
    pub external: Vec<External>,
    /// Commands creating the Secrets the user must provide (empty with `generate_secrets`).
    pub secret_commands: Vec<String>,
    /// With the router and user-provided Secrets: the command adding `router-password` to an
    /// existing database Secret (sites created before the router).
    pub router_key_command: Option<String>,
}

/// A ServiceAccount that never gets an API token automatically.
pub fn service_account(names: &Names, name: &str, component: Component) -> ServiceAccount {
    ServiceAccount {
        metadata: pod::meta(names, name, names.labels(component)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

fn namespace(c: &Cluster, names: &Names) -> Namespace {
    let mut labels = names.site_labels();
    // The restricted Pod Security Standard, enforced, unless the opt-in NFS server (a
    // privileged pod) is rendered: then warn and audit only.
    let level = if c.spec.storage.nfs.enabled {
        "privileged"
    } else {
        "restricted"
    };
    labels.insert("pod-security.kubernetes.io/enforce".into(), level.into());
    labels.insert(
        "pod-security.kubernetes.io/warn".into(),
        "restricted".into(),
    );
    labels.insert(
        "pod-security.kubernetes.io/audit".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(names.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Renders every object of the site described by `cluster` (already validated).
pub fn render(cluster: &Cluster, options: &RenderOptions) -> Manifest {
    let names = Names::new(cluster);
    let mut objects = vec![Object::Namespace(namespace(cluster, &names))];
    let mut external = vec![External {
        kind: "ConfigMap",
        name: "kube-root-ca.crt".into(),
        provider: "Kubernetes (in every namespace)".into(),
        keys: vec!["ca.crt".into()],
    }];
    let refs = secrets::required(cluster, &names);
    let mut secret_commands = vec![];
    let mut router_key_command = None;
    if options.generate_secrets {
        objects.extend(secrets::generate(&names, &refs));
    } else {
        secret_commands = secrets::create_commands(&names, &refs);
        if router::enabled(cluster) {
            router_key_command = Some(secrets::add_router_key_command(&names));
        }
        external.extend(refs.iter().map(|r| External {
            kind: "Secret",
            name: r.name.clone(),
            provider: "you (see the commands in the header)".into(),
            keys: r.keys.iter().map(|k| (*k).to_string()).collect(),
        }));
    }
    let ing = &cluster.spec.ingress;
    if ing.enabled && ing.tls.enabled {
        external.push(External {
            kind: "Secret",
            name: names.tls_secret(ing.tls.secret_name.as_ref()),
            provider: if ing.tls.cluster_issuer.is_empty() {
                "you (an existing certificate)".into()
            } else {
                format!("cert-manager (ClusterIssuer {})", ing.tls.cluster_issuer)
            },
            keys: vec![],
        });
    }
    objects.extend(storage::objects(cluster, &names));
    objects.extend(database::objects(cluster, &names));
    objects.extend(web::objects(cluster, &names));
    objects.extend(cache::objects(cluster, &names));
    objects.extend(page_cache::objects(cluster, &names));
    objects.extend(policy::objects(cluster, &names));
    objects.extend(edge::objects(cluster, &names));
    objects.sort_by(|a, b| (a.rank(), a.name()).cmp(&(b.rank(), b.name())));
    external.sort();
    Manifest {
        names,
        objects,
        external,
        secret_commands,
        router_key_command,
    }
}

impl Manifest {
    /// The comment block opening the output: how to apply it and what must exist first.
    pub fn header(&self) -> String {
        let mut h = String::new();
        let _ = writeln!(
            h,
            "# Rendered by `hapress render` for WordPressCluster {} in namespace {}.",
            self.names.cluster, self.names.namespace
        );
        let _ = writeln!(h, "# Apply with: kubectl apply -f <this output>");
        if !self.secret_commands.is_empty() {
            let _ = writeln!(
                h,
                "# Create these Secrets first (or render with --generate-secrets):"
            );
            for c in &self.secret_commands {
                let _ = writeln!(h, "#   {c}");
            }
            if let Some(cmd) = &self.router_key_command {
                let _ = writeln!(
                    h,
                    "# A database Secret created before the SQL router needs its key added:"
                );
                let _ = writeln!(h, "#   {cmd}");
            }
        }
        for e in &self.external {
            if e.kind == "Secret" && !e.provider.starts_with("you (see") {
                let _ = writeln!(h, "# {} {} is provided by {}.", e.kind, e.name, e.provider);
            }
        }
        h
    }

    /// Every object as one multi-document YAML stream, header first.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = self.header();
        for o in &self.objects {
            out.push_str("---\n");
            out.push_str(&o.to_yaml()?);
        }
        Ok(out)
    }

    /// One file per object (`--out-dir`), plus `README.txt` holding the header.
    pub fn files(&self) -> Result<BTreeMap<String, String>> {
        let mut files = BTreeMap::new();
        files.insert("README.txt".into(), self.header());
        for o in &self.objects {
            files.insert(o.file_name(), o.to_yaml()?);
        }
        Ok(files)
    }
}
