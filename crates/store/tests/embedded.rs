//! The embedded store's own promises, beyond the conformance suite: the effect of every
//! operation survives close-and-reopen; a process killed with SIGKILL in the middle of writes
//! leaves a store that opens with every write it acknowledged; one process per directory; a
//! foreign format or a damaged directory is an error naming it, never a panic.

use chrono::{DateTime, TimeDelta, Utc};
use hookmesh_core::breaker::{Breaker, CircuitState};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, DeliveryStatus, ErrorClass, RenderedRequest};
use hookmesh_core::health::HealthSample;
use hookmesh_core::webhook::{DeliveryPolicy, Method, SuccessCondition};
use hookmesh_core::EventType;
use hookmesh_store::{DeliveryLog, DeliveryQuery, EmbeddedStore, HotState, Retention, Store};
use hookmesh_testkit::child::acks_until_killed;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn delivery(id: &str, webhook: &str, at: DateTime<Utc>) -> Delivery {
    let request = RenderedRequest {
        delivery_id: id.to_string(),
        webhook_id: webhook.to_string(),
        webhook_version: 1,
        tenant_id: "t1".to_string(),
        event_id: format!("evt_{id}"),
        event_type: EventType::CallEnded,
        call_id: Some(format!("call_{id}")),
        first_trigger_at: at,
        method: Method::Post,
        url: format!("https://receiver.example/{webhook}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"delivery":"{id}","pad":"{}"}}"#, "x".repeat(1500)),
        success: SuccessCondition::default(),
        policy: DeliveryPolicy::default(),
        render_error: None,
        traceparent: None,
        personal: Vec::new(),
        context: None,
        hold: None,
        data_points: None,
        call: Default::default(),
    };
    Delivery::new(request, at)
}

fn attempt(number: u32, at: DateTime<Utc>) -> Attempt {
    Attempt {
        number,
        trigger: if number == 1 { AttemptTrigger::Scheduled } else { AttemptTrigger::Retry },
        started_at: at,
        method: Method::Post,
        url: "https://receiver.example/hook".into(),
        request_headers: vec![("webhook-id".into(), "msg_x".into())],
        request_body: "{}".into(),
        response_status: Some(500 + number as u16),
        response_headers: Vec::new(),
        response_body: format!("failure {number}"),
        duration_ms: 10,
        error_class: Some(ErrorClass::Status),
        error: Some("status".into()),
        context_note: None,
    }
}

fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, Retention::default()).expect("open the embedded store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - TimeDelta::seconds(60);
    let lease = Duration::from_secs(30);
    let breaker = Breaker { state: CircuitState::Open, consecutive_failures: 7, ..Breaker::default() };
    let sample = HealthSample { at: t0, duration_ms: 12, status: 503, success: false };
    let first_wait;
    {
        let s = open(dir.path());
        assert!(s.mark_seen("evt-kept", Duration::from_secs(3600)).await.unwrap());
        for i in 0..5 {
            s.put_delivery(&delivery(&format!("d{i}"), "wh1", t0 + TimeDelta::seconds(i))).await.unwrap();
        }
        // An update keeps created_at and the first trigger date.
        let mut d0 = delivery("d0", "wh1", t0 + TimeDelta::seconds(30));
        d0.status = DeliveryStatus::Retrying;
        s.put_delivery(&d0).await.unwrap();
        s.add_attempt("d0", &attempt(1, t0)).await.unwrap();
        s.add_attempt("d0", &attempt(2, t0 + TimeDelta::seconds(1))).await.unwrap();
        s.schedule_retry("d0", t0).await.unwrap();
        s.schedule_retry("d1", t0 + TimeDelta::days(1)).await.unwrap();
        s.schedule_retry("d2", t0).await.unwrap();
        assert!(s.cancel_retry("d2").await.unwrap());
        assert_eq!(s.claim_due(now_ms(), 10, lease).await.unwrap(), vec!["d0".to_string()]);
        first_wait = s.rate_reserve("rate", 1.0, 1, t0).await.unwrap();
        s.record_health("ep", &sample).await.unwrap();
        s.put_breaker("ep", &breaker).await.unwrap();
        assert!(s.lane_push("lane", "a").await.unwrap());
        assert!(!s.lane_push("lane", "b").await.unwrap());
        drop(s);
    }
    let s = open(dir.path());
    assert!(s.is_seen("evt-kept").await.unwrap(), "dedup mark");
    assert!(!s.mark_seen("evt-kept", Duration::from_secs(3600)).await.unwrap());
    let d0 = s.get_delivery("d0").await.unwrap().expect("delivery d0");
    assert_eq!(d0.status, DeliveryStatus::Retrying, "the update");
    assert_eq!(d0.created_at, t0, "created_at unchanged");
    assert_eq!(d0.request.first_trigger_at, t0, "first trigger date unchanged");
    let attempts = s.attempts("d0").await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(attempts[1], attempt(2, t0 + TimeDelta::seconds(1)));
    let listed =
        s.list_deliveries(&DeliveryQuery { webhook_id: Some("wh1".into()), ..Default::default() }).await.unwrap();
    assert_eq!(listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec!["d4", "d3", "d2", "d1", "d0"]);
    assert_eq!(s.retry_backlog().await.unwrap(), 2, "d0 (claimed) and d1");
    // d0 is leased: not due now, due again once the lease runs out.
    assert!(s.claim_due(now_ms(), 10, lease).await.unwrap().is_empty(), "the lease survives");
    let after_lease = now_ms() + TimeDelta::seconds(31);
    assert_eq!(s.claim_due(after_lease, 10, lease).await.unwrap(), vec!["d0".to_string()]);
    // The rate limit's slot was taken before the restart: the next one waits.
    assert_eq!(first_wait, Duration::ZERO);
    assert!(s.rate_reserve("rate", 1.0, 1, t0).await.unwrap() > Duration::ZERO, "rate-limit state");
    assert_eq!(s.health_samples("ep", t0).await.unwrap(), vec![sample]);
    assert_eq!(s.get_breaker("ep").await.unwrap(), breaker);
    assert_eq!(s.lane_pop("lane", "a").await.unwrap(), Some("b".to_string()), "lane order");
}

