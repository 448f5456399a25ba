//! Dispatcher: delivers rendered requests, retries them, and keeps the delivery log.
//!
//! Consumes `hookmesh.requests`; for each request it records the delivery as `pending`, sends
//! the first attempt (signed at send time, so every attempt carries a fresh timestamp and the
//! current secrets), records the attempt, and either marks the delivery `success`, schedules a
//! retry (`retrying`) in the store, or ends it in `error`. The offset is committed only after
//! the attempt is recorded and any retry scheduled. A request redelivered after a crash whose
//! delivery already left `pending` is not sent again.
//!
//! The retry loop claims due retries from the store with a lease (a crashed dispatcher's
//! claims come back when the lease ends) and runs them through the same path. Resend,
//! recover and test-send live in [`service`]. Call context (values one webhook's responses
//! give to later deliveries of the same call) is resolved and captured here, where the store
//! is: [`context`]; so is post-call enrichment (deliveries held for data points of later events
//! of their call): [`enrich`].

pub mod client;
mod context;
mod deliver;
mod enrich;
mod gate;
mod health;
pub mod kafka;
mod log;
mod operational;
pub mod privacy;
mod retention;
mod retries;
pub mod service;
pub mod ssrf;

use gate::EndpointLocal;

use bytes::Bytes;
use chrono::DateTime;
use chrono::Utc;
use hookmesh_bus::stage::{run_stage, unreadable, LoopOptions, OrderRelease};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::breaker::{Admission, Breaker, BreakerPolicy, Transition};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, DeliveryStatus, ErrorClass, RenderedRequest};
use hookmesh_core::event::{operational_event, EventType};
use hookmesh_core::health::HealthSample;
use hookmesh_core::retry::{decide, Decision};
use hookmesh_core::signing;
use hookmesh_core::webhook::Ordering;
use hookmesh_core::webhook::Webhook;
use hookmesh_registry::ConfigView;
use hookmesh_store::DeliveryQuery;
use hookmesh_store::{Store, StoreError};
use hookmesh_telemetry::{metrics, otel, SpanKind};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a request waits for this process's registry view to catch up with the renderer's.
pub const REGISTRY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Requests in flight at once, over every endpoint.
    pub max_in_flight: usize,
    /// How often the retry loop looks for due retries.
    pub retry_poll: Duration,
    /// How long a claimed retry stays with this dispatcher before it is due again.
    pub retry_lease: Duration,
    /// Which receiver addresses may be reached (SSRF guard).
    pub address_policy: Arc<ssrf::AddressPolicy>,
    /// Requests in flight per endpoint in this process, unless the webhook sets
    /// `max_concurrency`.
    pub endpoint_concurrency: u32,
    pub breaker: BreakerPolicy,
    /// The master key: seals the original requests of tenants that mask personal data.
    pub cipher: Option<hookmesh_registry::secrets::SecretCipher>,
    /// The Kafka clusters webhooks may deliver to, by name (`kafka://<name>/<topic>`).
    pub kafka_destinations: Arc<kafka::KafkaDestinations>,
    /// Whether attempts also go to the `hookmesh.attempts` history stream. It is for consumers
    /// outside hookmesh, so only a shared bus (Kafka) carries it: nothing can read an
    /// in-process bus, where it would only cost a write per attempt and disk for 7 days.
    pub attempt_history: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            max_in_flight: 1024,
            retry_poll: Duration::from_millis(100),
            retry_lease: Duration::from_secs(90),
            address_policy: Arc::default(),
            endpoint_concurrency: 64,
            breaker: BreakerPolicy::default(),
            cipher: None,
            kafka_destinations: Arc::default(),
            attempt_history: true,
        }
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub topics: Topics,
    pub registry: Arc<ConfigView>,
    pub client: reqwest::Client,
    pub config: DispatcherConfig,
    pub vault: Arc<privacy::Vault>,
    endpoints: Arc<Mutex<HashMap<String, Arc<EndpointLocal>>>>,
    health: health::HealthWriter,
    /// Compiled webhooks, for rendering held deliveries when they fire.
    compiled: Arc<hookmesh_renderer::CompileCache>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{0}")]
    Sealed(String),
}

/// Signing keys of the webhook's active secrets of its switched-on schemes (`v1` HMAC
/// secrets, `v1a` ed25519 keys).
pub fn signing_keys(webhook: &Webhook) -> Vec<signing::Key> {
    webhook.signing_secrets(Utc::now()).filter_map(|s| signing::Key::from_secret(&s.secret).ok()).collect()
}

impl Dispatcher {
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        topics: Topics,
        registry: Arc<ConfigView>,
        config: DispatcherConfig,
    ) -> Self {
        Dispatcher {
            bus,
            store: store.clone(),
            topics,
            registry,
            client: client::build_client(config.address_policy.clone()),
            vault: Arc::new(privacy::Vault::new(config.cipher.clone())),
            config,
            endpoints: Arc::default(),
            health: health::HealthWriter::start(store.clone()),
            compiled: Arc::default(),
        }
    }

    async fn handle(&self, msg: &Message, order: Option<&OrderRelease>) -> Result<(), DispatchError> {
        let Some(payload) = &msg.payload else { return Ok(()) };
        match serde_json::from_slice::<RenderedRequest>(payload) {
            Ok(request) if request.data_points.is_some() => self.record_data_points(&request).await,
            Ok(request) => self.deliver_new(request, order).await,
            Err(e) => {
                self.bus.publish(&self.topics.dlq, unreadable(msg, "request", e)).await?;
                Ok(())
            }
        }
    }
}

/// Consumes `hookmesh.requests` and runs the retry loop until `shutdown`.
pub async fn run(dispatcher: Dispatcher, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let dispatcher = Arc::new(dispatcher);
    let retries = tokio::spawn(dispatcher.clone().run_retries(shutdown.clone()));
    let retention = tokio::spawn(dispatcher.clone().run_retention(shutdown.clone()));
    let (bus, topic) = (dispatcher.bus.clone(), dispatcher.topics.requests.clone());
    // Ordered by key (webhook/call) only until each delivery is recorded and queued in its
    // call's lane: see `deliver_new`.
    let options =
        LoopOptions { max_in_flight: dispatcher.config.max_in_flight, ordered_by_key: true, ..Default::default() };
    let result = run_stage(
        "dispatcher",
        "dispatcher: recording the delivery",
        dispatcher,
        bus,
        &topic,
        &group,
        options,
        shutdown,
        |d, msg, order| async move { d.handle(&msg, Some(&order)).await },
    )
    .await;
    let _ = retries.await;
    let _ = retention.await;
    result
}
