//! One delivery's story: a new request is attempted through the gate and settled as `success`,
//! a scheduled retry, or `error`, every outcome recorded before the input offset may be
//! committed.
//!
//! **When a new delivery is first written.** A delivery whose attempt can go at once (no
//! call lane, no hold for data points, no call context to wait for) is not recorded as
//! `pending` before it: the attempt's record creates it, in one write instead of two (on the
//! durable embedded store that was about 14 % of its CPU per delivery). Nothing is lost by
//! that: until the outcome is recorded the request's input offset is not committed, so a crash
//! consumes it again and the delivery is attempted again (a duplicate carries the same
//! `webhook-id`), exactly as when a `pending` record was left behind. What it changes is that
//! a fast first attempt is not seen `pending` in the log; one still running after
//! [`SHOW_PENDING_AFTER`] is recorded `pending` then, while it runs. Every path that schedules
//! the delivery (a deferral, a retry) records it before the schedule entry exists, since the
//! retry loop drops an entry whose delivery the log does not hold. Deliveries in a call lane,
//! held or waiting for context are recorded first, as the lane, the hold's wake-up marker and
//! the context wait refer to them by id.

use super::*;
use crate::gate::Gate;

/// How long a new delivery's first attempt may run before the log shows it `pending`.
pub const SHOW_PENDING_AFTER: Duration = Duration::from_secs(1);

/// The lane of a `per_call` webhook's delivery: one call of one webhook.
pub(crate) fn lane_of(d: &Delivery) -> Option<String> {
    (d.request.policy.ordering == Ordering::PerCall)
        .then(|| format!("{}/{}", d.webhook_id, d.call_id.as_deref().unwrap_or(&d.event_id)))
}

/// When a delivery's total timeout starts: its first trigger, or for a delivery held for data
/// points the moment it fired (`None` while it is held).
fn origin(d: &Delivery) -> Option<DateTime<Utc>> {
    match &d.request.hold {
        Some(hold) => hold.fired_at,
        None => Some(d.created_at),
    }
}

impl Dispatcher {
    /// Handles a request from `hookmesh.requests`. `order` is released once the delivery is
    /// recorded (and queued in its call's lane), so later records of the same key may start
    /// while this one's HTTP attempt is in flight.
    pub async fn deliver_new(
        &self,
        request: RenderedRequest,
        order: Option<&OrderRelease>,
    ) -> Result<(), DispatchError> {
        let now = Utc::now();
        let mut d = Delivery::new(request, now);
        if let Some(reason) = d.request.render_error.clone() {
            d.status = DeliveryStatus::Error;
            d.last_error = Some(reason);
            d.last_error_class = Some(ErrorClass::Render);
        }
        // One step records the new delivery (or, for one whose attempt goes at once, only
        // looks) and finds what an earlier consumption of this request (before a crash) left.
        let record_first = d.status == DeliveryStatus::Error
            || lane_of(&d).is_some()
            || d.request.hold.is_some()
            || d.request.context.is_some();
        let found = if record_first { self.create(&d).await? } else { self.load(&d.id).await? };
        let recorded = record_first || found.is_some();
        if let Some(existing) = found {
            if existing.status != DeliveryStatus::Pending || existing.next_attempt_at.is_some() {
                tracing::debug!(delivery = %existing.id, "already handled; redelivered request skipped");
                return Ok(());
            }
            if d.status == DeliveryStatus::Error {
                self.save(&d).await?;
            }
        }
        if d.status == DeliveryStatus::Error {
            metrics().completed("error");
            return Ok(());
        }
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
        self.attempt(d, AttemptTrigger::Scheduled, false, recorded).await
    }

