//! The Kafka bus on `rdkafka`.
//!
//! - Producers are idempotent with `acks=all`; [`Bus::publish`] resolves only on the broker's
//!   acknowledgement.
//! - Consumers join a group with auto-commit of *stored* offsets only
//!   (`enable.auto.offset.store=false`): [`Consumer::commit`] stores an offset, librdkafka
//!   commits stored offsets periodically and on close. The stage loop stores the low-water
//!   mark, so an offset is never committed past work in flight; a crash re-delivers.
//! - Group members rebalance with [`KafkaConfig::assignment_strategy`] (eager by default,
//!   `cooperative-sticky` where the broker supports it) and, given a stable
//!   [`KafkaConfig::instance_id`], join as static members: a restarted stage resumes its own
//!   partitions as soon as it has joined, without waiting for the session timeout.
//! - Readers (registry, DLQ listing) assign every partition from the beginning without
//!   committing.
//! - Topics are created at start when missing (`cleanup.policy=compact` for the registry).

use crate::{Bus, BusError, Consumer, Message, Record, Result, TopicSpec};
use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

/// Connection settings; `extra` passes any librdkafka property through.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    pub client_id: String,
    /// Consumer group session timeout; group joins take about half of it.
    pub session_timeout_ms: u32,
    pub replication_factor: i32,
    /// A stable name of this process (the pod name in Kubernetes): when set, consumers join
    /// their group as static members (`group.instance.id`), so a process that restarts under
    /// the same name takes its partitions back at once instead of waiting for the session
    /// timeout and a rebalance of the whole group. Two live processes must never share it.
    pub instance_id: Option<String>,
    /// How long a publish waits for the broker's acknowledgement (`message.timeout.ms`) before
    /// it fails: while the broker is unreachable, `Publish` answers UNAVAILABLE after this.
    pub message_timeout_ms: u32,
    /// `partition.assignment.strategy` of group members (default [`DEFAULT_ASSIGNMENT_STRATEGY`]).
    pub assignment_strategy: String,
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            client_id: "hookmesh".to_string(),
            session_timeout_ms: 10_000,
            replication_factor: 1,
            instance_id: None,
            message_timeout_ms: 30_000,
            assignment_strategy: DEFAULT_ASSIGNMENT_STRATEGY.to_string(),
            extra: Vec::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers).set("client.id", &self.client_id);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Eager rebalancing (`range`, `roundrobin`): every rebalance revokes and reassigns all
/// partitions of the group. `cooperative-sticky` moves only the partitions that change hands
/// and lets the other members keep consuming, but it relies on the broker to complete the
/// follow-up rebalance that hands out revoked partitions: against tansu 0.6 two of four
/// partitions stayed owned by no member for minutes after two dispatchers restarted together
/// (seen in the fault suite), so it is a setting for brokers that implement it (Apache Kafka
/// 2.4+), not the default.
pub const DEFAULT_ASSIGNMENT_STRATEGY: &str = "range,roundrobin";

fn backend(e: KafkaError) -> BusError {
    BusError::Backend(e.to_string())
}

#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    /// Replaced when librdkafka declares it fatally failed (see [`KafkaBus::publish`]).
    /// With a generation number, so of many senders that see it fail only one replaces it.
    producer: Arc<parking_lot::RwLock<(u64, FutureProducer)>>,
}

