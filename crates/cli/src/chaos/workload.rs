//! The drill's traffic: writers that insert numbered rows through the router and record every
//! acknowledgement, a reader that opens a connection per query as PHP does, and the direct
//! connections the checks read each server with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hapress_router::conn::{login, query, Conn, Credential, Rows};
use hapress_router::probe::monitor_template;

/// A statement or login that takes longer than this failed.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom the drill connects.
#[derive(Clone)]
pub struct Target {
    /// The router's address (its unix socket in the embedded runtime).
    pub router: String,
    /// The account (WordPress's).
    pub user: String,
    /// Its password.
    pub password: Vec<u8>,
}

impl Target {
    /// A new session on `addr` (the router, or one server's socket) in database `wordpress`.
    pub async fn connect(&self, addr: &str) -> Result<Conn, String> {
        let work = async {
            let mut c = Conn::connect(addr, STATEMENT_TIMEOUT)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let mut tpl = monitor_template();
            tpl.database = Some(b"wordpress".to_vec());
            login(
                &mut c,
                self.user.as_bytes(),
                &Credential::Password(self.password.clone()),
                &tpl,
            )
            .await
            .map_err(|e| format!("login to {addr}: {e}"))?;
            Ok(c)
        };
        tokio::time::timeout(STATEMENT_TIMEOUT, work)
            .await
            .map_err(|_| format!("no login to {addr} within {STATEMENT_TIMEOUT:?}"))?
    }
}

/// Runs one statement; any failure (socket, timeout, the server's error) is an error.
pub async fn sql(c: &mut Conn, statement: &str) -> Result<Rows, String> {
    tokio::time::timeout(STATEMENT_TIMEOUT, query(c, statement, false))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?
        .map_err(|(code, m)| format!("{code} {m}"))
}

/// Everything the writers and the reader saw in one round.
#[derive(Default)]
pub struct Seen {
    /// Acknowledged rows: (writer, seq, when sent, when acknowledged).
    pub acked: Vec<(u32, u64, Instant, Instant)>,
    /// Statements that failed (error, lost connection, timeout), writes and logins.
    pub write_errors: u64,
    /// Reads that succeeded and failed, with when each ended.
    pub reads: Vec<(bool, Instant)>,
}

/// The traffic of one round until `stop` is set.
pub async fn traffic(
    target: Arc<Target>,
    round: u32,
    writers: u32,
    throttle: Option<Duration>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        tasks.spawn(writer(
            target.clone(),
            round,
            w,
            throttle,
            stop.clone(),
            seen.clone(),
        ));
    }
    tasks.spawn(reader(target, round, stop, seen));
    while tasks.join_next().await.is_some() {}
}

/// Inserts rows `(round, w, 1..)`, each in its own autocommit statement, on one session that
/// it replaces when it fails. A failed statement is never retried: its number is skipped, so
/// a row that appears twice was run twice by something else.
async fn writer(
    target: Arc<Target>,
    round: u32,
    w: u32,
    throttle: Option<Duration>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut conn: Option<Conn> = None;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match target.connect(&target.router).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    note_error(&seen);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        seq += 1;
        let insert =
            format!("INSERT INTO hapress_chaos (round, writer, seq) VALUES ({round}, {w}, {seq})");
        let sent = Instant::now();
        match sql(c, &insert).await {
            Ok(_) => seen.lock().unwrap_or_else(|e| e.into_inner()).acked.push((
                w,
                seq,
                sent,
                Instant::now(),
            )),
            Err(_) => {
                conn = None;
                note_error(&seen);
            }
        }
        if let Some(t) = throttle {
            tokio::time::sleep(t).await;
        }
    }
}

fn note_error(seen: &Mutex<Seen>) {
    seen.lock().unwrap_or_else(|e| e.into_inner()).write_errors += 1;
}

/// Reads through a new session each time, as a PHP request does.
async fn reader(target: Arc<Target>, round: u32, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::Relaxed) {
        let ok = async {
            let mut c = target.connect(&target.router).await?;
            sql(
                &mut c,
                &format!("SELECT COUNT(*) FROM hapress_chaos WHERE round = {round}"),
            )
            .await
        }
        .await
        .is_ok();
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .reads
            .push((ok, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
