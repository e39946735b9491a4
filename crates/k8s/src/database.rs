//! The database tier: MariaDB StatefulSet (replication: primary + cloned GTID replicas; or a
//! galera cluster), its Services, ConfigMap, disruption budget and the narrow RBAC the `label`
//! init container needs.

use std::collections::BTreeMap;

use hapress_spec::{Cluster, DatabaseMode};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, ProjectedVolumeSource, Service, ServiceAccountTokenProjection, ServiceSpec,
    Volume, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::db_config::{self, DATA_MOUNT};
use crate::names::{Component, Names, ROLE_LABEL, RUNTIME_LABELS_ANNOTATION};
use crate::object::Object;
use crate::pod::{self, container, env, env_field, exec_probe, helper_resources, mount, tcp_probe};
use crate::{router, scheduling, secrets, service_account, DB_UID};

/// Image of the `label` init container (kubectl, no shell needed: it applies a patch file).
pub const KUBECTL_IMAGE: &str = "registry.k8s.io/kubectl:v1.33.0";
/// Database and user WordPress uses.
pub const WORDPRESS_DB: &str = "wordpress";
/// Replication account (created by the image's entrypoint on the first primary).
pub const REPLICATION_USER: &str = "replicator";

const SECRETS_DIR: &str = "/secrets";
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Every database object.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    let db = &c.spec.database;
    let config = db_config::data(names, db);
    let hash = db_config::hash(&config);
    let mut out = vec![
        Object::ConfigMap(ConfigMap {
            metadata: pod::meta(names, &names.db_config(), names.labels(Component::Database)),
            data: Some(config),
            ..ConfigMap::default()
        }),
        Object::Service(headless_service(c, names)),
        Object::StatefulSet(statefulset(c, names, &hash)),
        Object::ServiceAccount(service_account(names, &names.db(), Component::Database)),
    ];
    match db.mode {
        DatabaseMode::Replication => {
            out.push(Object::Service(role_service(
                names,
                &names.db_primary(),
                "primary",
            )));
            out.push(Object::Service(role_service(
                names,
                &names.db_replicas(),
                "replica",
            )));
            out.extend(label_rbac(c, names));
        }
        DatabaseMode::Galera => {
            out.push(Object::Service(client_service(
                names,
                &names.db_writer(db.mode),
                names.selector(Component::Database),
            )));
        }
    }
    out
}

fn peer_ports(mode: DatabaseMode) -> Vec<(&'static str, i32)> {
    match mode {
        DatabaseMode::Replication => vec![("mysql", 3306), ("backup", 3307)],
        DatabaseMode::Galera => vec![
            ("mysql", 3306),
            ("galera", 4567),
            ("ist", 4568),
            ("sst", 4444),
        ],
    }
}

/// The database ports peers use (NetworkPolicy admits them between database pods only).
pub fn peer_port_numbers(mode: DatabaseMode) -> Vec<i32> {
    peer_ports(mode).into_iter().map(|(_, p)| p).collect()
}

/// Stable DNS names for each pod; not-ready pods are published so a joining galera node or a
/// cloning replica can reach its peers before they pass readiness.
fn headless_service(c: &Cluster, names: &Names) -> Service {
    Service {
        metadata: pod::meta(names, &names.db(), names.labels(Component::Database)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ports: Some(
                peer_ports(c.spec.database.mode)
                    .into_iter()
                    .map(|(n, p)| pod::service_port(n, p))
                    .collect(),
            ),
            selector: Some(names.selector(Component::Database)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn client_service(names: &Names, name: &str, selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata: pod::meta(names, name, names.labels(Component::Database)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![pod::service_port("mysql", 3306)]),
            selector: Some(selector),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn role_service(names: &Names, name: &str, role: &str) -> Service {
    let mut sel = names.selector(Component::Database);
    sel.insert(ROLE_LABEL.into(), role.into());
    client_service(names, name, sel)
}

fn label_rbac(c: &Cluster, names: &Names) -> Vec<Object> {
    let role_name = names.of("db-labeler");
    let pods: Vec<String> = (0..c.spec.database.instances)
        .map(|i| format!("{}-{i}", names.db()))
        .collect();
    vec![
        Object::Role(Role {
            metadata: pod::meta(names, &role_name, names.labels(Component::Database)),
            // Only its own StatefulSet's pods: to read and label them, and to evict a pod whose
            // server diverged (within the PodDisruptionBudget; the StatefulSet starts it again,
            // and it clones a healthy peer).
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["pods".into()]),
                    resource_names: Some(pods.clone()),
                    verbs: vec!["get".into(), "patch".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["pods/eviction".into()]),
                    resource_names: Some(pods),
                    verbs: vec!["create".into()],
                    ..PolicyRule::default()
                },
            ]),
        }),
        Object::RoleBinding(RoleBinding {
            metadata: pod::meta(names, &role_name, names.labels(Component::Database)),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: role_name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: names.db(),
                namespace: Some(names.namespace.clone()),
                ..Subject::default()
            }]),
        }),
    ]
}

