//! `DeliveryService`: the delivery log (search, details), resend, recover and test-send.
//!
//! - Resend (a delivery in `retrying` or `error`): same payload, method and `webhook-id`, sent
//!   now; success sets `success` and cancels the scheduled retry; a failure is logged as an
//!   attempt and the status stays.
//! - Recover: resend every failed (`error` or `retrying`) delivery of a webhook since a time.
//! - Test-send: render the webhook on the sample event (or a given one), send it now, answer
//!   the request and the response; the delivery log of real deliveries is not touched.

use crate::{client, signing_keys, DispatchError, Dispatcher};
use chrono::{DateTime, Utc};
use hookmesh_core::delivery::{AttemptTrigger, Delivery, DeliveryJob, DeliveryStatus};
use hookmesh_core::event::Direction;
use hookmesh_core::render::CompiledWebhook;
use hookmesh_core::tokens::sample_event;
use hookmesh_core::EventType;
use hookmesh_proto::auth::Principal;
use hookmesh_proto::convert;
use hookmesh_proto::status;
use hookmesh_proto::v1;
use hookmesh_store::DeliveryQuery;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct DeliveryApi {
    pub dispatcher: Arc<Dispatcher>,
}

impl From<DispatchError> for Status {
    fn from(e: DispatchError) -> Status {
        match &e {
            DispatchError::Store(s) => status::backend(&e, s.is_retriable()),
            DispatchError::Bus(b) => status::backend(&e, b.is_retriable()),
            // The sealed original request cannot be opened (a missing or wrong master key):
            // retrying will not help until the deployment is fixed.
            DispatchError::Sealed(_) => Status::failed_precondition(e.to_string()),
        }
    }
}

fn store_err(e: hookmesh_store::StoreError) -> Status {
    Status::from(DispatchError::Store(e))
}

fn parse_time(field: &str, s: &str) -> Result<Option<DateTime<Utc>>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(s).map(|t| Some(t.with_timezone(&Utc))).map_err(|e| {
        Status::invalid_argument(format!(
            "{field}: `{}` is not an RFC 3339 time ({e})",
            hookmesh_core::error::escape_control(s)
        ))
    })
}

impl DeliveryApi {
    /// A delivery the caller may see; another tenant's answers exactly like a missing one.
    /// It is answered in its stored form (masked for tenants that mask personal data).
    async fn delivery(&self, p: &Principal, id: &str) -> Result<Delivery, Status> {
        self.dispatcher.store.get_delivery(id).await.map_err(store_err)?.filter(|d| p.can_see(&d.tenant_id)).ok_or_else(
            || Status::not_found(format!("delivery `{}` not found", hookmesh_core::error::escape_control(id))),
        )
    }

    fn webhook(&self, p: &Principal, id: &str) -> Result<std::sync::Arc<hookmesh_core::webhook::Webhook>, Status> {
        self.dispatcher.registry.webhook(id).filter(|w| p.can_see(&w.tenant_id)).ok_or_else(|| {
            Status::not_found(format!("webhook `{}` not found", hookmesh_core::error::escape_control(id)))
        })
    }

    /// Sends a stored delivery again now (resend and recover); answers it and the attempt as
    /// the log keeps them.
    pub async fn resend(&self, mut d: Delivery, trigger: AttemptTrigger) -> Result<(Delivery, v1::Attempt), Status> {
        self.dispatcher.vault.open(&mut d).map_err(Status::failed_precondition)?;
        if !matches!(d.status, DeliveryStatus::Retrying | DeliveryStatus::Error) {
            return Err(Status::failed_precondition(format!(
                "delivery `{}` has status {}; only retrying or error deliveries can be resent",
                d.id,
                d.status.as_str()
            )));
        }
        if d.request.render_error.is_some() {
            return Err(Status::failed_precondition(format!("delivery `{}` never rendered; nothing to resend", d.id)));
        }
        if let Some(hold) = d.request.hold.as_ref().filter(|h| h.fired.is_none()) {
            // Ended before its data points came (webhook disabled, say): send it with what
            // arrived since, without waiting any longer.
            let now = hold.deadline(d.created_at).max(Utc::now());
            let webhook = self.webhook(&Principal::Operator, &d.webhook_id)?;
            self.dispatcher.resolve_hold(&mut d, &webhook, now).await.map_err(Status::from)?;
            if let Some(e) = &d.request.render_error {
                return Err(Status::failed_precondition(format!("delivery `{}`: {e}", d.id)));
            }
        }
        if d.request.context.as_ref().is_some_and(|c| c.resolved.is_none()) {
            // Never sent for want of a context value: send it with the values captured since
            // (or the defaults), without waiting any longer.
            let mut probe = d.clone();
            match self.dispatcher.resolve_context(&mut probe, DateTime::<Utc>::MAX_UTC).await.map_err(Status::from)? {
                crate::context::ContextStep::Ready => d.request = probe.request,
                _ => {
                    let reason = probe.last_error.unwrap_or_default();
                    return Err(Status::failed_precondition(format!("delivery `{}`: {reason}", d.id)));
                }
            }
        }
        let keys = self.dispatcher.registry.webhook(&d.webhook_id).map(|w| signing_keys(&w)).unwrap_or_default();
        let (attempt, _) =
            client::send(&self.dispatcher.client, &self.dispatcher.config, &d.request, &keys, d.attempts + 1, trigger)
                .await;
        let previous_error = d.last_error.clone();
        let stored = self.dispatcher.note_attempt(&mut d, &attempt).await;
        if attempt.succeeded() {
            self.dispatcher.store.cancel_retry(&d.id).await.map_err(store_err)?;
            d.status = DeliveryStatus::Success;
            d.next_attempt_at = None;
            hookmesh_telemetry::metrics().completed("success");
        } else if d.status == DeliveryStatus::Error {
            d.last_error = attempt.error.clone().or(previous_error);
        }
        d.updated_at = Utc::now();
        self.dispatcher.save_attempt(&d, &stored).await.map_err(Status::from)?;
        let vault = &self.dispatcher.vault;
        let shown = convert::attempt_to_proto(&stored);
        Ok((vault.for_display(&d).into_owned(), shown))
    }
}

