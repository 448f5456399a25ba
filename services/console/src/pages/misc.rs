//! The token catalog, dead letters (input ingest refused; operators see every tenant's), and
//! the static files.

use super::view;
use crate::forms::FormData;
use crate::web::{Call, Page, PageResult, WebError};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
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

/// Operators: a portal link for one tenant, as `hookmesh ctl portal-link` makes it.
pub async fn portal_link_form(page: Page) -> PageResult {
    if !page.session.is_operator() {
        return Err(WebError::new(StatusCode::FORBIDDEN, "portal links are issued by operators"));
    }
    Ok(page.render("portal_link.html", context! { nav => "portal", ttl => "1h" }))
}

pub async fn portal_link(page: Page, headers: HeaderMap, Extension(form): Extension<FormData>) -> PageResult {
    let tenant = form.text("tenant_id");
    let ttl_text = form.text("ttl");
    let ttl = match parse_ttl(&ttl_text) {
        Ok(t) => t,
        Err(e) => {
            let mut resp = page.render(
                "portal_link.html",
                context! { nav => "portal", tenant => tenant, ttl => ttl_text, error => e },
            );
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(resp);
        }
    };
    let req = v1::CreatePortalLinkRequest { tenant_id: tenant.clone(), ttl_secs: ttl };
    match page.api.tenants().create_portal_link(req).await {
        Ok(r) => {
            let r = r.into_inner();
            // The link as this operator reached the console.
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:7700");
            let scheme =
                if crate::session::secure(&headers, page.state.config.secure_cookies) { "https" } else { "http" };
            let url = format!("{scheme}://{host}/portal?token={}", r.token);
            Ok(page.render(
                "portal_link.html",
                context! { nav => "portal", tenant => tenant, ttl => ttl_text, url => url, expires_at => view::short_time(&r.expires_at) },
            ))
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument || s.code() == tonic::Code::PermissionDenied => {
            let mut resp = page.render(
                "portal_link.html",
                context! { nav => "portal", tenant => tenant, ttl => ttl_text, error => s.message() },
            );
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(s) => Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
    }
}

/// `90m`, `1h`, `7d` or seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("ttl: `{s}` is not a duration like 30m, 1h or 7d"))?;
    match unit.trim() {
        "" | "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        "d" => Ok(n * 86400),
        _ => Err(format!("ttl: `{s}` is not a duration like 30m, 1h or 7d")),
    }
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
