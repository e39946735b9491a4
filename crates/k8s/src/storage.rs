//! The shared content volume: a ReadWriteMany claim on the user's storage class, or an
//! in-cluster NFS server (seed S4's fallback, a single point of failure: documented, and
//! rendered only when asked for).

use std::collections::BTreeMap;

use hapress_spec::Cluster;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, NFSVolumeSource, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec, PodSpec,
    PodTemplateSpec, SecurityContext, Service, ServicePort, ServiceSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{Component, Names};
use crate::object::Object;
use crate::pod::{self, helper_resources, mount, tcp_probe};
use crate::{service_account, WEB_UID};

/// NFS server image (the Kubernetes e2e NFS server: nfsd + mountd + rpcbind, exports
/// `/exports` as the NFSv4 root).
pub const NFS_IMAGE: &str = "registry.k8s.io/volume-nfs:0.8";
/// NFS ports the server listens on.
pub const NFS_PORTS: &[(&str, i32)] = &[("nfs", 2049), ("mountd", 20048), ("rpcbind", 111)];

fn storage_request(size: &str) -> VolumeResourceRequirements {
    VolumeResourceRequirements {
        requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
        ..VolumeResourceRequirements::default()
    }
}

/// The content claim, plus the NFS server, its Service and PersistentVolume when enabled.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    let st = &c.spec.storage;
    if !st.nfs.enabled {
        return vec![Object::PersistentVolumeClaim(PersistentVolumeClaim {
            metadata: pod::meta(names, &names.content(), names.labels(Component::Web)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteMany".into()]),
                storage_class_name: st.storage_class.clone(),
                resources: Some(storage_request(&st.size)),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        })];
    }
    let server = format!("{}.{}.svc.cluster.local", names.nfs(), names.namespace);
    vec![
        Object::ServiceAccount(service_account(names, &names.nfs(), Component::Nfs)),
        Object::PersistentVolume(PersistentVolume {
            metadata: ObjectMeta {
                name: Some(names.nfs_pv()),
                labels: Some(names.labels(Component::Nfs)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(vec!["ReadWriteMany".into()]),
                capacity: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(st.size.clone()),
                )])),
                // Pre-bound to the content claim: no other claim can take it.
                claim_ref: Some(ObjectReference {
                    namespace: Some(names.namespace.clone()),
                    name: Some(names.content()),
                    ..ObjectReference::default()
                }),
                mount_options: Some(vec!["nfsvers=4.1".into(), "hard".into()]),
                nfs: Some(NFSVolumeSource {
                    // The kubelet mounts this, so the node must resolve cluster DNS names;
                    // where it cannot, replace it with the Service's ClusterIP.
                    server,
                    path: "/".into(),
                    ..NFSVolumeSource::default()
                }),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                storage_class_name: Some(String::new()),
                ..PersistentVolumeSpec::default()
            }),
            ..PersistentVolume::default()
        }),
        Object::PersistentVolumeClaim(PersistentVolumeClaim {
            metadata: pod::meta(names, &names.content(), names.labels(Component::Web)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteMany".into()]),
                storage_class_name: Some(String::new()),
                volume_name: Some(names.nfs_pv()),
                resources: Some(storage_request(&st.size)),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }),
        Object::Service(Service {
            metadata: pod::meta(names, &names.nfs(), names.labels(Component::Nfs)),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                ports: Some(
                    NFS_PORTS
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: Some((*n).into()),
                            port: *p,
                            target_port: Some(IntOrString::String((*n).into())),
                            protocol: Some("TCP".into()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                selector: Some(names.selector(Component::Nfs)),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }),
        Object::StatefulSet(nfs_server(c, names)),
    ]
}

/// Why the NFS server cannot meet the restricted baseline: the kernel NFS server needs a
/// privileged root container. Each skipped checkov check names this reason.
const NFS_PRIVILEGED: &str = "the in-cluster NFS server runs the kernel nfsd, which needs a privileged root container; it is opt-in (spec.storage.nfs.enabled), reachable only from the web pods (NetworkPolicy), and documented as the weaker option next to a ReadWriteMany storage class";

fn nfs_server(c: &Cluster, names: &Names) -> StatefulSet {
    let st = &c.spec.storage;
    let privileged = SecurityContext {
        privileged: Some(true),
        allow_privilege_escalation: Some(true),
        read_only_root_filesystem: Some(false),
        run_as_user: Some(0),
        seccomp_profile: pod::restricted(0).seccomp_profile,
        ..SecurityContext::default()
    };
    // Web pods run as WEB_UID, and NFS ignores fsGroup: hand them the export root once.
    let chown = Container {
        name: "export-owner".into(),
        image: Some(NFS_IMAGE.into()),
        image_pull_policy: Some("Always".into()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("chown {WEB_UID}:{WEB_UID} /exports && chmod 2775 /exports"),
        ]),
        resources: Some(helper_resources("50m", "32Mi")),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["CHOWN".into(), "FOWNER".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            seccomp_profile: pod::restricted(0).seccomp_profile,
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![mount("export", "/exports", false)]),
        ..Container::default()
    };
    let server = Container {
        name: "nfs-server".into(),
        image: Some(NFS_IMAGE.into()),
        image_pull_policy: Some("Always".into()),
        ports: Some(NFS_PORTS.iter().map(|(n, p)| pod::port(n, *p)).collect()),
        resources: Some(helper_resources("500m", "512Mi")),
        readiness_probe: Some(tcp_probe("nfs", 10, 3)),
        liveness_probe: Some(tcp_probe("nfs", 10, 6)),
        security_context: Some(privileged),
        volume_mounts: Some(vec![mount("export", "/exports", false)]),
        ..Container::default()
    };
    let mut skips = vec![
        ("CKV_K8S_16", NFS_PRIVILEGED),
        ("CKV_K8S_20", NFS_PRIVILEGED),
        ("CKV_K8S_23", NFS_PRIVILEGED),
        ("CKV_K8S_40", NFS_PRIVILEGED),
        ("CKV_K8S_22", "nfsd and rpcbind write their state under /var/lib/nfs and /run in the image"),
        ("CKV_K8S_37", NFS_PRIVILEGED),
        ("CKV_K8S_28", NFS_PRIVILEGED),
        ("CKV_K8S_25", "the export-owner init container adds CHOWN and FOWNER (after dropping ALL) to hand the export root to the non-root web user once"),
        ("CKV_K8S_43", pod::TAG_NOT_DIGEST),
    ];
    skips.dedup_by_key(|s| s.0);
    let mut meta = pod::meta(names, &names.nfs(), names.labels(Component::Nfs));
    meta.annotations = Some(pod::checkov_skips(&skips));
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names.nfs()),
            selector: pod::selector(names.selector(Component::Nfs)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Component::Nfs)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: Some(names.nfs()),
                    security_context: Some(k8s_openapi::api::core::v1::PodSecurityContext {
                        seccomp_profile: pod::restricted(0).seccomp_profile,
                        ..Default::default()
                    }),
                    init_containers: Some(vec![chown]),
                    containers: vec![server],
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("export".into()),
                    labels: Some(names.labels(Component::Nfs)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: st.nfs.storage_class.clone(),
                    resources: Some(storage_request(&st.size)),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
