//! The listener: accepts clients (TCP or unix socket) under a connection limit, starts the
//! probes, and serves `/metrics` and `/status` over HTTP when configured.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::conn::{Conn, Listener, Stream};
use crate::probe::probe_loop;
use crate::topology::Topology;
use hapress_contract::status::SwitchoverAnswer;

/// Runs the router until the process is stopped.
pub async fn serve(config: Config) -> Result<(), String> {
    let password = config.monitor_password()?;
    let config = Arc::new(config);
    let topo = Arc::new(Topology::new(&config));
    for i in 0..topo.backends.len() {
        tokio::spawn(probe_loop(
            topo.clone(),
            config.clone(),
            i,
            password.clone(),
        ));
    }
    if let Some(f) = &config.failover {
        let manager =
            crate::failover::manager::Manager::new(topo.clone(), config.clone(), f, password)?;
        tokio::spawn(manager.run());
    }
    if let Some(addr) = &config.status_listen {
        let l = Listener::bind(addr, None)
            .await
            .map_err(|e| format!("status listener {addr}: {e}"))?;
        let topo = topo.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok(s) => {
                        tokio::spawn(status_reply(s, topo.clone()));
                    }
                    // Out of file descriptors and the like: do not spin.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
    }
    let limit = Arc::new(Semaphore::new(config.max_client_connections));
    let mut listeners = Vec::new();
    for addr in std::iter::once(&config.listen).chain(&config.also_listen) {
        // A unix socket is open to any local user, as MariaDB's own socket is: the database
        // still checks every login (PHP workers run as another user than the router).
        let l = Listener::bind(addr, Some(0o666))
            .await
            .map_err(|e| format!("listen on {addr}: {e} (is another process using it?)"))?;
        eprintln!("hapress router: listening on {addr}");
        listeners.push(l);
    }
    let mut loops = tokio::task::JoinSet::new();
    for l in listeners {
        let (topo, config, limit) = (topo.clone(), config.clone(), limit.clone());
        loops.spawn(async move {
            loop {
                let s = l.accept().await.map_err(|e| format!("accept: {e}"))?;
                accept(s, &topo, &config, &limit);
            }
        });
    }
    match loops.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(format!("listener task: {e}")),
        None => Ok(()),
    }
}

fn accept(
    stream: Box<dyn Stream>,
    topo: &Arc<Topology>,
    config: &Arc<Config>,
    limit: &Arc<Semaphore>,
) {
    let topo = topo.clone();
    let config = config.clone();
    let permit = limit.clone().try_acquire_owned();
    tokio::spawn(async move {
        let mut client = Conn::new(stream);
        let Ok(_permit) = permit else {
            topo.refused.fetch_add(1, Ordering::Relaxed);
            let _ = client
                .send_greeting_err(
                    1040,
                    "Too many connections (hapress router: maxClientConnections reached)",
                )
                .await;
            return;
        };
        topo.clients.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = crate::session::run(topo.clone(), config, client).await {
            if crate::session::trace_enabled() {
                let ran = if e.retry_safe {
                    "its command did not run"
                } else {
                    "its command may have run"
                };
                eprintln!("hapress router: trace: session ended: {e} ({ran})");
            }
        }
        topo.clients.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn status_reply(mut s: Box<dyn Stream>, topo: Arc<Topology>) {
    let mut buf = [0u8; 1024];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut words = req.split_whitespace();
    let method = words.next().unwrap_or("GET");
    let path = words.next().unwrap_or("/");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (code, ctype, body) = match (method, path) {
        (_, "/metrics") => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(topo.snapshot()),
        ),
        (_, "/status") => (
            "200 OK",
            "application/json",
            serde_json::to_string(&topo.snapshot()).unwrap_or_default(),
        ),
        ("POST", "/switchover") => {
            let to = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("to="))
                .map(|t| {
                    t.parse::<usize>()
                        .map_err(|_| format!("to={t}: a server index"))
                });
            let outcome = match to {
                Some(Err(e)) => Err(e),
                Some(Ok(t)) => topo.switchover(Some(t)).await,
                None => topo.switchover(None).await,
            };
            let (code, ok, message) = match outcome {
                Ok(m) => ("200 OK", true, m),
                Err(m) => ("409 Conflict", false, m),
            };
            (
                code,
                "application/json",
                serde_json::to_string(&SwitchoverAnswer { ok, message }).unwrap_or_default(),
            )
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try GET /metrics, GET /status or POST /switchover[?to=N]\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {code}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
}

/// Runs the router on its own tokio runtime (for the `hapress router` command).
pub fn run_blocking(config: Config) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        // SIGTERM (supervisors, Kubernetes; also as PID 1, where the default action is ignored)
        // and SIGINT stop the router at once: it holds no state worth a drain.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
        tokio::select! {
            r = serve(config) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    })
}
