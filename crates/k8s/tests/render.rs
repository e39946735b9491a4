//! What the rendered objects promise, checked on the typed values.

use hapress_k8s::{render, Object, RenderOptions};
use hapress_spec::{parse, Cluster, DatabaseMode};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn yaml(spec: &str) -> String {
    let c = parse(
        &format!("apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {{name: site}}\n{spec}"),
        "t",
    )
    .unwrap();
    render(&c, &RenderOptions::default()).to_yaml().unwrap()
}

#[test]
fn objects_come_in_apply_order_with_prefixed_names_and_labels() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    let ranks: Vec<u8> = m.objects.iter().map(Object::rank).collect();
    let mut sorted = ranks.clone();
    sorted.sort_unstable();
    assert_eq!(ranks, sorted);
    assert_eq!(m.objects[0].kind(), "Namespace");
    assert_eq!(m.objects.last().unwrap().kind(), "Ingress");
    for o in &m.objects {
        assert!(o.name().starts_with("wordpress"), "{}", o.id());
        let labels = o.metadata().labels.as_ref().unwrap();
        assert_eq!(
            labels["app.kubernetes.io/instance"],
            "wordpress",
            "{}",
            o.id()
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "hapress",
            "{}",
            o.id()
        );
    }
}

#[test]
fn no_secret_values_without_generate_secrets() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    assert!(m.objects.iter().all(|o| o.kind() != "Secret"));
    let out = m.to_yaml().unwrap();
    assert!(!out.contains("PASSWORD:"), "no inline passwords");
    assert!(out.contains("MARIADB_ROOT_PASSWORD_FILE"));
    assert!(out.contains("kubectl -n wordpress create secret generic wordpress-db-credentials"));
    let g = render(
        &Cluster::default(),
        &RenderOptions {
            generate_secrets: true,
        },
    );
    // Database passwords, WordPress keys, Redis's password, the page cache's purge key.
    assert_eq!(g.objects.iter().filter(|o| o.kind() == "Secret").count(), 4);
    assert!(g.secret_commands.is_empty());
}

#[test]
fn zero_downtime_rollout_settings() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    let deployments: Vec<_> = m
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) if o.name() == "wordpress-web" => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(deployments.len(), 1);
    let web = deployments[0].spec.as_ref().unwrap();
    // New pods come up before old ones go.
    let rolling = web
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .unwrap();
    assert_eq!(format!("{:?}", rolling.max_surge), "Some(Int(1))");
    assert_eq!(format!("{:?}", rolling.max_unavailable), "Some(Int(0))");
    let pod = web.template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    let wp = pod
        .containers
        .iter()
        .find(|c| c.name == "wordpress")
        .unwrap();
    // The load balancer stops sending before Apache stops taking.
    let pre_stop = wp.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(
        pre_stop.exec.as_ref().unwrap().command.as_deref(),
        Some(&["sleep".to_string(), "20".to_string()][..])
    );
    let ready = wp
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(ready.path.as_deref(), Some("/wp-login.php"));
    for o in &m.objects {
        let (spec, pod) = match o {
            Object::StatefulSet(s) => {
                let spec = s.spec.as_ref().unwrap();
                (
                    Some(spec.pod_management_policy.clone()),
                    spec.template.spec.clone(),
                )
            }
            Object::Deployment(d) => (None, d.spec.as_ref().unwrap().template.spec.clone()),
            _ => continue,
        };
        if let Some(policy) = spec {
            if o.name().ends_with("-db") {
                assert_eq!(policy.as_deref(), Some("OrderedReady"), "{}", o.id());
            }
        }
        let pod = pod.unwrap();
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{}",
            o.id()
        );
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{} {}",
                o.id(),
                c.name
            );
        }
        let seccomp = pod
            .security_context
            .as_ref()
            .unwrap()
            .seccomp_profile
            .as_ref();
        assert_eq!(
            seccomp.map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{}",
            o.id()
        );
    }
    // The role Services select by the role label.
    let roles: Vec<String> = m
        .objects
        .iter()
        .filter_map(|o| match o {
            Object::Service(s) => s
                .spec
                .as_ref()?
                .selector
                .as_ref()?
                .get("hapress.dev/role")
                .cloned(),
            _ => None,
        })
        .collect();
    assert_eq!(roles, ["primary", "replica"]);

    // The role label follows the server's real role: the `label` container is a native
    // sidecar (it runs for the pod's lifetime) applying what the agent's role watcher
    // publishes, and it alone holds the API token.
    let db = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::StatefulSet(s) if o.name().ends_with("-db") => {
                s.spec.as_ref()?.template.spec.clone()
            }
            _ => None,
        })
        .unwrap();
    let label = db
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "label")
        .unwrap();
    assert_eq!(label.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        label.command.as_deref(),
        Some(&["bash".to_string(), "/config/label.sh".into()][..])
    );
    let with_token: Vec<&str> = db
        .containers
        .iter()
        .chain(db.init_containers.iter().flatten())
        .filter(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|v| v.name == "kube-api-access")
        })
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(with_token, ["label"]);
    let scripts = config_map_data(&m, "wordpress-db-config");
    let agent = &scripts["agent.sh"];
    assert!(
        agent.contains("config=${HAPRESS_CONFIG:-/config}"),
        "{agent}"
    );
    assert!(agent.contains("exec bash \"$config/role.sh\""), "{agent}");
    assert!(scripts.contains_key("role.sh") && scripts.contains_key("label.sh"));
}

