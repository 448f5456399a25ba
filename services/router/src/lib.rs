//! Router: decides who wants each event.
//!
//! Consumes `hookmesh.events`, matches each event against the tenant's webhooks in the
//! registry view (event type, campaigns, directions, numbers, IVR option, attribute
//! conditions, the CEL expression; disabled webhooks get nothing) and produces one [`DeliveryJob`] per match to
//! `hookmesh.jobs`, keyed `webhook_id/call_id`. The offset is committed only after every job of
//! the event is acknowledged. A webhook that holds deliveries for data points of later events
//! (`wait_for`) also gets a data-point job for each event of a call that carries one of them,
//! whatever its trigger (`hookmesh_core::enrich`). The router also owns the registry's management API
//! ([`service::RegistryApi`]: `WebhookService`, `TemplateService`).

pub mod service;

use bytes::Bytes;
use hookmesh_bus::stage::{run_stage, unreadable, LoopOptions};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::trace::{self, TRACEPARENT};
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::delivery::DeliveryJob;
use hookmesh_core::event::Event;
use hookmesh_core::expression::ExpressionFilter;
use hookmesh_core::matching::matches_with_expression;
use hookmesh_core::webhook::Webhook;
use hookmesh_registry::ConfigView;
use hookmesh_telemetry::otel::StageSpan;
use hookmesh_telemetry::{metrics, otel, SpanKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Router {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub registry: Arc<ConfigView>,
    expressions: Arc<ExpressionCache>,
}

/// Trigger expressions compiled once per webhook version (compiling parses and checks; the
/// registry refused anything that does not compile, so a failure here means a record written
/// by an older or foreign writer: that webhook matches nothing until it is fixed).
#[derive(Default)]
struct ExpressionCache {
    compiled: Mutex<HashMap<String, Compiled>>,
}

/// A webhook version and its expression (`None`: it did not compile).
type Compiled = (u64, Option<Arc<ExpressionFilter>>);

impl ExpressionCache {
    fn get(&self, w: &Webhook) -> Result<Option<Arc<ExpressionFilter>>, ()> {
        let Some(src) = w.trigger.expression.as_deref() else { return Ok(None) };
        let mut compiled = self.compiled.lock();
        if let Some((version, f)) = compiled.get(&w.id) {
            if *version == w.version {
                return f.clone().map(Some).ok_or(());
            }
        }
        let f = match ExpressionFilter::compile(src) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::error!(webhook = %w.id, error = %e, "trigger expression does not compile; the webhook matches nothing");
                None
            }
        };
        if compiled.len() > 100_000 {
            compiled.clear();
        }
        compiled.insert(w.id.clone(), (w.version, f.clone()));
        f.map(Some).ok_or(())
    }
}

impl Router {
    pub fn new(bus: Arc<dyn Bus>, topics: Topics, registry: Arc<ConfigView>) -> Router {
        Router { bus, topics, registry, expressions: Arc::default() }
    }

    /// The jobs an event produces under the current registry.
    pub fn route(&self, event: &Event) -> Vec<DeliveryJob> {
        let snapshot = self.registry.snapshot();
        let now = chrono::Utc::now();
        let Some(hooks) = snapshot.by_tenant.get(&event.tenant_id) else { return Vec::new() };
        // The event's CEL variables, built on the first webhook with an expression.
        let mut bindings = None;
        hooks
            .iter()
            .flat_map(|w| {
                let hit = match self.expressions.get(w) {
                    Err(()) => false,
                    Ok(expression) => match matches_with_expression(w, event, expression.as_deref(), &mut bindings) {
                        Ok(hit) => hit,
                        Err(why) => {
                            tracing::debug!(webhook = %w.id, event = %event.id, reason = %why, "trigger expression did not hold");
                            false
                        }
                    },
                };
                // An event that triggers the webhook may also bring what another of its
                // deliveries for the same call waits for: both jobs, in that order.
                let job = hit.then(|| DeliveryJob::new(&w.id, w.version, event.clone(), now));
                let points = carries_awaited_points(w, event)
                    .then(|| DeliveryJob::data_points(&w.id, w.version, event.clone(), now));
                job.into_iter().chain(points)
            })
            .collect()
    }

    /// The jobs of an `hookmesh.events` record and the `router.route` span they continue (keep
    /// it open while publishing them); `None` for a tombstone, or a record that is not an event
    /// (sent to the DLQ).
    pub async fn route_message(&self, msg: &Message) -> Result<Option<(Vec<DeliveryJob>, StageSpan)>, BusError> {
        let Some(payload) = &msg.payload else { return Ok(None) };
        let event: Event = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                // Ingest validated it, so this is a bug or a foreign producer: keep it.
                self.bus.publish(&self.topics.dlq, unreadable(msg, "event", e)).await?;
                return Ok(None);
            }
        };
        let jobs = self.route(&event);
        let span = otel::stage_span("router.route", SpanKind::Consumer, msg.header(TRACEPARENT), trace::child_of);
        span.set_attribute("event.type", event.event_type.as_str());
        span.set_attribute("jobs", jobs.len() as i64);
        Ok(Some((jobs, span)))
    }

    async fn handle(&self, msg: &Message) -> Result<usize, BusError> {
        let Some((jobs, span)) = self.route_message(msg).await? else { return Ok(0) };
        let n = jobs.len();
        if n > 0 {
            let records = jobs
                .iter()
                .map(|j| {
                    Record::new(j.key(), Bytes::from(serde_json::to_vec(j).expect("jobs serialise")))
                        .with_header(TRACEPARENT, span.traceparent().into_bytes())
                })
                .collect();
            self.bus.publish_batch(&self.topics.jobs, records).await?;
            metrics().jobs_routed.inc_by(n as u64);
        }
        Ok(n)
    }
}

