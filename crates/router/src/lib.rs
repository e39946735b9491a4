//! The hapress SQL router: stock WordPress (or any MySQL client) talks to it as if it were one
//! MariaDB server; it sends writes to the primary and autocommit reads to healthy replicas.
//!
//! # Layout
//! - [`classify`]: statement text -> where it may run and what it does to the session (pure).
//! - [`route`]: statement x session state x backend health -> target (pure).
//! - [`config`]: the router's settings file.
//! - [`conn`]: the only owner of sockets: buffered chunk I/O, the router's own logins.
//! - [`topology`]: probes of every backend, the primary election, user password hashes.
//! - [`pool`]: backend connections reused across client sessions, bounded per backend.
//! - [`session`]: one client session: relayed handshake, routing, forwarding.
//! - [`server`]: listener, connection limit, `/metrics` and `/status`.

pub mod classify;
pub mod config;
pub mod conn;
pub mod pool;
pub mod route;
pub mod server;
pub mod session;
pub mod topology;