fn manifest(spec: &str) -> hapress_k8s::Manifest {
    let c = parse(
        &format!("apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {{name: site}}\n{spec}"),
        "t",
    )
    .unwrap();
    render(&c, &RenderOptions::default())
}

/// The first object of kind `$kind` (an [`Object`] variant) whose name passes `$name`.
macro_rules! object {
    ($m:expr, $kind:ident, $name:expr) => {
        $m.objects.iter().find_map(|o| match o {
            Object::$kind(x) if ($name)(o.name()) => Some(x),
            _ => None,
        })
    };
    ($m:expr, $kind:ident) => {
        object!($m, $kind, |_: &str| true)
    };
}

fn web_deployment(m: &hapress_k8s::Manifest) -> &k8s_openapi::api::apps::v1::Deployment {
    object!(m, Deployment, |n: &str| n.ends_with("-web")).expect("web Deployment")
}

#[test]
fn autoscaler_owns_the_replica_count() {
    // With the autoscaler, the Deployment leaves `replicas` unset (a rollout would reset
    // the autoscaler's count) and the autoscaler scales it.
    let with = manifest("spec: {web: {replicas: 5}}");
    assert_eq!(web_deployment(&with).spec.as_ref().unwrap().replicas, None);
    let hpa = object!(with, HorizontalPodAutoscaler).expect("an autoscaler");
    assert_eq!(
        hpa.spec.as_ref().unwrap().scale_target_ref.name,
        web_deployment(&with).metadata.name.clone().unwrap()
    );
    let without = manifest("spec: {web: {replicas: 5}, autoscaling: {enabled: false}}");
    assert_eq!(
        web_deployment(&without).spec.as_ref().unwrap().replicas,
        Some(5)
    );
    assert!(object!(without, HorizontalPodAutoscaler).is_none());
}

#[test]
fn hard_anti_affinity_and_tls_toggle() {
    let m = manifest("spec: {web: {antiAffinity: hard}, ingress: {tls: {enabled: false}}}");
    let pod = web_pod(&m);
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("anti-affinity on the web pods");
    assert!(anti
        .required_during_scheduling_ignored_during_execution
        .is_some_and(|r| !r.is_empty()));
    let ingress = object!(m, Ingress).expect("an Ingress");
    assert!(ingress.spec.as_ref().unwrap().tls.is_none());
    let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key("cert-manager.io/cluster-issuer"));
    assert!(annotations.keys().all(|k| !k.ends_with("ssl-redirect")));
}

#[test]
fn galera_mode_renders_a_parallel_cluster_without_role_services() {
    let mut c = Cluster::default();
    c.spec.database.mode = DatabaseMode::Galera;
    let m = render(&c, &RenderOptions::default());
    let db =
        object!(m, StatefulSet, |n: &str| n == "wordpress-db").expect("the database StatefulSet");
    let spec = db.spec.as_ref().unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let containers = &spec.template.spec.as_ref().unwrap().containers;
    assert!(containers.iter().any(|c| c
        .command
        .iter()
        .flatten()
        .any(|a| a.contains("/config/galera-start.sh"))));
    let names: Vec<&str> = m.objects.iter().map(|o| o.name()).collect();
    assert!(names.contains(&"wordpress-db-nodes"), "{names:?}");
    assert!(!names.contains(&"wordpress-db-primary"), "{names:?}");
    assert!(object!(m, Role).is_none());
    let out = m.to_yaml().unwrap();
    assert!(out.contains("name: galera\n"));
}

