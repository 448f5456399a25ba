//! `hookmesh ctl`: every management call of the gRPC API from the shell. The connection
//! (address, bearer token, errors that read as one line) is `hookmesh-client`'s.
//!
//! Decisions:
//! - Flags build the wire `Webhook`/`Template` directly; the server validates and its errors
//!   name the field (`error: invalid argument: request.url: …`). Only the flag syntax itself
//!   (`'Name: value'`, `200-299`, `10/s`, `1h`) is checked here.
//! - `--file` documents use the domain serde shape of `hookmesh-core` (`Webhook`, `Template`)
//!   without `id`, `version`, `secrets` and timestamps; `-o json` prints webhooks and templates
//!   in that same shape (secrets as prefixes), so `get -o json` output can be edited and fed
//!   back with `update ID --file`.
//! - `update` fetches the current definition, applies the flags (list flags replace the whole
//!   list, `--clear X` empties one) and sends it with the fetched version as the expected
//!   version, so a concurrent edit is refused instead of overwritten; `--expected-version`
//!   overrides it (0 = don't check).
//! - Table output is aligned plain text; paging hints go to stderr so stdout stays a table.
//! - `publish` sends events in batches (500 events or 2 MiB) and exits 0 even when some
//!   events were rejected: the per-event results and the summary say which.

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use clap::{Args, Subcommand, ValueEnum};
use hookmesh_client::{Answer, Client, ConnectArgs};
use hookmesh_core::webhook::ConditionOp;
use hookmesh_proto::convert;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// arguments

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
    Webhook(WebhookCmd),
    /// Reusable body templates.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// The token catalog templates draw from, grouped by category.
    Tokens {
        /// Only this category (call_begin, call_end, dni, …).
        #[arg(long)]
        category: Option<String>,
    },
    /// Render a webhook or template on a sample (or given) event without sending it.
    Preview(PreviewArgs),
    /// The delivery log: list, inspect, resend, test-send, recover.
    #[command(subcommand)]
    Delivery(DeliveryCmd),
    /// Health of a webhook's endpoint: success rate, latency, circuit.
    Health { webhook_id: String },
    /// A tenant's settings: masking of personal data in stored delivery logs.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Input that ingest could not accept.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// Publish events (a JSON array or JSON lines in the documented schema).
    Publish {
        /// The events file; `-` reads stdin.
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Create a webhook from flags and/or a JSON file; prints the signing secret once.
    Create(Box<WebhookFlags>),
    /// Show one webhook.
    Get { id: String },
    /// List webhooks.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// One page of at most N (default: every page).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this id (with --limit).
        #[arg(long)]
        after: Option<String>,
    },
    /// Change a webhook: the flags are applied onto the current definition.
    Update {
        id: String,
        #[command(flatten)]
        flags: Box<WebhookFlags>,
        /// Refuse the update unless the webhook is at this version (default: the version
        /// just fetched; 0 = don't check).
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Delete a webhook.
    Delete {
        id: String,
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// Enable a webhook.
    Enable { id: String },
    /// Disable a webhook (matching events are no longer delivered).
    Disable { id: String },
    /// Add a new signing secret; the old one keeps signing for the grace period.
    RotateSecret {
        id: String,
        /// How long the old secret stays valid (seconds or 30m/24h/2d; default 24 h).
        #[arg(long, value_parser = parse_secs)]
        grace_secs: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodyKind {
    Fields,
    Pairs,
    Text,
}

/// Parts of a webhook `update --clear` can empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClearField {
    Events,
    Campaigns,
    Directions,
    Numbers,
    IvrOptions,
    Conditions,
    Headers,
    Query,
    Template,
    Body,
    Status,
    Response,
    RetrySchedule,
    RateLimit,
    NonRetryable,
    Description,
}

#[derive(Args, Debug, Default)]
pub struct WebhookFlags {
    /// A webhook as JSON (hookmesh-core's `Webhook` shape, timestamps optional); the other
    /// flags are applied on top.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Choose the id (default: generated).
    #[arg(long = "id", value_name = "ID")]
    pub set_id: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub url: Option<String>,
    /// GET, POST (default), PUT, PATCH, DELETE.
    #[arg(long)]
    pub method: Option<String>,
    /// Event type (repeatable or comma-separated; none = all).
    #[arg(long = "event", value_name = "TYPE", value_delimiter = ',')]
    pub events: Vec<String>,
    #[arg(long = "campaign", value_name = "CAMPAIGN")]
    pub campaigns: Vec<String>,
    /// inbound, outbound, click_to_call (repeatable or comma-separated).
    #[arg(long = "direction", value_name = "DIRECTION", value_delimiter = ',')]
    pub directions: Vec<String>,
    /// Tracking / DID number (repeatable or comma-separated).
    #[arg(long = "number", value_name = "NUMBER", value_delimiter = ',')]
    pub numbers: Vec<String>,
    /// IVR option pressed ("1") or its label ("Sales").
    #[arg(long = "ivr-option", value_name = "OPTION")]
    pub ivr_options: Vec<String>,
    /// 'PATH OP [VALUE]', OP one of eq, ne, in, prefix, exists; VALUE is JSON or text
    /// (`in`: a JSON list or a,b,c).
    #[arg(long = "condition", value_name = "'PATH OP VALUE'")]
    pub conditions: Vec<String>,
    /// 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// 'name=value' (repeatable).
    #[arg(long = "query", value_name = "NAME=VALUE")]
    pub query: Vec<String>,
    /// json (default), xml, form, text.
    #[arg(long)]
    pub content_type: Option<String>,
    /// IANA time zone for rendered times (default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// A registry template of the tenant to render the body with.
    #[arg(long, value_name = "TEMPLATE_ID")]
    pub template: Option<String>,
    /// Inline body: the example document (fields), `path=spec` lines (pairs) or the template
    /// source (text).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Kind of inline body (default: fields for .json/.xml files).
    #[arg(long, value_enum)]
    pub body_kind: Option<BodyKind>,
    /// Format of a fields body's example: json or xml (default: from the file name).
    #[arg(long)]
    pub body_format: Option<String>,
    /// Body field mapping 'path=token:NAME' | 'path=const:JSON' | 'path=name' (repeatable).
    #[arg(long = "map", value_name = "PATH=SOURCE")]
    pub maps: Vec<String>,
    /// Accepted status codes: 200-299, 302, 2xx (repeatable or comma-separated).
    #[arg(long = "status", value_name = "RANGE")]
    pub statuses: Vec<String>,
    /// JSON path into the response body that must hold --response-value.
    #[arg(long)]
    pub response_path: Option<String>,
    /// Expected value at --response-path (JSON or text).
    #[arg(long)]
    pub response_value: Option<String>,
    /// Per-attempt timeout in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt.
    #[arg(long)]
    pub retry_limit: Option<u32>,
    /// Delays before each retry: 5,300,1800 or 5s,5m,30m.
    #[arg(long)]
    pub retry_schedule: Option<String>,
    /// No attempt starts after first trigger + this (seconds or 12h/3d).
    #[arg(long, value_parser = parse_secs)]
    pub total_timeout_secs: Option<u64>,
    /// Requests per second: 10, 10/s, 600/m, 3600/h.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Burst of the rate limit (default: one second's worth).
    #[arg(long)]
    pub burst: Option<u32>,
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// none (default) or per_call.
    #[arg(long)]
    pub ordering: Option<String>,
    /// Statuses that fail without retries (repeatable or comma-separated).
    #[arg(long = "non-retryable", value_name = "STATUS", value_delimiter = ',')]
    pub non_retryable: Vec<u32>,
    /// Create disabled (update: disable).
    #[arg(long)]
    pub disabled: bool,
    /// Empty a part of the definition before applying the flags (update).
    #[arg(long, value_enum)]
    pub clear: Vec<ClearField>,
}

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Create a template.
    Create(TemplateFlags),
    /// Show one template.
    Get { id: String },
    /// List templates.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Change a template: the flags are applied onto the current definition.
    Update {
        id: String,
        #[command(flatten)]
        flags: TemplateFlags,
        /// Default: the version just fetched; 0 = don't check.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Delete a template.
    Delete {
        id: String,
        #[arg(long, default_value_t = 0)]
        expected_version: u64,
    },
    /// List the fields of an example document and the source each would get.
    Extract {
        /// json or xml (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        example_file: PathBuf,
    },
}

#[derive(Args, Debug, Default)]
pub struct TemplateFlags {
    /// A template as JSON (hookmesh-core's `Template` shape, timestamps optional); the other
    /// flags are applied on top.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Choose the id (default: generated).
    #[arg(long = "id", value_name = "ID")]
    pub set_id: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// Template group (default "default").
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// json (default), xml, form, text.
    #[arg(long)]
    pub content_type: Option<String>,
    /// fields (with --example-file), pairs (with --map), text (with --source-file).
    #[arg(long, value_enum)]
    pub kind: Option<BodyKind>,
    /// Example document of a fields template.
    #[arg(long, conflicts_with = "source_file")]
    pub example_file: Option<PathBuf>,
    /// Source of a text template.
    #[arg(long)]
    pub source_file: Option<PathBuf>,
    /// Format of the example: json or xml (default: from the file name).
    #[arg(long)]
    pub format: Option<String>,
    /// Field mapping 'path=token:NAME' | 'path=const:JSON' | 'path=name' (repeatable).
    #[arg(long = "map", value_name = "PATH=SOURCE")]
    pub maps: Vec<String>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["webhook", "template"])))]
pub struct PreviewArgs {
    /// A stored webhook.
    #[arg(long, value_name = "WEBHOOK_ID")]
    pub webhook: Option<String>,
    /// A stored template, rendered alone.
    #[arg(long, value_name = "TEMPLATE_ID")]
    pub template: Option<String>,
    /// An event in the documented JSON schema (default: the sample event).
    #[arg(long)]
    pub event_file: Option<PathBuf>,
}

