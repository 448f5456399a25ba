//! In-memory [`Store`] for standalone mode. Same semantics as the Redis store; nothing
//! survives the process.

use crate::{DeliveryQuery, Result, Retention, Store};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookmesh_core::delivery::{Attempt, Delivery};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct MemoryStore {
    seen: Mutex<HashMap<String, Instant>>,
    log: Mutex<Log>,
    retries: Mutex<Retries>,
    retention: Retention,
}

#[derive(Default)]
struct Log {
    deliveries: HashMap<String, Delivery>,
    attempts: HashMap<String, Vec<Attempt>>,
    /// (created_at, id), for newest-first listing.
    order: BTreeSet<(DateTime<Utc>, String)>,
    per_webhook: HashMap<String, BTreeSet<(DateTime<Utc>, String)>>,
}

#[derive(Default)]
struct Retries {
    due: BTreeSet<(DateTime<Utc>, String)>,
    by_id: HashMap<String, DateTime<Utc>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_retention(retention: Retention) -> Self {
        MemoryStore { retention, ..Self::default() }
    }
}

impl Log {
    fn remove(&mut self, created_at: DateTime<Utc>, id: &str) {
        let key = (created_at, id.to_string());
        self.order.remove(&key);
        if let Some(d) = self.deliveries.remove(id) {
            if let Some(set) = self.per_webhook.get_mut(&d.webhook_id) {
                set.remove(&key);
            }
        }
        self.attempts.remove(id);
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        if seen.len() > 100_000 {
            seen.retain(|_, exp| *exp > now);
        }
        match seen.get(key) {
            Some(exp) if *exp > now => Ok(false),
            _ => {
                seen.insert(key.to_string(), now + ttl);
                Ok(true)
            }
        }
    }

    async fn forget_seen(&self, key: &str) -> Result<()> {
        self.seen.lock().remove(key);
        Ok(())
    }

    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        let mut log = self.log.lock();
        let mut d = delivery.clone();
        if let Some(existing) = log.deliveries.get(&d.id) {
            d.created_at = existing.created_at;
            d.request.first_trigger_at = existing.request.first_trigger_at;
            log.deliveries.insert(d.id.clone(), d);
        } else {
            // Stored before retention runs: a new delivery that is itself the oldest (past the
            // max age, or the oldest of a full webhook) is dropped like any other.
            log.deliveries.insert(d.id.clone(), d.clone());
            let key = (d.created_at, d.id.clone());
            log.order.insert(key.clone());
            let per = log.per_webhook.entry(d.webhook_id.clone()).or_default();
            per.insert(key);
            // Per-webhook cap: drop the oldest.
            let mut evict = Vec::new();
            while per.len() > self.retention.per_webhook {
                if let Some(oldest) = per.pop_first() {
                    evict.push(oldest);
                }
            }
            let cutoff =
                Utc::now() - chrono::Duration::from_std(self.retention.max_age).unwrap_or(chrono::Duration::MAX);
            while let Some(first) = log.order.first().cloned() {
                if first.0 >= cutoff {
                    break;
                }
                evict.push(first);
                log.order.pop_first();
            }
            for (at, id) in evict {
                log.remove(at, &id);
            }
        }
        Ok(())
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        Ok(self.log.lock().deliveries.get(id).cloned())
    }

    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        let mut log = self.log.lock();
        if log.deliveries.contains_key(delivery_id) {
            log.attempts.entry(delivery_id.to_string()).or_default().push(attempt.clone());
        }
        Ok(())
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        Ok(self.log.lock().attempts.get(delivery_id).cloned().unwrap_or_default())
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let log = self.log.lock();
        let index = match &q.webhook_id {
            Some(w) => match log.per_webhook.get(w) {
                Some(set) => set,
                None => return Ok(Vec::new()),
            },
            None => &log.order,
        };
        let upper = q.before.as_ref().and_then(|b| log.deliveries.get(b)).map(|d| (d.created_at, d.id.clone()));
        let iter: Box<dyn Iterator<Item = &(DateTime<Utc>, String)>> = match &upper {
            Some(u) => Box::new(index.range(..u.clone()).rev()),
            None => Box::new(index.iter().rev()),
        };
        let limit = if q.limit == 0 { 50 } else { q.limit };
        Ok(iter.filter_map(|(_, id)| log.deliveries.get(id)).filter(|d| q.matches(d)).take(limit).cloned().collect())
    }

    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()> {
        let mut r = self.retries.lock();
        if let Some(old) = r.by_id.insert(delivery_id.to_string(), due) {
            r.due.remove(&(old, delivery_id.to_string()));
        }
        r.due.insert((due, delivery_id.to_string()));
        Ok(())
    }

    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool> {
        let mut r = self.retries.lock();
        match r.by_id.remove(delivery_id) {
            Some(due) => {
                r.due.remove(&(due, delivery_id.to_string()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>> {
        let mut r = self.retries.lock();
        let claimed: Vec<(DateTime<Utc>, String)> =
            r.due.iter().take_while(|(due, _)| *due <= now).take(limit).cloned().collect();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        for (due, id) in &claimed {
            r.due.remove(&(*due, id.clone()));
            r.due.insert((until, id.clone()));
            r.by_id.insert(id.clone(), until);
        }
        Ok(claimed.into_iter().map(|(_, id)| id).collect())
    }

    async fn retry_backlog(&self) -> Result<usize> {
        Ok(self.retries.lock().by_id.len())
    }
}
