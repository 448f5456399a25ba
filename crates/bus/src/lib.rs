//! Topics: the [`Bus`] trait the stage loops talk to, its implementations (Kafka, durable
//! embedded, in-memory), the low-water-mark commit tracker and the stage loop.
//!
//! # Guarantees every implementation keeps
//! - [`Bus::publish`] returns only once the record is acknowledged (durable for Kafka).
//! - Records with the same key land on the same partition and are read in order.
//! - A consumer group resumes from its last commit: anything received but not committed is
//!   delivered again after a crash or a new subscription (at-least-once).
//! - [`Consumer::commit`] of offset `o` means "everything up to `o` is done"; callers use
//!   [`OffsetTracker`] so they never commit past work still in flight.
//!
//! The pipeline these topics connect, and the contract between its stages:
//! `docs/architecture.md`.

pub mod embedded;
pub mod kafka;
pub mod memory;
pub mod offsets;
pub mod stage;
pub mod topics;
pub mod trace;

pub use embedded::EmbeddedBus;
pub use memory::MemoryBus;
pub use offsets::OffsetTracker;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// Record headers: W3C trace context, DLQ reasons, ….
pub type Headers = Vec<(String, Vec<u8>)>;

/// What a producer sends. `payload: None` is a tombstone (delete) on compacted topics.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: String,
    pub payload: Option<Bytes>,
    pub headers: Headers,
}

impl Record {
    pub fn new(key: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Record { key: key.into(), payload: Some(payload.into()), headers: Vec::new() }
    }

    pub fn tombstone(key: impl Into<String>) -> Self {
        Record { key: key.into(), payload: None, headers: Vec::new() }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a consumer receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Option<Bytes>,
    pub headers: Headers,
    /// Append time, unix milliseconds.
    pub timestamp_ms: i64,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("the bus is shut down")]
    Closed,
    #[error("bus backend: {0}")]
    Backend(String),
}

impl BusError {
    /// Worth retrying with backoff (a broker hiccup), as opposed to a configuration mistake.
    pub fn is_retriable(&self) -> bool {
        matches!(self, BusError::Backend(_))
    }
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// A topic to create at start when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub compacted: bool,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()>;

    /// Appends one record and waits for its acknowledgement; answers (partition, offset).
    async fn publish(&self, topic: &str, record: Record) -> Result<(i32, i64)>;

    /// Appends several records and waits for all acknowledgements.
    async fn publish_batch(&self, topic: &str, records: Vec<Record>) -> Result<Vec<(i32, i64)>> {
        futures::future::try_join_all(records.into_iter().map(|r| self.publish(topic, r))).await
    }

    /// Joins consumer group `group` on `topic`, resuming from the group's commits.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>>;

    /// Reads every partition from the beginning without a group (registry, DLQ listing).
    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>>;

    /// The next offset to be written, per partition.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>>;
}

#[async_trait]
pub trait Consumer: Send + Sync {
    /// The next record of any assigned partition; waits until one exists. Cancel-safe.
    async fn recv(&mut self) -> Result<Message>;

    /// Marks everything up to and including `offset` of `partition` as processed.
    fn commit(&self, partition: i32, offset: i64) -> Result<()>;

    /// The next offset this consumer would read, per partition (for "caught up" checks).
    fn positions(&self) -> Vec<i64>;
}

/// Stable partition for a key (FNV-1a), identical across processes and restarts.
pub fn partition_for(key: &str, partitions: u32) -> i32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % u64::from(partitions.max(1))) as i32
}
