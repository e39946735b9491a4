//! The supervisor's live status (`run/status.json`) and how `hapress status` shows it.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hapress_contract::status::{Role, RouterStatus};
use serde::{Deserialize, Serialize};

use crate::mariadb::ReplicationState;

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One component as the supervisor sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `db-0`, `web-1`, `nginx`.
    pub name: String,
    /// `database`, `web` or `nginx`.
    pub kind: String,
    /// Process (group) id while running.
    pub pid: Option<u32>,
    /// Where it listens.
    pub address: String,
    /// `up`, `down`, `starting` or `restarting`.
    pub health: String,
    /// `primary`/`replica` for databases, `web`/`load-balancer` otherwise.
    pub role: String,
    /// Restarts after unexpected exits.
    pub restarts: u32,
    /// Live replication state (filled in by `hapress status`, not stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationState>,
    /// The SQL router's live view of its backends (filled in by `hapress status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterStatus>,
}

/// Something that happened: a death, a restart, a state change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Seconds since the epoch.
    pub at: u64,
    /// Component concerned.
    pub component: String,
    /// What happened.
    pub message: String,
}

/// The whole cluster's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Cluster name.
    pub cluster: String,
    /// `starting`, `running`, `stopping` or `stopped`.
    pub phase: String,
    /// Supervisor process id.
    pub supervisor_pid: u32,
    /// Whether the supervisor is alive (computed by `hapress status`).
    #[serde(default)]
    pub supervisor_running: bool,
    /// Site URL.
    pub url: String,
    /// When the supervisor last wrote this.
    pub updated_at: u64,
    /// Every component.
    pub components: Vec<ComponentStatus>,
    /// Most recent events, oldest first.
    pub events: Vec<Event>,
    /// Failovers the SQL router performed, oldest first (filled in by `hapress status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<hapress_topology::FailoverRecord>,
    /// What needs a person: data kept aside after a rebuild, servers that cannot replicate
    /// (filled in by `hapress status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<String>,
    /// What the page cache answered since the supervisor started (when it is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_cache: Option<PageCacheCounts>,
    /// What the object cache (Redis) did since Redis started (when it is on and answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_cache: Option<crate::redis::ObjectCacheStats>,
}

/// Answers of the page cache, by nginx's `$upstream_cache_status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PageCacheCounts {
    /// Served from the cache.
    pub hit: u64,
    /// Rendered by PHP and stored (or not, when the answer said so).
    pub miss: u64,
    /// Never cached (a logged-in user, the admin, a POST...).
    pub bypass: u64,
    /// Rendered again because the copy had expired.
    pub expired: u64,
    /// An old copy while PHP failed, or while another request renders it again.
    pub stale: u64,
}

impl PageCacheCounts {
    /// Counts the lines of nginx's page-cache log (one status per request; PHP requests
    /// nginx never consulted the cache for, such as POSTs, log `-`).
    pub fn count(&mut self, log: &str) {
        for line in log.lines() {
            match line.trim() {
                "HIT" => self.hit += 1,
                "MISS" => self.miss += 1,
                "BYPASS" | "" | "-" => self.bypass += 1,
                "EXPIRED" | "REVALIDATED" => self.expired += 1,
                "STALE" | "UPDATING" => self.stale += 1,
                _ => {}
            }
        }
    }
}

/// nginx's page-cache log (one `$upstream_cache_status` a line), counted as it grows.
#[derive(Debug)]
pub struct PageCacheLog {
    path: std::path::PathBuf,
    read: u64,
    /// Everything counted so far.
    pub counts: PageCacheCounts,
}

impl PageCacheLog {
    /// Counts what is logged at `path` from now on.
    pub fn new(path: std::path::PathBuf) -> Self {
        let read = std::fs::metadata(&path).map_or(0, |m| m.len());
        Self {
            path,
            read,
            counts: PageCacheCounts::default(),
        }
    }

    /// Counts the complete lines logged since the last call. Past 16 MB the log is emptied
    /// (nginx appends, so it goes on at the start; a line written between the read and the
    /// trim is not counted).
    pub fn update(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < self.read {
            self.read = 0; // emptied or replaced
        }
        let mut text = String::new();
        if f.seek(SeekFrom::Start(self.read)).is_err() || f.read_to_string(&mut text).is_err() {
            return;
        }
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        self.counts.count(&text[..complete]);
        self.read += complete as u64;
        if self.read > 16 << 20 && f.set_len(0).is_ok() {
            self.read = 0;
        }
    }
}

