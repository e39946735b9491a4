//! The `hapress` command line: one spec, an embedded runtime and Kubernetes manifests.

mod chaos;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Highly available WordPress from one declarative spec.
///
/// `hapress up` runs a whole HA cluster on this machine (MariaDB primary + replicas with GTID
/// and semi-sync replication, the hapress SQL router splitting reads from writes, several
/// php-fpm web replicas, nginx in front); `hapress render` turns the same spec into Kubernetes
/// manifests; `hapress router` runs the SQL router on its own.
#[derive(Parser, Debug)]
#[command(
    name = "hapress",
    version,
    about,
    long_about,
    after_help = "Start here:\n  hapress init            write a commented hapress.yaml\n  sudo hapress up         run the site on this machine (http://127.0.0.1:8080)\n  hapress status          see every component, its health and replication"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct StateDirArg {
    /// State directory of the cluster (data, configs, secrets, logs).
    #[arg(long, default_value = ".hapress", env = "HAPRESS_STATE_DIR")]
    state_dir: PathBuf,
}

#[derive(Args, Debug)]
struct UpArgs {
    /// Spec file [default: ./hapress.yaml if present, else the spec the state directory was
    /// last started with, else built-in defaults].
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    #[command(flatten)]
    state: StateDirArg,
    /// nginx port (overrides spec.embedded.httpPort).
    #[arg(long)]
    http_port: Option<u16>,
    /// Port of database server 0; server N uses this + N (overrides spec.embedded.databasePort).
    #[arg(long)]
    database_port: Option<u16>,
    /// Return once the site is up and leave a background supervisor (stop it with `hapress down`).
    #[arg(short, long)]
    detach: bool,
    /// Internal: marks the background supervisor started by --detach.
    #[arg(long, hide = true)]
    detached_child: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a commented example hapress.yaml (every field at its default).
    Init {
        /// Where to write it.
        #[arg(default_value = "hapress.yaml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Start the cluster on this machine and supervise it (Ctrl-C stops everything).
    ///
    /// Creates the state directory on first run (datadirs, secrets, docroot, WordPress install);
    /// later runs adopt it and never re-initialise anything.
    Up(UpArgs),
    /// Stop a running cluster gracefully (nginx and web first, then replicas, then the primary).
    Down(StateDirArg),
    /// Show every component: pid, address, health, role, restarts and replication state.
    Status {
        #[command(flatten)]
        state: StateDirArg,
        /// Machine-readable JSON.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text: component health and restarts, page-cache and object-cache
        /// counters (for node_exporter's textfile collector, e.g. from cron:
        /// `hapress status --prometheus > /var/lib/node_exporter/hapress.prom`).
        #[arg(long)]
        prometheus: bool,
    },
    /// Check a spec file and print it with every default filled in.
    Validate {
        /// Spec file.
        #[arg(short = 'f', long = "file", default_value = "hapress.yaml")]
        file: PathBuf,
    },
    /// Run the SQL router: a MySQL-protocol proxy that sends writes to the primary and
    /// autocommit reads to healthy replicas, and follows the primary when it moves.
    ///
    /// Clients log in with their own MariaDB accounts, as to one server; backend connections
    /// are pooled across sessions. `hapress up` runs one for you; run it yourself with a
    /// config file (YAML) such as the example below.
    #[command(after_long_help = "Example config:\n  \
        listen: 127.0.0.1:3306                 # or a unix socket path\n  \
        backends: [10.0.0.1:3306, 10.0.0.2:3306, /run/mysqld/mysqld.sock]\n  \
        monitorUser: hapress_router            # GRANT SLAVE MONITOR, REPLICATION CLIENT ON *.*;\n  \
        \x20                                      # GRANT SELECT ON mysql.global_priv\n  \
        monitorPasswordFile: /etc/hapress/router-password   # mode 0600\n  \
        statusListen: 127.0.0.1:9104           # GET /metrics, GET /status\n\n\
        Every other setting (lag limit, read-your-writes, pool size, timeouts) has a default:\n\
        see README, \"The SQL router\". SIGTERM or SIGINT stops the router.")]
    Router {
        /// Router config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a Kubernetes page-cache pod's purger: empties the pod's copy of the pages when
    /// WordPress, after a change, sends it a request signed with the shared key; serves the
    /// cache's hit/miss counters.
    ///
    /// `hapress render` runs it beside nginx in every cache pod; you only run it yourself
    /// with a cache of your own.
    #[command(after_long_help = "HTTP:\n  \
        POST /purge    X-Hapress-Purge: <unix time>.<hex HMAC-SHA256(key, \"purge <time>\")>\n  \
        \x20              empties the directory, waits 200 ms, empties it again, answers 200;\n  \
        \x20              403 for a missing or wrong signature, or one 5 min off\n  \
        GET /metrics   hapress_page_cache_requests_total{result} from --log\n  \
        GET /health    200\n\n\
        Example: hapress page-cache-purger --cache-dir /var/cache/nginx/pages \\\n  \
        \x20 --key-file /run/secrets/page-cache/purge-key --log /var/cache/nginx/log/page-cache.log")]
    PageCachePurger {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:9180")]
        listen: std::net::SocketAddr,
        /// nginx's cache directory (`proxy_cache_path`); emptied, never removed.
        #[arg(long)]
        cache_dir: PathBuf,
        /// File holding the purge key (read at every purge).
        #[arg(long)]
        key_file: PathBuf,
        /// nginx's log of `$upstream_cache_status`, one a line, for /metrics.
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// Render Kubernetes manifests (or the CRD) from a spec.
    Render(render::RenderArgs),
    /// Resilience drill on a running cluster: writes through the router, a fault injected into
    /// the primary, then what was lost, duplicated or left diverged, and how long writes were
    /// unavailable.
    ///
    /// Each round starts writers (and a reader, a new connection per query, as PHP) through the
    /// SQL router that record every acknowledged row, injects the fault, waits until a write is
    /// acknowledged again and every server replicates from the primary, then compares the rows
    /// on every server. The rows go to `wordpress.hapress_chaos`, dropped at the end. Exits
    /// non-zero when a round lost, duplicated or diverged anything, or did not recover.
    #[command(after_long_help = "Faults:\n  \
        kill   kill -9 of the primary\n  \
        hang   the primary stopped (SIGSTOP) until another is promoted, then resumed\n  \
        lag    every replica stopped for 3 s, then the primary killed\n  \
        load   twice the writers, without pauses, then the primary killed\n  \
        wipe   the primary killed and its data directory deleted (it is rebuilt from a copy)\n  \
        switchover  a planned switchover: no statement may fail\n  \
        all    each in turn\n\n\
        Example: sudo hapress chaos --state-dir /var/lib/hapress/default --fault all --rounds 20")]
    Chaos(chaos::ChaosArgs),
    /// Planned switchover: another database server becomes the primary with no failed
    /// statement (the router holds statements for the primary while the roles change, then
    /// sends them to the new one; sessions move between statements).
    ///
    /// Without `--to`, the most advanced replica is promoted. The old primary becomes a
    /// replica of the new one.
    Switchover {
        #[command(flatten)]
        state: StateDirArg,
        /// The server to promote: `db-N` or `N`.
        #[arg(long)]
        to: Option<String>,
    },
}

