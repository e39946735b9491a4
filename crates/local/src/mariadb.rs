//! MariaDB servers: data directory creation, admin SQL over the unix socket, replication
//! bootstrap and replication status. Admin SQL goes to the `mariadb` client on stdin as the
//! socket-authenticated OS user, so no password ever appears on a command line.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{step_error, Error, IoContext, Result};
use crate::layout::Layout;
use crate::preflight::Tools;

/// Whether a server answers on its socket with a handshake (cheap: no login).
pub fn answers(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut header = [0u8; 5];
    // Packet header (4 bytes) then protocol version 10; an error packet starts with 0xff.
    s.read_exact(&mut header).is_ok() && header[4] == 10
}

/// Creates server `i`'s data directory if it does not exist. The install goes to a temp dir that
/// is renamed into place when complete, so an interrupted install is redone and an initialised
/// datadir is never touched.
pub fn init_datadir(tools: &Tools, layout: &Layout, i: u32) -> Result<bool> {
    let data = layout.db_data(i);
    if data.join("mysql").is_dir() {
        return Ok(false);
    }
    let tmp = layout.db_dir(i).join("data.initialising");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).context(|| format!("removing unfinished {}", tmp.display()))?;
    }
    let user = os_user();
    let log = layout.log(&format!("db-{i}-install.log"));
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .context(|| format!("creating {}", log.display()))?;
    let status = Command::new(&tools.mariadb_install_db)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", tmp.display()))
        .arg(format!("--tmpdir={}", layout.db_tmp(i).display()))
        .arg(format!("--user={user}"))
        .arg("--auth-root-authentication-method=socket")
        .arg("--skip-test-db")
        .stdin(Stdio::null())
        .stdout(out.try_clone().context(|| "dup log".into())?)
        .stderr(out)
        .status()
        .context(|| format!("running {}", tools.mariadb_install_db.display()))?;
    if !status.success() {
        return Err(step_error(
            &format!("initialising db-{i}"),
            format!(
                "mariadb-install-db exited with {status}; see {}",
                log.display()
            ),
        ));
    }
    fs::rename(&tmp, &data).context(|| format!("moving {} into place", tmp.display()))?;
    Ok(true)
}

/// The OS user hapress runs as: MariaDB's socket login (`unix_socket`) knows it by that name.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".into(), |u| u.name)
}

/// Waits until server `i` answers, or fails naming its error log.
pub fn wait_ready(
    layout: &Layout,
    i: u32,
    timeout: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> Result<()> {
    let start = Instant::now();
    let socket = layout.db_socket(i);
    while start.elapsed() < timeout {
        if answers(&socket) {
            return Ok(());
        }
        if !alive() {
            return Err(step_error(
                &format!("starting db-{i}"),
                format!(
                    "mariadbd exited; see {}",
                    layout.log(&format!("db-{i}.err")).display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(step_error(
        &format!("starting db-{i}"),
        format!(
            "no answer within {timeout:?}; see {}",
            layout.log(&format!("db-{i}.err")).display()
        ),
    ))
}

/// Runs admin SQL on a server as the socket-authenticated OS user; returns rows as
/// tab-separated fields (`-B -N`), `NULL` for nulls.
pub fn sql(tools: &Tools, socket: &Path, statements: &str) -> Result<Vec<Vec<String>>> {
    let text = sql_raw(tools, socket, &["-B", "-N"], statements)?;
    Ok(text
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

fn sql_raw(tools: &Tools, socket: &Path, flags: &[&str], statements: &str) -> Result<String> {
    let user = os_user();
    let mut child = Command::new(&tools.mariadb)
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--user={user}"))
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("running {}", tools.mariadb.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(statements.as_bytes())
            .context(|| "sending SQL".into())?;
    }
    let out = child
        .wait_with_output()
        .context(|| "waiting for mariadb client".into())?;
    if !out.status.success() {
        return Err(Error::Step {
            step: format!("SQL on {}", socket.display()),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Quotes a string literal for SQL (passwords are alphanumeric; this is belt and braces).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Replication and role of one server, as `hapress status` shows it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationState {
    /// `primary` (writable) or `replica` (read_only).
    pub role: String,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: String,
    /// Replica IO thread running (`Yes`/`No`/`Connecting`), replicas only.
    pub io_running: Option<String>,
    /// Replica SQL thread running, replicas only.
    pub sql_running: Option<String>,
    /// `Seconds_Behind_Master`, replicas only (`None` when unknown).
    pub seconds_behind: Option<u64>,
    /// Last IO or SQL error, if any.
    pub last_error: Option<String>,
    /// Semi-sync: primary side active (primary) or replica side enabled (replica).
    pub semi_sync: bool,
    /// Semi-sync replicas connected to this primary.
    pub semi_sync_clients: Option<u32>,
}

fn vertical(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Reads the role and replication state of the server behind `socket`.
pub fn replication_state(tools: &Tools, socket: &Path) -> Result<ReplicationState> {
    let text = sql_raw(
        tools,
        socket,
        &["-E"],
        "SELECT @@read_only AS ro, @@gtid_current_pos AS gtid, \
         (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_STATUS') AS ssm, \
         (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_CLIENTS') AS ssc, \
         (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_SLAVE_STATUS') AS sss;\nSHOW SLAVE STATUS;",
    )?;
    let f = vertical(&text);
    let get = |k: &str| {
        f.get(k)
            .filter(|v| v.as_str() != "NULL" && !v.is_empty())
            .cloned()
    };
    let replica = f.get("ro").is_some_and(|v| v == "1");
    let errors: Vec<String> = [get("Last_IO_Error"), get("Last_SQL_Error")]
        .into_iter()
        .flatten()
        .collect();
    Ok(ReplicationState {
        role: if replica { "replica" } else { "primary" }.into(),
        gtid_current_pos: get("gtid").unwrap_or_default(),
        io_running: get("Slave_IO_Running"),
        sql_running: get("Slave_SQL_Running"),
        seconds_behind: get("Seconds_Behind_Master").and_then(|v| v.parse().ok()),
        last_error: (!errors.is_empty()).then(|| errors.join("; ")),
        semi_sync: if replica {
            get("sss").as_deref() == Some("ON")
        } else {
            get("ssm").as_deref() == Some("ON")
        },
        semi_sync_clients: if replica {
            None
        } else {
            get("ssc").and_then(|v| v.parse().ok())
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertical_output_parses() {
        let m = vertical("*************************** 1. row ***************************\n  ro: 1\ngtid: 0-1-5\n*************************** 1. row ***************************\n   Slave_IO_Running: Yes\n   Last_IO_Error: \n");
        assert_eq!(m["ro"], "1");
        assert_eq!(m["gtid"], "0-1-5");
        assert_eq!(m["Slave_IO_Running"], "Yes");
    }
}
