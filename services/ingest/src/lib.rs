//! Ingest: the front door for call events.
//!
//! Reads `calls.raw` (JSON as switches publish it) and serves `IngestService.Publish`; both
//! paths run the same [`Ingest::accept`]: validate against the documented schema, normalise
//! aliases and timestamps, drop duplicates by event id, and publish to `hookmesh.events` keyed
//! by call id. Anything it cannot accept goes to `hookmesh.dlq` with the original bytes
//! untouched and the reason in record headers (`hookmesh-reason`, `hookmesh-field`,
//! `hookmesh-source`, `hookmesh-received-at`). Nothing is silently dropped: a duplicate is
//! counted and answered as such.
//!
//! Deduplication never loses an event: the mark is set only once the publish is acknowledged
//! (see [`Ingest::forward`]), so it can turn a redelivery into a repeat, never into a drop.

pub mod service;

use bytes::Bytes;
use hookmesh_bus::stage::{run_stage, LoopOptions};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::trace::{self, TRACEPARENT};
use hookmesh_bus::{Bus, BusError, Record};
use hookmesh_core::event::{parse_event, Event, EventError};
use hookmesh_store::Store;
use hookmesh_telemetry::{metrics, otel, SpanKind};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long an event id is remembered for deduplication.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(24 * 3600);

pub const HEADER_REASON: &str = "hookmesh-reason";
pub const HEADER_FIELD: &str = "hookmesh-field";
pub const HEADER_SOURCE: &str = "hookmesh-source";
pub const HEADER_RECEIVED_AT: &str = "hookmesh-received-at";
pub const HEADER_TENANT: &str = "hookmesh-tenant";

#[derive(Clone)]
pub struct Ingest {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub topics: Topics,
    pub dedup_ttl: Duration,
}

/// What happened to one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(String),
    Duplicate(String),
    Rejected(EventError),
}

impl Ingest {
    /// Validates and forwards one event given as JSON bytes from `source` (`calls.raw`,
    /// `grpc`). Errors are bus/store failures only (worth retrying); bad input is an
    /// [`Outcome::Rejected`] that has already been written to the DLQ.
    pub async fn accept(&self, bytes: &[u8], source: &str) -> Result<Outcome, BusError> {
        self.accept_traced(bytes, source, None).await
    }

    /// [`Ingest::accept`] continuing the caller's trace (`traceparent` of the input record).
    pub async fn accept_traced(
        &self,
        bytes: &[u8],
        source: &str,
        traceparent: Option<&[u8]>,
    ) -> Result<Outcome, BusError> {
        match parse_event(bytes) {
            Ok(event) => self.forward(event, traceparent).await,
            Err(e) => {
                self.reject(bytes, source, &e).await?;
                Ok(Outcome::Rejected(e))
            }
        }
    }

    /// Forwards an already validated event.
    ///
    /// The dedup mark is set only after `hookmesh.events` acknowledged the publish: a process
    /// killed between the two leaves no mark, so the redelivered record (or the client's
    /// retried `Publish`) is forwarded again instead of being taken for a duplicate. Two
    /// copies racing through this window may both be published; that is safe because every
    /// later stage is idempotent on the delivery id, which is derived from the webhook and the
    /// event id (a receiver sees at most a repeat with the same `webhook-id`).
    pub async fn forward(&self, event: Event, traceparent: Option<&[u8]>) -> Result<Outcome, BusError> {
        let dedup_key = format!("dedup:{}:{}", event.tenant_id, event.id);
        let store_error = |e: hookmesh_store::StoreError| BusError::Backend(e.to_string());
        if self.store.is_seen(&dedup_key).await.map_err(store_error)? {
            metrics().event("duplicate");
            return Ok(Outcome::Duplicate(event.id));
        }
        let payload = serde_json::to_vec(&event).expect("events serialise");
        let span = otel::stage_span("ingest.event", SpanKind::Consumer, traceparent, trace::child_of);
        span.set_attribute("event.type", event.event_type.as_str());
        span.set_attribute("tenant.id", event.tenant_id.clone());
        let record = Record::new(event.partition_key().to_string(), Bytes::from(payload))
            .with_header(TRACEPARENT, span.traceparent().into_bytes());
        self.bus.publish(&self.topics.events, record).await?;
        self.store.mark_seen(&dedup_key, self.dedup_ttl).await.map_err(store_error)?;
        metrics().event("accepted");
        Ok(Outcome::Accepted(event.id))
    }

    /// Writes refused input to the DLQ with its reason.
    pub async fn reject(&self, bytes: &[u8], source: &str, error: &EventError) -> Result<(), BusError> {
        let tenant = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("tenant_id").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        let record = Record::new(tenant.clone(), Bytes::copy_from_slice(bytes))
            .with_header(HEADER_REASON, error.reason.as_bytes())
            .with_header(HEADER_FIELD, error.field.as_bytes())
            .with_header(HEADER_SOURCE, source.as_bytes())
            .with_header(
                HEADER_RECEIVED_AT,
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into_bytes(),
            )
            .with_header(HEADER_TENANT, tenant.into_bytes());
        self.bus.publish(&self.topics.dlq, record).await?;
        metrics().event("rejected");
        tracing::info!(field = %error.field, reason = %error.reason, source, "event rejected to the DLQ");
        Ok(())
    }
}

/// Consumes `calls.raw` until `shutdown`; offsets are committed once each record is forwarded
/// or dead-lettered.
pub async fn run(ingest: Ingest, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let (bus, topic) = (ingest.bus.clone(), ingest.topics.raw.clone());
    run_stage(
        "ingest",
        "ingest: forwarding",
        Arc::new(ingest),
        bus,
        &topic,
        &group,
        LoopOptions::default(),
        shutdown,
        |ingest, msg, _order| async move {
            let bytes = msg.payload.clone().unwrap_or_default();
            ingest.accept_traced(&bytes, "calls.raw", msg.header(TRACEPARENT)).await
        },
    )
    .await
}
