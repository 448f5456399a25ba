//! Webhooks: the list (with last status and 24 h success rate), one webhook with its endpoint
//! health and chart, the create/edit form (every API field, a body from a template, pairs, a
//! text template or "from an example" with a token drop-down per extracted field), preview,
//! test request, enable/disable, delete with confirmation, and secret rotation (shown once).

use super::view;
use crate::forms::{self, FieldErrors, FieldRow, FormData, WEBHOOK_FIELDS};
use crate::web::{Call, Page, PageResult};
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use axum::Extension;
use futures::future::join_all;
use hookmesh_proto::v1;
use minijinja::context;
use serde_json::json;
use std::collections::BTreeMap;
use tonic::Code;

pub async fn list(page: Page, uri: Uri) -> PageResult {
    let q = view::query(&uri);
    let tenant = if page.session.is_operator() { q.text("tenant") } else { String::new() };
    let resp = page
        .api
        .webhooks()
        .list_webhooks(v1::ListWebhooksRequest { tenant_id: tenant.clone(), limit: 100, after: q.text("after") })
        .await
        .page(&page.api)?;
    let healths =
        join_all(
            resp.webhooks.iter().map(|w| {
                let mut c = page.api.deliveries();
                let id = w.id.clone();
                async move {
                    c.endpoint_health(v1::EndpointHealthRequest { webhook_id: id }).await.ok().map(|r| r.into_inner())
                }
            }),
        )
        .await;
    let rows: Vec<_> = resp
        .webhooks
        .iter()
        .zip(healths)
        .map(|(w, h)| {
            let day = h.as_ref().and_then(|h| h.windows.iter().find(|x| x.window == "24h").cloned());
            json!({
                "w": view::webhook(w),
                "last_status": h.as_ref().map(|h| h.last_status).unwrap_or(0),
                "circuit": h.as_ref().map(|h| h.circuit.clone()).unwrap_or_default(),
                "rate": day.filter(|d| d.attempts > 0).map(|d| format!("{:.0} %", d.success_rate * 100.0)),
            })
        })
        .collect();
    Ok(page
        .render("webhooks.html", context! { webhooks => rows, tenant => tenant, next => resp.next, nav => "webhooks" }))
}

