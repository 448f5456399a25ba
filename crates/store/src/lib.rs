//! State that outlives one message, in two traits because it splits in two by size and use:
//! [`HotState`] (dedup marks, the retry schedule with leases, rate limits, breakers, per-call
//! lanes, endpoint health, call context) and [`DeliveryLog`] (deliveries, attempts, searches, retention).
//! [`Store`] is both; the stages hold an `Arc<dyn Store>`. Memory, the durable embedded store
//! (standalone's default) and Redis implement both; [`Split`] joins hot state from one backend
//! with a log from another.
//!
//! # Guarantees every implementation keeps
//! - [`HotState::claim_due`] hands a due retry to exactly one claimant at a time; a claim is a
//!   lease: unless the claimant reschedules or cancels it, the retry becomes due again when the
//!   lease expires (so a crashed dispatcher's claims come back).
//! - [`HotState::mark_seen`] is atomic: of two concurrent calls with one key, one answers `true`.
//! - A delivery's `created_at` is written once and never changed by later updates.
//!
//! How the store fits the pipeline, and what survives which fault: `docs/architecture.md`.

pub mod embedded;
pub mod memory;
pub mod postgres;
pub mod redis;

pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;
pub use postgres::PostgresLog;
pub use redis::RedisStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookmesh_core::breaker::Breaker;
use hookmesh_core::delivery::{Attempt, Delivery, DeliveryStatus};
use hookmesh_core::health::HealthSample;
use hookmesh_core::matching::{campaign_is, same_phone_number};
use hookmesh_core::EventType;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored value is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Worth retrying with backoff (the backend was unreachable or busy), as opposed to data
    /// that will stay unreadable however often it is read.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of the delivery log, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub tenant_id: Option<String>,
    pub webhook_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<EventType>,
    pub call_id: Option<String>,
    /// A campaign id (exactly) or name (any case), as webhook triggers match campaigns.
    pub campaign: Option<String>,
    /// Canonical direction: `inbound`, `outbound`, `click_to_call`.
    pub direction: Option<String>,
    /// A tracking number, in any spelling of its digits (`+1 777-483-9229` = `7774839229`).
    pub tracking: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only deliveries older than this id's delivery.
    pub before: Option<String>,
    pub limit: usize,
}

impl DeliveryQuery {
    pub fn matches(&self, d: &Delivery) -> bool {
        self.tenant_id.as_ref().is_none_or(|t| *t == d.tenant_id)
            && self.webhook_id.as_ref().is_none_or(|w| *w == d.webhook_id)
            && self.status.is_none_or(|s| s == d.status)
            && self.event_type.is_none_or(|t| t == d.event_type)
            && self.call_id.as_ref().is_none_or(|c| d.call_id.as_ref() == Some(c))
            && self.campaign.as_ref().is_none_or(|c| {
                let call = &d.request.call;
                campaign_is(c, call.campaign_id.as_deref(), call.campaign_name.as_deref())
            })
            && self.direction.as_ref().is_none_or(|x| d.request.call.direction.as_ref() == Some(x))
            && self
                .tracking
                .as_ref()
                .is_none_or(|t| d.request.call.tracking.as_ref().is_some_and(|n| same_phone_number(t, n)))
            && self.since.is_none_or(|s| d.created_at >= s)
            && self.until.is_none_or(|u| d.created_at < u)
    }
}

/// Limits on what the delivery log keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Deliveries older than this are dropped.
    pub max_age: Duration,
    /// At most this many deliveries per webhook (oldest dropped first).
    pub per_webhook: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_age: Duration::from_secs(30 * 24 * 3600), per_webhook: 100_000 }
    }
}

