//! Checks made before anything is started: installed programs, free ports, a usable state
//! directory path. Each failure says exactly how to fix it.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hapress_spec::WordPressClusterSpec;

use crate::error::{Error, Result};
use crate::layout::{db_name, Layout};

/// Absolute paths of the programs the embedded runtime runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// MariaDB server.
    pub mariadbd: PathBuf,
    /// Creates a data directory.
    pub mariadb_install_db: PathBuf,
    /// MariaDB command-line client (admin SQL over the unix socket).
    pub mariadb: PathBuf,
    /// PHP FastCGI process manager.
    pub php_fpm: PathBuf,
    /// PHP command line (site installation).
    pub php: PathBuf,
    /// nginx.
    pub nginx: PathBuf,
    /// WordPress sources (Debian's `wordpress` package).
    pub wordpress: PathBuf,
    /// `mariadb-backup`: a diverged or lost server is rebuilt from a copy of a healthy one.
    pub mariadb_backup: PathBuf,
    /// `mbstream`: unpacks that copy.
    pub mbstream: PathBuf,
    /// Redis, the object cache (empty when `spec.cache.objectCache` is off).
    pub redis_server: PathBuf,
}

/// Directories searched for programs: `HAPRESS_TOOL_PATH` if set (for unusual installs and
/// tests), else `PATH` plus the sbin directories that a non-root `PATH` often lacks.
fn search_dirs() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("HAPRESS_TOOL_PATH") {
        return std::env::split_paths(&p).collect();
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(d.into());
        }
    }
    dirs
}

fn find(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Said of what only the object cache needs.
const OBJECT_CACHE_HINT: &str =
    " (for the object cache; or set spec.cache.objectCache.enabled: false)";

/// Whether php-fpm loads the `redis` extension (the object cache's drop-in needs it).
fn php_has_redis(php_fpm: &Path) -> bool {
    std::process::Command::new(php_fpm)
        .arg("-m")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "redis")
        })
}

/// Locates every program (Redis and PHP's redis extension only with `object_cache`), or
/// reports all missing ones with the `apt-get` line that installs them.
pub fn find_tools(object_cache: bool) -> Result<Tools> {
    let dirs = search_dirs();
    let mut missing = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    let mut need = |names: &[&str], pkgs: &[&'static str]| {
        let found = find(&dirs, names);
        if found.is_none() {
            missing.push(names[0].to_string());
            for p in pkgs {
                if !packages.contains(p) {
                    packages.push(p);
                }
            }
        }
        found.unwrap_or_default()
    };
    let mariadbd = need(&["mariadbd"], &["mariadb-server"]);
    let mariadb_install_db = need(&["mariadb-install-db"], &["mariadb-server"]);
    let mariadb = need(&["mariadb"], &["mariadb-client"]);
    let php_fpm = need(
        &[
            "php-fpm",
            "php-fpm8.4",
            "php-fpm8.3",
            "php-fpm8.2",
            "php-fpm8.1",
        ],
        &["php-fpm", "php-mysql"],
    );
    let php = need(&["php"], &["php-cli"]);
    let nginx = need(&["nginx"], &["nginx"]);
    let mariadb_backup = need(&["mariadb-backup"], &["mariadb-backup"]);
    let mbstream = need(&["mbstream"], &["mariadb-backup"]);
    let redis_server = if object_cache {
        let found = need(&["redis-server"], &["redis-server"]);
        if found.as_os_str().is_empty() {
            if let Some(m) = missing.last_mut() {
                m.push_str(OBJECT_CACHE_HINT);
            }
        }
        found
    } else {
        PathBuf::new()
    };
    let wordpress = std::env::var_os("HAPRESS_WORDPRESS_DIR")
        .map_or_else(|| PathBuf::from("/usr/share/wordpress"), PathBuf::from);
    if !wordpress.join("wp-load.php").is_file() {
        missing.push(format!("WordPress ({})", wordpress.display()));
        // `php apache2-` stops apt from pulling Apache in as the wordpress package's web server.
        packages.extend(["wordpress", "php", "apache2-"]);
    }
    if object_cache && php_fpm.is_file() && !php_has_redis(&php_fpm) {
        missing.push(format!("PHP's redis extension{OBJECT_CACHE_HINT}"));
        packages.push("php-redis");
    }
    if !missing.is_empty() {
        let apt_line = format!(
            "sudo apt-get update && sudo apt-get install -y {}",
            packages.join(" ")
        );
        return Err(Error::MissingPackages { missing, apt_line });
    }
    Ok(Tools {
        mariadbd,
        mariadb_install_db,
        mariadb,
        php_fpm,
        php,
        nginx,
        wordpress,
        mariadb_backup,
        mbstream,
        redis_server,
    })
}

