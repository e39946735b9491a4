//! The processes of a cluster and how each is launched, from spec + layout.

use hapress_spec::WordPressClusterSpec;

use crate::config::db_port;
use crate::layout::{db_name, web_name, Layout};
use crate::preflight::{Tools, WorkerUser};
use crate::process::{Kind, Launch, Process};

/// A database server's process.
pub fn database(tools: &Tools, layout: &Layout, i: u32) -> Process {
    let launch = Launch {
        program: tools.mariadbd.clone(),
        // --defaults-file must come first.
        args: vec![format!("--defaults-file={}", layout.db_config(i).display())],
        log: layout.log(&format!("db-{i}.out")),
        run_as: None,
    };
    Process::new(layout, &db_name(i), Kind::Database, launch)
}

/// A web replica's php-fpm master.
pub fn web(tools: &Tools, layout: &Layout, i: u32) -> Process {
    let launch = Launch {
        program: tools.php_fpm.clone(),
        args: vec![
            "--nodaemonize".into(),
            "--fpm-config".into(),
            layout.web_config(i).display().to_string(),
        ],
        log: layout.log(&format!("web-{i}.out")),
        run_as: None,
    };
    Process::new(layout, &web_name(i), Kind::Web, launch)
}

/// nginx in the foreground.
pub fn nginx(tools: &Tools, layout: &Layout) -> Process {
    let dir = layout.nginx_dir();
    let launch = Launch {
        program: tools.nginx.clone(),
        args: vec![
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
            "-p".into(),
            dir.display().to_string(),
            "-e".into(),
            layout.log("nginx-error.log").display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ],
        log: layout.log("nginx.out"),
        run_as: None,
    };
    Process::new(layout, "nginx", Kind::Nginx, launch)
}

/// The SQL router: this same `hapress` binary, `hapress router --config <state>/router.yaml`.
pub fn router(layout: &Layout) -> Process {
    let program = std::env::current_exe().unwrap_or_else(|_| "hapress".into());
    let launch = Launch {
        program,
        args: vec![
            "router".into(),
            "--config".into(),
            layout.router_config().display().to_string(),
        ],
        log: layout.log("router.log"),
        run_as: None,
    };
    Process::new(layout, "router", Kind::Router, launch)
}

/// Redis, the object cache: as the web workers' user when hapress runs as root (Redis does
/// not drop privileges itself), so it can never write outside its own directory.
pub fn redis(tools: &Tools, layout: &Layout, user: Option<&WorkerUser>) -> Process {
    let launch = Launch {
        program: tools.redis_server.clone(),
        args: vec![layout.redis_config().display().to_string()],
        log: layout.log("redis.log"),
        run_as: user.map(|u| (u.uid, u.gid)),
    };
    Process::new(layout, "redis", Kind::Cache, launch)
}

/// `path` relative to the state directory when inside it (shorter in `status`).
fn relative(layout: &Layout, path: &std::path::Path) -> String {
    path.strip_prefix(&layout.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Address a component serves on, for `status`.
pub fn address(spec: &WordPressClusterSpec, layout: &Layout, p: &Process) -> String {
    let bind = &spec.embedded.bind_address;
    match p.kind {
        Kind::Database => {
            let i: u32 = p.name.trim_start_matches("db-").parse().unwrap_or(0);
            format!("{bind}:{}", db_port(spec, i))
        }
        Kind::Web => {
            let i: u32 = p.name.trim_start_matches("web-").parse().unwrap_or(0);
            relative(layout, &layout.web_socket(i))
        }
        Kind::Nginx => format!("{bind}:{}", spec.embedded.http_port),
        Kind::Router => format!(
            "{} {}",
            relative(layout, &layout.router_socket()),
            crate::config::router_address(spec)
        ),
        Kind::Cache => relative(layout, &layout.redis_socket()),
    }
}
