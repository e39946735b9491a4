//! The purger of a Kubernetes page-cache pod (`hapress page-cache-purger`): nginx keeps the
//! pod's copy of the pages in a directory this process shares; WordPress's must-use plugin
//! asks every cache pod to empty its copy when a change is done, with a request signed by a
//! key only the web pods and the cache pods have.
//!
//! - `POST /purge` with `X-Hapress-Purge: <unix time>.<hex HMAC-SHA256(key, "purge <time>")>`:
//!   empties the directory, waits 200 ms (a page rendered just before the change may be on
//!   its way into the cache), empties it again, then answers `200` (`500` when a file could
//!   not be deleted). A signature that is missing, wrong or more than five minutes off gets
//!   `403` and changes nothing.
//! - At start it empties the directory (a restarted purger may have missed purges), and it
//!   counts nginx's log every 5 s (which keeps the log under 16 MB).
//! - `GET /metrics`: `hapress_page_cache_requests_total{result}`, counted from nginx's
//!   page-cache log (the same series as `hapress status --prometheus`).
//! - `GET /health`: `200` while the process runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{IoContext, Result};
use crate::status::PageCacheLog;

/// The request header carrying the signature.
pub const HEADER: &str = "x-hapress-purge";
/// How far a signature's time may be from this pod's clock.
pub const MAX_SKEW_SECONDS: u64 = 300;
/// The wait between the two emptyings of one purge.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Where the purger listens and what it empties.
#[derive(Clone, Debug)]
pub struct PurgerConfig {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// nginx's `proxy_cache_path` directory (emptied, kept).
    pub cache_dir: PathBuf,
    /// File holding the shared purge key (read at every purge: a rotated Secret applies).
    pub key_file: PathBuf,
    /// nginx's page-cache log, for `/metrics` (none: no page-cache series).
    pub log: Option<PathBuf>,
}

