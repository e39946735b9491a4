//! The scripts the rendered Kubernetes database pods run, run for real here: the agent's role
//! watcher (`role.sh`) against a real MariaDB server, and the `label` sidecar (`label.sh`)
//! with a recording stand-in for `kubectl` (there is no API server on this machine).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/src/scripts");

/// A MariaDB server of the test's own; killed on drop.
struct Server {
    child: Child,
    socket: PathBuf,
}

/// Options of a server that serves no TCP, writes no binary log and starts read-only.
const QUIET: &[&str] = &["--skip-networking", "--read-only", "--skip-log-bin"];

impl Server {
    /// A server on a unix socket in `dir` (no TCP).
    fn start(dir: &Path) -> Server {
        Server::start_with(&dir.join("mysql-data"), dir, "mysql", QUIET)
    }

    /// A new server with data directory `data` (created and initialised unless it has a
    /// `mysql` schema already), its socket and pid file in `dir` named after `name`, and
    /// `options`.
    fn start_with(data: &Path, dir: &Path, name: &str, options: &[&str]) -> Server {
        let socket = dir.join(format!("{name}.sock"));
        let root = nix::unistd::geteuid().is_root();
        if !data.join("mysql").is_dir() {
            let mut install = Command::new("mariadb-install-db");
            install
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg("--auth-root-authentication-method=socket")
                .arg("--skip-test-db");
            if root {
                install.arg("--user=root");
            }
            // Two installs at once fail ("Installation of system tables failed") although
            // their directories differ: one at a time.
            static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let out = {
                let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
                install
                    .output()
                    .expect("mariadb-install-db (mariadb-server)")
            };
            assert!(out.status.success(), "{}", text(&out));
        }
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                dir.join(format!("{name}.pid")).display()
            ))
            .arg(format!("--tmpdir={}", dir.display()))
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if root {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("mariadbd");
        let s = Server { child, socket };
        assert!(
            wait_for(Duration::from_secs(30), || s.sql("SELECT 1").is_ok()).is_some(),
            "mariadbd did not start"
        );
        s
    }

    /// A client option file in `dir` that logs in to it as root (as a pod's client.cnf).
    fn root_cnf(&self, dir: &Path) -> PathBuf {
        let cnf = dir.join("client.cnf");
        let text = format!(
            "[client]\nuser = root\nsocket = {}\n",
            self.socket.display()
        );
        std::fs::write(&cnf, text).unwrap();
        cnf
    }

    fn sql(&self, q: &str) -> Result<String, String> {
        let socket = format!("--socket={}", self.socket.display());
        mariadb(&["--no-defaults", "-uroot", &socket], q)
    }
}

