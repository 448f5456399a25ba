//! `hookmesh standalone`: all four stages and every gRPC service in one process. By default on
//! the durable embedded bus and store in a data directory (see [`crate::datadir`]): what it
//! accepted survives a restart, SIGKILL and power loss. `--ephemeral` keeps them in memory;
//! `--kafka` and `--redis` put it on external ones. It serves the web console too
//! (`--console-addr`, `--no-console`).

use crate::config::SettingsArgs;
use crate::runtime::{self, Role};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Directory of the durable embedded bus and store (created when missing; one process per
    /// directory). Default: $XDG_DATA_HOME/hookmesh, else ~/.local/share/hookmesh.
    #[arg(long, env = "HOOKMESH_DATA_DIR", conflicts_with = "ephemeral")]
    pub data_dir: Option<PathBuf>,
    /// Keep the bus and store in memory: nothing survives the process (demos, fast tests).
    #[arg(long, env = "HOOKMESH_EPHEMERAL")]
    pub ephemeral: bool,
    /// Where the web console listens (default 127.0.0.1:7700; port 0 of --grpc-addr makes it
    /// port 0 too).
    #[arg(long, env = "HOOKMESH_CONSOLE_ADDR", conflicts_with = "no_console")]
    pub console_addr: Option<std::net::SocketAddr>,
    /// Do not serve the web console.
    #[arg(long, env = "HOOKMESH_NO_CONSOLE")]
    pub no_console: bool,
    #[command(flatten)]
    pub console: crate::console::ConsoleWebArgs,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut settings = args.settings.resolve(7600, 7601)?;
    let embedded_needed = settings.kafka.is_none() || settings.redis.is_none();
    if !args.ephemeral && embedded_needed {
        settings.data_dir =
            Some(args.data_dir.filter(|d| !d.as_os_str().is_empty()).unwrap_or_else(crate::datadir::default_dir));
    }
    if !args.no_console {
        let default_addr: std::net::SocketAddr = if settings.grpc_addr.port() == 0 {
            ([127, 0, 0, 1], 0).into()
        } else {
            crate::console::DEFAULT_CONSOLE_ADDR.parse().expect("a socket address")
        };
        settings.console = Some(crate::console::StandaloneConsole {
            addr: args.console_addr.unwrap_or(default_addr),
            explicit: args.console_addr.is_some(),
            web: args.console,
        });
    }
    runtime::run(&[Role::Ingest, Role::Router, Role::Renderer, Role::Dispatcher], settings, "standalone").await
}
