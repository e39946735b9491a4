//! The rendered object graph: a closed set of typed Kubernetes objects, their apply order and
//! their deterministic YAML.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, PodTemplateSpec, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{Error, Result};

/// One rendered object.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a few dozen objects per render; boxing buys nothing
pub enum Object {
    /// The site's namespace.
    Namespace(Namespace),
    /// A workload identity.
    ServiceAccount(ServiceAccount),
    /// Namespaced permissions.
    Role(Role),
    /// Grants a Role to a ServiceAccount.
    RoleBinding(RoleBinding),
    /// Generated credentials (`--generate-secrets` only).
    Secret(Secret),
    /// Configuration files and scripts.
    ConfigMap(ConfigMap),
    /// The NFS-backed content volume.
    PersistentVolume(PersistentVolume),
    /// The shared content claim.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// A Service.
    Service(Service),
    /// Database or NFS server.
    StatefulSet(StatefulSet),
    /// The web tier.
    Deployment(Deployment),
    /// Voluntary-disruption limits.
    PodDisruptionBudget(PodDisruptionBudget),
    /// Who may talk to whom.
    NetworkPolicy(NetworkPolicy),
    /// Web autoscaling.
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    /// HTTP(S) entry point.
    Ingress(Ingress),
}

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::PersistentVolume(_) => "PersistentVolume",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Service(_) => "Service",
            Object::StatefulSet(_) => "StatefulSet",
            Object::Deployment(_) => "Deployment",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::HorizontalPodAutoscaler(_) => "HorizontalPodAutoscaler",
            Object::Ingress(_) => "Ingress",
        }
    }

    /// Apply order: namespace, identities, secrets, config, storage, services, workloads,
    /// policies, autoscaling, ingress. Identities come before workloads because a pod naming a
    /// missing ServiceAccount is rejected.
    pub fn rank(&self) -> u8 {
        match self {
            Object::Namespace(_) => 0,
            Object::ServiceAccount(_) => 1,
            Object::Role(_) => 2,
            Object::RoleBinding(_) => 3,
            Object::Secret(_) => 4,
            Object::ConfigMap(_) => 5,
            Object::PersistentVolume(_) => 6,
            Object::PersistentVolumeClaim(_) => 7,
            Object::Service(_) => 8,
            Object::StatefulSet(_) => 9,
            Object::Deployment(_) => 10,
            Object::PodDisruptionBudget(_) => 11,
            Object::NetworkPolicy(_) => 12,
            Object::HorizontalPodAutoscaler(_) => 13,
            Object::Ingress(_) => 14,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::ServiceAccount(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::PersistentVolume(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::HorizontalPodAutoscaler(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// Whether the kind lives in a namespace.
    pub fn is_namespaced(&self) -> bool {
        !matches!(self, Object::Namespace(_) | Object::PersistentVolume(_))
    }

    /// The pod template of a workload.
    pub fn pod_template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Object::StatefulSet(s) => s.spec.as_ref().map(|s| &s.template),
            Object::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            _ => None,
        }
    }

    /// `<kind>/<name>`, as kubectl prints it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// File name in `--out-dir`: `<rank>-<kind>-<name>.yaml`, sorting in apply order.
    pub fn file_name(&self) -> String {
        format!(
            "{:02}-{}-{}.yaml",
            self.rank(),
            self.kind().to_ascii_lowercase(),
            self.name()
        )
    }

    /// The object as one YAML document (no `---`). Deterministic: k8s-openapi serialises
    /// struct fields in a fixed order and every map is a `BTreeMap`.
    pub fn to_yaml(&self) -> Result<String> {
        let r = match self {
            Object::Namespace(o) => serde_yaml::to_string(o),
            Object::ServiceAccount(o) => serde_yaml::to_string(o),
            Object::Role(o) => serde_yaml::to_string(o),
            Object::RoleBinding(o) => serde_yaml::to_string(o),
            Object::Secret(o) => serde_yaml::to_string(o),
            Object::ConfigMap(o) => serde_yaml::to_string(o),
            Object::PersistentVolume(o) => serde_yaml::to_string(o),
            Object::PersistentVolumeClaim(o) => serde_yaml::to_string(o),
            Object::Service(o) => serde_yaml::to_string(o),
            Object::StatefulSet(o) => serde_yaml::to_string(o),
            Object::Deployment(o) => serde_yaml::to_string(o),
            Object::PodDisruptionBudget(o) => serde_yaml::to_string(o),
            Object::NetworkPolicy(o) => serde_yaml::to_string(o),
            Object::HorizontalPodAutoscaler(o) => serde_yaml::to_string(o),
            Object::Ingress(o) => serde_yaml::to_string(o),
        };
        r.map_err(|source| Error::Serialize {
            object: self.id(),
            source,
        })
    }
}
