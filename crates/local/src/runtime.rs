//! The supervisor: brings a cluster up step by step, then keeps every component alive until
//! asked to stop. Started by `hapress up` in the foreground or as a detached process.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hapress_contract::status::RouterStatus;
use hapress_spec::Cluster;
use nix::fcntl::{Flock, FlockArg};

use crate::components;
use crate::error::{Error, IoContext, Result};
use crate::layout::Layout;
use crate::mariadb;
use crate::preflight::{Tools, WorkerUser};
use crate::process::{Kind, Process};
use crate::secrets::Secrets;
use crate::state::State;
use crate::status::{now_unix, ClusterStatus, ComponentStatus, Event};

/// Events kept in `status.json`.
const EVENTS_KEPT: usize = 50;

/// How often the supervisor asks the SQL router which server is the primary.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// A running cluster and everything needed to keep it running.
pub struct Runtime {
    pub(crate) layout: Layout,
    pub(crate) cluster: Cluster,
    pub(crate) tools: Tools,
    pub(crate) user: Option<WorkerUser>,
    pub(crate) state: State,
    pub(crate) secrets: Secrets,
    pub(crate) dbs: Vec<Process>,
    pub(crate) webs: Vec<Process>,
    pub(crate) nginx: Process,
    /// The SQL router, unless `spec.router.enabled` is false.
    pub(crate) router: Option<Process>,
    /// Redis, the object cache, unless `spec.cache.objectCache.enabled` is false.
    pub(crate) redis: Option<Process>,
    events: VecDeque<Event>,
    pub(crate) stop: Arc<AtomicBool>,
    phase: &'static str,
    /// Per database server, when its next rebuild may start: a minute after a failed one,
    /// seconds after a good one (until the routers see it replicate, their last status
    /// still says it diverged).
    rebuild_after: std::collections::HashMap<u32, Instant>,
    /// The copy in progress for a rebuild (one at a time): made on a thread of its own, so
    /// that a long (or stuck) copy never stops the supervision of everything else.
    copying: Option<Copying>,
    /// What the page cache did, counted from nginx's log (`None`: the cache is off).
    page_cache: Option<crate::status::PageCacheLog>,
    /// Held for the supervisor's lifetime: one supervisor per state directory.
    _lock: Flock<File>,
}

/// A copy of a healthy server being made for a rebuild.
struct Copying {
    server: u32,
    source: u32,
    thread: std::thread::JoinHandle<Result<(String, Option<std::path::PathBuf>)>>,
}

/// Takes the state directory's lock, or reports who holds it.
pub fn lock(layout: &Layout) -> Result<Flock<File>> {
    let path = layout.lock_file();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| Error::Busy {
        dir: layout.root.clone(),
        pid: fs::read_to_string(layout.run_dir().join("supervisor.pid"))
            .map_or("unknown".into(), |p| p.trim().into()),
    })
}

