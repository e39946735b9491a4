//! The object cache (`spec.cache.objectCache`): one Redis behind the web pods, and what the
//! web pods need to use it (the `object-cache.php` drop-in, its settings, the password).
//!
//! One replica, replaced with `Recreate`: two Redis instances behind one Service would each
//! hold entries the other's invalidations never reach. A Redis that is down or replaced is
//! only slower: the drop-in goes on without it and empties it when it comes back after a
//! change it missed (its markers live on the shared content volume, seen by every web pod).

use std::collections::BTreeMap;

use hapress_spec::Cluster;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{Component, Names};
use crate::object::Object;
use crate::pod::{self, container, mount, tcp_probe};
use crate::{service_account, CACHE_UID};

/// Redis's port inside the cluster.
pub const PORT: i32 = 6379;
/// Key of Redis's password in its Secret.
pub const PASSWORD_KEY: &str = "redis-password";
/// Where web pods mount Redis's password.
pub const PASSWORD_DIR: &str = "/run/secrets/cache";
/// The drop-in, shared with the embedded runtime (the same file `hapress up` installs).
pub const DROP_IN: &str = include_str!("../../local/src/php/object-cache.php");
/// The drop-in's markers, on the shared content volume (every web pod sees them).
pub const STATE_DIR: &str = "cache/hapress-object-cache";

/// Whether the render has the object cache.
pub fn enabled(c: &Cluster) -> bool {
    c.spec.cache.object_cache.enabled
}

/// Redis's objects (the web pods' drop-in is installed by [`crate::web`]).
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    if !enabled(c) {
        return vec![];
    }
    vec![
        Object::ServiceAccount(service_account(names, &names.cache(), Component::Cache)),
        Object::ConfigMap(config_map(c, names)),
        Object::Service(Service {
            metadata: pod::meta(names, &names.cache(), names.labels(Component::Cache)),
            spec: Some(ServiceSpec {
                selector: Some(names.selector(Component::Cache)),
                ports: Some(vec![ServicePort {
                    name: Some("redis".into()),
                    port: PORT,
                    target_port: Some(IntOrString::String("redis".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }),
        Object::Deployment(deployment(c, names)),
    ]
}

/// `redis.conf`: a password (from the Secret, through a file the start script writes), no
/// disk, least recently used entries evicted at `maxMemoryMb`, Redis 7's refusals of
/// `CONFIG SET` of paths, `DEBUG` and `MODULE` stated.
fn config_map(c: &Cluster, names: &Names) -> ConfigMap {
    let conf = format!(
        concat!(
            "# Rendered by hapress from spec.cache.objectCache.\n",
            "port {port}\nbind * -::*\ndir /data\n{common}",
            "# The password line, written from the Secret by start.sh (never an argument).\n",
            "include /run/redis/auth.conf\n",
        ),
        port = PORT,
        common = c.spec.cache.object_cache.redis_settings(),
    );
    let start = format!(
        "#!/bin/sh\n# Writes Redis's password from the Secret into a file only this container reads, then runs Redis.\nset -eu\numask 077\nprintf 'requirepass %s\\n' \"$(cat {PASSWORD_DIR}/{PASSWORD_KEY})\" > /run/redis/auth.conf\nexec redis-server /config/redis.conf\n"
    );
    ConfigMap {
        metadata: pod::meta(names, &names.cache_config(), names.labels(Component::Cache)),
        data: Some(BTreeMap::from([
            ("redis.conf".into(), conf),
            ("start.sh".into(), start),
        ])),
        ..ConfigMap::default()
    }
}

fn deployment(c: &Cluster, names: &Names) -> Deployment {
    let oc = &c.spec.cache.object_cache;
    // Guaranteed: requests equal limits. Redis needs room beyond maxmemory (buffers,
    // fragmentation).
    let memory = format!("{}Mi", oc.max_memory_mb + oc.max_memory_mb / 4 + 32);
    let redis = Container {
        command: Some(vec!["sh".into(), "/config/start.sh".into()]),
        ports: Some(vec![pod::port("redis", PORT)]),
        resources: Some(pod::helper_resources("250m", &memory)),
        startup_probe: Some(tcp_probe("redis", 2, 30)),
        readiness_probe: Some(tcp_probe("redis", 5, 3)),
        liveness_probe: Some(tcp_probe("redis", 10, 6)),
        volume_mounts: Some(vec![
            mount("config", "/config", true),
            mount("password", PASSWORD_DIR, true),
            mount("run", "/run/redis", false),
            mount("data", "/data", false),
        ]),
        ..container("redis", &oc.image, CACHE_UID)
    };
    let mut meta = pod::meta(names, &names.cache(), names.labels(Component::Cache));
    if !pod::has_digest(&oc.image) {
        meta.annotations = Some(pod::checkov_skips(&[("CKV_K8S_43", pod::TAG_NOT_DIGEST)]));
    }
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: pod::selector(names.selector(Component::Cache)),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Component::Cache)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: Some(names.cache()),
                    security_context: Some(pod::pod_security(CACHE_UID, &[])),
                    containers: vec![redis],
                    volumes: Some(vec![
                        pod::config_map_volume("config", &names.cache_config(), 0o444),
                        pod::secret_volume("password", &names.cache_secret(), &[PASSWORD_KEY]),
                        pod::empty_dir("run", true, "1Mi"),
                        pod::empty_dir("data", false, "64Mi"),
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// `wp-config.php` lines (WORDPRESS_CONFIG_EXTRA) that point the drop-in at Redis.
pub fn wp_config(c: &Cluster, names: &Names, content_path: &str) -> String {
    format!(
        "define('HAPRESS_REDIS', 'tcp://{host}:{PORT}');\ndefine('HAPRESS_REDIS_PASSWORD', trim((string) @file_get_contents('{PASSWORD_DIR}/{PASSWORD_KEY}')));\ndefine('HAPRESS_REDIS_STATE', '{content_path}/{STATE_DIR}');\ndefine('WP_CACHE_KEY_SALT', 'hapress:{name}');\n",
        host = names.cache(),
        name = c.name,
    )
}

/// The web pods' volume of Redis's password.
pub fn web_volume(names: &Names) -> Volume {
    pod::secret_volume("cache-password", &names.cache_secret(), &[PASSWORD_KEY])
}

/// The WordPress container's mount of Redis's password.
pub fn web_mount() -> VolumeMount {
    mount("cache-password", PASSWORD_DIR, true)
}
