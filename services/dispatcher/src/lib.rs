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
pub mod privacy;
pub mod service;
pub mod ssrf;

use bytes::Bytes;
use chrono::DateTime;
use chrono::Utc;
use hookmesh_bus::registry::ConfigView;
use hookmesh_bus::stage::{run_consumer, unreadable, until_ok, LoopOptions, OrderRelease};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::breaker::{Admission, BreakerPolicy, Transition};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, DeliveryStatus, ErrorClass, RenderedRequest};
use hookmesh_core::event::{operational_event, EventType};
use hookmesh_core::health::HealthSample;
use hookmesh_core::retry::{decide, Decision};
use hookmesh_core::signing::secret_key;
use hookmesh_core::webhook::Ordering;
use hookmesh_core::webhook::Webhook;
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

/// How long a delivery queues for a busy endpoint's concurrency before it is deferred.
const PERMIT_WAIT: Duration = Duration::from_millis(250);

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
    pub cipher: Option<hookmesh_bus::secrets::SecretCipher>,
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
}

/// What the gate says about sending now.
enum Gate {
    Go(Option<OwnedSemaphorePermit>),
    Wait(Duration),
}

/// One endpoint as this process sees it.
struct EndpointLocal {
    limit: u32,
    permits: Arc<Semaphore>,
    /// Moving average of response times, in ms (for spacing out busy-endpoint waits).
    avg_ms: AtomicU64,
}

impl EndpointLocal {
    fn new(limit: u32) -> Self {
        EndpointLocal { limit, permits: Arc::new(Semaphore::new(limit as usize)), avg_ms: AtomicU64::new(100) }
    }

    fn observe(&self, ms: u64) {
        let old = self.avg_ms.load(AtomicOrdering::Relaxed);
        self.avg_ms.store((old * 7 + ms) / 8, AtomicOrdering::Relaxed);
    }

    /// How long a delivery waits when the endpoint is at its concurrency: about one response
    /// time, jittered, so a backlog drains at the endpoint's pace without polling hot.
    fn busy_wait(&self) -> Duration {
        let base = self.avg_ms.load(AtomicOrdering::Relaxed).clamp(20, 5_000) as f64;
        Duration::from_millis((base * (0.5 + rand::random::<f64>())) as u64)
    }
}

