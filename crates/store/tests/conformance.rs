//! Conformance suite: every behaviour the [`Store`] trait promises, written once as a generic
//! function and run against each backend: the memory store, and the Redis store against a
//! real `redis-server` (one per test, on a free loopback port, stopped when the test ends).
//!
//! Waiting on real time (dedup TTLs, max age, leases) polls the condition with a deadline
//! rather than sleeping a fixed time.

use chrono::{DateTime, TimeDelta, Utc};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, DeliveryStatus, ErrorClass, RenderedRequest};
use hookmesh_core::webhook::{DeliveryPolicy, Method, SuccessCondition};
use hookmesh_core::EventType;
use hookmesh_store::{DeliveryQuery, MemoryStore, RedisStore, Retention, Store, StoreError};
use hookmesh_testkit::redis::RedisServer;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generates, for each behaviour, one test per backend. `name with <Retention>;` builds the
/// stores with that retention, plain `name;` with the default.
macro_rules! conformance {
    ($($name:ident $(with $retention:expr)?;)*) => {
        mod memory_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let retention = retention!($($retention)?);
                    super::$name(Arc::new(MemoryStore::with_retention(retention))).await;
                }
            )*
        }

        mod redis_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = RedisServer::start();
                    let retention = retention!($($retention)?);
                    let store = RedisStore::connect(&server.url(), "hm", retention).await.expect("connect to redis");
                    super::$name(Arc::new(store)).await;
                    drop(server);
                }
            )*
        }
    };
}

macro_rules! retention {
    () => {
        Retention::default()
    };
    ($r:expr) => {
        $r
    };
}

