//! The hapress SQL router: stock WordPress (or any MySQL client) talks to it as if it were one
//! MariaDB server; it sends writes to the primary and autocommit reads to healthy replicas.
//!
//! # Layout
//! - [`classify`]: statement text -> where it may run and what it does to the session (pure).
//! - [`route`]: statement x session state x backend health -> target (pure).
//! - [`config`]: the router's settings file (defined in `hapress-contract`).
//! - [`conn`]: the only owner of sockets: buffered chunk I/O, the router's own logins.
//! - [`probe`]: one task per backend reading its role, positions and replication threads.
//! - [`topology`]: what the probes saw, the primary election, user password hashes.
//! - [`failover`]: the failover manager (one router of many acts) and its SQL actions.
//! - [`pool`]: backend connections reused across client sessions, bounded per backend.
//! - [`session`]: one client session: relayed handshake, routing, forwarding.
//! - [`compress`]: the compressed protocol on the client side of a session.
//! - [`server`]: listener, connection limit, the status listener (`/status`, `/switchover`).
//! - [`metrics`]: `/metrics`, from the typed status.

pub mod classify;
pub mod compress;
pub mod config;
pub mod conn;
pub mod failover;
pub mod metrics;
pub mod pool;
pub mod probe;
pub mod route;
pub mod server;
pub mod session;
pub mod topology;
