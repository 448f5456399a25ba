//! A tenant's settings: masking of personal data in the stored delivery log (the receiver still
//! gets the real values; the exact request stays sealed for retries). A tenant session edits
//! its own; an operator names the tenant.

use super::view;
use crate::forms::{FieldErrors, FormData};
use crate::web::{Call, Page, PageResult};
use axum::http::{StatusCode, Uri};
use axum::Extension;
use hookmesh_proto::v1;
use minijinja::context;

fn render(page: &Page, tenant: &str, s: Option<&v1::TenantSettings>, errors: FieldErrors) -> PageResult {
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let mut resp = page.render(
        "settings.html",
        context! {
            nav => "settings", tenant => tenant, errors => errors.0,
            s => s.map(|s| context! {
                tenant_id => &s.tenant_id, mask_personal_data => s.mask_personal_data, mask_fields => s.mask_fields.join(", "),
                personal_tokens => s.personal_tokens.join(", "), version => s.version, updated_at => view::short_time(&s.updated_at),
            }),
        },
    );
    *resp.status_mut() = status;
    Ok(resp)
}

pub async fn show(page: Page, uri: Uri) -> PageResult {
    let tenant = if page.session.is_operator() { view::query(&uri).text("tenant") } else { String::new() };
    if page.session.is_operator() && tenant.is_empty() {
        return render(&page, "", None, FieldErrors::default());
    }
    let s = page
        .api
        .tenants()
        .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: tenant.clone() })
        .await
        .page(&page.api)?;
    render(&page, &s.tenant_id.clone(), Some(&s), FieldErrors::default())
}

pub async fn save(page: Page, Extension(form): Extension<FormData>) -> PageResult {
    let tenant = if page.session.is_operator() { form.text("tenant_id") } else { String::new() };
    let settings = v1::TenantSettings {
        tenant_id: tenant.clone(),
        mask_personal_data: form.get("mask_personal_data").is_some(),
        mask_fields: form
            .text("mask_fields")
            .split([',', '\n'])
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect(),
        ..Default::default()
    };
    let expected_version = form.text("version").parse().unwrap_or(0);
    match page
        .api
        .tenants()
        .update_tenant_settings(v1::UpdateTenantSettingsRequest { settings: Some(settings.clone()), expected_version })
        .await
    {
        Ok(s) => {
            let s = s.into_inner();
            let to = if page.session.is_operator() {
                format!("/settings?tenant={}", view::seg(&s.tenant_id))
            } else {
                "/settings".to_string()
            };
            Ok(page.redirect_with(&to, "ok", "Settings saved"))
        }
        Err(e) if matches!(e.code(), tonic::Code::InvalidArgument | tonic::Code::Aborted) => {
            let errors =
                FieldErrors::from_api(e.message().trim_start_matches("settings."), &["tenant_id", "mask_fields"], "");
            render(&page, &tenant, Some(&settings), errors)
        }
        Err(e) => Err(hookmesh_client::Error::from_status(page.api.addr(), &e).into()),
    }
}
