//! The embedded runtime end to end: `hapress up` brings up real MariaDB, php-fpm and nginx
//! processes, survives component deaths, and `down` + `up` keeps every byte of data.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn spec(title: &str) -> String {
    format!(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata:\n  name: lifecycle\nspec:\n  site:\n    title: {title}\n    environment: local\n  web:\n    replicas: 3\n    phpWorkers: 2\n  database:\n    instances: 3\n"
    )
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
}

#[test]
fn lifecycle_up_write_replicate_survive_kills_down_up() {
    let title = format!("Hapress Test {}", std::process::id());
    let t0 = Instant::now();
    let (c, out) = Cluster::up(&spec(&title));
    let cold = t0.elapsed();
    assert!(out.contains("admin password (shown once):"), "{out}");
    let password = std::fs::read_to_string(format!("{}/secrets/admin-password", c.state_dir()))
        .unwrap()
        .trim()
        .to_string();
    assert!(out.contains(&password));

    // Secrets: 0600 files, not in any log, not on any command line.
    for entry in std::fs::read_dir(format!("{}/secrets", c.state_dir())).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let db_password =
        std::fs::read_to_string(format!("{}/secrets/db-wordpress-password", c.state_dir()))
            .unwrap()
            .trim()
            .to_string();
    for entry in std::fs::read_dir(format!("{}/logs", c.state_dir())).unwrap() {
        let body = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !body.contains(&password) && !body.contains(&db_password),
            "a secret leaked into a log"
        );
    }
    for proc_dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(proc_dir.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !cmdline.contains(&password) && !cmdline.contains(&db_password),
            "secret on a command line: {cmdline}"
        );
    }

    // 2. The homepage answers through nginx with the site title.
    let (code, body) = c.get("/");
    assert_eq!(code, 200);
    assert!(body.contains(&title), "homepage lacks the title");

    // Status: every component up, one primary, replicas replicating with semi-sync.
    let st = c.status();
    let comps = st["components"].as_array().unwrap();
    assert_eq!(comps.len(), 9, "{st}"); // 3 db, 3 web, router, redis, nginx
    assert!(comps.iter().all(|x| x["health"] == "up"), "{st}");
    assert_eq!(c.component("db-0")["role"], "primary");
    assert_eq!(c.component("db-0")["replication"]["semiSync"], true);
    for r in ["db-1", "db-2"] {
        let rep = &c.component(r)["replication"];
        assert_eq!(rep["role"], "replica", "{rep}");
        assert_eq!(rep["ioRunning"], "Yes", "{rep}");
        assert_eq!(rep["sqlRunning"], "Yes", "{rep}");
    }
    let table = text(&run(&["status", "--state-dir", &c.state_dir()]));
    assert!(
        table.contains("COMPONENT") && table.contains("io=Yes sql=Yes"),
        "{table}"
    );
    assert_eq!(c.sql(1, "SELECT @@read_only"), "1");
    assert_eq!(c.sql(0, "SELECT @@read_only"), "0");
    assert_eq!(
        c.sql(0, "SELECT @@rpl_semi_sync_master_wait_point"),
        "AFTER_SYNC"
    );

    // 3. A post through the REST API (application password) shows on the homepage and is
    // replicated to both replicas.
    let app = c.application_password();
    let post_title = format!("Replicated post {}", std::process::id());
    let (code, resp) = http(
        c.http_port,
        "POST",
        "/?rest_route=/wp/v2/posts",
        Some(&format!("admin:{app}")),
        &format!("{{\"title\":\"{post_title}\",\"content\":\"hello from the test\",\"status\":\"publish\"}}"),
    );
    assert_eq!(code, 201, "{resp}");
    let (_, home) = c.get("/");
    assert!(home.contains(&post_title), "post not on the homepage");
    let q = format!("SELECT COUNT(*) FROM wordpress.wp_posts WHERE post_title='{post_title}' AND post_status='publish'");
    for db in [1, 2] {
        assert!(
            wait_for(Duration::from_secs(10), || c.sql(db, &q) == "1").is_some(),
            "post missing on db-{db}"
        );
    }

    // 4. kill -9 of a web replica's whole process group under 100 requests: no failure.
    let web0 = c.pid_of("web-0");
    let mut failures = 0;
    for i in 0..100 {
        if i == 10 {
            nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(web0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        if c.get("/").0 != 200 {
            failures += 1;
        }
    }
    assert_eq!(failures, 0, "requests failed while web-0 was down");
    let back = wait_for(Duration::from_secs(10), || {
        let w = c.component("web-0");
        w["health"] == "up" && w["pid"].as_i64() != Some(web0) && w["restarts"] == 1
    });
    assert!(back.is_some(), "web-0 not back within 10 s: {}", c.status());
    assert!(
        c.status()["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["component"] == "web-0"),
        "no event for web-0"
    );

    // 5. kill -9 of a replica database: restarted, catches up to the primary's GTID.
    let db2 = c.pid_of("db-2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(db2 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    c.sql(0, "CREATE DATABASE IF NOT EXISTS probe; CREATE TABLE IF NOT EXISTS probe.t (id INT PRIMARY KEY); INSERT INTO probe.t VALUES (1),(2),(3)");
    let caught_up = wait_for(Duration::from_secs(30), || {
        let r = c.component("db-2");
        r["health"] == "up"
            && r["pid"].as_i64() != Some(db2)
            && c.sql(2, "SELECT @@gtid_current_pos") == c.sql(0, "SELECT @@gtid_current_pos")
    });
    assert!(
        caught_up.is_some(),
        "db-2 did not come back and catch up: {}",
        c.status()
    );
    assert_eq!(c.sql(2, "SELECT COUNT(*) FROM probe.t"), "3");

    // WordPress talks only to the SQL router, which sent its plain reads to the replicas.
    let router = c.component("router");
    assert_eq!(router["role"], "sql-router");
    assert!(
        router["router"]["routedToReplicas"].as_u64().unwrap() > 0,
        "no WordPress read reached a replica: {router}"
    );
    // ... over the servers' unix sockets (and their `localhost` accounts).
    assert_eq!(
        router["router"]["primary"],
        format!("{}/run/db-0.sock", c.state_dir()),
        "{router}"
    );
    let wp_config =
        std::fs::read_to_string(format!("{}/site/wp-config.php", c.state_dir())).unwrap();
    assert!(
        wp_config.contains("run/router.sock"),
        "WordPress does not connect through the router"
    );
    // Through the router MariaDB sees `localhost`: an account for '%' logs in, one for
    // '127.0.0.1' only gets MariaDB's 1045 there (and works directly over TCP), as the README
    // says.
    c.sql(
        0,
        "CREATE USER anyhost@'%' IDENTIFIED BY 'pw-any'; CREATE USER tcponly@'127.0.0.1' IDENTIFIED BY 'pw-tcp'",
    );
    let login = |user: &str, pw: &str, via: &[String]| {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-u",
                user,
                "-N",
                "-e",
                "SELECT CURRENT_USER()",
            ])
            .args(via)
            .env("MYSQL_PWD", pw)
            .output()
            .unwrap();
        text(&out)
    };
    let router_sock = vec![format!("--socket={}/run/router.sock", c.state_dir())];
    let tcp = vec![
        "--protocol=tcp".to_string(),
        "-h127.0.0.1".to_string(),
        format!("-P{}", c.db_port),
    ];
    assert_eq!(login("anyhost", "pw-any", &router_sock).trim(), "anyhost@%");
    let refused = login("tcponly", "pw-tcp", &router_sock);
    assert!(refused.contains("ERROR 1045"), "{refused}");
    assert_eq!(login("tcponly", "pw-tcp", &tcp).trim(), "tcponly@127.0.0.1");

    // kill -9 of the router: restarted, and the site answers again.
    let rpid = c.pid_of("router");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(rpid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let back = wait_for(Duration::from_secs(10), || {
        let r = c.component("router");
        r["health"] == "up" && r["pid"].as_i64() != Some(rpid) && c.get("/").0 == 200
    });
    assert!(back.is_some(), "router did not come back: {}", c.status());

    // 6. down, then up: same data, nothing re-initialised.
    let data_inode = std::fs::metadata(format!("{}/db-0/data/mysql", c.state_dir()))
        .unwrap()
        .ino();
    let pids: Vec<i64> = c.status()["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["pid"].as_i64())
        .collect();
    // The site was renamed in its settings: the next `up` must not insist on the spec's title.
    c.site_php("update_option('blogname', 'Renamed In Settings');");
    c.down();
    assert!(pids.iter().all(|p| !alive(*p)), "processes survived down");
    assert_eq!(c.status()["phase"], "stopped");
    let t1 = Instant::now();
    let out = c.start();
    let warm = t1.elapsed();
    assert!(
        out.contains("already initialised, adopted")
            && out.contains("already set up")
            && out.contains("already installed"),
        "{out}"
    );
    assert!(
        !out.contains("shown once"),
        "a warm start must not print a new password: {out}"
    );
    assert_eq!(
        std::fs::metadata(format!("{}/db-0/data/mysql", c.state_dir()))
            .unwrap()
            .ino(),
        data_inode
    );
    assert_eq!(
        std::fs::read_to_string(format!("{}/secrets/admin-password", c.state_dir()))
            .unwrap()
            .trim(),
        password
    );
    let (code, home) = c.get("/");
    assert_eq!(code, 200);
    assert!(home.contains(&post_title), "post lost after down/up");
    assert!(
        home.contains("Renamed In Settings"),
        "the renamed title is gone"
    );
    assert_eq!(c.sql(0, &q), "1");
    eprintln!(
        "figures: cold up {:.2}s, warm up {:.2}s, web-0 back after {:.2}s",
        cold.as_secs_f64(),
        warm.as_secs_f64(),
        back.unwrap().as_secs_f64()
    );
}

#[test]
fn down_after_a_killed_supervisor_stops_even_components_without_a_pid_file() {
    let (c, _) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: strays}\nspec:\n  site: {environment: local}\n  web: {replicas: 1}\n",
    );
    let st = c.status();
    let supervisor = st["supervisorPid"].as_i64().unwrap();
    let db0 = c.component("db-0")["pid"].as_i64().unwrap();
    let redis = c.component("redis")["pid"].as_i64().unwrap();
    // The supervisor dies between starting components and writing their pid files.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for name in ["db-0", "redis"] {
        std::fs::remove_file(format!("{}/run/{name}.pgid", c.state_dir())).unwrap();
    }
    let out = c.down();
    assert!(
        out.contains(&format!("mariadbd (pid {db0})"))
            && out.contains(&format!("redis-server (pid {redis})")),
        "{out}"
    );
    assert!(!alive(db0) && !alive(redis), "{out}");
    // Nothing of the cluster is left: it starts again on the same ports.
    c.start();
    assert_eq!(c.get("/").0, 200);
}
