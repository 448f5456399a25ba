//! A webhook's own delivery-log retention (`policy.retention_days`): every
//! [`RETENTION_SWEEP`] the dispatcher removes, for each webhook that sets it, the deliveries
//! first triggered more than that many days ago, with their attempts. The deployment's
//! retention (`HOOKMESH_RETENTION_DAYS`, applied by the store itself) still caps every
//! webhook; this only shortens it. Several dispatchers may sweep at once: removing what is
//! already gone removes nothing.

use super::*;

/// How often the per-webhook retention runs.
pub const RETENTION_SWEEP: Duration = Duration::from_secs(60);
/// Deliveries one store call removes at most; a sweep repeats until a webhook has no more.
const BATCH: usize = 1000;

impl Dispatcher {
    /// Applies every webhook's own retention once; answers how many deliveries went.
    pub async fn sweep_retention(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let snapshot = self.registry.snapshot();
        let mut removed = 0;
        for w in snapshot.webhooks.values() {
            let Some(days) = w.policy.retention_days else { continue };
            let before = now - chrono::Duration::days(i64::from(days));
            loop {
                let n = self.store.expire_webhook(&w.id, before, BATCH).await?;
                removed += n;
                if n < BATCH {
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "per-webhook retention removed old deliveries");
        }
        Ok(removed)
    }

    /// Sweeps every [`RETENTION_SWEEP`] until `shutdown`.
    pub(crate) async fn run_retention(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RETENTION_SWEEP) => {}
            }
            if let Err(e) = self.sweep_retention(Utc::now()).await {
                tracing::warn!(error = %e, "per-webhook retention failed; it runs again in a minute");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookmesh_bus::memory::MemoryBus;
    use hookmesh_core::delivery::{CallInfo, RenderedRequest};
    use hookmesh_core::webhook::Method;
    use hookmesh_store::MemoryStore;

    fn delivery(id: &str, webhook: &str, at: DateTime<Utc>) -> Delivery {
        let request = RenderedRequest {
            delivery_id: id.into(),
            webhook_id: webhook.into(),
            webhook_version: 1,
            tenant_id: "acme".into(),
            event_id: format!("e-{id}"),
            event_type: EventType::CallEnded,
            call_id: None,
            call: CallInfo::default(),
            first_trigger_at: at,
            method: Method::Post,
            url: "https://crm.example.com/".into(),
            headers: Vec::new(),
            body: String::new(),
            success: Default::default(),
            policy: Default::default(),
            render_error: None,
            traceparent: None,
            personal: Vec::new(),
            context: None,
            hold: None,
            data_points: None,
        };
        let mut d = Delivery::new(request, at);
        d.created_at = at;
        d
    }

    #[tokio::test]
    async fn a_webhook_keeps_its_deliveries_for_its_own_days_only() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let topics = Topics::new("hookmesh");
        for spec in topics.specs(1) {
            bus.ensure_topic(&spec).await.unwrap();
        }
        let shutdown = CancellationToken::new();
        let registry = ConfigView::start(bus.clone(), &topics.config, None, shutdown.clone()).await.unwrap();
        for (id, policy) in [("short", json!({"retention_days": 7})), ("default", json!({}))] {
            let w: Webhook = serde_json::from_value(json!({
                "id": id, "tenant_id": "acme", "name": id, "version": 1, "request": {"url": "https://crm.example.com/"},
                "policy": policy, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            }))
            .unwrap();
            registry.put_webhook(w, 0).await.unwrap();
        }
        let now = Utc::now();
        for (id, webhook, days) in [("s-old", "short", 8), ("s-new", "short", 6), ("d-old", "default", 8)] {
            store.put_delivery(&delivery(id, webhook, now - chrono::Duration::days(days))).await.unwrap();
        }
        let dispatcher = Dispatcher::new(bus, store.clone(), topics, registry, DispatcherConfig::default());
        assert_eq!(dispatcher.sweep_retention(now).await.unwrap(), 1);
        assert!(store.get_delivery("s-old").await.unwrap().is_none(), "past the webhook's 7 days");
        assert!(store.get_delivery("s-new").await.unwrap().is_some());
        assert!(store.get_delivery("d-old").await.unwrap().is_some(), "the deployment's 30 days apply");
        assert_eq!(dispatcher.sweep_retention(now).await.unwrap(), 0, "a second sweep finds nothing");
        shutdown.cancel();
    }
}
