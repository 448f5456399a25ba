//! `RenderService.Preview`: render a stored webhook, an unsaved definition or a template on
//! the sample event (built from the token catalog's examples) or on a given event.

use hookmesh_core::delivery::DeliveryJob;
use hookmesh_core::event::Event;
use hookmesh_core::render::CompiledWebhook;
use hookmesh_core::template::{CompiledTemplate, RenderContext};
use hookmesh_core::tokens::sample_event;
use hookmesh_proto::auth::Principal;
use hookmesh_proto::convert;
use hookmesh_proto::v1::{self, preview_request::Target};
use hookmesh_registry::ConfigView;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct RenderApi {
    pub registry: Arc<ConfigView>,
}

/// The event a preview or test-send renders: the given one (validated) or the sample.
pub fn preview_event(event: Option<v1::Event>) -> Result<Event, Status> {
    match event {
        Some(e) => convert::event_from_proto(e).map_err(|e| Status::invalid_argument(format!("event.{e}"))),
        None => Ok(sample_event()),
    }
}

#[tonic::async_trait]
impl v1::render_service_server::RenderService for RenderApi {
    async fn preview(&self, request: Request<v1::PreviewRequest>) -> Result<Response<v1::PreviewResponse>, Status> {
        let p = Principal::of(&request);
        let req = request.into_inner();
        let event = preview_event(req.event)?;
        let now = chrono::Utc::now();
        let webhook = match req.target {
            None => return Err(Status::invalid_argument("target: give webhook_id, webhook or template_id")),
            Some(Target::TemplateId(id)) => {
                let t = self.registry.template(&id).filter(|t| p.can_see(&t.tenant_id)).ok_or_else(|| {
                    Status::not_found(format!("template `{}` not found", hookmesh_core::error::escape_control(&id)))
                })?;
                let compiled = CompiledTemplate::compile(&t.body, t.content_type)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let body = compiled
                    .render(&RenderContext::new(&event, chrono_tz::UTC))
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let request = v1::RenderedRequest {
                    method: String::new(),
                    url: String::new(),
                    headers: vec![v1::KeyValue { name: "content-type".into(), value: t.content_type.mime().into() }],
                    body,
                };
                return Ok(Response::new(v1::PreviewResponse { request: Some(request) }));
            }
            Some(Target::WebhookId(id)) => {
                self.registry.webhook(&id).filter(|w| p.can_see(&w.tenant_id)).ok_or_else(|| {
                    Status::not_found(format!("webhook `{}` not found", hookmesh_core::error::escape_control(&id)))
                })?
            }
            Some(Target::Webhook(w)) => {
                let mut w = convert::webhook_from_proto(w, now).map_err(|e| Status::invalid_argument(e.to_string()))?;
                w.tenant_id = p.owner(&w.tenant_id)?;
                if w.id.is_empty() {
                    w.id = "preview".into();
                }
                w.validate().map_err(|e| Status::invalid_argument(e.to_string()))?;
                Arc::new(w)
            }
        };
        let template = match &webhook.request.template_id {
            Some(tid) => {
                Some(self.registry.template(tid).filter(|t| t.tenant_id == webhook.tenant_id).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "request.template_id: no template `{}`",
                        hookmesh_core::error::escape_control(tid)
                    ))
                })?)
            }
            None => None,
        };
        let compiled = CompiledWebhook::compile(webhook.clone(), template.as_deref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let job = DeliveryJob::new(&webhook.id, webhook.version, event, now);
        let rendered = compiled.render(&job).map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(v1::PreviewResponse { request: Some(convert::rendered_to_proto(&rendered)) }))
    }
}
