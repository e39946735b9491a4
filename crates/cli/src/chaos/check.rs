//! What a round of the drill proved: every acknowledged row on the primary, none twice, every
//! server with the same rows and the same GTID position; and how long writes were unavailable.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hapress_local::layout::{db_name, Layout};

use super::workload::{self, Seen, Target};
use super::Fault;

/// How long the servers may take to apply everything the primary has.
const CATCH_UP: Duration = Duration::from_secs(30);

/// One round's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundResult {
    /// The round number (the rows' `round` column).
    pub round: u32,
    /// The fault.
    pub fault: String,
    /// Primary before and after.
    pub from: String,
    /// Primary after.
    pub to: String,
    /// Rows acknowledged to the writers.
    pub acked: usize,
    /// Acknowledged rows missing on the primary afterwards.
    pub lost: usize,
    /// Rows present more than once.
    pub duplicated: usize,
    /// Servers whose rows or GTID position differ from the primary's afterwards.
    pub diverged: usize,
    /// Fault -> first write acknowledged after it.
    pub unavailable_ms: Option<u64>,
    /// Fault -> the cluster whole again (every server replicating).
    pub recovered_ms: Option<u64>,
    /// Reads that succeeded, of all reads.
    pub reads_ok: usize,
    /// All reads.
    pub reads: usize,
    /// Writes and logins that failed (expected around the fault).
    pub write_errors: u64,
    /// What went wrong checking, if anything.
    pub problem: Option<String>,
    /// Worth knowing, not wrong (the cluster changed once more after it first recovered).
    pub remark: Option<String>,
}

/// A fault's name as the table shows it.
fn fault_name(f: Fault) -> String {
    format!("{f:?}").to_lowercase()
}

impl RoundResult {
    /// Nothing lost, run twice or diverged, and the cluster recovered; a planned switchover
    /// also fails no statement.
    pub fn clean(&self) -> bool {
        (self.fault != "switchover" || self.write_errors == 0)
            && self.lost == 0
            && self.duplicated == 0
            && self.diverged == 0
            && self.recovered_ms.is_some()
            && self.problem.is_none()
    }

    /// The round as a line of the table.
    pub fn row(&self) -> String {
        let ms =
            |v: Option<u64>| v.map_or("timeout".into(), |v| format!("{:.2}s", v as f64 / 1000.0));
        let mut s = format!(
            "{:>5}  {:<10}  {:<4} -> {:<4}  {:>6}  {:>4}  {:>10}  {:>8}  {:>11}  {:>9}  {:>6.1}%  {:>6}",
            self.round,
            self.fault,
            self.from,
            self.to,
            self.acked,
            self.lost,
            self.duplicated,
            self.diverged,
            ms(self.unavailable_ms),
            ms(self.recovered_ms),
            if self.reads == 0 {
                100.0
            } else {
                100.0 * self.reads_ok as f64 / self.reads as f64
            },
            self.write_errors,
        );
        if let Some(p) = &self.problem {
            let _ = write!(s, "  !! {p}");
        }
        if let Some(r) = &self.remark {
            let _ = write!(s, "  -- {r}");
        }
        s
    }
}

/// The table's header.
pub const HEADER: &str =
    "round  fault       primary       acked  lost  duplicated  diverged  unavailable  recovered  reads ok  failed";

/// Medians and worst cases over all rounds.
pub fn summary(results: &[RoundResult]) -> String {
    let mut un: Vec<u64> = results.iter().filter_map(|r| r.unavailable_ms).collect();
    un.sort_unstable();
    let median = un.get(un.len() / 2).copied();
    let worst = un.last().copied();
    let sum = |f: fn(&RoundResult) -> usize| results.iter().map(f).sum::<usize>();
    let (reads_ok, reads) = (sum(|r| r.reads_ok), sum(|r| r.reads));
    format!(
        "{} rounds: {} acknowledged writes, {} lost, {} duplicated, {} diverged servers, {} rounds did not recover\n\
         write unavailability: median {}, worst {}; reads through the router: {:.2}% of {} succeeded\n{}",
        results.len(),
        sum(|r| r.acked),
        sum(|r| r.lost),
        sum(|r| r.duplicated),
        sum(|r| r.diverged),
        results.iter().filter(|r| r.recovered_ms.is_none()).count(),
        median.map_or("-".into(), |v| format!("{:.2}s", v as f64 / 1000.0)),
        worst.map_or("-".into(), |v| format!("{:.2}s", v as f64 / 1000.0)),
        if reads == 0 { 100.0 } else { 100.0 * reads_ok as f64 / reads as f64 },
        reads,
        if results.iter().all(RoundResult::clean) { "PASS" } else { "FAIL" }
    )
}