/// Recording an attempt numbers it after the ones stored, whether the writer remembers the
/// delivery (just written), has forgotten it (a reopen), or the delivery was dropped by
/// retention and created again (its old attempts went with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_follow_each_other_across_reopen_and_recreation() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - TimeDelta::seconds(60);
    let numbers = |a: Vec<Attempt>| a.iter().map(|a| a.number).collect::<Vec<_>>();
    let mut d = delivery("d", "wh1", t0);
    {
        let s = open(dir.path());
        assert!(s.create_delivery(&d).await.unwrap().is_none(), "a new delivery");
        for n in 1..=2 {
            d.attempts = n;
            d.status = DeliveryStatus::Retrying;
            s.record_attempt(&d, &attempt(n, t0 + TimeDelta::seconds(n.into()))).await.unwrap();
        }
    }
    let s = open(dir.path());
    let again = s.create_delivery(&delivery("d", "wh1", t0 + TimeDelta::seconds(9))).await.unwrap();
    assert_eq!(again.map(|x| (x.status, x.attempts)), Some((DeliveryStatus::Retrying, 2)), "the stored one answers");
    d.attempts = 3;
    d.status = DeliveryStatus::Success;
    // A caller's copy with other dates does not move the stored ones.
    let mut later = d.clone();
    later.created_at = t0 + TimeDelta::seconds(30);
    later.request.first_trigger_at = t0 + TimeDelta::seconds(30);
    s.record_attempt(&later, &attempt(3, t0 + TimeDelta::seconds(3))).await.unwrap();
    assert_eq!(numbers(s.attempts("d").await.unwrap()), vec![1, 2, 3]);
    let stored = s.get_delivery("d").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.created_at, stored.request.first_trigger_at), (DeliveryStatus::Success, t0, t0));
    drop(s);

    // One delivery per webhook: a second one drops the first with its attempts.
    let s = EmbeddedStore::open(dir.path(), Retention { per_webhook: 1, ..Retention::default() }).unwrap();
    s.put_delivery(&delivery("e", "wh1", t0 + TimeDelta::seconds(40))).await.unwrap();
    assert!(s.get_delivery("d").await.unwrap().is_none(), "dropped by retention");
    s.put_delivery(&delivery("d", "wh1", t0 + TimeDelta::seconds(50))).await.unwrap();
    s.record_attempt(&d, &attempt(1, t0 + TimeDelta::seconds(51))).await.unwrap();
    assert_eq!(numbers(s.attempts("d").await.unwrap()), vec![1], "a recreated delivery starts afresh");
}

