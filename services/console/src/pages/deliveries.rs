//! The delivery log (per webhook and per tenant): filters by status, event type, call id and
//! time range, newest first, paged by cursor; one delivery's details with every attempt;
//! Resend; Recover since a time.

use super::view;
use crate::forms::FormData;
use crate::web::{render, Call, Page, PageResult, WebError};
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::Extension;
use hookmesh_proto::v1;
use minijinja::context;

/// Deliveries per page unless `?limit=` says (1 to 200).
const PAGE_SIZE: u32 = 25;

pub async fn list(page: Page, uri: Uri) -> PageResult {
    let q = view::query(&uri);
    let mut errors = Vec::new();
    let since = view::time_input("since", &q.text("since")).unwrap_or_else(|e| {
        errors.push(e);
        String::new()
    });
    let until = view::time_input("until", &q.text("until")).unwrap_or_else(|e| {
        errors.push(e);
        String::new()
    });
    let tenant = if page.session.is_operator() { q.text("tenant") } else { String::new() };
    let limit = q.text("limit").parse::<u32>().ok().filter(|n| (1..=200).contains(n));
    let req = v1::ListDeliveriesRequest {
        tenant_id: tenant.clone(),
        webhook_id: q.text("webhook_id"),
        status: q.text("status"),
        event_type: q.text("event_type"),
        call_id: q.text("call_id"),
        since,
        until,
        limit: limit.unwrap_or(PAGE_SIZE),
        before: q.text("before"),
        ..Default::default()
    };
    let resp = page.api.deliveries().list_deliveries(req).await.page(&page.api)?;
    let rows: Vec<_> = resp.deliveries.iter().map(view::delivery).collect();
    let filters = [
        ("webhook_id", q.text("webhook_id")),
        ("tenant", tenant.clone()),
        ("status", q.text("status")),
        ("event_type", q.text("event_type")),
        ("call_id", q.text("call_id")),
        ("since", q.text("since")),
        ("until", q.text("until")),
        ("limit", limit.map(|n| n.to_string()).unwrap_or_default()),
    ];
    let pairs: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let base = view::query_string(&pairs);
    let mut next_pairs = pairs.clone();
    next_pairs.push(("before", &resp.next));
    let next = if resp.next.is_empty() { String::new() } else { view::query_string(&next_pairs) };
    let ctx = context! {
        deliveries => rows, next => next, base => base, errors => errors, nav => "deliveries",
        q => context! {
            webhook_id => q.text("webhook_id"), tenant => tenant, status => q.text("status"), event_type => q.text("event_type"),
            call_id => q.text("call_id"), since => q.text("since"), until => q.text("until"), before => q.text("before"), limit => limit,
        },
    };
    // The vendored helper asks for the rows alone to refresh them in place.
    if q.text("partial") == "rows" {
        return Ok(render("delivery_rows.html", ctx));
    }
    Ok(page.render("deliveries.html", ctx))
}

pub async fn show(page: Page, Path(id): Path<String>) -> PageResult {
    let r = page.api.deliveries().get_delivery(v1::GetDeliveryRequest { id }).await.page(&page.api)?;
    let d =
        r.delivery.as_ref().ok_or_else(|| WebError::new(StatusCode::BAD_GATEWAY, "the API answered no delivery"))?;
    let mut attempts: Vec<_> = r.attempts.iter().map(view::attempt).collect();
    attempts.reverse();
    Ok(page.render(
        "delivery.html",
        context! {
            d => view::delivery(d), request => r.request.as_ref().map(view::rendered), attempts => attempts,
            can_resend => d.status == "retrying" || d.status == "error", nav => "deliveries",
        },
    ))
}

pub async fn resend(page: Page, Path(id): Path<String>) -> PageResult {
    let r = page.api.deliveries().resend(v1::ResendRequest { id: id.clone() }).await.page(&page.api)?;
    let status = r.delivery.as_ref().map(|d| d.status.clone()).unwrap_or_default();
    let answer = match r.attempt.as_ref() {
        Some(a) if a.response_status > 0 => format!("the receiver answered {}", a.response_status),
        Some(a) => format!("no answer: {} {}", a.error_class, a.error),
        None => "no attempt made".to_string(),
    };
    let kind = if status == "success" { "ok" } else { "error" };
    Ok(page.redirect_with(
        &format!("/deliveries/{}", super::view::seg(&id)),
        kind,
        format!("Resent: {answer}; the delivery is now {status}"),
    ))
}

pub async fn recover(page: Page, Path(id): Path<String>, Extension(form): Extension<FormData>) -> PageResult {
    let since = match view::time_input("since", &form.text("since")) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            return Ok(page.redirect_with(
                &format!("/webhooks/{}", super::view::seg(&id)),
                "error",
                "since: choose the time to recover from",
            ))
        }
        Err(e) => return Ok(page.redirect_with(&format!("/webhooks/{}", super::view::seg(&id)), "error", e)),
    };
    let r =
        page.api.deliveries().recover(v1::RecoverRequest { webhook_id: id.clone(), since }).await.page(&page.api)?;
    let kind = if r.failed == 0 { "ok" } else { "error" };
    Ok(page.redirect_with(
        &format!("/webhooks/{}", super::view::seg(&id)),
        kind,
        format!("Recover: {} failed deliveries found, {} succeeded, {} failed again", r.found, r.succeeded, r.failed),
    ))
}
