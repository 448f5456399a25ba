//! Router: decides who wants each event.
//!
//! Consumes `hookmesh.events`, matches each event against the tenant's webhooks in the
//! registry view (event type, campaigns, directions, numbers, IVR option, attribute
//! conditions; disabled webhooks get nothing) and produces one [`DeliveryJob`] per match to
//! `hookmesh.jobs`, keyed `webhook_id/call_id`. The offset is committed only after every job of
//! the event is acknowledged. The router also owns the registry's management API
//! ([`service::RegistryApi`]: `WebhookService`, `TemplateService`).

pub mod service;

use bytes::Bytes;
use hookmesh_bus::stage::{run_stage, unreadable, LoopOptions};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::trace::{self, TRACEPARENT};
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::delivery::DeliveryJob;
use hookmesh_core::event::Event;
use hookmesh_core::matching::matches;
use hookmesh_registry::ConfigView;
use hookmesh_telemetry::{metrics, otel, SpanKind};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Router {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub registry: Arc<ConfigView>,
}

impl Router {
    /// The jobs an event produces under the current registry.
    pub fn route(&self, event: &Event) -> Vec<DeliveryJob> {
        let snapshot = self.registry.snapshot();
        let now = chrono::Utc::now();
        snapshot
            .by_tenant
            .get(&event.tenant_id)
            .map(|hooks| {
                hooks
                    .iter()
                    .filter(|w| matches(w, event))
                    .map(|w| DeliveryJob::new(&w.id, w.version, event.clone(), now))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn handle(&self, msg: &Message) -> Result<usize, BusError> {
        let Some(payload) = &msg.payload else { return Ok(0) };
        let event: Event = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                // Ingest validated it, so this is a bug or a foreign producer: keep it.
                self.bus.publish(&self.topics.dlq, unreadable(msg, "event", e)).await?;
                return Ok(0);
            }
        };
        let jobs = self.route(&event);
        let n = jobs.len();
        let span = otel::stage_span("router.route", SpanKind::Consumer, msg.header(TRACEPARENT), trace::child_of);
        span.set_attribute("event.type", event.event_type.as_str());
        span.set_attribute("jobs", n as i64);
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