/// Marker of the child process of the SIGKILL test.
const CHILD_DIR: &str = "HOOKMESH_STORE_KILL_CHILD_DIR";

/// Not a test of its own: the body of the child process that the SIGKILL test starts (it runs
/// only with the variable set, and is ignored otherwise). Writes from 32 concurrent tasks
/// until killed and prints `ack <n>` after each write answered OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of sigkill_mid_writes_keeps_every_acknowledged_write"]
async fn child_writes_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let store: Arc<dyn Store> = Arc::new(open(Path::new(&dir)));
    let t0 = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32u32 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0u32.. {
                let n = w * 1_000_000 + i;
                let id = format!("k{n}");
                store.put_delivery(&delivery(&id, &format!("wh{}", w % 4), t0)).await.unwrap();
                store.add_attempt(&id, &attempt(1, t0)).await.unwrap();
                store.schedule_retry(&id, t0).await.unwrap();
                assert!(store.mark_seen(&id, Duration::from_secs(3600)).await.unwrap());
                println!("ack {n}");
            }
        });
    }
    tasks.join_next().await;
}

#[test]
fn sigkill_mid_writes_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    // SIGKILL while the 32 writers are mid-flight.
    let acked = acks_until_killed("child_writes_until_killed", CHILD_DIR, dir.path(), 2000);
    let store = open(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for n in &acked {
            let id = format!("k{n}");
            let d = store.get_delivery(&id).await.unwrap();
            assert!(d.is_some(), "acknowledged delivery {id} lost ({} acknowledged)", acked.len());
            assert_eq!(store.attempts(&id).await.unwrap().len(), 1, "attempt of {id}");
            assert!(store.is_seen(&id).await.unwrap(), "mark of {id}");
        }
        assert!(store.retry_backlog().await.unwrap() >= acked.len());
        // The store still takes writes after the crash.
        store.put_delivery(&delivery("after", "wh0", now_ms())).await.unwrap();
    });
}

#[test]
fn a_second_open_of_one_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = EmbeddedStore::open(dir.path(), Retention::default()).err().expect("second open refused").to_string();
    assert!(err.contains(&dir.path().display().to_string()) && err.contains("another process"), "{err}");
}

#[test]
fn a_foreign_format_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    std::fs::write(dir.path().join("FORMAT"), "hookmesh-store 99\n").unwrap();
    let err = EmbeddedStore::open(dir.path(), Retention::default()).err().expect("refused").to_string();
    assert!(err.contains(&dir.path().join("FORMAT").display().to_string()), "{err}");
    assert!(err.contains("hookmesh-store 99") && err.contains("hookmesh-store 1"), "{err}");
}

#[test]
fn a_damaged_directory_is_an_error_naming_it_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for i in 0..50 {
                s.put_delivery(&delivery(&format!("d{i}"), "wh", now_ms())).await.unwrap();
            }
        });
    }
    // Overwrite every file of the engine with garbage of the same length.
    fn scramble(p: &Path) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                scramble(&e.path());
            } else {
                let len = e.metadata().unwrap().len() as usize;
                std::fs::write(e.path(), vec![0xA5u8; len.max(16)]).unwrap();
            }
        }
    }
    scramble(&dir.path().join("engine"));
    match EmbeddedStore::open(dir.path(), Retention::default()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&dir.path().display().to_string()), "names the directory: {msg}");
        }
        Ok(_) => panic!("a scrambled engine directory opened as if intact"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_past_the_max_age_go_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention { max_age: Duration::from_secs(2), ..Retention::default() };
    let s = EmbeddedStore::open(dir.path(), retention).unwrap();
    for i in 0..3 {
        s.put_delivery(&delivery(&format!("old{i}"), "wh", now_ms())).await.unwrap();
        s.add_attempt(&format!("old{i}"), &attempt(1, now_ms())).await.unwrap();
    }
    assert_eq!(s.list_deliveries(&DeliveryQuery::default()).await.unwrap().len(), 3);
    // No further writes: the writer's sweep removes them once they are past the max age.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.list_deliveries(&DeliveryQuery::default()).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "deliveries past the max age are still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.get_delivery("old0").await.unwrap().is_none());
    assert!(s.attempts("old0").await.unwrap().is_empty(), "attempts go with their delivery");
}