#[test]
fn nfs_mode_renders_server_volume_and_claim() {
    let out = yaml("spec: {storage: {nfs: {enabled: true}}}");
    for needle in [
        "kind: PersistentVolume\n",
        "server: site-nfs.site.svc.cluster.local",
        "volumeName: site-site-content",
        "privileged: true",
        "checkov.io/skip1: CKV_K8S_16=",
        "pod-security.kubernetes.io/enforce: privileged",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
}

fn web_pod(m: &hapress_k8s::Manifest) -> k8s_openapi::api::core::v1::PodSpec {
    web_deployment(m)
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap()
}

fn env_value(pod: &k8s_openapi::api::core::v1::PodSpec, name: &str) -> String {
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn config_map<'a>(m: &'a hapress_k8s::Manifest, name: &str) -> Option<&'a String> {
    m.objects.iter().find_map(|o| match o {
        Object::ConfigMap(c) if o.name() == name => c.data.as_ref()?.get("router.yaml"),
        _ => None,
    })
}

#[test]
fn router_sidecar_fronts_every_database_pod() {
    let mut c = Cluster::default();
    c.spec.database.instances = 5;
    c.spec.router.image = "example.org/hapress:9.9".into();
    let m = render(
        &c,
        &RenderOptions {
            generate_secrets: true,
        },
    );
    let pod = web_pod(&m);
    let init = pod.init_containers.as_ref().expect("init containers");
    // hapress's PHP (the object cache's drop-in, the page cache's plugin) is installed
    // first, then the router starts.
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["install-php", "router"]);
    let router = &init[1];
    assert_eq!(router.image.as_deref(), Some("example.org/hapress:9.9"));
    assert_eq!(router.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        router.args.as_deref(),
        Some(&["router", "--config", "/etc/hapress/router.yaml"].map(String::from)[..])
    );
    assert!(router.readiness_probe.is_some() && router.liveness_probe.is_some());
    assert!(router.startup_probe.is_some());
    let sc = router.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_user, Some(hapress_k8s::ROUTER_UID));
    assert_eq!(env_value(&pod, "WORDPRESS_DB_HOST"), "127.0.0.1:3306");

    let config = config_map(&m, "wordpress-router-config").expect("router ConfigMap");
    let backends: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .collect();
    assert_eq!(
        backends,
        (0..5)
            .map(|i| format!("wordpress-db-{i}.wordpress-db.wordpress.svc.cluster.local:3306"))
            .collect::<Vec<_>>()
    );
    // The generated password is in the Secret only, never in the ConfigMap.
    let password = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Secret(s) if o.name() == "wordpress-db-credentials" => {
                s.string_data.as_ref()?.get("router-password").cloned()
            }
            _ => None,
        })
        .expect("generated router-password");
    assert!(!config.contains(&password));
    assert!(config.contains("monitorPasswordFile: /run/secrets/router/router-password"));

    // The database pods get the key and the primary's agent creates the account.
    let out = m.to_yaml().unwrap();
    assert!(out.contains("name: ROUTER_USER\n          value: hapress_router"));
    assert!(out.contains("- key: router-password"));
}

