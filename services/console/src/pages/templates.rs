//! Body templates: the list, create (from an example with token drop-downs, pairs or a text
//! template) and edit.

use super::view;
use crate::forms::{self, FieldErrors, FieldRow, FormData, TEMPLATE_FIELDS};
use crate::web::{Call, Page, PageResult};
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::Extension;
use hookmesh_proto::v1;
use minijinja::context;
use std::collections::BTreeMap;
use tonic::Code;

pub async fn list(page: Page, uri: Uri) -> PageResult {
    let q = view::query(&uri);
    let tenant = if page.session.is_operator() { q.text("tenant") } else { String::new() };
    let r = page
        .api
        .templates()
        .list_templates(v1::ListTemplatesRequest { tenant_id: tenant.clone(), group: q.text("group") })
        .await
        .page(&page.api)?;
    Ok(page.render(
        "templates.html",
        context! { templates => r.templates.iter().map(view::template).collect::<Vec<_>>(), tenant => tenant, nav => "templates" },
    ))
}

async fn render_form(
    page: &Page,
    id: Option<&str>,
    values: BTreeMap<String, String>,
    rows: Vec<FieldRow>,
    errors: FieldErrors,
    notice: Option<String>,
) -> PageResult {
    let tokens = page.api.templates().list_tokens(v1::ListTokensRequest {}).await.page(&page.api)?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let mut resp = page.render(
        "template_form.html",
        context! {
            id => id, f => values, rows => rows, errors => errors.0, notice => notice, nav => "templates",
            tokens => view::token_categories(&tokens.categories),
            action => match id { Some(id) => format!("/templates/{}/edit", super::view::seg(id)), None => "/templates/new".to_string() },
        },
    );
    *resp.status_mut() = status;
    Ok(resp)
}

pub async fn new_form(page: Page) -> PageResult {
    let mut values = BTreeMap::new();
    values.insert("body.mode".to_string(), "fields".to_string());
    values.insert("group".to_string(), "default".to_string());
    render_form(&page, None, values, Vec::new(), FieldErrors::default(), None).await
}

pub async fn edit_form(page: Page, Path(id): Path<String>) -> PageResult {
    let t = page.api.templates().get_template(v1::GetTemplateRequest { id: id.clone() }).await.page(&page.api)?;
    let mut values = BTreeMap::new();
    for (k, v) in [
        ("tenant_id", &t.tenant_id),
        ("name", &t.name),
        ("group", &t.group),
        ("description", &t.description),
        ("content_type", &t.content_type),
    ] {
        values.insert(k.to_string(), v.clone());
    }
    values.insert("version".into(), t.version.to_string());
    let rows = forms::body_to_form(&t.body, &mut values);
    render_form(&page, Some(&id), values, rows, FieldErrors::default(), None).await
}

async fn post_form(page: Page, id: Option<String>, form: FormData) -> PageResult {
    let values = forms::refill(&form);
    let mut rows = forms::posted_rows(&form);
    let mut errors = FieldErrors::default();
    if form.text("action") == "extract" {
        let req = v1::ExtractFieldsRequest {
            format: form.text("body.format"),
            example: form.get("body.example").unwrap_or("").to_string(),
        };
        match page.api.templates().extract_fields(req).await {
            Ok(r) => {
                let old: BTreeMap<String, FieldRow> = rows.drain(..).map(|r| (r.path.clone(), r)).collect();
                rows = forms::field_rows(&r.into_inner().fields)
                    .into_iter()
                    .map(|r| old.get(&r.path).cloned().unwrap_or(r))
                    .collect();
                let n = rows.len();
                return render_form(&page, id.as_deref(), values, rows, errors, Some(format!("{n} fields extracted")))
                    .await;
            }
            Err(s) if s.code() == Code::InvalidArgument => {
                errors = FieldErrors::from_api(&format!("body.{}", s.message()), TEMPLATE_FIELDS, "");
                return render_form(&page, id.as_deref(), values, rows, errors, None).await;
            }
            Err(s) => return Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
        }
    }
    let body = forms::body_from_form(&form, "body", &mut errors);
    if !errors.is_empty() {
        return render_form(&page, id.as_deref(), values, rows, errors, None).await;
    }
    let t = v1::Template {
        id: id.clone().unwrap_or_default(),
        tenant_id: form.text("tenant_id"),
        name: form.text("name"),
        group: form.text("group"),
        description: form.text("description"),
        content_type: form.text("content_type"),
        body,
        version: 0,
        created_at: String::new(),
        updated_at: String::new(),
    };
    let expected_version = form.text("version").parse().unwrap_or(0);
    let result = match &id {
        None => page.api.templates().create_template(v1::CreateTemplateRequest { template: Some(t) }).await,
        Some(_) => {
            page.api
                .templates()
                .update_template(v1::UpdateTemplateRequest { template: Some(t), expected_version })
                .await
        }
    };
    match result {
        Ok(_) => Ok(page.redirect_with("/templates", "ok", "Template saved")),
        Err(s)
            if matches!(
                s.code(),
                Code::InvalidArgument | Code::AlreadyExists | Code::Aborted | Code::PermissionDenied
            ) =>
        {
            errors = FieldErrors::from_api(s.message(), TEMPLATE_FIELDS, "template.");
            render_form(&page, id.as_deref(), values, rows, errors, None).await
        }
        Err(s) => Err(hookmesh_client::Error::from_status(page.api.addr(), &s).into()),
    }
}

pub async fn new_post(page: Page, Extension(form): Extension<FormData>) -> PageResult {
    post_form(page, None, form).await
}

pub async fn edit_post(page: Page, Path(id): Path<String>, Extension(form): Extension<FormData>) -> PageResult {
    post_form(page, Some(id), form).await
}
