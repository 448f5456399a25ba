//! The retry loop: claims due retries from the store with a lease and runs each through the
//! same attempt path as a new delivery. A dispatcher that dies with claims in hand gives them
//! back when their lease ends.

use super::*;

impl Dispatcher {
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

    pub(crate) async fn run_retry(&self, id: &str) -> Result<(), DispatchError> {
        // Pending: deferred (circuit, rate limit, busy endpoint) or released from its call's lane.
        let due = |d: &Delivery| matches!(d.status, DeliveryStatus::Retrying | DeliveryStatus::Pending);
        let Some(d) = self.load(id).await?.filter(due) else {
            self.store.cancel_retry(id).await?;
            return Ok(());
        };
        let trigger =
            if d.status == DeliveryStatus::Retrying { AttemptTrigger::Retry } else { AttemptTrigger::Scheduled };
        let span = hookmesh_bus::trace::log_span("dispatcher", d.request.traceparent.as_deref().map(str::as_bytes));
        self.attempt(d, trigger, true, true).instrument(span).await
    }
}
