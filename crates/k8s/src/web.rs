//! The web tier: WordPress Deployment (zero-downtime rolling updates), its Service, disruption
//! budget and autoscaler.

use std::fmt::Write as _;

use hapress_spec::Cluster;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::database::WORDPRESS_DB;
use crate::names::{Component, Names};
use crate::object::Object;
use crate::pod::{self, container, env, http_probe, mount, tcp_probe};
use crate::{router, scheduling, secrets, service_account, WEB_UID};

/// Seconds a terminating web pod keeps serving while endpoints and ingress controllers stop
/// sending it traffic (seed S2: 20 s gave zero failed requests during an update under load).
pub const PRE_STOP_SLEEP: i32 = 20;
/// Where the shared content volume is mounted: uploads, plugins and themes are shared; the
/// WordPress core comes from the image (so an image update really updates the code).
pub const CONTENT_PATH: &str = "/var/www/html/wp-content";

/// Where the web pods find hapress's PHP files (the ConfigMap), before installing them.
const PHP_DIR: &str = "/hapress/php";

/// Every web-tier object.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    let mut out = vec![
        Object::ServiceAccount(service_account(names, &names.web(), Component::Web)),
        Object::Service(service(c, names)),
        Object::Deployment(deployment(c, names)),
    ];
    let php = php_files(c);
    if !php.is_empty() {
        out.push(Object::ConfigMap(ConfigMap {
            metadata: pod::meta(names, &names.web_php(), names.labels(Component::Web)),
            data: Some(php),
            ..ConfigMap::default()
        }));
    }
    if router::enabled(c) {
        out.push(Object::ConfigMap(router::config_map(c, names)));
    }
    if c.spec.autoscaling.enabled {
        out.push(Object::HorizontalPodAutoscaler(autoscaler(c, names)));
    }
    out
}

/// The Service visitors reach (the Ingress's backend): the page cache's when it is on.
pub fn front_service(c: &Cluster, names: &Names) -> String {
    if crate::page_cache::enabled(c) {
        names.page_cache()
    } else {
        names.web()
    }
}

/// hapress's PHP files for WordPress, by file name: the object-cache drop-in and the page
/// cache's must-use plugin, when each is on.
fn php_files(c: &Cluster) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    if crate::cache::enabled(c) {
        files.insert("object-cache.php".into(), crate::cache::DROP_IN.into());
    }
    if crate::page_cache::enabled(c) {
        files.insert(
            "hapress-page-cache.php".into(),
            crate::page_cache::PLUGIN.into(),
        );
    }
    files
}

/// The init container installing [`php_files`] on the shared content volume, each atomically
/// (a copy under a name of this pod's, then a rename), with the directories they use.
fn install_php(c: &Cluster) -> Container {
    // (file, where it goes under wp-content, the directory it needs there)
    let mut files = vec![];
    if crate::cache::enabled(c) {
        files.push((
            "object-cache.php",
            "object-cache.php",
            crate::cache::STATE_DIR,
        ));
    }
    if crate::page_cache::enabled(c) {
        files.push((
            "hapress-page-cache.php",
            "mu-plugins/hapress-page-cache.php",
            crate::page_cache::GENERATION_DIR,
        ));
    }
    let mut script = String::from("set -eu");
    for (file, dest, dir) in files {
        let dest = format!("{CONTENT_PATH}/{dest}");
        let _ = write!(
            script,
            "; mkdir -p {CONTENT_PATH}/{dir} $(dirname {dest}); cp {PHP_DIR}/{file} {dest}.$HOSTNAME; mv -f {dest}.$HOSTNAME {dest}"
        );
    }
    Container {
        command: Some(vec!["sh".into(), "-c".into(), script]),
        resources: Some(pod::helper_resources("50m", "32Mi")),
        volume_mounts: Some(vec![
            mount("content", CONTENT_PATH, false),
            mount("hapress-php", PHP_DIR, true),
        ]),
        ..container("install-php", &c.spec.web.image, WEB_UID)
    }
}