/// Hot state: what the pipeline reads and changes on every message and keeps only for a short
/// while — dedup marks, the retry schedule with its leases, rate limits, circuit breakers,
/// per-call lanes and endpoint health samples. Small, frequently rewritten, expiring.
#[async_trait]
pub trait HotState: Send + Sync + 'static {
    /// Records `key` for `ttl`; answers `true` if it was not already there.
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Whether `key` is marked (and its mark has not expired). Ingest asks this before it
    /// publishes an event and marks the event only once the publish is acknowledged, so a
    /// crash in between leaves no mark that would turn the redelivery into a drop.
    async fn is_seen(&self, key: &str) -> Result<bool>;

    /// Schedules (or moves) the retry of `delivery_id` to `due`.
    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()>;
    /// Removes a scheduled or claimed retry; answers whether one existed.
    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool>;
    /// Claims up to `limit` retries due at `now`, leasing each for `lease`.
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>>;
    /// Retries scheduled (claimed or not).
    async fn retry_backlog(&self) -> Result<usize>;

    /// Rate limiting shared by every dispatcher (GCRA with reservations): reserves the next
    /// send slot of `key` under `per_second` with `burst`, and answers how long to wait for it
    /// (zero = send now). Every call takes a slot, so callers that wait keep their place and
    /// never exceed the rate plus the burst in any window.
    async fn rate_reserve(&self, key: &str, per_second: f64, burst: u32, now: DateTime<Utc>) -> Result<Duration>;

    /// Appends an attempt sample of `endpoint`; samples older than [`HEALTH_WINDOW`] and beyond
    /// [`HEALTH_SAMPLES`] per endpoint are dropped.
    async fn record_health(&self, endpoint: &str, sample: &HealthSample) -> Result<()>;
    /// Appends several samples of `endpoint` at once, as [`HotState::record_health`] would
    /// one by one (a backend may do it in one step).
    async fn record_health_batch(&self, endpoint: &str, samples: &[HealthSample]) -> Result<()> {
        for s in samples {
            self.record_health(endpoint, s).await?;
        }
        Ok(())
    }
    /// Samples of `endpoint` taken at or after `since`, oldest first.
    async fn health_samples(&self, endpoint: &str, since: DateTime<Utc>) -> Result<Vec<HealthSample>>;

    /// The circuit breaker of `endpoint` (closed when never stored).
    async fn get_breaker(&self, endpoint: &str) -> Result<Breaker>;
    async fn put_breaker(&self, endpoint: &str, breaker: &Breaker) -> Result<()>;
    /// Applies `change` to the breaker of `endpoint` atomically: concurrent updates from other
    /// dispatchers are never lost (`change` may run more than once, on fresh state). Answers
    /// the state before and after.
    async fn update_breaker(
        &self,
        endpoint: &str,
        change: &(dyn for<'b> Fn(&'b mut Breaker) + Send + Sync),
    ) -> Result<(Breaker, Breaker)>;

    /// Per-call ordering lanes: appends `id` to `lane` (if not already in it) and answers
    /// whether it is at the head, i.e. may be sent now.
    async fn lane_push(&self, lane: &str, id: &str) -> Result<bool>;
    /// Removes `id` from `lane` and answers the new head, which may go next.
    async fn lane_pop(&self, lane: &str, id: &str) -> Result<Option<String>>;

    /// Call context ([`hookmesh_core::context`]): merges `values` into the context of
    /// (`tenant`, `call_id`) in one step (a name set again takes the new value, other names
    /// stay) and keeps the whole context for `ttl` from now. A context holds at most
    /// [`MAX_NAMES_PER_CALL`](hookmesh_core::context::MAX_NAMES_PER_CALL) names: new names
    /// beyond it are not stored; answers how many were refused so.
    async fn context_merge(
        &self,
        tenant: &str,
        call_id: &str,
        values: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<usize>;
    /// The context of (`tenant`, `call_id`); empty when none was captured or it expired.
    async fn context_get(&self, tenant: &str, call_id: &str) -> Result<BTreeMap<String, String>>;
}

/// The delivery log: every delivery with its rendered request, every attempt with its
/// response, and the searches people run over them; kept for days under [`Retention`].
/// Large, written once and appended to, read by people.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// Creates or replaces a delivery, keeping the `created_at` of an existing one.
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()>;
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>>;
    /// Records a new delivery unless the log has one with its id, and answers the one it has
    /// (a request consumed again after a crash finds what the first consumption did). The
    /// dispatcher calls this for every new request it records before attempting (one in a
    /// call lane, held, or waiting for context), so a backend may do it in one step.
    async fn create_delivery(&self, delivery: &Delivery) -> Result<Option<Delivery>> {
        match self.get_delivery(&delivery.id).await? {
            Some(existing) => Ok(Some(existing)),
            None => self.put_delivery(delivery).await.map(|()| None),
        }
    }
    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()>;
    /// Appends `attempt` to `delivery` and stores the delivery as the attempt left it; a
    /// delivery the log does not hold yet is created with it (the dispatcher does not record a
    /// new delivery as `pending` before an attempt that goes at once, see its `deliver` module).
    /// A backend that can does both in one write, so the log never shows the attempt without
    /// the status it led to, or the reverse; the others append, then store (for a delivery
    /// the log did not hold: store, then append).
    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()>;
    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;
    /// Removes up to `limit` deliveries of `webhook_id` first triggered before `before`, oldest
    /// first, with their attempts; answers how many. A webhook's own retention
    /// (`policy.retention_days`) is applied through this.
    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize>;
}

/// Everything the stages keep: hot state and the delivery log, from one backend or from two
/// (see [`Split`]). Every type that implements both is a `Store`.
pub trait Store: HotState + DeliveryLog {}

impl<T: HotState + DeliveryLog + ?Sized> Store for T {}

/// A store made of two backends: hot state from one (Redis, say) and the delivery log from
/// another (PostgreSQL).
pub struct Split {
    pub hot: std::sync::Arc<dyn HotState>,
    pub log: std::sync::Arc<dyn DeliveryLog>,
}

