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
//! recover and test-send live in [`service`].

pub mod client;
pub mod service;
pub mod ssrf;

use bytes::Bytes;
use chrono::Utc;
use hookmesh_bus::registry::ConfigView;
use hookmesh_bus::stage::{run_consumer, LoopOptions};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, DeliveryStatus, ErrorClass, RenderedRequest};
use hookmesh_core::retry::{decide, Decision};
use hookmesh_core::signing::secret_key;
use hookmesh_core::webhook::Webhook;
use hookmesh_store::{Store, StoreError};
use hookmesh_telemetry::metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

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
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            max_in_flight: 1024,
            retry_poll: Duration::from_millis(100),
            retry_lease: Duration::from_secs(300),
            address_policy: Arc::default(),
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
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Signing keys of the webhook's active secrets.
pub fn signing_keys(webhook: &Webhook) -> Vec<Vec<u8>> {
    webhook.active_secrets(Utc::now()).filter_map(|s| secret_key(&s.secret).ok()).collect()
}

impl Dispatcher {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn Store>, topics: Topics, registry: Arc<ConfigView>, config: DispatcherConfig) -> Self {
        Dispatcher { bus, store, topics, registry, client: client::build_client(config.address_policy.clone()), config }
    }

    /// Handles a request from `hookmesh.requests`.
    pub async fn deliver_new(&self, request: RenderedRequest) -> Result<(), DispatchError> {
        if let Some(existing) = self.store.get_delivery(&request.delivery_id).await? {
            if existing.status != DeliveryStatus::Pending {
                tracing::debug!(delivery = %existing.id, "already handled; redelivered request skipped");
                return Ok(());
            }
        }
        let now = Utc::now();
        let mut d = Delivery::new(request, now);
        if let Some(reason) = d.request.render_error.clone() {
            d.status = DeliveryStatus::Error;
            d.last_error = Some(format!("render: {reason}"));
            self.store.put_delivery(&d).await?;
            metrics().completed("error");
            return Ok(());
        }
        self.store.put_delivery(&d).await?;
        self.attempt(d, AttemptTrigger::Scheduled).await
    }

    /// Runs one attempt of a pending or retrying delivery and settles it.
    pub async fn attempt(&self, mut d: Delivery, trigger: AttemptTrigger) -> Result<(), DispatchError> {
        let now = Utc::now();
        let webhook = self.registry.webhook_at_least(&d.webhook_id, d.request.webhook_version, REGISTRY_WAIT).await;
        let stop_reason = match &webhook {
            None => Some((ErrorClass::Expired, "the webhook was deleted".to_string())),
            Some(w) if !w.enabled => Some((ErrorClass::Expired, "the webhook is disabled".to_string())),
            Some(_) if now > d.created_at + chrono::Duration::from_std(d.request.policy.total_timeout()).unwrap_or(chrono::Duration::MAX) => {
                Some((ErrorClass::Expired, "the total timeout passed before the attempt could start".to_string()))
            }
            Some(_) => None,
        };
        if let Some((_, reason)) = stop_reason {
            self.store.cancel_retry(&d.id).await?;
            d.status = DeliveryStatus::Error;
            d.next_attempt_at = None;
            d.last_error = Some(reason);
            d.updated_at = now;
            self.store.put_delivery(&d).await?;
            metrics().completed("error");
            return Ok(());
        }
        let webhook = webhook.expect("checked above");
        let keys = signing_keys(&webhook);
        metrics().in_flight.inc();
        let (attempt, result) = client::send(&self.client, &self.config.address_policy, &d.request, &keys, d.attempts + 1, trigger).await;
        metrics().in_flight.dec();
        self.record_attempt(&mut d, &attempt).await?;
        let decision = decide(&d.request.policy, &result, d.attempts, d.created_at, Utc::now(), rand::random::<f64>() * 2.0 - 1.0);
        match decision {
            Decision::Delivered => {
                self.store.cancel_retry(&d.id).await?;
                d.status = DeliveryStatus::Success;
                d.next_attempt_at = None;
                metrics().completed("success");
                let latency = (Utc::now() - d.created_at).to_std().unwrap_or_default();
                metrics().delivery_latency.observe(latency.as_secs_f64());
            }
            Decision::Retry(delay) => {
                let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                self.store.schedule_retry(&d.id, due).await?;
                d.status = DeliveryStatus::Retrying;
                d.next_attempt_at = Some(due);
                metrics().retries_scheduled.inc();
            }
            Decision::GiveUp(reason) => {
                self.store.cancel_retry(&d.id).await?;
                d.status = DeliveryStatus::Error;
                d.next_attempt_at = None;
                d.last_error = Some(format!("{}; gave up: {reason}", d.last_error.clone().unwrap_or_default()));
                metrics().completed("error");
            }
            Decision::Disable => {
                self.store.cancel_retry(&d.id).await?;
                d.status = DeliveryStatus::Error;
                d.next_attempt_at = None;
                d.last_error = Some("receiver answered 410 Gone; webhook disabled".to_string());
                metrics().completed("error");
                self.disable_webhook(&webhook, "receiver answered 410 Gone").await;
            }
        }
        d.updated_at = Utc::now();
        self.store.put_delivery(&d).await?;
        Ok(())
    }

    /// Appends an attempt to the log and the history stream, updating the delivery's summary.
    pub async fn record_attempt(&self, d: &mut Delivery, attempt: &Attempt) -> Result<(), DispatchError> {
        d.attempts += 1;
        d.last_status = attempt.response_status;
        d.last_error = attempt.error.clone();
        self.store.add_attempt(&d.id, attempt).await?;
        metrics().attempt(if attempt.succeeded() { "success" } else { "failure" }, client::class_label(attempt));
        metrics().response_time.observe(attempt.duration_ms as f64 / 1000.0);
        // The history stream is best effort: the delivery log is the record of truth, and a
        // failed publish must not cause the HTTP request to be sent again.
        let entry = serde_json::json!({
            "delivery_id": d.id, "webhook_id": d.webhook_id, "tenant_id": d.tenant_id,
            "event_id": d.event_id, "attempt": attempt,
        });
        if let Err(e) = self.bus.publish(&self.topics.attempts, Record::new(d.id.clone(), Bytes::from(entry.to_string()))).await {
            tracing::warn!(error = %e, delivery = %d.id, "attempt history publish failed");
        }
        Ok(())
    }

    async fn disable_webhook(&self, webhook: &Webhook, reason: &str) {
        let mut w = webhook.clone();
        w.enabled = false;
        w.version += 1;
        w.updated_at = Utc::now();
        match self.registry.put_webhook(w, webhook.version).await {
            Ok(_) => tracing::warn!(webhook = %webhook.id, reason, "webhook disabled"),
            Err(e) => tracing::warn!(webhook = %webhook.id, error = %e, "could not disable webhook"),
        }
    }

    async fn handle(&self, msg: &Message) -> Result<(), DispatchError> {
        let Some(payload) = &msg.payload else { return Ok(()) };
        match serde_json::from_slice::<RenderedRequest>(payload) {
            Ok(request) => self.deliver_new(request).await,
            Err(e) => {
                let record = Record::new(msg.key.clone(), payload.clone())
                    .with_header("hookmesh-reason", format!("unreadable on {}: {e}", msg.topic).into_bytes())
                    .with_header("hookmesh-field", "request")
                    .with_header("hookmesh-source", msg.topic.as_bytes());
                self.bus.publish(&self.topics.dlq, record).await?;
                Ok(())
            }
        }
    }

    /// Claims due retries and runs them until `shutdown`.
    pub async fn run_retries(self: Arc<Self>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let free = permits.available_permits().min(256);
            if free > 0 {
                match self.store.claim_due(Utc::now(), free, self.config.retry_lease).await {
                    Ok(ids) => {
                        for id in ids {
                            let permit = permits.clone().acquire_owned().await.expect("semaphore never closed");
                            let this = self.clone();
                            tasks.spawn(async move {
                                if let Err(e) = this.run_retry(&id).await {
                                    // The lease brings it back.
                                    tracing::warn!(delivery = %id, error = %e, "retry failed; it will be claimed again");
                                }
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming retries failed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.config.retry_poll) => {}
            }
        }
        // Drain: finish attempts in flight; unfinished claims come back after their lease.
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
    }

    async fn run_retry(&self, id: &str) -> Result<(), DispatchError> {
        match self.store.get_delivery(id).await? {
            Some(d) if d.status == DeliveryStatus::Retrying => self.attempt(d, AttemptTrigger::Retry).await,
            _ => {
                self.store.cancel_retry(id).await?;
                Ok(())
            }
        }
    }
}

/// Consumes `hookmesh.requests` and runs the retry loop until `shutdown`.
pub async fn run(dispatcher: Dispatcher, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let consumer = dispatcher.bus.subscribe(&dispatcher.topics.requests, &group).await?;
    let dispatcher = Arc::new(dispatcher);
    let retries = tokio::spawn(dispatcher.clone().run_retries(shutdown.clone()));
    let options = LoopOptions { max_in_flight: dispatcher.config.max_in_flight, ordered_by_key: false, ..Default::default() };
    let d = dispatcher.clone();
    run_consumer("dispatcher", consumer, options, shutdown, move |msg, _order| {
        let d = d.clone();
        async move {
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = d.handle(&msg).await {
                tracing::warn!(error = %e, "dispatcher: recording the delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    })
    .await;
    let _ = retries.await;
    Ok(())
}
