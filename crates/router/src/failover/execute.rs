//! The actions of [`super::decide::plan`] as SQL, over the manager's own connection to each
//! server (the one that holds its lock). Every statement has a timeout: a server that hangs
//! must not hang the manager.

use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::probe::run;
use hapress_topology::gtid::{gtid_covers, most_advanced};

/// How long a candidate may take to apply the transactions it received before it is compared
/// with the others.
pub const RELAY_APPLY: Duration = Duration::from_secs(10);

/// What the executor needs to know about the cluster.
pub struct Cluster {
    /// Replication address (`host:port`) of every server.
    pub addresses: Vec<String>,
    /// The replication account.
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
    /// `MASTER_HEARTBEAT_PERIOD`.
    pub heartbeat: Duration,
    /// Turn semi-sync's primary side on when promoting.
    pub semi_sync: bool,
    /// Timeout of a quick statement.
    pub timeout: Duration,
}

/// Makes server `c` read-only and not a semi-sync primary. Commits of an old primary that wait
/// for an acknowledgement no replica will send (its replicas follow another server now) would
/// make `read_only = ON` wait forever, and turning semi-sync off would let them return success
/// to their clients: their sessions are killed first (the clients get an error, never an
/// acknowledgement; what they wrote stays in this server's binary log only and makes it a
/// diverged server to rebuild).
pub async fn fence(c: &mut Conn, k: &Cluster) -> Result<(), String> {
    kill_threads(c, k, "STATE LIKE 'Waiting for semi-sync ACK%'").await?;
    run(c, "SET GLOBAL read_only = ON", k.timeout).await?;
    run(
        c,
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
        k.timeout,
    )
    .await?;
    Ok(())
}

/// Ends a server's IO thread with a `KILL` of it, which is immediate even when the thread is
/// blocked reading from a hung primary. `STOP SLAVE IO_THREAD` is not: MariaDB re-signals the
/// thread every 2 s until it notices (measured: 2.0 s), and under write load it was seen
/// waiting longer still.
pub async fn kill_io(c: &mut Conn, k: &Cluster) -> Result<(), String> {
    kill_threads(c, k, "COMMAND = 'Slave_IO'").await
}

/// `KILL CONNECTION` of every thread of the server that matches `filter` (a condition on
/// `information_schema.PROCESSLIST`); one that ended meanwhile is no error.
async fn kill_threads(c: &mut Conn, k: &Cluster, filter: &str) -> Result<(), String> {
    let found = run(
        c,
        &format!("SELECT ID AS id FROM information_schema.PROCESSLIST WHERE {filter}"),
        k.timeout,
    )
    .await?;
    for i in 0..found.rows.len() {
        if let Some(id) = found.get(i, "id") {
            let _ = run(c, &format!("KILL CONNECTION {id}"), k.timeout).await;
        }
    }
    Ok(())
}

/// Ends a candidate's IO thread and waits until it applied all it had received; its
/// `@@gtid_current_pos` then.
pub async fn settle(c: &mut Conn, k: &Cluster, is_replica: bool) -> Result<String, String> {
    if is_replica {
        kill_io(c, k).await?;
        let st = run(c, "SHOW SLAVE STATUS", k.timeout).await?;
        let io_pos = st.get(0, "Gtid_IO_Pos").unwrap_or("").to_string();
        if !io_pos.is_empty() && st.get(0, "Slave_SQL_Running") == Some("Yes") {
            let wait = format!(
                "SELECT MASTER_GTID_WAIT({}, {})",
                quote(&io_pos),
                RELAY_APPLY.as_secs()
            );
            run(c, &wait, RELAY_APPLY + k.timeout).await?;
        }
    }
    let pos = run(c, "SELECT @@gtid_current_pos AS p", k.timeout).await?;
    Ok(pos.get(0, "p").unwrap_or("").to_string())
}

/// The candidate to promote: the most advanced, the lost primary among equals.
pub fn choose(positions: &[(usize, String)], from: Option<usize>) -> Option<usize> {
    most_advanced(positions, from)
}

/// Makes server `c` the primary: its SQL thread stopped (nothing more from the old primary is
/// applied), semi-sync's primary side on, writable. Its replication configuration is removed
/// afterwards by [`forget_master`], off the write path.
pub async fn promote(c: &mut Conn, k: &Cluster) -> Result<(), String> {
    kill_io(c, k).await?;
    run(c, "STOP SLAVE SQL_THREAD", k.timeout).await?;
    if k.semi_sync {
        run(c, "SET GLOBAL rpl_semi_sync_master_enabled = ON", k.timeout).await?;
    }
    run(c, "SET GLOBAL read_only = OFF", k.timeout).await?;
    Ok(())
}

/// Removes a promoted server's replication configuration (`STOP SLAVE` may wait for an IO
/// thread stuck on the old primary).
pub async fn forget_master(c: &mut Conn, k: &Cluster) -> Result<(), String> {
    run(c, "STOP SLAVE", STOP_SLAVE).await?;
    run(c, "RESET SLAVE ALL", k.timeout).await?;
    Ok(())
}

/// How long a `STOP SLAVE` may take (see [`kill_io`]).
const STOP_SLAVE: Duration = Duration::from_secs(15);

/// Makes server `c` a read-only replica of the server at replication address `primary`. A
/// server whose binary log has transactions its replica position lacks (an old primary) starts
/// from its binary log: its own transactions are then either in the new primary's history, or
/// errant, which the new primary refuses (error 1236) and the decisions report.
pub async fn rejoin(c: &mut Conn, k: &Cluster, primary: &str) -> Result<(), String> {
    let (host, port) = primary
        .rsplit_once(':')
        .ok_or_else(|| format!("replication address {primary:?} is not host:port"))?;
    fence(c, k).await?;
    kill_io(c, k).await?;
    run(c, "STOP SLAVE", STOP_SLAVE).await?;
    let pos = run(
        c,
        "SELECT @@gtid_binlog_pos AS b, @@gtid_slave_pos AS s",
        k.timeout,
    )
    .await?;
    let (b, s) = (pos.get(0, "b").unwrap_or(""), pos.get(0, "s").unwrap_or(""));
    if !b.is_empty() && !gtid_covers(s, b) {
        run(
            c,
            "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos",
            k.timeout,
        )
        .await?;
    }
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD={:.3}",
        quote(host),
        port.parse::<u16>()
            .map_err(|_| format!("replication address {primary:?}: bad port"))?,
        quote(&k.replication_user),
        quote(&k.replication_password),
        k.heartbeat.as_secs_f64()
    );
    if let Err(e) = run(c, &change, k.timeout).await {
        // 1201: a replication configuration file left half-written by a kill; dropping the
        // configuration and the relay logs (the position is kept in mysql.gtid_slave_pos)
        // repairs it.
        if !e.contains(": 1201 ") {
            return Err(e);
        }
        run(c, "RESET SLAVE ALL", k.timeout).await?;
        run(c, &change, k.timeout).await?;
    }
    run(c, "START SLAVE", k.timeout).await?;
    Ok(())
}

/// An SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_are_escaped() {
        assert_eq!(super::quote(r"a'b\c"), r"'a\'b\\c'");
    }
}