impl KafkaBus {
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let producer = Self::new_producer(&config)?;
        Ok(KafkaBus { config, producer: Arc::new(parking_lot::RwLock::new((0, producer))) })
    }

    fn new_producer(config: &KafkaConfig) -> Result<FutureProducer> {
        config
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .create()
            .map_err(backend)
    }

    fn producer(&self) -> (u64, FutureProducer) {
        self.producer.read().clone()
    }

    /// An idempotent producer whose message timed out while the broker was unreachable asks
    /// for a new epoch when the broker is back; a broker can refuse it for good (tansu answers
    /// `ProducerFenced` to every later send). Replace such a producer (once, whoever notices
    /// first) so the next send goes through with a new producer id.
    fn replace_if_fatal(&self, generation: u64, failed: &FutureProducer, error: &KafkaError) -> Result<bool> {
        // The broker no longer accepts this producer's id or epoch: every later send fails the
        // same way, though librdkafka does not always flag the producer as fatally failed.
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        );
        let reason = match failed.client().fatal_error() {
            Some((_, reason)) => reason,
            None if fenced => error.to_string(),
            None => return Ok(false),
        };
        let mut current = self.producer.write();
        if current.0 == generation {
            tracing::warn!(reason, "the Kafka producer can no longer send; starting a new one");
            *current = (generation + 1, Self::new_producer(&self.config)?);
        }
        Ok(true)
    }

    fn partitions_of(&self, topic: &str) -> Result<usize> {
        let md = self.producer().1.client().fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(backend)?;
        let t =
            md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| BusError::UnknownTopic(topic.to_string()))?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(BusError::UnknownTopic(topic.to_string()));
        }
        Ok(t.partitions().len())
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(KafkaBus) -> Result<T> + Send + 'static) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this)).await.map_err(|e| BusError::Backend(e.to_string()))?
    }

    fn consumer(&self, group: &str, commits: bool) -> Result<StreamConsumer> {
        let mut c = self.config.client();
        c.set("group.id", group)
            .set("enable.auto.commit", if commits { "true" } else { "false" })
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "500")
            .set("auto.offset.reset", "earliest")
            // Each stage is one hop of an event's latency: don't let the broker hold a fetch
            // for librdkafka's default half second when records trickle in.
            .set("fetch.wait.max.ms", "10")
            .set("session.timeout.ms", self.config.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.config.session_timeout_ms / 3).max(100).to_string())
            // The rebalance timeout: a member that died without leaving holds up a rebalance at
            // most this long (the stage loops poll continuously, so this is never hit alive).
            .set("max.poll.interval.ms", (self.config.session_timeout_ms * 5).max(30_000).to_string());
        if commits {
            c.set("partition.assignment.strategy", &self.config.assignment_strategy);
            if let Some(id) = &self.config.instance_id {
                c.set("group.instance.id", format!("{id}.{group}"));
            }
        }
        c.create().map_err(backend)
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config.client().create().map_err(backend)?;
        let mut topic =
            NewTopic::new(&spec.name, spec.partitions as i32, TopicReplication::Fixed(self.config.replication_factor));
        if spec.compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let results = admin
            .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .map_err(backend)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(BusError::Backend(format!("creating topic `{name}`: {code}"))),
            }
        }
        // Wait until the topic's metadata is visible.
        let name = spec.name.clone();
        for _ in 0..100 {
            let n = name.clone();
            if self.blocking(move |b| b.partitions_of(&n)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BusError::Backend(format!("topic `{name}` did not appear in metadata")))
    }

    async fn publish(&self, topic: &str, record: Record) -> Result<(i32, i64)> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header { key: k, value: Some(v.as_slice()) });
        }
        // A fatally failed producer is replaced once and the record sent again with the new one.
        for _ in 0..2 {
            let mut fr: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(topic).key(record.key.as_str()).headers(headers.clone());
            if let Some(p) = &record.payload {
                fr = fr.payload(p.as_ref());
            }
            let (generation, producer) = self.producer();
            match producer.send(fr, Duration::from_millis(u64::from(self.config.message_timeout_ms))).await {
                Ok(d) => return Ok((d.partition, d.offset)),
                Err((e, _)) if self.replace_if_fatal(generation, &producer, &e)? => {
                    tracing::warn!(topic, error = %e, "send failed on a fatally failed producer; sending again");
                }
                Err((e, _)) => return Err(backend(e)),
            }
        }
        Err(BusError::Backend(format!("publishing to `{topic}`: the Kafka producer failed fatally twice")))
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>> {
        let consumer = self.consumer(group, true)?;
        consumer.subscribe(&[topic]).map_err(backend)?;
        let n = {
            let t = topic.to_string();
            self.blocking(move |b| b.partitions_of(&t)).await?
        };
        // A member still without partitions once a dead member's session has surely expired
        // (plus a join's worth of time) was left out by the coordinator.
        let wait = Duration::from_millis(u64::from(self.config.session_timeout_ms) + 2_000);
        let watchdog = Some(Watchdog::new(wait));
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = self.consumer(group, false)?;
        let stall_check =
            tokio::spawn(watch_for_stalled_partitions(probe, topic.to_string(), n, wait, stalled.clone()));
        Ok(Box::new(KafkaConsumer {
            topic: Arc::from(topic),
            consumer,
            positions: vec![0; n],
            watchdog,
            stalled: Some((stalled, stall_check)),
        }))
    }

    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>> {
        let t = topic.to_string();
        let n = self.blocking(move |b| b.partitions_of(&t)).await?;
        let consumer = self.consumer(&format!("hookmesh-reader-{}", std::process::id()), false)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning).map_err(backend)?;
        }
        consumer.assign(&tpl).map_err(backend)?;
        Ok(Box::new(KafkaConsumer {
            topic: Arc::from(topic),
            consumer,
            positions: vec![0; n],
            watchdog: None,
            stalled: None,
        }))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let t = topic.to_string();
        self.blocking(move |b| {
            let n = b.partitions_of(&t)?;
            (0..n as i32)
                .map(|p| {
                    b.producer()
                        .1
                        .client()
                        .fetch_watermarks(&t, p, Duration::from_secs(10))
                        .map(|(_, high)| high)
                        .map_err(backend)
                })
                .collect()
        })
        .await
    }
}

