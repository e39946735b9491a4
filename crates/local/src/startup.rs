//! The steps of `hapress up` after the checks: configs, databases, replication, docroot,
//! installation, web replicas, nginx, and a final request through the whole stack.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config;
use crate::error::{step_error, Error, IoContext, Result};
use crate::fsutil::{create_dir, write_if_changed};
use crate::http;
use crate::mariadb;
use crate::progress::Progress;
use crate::runtime::Runtime;
use crate::{bootstrap, site};

/// What `up` did, for the closing summary.
pub struct StartReport {
    /// WordPress was installed by this run (the admin password is new).
    pub installed_now: bool,
    /// Data directories created by this run.
    pub initialised: u32,
}

impl Runtime {
    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    fn write_configs(&self) -> Result<()> {
        let spec = &self.cluster.spec;
        let root = nix::unistd::geteuid().is_root();
        for i in 0..spec.database.instances {
            create_dir(&self.layout.db_dir(i), 0o700)?;
            create_dir(&self.layout.db_tmp(i), 0o700)?;
            let cnf = config::my_cnf(spec, &self.layout, i, root);
            write_if_changed(&self.layout.db_config(i), &cnf, 0o644)?;
        }
        create_dir(&self.layout.root.join("web"), 0o755)?;
        for i in 0..spec.web.replicas {
            write_if_changed(
                &self.layout.web_config(i),
                &config::php_fpm_conf(spec, &self.layout, i, self.user.as_ref()),
                0o644,
            )?;
        }
        write_if_changed(
            &self.layout.router_config(),
            &config::router_yaml(spec, &self.layout),
            0o644,
        )?;
        let nginx = self.layout.nginx_dir();
        create_dir(&nginx.join("tmp"), 0o755)?;
        // nginx's workers fill the page cache and the site's PHP empties it: the same user.
        let cache = self.layout.page_cache_dir();
        create_dir(&cache, 0o700)?;
        if let Some(u) = &self.user {
            std::os::unix::fs::chown(&cache, Some(u.uid), Some(u.gid))
                .context(|| format!("chown {} {}", u.name, cache.display()))?;
        }
        if spec.cache.object_cache.enabled {
            // Redis runs as the web workers' user (root drops to it), whose PHP writes the
            // drop-in's markers here too.
            let dir = self.layout.redis_dir();
            create_dir(&dir, 0o700)?;
            let conf = self.layout.redis_config();
            write_if_changed(
                &conf,
                &config::redis_conf(spec, &self.layout, &self.secrets),
                0o600,
            )?;
            if let Some(u) = &self.user {
                for p in [&dir, &conf] {
                    std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                        .context(|| format!("chown {} {}", u.name, p.display()))?;
                }
            }
        }
        write_if_changed(
            &nginx.join("nginx.conf"),
            &config::nginx_conf(spec, &self.layout, self.user.as_ref()),
            0o644,
        )?;
        Ok(())
    }

