//! The embedded bus's own promises, beyond the conformance suite: records, offsets, group
//! commits and the compacted topic survive close-and-reopen; a process killed with SIGKILL
//! mid-publish leaves every acknowledged record; consumed records are reclaimed; one process
//! per directory; a foreign format is refused naming the file.

use hookmesh_bus::{Bus, Consumer, EmbeddedBus, Message, Record, TopicSpec};
use hookmesh_testkit::child::acks_until_killed;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

async fn recv(c: &mut Box<dyn Consumer>) -> Message {
    tokio::time::timeout(WAIT, c.recv()).await.expect("a record within the timeout").unwrap()
}

/// Every record a fresh reader sees until it reaches the current end.
async fn read_all(bus: &dyn Bus, topic: &str) -> Vec<Message> {
    let ends = bus.end_offsets(topic).await.unwrap();
    let mut r = bus.reader(topic).await.unwrap();
    let mut out = Vec::new();
    while !r.positions().iter().zip(&ends).all(|(p, e)| p >= e) {
        out.push(recv(&mut r).await);
    }
    out
}

fn spec(name: &str, partitions: u32, compacted: bool) -> TopicSpec {
    TopicSpec { name: name.to_string(), partitions, compacted }
}

#[tokio::test]
async fn records_commits_and_the_compacted_topic_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        bus.ensure_topic(&spec("events", 3, false)).await.unwrap();
        bus.ensure_topic(&spec("config", 1, true)).await.unwrap();
        for i in 0..30 {
            bus.publish("events", Record::new(format!("call-{}", i % 4), format!("{i}")).with_header("h", "v"))
                .await
                .unwrap();
        }
        bus.publish("config", Record::new("webhook/a", "a1")).await.unwrap();
        bus.publish("config", Record::new("webhook/b", "b1")).await.unwrap();
        bus.publish("config", Record::new("webhook/a", "a2")).await.unwrap();
        bus.publish("config", Record::tombstone("webhook/b")).await.unwrap();
        // Group g consumes and commits 10 records.
        let mut c = bus.subscribe("events", "g").await.unwrap();
        for _ in 0..10 {
            let m = recv(&mut c).await;
            c.commit(m.partition, m.offset).unwrap();
        }
    }
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    // ensure_topic on an existing topic keeps it.
    bus.ensure_topic(&spec("events", 3, false)).await.unwrap();
    assert_eq!(bus.end_offsets("events").await.unwrap().iter().sum::<i64>(), 30, "offsets continue");
    // The group resumes after its commits: the other 20 records, each once.
    let mut c = bus.subscribe("events", "g").await.unwrap();
    let mut rest = Vec::new();
    for _ in 0..20 {
        let m = recv(&mut c).await;
        assert_eq!(m.header("h"), Some(&b"v"[..]));
        rest.push(String::from_utf8(m.payload.unwrap().to_vec()).unwrap().parse::<u32>().unwrap());
    }
    rest.sort();
    rest.dedup();
    assert_eq!(rest.len(), 20, "20 distinct records after the commits");
    // Offsets are never reused after a restart.
    let (p, o) = bus.publish("events", Record::new("call-0", "30")).await.unwrap();
    let before: i64 = bus.end_offsets("events").await.unwrap()[p as usize];
    assert_eq!(o + 1, before);
    // The compacted topic: newest record per key, tombstones included, in order.
    let config = read_all(&bus, "config").await;
    let got: Vec<(String, Option<Vec<u8>>)> =
        config.iter().map(|m| (m.key.clone(), m.payload.as_ref().map(|p| p.to_vec()))).collect();
    assert_eq!(got, vec![("webhook/a".to_string(), Some(b"a2".to_vec())), ("webhook/b".to_string(), None)]);
    assert_eq!(bus.end_offsets("config").await.unwrap(), vec![4]);
}

#[tokio::test]
async fn consumed_records_are_reclaimed_once_every_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    bus.ensure_topic(&spec("jobs", 1, false)).await.unwrap();
    for i in 0..10 {
        bus.publish("jobs", Record::new("k", format!("{i}"))).await.unwrap();
    }
    let mut a = bus.subscribe("jobs", "a").await.unwrap();
    let mut b = bus.subscribe("jobs", "b").await.unwrap();
    for _ in 0..6 {
        let m = recv(&mut a).await;
        a.commit(m.partition, m.offset).unwrap();
    }
    for _ in 0..4 {
        let m = recv(&mut b).await;
        b.commit(m.partition, m.offset).unwrap();
    }
    // Group b committed 0..=3: the first four go (within a second), the rest is kept for b.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i64> = read_all(&bus, "jobs").await.iter().map(|m| m.offset).collect();
        if left == (4..10).collect::<Vec<_>>() {
            break;
        }
        assert!(left.len() > 6 && Instant::now() < deadline, "left after the commits: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    drop(bus);
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    let left: Vec<i64> = read_all(&bus, "jobs").await.iter().map(|m| m.offset).collect();
    assert_eq!(left, (4..10).collect::<Vec<_>>(), "reclaiming is durable");
    let mut b = bus.subscribe("jobs", "b").await.unwrap();
    assert_eq!(recv(&mut b).await.offset, 4, "b resumes at its commit");
}

#[tokio::test]
async fn a_newer_subscription_fences_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    bus.ensure_topic(&spec("t", 1, false)).await.unwrap();
    for i in 0..3 {
        bus.publish("t", Record::new("k", format!("{i}"))).await.unwrap();
    }
    let mut old = bus.subscribe("t", "g").await.unwrap();
    let m = recv(&mut old).await;
    let mut new = bus.subscribe("t", "g").await.unwrap();
    old.commit(m.partition, 2).unwrap();
    assert_eq!(recv(&mut new).await.offset, 0, "the fenced commit was ignored");
}

