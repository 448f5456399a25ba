//! `hookmesh standalone`: all four stages and every gRPC service in one process. Embedded
//! in-memory backends by default; `--kafka` and `--redis` put it on external ones.

use crate::config::SettingsArgs;
use crate::runtime::{self, Role};

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let settings = args.settings.resolve(7600, 7601)?;
    runtime::run(&[Role::Ingest, Role::Router, Role::Renderer, Role::Dispatcher], settings, "standalone").await
}