/// The data of ConfigMap `name`.
fn config_map_data(
    m: &hapress_k8s::Manifest,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    m.objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(c) if o.name() == name => c.data.clone(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

fn no_router(pod: &k8s_openapi::api::core::v1::PodSpec) -> bool {
    pod.init_containers
        .iter()
        .flatten()
        .all(|c| c.name != "router")
}

#[test]
fn object_cache_is_one_redis_that_only_the_web_pods_reach() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    let redis = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(d) if o.name() == "wordpress-cache" => d.spec.clone(),
            _ => None,
        })
        .expect("the cache Deployment");
    // One Redis, replaced (never two at once: each would hold what the other's
    // invalidations miss).
    assert_eq!(redis.replicas, Some(1));
    assert_eq!(redis.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = redis.template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("redis:7.2-alpine"));
    let data = config_map_data(&m, "wordpress-cache-config");
    assert!(data["redis.conf"].contains("include /run/redis/auth.conf"));
    assert!(data["redis.conf"].contains("maxmemory 64mb"));
    assert!(
        !data["redis.conf"].contains("requirepass"),
        "no password in a ConfigMap"
    );
    assert!(data["start.sh"].contains("cat /run/secrets/cache/redis-password"));
    // Reachable on 6379 from the web pods only.
    let policy = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::NetworkPolicy(p) if o.name() == "wordpress-cache" => p.spec.clone(),
            _ => None,
        })
        .unwrap();
    let rules = policy.ingress.unwrap();
    assert_eq!(rules.len(), 1);
    let from = rules[0].from.as_ref().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        "web"
    );
    // The web pods install hapress's drop-in and point it at Redis.
    let web = web_pod(&m);
    let install = web
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "install-php")
        .unwrap();
    let script = install.command.as_ref().unwrap().join(" ");
    assert!(
        script.contains("/var/www/html/wp-content/object-cache.php.$HOSTNAME /var/www/html/wp-content/object-cache.php"),
        "{script}"
    );
    let extra = env_value(&web, "WORDPRESS_CONFIG_EXTRA");
    assert!(extra.contains("define('HAPRESS_REDIS', 'tcp://wordpress-cache:6379');"));
    assert!(extra.contains("/run/secrets/cache/redis-password"));
    let php = config_map_data(&m, "wordpress-web-php");
    assert!(php["object-cache.php"].contains("class Hapress_Redis"));

    // Off: none of it.
    let mut c = Cluster::default();
    c.spec.cache.object_cache.enabled = false;
    let off = render(&c, &RenderOptions::default());
    assert!(off
        .objects
        .iter()
        .all(|o| !o.name().contains("cache") || o.name().contains("page-cache")));
    let web = web_pod(&off);
    assert!(!env_value(&web, "WORDPRESS_CONFIG_EXTRA").contains("HAPRESS_REDIS"));
    assert!(!config_map_data(&off, "wordpress-web-php").contains_key("object-cache.php"));
}

#[test]
fn page_cache_pods_front_the_web_pods_and_every_one_is_purged() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    // The Ingress sends visitors to the cache pods; they reach the web Service.
    let out = m.to_yaml().unwrap();
    let ingress = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Ingress(i) => i.spec.clone(),
            _ => None,
        })
        .unwrap();
    let rules = ingress.rules.unwrap();
    let backend = &rules[0].http.as_ref().unwrap().paths[0].backend;
    assert_eq!(
        backend.service.as_ref().unwrap().name,
        "wordpress-page-cache"
    );
    let conf = &config_map_data(&m, "wordpress-page-cache-config")["nginx.conf"];
    assert!(conf.contains("server wordpress-web:80;"), "{conf}");
    assert!(conf.contains("proxy_cache_bypass $hapress_skip;"));
    // Two pods of nginx and the purger; the purger outlives nginx's serving when stopping.
    let d = m
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(d) if o.name() == "wordpress-page-cache" => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let sleep = |name: &str| -> i64 {
        let c = pod.containers.iter().find(|c| c.name == name).unwrap();
        let cmd = c
            .lifecycle
            .clone()
            .unwrap()
            .pre_stop
            .unwrap()
            .exec
            .unwrap()
            .command
            .unwrap();
        cmd[1].parse().unwrap()
    };
    assert!(sleep("purger") > sleep("nginx"));
    assert!(pod.termination_grace_period_seconds.unwrap() > sleep("purger"));
    // Every cache pod, ready or not, is listed for the purge; the web pods know where and
    // hold the key; so does each purger, and nothing else.
    assert!(out.contains("name: wordpress-page-cache-peers"));
    assert!(out.contains("publishNotReadyAddresses: true"));
    let web = web_pod(&m);
    let extra = env_value(&web, "WORDPRESS_CONFIG_EXTRA");
    assert!(extra.contains("wordpress-page-cache-peers.wordpress.svc.cluster.local:9180"));
    let holders: Vec<String> = m
        .objects
        .iter()
        .filter(|o| {
            o.to_yaml()
                .unwrap()
                .contains("secretName: wordpress-page-cache-key")
        })
        .map(|o| o.name().to_string())
        .collect();
    assert_eq!(holders, ["wordpress-page-cache", "wordpress-web"]);
    // Purges only from the web pods; the web pods only from the cache pods.
    let rules = |name: &str| {
        m.objects
            .iter()
            .find_map(|o| match o {
                Object::NetworkPolicy(p) if o.name() == name => p.spec.clone(),
                _ => None,
            })
            .unwrap()
            .ingress
            .unwrap()
    };
    let component = |r: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        r.from.as_ref().unwrap()[0]
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .and_then(|l| l.get("app.kubernetes.io/component").cloned())
    };
    let cache_rules = rules("wordpress-page-cache");
    let purge = cache_rules
        .iter()
        .find(|r| component(r).as_deref() == Some("web"))
        .unwrap();
    assert_eq!(
        purge.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(9180))
    );
    let web_rules = rules("wordpress-web");
    assert_eq!(component(&web_rules[0]).as_deref(), Some("page-cache"));

    // Off: the Ingress goes to the web pods, as before, and no cache object is left.
    let mut c = Cluster::default();
    c.spec.cache.page.enabled = false;
    let off = render(&c, &RenderOptions::default());
    assert!(off.objects.iter().all(|o| !o.name().contains("page-cache")));
    assert!(!env_value(&web_pod(&off), "WORDPRESS_CONFIG_EXTRA").contains("PAGE_CACHE"));
    assert!(off
        .to_yaml()
        .unwrap()
        .contains("name: wordpress-web\n            port:"));
}

