//! Forwarding a command to its backend and relaying the answer chunk by chunk.

use std::sync::atomic::Ordering;

use hapress_wire::consts::header;
use hapress_wire::packet::HEADER;
use hapress_wire::response::{Outcome, ResponseTracker, Step};

use crate::conn::{Conn, SMALL_PACKET_LIMIT};
use crate::route::Target;

use super::error::on_client;
use super::{trace_enabled, Session, SessionError, R};

/// Waits until `client` hangs up. Bytes it sends meanwhile (a pipelined command) stay
/// buffered for later, up to a bound; past it the client is no longer watched. Costs no
/// syscall while the client is quiet (tokio knows its socket has nothing to read) and no timer.
async fn hung_up(client: &mut Conn) {
    while client.fill_bounded(SMALL_PACKET_LIMIT).await {}
}

/// The largest relay buffer a session keeps between statements.
const KEPT_RELAY_BUFFER: usize = 256 * 1024;

impl Session {
    /// Sends the command (all its chunks; `first: None`: only `readdressed`, a command the
    /// client already sent) to `target` and relays the answer. A replica's refusal of a read
    /// as read-only is not relayed: the answer is `None`, which an answered command
    /// on a replica never is otherwise.
    pub(super) async fn forward(
        &mut self,
        first: Option<hapress_wire::packet::Chunk>,
        target: Target,
        readdressed: Option<&[u8]>,
        payload: &[u8],
    ) -> R<Option<Outcome>> {
        let topo = self.topo.clone();
        let (idx, backend) = match target {
            Target::Primary => (self.primary.idx, &mut self.primary.lease.conn),
            Target::Replica => {
                let b = self
                    .replica
                    .as_mut()
                    .ok_or_else(|| SessionError::router("the replica connection vanished"))?;
                (b.idx, &mut b.lease.conn)
            }
        };
        topo.backends[idx]
            .counters
            .statements
            .fetch_add(1, Ordering::Relaxed);
        match target {
            Target::Primary => topo.routed_primary.fetch_add(1, Ordering::Relaxed),
            Target::Replica => topo.routed_replica.fetch_add(1, Ordering::Relaxed),
        };
        // Forward the command chunk by chunk.
        let started = std::time::Instant::now();
        let Some(mut c) = first else {
            let resend = readdressed.unwrap_or(payload);
            if let Err(e) = backend.write_packet(0, resend).await {
                return self.send_failed(idx, target, payload, started, e).await;
            }
            return self.relay_answer(idx, target, payload, started).await;
        };
        let mut readdressed = readdressed;
        loop {
            let raw = self.client.chunk_bytes(&c);
            let sent = match readdressed.take() {
                Some(p) => backend.write_packet(0, p).await.map(|_| ()),
                None => backend.write_raw(raw).await,
            };
            if let Err(e) = sent {
                self.client.consume(&c);
                return self.send_failed(idx, target, payload, started, e).await;
            }
            self.client.consume(&c);
            if c.last {
                break;
            }
            c = self.client.next_chunk().await.map_err(on_client("relay"))?;
        }
        self.relay_answer(idx, target, payload, started).await
    }

