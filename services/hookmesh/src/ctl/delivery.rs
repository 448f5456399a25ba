//! `ctl delivery` (list, get, resend, test-send, recover) and `ctl health`: the delivery log,
//! sending again, and how a webhook's endpoint is doing.

use crate::ctl::output::{describe, kvs_json, opt_str, or_dash, out, out_json, status_or_dash, table};
use crate::ctl::parse::parse_since;
use crate::ctl::preview::{event_from_file, rendered_json, rendered_text};
use crate::ctl::Ctx;
use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::PathBuf;

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
        "context": d.context.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "held_for": d.held_for,
        "hold_fired": opt_str(&d.hold_fired),
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
        "context_note": opt_str(&a.context_note),
    })
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
        ("context", {
            let used: std::collections::BTreeMap<_, _> = d.context.iter().collect();
            used.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        }),
        ("held for", d.held_for.join(", ")),
        (
            "released",
            match (d.held_for.is_empty(), d.hold_fired.is_empty()) {
                (false, true) => "not yet: waiting for the data points".to_string(),
                _ => d.hold_fired.clone(),
            },
        ),
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
    if !a.context_note.is_empty() {
        text.push_str(&format!("{}\n", a.context_note));
    }
    text
}

pub(super) async fn run(ctx: &Ctx, cmd: DeliveryCmd) -> Result<()> {
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

#[derive(Subcommand, Debug)]
pub enum CallCmd {
    /// The values webhooks captured into a call's context (name, value).
    Context {
        call_id: String,
        /// The call's tenant (implied by a tenant token).
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub(super) async fn call(ctx: &Ctx, cmd: CallCmd) -> Result<()> {
    let CallCmd::Context { call_id, tenant } = cmd;
    let r = ctx
        .deliveries()
        .get_call_context(v1::GetCallContextRequest { tenant_id: tenant.unwrap_or_default(), call_id })
        .await
        .answer(ctx)?;
    let values: std::collections::BTreeMap<_, _> = r.values.into_iter().collect();
    if ctx.json {
        out_json(&json!(values));
    } else {
        let rows: Vec<Vec<String>> = values.into_iter().map(|(k, v)| vec![k, v]).collect();
        out(&table(&["NAME", "VALUE"], &rows));
    }
    Ok(())
}

pub(super) async fn health(ctx: &Ctx, webhook_id: String) -> Result<()> {
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