/// Runs `q` with the `mariadb` client and `options`: its output, or its error.
fn mariadb(options: &[&str], q: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args(options)
        .args(["-N", "-B", "-e", q])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(text(&out))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, passed or not (the scripts loop forever).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A script of `crates/k8s/src/scripts` started with `env`, output to `log`.
fn script(name: &str, env: &[(&str, String)], log: &Path) -> Killed {
    let out = std::fs::File::create(log).unwrap();
    Command::new("bash")
        .arg(format!("{SCRIPTS}/{name}"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .map(Killed)
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn the_role_label_follows_the_server_through_a_promotion_a_fence_and_an_api_outage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(d);
    let (run, data, bin) = (d.join("run"), d.join("data"), d.join("bin"));
    for p in [&run, &data, &bin] {
        std::fs::create_dir(p).unwrap();
    }
    let cnf = server.root_cnf(d);
    // `kubectl`: records its arguments; fails while `kubectl-down` exists (the API server
    // unreachable).
    let kubectl = bin.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/bash\n[[ -e {down} ]] && {{ echo 'connection refused' >&2; exit 1; }}\necho \"$*\" >> {log}\n",
            down = d.join("kubectl-down").display(),
            log = d.join("kubectl.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The agent's backup server, whose life bounds the watcher's.
    let mut backup = Killed(Command::new("sleep").arg("600").spawn().unwrap());
    let mut watcher = script(
        "role.sh",
        &[
            ("HAPRESS_RUN", run.display().to_string()),
            ("HAPRESS_DATA", data.display().to_string()),
            ("HAPRESS_CLIENT_CNF", cnf.display().to_string()),
            ("ROLE_INTERVAL", "0.1".into()),
            ("WATCH_PID", backup.0.id().to_string()),
        ],
        &d.join("role.log"),
    );
    let _label = script(
        "label.sh",
        &[
            ("HAPRESS_RUN", run.display().to_string()),
            ("LABEL_INTERVAL", "0.1".into()),
            ("POD_NAME", "blog-db-1".into()),
            ("POD_NAMESPACE", "blog".into()),
            (
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            ),
        ],
        &d.join("label.log"),
    );
    let patch = |role: &str| {
        format!(
            "patch pod blog-db-1 --namespace=blog --type=merge --patch={{\"metadata\":{{\"labels\":{{\"hapress.dev/role\":\"{role}\"}}}}}}"
        )
    };
    let patches = || {
        read(&d.join("kubectl.log"))
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let settled = |role: &str, n: usize| {
        wait_for(Duration::from_secs(10), || {
            read(&run.join("role")).trim() == role
                && read(&data.join("hapress-role")).trim() == role
                && patches().len() == n
                && patches().last() == Some(&patch(role))
        })
        .is_some()
    };

    // Read-only: a replica, labelled once.
    assert!(
        settled("replica", 1),
        "{:?} {}",
        patches(),
        read(&d.join("role.log"))
    );
    // Promoted (the failover manager makes it writable): the primary, on disk and in the label.
    server.sql("SET GLOBAL read_only = 0").unwrap();
    assert!(settled("primary", 2), "{:?}", patches());
    // Fenced while the API server is unreachable: the role is published at once, the label
    // follows when the API server answers again.
    std::fs::write(d.join("kubectl-down"), "").unwrap();
    server.sql("SET GLOBAL read_only = 1").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || read(&run.join("role")).trim()
            == "replica")
        .is_some()
    );
    assert!(
        wait_for(Duration::from_secs(10), || read(&d.join("label.log"))
            .contains("connection refused"))
        .is_some(),
        "the label sidecar did not try"
    );
    assert_eq!(patches().len(), 2, "no API server, no patch");
    std::fs::remove_file(d.join("kubectl-down")).unwrap();
    assert!(settled("replica", 3), "{:?}", patches());

    // A server that stops answering (hung, restarting) keeps its published role: nothing is
    // patched while it is away, and the same role is not patched again when it is back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    // A whole round fails meanwhile: three clients seen one after another (the first may have
    // begun before the hang; the second began after it and had to give up, after its 2 s
    // timeout, for the third to start).
    let client = || {
        Command::new("pgrep")
            .arg("-f")
            .arg(format!("^mariadb --defaults-extra-file={}", cnf.display()))
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .ok()
            })
    };
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            seen.extend(client());
            seen.len() >= 3
        })
        .is_some(),
        "the watcher's clients while the server hangs: {seen:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.child.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    assert!(server.sql("SELECT 1").is_ok());
    assert_eq!(read(&run.join("role")).trim(), "replica");
    assert_eq!(patches().len(), 3, "{:?}", patches());

    // The watcher ends with the backup server (the container restarts).
    backup.0.kill().unwrap();
    backup.0.wait().unwrap();
    let mut status = None;
    assert!(wait_for(Duration::from_secs(10), || {
        status = watcher.0.try_wait().unwrap();
        status.is_some()
    })
    .is_some());
    assert_eq!(status.unwrap().code(), Some(1));
}

