//! One supervised child process: spawn into its own process group, notice its death, restart it
//! with backoff, stop it gracefully. Killing the whole group matters for php-fpm, whose workers
//! outlive a `kill -9` of the master and keep serving from a stale socket.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{IoContext, Result};
use crate::layout::Layout;

/// What a component is; decides its stop signal and how its health is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A MariaDB server.
    Database,
    /// A php-fpm master and its workers.
    Web,
    /// nginx, the load balancer.
    Nginx,
    /// The hapress SQL router.
    Router,
    /// Redis, the object cache.
    Cache,
}

impl Kind {
    /// The signal that asks for a clean shutdown.
    fn stop_signal(self) -> Signal {
        match self {
            Kind::Database | Kind::Router | Kind::Cache => Signal::SIGTERM,
            // Graceful for both: finish in-flight requests, then exit.
            Kind::Web | Kind::Nginx => Signal::SIGQUIT,
        }
    }

    /// How long a clean shutdown may take before the group is killed. A database gets long:
    /// killing it is crash-safe but makes the next start do recovery.
    fn stop_timeout(self) -> Duration {
        match self {
            Kind::Database => Duration::from_secs(120),
            Kind::Web | Kind::Nginx | Kind::Router | Kind::Cache => Duration::from_secs(20),
        }
    }
}

/// The command line of a component (no secrets: they live in 0600 files).
#[derive(Debug, Clone)]
pub struct Launch {
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// File receiving stdout and stderr.
    pub log: PathBuf,
    /// Runs as this user and group (uid, gid) instead of the supervisor's, with no
    /// supplementary groups: for a component that does not drop privileges itself.
    pub run_as: Option<(u32, u32)>,
}

/// First restart delay; doubles up to [`MAX_BACKOFF`] while a component keeps dying.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Running this long counts as healthy again and resets the backoff: a crash loop dies within
/// a second or two of each start, while a database server killed by a failover drill every
/// few seconds must still come back at once (seen: 30 s restart delays with 30 s here).
const STABLE_AFTER: Duration = Duration::from_secs(5);

/// A supervised process.
#[derive(Debug)]
pub struct Process {
    /// Component name (`db-0`, `web-1`, `nginx`).
    pub name: String,
    /// Component kind.
    pub kind: Kind,
    /// How to start it.
    pub launch: Launch,
    child: Option<Child>,
    /// Times it was restarted after dying.
    pub restarts: u32,
    started: Option<Instant>,
    /// When a pending restart is due.
    pub restart_at: Option<Instant>,
    backoff: Duration,
    pid_file: PathBuf,
}

impl Process {
    /// A component that is not running yet.
    pub fn new(layout: &Layout, name: &str, kind: Kind, launch: Launch) -> Self {
        Self {
            name: name.into(),
            kind,
            launch,
            child: None,
            restarts: 0,
            started: None,
            restart_at: None,
            backoff: MIN_BACKOFF,
            pid_file: layout.pid_file(name),
        }
    }

