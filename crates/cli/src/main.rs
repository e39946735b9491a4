//! The `hapress` command line: one spec, an embedded runtime and Kubernetes manifests.

mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Highly available WordPress from one declarative spec.
#[derive(Parser, Debug)]
#[command(name = "hapress", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render Kubernetes manifests (or the CRD) from a spec.
    Render(render::RenderArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Render(args) => render::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