conformance! {
    mark_seen_is_atomic_under_concurrency;
    mark_seen_expires_after_ttl;
    forget_seen_allows_marking_again;
    put_then_get_round_trips;
    created_at_never_changes;
    attempts_keep_their_order;
    list_is_newest_first_and_filters;
    cursor_pages_have_no_overlap_or_gap;
    limit_zero_means_fifty;
    per_webhook_cap_drops_the_oldest with Retention { per_webhook: 3, ..Retention::default() };
    max_age_drops_the_oldest with Retention { max_age: Duration::from_secs(2), ..Retention::default() };
    claim_due_returns_only_due_ids_in_due_order;
    claim_due_respects_limit;
    claimed_retry_comes_back_after_its_lease;
    crashed_claimants_retries_come_back_in_real_time;
    rescheduling_moves_a_retry;
    cancel_removes_a_retry;
    concurrent_claimers_never_share_an_id;
    retry_backlog_counts_scheduled_and_claimed;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A whole-millisecond "now": both backends order by it identically.
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now is representable")
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn delivery(id: &str, tenant: &str, webhook: &str, at: DateTime<Utc>) -> Delivery {
    let request = RenderedRequest {
        delivery_id: id.to_string(),
        webhook_id: webhook.to_string(),
        webhook_version: 1,
        tenant_id: tenant.to_string(),
        event_id: format!("evt_{id}"),
        event_type: EventType::CallEnded,
        call_id: Some(format!("call_{id}")),
        first_trigger_at: at,
        method: Method::Post,
        url: format!("https://receiver.example/{webhook}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"delivery":"{id}"}}"#),
        success: SuccessCondition::default(),
        policy: DeliveryPolicy::default(),
        render_error: None,
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
        response_headers: vec![("content-type".into(), "text/plain".into())],
        response_body: format!("failure {number}"),
        duration_ms: 10 * u64::from(number),
        error_class: Some(ErrorClass::Status),
        error: Some(format!("status {}", 500 + number)),
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

async fn list_ids(store: &Arc<dyn Store>, q: DeliveryQuery) -> Vec<String> {
    ids(&store.list_deliveries(&q).await.expect("list deliveries"))
}

/// What a query must answer over `all`: matches, newest first (ties by id, descending),
/// at most `limit` (0 = 50).
fn expected(all: &[Delivery], q: &DeliveryQuery) -> Vec<String> {
    let mut matching: Vec<&Delivery> = all.iter().filter(|d| q.matches(d)).collect();
    matching.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let limit = if q.limit == 0 { 50 } else { q.limit };
    matching.into_iter().take(limit).map(|d| d.id.clone()).collect()
}

/// A deadline for polling a condition that real time makes true.
struct Poll {
    what: &'static str,
    deadline: Instant,
}

impl Poll {
    fn new(what: &'static str, timeout: Duration) -> Poll {
        Poll { what, deadline: Instant::now() + timeout }
    }

    async fn tick(&self) {
        assert!(Instant::now() < self.deadline, "timed out waiting for {}", self.what);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const TYPES: [EventType; 3] = [EventType::CallStarted, EventType::CallEnded, EventType::CallMissed];
const STATUSES: [DeliveryStatus; 4] =
    [DeliveryStatus::Pending, DeliveryStatus::Success, DeliveryStatus::Retrying, DeliveryStatus::Error];

/// `n` deliveries over two tenants, three webhooks, every status, three event types and
/// five calls, one second apart, with a few sharing a timestamp (ties order by id).
fn fixture(n: usize, base: DateTime<Utc>) -> Vec<Delivery> {
    (0..n)
        .map(|i| {
            // Pairs (5, 6), (11, 12), ... share their second.
            let second = if i % 6 == 0 && i > 0 { i - 1 } else { i };
            let mut d = delivery(
                &format!("msg_{i:03}"),
                if i % 2 == 0 { "t1" } else { "t2" },
                ["wh1", "wh2", "wh3"][i % 3],
                base + secs(second as i64),
            );
            d.status = STATUSES[i % 4];
            d.event_type = TYPES[(i / 2) % 3];
            d.request.event_type = d.event_type;
            d.call_id = if i % 7 == 3 { None } else { Some(format!("call-{}", i % 5)) };
            d.request.call_id = d.call_id.clone();
            d
        })
        .collect()
}

/// Puts the deliveries in an order unlike their age, so ordering can't come from insertion.
async fn put_all(store: &Arc<dyn Store>, all: &[Delivery]) {
    let (even, odd): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, d) in odd.into_iter().rev().chain(even) {
        store.put_delivery(d).await.expect("put delivery");
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup marks

async fn mark_seen_is_atomic_under_concurrency(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.mark_seen("call-1/evt-1", Duration::from_secs(60)).await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    assert_eq!(firsts, 1, "exactly one of 50 concurrent marks is first");
    assert!(!store.mark_seen("call-1/evt-1", Duration::from_secs(60)).await.unwrap());
    assert!(store.mark_seen("call-1/evt-2", Duration::from_secs(60)).await.unwrap(), "other keys are independent");
}

async fn mark_seen_expires_after_ttl(store: Arc<dyn Store>) {
    let ttl = Duration::from_millis(200);
    assert!(store.mark_seen("evt-ttl", ttl).await.unwrap());
    assert!(!store.mark_seen("evt-ttl", Duration::from_secs(60)).await.unwrap(), "seen within its ttl");
    let poll = Poll::new("the dedup mark to expire", Duration::from_secs(5));
    // Marking again with a long ttl answers true only once the short one has run out.
    while !store.mark_seen("evt-ttl", Duration::from_secs(60)).await.unwrap() {
        poll.tick().await;
    }
    assert!(!store.mark_seen("evt-ttl", ttl).await.unwrap(), "the new mark holds");
}

async fn forget_seen_allows_marking_again(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(60);
    assert!(store.mark_seen("evt-f", ttl).await.unwrap());
    store.forget_seen("evt-f").await.unwrap();
    assert!(store.mark_seen("evt-f", ttl).await.unwrap(), "a forgotten key can be marked again");
    assert!(!store.mark_seen("evt-f", ttl).await.unwrap());
    store.forget_seen("never-marked").await.expect("forgetting an unknown key is fine");
}

// ---------------------------------------------------------------------------------------------
// Delivery log

async fn put_then_get_round_trips(store: Arc<dyn Store>) {
    assert_eq!(store.get_delivery("msg_missing").await.unwrap(), None);
    // Sub-millisecond precision survives.
    let at = now_ms() - secs(60) + TimeDelta::nanoseconds(123_456);
    let d = delivery("msg_rt", "t1", "wh1", at);
    store.put_delivery(&d).await.unwrap();
    assert_eq!(store.get_delivery("msg_rt").await.unwrap(), Some(d.clone()));

    let mut updated = d.clone();
    updated.status = DeliveryStatus::Retrying;
    updated.attempts = 1;
    updated.updated_at = at + secs(1);
    updated.next_attempt_at = Some(at + secs(6));
    updated.last_status = Some(503);
    updated.last_error = Some("status 503".into());
    store.put_delivery(&updated).await.unwrap();
    assert_eq!(store.get_delivery("msg_rt").await.unwrap(), Some(updated), "a later put replaces the rest");
}

async fn created_at_never_changes(store: Arc<dyn Store>) {
    let t0 = now_ms() - secs(3600) + TimeDelta::nanoseconds(7_000_001);
    let first = delivery("msg_c", "t1", "wh1", t0);
    store.put_delivery(&first).await.unwrap();

    // A job routed again after a crash carries a new first trigger; the log keeps the old one.
    let mut again = delivery("msg_c", "t1", "wh1", t0 + secs(1800));
    again.status = DeliveryStatus::Success;
    store.put_delivery(&again).await.unwrap();
    let got = store.get_delivery("msg_c").await.unwrap().expect("still there");
    assert_eq!(got.created_at, t0);
    assert_eq!(got.request.first_trigger_at, t0);
    assert_eq!(got.status, DeliveryStatus::Success, "the rest is updated");

    // Its place in the log is its first trigger too.
    store.put_delivery(&delivery("msg_mid", "t1", "wh1", t0 + secs(900))).await.unwrap();
    assert_eq!(list_ids(&store, DeliveryQuery::default()).await, ["msg_mid", "msg_c"]);
    assert_eq!(
        list_ids(&store, DeliveryQuery { webhook_id: Some("wh1".into()), ..Default::default() }).await,
        ["msg_mid", "msg_c"]
    );
}

async fn attempts_keep_their_order(store: Arc<dyn Store>) {
    let at = now_ms() - secs(60);
    store.put_delivery(&delivery("msg_att", "t1", "wh1", at)).await.unwrap();
    let tries: Vec<Attempt> = (1..=3).map(|n| attempt(n, at + secs(i64::from(n)))).collect();
    for a in &tries {
        store.add_attempt("msg_att", a).await.unwrap();
    }
    assert_eq!(store.attempts("msg_att").await.unwrap(), tries);

    assert_eq!(store.attempts("msg_none").await.unwrap(), Vec::<Attempt>::new());
    store.add_attempt("msg_none", &tries[0]).await.expect("an attempt of an unknown delivery is ignored");
    assert_eq!(store.attempts("msg_none").await.unwrap(), Vec::<Attempt>::new(), "not kept without its delivery");
}

async fn list_is_newest_first_and_filters(store: Arc<dyn Store>) {
    let base = now_ms() - secs(3600);
    let all = fixture(24, base);
    put_all(&store, &all).await;
    let q = |f: fn(&mut DeliveryQuery)| {
        let mut q = DeliveryQuery::default();
        f(&mut q);
        q
    };
    let queries = [
        ("no filter", q(|_| {})),
        ("tenant", q(|q| q.tenant_id = Some("t1".into()))),
        ("webhook", q(|q| q.webhook_id = Some("wh2".into()))),
        ("webhook and tenant", q(|q| (q.webhook_id, q.tenant_id) = (Some("wh3".into()), Some("t2".into())))),
        ("webhook of another tenant", q(|q| (q.webhook_id, q.tenant_id) = (Some("wh3".into()), Some("t9".into())))),
        ("unknown webhook", q(|q| q.webhook_id = Some("wh9".into()))),
        ("status", q(|q| q.status = Some(DeliveryStatus::Error))),
        ("event type", q(|q| q.event_type = Some(EventType::CallMissed))),
        ("call id", q(|q| q.call_id = Some("call-2".into()))),
        ("tenant and status", q(|q| (q.tenant_id, q.status) = (Some("t2".into()), Some(DeliveryStatus::Success)))),
        ("limit", q(|q| q.limit = 5)),
        ("filter and limit", q(|q| (q.tenant_id, q.limit) = (Some("t1".into()), 3))),
    ];
    for (what, query) in &queries {
        assert_eq!(list_ids(&store, query.clone()).await, expected(&all, query), "{what}");
    }
    assert_eq!(expected(&all, &queries[0].1).len(), 24);
    assert_eq!(list_ids(&store, queries[0].1.clone()).await.first().map(String::as_str), Some("msg_023"));

    // `since` is inclusive, `until` exclusive; ties on a bound stay together.
    let at = |i: usize| all[i].created_at;
    let windows = [
        (Some(at(4)), None),
        (None, Some(at(9))),
        (Some(at(4)), Some(at(13))),
        (Some(at(5)), Some(at(7))),
        (Some(at(6)), Some(at(6))),
        (Some(at(20)), Some(at(4))),
        (Some(at(3) + TimeDelta::milliseconds(1)), Some(at(8) + TimeDelta::milliseconds(1))),
    ];
    for (since, until) in windows {
        let query = DeliveryQuery { since, until, ..Default::default() };
        assert_eq!(list_ids(&store, query.clone()).await, expected(&all, &query), "since {since:?} until {until:?}");
        let query = DeliveryQuery { since, until, webhook_id: Some("wh1".into()), ..Default::default() };
        assert_eq!(
            list_ids(&store, query.clone()).await,
            expected(&all, &query),
            "wh1 since {since:?} until {until:?}"
        );
    }
    let some = list_ids(&store, DeliveryQuery { since: Some(at(4)), until: Some(at(9)), ..Default::default() }).await;
    assert_eq!(some, ["msg_008", "msg_007", "msg_006", "msg_005", "msg_004"]);
}

async fn cursor_pages_have_no_overlap_or_gap(store: Arc<dyn Store>) {
    let all = fixture(41, now_ms() - secs(3600));
    put_all(&store, &all).await;
    let queries = [
        DeliveryQuery::default(),
        DeliveryQuery { tenant_id: Some("t1".into()), ..Default::default() },
        DeliveryQuery { webhook_id: Some("wh1".into()), ..Default::default() },
        DeliveryQuery { status: Some(DeliveryStatus::Retrying), ..Default::default() },
        DeliveryQuery { since: Some(all[10].created_at), until: Some(all[33].created_at), ..Default::default() },
    ];
    for query in queries {
        for page_size in [1, 4, 7] {
            let mut pages = Vec::new();
            let mut before = None;
            loop {
                let page =
                    list_ids(&store, DeliveryQuery { before: before.clone(), limit: page_size, ..query.clone() }).await;
                assert!(page.len() <= page_size);
                let Some(last) = page.last() else { break };
                before = Some(last.clone());
                pages.extend(page);
                assert!(pages.len() <= all.len(), "paging does not end");
            }
            let whole = expected(&all, &DeliveryQuery { limit: usize::MAX, ..query.clone() });
            assert_eq!(pages, whole, "pages of {page_size} for {query:?}");
        }
    }
    // A cursor in the middle of a tie (msg_005 and msg_006 share a timestamp).
    let after_tie =
        list_ids(&store, DeliveryQuery { before: Some("msg_006".into()), limit: 2, ..Default::default() }).await;
    assert_eq!(after_tie, ["msg_005", "msg_004"]);
}

async fn limit_zero_means_fifty(store: Arc<dyn Store>) {
    let base = now_ms() - secs(3600);
    let all: Vec<Delivery> = (0..60).map(|i| delivery(&format!("msg_{i:03}"), "t1", "wh1", base + secs(i))).collect();
    put_all(&store, &all).await;
    let got = list_ids(&store, DeliveryQuery::default()).await;
    assert_eq!(got.len(), 50);
    assert_eq!(got, expected(&all, &DeliveryQuery::default()));
    assert_eq!(got[0], "msg_059");
}

// ---------------------------------------------------------------------------------------------
// Retention

async fn per_webhook_cap_drops_the_oldest(store: Arc<dyn Store>) {
    // Built with `per_webhook: 3`.
    let base = now_ms() - secs(3600);
    for i in 0..5 {
        let id = format!("msg_a{i}");
        store.put_delivery(&delivery(&id, "t1", "wh1", base + secs(i))).await.unwrap();
        store.add_attempt(&id, &attempt(1, base + secs(i))).await.unwrap();
    }
    for i in 0..2 {
        store.put_delivery(&delivery(&format!("msg_b{i}"), "t1", "wh2", base + secs(i))).await.unwrap();
    }
    let by_webhook = |w: &str| DeliveryQuery { webhook_id: Some(w.into()), ..Default::default() };
    assert_eq!(list_ids(&store, by_webhook("wh1")).await, ["msg_a4", "msg_a3", "msg_a2"]);
    assert_eq!(list_ids(&store, by_webhook("wh2")).await, ["msg_b1", "msg_b0"], "other webhooks keep theirs");
    for gone in ["msg_a0", "msg_a1"] {
        assert_eq!(store.get_delivery(gone).await.unwrap(), None, "{gone} dropped");
        assert_eq!(store.attempts(gone).await.unwrap(), Vec::<Attempt>::new(), "{gone}'s attempts dropped");
    }
    assert_eq!(store.attempts("msg_a2").await.unwrap().len(), 1, "kept deliveries keep their attempts");
    let everything = list_ids(&store, DeliveryQuery::default()).await;
    assert_eq!(everything, ["msg_a4", "msg_a3", "msg_a2", "msg_b1", "msg_b0"]);
    let tenant = list_ids(&store, DeliveryQuery { tenant_id: Some("t1".into()), ..Default::default() }).await;
    assert_eq!(tenant, everything);

    // Updating a kept delivery is no new delivery: nothing more is dropped.
    let mut update = delivery("msg_a2", "t1", "wh1", base + secs(2));
    update.status = DeliveryStatus::Success;
    store.put_delivery(&update).await.unwrap();
    assert_eq!(list_ids(&store, by_webhook("wh1")).await, ["msg_a4", "msg_a3", "msg_a2"]);

    // A delivery older than all of a full webhook's is the oldest: it is the one dropped.
    store.put_delivery(&delivery("msg_old", "t1", "wh1", base - secs(60))).await.unwrap();
    assert_eq!(store.get_delivery("msg_old").await.unwrap(), None);
    assert_eq!(list_ids(&store, by_webhook("wh1")).await, ["msg_a4", "msg_a3", "msg_a2"]);
}

async fn max_age_drops_the_oldest(store: Arc<dyn Store>) {
    // Built with `max_age: 2 s`.
    let now = Utc::now();
    let ageing = delivery("msg_ageing", "t1", "wh1", now - TimeDelta::milliseconds(1000));
    store.put_delivery(&ageing).await.unwrap();
    store.add_attempt("msg_ageing", &attempt(1, now)).await.unwrap();

    // Already past the max age: not kept at all.
    store.put_delivery(&delivery("msg_stale", "t1", "wh2", now - secs(10))).await.unwrap();
    assert_eq!(store.get_delivery("msg_stale").await.unwrap(), None);
    assert!(!list_ids(&store, DeliveryQuery::default()).await.contains(&"msg_stale".to_string()));

    assert!(store.get_delivery("msg_ageing").await.unwrap().is_some(), "younger than the max age");
    assert_eq!(store.attempts("msg_ageing").await.unwrap().len(), 1);

    // New deliveries keep arriving; once the max age has passed the old one is gone.
    let poll = Poll::new("the delivery to age out", Duration::from_secs(10));
    let mut n = 0;
    let newest = loop {
        n += 1;
        let id = format!("msg_new{n}");
        store.put_delivery(&delivery(&id, "t1", "wh3", Utc::now())).await.unwrap();
        if store.get_delivery("msg_ageing").await.unwrap().is_none() {
            break id;
        }
        poll.tick().await;
    };
    assert_eq!(store.attempts("msg_ageing").await.unwrap(), Vec::<Attempt>::new(), "its attempts went with it");
    let listed = list_ids(&store, DeliveryQuery::default()).await;
    assert!(!listed.contains(&"msg_ageing".to_string()), "not listed: {listed:?}");
    assert_eq!(listed.first(), Some(&newest));
    let wh1 = list_ids(&store, DeliveryQuery { webhook_id: Some("wh1".into()), ..Default::default() }).await;
    assert_eq!(wh1, Vec::<String>::new());
    assert!(store.get_delivery(&newest).await.unwrap().is_some(), "young deliveries stay");
}

// ---------------------------------------------------------------------------------------------
// Retry schedule

const LEASE: Duration = Duration::from_secs(30);

async fn claim_due_returns_only_due_ids_in_due_order(store: Arc<dyn Store>) {
    let now = now_ms();
    store.schedule_retry("a", now - secs(3)).await.unwrap();
    store.schedule_retry("b", now - secs(1)).await.unwrap();
    store.schedule_retry("c", now - secs(2)).await.unwrap();
    store.schedule_retry("later", now + secs(3600)).await.unwrap();
    store.schedule_retry("e", now).await.unwrap();
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), ["a", "c", "b", "e"], "due ones, oldest due first");
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), Vec::<String>::new(), "claimed ones are leased");
    assert_eq!(store.claim_due(now + secs(10), 10, LEASE).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        store.claim_due(now + secs(3600), 10, Duration::from_secs(7200)).await.unwrap(),
        ["a", "b", "c", "e", "later"]
    );
}

async fn claim_due_respects_limit(store: Arc<dyn Store>) {
    let now = now_ms();
    for i in 0..5 {
        store.schedule_retry(&format!("r{i}"), now - secs(10 - i)).await.unwrap();
    }
    assert_eq!(store.claim_due(now, 0, LEASE).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.claim_due(now, 2, LEASE).await.unwrap(), ["r0", "r1"]);
    assert_eq!(store.claim_due(now, 2, LEASE).await.unwrap(), ["r2", "r3"]);
    assert_eq!(store.claim_due(now, 2, LEASE).await.unwrap(), ["r4"]);
    assert_eq!(store.claim_due(now, 2, LEASE).await.unwrap(), Vec::<String>::new());
}

async fn claimed_retry_comes_back_after_its_lease(store: Arc<dyn Store>) {
    let now = now_ms();
    store.schedule_retry("a", now - secs(1)).await.unwrap();
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), ["a"]);
    // The claimant went away without rescheduling or cancelling.
    assert_eq!(store.claim_due(now + secs(29), 10, LEASE).await.unwrap(), Vec::<String>::new(), "leased");
    assert_eq!(store.claim_due(now + secs(30), 10, LEASE).await.unwrap(), ["a"], "due again when the lease ends");
    assert_eq!(store.claim_due(now + secs(40), 10, LEASE).await.unwrap(), Vec::<String>::new(), "leased again");
    assert_eq!(store.retry_backlog().await.unwrap(), 1);
}

async fn crashed_claimants_retries_come_back_in_real_time(store: Arc<dyn Store>) {
    store.schedule_retry("a", Utc::now()).await.unwrap();
    let poll = Poll::new("the retry to become due", Duration::from_secs(5));
    while store.claim_due(Utc::now(), 10, Duration::from_millis(300)).await.unwrap().is_empty() {
        poll.tick().await;
    }
    // Nobody reschedules it: it comes back once the 300 ms lease has passed.
    let poll = Poll::new("the lease to expire", Duration::from_secs(5));
    while store.claim_due(Utc::now(), 10, LEASE).await.unwrap() != ["a"] {
        poll.tick().await;
    }
    assert_eq!(store.claim_due(Utc::now(), 10, LEASE).await.unwrap(), Vec::<String>::new());
}

async fn rescheduling_moves_a_retry(store: Arc<dyn Store>) {
    let now = now_ms();
    store.schedule_retry("a", now - secs(1)).await.unwrap();
    store.schedule_retry("a", now + secs(3600)).await.unwrap();
    assert_eq!(store.retry_backlog().await.unwrap(), 1, "moved, not duplicated");
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.claim_due(now + secs(3600), 10, LEASE).await.unwrap(), ["a"]);

    // A claimant that failed again reschedules: the new due time replaces the lease.
    store.schedule_retry("b", now - secs(1)).await.unwrap();
    assert_eq!(store.claim_due(now, 10, Duration::from_secs(600)).await.unwrap(), ["b"]);
    store.schedule_retry("b", now + secs(5)).await.unwrap();
    assert_eq!(store.claim_due(now + secs(4), 10, LEASE).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.claim_due(now + secs(5), 10, LEASE).await.unwrap(), ["b"]);

    // Moving earlier works too.
    store.schedule_retry("c", now + secs(7200)).await.unwrap();
    store.schedule_retry("c", now - secs(5)).await.unwrap();
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), ["c"]);
}

