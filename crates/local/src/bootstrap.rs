//! One-time database setup: accounts and the WordPress schema on the primary, replicas attached
//! with GTID. Every statement is idempotent, so an interrupted run is simply run again.

use std::time::Duration;

use hapress_spec::WordPressClusterSpec;

use crate::config::{account_host, db_port, heartbeat_seconds, replication_host};
use crate::error::{step_error, Result};
use crate::layout::Layout;
use crate::mariadb::{quote, sql};
use crate::preflight::Tools;
use crate::secrets::Secrets;

pub use hapress_contract::accounts::MONITOR_USER;
use hapress_contract::accounts::{MONITOR_GRANTS, REPLICATION_GRANTS};

/// The account replicas replicate with.
pub const REPLICATION_USER: &str = "repl";

/// What WordPress's account may do.
const WORDPRESS_GRANTS: &str = "ALL PRIVILEGES ON wordpress.*";

/// SQL that creates (or re-keys) account `user`@`host` with `password` and `grants`;
/// idempotent, so an interrupted `up` can run it again.
fn account(host: &str, user: &str, password: &str, grants: &[&str]) -> String {
    let pw = quote(password);
    let mut s = format!(
        "CREATE USER IF NOT EXISTS '{user}'@{host} IDENTIFIED BY {pw};\nALTER USER '{user}'@{host} IDENTIFIED BY {pw};\n"
    );
    for g in grants {
        s.push_str(&format!("GRANT {g} TO '{user}'@{host};\n"));
    }
    s
}

/// Creates accounts and the database on the primary, attaches every replica and waits until
/// each has applied everything the primary has.
pub fn replication(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    primary: u32,
) -> Result<()> {
    let host = quote(&account_host(spec));
    let semi_sync = spec.database.instances > 1 && spec.database.semi_sync.enabled;
    let psock = layout.db_socket(primary);
    // Every server starts read-only (config::my_cnf): the primary is made writable here.
    let mut setup = String::from("SET GLOBAL read_only=OFF;\n");
    if semi_sync {
        // No replica is attached yet: without this each statement would wait the full timeout.
        setup.push_str("SET GLOBAL rpl_semi_sync_master_enabled=OFF;\n");
    }
    setup.push_str(&account(
        &host,
        REPLICATION_USER,
        &secrets.repl_password,
        &REPLICATION_GRANTS,
    ));
    setup.push_str(
        "CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n",
    );
    setup.push_str(&account(
        &host,
        "wordpress",
        &secrets.db_password,
        &[WORDPRESS_GRANTS],
    ));
    sql(tools, &psock, &setup)?;
    let replicas: Vec<u32> = (0..spec.database.instances)
        .filter(|&i| i != primary)
        .collect();
    for &r in &replicas {
        sql(
            tools,
            &layout.db_socket(r),
            &follow(spec, secrets, primary, false),
        )?;
    }
    let pos = sql(tools, &psock, "SELECT @@gtid_binlog_pos;")?
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_default();
    for &r in &replicas {
        wait_for_gtid(tools, layout, r, &pos, Duration::from_secs(60))?;
    }
    if semi_sync {
        sql(tools, &psock, "SET GLOBAL rpl_semi_sync_master_enabled=ON;")?;
    }
    Ok(())
}

/// SQL that makes a server a replica of `primary` (GTID, heartbeats the failover manager's
/// silence check counts on); `from_binlog`: it continues from its own binary log (it was a
/// primary).
fn follow(
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    primary: u32,
    from_binlog: bool,
) -> String {
    format!(
        "STOP SLAVE;\n{reset}CHANGE MASTER TO MASTER_HOST={h}, MASTER_PORT={p}, MASTER_USER='{REPLICATION_USER}', MASTER_PASSWORD={pw}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD={hb:.3};\nSTART SLAVE;\n",
        reset = if from_binlog {
            "SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos;\n"
        } else {
            ""
        },
        h = quote(replication_host(spec)),
        p = db_port(spec, primary),
        pw = quote(&secrets.repl_password),
        hb = heartbeat_seconds(spec),
    )
}

/// Makes server `i` (a fresh copy of another, started) a replica of `primary` from the copy's
/// GTID position.
pub fn follow_from(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    i: u32,
    primary: u32,
    gtid: &str,
) -> Result<()> {
    let sql_text = format!(
        "SET GLOBAL read_only=ON;\nSTOP SLAVE;\nSET GLOBAL gtid_slave_pos={};\n{}",
        quote(gtid),
        follow(spec, secrets, primary, false)
    );
    sql(tools, &layout.db_socket(i), &sql_text)?;
    Ok(())
}

