//! Resilience and isolation: PodDisruptionBudgets and NetworkPolicies.

use std::collections::BTreeMap;

use hapress_spec::{Cluster, ServiceType};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::database::peer_port_numbers;
use crate::names::{Component, Names, OPERATOR_NAME, PROMETHEUS_NAME};
use crate::object::Object;
use crate::storage::NFS_PORTS;
use crate::{pod, router};

/// Disruption budgets and network policies.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    let mut out = vec![
        pdb(names, Component::Web),
        // Never more than one database pod voluntarily down: a replica set keeps its primary
        // and a semi-sync acknowledger; a galera cluster keeps quorum.
        pdb(names, Component::Database),
        Object::NetworkPolicy(default_deny(names)),
        Object::NetworkPolicy(web_policy(c, names)),
        Object::NetworkPolicy(db_policy(c, names)),
    ];
    if c.spec.storage.nfs.enabled {
        out.push(Object::NetworkPolicy(nfs_policy(names)));
    }
    if crate::cache::enabled(c) {
        out.push(Object::NetworkPolicy(cache_policy(names)));
    }
    if crate::page_cache::enabled(c) {
        out.push(pdb(names, Component::PageCache));
        out.push(Object::NetworkPolicy(page_cache_policy(c, names)));
    }
    out
}

/// The page cache's pods: HTTP from where visitors come (as the web pods without a page
/// cache); purges only from the web pods; the counters from Prometheus.
fn page_cache_policy(c: &Cluster, names: &Names) -> NetworkPolicy {
    policy(
        names,
        &names.page_cache(),
        names.selector(Component::PageCache),
        vec![
            NetworkPolicyIngressRule {
                from: visitors(c),
                ports: tcp([crate::page_cache::PORT]),
            },
            NetworkPolicyIngressRule {
                from: Some(vec![pods(names, Component::Web)]),
                ports: tcp([crate::page_cache::PURGE_PORT]),
            },
            NetworkPolicyIngressRule {
                from: Some(vec![prometheus()]),
                ports: tcp([crate::page_cache::PURGE_PORT]),
            },
        ],
    )
}

/// Where visitors' requests come from: the ingress controller's namespace, or anywhere behind
/// a cloud load balancer (whose source addresses are not known in advance).
fn visitors(c: &Cluster) -> Option<Vec<NetworkPolicyPeer>> {
    match c.spec.ingress.service_type {
        ServiceType::LoadBalancer => None,
        ServiceType::ClusterIP => Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(pod::selector(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                c.spec.ingress.controller_namespace.clone(),
            )]))),
            ..NetworkPolicyPeer::default()
        }]),
    }
}

/// Prometheus server pods, from any namespace.
fn prometheus() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(pod::selector(BTreeMap::from([(
            "app.kubernetes.io/name".into(),
            PROMETHEUS_NAME.into(),
        )]))),
        ..NetworkPolicyPeer::default()
    }
}

/// The object cache's Redis: only from the web pods.
fn cache_policy(names: &Names) -> NetworkPolicy {
    policy(
        names,
        &names.cache(),
        names.selector(Component::Cache),
        vec![NetworkPolicyIngressRule {
            from: Some(vec![pods(names, Component::Web)]),
            ports: tcp([crate::cache::PORT]),
        }],
    )
}

fn pdb(names: &Names, component: Component) -> Object {
    let name = match component {
        Component::Web => names.web(),
        Component::Database | Component::Nfs => names.db(),
        Component::Cache => names.cache(),
        Component::PageCache => names.page_cache(),
    };
    Object::PodDisruptionBudget(PodDisruptionBudget {
        metadata: pod::meta(names, &name, names.labels(component)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(pod::selector(names.selector(component))),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

fn policy(
    names: &Names,
    name: &str,
    target: BTreeMap<String, String>,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: pod::meta(names, name, names.site_labels()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod::selector(target)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Nothing reaches a pod of the site unless a policy below admits it.
fn default_deny(names: &Names) -> NetworkPolicy {
    policy(
        names,
        &names.of("default-deny"),
        names.site_selector(),
        vec![],
    )
}

fn tcp(ports: impl IntoIterator<Item = i32>) -> Option<Vec<NetworkPolicyPort>> {
    Some(
        ports
            .into_iter()
            .map(|p| NetworkPolicyPort {
                port: Some(IntOrString::Int(p)),
                protocol: Some("TCP".into()),
                ..NetworkPolicyPort::default()
            })
            .collect(),
    )
}

fn pods(names: &Names, component: Component) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(pod::selector(names.selector(component))),
        ..NetworkPolicyPeer::default()
    }
}

/// Web pods: HTTP from the page cache's pods, or without a page cache from where visitors
/// come ([`visitors`]); the router sidecar's metrics from Prometheus.
fn web_policy(c: &Cluster, names: &Names) -> NetworkPolicy {
    let from = if crate::page_cache::enabled(c) {
        Some(vec![pods(names, Component::PageCache)])
    } else {
        visitors(c)
    };
    let mut rules = vec![NetworkPolicyIngressRule {
        from,
        ports: tcp([80]),
    }];
    if router::enabled(c) {
        // The router's metrics. The SQL port listens on loopback and needs no rule.
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![prometheus()]),
            ports: tcp([router::METRICS_PORT]),
        });
    }
    policy(names, &names.web(), names.selector(Component::Web), rules)
}

/// Database pods: SQL from the web pods (WordPress, or its router sidecar, which reaches every
/// database pod directly by its headless-Service name) and the operator; replication, cloning and galera
/// traffic only between database pods.
fn db_policy(c: &Cluster, names: &Names) -> NetworkPolicy {
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(pod::selector(BTreeMap::from([(
            "app.kubernetes.io/name".into(),
            OPERATOR_NAME.into(),
        )]))),
        ..NetworkPolicyPeer::default()
    };
    policy(
        names,
        &names.db(),
        names.selector(Component::Database),
        vec![
            NetworkPolicyIngressRule {
                from: Some(vec![pods(names, Component::Web), operator]),
                ports: tcp([3306]),
            },
            NetworkPolicyIngressRule {
                from: Some(vec![pods(names, Component::Database)]),
                ports: tcp(peer_port_numbers(c.spec.database.mode)),
            },
        ],
    )
}

/// NFS server: only the nodes mounting for web pods. The kubelet mounts from the node's
/// network namespace, so the source is the node, not the pod: admitted by port only.
fn nfs_policy(names: &Names) -> NetworkPolicy {
    policy(
        names,
        &names.nfs(),
        names.selector(Component::Nfs),
        vec![NetworkPolicyIngressRule {
            from: None,
            ports: tcp(NFS_PORTS.iter().map(|(_, p)| *p)),
        }],
    )
}
