//! The persistent object cache (`spec.cache.objectCache`): the `object-cache.php` drop-in
//! against a real Redis, and a real cluster whose Redis is killed and hung under traffic.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const DROP_IN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../local/src/php/object-cache.php"
);
const CONTRACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/php/object_cache_contract.php"
);

/// A Redis of the test's own, on a unix socket and a loopback port, with a password; killed
/// on drop.
struct Redis(Child);

impl Redis {
    fn start(dir: &Path, password: &str, port: u16) -> Redis {
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nunixsocket {}\ndir {}\nsave \"\"\nrequirepass {password}\n",
                dir.join("redis.sock").display(),
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        let sock = dir.join("redis.sock");
        assert!(
            wait_for(Duration::from_secs(10), || redis_cli(
                &sock,
                password,
                &["PING"]
            ) == "PONG")
            .is_some(),
            "redis-server did not start"
        );
        Redis(child)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redis-cli` on a unix socket; the password through the environment, not the arguments.
fn redis_cli(sock: &Path, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(sock)
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .unwrap();
    text(&out).trim().to_string()
}

fn contract(mode: &str, redis: &str, password: &str, state: &Path, client: &str) {
    let out = Command::new("php")
        .args([CONTRACT, mode, DROP_IN, redis, password])
        .arg(state)
        .arg(client)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{mode} ({client} client): {}",
        text(&out)
    );
}

#[test]
fn the_drop_in_keeps_wordpress_semantics_in_redis_and_drops_what_changed_while_redis_was_away() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let _redis = Redis::start(dir.path(), "pw-contract", port);
    let sock = dir.path().join("redis.sock");
    // phpredis on the unix socket (hapress up), and the drop-in's own client over TCP (the
    // official WordPress image, which lacks the extension, in Kubernetes).
    for (client, address) in [
        ("native", sock.display().to_string()),
        ("php", format!("tcp://127.0.0.1:{port}")),
    ] {
        let state = dir.path().join(format!("state-{client}"));
        std::fs::create_dir(&state).unwrap();
        contract("contract", &address, "pw-contract", &state, client);
        assert_eq!(
            redis_cli(&sock, "pw-contract", &["GET", "hapress:test:options:title"]),
            "s:3:\"old\";"
        );
        // A request that cannot reach Redis works on, marks the entries it could not update...
        let nowhere = dir.path().join("nowhere.sock").display().to_string();
        contract("down", &nowhere, "pw-contract", &state, client);
        assert!(state.join("stale").exists() && state.join("paused").exists());
        // ...and the first request that reaches Redis again empties it first.
        contract("back", &address, "pw-contract", &state, client);
        assert_eq!(
            redis_cli(&sock, "pw-contract", &["GET", "other-site:key"]),
            "theirs",
            "another site's keys are not this site's to empty"
        );
    }
}

/// A visitor's homepage, rendered by PHP (the page cache bypassed): status and `<title>`.
fn homepage(port: u16) -> (u16, String) {
    let a = req(port, "GET", "/", &[("Cookie", "wordpress_no_cache=1")], "");
    let title = a
        .body
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("")
        .to_string();
    (a.code, title)
}

fn redis_pid(c: &Cluster) -> i32 {
    c.component("redis")["pid"].as_i64().unwrap() as i32
}

/// Redis's hit counter, asked directly (`status` is a second old and says nothing while
/// Redis hangs); 0 when Redis does not answer.
fn redis_hits(sock: &Path, password: &str) -> u64 {
    redis_cli(sock, password, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("keyspace_hits:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn set_title(c: &Cluster, title: &str) {
    c.site_php(&format!("update_option('blogname', '{title}');"));
}

#[test]
fn wordpress_keeps_its_objects_in_redis_and_no_request_fails_when_redis_dies_or_hangs() {
    let (c, _) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: objcache}\nspec:\n  site: {environment: local, title: Start}\n  web: {replicas: 2}\n",
    );
    let port = c.http_port;
    let state = Path::new(&c.state_dir()).to_path_buf();
    let sock = state.join("redis/redis.sock");
    let password = std::fs::read_to_string(state.join("secrets/redis-password"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(homepage(port), (200, "Start".into()));

    // WordPress's objects are in Redis, under the cluster's prefix, and are used.
    let keys = redis_cli(&sock, &password, &["KEYS", "*"]);
    assert!(
        keys.lines().count() > 10 && keys.lines().all(|k| k.starts_with("hapress:objcache:")),
        "{keys}"
    );
    assert!(
        keys.lines()
            .any(|k| k == "hapress:objcache:options:alloptions"),
        "{keys}"
    );
    let hits = redis_hits(&sock, &password);
    homepage(port);
    assert!(
        redis_hits(&sock, &password) > hits,
        "a second page found nothing in Redis"
    );
    // `status` counts them too.
    assert!(
        wait_for(Duration::from_secs(5), || c.status()["objectCache"]["hits"]
            .as_u64()
            .is_some_and(|h| h > hits))
        .is_some(),
        "{}",
        c.status()
    );
    // Redis needs its password.
    let refused = redis_cli(&sock, "wrong", &["PING"]);
    assert!(
        refused.contains("WRONGPASS") && !refused.contains("PONG"),
        "{refused}"
    );

    // A change is seen by the next page at once (WordPress deletes what it made stale).
    set_title(&c, "Changed");
    assert_eq!(homepage(port), (200, "Changed".into()));

    // Visitors all along; every answer must be a 200, and once a title change returned, no
    // page may show an older one.
    let stop = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(Mutex::new(vec!["Changed".to_string()]));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let visitors: Vec<_> = (0..3)
        .map(|_| {
            let (stop, expected, served, failures) = (
                stop.clone(),
                expected.clone(),
                served.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // What was expected before the request started: a change that returned
                    // before it must show.
                    let allowed = expected.lock().unwrap().clone();
                    let (code, title) = homepage(port);
                    served.fetch_add(1, Ordering::Relaxed);
                    if code != 200 || !allowed.contains(&title) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{code} {title:?} (allowed {allowed:?})"));
                    }
                }
            })
        })
        .collect();
    let change = |title: &str| {
        // While the change runs, the old or the new title; after it returns, only the new.
        expected.lock().unwrap().push(title.to_string());
        set_title(&c, title);
        *expected.lock().unwrap() = vec![title.to_string()];
    };
    let served_since = |n: usize| {
        let from = served.load(Ordering::Relaxed);
        wait_for(Duration::from_secs(30), || {
            served.load(Ordering::Relaxed) >= from + n
        })
        .is_some()
    };

    // Killed: the supervisor restarts it, empty; pages go on meanwhile.
    let pid = redis_pid(&c);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    change("After kill");
    assert!(
        wait_for(Duration::from_secs(20), || {
            let r = c.component("redis");
            r["health"] == "up" && r["pid"].as_i64() != Some(i64::from(pid))
        })
        .is_some(),
        "Redis was not restarted: {}",
        c.component("redis")
    );
    // Back in use (after the few seconds every replica leaves a failed Redis alone), holding
    // the options as they are now: what a change made while it hangs leaves stale.
    let hits = redis_hits(&sock, &password);
    assert!(
        wait_for(Duration::from_secs(30), || redis_hits(&sock, &password)
            > hits + 20)
        .is_some(),
        "the site did not use Redis again after its restart"
    );
    assert!(
        wait_for(Duration::from_secs(10), || redis_cli(
            &sock,
            &password,
            &["GET", "hapress:objcache:options:alloptions"]
        )
        .contains("After kill"))
        .is_some(),
        "Redis does not hold the options"
    );

    // Hung: requests wait at most a read timeout, then go on without it; a change made
    // meanwhile cannot remove what it made stale in Redis, so Redis is emptied when it is
    // reachable again: the change shows at once and after.
    let pid = redis_pid(&c);
    let hung_at = served.load(Ordering::Relaxed);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    assert!(served_since(10), "pages stopped while Redis hangs");
    change("While hung");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let hits = redis_hits(&sock, &password);
    assert!(
        wait_for(Duration::from_secs(30), || redis_hits(&sock, &password)
            > hits + 20)
        .is_some(),
        "the site did not use Redis again after it resumed"
    );
    assert!(served_since(20));
    stop.store(true, Ordering::Relaxed);
    for v in visitors {
        v.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} pages failed or were stale: {:?}",
        failures.len(),
        served.load(Ordering::Relaxed),
        &failures[..failures.len().min(10)]
    );
    assert!(served.load(Ordering::Relaxed) > hung_at + 20);
    let log = std::fs::read_to_string(state.join("logs/web-0.log")).unwrap_or_default()
        + &std::fs::read_to_string(state.join("logs/web-1.log")).unwrap_or_default();
    assert!(
        log.contains("hapress object cache: Redis unavailable"),
        "the fallback is not logged: {log}"
    );
}

#[test]
fn with_the_object_cache_off_there_is_no_redis_and_no_drop_in() {
    let (c, out) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: nooc}\nspec:\n  site: {environment: local}\n  web: {replicas: 1}\n  cache: {objectCache: {enabled: false}}\n",
    );
    assert!(
        out.contains("skipped (spec.cache.objectCache.enabled: false)"),
        "{out}"
    );
    let st = c.status();
    assert!(
        st["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["name"] != "redis"),
        "{st}"
    );
    assert!(!Path::new(&c.state_dir())
        .join("site/wp-content/object-cache.php")
        .exists());
    assert_eq!(homepage(c.http_port).0, 200);
}