#[async_trait]
impl HotState for Split {
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.hot.mark_seen(key, ttl).await
    }
    async fn is_seen(&self, key: &str) -> Result<bool> {
        self.hot.is_seen(key).await
    }
    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()> {
        self.hot.schedule_retry(delivery_id, due).await
    }
    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool> {
        self.hot.cancel_retry(delivery_id).await
    }
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>> {
        self.hot.claim_due(now, limit, lease).await
    }
    async fn retry_backlog(&self) -> Result<usize> {
        self.hot.retry_backlog().await
    }
    async fn rate_reserve(&self, key: &str, per_second: f64, burst: u32, now: DateTime<Utc>) -> Result<Duration> {
        self.hot.rate_reserve(key, per_second, burst, now).await
    }
    async fn record_health(&self, endpoint: &str, sample: &HealthSample) -> Result<()> {
        self.hot.record_health(endpoint, sample).await
    }
    async fn record_health_batch(&self, endpoint: &str, samples: &[HealthSample]) -> Result<()> {
        self.hot.record_health_batch(endpoint, samples).await
    }
    async fn health_samples(&self, endpoint: &str, since: DateTime<Utc>) -> Result<Vec<HealthSample>> {
        self.hot.health_samples(endpoint, since).await
    }
    async fn get_breaker(&self, endpoint: &str) -> Result<Breaker> {
        self.hot.get_breaker(endpoint).await
    }
    async fn put_breaker(&self, endpoint: &str, breaker: &Breaker) -> Result<()> {
        self.hot.put_breaker(endpoint, breaker).await
    }
    async fn update_breaker(
        &self,
        endpoint: &str,
        change: &(dyn for<'b> Fn(&'b mut Breaker) + Send + Sync),
    ) -> Result<(Breaker, Breaker)> {
        self.hot.update_breaker(endpoint, change).await
    }
    async fn lane_push(&self, lane: &str, id: &str) -> Result<bool> {
        self.hot.lane_push(lane, id).await
    }
    async fn lane_pop(&self, lane: &str, id: &str) -> Result<Option<String>> {
        self.hot.lane_pop(lane, id).await
    }
    async fn context_merge(
        &self,
        tenant: &str,
        call_id: &str,
        values: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<usize> {
        self.hot.context_merge(tenant, call_id, values, ttl).await
    }
    async fn context_get(&self, tenant: &str, call_id: &str) -> Result<BTreeMap<String, String>> {
        self.hot.context_get(tenant, call_id).await
    }
}

#[async_trait]
impl DeliveryLog for Split {
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        self.log.put_delivery(delivery).await
    }
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.log.get_delivery(id).await
    }
    async fn create_delivery(&self, delivery: &Delivery) -> Result<Option<Delivery>> {
        self.log.create_delivery(delivery).await
    }
    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        self.log.add_attempt(delivery_id, attempt).await
    }
    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.log.attempts(delivery_id).await
    }
    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()> {
        self.log.record_attempt(delivery, attempt).await
    }
    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        self.log.list_deliveries(query).await
    }
    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize> {
        self.log.expire_webhook(webhook_id, before, limit).await
    }
}

/// How long endpoint health remembers samples.
pub const HEALTH_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most samples kept per endpoint.
pub const HEALTH_SAMPLES: usize = 20_000;

/// The GCRA emission interval of `per_second`, in ns. Rounded up, so the rate is never
/// exceeded (in any window, at most `floor(rate) + burst` slots), and kept to the nanosecond
/// rather than the microsecond, so the spacing is accurate at high rates too (at 3000/s a
/// whole-µs interval of 333 µs would send 3003 a second). Rates are clamped to ≥ 1e-6/s.
pub fn gcra_interval_ns(per_second: f64) -> i64 {
    // Float-to-int `as` saturates, and NaN fails `max` towards the clamp.
    (1e9 / per_second.max(1e-6)).ceil().max(1.0) as i64
}

/// How far (ns) the theoretical arrival time may run ahead of `now` before a slot must wait:
/// `burst` intervals (a burst of 0 counts as 1), saturating instead of overflowing.
pub fn gcra_tolerance_ns(interval_ns: i64, burst: u32) -> i64 {
    interval_ns.saturating_mul(i64::from(burst.max(1)))
}

/// GCRA with reservations, shared by both backends (the Redis script does the same sums on
/// `(seconds, nanos)` pairs): from the stored theoretical arrival time `tat` (unix ns),
/// answers the new `tat` and the wait, both in ns.
pub fn gcra_reserve(tat_ns: Option<i64>, now_ns: i64, per_second: f64, burst: u32) -> (i64, i64) {
    let interval = gcra_interval_ns(per_second);
    let tolerance = gcra_tolerance_ns(interval, burst);
    let tat = tat_ns.unwrap_or(now_ns).max(now_ns).saturating_add(interval);
    let wait = tat.saturating_sub(now_ns).saturating_sub(tolerance).max(0);
    (tat, wait)
}
