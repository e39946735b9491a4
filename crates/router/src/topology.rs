//! What the router knows about its backends, refreshed by the prober ([`crate::probe`]): up or
//! down, `read_only`, replication threads and lag, GTID position; which one is the primary
//! ([`hapress_topology::decide::elect`]); and the password hashes it needs to log in to
//! replicas on a client's behalf.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hapress_wire::handshake::HandshakeResponse;

use crate::config::Config;
use crate::conn::Credential;
use crate::pool::Pool;
use hapress_contract::status::{BackendStatus, Latency, PoolStatus, Role, RouterStatus};
use hapress_topology::decide::{self, Io, ReplicaSeen, ServerSeen};
use hapress_topology::gtid::{gtid_covers, parse_gtids};
use hapress_topology::ManagerStatus;

use crate::failover::SwitchoverRequest;

/// One backend's last probe.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Answered the last probe.
    pub up: bool,
    /// `@@read_only`.
    pub read_only: bool,
    /// Replica IO and SQL threads both running.
    pub replicating: bool,
    /// `Seconds_Behind_Master`.
    pub lag_seconds: Option<u64>,
    /// A replica has everything the primary had `maxReplicationLag` seconds before this probe
    /// (by GTID; [`Topology::reference_position`]). `Seconds_Behind_Master` alone says 0 for a
    /// replica that has applied all it received but has not received the newest yet, as right
    /// after the primary restarted.
    pub caught_up: bool,
    /// `@@gtid_current_pos`.
    pub gtid: String,
    /// `@@init_connect` is set: a reset connection would not run it again, so connections to
    /// this server are not reset and pooled.
    pub init_connect: bool,
    /// Last probe error.
    pub error: Option<String>,
    /// Probes in a row that failed (0 after one that answered).
    pub failures: u32,
    /// `@@server_id`.
    pub server_id: u32,
    /// Its replication configuration and threads, if it has one.
    pub replica: Option<ReplicaStatus>,
    /// What its IO thread had received at the last probe (heartbeats, position read).
    pub heard: String,
    /// When a probe last saw `heard` change (or first saw it).
    pub heard_at: Option<Instant>,
    /// When this probe started (`None`: never answered).
    pub started: Option<Instant>,
    /// When the first of the failed probes in a row failed (`None` while it answers).
    pub down_since: Option<Instant>,
}

/// A server's replication configuration and threads (`SHOW SLAVE STATUS`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaStatus {
    /// `Master_Host:Master_Port`.
    pub master: String,
    /// The IO thread.
    pub io: Io,
    /// The SQL thread runs.
    pub sql_running: bool,
    /// `Last_IO_Errno`.
    pub io_errno: u32,
    /// `Last_SQL_Errno`.
    pub sql_errno: u32,
    /// `Last_IO_Error`, `Last_SQL_Error`.
    pub last_error: Option<String>,
}

/// Counters of one backend.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client sessions currently using it.
    pub sessions: AtomicUsize,
    /// Statements routed to it.
    pub statements: AtomicU64,
    /// Connection or login failures.
    pub errors: AtomicU64,
    /// Statement latency histogram (command sent -> answer complete): counts per bucket of
    /// [`LATENCY_BUCKETS`] (cumulative buckets are computed when exported), plus +Inf.
    pub latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of all latencies, microseconds.
    pub latency_sum_us: AtomicU64,
}

pub use hapress_contract::status::LATENCY_BUCKETS;