#[test]
fn the_agent_creates_the_routers_monitor_account_with_hapress_grants_and_follows_a_new_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(d);
    let (run, secrets, config, bin) = (
        d.join("run"),
        d.join("secrets"),
        d.join("config"),
        d.join("bin"),
    );
    for p in [&run, &secrets, &config, &bin] {
        std::fs::create_dir(p).unwrap();
    }
    let cnf = server.root_cnf(d);
    std::fs::write(run.join("role"), "primary\n").unwrap();
    // What the agent starts after the account: the backup server and the role watcher, here
    // stand-ins that only wait.
    for stub in [bin.join("socat"), config.join("role.sh")] {
        std::fs::write(&stub, "#!/bin/bash\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let user = hapress_contract::accounts::MONITOR_USER;
    let env = || {
        vec![
            ("HAPRESS_RUN", run.display().to_string()),
            ("HAPRESS_CLIENT_CNF", cnf.display().to_string()),
            ("HAPRESS_SECRETS", secrets.display().to_string()),
            ("HAPRESS_CONFIG", config.display().to_string()),
            ("HAPRESS_DATA", d.display().to_string()),
            (
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            ),
            ("PRIMARY_HOST", "db-primary".into()),
            ("REPLICATION_USER", "replicator".into()),
            ("ROUTER_USER", user.into()),
            // As the render sets it (crates/k8s/src/database.rs).
            (
                "ROUTER_GRANTS",
                hapress_contract::accounts::MONITOR_GRANTS.join(";"),
            ),
        ]
    };
    // The monitor account, as the router logs in with it.
    let as_monitor = |password: &str, q: &str| -> Result<String, String> {
        let own = d.join("monitor.cnf");
        std::fs::write(
            &own,
            format!(
                "[client]\nuser = {user}\npassword = {password}\nsocket = {}\n",
                server.socket.display()
            ),
        )
        .unwrap();
        mariadb(&[&format!("--defaults-file={}", own.display())], q)
    };
    for (round, password) in [(1, "first-secret"), (2, "rotated-secret")] {
        std::fs::write(secrets.join("router-password"), password).unwrap();
        let log = d.join(format!("agent-{round}.log"));
        let agent = script("agent.sh", &env(), &log);
        assert!(
            wait_for(Duration::from_secs(30), || read(&log)
                .contains(&format!("monitor account {user} is current")))
            .is_some(),
            "round {round}: {}",
            read(&log)
        );
        // What the failover manager and the prober do with it, each needing one of the grants.
        for q in [
            "SHOW SLAVE STATUS",
            "SELECT COUNT(*) > 0 FROM mysql.global_priv",
            "SET GLOBAL read_only = 1",
            "SHOW BINLOG STATUS",
        ] {
            if let Err(e) = as_monitor(password, q) {
                panic!("round {round}: {q}: {e}");
            }
        }
        // Exactly the grants hapress defines, nothing more: no write to a table.
        assert!(as_monitor(password, "CREATE DATABASE nope").is_err());
        assert!(
            read(&log).lines().all(|l| !l.contains(password)),
            "password in the log"
        );
        drop(agent);
    }
    // The first password no longer works: ALTER USER took the rotated one.
    assert!(as_monitor("first-secret", "SELECT 1").is_err());
    let grants = server
        .sql(&format!("SHOW GRANTS FOR '{user}'@'%'"))
        .unwrap();
    assert!(
        grants.contains("mysql`.`global_priv") || grants.contains("mysql.global_priv"),
        "{grants}"
    );
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The entries of `dir` whose name starts with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_diverged_replica_is_rebuilt_from_a_peer_and_its_old_data_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, r, bin) = (d.join("p"), d.join("r"), d.join("bin"));
    for x in [&p, &r, &bin, &p.join("run"), &r.join("run")] {
        std::fs::create_dir_all(x).unwrap();
    }
    // A primary and a replica over TCP, GTID replication, both with binary logs.
    let (pport, rport) = (free_port(), free_port());
    let net = |id: u32, port: u16| {
        vec![
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--server-id={id}"),
            "--log-bin=binlog".to_string(),
            "--log-slave-updates".to_string(),
            // A TCP client is its address (root@127.0.0.1 below), not `localhost`.
            "--skip-name-resolve".to_string(),
        ]
    };
    let (popts, ropts) = (net(1, pport), net(2, rport));
    let primary = Server::start_with(&p.join("data"), &p, "db", &strs(&popts));
    let replica = Server::start_with(&r.join("data"), &r, "db", &strs(&ropts));
    primary
        .sql("CREATE USER repl@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE ON *.* TO repl@'%'; CREATE USER root@'127.0.0.1' IDENTIFIED BY 'rootpw'; GRANT ALL ON *.* TO root@'127.0.0.1'; CREATE DATABASE site; CREATE TABLE site.t (id INT PRIMARY KEY); INSERT INTO site.t VALUES (1)")
        .unwrap();
    replica
        .sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={pport}, MASTER_USER='repl', MASTER_PASSWORD='pw', MASTER_USE_GTID=slave_pos; START SLAVE; SET GLOBAL read_only = 1"
        ))
        .unwrap();
    let replicated = |s: &Server| s.sql("SELECT COUNT(*) FROM site.t").ok();
    assert!(
        wait_for(Duration::from_secs(30), || replicated(&replica).as_deref()
            == Some("1"))
        .is_some()
    );

    // Each server's role watcher, as the agent runs it (fast rounds for the test).
    let watcher = |side: &Path, server: &Server| {
        let cnf = server.root_cnf(side);
        let env = [
            ("HAPRESS_RUN", side.join("run").display().to_string()),
            ("HAPRESS_DATA", side.display().to_string()),
            ("HAPRESS_CLIENT_CNF", cnf.display().to_string()),
            ("ROLE_INTERVAL", "0.2".to_string()),
            ("DIVERGED_CHECKS", "3".to_string()),
        ];
        script("role.sh", &env, &side.join("role.log"))
    };
    let _pw = watcher(&p, &primary);
    let _rw = watcher(&r, &replica);
    assert!(
        wait_for(Duration::from_secs(10), || read(&r.join("run/role")).trim()
            == "replica")
        .is_some()
    );
    assert!(
        wait_for(Duration::from_secs(10), || read(&p.join("run/role")).trim()
            == "primary")
        .is_some()
    );
    // Healthy: a write replicates and nobody asks for a rebuild.
    primary.sql("INSERT INTO site.t VALUES (2)").unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || replicated(&replica).as_deref()
            == Some("2"))
        .is_some()
    );
    assert!(
        !r.join("hapress-rebuild").exists(),
        "{}",
        read(&r.join("role.log"))
    );

    // An errant transaction on the replica (an old primary's write no replica received), then
    // rejoined at its own binlog position as the failover manager rejoins a server: the
    // primary lacks that GTID, so the replica's IO thread stops with 1236.
    replica
        .sql("STOP SLAVE; SET GLOBAL read_only = 0; CREATE DATABASE errant; SET GLOBAL read_only = 1; SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos; START SLAVE")
        .unwrap();
    // (The watcher publishes the request next to the data, then for the sidecar: both.)
    assert!(
        wait_for(Duration::from_secs(30), || r
            .join("hapress-rebuild")
            .exists()
            && r.join("run/rebuild").exists())
        .is_some(),
        "no rebuild asked: {}",
        read(&r.join("role.log"))
    );
    let why = read(&r.join("hapress-rebuild"));
    assert!(why.contains("1236"), "{why}");
    assert_eq!(read(&r.join("run/rebuild")), why);

    // The label sidecar evicts the pod, once (a stand-in kubectl records what it is asked).
    let kubectl = bin.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/bash\necho \"$*\" >> {}\n[[ $1 == create ]] && cat >> {}\nexit 0\n",
            d.join("kubectl.log").display(),
            d.join("eviction.json").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let label_env = [
        ("HAPRESS_RUN", r.join("run").display().to_string()),
        ("LABEL_INTERVAL", "0.2".to_string()),
        ("POD_NAME", "site-db-1".to_string()),
        ("POD_NAMESPACE", "web".to_string()),
        (
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        ),
    ];
    let label = script("label.sh", &label_env, &d.join("label.log"));
    let evictions = || {
        read(&d.join("kubectl.log"))
            .lines()
            .filter(|l| l.starts_with("create --raw"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(wait_for(Duration::from_secs(10), || !evictions().is_empty()).is_some());
    // Two more rounds of the sidecar (each role change is patched in a later round): no
    // second eviction.
    let patches = |role: &str| read(&d.join("kubectl.log")).matches(role).count();
    std::fs::write(r.join("run/role"), "primary\n").unwrap();
    assert!(wait_for(Duration::from_secs(10), || patches("\"primary\"") == 1).is_some());
    std::fs::write(r.join("run/role"), "replica\n").unwrap();
    assert!(wait_for(Duration::from_secs(10), || patches("\"replica\"") == 2).is_some());
    assert_eq!(
        evictions(),
        ["create --raw /api/v1/namespaces/web/pods/site-db-1/eviction -f -"]
    );
    let eviction = read(&d.join("eviction.json"));
    assert!(
        eviction.contains("\"kind\":\"Eviction\"") && eviction.contains("\"name\":\"site-db-1\""),
        "{eviction}"
    );
    drop(label);

    // Repaired by hand before the pod restarted: the request is withdrawn. Broken again: asked
    // again.
    let primary_pos = primary.sql("SELECT @@gtid_binlog_pos").unwrap();
    replica
        .sql(&format!(
            "STOP SLAVE; SET GLOBAL gtid_slave_pos = '{primary_pos}'; START SLAVE"
        ))
        .unwrap();
    // (The watcher deletes both files, then logs it.)
    assert!(
        wait_for(Duration::from_secs(30), || !r
            .join("hapress-rebuild")
            .exists()
            && !r.join("run/rebuild").exists()
            && read(&r.join("role.log")).contains("withdrawn"))
        .is_some(),
        "{}",
        read(&r.join("role.log"))
    );
    replica
        .sql("STOP SLAVE; SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos; START SLAVE")
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || r
        .join("hapress-rebuild")
        .exists())
    .is_some());

    // The pod starts again: the server is gone, `clone` copies the primary through the
    // agent's backup server and keeps the diverged data directory aside.
    drop(_rw);
    drop(replica);
    let pcnf = primary.root_cnf(&p);
    let bport = free_port();
    let backup = Command::new("socat")
        .arg(format!("TCP-LISTEN:{bport},bind=127.0.0.1,reuseaddr,fork"))
        .arg(format!(
            "SYSTEM:mariadb-backup --defaults-extra-file={} --backup --stream=mbstream --target-dir={} --slave-info",
            pcnf.display(),
            d.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Killed)
        .expect("socat");
    assert!(
        wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            bport
        ))
        .is_ok())
        .is_some()
    );
    let secrets = d.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("root-password"), "rootpw").unwrap();
    let clone = |sql_port: u16| {
        Command::new("bash")
            .arg(format!("{SCRIPTS}/clone.sh"))
            .envs([
                ("HAPRESS_DATA", r.display().to_string()),
                ("HAPRESS_RUN", r.join("run").display().to_string()),
                ("HAPRESS_SECRETS", secrets.display().to_string()),
                ("CLONE_PEERS", "127.0.0.1".to_string()),
                ("CLONE_SQL_PORT", sql_port.to_string()),
                ("CLONE_BACKUP_PORT", bport.to_string()),
            ])
            .output()
            .unwrap()
    };
    // No peer answers as the primary (nothing listens there): the data stays as it is, and the
    // request is kept for a person.
    let out = clone(free_port());
    assert!(out.status.success(), "{}", text(&out));
    assert!(r.join("data/errant").is_dir(), "{}", text(&out));
    let kept_request = entries(&r, "hapress-rebuild.kept-");
    assert_eq!(kept_request.len(), 1, "{}", text(&out));
    std::fs::rename(&kept_request[0], r.join("hapress-rebuild")).unwrap();
    // With the primary answering: the primary itself is the donor (the only peer).
    let out = clone(pport);
    assert!(out.status.success(), "{}", text(&out));
    drop(backup);
    let kept = entries(&r, "diverged-");
    assert_eq!(kept.len(), 1, "{}", text(&out));
    assert!(
        kept[0].join("errant").is_dir(),
        "the diverged data is kept as it was"
    );
    assert!(read(&kept[0].join("hapress-why")).contains("1236"));
    assert!(!r.join("hapress-rebuild").exists(), "asked once, done");
    assert!(!r.join("data/errant").exists());
    let gtid = read(&r.join("hapress-clone-gtid"));
    assert!(gtid.trim().starts_with("0-1-"), "{gtid}");
    // The copy is a working server with the primary's data and without the errant schema.
    let rebuilt = Server::start_with(&r.join("data"), &r, "rebuilt", QUIET);
    assert_eq!(rebuilt.sql("SELECT COUNT(*) FROM site.t").unwrap(), "2");
    assert_eq!(rebuilt.sql("SHOW DATABASES LIKE 'errant'").unwrap(), "");
}
