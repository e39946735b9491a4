//! The prober: one task per backend that reads, every `probeIntervalMs`, what the routing and
//! the topology decisions need of it (role, GTID positions, replication threads, whether its
//! IO thread still receives), and from the primary the password hashes the router checks
//! logins with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hapress_wire::consts::cap;
use hapress_wire::handshake::{parse_stage2_hex, HandshakeResponse};

use crate::config::Config;
use crate::conn::{login, query, Conn, Credential, Rows};
use crate::topology::{Probe, ReplicaStatus, Topology};
use hapress_topology::decide::Io;
use hapress_topology::gtid::gtid_covers;

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

/// A new connection to `addr` logged in as the monitor account, within `timeout` (a server
/// that accepts connections but never greets, as a stopped process does, times out).
pub async fn connect_monitor(
    addr: &str,
    config: &Config,
    password: &[u8],
    timeout: Duration,
) -> Result<Conn, String> {
    let work = async {
        let mut c = Conn::connect(addr, timeout)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        login(
            &mut c,
            config.monitor_user.as_bytes(),
            &Credential::Password(password.to_vec()),
            &monitor_template(),
        )
        .await
        .map_err(|e| format!("login to {addr} as {}: {e}", config.monitor_user))?;
        Ok::<Conn, String>(c)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no login to {addr} within {timeout:?}"))?
}

/// Runs `sql` on `c` within `timeout`; the server's refusal is an error too.
pub async fn run(c: &mut Conn, sql: &str, timeout: Duration) -> Result<Rows, String> {
    tokio::time::timeout(timeout, query(c, sql, false))
        .await
        .map_err(|_| format!("no answer within {timeout:?} to {}", short(sql)))?
        .map_err(|e| format!("{}: {e}", short(sql)))?
        .map_err(|(code, m)| format!("{}: {code} {m}", short(sql)))
}

/// The start of a statement, for messages.
fn short(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// Probes backend `i` forever.
pub async fn probe_loop(topo: Arc<Topology>, config: Arc<Config>, i: usize, password: Vec<u8>) {
    let interval = Duration::from_millis(config.probe_interval_ms);
    let timeout = Duration::from_millis(config.probe_timeout_ms);
    let mut conn: Option<Conn> = None;
    loop {
        if let Err(e) = probe_once(&topo, &config, i, &password, &mut conn, timeout).await {
            conn = None;
            topo.probe_failed(i, e);
        }
        topo.elect();
        topo.backends[i]
            .pool
            .reap(Duration::from_millis(config.pool_idle_timeout_ms));
        tokio::time::sleep(interval).await;
    }
}

/// What the probe asks every server.
const VARS_SQL: &str = "SELECT @@read_only AS ro, @@gtid_current_pos AS gtid, \
     @@init_connect <> '' AS ic, @@server_id AS sid, \
     (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
      WHERE VARIABLE_NAME = 'SLAVE_RECEIVED_HEARTBEATS') AS hb";

async fn probe_once(
    topo: &Topology,
    config: &Config,
    i: usize,
    password: &[u8],
    conn: &mut Option<Conn>,
    timeout: Duration,
) -> Result<(), String> {
    if conn.is_none() {
        *conn = Some(connect_monitor(&topo.backends[i].addr, config, password, timeout).await?);
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let started = Instant::now();
    let vars = run(c, VARS_SQL, timeout).await?;
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
    let replica = replica_status(&slave);
    let replicating = replica
        .as_ref()
        .is_some_and(|r| r.io == Io::Running && r.sql_running);
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
    // What the IO thread has received so far: heartbeats, and the events it read.
    let heard = format!(
        "{}/{}/{}",
        vars.get(0, "hb").unwrap_or(""),
        slave.get(0, "Read_Master_Log_Pos").unwrap_or(""),
        slave.get(0, "Gtid_IO_Pos").unwrap_or("")
    );
    topo.probed(
        i,
        Probe {
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
            server_id: vars.get(0, "sid").and_then(|s| s.parse().ok()).unwrap_or(0),
            replica,
            ..Probe::default()
        },
        heard,
        started,
    );
    Ok(())
}

/// A server's replication configuration and threads, from `SHOW SLAVE STATUS` (`None`: it has
/// none).
fn replica_status(slave: &Rows) -> Option<ReplicaStatus> {
    let host = slave.get(0, "Master_Host")?;
    let num = |k: &str| slave.get(0, k).and_then(|v| v.parse().ok()).unwrap_or(0);
    let errors: Vec<&str> = ["Last_IO_Error", "Last_SQL_Error"]
        .iter()
        .filter_map(|k| slave.get(0, k).filter(|v| !v.is_empty()))
        .collect();
    Some(ReplicaStatus {
        master: format!("{host}:{}", num("Master_Port")),
        io: Io::parse(slave.get(0, "Slave_IO_Running")),
        sql_running: slave.get(0, "Slave_SQL_Running") == Some("Yes"),
        io_errno: num("Last_IO_Errno"),
        sql_errno: num("Last_SQL_Errno"),
        last_error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
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
    topo.set_logins(users, checkable);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
