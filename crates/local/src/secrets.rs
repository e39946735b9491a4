//! Generated secrets: random, stored one per file with mode 0600, never passed on a command
//! line or logged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;

use crate::error::{IoContext, Result};
use crate::layout::Layout;

/// Names of the secrets a cluster owns.
pub const DB_PASSWORD: &str = "db-wordpress-password";
/// Password of the replication user.
pub const REPL_PASSWORD: &str = "db-replication-password";
/// The WordPress administrator's password.
pub const ADMIN_PASSWORD: &str = "admin-password";
/// Password of the SQL router's monitor account (`hapress_router`).
pub const ROUTER_PASSWORD: &str = "db-router-password";
/// Password of the object cache's Redis.
pub const REDIS_PASSWORD: &str = "redis-password";
/// The eight WordPress keys and salts, one per line.
pub const WP_SALTS: &str = "wordpress-salts";

/// The salts WordPress expects in `wp-config.php`, in order.
pub const SALT_NAMES: [&str; 8] = [
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
];

/// The secrets of one cluster.
#[derive(Clone)]
pub struct Secrets {
    /// Password of the `wordpress` database user.
    pub db_password: String,
    /// Password of the `repl` replication user.
    pub repl_password: String,
    /// Password of the WordPress administrator.
    pub admin_password: String,
    /// Password of the router's monitor account.
    pub router_password: String,
    /// Password of the object cache's Redis.
    pub redis_password: String,
    /// Values for [`SALT_NAMES`].
    pub salts: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// Random printable salt without quotes or backslashes (safe inside PHP single quotes).
fn salt() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~";
    let mut rng = rand::thread_rng();
    (0..64)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

fn password() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// Reads secret `name`, creating it with `generate` first if it does not exist yet.
/// Creation is atomic (temp file + rename) so a crash never leaves a half-written secret.
fn ensure(layout: &Layout, name: &str, generate: impl FnOnce() -> String) -> Result<String> {
    let path = layout.secret(name);
    match fs::read_to_string(&path) {
        Ok(v) => return Ok(v.trim_end().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(|| format!("reading secret {}", path.display()))
        }
        Err(_) => {}
    }
    let value = generate();
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    f.write_all(value.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).context(|| format!("renaming {}", tmp.display()))?;
    Ok(value)
}

/// Loads the cluster's secrets, generating the missing ones.
pub fn ensure_all(layout: &Layout) -> Result<Secrets> {
    let dir = layout.secrets_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .context(|| format!("creating {}", dir.display()))?;
    let salts = ensure(layout, WP_SALTS, || {
        SALT_NAMES
            .iter()
            .map(|_| salt())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(Secrets {
        db_password: ensure(layout, DB_PASSWORD, password)?,
        repl_password: ensure(layout, REPL_PASSWORD, password)?,
        admin_password: ensure(layout, ADMIN_PASSWORD, password)?,
        router_password: ensure(layout, ROUTER_PASSWORD, password)?,
        redis_password: ensure(layout, REDIS_PASSWORD, password)?,
        salts: salts.lines().map(str::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_random_0600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        let a = ensure_all(&layout).unwrap();
        let b = ensure_all(&layout).unwrap();
        assert_eq!(a.db_password, b.db_password);
        assert_eq!(a.salts, b.salts);
        assert_eq!(a.salts.len(), 8);
        assert_ne!(a.db_password, a.repl_password);
        assert!(a
            .salts
            .iter()
            .all(|s| s.len() == 64 && !s.contains(['\'', '\\'])));
        for name in [
            DB_PASSWORD,
            REPL_PASSWORD,
            ADMIN_PASSWORD,
            ROUTER_PASSWORD,
            REDIS_PASSWORD,
            WP_SALTS,
        ] {
            let mode = fs::metadata(layout.secret(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let mode = fs::metadata(layout.secrets_dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(format!("{a:?}"), "Secrets(..)");
    }
}
