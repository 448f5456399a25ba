//! In-memory [`Store`](crate::Store) for standalone mode. Same semantics as the Redis store; nothing
//! survives the process.

use crate::{DeliveryLog, DeliveryQuery, HotState, Result, Retention};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookmesh_core::breaker::Breaker;
use hookmesh_core::context::MAX_NAMES_PER_CALL;
use hookmesh_core::delivery::{Attempt, Delivery};
use hookmesh_core::health::HealthSample;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct MemoryStore {
    seen: Mutex<HashMap<String, Instant>>,
    log: Mutex<Log>,
    retries: Mutex<Retries>,
    retention: Retention,
    /// Rate-limit state: key → theoretical arrival time (unix ns).
    rates: Mutex<HashMap<String, i64>>,
    health: Mutex<HashMap<String, VecDeque<HealthSample>>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    lanes: Mutex<HashMap<String, VecDeque<String>>>,
    contexts: Mutex<HashMap<(String, String), CallContext>>,
}

/// A call's context under (tenant, call id): its expiry and values.
type CallContext = (Instant, BTreeMap<String, String>);

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
impl HotState for MemoryStore {
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

    async fn is_seen(&self, key: &str) -> Result<bool> {
        Ok(self.seen.lock().get(key).is_some_and(|exp| *exp > Instant::now()))
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

    async fn rate_reserve(&self, key: &str, per_second: f64, burst: u32, now: DateTime<Utc>) -> Result<Duration> {
        // Unix ns covers 1677–2262; beyond, the clamp keeps the arithmetic monotonic.
        let now_ns = now.timestamp_nanos_opt().unwrap_or(if now.timestamp() < 0 { i64::MIN } else { i64::MAX });
        let mut rates = self.rates.lock();
        let (tat, wait) = crate::gcra_reserve(rates.get(key).copied(), now_ns, per_second, burst);
        rates.insert(key.to_string(), tat);
        Ok(Duration::from_nanos(wait as u64))
    }

    async fn record_health(&self, endpoint: &str, sample: &HealthSample) -> Result<()> {
        let mut health = self.health.lock();
        let samples = health.entry(endpoint.to_string()).or_default();
        // Kept in time order (results arrive when attempts end, not when they started); equal
        // times keep their recording order.
        let at = samples.partition_point(|s| s.at <= sample.at);
        samples.insert(at, *sample);
        // The window is relative to the newest sample, not to the one just recorded.
        let newest = samples.back().map_or(sample.at, |s| s.at);
        let window = chrono::Duration::from_std(crate::HEALTH_WINDOW).unwrap_or(chrono::Duration::MAX);
        let cutoff = newest.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        while samples.front().is_some_and(|s| s.at < cutoff) || samples.len() > crate::HEALTH_SAMPLES {
            samples.pop_front();
        }
        Ok(())
    }

    async fn health_samples(&self, endpoint: &str, since: DateTime<Utc>) -> Result<Vec<HealthSample>> {
        Ok(self
            .health
            .lock()
            .get(endpoint)
            .map(|s| s.iter().filter(|x| x.at >= since).copied().collect())
            .unwrap_or_default())
    }

    async fn get_breaker(&self, endpoint: &str) -> Result<Breaker> {
        Ok(self.breakers.lock().get(endpoint).cloned().unwrap_or_default())
    }

    async fn put_breaker(&self, endpoint: &str, breaker: &Breaker) -> Result<()> {
        let mut breakers = self.breakers.lock();
        if *breaker == Breaker::default() {
            breakers.remove(endpoint);
        } else {
            breakers.insert(endpoint.to_string(), breaker.clone());
        }
        Ok(())
    }

    async fn update_breaker(
        &self,
        endpoint: &str,
        change: &(dyn for<'b> Fn(&'b mut Breaker) + Send + Sync),
    ) -> Result<(Breaker, Breaker)> {
        let mut breakers = self.breakers.lock();
        let before = breakers.get(endpoint).cloned().unwrap_or_default();
        let mut after = before.clone();
        change(&mut after);
        if after == Breaker::default() {
            breakers.remove(endpoint);
        } else {
            breakers.insert(endpoint.to_string(), after.clone());
        }
        Ok((before, after))
    }

    async fn lane_push(&self, lane: &str, id: &str) -> Result<bool> {
        let mut lanes = self.lanes.lock();
        let q = lanes.entry(lane.to_string()).or_default();
        if !q.iter().any(|x| x == id) {
            q.push_back(id.to_string());
        }
        Ok(q.front().map(String::as_str) == Some(id))
    }

    async fn lane_pop(&self, lane: &str, id: &str) -> Result<Option<String>> {
        let mut lanes = self.lanes.lock();
        let Some(q) = lanes.get_mut(lane) else { return Ok(None) };
        q.retain(|x| x != id);
        let head = q.front().cloned();
        if q.is_empty() {
            lanes.remove(lane);
        }
        Ok(head)
    }

    async fn context_merge(
        &self,
        tenant: &str,
        call_id: &str,
        values: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<usize> {
        let now = Instant::now();
        let mut all = self.contexts.lock();
        if all.len() > 100_000 {
            all.retain(|_, (exp, _)| *exp > now);
        }
        let entry = all.entry((tenant.to_string(), call_id.to_string())).or_insert_with(|| (now, BTreeMap::new()));
        if entry.0 <= now {
            entry.1.clear();
        }
        entry.0 = now + ttl;
        let mut refused = 0;
        for (k, v) in values {
            if entry.1.contains_key(k) || entry.1.len() < MAX_NAMES_PER_CALL {
                entry.1.insert(k.clone(), v.clone());
            } else {
                refused += 1;
            }
        }
        Ok(refused)
    }

    async fn context_get(&self, tenant: &str, call_id: &str) -> Result<BTreeMap<String, String>> {
        let all = self.contexts.lock();
        Ok(match all.get(&(tenant.to_string(), call_id.to_string())) {
            Some((exp, values)) if *exp > Instant::now() => values.clone(),
            _ => BTreeMap::new(),
        })
    }
}

#[async_trait]
impl DeliveryLog for MemoryStore {
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

    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize> {
        let mut log = self.log.lock();
        let old: Vec<(DateTime<Utc>, String)> = match log.per_webhook.get(webhook_id) {
            Some(set) => set.iter().take_while(|(at, _)| *at < before).take(limit).cloned().collect(),
            None => return Ok(0),
        };
        for (at, id) in &old {
            log.remove(*at, id);
        }
        Ok(old.len())
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()> {
        let held = self.log.lock().deliveries.contains_key(&delivery.id);
        if held {
            self.add_attempt(&delivery.id, attempt).await?;
            self.put_delivery(delivery).await
        } else {
            self.put_delivery(delivery).await?;
            self.add_attempt(&delivery.id, attempt).await
        }
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
}
