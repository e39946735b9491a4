//! `hapress render`: owned by the Kubernetes work (issue 4).

use clap::Args;

/// Arguments of `hapress render`.
#[derive(Args, Debug)]
pub struct RenderArgs {}

/// Runs `hapress render`.
pub fn run(_args: &RenderArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("hapress render is not implemented yet")
}
