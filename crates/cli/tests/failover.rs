//! Automatic failover with real MariaDB servers: the `hapress chaos` drill (every fault, nothing
//! lost, duplicated or diverged), and several routers on one cluster of which exactly one acts,
//! also after the acting one dies.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

fn spec(name: &str) -> String {
    format!(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata:\n  name: {name}\nspec:\n  site:\n    environment: local\n  web:\n    replicas: 1\n    phpWorkers: 2\n  database:\n    instances: 3\n"
    )
}

/// `hapress chaos` on the cluster; its output, asserting it passed.
fn chaos(c: &Cluster, fault: &str, rounds: u32) -> String {
    let out = hapress()
        .args([
            "chaos",
            "--state-dir",
            &c.state_dir(),
            "--fault",
            fault,
            "--rounds",
            &rounds.to_string(),
            "--writers",
            "3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        out.status.success(),
        "chaos --fault {fault} failed:\n{t}\n{}",
        router_log(c)
    );
    t
}

/// The name of the server `hapress status` shows as the primary ("" when none).
fn primary_name(c: &Cluster) -> String {
    c.status()["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"] == "primary")
        .and_then(|x| x["name"].as_str().map(String::from))
        .unwrap_or_default()
}

fn router_log(c: &Cluster) -> String {
    std::fs::read_to_string(format!("{}/logs/router.log", c.state_dir())).unwrap_or_default()
}

#[test]
fn every_fault_loses_nothing_and_the_cluster_heals() {
    let (c, _) = Cluster::up(&spec("drill"));
    // kill, hang, lag, load, wipe: one round each.
    let out = chaos(&c, "all", 5);
    assert!(
        out.contains("5 rounds:")
            && out.contains(" 0 lost, 0 duplicated, 0 diverged servers, 0 rounds did not recover"),
        "{out}"
    );
    for fault in ["kill", "hang", "lag", "load", "wipe"] {
        assert!(
            out.contains(&format!("  {fault:<5}  ")),
            "no {fault} round:\n{out}"
        );
    }
    // Every server replicates from one primary and has the same data.
    let st = c.status();
    let roles: Vec<&str> = st["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "database")
        .map(|x| x["replication"]["role"].as_str().unwrap_or("down"))
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "primary").count(), 1, "{st}");
    assert_eq!(roles.iter().filter(|r| **r == "replica").count(), 2, "{st}");
    let sums: Vec<String> = (0..3)
        .map(|i| {
            c.sql(
                i,
                "SELECT @@gtid_current_pos; CHECKSUM TABLE wordpress.wp_options",
            )
        })
        .collect();
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");
    // The wiped server's data was rebuilt from a copy; a diverged one would be kept aside and
    // reported, and `status` shows the history.
    let table = text(&run(&["status", "--state-dir", &c.state_dir()]));
    assert!(
        table.contains("failovers:") && table.contains("detected in"),
        "{table}"
    );
    let events = std::fs::read_to_string(format!("{}/logs/events.log", c.state_dir())).unwrap();
    assert!(events.contains("rebuilt from db-"), "{events}");
}