// Parsed once per run: the size of the list filters' variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum DeliveryCmd {
    /// Search the delivery log, newest first.
    List(DeliveryListArgs),
    /// One delivery: its state, request and attempts.
    Get {
        id: String,
        /// Also print every attempt's headers and bodies.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Send a delivery (retrying or error) again now.
    Resend { id: String },
    /// Render a webhook on the sample (or a given) event and send it now, outside the log.
    TestSend {
        webhook_id: String,
        #[arg(long)]
        event_file: Option<PathBuf>,
    },
    /// Resend every failed delivery of a webhook since a time.
    Recover {
        webhook_id: String,
        /// RFC 3339 time, or how long ago: 30m, 1h, 2d.
        #[arg(long)]
        since: String,
    },
}

#[derive(Args, Debug)]
pub struct DeliveryListArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, value_name = "WEBHOOK_ID")]
    pub webhook: Option<String>,
    /// pending, success, retrying, error.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub event_type: Option<String>,
    #[arg(long)]
    pub call_id: Option<String>,
    /// The call's campaign: its id (exactly) or its name (any case).
    #[arg(long)]
    pub campaign: Option<String>,
    /// The call's direction: inbound, outbound, click_to_call.
    #[arg(long)]
    pub direction: Option<String>,
    /// The call's tracking number, in any spelling of its digits.
    #[arg(long)]
    pub tracking: Option<String>,
    /// RFC 3339 time, or how long ago: 30m, 1h, 2d.
    #[arg(long)]
    pub since: Option<String>,
    /// RFC 3339 time, or how long ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Page size (server default 50, max 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[arg(long)]
    pub before: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// The tenant's settings (a tenant token's own tenant when `--tenant` is left out).
    Show {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Changes the tenant's settings; unnamed settings keep their value.
    Set {
        #[arg(long, default_value = "")]
        tenant: String,
        /// Mask caller phone numbers and other personal fields in stored delivery logs.
        #[arg(long)]
        mask_personal_data: Option<bool>,
        /// Field masked in addition to the built-in personal tokens (repeatable; replaces the
        /// list).
        #[arg(long = "mask-field")]
        mask_fields: Vec<String>,
        /// Empties the list of extra masked fields.
        #[arg(long, conflicts_with = "mask_fields")]
        clear_mask_fields: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// Latest dead letters.
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

// ---------------------------------------------------------------------------------------------
// connection

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

// ---------------------------------------------------------------------------------------------
// entry point

pub async fn run(args: CtlArgs) -> Result<()> {
    let client = args.connect.connect().await?;
    let ctx = Ctx { client, json: args.output == Output::Json };
    match args.command {
        CtlCommand::Webhook(cmd) => webhook_cmd(&ctx, cmd).await,
        CtlCommand::Template(cmd) => template_cmd(&ctx, cmd).await,
        CtlCommand::Tokens { category } => tokens_cmd(&ctx, category).await,
        CtlCommand::Preview(a) => preview_cmd(&ctx, a).await,
        CtlCommand::Delivery(cmd) => delivery_cmd(&ctx, cmd).await,
        CtlCommand::Health { webhook_id } => health_cmd(&ctx, webhook_id).await,
        CtlCommand::Tenant(cmd) => tenant_cmd(&ctx, cmd).await,
        CtlCommand::Dlq(DlqCmd::List { limit, tenant }) => dlq_cmd(&ctx, limit, tenant).await,
        CtlCommand::Publish { file } => publish_cmd(&ctx, &file).await,
    }
}

// ---------------------------------------------------------------------------------------------
// output helpers

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

fn out_json(v: &Value) {
    out(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// One line per cell: no newlines or tabs inside a table.
fn cell(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Aligned plain-text columns, two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cell(c)).collect()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate().take(cols) {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            if i + 1 < cols {
                l.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(c.chars().count())));
            }
        }
        text.push_str(l.trim_end());
        text.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in &rows {
        line(&mut r.iter().map(String::as_str));
    }
    text
}

/// `key:  value` lines, keys aligned; empty values are left out.
fn describe(rows: &[(&str, String)]) -> String {
    let width = rows.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let pad = width - k.chars().count();
        text.push_str(&format!("{k}:{}  {}\n", " ".repeat(pad), cell(v)));
    }
    text
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

/// 5s, 5m, 2h, 1d: the largest unit that divides evenly.
fn fmt_secs(s: u64) -> String {
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn kvs_json(list: &[v1::KeyValue]) -> Value {
    Value::Array(list.iter().map(|kv| json!({"name": kv.name, "value": kv.value})).collect())
}

// ---------------------------------------------------------------------------------------------
// flag parsers

/// `'Name: value'`.
fn parse_header(s: &str) -> Result<v1::KeyValue> {
    let (name, value) = s.split_once(':').ok_or_else(|| anyhow!("--header `{s}`: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("--header `{s}`: `{name}` is not a header name");
    }
    Ok(v1::KeyValue { name: name.to_string(), value: value.trim().to_string() })
}

/// `'name=value'`.
fn parse_query(s: &str) -> Result<v1::KeyValue> {
    let (name, value) = s.split_once('=').ok_or_else(|| anyhow!("--query `{s}`: expected 'name=value'"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!("--query `{s}`: the name is empty");
    }
    Ok(v1::KeyValue { name: name.to_string(), value: value.to_string() })
}

/// JSON if it parses, else the text as a string.
fn json_or_string(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// `'PATH OP [VALUE]'`.
fn parse_condition(s: &str) -> Result<v1::Condition> {
    let usage = || anyhow!("--condition `{s}`: expected 'PATH OP VALUE' (OP: eq, ne, in, prefix, exists)");
    let t = s.trim();
    let (path, rest) = t.split_once(char::is_whitespace).ok_or_else(usage)?;
    let rest = rest.trim_start();
    let (op, value) = match rest.split_once(char::is_whitespace) {
        Some((op, v)) => (op, v.trim()),
        None => (rest, ""),
    };
    let op = ConditionOp::parse(op).ok_or_else(usage)?;
    let value = match op {
        ConditionOp::Exists if value.is_empty() => None,
        ConditionOp::Exists => bail!("--condition `{s}`: `exists` takes no value"),
        _ if value.is_empty() => bail!("--condition `{s}`: the value is missing"),
        ConditionOp::In => Some(match serde_json::from_str::<Value>(value) {
            Ok(v @ Value::Array(_)) => v,
            _ => Value::Array(value.split(',').map(|p| json_or_string(p.trim())).collect()),
        }),
        _ => Some(json_or_string(value)),
    };
    Ok(v1::Condition {
        path: path.to_string(),
        op: op.as_str().to_string(),
        value_json: value.map(|v| v.to_string()).unwrap_or_default(),
    })
}

/// `200-299`, `302`, `2xx`, or a comma-separated list of those.
fn parse_status_ranges(s: &str) -> Result<Vec<v1::StatusRange>> {
    let code = |p: &str| -> Result<u32> {
        let n: u32 = p.trim().parse().map_err(|_| anyhow!("--status `{s}`: `{p}` is not a status code"))?;
        if !(100..=599).contains(&n) {
            bail!("--status `{s}`: {n} is not an HTTP status code");
        }
        Ok(n)
    };
    let mut ranges = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.to_ascii_lowercase();
        let range = if let Some(d) = lower.strip_suffix("xx") {
            let d: u32 = d.parse().map_err(|_| anyhow!("--status `{s}`: `{part}` is not a status class"))?;
            if !(1..=5).contains(&d) {
                bail!("--status `{s}`: `{part}` is not a status class");
            }
            v1::StatusRange { from: d * 100, to: d * 100 + 99 }
        } else if let Some((a, b)) = part.split_once('-') {
            let r = v1::StatusRange { from: code(a)?, to: code(b)? };
            if r.from > r.to {
                bail!("--status `{s}`: {}-{} is an empty range", r.from, r.to);
            }
            r
        } else {
            let c = code(part)?;
            v1::StatusRange { from: c, to: c }
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        bail!("--status `{s}`: expected a status, a range (200-299) or a class (2xx)");
    }
    Ok(ranges)
}

/// A duration in seconds: `90s`, `30m`, `1h`, `2d`, `1w`, `1h30m`; a bare number is seconds
/// when `bare_secs`.
fn parse_duration_secs(s: &str, bare_secs: bool) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(n) = t.parse::<u64>() {
        return if bare_secs { Ok(n) } else { Err(format!("`{s}` needs a unit (s, m, h, d), e.g. {n}h")) };
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("`{s}` is not a duration (e.g. 90s, 30m, 1h, 2d)")),
        };
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 90s, 30m, 1h, 2d)"))?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("`{s}` is too long"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!("`{s}` is not a duration: `{num}` has no unit"));
    }
    Ok(total)
}

/// clap value parser: seconds or a duration with a unit.
fn parse_secs(s: &str) -> Result<u64, String> {
    parse_duration_secs(s, true)
}

/// An RFC 3339 time or how long ago (`1h`), as RFC 3339 UTC.
fn parse_since(s: &str, now: DateTime<Utc>) -> Result<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    let secs = parse_duration_secs(s, false)
        .map_err(|e| anyhow!("{e}; expected an RFC 3339 time or how long ago (30m, 1h, 2d)"))?;
    let secs = i64::try_from(secs).map_err(|_| anyhow!("`{s}` is too long ago"))?;
    let t = now
        .checked_sub_signed(ChronoDuration::try_seconds(secs).ok_or_else(|| anyhow!("`{s}` is too long ago"))?)
        .ok_or_else(|| anyhow!("`{s}` is too long ago"))?;
    Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `5,300,1800` or `5s,5m,30m`.
fn parse_schedule(s: &str) -> Result<Vec<u64>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_duration_secs(p, true).map_err(|e| anyhow!("--retry-schedule: {e}")))
        .collect()
}

/// Requests per second from `10`, `10/s`, `600/m`, `3600/h`.
fn parse_rate(s: &str) -> Result<f64> {
    let (n, per) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n.trim().parse().map_err(|_| anyhow!("--rate-limit `{s}`: expected e.g. 10/s or 600/m"))?;
    let div = match per.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => bail!("--rate-limit `{s}`: the unit must be s, m or h"),
    };
    let rate = n / div;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate-limit `{s}`: must be more than 0");
    }
    Ok(rate)
}

