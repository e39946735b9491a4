//! The hapress SQL router: stock WordPress (or any MySQL client) talks to it as if it were one
//! MariaDB server; it sends writes to the primary and autocommit reads to healthy replicas.
//!
//! # Layout
//! - [`classify`]: statement text -> one [`classify::Statement`] with every fact the session
//!   needs: where it may run, what it does to the session, a KILL target (pure).
//! - [`certain`]: session `SET`s the router may answer itself and hold back (pure).
//! - [`route`]: statement x session state x backend health -> the whole [`route::Plan`]
//!   (target, what a replica must have applied, fallbacks); whether a session may follow a
//!   new primary (pure).
//! - [`config`]: the router's settings file (defined in `hapress-contract`).
//! - [`conn`]: the only owner of sockets: buffered chunk I/O, the router's own logins.
//! - [`probe`]: one task per backend reading its role, positions and replication threads.
//! - [`topology`]: what the probes saw, the primary election, user password hashes.
//! - [`failover`]: the failover manager (one router of many acts) and its SQL actions.
//! - [`pool`]: backend connections reused across client sessions, bounded per backend.
//! - [`session`]: one client session, in layers (`session/`): login, the command loop that
//!   executes the plan, relay, bookkeeping, prepared statements, the replica connection;
//!   [`session::SessionError`] says which side failed and whether a retry is safe.
//! - [`compress`]: the compressed protocol on the client side of a session.
//! - [`server`]: listener, connection limit, the status listener (`/status`, `/switchover`).
//! - [`metrics`]: `/metrics`, from the typed status.

pub mod certain;
pub mod classify;
pub mod compress;
pub mod config;
pub mod conn;
pub mod failover;
pub mod ids;
pub mod metrics;
pub mod pool;
pub mod probe;
pub mod route;
pub mod server;
pub mod session;
pub mod topology;
