//! `ctl webhook`: create, get, list, update, delete, enable, disable, rotate-secret.
//!
//! `update` fetches the current definition, applies the flags (list flags replace the whole
//! list, `--clear X` empties one) and sends it with the fetched version as the expected
//! version, so a concurrent edit is refused instead of overwritten; `--expected-version`
//! overrides it (0 = don't check).

use crate::ctl::body::{apply_body, body_summary, BodyInput, BodyKind};
use crate::ctl::output::{describe, fmt_secs, opt_str, out, out_json, table};
use crate::ctl::parse::{
    json_or_string, parse_condition, parse_header, parse_query, parse_rate, parse_schedule, parse_secs,
    parse_status_ranges, read_text,
};
use crate::ctl::{print_deleted, read_document, update_base, Ctx};
use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};
use hookmesh_client::Answer;
use hookmesh_proto::convert;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Add a new signing secret (and/or v1a key); the old one keeps signing for the grace
    /// period.
    RotateSecret {
        id: String,
        /// Rotate only this scheme: v1 (the whsec_ secret) or v1a (the ed25519 key); default
        /// every scheme the webhook signs with.
        #[arg(long)]
        scheme: Option<String>,
        /// How long the old secret stays valid (seconds or 30m/24h/2d; default 24 h).
        #[arg(long, value_parser = parse_secs)]
        grace_secs: Option<u64>,
    },
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
    Expression,
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
    Captures,
    ContextDefaults,
    /// wait_for and max_wait (post-call enrichment).
    WaitFor,
    /// The webhook's own log retention (back to the deployment's).
    RetentionDays,
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
    /// A CEL expression that must hold as well, e.g.
    /// 'call.duration > 30 && campaign.name.startsWith("Sales")' (see the README's
    /// "Expression filters" for the variables).
    #[arg(long = "expression", value_name = "CEL")]
    pub expression: Option<String>,
    /// Signature schemes (comma-separated): v1 (HMAC, whsec_ secret; the default), v1a
    /// (ed25519; receivers verify with the public key shown), or v1,v1a for both.
    #[arg(long = "signature", value_name = "SCHEMES", value_delimiter = ',')]
    pub signature_schemes: Vec<String>,
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
    /// Days the delivery log keeps this webhook's deliveries (1..3650; default: the
    /// deployment's retention, which also caps it).
    #[arg(long = "retention-days", value_name = "DAYS")]
    pub retention_days: Option<u32>,
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
    /// Capture a value of the receiver's JSON answer into the call's context, for later
    /// deliveries of the same call (`{{ context.NAME }}`): `NAME=$.json.path` (`lead_id=$.data.id`).
    /// Repeatable; replaces the list.
    #[arg(long = "capture", value_name = "NAME=PATH")]
    pub captures: Vec<String>,
    /// How long a request that uses `{{ context.* }}` waits for the values (`30s`, `5m`; default
    /// 30s, at most 1h).
    #[arg(long = "context-wait", value_name = "DURATION", value_parser = parse_millis)]
    pub context_wait_ms: Option<u64>,
    /// The value used when NAME was not captured within the wait (else the delivery fails):
    /// `NAME=VALUE`. Repeatable; replaces the list.
    #[arg(long = "context-default", value_name = "NAME=VALUE")]
    pub context_defaults: Vec<String>,
    /// Post-call enrichment: hold each delivery until later events of its call bring these
    /// data points (`recording_url,transcript`), merged into the event's data when it renders.
    /// Repeatable or comma-separated; replaces the list (`--clear wait-for` empties it).
    #[arg(long = "wait-for", value_name = "DATA_POINT", value_delimiter = ',')]
    pub wait_for: Vec<String>,
    /// How long a delivery is held for `--wait-for` before it is sent with what arrived
    /// (`20m`, the default; at most 6h).
    #[arg(long = "max-wait", value_name = "DURATION", value_parser = parse_millis)]
    pub max_wait_ms: Option<u64>,
}

