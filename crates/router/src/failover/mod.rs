//! The topology manager: lossless automatic failover, run by any number of routers of which
//! exactly one acts.
//!
//! The decisions are pure and live in [`hapress_topology::decide`].
//!
//! # Layout
//! - [`manager`]: the loop of one router: the managers' locks on every server, then the plan of
//!   the one that holds a majority of them.
//! - [`execute`]: each action as SQL on the servers (promotion, re-pointing, fencing).
//!
//! The observations come from the router's own probes ([`crate::probe`]); the result is seen by
//! every router through the same probes: the new primary is the one writable server that the
//! replicas follow.

pub mod execute;
pub mod manager;

/// A planned switchover asked for over `POST /switchover`: to which server (`None`: the most
/// advanced replica), and where the outcome goes.
#[derive(Debug)]
pub struct SwitchoverRequest {
    /// The server to promote.
    pub to: Option<usize>,
    /// What happened, for the caller.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}