impl Counters {
    /// Records one statement's latency.
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// A backend.
#[derive(Debug)]
pub struct Backend {
    /// Address.
    pub addr: String,
    /// Where replicas reach it (`host:port` as in `CHANGE MASTER`).
    pub replication_addr: String,
    /// Last probe.
    pub probe: RwLock<Probe>,
    /// Counters.
    pub counters: Counters,
    /// Pooled connections.
    pub pool: Arc<Pool>,
}

/// Shared router state.
#[derive(Debug)]
pub struct Topology {
    /// Backends, in config order.
    pub backends: Vec<Backend>,
    primary: RwLock<Option<usize>>,
    /// The primary before the current one (or the current one): what a failover starts from.
    former: RwLock<Option<usize>>,
    /// The server this router's manager promoted, and when: kept as the primary until a probe
    /// that started after the promotion says otherwise.
    promoted: RwLock<Option<(usize, Instant)>>,
    users: RwLock<HashMap<Vec<u8>, Vec<[u8; 20]>>>,
    checkable: RwLock<HashMap<Vec<u8>, [u8; 20]>>,
    /// Reads routed to replicas / to the primary; writes.
    pub routed_replica: AtomicU64,
    /// Statements routed to the primary.
    pub routed_primary: AtomicU64,
    /// Client sessions open.
    pub clients: AtomicUsize,
    /// Client sessions refused (limit reached or no primary).
    pub refused: AtomicU64,
    /// Highest GTID sequence per replication domain seen in any write's OK packet.
    /// Per replication domain: server id, sequence number, and when it was seen.
    newest: RwLock<std::collections::BTreeMap<u32, (u32, u64, Instant)>>,
    max_lag: u64,
    /// The primary's GTID position at its recent probes: when, which backend, the position.
    primary_history: Mutex<std::collections::VecDeque<(Instant, usize, String)>>,
    /// Statements running on a replica, by the thread id their session's client knows (its
    /// primary connection's): the replica and that connection's thread id there, so a `KILL`
    /// of the session reaches the statement.
    on_replica: Mutex<crate::ids::IdMap<OnReplica>>,
    /// What this router's failover manager is doing.
    manager: Mutex<ManagerStatus>,
    /// The elected primary, for sessions that wait on a server that may be replaced.
    elected: tokio::sync::watch::Sender<Option<usize>>,
    /// A planned switchover holds statements for the primary while the roles change.
    hold: tokio::sync::watch::Sender<bool>,
    /// Statements past the hold and not yet answered by the primary.
    in_flight: Arc<AtomicUsize>,
    /// Planned switchovers asked for, to the manager (which takes the receiver).
    switchovers: tokio::sync::mpsc::Sender<SwitchoverRequest>,
    switchover_rx: Mutex<Option<tokio::sync::mpsc::Receiver<SwitchoverRequest>>>,
}

/// One statement on its way to the primary ([`Topology::to_primary`]); counted until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The longest a statement waits for a planned switchover.
pub const HOLD_MAX: Duration = Duration::from_secs(10);

/// A statement running on a replica: where, and how to log in there as its session's user to
/// kill it.
#[derive(Clone, Debug)]
pub struct OnReplica {
    /// The replica.
    pub idx: usize,
    /// The session's connection's thread id there.
    pub thread_id: u32,
    /// The session's user, credential and handshake template.
    pub login: Arc<(Vec<u8>, Credential, HandshakeResponse)>,
}

impl Topology {
    /// State for `config`'s backends, nothing probed yet.
    pub fn new(config: &Config) -> Self {
        let switchovers = tokio::sync::mpsc::channel(4);
        Self {
            backends: config
                .backends
                .iter()
                .zip(config.replication_addresses())
                .map(|(a, r)| Backend {
                    addr: a.clone(),
                    replication_addr: r,
                    probe: RwLock::new(Probe::default()),
                    counters: Counters::default(),
                    pool: Arc::new(Pool::new(config.pool_size)),
                })
                .collect(),
            primary: RwLock::new(None),
            former: RwLock::new(None),
            promoted: RwLock::new(None),
            users: RwLock::new(HashMap::new()),
            checkable: RwLock::new(HashMap::new()),
            routed_replica: AtomicU64::new(0),
            routed_primary: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            newest: RwLock::new(std::collections::BTreeMap::new()),
            max_lag: config.max_replication_lag,
            primary_history: Mutex::new(std::collections::VecDeque::new()),
            on_replica: Mutex::new(crate::ids::IdMap::default()),
            manager: Mutex::new(ManagerStatus::default()),
            elected: tokio::sync::watch::channel(None).0,
            hold: tokio::sync::watch::channel(false).0,
            in_flight: Arc::new(AtomicUsize::new(0)),
            switchovers: switchovers.0,
            switchover_rx: Mutex::new(Some(switchovers.1)),
        }
    }

    /// The session known as `thread_id` runs a statement on a replica (`None`: the statement
    /// is over).
    pub fn running_on_replica(&self, thread_id: u32, on: Option<OnReplica>) {
        let mut m = self.on_replica.lock().unwrap_or_else(|e| e.into_inner());
        match on {
            Some(r) => m.insert(thread_id, r),
            None => m.remove(&thread_id),
        };
    }

