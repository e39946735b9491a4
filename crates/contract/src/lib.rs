//! The one definition of what the SQL router and the two runtimes (embedded, Kubernetes)
//! exchange. No I/O beyond reading a config file, no async runtime: the router, `hapress up`,
//! `hapress status` and `hapress render` all build on these types, so a renamed field breaks the
//! build instead of a status page.
//!
//! # Layout
//! - [`config`]: the router's settings file (`hapress router --config`), its defaults, and the
//!   read-your-writes policy the spec also uses.
//! - [`status`]: what the router reports on `/status` (and what `/metrics` is made from).
//! - [`accounts`]: the accounts the router and replicas log in with, and their grants.
//! - [`replication`]: the `my.cnf` settings replication and failover rely on.

pub mod accounts;
pub mod config;
pub mod replication;
pub mod status;
