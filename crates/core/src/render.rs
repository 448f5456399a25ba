//! Turning a job into the exact HTTP request to send: URL with tokens, query parameters,
//! headers and body per content type and time zone. Webhooks are compiled once per registry
//! version and rendered per event; a render failure is an error value, never a panic.

use crate::delivery::{CallInfo, DeliveryJob, RenderedRequest};
use crate::error::ValidationError;
use crate::template::{CompiledTemplate, ContentType, Escape, InlineTemplate, RenderContext, MAX_RENDERED_BYTES};
use crate::webhook::{check_url, parse_time_zone, Template, Webhook};
use std::sync::Arc;

/// A webhook that renders with a registry template sends that template's content type, so the
/// two must agree: a webhook set to one content type and a template of another is refused
/// (on writes; the registry fills an unset webhook content type from its template).
pub fn check_template_content_type(w: &Webhook, t: &Template) -> Result<(), ValidationError> {
    if w.request.content_type == t.content_type {
        return Ok(());
    }
    Err(ValidationError::new(
        "request.content_type",
        format!(
            "`{}` disagrees with the content_type `{}` of template `{}` (request.template_id); leave \
             request.content_type empty to use the template's, or choose a template of content type `{}`",
            w.request.content_type, t.content_type, t.id, w.request.content_type
        ),
    ))
}

/// A webhook with its URL, query, headers and body template parsed.
pub struct CompiledWebhook {
    pub webhook: Arc<Webhook>,
    url: InlineTemplate,
    query: Vec<(String, InlineTemplate)>,
    headers: Vec<(String, InlineTemplate)>,
    content_type: ContentType,
    body: Option<CompiledTemplate>,
    tz: chrono_tz::Tz,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    #[error(transparent)]
    Template(#[from] crate::template::RenderError),
    #[error("rendered URL is invalid: {0}")]
    Url(String),
}

impl CompiledWebhook {
    /// Compiles `webhook`; `template` is the registry template its `template_id` names.
    pub fn compile(webhook: Arc<Webhook>, template: Option<&Template>) -> Result<Self, ValidationError> {
        let req = &webhook.request;
        let url = InlineTemplate::compile(&req.url, "request.url")?;
        let query = req
            .query
            .iter()
            .enumerate()
            .map(|(i, q)| {
                Ok((q.name.clone(), InlineTemplate::compile(&q.value, &format!("request.query[{i}].value"))?))
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        let headers = req
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Ok((h.name.clone(), InlineTemplate::compile(&h.value, &format!("request.headers[{i}].value"))?))
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        let (content_type, body) = match (template, &req.body) {
            (Some(t), _) => (
                t.content_type,
                Some(CompiledTemplate::compile(&t.body, t.content_type).map_err(|e| e.under("template"))?),
            ),
            (None, Some(b)) => (
                req.content_type,
                Some(CompiledTemplate::compile(b, req.content_type).map_err(|e| e.under("request.body"))?),
            ),
            (None, None) => (req.content_type, None),
        };
        let tz = parse_time_zone("request.time_zone", &req.time_zone)?;
        Ok(CompiledWebhook { webhook, url, query, headers, content_type, body, tz })
    }

    /// Renders the request for one job.
    pub fn render(&self, job: &DeliveryJob) -> Result<RenderedRequest, RenderFailure> {
        let nonce = crate::context::new_nonce();
        let ctx = RenderContext { event: &job.event, tz: self.tz, context: Some(&nonce) };
        let w = &self.webhook;
        let mut url = url::Url::parse(&self.url.render(&ctx, Escape::UrlComponent))
            .map_err(|e| RenderFailure::Url(e.to_string()))?;
        let mut pairs: Vec<(String, String)> =
            self.query.iter().map(|(k, v)| (k.clone(), v.render(&ctx, Escape::None))).collect();
        let method = w.request.method;
        let body = if method.carries_body() {
            match &self.body {
                Some(t) => t.render(&ctx)?,
                None => serde_json::to_string(&job.event).expect("events serialise"),
            }
        } else {
            if let Some(t) = &self.body {
                pairs.extend(t.render_pairs(&ctx)?);
            }
            String::new()
        };
        if body.len() > MAX_RENDERED_BYTES {
            return Err(crate::template::RenderError::TooLarge(body.len()).into());
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs.iter());
        }
        check_url("url", url.as_str()).map_err(|e| RenderFailure::Url(e.message))?;
        let mut headers: Vec<(String, String)> = Vec::with_capacity(self.headers.len() + 1);
        if method.carries_body() && !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("content-type".to_string(), self.content_type.mime().to_string()));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.render(&ctx, Escape::Header))));
        let url: String = url.into();
        let mut names = std::collections::BTreeSet::new();
        crate::context::names_in(&nonce, &url, &mut names);
        for (_, v) in &headers {
            crate::context::names_in(&nonce, v, &mut names);
        }
        crate::context::names_in(&nonce, &body, &mut names);
        let context = (!names.is_empty()).then(|| crate::context::ContextUse {
            nonce: nonce.clone(),
            names: names.into_iter().collect(),
            wait_ms: w.context.wait().as_millis() as u64,
            defaults: w.context.defaults.iter().map(|d| (d.name.clone(), d.value.clone())).collect(),
            body_format: self.content_type,
            resolved: None,
        });
        Ok(RenderedRequest {
            delivery_id: job.delivery_id.clone(),
            webhook_id: job.webhook_id.clone(),
            webhook_version: job.webhook_version,
            tenant_id: job.tenant_id.clone(),
            event_id: job.event.id.clone(),
            event_type: job.event.event_type,
            call_id: job.event.call_id.clone(),
            call: CallInfo::of(&job.event),
            first_trigger_at: job.first_trigger_at,
            method,
            url,
            headers,
            body,
            success: w.success.clone(),
            policy: w.policy.clone(),
            render_error: None,
            traceparent: None,
            personal: Vec::new(),
            context,
            hold: None,
            data_points: None,
        })
    }

    /// The request the dispatcher logs as an error when rendering failed.
    pub fn failed_request(&self, job: &DeliveryJob, reason: String) -> RenderedRequest {
        failed_request(&self.webhook, job, reason)
    }
}

