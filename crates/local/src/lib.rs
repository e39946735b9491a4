//! The embedded runtime: a whole highly available WordPress cluster as supervised processes on
//! one machine, from Debian's MariaDB, php-fpm, nginx and WordPress packages.
//!
//! # Layout
//! - [`commands`]: `up` (foreground or detached), `down`, `status` front ends.
//! - [`runtime`]: the supervisor: restarts with backoff, events, `status.json`, ordered stop.
//! - [`startup`]: the steps of `up` after the checks.
//! - [`process`]: one child process in its own process group; strays of a killed supervisor.
//! - [`components`]: how each component is launched.
//! - [`config`]: my.cnf, php-fpm, nginx, redis.conf and wp-config.php as pure functions.
//! - [`redis`]: the supervisor's health check and counters of the object cache (RESP).
//! - [`metrics`]: `status --prometheus`, the status as Prometheus text.
//! - [`purger`]: `page-cache-purger`, which empties a Kubernetes cache pod's copy on a signed
//!   request.
//! - [`mariadb`], [`bootstrap`]: datadirs, admin SQL, replication setup and status.
//! - [`rebuild`]: a diverged or lost database server copied anew from a healthy one.
//! - [`site`]: the shared docroot and the browserless install.
//! - [`preflight`]: packages, ports, paths. [`state`], [`secrets`], [`layout`]: the state directory.

pub mod bootstrap;
pub mod commands;
pub mod components;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod layout;
pub mod mariadb;
pub mod metrics;
pub mod preflight;
pub mod process;
pub mod progress;
pub mod purger;
pub mod rebuild;
pub mod redis;
pub mod runtime;
pub mod secrets;
pub mod site;
pub mod startup;
pub mod state;
pub mod status;

pub use commands::{down, status, switchover, up, StatusFormat, UpOptions};
pub use error::{Error, Result};
