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
use hookmesh_proto::v1;
use std::path::{Path, PathBuf};

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

/// A stored definition that `update ID --file` replaces: the fields the file leaves to the
/// store.
trait Stored: Clone {
    /// Takes from `current` what a file does not carry: the id, the version, the creation
    /// time, the tenant when the file names none (and a webhook's secrets).
    fn keep_stored(&mut self, current: &Self);
}

macro_rules! keep_stored {
    ($new:expr, $current:expr) => {{
        $new.id = $current.id.clone();
        if $new.tenant_id.is_empty() {
            $new.tenant_id = $current.tenant_id.clone();
        }
        $new.version = $current.version;
        $new.created_at = $current.created_at.clone();
    }};
}

impl Stored for v1::Webhook {
    fn keep_stored(&mut self, current: &Self) {
        keep_stored!(self, current);
        self.secrets = current.secrets.clone();
    }
}

impl Stored for v1::Template {
    fn keep_stored(&mut self, current: &Self) {
        keep_stored!(self, current);
    }
}

/// What `<kind> update ID` starts from before applying the flags: the `--file` document with
/// what the store keeps, or else the stored definition. `--id` may only repeat the id.
fn update_base<T: Stored>(
    kind: &str,
    (id, set_id): (&str, Option<&str>),
    current: &T,
    file: Option<&Path>,
    read: impl Fn(&Path) -> Result<T>,
) -> Result<T> {
    if set_id.is_some_and(|new| new != id) {
        anyhow::bail!("--id cannot change a {kind}'s id");
    }
    Ok(match file {
        Some(path) => {
            let mut new = read(path)?;
            new.keep_stored(current);
            new
        }
        None => current.clone(),
    })
}

/// Reads a `--file` document of `kind` in the domain serde shape: what the store keeps
/// (`stored`, and the version and timestamps) is left out, and an id, tenant and name may be.
fn read_document<D: serde::de::DeserializeOwned>(path: &Path, kind: &str, stored: &[&str]) -> Result<D> {
    use anyhow::Context;
    use serde_json::{json, Value};
    let text = parse::read_text(path)?;
    let mut v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(obj) = v.as_object_mut() else { anyhow::bail!("{}: expected a JSON object (a {kind})", path.display()) };
    let now = chrono::Utc::now().to_rfc3339();
    for k in stored.iter().chain(&["version", "created_at", "updated_at"]) {
        obj.remove(*k);
    }
    obj.entry("id").or_insert_with(|| json!(""));
    obj.entry("tenant_id").or_insert_with(|| json!(""));
    obj.entry("name").or_insert_with(|| json!(""));
    obj.insert("created_at".into(), json!(now));
    obj.insert("updated_at".into(), json!(now));
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{}: not a {kind}: {e}", path.display()))
}

/// What `<kind> delete ID` prints.
fn print_deleted(ctx: &Ctx, kind: &str, id: &str) {
    if ctx.json {
        output::out_json(&serde_json::json!({ "deleted": id }));
    } else {
        output::out(&format!("deleted {kind} {id}"));
    }
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
pub(crate) mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// `hookmesh ctl` as a command of its own, for parsing tests.
    #[derive(Parser)]
    pub(crate) struct Cli {
        #[command(flatten)]
        pub(crate) args: CtlArgs,
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
