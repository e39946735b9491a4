//! `hapress chaos`: the seeds' resilience drill, automated, against a cluster started with
//! `hapress up`. Each round runs writers through the SQL router that record every acknowledged
//! row, injects a fault into the primary, waits until the cluster is whole again (a new or the
//! same primary, every other server replicating from it), then counts what was lost, run
//! twice, or left different between the servers, and how long writes were unavailable.

mod check;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hapress_contract::status::{Role, SwitchoverAnswer};
use hapress_local::layout::{db_name, Layout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use check::RoundResult;
use workload::{Seen, Target};

/// The faults.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the primary.
    Kill,
    /// The primary stopped (`SIGSTOP`) until another is promoted, then resumed: it must take
    /// no write and rejoin as a replica.
    Hang,
    /// Every replica stopped for 3 s (replication lag), then the primary killed.
    Lag,
    /// Writers without any pause, then the primary killed.
    Load,
    /// The primary killed and its data directory deleted: after the failover it is rebuilt
    /// from a copy of a healthy server.
    Wipe,
    /// A planned switchover (`hapress switchover`) under the writers: no statement may fail.
    Switchover,
    /// Each of the above in turn.
    All,
}

/// `hapress chaos` arguments.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// State directory of the cluster (started with `hapress up`).
    #[arg(long, default_value = ".hapress", env = "HAPRESS_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The fault to inject.
    #[arg(long, value_enum, default_value = "kill")]
    pub fault: Fault,
    /// Rounds, each with one fault (the cluster stays up across rounds).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Seconds a round may take to recover before it counts as failed.
    #[arg(long, default_value_t = 60)]
    pub recovery_timeout: u64,
    /// Keep the drill's table (`wordpress.hapress_chaos`) afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the drill; fails when any round lost, duplicated or diverged anything, or did not