/// Checks round `round` once the cluster recovered.
#[allow(clippy::too_many_arguments)] // the round's facts, each distinct
pub async fn round(
    layout: &Layout,
    target: &Arc<Target>,
    round: u32,
    fault: Fault,
    old: u32,
    new: Option<u32>,
    fault_at: Instant,
    recovered: Option<Duration>,
    seen: Seen,
    (note, remark): (Option<String>, Option<String>),
) -> anyhow::Result<RoundResult> {
    let mut r = RoundResult {
        round,
        fault: fault_name(fault),
        from: db_name(old),
        to: new.map_or("none".into(), db_name),
        acked: seen.acked.len(),
        lost: 0,
        duplicated: 0,
        diverged: 0,
        // The first write sent after the fault and acknowledged (one in flight at the fault
        // may be acknowledged by the dying server).
        unavailable_ms: seen
            .acked
            .iter()
            .filter(|a| a.2 > fault_at)
            .map(|a| a.3.duration_since(fault_at))
            .min()
            .map(|d| d.as_millis() as u64),
        recovered_ms: recovered.map(|d| d.as_millis() as u64),
        reads_ok: seen.reads.iter().filter(|r| r.0).count(),
        reads: seen.reads.len(),
        write_errors: seen.write_errors,
        problem: note,
        remark,
    };
    let Some(p) = new else {
        r.problem = Some("no primary after the round".into());
        return Ok(r);
    };
    match compare(layout, target, round, p).await {
        Ok((rows, diverged)) => {
            r.diverged = diverged.len();
            if !diverged.is_empty() && r.problem.is_none() {
                r.problem = Some(diverged.join("; "));
            }
            r.duplicated = rows.values().filter(|n| **n > 1).count();
            let present: HashSet<(u32, u64)> = rows.keys().copied().collect();
            r.lost = seen
                .acked
                .iter()
                .filter(|a| !present.contains(&(a.0, a.1)))
                .count();
        }
        Err(e) => r.problem = Some(e),
    }
    Ok(r)
}

/// The primary's rows of the round (`(writer, seq)` -> copies), and the other servers that
/// differ from it once they applied all it has (with how).
async fn compare(
    layout: &Layout,
    target: &Arc<Target>,
    round: u32,
    p: u32,
) -> Result<(BTreeMap<(u32, u64), u64>, Vec<String>), String> {
    let socket = |i: u32| layout.db_socket(i).display().to_string();
    let mut pc = target.connect(&socket(p)).await?;
    let pos = value(&mut pc, "SELECT @@gtid_current_pos AS v").await?;
    let rows = rows_of(&mut pc, round).await?;
    let mut diverged = Vec::new();
    let n = (0..).take_while(|&i| layout.db_config(i).exists()).count() as u32;
    for i in (0..n).filter(|&i| i != p) {
        let same = async {
            let mut c = target.connect(&socket(i)).await?;
            let waited = value(
                &mut c,
                &format!(
                    "SELECT MASTER_GTID_WAIT('{pos}', {}) AS v",
                    CATCH_UP.as_secs()
                ),
            )
            .await?;
            let theirs = value(&mut c, "SELECT @@gtid_current_pos AS v").await?;
            let their_rows = rows_of(&mut c, round).await?;
            let mut how = Vec::new();
            if waited != "0" {
                how.push(format!(
                    "did not reach the primary's {pos} within {CATCH_UP:?}"
                ));
            }
            if theirs != pos {
                how.push(format!("is at {theirs}"));
            }
            if their_rows != rows {
                how.push(format!(
                    "has {} rows of the round, the primary {}",
                    their_rows.len(),
                    rows.len()
                ));
            }
            Ok::<Vec<String>, String>(how)
        }
        .await;
        match same {
            Ok(how) if how.is_empty() => {}
            Ok(how) => diverged.push(format!("{} {}", db_name(i), how.join(", "))),
            Err(e) => diverged.push(format!("{}: {e}", db_name(i))),
        }
    }
    Ok((rows, diverged))
}

async fn value(c: &mut hapress_router::conn::Conn, q: &str) -> Result<String, String> {
    Ok(workload::sql(c, q)
        .await?
        .get(0, "v")
        .unwrap_or_default()
        .to_string())
}

async fn rows_of(
    c: &mut hapress_router::conn::Conn,
    round: u32,
) -> Result<BTreeMap<(u32, u64), u64>, String> {
    let r = workload::sql(
        c,
        &format!(
            "SELECT writer AS w, seq AS s, COUNT(*) AS n FROM hapress_chaos WHERE round = {round} GROUP BY writer, seq"
        ),
    )
    .await?;
    Ok((0..r.rows.len())
        .filter_map(|i| {
            Some((
                (r.get(i, "w")?.parse().ok()?, r.get(i, "s")?.parse().ok()?),
                r.get(i, "n")?.parse().ok()?,
            ))
        })
        .collect())
}