/// `'path=token:NAME'`, `'path=%NAME%'`, `'path={{ NAME }}'`, `'path=const:JSON'` (text if
/// not JSON), `'path=name'`.
fn parse_mapping(s: &str) -> Result<v1::FieldMapping> {
    let usage = || anyhow!("--map `{s}`: expected 'path=token:NAME', 'path=const:JSON' or 'path=name'");
    let (path, spec) = s.split_once('=').ok_or_else(usage)?;
    let path = path.trim();
    if path.is_empty() {
        return Err(usage());
    }
    let spec = spec.trim();
    use v1::source::Kind;
    let kind = if let Some(tok) = spec.strip_prefix("token:") {
        if tok.trim().is_empty() {
            return Err(usage());
        }
        Kind::Token(tok.trim().to_string())
    } else if let Some(c) = spec.strip_prefix("const:") {
        Kind::ConstantJson(json_or_string(c).to_string())
    } else if spec.eq_ignore_ascii_case("name") {
        Kind::Name(true)
    } else if (spec.starts_with('%') && spec.ends_with('%') && spec.len() > 2)
        || (spec.starts_with("{{") && spec.ends_with("}}"))
    {
        Kind::Token(spec.to_string())
    } else {
        return Err(usage());
    };
    Ok(v1::FieldMapping { path: path.to_string(), source: Some(v1::Source { kind: Some(kind) }) })
}

fn source_str(s: &Option<v1::Source>) -> String {
    match s.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(v1::source::Kind::Token(t)) => format!("token:{t}"),
        Some(v1::source::Kind::ConstantJson(j)) => format!("const:{j}"),
        Some(v1::source::Kind::Name(_)) => "name".to_string(),
        None => "-".to_string(),
    }
}