fn script(name: &str) -> Option<Vec<String>> {
    Some(vec!["bash".into(), format!("/config/{name}")])
}

fn common_env(c: &Cluster, names: &Names) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    vec![
        env(
            "DB_MODE",
            match c.spec.database.mode {
                DatabaseMode::Replication => "replication",
                DatabaseMode::Galera => "galera",
            },
        ),
        env("DB_SERVICE", &names.db()),
        env("DB_INSTANCES", &c.spec.database.instances.to_string()),
    ]
}

fn base_mounts() -> Vec<k8s_openapi::api::core::v1::VolumeMount> {
    vec![
        mount("data", DATA_MOUNT, false),
        mount("conf", "/etc/mysql/conf.d", false),
        mount("run-mysqld", "/run/mysqld", false),
        mount("run-hapress", "/run/hapress", false),
        mount("tmp", "/tmp", false),
        mount("config", "/config", true),
        mount("secrets", SECRETS_DIR, true),
    ]
}

fn statefulset(c: &Cluster, names: &Names, config_hash: &str) -> StatefulSet {
    let db = &c.spec.database;
    let galera = db.mode == DatabaseMode::Galera;
    let image = db.image.as_str();
    let mut init = vec![Container {
        command: script("configure.sh"),
        env: Some(common_env(c, names)),
        resources: Some(helper_resources("100m", "64Mi")),
        volume_mounts: Some(base_mounts()),
        ..container("configure", image, DB_UID)
    }];
    if !galera {
        init.push(Container {
            command: script("clone.sh"),
            env: Some(common_env(c, names)),
            resources: Some(pod::resources(&db.resources)),
            volume_mounts: Some(base_mounts()),
            ..container("clone", image, DB_UID)
        });
        // A native sidecar: labels the pod with the role `configure` chose, then with every
        // role the agent's watcher sees after a failover.
        init.push(Container {
            command: script("label.sh"),
            restart_policy: Some("Always".into()),
            env: Some(vec![
                env_field("POD_NAME", "metadata.name"),
                env_field("POD_NAMESPACE", "metadata.namespace"),
                // kubectl keeps its discovery cache under $HOME; the root filesystem is
                // read-only.
                env("HOME", "/tmp"),
            ]),
            resources: Some(helper_resources("50m", "64Mi")),
            volume_mounts: Some(vec![
                mount("run-hapress", "/run/hapress", true),
                mount("tmp", "/tmp", false),
                mount("config", "/config", true),
                mount("kube-api-access", TOKEN_DIR, true),
            ]),
            ..container("label", KUBECTL_IMAGE, DB_UID)
        });
    }
    let mut mariadb_env = common_env(c, names);
    mariadb_env.extend([
        env(
            "MARIADB_ROOT_PASSWORD_FILE",
            &format!("{SECRETS_DIR}/{}", secrets::ROOT_PASSWORD),
        ),
        env("MARIADB_DATABASE", WORDPRESS_DB),
        env("MARIADB_USER", WORDPRESS_DB),
        env(
            "MARIADB_PASSWORD_FILE",
            &format!("{SECRETS_DIR}/{}", secrets::WORDPRESS_PASSWORD),
        ),
        env("MARIADB_AUTO_UPGRADE", "1"),
    ]);
    if galera {
        mariadb_env.push(env("PEERS", &db_config::peers(names, db)));
    } else {
        mariadb_env.extend([
            env("MARIADB_REPLICATION_USER", REPLICATION_USER),
            env(
                "MARIADB_REPLICATION_PASSWORD_FILE",
                &format!("{SECRETS_DIR}/{}", secrets::REPLICATION_PASSWORD),
            ),
        ]);
    }
    let mut ports = vec![pod::port("mysql", 3306)];
    if galera {
        ports.extend(
            peer_ports(db.mode)
                .into_iter()
                .skip(1)
                .map(|(n, p)| pod::port(n, p)),
        );
    }
    let ready = if galera { "galera" } else { "ready" };
    let mut containers = vec![Container {
        // Replication: the image's entrypoint initialises an empty data directory (users from
        // the Secret files), or starts on the cloned one. Galera: join-or-bootstrap logic.
        command: galera.then(|| vec!["bash".into(), "/config/galera-start.sh".into()]),
        args: (!galera).then(|| vec!["mariadbd".into()]),
        env: Some(mariadb_env),
        ports: Some(ports),
        resources: Some(pod::resources(&db.resources)),
        // Up to 30 minutes for a first clone / SST of a large database.
        startup_probe: Some(exec_probe(
            &["bash", "/config/probe.sh", "live"],
            10,
            5,
            180,
        )),
        liveness_probe: Some(exec_probe(&["bash", "/config/probe.sh", "live"], 10, 5, 6)),
        readiness_probe: Some(exec_probe(&["bash", "/config/probe.sh", ready], 5, 5, 3)),
        volume_mounts: Some(base_mounts()),
        ..container("mariadb", image, DB_UID)
    }];
    if !galera {
        let mut agent_env = common_env(c, names);
        agent_env.extend([
            env("PRIMARY_HOST", &names.db_primary()),
            env("REPLICATION_USER", REPLICATION_USER),
        ]);
        if router::enabled(c) {
            // Every pod's agent (re)creates the router's monitor account locally on every
            // start (the failover manager acts on any server).
            agent_env.push(env("ROUTER_USER", router::MONITOR_USER));
            agent_env.push(env(
                "ROUTER_GRANTS",
                &hapress_contract::accounts::MONITOR_GRANTS.join(";"),
            ));
        }
        containers.push(Container {
            command: script("agent.sh"),
            env: Some(agent_env),
            ports: Some(vec![pod::port("backup", 3307)]),
            resources: Some(helper_resources("250m", "256Mi")),
            startup_probe: Some(tcp_probe("backup", 10, 180)),
            liveness_probe: Some(tcp_probe("backup", 10, 6)),
            readiness_probe: Some(tcp_probe("backup", 10, 3)),
            volume_mounts: Some(base_mounts()),
            ..container("agent", image, DB_UID)
        });
    }
    let mut volumes = vec![
        pod::empty_dir("conf", true, "1Mi"),
        pod::empty_dir("run-mysqld", true, "1Mi"),
        pod::empty_dir("run-hapress", true, "1Mi"),
        pod::empty_dir("tmp", false, "2Gi"),
        pod::config_map_volume("config", &names.db_config(), 0o444),
        pod::secret_volume("secrets", &names.db_secret(), &secrets::db_keys(c)),
    ];
    if !galera {
        volumes.push(api_access_volume());
    }
    let mut annotations = BTreeMap::from([("hapress.dev/config-hash".into(), config_hash.into())]);
    if !galera {
        annotations.insert(RUNTIME_LABELS_ANNOTATION.into(), ROLE_LABEL.into());
    }
    let mut skips = vec![];
    if !pod::has_digest(image) {
        skips.push(("CKV_K8S_43", pod::TAG_NOT_DIGEST));
    }
    let mut meta = pod::meta(names, &names.db(), names.labels(Component::Database));
    let mut sts_annotations = pod::checkov_skips(&skips);
    sts_annotations.insert(
        "hapress.dev/pod-management".into(),
        if galera {
            "Parallel: every node must start to find a peer or the node allowed to bootstrap; joiners wait for a peer"
        } else {
            "OrderedReady: the primary (ordinal 0) initialises first and each replica clones a ready peer"
        }
        .into(),
    );
    meta.annotations = Some(sts_annotations);
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(db.instances).unwrap_or(i32::MAX)),
            service_name: Some(names.db()),
            pod_management_policy: Some(if galera { "Parallel" } else { "OrderedReady" }.into()),
            selector: pod::selector(names.selector(Component::Database)),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Component::Database)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: Some(names.db()),
                    security_context: Some(pod::pod_security(DB_UID, &[])),
                    affinity: Some(scheduling::soft_anti_affinity(names, Component::Database)),
                    topology_spread_constraints: Some(scheduling::zone_spread(
                        names,
                        Component::Database,
                    )),
                    // InnoDB needs time to flush and shut down cleanly.
                    termination_grace_period_seconds: Some(120),
                    init_containers: Some(init),
                    containers,
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(names.labels(Component::Database)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: db.storage.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(db.storage.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The API credentials of the `label` init container only (the pod itself does not automount
/// its token): a short-lived projected token, the cluster CA and the namespace.
fn api_access_volume() -> Volume {
    Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3600),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..KeyToPath::default()
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..ObjectFieldSelector::default()
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}
