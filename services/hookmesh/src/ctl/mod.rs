//! `hookmesh ctl`: every management call of the gRPC API from the shell.
//!
//! Layout, one file per resource (as a command-line server keeps one file per command):
//! - `mod.rs`: the arguments common to every command, the command list and the dispatch.
//! - `webhook.rs`, `template.rs`, `tenant.rs`: create, read, change and delete a definition.
//! - `body.rs`: the body flags webhooks and templates share (fields, pairs, text).
//! - `delivery.rs`: the delivery log (list, get, resend, test-send, recover), endpoint
//!   health, and a call's context (`ctl call context`).
//! - `preview.rs`: rendering without sending; `tokens.rs`: the token catalog.
//! - `dlq.rs`: input ingest refused; `publish.rs`: sending events from a file.
//! - `portal.rs`: signed, expiring links to the tenant portal of the web console.
//! - `output.rs`: tables, `key: value` descriptions and JSON on stdout.
//! - `parse.rs`: the flag syntaxes (`'Name: value'`, `200-299`, `10/s`, `1h`) and reading files.
//!
//! The connection (address, bearer token, errors that read as one line) is
//! `hookmesh-client`'s, shared with `simulate`.
//!
//! Decisions:
//! - Flags build the wire `Webhook`/`Template` directly; the server validates and its errors
//!   name the field (`error: invalid argument: request.url: …`). Only the flag syntax itself
//!   is checked here, and its errors name the flag.
//! - `--file` documents use the domain serde shape of `hookmesh-core` (`Webhook`, `Template`)
//!   without `id`, `version`, `secrets` and timestamps; `-o json` prints webhooks and templates
//!   in that same shape (secrets as prefixes), so `get -o json` output can be edited and fed
//!   back with `update ID --file`.
//! - Tables are aligned plain text without borders; paging hints go to stderr so stdout stays a
//!   table.

mod body;
mod delivery;
mod dlq;
mod output;
mod parse;
mod portal;
mod preview;
mod publish;
mod template;
mod tenant;
mod tokens;
mod webhook;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use hookmesh_client::{Client, ConnectArgs};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Webhooks (subscriptions): create, inspect, change, delete, rotate secrets.
    #[command(subcommand)]
    Webhook(webhook::WebhookCmd),
    /// Reusable body templates.
    #[command(subcommand)]
    Template(template::TemplateCmd),
    /// The token catalog templates draw from, grouped by category.
    Tokens {
        /// Only this category (call_begin, call_end, dni, …).
        #[arg(long)]
        category: Option<String>,
    },
    /// Render a webhook or template on a sample (or given) event without sending it.
    Preview(preview::PreviewArgs),
    /// The delivery log: list, inspect, resend, test-send, recover.
    #[command(subcommand)]
    Delivery(delivery::DeliveryCmd),
    /// Health of a webhook's endpoint: success rate, latency, circuit.
    Health { webhook_id: String },
    /// A tenant's settings: masking of personal data in stored delivery logs.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Input that ingest could not accept.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Publish events (a JSON array or JSON lines in the documented schema).
    Publish {
        /// The events file; `-` reads stdin.
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// A signed, expiring URL that opens the web console scoped to one tenant (operators).
    PortalLink(portal::PortalLinkArgs),
    /// Calls: the values webhooks captured into a call's context.
    #[command(subcommand)]
    Call(delivery::CallCmd),
}

/// What every command gets: the connection, and whether to print JSON.
struct Ctx {
    client: Client,
    json: bool,
}

impl std::ops::Deref for Ctx {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

pub async fn run(args: CtlArgs) -> Result<()> {
    let client = args.connect.connect().await?;
    let ctx = Ctx { client, json: args.output == Output::Json };
    match args.command {
        CtlCommand::Webhook(cmd) => webhook::run(&ctx, cmd).await,
        CtlCommand::Template(cmd) => template::run(&ctx, cmd).await,
        CtlCommand::Tokens { category } => tokens::run(&ctx, category).await,
        CtlCommand::Preview(a) => preview::run(&ctx, a).await,
        CtlCommand::Delivery(cmd) => delivery::run(&ctx, cmd).await,
        CtlCommand::Health { webhook_id } => delivery::health(&ctx, webhook_id).await,
        CtlCommand::Tenant(cmd) => tenant::run(&ctx, cmd).await,
        CtlCommand::Dlq(cmd) => dlq::run(&ctx, cmd).await,
        CtlCommand::Publish { file } => publish::run(&ctx, &file).await,
        CtlCommand::PortalLink(a) => portal::run(&ctx, a).await,
        CtlCommand::Call(cmd) => delivery::call(&ctx, cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CtlArgs,
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
