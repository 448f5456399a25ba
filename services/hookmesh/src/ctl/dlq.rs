//! `ctl dlq`: the input ingest could not accept, newest first.

use crate::ctl::output::{opt_str, or_dash, out, out_json, table};
use crate::ctl::Ctx;
use anyhow::Result;
use clap::Subcommand;
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::{json, Value};

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

/// The first `n` characters of the original bytes, readable on one line.
fn preview_bytes(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    let mut p: String = s.chars().take(n).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > n {
        p.push('…');
    }
    p
}

pub(super) async fn run(ctx: &Ctx, cmd: DlqCmd) -> Result<()> {
    let DlqCmd::List { limit, tenant } = cmd;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originals_are_shown_on_one_line() {
        assert_eq!(preview_bytes(b"ab\ncd", 3), "ab …");
    }
}