/// Replaces mappings with the same path, appends the others.
fn merge_mappings(list: &mut Vec<v1::FieldMapping>, maps: &[String]) -> Result<()> {
    for m in maps {
        let m = parse_mapping(m)?;
        match list.iter_mut().find(|x| x.path == m.path) {
            Some(existing) => *existing = m,
            None => list.push(m),
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// json or xml from the file name, if it says.
fn format_from_path(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "json" => Some("json"),
        "xml" => Some("xml"),
        _ => None,
    }
}

/// What the body flags ask for.
struct BodyInput<'a> {
    kind: Option<BodyKind>,
    /// (path, contents)
    file: Option<(&'a Path, String)>,
    format: Option<&'a str>,
    maps: &'a [String],
}

/// Applies body flags onto an existing body (or none). `None` input changes nothing.
fn apply_body(existing: Option<v1::TemplateBody>, input: BodyInput<'_>) -> Result<Option<v1::TemplateBody>> {
    use v1::template_body::Kind;
    if input.kind.is_none() && input.file.is_none() && input.maps.is_empty() && input.format.is_none() {
        return Ok(existing);
    }
    let existing_kind = existing.as_ref().and_then(|b| b.kind.clone());
    let kind = match (input.kind, &input.file, &existing_kind) {
        (Some(k), _, _) => k,
        (None, Some((path, _)), _) => match format_from_path(path) {
            Some(_) => BodyKind::Fields,
            None => bail!("--body-kind (fields, pairs, text) is required for {}", path.display()),
        },
        (None, None, Some(Kind::Fields(_))) => BodyKind::Fields,
        (None, None, Some(Kind::Text(_))) => BodyKind::Text,
        (None, None, _) => BodyKind::Pairs,
    };
    let kind = match kind {
        BodyKind::Fields => {
            let mut body = match existing_kind {
                Some(Kind::Fields(f)) => f,
                _ => v1::FieldsBody::default(),
            };
            if let Some((path, text)) = input.file {
                // A new example: old mappings only survive for paths given again.
                body.example = text;
                body.fields.clear();
                if input.format.is_none() {
                    if let Some(f) = format_from_path(path) {
                        body.format = f.to_string();
                    }
                }
            }
            if let Some(f) = input.format {
                body.format = f.to_string();
            }
            if body.example.trim().is_empty() {
                bail!("a fields body needs an example document (--body-file / --example-file)");
            }
            if body.format.is_empty() {
                body.format = "json".to_string();
            }
            merge_mappings(&mut body.fields, input.maps)?;
            Kind::Fields(body)
        }
        BodyKind::Pairs => {
            let mut pairs = match existing_kind {
                Some(Kind::Pairs(p)) => p.pairs,
                _ => Vec::new(),
            };
            if let Some((_, text)) = input.file {
                pairs.clear();
                let lines: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                merge_mappings(&mut pairs, &lines)?;
            }
            merge_mappings(&mut pairs, input.maps)?;
            if pairs.is_empty() {
                bail!("a pairs body needs at least one --map 'name=token:NAME'");
            }
            Kind::Pairs(v1::PairsBody { pairs })
        }
        BodyKind::Text => {
            if !input.maps.is_empty() {
                bail!("--map does not apply to a text body (write the tokens into the source)");
            }
            match (input.file, existing_kind) {
                (Some((_, text)), _) => Kind::Text(text),
                (None, Some(Kind::Text(t))) => Kind::Text(t),
                _ => bail!("a text body needs its source (--body-file / --source-file)"),
            }
        }
    };
    Ok(Some(v1::TemplateBody { kind: Some(kind) }))
}

fn body_summary(b: &Option<v1::TemplateBody>) -> String {
    use v1::template_body::Kind;
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(Kind::Fields(f)) => {
            let maps: Vec<String> = f.fields.iter().map(|m| format!("{}={}", m.path, source_str(&m.source))).collect();
            if maps.is_empty() {
                format!("fields ({} example, example values)", or_dash(&f.format))
            } else {
                format!("fields ({} example): {}", or_dash(&f.format), maps.join(", "))
            }
        }
        Some(Kind::Pairs(p)) => {
            let maps: Vec<String> = p.pairs.iter().map(|m| format!("{}={}", m.path, source_str(&m.source))).collect();
            format!("pairs: {}", maps.join(", "))
        }
        Some(Kind::Text(t)) => format!("text ({} lines)", t.lines().count()),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// webhooks

fn webhook_from_file(path: &Path) -> Result<v1::Webhook> {
    let text = read_text(path)?;
    let mut v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(obj) = v.as_object_mut() else { bail!("{}: expected a JSON object (a webhook)", path.display()) };
    let now = Utc::now().to_rfc3339();
    for k in ["secrets", "version", "created_at", "updated_at"] {
        obj.remove(k);
    }
    obj.entry("id").or_insert_with(|| json!(""));
    obj.entry("tenant_id").or_insert_with(|| json!(""));
    obj.entry("name").or_insert_with(|| json!(""));
    obj.insert("created_at".into(), json!(now));
    obj.insert("updated_at".into(), json!(now));
    let w: hookmesh_core::webhook::Webhook =
        serde_json::from_value(v).map_err(|e| anyhow!("{}: not a webhook: {e}", path.display()))?;
    let mut p = convert::webhook_to_proto(&w);
    p.created_at.clear();
    p.updated_at.clear();
    p.version = 0;
    Ok(p)
}

fn apply_webhook_flags(w: &mut v1::Webhook, f: &WebhookFlags) -> Result<()> {
    let set = |dst: &mut String, src: &Option<String>| {
        if let Some(s) = src {
            *dst = s.clone();
        }
    };
    set(&mut w.id, &f.set_id);
    set(&mut w.tenant_id, &f.tenant);
    set(&mut w.name, &f.name);
    set(&mut w.description, &f.description);
    if f.disabled {
        w.enabled = false;
    }

    let t = w.trigger.get_or_insert_with(Default::default);
    let r = w.request.get_or_insert_with(Default::default);
    let s = w.success.get_or_insert_with(Default::default);
    let p = w.policy.get_or_insert_with(Default::default);
    for c in &f.clear {
        match c {
            ClearField::Events => t.event_types.clear(),
            ClearField::Campaigns => t.campaigns.clear(),
            ClearField::Directions => t.directions.clear(),
            ClearField::Numbers => t.numbers.clear(),
            ClearField::IvrOptions => t.ivr_options.clear(),
            ClearField::Conditions => t.conditions.clear(),
            ClearField::Headers => r.headers.clear(),
            ClearField::Query => r.query.clear(),
            ClearField::Template => r.template_id.clear(),
            ClearField::Body => r.body = None,
            ClearField::Status => s.status_codes.clear(),
            ClearField::Response => {
                s.response_path.clear();
                s.response_value_json.clear();
            }
            ClearField::RetrySchedule => p.retry_schedule.clear(),
            ClearField::RateLimit => p.rate_limit = None,
            ClearField::NonRetryable => p.non_retryable_statuses.clear(),
            ClearField::Description => w.description.clear(),
        }
    }

    let replace = |dst: &mut Vec<String>, src: &[String]| {
        if !src.is_empty() {
            *dst = src.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
    };
    replace(&mut t.event_types, &f.events);
    replace(&mut t.campaigns, &f.campaigns);
    replace(&mut t.directions, &f.directions);
    replace(&mut t.numbers, &f.numbers);
    replace(&mut t.ivr_options, &f.ivr_options);
    if !f.conditions.is_empty() {
        t.conditions = f.conditions.iter().map(|c| parse_condition(c)).collect::<Result<_>>()?;
    }

    set(&mut r.url, &f.url);
    if let Some(m) = &f.method {
        r.method = m.trim().to_ascii_uppercase();
    }
    if !f.headers.is_empty() {
        r.headers = f.headers.iter().map(|h| parse_header(h)).collect::<Result<_>>()?;
    }
    if !f.query.is_empty() {
        r.query = f.query.iter().map(|q| parse_query(q)).collect::<Result<_>>()?;
    }
    set(&mut r.content_type, &f.content_type);
    set(&mut r.time_zone, &f.time_zone);
    set(&mut r.template_id, &f.template);
    let file = match &f.body_file {
        Some(path) => Some((path.as_path(), read_text(path)?)),
        None => None,
    };
    r.body = apply_body(
        r.body.take(),
        BodyInput { kind: f.body_kind, file, format: f.body_format.as_deref(), maps: &f.maps },
    )?;

    if !f.statuses.is_empty() {
        let mut ranges = Vec::new();
        for st in &f.statuses {
            ranges.extend(parse_status_ranges(st)?);
        }
        s.status_codes = ranges;
    }
    set(&mut s.response_path, &f.response_path);
    if let Some(v) = &f.response_value {
        s.response_value_json = json_or_string(v).to_string();
    }

    if f.timeout_ms.is_some() {
        p.timeout_ms = f.timeout_ms;
    }
    if f.retry_limit.is_some() {
        p.retry_limit = f.retry_limit;
    }
    if let Some(sched) = &f.retry_schedule {
        p.retry_schedule = parse_schedule(sched)?;
    }
    if f.total_timeout_secs.is_some() {
        p.total_timeout_secs = f.total_timeout_secs;
    }
    match (&f.rate_limit, f.burst) {
        (Some(rate), burst) => {
            let per_second = parse_rate(rate)?;
            let burst = burst.unwrap_or_else(|| per_second.ceil().max(1.0) as u32);
            p.rate_limit = Some(v1::RateLimit { per_second, burst });
        }
        (None, Some(burst)) => match p.rate_limit.as_mut() {
            Some(rl) => rl.burst = burst,
            None => bail!("--burst needs --rate-limit"),
        },
        (None, None) => {}
    }
    if f.max_concurrency.is_some() {
        p.max_concurrency = f.max_concurrency;
    }
    set(&mut p.ordering, &f.ordering);
    if !f.non_retryable.is_empty() {
        p.non_retryable_statuses = f.non_retryable.clone();
    }
    Ok(())
}

fn webhook_json(w: &v1::Webhook) -> Result<Value> {
    let domain = convert::webhook_from_proto(w.clone(), Utc::now())
        .map_err(|e| anyhow!("the server sent a webhook this client cannot read: {e}"))?;
    let mut v = serde_json::to_value(&domain)?;
    v["secrets"] = Value::Array(
        w.secrets
            .iter()
            .map(|s| json!({"prefix": s.prefix, "created_at": s.created_at, "expires_at": opt_str(&s.expires_at)}))
            .collect(),
    );
    Ok(v)
}

fn describe_webhook(w: &v1::Webhook) -> String {
    let t = w.trigger.clone().unwrap_or_default();
    let r = w.request.clone().unwrap_or_default();
    let s = w.success.clone().unwrap_or_default();
    let p = w.policy.clone().unwrap_or_default();
    let mut rows: Vec<(&str, String)> = vec![
        ("id", w.id.clone()),
        ("tenant", w.tenant_id.clone()),
        ("name", w.name.clone()),
        ("description", w.description.clone()),
        ("enabled", w.enabled.to_string()),
        ("version", w.version.to_string()),
        ("events", if t.event_types.is_empty() { "all".to_string() } else { t.event_types.join(", ") }),
        ("campaigns", t.campaigns.join(", ")),
        ("directions", t.directions.join(", ")),
        ("numbers", t.numbers.join(", ")),
        ("ivr options", t.ivr_options.join(", ")),
    ];
    for c in &t.conditions {
        rows.push(("condition", format!("{} {} {}", c.path, c.op, c.value_json).trim_end().to_string()));
    }
    let method = if r.method.is_empty() { "POST".to_string() } else { r.method.clone() };
    rows.push(("request", format!("{method} {}", r.url)));
    if !r.query.is_empty() {
        rows.push(("query", r.query.iter().map(|q| format!("{}={}", q.name, q.value)).collect::<Vec<_>>().join("&")));
    }
    for h in &r.headers {
        rows.push(("header", format!("{}: {}", h.name, h.value)));
    }
    rows.push(("content type", if r.content_type.is_empty() { "json".into() } else { r.content_type.clone() }));
    rows.push(("time zone", r.time_zone.clone()));
    rows.push(("template", r.template_id.clone()));
    rows.push(("body", body_summary(&r.body)));
    let mut success: Vec<String> = s
        .status_codes
        .iter()
        .map(|sr| if sr.from == sr.to { sr.from.to_string() } else { format!("{}-{}", sr.from, sr.to) })
        .collect();
    if success.is_empty() {
        success.push("200-299".into());
    }
    let mut success = success.join(", ");
    if !s.response_path.is_empty() {
        success.push_str(&format!("; response {}", s.response_path));
        if !s.response_value_json.is_empty() {
            success.push_str(&format!(" = {}", s.response_value_json));
        }
    }
    rows.push(("success", success));
    rows.push(("timeout", p.timeout_ms.map(|t| format!("{t} ms")).unwrap_or_default()));
    rows.push(("retry limit", p.retry_limit.map(|l| l.to_string()).unwrap_or_default()));
    rows.push(("retry schedule", p.retry_schedule.iter().map(|s| fmt_secs(*s)).collect::<Vec<_>>().join(", ")));
    rows.push(("total timeout", p.total_timeout_secs.map(fmt_secs).unwrap_or_default()));
    rows.push((
        "rate limit",
        p.rate_limit.as_ref().map(|rl| format!("{}/s, burst {}", rl.per_second, rl.burst)).unwrap_or_default(),
    ));
    rows.push(("max concurrency", p.max_concurrency.map(|c| c.to_string()).unwrap_or_default()));
    rows.push(("ordering", if p.ordering.is_empty() { "none".into() } else { p.ordering.clone() }));
    rows.push(("non-retryable", p.non_retryable_statuses.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")));
    for sec in &w.secrets {
        let mut line = format!("{} created {}", sec.prefix, sec.created_at);
        if !sec.expires_at.is_empty() {
            line.push_str(&format!(", expires {}", sec.expires_at));
        }
        rows.push(("secret", line));
    }
    rows.push(("created", w.created_at.clone()));
    rows.push(("updated", w.updated_at.clone()));
    describe(&rows)
}

fn print_webhook(ctx: &Ctx, w: &v1::Webhook) -> Result<()> {
    if ctx.json {
        out_json(&webhook_json(w)?);
    } else {
        out(&describe_webhook(w));
    }
    Ok(())
}

fn print_webhook_with_secret(ctx: &Ctx, w: Option<v1::Webhook>, secret: &str) -> Result<()> {
    let w = w.unwrap_or_default();
    if ctx.json {
        out_json(&json!({"webhook": webhook_json(&w)?, "secret": secret}));
    } else {
        out(&describe_webhook(&w));
        out(&format!("signing secret (shown once): {secret}"));
    }
    Ok(())
}

async fn webhook_cmd(ctx: &Ctx, cmd: WebhookCmd) -> Result<()> {
    match cmd {
        WebhookCmd::Create(flags) => {
            let mut w = match &flags.file {
                Some(path) => webhook_from_file(path)?,
                None => v1::Webhook { enabled: true, ..Default::default() },
            };
            apply_webhook_flags(&mut w, &flags)?;
            for (value, flag) in [
                (&w.tenant_id, "--tenant"),
                (&w.name, "--name"),
                (&w.request.as_ref().map(|r| r.url.clone()).unwrap_or_default(), "--url"),
            ] {
                if value.trim().is_empty() {
                    bail!("{flag} is required (or give it in --file)");
                }
            }
            let disabled = flags.disabled || !w.enabled;
            let resp = ctx
                .webhooks()
                .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled })
                .await
                .answer(ctx)?;
            print_webhook_with_secret(ctx, resp.webhook, &resp.secret)
        }
        WebhookCmd::Get { id } => {
            let w = ctx.webhooks().get_webhook(v1::GetWebhookRequest { id }).await.answer(ctx)?;
            print_webhook(ctx, &w)
        }
        WebhookCmd::List { tenant, limit, after } => {
            let tenant_id = tenant.unwrap_or_default();
            let mut all = Vec::new();
            let mut after = after.unwrap_or_default();
            let mut next_hint = String::new();
            loop {
                let resp = ctx
                    .webhooks()
                    .list_webhooks(v1::ListWebhooksRequest {
                        tenant_id: tenant_id.clone(),
                        limit: limit.unwrap_or(0),
                        after: after.clone(),
                    })
                    .await
                    .answer(ctx)?;
                all.extend(resp.webhooks);
                if limit.is_some() {
                    next_hint = resp.next;
                    break;
                }
                if resp.next.is_empty() || resp.next == after {
                    break;
                }
                after = resp.next;
            }
            if ctx.json {
                let list = all.iter().map(webhook_json).collect::<Result<Vec<_>>>()?;
                out_json(&json!({"webhooks": list, "next": opt_str(&next_hint)}));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|w| {
                        let t = w.trigger.clone().unwrap_or_default();
                        vec![
                            w.id.clone(),
                            w.tenant_id.clone(),
                            w.name.clone(),
                            w.enabled.to_string(),
                            if t.event_types.is_empty() { "all".into() } else { t.event_types.join(",") },
                            w.request.as_ref().map(|r| r.url.clone()).unwrap_or_default(),
                            w.version.to_string(),
                        ]
                    })
                    .collect();
                out(&table(&["ID", "TENANT", "NAME", "ENABLED", "EVENTS", "URL", "VERSION"], &rows));
                if !next_hint.is_empty() {
                    eprintln!("more: --after {next_hint}");
                }
            }
            Ok(())
        }
        WebhookCmd::Update { id, flags, expected_version } => {
            if flags.set_id.as_deref().is_some_and(|new| new != id) {
                bail!("--id cannot change a webhook's id");
            }
            let current = ctx.webhooks().get_webhook(v1::GetWebhookRequest { id: id.clone() }).await.answer(ctx)?;
            let mut w = match &flags.file {
                Some(path) => {
                    let mut w = webhook_from_file(path)?;
                    w.id = current.id.clone();
                    if w.tenant_id.is_empty() {
                        w.tenant_id = current.tenant_id.clone();
                    }
                    w.version = current.version;
                    w.created_at = current.created_at.clone();
                    w.secrets = current.secrets.clone();
                    w
                }
                None => current.clone(),
            };
            apply_webhook_flags(&mut w, &flags)?;
            let expected_version = expected_version.unwrap_or(current.version);
            let w = ctx
                .webhooks()
                .update_webhook(v1::UpdateWebhookRequest { webhook: Some(w), expected_version })
                .await
                .answer(ctx)?;
            print_webhook(ctx, &w)
        }
        WebhookCmd::Delete { id, expected_version } => {
            ctx.webhooks()
                .delete_webhook(v1::DeleteWebhookRequest { id: id.clone(), expected_version })
                .await
                .answer(ctx)?;
            if ctx.json {
                out_json(&json!({"deleted": id}));
            } else {
                out(&format!("deleted webhook {id}"));
            }
            Ok(())
        }
        WebhookCmd::Enable { id } => {
            let w = ctx.webhooks().enable_webhook(v1::SetEnabledRequest { id }).await.answer(ctx)?;
            print_enabled(ctx, &w)
        }
        WebhookCmd::Disable { id } => {
            let w = ctx.webhooks().disable_webhook(v1::SetEnabledRequest { id }).await.answer(ctx)?;
            print_enabled(ctx, &w)
        }
        WebhookCmd::RotateSecret { id, grace_secs } => {
            let resp = ctx.webhooks().rotate_secret(v1::RotateSecretRequest { id, grace_secs }).await.answer(ctx)?;
            print_webhook_with_secret(ctx, resp.webhook, &resp.secret)
        }
    }
}

fn print_enabled(ctx: &Ctx, w: &v1::Webhook) -> Result<()> {
    if ctx.json {
        return print_webhook(ctx, w);
    }
    let state = if w.enabled { "enabled" } else { "disabled" };
    out(&format!("webhook {} {state} (version {})", w.id, w.version));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// templates

fn template_from_file(path: &Path) -> Result<v1::Template> {
    let text = read_text(path)?;
    let mut v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(obj) = v.as_object_mut() else { bail!("{}: expected a JSON object (a template)", path.display()) };
    let now = Utc::now().to_rfc3339();
    for k in ["version", "created_at", "updated_at"] {
        obj.remove(k);
    }
    obj.entry("id").or_insert_with(|| json!(""));
    obj.entry("tenant_id").or_insert_with(|| json!(""));
    obj.entry("name").or_insert_with(|| json!(""));
    obj.insert("created_at".into(), json!(now));
    obj.insert("updated_at".into(), json!(now));
    let t: hookmesh_core::webhook::Template =
        serde_json::from_value(v).map_err(|e| anyhow!("{}: not a template: {e}", path.display()))?;
    let mut p = convert::template_to_proto(&t);
    p.created_at.clear();
    p.updated_at.clear();
    p.version = 0;
    Ok(p)
}

fn apply_template_flags(t: &mut v1::Template, f: &TemplateFlags) -> Result<()> {
    let set = |dst: &mut String, src: &Option<String>| {
        if let Some(s) = src {
            *dst = s.clone();
        }
    };
    set(&mut t.id, &f.set_id);
    set(&mut t.tenant_id, &f.tenant);
    set(&mut t.name, &f.name);
    set(&mut t.group, &f.group);
    set(&mut t.description, &f.description);
    set(&mut t.content_type, &f.content_type);
    let file = match (&f.example_file, &f.source_file) {
        (Some(p), _) => Some((p.as_path(), read_text(p)?)),
        (None, Some(p)) => Some((p.as_path(), read_text(p)?)),
        (None, None) => None,
    };
    let kind = f.kind.or(match (&f.example_file, &f.source_file) {
        (Some(_), _) => Some(BodyKind::Fields),
        (None, Some(_)) => Some(BodyKind::Text),
        (None, None) => None,
    });
    if kind == Some(BodyKind::Fields) && f.source_file.is_some() {
        bail!("a fields template takes --example-file, not --source-file");
    }
    if kind == Some(BodyKind::Text) && f.example_file.is_some() {
        bail!("a text template takes --source-file, not --example-file");
    }
    t.body = apply_body(t.body.take(), BodyInput { kind, file, format: f.format.as_deref(), maps: &f.maps })?;
    Ok(())
}

fn mapping_json(m: &v1::FieldMapping) -> Value {
    match convert::field_mapping_from_proto(m.clone(), "field") {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(_) => json!({"path": m.path, "source": null}),
    }
}

fn template_json(t: &v1::Template) -> Result<Value> {
    let domain = convert::template_from_proto(t.clone(), Utc::now())
        .map_err(|e| anyhow!("the server sent a template this client cannot read: {e}"))?;
    Ok(serde_json::to_value(&domain)?)
}

fn body_kind_name(b: &Option<v1::TemplateBody>) -> &'static str {
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(v1::template_body::Kind::Fields(_)) => "fields",
        Some(v1::template_body::Kind::Pairs(_)) => "pairs",
        Some(v1::template_body::Kind::Text(_)) => "text",
        None => "-",
    }
}

fn describe_template(t: &v1::Template) -> String {
    let mut text = describe(&[
        ("id", t.id.clone()),
        ("tenant", t.tenant_id.clone()),
        ("group", t.group.clone()),
        ("name", t.name.clone()),
        ("description", t.description.clone()),
        ("content type", or_dash(&t.content_type)),
        ("kind", body_kind_name(&t.body).to_string()),
        ("version", t.version.to_string()),
        ("created", t.created_at.clone()),
        ("updated", t.updated_at.clone()),
    ]);
    use v1::template_body::Kind;
    let mappings = |list: &[v1::FieldMapping]| {
        let rows: Vec<Vec<String>> = list.iter().map(|m| vec![m.path.clone(), source_str(&m.source)]).collect();
        table(&["PATH", "SOURCE"], &rows)
    };
    match t.body.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(Kind::Fields(f)) => {
            text.push_str(&format!("\nexample ({}):\n{}\n", or_dash(&f.format), f.example.trim_end()));
            if !f.fields.is_empty() {
                text.push('\n');
                text.push_str(&mappings(&f.fields));
            }
        }
        Some(Kind::Pairs(p)) => {
            text.push('\n');
            text.push_str(&mappings(&p.pairs));
        }
        Some(Kind::Text(s)) => text.push_str(&format!("\nsource:\n{}\n", s.trim_end())),
        None => {}
    }
    text
}

fn print_template(ctx: &Ctx, t: &v1::Template) -> Result<()> {
    if ctx.json {
        out_json(&template_json(t)?);
    } else {
        out(&describe_template(t));
    }
    Ok(())
}

async fn template_cmd(ctx: &Ctx, cmd: TemplateCmd) -> Result<()> {
    match cmd {
        TemplateCmd::Create(flags) => {
            let mut t = match &flags.file {
                Some(path) => template_from_file(path)?,
                None => v1::Template::default(),
            };
            apply_template_flags(&mut t, &flags)?;
            if t.tenant_id.trim().is_empty() {
                bail!("--tenant is required");
            }
            if t.name.trim().is_empty() {
                bail!("--name is required");
            }
            if t.body.as_ref().and_then(|b| b.kind.as_ref()).is_none() {
                bail!("a body is required: --kind fields --example-file F, --kind text --source-file F, or --kind pairs --map 'name=token:NAME'");
            }
            let t =
                ctx.templates().create_template(v1::CreateTemplateRequest { template: Some(t) }).await.answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::Get { id } => {
            let t = ctx.templates().get_template(v1::GetTemplateRequest { id }).await.answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::List { tenant, group } => {
            let resp = ctx
                .templates()
                .list_templates(v1::ListTemplatesRequest {
                    tenant_id: tenant.unwrap_or_default(),
                    group: group.unwrap_or_default(),
                })
                .await
                .answer(ctx)?;
            if ctx.json {
                let list = resp.templates.iter().map(template_json).collect::<Result<Vec<_>>>()?;
                out_json(&json!({"templates": list}));
            } else {
                let rows: Vec<Vec<String>> = resp
                    .templates
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.tenant_id.clone(),
                            t.group.clone(),
                            t.name.clone(),
                            or_dash(&t.content_type),
                            body_kind_name(&t.body).to_string(),
                            t.version.to_string(),
                        ]
                    })
                    .collect();
                out(&table(&["ID", "TENANT", "GROUP", "NAME", "TYPE", "KIND", "VERSION"], &rows));
            }
            Ok(())
        }
        TemplateCmd::Update { id, flags, expected_version } => {
            if flags.set_id.as_deref().is_some_and(|new| new != id) {
                bail!("--id cannot change a template's id");
            }
            let current = ctx.templates().get_template(v1::GetTemplateRequest { id: id.clone() }).await.answer(ctx)?;
            let mut t = match &flags.file {
                Some(path) => {
                    let mut t = template_from_file(path)?;
                    t.id = current.id.clone();
                    if t.tenant_id.is_empty() {
                        t.tenant_id = current.tenant_id.clone();
                    }
                    t.version = current.version;
                    t.created_at = current.created_at.clone();
                    t
                }
                None => current.clone(),
            };
            apply_template_flags(&mut t, &flags)?;
            let expected_version = expected_version.unwrap_or(current.version);
            let t = ctx
                .templates()
                .update_template(v1::UpdateTemplateRequest { template: Some(t), expected_version })
                .await
                .answer(ctx)?;
            print_template(ctx, &t)
        }
        TemplateCmd::Delete { id, expected_version } => {
            ctx.templates()
                .delete_template(v1::DeleteTemplateRequest { id: id.clone(), expected_version })
                .await
                .answer(ctx)?;
            if ctx.json {
                out_json(&json!({"deleted": id}));
            } else {
                out(&format!("deleted template {id}"));
            }
            Ok(())
        }
        TemplateCmd::Extract { format, example_file } => {
            let example = read_text(&example_file)?;
            let format = match format.or_else(|| format_from_path(&example_file).map(str::to_string)) {
                Some(f) => f,
                None => bail!("--format (json or xml) is required for {}", example_file.display()),
            };
            let resp =
                ctx.templates().extract_fields(v1::ExtractFieldsRequest { format, example }).await.answer(ctx)?;
            if ctx.json {
                out_json(&json!({"fields": resp.fields.iter().map(mapping_json).collect::<Vec<_>>()}));
            } else {
                let rows: Vec<Vec<String>> =
                    resp.fields.iter().map(|m| vec![m.path.clone(), source_str(&m.source)]).collect();
                out(&table(&["PATH", "SOURCE"], &rows));
            }
            Ok(())
        }
    }
}