struct KafkaConsumer {
    topic: Arc<str>,
    consumer: StreamConsumer,
    positions: Vec<i64>,
    /// Group members only: rejoins when the group leaves this member without partitions.
    watchdog: Option<Watchdog>,
    /// Group members only: set by [`watch_for_stalled_partitions`] when a partition of the
    /// group has records waiting and its committed offset has not moved for a while.
    stalled: Option<(Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<()>)>,
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.stalled {
            task.abort();
        }
    }
}

/// Watches the group's committed offsets against the end of every partition of `topic`: a
/// partition with records waiting whose committed offset has not moved over two looks `wait`
/// apart has no working owner. Seen with tansu when two members of a group restarted together:
/// the coordinator left two of four partitions assigned to no one while every member had some,
/// so no member saw an empty assignment. The flag makes this member rejoin, which makes the
/// coordinator assign every partition again. (A partition whose owner is stuck on a slow
/// record trips it too; the rejoin then costs a rebalance, never a record.)
async fn watch_for_stalled_partitions(
    probe: StreamConsumer,
    topic: String,
    partitions: usize,
    wait: Duration,
    stalled: Arc<std::sync::atomic::AtomicBool>,
) {
    let probe = Arc::new(probe);
    let mut previous: Option<Vec<(i64, i64)>> = None;
    loop {
        tokio::time::sleep(wait).await;
        let (probe, name) = (probe.clone(), topic.clone());
        let sample = tokio::task::spawn_blocking(move || -> Option<Vec<(i64, i64)>> {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions as i32 {
                tpl.add_partition(&name, p);
            }
            let committed = probe.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
            (0..partitions as i32)
                .map(|p| {
                    let (start, end) = probe.fetch_watermarks(&name, p, Duration::from_secs(5)).ok()?;
                    // Nothing committed yet: the group reads from the start.
                    let at = match committed.find_partition(&name, p)?.offset() {
                        Offset::Offset(o) => o,
                        _ => start,
                    };
                    Some((at, end))
                })
                .collect()
        })
        .await
        .ok()
        .flatten();
        let Some(sample) = sample else { continue };
        if let Some(before) = &previous {
            // A committed offset is the next record to read, so a caught-up partition has its
            // committed offset at the end.
            let stuck: Vec<usize> = sample
                .iter()
                .zip(before)
                .enumerate()
                .filter(|(_, ((at, end), (was, _)))| at == was && end > at)
                .map(|(p, _)| p)
                .collect();
            if !stuck.is_empty() {
                tracing::warn!(%topic, partitions = ?stuck, "partitions with records waiting made no progress; rejoining the consumer group");
                stalled.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        previous = Some(sample);
    }
}

/// A group member that has had no partition for a long while rejoins the group.
///
/// A coordinator that loses the group leader in the middle of a rebalance can leave the other
/// members with an empty assignment and never start a new rebalance (seen with `tansu` when a
/// dispatcher is killed with SIGKILL and a new one starts). Rejoining makes the coordinator
/// assign again. With more members than partitions some members are idle by design, so the
/// wait doubles after every rejoin (up to ten minutes) to keep their churn low.
struct Watchdog {
    empty_since: Option<std::time::Instant>,
    wait: Duration,
    first_wait: Duration,
}

impl Watchdog {
    fn new(first_wait: Duration) -> Self {
        Watchdog { empty_since: None, wait: first_wait, first_wait }
    }
}

impl KafkaConsumer {
    fn rejoin_if_stalled(&mut self) {
        let Some((flag, _)) = &self.stalled else { return };
        if flag.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.consumer.unsubscribe();
            if let Err(e) = self.consumer.subscribe(&[&self.topic]) {
                tracing::warn!(topic = %self.topic, error = %e, "rejoining the consumer group failed");
            }
        }
    }

    fn check_assignment(&mut self) {
        let Some(w) = self.watchdog.as_mut() else { return };
        let assigned = self.consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if assigned > 0 {
            w.empty_since = None;
            w.wait = w.first_wait;
            return;
        }
        let since = *w.empty_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < w.wait {
            return;
        }
        tracing::warn!(topic = %self.topic, waited_secs = since.elapsed().as_secs(), "no partitions assigned; rejoining the consumer group");
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&[&self.topic]) {
            tracing::warn!(topic = %self.topic, error = %e, "rejoining the consumer group failed");
        }
        w.empty_since = Some(std::time::Instant::now());
        w.wait = (w.wait * 2).min(Duration::from_secs(600));
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<Message> {
        let msg = loop {
            let topic = self.topic.clone();
            let received = tokio::select! {
                m = self.consumer.recv() => Some(m.map(|m| owned(&topic, &m)).map_err(backend)),
                _ = tokio::time::sleep(Duration::from_secs(1)), if self.watchdog.is_some() => None,
            };
            match received {
                Some(m) => {
                    self.rejoin_if_stalled();
                    break m?;
                }
                None => {
                    self.rejoin_if_stalled();
                    self.check_assignment();
                }
            }
        };
        let p = msg.partition as usize;
        if p >= self.positions.len() {
            self.positions.resize(p + 1, 0);
        }
        self.positions[p] = msg.offset + 1;
        Ok(msg)
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<()> {
        match self.consumer.store_offset(&self.topic, partition, offset) {
            Ok(()) => Ok(()),
            // The partition moved to another member in a rebalance: it re-reads from the last
            // commit, so there is nothing to store here.
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition, offset, error = %e, "offset not stored");
                Ok(())
            }
        }
    }

    fn positions(&self) -> Vec<i64> {
        self.positions.clone()
    }
}

fn owned(topic: &Arc<str>, m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
    let headers = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
        .unwrap_or_default();
    Message {
        topic: topic.clone(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        payload: m.payload().map(Bytes::copy_from_slice),
        headers,
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
    }
}