fn init(path: &PathBuf, force: bool) -> anyhow::Result<ExitCode> {
    if path.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(path, hapress_spec::EXAMPLE_YAML)?;
    println!(
        "wrote {}; edit it, then run `hapress up -f {}`",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init { path, force } => init(path, *force),
        Command::Up(a) => {
            hapress_local::up(&hapress_local::UpOptions {
                spec_file: a.file.clone(),
                state_dir: a.state.state_dir.clone(),
                http_port: a.http_port,
                database_port: a.database_port,
                detach: a.detach,
                detached_child: a.detached_child,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Down(s) => {
            hapress_local::down(&s.state_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            state,
            json,
            prometheus,
        } => {
            let format = match (*json, *prometheus) {
                (true, _) => hapress_local::StatusFormat::Json,
                (_, true) => hapress_local::StatusFormat::Prometheus,
                _ => hapress_local::StatusFormat::Table,
            };
            print!("{}", hapress_local::status(&state.state_dir, format)?);
            if *json {
                println!();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => {
            let cluster = hapress_spec::load(file, false)?;
            print!("{cluster}");
            eprintln!("{}: valid", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => render::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Switchover { state, to } => {
            let to = to
                .as_deref()
                .map(|t| {
                    t.trim_start_matches("db-")
                        .parse::<u32>()
                        .map_err(|_| anyhow::anyhow!("--to {t}: a server such as db-1 or 1"))
                })
                .transpose()?;
            println!("{}", hapress_local::switchover(&state.state_dir, to)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::PageCachePurger {
            listen,
            cache_dir,
            key_file,
            log,
        } => {
            hapress_local::purger::run(hapress_local::purger::PurgerConfig {
                listen: *listen,
                cache_dir: cache_dir.clone(),
                key_file: key_file.clone(),
                log: log.clone(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Router { config } => {
            let c = hapress_router::config::Config::load(config).map_err(anyhow::Error::msg)?;
            hapress_router::server::run_blocking(c).map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