#[tonic::async_trait]
impl v1::delivery_service_server::DeliveryService for DeliveryApi {
    async fn get_call_context(
        &self,
        request: Request<v1::GetCallContextRequest>,
    ) -> Result<Response<v1::GetCallContextResponse>, Status> {
        let principal = Principal::of(&request);
        let r = request.get_ref();
        let tenant = principal.owner(&r.tenant_id)?;
        if r.call_id.is_empty() {
            return Err(Status::invalid_argument("call_id: is required"));
        }
        let values = self.dispatcher.store.context_get(&tenant, &r.call_id).await.map_err(store_err)?;
        Ok(Response::new(v1::GetCallContextResponse { values: values.into_iter().collect() }))
    }

    async fn list_deliveries(
        &self,
        request: Request<v1::ListDeliveriesRequest>,
    ) -> Result<Response<v1::ListDeliveriesResponse>, Status> {
        let tenant = Principal::of(&request).scope(&request.get_ref().tenant_id)?;
        let r = request.into_inner();
        let opt = |s: String| if s.is_empty() { None } else { Some(s) };
        let status = match r.status.as_str() {
            "" => None,
            s => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "status: `{}` is not pending, success, retrying or error",
                    hookmesh_core::error::escape_control(s)
                ))
            })?),
        };
        let event_type = match r.event_type.as_str() {
            "" => None,
            s => Some(EventType::parse(s).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "event_type: unknown event type `{}`",
                    hookmesh_core::error::escape_control(s)
                ))
            })?),
        };
        let direction = match r.direction.as_str() {
            "" => None,
            s => Some(
                Direction::parse(s)
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "direction: `{}` is not inbound, outbound or click_to_call",
                            hookmesh_core::error::escape_control(s)
                        ))
                    })?
                    .as_str()
                    .to_string(),
            ),
        };
        let limit = if r.limit == 0 { 50 } else { r.limit.min(1000) } as usize;
        let query = DeliveryQuery {
            tenant_id: tenant,
            webhook_id: opt(r.webhook_id),
            status,
            event_type,
            call_id: opt(r.call_id),
            campaign: opt(r.campaign),
            direction,
            tracking: opt(r.tracking),
            since: parse_time("since", &r.since)?,
            until: parse_time("until", &r.until)?,
            before: opt(r.before),
            limit: limit + 1,
        };
        let mut list = self.dispatcher.store.list_deliveries(&query).await.map_err(store_err)?;
        let next = if list.len() > limit {
            list.truncate(limit);
            list.last().map(|d| d.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListDeliveriesResponse {
            deliveries: list.iter().map(convert::delivery_to_proto).collect(),
            next,
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<v1::GetDeliveryRequest>,
    ) -> Result<Response<v1::GetDeliveryResponse>, Status> {
        let p = Principal::of(&request);
        let d = self.delivery(&p, &request.into_inner().id).await?;
        let attempts = self.dispatcher.store.attempts(&d.id).await.map_err(store_err)?;
        Ok(Response::new(v1::GetDeliveryResponse {
            delivery: Some(convert::delivery_to_proto(&d)),
            request: Some(convert::rendered_to_proto(&d.request)),
            attempts: attempts.iter().map(convert::attempt_to_proto).collect(),
        }))
    }

    async fn resend(&self, request: Request<v1::ResendRequest>) -> Result<Response<v1::ResendResponse>, Status> {
        let p = Principal::of(&request);
        let d = self.delivery(&p, &request.into_inner().id).await?;
        let (d, attempt) = self.resend(d, AttemptTrigger::Resend).await?;
        Ok(Response::new(v1::ResendResponse { delivery: Some(convert::delivery_to_proto(&d)), attempt: Some(attempt) }))
    }

    async fn test_send(&self, request: Request<v1::TestSendRequest>) -> Result<Response<v1::TestSendResponse>, Status> {
        let p = Principal::of(&request);
        let r = request.into_inner();
        let registry = &self.dispatcher.registry;
        let webhook = self.webhook(&p, &r.webhook_id)?;
        let event = match r.event {
            Some(e) => convert::event_from_proto(e).map_err(|e| Status::invalid_argument(format!("event.{e}")))?,
            None => sample_event(),
        };
        let template = match &webhook.request.template_id {
            Some(tid) => Some(registry.template(tid).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "template `{}` not found",
                    hookmesh_core::error::escape_control(tid)
                ))
            })?),
            None => None,
        };
        let compiled = CompiledWebhook::compile(webhook.clone(), template.as_deref())
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let mut job = DeliveryJob::new(&webhook.id, webhook.version, event, Utc::now());
        job.delivery_id = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut rendered = compiled.render(&job).map_err(|e| Status::failed_precondition(e.to_string()))?;
        // A test does not wait: the call's captured values, else the defaults, else empty.
        if let Some(c) = rendered.context.clone() {
            let mut values = match &rendered.call_id {
                Some(call) => self.dispatcher.store.context_get(&rendered.tenant_id, call).await.map_err(store_err)?,
                None => Default::default(),
            };
            values.retain(|k, _| c.names.contains(k));
            for n in &c.names {
                if !values.contains_key(n) {
                    values.insert(n.clone(), c.defaults.get(n).cloned().unwrap_or_default());
                }
            }
            let r = &mut rendered;
            hookmesh_core::context::resolve(&c, &mut r.url, &mut r.headers, &mut r.body, &values);
            if let Some(c) = r.context.as_mut() {
                c.resolved = Some(values);
            }
        }
        let (attempt, _) = client::send(
            &self.dispatcher.client,
            &self.dispatcher.config,
            &rendered,
            &signing_keys(&webhook),
            1,
            AttemptTrigger::Test,
        )
        .await;
        Ok(Response::new(v1::TestSendResponse {
            request: Some(convert::rendered_to_proto(&rendered)),
            success: attempt.succeeded(),
            attempt: Some(convert::attempt_to_proto(&attempt)),
        }))
    }

    async fn recover(&self, request: Request<v1::RecoverRequest>) -> Result<Response<v1::RecoverResponse>, Status> {
        let p = Principal::of(&request);
        let r = request.into_inner();
        self.webhook(&p, &r.webhook_id)?;
        let since = parse_time("since", &r.since)?.ok_or_else(|| Status::invalid_argument("since: is required"))?;
        let mut resp = v1::RecoverResponse::default();
        for status in [DeliveryStatus::Error, DeliveryStatus::Retrying] {
            let mut before = None;
            loop {
                let query = DeliveryQuery {
                    webhook_id: Some(r.webhook_id.clone()),
                    status: Some(status),
                    since: Some(since),
                    before: before.clone(),
                    limit: 500,
                    ..Default::default()
                };
                let page = self.dispatcher.store.list_deliveries(&query).await.map_err(store_err)?;
                if page.is_empty() {
                    break;
                }
                before = page.last().map(|d| d.id.clone());
                for d in page {
                    resp.found += 1;
                    match self.resend(d, AttemptTrigger::Recover).await {
                        Ok((d, _)) if d.status == DeliveryStatus::Success => resp.succeeded += 1,
                        _ => resp.failed += 1,
                    }
                }
            }
        }
        Ok(Response::new(resp))
    }

    async fn endpoint_health(
        &self,
        request: Request<v1::EndpointHealthRequest>,
    ) -> Result<Response<v1::EndpointHealthResponse>, Status> {
        let p = Principal::of(&request);
        let r = request.into_inner();
        let webhook = self.webhook(&p, &r.webhook_id)?;
        let now = Utc::now();
        let store = &self.dispatcher.store;
        let samples = store.health_samples(&webhook.id, now - chrono::Duration::days(1)).await.map_err(store_err)?;
        let breaker = store.get_breaker(&webhook.id).await.map_err(store_err)?;
        let windows = [("1h", chrono::Duration::hours(1)), ("24h", chrono::Duration::days(1))]
            .into_iter()
            .map(|(name, span)| {
                let w = hookmesh_core::health::window(&samples, now - span);
                v1::HealthWindow {
                    window: name.into(),
                    attempts: w.attempts,
                    successes: w.successes,
                    success_rate: w.success_rate,
                    avg_ms: w.avg_ms,
                    p95_ms: w.p95_ms,
                }
            })
            .collect();
        let last = samples.last();
        Ok(Response::new(v1::EndpointHealthResponse {
            webhook_id: webhook.id.clone(),
            last_status: last.map_or(0, |s| u32::from(s.status)),
            last_attempt_at: last.map(|s| convert::timestamp_to_proto(&s.at)).unwrap_or_default(),
            windows,
            circuit: breaker.state.as_str().into(),
        }))
    }
}