    /// Pid of the running process (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process in a new process group, output appended to its log.
    pub fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.launch.log)
            .context(|| format!("opening {}", self.launch.log.display()))?;
        let err = log
            .try_clone()
            .context(|| "duplicating log handle".into())?;
        let mut cmd = Command::new(&self.launch.program);
        if let Some((uid, gid)) = self.launch.run_as {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .args(&self.launch.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Own group: Ctrl-C on the terminal reaches only hapress, which stops children in
            // order, and a dead php-fpm master's workers can be killed as one group.
            .process_group(0)
            .spawn()
            .context(|| format!("starting {} ({})", self.name, self.launch.program.display()))?;
        fs::write(&self.pid_file, format!("{}\n", child.id()))
            .context(|| format!("writing {}", self.pid_file.display()))?;
        self.child = Some(child);
        self.started = Some(Instant::now());
        self.restart_at = None;
        Ok(())
    }

    /// Whether the process is running (reaps it if it exited, without scheduling a restart).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Checks for death. On death kills the rest of the group, schedules a restart with backoff
    /// and returns the exit status.
    pub fn poll_exit(&mut self, now: Instant) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let pid = self.child.take().map(|c| c.id());
        if let Some(pid) = pid {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if self
            .started
            .is_some_and(|s| now.duration_since(s) > STABLE_AFTER)
        {
            self.backoff = MIN_BACKOFF;
        }
        self.restart_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Some(status)
    }

    /// Current restart delay (for event messages).
    pub fn pending_delay(&self, now: Instant) -> Duration {
        self.restart_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// Restarts if a restart is due. Returns true if it started.
    pub fn restart_if_due(&mut self, now: Instant) -> Result<bool> {
        if self.child.is_some() || self.restart_at.is_none_or(|t| t > now) {
            return Ok(false);
        }
        self.restarts += 1;
        self.spawn()?;
        Ok(true)
    }

    /// Kills the group at once (a hung server); the supervisor sees the death and restarts it
    /// without delay (a deliberate kill is no crash loop).
    pub fn kill(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.started = None;
        if let Some(pid) = self.pid() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Stops gracefully, then kills the group after the kind's timeout.
    pub fn stop(&mut self) {
        self.restart_at = None;
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = Pid::from_raw(child.id() as i32);
        let _ = killpg(pgid, self.kind.stop_signal());
        let deadline = Instant::now() + self.kind.stop_timeout();
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait();
        let _ = fs::remove_file(&self.pid_file);
    }
}

/// util-linux's tool to run a program with a parent-death signal (on every Debian system).
const SETPRIV: &str = "/usr/bin/setpriv";

/// A command for `program` that gets SIGKILL when the thread that started it ends, as when
/// the supervisor is killed (`setpriv --pdeathsig KILL`, a plain command where setpriv is
/// missing). For helpers that must not outlive hapress: the WordPress installer, a rebuild's
/// copy.
pub(crate) fn dies_with_starter(program: &Path) -> Command {
    if Path::new(SETPRIV).exists() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "KILL", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// The component a pid file (`<run>/<name>.pgid`) names, if it still runs in the state
/// directory `root`: its group's pid, kind and name. The file is removed either way.
fn named_stray(pid_file: &Path, root: &str) -> Option<(i32, Kind, String)> {
    let pid: i32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let _ = fs::remove_file(pid_file);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if !String::from_utf8_lossy(&cmdline).contains(root) {
        return None;
    }
    let name = pid_file.file_stem()?.to_string_lossy().into_owned();
    let kind = if name.starts_with("db-") {
        Kind::Database
    } else if name.starts_with("web-") {
        Kind::Web
    } else if name == "router" {
        Kind::Router
    } else if name == "redis" {
        Kind::Cache
    } else {
        Kind::Nginx
    };
    Some((pid, kind, name))
}

/// Stops process group `pid` gently, then kills it after `timeout`.
fn stop_group(pid: i32, kind: Kind, timeout: Duration) {
    let pgid = Pid::from_raw(pid);
    let _ = killpg(pgid, kind.stop_signal());
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
        // Not our child: it is reaped by init; a zombie still has /proc/<pid>/stat state Z.
        if fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Whether the database server `pid` (of the state directory `layout`) answers on its socket.
fn database_answers(layout: &Layout, pid: i32) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // `--defaults-file=<root>/db-<i>/my.cnf`
    let cmdline = String::from_utf8_lossy(&cmdline);
    cmdline
        .trim_end_matches('\0')
        .strip_suffix("/my.cnf")
        .and_then(|d| {
            d.rsplit('/')
                .next()?
                .strip_prefix("db-")?
                .parse::<u32>()
                .ok()
        })
        .is_some_and(|i| crate::mariadb::answers(&layout.db_socket(i)))
}

/// Components of the state directory `root` that no pid file names (a supervisor killed
/// between starting one and writing its pid file), found by their command line: the program
/// and an argument inside `root`. Only group leaders (each component runs in its own group).
fn unnamed_strays(root: &str) -> Vec<(i32, Kind, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            pid != me
                && nix::unistd::getpgid(Some(Pid::from_raw(pid))).ok() == Some(Pid::from_raw(pid))
        })
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.iter().any(|a| a.contains(root)) {
                return None;
            }
            // php-fpm and nginx rewrite their title: "php-fpm: master process (...)".
            let first = args.first()?.split_whitespace().next()?;
            let program = first.rsplit('/').next()?.trim_end_matches(':').to_string();
            let kind = if program == "mariadbd" {
                Kind::Database
            } else if program.starts_with("php-fpm") {
                Kind::Web
            } else if program.starts_with("nginx") {
                Kind::Nginx
            } else if program.starts_with("redis-server") {
                Kind::Cache
            } else if program == "hapress" && args.get(1).is_some_and(|a| a == "router") {
                Kind::Router
            } else {
                return None;
            };
            Some((pid, kind, program))
        })
        .collect()
}

/// Stops components left running by a supervisor that was killed; returns their names.
/// Those its pid files name and those it started without writing one, in one order: web,
/// nginx and the rest first, databases last (nothing writes while they shut down).
pub fn stop_strays(layout: &Layout) -> Vec<String> {
    let root = format!("{}/", layout.root.display());
    let mut strays: Vec<(i32, Kind, String)> = fs::read_dir(layout.run_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgid"))
        .filter_map(|p| named_stray(&p, &root))
        .collect();
    for (pid, kind, program) in unnamed_strays(&root) {
        if !strays.iter().any(|(p, _, _)| *p == pid) {
            strays.push((pid, kind, format!("{program} (pid {pid})")));
        }
    }
    strays.sort_by(|a, b| (a.1 == Kind::Database, &a.2).cmp(&(b.1 == Kind::Database, &b.2)));
    for (pid, kind, _) in &strays {
        // A database server that does not answer has not started: it accepted nothing, so it
        // is not waited for (one caught starting can hang there with the stop signal pending,
        // seen after a supervisor was killed while it started one).
        let timeout = if *kind == Kind::Database && !database_answers(layout, *pid) {
            Duration::from_secs(2)
        } else {
            kind.stop_timeout()
        };
        stop_group(*pid, *kind, timeout);
    }
    strays.into_iter().map(|(_, _, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// The helper dies with the thread that started it (the supervisor's copy thread, or the
    /// supervisor itself when killed).
    #[test]
    fn a_helper_dies_with_its_starter() {
        let mut child = std::thread::spawn(|| {
            let child = dies_with_starter(Path::new("/bin/sleep"))
                .arg("60")
                .spawn()
                .unwrap();
            // The starter ends once setpriv has set the signal up and run the program (a
            // starter that ends before that is not noticed).
            let comm = format!("/proc/{}/comm", child.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while fs::read_to_string(&comm).unwrap_or_default().trim() != "sleep" {
                assert!(Instant::now() < deadline, "setpriv never ran sleep");
                std::thread::yield_now();
            }
            child
        })
        .join()
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }
}
