//! `ctl tokens`: the token catalog templates draw from, one table per category.

use crate::ctl::output::{out, out_json, table};
use crate::ctl::parse::json_or_string;
use crate::ctl::Ctx;
use anyhow::{bail, Result};
use hookmesh_client::Answer;
use hookmesh_proto::v1;
use serde_json::{json, Value};

pub(super) async fn run(ctx: &Ctx, category: Option<String>) -> Result<()> {
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