async fn tokens_cmd(ctx: &Ctx, category: Option<String>) -> Result<()> {
    let resp = ctx.templates().list_tokens(v1::ListTokensRequest {}).await.answer(ctx)?;
    let mut cats = resp.categories;
    if let Some(c) = category {
        let want = c.trim().to_ascii_lowercase();
        let names: Vec<String> = cats.iter().map(|c| c.name.clone()).collect();
        cats.retain(|x| x.name.eq_ignore_ascii_case(&want));
        if cats.is_empty() {
            bail!("unknown token category `{c}` ({})", names.join(", "));
        }
    }
    if ctx.json {
        let v: Vec<Value> = cats
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "tokens": c.tokens.iter().map(|t| json!({
                        "name": t.name,
                        "type": t.r#type,
                        "description": t.description,
                        "example": json_or_string(&t.example_json),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        out_json(&json!({"categories": v}));
        return Ok(());
    }
    let mut text = String::new();
    for (i, c) in cats.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("{}:\n", c.name));
        let rows: Vec<Vec<String>> = c
            .tokens
            .iter()
            .map(|t| vec![t.name.clone(), t.r#type.clone(), t.example_json.clone(), t.description.clone()])
            .collect();
        for line in table(&["TOKEN", "TYPE", "EXAMPLE", "DESCRIPTION"], &rows).lines() {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    out(&text);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// previews and deliveries

fn event_from_file(path: &Path) -> Result<v1::Event> {
    let text = read_text(path)?;
    let event = hookmesh_core::event::parse_event(text.trim().as_bytes())
        .map_err(|e| anyhow!("event file {}: {e}", path.display()))?;
    Ok(convert::event_to_proto(&event))
}

fn rendered_json(r: &v1::RenderedRequest) -> Value {
    json!({"method": r.method, "url": r.url, "headers": kvs_json(&r.headers), "body": r.body})
}

fn rendered_text(r: &v1::RenderedRequest) -> String {
    // A template preview has no request line.
    let mut text =
        if r.method.is_empty() && r.url.is_empty() { String::new() } else { format!("{} {}\n", r.method, r.url) };
    for h in &r.headers {
        text.push_str(&format!("{}: {}\n", h.name, h.value));
    }
    if !r.body.is_empty() {
        text.push('\n');
        text.push_str(&r.body);
        if !r.body.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

async fn preview_cmd(ctx: &Ctx, a: PreviewArgs) -> Result<()> {
    let event = a.event_file.as_deref().map(event_from_file).transpose()?;
    let target = match (a.webhook, a.template) {
        (Some(id), _) => v1::preview_request::Target::WebhookId(id),
        (None, Some(id)) => v1::preview_request::Target::TemplateId(id),
        (None, None) => bail!("--webhook or --template is required"),
    };
    let resp = ctx.render().preview(v1::PreviewRequest { target: Some(target), event }).await.answer(ctx)?;
    let r = resp.request.unwrap_or_default();
    if ctx.json {
        out_json(&rendered_json(&r));
    } else {
        out(&rendered_text(&r));
    }
    Ok(())
}

fn delivery_json(d: &v1::Delivery) -> Value {
    json!({
        "id": d.id,
        "tenant_id": d.tenant_id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "call_id": opt_str(&d.call_id),
        "campaign_id": opt_str(&d.campaign_id),
        "campaign_name": opt_str(&d.campaign_name),
        "direction": opt_str(&d.direction),
        "tracking": opt_str(&d.tracking),
        "status": d.status,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "attempts": d.attempts,
        "next_attempt_at": opt_str(&d.next_attempt_at),
        "last_status": if d.last_status == 0 { Value::Null } else { json!(d.last_status) },
        "last_error": opt_str(&d.last_error),
        "last_error_class": opt_str(&d.last_error_class),
    })
}

fn attempt_json(a: &v1::Attempt) -> Value {
    json!({
        "number": a.number,
        "trigger": a.trigger,
        "started_at": a.started_at,
        "method": a.method,
        "url": a.url,
        "request_headers": kvs_json(&a.request_headers),
        "request_body": a.request_body,
        "response_status": if a.response_status == 0 { Value::Null } else { json!(a.response_status) },
        "response_headers": kvs_json(&a.response_headers),
        "response_body": a.response_body,
        "duration_ms": a.duration_ms,
        "error_class": opt_str(&a.error_class),
        "error": opt_str(&a.error),
    })
}

fn status_or_dash(s: u32) -> String {
    if s == 0 {
        "-".to_string()
    } else {
        s.to_string()
    }
}

fn describe_delivery(d: &v1::Delivery) -> String {
    describe(&[
        ("id", d.id.clone()),
        ("status", d.status.clone()),
        ("tenant", d.tenant_id.clone()),
        ("webhook", d.webhook_id.clone()),
        ("event", format!("{} ({})", d.event_id, d.event_type)),
        ("call", d.call_id.clone()),
        ("campaign", campaign_text(d)),
        ("direction", d.direction.clone()),
        ("tracking", d.tracking.clone()),
        ("created", d.created_at.clone()),
        ("updated", d.updated_at.clone()),
        ("attempts", d.attempts.to_string()),
        ("next attempt", d.next_attempt_at.clone()),
        ("last status", if d.last_status == 0 { String::new() } else { d.last_status.to_string() }),
        ("last error", d.last_error.clone()),
        ("error class", d.last_error_class.clone()),
    ])
}

/// `Sales Campaign (cmp-1)`, or whichever of the two the call carried.
fn campaign_text(d: &v1::Delivery) -> String {
    match (d.campaign_name.is_empty(), d.campaign_id.is_empty()) {
        (false, false) => format!("{} ({})", d.campaign_name, d.campaign_id),
        (false, true) => d.campaign_name.clone(),
        (true, _) => d.campaign_id.clone(),
    }
}

fn attempt_line(a: &v1::Attempt) -> String {
    let mut line = format!(
        "attempt {} ({}) at {}: {} {} → {} in {} ms",
        a.number,
        or_dash(&a.trigger),
        a.started_at,
        a.method,
        a.url,
        if a.response_status == 0 { "no response".to_string() } else { a.response_status.to_string() },
        a.duration_ms
    );
    if !a.error_class.is_empty() || !a.error.is_empty() {
        line.push_str(&format!(" [{}: {}]", or_dash(&a.error_class), a.error));
    }
    line
}

fn attempts_table(list: &[v1::Attempt]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.number.to_string(),
                or_dash(&a.trigger),
                a.started_at.clone(),
                status_or_dash(a.response_status),
                format!("{} ms", a.duration_ms),
                or_dash(&a.error_class),
                a.error.clone(),
            ]
        })
        .collect();
    table(&["#", "TRIGGER", "STARTED_AT", "STATUS", "DURATION", "ERROR_CLASS", "ERROR"], &rows)
}

fn attempt_details(a: &v1::Attempt) -> String {
    let mut text = format!("{}\n> {} {}\n", attempt_line(a), a.method, a.url);
    for h in &a.request_headers {
        text.push_str(&format!("> {}: {}\n", h.name, h.value));
    }
    if !a.request_body.is_empty() {
        text.push_str(&format!(">\n> {}\n", a.request_body.replace('\n', "\n> ")));
    }
    if a.response_status != 0 {
        text.push_str(&format!("< {}\n", a.response_status));
        for h in &a.response_headers {
            text.push_str(&format!("< {}: {}\n", h.name, h.value));
        }
        if !a.response_body.is_empty() {
            text.push_str(&format!("<\n< {}\n", a.response_body.replace('\n', "\n< ")));
        }
    }
    text
}

async fn delivery_cmd(ctx: &Ctx, cmd: DeliveryCmd) -> Result<()> {
    match cmd {
        DeliveryCmd::List(a) => {
            let now = Utc::now();
            let since = a.since.as_deref().map(|s| parse_since(s, now)).transpose().context("--since")?;
            let until = a.until.as_deref().map(|s| parse_since(s, now)).transpose().context("--until")?;
            let resp = ctx
                .deliveries()
                .list_deliveries(v1::ListDeliveriesRequest {
                    tenant_id: a.tenant.unwrap_or_default(),
                    webhook_id: a.webhook.unwrap_or_default(),
                    status: a.status.unwrap_or_default(),
                    event_type: a.event_type.unwrap_or_default(),
                    call_id: a.call_id.unwrap_or_default(),
                    campaign: a.campaign.unwrap_or_default(),
                    direction: a.direction.unwrap_or_default(),
                    tracking: a.tracking.unwrap_or_default(),
                    since: since.unwrap_or_default(),
                    until: until.unwrap_or_default(),
                    limit: a.limit.unwrap_or(0),
                    before: a.before.unwrap_or_default(),
                })
                .await
                .answer(ctx)?;
            if ctx.json {
                out_json(&json!({
                    "deliveries": resp.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
                    "next": opt_str(&resp.next),
                }));
            } else {
                let rows: Vec<Vec<String>> = resp
                    .deliveries
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.status.clone(),
                            d.webhook_id.clone(),
                            d.event_type.clone(),
                            or_dash(&d.call_id),
                            or_dash(if d.campaign_name.is_empty() { &d.campaign_id } else { &d.campaign_name }),
                            or_dash(&d.direction),
                            or_dash(&d.tracking),
                            d.attempts.to_string(),
                            status_or_dash(d.last_status),
                            d.created_at.clone(),
                        ]
                    })
                    .collect();
                out(&table(
                    &[
                        "ID",
                        "STATUS",
                        "WEBHOOK",
                        "EVENT_TYPE",
                        "CALL_ID",
                        "CAMPAIGN",
                        "DIRECTION",
                        "TRACKING",
                        "ATTEMPTS",
                        "LAST_STATUS",
                        "CREATED_AT",
                    ],
                    &rows,
                ));
                if !resp.next.is_empty() {
                    eprintln!("more: --before {}", resp.next);
                }
            }
            Ok(())
        }
        DeliveryCmd::Get { id, verbose } => {
            let resp = ctx.deliveries().get_delivery(v1::GetDeliveryRequest { id }).await.answer(ctx)?;
            let d = resp.delivery.unwrap_or_default();
            if ctx.json {
                out_json(&json!({
                    "delivery": delivery_json(&d),
                    "request": resp.request.as_ref().map(rendered_json),
                    "attempts": resp.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
                }));
                return Ok(());
            }
            let mut text = describe_delivery(&d);
            if let Some(r) = &resp.request {
                text.push_str("\nrequest:\n");
                text.push_str(&rendered_text(r));
            }
            if !resp.attempts.is_empty() {
                text.push_str("\nattempts:\n");
                if verbose {
                    for a in &resp.attempts {
                        text.push_str(&attempt_details(a));
                        text.push('\n');
                    }
                } else {
                    text.push_str(&attempts_table(&resp.attempts));
                }
            }
            out(&text);
            Ok(())
        }
        DeliveryCmd::Resend { id } => {
            let resp = ctx.deliveries().resend(v1::ResendRequest { id }).await.answer(ctx)?;
            let d = resp.delivery.unwrap_or_default();
            if ctx.json {
                out_json(&json!({"delivery": delivery_json(&d), "attempt": resp.attempt.as_ref().map(attempt_json)}));
            } else {
                let mut text = format!("delivery {}: {}\n", d.id, d.status);
                if let Some(a) = &resp.attempt {
                    text.push_str(&attempt_line(a));
                }
                out(&text);
            }
            Ok(())
        }
        DeliveryCmd::TestSend { webhook_id, event_file } => {
            let event = event_file.as_deref().map(event_from_file).transpose()?;
            let resp = ctx.deliveries().test_send(v1::TestSendRequest { webhook_id, event }).await.answer(ctx)?;
            if ctx.json {
                out_json(&json!({
                    "request": resp.request.as_ref().map(rendered_json),
                    "attempt": resp.attempt.as_ref().map(attempt_json),
                    "success": resp.success,
                }));
            } else {
                let mut text = String::new();
                if let Some(r) = &resp.request {
                    text.push_str(&rendered_text(r));
                    text.push('\n');
                }
                if let Some(a) = &resp.attempt {
                    text.push_str(&attempt_line(a));
                    text.push('\n');
                    if a.response_status != 0 && !a.response_body.is_empty() {
                        text.push_str(&format!("response body:\n{}\n", a.response_body.trim_end()));
                    }
                }
                text.push_str(&format!("success: {}", resp.success));
                out(&text);
            }
            Ok(())
        }
        DeliveryCmd::Recover { webhook_id, since } => {
            let since = parse_since(&since, Utc::now()).context("--since")?;
            let resp = ctx.deliveries().recover(v1::RecoverRequest { webhook_id, since }).await.answer(ctx)?;
            if ctx.json {
                out_json(&json!({"found": resp.found, "succeeded": resp.succeeded, "failed": resp.failed}));
            } else {
                out(&format!("found {}, succeeded {}, failed {}", resp.found, resp.succeeded, resp.failed));
            }
            Ok(())
        }
    }
}

async fn tenant_cmd(ctx: &Ctx, cmd: TenantCmd) -> Result<()> {
    let t = match cmd {
        TenantCmd::Show { tenant } => {
            ctx.tenants().get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: tenant }).await.answer(ctx)?
        }
        TenantCmd::Set { tenant, mask_personal_data, mask_fields, clear_mask_fields } => {
            let mut t = ctx
                .tenants()
                .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: tenant })
                .await
                .answer(ctx)?;
            if let Some(on) = mask_personal_data {
                t.mask_personal_data = on;
            }
            if clear_mask_fields {
                t.mask_fields.clear();
            } else if !mask_fields.is_empty() {
                t.mask_fields = mask_fields;
            }
            let expected_version = t.version;
            ctx.tenants()
                .update_tenant_settings(v1::UpdateTenantSettingsRequest { settings: Some(t), expected_version })
                .await
                .answer(ctx)?
        }
    };
    if ctx.json {
        out_json(&json!({
            "tenant_id": t.tenant_id,
            "mask_personal_data": t.mask_personal_data,
            "mask_fields": t.mask_fields,
            "personal_tokens": t.personal_tokens,
            "version": t.version,
            "updated_at": opt_str(&t.updated_at),
        }));
        return Ok(());
    }
    out(&describe(&[
        ("tenant", t.tenant_id.clone()),
        ("mask personal data", if t.mask_personal_data { "yes".into() } else { "no".into() }),
        ("extra masked fields", if t.mask_fields.is_empty() { "-".into() } else { t.mask_fields.join(", ") }),
        ("built-in personal", t.personal_tokens.join(", ")),
        ("version", t.version.to_string()),
        ("updated", or_dash(&t.updated_at)),
    ]));
    Ok(())
}

