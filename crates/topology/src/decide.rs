//! The topology decisions, pure: which server writes go to ([`elect`]), what the acting
//! manager does about the servers ([`plan`]), and whether this router is the one that acts
//! ([`leadership`]). Inputs are values (what the last probes saw), outputs are values; the
//! tables below are the specification.

use std::time::Duration;

/// A replica's IO thread (`Slave_IO_Running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Io {
    /// `No`.
    #[default]
    Stopped,
    /// `Connecting`: it lost its primary or cannot reach it.
    Connecting,
    /// `Yes`.
    Running,
}

impl Io {
    /// From `SHOW SLAVE STATUS`'s `Slave_IO_Running`.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Yes") => Self::Running,
            Some("Connecting") | Some("Preparing") => Self::Connecting,
            _ => Self::Stopped,
        }
    }
}

/// What a server's replication threads were doing at the last probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaSeen {
    /// The server its `CHANGE MASTER` points at, when that is one of the cluster's servers.
    pub master: Option<usize>,
    /// The IO thread.
    pub io: Io,
    /// The SQL thread runs.
    pub sql_running: bool,
    /// How long the IO thread has received nothing (no event, no heartbeat), as far as the
    /// probes can tell.
    pub silent_for: Duration,
    /// `Last_IO_Errno`.
    pub io_errno: u32,
    /// `Last_SQL_Errno`.
    pub sql_errno: u32,
}

