//! Rebuilding a database server that cannot replicate any more (it diverged: transactions the
//! primary never had) or lost its data directory: a copy of a healthy server made with
//! `mariadb-backup --backup --stream`, prepared, moved into place, then started as a replica
//! from the copy's GTID position. Nothing is deleted: the old data directory is kept aside as
//! `db-N.diverged-<unix time>` and reported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hapress_spec::WordPressClusterSpec;

use crate::error::{step_error, IoContext, Result};
use crate::layout::{db_name, Layout};
use crate::preflight::Tools;
use crate::process::dies_with_starter;
use crate::status::now_unix;

/// Where the old data directory of server `i` goes: beside its `db-N` directory, named
/// after the time (`-2`, `-3`... when that name is taken: two rebuilds in one second).
pub fn aside_dir(layout: &Layout, i: u32, at: u64) -> PathBuf {
    let name = format!("{}.diverged-{at}", db_name(i));
    (1..)
        .map(|n| match n {
            1 => layout.root.join(&name),
            n => layout.root.join(format!("{name}-{n}")),
        })
        .find(|p| !p.exists())
        .expect("an endless range")
}

/// A copy that writes nothing for this long is given up and tried again later: its source
/// hangs, or `mariadb-backup` waits for a lock there that is not released.
pub const STALL: Duration = Duration::from_secs(120);

/// Copies server `source` (running) into server `i`'s data directory (its server stopped),
/// keeping the old one aside. Returns the copy's GTID position and where the old data went
/// (`None`: there was none). The copy is stopped, and an error returned, when it makes no
/// progress for `stall` or when `stop` is set (the supervisor is stopping).
pub fn clone_into(
    tools: &Tools,
    layout: &Layout,
    source: u32,
    i: u32,
    stop: &AtomicBool,
    stall: Duration,
) -> Result<(String, Option<PathBuf>)> {
    let data = layout.db_data(i);
    let aside = if data.exists() {
        let to = aside_dir(layout, i, now_unix());
        fs::rename(&data, &to).context(|| format!("moving {} aside", data.display()))?;
        Some(to)
    } else {
        None
    };
    let work = layout.db_dir(i).join("data.cloning");
    if work.exists() {
        fs::remove_dir_all(&work).context(|| format!("removing unfinished {}", work.display()))?;
    }
    crate::fsutil::create_dir(&work, 0o700)?;
    let log = layout.log(&format!("db-{i}-rebuild.log"));
    let err = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .context(|| format!("opening {}", log.display()))
    };
    let (backup_err, unpack_err) = (err()?, err()?);
    let user = crate::mariadb::os_user();
    // The backup streams from the source's socket (the OS user's socket login: no password
    // anywhere) straight into the new directory. The copy's processes die with the thread
    // that runs it: a killed supervisor leaves none behind.
    let mut backup = dies_with_starter(&tools.mariadb_backup)
        .arg("--backup")
        .arg("--stream=xbstream")
        .arg(format!("--socket={}", layout.db_socket(source).display()))
        .arg(format!("--user={user}"))
        .arg(format!("--target-dir={}", layout.db_tmp(i).display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(backup_err)
        .spawn()
        .context(|| format!("running {}", tools.mariadb_backup.display()))?;
    let stream = backup
        .stdout
        .take()
        .ok_or_else(|| step_error("rebuilding", "no backup stream"))?;
    let unpack = dies_with_starter(&tools.mbstream)
        .arg("-x")
        .arg("-C")
        .arg(&work)
        .stdin(stream)
        .stdout(Stdio::null())
        .stderr(unpack_err)
        .spawn()
        .context(|| format!("running {}", tools.mbstream.display()));
    let mut unpack = match unpack {
        Ok(c) => c,
        Err(e) => {
            end(&mut backup);
            return Err(e);
        }
    };
    let kept = aside
        .as_ref()
        .map(|a| format!("; !! its old data is kept in {}", a.display()))
        .unwrap_or_default();
    let failed = |what: &str| {
        step_error(
            &format!("rebuilding {}", db_name(i)),
            format!("{what}; see {}{kept}", log.display()),
        )
    };
    let stopped = "the copy was stopped (hapress is stopping)";
    let (backed_up, unpacked) = match watch(&mut backup, &mut unpack, &[&work, &log], stop, stall)? {
        Watched::Exited(b, u) => (b, u),
        Watched::Stopped => return Err(failed(stopped)),
        Watched::Stalled => {
            return Err(failed(&format!(
                "the copy from {} made no progress for {} s (the server hangs, or mariadb-backup waits for a lock there)",
                db_name(source),
                stall.as_secs()
            )))
        }
    };
    if !backed_up.success() || !unpacked.success() {
        return Err(failed("copying the data of the source server failed"));
    }
    let mut prepare = dies_with_starter(&tools.mariadb_backup)
        .arg("--prepare")
        .arg(format!("--target-dir={}", work.display()))
        .stdin(Stdio::null())
        .stdout(err()?)
        .stderr(err()?)
        .spawn()
        .context(|| "running mariadb-backup --prepare".into())?;
    // Local work (no stall limit), stopped with hapress: an unfinished copy is never moved in.
    let prepared = loop {
        if stop.load(Ordering::Relaxed) {
            end(&mut prepare);
            return Err(failed(stopped));
        }
        match prepare.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                end(&mut prepare);
                return Err(failed(&format!(
                    "waiting for mariadb-backup --prepare: {e}"
                )));
            }
        }
    };
    if !prepared.success() {
        return Err(failed("preparing the copy failed"));
    }
    let info = fs::read_to_string(work.join("mariadb_backup_binlog_info"))
        .or_else(|_| fs::read_to_string(work.join("xtrabackup_binlog_info")))
        .unwrap_or_default();
    if stop.load(Ordering::Relaxed) {
        return Err(failed(stopped));
    }
    fs::rename(&work, &data).context(|| format!("moving the copy into {}", data.display()))?;
    Ok((binlog_info_gtid(&info), aside))
}