/// clap value parser: a duration (`30s`, `1500ms`, `2m`) in milliseconds.
fn parse_millis(s: &str) -> Result<u64, String> {
    let t = s.trim().to_lowercase();
    let d = humantime::parse_duration(&t).map_err(|e| format!("`{s}` is not a duration (e.g. 30s, 2m): {e}"))?;
    u64::try_from(d.as_millis()).map_err(|_| format!("`{s}` is too long"))
}

/// `NAME=VALUE` of `flag`.
fn name_value(flag: &str, s: &str) -> Result<(String, String)> {
    let (name, value) = s.split_once('=').ok_or_else(|| anyhow!("{flag} `{s}`: expected 'name=value'"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!("{flag} `{s}`: the name is empty");
    }
    Ok((name.to_string(), value.to_string()))
}

fn webhook_from_file(path: &Path) -> Result<v1::Webhook> {
    let w: hookmesh_core::webhook::Webhook = read_document(path, "webhook", &["secrets"])?;
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
            ClearField::Expression => t.expression.clear(),
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
            ClearField::Captures => w.captures.clear(),
            ClearField::ContextDefaults => w.context_defaults.clear(),
            ClearField::RetentionDays => p.retention_days = None,
            ClearField::WaitFor => {
                w.wait_for.clear();
                w.max_wait_ms = 0;
            }
        }
    }
    if !f.captures.is_empty() {
        w.captures = f
            .captures
            .iter()
            .map(|c| name_value("--capture", c).map(|(name, path)| v1::Capture { name, path: path.trim().to_string() }))
            .collect::<Result<_>>()?;
    }
    if let Some(ms) = f.context_wait_ms {
        w.context_wait_ms = ms;
    }
    if !f.wait_for.is_empty() {
        w.wait_for = f.wait_for.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    }
    if let Some(ms) = f.max_wait_ms {
        w.max_wait_ms = ms;
    }
    if !f.context_defaults.is_empty() {
        w.context_defaults = f
            .context_defaults
            .iter()
            .map(|c| name_value("--context-default", c).map(|(name, value)| v1::KeyValue { name, value }))
            .collect::<Result<_>>()?;
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
    if let Some(e) = &f.expression {
        t.expression = e.trim().to_string();
    }
    replace(&mut w.signature_schemes, &f.signature_schemes);

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
    if f.retention_days.is_some() {
        p.retention_days = f.retention_days;
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
    v["public_keys"] = Value::Array(
        w.public_keys
            .iter()
            .map(|k| json!({"key": k.key, "created_at": k.created_at, "expires_at": opt_str(&k.expires_at)}))
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
    if !t.expression.is_empty() {
        rows.push(("expression", t.expression.clone()));
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
    rows.push(("log retention", p.retention_days.map(|d| format!("{d} days")).unwrap_or_default()));
    rows.push(("ordering", if p.ordering.is_empty() { "none".into() } else { p.ordering.clone() }));
    rows.push(("non-retryable", p.non_retryable_statuses.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")));
    for c in &w.captures {
        rows.push(("capture", format!("{} = {}", c.name, c.path)));
    }
    if w.context_wait_ms > 0 || !w.context_defaults.is_empty() {
        rows.push(("context wait", format!("{} ms", if w.context_wait_ms == 0 { 30_000 } else { w.context_wait_ms })));
    }
    for d in &w.context_defaults {
        rows.push(("context default", format!("{} = {}", d.name, d.value)));
    }
    if !w.wait_for.is_empty() {
        let max_wait = if w.max_wait_ms == 0 { 20 * 60 * 1000 } else { w.max_wait_ms };
        let max_wait = humantime::format_duration(Duration::from_millis(max_wait)).to_string();
        rows.push(("wait for", format!("{} (at most {max_wait})", w.wait_for.join(", "))));
    }
    rows.push((
        "signature",
        if w.signature_schemes.is_empty() { "v1".to_string() } else { w.signature_schemes.join(", ") },
    ));
    for sec in &w.secrets {
        let mut line = format!("{} created {}", sec.prefix, sec.created_at);
        if !sec.expires_at.is_empty() {
            line.push_str(&format!(", expires {}", sec.expires_at));
        }
        rows.push(("secret", line));
    }
    for k in &w.public_keys {
        let mut line = format!("{} created {}", k.key, k.created_at);
        if !k.expires_at.is_empty() {
            line.push_str(&format!(", expires {}", k.expires_at));
        }
        rows.push(("public key", line));
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

fn print_webhook_with_secret(ctx: &Ctx, w: Option<v1::Webhook>, secret: &str, public_key: &str) -> Result<()> {
    let w = w.unwrap_or_default();
    if ctx.json {
        out_json(&json!({"webhook": webhook_json(&w)?, "secret": opt_str(secret), "public_key": opt_str(public_key)}));
    } else {
        out(&describe_webhook(&w));
        if !secret.is_empty() {
            out(&format!("signing secret (shown once): {secret}"));
        }
        if !public_key.is_empty() {
            out(&format!("v1a public key (for receivers): {public_key}"));
        }
    }
    Ok(())
}

pub(super) async fn run(ctx: &Ctx, cmd: WebhookCmd) -> Result<()> {
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
            print_webhook_with_secret(ctx, resp.webhook, &resp.secret, &resp.public_key)
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
            let current = ctx.webhooks().get_webhook(v1::GetWebhookRequest { id: id.clone() }).await.answer(ctx)?;
            let ids = (id.as_str(), flags.set_id.as_deref());
            let mut w = update_base("webhook", ids, &current, flags.file.as_deref(), webhook_from_file)?;
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
            print_deleted(ctx, "webhook", &id);
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
        WebhookCmd::RotateSecret { id, grace_secs, scheme } => {
            let resp = ctx
                .webhooks()
                .rotate_secret(v1::RotateSecretRequest { id, grace_secs, scheme: scheme.unwrap_or_default() })
                .await
                .answer(ctx)?;
            print_webhook_with_secret(ctx, resp.webhook, &resp.secret, &resp.public_key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::tests::Cli;
    use crate::ctl::{CtlCommand, Output};
    use clap::Parser;

    fn create_flags(args: &[&str]) -> WebhookFlags {
        let mut argv = vec!["ctl", "webhook", "create"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        let CtlCommand::Webhook(WebhookCmd::Create(flags)) = cli.args.command else { panic!() };
        *flags
    }

    #[test]
    fn call_context_flags_build_the_webhook_context() {
        let flags = create_flags(&[
            "--capture",
            "lead_id=$.data.id",
            "--capture",
            "owner = $.data.owner",
            "--context-wait",
            "1m30s",
            "--context-default",
            "lead_id=unknown=yes",
        ]);
        let mut w = v1::Webhook { tenant_id: "acme".into(), name: "n".into(), ..Default::default() };
        w.request = Some(v1::Request { url: "https://crm.example.com/x".into(), ..Default::default() });
        apply_webhook_flags(&mut w, &flags).unwrap();
        let d = convert::webhook_from_proto(w.clone(), Utc::now()).unwrap();
        assert_eq!(d.context.captures[1].name, "owner");
        assert_eq!(d.context.captures[1].path, "$.data.owner");
        assert_eq!(d.context.wait_ms, Some(90_000));
        assert_eq!(d.context.defaults[0].value, "unknown=yes", "the value keeps its own `=`");
        // --clear empties a list before the flags apply.
        let mut cleared = w.clone();
        apply_webhook_flags(&mut cleared, &create_flags(&["--clear", "captures", "--clear", "context-defaults"]))
            .unwrap();
        assert!(cleared.captures.is_empty() && cleared.context_defaults.is_empty());
        assert_eq!(cleared.context_wait_ms, 90_000);
        // Flag syntax errors name the flag.
        let err = apply_webhook_flags(&mut w, &create_flags(&["--capture", "$.data.id"])).unwrap_err();
        assert_eq!(err.to_string(), "--capture `$.data.id`: expected 'name=value'");
        let err = Cli::try_parse_from(["ctl", "webhook", "create", "--context-wait", "soon"]).err().unwrap();
        assert!(err.to_string().contains("`soon` is not a duration"), "{err}");
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
            "--expression",
            "call.duration > 30 && campaign.name.startsWith(\"Sales\")",
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
        assert_eq!(d.trigger.expression.as_deref(), Some("call.duration > 30 && campaign.name.startsWith(\"Sales\")"));
    }
}
