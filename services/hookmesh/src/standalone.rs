//! `hookmesh standalone`: all four stages and every gRPC service in one process. By default on
//! the durable embedded bus and store in a data directory (see [`crate::datadir`]): what it
//! accepted survives a restart, SIGKILL and power loss. `--ephemeral` keeps them in memory;
//! `--kafka` and `--redis` put it on external ones.

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
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut settings = args.settings.resolve(7600, 7601)?;
    let embedded_needed = settings.kafka.is_none() || settings.redis.is_none();
    if !args.ephemeral && embedded_needed {
        settings.data_dir =
            Some(args.data_dir.filter(|d| !d.as_os_str().is_empty()).unwrap_or_else(crate::datadir::default_dir));
    }
    runtime::run(&[Role::Ingest, Role::Router, Role::Renderer, Role::Dispatcher], settings, "standalone").await
}