/// One port the cluster listens on, with what to tell the user if it is taken.
struct PortUse {
    port: u16,
    component: String,
    field: &'static str,
    flag: &'static str,
}

/// Fails with [`Error::PortInUse`] for the first port that cannot be bound.
pub fn check_ports(spec: &WordPressClusterSpec) -> Result<()> {
    let e = &spec.embedded;
    let ip: IpAddr = e.bind_address.parse().map_err(|_| Error::Step {
        step: "checking ports".into(),
        message: format!(
            "spec.embedded.bindAddress {:?} is not an IP address",
            e.bind_address
        ),
    })?;
    let mut ports = vec![PortUse {
        port: e.http_port,
        component: "nginx, the site's HTTP port".into(),
        field: "spec.embedded.httpPort",
        flag: "--http-port",
    }];
    for i in 0..spec.database.instances {
        ports.push(PortUse {
            port: e.database_port + i as u16,
            component: format!("database server {}", db_name(i)),
            field: "spec.embedded.databasePort",
            flag: "--database-port",
        });
    }
    if spec.router.enabled {
        ports.push(PortUse {
            port: u16::try_from(e.router_port(spec.database.instances)).unwrap_or(0),
            component: "the SQL router's TCP port".into(),
            field: "spec.embedded.routerPort",
            flag: "--database-port",
        });
    }
    for p in ports {
        let addr = SocketAddr::new(ip, p.port);
        if let Err(err) = TcpListener::bind(addr) {
            if err.kind() == std::io::ErrorKind::AddrInUse {
                return Err(Error::PortInUse {
                    port: p.port,
                    address: addr.to_string(),
                    component: p.component,
                    field: p.field.into(),
                    flag: p.flag.into(),
                });
            }
            return Err(Error::Io {
                context: format!("binding {addr} ({})", p.component),
                source: err,
            });
        }
    }
    Ok(())
}

/// The unprivileged account PHP and nginx workers run as when hapress runs as root.
#[derive(Debug, Clone)]
pub struct WorkerUser {
    /// Account name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric group id.
    pub gid: u32,
}

/// `www-data` when running as root; `None` (run as ourselves) otherwise.
pub fn worker_user() -> Result<Option<WorkerUser>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("www-data") {
        Ok(Some(u)) => Ok(Some(WorkerUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() })),
        _ => Err(Error::Step {
            step: "checking users".into(),
            message: "running as root needs the `www-data` account for PHP and nginx workers (it comes with Debian's base system); create it with `adduser --system --group www-data`".into(),
        }),
    }
}

/// Checks that workers running as `user` can reach the docroot inside the state directory and
/// that socket paths fit the kernel's 108-byte limit.
pub fn check_state_path(layout: &Layout, user: Option<&WorkerUser>) -> Result<()> {
    let longest = layout
        .db_socket(9)
        .as_os_str()
        .len()
        .max(layout.web_socket(64).as_os_str().len())
        .max(layout.router_status_socket().as_os_str().len());
    if longest >= 100 {
        return Err(Error::StateDir {
            dir: layout.root.clone(),
            message: format!("path is too long for unix sockets ({longest} bytes, limit 100); use a shorter --state-dir"),
        });
    }
    let Some(user) = user else { return Ok(()) };
    for dir in layout.root.ancestors().skip(1) {
        let Ok(meta) = dir.metadata() else { continue };
        let mode = meta.permissions().mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == user.uid && mode & 0o100 != 0)
            || (meta.gid() == user.gid && mode & 0o010 != 0);
        if !searchable {
            return Err(Error::StateDir {
                dir: layout.root.clone(),
                message: format!(
                    "PHP and nginx workers run as {} and cannot reach it, because {} is mode {:o}. Put the state directory somewhere they can reach, e.g. `--state-dir /var/lib/hapress/<name>`, or allow traversal with `chmod o+x {}`",
                    user.name, dir.display(), mode & 0o7777, dir.display()
                ),
            });
        }
    }
    Ok(())
}
