//! What the router knows about its backends, refreshed by one probe task per backend: up or
//! down, `read_only`, replication threads and lag, GTID position; which one is the primary;
//! and the password hashes it needs to log in to replicas on a client's behalf.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hapress_wire::consts::cap;
use hapress_wire::handshake::{parse_stage2_hex, HandshakeResponse};

use crate::config::Config;
use crate::conn::{login, query, Conn, Credential};
use crate::pool::Pool;

/// One backend's last probe.
#[derive(Debug, Clone, Default, serde::Serialize)]
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

/// Upper bounds of the latency histogram's buckets, seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

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
    on_replica: Mutex<HashMap<u32, OnReplica>>,
}

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
        Self {
            backends: config
                .backends
                .iter()
                .map(|a| Backend {
                    addr: a.clone(),
                    probe: RwLock::new(Probe::default()),
                    counters: Counters::default(),
                    pool: Arc::new(Pool::new(config.pool_size)),
                })
                .collect(),
            primary: RwLock::new(None),
            users: RwLock::new(HashMap::new()),
            checkable: RwLock::new(HashMap::new()),
            routed_replica: AtomicU64::new(0),
            routed_primary: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            newest: RwLock::new(std::collections::BTreeMap::new()),
            max_lag: config.max_replication_lag,
            primary_history: Mutex::new(std::collections::VecDeque::new()),
            on_replica: Mutex::new(HashMap::new()),
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

    /// Re-derives the primary: the one live server with `read_only=OFF` (the current one wins a
    /// tie, so two writable servers never make the router flap).
    fn elect(&self) {
        let writable: Vec<usize> = (0..self.backends.len())
            .filter(|&i| {
                let p = self.probe_of(i);
                p.up && !p.read_only
            })
            .collect();
        let mut cur = self.primary.write().unwrap_or_else(|e| e.into_inner());
        *cur = match *cur {
            Some(c) if writable.contains(&c) => Some(c),
            _ => writable.first().copied(),
        };
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
    pub fn replica_fit(&self, i: usize) -> bool {
        if Some(i) == self.primary() {
            return false;
        }
        let p = self.backends[i]
            .probe
            .read()
            .unwrap_or_else(|e| e.into_inner());
        p.up && p.read_only
            && p.replicating
            && p.caught_up
            && p.lag_seconds.is_some_and(|l| l <= self.max_lag)
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
        while h.len() >= 2 && h[1].0.elapsed() >= limit {
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
        let now = Instant::now();
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

    /// A JSON snapshot for `/status` and `hapress status`.
    pub fn snapshot(&self) -> serde_json::Value {
        let primary = self.primary();
        serde_json::json!({
            "primary": primary.map(|i| self.backends[i].addr.clone()),
            "clients": self.clients.load(Ordering::Relaxed),
            "routedToPrimary": self.routed_primary.load(Ordering::Relaxed),
            "routedToReplicas": self.routed_replica.load(Ordering::Relaxed),
            "backends": self.backends.iter().enumerate().map(|(i, b)| {
                let p = self.probe_of(i);
                serde_json::json!({
                    "address": b.addr,
                    "role": if Some(i) == primary { "primary" } else if p.up { "replica" } else { "down" },
                    "up": p.up,
                    "readOnly": p.read_only,
                    "replicating": p.replicating,
                    "lagSeconds": p.lag_seconds,
                    "caughtUp": p.caught_up,
                    "gtid": p.gtid,
                    "error": p.error,
                    "sessions": b.counters.sessions.load(Ordering::Relaxed),
                    "statements": b.counters.statements.load(Ordering::Relaxed),
                    "errors": b.counters.errors.load(Ordering::Relaxed),
                    "pool": {
                        "open": b.pool.open_count(),
                        "idle": b.pool.idle_count(),
                        "opened": b.pool.opened.load(Ordering::Relaxed),
                        "reused": b.pool.reused.load(Ordering::Relaxed),
                        "mismatched": b.pool.mismatched.load(Ordering::Relaxed),
                        "exhausted": b.pool.exhausted.load(Ordering::Relaxed),
                    },
                })
            }).collect::<Vec<_>>(),
        })
    }
}

/// The handshake template the router uses for its own logins.
pub fn monitor_template() -> HandshakeResponse {
    HandshakeResponse {
        capabilities: cap::LONG_PASSWORD
            | cap::PROTOCOL_41
            | cap::TRANSACTIONS
            | cap::SECURE_CONNECTION
            | cap::MULTI_RESULTS
            | cap::PLUGIN_AUTH,
        max_packet: 16 << 20,
        charset: 45,
        ..HandshakeResponse::default()
    }
}

/// Probes backend `i` forever.
pub async fn probe_loop(topo: Arc<Topology>, config: Arc<Config>, i: usize, password: Vec<u8>) {
    let interval = Duration::from_millis(config.probe_interval_ms);
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut conn: Option<Conn> = None;
    loop {
        let result = probe_once(&topo, &config, i, &password, &mut conn, timeout).await;
        if let Err(e) = &result {
            conn = None;
            let mut p = topo.backends[i]
                .probe
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *p = Probe {
                error: Some(e.clone()),
                ..Probe::default()
            };
        }
        topo.elect();
        topo.backends[i]
            .pool
            .reap(Duration::from_millis(config.pool_idle_timeout_ms));
        tokio::time::sleep(interval).await;
    }
}

async fn probe_once(
    topo: &Topology,
    config: &Config,
    i: usize,
    password: &[u8],
    conn: &mut Option<Conn>,
    timeout: Duration,
) -> Result<(), String> {
    let addr = &topo.backends[i].addr;
    if conn.is_none() {
        let mut c = Conn::connect(addr, timeout)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        tokio::time::timeout(
            timeout,
            login(
                &mut c,
                config.monitor_user.as_bytes(),
                &Credential::Password(password.to_vec()),
                &monitor_template(),
            ),
        )
        .await
        .map_err(|_| format!("login to {addr} timed out"))?
        .map_err(|e| format!("login to {addr} as {}: {e}", config.monitor_user))?;
        *conn = Some(c);
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let started = Instant::now();
    let vars = tokio::time::timeout(
        timeout,
        query(
            c,
            "SELECT @@read_only AS ro, @@gtid_current_pos AS gtid, @@init_connect <> '' AS ic",
            false,
        ),
    )
    .await
    .map_err(|_| "probe timed out".to_string())?
    .map_err(|e| e.to_string())?
    .map_err(|(code, m)| format!("probe query: {code} {m}"))?;
    // A server refusing the rest of the probe (the monitor account lost a privilege, a system
    // table is gone) is still up: its role comes from `@@read_only`. It is then taken for a
    // replica that does not replicate (no reads go to it) and the error is shown in the status.
    let mut error = None;
    let slave = tokio::time::timeout(timeout, query(c, "SHOW SLAVE STATUS", false))
        .await
        .map_err(|_| "probe timed out".to_string())?
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|(code, m)| {
            error = Some(format!("SHOW SLAVE STATUS: {code} {m}"));
            Default::default()
        });
    let replicating = slave.get(0, "Slave_IO_Running") == Some("Yes")
        && slave.get(0, "Slave_SQL_Running") == Some("Yes");
    let read_only = vars.get(0, "ro") == Some("1");
    // Every probe of the primary: the router checks passwords itself, so a dropped or changed
    // account must stop working within one probe interval. Unreadable accounts: every login is
    // relayed to MariaDB.
    let gtid = vars.get(0, "gtid").unwrap_or("");
    let caught_up = read_only
        && topo
            .reference_position(started)
            .is_some_and(|r| gtid_covers(gtid, &r));
    if !read_only {
        topo.primary_position(i, gtid, started);
        if let Err(e) = refresh_user_hashes(topo, c, timeout).await {
            topo.forget_logins();
            error.get_or_insert(e);
        }
    }
    *topo.backends[i]
        .probe
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Probe {
        up: true,
        read_only,
        replicating,
        lag_seconds: slave
            .get(0, "Seconds_Behind_Master")
            .and_then(|s| s.parse().ok()),
        caught_up,
        gtid: gtid.to_string(),
        init_connect: vars.get(0, "ic") == Some("1"),
        error,
    };
    Ok(())
}

/// Reads `mysql_native_password` hashes from the primary.
async fn refresh_user_hashes(
    topo: &Topology,
    c: &mut Conn,
    timeout: Duration,
) -> Result<(), String> {
    let rows = tokio::time::timeout(
        timeout,
        query(c, USERS_SQL, false),
    )
    .await
    .map_err(|_| "reading users timed out".to_string())?
    .map_err(|e| e.to_string())?
    .map_err(|(code, m)| format!("reading mysql.global_priv (grant SELECT ON mysql.global_priv to the monitor user): {code} {m}"))?;
    let accounts = (0..rows.rows.len()).filter_map(|i| {
        let u = rows.get(i, "u")?;
        Some((
            u.as_bytes().to_vec(),
            rows.get(i, "h").and_then(parse_stage2_hex),
            rows.get(i, "ok") == Some("1"),
        ))
    });
    let (users, checkable) = logins(accounts);
    *topo.users.write().unwrap_or_else(|e| e.into_inner()) = users;
    *topo.checkable.write().unwrap_or_else(|e| e.into_inner()) = checkable;
    Ok(())
}

/// From every account (user name, password hash if it has one, checkable as [`USERS_SQL`]
/// says): the hashes known per user name, and the user names whose logins the router may check
/// itself. That needs every account of the name checkable and with the same hash: MariaDB picks
/// the account by the host it sees (the router's), and then whichever it picks, the password
/// check gives the same answer (`wordpress`@`127.0.0.1` and `wordpress`@`localhost` in `hapress
/// up`).
#[allow(clippy::type_complexity)]
fn logins(
    accounts: impl Iterator<Item = (Vec<u8>, Option<[u8; 20]>, bool)>,
) -> (HashMap<Vec<u8>, Vec<[u8; 20]>>, HashMap<Vec<u8>, [u8; 20]>) {
    let mut users: HashMap<Vec<u8>, Vec<[u8; 20]>> = HashMap::new();
    // Per user name: the one hash all its accounts share, or None once they disagree.
    let mut agreed: HashMap<Vec<u8>, Option<[u8; 20]>> = HashMap::new();
    for (u, s2, ok) in accounts {
        if let Some(s2) = s2 {
            users.entry(u.clone()).or_default().push(s2);
        }
        let same = match (s2, ok) {
            (Some(s2), true) => Some(s2),
            _ => None,
        };
        agreed
            .entry(u)
            .and_modify(|a| {
                if *a != same {
                    *a = None;
                }
            })
            .or_insert(same);
    }
    let checkable = agreed
        .into_iter()
        .filter_map(|(u, s2)| Some((u, s2?)))
        .collect();
    (users, checkable)
}

/// Every account's password hash, and whether the router may check a login of it itself: a
/// `mysql_native_password` account that is not locked, whose password is not expired and has
/// no lifetime of its own (and only when every account of that user name is such an account
/// with the same password: [`logins`]).
const USERS_SQL: &str = "SELECT User AS u, JSON_VALUE(Priv, '$.authentication_string') AS h, \
     (IFNULL(JSON_VALUE(Priv, '$.plugin'), 'mysql_native_password') = 'mysql_native_password' \
     AND IFNULL(JSON_VALUE(Priv, '$.account_locked'), 'false') = 'false' \
     AND IFNULL(JSON_VALUE(Priv, '$.password_last_changed'), '1') <> '0' \
     AND IFNULL(JSON_VALUE(Priv, '$.password_lifetime'), '-1') = '-1' \
     AND @@default_password_lifetime = 0) AS ok FROM mysql.global_priv";

/// True when position `have` includes every domain's sequence number of `want`.
pub fn gtid_covers(have: &str, want: &str) -> bool {
    let have = parse_gtids(have);
    parse_gtids(want)
        .iter()
        .all(|(d, _, n)| have.iter().any(|(hd, _, hn)| hd == d && hn >= n))
}

/// Parses a GTID position such as `0-1-42,1-2-7` into (domain, server, sequence) triples;
/// malformed parts are skipped.
pub fn parse_gtids(s: &str) -> Vec<(u32, u32, u64)> {
    s.split(',')
        .filter_map(|g| {
            let mut it = g.trim().splitn(3, '-');
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
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
    fn logins_are_checked_locally_only_when_every_account_of_the_name_agrees() {
        let (a, b) = ([1u8; 20], [2u8; 20]);
        let rows = vec![
            // one account: checkable
            (b"solo".to_vec(), Some(a), true),
            // two hosts, one password (hapress up's wordpress): checkable
            (b"wordpress".to_vec(), Some(a), true),
            (b"wordpress".to_vec(), Some(a), true),
            // two hosts, two passwords: which one MariaDB uses depends on the host
            (b"split".to_vec(), Some(a), true),
            (b"split".to_vec(), Some(b), true),
            // one of the accounts locked (or another plugin, expired): relayed
            (b"locked".to_vec(), Some(a), true),
            (b"locked".to_vec(), Some(a), false),
            // no native hash at all
            (b"socket".to_vec(), None, false),
        ];
        let (users, checkable) = logins(rows.into_iter());
        let mut names: Vec<_> = checkable.keys().cloned().collect();
        names.sort();
        assert_eq!(names, vec![b"solo".to_vec(), b"wordpress".to_vec()]);
        assert_eq!(checkable[&b"wordpress".to_vec()], a);
        assert_eq!(users[&b"split".to_vec()], vec![a, b]);
        assert!(!users.contains_key(b"socket".as_slice()));
    }

    #[test]
    fn the_newest_gtid_follows_a_primary_whose_gtids_went_back() {
        let topo = topology("backends: [a]\n");
        let before = Instant::now();
        topo.note_gtid("0-1-272,1-1-9");
        // A probe that started before the write may not show it yet: kept.
        topo.primary_position(0, "0-1-3", before);
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-272,1-1-9"));
        // A later probe that shows less: RESET MASTER; domain 1 is gone altogether.
        std::thread::sleep(Duration::from_millis(2));
        topo.primary_position(0, "0-1-3", Instant::now());
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-3"));
        topo.note_gtid("0-1-4");
        topo.primary_position(0, "0-1-5", Instant::now());
        assert_eq!(topo.newest_gtid().as_deref(), Some("0-1-4"));
        topo.primary_position(0, "", Instant::now());
        assert_eq!(topo.newest_gtid(), None);
    }

    #[test]
    fn gtid_positions() {
        assert_eq!(parse_gtids("0-1-42,1-2-7"), vec![(0, 1, 42), (1, 2, 7)]);
        assert_eq!(parse_gtids(""), vec![]);
        assert_eq!(parse_gtids("x-1-2, 0-1-3"), vec![(0, 1, 3)]);
    }
}