async fn cancel_removes_a_retry(store: Arc<dyn Store>) {
    let now = now_ms();
    store.schedule_retry("a", now - secs(2)).await.unwrap();
    store.schedule_retry("b", now - secs(1)).await.unwrap();
    store.schedule_retry("c", now + secs(60)).await.unwrap();
    assert!(store.cancel_retry("a").await.unwrap());
    assert!(!store.cancel_retry("a").await.unwrap(), "already cancelled");
    assert!(!store.cancel_retry("never").await.unwrap());
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), ["b"]);
    assert!(store.cancel_retry("b").await.unwrap(), "a claimed retry can be cancelled");
    assert!(store.cancel_retry("c").await.unwrap(), "a future retry can be cancelled");
    assert_eq!(store.claim_due(now + secs(3600), 10, LEASE).await.unwrap(), Vec::<String>::new(), "none come back");
    assert_eq!(store.retry_backlog().await.unwrap(), 0);
}

async fn concurrent_claimers_never_share_an_id(store: Arc<dyn Store>) {
    let now = now_ms();
    let scheduled: HashSet<String> = (0..200).map(|i| format!("r{i:03}")).collect();
    for (i, id) in scheduled.iter().enumerate() {
        store.schedule_retry(id, now - TimeDelta::milliseconds(i as i64)).await.unwrap();
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_due(now, 7, Duration::from_secs(60)).await.unwrap();
                    // More claims than ids means leases are not held; stop and let the check say so.
                    if got.is_empty() || mine.len() > 200 {
                        return mine;
                    }
                    mine.extend(got);
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let unique: HashSet<String> = claimed.iter().cloned().collect();
    assert_eq!(unique.len(), claimed.len(), "an id was claimed twice while leased");
    assert_eq!(unique, scheduled, "every due id was claimed");
}

async fn retry_backlog_counts_scheduled_and_claimed(store: Arc<dyn Store>) {
    let now = now_ms();
    assert_eq!(store.retry_backlog().await.unwrap(), 0);
    for (id, due) in [("a", now - secs(2)), ("b", now - secs(1)), ("c", now + secs(60))] {
        store.schedule_retry(id, due).await.unwrap();
    }
    assert_eq!(store.retry_backlog().await.unwrap(), 3);
    store.schedule_retry("c", now + secs(120)).await.unwrap();
    assert_eq!(store.retry_backlog().await.unwrap(), 3, "rescheduling adds nothing");
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap().len(), 2);
    assert_eq!(store.retry_backlog().await.unwrap(), 3, "claimed ones still count");
    store.cancel_retry("a").await.unwrap();
    assert_eq!(store.retry_backlog().await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------------
// Redis only: what the key layout promises and how errors surface.

mod redis_layout {
    use super::*;
    use redis::AsyncCommands;

    #[tokio::test]
    async fn keys_follow_the_documented_layout_and_expire() {
        let server = RedisServer::start();
        let retention = Retention { max_age: Duration::from_secs(3600), per_webhook: 100 };
        let store = RedisStore::connect(&server.url(), "lay", retention).await.unwrap();
        let at = now_ms() - secs(60);
        store.put_delivery(&delivery("msg_k", "t1", "wh1", at)).await.unwrap();
        store.add_attempt("msg_k", &attempt(1, at)).await.unwrap();
        store.schedule_retry("msg_k", at + secs(5)).await.unwrap();
        store.mark_seen("evt-k", Duration::from_secs(60)).await.unwrap();

        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let created = at.timestamp_millis();
        let json: String = raw.hget("lay:d:msg_k", "json").await.unwrap();
        assert!(json.contains("\"msg_k\""));
        assert_eq!(raw.hget::<_, _, i64>("lay:d:msg_k", "created").await.unwrap(), created);
        assert_eq!(raw.llen::<_, usize>("lay:a:msg_k").await.unwrap(), 1);
        for index in ["lay:idx:all", "lay:idx:wh:wh1", "lay:idx:t:t1"] {
            assert_eq!(raw.zscore::<_, _, Option<i64>>(index, "msg_k").await.unwrap(), Some(created), "{index}");
        }
        assert_eq!(raw.zscore::<_, _, Option<i64>>("lay:retries", "msg_k").await.unwrap(), Some(created + 5000));
        assert_eq!(raw.get::<_, Option<String>>("lay:seen:evt-k").await.unwrap().as_deref(), Some("1"));

        // Nothing outlives the max age, even when no later put comes to trim it.
        let max_ms = 3600 * 1000;
        for key in ["lay:d:msg_k", "lay:a:msg_k", "lay:idx:all", "lay:idx:wh:wh1", "lay:idx:t:t1", "lay:seen:evt-k"] {
            let ttl: i64 = raw.pttl(key).await.unwrap();
            assert!(ttl > 0 && ttl <= max_ms, "{key} expires (pttl {ttl})");
        }
        let mut keys: Vec<String> = raw.keys("lay:*").await.unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                "lay:a:msg_k",
                "lay:d:msg_k",
                "lay:idx:all",
                "lay:idx:t:t1",
                "lay:idx:wh:wh1",
                "lay:retries",
                "lay:seen:evt-k"
            ]
        );
    }

    #[tokio::test]
    async fn prefixes_keep_installations_apart() {
        let server = RedisServer::start();
        let a = RedisStore::connect(&server.url(), "a", Retention::default()).await.unwrap();
        let b = RedisStore::connect(&server.url(), "b", Retention::default()).await.unwrap();
        assert!(a.mark_seen("evt", Duration::from_secs(60)).await.unwrap());
        assert!(b.mark_seen("evt", Duration::from_secs(60)).await.unwrap());
        a.put_delivery(&delivery("msg_p", "t1", "wh1", now_ms())).await.unwrap();
        assert_eq!(b.get_delivery("msg_p").await.unwrap(), None);
        a.schedule_retry("msg_p", now_ms()).await.unwrap();
        assert_eq!(b.retry_backlog().await.unwrap(), 0);
        assert_eq!(a.retry_backlog().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn failures_are_backend_errors_naming_the_cause() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = raw.set("hm:retries", "not a sorted set").await.unwrap();
        match store.retry_backlog().await {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("WRONGTYPE"), "{msg}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        let _: () = raw.hset("hm:d:msg_bad", "json", "{not json").await.unwrap();
        assert!(matches!(store.get_delivery("msg_bad").await, Err(StoreError::Corrupt(_))));
    }
}