    /// Runs every startup step; on error the caller shuts down what was started.
    pub fn start(&mut self, progress: &mut Progress) -> Result<StartReport> {
        let spec = self.cluster.spec.clone();
        let n_db = spec.database.instances;

        progress.step("Writing configuration");
        self.write_configs()?;
        progress.done("ok");
        self.check_stop()?;

        progress.step(&format!("Initialising {n_db} database data directories"));
        let (tools, layout) = (&self.tools, &self.layout);
        let results: Vec<Result<bool>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n_db)
                .map(|i| s.spawn(move || mariadb::init_datadir(tools, layout, i)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(step_error(
                            "initialising databases",
                            "installer thread panicked",
                        ))
                    })
                })
                .collect()
        });
        let mut initialised = 0;
        for r in results {
            initialised += u32::from(r?);
        }
        progress.done(&if initialised == 0 {
            "already initialised, adopted".to_string()
        } else {
            format!("{initialised} created")
        });
        self.check_stop()?;

        progress.step(&format!("Starting {n_db} database servers"));
        for d in &mut self.dbs {
            d.spawn()?;
        }
        for i in 0..n_db {
            let stop = self.stop.clone();
            let proc_ = &mut self.dbs[i as usize];
            mariadb::wait_ready(&self.layout, i, Duration::from_secs(120), &mut || {
                proc_.is_running() && !stop.load(Ordering::Relaxed)
            })?;
        }
        progress.done("ready");
        self.check_stop()?;

        progress.step("Setting up GTID replication");
        if !self.state.is_done("replication") {
            // A new cluster starts with its preferred primary, if the spec names one.
            if let Some(p) = spec
                .database
                .failover
                .preferred_primary
                .filter(|&p| p < n_db)
            {
                self.state.primary = p;
            }
        }
        let recorded = self.state.primary;
        let ran = self.state.once(&self.layout, "replication", || {
            bootstrap::replication(&self.tools, &self.layout, &spec, &self.secrets, recorded)
        })?;
        if !ran {
            // Every server started read-only: the most advanced one takes writes again.
            let p = bootstrap::resume_primary(
                &self.tools,
                &self.layout,
                &spec,
                &self.secrets,
                recorded,
            )?;
            if p != recorded {
                self.event(
                    &crate::layout::db_name(p),
                    format!(
                        "is the primary: it has transactions {} lacks (a failover that was not recorded)",
                        crate::layout::db_name(recorded)
                    ),
                );
                self.state.primary = p;
                self.state.save(&self.layout)?;
            }
        }
        let primary = self.state.primary;
        progress.done(&if ran {
            format!(
                "{} replica(s) attached, semi-sync {}",
                n_db - 1,
                if spec.database.semi_sync.enabled && n_db > 1 {
                    "on"
                } else {
                    "off"
                }
            )
        } else {
            format!(
                "already set up; {} is the primary",
                crate::layout::db_name(primary)
            )
        });
        self.check_stop()?;

        progress.step("Starting the SQL router");
        if spec.router.enabled {
            self.state.once(&self.layout, "router-user", || {
                bootstrap::router_user(&self.tools, &self.layout, &spec, &self.secrets, primary)
            })?;
            // The router reaches the servers over their unix sockets (clusters made before
            // that get the accounts on their next `up`).
            self.state.once(&self.layout, "socket-accounts", || {
                bootstrap::socket_accounts(&self.tools, &self.layout, &spec, &self.secrets, primary)
            })?;
            // The monitor account became the failover manager's (clusters made before get the
            // grants on their next `up`).
            self.state.once(&self.layout, "failover-grants", || {
                bootstrap::router_user(&self.tools, &self.layout, &spec, &self.secrets, primary)?;
                bootstrap::socket_accounts(&self.tools, &self.layout, &spec, &self.secrets, primary)
            })?;
            if let Some(r) = &mut self.router {
                r.spawn()?;
            }
            let layout = self.layout.clone();
            let log = self.layout.log("router.log").display().to_string();
            self.wait_until(
                "starting the SQL router",
                Duration::from_secs(20),
                &log,
                || crate::status::router_status(&layout).is_some_and(|s| s.primary.is_some()),
            )?;
            progress.done("ready, reads split across replicas");
            // The router may have moved the primary already (to the preferred server): the
            // installer below writes to the primary itself.
            if let Some(st) = crate::status::router_status(&self.layout) {
                self.follow_primary(&st);
            }
        } else {
            progress.done("skipped (spec.router.enabled: false; WordPress uses the primary)");
        }
        self.check_stop()?;

        progress.step("Starting the object cache");
        if let Some(r) = &mut self.redis {
            r.spawn()?;
            let (socket, password) = (
                self.layout.redis_socket(),
                self.secrets.redis_password.clone(),
            );
            let log = self.layout.log("redis.log").display().to_string();
            self.wait_until("starting Redis", Duration::from_secs(15), &log, || {
                crate::redis::ping(&socket, &password)
            })?;
            progress.done(&format!(
                "Redis ready, {} MiB",
                spec.cache.object_cache.max_memory_mb
            ));
        } else {
            progress.done("skipped (spec.cache.objectCache.enabled: false)");
        }
        self.check_stop()?;

        progress.step("Preparing the shared docroot");
        site::build_docroot(
            &self.tools,
            &self.layout,
            self.user.as_ref(),
            spec.cache.object_cache.enabled,
        )?;
        let cache = self.layout.page_cache_dir();
        let object_cache = config::ObjectCacheWiring {
            address: self.layout.redis_socket().display().to_string(),
            state_dir: self.layout.redis_dir(),
            key_prefix: format!("hapress:{}", self.cluster.name),
        };
        let php = config::wp_config(
            &spec,
            &self.cluster.embedded_url(),
            &config::wp_db_host(&spec, &self.layout, self.state.primary),
            &self.secrets,
            spec.cache.page.enabled.then_some(cache.as_path()),
            spec.cache.object_cache.enabled.then_some(&object_cache),
        );
        site::write_wp_config(&self.layout, &php, self.user.as_ref())?;
        progress.done("ok");
        self.check_stop()?;

        progress.step("Installing WordPress");
        let installed_now = if self.state.is_done("site-installed") {
            progress.done("already installed");
            false
        } else {
            let redone = site::install(
                &self.tools,
                &self.layout,
                &self.cluster,
                &self.secrets.admin_password,
                self.user.as_ref(),
                &format!(
                    "{}:{}",
                    spec.embedded.bind_address,
                    config::db_port(&spec, self.state.primary)
                ),
            )?;
            bootstrap::replicas_caught_up(&self.tools, &self.layout, &spec, self.state.primary)?;
            self.state.mark_done(&self.layout, "site-installed")?;
            progress.done(if redone {
                "installed (an interrupted install was dropped and done again)"
            } else {
                "installed"
            });
            true
        };
        self.check_stop()?;

        progress.step(&format!("Starting {} web replicas", spec.web.replicas));
        for w in &mut self.webs {
            w.spawn()?;
        }
        for i in 0..spec.web.replicas {
            let sock = self.layout.web_socket(i);
            let log = self.layout.log(&format!("web-{i}.log"));
            self.wait_until(
                &format!("starting web-{i}"),
                Duration::from_secs(30),
                &log.display().to_string(),
                || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
            )?;
        }
        progress.done("ready");

        progress.step("Starting nginx");
        self.nginx.spawn()?;
        let addr: std::net::SocketAddr =
            format!("{}:{}", spec.embedded.bind_address, spec.embedded.http_port)
                .parse()
                .map_err(|_| step_error("starting nginx", "bad bind address"))?;
        let log = self.layout.log("nginx-error.log").display().to_string();
        self.wait_until("starting nginx", Duration::from_secs(15), &log, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })?;
        progress.done("ready");

        progress.step("Checking the site through nginx");
        let host = format!("{}:{}", spec.embedded.bind_address, spec.embedded.http_port);
        let (code, body) = http::get(addr, &host, "/", Duration::from_secs(30))
            .map_err(|e| step_error("checking the site", format!("GET / failed: {e}")))?;
        // A site installed now has the spec's title; an older one may have been renamed in
        // its settings since, so any WordPress page (it links its own assets) will do.
        let is_site = if installed_now {
            body.contains(&spec.site.title)
        } else {
            body.contains("/wp-includes/") || body.contains("/wp-content/")
        };
        if code != 200 || !is_site {
            return Err(step_error(
                "checking the site",
                format!(
                    "GET / answered {code} without {} ({}); see {}",
                    if installed_now {
                        "the site title"
                    } else {
                        "a WordPress page"
                    },
                    page_text(&body),
                    self.layout.logs_dir().display()
                ),
            ));
        }
        progress.done("200 OK");
        Ok(StartReport {
            installed_now,
            initialised,
        })
    }

    fn wait_until(
        &mut self,
        step: &str,
        timeout: Duration,
        log: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if ready() {
                return Ok(());
            }
            self.check_stop()?;
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(step_error(
            step,
            format!("not ready within {timeout:?}; see {log}"),
        ))
    }
}

/// What a page says, for an error message: its text without tags, in one line of at most 200
/// characters ("Error establishing a database connection", PHP's critical error...).
fn page_text(html: &str) -> String {
    let (body, mut in_tag) = match html.split_once("<body") {
        Some((_, b)) => (b, true),
        None => (html, false),
    };
    let mut text = String::new();
    for ch in body.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut line = words.join(" ");
    if let Some((cut, _)) = line.char_indices().nth(200) {
        line.truncate(cut);
        line.push_str("...");
    }
    if line.is_empty() {
        "an empty page".into()
    } else {
        format!("the page says: {line}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_text_is_the_body_without_tags_in_one_short_line() {
        let page = "<html><head><title>WordPress &rsaquo; Error</title><style>p{}</style></head>\n<body id=\"error-page\">\n<div class=\"wp-die-message\"><h1>Error establishing a database connection</h1></div></body></html>";
        assert_eq!(
            super::page_text(page),
            "the page says: Error establishing a database connection"
        );
        assert_eq!(super::page_text(""), "an empty page");
        assert!(super::page_text(&"x ".repeat(300)).ends_with("..."));
    }
}