fn service(c: &Cluster, names: &Names) -> Service {
    // Behind the page cache, only the cache pods reach the web pods.
    let service_type = match c.spec.ingress.service_type {
        hapress_spec::ServiceType::LoadBalancer if !crate::page_cache::enabled(c) => "LoadBalancer",
        _ => "ClusterIP",
    };
    pod::http_service(names, &names.web(), Component::Web, service_type)
}

/// The site URL WordPress should use.
pub fn site_url(c: &Cluster) -> String {
    c.spec.site.url.clone().unwrap_or_else(|| {
        let scheme = if c.spec.ingress.tls.enabled {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", c.spec.ingress.host)
    })
}

fn config_extra(c: &Cluster, names: &Names) -> String {
    let mut s = String::new();
    let url = site_url(c);
    let _ = writeln!(s, "define('WP_HOME', '{url}');");
    let _ = writeln!(s, "define('WP_SITEURL', '{url}');");
    let _ = writeln!(
        s,
        "define('WP_ENVIRONMENT_TYPE', '{}');",
        c.spec.site.environment
    );
    let _ = writeln!(
        s,
        "define('WP_MEMORY_LIMIT', '{}');",
        c.spec.web.php_memory_limit
    );
    // Core updates come from the image; plugin/theme installs still work (shared volume).
    let _ = writeln!(s, "define('WP_AUTO_UPDATE_CORE', false);");
    if crate::cache::enabled(c) {
        s.push_str(&crate::cache::wp_config(c, names, CONTENT_PATH));
    }
    if crate::page_cache::enabled(c) {
        s.push_str(&crate::page_cache::wp_config(names, CONTENT_PATH));
    }
    s
}

/// Where WordPress sends its queries: the router sidecar on loopback, or (router off, or
/// galera) the primary / any-node Service.
pub fn db_host(c: &Cluster, names: &Names) -> String {
    if router::enabled(c) {
        router::LISTEN.into()
    } else {
        names.db_writer(c.spec.database.mode)
    }
}

fn web_env(c: &Cluster, names: &Names) -> Vec<EnvVar> {
    let mut e = vec![
        env("WORDPRESS_DB_HOST", &db_host(c, names)),
        env("WORDPRESS_DB_NAME", WORDPRESS_DB),
        env("WORDPRESS_DB_USER", WORDPRESS_DB),
        env(
            "WORDPRESS_DB_PASSWORD_FILE",
            &format!("/run/secrets/db/{}", secrets::WORDPRESS_PASSWORD),
        ),
    ];
    for key in secrets::WORDPRESS_KEYS {
        let var = format!(
            "WORDPRESS_{}_FILE",
            key.replace('-', "_").to_ascii_uppercase()
        );
        e.push(env(&var, &format!("/run/secrets/keys/{key}")));
    }
    e.push(env("WORDPRESS_CONFIG_EXTRA", &config_extra(c, names)));
    e
}

fn deployment(c: &Cluster, names: &Names) -> Deployment {
    let web = &c.spec.web;
    let mut wordpress = Container {
        env: Some(web_env(c, names)),
        ports: Some(vec![pod::port("http", 80)]),
        resources: Some(pod::resources(&web.resources)),
        // The entrypoint copies WordPress into the (empty) docroot first.
        startup_probe: Some(tcp_probe("http", 2, 60)),
        // A real page that needs PHP and the database: a pod that cannot serve it gets no
        // traffic. 200 once installed, a redirect to the installer before.
        readiness_probe: Some(http_probe("/wp-login.php", "http", 5, 5, 3)),
        // Liveness only checks Apache accepts connections: a database outage must not restart
        // every web pod (a liveness probe on a page would hide the real fault behind restarts).
        liveness_probe: Some(tcp_probe("http", 10, 6)),
        lifecycle: Some(pod::sleep_before_stop(PRE_STOP_SLEEP)),
        volume_mounts: Some(vec![
            mount("docroot", "/var/www/html", false),
            mount("content", CONTENT_PATH, false),
            mount("tmp", "/tmp", false),
            mount("apache-run", "/var/run/apache2", false),
            mount("apache-lock", "/var/lock/apache2", false),
            mount("db-password", "/run/secrets/db", true),
            mount("keys", "/run/secrets/keys", true),
        ]),
        ..container("wordpress", &web.image, WEB_UID)
    };
    let object_cache = crate::cache::enabled(c);
    let page_cache = crate::page_cache::enabled(c);
    if let Some(m) = wordpress.volume_mounts.as_mut() {
        if object_cache {
            m.push(crate::cache::web_mount());
        }
        if page_cache {
            m.push(crate::page_cache::key_mount());
        }
    }
    let with_router = router::enabled(c);
    let mut skips = vec![];
    if !pod::has_digest(&web.image) || (with_router && !pod::has_digest(&c.spec.router.image)) {
        skips.push(("CKV_K8S_43", pod::TAG_NOT_DIGEST));
    }
    let mut volumes = vec![
        pod::empty_dir("docroot", false, "512Mi"),
        pod::pvc_volume("content", &names.content()),
        pod::empty_dir("tmp", false, "1Gi"),
        pod::empty_dir("apache-run", true, "1Mi"),
        pod::empty_dir("apache-lock", true, "1Mi"),
        pod::secret_volume(
            "db-password",
            &names.db_secret(),
            &[secrets::WORDPRESS_PASSWORD],
        ),
        pod::secret_volume("keys", &names.web_secret(), secrets::WORDPRESS_KEYS),
    ];
    if with_router {
        volumes.extend(router::volumes(names));
    }
    if object_cache {
        volumes.push(crate::cache::web_volume(names));
    }
    if page_cache {
        volumes.push(crate::page_cache::key_volume(names));
    }
    // First hapress's PHP is installed (once), then the router sidecar starts.
    let mut init = vec![];
    if !php_files(c).is_empty() {
        volumes.push(pod::config_map_volume(
            "hapress-php",
            &names.web_php(),
            0o444,
        ));
        init.push(install_php(c));
    }
    if with_router {
        init.push(router::sidecar(c));
    }
    let mut meta = pod::meta(names, &names.web(), names.labels(Component::Web));
    if !skips.is_empty() {
        meta.annotations = Some(pod::checkov_skips(&skips));
    }
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            // With an autoscaler the HPA owns the replica count; a number here would reset it
            // on every apply.
            replicas: (!c.spec.autoscaling.enabled)
                .then(|| i32::try_from(web.replicas).unwrap_or(i32::MAX)),
            selector: pod::selector(names.selector(Component::Web)),
            strategy: Some(pod::zero_downtime_rollout()),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Component::Web)),
                    annotations: with_router.then(|| router::pod_annotations(c, names)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: Some(names.web()),
                    // Apache binds :80 as a non-root user (a namespaced, safe sysctl).
                    security_context: Some(pod::pod_security(
                        WEB_UID,
                        &[("net.ipv4.ip_unprivileged_port_start", "0")],
                    )),
                    affinity: Some(scheduling::anti_affinity(
                        names,
                        Component::Web,
                        web.anti_affinity,
                    )),
                    topology_spread_constraints: Some(scheduling::zone_spread(
                        names,
                        Component::Web,
                    )),
                    // preStop sleep + Apache's graceful stop of in-flight requests.
                    termination_grace_period_seconds: Some(i64::from(PRE_STOP_SLEEP) + 40),
                    init_containers: (!init.is_empty()).then_some(init),
                    containers: vec![wordpress],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn autoscaler(c: &Cluster, names: &Names) -> HorizontalPodAutoscaler {
    let a = &c.spec.autoscaling;
    let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    HorizontalPodAutoscaler {
        metadata: pod::meta(names, &names.web(), names.labels(Component::Web)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: names.web(),
            },
            min_replicas: Some(to_i32(a.min_replicas)),
            max_replicas: to_i32(a.max_replicas),
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(to_i32(a.target_cpu_percent)),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(to_i32(a.scale_down_stabilization_seconds)),
                    ..HPAScalingRules::default()
                }),
                ..HorizontalPodAutoscalerBehavior::default()
            }),
        }),
        ..HorizontalPodAutoscaler::default()
    }
}