/// A router of the cluster run by hand beside the embedded one (same servers and accounts).
fn extra_router(c: &Cluster, n: u32) -> (Child, String) {
    let dir = c.dir.path().join(format!("router-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let status = dir.join("status.sock").display().to_string();
    let mut config =
        hapress_contract::config::Config::load(&c.dir.path().join("state/router.yaml")).unwrap();
    config.listen = dir.join("router.sock").display().to_string();
    config.status_listen = Some(status.clone());
    config.also_listen.clear();
    let config = config.to_yaml("an extra router of the test");
    let file = dir.join("router.yaml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.join("router.log")).unwrap();
    let child = hapress()
        .args(["router", "--config", file.to_str().unwrap()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    (child, status)
}

/// `/status` of the router whose status socket is `sock`.
fn router_status(sock: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    serde_json::from_str(r.split("\r\n\r\n").nth(1)?).ok()
}

/// How many of the routers act, and the failovers they performed in all.
fn leaders_and_failovers(socks: &[String]) -> (usize, usize) {
    let st: Vec<serde_json::Value> = socks.iter().filter_map(|s| router_status(s)).collect();
    (
        st.iter().filter(|s| s["manager"]["leader"] == true).count(),
        st.iter()
            .map(|s| s["manager"]["failovers"].as_array().map_or(0, Vec::len))
            .sum(),
    )
}

#[test]
fn three_routers_one_acts_and_each_failure_is_promoted_once() {
    let (c, _) = Cluster::up(&spec("trio"));
    let embedded = format!("{}/run/router-http.sock", c.state_dir());
    let (mut r1, s1) = extra_router(&c, 1);
    let (mut r2, s2) = extra_router(&c, 2);
    let socks = vec![embedded.clone(), s1.clone(), s2.clone()];
    // Exactly one of the three holds a majority of the locks.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let up = socks.iter().filter(|s| router_status(s).is_some()).count();
            up == 3 && leaders_and_failovers(&socks).0 == 1
        })
        .is_some(),
        "not exactly one leader: {:?}",
        socks.iter().map(|s| router_status(s)).collect::<Vec<_>>()
    );
    let rounds = 3;
    chaos(&c, "kill", rounds);
    let (leaders, failovers) = leaders_and_failovers(&socks);
    assert_eq!(leaders, 1);
    assert_eq!(failovers, rounds as usize, "one promotion per failure");
    // The acting router dies: another takes over (its locks go with its connections), and
    // the next failure is promoted once.
    let leader = socks
        .iter()
        .position(|s| router_status(s).is_some_and(|st| st["manager"]["leader"] == true))
        .unwrap();
    let survivors: Vec<String> = match leader {
        0 => {
            // The embedded router: the supervisor restarts it (with no history of its own).
            let pid: i32 = std::fs::read_to_string(format!("{}/run/router.pgid", c.state_dir()))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            vec![s1.clone(), s2.clone(), embedded.clone()]
        }
        1 => {
            r1.kill().unwrap();
            vec![embedded.clone(), s2.clone()]
        }
        _ => {
            r2.kill().unwrap();
            vec![embedded.clone(), s1.clone()]
        }
    };
    let before = leaders_and_failovers(&survivors).1;
    assert!(
        wait_for(Duration::from_secs(20), || leaders_and_failovers(
            &survivors
        )
        .0 == 1)
        .is_some(),
        "no new leader after the leader died"
    );
    chaos(&c, "kill", 1);
    assert_eq!(leaders_and_failovers(&survivors), (1, before + 1));
    let _ = r1.kill();
    let _ = r2.kill();
    let _ = r1.wait();
    let _ = r2.wait();
}

#[test]
fn switchover_moves_the_primary_and_says_what_it_did() {
    let (c, _) = Cluster::up(&spec("switch"));
    let st = primary_name;
    let before = st(&c);
    let to = if before == "db-2" { "db-1" } else { "db-2" };
    let out = run(&["switchover", "--state-dir", &c.state_dir(), "--to", to]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(was 127.0.0.1:") && text(&out).contains("held"),
        "{}",
        text(&out)
    );
    assert!(
        wait_for(Duration::from_secs(10), || st(&c) == to).is_some(),
        "{to} did not become the primary: {}",
        c.status()
    );
    // The old primary replicates from the new one; writes go there.
    let old: u32 = before.trim_start_matches("db-").parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || {
            c.sql(old, "SELECT @@read_only") == "1"
                && c.sql(old, "SHOW SLAVE STATUS").contains("Yes\tYes")
        })
        .is_some(),
        "{}",
        c.sql(old, "SHOW SLAVE STATUS")
    );
    // A server that is no replica of the primary is refused with the reason.
    let out = run(&["switchover", "--state-dir", &c.state_dir(), "--to", "db-7"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not a running replica"),
        "{}",
        text(&out)
    );
}

/// `spec.database.failover.preferredPrimary`: a new cluster starts with it as the primary, and
/// the primary returns there by a planned switchover once it is back and has caught up after a
/// failover took the primary elsewhere.
#[test]
fn the_primary_goes_to_the_preferred_server_and_returns_after_a_failover() {
    let body = spec("prefer") + "    failover: {preferredPrimary: 1}\n";
    let (c, _) = Cluster::up(&body);
    let primary = primary_name;
    assert_eq!(primary(&c), "db-1", "{}", c.status());
    // Lost (hung: a killed one may be restarted in place before anyone fails over): another
    // server takes over; the supervisor kills the hung db-1, which restarts, catches up and
    // gets the primary back.
    let pid = c.component("db-1")["pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    let away = wait_for(Duration::from_secs(20), || {
        let p = primary(&c);
        !p.is_empty() && p != "db-1"
    });
    assert!(away.is_some(), "no failover: {}", c.status());
    let back = wait_for(Duration::from_secs(60), || primary(&c) == "db-1");
    assert!(
        back.is_some(),
        "db-1 did not get the primary back: {}\n{}",
        c.status(),
        router_log(&c)
    );
    assert_eq!(c.sql(1, "SELECT @@read_only"), "0");
    assert!(router_log(&c).contains("is the preferred primary and has caught up"));
}

#[test]
fn chaos_explains_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["chaos", "--state-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no cluster runs in"), "{}", text(&out));
}

