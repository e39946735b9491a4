//! `hapress router --config FILE`: the router's settings, defined once in
//! [`hapress_contract::config`] (the runtimes write the same type the router reads).

pub use hapress_contract::config::{defaults, Config, FailoverConfig, ReadYourWrites};
