//! Where everything lives inside a state directory. One place computes every path, so the
//! supervisor, `status` and `down` agree without passing paths around.

use std::path::{Path, PathBuf};

/// The paths of one cluster's state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The state directory itself (absolute).
    pub root: PathBuf,
}

impl Layout {
    /// Layout rooted at `root`, which is made absolute so child processes can use it anywhere.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()?.join(root)
        };
        Ok(Self { root })
    }

    /// `state.json`: cluster identity, format version, finished steps.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// The spec the cluster was last started with (so `status`/`down` need no `-f`).
    pub fn spec_file(&self) -> PathBuf {
        self.root.join("spec.yaml")
    }
    /// Held (flock) by the running supervisor.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }
    /// Secrets, one file each, mode 0600, directory 0700.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    /// One secret file.
    pub fn secret(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(name)
    }
    /// Logs of every component and of the supervisor.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// A log file.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs_dir().join(name)
    }
    /// Sockets and pid files.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The supervisor's live status, rewritten every second.
    pub fn status_file(&self) -> PathBuf {
        self.run_dir().join("status.json")
    }
    /// Pid (= process group id) of a supervised component, written at spawn.
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.run_dir().join(format!("{component}.pgid"))
    }
    /// The SQL router's config.
    pub fn router_config(&self) -> PathBuf {
        self.root.join("router.yaml")
    }
    /// Where WordPress connects: the router's unix socket.
    pub fn router_socket(&self) -> PathBuf {
        self.run_dir().join("router.sock")
    }
    /// The router's `/status` and `/metrics` (HTTP over a unix socket).
    pub fn router_status_socket(&self) -> PathBuf {
        self.run_dir().join("router-http.sock")
    }
    /// Directory of database server `i`.
    pub fn db_dir(&self, i: u32) -> PathBuf {
        self.root.join(format!("db-{i}"))
    }
    /// Data directory of database server `i`.
    pub fn db_data(&self, i: u32) -> PathBuf {
        self.db_dir(i).join("data")
    }
    /// Private temporary directory of database server `i` (`tmpdir`). Shared `/tmp` makes
    /// parallel `mariadb-install-db` runs collide on their temporary tables.
    pub fn db_tmp(&self, i: u32) -> PathBuf {
        self.db_dir(i).join("tmp")
    }
    /// `my.cnf` of database server `i`.
    pub fn db_config(&self, i: u32) -> PathBuf {
        self.db_dir(i).join("my.cnf")
    }
    /// Unix socket of database server `i`.
    pub fn db_socket(&self, i: u32) -> PathBuf {
        self.run_dir().join(format!("db-{i}.sock"))
    }
    /// The shared WordPress docroot.
    pub fn site_dir(&self) -> PathBuf {
        self.root.join("site")
    }
    /// The shared uploads directory (real, not a symlink).
    pub fn uploads_dir(&self) -> PathBuf {
        self.site_dir().join("wp-content").join("uploads")
    }
    /// php-fpm config of web replica `i`.
    pub fn web_config(&self, i: u32) -> PathBuf {
        self.root.join("web").join(format!("web-{i}.conf"))
    }
    /// FastCGI socket of web replica `i`.
    pub fn web_socket(&self, i: u32) -> PathBuf {
        self.run_dir().join(format!("web-{i}.sock"))
    }
    /// nginx's directory (config, temp paths).
    pub fn nginx_dir(&self) -> PathBuf {
        self.root.join("nginx")
    }
    /// nginx's page cache (`spec.cache.page`), emptied by the site's must-use plugin.
    pub fn page_cache_dir(&self) -> PathBuf {
        self.nginx_dir().join("cache")
    }
    /// Redis's directory (`spec.cache.objectCache`): its config, socket, and the object-cache
    /// drop-in's markers (the web workers write there).
    pub fn redis_dir(&self) -> PathBuf {
        self.root.join("redis")
    }
    /// `redis.conf` (holds the password: mode 0600).
    pub fn redis_config(&self) -> PathBuf {
        self.redis_dir().join("redis.conf")
    }
    /// Redis's unix socket (Redis listens on no TCP port).
    pub fn redis_socket(&self) -> PathBuf {
        self.redis_dir().join("redis.sock")
    }
}

/// Name of database server `i` (`db-0`).
pub fn db_name(i: u32) -> String {
    format!("db-{i}")
}

/// Name of web replica `i` (`web-0`).
pub fn web_name(i: u32) -> String {
    format!("web-{i}")
}
