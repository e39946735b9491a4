//! The failover manager of one router. Every probe interval it reads, on its own connection to
//! each server, who holds the managers' lock there (`GET_LOCK('hapress_topology')`, which lives
//! as long as that connection); it takes free locks in server order and gives its own back when
//! another router holds one. Only while it holds a majority of all the locks does it act: it
//! asks [`decide::plan`] what to do about the servers as the probes last saw them, and executes
//! it. A router that dies or hangs loses its locks with its connections (a hung one keeps only
//! the locks on servers it cannot reach, which are a minority while it is not the leader).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hapress_topology::decide::{self, Action, Leadership, Lock, ServerSeen, Settings};
use hapress_topology::{FailoverRecord, HISTORY};
use rand::Rng;

use crate::config::{Config, FailoverConfig};
use crate::conn::Conn;
use crate::failover::execute::{self, Cluster};
use crate::failover::SwitchoverRequest;
use crate::probe::{connect_monitor, run};
use crate::topology::Topology;

/// The lock's name on every server.
const LOCK: &str = "hapress_topology";

/// How long after a promotion an old primary found writable is left to its supervisor.
const FENCE_GRACE: Duration = Duration::from_secs(2);

/// A server is re-pointed at most this often (a replica that keeps failing is not hammered).
const REJOIN_EVERY: Duration = Duration::from_secs(3);

/// The primary moves to the preferred server no sooner than this after a promotion...
const PREFERRED_AFTER: Duration = Duration::from_secs(5);
/// ... and is tried at most this often.
const PREFERRED_RETRY: Duration = Duration::from_secs(30);

/// One router's manager.
pub struct Manager {
    topo: Arc<Topology>,
    config: Arc<Config>,
    monitor_password: Arc<Vec<u8>>,
    cluster: Arc<Cluster>,
    settings: Settings,
    /// The manager's connection to each server: its lock lives there.
    control: Vec<Option<Conn>>,
    /// The lock on each server as last read.
    locks: Vec<Lock>,
    /// After giving locks back, do not take any before this (routers that collided retry at
    /// different times).
    quiet_until: Option<Instant>,
    last_rejoin: HashMap<usize, Instant>,
    /// When this manager last promoted a server.
    promoted_at: Option<Instant>,
    /// When this manager last switched over to the preferred primary.
    preferred_tried: Option<Instant>,
    /// Planned switchovers asked for over `/switchover`.
    requests: Option<tokio::sync::mpsc::Receiver<SwitchoverRequest>>,
}

impl Manager {
    /// A manager for `topo`'s servers; reads the replication password.
    pub fn new(
        topo: Arc<Topology>,
        config: Arc<Config>,
        failover: &FailoverConfig,
        monitor_password: Vec<u8>,
    ) -> Result<Self, String> {
        let n = topo.backends.len();
        let topo_for_requests = topo.clone();
        let cluster = Cluster {
            addresses: topo
                .backends
                .iter()
                .map(|b| b.replication_addr.clone())
                .collect(),
            replication_user: failover.replication_user.clone(),
            replication_password: failover.replication_password()?,
            heartbeat: Duration::from_millis(failover.heartbeat_ms),
            semi_sync: failover.semi_sync,
            timeout: Duration::from_millis(config.connect_timeout_ms),
        };
        topo.update_manager(|m| m.enabled = true);
        Ok(Self {
            settings: Settings {
                detect_probes: failover.detect_probes,
                silence: Duration::from_millis(failover.silence_ms),
                preferred: failover
                    .preferred_primary
                    .as_ref()
                    .and_then(|p| topo.backends.iter().position(|b| b.addr == *p)),
            },
            topo,
            config,
            monitor_password: Arc::new(monitor_password),
            cluster: Arc::new(cluster),
            control: (0..n).map(|_| None).collect(),
            locks: vec![Lock::Unknown; n],
            quiet_until: None,
            last_rejoin: HashMap::new(),
            promoted_at: None,
            preferred_tried: None,
            requests: topo_for_requests.take_switchovers(),
        })
    }

    /// Runs forever.
    pub async fn run(mut self) {
        let interval = Duration::from_millis(self.config.probe_interval_ms);
        let mut requests = self.requests.take();
        loop {
            self.tick().await;
            let request = async {
                match requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Some(r) = request => {
                    let outcome = if decide::leadership(&self.locks) == Leadership::Leader {
                        self.switchover(r.to).await
                    } else {
                        Err("this router does not act for the cluster now (another router holds the locks): ask that one".into())
                    };
                    let _ = r.reply.send(outcome);
                }
            }
        }
    }

