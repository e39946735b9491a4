//! The shared WordPress docroot and its installation.
//!
//! Debian's `wordpress` package redirects its `wp-config.php` to `/etc/wordpress`, and PHP
//! resolves `__DIR__` through symlinks, so the docroot copies the top-level PHP files and
//! `wp-admin/`, symlinks `wp-includes/`, themes, plugins and languages, and owns `wp-content/`
//! with a real, shared `uploads/` and its own `wp-config.php`.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use hapress_spec::Cluster;

use crate::error::{step_error, IoContext, Result};
use crate::fsutil::{create_dir, write_if_changed};
use crate::layout::Layout;
use crate::preflight::{Tools, WorkerUser};

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let meta = fs::metadata(entry.path())?;
        if meta.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn symlink_once(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, link)
        .context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// Builds (or completes) the docroot. Never touches `uploads/` content. With `object_cache`
/// the `object-cache.php` drop-in is installed, else removed.
pub fn build_docroot(
    tools: &Tools,
    layout: &Layout,
    user: Option<&WorkerUser>,
    object_cache: bool,
) -> Result<()> {
    let site = layout.site_dir();
    let wp = &tools.wordpress;
    create_dir(&site, 0o755)?;
    for entry in fs::read_dir(wp).context(|| format!("reading {}", wp.display()))? {
        let entry = entry.context(|| format!("reading {}", wp.display()))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if name_s.ends_with(".php") && name_s != "wp-config.php" && name_s != "wp-config-sample.php"
        {
            let dest = site.join(&name);
            if !dest.exists() {
                let tmp = site.join(format!(".{name_s}.tmp"));
                fs::copy(entry.path(), &tmp)
                    .and_then(|_| fs::rename(&tmp, &dest))
                    .context(|| format!("copying {}", dest.display()))?;
            }
        }
    }
    let admin = site.join("wp-admin");
    if !admin.exists() {
        let tmp = site.join(".wp-admin.tmp");
        let _ = fs::remove_dir_all(&tmp);
        copy_tree(&wp.join("wp-admin"), &tmp)
            .and_then(|_| fs::rename(&tmp, &admin))
            .context(|| format!("copying {}", admin.display()))?;
    }
    symlink_once(&wp.join("wp-includes"), &site.join("wp-includes"))?;
    let content = site.join("wp-content");
    create_dir(&content, 0o755)?;
    // hapress's must-use plugin (inert unless wp-config.php names the page cache).
    let mu = content.join("mu-plugins");
    create_dir(&mu, 0o755)?;
    write_if_changed(&mu.join("hapress-page-cache.php"), PAGE_CACHE_PLUGIN, 0o644)?;
    let drop_in = content.join("object-cache.php");
    if object_cache {
        write_if_changed(&drop_in, OBJECT_CACHE_DROP_IN, 0o644)?;
    } else if drop_in.exists() {
        fs::remove_file(&drop_in).context(|| format!("removing {}", drop_in.display()))?;
    }
    for sub in ["themes", "plugins", "languages"] {
        symlink_once(&wp.join("wp-content").join(sub), &content.join(sub))?;
    }
    let uploads = layout.uploads_dir();
    if !uploads.is_dir() {
        create_dir(&uploads, 0o755)?;
    }
    if let Some(u) = user {
        chown(&uploads, u)?;
    }
    Ok(())
}

/// The must-use plugin that empties the page cache when content changes.
pub const PAGE_CACHE_PLUGIN: &str = include_str!("php/hapress-page-cache.php");

/// WordPress's object cache in Redis, with a fallback to a per-request cache.
pub const OBJECT_CACHE_DROP_IN: &str = include_str!("php/object-cache.php");

fn chown(path: &Path, u: &WorkerUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
        .context(|| format!("chown {} {}", u.name, path.display()))
}