/// What needs a person's attention in a state directory: data directories kept aside by a
/// rebuild, and servers the router reports as diverged.
pub fn attention(layout: &crate::layout::Layout, router: Option<&RouterStatus>) -> Vec<String> {
    let mut out = Vec::new();
    let mut aside: Vec<String> = std::fs::read_dir(&layout.root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("db-") && n.contains(".diverged-"))
        .collect();
    aside.sort();
    for n in aside {
        out.push(format!(
            "{n}: the data of {} before it was rebuilt; inspect it (it may hold transactions no replica had), then delete it",
            n.split('.').next().unwrap_or(&n)
        ));
    }
    for (server, why) in router.map_or(&[][..], |r| &r.manager.diverged[..]) {
        out.push(format!(
            "{server} cannot replicate ({why}): it is being rebuilt"
        ));
    }
    out
}

fn replication_cell(r: &ReplicationState) -> String {
    let mut s = String::new();
    if r.role == "replica" {
        let _ = write!(
            s,
            "io={} sql={} lag={} ",
            r.io_running.as_deref().unwrap_or("-"),
            r.sql_running.as_deref().unwrap_or("-"),
            r.seconds_behind.map_or("-".into(), |l| format!("{l}s")),
        );
    }
    let _ = write!(
        s,
        "gtid={} semi-sync={}",
        if r.gtid_current_pos.is_empty() {
            "-"
        } else {
            &r.gtid_current_pos
        },
        if r.semi_sync { "on" } else { "off" }
    );
    if let Some(c) = r.semi_sync_clients {
        let _ = write!(s, " ({c} acking)");
    }
    if let Some(e) = &r.last_error {
        let _ = write!(s, " error: {e}");
    }
    s
}

/// Renders the status as one table plus recent events.
pub fn render_table(st: &ClusterStatus) -> String {
    let mut out = format!(
        "cluster {}  {}  supervisor {}\n\n",
        st.cluster,
        st.url,
        if st.supervisor_running {
            format!("pid {} ({})", st.supervisor_pid, st.phase)
        } else {
            "not running".into()
        },
    );
    let header = [
        "COMPONENT",
        "PID",
        "ADDRESS",
        "HEALTH",
        "ROLE",
        "RESTARTS",
        "REPLICATION",
    ];
    let rows: Vec<[String; 7]> = st
        .components
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.pid.map_or("-".into(), |p| p.to_string()),
                c.address.clone(),
                c.health.clone(),
                c.role.clone(),
                c.restarts.to_string(),
                c.replication.as_ref().map_or_else(
                    || c.router.as_ref().map_or(String::new(), router_cell),
                    replication_cell,
                ),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    if let Some(pc) = &st.page_cache {
        let cacheable = pc.hit + pc.miss + pc.expired + pc.stale;
        let _ = writeln!(
            out,
            "\npage cache: {} hits of {cacheable} cacheable requests ({:.1}%), {} misses, {} expired, {} stale; {} bypassed",
            pc.hit,
            percent(pc.hit, cacheable),
            pc.miss,
            pc.expired,
            pc.stale,
            pc.bypass,
        );
    }
    if let Some(oc) = &st.object_cache {
        let lookups = oc.hits + oc.misses;
        let _ = writeln!(
            out,
            "{}object cache: {} hits of {lookups} lookups ({:.1}%), {} entries, {:.1} MiB, {} evicted",
            if st.page_cache.is_some() { "" } else { "\n" },
            oc.hits,
            percent(oc.hits, lookups),
            oc.keys,
            oc.used_memory as f64 / f64::from(1 << 20),
            oc.evicted,
        );
    }
    if !st.failovers.is_empty() {
        out.push_str("\nfailovers:\n");
        for f in st.failovers.iter().rev().take(5).rev() {
            let ago = now_unix().saturating_sub(f.at);
            let _ = writeln!(
                out,
                "  {ago:>5}s ago  {} -> {}: detected in {:.1}s, promoted in {} ms: {}",
                f.from.as_deref().map_or("-", short_address),
                short_address(&f.to),
                f.detected_ms as f64 / 1000.0,
                f.took_ms,
                f.reason
            );
        }
    }
    if !st.attention.is_empty() {
        out.push_str("\nneeds attention:\n");
        for a in &st.attention {
            let _ = writeln!(out, "  !! {a}");
        }
    }
    if !st.events.is_empty() {
        out.push_str("\nrecent events:\n");
        for e in st.events.iter().rev().take(10).rev() {
            let ago = now_unix().saturating_sub(e.at);
            let _ = writeln!(out, "  {ago:>5}s ago  {:<8} {}", e.component, e.message);
        }
    }
    out
}

