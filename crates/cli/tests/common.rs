//! Helpers for tests that drive the real `hapress` binary against real MariaDB, php-fpm and
//! nginx processes on loopback.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn hapress() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hapress"))
}

pub fn run(args: &[&str]) -> Output {
    hapress()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hapress")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Port ranges [`free_ports`] has handed out in this process: (first, count).
static HANDED_OUT: std::sync::Mutex<Vec<(u16, u16)>> = std::sync::Mutex::new(Vec::new());

/// `n` consecutive free TCP ports (probed by binding), below the kernel's ephemeral range: a
/// port there can be held by a client connection's TIME_WAIT (tens of thousands after a
/// benchmark), which no server can bind until it expires.
pub fn free_ports(n: u16) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u32, low.saturating_sub(u32::from(n)).max(10_001));
    // Spread concurrent test processes: a seed from the clock and the process id.
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    'outer: for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = (from + (x % u64::from(to - from)) as u32) as u16;
        // Never the same port twice in this process: tests run in parallel threads, and one
        // may not have bound its ports yet when another probes.
        let mut given = HANDED_OUT.lock().unwrap();
        if given.iter().any(|&(b, m)| base < b + m && b < base + n) {
            continue;
        }
        for p in base..base + n {
            if TcpListener::bind(("127.0.0.1", p)).is_err() {
                continue 'outer;
            }
        }
        given.push((base, n));
        return base;
    }
    panic!("no {n} free consecutive ports in {from}..{to}");
}

/// A cluster started with `up --detach` in a temp state dir; stopped on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub db_port: u16,
    pub spec: PathBuf,
}

