//! The page cache (`spec.cache.page`): a tier of nginx pods between the Ingress and the web
//! pods, each keeping its own copy of anonymous pages, with the same rules as `hapress up`'s
//! nginx ([`hapress_spec::PageCacheSpec::NGINX_SKIP_RULES`]).
//!
//! Why a tier of its own and not a sidecar in each web pod: a web pod that cannot reach the
//! database fails its readiness probe and leaves the Service, so a cache inside it could never
//! serve its stale copy while the database recovers. The cache pods' readiness is nginx's own,
//! and `proxy_cache_use_stale` answers from the copy while no web pod is ready.
//!
//! Purge: each cache pod runs `hapress page-cache-purger` beside nginx, sharing the cache
//! directory. After a change, WordPress's must-use plugin resolves the headless `-peers`
//! Service (every cache pod, ready or not) and asks each pod to empty its copy, with a request
//! signed by the key in the `-page-cache-key` Secret; the changing request returns only after
//! every pod answered. A generation file on the shared content volume marks pages rendered
//! across a change (on any web pod) as not to be stored.

use std::collections::BTreeMap;

use hapress_spec::{Cluster, ServiceType};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, PodTemplateSpec, Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::names::{Component, Names};
use crate::object::Object;
use crate::pod::{self, container, http_probe, mount, tcp_probe};
use crate::{db_config, scheduling, service_account, PAGE_CACHE_UID};

/// nginx's port in the cache pods.
pub const PORT: i32 = 8080;
/// The purger's port: `POST /purge` (signed), `GET /metrics`, `GET /health`.
pub const PURGE_PORT: i32 = 9180;
/// Key of the purge key in its Secret.
pub const KEY: &str = "purge-key";
/// Where the web and cache pods find the purge key.
pub const KEY_DIR: &str = "/run/secrets/page-cache";
/// Directory of `nginx.conf` in the cache pods.
const CONF_DIR: &str = "/etc/hapress-page-cache";
/// The cache pods' scratch volume: the pages, nginx's temporary files, pid and log.
const ROOT: &str = "/var/cache/hapress";
/// The directory of the generation file on the shared content volume, relative to
/// `wp-content`.
pub const GENERATION_DIR: &str = "cache/hapress-page-cache";
/// Seconds a stopping cache pod keeps serving while endpoints and ingress controllers forget it.
const PRE_STOP_SLEEP: i32 = 10;
/// Seconds the purger outlives nginx's [`PRE_STOP_SLEEP`]: while nginx serves its copy, purges
/// must reach it.
const PURGER_STOPS_AFTER: i32 = PRE_STOP_SLEEP + 10;
/// The must-use plugin (the same file `hapress up` installs).
pub const PLUGIN: &str = include_str!("../../local/src/php/hapress-page-cache.php");

/// Whether the render has the page cache.
pub fn enabled(c: &Cluster) -> bool {
    c.spec.cache.page.enabled
}

/// Where one nginx of the cache runs: the render's values, or a test's on loopback.
#[derive(Clone, Debug)]
pub struct NginxPlacement {
    /// `listen` argument.
    pub listen: String,
    /// `host:port` of the web tier.
    pub upstream: String,
    /// A directory nginx may write: pages, temporary files, pid, log.
    pub root: String,
}

impl NginxPlacement {
    fn render(names: &Names) -> Self {
        Self {
            listen: PORT.to_string(),
            upstream: format!("{}:80", names.web()),
            root: ROOT.into(),
        }
    }
}

/// The cache pods' directory of pages (the purger empties it).
pub fn pages_dir(root: &str) -> String {
    format!("{root}/pages")
}

/// nginx's log of what the cache did, one `$upstream_cache_status` a line.
pub fn log_file(root: &str) -> String {
    format!("{root}/page-cache.log")
}