/// A request that carries a render error instead of a body.
pub fn failed_request(w: &Webhook, job: &DeliveryJob, reason: String) -> RenderedRequest {
    RenderedRequest { render_error: Some(reason), ..unrendered(w, job) }
}

/// The request of a job whose event lacks data points its webhook waits for
/// ([`crate::enrich`]): held, carrying the event, rendered by the dispatcher when it fires.
/// `None` when nothing is missing or the event has no call to bring them later.
pub fn held_request(w: &Webhook, job: &DeliveryJob) -> Option<RenderedRequest> {
    if w.context.wait_for.is_empty() || job.event.call_id.is_none() {
        return None;
    }
    let missing = crate::enrich::missing(&job.event, &w.context.wait_for);
    if missing.is_empty() {
        return None;
    }
    let max_wait_ms = w.context.max_wait().as_millis() as u64;
    Some(RenderedRequest {
        hold: Some(crate::enrich::Hold::new(job.event.clone(), missing, max_wait_ms)),
        ..unrendered(w, job)
    })
}

/// The request of a data-point job: the points its webhook waits for, nothing to send.
pub fn data_point_request(w: &Webhook, job: &DeliveryJob) -> RenderedRequest {
    let points = crate::enrich::points_of(&job.event, &w.context.wait_for);
    RenderedRequest { data_points: Some(points), ..unrendered(w, job) }
}

