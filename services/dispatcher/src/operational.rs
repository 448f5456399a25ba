//! Operational events: the dispatcher reports an endpoint's failures and recoveries as events
//! into `hookmesh.events`, so tenants can subscribe webhooks to their own failures. Best effort:
//! a failed publish is logged, never retried into a loop.

use super::*;

impl Dispatcher {
    /// Publishes an operational event about `webhook` into `hookmesh.events`, so its tenant can
    /// subscribe a webhook to it. Best effort: a failure is logged, never retried into a loop.
    pub(crate) async fn emit(&self, event_type: EventType, webhook: &Webhook, details: serde_json::Value) {
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

    pub(crate) async fn disable_webhook(&self, webhook: &Webhook, reason: &str) {
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
}