/// The lane of a `per_call` webhook's delivery: one call of one webhook.
fn lane_of(d: &Delivery) -> Option<String> {
    (d.request.policy.ordering == Ordering::PerCall)
        .then(|| format!("{}/{}", d.webhook_id, d.call_id.as_deref().unwrap_or(&d.event_id)))
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

/// Signing keys of the webhook's active secrets.
pub fn signing_keys(webhook: &Webhook) -> Vec<Vec<u8>> {
    webhook.active_secrets(Utc::now()).filter_map(|s| secret_key(&s.secret).ok()).collect()
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
            store,
            topics,
            registry,
            client: client::build_client(config.address_policy.clone()),
            vault: Arc::new(privacy::Vault::new(config.cipher.clone())),
            config,
            endpoints: Arc::default(),
        }
    }

    /// Handles a request from `hookmesh.requests`. `order` is released once the delivery is
    /// recorded (and queued in its call's lane), so later records of the same key may start
    /// while this one's HTTP attempt is in flight.
    pub async fn deliver_new(
        &self,
        request: RenderedRequest,
        order: Option<&OrderRelease>,
    ) -> Result<(), DispatchError> {
        if let Some(existing) = self.store.get_delivery(&request.delivery_id).await? {
            if existing.status != DeliveryStatus::Pending || existing.next_attempt_at.is_some() {
                tracing::debug!(delivery = %existing.id, "already handled; redelivered request skipped");
                return Ok(());
            }
        }
        let now = Utc::now();
        let mut d = Delivery::new(request, now);
        if let Some(reason) = d.request.render_error.clone() {
            d.status = DeliveryStatus::Error;
            d.last_error = Some(reason);
            d.last_error_class = Some(ErrorClass::Render);
            self.save(&d).await?;
            metrics().completed("error");
            return Ok(());
        }
        self.save(&d).await?;
        let may_go = match lane_of(&d) {
            Some(lane) => self.store.lane_push(&lane, &d.id).await?,
            None => true,
        };
        if let Some(o) = order {
            o.release();
        }
        if !may_go {
            // An earlier event of this call is still being delivered; this one waits its turn.
            return Ok(());
        }
        self.attempt(d, AttemptTrigger::Scheduled).await
    }

    /// Runs one attempt of a pending or retrying delivery and settles it, unless the endpoint's
    /// circuit, rate limit or concurrency says to wait: then it is rescheduled without counting
    /// as an attempt, and nothing else waits for it.
    pub async fn attempt(&self, mut d: Delivery, trigger: AttemptTrigger) -> Result<(), DispatchError> {
        let now = Utc::now();
        let webhook = self.registry.webhook_at_least(&d.webhook_id, d.request.webhook_version, REGISTRY_WAIT).await;
        let stop_reason = match &webhook {
            None => Some((None, "the webhook was deleted".to_string())),
            Some(w) if !w.enabled => Some((None, "the webhook is disabled".to_string())),
            Some(_)
                if now
                    > d.created_at
                        + chrono::Duration::from_std(d.request.policy.total_timeout())
                            .unwrap_or(chrono::Duration::MAX) =>
            {
                Some((Some(ErrorClass::Expired), "the total timeout passed before the attempt could start".to_string()))
            }
            Some(_) => None,
        };
        if let Some((class, reason)) = stop_reason {
            d.last_error = Some(reason);
            d.last_error_class = class;
            return self.settle_error(d).await;
        }
        let webhook = webhook.expect("checked above");
        let permit = match self.gate(&webhook, &mut d, now).await? {
            Gate::Go(permit) => permit,
            Gate::Wait(wait) => return self.defer(d, wait).await,
        };
        let keys = signing_keys(&webhook);
        let span = otel::stage_span(
            "webhook.attempt",
            SpanKind::Client,
            d.request.traceparent.as_deref().map(str::as_bytes),
            hookmesh_bus::trace::child_of,
        );
        span.set_attribute("webhook.id", d.webhook_id.clone());
        span.set_attribute("delivery.id", d.id.clone());
        span.set_attribute("attempt", i64::from(d.attempts + 1));
        let mut request = d.request.clone();
        request.traceparent = d.request.traceparent.as_ref().map(|_| span.traceparent());
        metrics().in_flight.inc();
        let (attempt, result) =
            client::send(&self.client, &self.config.address_policy, &request, &keys, d.attempts + 1, trigger).await;
        metrics().in_flight.dec();
        if let Some(status) = attempt.response_status {
            span.set_attribute("http.response.status_code", i64::from(status));
        }
        if let Some(e) = &attempt.error {
            span.fail(e.clone());
        }
        drop(span);
        drop(permit);
        self.endpoint(&webhook).observe(attempt.duration_ms);
        self.record_attempt(&mut d, &attempt).await?;
        self.store
            .record_health(
                &d.webhook_id,
                &HealthSample {
                    at: attempt.started_at,
                    duration_ms: attempt.duration_ms,
                    status: attempt.response_status.unwrap_or(0),
                    success: attempt.succeeded(),
                },
            )
            .await?;
        // A refused address is this deployment's configuration, not the endpoint's health.
        if attempt.error_class != Some(hookmesh_core::delivery::ErrorClass::Blocked) {
            self.update_breaker(&webhook, attempt.succeeded()).await?;
        }
        let decision =
            decide(&d.request.policy, &result, d.attempts, d.created_at, Utc::now(), rand::random::<f64>() * 2.0 - 1.0);
        match decision {
            Decision::Delivered => {
                self.store.cancel_retry(&d.id).await?;
                d.status = DeliveryStatus::Success;
                d.next_attempt_at = None;
                metrics().completed("success");
                let latency = (Utc::now() - d.created_at).to_std().unwrap_or_default();
                metrics().delivery_latency.observe(latency.as_secs_f64());
                d.updated_at = Utc::now();
                self.save(&d).await?;
                self.advance_lane(&d).await?;
            }
            Decision::Retry(delay) => {
                let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                self.store.schedule_retry(&d.id, due).await?;
                d.status = DeliveryStatus::Retrying;
                d.next_attempt_at = Some(due);
                metrics().retries_scheduled.inc();
                d.updated_at = Utc::now();
                self.save(&d).await?;
            }
            Decision::GiveUp(reason) => {
                d.last_error = Some(format!("{}; gave up: {reason}", d.last_error.clone().unwrap_or_default()));
                // Reports about reports are not made: that could chain webhooks into a loop.
                if !d.event_type.is_operational() {
                    let details = json!({"delivery_id": d.id, "event_id": d.event_id, "event_type": d.event_type.as_str(),
                        "attempts": d.attempts, "last_status": d.last_status, "reason": reason});
                    self.emit(EventType::WebhookAttemptExhausted, &webhook, details).await;
                }
                self.settle_error(d).await?;
            }
            Decision::Disable => {
                d.last_error = Some("receiver answered 410 Gone; webhook disabled".to_string());
                self.settle_error(d).await?;
                self.disable_webhook(&webhook, "the receiver answered 410 Gone").await;
            }
        }
        Ok(())
    }

    /// Ends a delivery in `error` and lets the next event of its call go.
    async fn settle_error(&self, mut d: Delivery) -> Result<(), DispatchError> {
        self.store.cancel_retry(&d.id).await?;
        d.status = DeliveryStatus::Error;
        d.next_attempt_at = None;
        d.slot_at = None;
        d.updated_at = Utc::now();
        self.save(&d).await?;
        metrics().completed("error");
        let shown = self.vault.for_display(&d);
        let error = shown.last_error.as_deref().unwrap_or("");
        tracing::info!(delivery = %d.id, webhook = %d.webhook_id, attempts = d.attempts, error, "delivery ended in error");
        self.advance_lane(&d).await
    }

    /// A finished delivery of a `per_call` webhook hands its call's lane to the next event.
    async fn advance_lane(&self, d: &Delivery) -> Result<(), DispatchError> {
        if let Some(lane) = lane_of(d) {
            if let Some(next) = self.store.lane_pop(&lane, &d.id).await? {
                self.store.schedule_retry(&next, Utc::now()).await?;
            }
        }
        Ok(())
    }

    /// Reschedules without an attempt (circuit open, rate limit, endpoint busy).
    async fn defer(&self, mut d: Delivery, wait: Duration) -> Result<(), DispatchError> {
        let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        self.store.schedule_retry(&d.id, due).await?;
        d.next_attempt_at = Some(due);
        d.updated_at = Utc::now();
        self.save(&d).await?;
        metrics().deferred.inc();
        Ok(())
    }

    /// Circuit breaker, then rate limit, then this process's concurrency for the endpoint.
    async fn gate(&self, webhook: &Webhook, d: &mut Delivery, now: DateTime<Utc>) -> Result<Gate, DispatchError> {
        // Atomic in the store, so of many deliveries due at once exactly one becomes the probe.
        let policy = self.config.breaker;
        let (before, _) = self
            .store
            .update_breaker(&webhook.id, &move |b| {
                b.admit(now, &policy);
            })
            .await?;
        match before.clone().admit(now, &policy) {
            Admission::Go | Admission::Probe => {}
            Admission::Wait(w) => return Ok(Gate::Wait(w)),
        }
        if let Some(rl) = &webhook.policy.rate_limit {
            match d.slot_at {
                // The reserved slot has come (a few ms early is the retry loop's granularity).
                Some(slot) if slot <= now + chrono::Duration::milliseconds(5) => d.slot_at = None,
                Some(slot) => return Ok(Gate::Wait((slot - now).to_std().unwrap_or_default())),
                None => {
                    let wait = self.store.rate_reserve(&webhook.id, rl.per_second, rl.burst.max(1), now).await?;
                    if wait > Duration::from_millis(1) {
                        d.slot_at = Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
                        return Ok(Gate::Wait(wait));
                    }
                }
            }
        }
        let endpoint = self.endpoint(webhook);
        if let Ok(p) = endpoint.permits.clone().try_acquire_owned() {
            return Ok(Gate::Go(Some(p)));
        }
        // A busy but fast endpoint frees a permit within moments: queue for it briefly rather
        // than going through the retry schedule. A slow one does not, and the delivery is
        // deferred, so it holds a slot of the consume loop for at most this long.
        match tokio::time::timeout(PERMIT_WAIT, endpoint.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Gate::Go(Some(p))),
            _ => Ok(Gate::Wait(endpoint.busy_wait())),
        }
    }

    /// This process's state of one endpoint (concurrency permits, response-time average).
    fn endpoint(&self, webhook: &Webhook) -> Arc<EndpointLocal> {
        let limit = webhook.policy.max_concurrency.unwrap_or(self.config.endpoint_concurrency).max(1);
        let mut map = self.endpoints.lock();
        match map.get(&webhook.id) {
            Some(e) if e.limit == limit => e.clone(),
            _ => {
                let e = Arc::new(EndpointLocal::new(limit));
                map.insert(webhook.id.clone(), e.clone());
                e
            }
        }
    }

    async fn update_breaker(&self, webhook: &Webhook, success: bool) -> Result<(), DispatchError> {
        // Atomic in the store, so failures finishing together are all counted.
        let policy = self.config.breaker;
        let now = Utc::now();
        let (before, breaker) = self
            .store
            .update_breaker(&webhook.id, &move |b| {
                b.record(success, now, &policy);
            })
            .await?;
        let transition = before.clone().record(success, now, &policy);
        match transition {
            Transition::None => {}
            Transition::Opened => {
                metrics().circuits.get_or_create(&hookmesh_telemetry::metrics::CircuitLabel { state: "open" }).inc();
                tracing::warn!(webhook = %webhook.id, failures = breaker.consecutive_failures, "circuit opened");
                let details = json!({"circuit": "open", "consecutive_failures": breaker.consecutive_failures,
                    "failing_since": breaker.failing_since});
                self.emit(EventType::WebhookEndpointFailing, webhook, details).await;
            }
            Transition::Closed => {
                {
                    let open =
                        metrics().circuits.get_or_create(&hookmesh_telemetry::metrics::CircuitLabel { state: "open" });
                    if open.get() > 0 {
                        open.dec();
                    }
                }
                tracing::info!(webhook = %webhook.id, "circuit closed; pulling waiting retries forward");
                let pulled = self.pull_forward(&webhook.id).await?;
                self.emit(
                    EventType::WebhookEndpointRecovered,
                    webhook,
                    json!({"circuit": "closed", "retries_pulled_forward": pulled}),
                )
                .await;
            }
            Transition::Disable => {
                let reason = format!(
                    "failing without a success for {} days",
                    self.config.breaker.disable_after.as_secs() / 86_400
                );
                self.disable_webhook(webhook, &reason).await;
            }
        }
        Ok(())
    }

    /// Makes every waiting retry of an endpoint due now (its circuit just closed).
    async fn pull_forward(&self, webhook_id: &str) -> Result<u64, DispatchError> {
        let now = Utc::now();
        let mut pulled = 0;
        for status in [DeliveryStatus::Retrying, DeliveryStatus::Pending] {
            let mut before = None;
            loop {
                let q = DeliveryQuery {
                    webhook_id: Some(webhook_id.to_string()),
                    status: Some(status),
                    before: before.clone(),
                    limit: 500,
                    ..Default::default()
                };
                let page = self.store.list_deliveries(&q).await?;
                let Some(last) = page.last() else { break };
                before = Some(last.id.clone());
                for d in page.iter().filter(|d| d.next_attempt_at.is_some_and(|t| t > now)) {
                    self.store.schedule_retry(&d.id, now).await?;
                    pulled += 1;
                }
            }
        }
        Ok(pulled)
    }

    /// Publishes an operational event about `webhook` into `hookmesh.events`, so its tenant can
    /// subscribe a webhook to it. Best effort: a failure is logged, never retried into a loop.
    async fn emit(&self, event_type: EventType, webhook: &Webhook, details: serde_json::Value) {
        let serde_json::Value::Object(details) = details else { return };
        let event = operational_event(
            event_type,
            &webhook.tenant_id,
            &webhook.id,
            &webhook.name,
            &webhook.request.url,
            details,
            Utc::now(),
        );
        let payload = serde_json::to_vec(&event).expect("events serialise");
        let record = Record::new(event.partition_key().to_string(), Bytes::from(payload))
            .with_header(hookmesh_bus::trace::TRACEPARENT, hookmesh_bus::trace::new_traceparent().into_bytes());
        match self.bus.publish(&self.topics.events, record).await {
            Ok(_) => metrics().operational_event(event_type.as_str()),
            Err(e) => {
                tracing::warn!(webhook = %webhook.id, event = %event_type, error = %e, "operational event not published")
            }
        }
    }

    /// Stores `d` (in its working form) as the delivery log keeps it (see [`privacy`]).
    pub async fn save(&self, d: &Delivery) -> Result<(), DispatchError> {
        Ok(self.store.put_delivery(&self.vault.for_storage(d)).await?)
    }

    /// A stored delivery in its working form.
    pub async fn load(&self, id: &str) -> Result<Option<Delivery>, DispatchError> {
        match self.store.get_delivery(id).await? {
            Some(mut d) => {
                self.vault.open(&mut d).map_err(DispatchError::Sealed)?;
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// Appends an attempt to the log and the history stream, updating the delivery's summary.
    pub async fn record_attempt(&self, d: &mut Delivery, attempt: &Attempt) -> Result<(), DispatchError> {
        d.attempts += 1;
        d.last_status = attempt.response_status;
        d.last_error = attempt.error.clone();
        d.last_error_class = attempt.error_class;
        let attempt = self.vault.attempt_for_storage(d, attempt);
        let attempt = attempt.as_ref();
        self.store.add_attempt(&d.id, attempt).await?;
        metrics().attempt(if attempt.succeeded() { "success" } else { "failure" }, client::class_label(attempt));
        metrics().response_time.observe(attempt.duration_ms as f64 / 1000.0);
        // The history stream is best effort: the delivery log is the record of truth, and a
        // failed publish must not cause the HTTP request to be sent again.
        let entry = serde_json::json!({
            "delivery_id": d.id, "webhook_id": d.webhook_id, "tenant_id": d.tenant_id,
            "event_id": d.event_id, "attempt": attempt,
        });
        if let Err(e) =
            self.bus.publish(&self.topics.attempts, Record::new(d.id.clone(), Bytes::from(entry.to_string()))).await
        {
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
            Ok(_) => {
                tracing::warn!(webhook = %webhook.id, reason, "webhook disabled");
                self.emit(EventType::WebhookEndpointDisabled, webhook, json!({"reason": reason})).await;
            }
            Err(e) => tracing::warn!(webhook = %webhook.id, error = %e, "could not disable webhook"),
        }
    }

    async fn handle(&self, msg: &Message, order: Option<&OrderRelease>) -> Result<(), DispatchError> {
        let Some(payload) = &msg.payload else { return Ok(()) };
        match serde_json::from_slice::<RenderedRequest>(payload) {
            Ok(request) => self.deliver_new(request, order).await,
            Err(e) => {
                self.bus.publish(&self.topics.dlq, unreadable(msg, "request", e)).await?;
                Ok(())
            }
        }
    }

    /// Claims due retries and runs them until `shutdown`.
    pub async fn run_retries(self: Arc<Self>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut rounds: u64 = 0;
        loop {
            while tasks.try_join_next().is_some() {}
            rounds += 1;
            if rounds % 50 == 1 {
                if let Ok(n) = self.store.retry_backlog().await {
                    metrics().retry_backlog.set(n as i64);
                }
            }
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
        let _ =
            tokio::time::timeout(Duration::from_secs(10), async { while tasks.join_next().await.is_some() {} }).await;
    }

    async fn run_retry(&self, id: &str) -> Result<(), DispatchError> {
        // Pending: deferred (circuit, rate limit, busy endpoint) or released from its call's lane.
        let due = |d: &Delivery| matches!(d.status, DeliveryStatus::Retrying | DeliveryStatus::Pending);
        let Some(d) = self.load(id).await?.filter(due) else {
            self.store.cancel_retry(id).await?;
            return Ok(());
        };
        let trigger =
            if d.status == DeliveryStatus::Retrying { AttemptTrigger::Retry } else { AttemptTrigger::Scheduled };
        let span = hookmesh_bus::trace::log_span("dispatcher", d.request.traceparent.as_deref().map(str::as_bytes));
        self.attempt(d, trigger).instrument(span).await
    }
}

/// Consumes `hookmesh.requests` and runs the retry loop until `shutdown`.
pub async fn run(dispatcher: Dispatcher, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let consumer = dispatcher.bus.subscribe(&dispatcher.topics.requests, &group).await?;
    let dispatcher = Arc::new(dispatcher);
    let retries = tokio::spawn(dispatcher.clone().run_retries(shutdown.clone()));
    // Ordered by key (webhook/call) only until each delivery is recorded and queued in its
    // call's lane: see `deliver_new`.
    let options = LoopOptions {
        max_in_flight: dispatcher.config.max_in_flight,
        ordered_by_key: true,
        lag_from: Some((dispatcher.bus.clone(), dispatcher.topics.requests.clone())),
        ..Default::default()
    };
    let d = dispatcher.clone();
    run_consumer("dispatcher", consumer, options, shutdown, move |msg, order| {
        let d = d.clone();
        async move { until_ok("dispatcher: recording the delivery", || d.handle(&msg, Some(&order))).await }
    })
    .await;
    let _ = retries.await;
    Ok(())
}