/// A request for `job` with the webhook's URL as written and nothing rendered.
fn unrendered(w: &Webhook, job: &DeliveryJob) -> RenderedRequest {
    RenderedRequest {
        delivery_id: job.delivery_id.clone(),
        webhook_id: job.webhook_id.clone(),
        webhook_version: job.webhook_version,
        tenant_id: job.tenant_id.clone(),
        event_id: job.event.id.clone(),
        event_type: job.event.event_type,
        call_id: job.event.call_id.clone(),
        call: CallInfo::of(&job.event),
        first_trigger_at: job.first_trigger_at,
        method: w.request.method,
        url: w.request.url.clone(),
        headers: Vec::new(),
        body: String::new(),
        success: w.success.clone(),
        policy: w.policy.clone(),
        render_error: None,
        traceparent: None,
        personal: Vec::new(),
        context: None,
        hold: None,
        data_points: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::sample_event;
    use serde_json::{json, Value};

    fn webhook(v: Value) -> Arc<Webhook> {
        let mut base = json!({"id":"w1","tenant_id":"sample","name":"n",
            "created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn job() -> DeliveryJob {
        DeliveryJob::new("w1", 1, sample_event(), chrono::Utc::now())
    }

    #[test]
    fn post_renders_url_query_headers_and_json_body() {
        let w = webhook(json!({"request":{
            "url":"https://crm.example.com/calls/{{ callid }}",
            "query":[{"name":"src","value":"%tracking%"}],
            "headers":[{"name":"X-Caller","value":"{{ ani }}"}],
            "body":{"kind":"fields","format":"json","example":"{\"phone\":\"%ani%\",\"seconds\":\"%answered_time%\"}"}}}));
        let c = CompiledWebhook::compile(w, None).unwrap();
        let r = c.render(&job()).unwrap();
        let e = sample_event();
        let callid = e.call_id.clone().unwrap();
        assert!(r.url.starts_with(&format!("https://crm.example.com/calls/{callid}?src=")), "{}", r.url);
        assert!(r.headers.contains(&("content-type".into(), "application/json".into())));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["phone"], e.data["ani"]);
        assert!(body["seconds"].is_number());
    }

    #[test]
    fn get_carries_mapped_fields_as_query_parameters() {
        let w = webhook(json!({"request":{"method":"GET","url":"https://crm.example.com/in",
            "body":{"kind":"pairs","pairs":[{"path":"phone","source":{"kind":"token","token":"ani"}}]}}}));
        let r = CompiledWebhook::compile(w, None).unwrap().render(&job()).unwrap();
        let url = url::Url::parse(&r.url).unwrap();
        let ani = sample_event().data_str("ani").unwrap();
        assert!(url.query_pairs().any(|(k, v)| k == "phone" && v == ani), "{}", r.url);
        assert!(r.body.is_empty());
    }

    #[test]
    fn context_references_become_placeholders_the_request_names() {
        let w = webhook(json!({"request":{
            "url":"https://crm.example.com/leads/{{ context.lead_id }}",
            "headers":[{"name":"X-Owner","value":"{{ context.owner }}"}],
            "body":{"kind":"text","source":"{\"lead\": {{ context.lead_id }}, \"note\": \"for {{ context.owner }}\"}"}},
            "context":{"wait_ms":5000,"defaults":[{"name":"owner","value":"nobody"}]}}));
        let r = CompiledWebhook::compile(w, None).unwrap().render(&job()).unwrap();
        let c = r.context.clone().expect("the request uses context");
        assert_eq!(c.names, vec!["lead_id".to_string(), "owner".to_string()]);
        assert_eq!(c.wait_ms, 5000);
        assert_eq!(c.defaults.get("owner").map(String::as_str), Some("nobody"));
        let (mut url, mut headers, mut body) = (r.url.clone(), r.headers.clone(), r.body.clone());
        let values = std::collections::BTreeMap::from([
            ("lead_id".to_string(), "L-42".to_string()),
            ("owner".to_string(), "Ann \"A\"".to_string()),
        ]);
        crate::context::resolve(&c, &mut url, &mut headers, &mut body, &values);
        assert_eq!(url, "https://crm.example.com/leads/L-42");
        assert!(headers.contains(&("X-Owner".to_string(), "Ann \"A\"".to_string())), "{headers:?}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(v, json!({"lead": "L-42", "note": "for Ann \"A\""}));
        // A webhook without context references carries none.
        let plain = webhook(json!({"request":{"url":"https://crm.example.com/in"}}));
        assert!(CompiledWebhook::compile(plain, None).unwrap().render(&job()).unwrap().context.is_none());
    }

    #[test]
    fn field_and_pair_bodies_use_context_values_too() {
        let values = std::collections::BTreeMap::from([("lead_id".to_string(), "L-42 \"x\" & <y>".to_string())]);
        // A fields body whose example names the context value, as ctl and the console write it.
        let w = webhook(json!({"request":{"method":"PUT","url":"https://crm.example.com/leads",
            "body":{"kind":"fields","format":"json","example":"{\"lead\":\"{{ context.lead_id }}\",\"phone\":\"%ani%\"}"}}}));
        let r = CompiledWebhook::compile(w, None).unwrap().render(&job()).unwrap();
        let c = r.context.clone().expect("the body uses context");
        assert_eq!(c.names, vec!["lead_id".to_string()]);
        let (mut url, mut headers, mut body) = (r.url.clone(), r.headers.clone(), r.body.clone());
        crate::context::resolve(&c, &mut url, &mut headers, &mut body, &values);
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(v["lead"], json!("L-42 \"x\" & <y>"));
        assert_eq!(v["phone"], sample_event().data["ani"]);
        // A GET whose pairs map a context value (`token:context.lead_id`).
        let w = webhook(json!({"request":{"method":"GET","url":"https://crm.example.com/in",
            "body":{"kind":"pairs","pairs":[{"path":"lead","source":{"kind":"token","token":"context.lead_id"}}]}}}));
        let r = CompiledWebhook::compile(w, None).unwrap().render(&job()).unwrap();
        let c = r.context.clone().expect("the query uses context");
        let (mut url, mut headers, mut body) = (r.url.clone(), r.headers.clone(), r.body.clone());
        crate::context::resolve(&c, &mut url, &mut headers, &mut body, &values);
        let url = url::Url::parse(&url).unwrap();
        assert!(url.query_pairs().any(|(k, v)| k == "lead" && v == "L-42 \"x\" & <y>"), "{url}");
        // A context name that is no name is refused at creation, naming the mapping.
        let w = webhook(json!({"request":{"method":"GET","url":"https://crm.example.com/in",
            "body":{"kind":"pairs","pairs":[{"path":"lead","source":{"kind":"token","token":"context.Lead"}}]}}}));
        let e = CompiledWebhook::compile(w, None).err().expect("refused");
        assert_eq!(e.field, "request.body.pairs[0].source.token");
    }

    #[test]
    fn no_template_sends_the_event() {
        let w = webhook(json!({"request":{"url":"https://crm.example.com/in"}}));
        let r = CompiledWebhook::compile(w, None).unwrap().render(&job()).unwrap();
        let body: crate::event::Event = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body, sample_event());
    }
}
