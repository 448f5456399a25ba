//! `ctl publish`: events from a file (a JSON array, one object, or JSON lines) through
//! `IngestService.Publish`, in batches of at most 500 events or 2 MiB. It exits 0 even when
//! some events were rejected: the per-event results and the summary say which.

use crate::ctl::output::{opt_str, or_dash, out, out_json, table};
use crate::ctl::parse::read_text;
use crate::ctl::Ctx;
use anyhow::{bail, Context, Result};
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::Path;

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

pub(super) async fn run(ctx: &Ctx, file: &Path) -> Result<()> {
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

    #[test]
    fn event_files_split() {
        assert_eq!(split_events(r#"[{"id":"a"}, {"id":"b"}]"#).unwrap(), [r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        assert_eq!(split_events("{\"id\":\"a\"}\n\n{\"id\":\"b\"}\nnot json\n").unwrap().len(), 3);
        assert_eq!(split_events("{\n  \"id\": \"a\"\n}\n").unwrap(), [r#"{"id":"a"}"#]);
        assert!(split_events("  \n").is_err());
        assert!(split_events("[1,").is_err());
    }
}