/// On the `up` of an existing cluster, every server having started read-only: makes the most
/// advanced server writable (the recorded primary unless another has more: a failover the
/// supervisor did not get to record), re-pointing the others at it when it is not the recorded
/// one. Returns the primary.
pub fn resume_primary(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    recorded: u32,
) -> Result<u32> {
    let n = spec.database.instances;
    let mut positions = Vec::new();
    for i in 0..n {
        let pos = sql(tools, &layout.db_socket(i), "SELECT @@gtid_current_pos;")?
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_default();
        positions.push((i as usize, pos));
    }
    let primary = hapress_topology::gtid::most_advanced(&positions, Some(recorded as usize))
        .map_or(recorded, |p| p as u32);
    if primary != recorded {
        for i in (0..n).filter(|&i| i != primary) {
            sql(
                tools,
                &layout.db_socket(i),
                &format!(
                    "SET GLOBAL read_only=ON;\n{}",
                    follow(spec, secrets, primary, i == recorded)
                ),
            )?;
        }
    }
    let semi_sync = n > 1 && spec.database.semi_sync.enabled;
    sql(
        tools,
        &layout.db_socket(primary),
        &format!(
            "STOP SLAVE;\nRESET SLAVE ALL;\n{}SET GLOBAL read_only=OFF;\n",
            if semi_sync {
                "SET GLOBAL rpl_semi_sync_master_enabled=ON;\n"
            } else {
                ""
            }
        ),
    )?;
    Ok(primary)
}

/// Waits until every replica has applied all the primary has now (after the WordPress
/// install: the site's first reads may go to any replica).
pub fn replicas_caught_up(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    primary: u32,
) -> Result<()> {
    let pos = sql(
        tools,
        &layout.db_socket(primary),
        "SELECT @@gtid_binlog_pos;",
    )?
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_default();
    for r in (0..spec.database.instances).filter(|&i| i != primary) {
        wait_for_gtid(tools, layout, r, &pos, Duration::from_secs(60))?;
    }
    Ok(())
}

/// Waits until replica `r` has applied `gtid`.
pub fn wait_for_gtid(
    tools: &Tools,
    layout: &Layout,
    r: u32,
    gtid: &str,
    timeout: Duration,
) -> Result<()> {
    let q = format!(
        "SELECT MASTER_GTID_WAIT({}, {});",
        quote(gtid),
        timeout.as_secs()
    );
    let rows = sql(tools, &layout.db_socket(r), &q)?;
    if rows.first().and_then(|r| r.first()).map(String::as_str) == Some("0") {
        return Ok(());
    }
    let status = sql(tools, &layout.db_socket(r), "SELECT @@gtid_slave_pos;").unwrap_or_default();
    Err(step_error(
        &format!("attaching replica db-{r}"),
        format!(
            "it did not reach GTID {gtid} within {timeout:?} (it is at {status:?}); see {}",
            layout.log(&format!("db-{r}.err")).display()
        ),
    ))
}

/// The SQL router's monitor account on the primary: it probes every server and reads password
/// hashes (to log in to replicas on a client's behalf). Idempotent; the password comes from the
/// secret file and travels on the client's stdin.
pub fn router_user(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    primary: u32,
) -> Result<()> {
    let host = quote(&account_host(spec));
    sql(
        tools,
        &layout.db_socket(primary),
        &account(
            &host,
            MONITOR_USER,
            &secrets.router_password,
            &MONITOR_GRANTS,
        ),
    )?;
    Ok(())
}

/// The accounts the embedded router logs in with over the servers' unix sockets, where
/// MariaDB sees every client as `localhost`: `wordpress` and the monitor account, with the same
/// passwords and grants as their TCP accounts. Nothing to do when those are `'%'` (which
/// matches `localhost` too). Idempotent.
pub fn socket_accounts(
    tools: &Tools,
    layout: &Layout,
    spec: &WordPressClusterSpec,
    secrets: &Secrets,
    primary: u32,
) -> Result<()> {
    if account_host(spec) == "%" {
        return Ok(());
    }
    let host = quote("localhost");
    let mut setup = account(
        &host,
        "wordpress",
        &secrets.db_password,
        &[WORDPRESS_GRANTS],
    );
    setup.push_str(&account(
        &host,
        MONITOR_USER,
        &secrets.router_password,
        &MONITOR_GRANTS,
    ));
    sql(tools, &layout.db_socket(primary), &setup)?;
    Ok(())
}