    /// Sending a command to backend `idx` failed. A server that refuses a command part-way (a
    /// packet over `max_allowed_packet`) answers with an error and closes: that answer is
    /// relayed, as a direct client gets it, when it is already there; else the backend is lost.
    async fn send_failed(
        &mut self,
        idx: usize,
        target: Target,
        payload: &[u8],
        started: std::time::Instant,
        e: impl std::fmt::Display,
    ) -> R<Option<Outcome>> {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.relay_answer(idx, target, payload, started),
        )
        .await;
        if let Ok(Ok(outcome)) = answer {
            return Ok(outcome);
        }
        let addr = self.topo.backends[idx].addr.clone();
        self.lost(idx, &format!("sending to {addr}: {e}")).await
    }

    /// Relays the answer of backend `idx` to the command `payload` (its first chunk).
    async fn relay_answer(
        &mut self,
        idx: usize,
        target: Target,
        payload: &[u8],
        started: std::time::Instant,
    ) -> R<Option<Outcome>> {
        let topo = self.topo.clone();
        let backend = match target {
            Target::Primary => &mut self.primary.lease.conn,
            Target::Replica => {
                &mut self
                    .replica
                    .as_mut()
                    .ok_or_else(|| SessionError::router("the replica connection vanished"))?
                    .lease
                    .conn
            }
        };
        let Some(mut tracker) = ResponseTracker::new(payload, self.deprecate_eof)
            .map(|t| t.cache_metadata(self.cache_metadata))
        else {
            return Ok(None);
        };
        // Relay the answer; flush whenever the backend has nothing more buffered.
        let mut out = std::mem::take(&mut self.relay);
        out.clear();
        let mut captured: Option<String> = None;
        self.schema_seen = None;
        let mut answered = false;
        loop {
            let next = if answered || !backend.nothing_buffered() {
                backend.next_chunk().await
            } else {
                // Until the answer starts, a client that hangs up ends the session and closes
                // the backend connection, so the server sees the hang-up as it would directly
                // (a statement waiting on a lock is abandoned, the lock released).
                tokio::select! {
                    biased;
                    r = backend.next_chunk() => r,
                    () = hung_up(&mut self.client) => {
                        return Err(SessionError::client_gone_mid_command());
                    }
                    // A primary that hangs and is replaced never answers: the client's
                    // connection is closed (2013, as for a server that dies mid-statement) and
                    // the statement is never re-run.
                    () = topo.demoted((target == Target::Primary).then_some(idx)) => {
                        return self.lost(idx, "another server became the primary").await;
                    }
                }
            };
            answered = true;
            let rc = match next {
                Ok(rc) => rc,
                Err(e) => {
                    let _ = self.client.write_raw(&out).await;
                    return self
                        .lost(
                            idx,
                            &format!("reading from {}: {e}", topo.backends[idx].addr),
                        )
                        .await;
                }
            };
            let raw = backend.chunk_bytes(&rc);
            let step = if rc.first {
                tracker
                    .feed(&raw[HEADER..], rc.last)
                    .map_err(|e| SessionError::lost(idx, format!("answer: {e}")))?
            } else {
                Step::More
            };
            if trace_enabled() && rc.first && raw.get(HEADER) == Some(&header::ERR) {
                eprintln!(
                    "hapress router: trace: ERR {} {}",
                    rc.len,
                    String::from_utf8_lossy(&raw[HEADER..raw.len().min(HEADER + 200)])
                );
            }
            if target == Target::Replica
                && rc.first
                && rc.last
                && step == Step::Done(Outcome::Err)
                && out.is_empty()
                && read_only_refusal(&raw[HEADER..])
            {
                // The read writes after all (a view or a column default calling a sequence, a
                // stored function that modifies data): it did nothing on the replica; the
                // primary runs it.
                backend.consume(&rc);
                return Ok(None);
            }
            let ok_packet = tracker.last_ok().filter(|_| rc.first && rc.last);
            if let Some(ok) = ok_packet {
                // Every backend connection tracks session state; the GTID of a write is read
                // from the primary's OK (parsed once, by the tracker), and the state is
                // removed for a client that did not ask for it.
                let payload = &raw[HEADER..];
                if target == Target::Primary {
                    if let Some(g) = ok.last_gtid(payload) {
                        topo.note_gtid(&g);
                        captured = Some(g);
                    }
                    if let Some(db) = ok.schema(payload) {
                        self.schema_seen = Some(db.to_vec());
                    }
                }
                match self
                    .track_added
                    .then(|| ok.without_session_state(payload))
                    .flatten()
                {
                    Some(plain) => {
                        hapress_wire::packet::write_packet(&mut out, rc.seq, &plain);
                    }
                    None => out.extend_from_slice(raw),
                }
            } else {
                out.extend_from_slice(raw);
            }
            backend.consume(&rc);
            if out.len() >= 64 * 1024 || backend.nothing_buffered() || step != Step::More {
                if self.client.write_raw(&out).await.is_err() {
                    return Err(SessionError::client_gone_mid_command());
                }
                out.clear();
            }
            match step {
                Step::More => {}
                Step::Done(o) => {
                    topo.backends[idx].counters.observe(started.elapsed());
                    if out.capacity() <= KEPT_RELAY_BUFFER {
                        self.relay = out;
                    }
                    self.answer_gtid = captured.is_some();
                    if captured.is_some() {
                        self.last_gtid = captured;
                        self.replica_reached = None;
                    }
                    return Ok(Some(o));
                }
                Step::LocalInfile => {
                    // The client now sends the file, ending with an empty packet.
                    loop {
                        let Ok(fc) = self.client.next_chunk().await else {
                            return Err(SessionError::client_gone_mid_command());
                        };
                        let raw = self.client.chunk_bytes(&fc);
                        if let Err(e) = backend.write_raw(raw).await {
                            return Err(SessionError::lost(idx, format!("LOCAL INFILE: {e}")));
                        }
                        let empty = fc.first && fc.len == 0;
                        self.client.consume(&fc);
                        if empty {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// A backend failed mid-command: the session ends and the client connection is closed
    /// without an error packet, exactly as when a server goes away mid-statement (shutdown,
    /// crash, `KILL CONNECTION`), so the client library reports its own "Lost connection"
    /// (2013) or "gone away" (2006). The statement is never re-run by the router.
    async fn lost(&mut self, idx: usize, why: &str) -> R<Option<Outcome>> {
        if idx != self.primary.idx && self.primary.lease.conn.gone().await {
            // `KILL CONNECTION` of this session, which reached its replica connection too.
            // The statement may have run on the replica (a read) before the kill.
            return Err(SessionError {
                retry_safe: false,
                ..SessionError::router("the session was killed")
            });
        }
        self.topo.backends[idx]
            .counters
            .errors
            .fetch_add(1, Ordering::Relaxed);
        let addr = &self.topo.backends[idx].addr;
        eprintln!("hapress router: lost {addr} during a statement ({why}); session closed");
        Err(SessionError::lost(
            idx,
            format!("lost {addr} during a statement: {why}"),
        ))
    }
}

/// ERR 1290 (`ER_OPTION_PREVENTS_STATEMENT`) from a server running with `--read-only`.
fn read_only_refusal(payload: &[u8]) -> bool {
    hapress_wire::response::parse_err(payload)
        .is_ok_and(|e| e.code == 1290 && e.message.contains("read-only"))
}
