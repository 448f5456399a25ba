//! Post-call enrichment in the dispatcher, the stage that holds the store (the design:
//! `hookmesh_core::enrich`, and `docs/architecture.md`).
//!
//! - **Data points.** A data-point request merges its values into the call's context
//!   (`data.<name>`, JSON text) and wakes the held deliveries of its webhook and call by putting
//!   them due now in the retry schedule. Nothing is sent or logged for it.
//! - **Holding.** A held delivery first writes its wake-up marker into the call's context, then
//!   reads the context; while names are missing and the webhook's `max_wait` has not passed
//!   since the first trigger, it goes back into the retry schedule without an attempt (woken by
//!   an arrival, or after at most `POLL`).
//! - **Firing.** With every name there, or at the deadline, the arrived values are merged into
//!   the event's `data`, the request is rendered as the renderer renders any other (the
//!   webhook and template as the registry holds them now), the reason is recorded on the hold,
//!   and the attempt goes on; from then on it is an ordinary delivery, its total timeout
//!   counting from the firing.

use super::*;
use hookmesh_core::context::CONTEXT_TTL;
use hookmesh_core::delivery::DeliveryJob;
use hookmesh_core::enrich::{self, Verdict};
use std::collections::BTreeMap;

/// What a hold says about an attempt about to start.
pub(crate) enum HoldStep {
    /// Not held, or fired now: go on.
    Ready,
    /// Still waiting: look again after this long.
    Wait(Duration),
}

impl Dispatcher {
    /// Merges a data-point request's values into its call's context and wakes the deliveries
    /// of its webhook held for that call.
    pub(crate) async fn record_data_points(&self, request: &RenderedRequest) -> Result<(), DispatchError> {
        let (Some(points), Some(call)) = (&request.data_points, &request.call_id) else { return Ok(()) };
        if points.is_empty() {
            return Ok(());
        }
        let values: BTreeMap<String, String> =
            points.iter().map(|(name, json)| (enrich::context_name(name), json.clone())).collect();
        let refused = self.store.context_merge(&request.tenant_id, call, &values, CONTEXT_TTL).await?;
        if refused > 0 {
            tracing::warn!(tenant = %request.tenant_id, call = %call, refused, "call context is full; data points not kept");
        }
        let context = self.store.context_get(&request.tenant_id, call).await?;
        let now = Utc::now();
        for id in enrich::held_deliveries(&request.webhook_id, context.keys()) {
            self.store.schedule_retry(&id, now).await?;
        }
        Ok(())
    }

    /// Holds `d` until its data points arrive or its deadline passes, then renders it with what
    /// arrived. `webhook` is the webhook as the registry holds it now.
    pub(crate) async fn resolve_hold(
        &self,
        d: &mut Delivery,
        webhook: &Arc<Webhook>,
        now: DateTime<Utc>,
    ) -> Result<HoldStep, DispatchError> {
        let Some(hold) = d.request.hold.as_mut() else { return Ok(HoldStep::Ready) };
        if hold.fired.is_some() {
            return Ok(HoldStep::Ready);
        }
        let call = d.call_id.clone().unwrap_or_default();
        if !hold.marked {
            let marker = BTreeMap::from([(enrich::hold_marker(&d.webhook_id, &d.id), "1".to_string())]);
            self.store.context_merge(&d.tenant_id, &call, &marker, CONTEXT_TTL).await?;
            hold.marked = true;
        }
        // A call whose context is full (64 names) refuses the marker: the delivery then finds
        // its data points on its next look (at most `POLL` later) instead of being woken.
        let values = self.store.context_get(&d.tenant_id, &call).await?;
        let (points, reason) = match enrich::decide(hold, d.created_at, now, &values) {
            Verdict::Wait(wait) => return Ok(HoldStep::Wait(wait)),
            Verdict::Fire { points, reason } => (points, reason),
        };
        let Some(mut event) = hold.event.take() else {
            // Only a stored form without its sealed original lacks the event: nothing to render.
            let reason = "the held event is not in the stored delivery".to_string();
            d.request.render_error = Some(reason.clone());
            d.last_error = Some(reason);
            d.last_error_class = Some(ErrorClass::Render);
            return Ok(HoldStep::Ready);
        };
        enrich::merge(&mut event, points);
        let job = DeliveryJob {
            delivery_id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            webhook_version: webhook.version,
            tenant_id: d.tenant_id.clone(),
            event,
            first_trigger_at: d.request.first_trigger_at,
            data_points: false,
        };
        let rendered = hookmesh_renderer::render_job(&self.registry, &self.compiled, webhook, &job);
        let mut rendered = hookmesh_renderer::with_personal(&self.registry, rendered, &job.event);
        let mut hold = d.request.hold.take().expect("held");
        hold.fired_at = Some(now);
        hold.fired = Some(reason);
        rendered.hold = Some(hold);
        rendered.traceparent = d.request.traceparent.take();
        d.request = rendered;
        if let Some(e) = d.request.render_error.clone() {
            metrics().render_errors.inc();
            d.last_error = Some(e);
            d.last_error_class = Some(ErrorClass::Render);
        }
        Ok(HoldStep::Ready)
    }
}