/// recover.
pub fn run(args: &ChaosArgs) -> anyhow::Result<std::process::ExitCode> {
    let layout = Layout::new(&args.state_dir).context("resolving the state directory")?;
    if !hapress_local::runtime::supervisor_running(&layout) {
        bail!(
            "no cluster runs in {} (start one with `hapress up --detach --state-dir {}`)",
            layout.root.display(),
            layout.root.display()
        );
    }
    let password = std::fs::read_to_string(layout.secret(hapress_local::secrets::DB_PASSWORD))
        .context(
            "reading the WordPress database password (run as the user that ran `hapress up`)",
        )?;
    let target = Arc::new(Target {
        router: layout.router_socket().display().to_string(),
        user: "wordpress".into(),
        password: password.trim_end().as_bytes().to_vec(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(drill(args, &layout, target))?;
    println!("\n{}", check::summary(&results));
    let clean = results.iter().all(RoundResult::clean);
    Ok(if clean {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn drill(
    args: &ChaosArgs,
    layout: &Layout,
    target: Arc<Target>,
) -> anyhow::Result<Vec<RoundResult>> {
    let n = servers(layout);
    if n < 3 {
        bail!("the drill needs 3 or more database servers (failover needs a majority left); this cluster has {n}");
    }
    let timeout = Duration::from_secs(args.recovery_timeout);
    wait_whole(layout, timeout)
        .await
        .context("before the drill")?;
    let mut c = target
        .connect(&target.router)
        .await
        .map_err(anyhow::Error::msg)?;
    workload::sql(
        &mut c,
        "CREATE TABLE IF NOT EXISTS hapress_chaos (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         round INT NOT NULL, writer INT NOT NULL, seq BIGINT NOT NULL, KEY (round, writer, seq))",
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let first_round: u32 = workload::sql(
        &mut c,
        "SELECT COALESCE(MAX(round), 0) + 1 AS r FROM hapress_chaos",
    )
    .await
    .map_err(anyhow::Error::msg)?
    .get(0, "r")
    .and_then(|r| r.parse().ok())
    .unwrap_or(1);
    drop(c);
    let faults = [
        Fault::Kill,
        Fault::Hang,
        Fault::Lag,
        Fault::Load,
        Fault::Wipe,
    ];
    println!("{}", check::HEADER);
    let mut results = Vec::new();
    for k in 0..args.rounds {
        let fault = if args.fault == Fault::All {
            faults[k as usize % faults.len()]
        } else {
            args.fault
        };
        wait_whole(layout, timeout)
            .await
            .with_context(|| format!("before round {}", k + 1))?;
        let r = round(
            layout,
            &target,
            first_round + k,
            fault,
            args.writers,
            timeout,
        )
        .await?;
        println!("{}", r.row());
        results.push(r);
    }
    if !args.keep {
        if let Ok(mut c) = target.connect(&target.router).await {
            let _ = workload::sql(&mut c, "DROP TABLE hapress_chaos").await;
        }
    }
    Ok(results)
}

/// One round: traffic, the fault, recovery, checks.
async fn round(
    layout: &Layout,
    target: &Arc<Target>,
    round: u32,
    fault: Fault,
    writers: u32,
    timeout: Duration,
) -> anyhow::Result<RoundResult> {
    let old = primary(layout).context("no primary before the fault")?;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (writers, throttle) = match fault {
        Fault::Load => (writers * 2, None),
        _ => (writers, Some(Duration::from_millis(5))),
    };
    let traffic = tokio::spawn(workload::traffic(
        target.clone(),
        round,
        writers,
        throttle,
        stop.clone(),
        seen.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old_pid = pid(layout, old)?;
    let fault_at = inject(layout, fault, old, timeout).await?;
    let (mut recovered, mut note) =
        wait_recovered(layout, &seen, fault_at, (old, old_pid), timeout).await;
    let mut remark = None;
    if recovered.is_some() {
        // Whole for a while (traffic goes on), or what broke it once it first was (an old
        // primary found diverged and rebuilt, say) and when it was whole again.
        match settle(layout, fault_at + timeout).await {
            Ok(None) => {}
            Ok(Some((again, why))) => {
                recovered = Some(again.duration_since(fault_at));
                remark = Some(format!("whole again after: {why}"));
            }
            Err(why) => {
                recovered = None;
                note = Some(format!("not recovered: {why}"));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.await;
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let new = primary(layout);
    check::round(
        layout,
        target,
        round,
        fault,
        old,
        new,
        fault_at,
        recovered,
        seen,
        (note, remark),
    )
    .await
}

/// Injects `fault` into primary `p`; returns when the primary was lost.
async fn inject(
    layout: &Layout,
    fault: Fault,
    p: u32,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let pid = pid(layout, p)?;
    match fault {
        Fault::Kill | Fault::Load | Fault::All => {
            signal(pid, Signal::SIGKILL)?;
            Ok(Instant::now())
        }
        Fault::Switchover => {
            let at = Instant::now();
            let layout = layout.clone();
            let answer = tokio::task::spawn_blocking(move || {
                hapress_local::status::router_request::<SwitchoverAnswer>(
                    &layout,
                    "POST",
                    "/switchover",
                    Duration::from_secs(60),
                )
            })
            .await?;
            match answer {
                Some(a) if a.ok => Ok(at),
                Some(a) => bail!("the switchover failed: {}", a.message),
                None => bail!("the router did not answer the switchover"),
            }
        }
        Fault::Wipe => {
            signal(pid, Signal::SIGKILL)?;
            let at = Instant::now();
            let data = layout.db_data(p);
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("deleting {}", data.display()))?;
            Ok(at)
        }
        Fault::Hang => {
            signal(pid, Signal::SIGSTOP)?;
            let at = Instant::now();
            // Left hung until another server is the primary, then resumed: it must not take
            // or acknowledge a write, and rejoins.
            let deadline = at + timeout;
            while primary(layout) == Some(p) || primary(layout).is_none() {
                if Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The embedded supervisor kills a hung old primary: resume it only if it lives.
            let _ = signal(pid, Signal::SIGCONT);
            Ok(at)
        }
        Fault::Lag => {
            let replicas: Vec<i32> = (0..servers(layout))
                .filter(|&i| i != p)
                .filter_map(|i| self::pid(layout, i).ok())
                .collect();
            for &r in &replicas {
                signal(r, Signal::SIGSTOP)?;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            signal(pid, Signal::SIGKILL)?;
            let at = Instant::now();
            for &r in &replicas {
                signal(r, Signal::SIGCONT)?;
            }
            Ok(at)
        }
    }
}

fn signal(pid: i32, s: Signal) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), s).with_context(|| format!("sending {s} to pid {pid}"))
}

/// Waits until a write sent after the fault was acknowledged, the fault was noticed (another
/// primary, or the old one restarted) and the cluster is whole again; `None` when that took
/// longer than `timeout`, with what was still missing.
async fn wait_recovered(
    layout: &Layout,
    seen: &Mutex<Seen>,
    fault_at: Instant,
    old: (u32, i32),
    timeout: Duration,
) -> (Option<Duration>, Option<String>) {
    let deadline = fault_at + timeout;
    loop {
        let written = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acked
            .iter()
            .any(|a| a.2 > fault_at);
        let noticed = primary(layout).is_some_and(|p| p != old.0)
            || pid(layout, old.0).is_ok_and(|p| p != old.1);
        let missing = match whole(layout) {
            Ok(()) if written && noticed => return (Some(fault_at.elapsed()), None),
            Ok(()) => format!(
                "{}{}",
                if written {
                    ""
                } else {
                    "no write acknowledged; "
                },
                if noticed {
                    ""
                } else {
                    "the fault went unnoticed"
                }
            ),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return (None, Some(format!("not recovered: {missing}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long the cluster must stay whole after a round's recovery before the checks.
const SETTLE: Duration = Duration::from_secs(2);

/// Waits until the cluster has been whole for [`SETTLE`] in a row. `Ok(None)`: it stayed
/// whole from the start; `Ok(Some((when, why)))`: it stopped being whole (why) and was whole
/// again at `when`; `Err`: not whole again by `deadline`.
async fn settle(layout: &Layout, deadline: Instant) -> Result<Option<(Instant, String)>, String> {
    let mut broke: Option<String> = None;
    let mut whole_since = Instant::now();
    loop {
        match whole(layout) {
            Ok(()) if whole_since.elapsed() >= SETTLE => {
                return Ok(broke.map(|why| (whole_since, why)));
            }
            Ok(()) => {}
            Err(e) => {
                broke.get_or_insert(e.clone());
                whole_since = Instant::now();
                if whole_since > deadline {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the cluster is whole.
async fn wait_whole(layout: &Layout, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match whole(layout) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                bail!("the cluster is not whole after {timeout:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The cluster is whole: the router has a primary and every other server answers, replicates
/// and is caught up.
fn whole(layout: &Layout) -> Result<(), String> {
    let st = hapress_local::status::router_status(layout).ok_or("the router does not answer")?;
    if st.primary.is_none() {
        return Err("no primary".into());
    }
    if let Some((addr, why)) = st.manager.diverged.first() {
        return Err(format!("{addr} diverged ({why})"));
    }
    for b in st.backends.iter().filter(|b| b.role != Role::Primary) {
        if !b.up || !b.replicating || !b.caught_up {
            return Err(format!(
                "{} is not replicating yet ({})",
                b.address,
                b.replication_error.as_deref().unwrap_or("no error")
            ));
        }
    }
    Ok(())
}

/// The router's primary, as a server index.
fn primary(layout: &Layout) -> Option<u32> {
    let st = hapress_local::status::router_status(layout)?;
    let addr = st.primary?;
    (0..servers(layout)).find(|&i| layout.db_socket(i).to_str() == Some(addr.as_str()))
}

/// Database servers of the cluster.
fn servers(layout: &Layout) -> u32 {
    (0..).take_while(|&i| layout.db_config(i).exists()).count() as u32
}

/// Process id of server `i`.
fn pid(layout: &Layout, i: u32) -> anyhow::Result<i32> {
    let f = layout.pid_file(&db_name(i));
    std::fs::read_to_string(&f)
        .with_context(|| format!("reading {}", f.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", f.display()))
}