    /// A planned switchover to `to` (else the most advanced replica that follows the primary):
    /// statements for the primary are held, those on their way finish, the primary is made
    /// read-only, the new one applies all it has and is promoted, the held statements go there
    /// (sessions move to it between statements), and everyone else follows it.
    async fn switchover(&mut self, to: Option<usize>) -> Result<String, String> {
        let Some(p) = self.topo.primary() else {
            return Err("there is no primary to switch from".into());
        };
        let seen = self.topo.observations(Instant::now());
        let fit = |i: usize| {
            i != p
                && i < seen.len()
                && seen[i].reachable
                && seen[i].replica.as_ref().is_some_and(|r| {
                    r.master == Some(p) && r.io == decide::Io::Running && r.sql_running
                })
        };
        let target = match to {
            Some(t) if fit(t) => t,
            Some(t) => {
                return Err(format!(
                    "server {t} is not a running replica of the primary ({})",
                    self.name(p)
                ))
            }
            None => {
                let positions: Vec<(usize, String)> = (0..seen.len())
                    .filter(|&i| fit(i))
                    .map(|i| (i, seen[i].gtid.clone()))
                    .collect();
                execute::choose(&positions, None).ok_or("no running replica to switch to")?
            }
        };
        let started = Instant::now();
        let k = self.cluster.clone();
        log(format!(
            "switchover: {} -> {}: holding statements for the primary",
            self.name(p),
            self.name(target)
        ));
        self.topo.hold_writes(true);
        let drained = Instant::now() + Duration::from_secs(5);
        while self.topo.primary_in_flight() > 0 && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outcome = async {
            let c = self.conn(p).await?;
            run(c, "SET GLOBAL read_only = ON", k.timeout).await?;
            let pos = run(c, "SELECT @@gtid_binlog_pos AS p", k.timeout).await?;
            let pos = pos.get(0, "p").unwrap_or("").to_string();
            let c = self.conn(target).await?;
            let wait = format!(
                "SELECT MASTER_GTID_WAIT({}, {}) AS w",
                execute::quote(&pos),
                execute::RELAY_APPLY.as_secs()
            );
            let waited = run(c, &wait, execute::RELAY_APPLY + k.timeout).await?;
            if waited.get(0, "w") != Some("0") {
                return Err(format!("{} did not reach {pos}", self.name(target)));
            }
            execute::promote(c, &k).await
        }
        .await;
        if let Err(e) = outcome {
            // Back as it was: the old primary takes writes again.
            if let Ok(c) = self.conn(p).await {
                let _ = run(c, "SET GLOBAL read_only = OFF", k.timeout).await;
            }
            self.topo.hold_writes(false);
            self.counted(false);
            log(format!(
                "switchover: failed, {} stays the primary: {e}",
                self.name(p)
            ));
            return Err(e);
        }
        self.topo.set_primary(target);
        self.promoted_at = Some(Instant::now());
        self.topo.hold_writes(false);
        let took_ms = execute::ms_since(started);
        let message = format!(
            "{} is the primary (was {}); statements for the primary were held {took_ms} ms",
            self.name(target),
            self.name(p)
        );
        log(format!("switchover: {message}"));
        self.record(Some(p), target, "planned switchover", took_ms, 0);
        self.follow(target, &seen, &[p]).await;
        Ok(message)
    }

    async fn tick(&mut self) {
        self.read_locks().await;
        match decide::leadership(&self.locks) {
            Leadership::Acquire(free) if self.quiet_until.is_none_or(|t| Instant::now() >= t) => {
                self.acquire(&free).await;
            }
            Leadership::Release => self.release().await,
            _ => {}
        }
        let leader = decide::leadership(&self.locks) == Leadership::Leader;
        let held = self.locks.iter().filter(|l| **l == Lock::Mine).count();
        let was = self.topo.manager_status().leader;
        if leader != was {
            log(if leader {
                format!(
                    "this router now acts for the cluster (holds {held} of {} locks)",
                    self.locks.len()
                )
            } else {
                "this router no longer acts for the cluster".into()
            });
        }
        self.topo.update_manager(|m| {
            m.leader = leader;
            m.locks_held = held;
        });
        if !leader {
            return;
        }
        let seen = self.topo.observations(Instant::now());
        let actions = decide::plan(
            &seen,
            self.topo.primary(),
            self.topo.former(),
            &self.settings,
        );
        for a in actions {
            self.execute(a, &seen).await;
        }
        // A server reported diverged that replicates again (rebuilt) is no longer reported.
        let primary = self.topo.primary();
        let fine: Vec<String> = seen
            .iter()
            .enumerate()
            .filter(|(_, sv)| {
                sv.replica.as_ref().is_some_and(|r| {
                    r.master.is_some()
                        && r.master == primary
                        && r.io == decide::Io::Running
                        && r.sql_errno == 0
                })
            })
            .map(|(i, _)| self.name(i))
            .collect();
        self.topo
            .update_manager(|m| m.diverged.retain(|(n, _)| !fine.contains(n)));
    }