#[test]
fn router_disabled_or_galera_means_no_sidecar() {
    let mut c = Cluster::default();
    c.spec.router.enabled = false;
    let m = render(&c, &RenderOptions::default());
    let pod = web_pod(&m);
    assert!(no_router(&pod));
    assert_eq!(env_value(&pod, "WORDPRESS_DB_HOST"), "wordpress-db-primary");
    assert!(config_map(&m, "wordpress-router-config").is_none());
    let out = m.to_yaml().unwrap();
    // No key nobody reads (the agent script mentions it, but runs that part only with
    // ROUTER_USER set).
    assert!(!out.contains("--from-literal=router-password"));
    assert!(!out.contains("key: router-password"));
    assert!(!out.contains("name: ROUTER_USER"));
    assert!(!out.contains("9104"));

    let mut g = Cluster::default();
    g.spec.database.mode = DatabaseMode::Galera;
    let m = render(&g, &RenderOptions::default());
    let pod = web_pod(&m);
    assert!(no_router(&pod));
    assert_eq!(env_value(&pod, "WORDPRESS_DB_HOST"), "wordpress-db-nodes");
    assert!(!m.to_yaml().unwrap().contains("key: router-password"));
}

#[test]
fn router_metrics_are_open_to_prometheus_only() {
    let out = yaml("");
    assert!(out.contains("prometheus.io/port: '9104'"));
    let web_policy = out
        .split("---\n")
        .find(|d| d.contains("kind: NetworkPolicy") && d.contains("name: site-web\n"))
        .expect("web NetworkPolicy");
    assert!(web_policy.contains("port: 9104"), "{web_policy}");
    assert!(
        web_policy.contains("app.kubernetes.io/name: prometheus"),
        "{web_policy}"
    );
}

#[test]
fn image_user_is_the_sidecars_user() {
    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/Dockerfile"),
    )
    .unwrap();
    let uid = hapress_k8s::ROUTER_UID;
    assert!(
        dockerfile.contains(&format!("\nUSER {uid}:{uid}\n")),
        "deploy/Dockerfile must run as the router sidecar's user {uid}"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p hapress"));
}

#[test]
fn the_label_sidecar_may_only_label_and_evict_its_own_statefulsets_pods() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    let role = object!(m, Role).expect("the labeler Role");
    let rules = role.rules.as_ref().unwrap();
    let pods = ["wordpress-db-0", "wordpress-db-1", "wordpress-db-2"];
    let summary: Vec<(Vec<String>, Vec<String>, Vec<String>)> = rules
        .iter()
        .map(|r| {
            assert_eq!(r.api_groups.as_deref(), Some(&[String::new()][..]));
            (
                r.resources.clone().unwrap_or_default(),
                r.verbs.clone(),
                r.resource_names.clone().unwrap_or_default(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            (s(&["pods"]), s(&["get", "patch"]), s(&pods)),
            (s(&["pods/eviction"]), s(&["create"]), s(&pods)),
        ]
    );
}
