//! The hapress SQL router: stock WordPress (or any MySQL client) talks to it as if it were one
//! MariaDB server; it sends writes to the primary and autocommit reads to healthy replicas.
//!
//! # Layout
//! - [`classify`]: statement text -> where it may run and what it does to the session (pure).
//! - [`route`]: statement x session state x backend health -> target (pure).

pub mod classify;
pub mod route;
