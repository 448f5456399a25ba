//! The `hookmesh` binary: one subcommand per role.
//!
//! - `standalone`: every stage and every gRPC service in one process on embedded backends.
//! - `ctl`: the management client (every gRPC management call from the shell).
//! - `simulate`: realistic call traffic against a running hookmesh.

// mod ctl;
mod simulate;
mod standalone;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hookmesh", version, about = "Telephony call events in, signed webhooks out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage and the management API in one process on in-memory backends.
    Standalone(standalone::StandaloneArgs),
    /// Manage webhooks, templates and deliveries of a running hookmesh.
    // Ctl
    /// Publish realistic call traffic (started → answered → dtmf → ended) to a running hookmesh.
    Simulate(simulate::SimulateArgs),
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Standalone(args) => standalone::run(args).await,
//
            Command::Simulate(args) => simulate::run(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