    /// Runs one attempt of a pending or retrying delivery and settles it, unless the endpoint's
    /// circuit, rate limit or concurrency says to wait: then it is rescheduled without counting
    /// as an attempt, and nothing else waits for it. `claimed`: the delivery came from the retry
    /// schedule, whose entry a success removes; a new delivery has none, so its success costs
    /// no schedule write (an entry left by a crash is removed when it is claimed and found
    /// settled). `recorded`: the log holds the delivery (see the module docs for a new one
    /// that it does not hold yet).
    pub async fn attempt(
        &self,
        mut d: Delivery,
        trigger: AttemptTrigger,
        claimed: bool,
        mut recorded: bool,
    ) -> Result<(), DispatchError> {
        let now = Utc::now();
        let webhook = self.registry.webhook_at_least(&d.webhook_id, d.request.webhook_version, REGISTRY_WAIT).await;
        let stop_reason = match &webhook {
            None => Some((None, "the webhook was deleted".to_string())),
            Some(w) if !w.enabled => Some((None, "the webhook is disabled".to_string())),
            Some(_)
                if origin(&d).is_some_and(|o| {
                    now > o + chrono::Duration::from_std(d.request.policy.total_timeout())
                        .unwrap_or(chrono::Duration::MAX)
                }) =>
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
        match self.resolve_hold(&mut d, &webhook, now).await? {
            crate::enrich::HoldStep::Ready if d.request.render_error.is_some() => return self.settle_error(d).await,
            crate::enrich::HoldStep::Ready => {}
            crate::enrich::HoldStep::Wait(wait) => return self.defer_hold(d, wait).await,
        }
        match self.resolve_context(&mut d, now).await? {
            crate::context::ContextStep::Ready => {}
            crate::context::ContextStep::Wait(wait) => return self.defer(d, wait).await,
            crate::context::ContextStep::Failed => return self.settle_error(d).await,
        }
        let (permit, circuit) = match self.gate(&webhook, &mut d, now).await? {
            Gate::Go(permit, circuit) => (permit, circuit),
            Gate::Wait(wait) => {
                if !recorded {
                    self.save(&d).await?;
                }
                return self.defer(d, wait).await;
            }
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
        let send = client::send(&self.client, &self.config, &request, &keys, d.attempts + 1, trigger);
        let mut shown_pending = Ok(());
        let (mut attempt, result) = if recorded {
            send.await
        } else {
            tokio::pin!(send);
            tokio::select! {
                biased;
                sent = &mut send => sent,
                _ = tokio::time::sleep(SHOW_PENDING_AFTER) => {
                    // Still running: shown `pending` meanwhile (the request goes on).
                    let (saved, sent) = tokio::join!(self.save(&d), send);
                    shown_pending = saved;
                    recorded = true;
                    sent
                }
            }
        };
        metrics().in_flight.dec();
        shown_pending?;
        if let Some(status) = attempt.response_status {
            span.set_attribute("http.response.status_code", i64::from(status));
        }
        if let Some(e) = &attempt.error {
            span.fail(e.clone());
        }
        drop(span);
        drop(permit);
        self.endpoint(&webhook).observe(attempt.duration_ms);
        // Before the delivery can be marked delivered: a later delivery of the call that
        // waits for these values finds them once this one has succeeded.
        self.capture_context(&webhook, &d, &mut attempt).await?;
        // Stored below with the status it leads to, in one write.
        let stored = self.note_attempt(&mut d, &attempt).await;
        self.health
            .record(
                &d.webhook_id,
                HealthSample {
                    at: attempt.started_at,
                    duration_ms: attempt.duration_ms,
                    status: attempt.response_status.unwrap_or(0),
                    success: attempt.succeeded(),
                },
            )
            .await?;
        // A refused address is this deployment's configuration, not the endpoint's health.
        if attempt.error_class != Some(hookmesh_core::delivery::ErrorClass::Blocked) {
            self.update_breaker(&webhook, attempt.succeeded(), Some(&circuit)).await?;
        }
        let started = origin(&d).unwrap_or(d.created_at);
        let decision =
            decide(&d.request.policy, &result, d.attempts, started, Utc::now(), rand::random::<f64>() * 2.0 - 1.0);
        match decision {
            Decision::Delivered => {
                if claimed {
                    self.store.cancel_retry(&d.id).await?;
                }
                d.status = DeliveryStatus::Success;
                d.next_attempt_at = None;
                metrics().completed("success");
                let latency = (Utc::now() - d.created_at).to_std().unwrap_or_default();
                metrics().delivery_latency.observe(latency.as_secs_f64());
                d.updated_at = Utc::now();
                self.save_attempt(&d, &stored).await?;
                self.advance_lane(&d).await?;
            }
            Decision::Retry(delay) => {
                let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                if !recorded {
                    // Before the schedule entry: the retry loop drops one the log has no
                    // delivery for.
                    self.save(&d).await?;
                }
                self.store.schedule_retry(&d.id, due).await?;
                d.status = DeliveryStatus::Retrying;
                d.next_attempt_at = Some(due);
                metrics().retries_scheduled.inc();
                d.updated_at = Utc::now();
                self.save_attempt(&d, &stored).await?;
            }
            Decision::GiveUp(reason) => {
                d.last_error = Some(format!("{}; gave up: {reason}", d.last_error.clone().unwrap_or_default()));
                // Reports about reports are not made: that could chain webhooks into a loop.
                if !d.event_type.is_operational() {
                    let details = json!({"delivery_id": d.id, "event_id": d.event_id, "event_type": d.event_type.as_str(),
                        "attempts": d.attempts, "last_status": d.last_status, "reason": reason});
                    self.emit(EventType::WebhookAttemptExhausted, &webhook, details).await;
                }
                self.settle_error_after(d, Some(&stored)).await?;
            }
            Decision::Disable => {
                d.last_error = Some("receiver answered 410 Gone; webhook disabled".to_string());
                self.settle_error_after(d, Some(&stored)).await?;
                self.disable_webhook(&webhook, "the receiver answered 410 Gone").await;
            }
        }
        Ok(())
    }

    /// Ends a delivery in `error` and lets the next event of its call go.
    pub(crate) async fn settle_error(&self, d: Delivery) -> Result<(), DispatchError> {
        self.settle_error_after(d, None).await
    }

    /// [`Dispatcher::settle_error`], storing the attempt that ended it with it.
    pub(crate) async fn settle_error_after(
        &self,
        mut d: Delivery,
        attempt: Option<&Attempt>,
    ) -> Result<(), DispatchError> {
        self.store.cancel_retry(&d.id).await?;
        d.status = DeliveryStatus::Error;
        d.next_attempt_at = None;
        d.slot_at = None;
        d.updated_at = Utc::now();
        match attempt {
            Some(a) => self.save_attempt(&d, a).await?,
            None => self.save(&d).await?,
        }
        metrics().completed("error");
        let shown = self.vault.for_display(&d);
        let error = shown.last_error.as_deref().unwrap_or("");
        tracing::info!(delivery = %d.id, webhook = %d.webhook_id, attempts = d.attempts, error, "delivery ended in error");
        self.advance_lane(&d).await
    }

    /// A finished delivery of a `per_call` webhook hands its call's lane to the next event.
    pub(crate) async fn advance_lane(&self, d: &Delivery) -> Result<(), DispatchError> {
        if let Some(lane) = lane_of(d) {
            if let Some(next) = self.store.lane_pop(&lane, &d.id).await? {
                self.store.schedule_retry(&next, Utc::now()).await?;
            }
        }
        Ok(())
    }

    /// Puts a held delivery back to wait, then looks once more: a data point that arrived while
    /// it was deciding may have woken it before this reschedule replaced the wake-up.
    pub(crate) async fn defer_hold(&self, d: Delivery, wait: Duration) -> Result<(), DispatchError> {
        let (id, tenant, call, created) = (d.id.clone(), d.tenant_id.clone(), d.call_id.clone(), d.created_at);
        let hold = d.request.hold.clone();
        self.defer(d, wait).await?;
        if let (Some(hold), Some(call)) = (hold, call) {
            let values = self.store.context_get(&tenant, &call).await?;
            if let hookmesh_core::enrich::Verdict::Fire { .. } =
                hookmesh_core::enrich::decide(&hold, created, Utc::now(), &values)
            {
                self.store.schedule_retry(&id, Utc::now()).await?;
            }
        }
        Ok(())
    }

    /// Reschedules without an attempt (circuit open, rate limit, endpoint busy).
    pub(crate) async fn defer(&self, mut d: Delivery, wait: Duration) -> Result<(), DispatchError> {
        let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        self.store.schedule_retry(&d.id, due).await?;
        d.next_attempt_at = Some(due);
        d.updated_at = Utc::now();
        self.save(&d).await?;
        metrics().deferred.inc();
        Ok(())
    }
}
