//! State that outlives one message: the retry schedule, ingest dedup keys, the delivery log
//! with its attempts, and endpoint health. [`Store`] is the trait the stages use; the
//! in-memory implementation backs standalone mode.
//!
//! # Guarantees every implementation keeps
//! - [`Store::claim_due`] hands a due retry to exactly one claimant at a time; a claim is a
//!   lease: unless the claimant reschedules or cancels it, the retry becomes due again when the
//!   lease expires (so a crashed dispatcher's claims come back).
//! - [`Store::mark_seen`] is atomic: of two concurrent calls with one key, one answers `true`.
//! - A delivery's `created_at` is written once and never changed by later updates.

pub mod memory;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookmesh_core::delivery::{Attempt, Delivery, DeliveryStatus};
use hookmesh_core::EventType;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored value is unreadable: {0}")]
    Corrupt(String),
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records `key` for `ttl`; answers `true` if it was not already there.
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Removes a mark (the marked work could not be completed).
    async fn forget_seen(&self, key: &str) -> Result<()>;

    /// Creates or replaces a delivery, keeping the `created_at` of an existing one.
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()>;
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>>;
    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()>;
    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;

    /// Schedules (or moves) the retry of `delivery_id` to `due`.
    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()>;
    /// Removes a scheduled or claimed retry; answers whether one existed.
    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool>;
    /// Claims up to `limit` retries due at `now`, leasing each for `lease`.
    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>>;
    /// Retries scheduled (claimed or not).
    async fn retry_backlog(&self) -> Result<usize>;
}