const CHILD_DIR: &str = "HOOKMESH_BUS_KILL_CHILD_DIR";

/// Not a test of its own: the body of the child process that the SIGKILL test starts.
/// Publishes from 32 concurrent tasks until killed; prints `ack <key> <partition> <offset>`
/// after each publish answered OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of sigkill_mid_publish_keeps_every_acknowledged_record"]
async fn child_publishes_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(Path::new(&dir)).unwrap());
    bus.ensure_topic(&spec("events", 4, false)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32u32 {
        let bus = bus.clone();
        tasks.spawn(async move {
            for i in 0u32.. {
                let key = format!("k{w}-{i}");
                let (p, o) = bus.publish("events", Record::new(key.clone(), vec![b'x'; 1500])).await.unwrap();
                println!("ack {key} {p} {o}");
            }
        });
    }
    tasks.join_next().await;
}

#[test]
fn sigkill_mid_publish_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |ack: &String| -> Option<(String, i32, i64)> {
        let mut it = ack.split(' ');
        Some((it.next()?.to_string(), it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    let acked: Vec<(String, i32, i64)> = acks_until_killed("child_publishes_until_killed", CHILD_DIR, dir.path(), 3000)
        .iter()
        .filter_map(parse)
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bus = EmbeddedBus::open(dir.path()).unwrap();
        let all = read_all(&bus, "events").await;
        let stored: std::collections::HashMap<(i32, i64), String> =
            all.iter().map(|m| ((m.partition, m.offset), m.key.clone())).collect();
        for (key, p, o) in &acked {
            assert_eq!(
                stored.get(&(*p, *o)),
                Some(key),
                "acknowledged record {key} at {p}/{o} ({} acked)",
                acked.len()
            );
        }
        // Appending goes on after the last durable offset.
        let (p, o) = bus.publish("events", Record::new("after", "x")).await.unwrap();
        assert!(all.iter().filter(|m| m.partition == p).all(|m| m.offset < o));
    });
}

#[test]
fn a_second_open_of_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedBus::open(dir.path()).unwrap();
    let err = EmbeddedBus::open(dir.path()).err().expect("second open refused").to_string();
    assert!(err.contains(&dir.path().display().to_string()) && err.contains("another process"), "{err}");
}

#[test]
fn a_foreign_format_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedBus::open(dir.path()).unwrap());
    std::fs::write(dir.path().join("FORMAT"), "hookmesh-bus 7\n").unwrap();
    let err = EmbeddedBus::open(dir.path()).err().expect("refused").to_string();
    assert!(err.contains(&dir.path().join("FORMAT").display().to_string()) && err.contains("hookmesh-bus 7"), "{err}");
}

#[tokio::test]
async fn records_past_the_retention_are_reclaimed_even_unread() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open_with_retention(dir.path(), Duration::from_secs(1)).unwrap();
    bus.ensure_topic(&spec("attempts", 2, false)).await.unwrap();
    bus.ensure_topic(&spec("config", 1, true)).await.unwrap();
    for i in 0..20 {
        bus.publish("attempts", Record::new(format!("d{i}"), "x")).await.unwrap();
    }
    bus.publish("config", Record::new("webhook/a", "a1")).await.unwrap();
    assert_eq!(read_all(&bus, "attempts").await.len(), 20);
    // Nobody reads `attempts`: its records go once they are older than the retention.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !read_all(&bus, "attempts").await.is_empty() {
        assert!(Instant::now() < deadline, "records past the retention are still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bus.end_offsets("attempts").await.unwrap().iter().sum::<i64>(), 20, "offsets are not reused");
    assert_eq!(read_all(&bus, "config").await.len(), 1, "compacted topics keep their newest records");
    let (_, o) = bus.publish("attempts", Record::new("d0", "y")).await.unwrap();
    assert!(o >= 1);
    assert_eq!(read_all(&bus, "attempts").await.len(), 1);
}

/// A consumer reads records ahead in runs; what it reports as its position, and what a new
/// member of its group resumes from, are only the records it handed out and committed. Across
/// the runs every record comes once, in order per partition.
#[tokio::test]
async fn records_read_ahead_are_not_consumed_until_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(dir.path()).unwrap();
    bus.ensure_topic(&spec("events", 2, false)).await.unwrap();
    for i in 0..300 {
        bus.publish("events", Record::new(format!("k{}", i % 2), format!("{i}"))).await.unwrap();
    }
    let ends = bus.end_offsets("events").await.unwrap();
    assert_eq!(ends.iter().sum::<i64>(), 300);
    let mut c = bus.subscribe("events", "g").await.unwrap();
    let first = recv(&mut c).await;
    c.commit(first.partition, first.offset).unwrap();
    let mut handed = vec![0i64; 2];
    handed[first.partition as usize] = first.offset + 1;
    assert_eq!(c.positions(), handed, "one record handed out");
    drop(c);
    // The next member resumes right after the one committed record, and sees each of the
    // others once, in offset order per partition.
    let mut c = bus.subscribe("events", "g").await.unwrap();
    let mut next = handed.clone();
    for _ in 1..300 {
        let m = recv(&mut c).await;
        assert_eq!(m.offset, next[m.partition as usize], "partition {} in order, no gap or repeat", m.partition);
        next[m.partition as usize] += 1;
        assert_eq!(c.positions(), next);
    }
    assert_eq!(next, ends);
    // Records published after the consumer caught up are read too.
    bus.publish("events", Record::new("k0", "late")).await.unwrap();
    let late = recv(&mut c).await;
    assert_eq!(late.payload.as_deref(), Some(&b"late"[..]));
}
