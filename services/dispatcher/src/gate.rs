//! The gate before every attempt, in order: the endpoint's circuit breaker (shared by every
//! dispatcher, updated atomically in the store), the shared rate limit (GCRA reservations),
//! then this process's concurrency for the endpoint. A "wait" reschedules the delivery
//! without counting an attempt. Also the breaker's transitions after an attempt: opening
//! emits `webhook.endpoint_failing`, closing pulls the endpoint's waiting retries forward.

use super::*;

/// How long a delivery queues for a busy endpoint's concurrency before it is deferred.
const PERMIT_WAIT: Duration = Duration::from_millis(250);

/// What the gate says about sending now.
pub(crate) enum Gate {
    /// Send now, holding the endpoint's permit; with the circuit as the gate left it.
    Go(Option<OwnedSemaphorePermit>, Breaker),
    Wait(Duration),
}

/// One endpoint as this process sees it.
pub(crate) struct EndpointLocal {
    limit: u32,
    permits: Arc<Semaphore>,
    /// Moving average of response times, in ms (for spacing out busy-endpoint waits).
    avg_ms: AtomicU64,
}

impl EndpointLocal {
    pub(crate) fn new(limit: u32) -> Self {
        EndpointLocal { limit, permits: Arc::new(Semaphore::new(limit as usize)), avg_ms: AtomicU64::new(100) }
    }

    pub(crate) fn observe(&self, ms: u64) {
        let old = self.avg_ms.load(AtomicOrdering::Relaxed);
        self.avg_ms.store((old * 7 + ms) / 8, AtomicOrdering::Relaxed);
    }

    /// How long a delivery waits when the endpoint is at its concurrency: about one response
    /// time, jittered, so a backlog drains at the endpoint's pace without polling hot.
    pub(crate) fn busy_wait(&self) -> Duration {
        let base = self.avg_ms.load(AtomicOrdering::Relaxed).clamp(20, 5_000) as f64;
        Duration::from_millis((base * (0.5 + rand::random::<f64>())) as u64)
    }
}

impl Dispatcher {
    /// Circuit breaker, then rate limit, then this process's concurrency for the endpoint.
    pub(crate) async fn gate(
        &self,
        webhook: &Webhook,
        d: &mut Delivery,
        now: DateTime<Utc>,
    ) -> Result<Gate, DispatchError> {
        // Atomic in the store, so of many deliveries due at once exactly one becomes the probe.
        let policy = self.config.breaker;
        let (before, admitted) = self
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
            return Ok(Gate::Go(Some(p), admitted));
        }
        // A busy but fast endpoint frees a permit within moments: queue for it briefly rather
        // than going through the retry schedule. A slow one does not, and the delivery is
        // deferred, so it holds a slot of the consume loop for at most this long.
        match tokio::time::timeout(PERMIT_WAIT, endpoint.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Gate::Go(Some(p), admitted)),
            _ => Ok(Gate::Wait(endpoint.busy_wait())),
        }
    }

    /// This process's state of one endpoint (concurrency permits, response-time average).
    pub(crate) fn endpoint(&self, webhook: &Webhook) -> Arc<EndpointLocal> {
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

    /// Records an attempt's outcome in the endpoint's circuit. `seen`: the circuit as the
    /// gate left it for this attempt. A success on a circuit that was closed and clean changes
    /// nothing, so it costs no store round trip (should another dispatcher have opened the
    /// circuit meanwhile, it stays open until its own probe, the conservative side).
    pub(crate) async fn update_breaker(
        &self,
        webhook: &Webhook,
        success: bool,
        seen: Option<&Breaker>,
    ) -> Result<(), DispatchError> {
        // Atomic in the store, so failures finishing together are all counted.
        let policy = self.config.breaker;
        let now = Utc::now();
        if let Some(seen) = seen.filter(|_| success) {
            let mut after = seen.clone();
            after.record(true, now, &policy);
            if after == *seen {
                return Ok(());
            }
        }
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
    pub(crate) async fn pull_forward(&self, webhook_id: &str) -> Result<u64, DispatchError> {
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
}
