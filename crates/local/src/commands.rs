//! The front ends of `hapress up`, `hapress down` and `hapress status`.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hapress_contract::status::SwitchoverAnswer;
use hapress_spec::{validate_spec, Cluster};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{create_dir, write_atomic};
use crate::layout::Layout;
use crate::preflight::{check_ports, check_state_path, find_tools, worker_user};
use crate::progress::Progress;
use crate::runtime::{lock, supervisor_running, Runtime};
use crate::state::{self, State};
use crate::status::{render_table, ClusterStatus};
use crate::{mariadb, process, secrets};

/// Options of `hapress up`.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Spec file given with `-f`.
    pub spec_file: Option<PathBuf>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Overrides `spec.embedded.httpPort`.
    pub http_port: Option<u16>,
    /// Overrides `spec.embedded.databasePort`.
    pub database_port: Option<u16>,
    /// Leave a background supervisor and return once the site is up.
    pub detach: bool,
    /// Internal: this process is the detached supervisor (its output goes to a log).
    pub detached_child: bool,
}

/// Which spec `up` uses: `-f`, else `./hapress.yaml`, else the one the state directory was last
/// started with, else the defaults (`name: wordpress`). Flag overrides are applied and checked.
fn resolve_cluster(opts: &UpOptions, layout: &Layout) -> Result<(Cluster, String)> {
    let (mut cluster, source) = if let Some(f) = &opts.spec_file {
        (hapress_spec::load(f, false)?, f.display().to_string())
    } else if Path::new("hapress.yaml").is_file() {
        (
            hapress_spec::load(Path::new("hapress.yaml"), false)?,
            "hapress.yaml".into(),
        )
    } else if layout.spec_file().is_file() {
        (
            hapress_spec::load(&layout.spec_file(), false)?,
            layout.spec_file().display().to_string(),
        )
    } else {
        (
            Cluster::default(),
            "built-in defaults (no hapress.yaml; `hapress init` writes one)".into(),
        )
    };
    if let Some(p) = opts.http_port {
        cluster.spec.embedded.http_port = p;
    }
    if let Some(p) = opts.database_port {
        cluster.spec.embedded.database_port = p;
    }
    let errors = validate_spec(&cluster.spec);
    if !errors.is_empty() {
        return Err(hapress_spec::Error::Invalid {
            source_name: format!("{source} with command-line overrides"),
            errors,
        }
        .into());
    }
    Ok((cluster, source))
}

/// `hapress up`: checks, starts the cluster and supervises it (or detaches).
pub fn up(opts: &UpOptions) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context(|| "installing signal handlers".into())?;
    }
    let layout = Layout::new(&opts.state_dir).context(|| "resolving the state directory".into())?;
    let mut progress = Progress::new(12);
    if !opts.detach {
        // Detached: the background supervisor prints every step; this process relays them.
        progress.step("Checking spec, packages, ports and state directory");
    }
    let (cluster, source) = resolve_cluster(opts, &layout)?;
    let existing = state::load_for(&layout, &cluster.name, cluster.spec.database.instances)?;
    let tools = find_tools(cluster.spec.cache.object_cache.enabled)?;
    let user = worker_user()?;
    check_state_path(&layout, user.as_ref())?;
    if existing.is_none() {
        // A new cluster: check before creating anything, so a failure leaves no trace.
        check_ports(&cluster.spec)?;
    }
    if opts.detach {
        create_dir(&layout.root, 0o755)?;
        if existing.is_none() {
            // Claim the directory now that every check passed; the supervisor adopts it.
            State::new(&cluster.name, cluster.spec.database.instances).save(&layout)?;
        }
        return detach(
            opts,
            &layout,
            existing.is_some_and(|s| s.is_done("site-installed")),
        );
    }
    create_dir(&layout.root, 0o755)?;
    for d in [layout.logs_dir(), layout.run_dir()] {
        create_dir(&d, 0o750)?;
    }
    // Workers must traverse run/ to reach the FastCGI sockets.
    create_dir(&layout.run_dir(), 0o755)?;
    let lock = lock(&layout)?;
    fs::write(
        layout.run_dir().join("supervisor.pid"),
        format!("{}\n", std::process::id()),
    )
    .context(|| "writing supervisor.pid".into())?;
    let mut strays = process::stop_strays(&layout);
    if existing.is_some() {
        // A supervisor killed while it started a component leaves a child that may exec the
        // component only after the scan above: a port taken by one is freed by a second scan.
        for _ in 0..10 {
            if check_ports(&cluster.spec).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            strays.extend(process::stop_strays(&layout));
        }
        check_ports(&cluster.spec)?;
    }
    let adopted = existing.as_ref().is_some_and(|s| !s.done.is_empty());
    let state =
        existing.unwrap_or_else(|| State::new(&cluster.name, cluster.spec.database.instances));
    state.save(&layout)?;
    write_atomic(&layout.spec_file(), cluster.to_string().as_bytes(), 0o644)?;
    let secrets = secrets::ensure_all(&layout)?;
    progress.done(&format!(
        "{} cluster {:?} from {source}{}",
        if adopted { "existing" } else { "new" },
        cluster.name,
        if strays.is_empty() {
            String::new()
        } else {
            format!(
                "; stopped leftovers of a killed supervisor: {}",
                strays.join(", ")
            )
        }
    ));

    let mut rt = Runtime::new(
        layout.clone(),
        cluster.clone(),
        tools,
        user,
        state,
        secrets,
        lock,
        stop,
    );
    let report = match rt.start(&mut progress) {
        Ok(r) => r,
        Err(e) => {
            println!("failed");
            rt.shutdown();
            return Err(e);
        }
    };
    let secret = layout.secret(secrets::ADMIN_PASSWORD);
    println!(
        "\nhapress: {} is up in {:.1}s",
        cluster.name,
        progress.start.elapsed().as_secs_f64()
    );
    println!("  site:      {}", cluster.embedded_url());
    println!(
        "  admin:     {}/wp-admin/  user {:?}",
        cluster.embedded_url(),
        cluster.spec.site.admin_user
    );
    if report.installed_now && !opts.detached_child {
        println!(
            "  password:  {}   (shown once; also in {}, mode 0600)",
            rt.secrets.admin_password,
            secret.display()
        );
    } else {
        println!("  password:  in {} (mode 0600)", secret.display());
    }
    if cluster.spec.router.enabled {
        println!(
            "  mysql:     {} (the SQL router: reads to replicas, writes to the primary; user \"wordpress\", password in {})",
            crate::config::router_address(&cluster.spec),
            layout.secret(crate::secrets::DB_PASSWORD).display()
        );
    }
    println!(
        "  status:    hapress status --state-dir {}",
        layout.root.display()
    );
    if opts.detached_child {
        println!("hapress: supervising in the background (pid {}); stop with `hapress down --state-dir {}`", std::process::id(), layout.root.display());
    } else {
        println!("hapress: supervising; press Ctrl-C to stop everything");
    }
    rt.supervise();
    Ok(())
}

