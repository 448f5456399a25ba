//! The `hookmesh` binary: one subcommand per role.
//!
//! - `standalone`: every stage and every gRPC service in one process on the durable embedded
//!   backends in a data directory (`--ephemeral`: in memory).
//! - `ingest`, `router`, `renderer`, `dispatcher`: one stage per process over Kafka and Redis.
//! - `console`: the web console and tenant portal, a client of the management API.
//! - `ctl`: the management client (every gRPC management call from the shell).
//! - `simulate`: realistic call traffic against a running hookmesh.
//! - `receive`: a demo receiver that prints webhooks and checks signatures.
//! - `bench`: measured throughput, latency and cost of a scenario, beside the machine's limit.

mod config;
mod console;
mod ctl;
mod datadir;
mod health;
mod receive;
mod runtime;
mod simulate;
mod standalone;
mod token;

/// Every role allocates per message (decoded records, rendered bodies, JSON for the log);
/// mimalloc does that with far less CPU than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hookmesh", version, about = "Telephony call events in, signed webhooks out")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage and the management API in one process, durable in a data directory.
    Standalone(standalone::StandaloneArgs),
    /// Run the ingest stage: `calls.raw` and IngestService → hookmesh.events.
    Ingest(config::SettingsArgs),
    /// Run the router stage and the registry API: hookmesh.events → hookmesh.jobs.
    Router(config::SettingsArgs),
    /// Run the renderer stage and RenderService: hookmesh.jobs → hookmesh.requests.
    Renderer(config::SettingsArgs),
    /// Run the dispatcher stage and DeliveryService: hookmesh.requests → receivers.
    Dispatcher(config::SettingsArgs),
    /// Manage webhooks, templates and deliveries of a running hookmesh.
    Ctl(ctl::CtlArgs),
    /// Serve the web console and tenant portal, a client of a running hookmesh's API.
    Console(console::ConsoleArgs),
    /// A demo receiver that prints the webhooks it gets and checks their signatures.
    Receive(receive::ReceiveArgs),
    /// Make or hash management API tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Publish realistic call traffic (started → answered → dtmf → ended) to a running hookmesh.
    Simulate(simulate::SimulateArgs),
    /// Measure throughput, latency and cost of a scenario end to end, beside the limit.
    Bench(hookmesh_bench::BenchArgs),
}

fn main() {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Command::Standalone(args) => standalone::run(args).await,
            Command::Ingest(args) => run_role(runtime::Role::Ingest, args).await,
            Command::Router(args) => run_role(runtime::Role::Router, args).await,
            Command::Renderer(args) => run_role(runtime::Role::Renderer, args).await,
            Command::Dispatcher(args) => run_role(runtime::Role::Dispatcher, args).await,
            Command::Ctl(args) => ctl::run(args).await,
            Command::Console(args) => console::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::Receive(args) => receive::run(args).await,
            Command::Token(cmd) => token::run(cmd),
            Command::Bench(args) => {
                let exe = std::env::current_exe().context("finding the hookmesh executable")?;
                hookmesh_bench::run(args, exe, runtime::shutdown_signal()).await
            }
        }
    });
    if let Err(e) = result {
        // One line whatever it echoes: each cause said once, control characters in values escaped.
        eprintln!("error: {}", hookmesh_core::error::escape_control(&hookmesh_client::one_line(e.chain())));
        std::process::exit(1);
    }
}

/// Transparent huge pages off for this process and the ones it starts, unless
/// `MIMALLOC_ALLOW_THP` says otherwise: mimalloc asks for them on its arenas, and the first
/// touch of each 2 MiB region then zeroes all of it, which profiles of a standalone under load
/// showed as 8–13 % of its CPU (the kernel's `clear_page_erms`). Measured on the embedded
/// default, 40,000-event baseline, alternating runs: with huge pages off 0.163 → 0.148 CPU
/// s/1k over five pairs, and 0.130 → 0.121–0.126 in a later series of five; peak RSS 20–30 MiB
/// lower in every run. The memory backend moved within this VM's noise.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integers only and touches no memory.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

async fn run_role(role: runtime::Role, args: config::SettingsArgs) -> anyhow::Result<()> {
    let (grpc, admin) = role.default_ports();
    let settings = args.resolve(grpc, admin)?;
    runtime::run(&[role], settings, role.name()).await
}