async fn health_cmd(ctx: &Ctx, webhook_id: String) -> Result<()> {
    let h = ctx.deliveries().endpoint_health(v1::EndpointHealthRequest { webhook_id }).await.answer(ctx)?;
    if ctx.json {
        out_json(&json!({
            "webhook_id": h.webhook_id,
            "last_status": if h.last_status == 0 { Value::Null } else { json!(h.last_status) },
            "last_attempt_at": opt_str(&h.last_attempt_at),
            "circuit": h.circuit,
            "windows": h.windows.iter().map(|w| json!({
                "window": w.window,
                "attempts": w.attempts,
                "successes": w.successes,
                "success_rate": w.success_rate,
                "avg_ms": w.avg_ms,
                "p95_ms": w.p95_ms,
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut text = describe(&[
        ("webhook", h.webhook_id.clone()),
        ("circuit", or_dash(&h.circuit)),
        ("last status", status_or_dash(h.last_status)),
        ("last attempt", or_dash(&h.last_attempt_at)),
    ]);
    let rows: Vec<Vec<String>> = h
        .windows
        .iter()
        .map(|w| {
            vec![
                w.window.clone(),
                w.attempts.to_string(),
                w.successes.to_string(),
                if w.attempts == 0 { "-".into() } else { format!("{:.1}%", w.success_rate * 100.0) },
                format!("{:.0}", w.avg_ms),
                format!("{:.0}", w.p95_ms),
            ]
        })
        .collect();
    text.push('\n');
    text.push_str(&table(&["WINDOW", "ATTEMPTS", "SUCCESSES", "SUCCESS_RATE", "AVG_MS", "P95_MS"], &rows));
    out(&text);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ingest

/// The first `n` characters of the original bytes, readable on one line.
fn preview_bytes(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    let mut p: String = s.chars().take(n).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > n {
        p.push('…');
    }
    p
}

async fn dlq_cmd(ctx: &Ctx, limit: Option<u32>, tenant: Option<String>) -> Result<()> {
    let resp = ctx
        .ingest()
        .list_dead_letters(v1::ListDeadLettersRequest {
            limit: limit.unwrap_or(0),
            tenant_id: tenant.unwrap_or_default(),
        })
        .await
        .answer(ctx)?;
    if ctx.json {
        let list: Vec<Value> = resp
            .entries
            .iter()
            .map(|d| {
                json!({
                    "topic": d.topic,
                    "partition": d.partition,
                    "offset": d.offset,
                    "source": d.source,
                    "tenant_id": opt_str(&d.tenant_id),
                    "field": d.field,
                    "reason": d.reason,
                    "received_at": d.received_at,
                    "original": String::from_utf8_lossy(&d.original),
                })
            })
            .collect();
        out_json(&json!({"entries": list}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .entries
        .iter()
        .map(|d| {
            vec![
                d.received_at.clone(),
                or_dash(&d.source),
                or_dash(&d.tenant_id),
                or_dash(&d.field),
                d.reason.clone(),
                preview_bytes(&d.original, 80),
            ]
        })
        .collect();
    out(&table(&["RECEIVED_AT", "SOURCE", "TENANT", "FIELD", "REASON", "ORIGINAL"], &rows));
    Ok(())
}

/// The events of a file: a JSON array, one JSON object, or JSON lines (each line sent as
/// written, so a bad line reaches the dead-letter queue untouched).
fn split_events(text: &str) -> Result<Vec<String>> {
    let t = text.trim();
    if t.is_empty() {
        bail!("no events in the file");
    }
    if t.starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(t).context("the file starts with `[` but is not a JSON array")?;
        return Ok(list.iter().map(Value::to_string).collect());
    }
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(t) {
        if !t.contains('\n') {
            return Ok(vec![t.to_string()]);
        }
        return Ok(vec![v.to_string()]);
    }
    Ok(t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

const PUBLISH_BATCH_EVENTS: usize = 500;
const PUBLISH_BATCH_BYTES: usize = 2 * 1024 * 1024;

async fn publish_cmd(ctx: &Ctx, file: &Path) -> Result<()> {
    let items = split_events(&read_text(file)?)?;
    let mut results: Vec<v1::PublishResult> = Vec::with_capacity(items.len());
    let (mut accepted, mut rejected, mut duplicates) = (0u32, 0u32, 0u32);
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < items.len()
            && end - start < PUBLISH_BATCH_EVENTS
            && (end == start || bytes + items[end].len() <= PUBLISH_BATCH_BYTES)
        {
            bytes += items[end].len();
            end += 1;
        }
        let events = items[start..end]
            .iter()
            .map(|s| v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(s.clone())) })
            .collect();
        let resp = ctx.ingest().publish(v1::PublishRequest { events }).await.answer(ctx)?;
        accepted += resp.accepted;
        rejected += resp.rejected;
        duplicates += resp.duplicates;
        results.extend(resp.results.into_iter().map(|mut r| {
            r.index += start as u32;
            r
        }));
        start = end;
    }
    let outcome = |r: &v1::PublishResult| {
        if r.duplicate {
            "duplicate"
        } else if r.accepted {
            "accepted"
        } else {
            "rejected"
        }
    };
    if ctx.json {
        out_json(&json!({
            "results": results.iter().map(|r| json!({
                "index": r.index,
                "result": outcome(r),
                "event_id": opt_str(&r.event_id),
                "field": opt_str(&r.field),
                "reason": opt_str(&r.reason),
            })).collect::<Vec<_>>(),
            "accepted": accepted,
            "rejected": rejected,
            "duplicates": duplicates,
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![r.index.to_string(), or_dash(&r.event_id), outcome(r).to_string(), or_dash(&r.field), r.reason.clone()]
        })
        .collect();
    let mut text = table(&["INDEX", "EVENT_ID", "RESULT", "FIELD", "REASON"], &rows);
    text.push_str(&format!("accepted {accepted}, rejected {rejected}, duplicates {duplicates}"));
    out(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
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

    #[test]
    fn parses_a_full_create_command() {
        let cli = Cli::try_parse_from([
            "ctl",
            "--addr",
            "localhost:9",
            "-o",
            "json",
            "webhook",
            "create",
            "--tenant",
            "acme",
            "--name",
            "CRM",
            "--url",
            "https://x.example/h",
            "--event",
            "call.ended,call.missed",
            "--event",
            "call.answered",
            "--header",
            "X-Key: abc",
            "--status",
            "200-299",
            "--status",
            "302",
            "--rate-limit",
            "10/s",
            "--condition",
            "data.tags.region eq south",
            "--ordering",
            "per_call",
            "--disabled",
        ])
        .unwrap();
        assert_eq!(cli.args.output, Output::Json);
        let CtlCommand::Webhook(WebhookCmd::Create(flags)) = cli.args.command else { panic!() };
        assert_eq!(flags.events, ["call.ended", "call.missed", "call.answered"]);
        let mut w = v1::Webhook { enabled: true, ..Default::default() };
        apply_webhook_flags(&mut w, &flags).unwrap();
        assert!(!w.enabled);
        assert_eq!(w.trigger.as_ref().unwrap().event_types.len(), 3);
        assert_eq!(w.request.as_ref().unwrap().headers[0].name, "X-Key");
        assert_eq!(w.success.as_ref().unwrap().status_codes.len(), 2);
        let p = w.policy.as_ref().unwrap();
        assert_eq!(p.rate_limit, Some(v1::RateLimit { per_second: 10.0, burst: 10 }));
        assert_eq!(p.ordering, "per_call");
        // What the flags built converts to the domain.
        let d = convert::webhook_from_proto(w, Utc::now()).unwrap();
        assert_eq!(d.trigger.conditions[0].value, json!("south"));
    }

    #[test]
    fn headers() {
        let h = parse_header("Authorization:  Bearer a:b ").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("Authorization", "Bearer a:b"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn query_params() {
        let q = parse_query("src=hook=mesh").unwrap();
        assert_eq!((q.name.as_str(), q.value.as_str()), ("src", "hook=mesh"));
        assert_eq!(parse_query("empty=").unwrap().value, "");
        assert!(parse_query("novalue").is_err());
        assert!(parse_query("=x").is_err());
    }

    #[test]
    fn conditions() {
        let c = parse_condition("data.tags.region eq south").unwrap();
        assert_eq!((c.path.as_str(), c.op.as_str(), c.value_json.as_str()), ("data.tags.region", "eq", "\"south\""));
        let c = parse_condition("duration  ne  30").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("ne", "30"));
        let c = parse_condition("campaign_name eq Spring Sale").unwrap();
        assert_eq!(c.value_json, "\"Spring Sale\"");
        let c = parse_condition("ivr_option in Sales,Support").unwrap();
        assert_eq!(c.value_json, r#"["Sales","Support"]"#);
        let c = parse_condition(r#"ivr_option in ["1", 2]"#).unwrap();
        assert_eq!(c.value_json, r#"["1",2]"#);
        let c = parse_condition("ani exists").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("exists", ""));
        let c = parse_condition("tracking == \"5551234\"").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("eq", "\"5551234\""));
        assert!(parse_condition("ani").is_err());
        assert!(parse_condition("ani like x").is_err());
        assert!(parse_condition("ani eq").is_err());
        assert!(parse_condition("ani exists x").is_err());
    }

    #[test]
    fn status_ranges() {
        let r = |s: &str| parse_status_ranges(s).map(|v| v.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>());
        assert_eq!(r("200-299").unwrap(), [(200, 299)]);
        assert_eq!(r("204").unwrap(), [(204, 204)]);
        assert_eq!(r("2xx, 302").unwrap(), [(200, 299), (302, 302)]);
        assert!(r("299-200").is_err());
        assert!(r("200-700").is_err());
        assert!(r("abc").is_err());
        assert!(r("9xx").is_err());
        assert!(r("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90s", false), Ok(90));
        assert_eq!(parse_duration_secs("30m", false), Ok(1800));
        assert_eq!(parse_duration_secs("1h", false), Ok(3600));
        assert_eq!(parse_duration_secs("2d", false), Ok(172_800));
        assert_eq!(parse_duration_secs("1h30m", false), Ok(5400));
        assert_eq!(parse_duration_secs("1W", false), Ok(604_800));
        assert_eq!(parse_duration_secs("45", true), Ok(45));
        assert!(parse_duration_secs("45", false).is_err());
        assert!(parse_duration_secs("1x", false).is_err());
        assert!(parse_duration_secs("h", false).is_err());
        assert!(parse_duration_secs("1h30", false).is_err());
        assert!(parse_duration_secs("", true).is_err());
        assert_eq!(parse_schedule("5, 5m,30m,2h").unwrap(), [5, 300, 1800, 7200]);
        assert!(parse_schedule("5,soon").is_err());
        assert_eq!(fmt_secs(300), "5m");
        assert_eq!(fmt_secs(90), "90s");
        assert_eq!(fmt_secs(86_400), "1d");
    }

    #[test]
    fn since() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0).unwrap();
        assert_eq!(parse_since("1h", now).unwrap(), "2026-01-02T11:00:00Z");
        assert_eq!(parse_since("2d", now).unwrap(), "2025-12-31T12:00:00Z");
        assert_eq!(parse_since("2026-01-01T10:00:00+02:00", now).unwrap(), "2026-01-01T08:00:00Z");
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("60", now).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10").unwrap(), 10.0);
        assert_eq!(parse_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_rate("3600/hour").unwrap(), 1.0);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("ten").is_err());
        assert!(parse_rate("10/d").is_err());
    }

    #[test]
    fn mappings() {
        let m = |s: &str| parse_mapping(s).map(|m| (m.path.clone(), source_str(&m.source)));
        assert_eq!(m("caller=token:ani").unwrap(), ("caller".into(), "token:ani".into()));
        assert_eq!(m("caller=%ani%").unwrap(), ("caller".into(), "token:%ani%".into()));
        assert_eq!(m("src=const:\"hm\"").unwrap(), ("src".into(), "const:\"hm\"".into()));
        assert_eq!(m("src=const:hookmesh").unwrap(), ("src".into(), "const:\"hookmesh\"".into()));
        assert_eq!(m("n=const:5").unwrap(), ("n".into(), "const:5".into()));
        assert_eq!(m("call.kind=name").unwrap(), ("call.kind".into(), "name".into()));
        assert!(m("caller=ani").is_err());
        assert!(m("=token:ani").is_err());
        assert!(m("caller").is_err());
    }

    #[test]
    fn body_flags() {
        use v1::template_body::Kind;
        let maps = vec!["caller=token:ani".to_string()];
        let b = apply_body(
            None,
            BodyInput {
                kind: None,
                file: Some((Path::new("ex.xml"), "<a><caller/></a>".into())),
                format: None,
                maps: &maps,
            },
        )
        .unwrap();
        let Some(Kind::Fields(f)) = b.clone().and_then(|b| b.kind) else { panic!("{b:?}") };
        assert_eq!(f.format, "xml");
        assert_eq!(f.fields.len(), 1);
        // Only maps on update: merged into the existing fields body.
        let more = vec!["caller=const:1".to_string(), "b=name".to_string()];
        let b2 = apply_body(b, BodyInput { kind: None, file: None, format: None, maps: &more }).unwrap();
        let Some(Kind::Fields(f)) = b2.and_then(|b| b.kind) else { panic!() };
        assert_eq!(f.fields.iter().map(|m| source_str(&m.source)).collect::<Vec<_>>(), ["const:1", "name"]);
        // Pairs from maps alone.
        let b = apply_body(None, BodyInput { kind: None, file: None, format: None, maps: &maps }).unwrap();
        assert!(matches!(b.and_then(|b| b.kind), Some(Kind::Pairs(_))));
        // Nothing asked, nothing changed.
        assert_eq!(apply_body(None, BodyInput { kind: None, file: None, format: None, maps: &[] }).unwrap(), None);
        // A text body needs a source; an unknown extension needs a kind.
        assert!(
            apply_body(None, BodyInput { kind: Some(BodyKind::Text), file: None, format: None, maps: &[] }).is_err()
        );
        assert!(apply_body(
            None,
            BodyInput { kind: None, file: Some((Path::new("b.j2"), "x".into())), format: None, maps: &[] }
        )
        .is_err());
    }

    #[test]
    fn tables_are_aligned() {
        let t = table(
            &["ID", "NAME", "URL"],
            &[vec!["a".into(), "long name".into(), "u".into()], vec!["bbbb".into(), "n\nx".into(), "".into()]],
        );
        assert_eq!(t, "ID    NAME       URL\na     long name  u\nbbbb  n x\n");
        let d = describe(&[("id", "1".into()), ("empty", String::new()), ("version", "2".into())]);
        assert_eq!(d, "id:       1\nversion:  2\n");
    }

    #[test]
    fn event_files_split() {
        assert_eq!(split_events(r#"[{"id":"a"}, {"id":"b"}]"#).unwrap(), [r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        assert_eq!(split_events("{\"id\":\"a\"}\n\n{\"id\":\"b\"}\nnot json\n").unwrap().len(), 3);
        assert_eq!(split_events("{\n  \"id\": \"a\"\n}\n").unwrap(), [r#"{"id":"a"}"#]);
        assert!(split_events("  \n").is_err());
        assert!(split_events("[1,").is_err());
    }

    #[test]
    fn originals_are_shown_on_one_line() {
        assert_eq!(preview_bytes(b"ab\ncd", 3), "ab …");
    }
}