/// How a copy's two processes ended.
enum Watched {
    Exited(ExitStatus, ExitStatus),
    Stopped,
    Stalled,
}

/// Waits for `backup` and `unpack` to exit while the files in `paths` grow; kills both when
/// they have not grown for `stall`, or when `stop` is set.
fn watch(
    backup: &mut Child,
    unpack: &mut Child,
    paths: &[&Path],
    stop: &AtomicBool,
    stall: Duration,
) -> Result<Watched> {
    let mut size = 0;
    let mut grew = Instant::now();
    let mut looked = Instant::now();
    loop {
        let (b, u) = (backup.try_wait(), unpack.try_wait());
        if let (Ok(Some(b)), Ok(Some(u))) = (&b, &u) {
            return Ok(Watched::Exited(*b, *u));
        }
        if let Err(e) = b.and(u) {
            end(backup);
            end(unpack);
            return Err(step_error(
                "rebuilding",
                format!("waiting for the copy: {e}"),
            ));
        }
        if stop.load(Ordering::Relaxed) || grew.elapsed() >= stall {
            end(backup);
            end(unpack);
            return Ok(if stop.load(Ordering::Relaxed) {
                Watched::Stopped
            } else {
                Watched::Stalled
            });
        }
        if looked.elapsed() >= Duration::from_secs(1) {
            looked = Instant::now();
            let now: u64 = paths.iter().map(|p| bytes_under(p)).sum();
            if now != size {
                size = now;
                grew = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills a child (if it still runs) and reaps it.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The bytes of the files under `path` (or of `path` itself).
fn bytes_under(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| bytes_under(&e.path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The GTID position in `mariadb_backup_binlog_info` (`file<TAB>position<TAB>gtid`).
pub fn binlog_info_gtid(info: &str) -> String {
    info.lines()
        .next()
        .and_then(|l| l.split('\t').nth(2))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The server to copy from: a replica that is caught up, else the primary.
pub fn source(spec: &WordPressClusterSpec, primary: u32, healthy: &[u32], i: u32) -> u32 {
    healthy
        .iter()
        .copied()
        .find(|&h| h != i && h != primary && h < spec.database.instances)
        .unwrap_or(primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copys_position_and_source() {
        assert_eq!(
            binlog_info_gtid("db-1-bin.000003\t1234\t0-2-77\n"),
            "0-2-77"
        );
        assert_eq!(binlog_info_gtid(""), "");
        let spec = WordPressClusterSpec::default();
        assert_eq!(source(&spec, 0, &[1, 2], 1), 2, "another healthy replica");
        assert_eq!(source(&spec, 0, &[1], 1), 0, "else the primary");
    }
}