/// Starts the supervisor as a background process and relays its progress until the site is up.
fn detach(opts: &UpOptions, layout: &Layout, installed_before: bool) -> Result<()> {
    create_dir(&layout.logs_dir(), 0o750)?;
    let log_path = layout.log("supervisor.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .context(|| format!("opening {}", log_path.display()))?;
    let mut offset = log.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().context(|| "locating the hapress binary".into())?;
    let mut cmd = Command::new(exe);
    cmd.arg("up")
        .arg("--state-dir")
        .arg(&layout.root)
        .arg("--detached-child");
    if let Some(f) = &opts.spec_file {
        cmd.arg("-f")
            .arg(fs::canonicalize(f).unwrap_or_else(|_| f.clone()));
    }
    if let Some(p) = opts.http_port {
        cmd.arg("--http-port").arg(p.to_string());
    }
    if let Some(p) = opts.database_port {
        cmd.arg("--database-port").arg(p.to_string());
    }
    let err = log
        .try_clone()
        .context(|| "duplicating log handle".into())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .context(|| "starting the background supervisor".into())?;
    let relay = |offset: &mut u64| {
        if let Ok(mut f) = fs::File::open(&log_path) {
            let _ = f.seek(SeekFrom::Start(*offset));
            let mut s = String::new();
            if f.read_to_string(&mut s).is_ok() {
                print!("{s}");
                *offset += s.len() as u64;
            }
        }
    };
    let start = Instant::now();
    loop {
        relay(&mut offset);
        if let Ok(Some(status)) = child.try_wait() {
            relay(&mut offset);
            return Err(Error::Step {
                step: "starting in the background".into(),
                message: format!(
                    "the supervisor exited ({status}); see {}",
                    log_path.display()
                ),
            });
        }
        let st: Option<ClusterStatus> = fs::read_to_string(layout.status_file())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if st.is_some_and(|s| s.phase == "running" && s.supervisor_pid == child.id()) {
            std::thread::sleep(Duration::from_millis(100));
            relay(&mut offset);
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(Error::Step {
                step: "starting in the background".into(),
                message: format!("not up after 10 minutes; see {}", log_path.display()),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let now_installed = fs::read_to_string(layout.state_file())
        .ok()
        .and_then(|t| serde_json::from_str::<State>(&t).ok())
        .is_some_and(|s| s.is_done("site-installed"));
    if now_installed && !installed_before {
        if let Ok(pw) = fs::read_to_string(layout.secret(secrets::ADMIN_PASSWORD)) {
            println!("  admin password (shown once): {}", pw.trim());
        }
    }
    Ok(())
}

/// `hapress down`: stops the supervisor (which stops everything in order) and waits.
pub fn down(state_dir: &Path) -> Result<()> {
    let layout = Layout::new(state_dir).context(|| "resolving the state directory".into())?;
    if !layout.state_file().is_file() {
        return Err(Error::StateDir {
            dir: layout.root.clone(),
            message: "holds no hapress cluster (no state.json); pass the right --state-dir".into(),
        });
    }
    let was_running = supervisor_running(&layout);
    if was_running {
        let pid: i32 = fs::read_to_string(layout.run_dir().join("supervisor.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| Error::StateDir {
                dir: layout.root.clone(),
                message: "a supervisor holds the lock but run/supervisor.pid is unreadable".into(),
            })?;
        println!("hapress: asking the supervisor (pid {pid}) to stop the cluster");
        kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| Error::Io {
            context: format!("signalling supervisor pid {pid}"),
            source: e.into(),
        })?;
        let start = Instant::now();
        while supervisor_running(&layout) {
            if start.elapsed() > Duration::from_secs(600) {
                return Err(Error::Step {
                    step: "stopping".into(),
                    message: format!("supervisor pid {pid} still running after 10 minutes"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("hapress: stopped in {:.1}s", start.elapsed().as_secs_f64());
    }
    // What a killed supervisor left running (also one that was dying, not stopping, when
    // asked above).
    let strays = process::stop_strays(&layout);
    if !strays.is_empty() {
        println!(
            "hapress: stopped leftovers of a killed supervisor: {}",
            strays.join(", ")
        );
    } else if !was_running {
        println!("hapress: nothing was running");
    }
    Ok(())
}

/// `hapress status`: the supervisor's view plus live replication state of each database.
/// How `hapress status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// The table a person reads.
    Table,
    /// JSON.
    Json,
    /// Prometheus text (node_exporter's textfile collector, or any scraper of files).
    Prometheus,
}

pub fn status(state_dir: &Path, format: StatusFormat) -> Result<String> {
    let layout = Layout::new(state_dir).context(|| "resolving the state directory".into())?;
    let text = fs::read_to_string(layout.status_file()).map_err(|_| Error::StateDir {
        dir: layout.root.clone(),
        message: "has no running or previously started cluster (no run/status.json); start one with `hapress up`".into(),
    })?;
    let mut st: ClusterStatus = serde_json::from_str(&text).map_err(|e| Error::StateDir {
        dir: layout.root.clone(),
        message: format!("run/status.json is unreadable: {e}"),
    })?;
    st.supervisor_running = supervisor_running(&layout);
    if !st.supervisor_running {
        st.phase = "stopped".into();
        for c in &mut st.components {
            c.pid = None;
            c.health = "down".into();
        }
    } else if let Ok(tools) = find_tools(false) {
        for c in st
            .components
            .iter_mut()
            .filter(|c| c.kind == "database" && c.health == "up")
        {
            let i: u32 = c.name.trim_start_matches("db-").parse().unwrap_or(0);
            c.replication = mariadb::replication_state(&tools, &layout.db_socket(i)).ok();
        }
        for c in st.components.iter_mut().filter(|c| c.kind == "router") {
            c.router = crate::status::router_status(&layout);
        }
    }
    let router = st.components.iter().find_map(|c| c.router.clone());
    if let Some(r) = &router {
        // The router names servers by replication address; the table by component name.
        let name = |addr: &str| {
            r.by_replication_address(addr)
                .map_or(addr.to_string(), |b| b.address.clone())
        };
        let mut failovers = r.manager.failovers.clone();
        for f in &mut failovers {
            f.to = name(&f.to);
            f.from = f.from.as_deref().map(name);
        }
        st.failovers = failovers;
    }
    st.attention = crate::status::attention(&layout, router.as_ref());
    if format == StatusFormat::Prometheus {
        return Ok(crate::metrics::render(&st));
    }
    if format == StatusFormat::Json {
        return serde_json::to_string_pretty(&st).map_err(|e| Error::Io {
            context: "serialising status".into(),
            source: std::io::Error::other(e),
        });
    }
    Ok(render_table(&st))
}

/// `hapress switchover`: asks the cluster's SQL router for a planned switchover to server `to`
/// (else the most advanced replica); what it did.
pub fn switchover(state_dir: &Path, to: Option<u32>) -> Result<String> {
    let layout = Layout::new(state_dir).context(|| "resolving the state directory".into())?;
    if !supervisor_running(&layout) {
        return Err(Error::StateDir {
            dir: layout.root.clone(),
            message: "has no running cluster; start it with `hapress up`".into(),
        });
    }
    // Right after a failover or switchover the router may not have confirmed the new primary
    // yet: give it a few probe rounds before asking it to switch from one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && crate::status::router_status(&layout).is_none_or(|s| s.primary.is_none())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let path = match to {
        Some(i) => format!("/switchover?to={i}"),
        None => "/switchover".into(),
    };
    let answer: SwitchoverAnswer =
        crate::status::router_request(&layout, "POST", &path, std::time::Duration::from_secs(60))
            .ok_or_else(|| Error::Step {
            step: "switchover".into(),
            message: format!(
                "the SQL router did not answer on {} (is spec.router.enabled false?)",
                layout.router_status_socket().display()
            ),
        })?;
    if answer.ok {
        Ok(answer.message)
    } else {
        Err(Error::Step {
            step: "switchover".into(),
            message: answer.message,
        })
    }
}