    /// Reads the lock on every server at once (a hung server costs one timeout, not one per
    /// server).
    async fn read_locks(&mut self) {
        let timeout = Duration::from_millis(self.config.probe_timeout_ms);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..self.control.len() {
            let conn = self.control[i].take();
            let addr = self.topo.backends[i].addr.clone();
            let config = self.config.clone();
            let pw = self.monitor_password.clone();
            set.spawn(async move {
                let mut c = match conn {
                    Some(c) => c,
                    None => match connect_monitor(&addr, &config, &pw, timeout).await {
                        Ok(c) => c,
                        Err(_) => return (i, None, Lock::Unknown),
                    },
                };
                let sql = format!(
                    "SELECT IS_USED_LOCK('{LOCK}') IS NULL AS free, IS_USED_LOCK('{LOCK}') = CONNECTION_ID() AS mine"
                );
                match run(&mut c, &sql, timeout).await {
                    Ok(r) if r.get(0, "free") == Some("1") => (i, Some(c), Lock::Free),
                    Ok(r) if r.get(0, "mine") == Some("1") => (i, Some(c), Lock::Mine),
                    Ok(_) => (i, Some(c), Lock::Other),
                    Err(_) => (i, None, Lock::Unknown),
                }
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((i, conn, lock)) = done {
                self.control[i] = conn;
                self.locks[i] = lock;
            }
        }
    }

    async fn acquire(&mut self, free: &[usize]) {
        let timeout = Duration::from_millis(self.config.probe_timeout_ms);
        for &i in free {
            let Some(c) = self.control[i].as_mut() else {
                break;
            };
            match run(c, &format!("SELECT GET_LOCK('{LOCK}', 0) AS got"), timeout).await {
                Ok(r) if r.get(0, "got") == Some("1") => self.locks[i] = Lock::Mine,
                Ok(_) => {
                    self.locks[i] = Lock::Other;
                    break;
                }
                Err(_) => {
                    self.lost(i);
                    break;
                }
            }
        }
    }

    async fn release(&mut self) {
        let timeout = Duration::from_millis(self.config.probe_timeout_ms);
        for i in 0..self.locks.len() {
            if self.locks[i] != Lock::Mine {
                continue;
            }
            let released = match self.control[i].as_mut() {
                Some(c) => run(c, &format!("SELECT RELEASE_LOCK('{LOCK}')"), timeout)
                    .await
                    .is_ok(),
                None => false,
            };
            if released {
                self.locks[i] = Lock::Free;
            } else {
                self.lost(i); // closing the connection releases it too
            }
        }
        let ticks = rand::thread_rng().gen_range(1..=4);
        self.quiet_until =
            Some(Instant::now() + Duration::from_millis(self.config.probe_interval_ms * ticks));
    }

    /// The connection to server `i` failed: drop it (and the lock with it).
    fn lost(&mut self, i: usize) {
        self.control[i] = None;
        self.locks[i] = Lock::Unknown;
    }

    /// The manager's connection to server `i`, opened if needed.
    async fn conn(&mut self, i: usize) -> Result<&mut Conn, String> {
        if self.control[i].is_none() {
            let timeout = Duration::from_millis(self.config.probe_timeout_ms);
            let addr = self.topo.backends[i].addr.clone();
            let c = connect_monitor(&addr, &self.config, &self.monitor_password, timeout).await?;
            self.control[i] = Some(c);
        }
        self.control[i]
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    fn name(&self, i: usize) -> String {
        self.cluster.addresses[i].clone()
    }

    fn counted(&self, ok: bool) {
        self.topo.update_manager(|m| {
            m.actions += 1;
            m.action_errors += u64::from(!ok);
        });
    }

    async fn execute(&mut self, action: Action, seen: &[ServerSeen]) {
        match action {
            Action::Failover {
                from,
                candidates,
                reason,
            } => self.failover(from, &candidates, &reason, seen).await,
            // An old primary back writable right after the failover: a supervisor that can kill
            // it (the embedded runtime) does, which lets crash recovery drop what it never got
            // acknowledged; fencing it now would commit those as errant transactions.
            Action::Fence(_) if self.promoted_at.is_some_and(|t| t.elapsed() < FENCE_GRACE) => {}
            Action::Fence(i) => {
                let k = self.cluster.clone();
                let r = async { execute::fence(self.conn(i).await?, &k).await }.await;
                self.report(i, "fenced (made read-only): it is not the primary", r);
            }
            Action::Rejoin { server, primary } => self.rejoin(server, primary).await,
            // Not right after a promotion (the others are still being re-pointed), and not
            // again and again when one fails.
            Action::Switchover { .. }
                if self
                    .promoted_at
                    .is_some_and(|t| t.elapsed() < PREFERRED_AFTER)
                    || self
                        .preferred_tried
                        .is_some_and(|t| t.elapsed() < PREFERRED_RETRY) => {}
            Action::Switchover { to } => {
                self.preferred_tried = Some(Instant::now());
                log(format!(
                    "{} is the preferred primary and has caught up: switching over to it",
                    self.name(to)
                ));
                if let Err(e) = self.switchover(Some(to)).await {
                    log(format!("switchover to the preferred primary failed: {e}"));
                }
            }
            Action::Diverged { server, why } => {
                let name = self.name(server);
                let fresh = self.topo.update_manager(|m| {
                    let entry = (name.clone(), why.clone());
                    let fresh = !m.diverged.contains(&entry);
                    if fresh {
                        m.diverged.retain(|(n, _)| *n != name);
                        m.diverged.push(entry);
                    }
                    fresh
                });
                if fresh {
                    log(format!(
                        "!! {name} has diverged from the primary ({why}); it needs a rebuild from a healthy replica"
                    ));
                }
            }
        }
    }

    fn report(&mut self, i: usize, done: &str, r: Result<(), String>) {
        let name = self.name(i);
        match r {
            Ok(()) => log(format!("{name}: {done}")),
            Err(e) => {
                log(format!("{name}: failed: {e}"));
                self.lost(i);
            }
        }
        self.counted(true);
    }

    async fn rejoin(&mut self, i: usize, p: usize) {
        let now = Instant::now();
        if self
            .last_rejoin
            .get(&i)
            .is_some_and(|t| now.duration_since(*t) < REJOIN_EVERY)
        {
            return;
        }
        self.last_rejoin.insert(i, now);
        let k = self.cluster.clone();
        let primary = self.name(p);
        let r = async { execute::rejoin(self.conn(i).await?, &k, &primary).await }.await;
        let ok = r.is_ok();
        self.report(i, &format!("replicates from {primary}"), r);
        if ok {
            let name = self.name(i);
            self.topo
                .update_manager(|m| m.diverged.retain(|(n, _)| *n != name));
        }
    }

    /// Promotes the most advanced candidate after each applied what it had received, and
    /// points every other server that answers at it.
    async fn failover(
        &mut self,
        from: Option<usize>,
        candidates: &[usize],
        reason: &str,
        seen: &[ServerSeen],
    ) {
        let started = Instant::now();
        let detected_ms = from.and_then(|f| self.topo.down_since(f)).map_or(0, |d| {
            u64::try_from(started.duration_since(d).as_millis()).unwrap_or(0)
        });
        let k = self.cluster.clone();
        let names: Vec<String> = candidates.iter().map(|&i| self.name(i)).collect();
        log(format!(
            "failover: {reason}; candidates {}",
            names.join(", ")
        ));
        // The old primary, if it answers after all, takes no more writes; a hung one does not
        // hold the failover up.
        if let Some(f) = from.filter(|f| !candidates.contains(f)) {
            self.lost(f);
            let (addr, k, config, pw) = self.task_parts(f);
            tokio::spawn(async move {
                let timeout = Duration::from_millis(config.probe_timeout_ms);
                if let Ok(mut c) = connect_monitor(&addr, &config, &pw, timeout).await {
                    let _ = execute::fence(&mut c, &k).await;
                }
            });
        }
        let mut positions = Vec::new();
        for &i in candidates {
            let replica = seen[i].replica.is_some();
            let writable = !seen[i].read_only;
            let r = async {
                let c = self.conn(i).await?;
                if writable {
                    execute::fence(c, &k).await?;
                }
                execute::settle(c, &k, replica).await
            }
            .await;
            match r {
                Ok(pos) => positions.push((i, pos)),
                Err(e) => {
                    log(format!("failover: {} is no candidate: {e}", self.name(i)));
                    self.lost(i);
                }
            }
        }
        let Some(winner) = execute::choose(&positions, from) else {
            log("failover: no candidate answered; trying again".into());
            self.counted(false);
            return;
        };
        let r = async { execute::promote(self.conn(winner).await?, &k).await }.await;
        if let Err(e) = r {
            log(format!(
                "failover: promoting {} failed: {e}; trying again",
                self.name(winner)
            ));
            self.lost(winner);
            self.counted(false);
            return;
        }
        self.topo.set_primary(winner);
        self.promoted_at = Some(Instant::now());
        let took_ms = execute::ms_since(started);
        let (from_name, to) = (from.map(|f| self.name(f)), self.name(winner));
        log(format!(
            "failover: {to} is the primary ({}), writable {took_ms} ms after the decision; positions {}",
            from_name.as_deref().map_or("no primary before".into(), |f| format!("was {f}")),
            positions
                .iter()
                .map(|(i, p)| format!("{}={p}", self.name(*i)))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        self.record(from, winner, reason, took_ms, detected_ms);
        self.follow(winner, seen, candidates).await;
    }

    /// Records a promotion in the status.
    fn record(
        &mut self,
        from: Option<usize>,
        to: usize,
        reason: &str,
        took_ms: u64,
        detected_ms: u64,
    ) {
        let (from, to) = (from.map(|f| self.name(f)), self.name(to));
        self.topo.update_manager(|m| {
            m.failovers.push(FailoverRecord {
                at: hapress_topology::now_unix(),
                from,
                to,
                reason: reason.into(),
                took_ms,
                detected_ms,
            });
            m.failovers_total += 1;
            if m.failovers.len() > HISTORY {
                m.failovers.remove(0);
            }
        });
        self.counted(true);
    }

    /// Every other server that answers (or is in `also`) follows the new primary `winner`,
    /// all at once (a write waits for one of them to acknowledge it); the new primary forgets
    /// its old configuration meanwhile. The rest follow when they come back: the plan
    /// re-points them.
    async fn follow(&mut self, winner: usize, seen: &[ServerSeen], also: &[usize]) {
        let to = self.name(winner);
        let mut work = tokio::task::JoinSet::new();
        for (i, sv) in seen.iter().enumerate() {
            if i == winner || !(sv.reachable || also.contains(&i)) {
                continue;
            }
            self.last_rejoin.insert(i, Instant::now());
            let (addr, k, config, pw) = self.task_parts(i);
            let primary = to.clone();
            work.spawn(async move {
                let timeout = Duration::from_millis(config.probe_timeout_ms);
                let mut c = connect_monitor(&addr, &config, &pw, timeout).await?;
                execute::rejoin(&mut c, &k, &primary).await?;
                Ok::<_, String>((i, format!("replicates from {primary}")))
            });
        }
        let (addr, k, config, pw) = self.task_parts(winner);
        work.spawn(async move {
            let timeout = Duration::from_millis(config.probe_timeout_ms);
            let mut c = connect_monitor(&addr, &config, &pw, timeout).await?;
            execute::forget_master(&mut c, &k).await?;
            Ok((
                winner,
                "has no replication configuration of its own any more".into(),
            ))
        });
        while let Some(done) = work.join_next().await {
            match done {
                Ok(Ok((i, what))) => log(format!("{}: {what}", self.name(i))),
                Ok(Err(e)) => {
                    log(format!("after the promotion: {e}"));
                    self.counted(false);
                }
                Err(e) => log(format!("after the promotion: {e}")),
            }
        }
    }

    /// What a task working on server `i` needs.
    fn task_parts(&self, i: usize) -> (String, Arc<Cluster>, Arc<Config>, Arc<Vec<u8>>) {
        (
            self.topo.backends[i].addr.clone(),
            self.cluster.clone(),
            self.config.clone(),
            self.monitor_password.clone(),
        )
    }
}

fn log(message: String) {
    eprintln!("hapress router: topology: {message}");
}