/// `nginx.conf` of a cache pod.
///
/// The cache key has the scheme the visitor used (`X-Forwarded-Proto` from the Ingress), so an
/// `http` redirect and an `https` page never mix. Static files are cached like pages.
pub fn nginx_conf(c: &Cluster, p: &NginxPlacement) -> String {
    let page = &c.spec.cache.page;
    format!(
        r#"# Rendered by hapress from spec.cache.page.
worker_processes 2;
pid {root}/nginx.pid;
daemon off;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    client_max_body_size 64m;
    client_body_temp_path {root}/body-temp;
    proxy_temp_path {root}/proxy-temp;
    fastcgi_temp_path {root}/fastcgi-temp;
    uwsgi_temp_path {root}/uwsgi-temp;
    scgi_temp_path {root}/scgi-temp;
    keepalive_timeout 65;

    proxy_cache_path {pages} levels=1:2 keys_zone=hapress_pages:16m max_size={max}m inactive=1d use_temp_path=off;
{rules}    map $http_x_forwarded_proto $hapress_proto {{ "" $scheme; default $http_x_forwarded_proto; }}
    # The visitor's address as the Ingress saw it.
    map $http_x_real_ip $hapress_real_ip {{ "" $remote_addr; default $http_x_real_ip; }}
    # Answers of 10 MB or more (media) are passed through, never stored: the copy stays small.
    map $upstream_http_content_length $hapress_large {{ "~^[0-9]{{8,}}$" 1; default 0; }}

    upstream wordpress {{
        server {upstream};
        keepalive 32;
        # Below Apache's KeepAliveTimeout (5 s): nginx never reuses a connection Apache closes.
        keepalive_timeout 4s;
    }}

    server {{
        listen {listen};
        server_name _;

        # The cache pod's own readiness: nginx answers. It stays ready while no web pod is,
        # so the stale copy is served.
        location = /hapress-health {{ access_log off; default_type text/plain; return 200 "ok\n"; }}

        location / {{
            proxy_pass http://wordpress;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $hapress_real_ip;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $hapress_proto;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            proxy_next_upstream error timeout;
            proxy_max_temp_file_size 16m;
            proxy_no_cache $hapress_large;
{location}            access_log {log} hapress_cache buffer=8k flush=1s;
        }}
    }}
}}
"#,
        root = p.root,
        pages = pages_dir(&p.root),
        max = page.max_size_mb,
        rules = hapress_spec::PageCacheSpec::NGINX_SKIP_RULES,
        upstream = p.upstream,
        listen = p.listen,
        location = page.nginx_location("proxy", "$hapress_proto$request_method$host$request_uri"),
        log = log_file(&p.root),
    )
}

/// The purger's command-line arguments (after the `hapress` entrypoint).
pub fn purger_args(listen: &str, root: &str, key_file: &str) -> Vec<String> {
    [
        "page-cache-purger",
        "--listen",
        listen,
        "--cache-dir",
        &pages_dir(root),
        "--key-file",
        key_file,
        "--log",
        &log_file(root),
    ]
    .map(String::from)
    .to_vec()
}

/// `wp-config.php` lines (WORDPRESS_CONFIG_EXTRA) that point the must-use plugin at the
/// cache pods.
pub fn wp_config(names: &Names, content_path: &str) -> String {
    wp_defines(
        &format!(
            "{}.{}.svc.cluster.local:{PURGE_PORT}",
            names.page_cache_peers(),
            names.namespace
        ),
        &format!("{KEY_DIR}/{KEY}"),
        &format!("{content_path}/{GENERATION_DIR}/generation"),
    )
}

/// The must-use plugin's settings: `peers` (`host:port,...`), the key file, the generation
/// file; and the generation the request starts in, read before WordPress reads the database.
pub fn wp_defines(peers: &str, key_file: &str, generation: &str) -> String {
    format!(
        "define('HAPRESS_PAGE_CACHE_PEERS', '{peers}');\ndefine('HAPRESS_PAGE_CACHE_KEY_FILE', '{key_file}');\ndefine('HAPRESS_PAGE_CACHE_GENERATION', '{generation}');\n$GLOBALS['hapress_cache_start'] = @file_get_contents('{generation}');\n"
    )
}

/// The cache tier's objects.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    if !enabled(c) {
        return vec![];
    }
    let config = config_data(c, names);
    vec![
        Object::ServiceAccount(service_account(
            names,
            &names.page_cache(),
            Component::PageCache,
        )),
        Object::ConfigMap(ConfigMap {
            metadata: pod::meta(
                names,
                &names.page_cache_config(),
                names.labels(Component::PageCache),
            ),
            data: Some(config.clone()),
            ..ConfigMap::default()
        }),
        Object::Service(service(c, names)),
        Object::Service(peers_service(names)),
        Object::Deployment(deployment(c, names, &db_config::hash(&config))),
    ]
}

fn config_data(c: &Cluster, names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "nginx.conf".into(),
        nginx_conf(c, &NginxPlacement::render(names)),
    )])
}

/// What the Ingress (or a cloud load balancer) sends visitors to.
fn service(c: &Cluster, names: &Names) -> Service {
    let type_ = match c.spec.ingress.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    pod::http_service(names, &names.page_cache(), Component::PageCache, type_)
}