pub async fn show(page: Page, Path(id): Path<String>) -> PageResult {
    let w = page.api.webhooks().get_webhook(v1::GetWebhookRequest { id: id.clone() }).await.page(&page.api)?;
    let health = page
        .api
        .deliveries()
        .endpoint_health(v1::EndpointHealthRequest { webhook_id: id.clone() })
        .await
        .page(&page.api)?;
    let since = (chrono::Utc::now() - chrono::Duration::hours(24)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let day = page
        .api
        .deliveries()
        .list_deliveries(v1::ListDeliveriesRequest { webhook_id: id.clone(), since, limit: 1000, ..Default::default() })
        .await
        .page(&page.api)?;
    let recent: Vec<_> = day.deliveries.iter().take(10).map(view::delivery).collect();
    Ok(page.render(
        "webhook.html",
        context! {
            w => view::webhook(&w), health => view::health(&health), chart => view::chart(&day.deliveries),
            recent => recent, nav => "webhooks",
            recover_since => (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string(),
        },
    ))
}

/// What the form shows besides its values.
#[derive(Default)]
struct FormView {
    values: BTreeMap<String, String>,
    directions: Vec<String>,
    rows: Vec<FieldRow>,
    errors: FieldErrors,
    preview: Option<serde_json::Value>,
    notice: Option<String>,
}

async fn render_form(page: &Page, id: Option<&str>, v: FormView) -> PageResult {
    let tokens = page.api.templates().list_tokens(v1::ListTokensRequest {}).await.page(&page.api)?;
    let tenant = v.values.get("tenant_id").cloned().unwrap_or_default();
    let templates = page
        .api
        .templates()
        .list_templates(v1::ListTemplatesRequest {
            tenant_id: if page.session.is_operator() { tenant } else { String::new() },
            group: String::new(),
        })
        .await
        .map(|r| r.into_inner().templates)
        .unwrap_or_default();
    let status = if v.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let mut resp = page.render(
        "webhook_form.html",
        context! {
            id => id, f => v.values, directions => v.directions, rows => v.rows, errors => v.errors.0,
            preview => v.preview, notice => v.notice, tokens => view::token_categories(&tokens.categories),
            templates => templates.iter().map(view::template).collect::<Vec<_>>(), nav => "webhooks",
            action => match id { Some(id) => format!("/webhooks/{}/edit", super::view::seg(id)), None => "/webhooks/new".to_string() },
        },
    );
    *resp.status_mut() = status;
    Ok(resp)
}

pub async fn new_form(page: Page, uri: Uri) -> PageResult {
    let q = view::query(&uri);
    let mut values = BTreeMap::new();
    values.insert("enabled".to_string(), "on".to_string());
    values.insert("request.method".to_string(), "POST".to_string());
    values
        .insert("body.mode".to_string(), if q.text("mode").is_empty() { "fields".to_string() } else { q.text("mode") });
    values.insert("tenant_id".to_string(), q.text("tenant"));
    render_form(&page, None, FormView { values, ..Default::default() }).await
}

pub async fn edit_form(page: Page, Path(id): Path<String>) -> PageResult {
    let w = page.api.webhooks().get_webhook(v1::GetWebhookRequest { id: id.clone() }).await.page(&page.api)?;
    let (values, directions, rows) = forms::webhook_to_form(&w);
    render_form(&page, Some(&id), FormView { values, directions, rows, ..Default::default() }).await
}

/// An API refusal that is about the form's content: shown at the field it names.
fn is_form_error(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::InvalidArgument
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::NotFound
            | Code::PermissionDenied
    )
}

/// Extract, preview or save, as the pressed button says.
async fn post_form(page: Page, id: Option<String>, form: FormData) -> PageResult {
    let action = form.text("action");
    let mut v = FormView {
        values: forms::refill(&form),
        directions: form.all("trigger.directions"),
        rows: forms::posted_rows(&form),
        ..Default::default()
    };
    if let Some(id) = &id {
        v.values.insert("id".into(), id.clone());
    }
    if action == "extract" {
        let req = v1::ExtractFieldsRequest {
            format: form.text("body.format"),
            example: form.get("body.example").unwrap_or("").to_string(),
        };
        match page.api.templates().extract_fields(req).await {
            Ok(r) => {
                // Keep what was already chosen for a path that is still there.
                let old: BTreeMap<String, FieldRow> = v.rows.drain(..).map(|r| (r.path.clone(), r)).collect();
                v.rows = forms::field_rows(&r.into_inner().fields)
                    .into_iter()
                    .map(|r| old.get(&r.path).cloned().unwrap_or(r))
                    .collect();
                v.values.insert("body.mode".into(), "fields".into());
                v.notice = Some(format!("{} fields extracted: choose a token or a constant for each", v.rows.len()));
            }
            Err(s) if is_form_error(&s) => {
                v.errors = FieldErrors::from_api(&format!("request.body.{}", s.message()), WEBHOOK_FIELDS, "")
            }
            Err(s) => return Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
        }
        return render_form(&page, id.as_deref(), v).await;
    }
    let mut wire = match forms::webhook_from_form(&form) {
        Ok(w) => w,
        Err(e) => {
            v.errors = e;
            return render_form(&page, id.as_deref(), v).await;
        }
    };
    if let Some(id) = &id {
        wire.id = id.clone();
    }
    if action == "preview" {
        let req = v1::PreviewRequest { target: Some(v1::preview_request::Target::Webhook(wire)), event: None };
        match page.api.render().preview(req).await {
            Ok(r) => v.preview = r.into_inner().request.as_ref().map(view::rendered),
            Err(s) if is_form_error(&s) => v.errors = FieldErrors::from_api(s.message(), WEBHOOK_FIELDS, ""),
            Err(s) => return Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
        }
        return render_form(&page, id.as_deref(), v).await;
    }
    match id {
        None => {
            let disabled = !wire.enabled;
            match page.api.webhooks().create_webhook(v1::CreateWebhookRequest { webhook: Some(wire), disabled }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let w = r.webhook.unwrap_or_default();
                    Ok(page.render(
                        "secret.html",
                        context! { w => view::webhook(&w), secret => r.secret, created => true, nav => "webhooks" },
                    ))
                }
                Err(s) if is_form_error(&s) => {
                    v.errors = FieldErrors::from_api(s.message(), WEBHOOK_FIELDS, "webhook.");
                    render_form(&page, None, v).await
                }
                Err(s) => Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
            }
        }
        Some(id) => {
            let expected_version = wire.version;
            match page
                .api
                .webhooks()
                .update_webhook(v1::UpdateWebhookRequest { webhook: Some(wire), expected_version })
                .await
            {
                Ok(_) => Ok(page.redirect_with(&format!("/webhooks/{}", super::view::seg(&id)), "ok", "Webhook saved")),
                Err(s) if is_form_error(&s) => {
                    v.errors = FieldErrors::from_api(s.message(), WEBHOOK_FIELDS, "webhook.");
                    render_form(&page, Some(&id), v).await
                }
                Err(s) => Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
            }
        }
    }
}