    /// Where the session known as `thread_id` is running a statement on a replica, if it is.
    pub fn on_replica(&self, thread_id: u32) -> Option<OnReplica> {
        self.on_replica
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&thread_id)
            .cloned()
    }

    /// The current primary.
    pub fn primary(&self) -> Option<usize> {
        *self.primary.read().unwrap_or_else(|e| e.into_inner())
    }

    fn probe_of(&self, i: usize) -> Probe {
        self.backends[i]
            .probe
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What this router's failover manager is doing.
    pub fn manager_status(&self) -> ManagerStatus {
        self.manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the manager's status.
    pub fn update_manager<R>(&self, f: impl FnOnce(&mut ManagerStatus) -> R) -> R {
        f(&mut self.manager.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Since when backend `i` has not answered its probes (`None`: it answers).
    pub fn down_since(&self, i: usize) -> Option<Instant> {
        self.probe_of(i).down_since
    }

    /// The primary this router routed to last (the current one while there is one).
    pub fn former(&self) -> Option<usize> {
        *self.former.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-derives the primary from the last probes ([`decide::elect`]); true when it changed.
    pub fn elect(&self) -> bool {
        let seen = self.observations(Instant::now());
        let promoted = *self.promoted.read().unwrap_or_else(|e| e.into_inner());
        let mut cur = self.primary.write().unwrap_or_else(|e| e.into_inner());
        let next = match promoted {
            // The probes that show the promotion are not all in yet.
            Some((p, at))
                if self.backends.iter().any(|b| {
                    b.probe
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .started
                        .is_none_or(|s| s < at)
                }) =>
            {
                Some(p)
            }
            _ => decide::elect(&seen, *cur),
        };
        let changed = next != *cur;
        if changed {
            match next {
                Some(p) => eprintln!(
                    "hapress router: topology: primary is now {} ({})",
                    self.backends[p].replication_addr, self.backends[p].addr
                ),
                None => eprintln!("hapress router: topology: no primary"),
            }
        }
        *cur = next;
        if changed {
            self.elected.send_replace(next);
        }
        if next.is_some() {
            *self.former.write().unwrap_or_else(|e| e.into_inner()) = next;
        }
        changed
    }

    /// Takes `p` as the primary at once (the acting manager just promoted it); the probes
    /// confirm it.
    pub fn set_primary(&self, p: usize) {
        *self.promoted.write().unwrap_or_else(|e| e.into_inner()) = Some((p, Instant::now()));
        *self.primary.write().unwrap_or_else(|e| e.into_inner()) = Some(p);
        *self.former.write().unwrap_or_else(|e| e.into_inner()) = Some(p);
        self.elected.send_replace(Some(p));
    }

    /// Asks this router's manager for a planned switchover to `to`; its outcome.
    pub async fn switchover(&self, to: Option<usize>) -> Result<String, String> {
        if !self.manager_status().enabled {
            return Err("failover is not configured on this router".into());
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.switchovers
            .send(SwitchoverRequest { to, reply })
            .await
            .map_err(|_| "the failover manager is not running".to_string())?;
        outcome
            .await
            .map_err(|_| "the failover manager dropped the request".to_string())?
    }

    /// The receiver of switchover requests (the manager takes it once).
    pub fn take_switchovers(&self) -> Option<tokio::sync::mpsc::Receiver<SwitchoverRequest>> {
        self.switchover_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Counts a statement on its way to the primary (before [`Topology::hold_passed`]).
    pub fn to_primary(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.in_flight.clone())
    }

    /// Statements on their way to the primary.
    pub fn primary_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Holds (`true`) or releases statements for the primary.
    pub fn hold_writes(&self, hold: bool) {
        self.hold.send_replace(hold);
    }

    /// Waits while a planned switchover holds statements for the primary (at most
    /// [`HOLD_MAX`]). A statement that waits is not counted in flight meanwhile.
    pub async fn hold_passed(&self) {
        let mut rx = self.hold.subscribe();
        if !*rx.borrow_and_update() {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let _ = tokio::time::timeout(HOLD_MAX, rx.wait_for(|held| !held)).await;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// Resolves once another server than `idx` is elected primary (never for `None`).
    pub async fn demoted(&self, idx: Option<usize>) {
        let Some(idx) = idx else {
            return std::future::pending().await;
        };
        let mut rx = self.elected.subscribe();
        loop {
            if rx.borrow_and_update().is_some_and(|p| p != idx) {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Every server as the topology decisions see it at `now`.
    pub fn observations(&self, now: Instant) -> Vec<ServerSeen> {
        (0..self.backends.len())
            .map(|i| {
                let p = self.probe_of(i);
                ServerSeen {
                    reachable: p.up,
                    failures: p.failures,
                    read_only: p.read_only,
                    gtid: p.gtid.clone(),
                    replica: p.replica.as_ref().map(|r| ReplicaSeen {
                        master: self
                            .backends
                            .iter()
                            .position(|b| b.replication_addr == r.master),
                        io: r.io,
                        sql_running: r.sql_running,
                        silent_for: p
                            .heard_at
                            .map_or(Duration::MAX, |h| now.saturating_duration_since(h)),
                        io_errno: r.io_errno,
                        sql_errno: r.sql_errno,
                    }),
                }
            })
            .collect()
    }

    /// Records a probe of backend `i` that answered; `heard` is what its IO thread had
    /// received, seen at `at`.
    pub fn probed(&self, i: usize, mut probe: Probe, heard: String, at: Instant) {
        let mut p = self.backends[i]
            .probe
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let io_running = probe.replica.as_ref().is_some_and(|r| r.io == Io::Running);
        probe.heard_at = if !io_running {
            None
        } else if p.heard == heard && p.heard_at.is_some() {
            p.heard_at
        } else {
            Some(at)
        };
        probe.heard = heard;
        probe.started = Some(at);
        *p = probe;
    }

    /// Records a probe of backend `i` that failed.
    pub fn probe_failed(&self, i: usize, error: String) {
        let mut p = self.backends[i]
            .probe
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let failures = p.failures.saturating_add(1);
        if p.up || failures == 1 {
            eprintln!(
                "hapress router: probe of {}: {error}",
                self.backends[i].addr
            );
        }
        *p = Probe {
            error: Some(error),
            failures,
            server_id: p.server_id,
            started: Some(Instant::now()),
            down_since: p.down_since.or(Some(Instant::now())),
            ..Probe::default()
        };
    }

    /// Replaces the password hashes read from the primary.
    pub(crate) fn set_logins(
        &self,
        users: HashMap<Vec<u8>, Vec<[u8; 20]>>,
        checkable: HashMap<Vec<u8>, [u8; 20]>,
    ) {
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        *self.checkable.write().unwrap_or_else(|e| e.into_inner()) = checkable;
    }

    /// A replica fit for reads: up, read-only, replicating, within the lag limit; the one with
    /// the fewest sessions first.
    pub fn pick_replica(&self) -> Option<usize> {
        (0..self.backends.len())
            .filter(|&i| self.replica_fit(i))
            .min_by_key(|&i| self.backends[i].counters.sessions.load(Ordering::Relaxed))
    }

    /// True while backend `i` is an up, read-only server other than the primary.
    pub fn replica_up(&self, i: usize) -> bool {
        let p = self.backends[i]
            .probe
            .read()
            .unwrap_or_else(|e| e.into_inner());
        Some(i) != self.primary() && p.up && p.read_only
    }

    /// True while backend `i` is fit for reads (called per statement: no allocation).
    ///
    /// While there is no primary (it was lost and no other is promoted yet), a replica that was
    /// caught up when its primary went away keeps serving reads although its IO thread is
    /// reconnecting: it has what it had, and there is nowhere fresher to read from.
    pub fn replica_fit(&self, i: usize) -> bool {
        let primary = self.primary();
        if Some(i) == primary {
            return false;
        }
        let p = self.backends[i]
            .probe
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let fresh = if primary.is_some() {
            p.replicating && p.lag_seconds.is_some_and(|l| l <= self.max_lag)
        } else {
            p.replica
                .as_ref()
                .is_some_and(|r| r.sql_errno == 0 && r.io_errno != 1236)
        };
        p.up && p.read_only && p.caught_up && fresh
    }

    /// Records the position of the primary (backend `i`) at a probe that started at `at`.
    fn record_primary_position(&self, i: usize, pos: &str, at: Instant) {
        let mut h = self
            .primary_history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if h.back().is_some_and(|e| e.1 != i) {
            h.clear(); // another primary: its own history starts now
        }
        h.push_back((at, i, pos.to_string()));
        // Keep the newest entry that is at least maxReplicationLag old, and all after it.
        let limit = Duration::from_secs(self.max_lag);
        while h.len() >= 2 && at.saturating_duration_since(h[1].0) >= limit {
            h.pop_front();
        }
    }

    /// What a replica must have applied to be read from at `now`: the primary's position
    /// `maxReplicationLag` seconds ago, or the oldest this router has seen if it has not watched
    /// that long (`None` before the first probe of a primary).
    pub fn reference_position(&self, now: Instant) -> Option<String> {
        let h = self
            .primary_history
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let limit = Duration::from_secs(self.max_lag);
        h.iter()
            .rev()
            .find(|e| e.0 <= now && now.duration_since(e.0) >= limit)
            .or_else(|| h.front())
            .map(|e| e.2.clone())
    }

    /// Records a GTID acknowledged to some client (for `readYourWrites: global`).
    pub fn note_gtid(&self, gtid: &str) {
        self.note_gtid_at(gtid, Instant::now());
    }

    /// [`Self::note_gtid`], acknowledged at `now`.
    fn note_gtid_at(&self, gtid: &str, now: Instant) {
        let mut m = self.newest.write().unwrap_or_else(|e| e.into_inner());
        for (d, s, n) in parse_gtids(gtid) {
            let e = m.entry(d).or_insert((s, n, now));
            if n > e.1 {
                *e = (s, n, now);
            }
        }
    }

    /// The `@@gtid_current_pos` of the primary (backend `i`), read by a probe that started at
    /// `probe_started`: kept for [`Topology::reference_position`]. A write seen before then is
    /// in that position unless the primary's GTIDs went back (`RESET MASTER`, a rebuilt
    /// primary): the newest GTID then follows the primary, or reads with `readYourWrites:
    /// global` would wait for a GTID no replica ever reaches.
    pub fn primary_position(&self, i: usize, pos: &str, probe_started: Instant) {
        self.record_primary_position(i, pos, probe_started);
        let primary: HashMap<u32, (u32, u64)> = parse_gtids(pos)
            .into_iter()
            .map(|(d, s, n)| (d, (s, n)))
            .collect();
        let mut m = self.newest.write().unwrap_or_else(|e| e.into_inner());
        m.retain(|d, e| {
            if e.2 >= probe_started {
                return true;
            }
            match primary.get(d) {
                Some(&(s, n)) if n < e.1 => {
                    *e = (s, n, e.2);
                    true
                }
                Some(_) => true,
                None => false,
            }
        });
    }

    /// The newest GTID position seen through this router (`None` before any write).
    pub fn newest_gtid(&self) -> Option<String> {
        let m = self.newest.read().unwrap_or_else(|e| e.into_inner());
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(d, (s, n, _))| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// True when backend `i`'s last probe shows it already applied `gtid` (so no wait is
    /// needed).
    pub fn has_applied(&self, i: usize, gtid: &str) -> bool {
        let p = self.backends[i]
            .probe
            .read()
            .unwrap_or_else(|e| e.into_inner());
        gtid_covers(&p.gtid, gtid)
    }

    /// The password hash of `user` when the router may check its logins itself (see
    /// [`USERS_SQL`]); `None`: relay them to MariaDB.
    pub fn checkable(&self, user: &[u8]) -> Option<[u8; 20]> {
        self.checkable
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .copied()
    }

    /// Connections to backend `i` may be reset and reused (no `init_connect` there).
    pub fn resettable(&self, i: usize) -> bool {
        let p = self.probe_of(i);
        p.up && !p.init_connect
    }

    /// Stops checking passwords locally until the next probe re-reads the accounts (after a
    /// statement that may change them went through the router).
    pub fn forget_logins(&self) {
        self.checkable
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Password hashes (`SHA1(SHA1(password))`) known for `user`.
    pub fn stage2s(&self, user: &[u8]) -> Vec<[u8; 20]> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// What `/status` reports, and `/metrics` is made of.
    pub fn snapshot(&self) -> RouterStatus {
        let primary = self.primary();
        RouterStatus {
            primary: primary.map(|i| self.backends[i].addr.clone()),
            clients: self.clients.load(Ordering::Relaxed) as u64,
            refused: self.refused.load(Ordering::Relaxed),
            routed_to_primary: self.routed_primary.load(Ordering::Relaxed),
            routed_to_replicas: self.routed_replica.load(Ordering::Relaxed),
            manager: self.manager_status(),
            backends: self
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let p = self.probe_of(i);
                    let c = &b.counters;
                    BackendStatus {
                        address: b.addr.clone(),
                        role: if Some(i) == primary {
                            Role::Primary
                        } else if p.up {
                            Role::Replica
                        } else {
                            Role::Down
                        },
                        up: p.up,
                        read_only: p.read_only,
                        replicating: p.replicating,
                        lag_seconds: p.lag_seconds,
                        caught_up: p.caught_up,
                        replication_address: b.replication_addr.clone(),
                        server_id: p.server_id,
                        failures: p.failures,
                        replicates_from: p.replica.as_ref().map(|r| r.master.clone()),
                        io_thread: p.replica.as_ref().map(|r| r.io),
                        replication_error: p.replica.as_ref().and_then(|r| r.last_error.clone()),
                        gtid: p.gtid,
                        error: p.error,
                        sessions: c.sessions.load(Ordering::Relaxed) as u64,
                        statements: c.statements.load(Ordering::Relaxed),
                        errors: c.errors.load(Ordering::Relaxed),
                        pool: PoolStatus {
                            open: b.pool.open_count() as u64,
                            idle: b.pool.idle_count() as u64,
                            opened: b.pool.opened.load(Ordering::Relaxed),
                            reused: b.pool.reused.load(Ordering::Relaxed),
                            mismatched: b.pool.mismatched.load(Ordering::Relaxed),
                            overflow: b.pool.overflow.load(Ordering::Relaxed),
                            resets: b.pool.resets.load(Ordering::Relaxed),
                        },
                        latency: Latency {
                            counts: c
                                .latency
                                .iter()
                                .map(|n| n.load(Ordering::Relaxed))
                                .collect(),
                            sum_us: c.latency_sum_us.load(Ordering::Relaxed),
                        },
                    }
                })
                .collect(),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A topology from a router config with `extra` (YAML lines) added.
    fn topology(extra: &str) -> Topology {
        Topology::new(
            &serde_yaml::from_str(&format!(
                "listen: x\nmonitorUser: m\nmonitorPasswordFile: f\n{extra}"
            ))
            .unwrap(),
        )
    }

    #[test]
    fn a_replica_must_have_what_the_primary_had_max_lag_ago() {
        let topo = topology("backends: [a, b]\nmaxReplicationLag: 5\n");
        let t0 = Instant::now();
        assert_eq!(topo.reference_position(t0), None);
        topo.record_primary_position(0, "0-1-10", t0);
        topo.record_primary_position(0, "0-1-20", t0 + Duration::from_secs(3));
        // Watched for less than 5 s: the oldest position seen.
        assert_eq!(
            topo.reference_position(t0 + Duration::from_secs(4))
                .as_deref(),
            Some("0-1-10")
        );
        // Later: what the primary had at least 5 s before.
        assert_eq!(
            topo.reference_position(t0 + Duration::from_secs(9))
                .as_deref(),
            Some("0-1-20")
        );
        assert!(gtid_covers("0-1-20,1-2-3", "0-1-20"));
        assert!(!gtid_covers("0-1-19", "0-1-20"));
        assert!(!gtid_covers("1-1-30", "0-1-20"), "a domain it lacks");
        // Another primary: its history starts over.
        topo.record_primary_position(1, "0-2-21", t0 + Duration::from_secs(10));
        assert_eq!(
            topo.reference_position(t0 + Duration::from_secs(11))
                .as_deref(),
            Some("0-2-21")
        );
    }

    #[test]
    fn the_newest_gtid_follows_a_primary_whose_gtids_went_back() {
        let topo = topology("backends: [a]\n");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        topo.note_gtid_at("0-1-272,1-1-9", at(10));
        // A probe that started before the write may not show it yet: kept.
        topo.primary_position(0, "0-1-3", at(5));
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-272,1-1-9"));
        // A later probe that shows less: RESET MASTER; domain 1 is gone altogether.
        topo.primary_position(0, "0-1-3", at(20));
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-3"));
        topo.note_gtid_at("0-1-4", at(30));
        topo.primary_position(0, "0-1-5", at(40));
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-4"));
        topo.primary_position(0, "", at(50));
        assert_eq!(topo.newest_gtid(), None);
    }
}
