//! The delivery log as the dispatcher writes it: deliveries and attempts go through the
//! privacy vault (masked for storage, the exact request sealed), attempts also to the
//! `hookmesh.attempts` history stream when the bus is Kafka (see
//! [`DispatcherConfig::attempt_history`]).

use super::*;

impl Dispatcher {
    /// Stores `d` (in its working form) as the delivery log keeps it (see [`privacy`]).
    pub async fn save(&self, d: &Delivery) -> Result<(), DispatchError> {
        Ok(self.store.put_delivery(&self.vault.for_storage(d)).await?)
    }

    /// Records a new delivery (as [`Dispatcher::save`] does) unless the log has it; answers
    /// the stored one, in its working form.
    pub async fn create(&self, d: &Delivery) -> Result<Option<Delivery>, DispatchError> {
        match self.store.create_delivery(&self.vault.for_storage(d)).await? {
            Some(mut existing) => {
                self.vault.open(&mut existing).map_err(DispatchError::Sealed)?;
                Ok(Some(existing))
            }
            None => Ok(None),
        }
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

    /// Stores `d` (in its working form) with `attempt` (as [`Dispatcher::note_attempt`] gave
    /// it) in one write: the log never shows an attempt without the status it led to.
    pub async fn save_attempt(&self, d: &Delivery, attempt: &Attempt) -> Result<(), DispatchError> {
        Ok(self.store.record_attempt(&self.vault.for_storage(d), attempt).await?)
    }

    /// Takes an attempt into the delivery's summary, the metrics and the history stream;
    /// answers it as the log stores it, for [`Dispatcher::save_attempt`].
    pub async fn note_attempt(&self, d: &mut Delivery, attempt: &Attempt) -> Attempt {
        d.attempts += 1;
        d.last_status = attempt.response_status;
        d.last_error = attempt.error.clone();
        d.last_error_class = attempt.error_class;
        let stored = self.vault.attempt_for_storage(d, attempt).into_owned();
        let attempt = &stored;
        metrics().attempt(if attempt.succeeded() { "success" } else { "failure" }, client::class_label(attempt));
        metrics().response_time.observe(attempt.duration_ms as f64 / 1000.0);
        if !self.config.attempt_history {
            return stored;
        }
        // The history stream is best effort: the delivery log is the record of truth, and a
        // failed publish must not cause the HTTP request to be sent again.
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            delivery_id: &'a str,
            webhook_id: &'a str,
            tenant_id: &'a str,
            event_id: &'a str,
            attempt: &'a Attempt,
        }
        let entry = Entry {
            delivery_id: &d.id,
            webhook_id: &d.webhook_id,
            tenant_id: &d.tenant_id,
            event_id: &d.event_id,
            attempt,
        };
        let entry = serde_json::to_vec(&entry).unwrap_or_default();
        if let Err(e) = self.bus.publish(&self.topics.attempts, Record::new(d.id.clone(), Bytes::from(entry))).await {
            tracing::warn!(error = %e, delivery = %d.id, "attempt history publish failed");
        }
        stored
    }
}