pub async fn new_post(page: Page, Extension(form): Extension<FormData>) -> PageResult {
    post_form(page, None, form).await
}

pub async fn edit_post(page: Page, Path(id): Path<String>, Extension(form): Extension<FormData>) -> PageResult {
    post_form(page, Some(id), form).await
}

pub async fn enable(page: Page, Path(id): Path<String>) -> PageResult {
    page.api.webhooks().enable_webhook(v1::SetEnabledRequest { id: id.clone() }).await.page(&page.api)?;
    Ok(page.redirect_with(&format!("/webhooks/{}", super::view::seg(&id)), "ok", "Webhook enabled"))
}

pub async fn disable(page: Page, Path(id): Path<String>) -> PageResult {
    page.api.webhooks().disable_webhook(v1::SetEnabledRequest { id: id.clone() }).await.page(&page.api)?;
    Ok(page.redirect_with(&format!("/webhooks/{}", super::view::seg(&id)), "ok", "Webhook disabled"))
}

/// The confirmation page of a delete (also what a browser without JavaScript gets).
pub async fn delete_confirm(page: Page, Path(id): Path<String>) -> PageResult {
    let w = page.api.webhooks().get_webhook(v1::GetWebhookRequest { id }).await.page(&page.api)?;
    Ok(page.render("confirm.html", context! { w => view::webhook(&w), nav => "webhooks" }))
}

pub async fn delete(page: Page, Path(id): Path<String>, Extension(form): Extension<FormData>) -> PageResult {
    if form.text("confirm") != "yes" {
        return Ok(Redirect::to(&format!("/webhooks/{}/delete", super::view::seg(&id))).into_response());
    }
    page.api
        .webhooks()
        .delete_webhook(v1::DeleteWebhookRequest { id: id.clone(), expected_version: 0 })
        .await
        .page(&page.api)?;
    Ok(page.redirect_with("/webhooks", "ok", format!("Webhook {id} deleted")))
}

pub async fn rotate(page: Page, Path(id): Path<String>) -> PageResult {
    let r = page
        .api
        .webhooks()
        .rotate_secret(v1::RotateSecretRequest { id, grace_secs: None, scheme: String::new() })
        .await
        .page(&page.api)?;
    let w = r.webhook.unwrap_or_default();
    Ok(page.render(
        "secret.html",
        context! { w => view::webhook(&w), secret => r.secret, created => false, nav => "webhooks" },
    ))
}

/// Renders the webhook on the sample event, sends it now and shows request and response.
pub async fn test_send(page: Page, Path(id): Path<String>) -> PageResult {
    let w = page.api.webhooks().get_webhook(v1::GetWebhookRequest { id: id.clone() }).await.page(&page.api)?;
    let r =
        page.api.deliveries().test_send(v1::TestSendRequest { webhook_id: id, event: None }).await.page(&page.api)?;
    Ok(page.render(
        "test_result.html",
        context! {
            w => view::webhook(&w), success => r.success,
            request => r.request.as_ref().map(view::rendered), attempt => r.attempt.as_ref().map(view::attempt),
            nav => "webhooks",
        },
    ))
}
