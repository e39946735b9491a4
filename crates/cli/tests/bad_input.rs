//! Bad input gets a clear message, a non-zero exit and leaves the state directory untouched.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use common::*;

const HEADER: &str = "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\n";

/// Every file under `dir` with its contents: compared before and after to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(snapshot(&p));
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn up_fails(dir: &Path, spec: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let spec_path = dir.join("hapress.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let state = dir.join("state");
    let ports = free_ports(4);
    let mut cmd = hapress();
    cmd.args([
        "up",
        "-f",
        spec_path.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--database-port",
        &(ports + 1).to_string(),
    ])
    .args(extra)
    .stdin(Stdio::null());
    if !extra.contains(&"--http-port") {
        cmd.args(["--http-port", &ports.to_string()]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "up should fail: {}", text(&out));
    text(&out)
}

#[test]
fn invalid_spec_names_the_field_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let msg = up_fails(
        dir.path(),
        &format!("{HEADER}metadata: {{name: blog}}\nspec:\n  web:\n    replicas: 0\n"),
        &[],
        &[],
    );
    assert!(
        msg.contains("spec.web.replicas: must be 1..=64, got 0"),
        "{msg}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "state directory was created"
    );
}

#[test]
fn yaml_error_has_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let msg = up_fails(
        dir.path(),
        &format!("{HEADER}metadata:\n  name: blog\nspec:\n  web: {{replicas: 2\n"),
        &[],
        &[],
    );
    assert!(
        msg.contains("hapress.yaml:6:") || msg.contains("hapress.yaml:7:"),
        "{msg}"
    );
    let out = run(&[
        "validate",
        "-f",
        dir.path().join("hapress.yaml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

#[test]
fn missing_packages_print_the_apt_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let msg = up_fails(
        dir.path(),
        &format!("{HEADER}metadata: {{name: blog}}\n"),
        &[],
        &[
            ("HAPRESS_TOOL_PATH", empty.path().to_str().unwrap()),
            ("HAPRESS_WORDPRESS_DIR", "/nonexistent"),
        ],
    );
    assert!(msg.contains("missing programs: mariadbd, mariadb-install-db, mariadb, php-fpm, php, nginx, mariadb-backup, mbstream, redis-server (for the object cache; or set spec.cache.objectCache.enabled: false), WordPress (/nonexistent)"), "{msg}");
    assert!(msg.contains("apt-get install -y mariadb-server mariadb-client php-fpm php-mysql php-cli nginx mariadb-backup redis-server wordpress php apache2-"), "{msg}");
    assert!(!dir.path().join("state").exists());
}

#[test]
fn port_in_use_names_port_component_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let msg = up_fails(
        dir.path(),
        &format!("{HEADER}metadata: {{name: blog}}\n"),
        &["--http-port", &port.to_string()],
        &[],
    );
    assert!(
        msg.contains(&format!(
            "port {port} (nginx, the site's HTTP port) is already in use"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("spec.embedded.httpPort") && msg.contains("--http-port"),
        "{msg}"
    );
    assert!(!dir.path().join("state").exists());
}

#[test]
fn foreign_state_directories_are_refused_and_untouched() {
    let cases = [
        ("{\"format\":1,\"createdBy\":\"0.1.0\",\"cluster\":\"shop\",\"databaseInstances\":3,\"primary\":0,\"done\":[]}", "belongs to cluster \"shop\", but the spec names \"blog\""),
        ("{\"format\":99,\"createdBy\":\"9.0.0\",\"cluster\":\"blog\",\"databaseInstances\":3,\"primary\":0,\"done\":[]}", "newer than this hapress"),
        ("this is not json", "state.json is unreadable"),
    ];
    for (state_json, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("db-0/data")).unwrap();
        std::fs::write(state.join("state.json"), state_json).unwrap();
        std::fs::write(state.join("db-0/data/ibdata1"), b"precious").unwrap();
        let before = snapshot(&state);
        let msg = up_fails(
            dir.path(),
            &format!("{HEADER}metadata: {{name: blog}}\n"),
            &[],
            &[],
        );
        assert!(msg.contains(expected), "{msg}");
        assert_eq!(snapshot(&state), before, "state directory changed");
    }
    // A directory hapress did not make.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("notes.txt"), b"mine").unwrap();
    let msg = up_fails(
        dir.path(),
        &format!("{HEADER}metadata: {{name: blog}}\n"),
        &[],
        &[],
    );
    assert!(msg.contains("has no state.json"), "{msg}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
}

#[test]
fn status_and_down_on_an_empty_directory_explain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&["status", "--state-dir", d]);
    assert!(
        !out.status.success() && text(&out).contains("start one with `hapress up`"),
        "{}",
        text(&out)
    );
    let out = run(&["down", "--state-dir", d]);
    assert!(
        !out.status.success() && text(&out).contains("holds no hapress cluster"),
        "{}",
        text(&out)
    );
}

#[test]
fn interrupted_up_is_completed_by_the_next_up() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("hapress.yaml");
    std::fs::write(&spec, format!("{HEADER}metadata: {{name: resume}}\nspec:\n  site: {{title: Resumed Site}}\n  web: {{replicas: 2, phpWorkers: 2}}\n")).unwrap();
    let state = dir.path().join("state");
    let ports = free_ports(5);
    let args = |detach: bool| {
        let mut v = vec![
            "up".to_string(),
            "-f".into(),
            spec.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--http-port".into(),
            ports.to_string(),
            "--database-port".into(),
            (ports + 1).to_string(),
        ];
        if detach {
            v.push("--detach".into());
        }
        v
    };
    // Kill -9 the supervisor at two points of the first start, each right after a step it
    // reported finished: while the database servers start (after their data directories were
    // made), then while the SQL router starts (after replication was set up).
    for after_step in ["[ 3/", "[ 5/"] {
        let mut child = hapress()
            .args(args(false))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("up.err")).unwrap())
            .spawn()
            .unwrap();
        let mut seen = Vec::new();
        for l in std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap())) {
            let Ok(l) = l else { break };
            let reached = l.contains(after_step);
            seen.push(l);
            if reached {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            seen.last().is_some_and(|l| l.contains(after_step)),
            "up never reported step {after_step}:\n{}\n{}\n{}",
            seen.join("\n"),
            std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default(),
            logs_tail(&state.join("logs"))
        );
    }
    // It was interrupted before it finished: the site is not installed yet.
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap();
    assert!(
        recorded.contains("\"replication\"") && !recorded.contains("site-installed"),
        "{recorded}"
    );
    let out = hapress()
        .args(args(true))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        out.status.success(),
        "{t}\n{}",
        logs_tail(&state.join("logs"))
    );
    let (code, body) = http(ports, "GET", "/", None, "");
    assert_eq!(code, 200);
    assert!(body.contains("Resumed Site"));
    let down = run(&["down", "--state-dir", state.to_str().unwrap()]);
    assert!(down.status.success(), "{}", text(&down));
    // Nothing left listening on the database port.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", ports + 1)).is_ok(),
        "db-0 still running after down"
    );
}

/// The last lines of every log under `dir`, for a failure message.
fn logs_tail(dir: &Path) -> String {
    let mut out = String::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("== {}\n", p.display()));
        for l in &lines[lines.len().saturating_sub(15)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}