/// Writes `wp-config.php`. It holds secrets: mode 0600 when workers run as ourselves; when they
/// run as `www-data` it is root-owned, group `www-data`, mode 0640, so PHP can read it but
/// (unlike a 0600 file owned by www-data) a compromised worker cannot rewrite it.
pub fn write_wp_config(layout: &Layout, contents: &str, user: Option<&WorkerUser>) -> Result<()> {
    let path = layout.site_dir().join("wp-config.php");
    let mode = if user.is_some() { 0o640 } else { 0o600 };
    write_if_changed(&path, contents, mode)?;
    if let Some(u) = user {
        std::os::unix::fs::chown(&path, None, Some(u.gid))
            .context(|| format!("chgrp {} {}", u.name, path.display()))?;
    }
    Ok(())
}

const INSTALL_PHP: &str = r#"<?php
// hapress site installer: input JSON on stdin (never on the command line).
$in = json_decode(stream_get_contents(STDIN), true);
$u = parse_url($in['url']);
$_SERVER['HTTP_HOST'] = $u['host'] . (isset($u['port']) ? ':' . $u['port'] : '');
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);
// The primary itself, not the router: a replica may not have everything yet.
define('DB_HOST', $in['db_host']);
require $in['docroot'] . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (is_blog_installed()) {
    // hapress runs this only until it has recorded an install as finished, and serves nothing
    // before: these tables are from an install that was interrupted, maybe half done (default
    // title, no admin). Drop them; hapress runs this script again on empty tables (a new
    // process: WordPress keeps roles and options in memory).
    global $wpdb;
    $like = $wpdb->esc_like($wpdb->prefix) . '%';
    foreach ($wpdb->get_col($wpdb->prepare('SHOW TABLES LIKE %s', $like)) as $t) {
        $wpdb->query("DROP TABLE IF EXISTS `$t`");
    }
    echo "dropped-interrupted\n";
    exit(0);
}
$r = wp_install($in['title'], $in['user'], $in['email'], true, '', wp_slash($in['password']), $in['language']);
if (is_wp_error($r)) { fwrite(STDERR, $r->get_error_message() . "\n"); exit(1); }
echo "installed\n";
"#;

/// Installs WordPress through PHP CLI (no browser), talking to the primary at `db_host`
/// (`host:port`). Called until hapress has recorded an install as finished: WordPress tables
/// found then are from an interrupted install, which is dropped and done again. Returns true
/// when that happened.
pub fn install(
    tools: &Tools,
    layout: &Layout,
    cluster: &Cluster,
    admin_password: &str,
    user: Option<&WorkerUser>,
    db_host: &str,
) -> Result<bool> {
    let script = layout.run_dir().join("install.php");
    write_if_changed(&script, INSTALL_PHP, 0o644)?;
    let site = &cluster.spec.site;
    let input = serde_json::json!({
        "url": cluster.embedded_url(),
        "docroot": layout.site_dir(),
        "db_host": db_host,
        "title": site.title,
        "user": site.admin_user,
        "email": site.admin_email,
        "password": admin_password,
        "language": if site.locale == "en_US" { "" } else { site.locale.as_str() },
    });
    let log = layout.log("site-install.log");
    let log_file = fs::File::create(&log).context(|| format!("creating {}", log.display()))?;
    let mut redone = false;
    loop {
        // An installer left running by a killed supervisor would reconnect (WordPress
        // retries) and write into the install the next `up` does: it gets SIGKILL when the
        // supervisor dies (util-linux's setpriv, on every Debian system).
        let mut cmd = crate::process::dies_with_starter(&tools.php);
        cmd.arg(&script)
            .current_dir(layout.site_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(
                log_file
                    .try_clone()
                    .context(|| format!("opening {}", log.display()))?,
            );
        if let Some(u) = user {
            // Run as the workers' account so files WordPress creates stay writable by them.
            cmd.uid(u.uid).gid(u.gid);
        }
        let mut child = cmd
            .spawn()
            .context(|| format!("running {}", tools.php.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.to_string().as_bytes())
                .context(|| "sending install parameters".into())?;
        }
        let out = child
            .wait_with_output()
            .context(|| "waiting for the installer".into())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && stdout.contains("dropped-interrupted") && !redone {
            redone = true;
            continue;
        }
        if !out.status.success() || !stdout.contains("installed") {
            return Err(step_error(
                "installing WordPress",
                format!(
                    "the installer failed ({}); see {}",
                    out.status,
                    log.display()
                ),
            ));
        }
        return Ok(redone);
    }
}
