//! The in-memory bus of standalone mode: a partitioned log per topic with consumer groups and
//! committed offsets, the same semantics as Kafka for everything hookmesh relies on.
//!
//! One consumer per group is active at a time: a new subscription of the same group takes over
//! every partition and resumes from the group's commits (this is how a restarted stage loop
//! re-reads work it had not committed). Partitions of non-compacted topics are trimmed below
//! the lowest commit of their groups, so a long-running standalone process does not grow
//! without bound. Nothing survives the process: standalone memory mode is for one machine
//! and for tests, not for durability.

use crate::{Bus, BusError, Consumer, Message, Record, Result, TopicSpec};
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct MemoryBus {
    topics: Arc<RwLock<HashMap<String, Arc<Topic>>>>,
}

struct Topic {
    name: Arc<str>,
    compacted: bool,
    partitions: Vec<Mutex<Log>>,
    appended: Notify,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

#[derive(Default)]
struct Log {
    /// Offset of `entries[0]`.
    base: i64,
    entries: VecDeque<Message>,
}

impl Log {
    fn end(&self) -> i64 {
        self.base + self.entries.len() as i64
    }
}

struct Group {
    /// Next offset to read, per partition.
    committed: Mutex<Vec<i64>>,
    generation: AtomicU64,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics.read().get(name).cloned().ok_or_else(|| BusError::UnknownTopic(name.to_string()))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()> {
        let mut topics = self.topics.write();
        topics.entry(spec.name.clone()).or_insert_with(|| {
            Arc::new(Topic {
                name: Arc::from(spec.name.as_str()),
                compacted: spec.compacted,
                partitions: (0..spec.partitions.max(1)).map(|_| Mutex::new(Log::default())).collect(),
                appended: Notify::new(),
                groups: Mutex::new(HashMap::new()),
            })
        });
        Ok(())
    }

    async fn publish(&self, topic: &str, record: Record) -> Result<(i32, i64)> {
        let t = self.topic(topic)?;
        let partition = crate::partition_for(&record.key, t.partitions.len() as u32);
        let offset = {
            let mut log = t.partitions[partition as usize].lock();
            let offset = log.end();
            log.entries.push_back(Message {
                topic: t.name.clone(),
                partition,
                offset,
                key: record.key,
                payload: record.payload,
                headers: record.headers,
                timestamp_ms: now_ms(),
            });
            offset
        };
        t.appended.notify_waiters();
        Ok((partition, offset))
    }

    async fn publish_batch(&self, topic: &str, records: Vec<Record>) -> Result<Vec<(i32, i64)>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(self.publish(topic, r).await?);
        }
        Ok(out)
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>> {
        let t = self.topic(topic)?;
        let g = t
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert_with(|| {
                Arc::new(Group { committed: Mutex::new(vec![0; t.partitions.len()]), generation: AtomicU64::new(0) })
            })
            .clone();
        let generation = g.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let positions = g.committed.lock().clone();
        Ok(Box::new(MemoryConsumer { topic: t, group: Some((g, generation)), positions, next_partition: 0 }))
    }

    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>> {
        let t = self.topic(topic)?;
        let positions = t.partitions.iter().map(|p| p.lock().base).collect();
        Ok(Box::new(MemoryConsumer { topic: t, group: None, positions, next_partition: 0 }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| p.lock().end()).collect())
    }
}

struct MemoryConsumer {
    topic: Arc<Topic>,
    group: Option<(Arc<Group>, u64)>,
    positions: Vec<i64>,
    next_partition: usize,
}

impl MemoryConsumer {
    fn try_next(&mut self) -> Option<Message> {
        let n = self.topic.partitions.len();
        for i in 0..n {
            let p = (self.next_partition + i) % n;
            let log = self.topic.partitions[p].lock();
            let pos = self.positions[p].max(log.base);
            if pos < log.end() {
                let msg = log.entries[(pos - log.base) as usize].clone();
                drop(log);
                self.positions[p] = pos + 1;
                self.next_partition = (p + 1) % n;
                return Some(msg);
            }
        }
        None
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn recv(&mut self) -> Result<Message> {
        let topic = self.topic.clone();
        loop {
            let appended = topic.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(m) = self.try_next() {
                return Ok(m);
            }
            appended.await;
        }
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<()> {
        let Some((group, generation)) = &self.group else { return Ok(()) };
        if group.generation.load(Ordering::SeqCst) != *generation {
            // A newer subscription of the group owns the partitions now (we were "fenced").
            return Ok(());
        }
        let low = {
            let mut committed = group.committed.lock();
            let slot = committed
                .get_mut(partition as usize)
                .ok_or_else(|| BusError::Backend(format!("no partition {partition}")))?;
            *slot = (*slot).max(offset + 1);
            *slot
        };
        if !self.topic.compacted {
            // Trim what every group has committed.
            let groups = self.topic.groups.lock();
            let min = groups.values().map(|g| g.committed.lock()[partition as usize]).min().unwrap_or(low);
            drop(groups);
            let mut log = self.topic.partitions[partition as usize].lock();
            while log.base < min && !log.entries.is_empty() {
                log.entries.pop_front();
                log.base += 1;
            }
        }
        Ok(())
    }

    fn positions(&self) -> Vec<i64> {
        self.positions.clone()
    }
}
