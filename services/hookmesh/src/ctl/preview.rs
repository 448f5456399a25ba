//! `ctl preview`: a webhook or a template rendered on the sample (or a given) event, without
//! sending it; and the request text and JSON that `delivery get` and `test-send` print too.

use crate::ctl::output::{kvs_json, out, out_json};
use crate::ctl::parse::read_text;
use crate::ctl::Ctx;
use anyhow::{anyhow, bail, Result};
use clap::Args;
use hookmesh_client::Answer;
use hookmesh_proto::convert;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

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

/// An event file in the documented JSON schema, as the wire event.
pub(super) fn event_from_file(path: &Path) -> Result<v1::Event> {
    let text = read_text(path)?;
    let event = hookmesh_core::event::parse_event(text.trim().as_bytes())
        .map_err(|e| anyhow!("event file {}: {e}", path.display()))?;
    Ok(convert::event_to_proto(&event))
}

pub(super) fn rendered_json(r: &v1::RenderedRequest) -> Value {
    json!({"method": r.method, "url": r.url, "headers": kvs_json(&r.headers), "body": r.body})
}

/// `METHOD URL`, the headers, a blank line and the body.
pub(super) fn rendered_text(r: &v1::RenderedRequest) -> String {
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

pub(super) async fn run(ctx: &Ctx, a: PreviewArgs) -> Result<()> {
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