/// Whether `event` brings data points enrichment webhook `w` holds deliveries for: an event
/// of one of the tenant's calls carrying any of its `wait_for` names, whatever its trigger.
fn carries_awaited_points(w: &Webhook, event: &Event) -> bool {
    w.enabled && event.call_id.is_some() && w.context.wait_for.iter().any(|n| hookmesh_core::enrich::carries(event, n))
}

/// Consumes `hookmesh.events` until `shutdown`.
pub async fn run(router: Router, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let (bus, topic) = (router.bus.clone(), router.topics.events.clone());
    run_stage(
        "router",
        "router: producing jobs",
        Arc::new(router),
        bus,
        &topic,
        &group,
        LoopOptions::default(),
        shutdown,
        |router, msg, _order| async move { router.handle(&msg).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookmesh_bus::memory::MemoryBus;
    use hookmesh_core::event::event_from_value;
    use serde_json::json;

    async fn router_with(webhooks: &[serde_json::Value]) -> (Router, CancellationToken) {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let topics = Topics::new("hookmesh");
        for spec in topics.specs(1) {
            bus.ensure_topic(&spec).await.unwrap();
        }
        let shutdown = CancellationToken::new();
        let registry = ConfigView::start(bus.clone(), &topics.config, None, shutdown.clone()).await.unwrap();
        for w in webhooks {
            let mut doc = json!({"tenant_id": "acme", "version": 1, "request": {"url": "https://crm.example.com/"},
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"});
            doc.as_object_mut().unwrap().extend(w.as_object().unwrap().clone());
            registry.put_webhook(serde_json::from_value(doc).unwrap(), 0).await.unwrap();
        }
        (Router::new(bus, topics, registry), shutdown)
    }

    fn event(id: &str, kind: &str, call: Option<&str>, data: serde_json::Value) -> Event {
        let mut v =
            json!({"id": id, "type": kind, "occurred_at": "2026-12-04T10:00:00Z", "tenant_id": "acme", "data": data});
        if let Some(c) = call {
            v["call_id"] = json!(c);
        }
        event_from_value(v).unwrap()
    }

    /// (webhook, data-point job?) of each job, in order.
    fn jobs(r: &Router, e: &Event) -> Vec<(String, bool)> {
        r.route(e).into_iter().map(|j| (j.webhook_id, j.data_points)).collect()
    }

    #[tokio::test]
    async fn later_events_bring_data_points_to_enrichment_webhooks_whatever_their_trigger() {
        let trigger = json!({"event_types": ["call.ended"], "campaigns": ["Sales"]});
        let (r, shutdown) = router_with(&[
            json!({"id": "enrich", "name": "enrich", "trigger": trigger,
                   "context": {"wait_for": ["recording_url", "transcript"]}}),
            json!({"id": "plain", "name": "plain", "trigger": trigger}),
            json!({"id": "off", "name": "off", "enabled": false, "context": {"wait_for": ["recording_url"]}}),
        ])
        .await;
        let sales = json!({"campaign_name": "Sales"});
        let both = vec![("enrich".to_string(), false), ("plain".to_string(), false)];
        assert_eq!(jobs(&r, &event("e1", "call.ended", Some("c1"), sales.clone())), both);
        // The recording of a Sales call does not repeat the campaign: a data-point job only.
        let rec = event("e2", "recording_ready", Some("c1"), json!({"recording_url": "https://r/1"}));
        assert_eq!(jobs(&r, &rec), vec![("enrich".to_string(), true)]);
        // A triggering event that carries an awaited point: its delivery and the point.
        let ended = event("e3", "call.ended", Some("c2"), json!({"campaign_name": "Sales", "transcript": "hi"}));
        let mut expected = vec![("enrich".to_string(), false), ("enrich".to_string(), true)];
        expected.push(("plain".to_string(), false));
        assert_eq!(jobs(&r, &ended), expected);
        // Nothing for events without a call, nor for `null`s.
        let no_call = event("e4", "contact.updated", None, json!({"recording_url": "https://r/2"}));
        assert!(jobs(&r, &no_call).is_empty());
        assert!(jobs(&r, &event("e5", "call.analyzed", Some("c1"), json!({"transcript": null}))).is_empty());
        shutdown.cancel();
    }
}