/// The SQL router's own view (`/status` on its HTTP unix socket), if it answers within 500 ms.
pub fn router_status(layout: &crate::layout::Layout) -> Option<RouterStatus> {
    router_request(
        layout,
        "GET",
        "/status",
        std::time::Duration::from_millis(500),
    )
}

/// One request to the SQL router's HTTP unix socket; its JSON answer, if any within `timeout`.
pub fn router_request<T: serde::de::DeserializeOwned>(
    layout: &crate::layout::Layout,
    method: &str,
    path: &str,
    timeout: std::time::Duration,
) -> Option<T> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(layout.router_status_socket()).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let body = resp.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body).ok()
}

/// `primary=db-0 readers=2 routed primary=721 replicas=120`, then what a probe of a backend
/// failed on, if anything (`; db-0: SHOW SLAVE STATUS: 1227 ...`).
fn router_cell(r: &RouterStatus) -> String {
    let readers = r
        .backends
        .iter()
        .filter(|b| b.role == Role::Replica && b.replicating)
        .count();
    let mut cell = format!(
        "primary={} readers={readers} routed primary={} replicas={}",
        r.primary.as_deref().map_or("none", short_address),
        r.routed_to_primary,
        r.routed_to_replicas,
    );
    for b in &r.backends {
        if let Some(e) = &b.error {
            cell.push_str(&format!("; {}: {e}", short_address(&b.address)));
        }
    }
    cell
}

/// A backend as the status table names it: `db-0` for the embedded router's
/// `…/run/db-0.sock`, any other address as it is.
fn short_address(addr: &str) -> &str {
    std::path::Path::new(addr)
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_suffix(".sock"))
        .unwrap_or(addr)
}

/// `part` of `whole` in percent (0 of nothing).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_cache_counts_follow_nginx_statuses() {
        let mut c = PageCacheCounts::default();
        c.count("HIT\nHIT\nMISS\n-\nBYPASS\nEXPIRED\nUPDATING\nSTALE\nREVALIDATED\n");
        assert_eq!(
            c,
            PageCacheCounts {
                hit: 2,
                miss: 1,
                bypass: 2,
                expired: 2,
                stale: 2,
            }
        );
    }

    use super::*;
    use hapress_contract::status::BackendStatus;

    #[test]
    fn router_cell_shows_roles_counts_and_probe_errors() {
        let backend = |address: &str, role, replicating, error: Option<&str>| BackendStatus {
            address: address.into(),
            role,
            replicating,
            error: error.map(str::to_string),
            ..BackendStatus::default()
        };
        let r = RouterStatus {
            primary: Some("127.0.0.1:13306".into()),
            routed_to_primary: 7,
            routed_to_replicas: 9,
            backends: vec![
                backend(
                    "127.0.0.1:13306",
                    Role::Primary,
                    false,
                    Some("SHOW SLAVE STATUS: 1227 Access denied"),
                ),
                backend("127.0.0.1:13307", Role::Replica, true, None),
                backend("127.0.0.1:13308", Role::Replica, false, None),
            ],
            ..RouterStatus::default()
        };
        assert_eq!(
            router_cell(&r),
            "primary=127.0.0.1:13306 readers=1 routed primary=7 replicas=9; 127.0.0.1:13306: SHOW SLAVE STATUS: 1227 Access denied"
        );
        let r = RouterStatus {
            primary: Some("/var/lib/hapress/default/run/db-1.sock".into()),
            routed_to_primary: 1,
            backends: vec![backend(
                "/var/lib/hapress/default/run/db-0.sock",
                Role::Down,
                false,
                Some("connect: No such file or directory"),
            )],
            ..RouterStatus::default()
        };
        assert_eq!(
            router_cell(&r),
            "primary=db-1 readers=0 routed primary=1 replicas=0; db-0: connect: No such file or directory"
        );
        assert_eq!(
            router_cell(&RouterStatus::default()),
            "primary=none readers=0 routed primary=0 replicas=0"
        );
    }
}