/// The signature header value for `key` at unix time `t` (what the must-use plugin sends).
pub fn sign(key: &[u8], t: u64) -> String {
    let mut mac = mac(key);
    mac.update(format!("purge {t}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{t}.{hex}")
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// Whether `header` is a signature by `key` within [`MAX_SKEW_SECONDS`] of `now`; compared in
/// constant time.
pub fn verify(key: &[u8], header: &str, now: u64) -> bool {
    let Some((t, hex)) = header.trim().split_once('.') else {
        return false;
    };
    let Ok(t) = t.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(t) > MAX_SKEW_SECONDS || hex.len() != 64 {
        return false;
    }
    let Some(bytes) = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = mac(key);
    mac.update(format!("purge {t}").as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

/// What one emptying did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Emptied {
    /// Files deleted.
    pub files: usize,
    /// The first failure other than a file that was already gone (nginx's cache manager
    /// deletes too): the copy may not be empty.
    pub failure: Option<String>,
}

/// Deletes everything under `dir`, keeping `dir`. A `dir` that does not exist is empty.
pub fn empty(dir: &Path) -> Emptied {
    let mut out = Emptied::default();
    empty_into(dir, &mut out);
    out
}

fn empty_into(dir: &Path, out: &mut Emptied) {
    fn fail(out: &mut Emptied, what: &str, path: &Path, e: std::io::Error) {
        if e.kind() != std::io::ErrorKind::NotFound && out.failure.is_none() {
            out.failure = Some(format!("{what} {}: {e}", path.display()));
        }
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return fail(out, "reading", dir, e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return fail(out, "reading", dir, e),
        };
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            empty_into(&path, out);
            if let Err(e) = std::fs::remove_dir(&path) {
                fail(out, "removing", &path, e);
            }
        } else {
            match std::fs::remove_file(&path) {
                Ok(()) => out.files += 1,
                Err(e) => fail(out, "deleting", &path, e),
            }
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Shared {
    config: PurgerConfig,
    /// The page-cache log and what it counted.
    log: Mutex<Option<PageCacheLog>>,
    /// One purge at a time.
    purging: Mutex<()>,
}

/// How often the log is counted without a scrape.
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// Serves until the process is stopped; fails only when the listener cannot be opened.
pub fn run(config: PurgerConfig) -> Result<()> {
    let listener = TcpListener::bind(config.listen).context(|| {
        format!(
            "listening on {} (is another purger or program using the port?)",
            config.listen
        )
    })?;
    eprintln!(
        "hapress page-cache purger: listening on {}, emptying {}",
        config.listen,
        config.cache_dir.display()
    );
    // A copy left from before this process (a restart) may have missed purges meanwhile.
    if let Some(why) = empty(&config.cache_dir).failure {
        eprintln!("hapress page-cache purger: emptying the cache at start failed: {why}");
    }
    let log = config.log.clone().map(PageCacheLog::new);
    let shared = Arc::new(Shared {
        config,
        log: Mutex::new(log),
        purging: Mutex::new(()),
    });
    // The log is counted (and kept under 16 MB) whether or not anyone scrapes the metrics.
    if shared.config.log.is_some() {
        let counting = Arc::clone(&shared);
        std::thread::spawn(move || loop {
            std::thread::sleep(COUNT_EVERY);
            if let Some(log) = counting
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                log.update();
            }
        });
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || serve(stream, &shared));
    }
    Ok(())
}

fn serve(mut s: TcpStream, shared: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    // The head only: no request this server takes has a body.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.lines();
    let mut words = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let signature = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(HEADER))
        .map(|(_, v)| v.trim().to_string());
    let (code, ctype, body) = answer(shared, method, path, signature.as_deref());
    let _ = write!(
        s,
        "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn answer(
    shared: &Shared,
    method: &str,
    path: &str,
    signature: Option<&str>,
) -> (&'static str, &'static str, String) {
    let text = "text/plain; charset=utf-8";
    match (method, path) {
        ("POST", "/purge") => {
            let key = std::fs::read_to_string(&shared.config.key_file).unwrap_or_default();
            let key = key.trim();
            if key.is_empty() {
                eprintln!(
                    "hapress page-cache purger: no key in {}; purges are refused",
                    shared.config.key_file.display()
                );
                return ("503 Service Unavailable", text, "no purge key\n".into());
            }
            if !signature.is_some_and(|sig| verify(key.as_bytes(), sig, now())) {
                eprintln!(
                    "hapress page-cache purger: refused a purge with a missing or wrong signature"
                );
                return ("403 Forbidden", text, "bad signature\n".into());
            }
            let _one_at_a_time = shared.purging.lock().unwrap_or_else(|e| e.into_inner());
            let first = empty(&shared.config.cache_dir);
            std::thread::sleep(SETTLE);
            let second = empty(&shared.config.cache_dir);
            match first.failure.or(second.failure) {
                Some(why) => {
                    eprintln!("hapress page-cache purger: emptying the cache failed: {why}");
                    ("500 Internal Server Error", text, format!("{why}\n"))
                }
                None => (
                    "200 OK",
                    text,
                    format!("emptied {} pages\n", first.files + second.files),
                ),
            }
        }
        (_, "/purge") => ("405 Method Not Allowed", text, "POST /purge\n".into()),
        ("GET", "/metrics") => {
            let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
            let counts = log.as_mut().map(|l| {
                l.update();
                l.counts.clone()
            });
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                crate::metrics::render_page_cache(&counts.unwrap_or_default()),
            )
        }
        ("GET", "/health") => ("200 OK", text, "ok\n".into()),
        _ => (
            "404 Not Found",
            text,
            "try POST /purge (signed), GET /metrics or GET /health\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_key_and_time_only() {
        let key = b"0123456789abcdef";
        let sig = sign(key, 1_000_000);
        assert!(verify(key, &sig, 1_000_000));
        assert!(verify(key, &sig, 1_000_000 + MAX_SKEW_SECONDS));
        assert!(verify(key, &sig, 1_000_000 - MAX_SKEW_SECONDS));
        assert!(!verify(key, &sig, 1_000_000 + MAX_SKEW_SECONDS + 1));
        assert!(!verify(b"another key", &sig, 1_000_000));
        // Another time with the same digest, a flipped digit, and no signature at all.
        let (_, hex) = sig.split_once('.').unwrap();
        assert!(!verify(key, &format!("1000001.{hex}"), 1_000_000));
        let mut flipped = sig.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(!verify(
            key,
            &String::from_utf8(flipped).unwrap(),
            1_000_000
        ));
        for bad in [
            "",
            "1000000",
            "1000000.",
            "x.y",
            &format!("1000000.{}", "zz".repeat(32)),
        ] {
            assert!(!verify(key, bad, 1_000_000), "{bad}");
        }
    }

    #[test]
    fn the_php_plugin_signs_the_same_way() {
        // `php -r "echo hash_hmac('sha256', 'purge 1700000000', 'k3y');"` (and openssl's
        // `dgst -sha256 -hmac k3y`) print this digest.
        assert_eq!(
            sign(b"k3y", 1_700_000_000),
            "1700000000.5e7c922446a23d6fda41004b10d58b604d2ea8e87aa7a19afe7fccd45c3c4017"
        );
    }

    #[test]
    fn emptying_keeps_the_directory_and_counts_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/bc")).unwrap();
        std::fs::write(d.path().join("a/bc/page1"), "x").unwrap();
        std::fs::write(d.path().join("a/bc/page2"), "x").unwrap();
        std::fs::write(d.path().join("top"), "x").unwrap();
        assert_eq!(
            empty(d.path()),
            Emptied {
                files: 3,
                failure: None
            }
        );
        assert!(d.path().is_dir());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        assert_eq!(empty(d.path()).files, 0);
        // A directory that cannot be read is a failure (not "nothing to delete"); one that
        // does not exist is empty.
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        assert!(empty(&file).failure.is_some());
        assert_eq!(empty(&d.path().join("missing")), Emptied::default());
    }
}