/// One server as the last probe saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSeen {
    /// It answered the last probe within the probe timeout.
    pub reachable: bool,
    /// Probes in a row it did not answer (0 when it answered the last one).
    pub failures: u32,
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@gtid_current_pos`.
    pub gtid: String,
    /// Its replication threads, when it has a replication configuration.
    pub replica: Option<ReplicaSeen>,
}

impl ServerSeen {
    fn writable(&self) -> bool {
        self.reachable && !self.read_only
    }

    /// Replicates, or tries to, from `m`.
    fn follows(&self, m: usize) -> bool {
        self.reachable && self.replica.as_ref().is_some_and(|r| r.master == Some(m))
    }

    /// Its IO thread is connected to `m`, which therefore still lives for it.
    fn hears(&self, m: usize, silence: Duration) -> bool {
        self.follows(m)
            && self
                .replica
                .as_ref()
                .is_some_and(|r| r.io == Io::Running && r.silent_for < silence)
    }
}

/// Settings of the decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Probes in a row the primary must miss before it is taken for lost.
    pub detect_probes: u32,
    /// How long a replica must have heard nothing from the primary to confirm it is lost.
    pub silence: Duration,
    /// The server that should be the primary, when one is named.
    pub preferred: Option<usize>,
}

/// Error codes after which a replica cannot go on from where it is: it has transactions the
/// primary does not have, or needs some the primary no longer has.
const DIVERGED_IO: [u32; 1] = [1236];

/// The server writes go to: the one reachable writable server that no running replica
/// contradicts (a replica whose IO thread runs from another server says that one is the
/// primary). The current one is kept while it stays so; two candidates give none (the acting
/// manager fences one of them first), so no router ever picks between two primaries.
pub fn elect(servers: &[ServerSeen], current: Option<usize>) -> Option<usize> {
    let contradicted = |w: usize| {
        servers.iter().enumerate().any(|(j, s)| {
            j != w
                && s.reachable
                && s.replica
                    .as_ref()
                    .is_some_and(|r| r.io == Io::Running && r.master.is_some_and(|m| m != w))
        })
    };
    let fit = |w: usize| servers[w].writable() && !contradicted(w);
    if let Some(c) = current.filter(|&c| c < servers.len() && fit(c)) {
        return Some(c);
    }
    let mut fits = (0..servers.len()).filter(|&w| fit(w));
    match (fits.next(), fits.next()) {
        (Some(w), None) => Some(w),
        _ => None,
    }
}

/// What the acting manager does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Promote the most advanced of `candidates` (each first applies what it received) and
    /// make the others follow it. `from` is the lost primary, if one is known.
    Failover {
        /// The primary that was lost.
        from: Option<usize>,
        /// Servers that may become the primary (reachable, not diverged), in index order.
        candidates: Vec<usize>,
        /// Why, for the log and the history.
        reason: String,
    },
    /// Make a writable server that is not the primary read-only.
    Fence(usize),
    /// Make `server` replicate from `primary` (a replica re-pointed or restarted, an old
    /// primary rejoining).
    Rejoin {
        /// The server.
        server: usize,
        /// The primary.
        primary: usize,
    },
    /// `server` cannot replicate from the primary any more: it must be rebuilt from a copy.
    Diverged {
        /// The server.
        server: usize,
        /// What says so.
        why: String,
    },
    /// Move the primary to the preferred server by a planned switchover.
    Switchover {
        /// The preferred server, a caught-up replica of the primary.
        to: usize,
    },
}

/// What the acting manager does now, given every server's last probe, the elected primary
/// (`None` when there is none) and the primary elected before it (`former`).
pub fn plan(
    servers: &[ServerSeen],
    primary: Option<usize>,
    former: Option<usize>,
    s: &Settings,
) -> Vec<Action> {
    match primary {
        Some(p) => {
            let mut actions = healthy(servers, p);
            if actions.is_empty() {
                actions.extend(preferred(servers, p, s.preferred));
            }
            actions
        }
        None => lost(servers, former, s).into_iter().collect(),
    }
}

/// With every server in line: a switchover to the preferred server, when it is not the
/// primary and is a running, caught-up replica of it.
fn preferred(servers: &[ServerSeen], p: usize, preferred: Option<usize>) -> Option<Action> {
    let to = preferred.filter(|&t| t != p && t < servers.len())?;
    let sv = &servers[to];
    let running = sv.follows(p)
        && sv
            .replica
            .as_ref()
            .is_some_and(|r| r.io == Io::Running && r.sql_running);
    let caught_up = crate::gtid::gtid_covers(&sv.gtid, &servers[p].gtid);
    (running && caught_up && sv.read_only).then_some(Action::Switchover { to })
}

/// With a primary: fence any other writable server, bring every other server in line.
fn healthy(servers: &[ServerSeen], p: usize) -> Vec<Action> {
    let mut out = Vec::new();
    for (i, sv) in servers.iter().enumerate() {
        if i == p || !sv.reachable {
            continue;
        }
        if !sv.read_only {
            out.push(Action::Fence(i));
        }
        let action = match &sv.replica {
            None => Some(Action::Rejoin {
                server: i,
                primary: p,
            }),
            Some(r) if DIVERGED_IO.contains(&r.io_errno) => Some(Action::Diverged {
                server: i,
                why: format!("its IO thread stopped with error {}", r.io_errno),
            }),
            Some(r) if r.sql_errno != 0 => Some(Action::Diverged {
                server: i,
                why: format!("its SQL thread stopped with error {}", r.sql_errno),
            }),
            Some(r) if r.master != Some(p) || r.io == Io::Stopped || !r.sql_running => {
                Some(Action::Rejoin {
                    server: i,
                    primary: p,
                })
            }
            Some(_) => None,
        };
        out.extend(action);
    }
    out
}

/// Without a primary: whether to fail over, and to whom.
fn lost(servers: &[ServerSeen], former: Option<usize>, s: &Settings) -> Option<Action> {
    let n = servers.len();
    let reachable = servers.iter().filter(|sv| sv.reachable).count();
    if 2 * reachable <= n {
        return None; // a minority must not pick a primary: the rest may have newer data
    }
    // The primary that was lost: the one this router last routed to, else the one most
    // replicas point at.
    let former = former.filter(|&f| f < n).or_else(|| {
        (0..n)
            .map(|m| (servers.iter().filter(|sv| sv.follows(m)).count(), m))
            .filter(|&(count, _)| count > 0)
            .max_by_key(|&(count, m)| (count, std::cmp::Reverse(m)))
            .map(|(_, m)| m)
    });
    let candidates: Vec<usize> = (0..n)
        .filter(|&i| {
            let sv = &servers[i];
            sv.reachable
                && sv
                    .replica
                    .as_ref()
                    .is_none_or(|r| r.sql_errno == 0 && !DIVERGED_IO.contains(&r.io_errno))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let failover = |reason: String| {
        Some(Action::Failover {
            from: former,
            candidates: candidates.clone(),
            reason,
        })
    };
    if servers.iter().filter(|sv| sv.writable()).count() > 1 {
        // Two writable servers and no replica to tell which is the primary: fence them all;
        // the next round promotes the most advanced.
        return failover("several writable servers and none is followed".into());
    }
    let Some(f) = former else {
        // Nothing replicates from anyone: a new cluster, or one whose every server was
        // restarted read-only.
        return failover("no primary and no replication".into());
    };
    let old = &servers[f];
    if old.reachable {
        let replicating = old.replica.as_ref().is_some_and(|r| r.io != Io::Stopped);
        if old.read_only && !replicating {
            return failover(format!(
                "db server {f} is back but read-only (restarted in place)"
            ));
        }
        return None; // a replica again, or writable (elect will take it when unopposed)
    }
    if old.failures < s.detect_probes {
        return None; // a hiccup until proven otherwise
    }
    if servers.iter().any(|sv| sv.hears(f, s.silence)) {
        return None; // a replica still receives from it: the router's link is the problem
    }
    failover(format!(
        "db server {f} missed {} probes in a row and its replicas confirm it is gone",
        old.failures
    ))
}

/// A lock of the managers (`GET_LOCK('hapress_topology')`) on one server, as this router sees
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lock {
    /// Not known (the server does not answer).
    #[default]
    Unknown,
    /// Nobody holds it.
    Free,
    /// This router holds it.
    Mine,
    /// Another connection holds it.
    Other,
}

/// What this router does about the locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// It holds a majority of all servers' locks: it acts.
    Leader,
    /// Try to take these free locks, in this order (stop at the first refused).
    Acquire(Vec<usize>),
    /// Another router holds some: give back what this one holds.
    Release,
    /// Nothing to do.
    Wait,
}

/// MaxScale's `cooperative_monitoring_locks=majority_of_all`: a router acts only while it holds
/// the lock on a majority of all the servers. Each lock lives in one server's memory and can
/// have one holder, so two routers can never both hold a majority. Locks are taken in server
/// order, so routers that see the same servers do not split them between them; one that finds
/// a lock taken by another gives its own back.
pub fn leadership(locks: &[Lock]) -> Leadership {
    let mine = locks.iter().filter(|l| **l == Lock::Mine).count();
    if 2 * mine > locks.len() {
        return Leadership::Leader;
    }
    if locks.contains(&Lock::Other) {
        return if mine > 0 {
            Leadership::Release
        } else {
            Leadership::Wait
        };
    }
    let free: Vec<usize> = (0..locks.len())
        .filter(|&i| locks[i] == Lock::Free)
        .collect();
    if free.is_empty() {
        Leadership::Wait
    } else {
        Leadership::Acquire(free)
    }
}

#[cfg(test)]
mod tests;
