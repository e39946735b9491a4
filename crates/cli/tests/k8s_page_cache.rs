//! The Kubernetes page cache (`hapress render`'s cache pods) with real processes: two nginx
//! "cache pods" running the rendered `nginx.conf`, each with a real `hapress
//! page-cache-purger`, in front of a real WordPress (an embedded cluster with its own page
//! cache off), whose must-use plugin gets the settings the render gives the web pods. Only the
//! addresses differ from a cluster: loopback ports instead of pod IPs behind the headless
//! Service.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hapress_k8s::page_cache;

/// One cache pod: nginx with the rendered config and its purger.
struct CachePod {
    http: u16,
    purge: u16,
    root: PathBuf,
    conf: PathBuf,
    nginx: Child,
    purger: Child,
}

impl CachePod {
    fn start(
        dir: &Path,
        name: &str,
        cluster: &hapress_spec::Cluster,
        upstream: u16,
        key: &Path,
    ) -> Self {
        let ports = free_ports(2);
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        // nginx's workers run as `nobody` under a root master; the purger, like in the pod,
        // may delete what they write.
        chmod(&root, 0o777);
        let conf = dir.join(format!("{name}.conf"));
        write_conf(&conf, cluster, ports, upstream, &root);
        let nginx = Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-e", "stderr"])
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx");
        let purger = hapress()
            .args(page_cache::purger_args(
                &format!("127.0.0.1:{}", ports + 1),
                root.to_str().unwrap(),
                key.to_str().unwrap(),
            ))
            .stdout(Stdio::null())
            .spawn()
            .expect("purger");
        let pod = CachePod {
            http: ports,
            purge: ports + 1,
            root,
            conf,
            nginx,
            purger,
        };
        let up = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", pod.http)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", pod.purge)).is_ok()
        });
        assert!(up.is_some(), "cache pod {name} did not start");
        pod
    }

    /// Points nginx at another upstream and reloads it (SIGHUP), as a new ConfigMap would.
    fn set_upstream(&self, cluster: &hapress_spec::Cluster, upstream: u16) {
        write_conf(&self.conf, cluster, self.http, upstream, &self.root);
        let pid = nix::unistd::Pid::from_raw(self.nginx.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    fn metric(&self, series: &str) -> f64 {
        let a = req(self.purge, "GET", "/metrics", &[], "");
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for CachePod {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers (a SIGKILL would leave them serving).
        let pid = nix::unistd::Pid::from_raw(self.nginx.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = wait_for(Duration::from_secs(10), || {
            matches!(self.nginx.try_wait(), Ok(Some(_)))
        });
        if stopped.is_none() {
            let _ = self.nginx.kill();
            let _ = self.nginx.wait();
        }
        let _ = self.purger.kill();
        let _ = self.purger.wait();
    }
}

/// The purge key of the test (a Secret's value in a cluster).
const KEY: &str = "a-test-purge-key-0123456789abcdef";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The rendered `nginx.conf` of a cache pod on loopback port `http`, in front of `upstream`.
fn write_conf(conf: &Path, cluster: &hapress_spec::Cluster, http: u16, upstream: u16, root: &Path) {
    let placement = page_cache::NginxPlacement {
        listen: format!("127.0.0.1:{http}"),
        upstream: format!("127.0.0.1:{upstream}"),
        root: root.display().to_string(),
    };
    std::fs::write(conf, page_cache::nginx_conf(cluster, &placement)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every log of the embedded cluster (PHP's `error_log` lands in php-fpm's).
fn all_logs(c: &Cluster) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(Path::new(&c.state_dir()).join("logs"))
        .unwrap()
        .flatten()
    {
        out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    out
}

#[test]
fn cache_pods_serve_anonymous_pages_and_every_pod_is_emptied_before_a_change_returns() {
    let (c, _) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: k8scache}\nspec:\n  site: {environment: local}\n  web: {replicas: 2}\n  cache: {page: {enabled: false}, objectCache: {enabled: false}}\n",
    );
    let auth = format!(
        "Basic {}",
        base64(format!("admin:{}", c.application_password()).as_bytes())
    );
    // What the render gives the web pods: the key (a Secret) and the plugin's settings.
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let key = dir.path().join("purge-key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    chmod(&key, 0o644);
    let generation = dir.path().join("content/cache/hapress-page-cache");
    std::fs::create_dir_all(&generation).unwrap();
    chmod(&generation, 0o777);
    let spec = hapress_spec::Cluster::default();
    let a = CachePod::start(dir.path(), "a", &spec, c.http_port, &key);
    let b = CachePod::start(dir.path(), "b", &spec, c.http_port, &key);
    // The plugin resolves each host to every address; here the pods differ by port.
    let settings = page_cache::wp_defines(
        &format!("127.0.0.1:{},127.0.0.1:{}", a.purge, b.purge),
        key.to_str().unwrap(),
        generation.join("generation").to_str().unwrap(),
    );
    let mu = Path::new(&c.state_dir()).join("site/wp-content/mu-plugins");
    std::fs::write(mu.join("0-k8s-settings.php"), format!("<?php\n{settings}")).unwrap();

    // Each pod keeps its copy; the embedded nginx (cache off) never says X-Cache.
    for pod in [&a, &b] {
        let home = cached(pod.http, "/");
        assert_eq!(home.code, 200);
        assert!(home.body.contains("My WordPress Site"), "{}", home.body);
    }
    assert_eq!(req(c.http_port, "GET", "/", &[], "").cache(), "");

    // The same rules as `hapress up`'s cache (each case there has its own test).
    for (method, path, headers) in [
        (
            "GET",
            "/",
            vec![("Cookie", "wordpress_logged_in_abc=admin%7C1")],
        ),
        ("GET", "/wp-admin/", vec![]),
        ("GET", "/?rest_route=/", vec![]),
        ("GET", "/", vec![("Authorization", "Basic eDp5")]),
    ] {
        for _ in 0..2 {
            let r = req(a.http, method, path, &headers, "");
            assert_eq!(
                r.cache(),
                "BYPASS",
                "{method} {path} {headers:?}: {}",
                r.head
            );
        }
    }
    let post = req(a.http, "POST", "/", &[], "");
    assert_eq!(post.cache(), "", "{}", post.head);

    // A purge that is not signed with the key changes nothing.
    let forged = hapress_local::purger::sign(b"another key", now());
    for headers in [vec![], vec![("X-Hapress-Purge", forged.as_str())]] {
        let r = req(a.purge, "POST", "/purge", &headers, "");
        assert_eq!(r.code, 403, "{}", r.head);
    }
    assert_eq!(req(a.http, "GET", "/", &[], "").cache(), "HIT");

    // A change through either pod empties both before it returns: the next visitor of each
    // sees it.
    for (round, via) in [&a, &b, &a].into_iter().enumerate() {
        for pod in [&a, &b] {
            cached(pod.http, "/");
        }
        let title = format!("Cache pods round {round} {}", std::process::id());
        publish(via.http, &auth, &title);
        for pod in [&a, &b] {
            let home = req(pod.http, "GET", "/", &[], "");
            assert_ne!(home.cache(), "HIT", "{}", home.head);
            assert!(
                home.body.contains(&title),
                "round {round}: an old page after the publish"
            );
        }
    }

    // Visitors on both pods while a post is published through one: no answer to a request
    // sent after the publish returned is an old page, on either pod.
    let title = format!("Under load on the cache pods {}", std::process::id());
    let seen = visitors_during(&[a.http, a.http, b.http, b.http], &title, || {
        publish(a.http, &auth, &title)
    });
    assert!(
        seen.after > 20 && seen.hits > 10,
        "too little traffic: {seen:?}"
    );
    assert_eq!(seen.stale, 0, "old pages after the publish: {seen:?}");

    // The counters of each pod, as Prometheus scrapes them from the purger.
    let counted = wait_for(Duration::from_secs(5), || {
        a.metric(r#"hapress_page_cache_requests_total{result="hit"}"#) >= 2.0
            && a.metric(r#"hapress_page_cache_requests_total{result="bypass"}"#) >= 8.0
            && a.metric(r#"hapress_page_cache_requests_total{result="miss"}"#) >= 1.0
    });
    assert!(
        counted.is_some(),
        "{}",
        req(a.purge, "GET", "/metrics", &[], "").body
    );

    // A cache pod that does not answer: the change still completes, the others are emptied,
    // and the failure is logged with the pod's address.
    drop(b);
    cached(a.http, "/");
    let title = format!("With a pod down {}", std::process::id());
    publish(a.http, &auth, &title);
    assert!(req(a.http, "GET", "/", &[], "").body.contains(&title));
    let logged = wait_for(Duration::from_secs(5), || {
        all_logs(&c).contains("hapress page cache: purge of 127.0.0.1:")
    });
    assert!(logged.is_some(), "the failed purge is not logged");

    // Every web replica down (nginx's upstream refuses): the old copy is served, marked
    // STALE, once it has expired.
    let mut short = hapress_spec::Cluster::default();
    short.spec.cache.page.ttl_seconds = 1;
    a.set_upstream(&short, c.http_port);
    // Once the reload took, a page stored after a purge expires within seconds.
    let reloaded = wait_for(Duration::from_secs(20), || {
        let signed = hapress_local::purger::sign(KEY.as_bytes(), now());
        let r = req(
            a.purge,
            "POST",
            "/purge",
            &[("X-Hapress-Purge", &signed)],
            "",
        );
        assert_eq!(r.code, 200, "{}", r.head);
        cached(a.http, "/");
        // Expired: rendered again, or the old copy while that happens in the background.
        wait_for(Duration::from_secs(3), || {
            req(a.http, "GET", "/", &[], "").cache() != "HIT"
        })
        .is_some()
    });
    assert!(reloaded.is_some(), "the reload with a 1 s TTL did not take");
    let dead = free_ports(1);
    a.set_upstream(&short, dead);
    let stale = wait_for(Duration::from_secs(10), || {
        let r = req(a.http, "GET", "/", &[], "");
        r.code == 200 && r.cache() == "STALE" && r.body.contains(&title)
    });
    assert!(stale.is_some(), "{}", req(a.http, "GET", "/", &[], "").head);
}
