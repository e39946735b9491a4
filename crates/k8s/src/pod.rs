//! Building blocks shared by every workload: hardened security contexts, resources with a
//! chosen QoS class, probes, volumes and the checkov skip annotations.

use std::collections::BTreeMap;

use hapress_spec::{QosClass, Resources};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Sysctl, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::Names;

/// Metadata of a namespaced object.
pub fn meta(names: &Names, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// A selector on exactly these labels.
pub fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

/// `checkov.io/skipN` annotations: each a check that does not apply, with the reason a reviewer
/// reads next to it.
pub fn checkov_skips(skips: &[(&str, &str)]) -> BTreeMap<String, String> {
    skips
        .iter()
        .enumerate()
        .map(|(i, (id, why))| (format!("checkov.io/skip{}", i + 1), format!("{id}={why}")))
        .collect()
}

/// Why an image is referenced by tag: recorded next to CKV_K8S_43 when no digest is given.
pub const TAG_NOT_DIGEST: &str = "images are pinned to a release line by tag from the spec; pin a digest (image@sha256:...) in the spec to also satisfy this check";

/// Whether `image` is pinned by digest.
pub fn has_digest(image: &str) -> bool {
    image.contains("@sha256:")
}

/// Container security baseline: non-root, no privilege escalation, no capabilities, runtime
/// seccomp profile, read-only root filesystem (writable paths are emptyDirs).
pub fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// Pod security context: non-root user, `fsGroup` so volumes are writable, RuntimeDefault
/// seccomp, and the given (namespaced, safe) sysctls.
pub fn pod_security(uid: i64, sysctls: &[(&str, &str)]) -> PodSecurityContext {
    PodSecurityContext {
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        run_as_group: Some(uid),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        seccomp_profile: Some(runtime_default()),
        sysctls: (!sysctls.is_empty()).then(|| {
            sysctls
                .iter()
                .map(|(name, value)| Sysctl {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect()
        }),
        ..PodSecurityContext::default()
    }
}

fn cpu_mem(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".into(), Quantity(cpu.into())),
        ("memory".into(), Quantity(memory.into())),
    ])
}

/// Requests and limits from the spec: `Guaranteed` sets limits equal to requests.
pub fn resources(r: &Resources) -> ResourceRequirements {
    let requests = cpu_mem(&r.requests.cpu, &r.requests.memory);
    let limits = match (&r.limits, r.qos_class) {
        (Some(l), _) => cpu_mem(&l.cpu, &l.memory),
        (None, QosClass::Guaranteed | QosClass::Burstable) => requests.clone(),
    };
    ResourceRequirements {
        limits: Some(limits),
        requests: Some(requests),
        ..ResourceRequirements::default()
    }
}

/// Small fixed resources for helper containers; requests equal limits so they never lower
/// the pod's QoS class below what the spec asks for.
pub fn helper_resources(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        limits: Some(cpu_mem(cpu, memory)),
        requests: Some(cpu_mem(cpu, memory)),
        ..ResourceRequirements::default()
    }
}

/// A probe running `command` in the container.
pub fn exec_probe(command: &[&str], period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| (*s).into()).collect()),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// An HTTP GET probe.
pub fn http_probe(path: &str, port: &str, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// A TCP connect probe.
pub fn tcp_probe(port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// A plain environment variable.
pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// An environment variable from the pod's own metadata (downward API).
pub fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A volume mount.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// A per-pod scratch directory; `memory` keeps secrets-derived files off the node's disk.
pub fn empty_dir(name: &str, memory: bool, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".into()),
            size_limit: Some(Quantity(size.into())),
        }),
        ..Volume::default()
    }
}

/// A ConfigMap volume with the given file mode.
pub fn config_map_volume(name: &str, config_map: &str, mode: i32) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            default_mode: Some(mode),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Secret volume exposing only `keys` (least privilege: a pod sees the passwords it needs).
pub fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            default_mode: Some(0o400),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).into(),
                        path: (*k).into(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A PVC volume.
pub fn pvc_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            ..PersistentVolumeClaimVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A container port, named (probes, Services and policies refer to the name).
pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        ..ContainerPort::default()
    }
}

/// A TCP Service port `port` to the pods' port named `target`.
pub fn service_port(target: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(target.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The Service `name` of `component`'s pods on port 80 (their port `http`), of `type_`
/// (`ClusterIP` or `LoadBalancer`).
pub fn http_service(
    names: &Names,
    name: &str,
    component: crate::names::Component,
    type_: &str,
) -> Service {
    Service {
        metadata: meta(names, name, names.labels(component)),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            ports: Some(vec![service_port("http", 80)]),
            selector: Some(names.selector(component)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `preStop: sleep <seconds>`: the container keeps serving while endpoints and load
/// balancers stop sending it traffic.
pub fn sleep_before_stop(seconds: i32) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sleep".into(), seconds.to_string()]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// A rolling update that adds a pod before it removes one (`maxSurge 1, maxUnavailable 0`):
/// the serving capacity never drops during a rollout.
pub fn zero_downtime_rollout() -> k8s_openapi::api::apps::v1::DeploymentStrategy {
    use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// A container with the fields every hapress container shares.
pub fn container(name: &str, image: &str, uid: i64) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        // Tags like `mariadb:11.4` move with patch releases; Always picks up security fixes
        // on restart (and is what checkov CKV_K8S_15 asks for).
        image_pull_policy: Some("Always".into()),
        security_context: Some(restricted(uid)),
        ..Container::default()
    }
}