/// Every cache pod by address, ready or not (a starting pod is emptied too), for the purge.
fn peers_service(names: &Names) -> Service {
    Service {
        metadata: pod::meta(
            names,
            &names.page_cache_peers(),
            names.labels(Component::PageCache),
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![pod::service_port("purge", PURGE_PORT)]),
            selector: Some(names.selector(Component::PageCache)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn deployment(c: &Cluster, names: &Names, config_hash: &str) -> Deployment {
    let page = &c.spec.cache.page;
    let key_file = format!("{KEY_DIR}/{KEY}");
    let nginx = Container {
        command: Some(
            [
                "nginx",
                "-c",
                &format!("{CONF_DIR}/nginx.conf"),
                "-e",
                "stderr",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![pod::port("http", PORT)]),
        resources: Some(pod::helper_resources("500m", "128Mi")),
        readiness_probe: Some(http_probe("/hapress-health", "http", 5, 2, 3)),
        liveness_probe: Some(tcp_probe("http", 10, 6)),
        lifecycle: Some(pod::sleep_before_stop(PRE_STOP_SLEEP)),
        volume_mounts: Some(vec![
            mount("config", CONF_DIR, true),
            mount("cache", ROOT, false),
        ]),
        ..container("nginx", &page.image, PAGE_CACHE_UID)
    };
    let purger = Container {
        args: Some(purger_args(
            &format!("0.0.0.0:{PURGE_PORT}"),
            ROOT,
            &key_file,
        )),
        ports: Some(vec![pod::port("purge", PURGE_PORT)]),
        resources: Some(pod::helper_resources("100m", "32Mi")),
        lifecycle: Some(pod::sleep_before_stop(PURGER_STOPS_AFTER)),
        readiness_probe: Some(http_probe("/health", "purge", 5, 2, 3)),
        liveness_probe: Some(http_probe("/health", "purge", 10, 3, 6)),
        volume_mounts: Some(vec![mount("cache", ROOT, false), key_mount()]),
        ..container("purger", &c.spec.router.image, PAGE_CACHE_UID)
    };
    let mut meta = pod::meta(
        names,
        &names.page_cache(),
        names.labels(Component::PageCache),
    );
    if !pod::has_digest(&page.image) || !pod::has_digest(&c.spec.router.image) {
        meta.annotations = Some(pod::checkov_skips(&[("CKV_K8S_43", pod::TAG_NOT_DIGEST)]));
    }
    // Room beyond maxSizeMb: nginx's cache manager trims it every few seconds, request bodies
    // (uploads up to 64 MB each) and answers not stored pass through temporary files, and an
    // emptyDir over its limit gets the pod evicted.
    let scratch = format!("{}Mi", page.max_size_mb + page.max_size_mb / 2 + 1024);
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(page.replicas).unwrap_or(i32::MAX)),
            selector: pod::selector(names.selector(Component::PageCache)),
            strategy: Some(pod::zero_downtime_rollout()),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names.labels(Component::PageCache)),
                    annotations: Some(BTreeMap::from([
                        (
                            "hapress.dev/page-cache-config-hash".into(),
                            config_hash.to_string(),
                        ),
                        ("prometheus.io/scrape".into(), "true".into()),
                        ("prometheus.io/port".into(), PURGE_PORT.to_string()),
                        ("prometheus.io/path".into(), "/metrics".into()),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    service_account_name: Some(names.page_cache()),
                    // nginx and the purger run as one user: the purger deletes nginx's files.
                    security_context: Some(pod::pod_security(PAGE_CACHE_UID, &[])),
                    affinity: Some(scheduling::anti_affinity(
                        names,
                        Component::PageCache,
                        c.spec.web.anti_affinity,
                    )),
                    topology_spread_constraints: Some(scheduling::zone_spread(
                        names,
                        Component::PageCache,
                    )),
                    termination_grace_period_seconds: Some(i64::from(PURGER_STOPS_AFTER) + 10),
                    containers: vec![nginx, purger],
                    volumes: Some(vec![
                        pod::config_map_volume("config", &names.page_cache_config(), 0o444),
                        pod::empty_dir("cache", false, &scratch),
                        key_volume(names),
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The purge key's volume (cache pods and web pods).
pub fn key_volume(names: &Names) -> Volume {
    pod::secret_volume("page-cache-key", &names.page_cache_secret(), &[KEY])
}

/// The purge key's mount (the purger and WordPress).
pub fn key_mount() -> VolumeMount {
    mount("page-cache-key", KEY_DIR, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_finds_every_cache_pod_and_the_key() {
        let c = Cluster::default();
        let names = Names::new(&c);
        let php = wp_config(&names, "/var/www/html/wp-content");
        assert!(php.contains(
            "define('HAPRESS_PAGE_CACHE_PEERS', 'wordpress-page-cache-peers.wordpress.svc.cluster.local:9180');"
        ), "{php}");
        assert!(php.contains("'/run/secrets/page-cache/purge-key'"));
        assert!(php.contains("'/var/www/html/wp-content/cache/hapress-page-cache/generation'"));
        // The purger empties the directory nginx stores pages in, and counts its log.
        let conf = nginx_conf(&c, &NginxPlacement::render(&names));
        assert!(conf.contains(&format!("proxy_cache_path {} ", pages_dir(ROOT))));
        assert!(conf.contains(&format!("access_log {} hapress_cache", log_file(ROOT))));
        let args = purger_args("0.0.0.0:9180", ROOT, "/k").join(" ");
        assert!(
            args.contains(&format!("--cache-dir {}", pages_dir(ROOT))),
            "{args}"
        );
        assert!(
            args.contains(&format!("--log {}", log_file(ROOT))),
            "{args}"
        );
    }
}