/// Sends `signal` (`SIGSTOP`, `SIGCONT`) to process `pid`.
fn signal(pid: i64, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Resumes a stopped process when dropped (a failed assertion never leaves it frozen).
struct Resume(i64);

impl Drop for Resume {
    fn drop(&mut self) {
        signal(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// The copy a rebuild makes (`mariadb-backup --stream` of a healthy server): it works from a
/// healthy server, is given up when its source hangs (its processes killed, so the next
/// attempt starts clean), and stops when the supervisor stops. The copy runs beside the
/// supervisor, which goes on supervising while it lasts.
#[test]
fn a_copy_from_a_hung_server_is_given_up() {
    use hapress_local::rebuild::clone_into;
    use nix::sys::signal::Signal::{SIGCONT, SIGSTOP};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    let (c, _) = Cluster::up(&spec("stall"));
    // The copy's target is a layout of its own whose db-2 socket is the cluster's db-2.
    let root = c.dir.path().join("copy");
    for d in ["run", "logs", "db-0/tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(c.socket(2), root.join("run/db-2.sock")).unwrap();
    let layout = hapress_local::layout::Layout::new(&root).unwrap();
    let tools = hapress_local::preflight::find_tools(false).unwrap();
    let never = AtomicBool::new(false);

    let (gtid, aside) = clone_into(&tools, &layout, 2, 0, &never, Duration::from_secs(60))
        .expect("a copy of a healthy server");
    assert!(gtid.starts_with("0-"), "{gtid}");
    assert!(layout.db_data(0).join("mysql").is_dir() && aside.is_none());

    // db-2 hangs: nothing comes from it; the copy is given up after the stall limit.
    let pid = c.pid_of("db-2");
    let _resume = Resume(pid);
    signal(pid, SIGSTOP);
    let t = Instant::now();
    let e = clone_into(&tools, &layout, 2, 0, &never, Duration::from_secs(3));
    let took = t.elapsed();
    let copies = std::process::Command::new("pgrep")
        .args(["-f", &format!("mariadb-backup.*{}", root.display())])
        .output()
        .unwrap();
    signal(pid, SIGCONT);
    let e = e.expect_err("a copy from a hung server").to_string();
    assert!(
        e.contains("the copy from db-2 made no progress for 3 s"),
        "{e}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(copies.stdout.is_empty(), "left running: {}", text(&copies));
    // The first copy was moved aside, never deleted.
    assert!(std::fs::read_dir(&root).unwrap().flatten().any(|e| e
        .file_name()
        .to_string_lossy()
        .starts_with("db-0.diverged-")));

    // Stopping: the copy ends as soon as the supervisor's flag is set.
    signal(pid, SIGSTOP);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        flag.store(true, Ordering::Relaxed);
    });
    let t = Instant::now();
    let e = clone_into(&tools, &layout, 2, 0, &stop, Duration::from_secs(600));
    let took = t.elapsed();
    signal(pid, SIGCONT);
    setter.join().unwrap();
    let e = e.expect_err("a stopped copy").to_string();
    assert!(e.contains("the copy was stopped"), "{e}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// Both replicas diverge at once (an SQL thread error on each): the supervisor rebuilds them
/// one after the other, so that one always acknowledges the primary's writes (semi-sync),
/// which go on meanwhile; in the end every server has every write.
#[test]
fn two_diverged_replicas_are_rebuilt_one_at_a_time() {
    let (c, _) = Cluster::up(&spec("twice"));
    c.sql(0, "CREATE TABLE wordpress.clash (a INT PRIMARY KEY)");
    let there = wait_for(Duration::from_secs(20), || {
        [1, 2].iter().all(|&db| {
            c.sql(
                db,
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'clash'",
            ) == "1"
        })
    });
    assert!(there.is_some(), "the replicas never got the table");
    // A row only the replicas have: the primary's own row 0 stops their SQL threads (1062).
    for db in [1, 2] {
        c.sql(
            db,
            "SET SESSION sql_log_bin = 0; INSERT INTO wordpress.clash VALUES (0)",
        );
    }
    c.sql(0, "INSERT INTO wordpress.clash VALUES (0)");
    let events = || {
        std::fs::read_to_string(format!("{}/logs/events.log", c.state_dir())).unwrap_or_default()
    };
    // A write to the primary, bounded (60 s: the hand-over between the two rebuilds, on a
    // loaded machine): one that waits for an acknowledgement nobody sends fails the test
    // instead of hanging it.
    let insert = |n: u32| {
        let out = std::process::Command::new("timeout")
            .args(["60", "mariadb", "--no-defaults", "-uroot"])
            .arg(format!("--socket={}", c.socket(0)))
            .args(["-e", &format!("INSERT INTO wordpress.clash VALUES ({n})")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "write {n} failed or waited 60 s: {}\n{}",
            text(&out),
            events()
        );
    };
    let mut n = 0;
    let rebuilt = wait_for(Duration::from_secs(300), || {
        n += 1;
        insert(n);
        events().matches("rebuilt from").count() >= 2
    });
    let log = events();
    assert!(rebuilt.is_some(), "{log}");
    let mut copying = 0;
    for line in log.lines() {
        if line.contains("rebuilding from a copy") {
            copying += 1;
            assert_eq!(copying, 1, "two copies at once:\n{log}");
        } else if line.contains("rebuilt from") || line.contains("rebuild failed") {
            copying -= 1;
        }
    }
    insert(n + 1);
    let count = c.sql(0, "SELECT COUNT(*) FROM wordpress.clash");
    assert_eq!(count, (n + 2).to_string());
    let same = wait_for(Duration::from_secs(30), || {
        [1, 2]
            .iter()
            .all(|&db| c.sql(db, "SELECT COUNT(*) FROM wordpress.clash") == count)
    });
    assert!(same.is_some(), "the rebuilt replicas miss writes:\n{log}");
}