/// Whether a supervisor currently holds the state directory's lock.
pub fn supervisor_running(layout: &Layout) -> bool {
    let Ok(file) = OpenOptions::new().write(true).open(layout.lock_file()) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

impl Runtime {
    /// Assembles the runtime; nothing is started yet.
    #[allow(clippy::too_many_arguments)] // each is a distinct, already-validated part
    pub(crate) fn new(
        layout: Layout,
        cluster: Cluster,
        tools: Tools,
        user: Option<WorkerUser>,
        state: State,
        secrets: Secrets,
        lock: Flock<File>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let dbs = (0..cluster.spec.database.instances)
            .map(|i| components::database(&tools, &layout, i))
            .collect();
        let webs = (0..cluster.spec.web.replicas)
            .map(|i| components::web(&tools, &layout, i))
            .collect();
        let nginx = components::nginx(&tools, &layout);
        let router = cluster
            .spec
            .router
            .enabled
            .then(|| components::router(&layout));
        let redis = cluster
            .spec
            .cache
            .object_cache
            .enabled
            .then(|| components::redis(&tools, &layout, user.as_ref()));
        // Counted from what nginx logs after this supervisor started.
        let page_cache =
            cluster.spec.cache.page.enabled.then(|| {
                crate::status::PageCacheLog::new(layout.log(crate::config::PAGE_CACHE_LOG))
            });
        Self {
            layout,
            cluster,
            tools,
            user,
            state,
            secrets,
            dbs,
            webs,
            nginx,
            router,
            redis,
            events: VecDeque::new(),
            stop,
            phase: "starting",
            rebuild_after: std::collections::HashMap::new(),
            copying: None,
            page_cache,
            _lock: lock,
        }
    }

    /// Records an event: printed, appended to `logs/events.log`, kept for `status`.
    pub(crate) fn event(&mut self, component: &str, message: String) {
        let line = format!("{} {component}: {message}", now_unix());
        eprintln!("hapress: {component}: {message}");
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.layout.log("events.log"))
        {
            let _ = writeln!(f, "{line}");
        }
        self.events.push_back(Event {
            at: now_unix(),
            component: component.into(),
            message,
        });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.dbs
            .iter_mut()
            .chain(self.webs.iter_mut())
            .chain(self.router.iter_mut())
            .chain(self.redis.iter_mut())
            .chain(std::iter::once(&mut self.nginx))
    }

    /// Whether component `p` answers; Redis's answer is `cache_answers` (its counters were
    /// just read for the status).
    fn probe(&self, p: &Process, cache_answers: bool) -> bool {
        let spec = &self.cluster.spec;
        match p.kind {
            Kind::Database => {
                let i: u32 = p.name.trim_start_matches("db-").parse().unwrap_or(0);
                mariadb::answers(&self.layout.db_socket(i))
            }
            Kind::Web => {
                let i: u32 = p.name.trim_start_matches("web-").parse().unwrap_or(0);
                UnixStream::connect(self.layout.web_socket(i)).is_ok()
            }
            Kind::Router => UnixStream::connect(self.layout.router_socket()).is_ok(),
            Kind::Cache => cache_answers,
            Kind::Nginx => format!("{}:{}", spec.embedded.bind_address, spec.embedded.http_port)
                .parse()
                .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()),
        }
    }

    fn component_status(&self, p: &Process, running: bool, cache_answers: bool) -> ComponentStatus {
        let health = if p.restart_at.is_some() {
            "restarting"
        } else if !running {
            "down"
        } else if self.probe(p, cache_answers) {
            "up"
        } else {
            "starting"
        };
        let role = match p.kind {
            Kind::Database if p.name == crate::layout::db_name(self.state.primary) => "primary",
            Kind::Database => "replica",
            Kind::Web => "web",
            Kind::Nginx => "load-balancer",
            Kind::Router => "sql-router",
            Kind::Cache => "object-cache",
        };
        ComponentStatus {
            name: p.name.clone(),
            kind: serde_json::to_value(p.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            pid: p.pid(),
            address: components::address(&self.cluster.spec, &self.layout, p),
            health: health.into(),
            role: role.into(),
            restarts: p.restarts,
            replication: None,
            router: None,
        }
    }

    /// Writes `run/status.json`.
    pub(crate) fn write_status(&mut self) {
        let mut running = Vec::new();
        for p in self.all_mut() {
            running.push(p.is_running());
        }
        let procs: Vec<&Process> = self
            .dbs
            .iter()
            .chain(self.webs.iter())
            .chain(self.router.iter())
            .chain(self.redis.iter())
            .chain(std::iter::once(&self.nginx))
            .collect();
        let object_cache = self.redis.as_ref().and_then(|_| {
            crate::redis::stats(&self.layout.redis_socket(), &self.secrets.redis_password)
        });
        let components = procs
            .iter()
            .zip(running)
            .map(|(p, r)| self.component_status(p, r, object_cache.is_some()))
            .collect();
        let st = ClusterStatus {
            cluster: self.cluster.name.clone(),
            phase: self.phase.into(),
            supervisor_pid: std::process::id(),
            supervisor_running: true,
            url: self.cluster.embedded_url(),
            updated_at: now_unix(),
            components,
            events: self.events.iter().cloned().collect(),
            failovers: Vec::new(),
            attention: Vec::new(),
            page_cache: self.page_cache.as_ref().map(|l| l.counts.clone()),
            object_cache,
        };
        if let Ok(text) = serde_json::to_string_pretty(&st) {
            let _ = crate::fsutil::write_atomic(&self.layout.status_file(), text.as_bytes(), 0o644);
        }
    }

    /// Keeps every component alive until SIGINT/SIGTERM, then stops them in order.
    pub fn supervise(&mut self) {
        self.phase = "running";
        let mut last_status = Instant::now() - Duration::from_secs(10);
        let mut last_follow = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let primary = crate::layout::db_name(self.state.primary);
            let mut happened = Vec::new();
            for p in self.all_mut() {
                if let Some(status) = p.poll_exit(now) {
                    let delay = p.pending_delay(now);
                    let loud = if p.name == primary {
                        "!! the PRIMARY database died (the routers fail over to a replica, or take it back when it returns first); "
                    } else {
                        ""
                    };
                    happened.push((
                        p.name.clone(),
                        format!(
                            "{loud}exited ({status}); restarting in {:.1}s",
                            delay.as_secs_f64()
                        ),
                    ));
                }
                match p.restart_if_due(now) {
                    Ok(true) => happened.push((
                        p.name.clone(),
                        format!(
                            "restarted (pid {}, restart #{})",
                            p.pid().unwrap_or(0),
                            p.restarts
                        ),
                    )),
                    Ok(false) => {}
                    Err(e) => {
                        p.restart_at = Some(now + Duration::from_secs(5));
                        happened.push((
                            p.name.clone(),
                            format!("restart failed: {e}; retrying in 5s"),
                        ));
                    }
                }
            }
            let mut changed = !happened.is_empty();
            for (name, msg) in happened {
                self.event(&name, msg);
            }
            if self
                .copying
                .as_ref()
                .is_some_and(|c| c.thread.is_finished())
            {
                self.finish_copy();
            }
            if self.router.is_some() && last_follow.elapsed() >= FOLLOW_EVERY {
                last_follow = Instant::now();
                changed |= self.follow_router();
            }
            if changed || last_status.elapsed() >= Duration::from_secs(1) {
                if let Some(log) = self.page_cache.as_mut() {
                    log.update();
                }
                self.write_status();
                last_status = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.shutdown();
    }

    /// Follows the primary the SQL router elected (its failover manager promotes replicas):
    /// records it, and kills the old primary, so that it restarts read-only as a replica and
    /// crash recovery truncates what it never got acknowledged; rebuilds servers that cannot
    /// replicate. True when the primary changed.
    fn follow_router(&mut self) -> bool {
        let Some(st) = crate::status::router_status(&self.layout) else {
            return false;
        };
        let changed = self.follow_primary(&st);
        self.rebuild_if_needed(&st);
        changed
    }

    pub(crate) fn follow_primary(&mut self, st: &RouterStatus) -> bool {
        let Some(addr) = st.primary.as_deref() else {
            return false;
        };
        let n = self.cluster.spec.database.instances;
        let Some(p) = (0..n).find(|&i| self.layout.db_socket(i).to_str() == Some(addr)) else {
            return false;
        };
        let old = self.state.primary;
        if p == old {
            return false;
        }
        let reason = st
            .manager
            .failovers
            .last()
            .map_or("elected by the SQL router", |f| f.reason.as_str())
            .to_string();
        self.event(
            &crate::layout::db_name(p),
            format!(
                "is the PRIMARY now (was {}): {reason}",
                crate::layout::db_name(old)
            ),
        );
        self.state.primary = p;
        if let Err(e) = self.state.save(&self.layout) {
            self.event("supervisor", format!("recording the new primary: {e}"));
        }
        // The old primary is killed when it hangs or is writable: it restarts read-only, as a
        // replica, and crash recovery truncates the transactions no replica acknowledged,
        // which a hung one may hold (they were never acknowledged to a client). Resumed or
        // fenced instead, it would keep them as errant transactions and need a rebuild. One
        // that already restarted (read-only) is left alone: the manager is re-pointing it, and
        // a kill in the middle of that can leave its replication configuration half-written.
        let socket = self.layout.db_socket(old);
        let writable_or_hung = !mariadb::answers(&socket)
            || mariadb::sql(&self.tools, &socket, "SELECT @@read_only;")
                .is_ok_and(|r| r.first().and_then(|r| r.first()).is_some_and(|v| v == "0"));
        if let Some(d) = self.dbs.get_mut(old as usize) {
            if d.is_running() && writable_or_hung {
                d.kill();
                self.event(
                    &crate::layout::db_name(old),
                    "the old primary was killed (hung or writable): it restarts read-only and rejoins as a replica"
                        .into(),
                );
            }
        }
        true
    }

    /// Rebuilds a database server the router reports as diverged, or whose data directory is
    /// gone, from a copy of a healthy one (see `rebuild_after`): starts
    /// the copy (the supervision loop finishes the rebuild when the copy is done).
    fn rebuild_if_needed(&mut self, st: &RouterStatus) {
        // One server at a time: a server being copied to stops acknowledging the primary's
        // writes (semi-sync), and with none left acknowledging, the primary's commits wait,
        // and so does a copy of the primary (mariadb-backup waits for commits in progress).
        // It also never copies from a server that is itself being rebuilt.
        if self.copying.is_some() {
            return;
        }
        let n = self.cluster.spec.database.instances;
        let index = |addr: &str| (0..n).find(|&i| self.layout.db_socket(i).to_str() == Some(addr));
        let healthy: Vec<u32> = st
            .backends
            .iter()
            .filter(|b| b.is_caught_up_replica())
            .filter_map(|b| index(&b.address))
            .collect();
        let primary = self.state.primary;
        let mut todo = Vec::new();
        for i in (0..n).filter(|&i| i != primary) {
            if !self.layout.db_data(i).join("mysql").is_dir() {
                todo.push((i, "its data directory is gone".to_string()));
            } else if let Some((_, why)) = st
                .backends
                .iter()
                .find(|b| index(&b.address) == Some(i))
                .and_then(|b| {
                    st.manager
                        .diverged
                        .iter()
                        .find(|(a, _)| *a == b.replication_address)
                })
            {
                todo.push((i, format!("it diverged from the primary: {why}")));
            }
        }
        if let Some((i, why)) = todo.into_iter().find(|(i, _)| {
            self.rebuild_after
                .get(i)
                .is_none_or(|&t| Instant::now() >= t)
        }) {
            // A failure waits a minute before the next attempt.
            self.rebuild_after
                .insert(i, Instant::now() + Duration::from_secs(60));
            let source = crate::rebuild::source(&self.cluster.spec, primary, &healthy, i);
            self.event(
                &crate::layout::db_name(i),
                format!(
                    "rebuilding from a copy of {} ({why})",
                    crate::layout::db_name(source)
                ),
            );
            self.write_status();
            self.dbs[i as usize].stop();
            let (tools, layout, stop) =
                (self.tools.clone(), self.layout.clone(), self.stop.clone());
            let thread = std::thread::spawn(move || {
                crate::rebuild::clone_into(&tools, &layout, source, i, &stop, crate::rebuild::STALL)
            });
            self.copying = Some(Copying {
                server: i,
                source,
                thread,
            });
        }
    }

    /// Starts the server whose copy is done, as a replica of the current primary from the
    /// copy's position; a failed copy is retried a minute later.
    fn finish_copy(&mut self) {
        let Some(c) = self.copying.take() else {
            return;
        };
        let i = c.server;
        let name = crate::layout::db_name(i);
        let primary = self.state.primary;
        let copied = c
            .thread
            .join()
            .unwrap_or_else(|_| Err(crate::error::step_error("rebuilding", "the copy panicked")));
        match copied.and_then(|(gtid, aside)| self.start_copy(i, primary, &gtid).map(|()| aside)) {
            Ok(aside) => {
                // Routers probe every 250 ms by default: 5 s covers their stale reports.
                self.rebuild_after
                    .insert(i, Instant::now() + Duration::from_secs(5));
                let from = format!(
                    "rebuilt from {}; replicates from {}",
                    crate::layout::db_name(c.source),
                    crate::layout::db_name(primary)
                );
                let msg = match aside {
                    Some(a) => format!(
                        "{from}; !! its old data is kept in {} (inspect it, then delete it)",
                        a.display()
                    ),
                    None => from,
                };
                self.event(&name, msg);
            }
            Err(e) => {
                self.event(&name, format!("rebuild failed: {e}; retrying in a minute"));
                let d = &mut self.dbs[i as usize];
                if !d.is_running() && d.spawn().is_err() {
                    d.restart_at = Some(Instant::now() + Duration::from_secs(5));
                }
            }
        }
    }

    /// Starts server `i` on its new copy and makes it replicate from `primary` at `gtid`.
    fn start_copy(&mut self, i: u32, primary: u32, gtid: &str) -> Result<()> {
        let d = &mut self.dbs[i as usize];
        d.spawn()?;
        mariadb::wait_ready(&self.layout, i, Duration::from_secs(60), &mut || {
            d.is_running()
        })?;
        crate::bootstrap::follow_from(
            &self.tools,
            &self.layout,
            &self.cluster.spec,
            &self.secrets,
            i,
            primary,
            gtid,
        )
    }

    /// Stops everything: load balancer, web replicas, replicas, primary last.
    pub fn shutdown(&mut self) {
        self.phase = "stopping";
        self.write_status();
        // A copy in progress stops (and its processes end) once it sees the flag.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.copying.take() {
            let _ = c.thread.join();
        }
        println!("hapress: stopping {}", self.cluster.name);
        self.nginx.stop();
        for w in &mut self.webs {
            w.stop();
        }
        if let Some(r) = &mut self.router {
            r.stop();
        }
        if let Some(r) = &mut self.redis {
            r.stop();
        }
        let primary = self.state.primary as usize;
        for (i, d) in self.dbs.iter_mut().enumerate() {
            if i != primary {
                d.stop();
            }
        }
        if let Some(d) = self.dbs.get_mut(primary) {
            d.stop();
        }
        self.phase = "stopped";
        self.write_status();
        let _ = fs::remove_file(self.layout.run_dir().join("supervisor.pid"));
        println!("hapress: stopped");
    }
}
