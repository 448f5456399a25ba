//! Bus semantics every backend keeps, run against the in-memory bus, the durable embedded bus
//! (in a fresh temporary directory per test) and against a real
//! Kafka-protocol broker (`tansu`, started on a free loopback port).

use hookmesh_bus::kafka::{KafkaBus, KafkaConfig};
use hookmesh_bus::{Bus, Consumer, EmbeddedBus, MemoryBus, Record, TopicSpec};
use hookmesh_testkit::tansu::TansuBroker;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

async fn topic(bus: &dyn Bus, partitions: u32) -> String {
    let name = unique("t");
    bus.ensure_topic(&TopicSpec { name: name.clone(), partitions, compacted: false }).await.unwrap();
    name
}

async fn recv(c: &mut Box<dyn Consumer>) -> hookmesh_bus::Message {
    tokio::time::timeout(WAIT, c.recv()).await.expect("a record within the timeout").unwrap()
}

/// Records of one key arrive in the order they were published.
async fn keeps_order_per_key(bus: Arc<dyn Bus>) {
    let t = topic(bus.as_ref(), 3).await;
    let records: Vec<Record> =
        (0..60).map(|i| Record::new(format!("call-{}", i % 5), format!("{}:{i}", i % 5))).collect();
    bus.publish_batch(&t, records).await.unwrap();
    let mut c = bus.subscribe(&t, &unique("g")).await.unwrap();
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for _ in 0..60 {
        let m = recv(&mut c).await;
        let text = String::from_utf8(m.payload.unwrap().to_vec()).unwrap();
        let (key, n) = text.split_once(':').unwrap();
        assert_eq!(*partition_of.entry(m.key.clone()).or_insert(m.partition), m.partition, "one key, one partition");
        seen.entry(key.to_string()).or_default().push(n.parse().unwrap());
    }
    for (key, ns) in seen {
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "key {key} out of order");
        assert_eq!(ns.len(), 12);
    }
}

/// A consumer that stops without committing its last records gets them again; committed
/// records are not redelivered.
async fn redelivers_uncommitted_after_a_crash(bus: Arc<dyn Bus>) {
    let t = topic(bus.as_ref(), 1).await;
    for i in 0..10 {
        bus.publish(&t, Record::new("k", format!("{i}"))).await.unwrap();
    }
    let group = unique("g");
    {
        let mut c = bus.subscribe(&t, &group).await.unwrap();
        for i in 0..10 {
            let m = recv(&mut c).await;
            assert_eq!(m.offset, i);
            if i == 4 {
                c.commit(m.partition, m.offset).unwrap();
            }
        }
        // Dropped here: records 5..9 were received but never committed.
    }
    let mut c = bus.subscribe(&t, &group).await.unwrap();
    let m = recv(&mut c).await;
    assert_eq!(m.offset, 5, "resumes right after the last commit");
    assert_eq!(m.payload.as_deref(), Some(&b"5"[..]));
}

/// Headers, keys and tombstones survive the trip; readers see everything from the start and
/// end offsets say where the log ends.
async fn readers_headers_and_tombstones(bus: Arc<dyn Bus>) {
    let t = topic(bus.as_ref(), 2).await;
    bus.publish(&t, Record::new("webhook/a", "v1").with_header("hookmesh-reason", "why")).await.unwrap();
    bus.publish(&t, Record::tombstone("webhook/a")).await.unwrap();
    bus.publish(&t, Record::new("webhook/b", "v1")).await.unwrap();
    let ends = bus.end_offsets(&t).await.unwrap();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends.iter().sum::<i64>(), 3);
    let mut r = bus.reader(&t).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(recv(&mut r).await);
    }
    let first = got.iter().find(|m| m.key == "webhook/a" && m.payload.is_some()).expect("first record");
    assert_eq!(first.header("hookmesh-reason"), Some(&b"why"[..]));
    assert!(
        got.iter().any(|m| m.key == "webhook/a" && m.payload.is_none()),
        "tombstone arrives as a record without payload"
    );
    let positions = r.positions();
    assert!(positions.iter().zip(&ends).all(|(p, e)| p >= e), "{positions:?} vs {ends:?}");
}

macro_rules! conformance {
    ($($name:ident),*) => {
        mod memory {
            use super::*;
            $(#[tokio::test] async fn $name() { super::$name(Arc::new(MemoryBus::new())).await })*
        }
        mod embedded {
            use super::*;
            $(#[tokio::test] async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(Arc::new(EmbeddedBus::open(dir.path()).unwrap())).await
            })*
        }
        mod kafka {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() {
                let broker = TansuBroker::start();
                let mut config = KafkaConfig::new(broker.bootstrap());
                config.session_timeout_ms = 6000;
                super::$name(Arc::new(KafkaBus::connect(config).unwrap())).await;
                drop(broker);
            })*
        }
    };
}

conformance!(keeps_order_per_key, redelivers_uncommitted_after_a_crash, readers_headers_and_tombstones);
