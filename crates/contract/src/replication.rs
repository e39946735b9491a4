//! The `my.cnf` settings that replication, read-your-writes and lossless failover rely on
//! (FIELD-NOTES has the measurements behind them), written by both runtimes: `hapress up` into
//! each server's `my.cnf`, `hapress render` into the database ConfigMap's `base.cnf`.

use std::fmt::Write as _;

/// One `my.cnf` setting and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// Why, written as a comment above it (empty: no comment).
    pub why: &'static str,
}

fn setting(name: &'static str, value: impl ToString, why: &'static str) -> Setting {
    Setting {
        name,
        value: value.to_string(),
        why,
    }
}

/// MariaDB's default `session_track_system_variables` plus `last_gtid`: the SQL router reads
/// each write's GTID from the OK packet and lets a replica wait for it (read-your-writes
/// without the primary).
pub const SESSION_TRACK_SYSTEM_VARIABLES: &str =
    "autocommit,character_set_client,character_set_connection,character_set_results,time_zone,last_gtid";

/// Semi-synchronous replication, when on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemiSync {
    /// `rpl_semi_sync_master_timeout`, milliseconds.
    pub timeout_ms: u64,
    /// After the timeout the primary goes on asynchronously (else it never does: the timeout
    /// is as long as MariaDB allows).
    pub fallback_to_async: bool,
}

/// Durability, every server in either mode: an acknowledged commit is on disk and row-logged.
pub fn durability() -> Vec<Setting> {
    vec![
        setting(
            "binlog_format",
            "ROW",
            "Durability: an acknowledged commit is on disk, and logged by row.",
        ),
        setting("innodb_flush_log_at_trx_commit", 1, ""),
    ]
}

/// Every server of a replicated cluster, primary or replica: every server logs and replicas
/// re-log (so any can be promoted), GTIDs are strict, a commit is in the binary log before it is
/// acknowledged, a crashed server comes back as a replica, and semi-sync when asked. The
/// primary side of semi-sync stays off here: it is turned on by SQL on the server that takes
/// writes (on a replica it makes the SQL thread wait out the timeout for every transaction it
/// applies, measured with `hapress up`).
pub fn replication(semi_sync: Option<SemiSync>) -> Vec<Setting> {
    let mut s = vec![
        setting(
            "log_slave_updates",
            "ON",
            "Replication that survives failover: replicas re-log (any can be promoted), GTIDs are strict, a commit is in the binary log before it is acknowledged.",
        ),
        setting("gtid_strict_mode", "ON", ""),
        setting("sync_binlog", 1, ""),
        setting(
            "init_rpl_role",
            "SLAVE",
            "A server that crashed restarts as a replica: recovery truncates binlogged transactions no replica acknowledged (never acknowledged to a client either), so a rejoining ex-primary never diverges (FIELD-NOTES: 0 of 8 rejoins with errant GTIDs with it, 7 of 9 without).",
        ),
    ];
    if let Some(ss) = semi_sync {
        s.extend([
            setting(
                "rpl_semi_sync_master_enabled",
                "OFF",
                "Semi-synchronous: a commit returns once a replica has it (AFTER_SYNC: before the primary's own commit becomes visible). The primary side is turned on by SQL on the server that takes writes.",
            ),
            setting("rpl_semi_sync_slave_enabled", "ON", ""),
            setting("rpl_semi_sync_master_wait_point", "AFTER_SYNC", ""),
            setting(
                "rpl_semi_sync_master_timeout",
                ss.timeout_ms,
                if ss.fallback_to_async {
                    "Asynchronous after the timeout."
                } else {
                    "Never asynchronous (no fallback: a failover loses nothing)."
                },
            ),
        ]);
    }
    s
}

/// `settings` as `my.cnf` lines (`name = value`), each preceded by its reason as a comment.
pub fn write_cnf(out: &mut String, settings: &[Setting]) {
    for s in settings {
        // The reason, wrapped at 96 columns.
        let mut line = String::new();
        for word in s.why.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > 94 {
                let _ = writeln!(out, "# {line}");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(out, "{} = {}", s.name, s.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semi_sync_adds_its_settings_with_the_primary_side_off() {
        let plain = replication(None);
        assert!(plain.iter().all(|s| !s.name.starts_with("rpl_semi_sync")));
        let ss = replication(Some(SemiSync {
            timeout_ms: 10,
            fallback_to_async: true,
        }));
        let mut text = String::new();
        write_cnf(&mut text, &ss);
        assert!(text.contains("\nrpl_semi_sync_master_enabled = OFF\n"));
        assert!(text.contains("\nrpl_semi_sync_master_timeout = 10\n"));
        assert!(text.contains("\ngtid_strict_mode = ON\n"));
        assert!(text
            .lines()
            .all(|l| l.starts_with("# ") || l.contains(" = ")));
        assert!(text.lines().all(|l| l.len() <= 96), "{text}");
    }
}
