//! The token catalog, dead letters (input ingest refused; operators see every tenant's), and
//! the static files.

use super::view;
use crate::web::{Call, Page, PageResult};
use axum::http::header;
use axum::response::IntoResponse;
use hookmesh_proto::v1;
use minijinja::context;

pub async fn tokens(page: Page) -> PageResult {
    let r = page.api.templates().list_tokens(v1::ListTokensRequest {}).await.page(&page.api)?;
    Ok(page.render("tokens.html", context! { categories => view::token_categories(&r.categories), nav => "tokens" }))
}

pub async fn dead_letters(page: Page) -> PageResult {
    let r = page
        .api
        .ingest()
        .list_dead_letters(v1::ListDeadLettersRequest { limit: 100, tenant_id: String::new() })
        .await
        .page(&page.api)?;
    let entries: Vec<_> = r
        .entries
        .iter()
        .rev()
        .map(|e| {
            serde_json::json!({
                "received_at": view::short_time(&e.received_at), "source": e.source, "field": e.field, "reason": e.reason,
                "tenant_id": e.tenant_id, "original": String::from_utf8_lossy(&e.original[..e.original.len().min(4096)]),
                "offset": format!("{}/{}", e.partition, e.offset),
            })
        })
        .collect();
    Ok(page.render("dead_letters.html", context! { entries => entries, nav => "dead_letters" }))
}

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        include_str!("../../static/console.js"),
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")],
        include_str!("../../static/console.css"),
    )
}