impl Cluster {
    pub fn state_dir(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    /// Writes a spec and brings the cluster up detached.
    pub fn up(spec_body: &str) -> (Cluster, String) {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(5);
        let spec = dir.path().join("hapress.yaml");
        std::fs::write(&spec, spec_body).unwrap();
        let c = Cluster {
            dir,
            http_port: ports,
            db_port: ports + 1,
            spec,
        };
        let out = c.start();
        (c, out)
    }

    pub fn start(&self) -> String {
        let out = run(&[
            "up",
            "--detach",
            "-f",
            self.spec.to_str().unwrap(),
            "--state-dir",
            &self.state_dir(),
            "--http-port",
            &self.http_port.to_string(),
            "--database-port",
            &self.db_port.to_string(),
        ]);
        let t = text(&out);
        assert!(out.status.success(), "up failed:\n{t}\n{}", self.logs());
        t
    }

    pub fn down(&self) -> String {
        let out = run(&["down", "--state-dir", &self.state_dir()]);
        assert!(out.status.success(), "down failed: {}", text(&out));
        text(&out)
    }

    pub fn status(&self) -> serde_json::Value {
        let out = run(&["status", "--json", "--state-dir", &self.state_dir()]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn component(&self, name: &str) -> serde_json::Value {
        self.status()["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    }

    pub fn logs(&self) -> String {
        let p = Path::new(&self.state_dir()).join("logs/supervisor.log");
        std::fs::read_to_string(p).unwrap_or_default()
    }

    pub fn socket(&self, db: u32) -> String {
        format!("{}/run/db-{db}.sock", self.state_dir())
    }

    /// The pid `hapress status` shows for component `name`.
    pub fn pid_of(&self, name: &str) -> i64 {
        self.component(name)["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} has no pid: {}", self.status()))
    }

    /// SQL as root over a server's unix socket (tab-separated, no headers).
    pub fn sql(&self, db: u32, q: &str) -> String {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "-uroot",
                "-N",
                "-B",
                &format!("--socket={}", self.socket(db)),
                "-e",
                q,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sql on db-{db} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs PHP inside the site with WordPress loaded (as root, like `wp-cli` would);
    /// returns its output.
    pub fn site_php(&self, code: &str) -> String {
        let script = self.dir.path().join("snippet.php");
        std::fs::write(
            &script,
            format!(
                "<?php\n$_SERVER['HTTP_HOST'] = '127.0.0.1:{}';\nrequire 'wp-load.php';\n{code}\n",
                self.http_port
            ),
        )
        .unwrap();
        let out = Command::new("php")
            .arg(&script)
            .current_dir(format!("{}/site", self.state_dir()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A new application password of the administrator (for the REST API).
    pub fn application_password(&self) -> String {
        self.site_php(
            "$u = get_user_by('login', 'admin');\nlist($pw) = WP_Application_Passwords::create_new_application_password($u->ID, array('name' => 'hapress-test-' . mt_rand()));\necho $pw;",
        )
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.http_port, "GET", path, None, "")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(&["down", "--state-dir", &self.state_dir()]);
    }
}

/// One HTTP request on loopback (basic auth and a JSON body when given); returns status and
/// body.
pub fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let auth = auth.map(|a| format!("Basic {}", base64(a.as_bytes())));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let a = req(port, method, path, &headers, body);
    (a.code, a.body)
}

/// One HTTP/1.0 request (so the body is never chunked); returns the status, the response head
/// and the body.
pub fn req(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let t = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = t.split_once("\r\n\r\n").unwrap_or((&t, ""));
    Answer {
        code: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The `X-Cache` header (`HIT`, `MISS`, `BYPASS`, ...), empty when absent.
    pub fn cache(&self) -> String {
        self.header("x-cache")
    }

    pub fn header(&self, name: &str) -> String {
        self.head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    }

    /// `name=value` of every cookie the response sets.
    pub fn cookies(&self) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("set-cookie")
                    .then(|| v.trim().split(';').next().unwrap_or("").to_string())
            })
            .collect()
    }
}

pub fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Polls `f` until it returns true or `timeout` passes; returns the time it took.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// GETs `path` as a visitor until the page cache on `port` serves it.
pub fn cached(port: u16, path: &str) -> Answer {
    let mut last = None;
    let hit = wait_for(Duration::from_secs(10), || {
        let a = req(port, "GET", path, &[], "");
        let hit = a.cache() == "HIT";
        last = Some(a);
        hit
    });
    let last = last.unwrap();
    assert!(
        hit.is_some(),
        "{path} never came from the cache: {}",
        last.head
    );
    last
}

/// A REST call on `port` as the administrator (`auth`: an `Authorization` value); returns
/// the JSON answer.
pub fn rest(port: u16, auth: &str, method: &str, route: &str, body: &str) -> serde_json::Value {
    let a = req(
        port,
        method,
        &format!("/?rest_route={route}"),
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert!(a.code / 100 == 2, "{method} {route}: {} {}", a.head, a.body);
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{route}: {e}: {}", a.body))
}

/// Publishes a post titled `title` through `port` as the administrator.
pub fn publish(port: u16, auth: &str, title: &str) {
    rest(
        port,
        auth,
        "POST",
        "/wp/v2/posts",
        &format!("{{\"title\":\"{title}\",\"content\":\"x\",\"status\":\"publish\"}}"),
    );
}

/// What visitors saw in [`visitors_during`].
#[derive(Debug, Default)]
pub struct Visits {
    /// Answers to requests sent after the change returned.
    pub after: usize,
    /// Of those, pages without the change (old copies).
    pub stale: usize,
    /// Of those, answered from a cache (`X-Cache: HIT`).
    pub hits: usize,
}

/// One visitor per entry of `ports` loads `/` over and over while `change` runs and for a
/// while after it returned (until 2,000 answers came after it, or 20 s); every answer must
/// be a 200. Counts the answers to requests sent after `change` returned that lack `marker`.
pub fn visitors_during(ports: &[u16], marker: &str, change: impl FnOnce()) -> Visits {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let changed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    // Answers so far, and answers to requests sent after the change returned.
    let counted = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let visitors: Vec<_> = ports
        .iter()
        .map(|&port| {
            let (changed_at, stop, marker) = (changed_at.clone(), stop.clone(), marker.to_string());
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut v = Visits::default();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let a = req(port, "GET", "/", &[], "");
                    assert_eq!(a.code, 200, "{}", a.head);
                    counted.0.fetch_add(1, Ordering::Relaxed);
                    let changed = *changed_at.lock().unwrap();
                    if changed.is_some_and(|t| sent > t) {
                        counted.1.fetch_add(1, Ordering::Relaxed);
                        v.after += 1;
                        v.hits += usize::from(a.cache() == "HIT");
                        v.stale += usize::from(!a.body.contains(&marker));
                    }
                }
                v
            })
        })
        .collect();
    let busy = wait_for(Duration::from_secs(10), || {
        counted.0.load(Ordering::Relaxed) >= 100
    });
    assert!(busy.is_some(), "the visitors are not loading pages");
    change();
    *changed_at.lock().unwrap() = Some(Instant::now());
    wait_for(Duration::from_secs(20), || {
        counted.1.load(Ordering::Relaxed) >= 2_000
    });
    stop.store(true, Ordering::Relaxed);
    let mut total = Visits::default();
    for v in visitors {
        let v = v.join().unwrap();
        total.after += v.after;
        total.stale += v.stale;
        total.hits += v.hits;
    }
    total
}
