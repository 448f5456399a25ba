//! Conformance suites: every behaviour the [`HotState`] and [`DeliveryLog`] traits promise,
//! written once as a generic function and run against each backend that holds that part: the
//! memory store, the durable embedded store (a fresh temporary directory per test), the Redis
//! store against a real `redis-server` (one per test, on a free loopback port, stopped when
//! the test ends; the same with the retry schedule in one bucket), hot state on a real Redis
//! Cluster of three masters (shared by the tests that overlap in time, each test under a
//! prefix of its own: a cluster takes about 3 s to form, so one per test would add a
//! minute of waiting), the PostgreSQL log against the machine's PostgreSQL (a database per
//! test, dropped when it ends), and a [`Split`] store joining two backends.
//!
//! Waiting on real time (dedup TTLs, max age, leases) polls the condition with a deadline
//! rather than sleeping a fixed time.

use chrono::{DateTime, TimeDelta, Utc};
use hookmesh_core::breaker::{Breaker, CircuitState};
use hookmesh_core::delivery::{
    Attempt, AttemptTrigger, CallInfo, Delivery, DeliveryStatus, ErrorClass, RenderedRequest,
};
use hookmesh_core::health::HealthSample;
use hookmesh_core::webhook::{DeliveryPolicy, Method, SuccessCondition};
use hookmesh_core::EventType;
use hookmesh_store::{
    DeliveryLog, DeliveryQuery, EmbeddedStore, HotState, MemoryStore, PostgresLog, RedisStore, Retention, Split,
    StoreError, HEALTH_SAMPLES, HEALTH_WINDOW,
};
use hookmesh_testkit::postgres::PostgresDb;
use hookmesh_testkit::redis::{RedisCluster, RedisServer};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generates, for each behaviour of a suite, one test per backend that holds that part of the
/// state. `name with <Retention>;` builds the stores with that retention, plain `name;` with
/// the default. Each backend is a function of `backends` answering the store and what must
/// live as long as it (a temporary directory, a server).
macro_rules! suite {
    ($suite:ident on [$($backend:ident),*] $tests:tt) => {
        mod $suite {
            $( suite!(@backend $backend $tests); )*
        }
    };
    (@backend $backend:ident { $($name:ident $(with $retention:expr)?;)* }) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _keep) = backends::$backend(retention!($($retention)?)).await;
                    super::super::$name(store).await;
                }
            )*
        }
    };
}

/// The backends, each built fresh for one test.
mod backends {
    use super::*;

    pub async fn memory(retention: Retention) -> (Arc<MemoryStore>, ()) {
        (Arc::new(MemoryStore::with_retention(retention)), ())
    }

    pub async fn embedded(retention: Retention) -> (Arc<EmbeddedStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), retention).expect("open the embedded store");
        (Arc::new(store), dir)
    }

    pub async fn redis(retention: Retention) -> (Arc<RedisStore>, RedisServer) {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", retention).await.expect("connect to redis");
        (Arc::new(store), server)
    }

    /// The schedule in one bucket: the claim path without the read of every bucket's head.
    pub async fn redis_one_bucket(retention: Retention) -> (Arc<RedisStore>, RedisServer) {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", retention).await.expect("connect to redis");
        (Arc::new(store.with_retry_buckets(1).await.expect("one bucket")), server)
    }

    /// Hot state on a three-master Redis Cluster, under a prefix no other test uses.
    pub async fn redis_cluster(retention: Retention) -> (Arc<RedisStore>, Arc<RedisCluster>) {
        let cluster = shared_cluster();
        let store =
            RedisStore::connect(&cluster.url(), &unique_prefix(), retention).await.expect("connect to the cluster");
        assert!(store.is_cluster());
        (Arc::new(store), cluster)
    }

    pub async fn postgres(retention: Retention) -> (Arc<PostgresLog>, PostgresDb) {
        let db = PostgresDb::create();
        let log = PostgresLog::connect(&db.url(), retention).await.expect("connect to postgres");
        (Arc::new(log), db)
    }

    /// Hot state in memory, the log in the embedded store: what a [`Split`] store passes
    /// through is the behaviour of the backend behind it.
    pub async fn split(retention: Retention) -> (Arc<Split>, tempfile::TempDir) {
        let (log, dir) = embedded(retention).await;
        (Arc::new(Split { hot: Arc::new(MemoryStore::with_retention(retention)), log }), dir)
    }
}

/// The Redis Cluster of the tests running now, started by the first of them and stopped
/// (servers killed, directory removed) when the last one ends; a later test starts a new one.
fn shared_cluster() -> Arc<RedisCluster> {
    static SHARED: std::sync::Mutex<std::sync::Weak<RedisCluster>> = std::sync::Mutex::new(std::sync::Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let started = Instant::now();
    let cluster = Arc::new(RedisCluster::start());
    eprintln!("redis cluster {} formed in {:?}", cluster.url(), started.elapsed());
    *shared = Arc::downgrade(&cluster);
    cluster
}

/// A key prefix unique in this test binary, so tests sharing a cluster never share a key.
fn unique_prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("t{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

macro_rules! retention {
    () => {
        Retention::default()
    };
    ($r:expr) => {
        $r
    };
}

suite!(hot_state on [memory, embedded, redis, redis_one_bucket, redis_cluster, split] {
    mark_seen_is_atomic_under_concurrency;
    mark_seen_expires_after_ttl;
    is_seen_reads_a_mark_without_setting_it;
    claim_due_returns_only_due_ids_in_due_order;
    claim_due_respects_limit;
    claimed_retry_comes_back_after_its_lease;
    crashed_claimants_retries_come_back_in_real_time;
    rescheduling_moves_a_retry;
    cancel_removes_a_retry;
    concurrent_claimers_never_share_an_id;
    retry_backlog_counts_scheduled_and_claimed;
    rate_reserve_spaces_slots_at_the_rate_after_the_burst;
    rate_reserve_burst_comes_back_with_time;
    rate_reserve_keys_are_independent;
    concurrent_reservations_take_distinct_slots;
    rate_reserve_survives_extreme_limits;
    lane_sends_one_at_a_time_in_push_order;
    lanes_are_independent_and_repushed_ids_go_last;
    concurrent_lane_pushes_elect_one_head;
    breaker_round_trips_and_defaults_to_closed;
    concurrent_breaker_updates_are_never_lost;
    health_samples_come_back_oldest_first;
    health_forgets_samples_older_than_the_window;
    identical_health_samples_are_distinct_attempts;
    health_batches_are_their_samples_in_order;
    health_keeps_at_most_health_samples;
    call_context_merges_per_tenant_and_call;
    call_context_expires_after_its_ttl;
    concurrent_context_merges_keep_every_name;
    a_call_context_holds_at_most_max_names;
});

suite!(delivery_log on [memory, embedded, redis, postgres, split] {
    put_then_get_round_trips;
    create_records_once_and_answers_what_the_log_has;
    created_at_never_changes;
    attempts_keep_their_order;
    record_attempt_stores_the_attempt_and_the_status_it_led_to;
    list_is_newest_first_and_filters;
    list_filters_by_campaign_direction_and_tracking;
    cursor_pages_have_no_overlap_or_gap;
    limit_zero_means_fifty;
    per_webhook_cap_drops_the_oldest with Retention { per_webhook: 3, ..Retention::default() };
    max_age_drops_the_oldest with Retention { max_age: Duration::from_secs(2), ..Retention::default() };
    expire_webhook_removes_its_old_deliveries_only;
});

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
        call: CallInfo::default(),
        first_trigger_at: at,
        method: Method::Post,
        url: format!("https://receiver.example/{webhook}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(r#"{{"delivery":"{id}"}}"#),
        success: SuccessCondition::default(),
        policy: DeliveryPolicy::default(),
        render_error: None,
        traceparent: None,
        personal: Vec::new(),
        context: None,
        hold: None,
        data_points: None,
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
        context_note: None,
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

async fn list_ids(store: &Arc<dyn DeliveryLog>, q: DeliveryQuery) -> Vec<String> {
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
async fn put_all(store: &Arc<dyn DeliveryLog>, all: &[Delivery]) {
    let (even, odd): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, d) in odd.into_iter().rev().chain(even) {
        store.put_delivery(d).await.expect("put delivery");
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup marks

async fn is_seen_reads_a_mark_without_setting_it(store: Arc<dyn HotState>) {
    assert!(!store.is_seen("evt-r").await.unwrap(), "never marked");
    assert!(!store.is_seen("evt-r").await.unwrap(), "asking does not mark");
    assert!(store.mark_seen("evt-r", Duration::from_millis(300)).await.unwrap(), "still fresh after two reads");
    assert!(store.is_seen("evt-r").await.unwrap(), "marked");
    assert!(!store.is_seen("evt-other").await.unwrap(), "other keys are independent");
    let poll = Poll::new("the dedup mark to expire", Duration::from_secs(5));
    while store.is_seen("evt-r").await.unwrap() {
        poll.tick().await;
    }
    assert!(store.mark_seen("evt-r", Duration::from_secs(60)).await.unwrap(), "an expired mark is gone");
}

async fn mark_seen_is_atomic_under_concurrency(store: Arc<dyn HotState>) {
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

async fn mark_seen_expires_after_ttl(store: Arc<dyn HotState>) {
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

fn ctx(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn call_context_merges_per_tenant_and_call(store: Arc<dyn HotState>) {
    let hour = Duration::from_secs(3600);
    assert!(store.context_get("t1", "call-1").await.unwrap().is_empty(), "no context before a capture");
    store.context_merge("t1", "call-1", &ctx(&[("lead_id", "L-42"), ("owner", "ann")]), hour).await.unwrap();
    store.context_merge("t1", "call-1", &ctx(&[("owner", "bob"), ("stage", "won")]), hour).await.unwrap();
    assert_eq!(
        store.context_get("t1", "call-1").await.unwrap(),
        ctx(&[("lead_id", "L-42"), ("owner", "bob"), ("stage", "won")]),
        "a merge keeps other names and replaces the names it sets"
    );
    // Tenant isolation: the same call id under another tenant is another context.
    assert!(store.context_get("t2", "call-1").await.unwrap().is_empty());
    assert!(store.context_get("t1", "call-2").await.unwrap().is_empty());
    store.context_merge("t2", "call-1", &ctx(&[("lead_id", "other")]), hour).await.unwrap();
    assert_eq!(store.context_get("t1", "call-1").await.unwrap()["lead_id"], "L-42");
    // Ids with separators, braces and unicode stay apart.
    store.context_merge("t1", "a/b{c}", &ctx(&[("x", "é \"q\"\n")]), hour).await.unwrap();
    assert_eq!(store.context_get("t1", "a/b{c}").await.unwrap(), ctx(&[("x", "é \"q\"\n")]));
    assert!(store.context_get("t1/a", "b{c}").await.unwrap().is_empty());
    // Merging nothing changes nothing.
    store.context_merge("t1", "call-1", &BTreeMap::new(), hour).await.unwrap();
    assert_eq!(store.context_get("t1", "call-1").await.unwrap().len(), 3);
}

async fn call_context_expires_after_its_ttl(store: Arc<dyn HotState>) {
    store.context_merge("t1", "call-ttl", &ctx(&[("lead_id", "L-1")]), Duration::from_millis(200)).await.unwrap();
    assert_eq!(store.context_get("t1", "call-ttl").await.unwrap()["lead_id"], "L-1");
    let poll = Poll::new("the call context to expire", Duration::from_secs(5));
    while !store.context_get("t1", "call-ttl").await.unwrap().is_empty() {
        poll.tick().await;
    }
    // A merge after expiry starts a fresh context: the expired names do not come back.
    store.context_merge("t1", "call-ttl", &ctx(&[("stage", "new")]), Duration::from_secs(60)).await.unwrap();
    assert_eq!(store.context_get("t1", "call-ttl").await.unwrap(), ctx(&[("stage", "new")]));
}

async fn a_call_context_holds_at_most_max_names(store: Arc<dyn HotState>) {
    use hookmesh_core::context::MAX_NAMES_PER_CALL;
    let hour = Duration::from_secs(3600);
    let first: BTreeMap<String, String> =
        (0..MAX_NAMES_PER_CALL - 1).map(|i| (format!("a{i:03}"), "x".into())).collect();
    assert_eq!(store.context_merge("t1", "full", &first, hour).await.unwrap(), 0);
    // One more fits; the second new name does not; known names still change.
    let more = ctx(&[("a000", "changed"), ("b1", "y"), ("b2", "z")]);
    assert_eq!(store.context_merge("t1", "full", &more, hour).await.unwrap(), 1);
    let got = store.context_get("t1", "full").await.unwrap();
    assert_eq!(got.len(), MAX_NAMES_PER_CALL);
    assert_eq!((got["a000"].as_str(), got["b1"].as_str()), ("changed", "y"));
    assert!(!got.contains_key("b2"));
    assert_eq!(store.context_merge("t1", "full", &ctx(&[("a001", "again")]), hour).await.unwrap(), 0);
}

async fn concurrent_context_merges_keep_every_name(store: Arc<dyn HotState>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("v{i}");
                store.context_merge("t1", "busy", &ctx(&[(&name, "x")]), Duration::from_secs(60)).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.context_get("t1", "busy").await.unwrap().len(), 16, "no merge lost another's name");
}

async fn put_then_get_round_trips(store: Arc<dyn DeliveryLog>) {
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

async fn create_records_once_and_answers_what_the_log_has(store: Arc<dyn DeliveryLog>) {
    let at = now_ms() - secs(60);
    let d = delivery("msg_new", "t1", "wh1", at);
    assert_eq!(store.create_delivery(&d).await.unwrap(), None, "a new delivery");
    assert_eq!(store.get_delivery("msg_new").await.unwrap(), Some(d.clone()));
    // Consumed again after a crash: the log answers what the first consumption recorded.
    let mut again = delivery("msg_new", "t1", "wh1", at + secs(30));
    again.status = DeliveryStatus::Success;
    assert_eq!(store.create_delivery(&again).await.unwrap(), Some(d.clone()), "the stored one");
    assert_eq!(store.get_delivery("msg_new").await.unwrap(), Some(d), "not replaced");

    // Creates of distinct deliveries from many tasks at once are all recorded.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store.create_delivery(&delivery(&format!("msg_many{i}"), "t1", "wh1", at + secs(i))).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), None);
    }
    let listed =
        list_ids(&store, DeliveryQuery { webhook_id: Some("wh1".into()), limit: 100, ..Default::default() }).await;
    assert_eq!(listed.len(), 17, "{listed:?}");
}

async fn created_at_never_changes(store: Arc<dyn DeliveryLog>) {
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

async fn attempts_keep_their_order(store: Arc<dyn DeliveryLog>) {
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

async fn record_attempt_stores_the_attempt_and_the_status_it_led_to(store: Arc<dyn DeliveryLog>) {
    let at = now_ms() - secs(60);
    let d = delivery("msg_rec", "t1", "wh1", at);
    store.put_delivery(&d).await.unwrap();
    store.add_attempt("msg_rec", &attempt(1, at)).await.unwrap();
    let mut done = d.clone();
    done.status = DeliveryStatus::Success;
    done.attempts = 2;
    done.created_at = now_ms(); // a later writer's clock: the first trigger stays
    store.record_attempt(&done, &attempt(2, at + secs(5))).await.unwrap();
    let got = store.get_delivery("msg_rec").await.unwrap().unwrap();
    assert_eq!((got.status, got.attempts, got.created_at), (DeliveryStatus::Success, 2, at));
    let numbers: Vec<u32> = store.attempts("msg_rec").await.unwrap().iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2], "appended after the first");
    // A delivery the log does not have (the dispatcher's first attempt of a new delivery) is
    // stored with its attempt, and listed like any other.
    let mut first = delivery("msg_new_rec", "t1", "wh1", at);
    first.status = DeliveryStatus::Success;
    first.attempts = 1;
    store.record_attempt(&first, &attempt(1, at)).await.unwrap();
    let got = store.get_delivery("msg_new_rec").await.unwrap().expect("stored with its attempt");
    assert_eq!((got.status, got.attempts, got.created_at), (DeliveryStatus::Success, 1, at));
    assert_eq!(store.attempts("msg_new_rec").await.unwrap(), vec![attempt(1, at)]);
    let listed = store.list_deliveries(&DeliveryQuery::default()).await.unwrap();
    assert!(
        listed.iter().any(|d| d.id == "msg_new_rec"),
        "listed: {:?}",
        listed.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
    // Its next attempt follows it.
    first.attempts = 2;
    store.record_attempt(&first, &attempt(2, at + secs(1))).await.unwrap();
    let numbers: Vec<u32> = store.attempts("msg_new_rec").await.unwrap().iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2]);
}

async fn list_is_newest_first_and_filters(store: Arc<dyn DeliveryLog>) {
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

/// The call's campaign (id exactly, or name in any case), direction and tracking number (any
/// spelling of its digits) filter the log, alone, together and with the other filters; the
/// call info survives the round trip. Expected ids are written out, not computed by the
/// filter under test.
async fn list_filters_by_campaign_direction_and_tracking(store: Arc<dyn DeliveryLog>) {
    let base = now_ms() - secs(600);
    let info = |campaign: Option<(&str, &str)>, direction: Option<&str>, tracking: Option<&str>| CallInfo {
        campaign_id: campaign.map(|c| c.0.to_string()),
        campaign_name: campaign.map(|c| c.1.to_string()),
        direction: direction.map(str::to_string),
        tracking: tracking.map(str::to_string),
    };
    let sales = Some(("cmp-1", "Sales Campaign"));
    let support = Some(("cmp-2", "Support"));
    let calls = [
        info(sales, Some("inbound"), Some("7774839229")),
        info(sales, Some("outbound"), Some("+1 (777) 483-9229")),
        info(support, Some("inbound"), Some("5550001111")),
        info(None, Some("click_to_call"), None),
        info(sales, None, Some("5550001111")),
        info(None, None, None),
    ];
    let all: Vec<Delivery> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let mut d = delivery(&format!("msg_c{i}"), if i == 4 { "t2" } else { "t1" }, "wh1", base + secs(i as i64));
            d.request.call = call.clone();
            d
        })
        .collect();
    put_all(&store, &all).await;
    let got = store.get_delivery("msg_c1").await.unwrap().expect("stored");
    assert_eq!(got.request.call, calls[1], "call info round-trips");

    let q = |f: fn(&mut DeliveryQuery)| {
        let mut q = DeliveryQuery::default();
        f(&mut q);
        q
    };
    let cases: [(&str, DeliveryQuery, &[&str]); 11] = [
        ("campaign id", q(|q| q.campaign = Some("cmp-1".into())), &["msg_c4", "msg_c1", "msg_c0"]),
        (
            "campaign name, other case",
            q(|q| q.campaign = Some("sales campaign".into())),
            &["msg_c4", "msg_c1", "msg_c0"],
        ),
        ("campaign id is exact", q(|q| q.campaign = Some("CMP-1".into())), &[]),
        ("unknown campaign", q(|q| q.campaign = Some("cmp-9".into())), &[]),
        ("direction", q(|q| q.direction = Some("inbound".into())), &["msg_c2", "msg_c0"]),
        ("click to call", q(|q| q.direction = Some("click_to_call".into())), &["msg_c3"]),
        ("tracking, other spelling", q(|q| q.tracking = Some("777-483-9229".into())), &["msg_c1", "msg_c0"]),
        ("tracking with country code", q(|q| q.tracking = Some("+15550001111".into())), &["msg_c4", "msg_c2"]),
        (
            "campaign and direction",
            q(|q| (q.campaign, q.direction) = (Some("Sales Campaign".into()), Some("outbound".into()))),
            &["msg_c1"],
        ),
        (
            "campaign, tracking and tenant",
            q(|q| {
                (q.campaign, q.tracking, q.tenant_id) =
                    (Some("cmp-1".into()), Some("5550001111".into()), Some("t2".into()))
            }),
            &["msg_c4"],
        ),
        (
            "tracking and webhook",
            q(|q| (q.tracking, q.webhook_id) = (Some("5550001111".into()), Some("wh2".into()))),
            &[],
        ),
    ];
    for (what, query, want) in cases {
        assert_eq!(list_ids(&store, query).await, want, "{what}");
    }
}

async fn cursor_pages_have_no_overlap_or_gap(store: Arc<dyn DeliveryLog>) {
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

async fn limit_zero_means_fifty(store: Arc<dyn DeliveryLog>) {
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

async fn per_webhook_cap_drops_the_oldest(store: Arc<dyn DeliveryLog>) {
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

async fn max_age_drops_the_oldest(store: Arc<dyn DeliveryLog>) {
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

async fn expire_webhook_removes_its_old_deliveries_only(store: Arc<dyn DeliveryLog>) {
    // A webhook keeping 7 days, seen 10 days into its life: one delivery a day.
    let now = now_ms();
    for day in 0..10 {
        let id = format!("msg_d{day}");
        let at = now - TimeDelta::days(9 - day) - secs(60);
        store.put_delivery(&delivery(&id, "t1", "wh1", at)).await.unwrap();
        store.add_attempt(&id, &attempt(1, at)).await.unwrap();
        store.put_delivery(&delivery(&format!("msg_o{day}"), "t1", "wh2", at)).await.unwrap();
    }
    let cutoff = now - TimeDelta::days(7);
    // In batches, oldest first: the limit holds, and the next call takes the rest.
    assert_eq!(store.expire_webhook("wh1", cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.get_delivery("msg_d0").await.unwrap(), None);
    assert!(store.get_delivery("msg_d2").await.unwrap().is_some(), "the limit holds");
    assert_eq!(store.expire_webhook("wh1", cutoff, 100).await.unwrap(), 1);
    assert_eq!(store.expire_webhook("wh1", cutoff, 100).await.unwrap(), 0, "nothing left to expire");
    let by_webhook = |w: &str| DeliveryQuery { webhook_id: Some(w.into()), ..Default::default() };
    let kept: Vec<String> = (3..10).rev().map(|d| format!("msg_d{d}")).collect();
    assert_eq!(list_ids(&store, by_webhook("wh1")).await, kept);
    for gone in ["msg_d0", "msg_d1", "msg_d2"] {
        assert_eq!(store.attempts(gone).await.unwrap(), Vec::<Attempt>::new(), "{gone}'s attempts went with it");
        let listed = list_ids(&store, DeliveryQuery { tenant_id: Some("t1".into()), ..Default::default() }).await;
        assert!(!listed.contains(&gone.to_string()), "{gone} is not listed for its tenant: {listed:?}");
    }
    assert_eq!(store.attempts("msg_d3").await.unwrap().len(), 1, "kept deliveries keep their attempts");
    assert_eq!(list_ids(&store, by_webhook("wh2")).await.len(), 10, "another webhook keeps everything");
    assert_eq!(store.expire_webhook("no-such-webhook", now, 10).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Retry schedule

const LEASE: Duration = Duration::from_secs(30);

async fn claim_due_returns_only_due_ids_in_due_order(store: Arc<dyn HotState>) {
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

async fn claim_due_respects_limit(store: Arc<dyn HotState>) {
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

async fn claimed_retry_comes_back_after_its_lease(store: Arc<dyn HotState>) {
    let now = now_ms();
    store.schedule_retry("a", now - secs(1)).await.unwrap();
    assert_eq!(store.claim_due(now, 10, LEASE).await.unwrap(), ["a"]);
    // The claimant went away without rescheduling or cancelling.
    assert_eq!(store.claim_due(now + secs(29), 10, LEASE).await.unwrap(), Vec::<String>::new(), "leased");
    assert_eq!(store.claim_due(now + secs(30), 10, LEASE).await.unwrap(), ["a"], "due again when the lease ends");
    assert_eq!(store.claim_due(now + secs(40), 10, LEASE).await.unwrap(), Vec::<String>::new(), "leased again");
    assert_eq!(store.retry_backlog().await.unwrap(), 1);
}

async fn crashed_claimants_retries_come_back_in_real_time(store: Arc<dyn HotState>) {
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

async fn rescheduling_moves_a_retry(store: Arc<dyn HotState>) {
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

async fn cancel_removes_a_retry(store: Arc<dyn HotState>) {
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

async fn concurrent_claimers_never_share_an_id(store: Arc<dyn HotState>) {
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

async fn retry_backlog_counts_scheduled_and_claimed(store: Arc<dyn HotState>) {
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
// Rate limiting (GCRA with reservations)

/// A fixed instant with sub-microsecond digits: nothing may depend on `now` being round.
fn rate_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 123_456_789).expect("representable")
}

/// `n` reservations of `key`, one after another, all at `now`.
async fn reserve_n(
    store: &Arc<dyn HotState>,
    key: &str,
    per_second: f64,
    burst: u32,
    now: DateTime<Utc>,
    n: usize,
) -> Vec<Duration> {
    let mut waits = Vec::with_capacity(n);
    for _ in 0..n {
        waits.push(store.rate_reserve(key, per_second, burst, now).await.expect("reserve a slot"));
    }
    waits
}

/// The ideal wait of the `k`-th (from 1) reservation made at one instant, in ns: the burst goes
/// at once, then one slot every 1/rate.
fn ideal_wait_ns(k: usize, per_second: f64, burst: u32) -> f64 {
    k.saturating_sub(burst as usize) as f64 * 1e9 / per_second
}

fn zeros(n: usize) -> Vec<Duration> {
    vec![Duration::ZERO; n]
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Most sends of `times` (sorted) in any closed one-second window.
fn busiest_second(times: &[DateTime<Utc>]) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end] <= *t + secs(1) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

async fn rate_reserve_spaces_slots_at_the_rate_after_the_burst(store: Arc<dyn HotState>) {
    let now = rate_now();
    // (per second, burst, reservations): whole and fractional rates, rates whose interval is
    // no whole number of microseconds, and a queue longer than a second at a high rate.
    let cases = [(10.0, 5, 40), (3.0, 2, 30), (7.0, 1, 50), (2.5, 4, 25), (0.5, 2, 8), (3000.0, 10, 3_100)];
    for (per_second, burst, n) in cases {
        let key = format!("ep-{per_second}-{burst}");
        let waits = reserve_n(&store, &key, per_second, burst, now, n).await;
        assert_eq!(waits[..burst as usize], zeros(burst as usize), "{key}: the burst goes at once");
        for (i, wait) in waits.iter().enumerate() {
            let k = i + 1;
            let ideal = ideal_wait_ns(k, per_second, burst);
            // Within 1 µs, plus at most 1 ns per queued slot (the interval is kept to the ns).
            let slack = 1_000.0 + k.saturating_sub(burst as usize) as f64;
            let got = wait.as_nanos() as f64;
            assert!((got - ideal).abs() <= slack, "{key}: wait {k} is {wait:?}, ideally {ideal} ns");
        }
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{key}: waits never shrink");
        // Senders that each wait their slot: no one-second window sees more than rate + burst.
        let sends: Vec<DateTime<Utc>> = waits.iter().map(|w| now + TimeDelta::from_std(*w).unwrap()).collect();
        let busiest = busiest_second(&sends);
        assert!(
            busiest as f64 <= per_second + f64::from(burst),
            "{key}: {busiest} sends in one second exceed {per_second}/s + burst {burst}"
        );
        if n as f64 >= per_second + f64::from(burst) {
            let limit = (per_second + f64::from(burst)).floor() as usize;
            assert!(busiest + 1 >= limit, "{key}: {busiest} sends in the busiest second undercut the rate");
        }
    }
}

async fn rate_reserve_burst_comes_back_with_time(store: Arc<dyn HotState>) {
    let now = rate_now();
    let waits = reserve_n(&store, "ep", 10.0, 5, now, 40).await;
    assert_eq!(waits[..6], [zeros(5), vec![millis(100)]].concat());
    assert_eq!(waits[39], millis(3500));
    // Ten seconds later the queue has drained: the whole burst is back, then the rate again.
    let later = reserve_n(&store, "ep", 10.0, 5, now + secs(10), 7).await;
    assert_eq!(later, [zeros(5), vec![millis(100), millis(200)]].concat());

    // Time gives back one slot per interval: 200 ms after the burst was spent, two slots.
    reserve_n(&store, "ep-partial", 10.0, 5, now, 5).await;
    let partial = reserve_n(&store, "ep-partial", 10.0, 5, now + TimeDelta::milliseconds(200), 4).await;
    assert_eq!(partial, [zeros(2), vec![millis(100), millis(200)]].concat());
}

async fn rate_reserve_keys_are_independent(store: Arc<dyn HotState>) {
    let now = rate_now();
    assert_eq!(reserve_n(&store, "ep-a", 1.0, 2, now, 4).await, [zeros(2), vec![millis(1000), millis(2000)]].concat());
    assert_eq!(reserve_n(&store, "ep-b", 1.0, 2, now, 3).await, [zeros(2), vec![millis(1000)]].concat());
    assert_eq!(reserve_n(&store, "ep-c", 4.0, 1, now, 2).await, [zeros(1), vec![millis(250)]].concat());
    assert_eq!(reserve_n(&store, "ep-a", 1.0, 2, now, 1).await, [millis(3000)], "others took none of ep-a's slots");
}

async fn concurrent_reservations_take_distinct_slots(store: Arc<dyn HotState>) {
    let now = rate_now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.rate_reserve("shared", 10.0, 1, now).await.unwrap() })
        })
        .collect();
    let mut waits = Vec::new();
    for task in tasks {
        waits.push(task.await.unwrap());
    }
    let distinct: HashSet<Duration> = waits.iter().copied().collect();
    assert_eq!(distinct.len(), 20, "two dispatchers were given one slot: {waits:?}");
    waits.sort();
    assert_eq!(waits, (0..20).map(|k| millis(100 * k)).collect::<Vec<_>>(), "the slots are the next twenty");
}

async fn rate_reserve_survives_extreme_limits(store: Arc<dyn HotState>) {
    let now = rate_now();
    // A huge burst at a tiny (valid) rate: the tolerance must not overflow into a wait.
    assert_eq!(reserve_n(&store, "slow", 0.00001, u32::MAX, now, 3).await, zeros(3));
    // The fastest valid rate: 10 µs apart.
    let fast = reserve_n(&store, "fast", 100_000.0, 1, now, 4).await;
    assert_eq!(fast, (0..4).map(|k| Duration::from_micros(10 * k)).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Per-call ordering lanes

async fn lane_sends_one_at_a_time_in_push_order(store: Arc<dyn HotState>) {
    assert!(store.lane_push("call-1", "a").await.unwrap(), "the first id is the head");
    assert!(!store.lane_push("call-1", "b").await.unwrap());
    assert!(!store.lane_push("call-1", "c").await.unwrap());
    assert!(store.lane_push("call-1", "a").await.unwrap(), "pushing the head again: still the head");
    assert!(!store.lane_push("call-1", "b").await.unwrap(), "pushing again does not move an id");

    assert_eq!(store.lane_pop("call-1", "a").await.unwrap().as_deref(), Some("b"), "a done: b goes next");
    assert_eq!(store.lane_pop("call-1", "c").await.unwrap().as_deref(), Some("b"), "c dropped: b is still next");
    assert_eq!(store.lane_pop("call-1", "b").await.unwrap(), None, "a was not duplicated: the lane is empty");
    assert!(store.lane_push("call-1", "d").await.unwrap(), "an emptied lane takes a new head");
    assert_eq!(store.lane_pop("call-1", "d").await.unwrap(), None);
    assert_eq!(store.lane_pop("never", "x").await.unwrap(), None, "an unknown lane has no head");
}

async fn lanes_are_independent_and_repushed_ids_go_last(store: Arc<dyn HotState>) {
    assert!(store.lane_push("call-1", "a").await.unwrap());
    assert!(store.lane_push("call-2", "x").await.unwrap(), "another call's lane has its own head");
    assert!(!store.lane_push("call-1", "b").await.unwrap());
    assert!(store.lane_push("call-3", "b").await.unwrap(), "one id may be in two lanes");
    assert_eq!(store.lane_pop("call-2", "x").await.unwrap(), None);
    assert!(!store.lane_push("call-1", "c").await.unwrap(), "popping call-2 left call-1 alone");

    // a is done, then comes back (a new event with the same id): it waits behind b and c.
    assert_eq!(store.lane_pop("call-1", "a").await.unwrap().as_deref(), Some("b"));
    assert!(!store.lane_push("call-1", "a").await.unwrap(), "a popped id pushed again goes to the tail");
    assert_eq!(store.lane_pop("call-1", "b").await.unwrap().as_deref(), Some("c"));
    assert_eq!(store.lane_pop("call-1", "c").await.unwrap().as_deref(), Some("a"));
    assert_eq!(store.lane_pop("call-1", "a").await.unwrap(), None);
    assert_eq!(store.lane_pop("call-3", "b").await.unwrap(), None);
}

async fn concurrent_lane_pushes_elect_one_head(store: Arc<dyn HotState>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { (format!("e{i:02}"), store.lane_push("call-c", &format!("e{i:02}")).await.unwrap()) },
            )
        })
        .collect();
    let mut heads = Vec::new();
    for task in tasks {
        let (id, head) = task.await.unwrap();
        if head {
            heads.push(id);
        }
    }
    assert_eq!(heads.len(), 1, "exactly one of 20 concurrent pushes may go: {heads:?}");
    // Handing the lane on visits every id exactly once.
    let mut order = vec![heads[0].clone()];
    while let Some(next) = store.lane_pop("call-c", order.last().unwrap()).await.unwrap() {
        assert!(!order.contains(&next), "{next} came twice");
        order.push(next);
    }
    let all: HashSet<String> = (0..20).map(|i| format!("e{i:02}")).collect();
    assert_eq!(order.iter().cloned().collect::<HashSet<_>>(), all);
}

// ---------------------------------------------------------------------------------------------
// Circuit breakers

async fn breaker_round_trips_and_defaults_to_closed(store: Arc<dyn HotState>) {
    assert_eq!(store.get_breaker("ep-unknown").await.unwrap(), Breaker::default());
    assert_eq!(store.get_breaker("ep-unknown").await.unwrap().state, CircuitState::Closed);

    let at = rate_now();
    let open = Breaker {
        state: CircuitState::Open,
        consecutive_failures: 7,
        failing_since: Some(at - secs(90)),
        opened_at: Some(at),
        probe_started_at: None,
    };
    store.put_breaker("ep-1", &open).await.unwrap();
    assert_eq!(store.get_breaker("ep-1").await.unwrap(), open);
    assert_eq!(store.get_breaker("ep-2").await.unwrap(), Breaker::default(), "endpoints are independent");

    let half_open = Breaker { state: CircuitState::HalfOpen, probe_started_at: Some(at + secs(30)), ..open.clone() };
    store.put_breaker("ep-1", &half_open).await.unwrap();
    assert_eq!(store.get_breaker("ep-1").await.unwrap(), half_open, "a put replaces the breaker");

    store.put_breaker("ep-1", &Breaker::default()).await.unwrap();
    assert_eq!(store.get_breaker("ep-1").await.unwrap(), Breaker::default(), "closed again");
}

// ---------------------------------------------------------------------------------------------
// Endpoint health

fn sample(at: DateTime<Utc>, duration_ms: u64, status: u16, success: bool) -> HealthSample {
    HealthSample { at, duration_ms, status, success }
}

fn window() -> TimeDelta {
    TimeDelta::from_std(HEALTH_WINDOW).unwrap()
}

async fn samples_since(store: &Arc<dyn HotState>, endpoint: &str, since: DateTime<Utc>) -> Vec<HealthSample> {
    store.health_samples(endpoint, since).await.expect("read health samples")
}

async fn record_all(store: &Arc<dyn HotState>, endpoint: &str, samples: &[HealthSample]) {
    for s in samples {
        store.record_health(endpoint, s).await.expect("record a health sample");
    }
}

async fn health_samples_come_back_oldest_first(store: Arc<dyn HotState>) {
    let t = rate_now();
    let ms = TimeDelta::milliseconds;
    // A whole millisecond, and 456 µs into it: the order must not come from how they print.
    let p = t - secs(1) - TimeDelta::nanoseconds(456_789);
    let samples = [
        sample(t - secs(3600), 120, 200, true),
        sample(t - secs(600), 10_000, 0, false),
        sample(t - secs(60), 35, 503, false),
        sample(p, 9, 204, true),
        sample(p + TimeDelta::microseconds(456), 8, 200, true),
        sample(t - ms(1), 250, 410, false),
        sample(t, 42, 201, true),
    ];
    // Recorded when the attempts ended: not in the order they started.
    let recorded = [1, 0, 2, 4, 3, 6, 5];
    let shuffled: Vec<HealthSample> = recorded.iter().map(|&i| samples[i]).collect();
    record_all(&store, "ep-1", &shuffled).await;

    let since = |at| samples_since(&store, "ep-1", at);
    assert_eq!(since(t - secs(7200)).await, samples, "every sample, oldest first, as recorded");
    assert_eq!(since(t - secs(600)).await, samples[1..], "since is inclusive");
    assert_eq!(since(t - secs(600) + TimeDelta::nanoseconds(1)).await, samples[2..]);
    assert_eq!(since(p + TimeDelta::nanoseconds(1)).await, samples[4..], "to the nanosecond");
    assert_eq!(since(p + TimeDelta::nanoseconds(456_001)).await, samples[5..]);
    assert_eq!(since(t).await, samples[6..]);
    assert_eq!(since(t + ms(1)).await, Vec::<HealthSample>::new());
}

async fn health_forgets_samples_older_than_the_window(store: Arc<dyn HotState>) {
    let t = rate_now();
    let ms = TimeDelta::milliseconds;
    let edge = sample(t - window(), 11, 200, true);
    record_all(
        &store,
        "ep-1",
        &[sample(t - window() - ms(1), 10, 500, false), edge, sample(t - secs(3600), 12, 200, true)],
    )
    .await;
    let newest = sample(t, 13, 200, true);
    record_all(&store, "ep-1", &[newest]).await;
    let all = || samples_since(&store, "ep-1", t - secs(10 * 86_400));
    assert_eq!(all().await, [edge, sample(t - secs(3600), 12, 200, true), newest], "one window kept");

    // A late result of an attempt older than the window (relative to the newest) is not kept;
    // a late result within it takes its place in time.
    let late = sample(t - secs(1800), 14, 502, false);
    record_all(&store, "ep-1", &[late, sample(t - window() - secs(3600), 15, 500, false)]).await;
    assert_eq!(all().await, [edge, sample(t - secs(3600), 12, 200, true), late, newest]);

    // The window moves with the newest sample.
    let next = sample(t + window() - secs(3599), 16, 200, true);
    record_all(&store, "ep-1", &[next]).await;
    assert_eq!(all().await, [late, newest, next]);
}

async fn health_batches_are_their_samples_in_order(store: Arc<dyn HotState>) {
    let t = rate_now();
    let batch: Vec<HealthSample> =
        (0..40).map(|i| sample(t + TimeDelta::microseconds(i * 10), i as u64, 200, i % 3 != 0)).collect();
    store.record_health_batch("ep-batch", &batch[..25]).await.unwrap();
    store.record_health("ep-batch", &batch[25]).await.unwrap();
    store.record_health_batch("ep-batch", &batch[26..]).await.unwrap();
    store.record_health_batch("ep-batch", &[]).await.unwrap();
    assert_eq!(samples_since(&store, "ep-batch", t - secs(1)).await, batch);
    // The window still moves with the newest sample, batched or not.
    let late = sample(t + window() + secs(1), 99, 200, true);
    store.record_health_batch("ep-batch", &[late]).await.unwrap();
    assert_eq!(samples_since(&store, "ep-batch", t - secs(1)).await, [late]);
}

async fn identical_health_samples_are_distinct_attempts(store: Arc<dyn HotState>) {
    let t = rate_now();
    let s = sample(t, 100, 500, false);
    record_all(&store, "ep-1", &[s, s, s]).await;
    record_all(&store, "ep-2", &[s]).await;
    record_all(&store, "ep-3", &[sample(t - secs(5), 7, 200, true)]).await;
    assert_eq!(store.health_samples("ep-1", t - secs(60)).await.unwrap(), [s, s, s]);
    assert_eq!(store.health_samples("ep-2", t - secs(60)).await.unwrap(), [s], "endpoints are independent");
    assert_eq!(store.health_samples("ep-3", t - secs(60)).await.unwrap(), [sample(t - secs(5), 7, 200, true)]);
    assert_eq!(store.health_samples("ep-none", t - secs(60)).await.unwrap(), Vec::<HealthSample>::new());
}

async fn health_keeps_at_most_health_samples(store: Arc<dyn HotState>) {
    let t = rate_now();
    let extra = 10;
    let all: Vec<HealthSample> = (0..HEALTH_SAMPLES + extra)
        .map(|i| sample(t + TimeDelta::milliseconds(i as i64), i as u64, 200, true))
        .collect();
    // Four recorders at once, as several dispatchers would.
    let tasks: Vec<_> = all
        .chunks(all.len().div_ceil(4))
        .map(|chunk| {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tokio::spawn(async move { record_all(&store, "ep-busy", &chunk).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let kept = store.health_samples("ep-busy", t - secs(1)).await.unwrap();
    assert_eq!(kept.len(), HEALTH_SAMPLES);
    assert!(kept == all[extra..], "the oldest {extra} were dropped, the rest kept in order");
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
        assert_eq!(store.retry_buckets(), 16, "the default bucket count");
        let at = now_ms() - secs(60);
        store.put_delivery(&delivery("msg_k", "t1", "wh1", at)).await.unwrap();
        store.add_attempt("msg_k", &attempt(1, at)).await.unwrap();
        store.schedule_retry("msg_k", at + secs(5)).await.unwrap();
        store.mark_seen("evt-k", Duration::from_secs(60)).await.unwrap();
        store.rate_reserve("rl-k", 10.0, 1, Utc::now()).await.unwrap();
        store.record_health("ep-k", &sample(Utc::now(), 12, 200, true)).await.unwrap();
        let open = Breaker { state: CircuitState::Open, consecutive_failures: 5, ..Default::default() };
        store.put_breaker("ep-k", &open).await.unwrap();
        store.lane_push("call-k", "msg_k").await.unwrap();

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
        // The retry sits in the bucket its id hashes to, a hash tag of its own.
        let bucket = format!("lay:{{retries:{}}}", hookmesh_store::redis::retry_bucket_of("msg_k", 16));
        assert_eq!(raw.zscore::<_, _, Option<i64>>(&bucket, "msg_k").await.unwrap(), Some(created + 5000));
        assert_eq!(raw.get::<_, Option<String>>("lay:seen:{evt-k}").await.unwrap().as_deref(), Some("1"));
        assert_eq!(raw.lrange::<_, Vec<String>>("lay:lane:{call-k}", 0, -1).await.unwrap(), ["msg_k"]);
        assert_eq!(raw.zcard::<_, usize>("lay:h:{ep-k}").await.unwrap(), 1);
        assert!(raw.get::<_, Option<String>>("lay:cb:{ep-k}").await.unwrap().is_some());
        assert!(raw.get::<_, Option<String>>("lay:rl:{rl-k}").await.unwrap().is_some());

        // Nothing outlives the max age, even when no later put comes to trim it; hot state
        // expires on its own clock.
        let max_ms = 3600 * 1000;
        for key in [
            "lay:d:msg_k",
            "lay:a:msg_k",
            "lay:idx:all",
            "lay:idx:wh:wh1",
            "lay:idx:t:t1",
            "lay:seen:{evt-k}",
            "lay:lane:{call-k}",
            "lay:rl:{rl-k}",
        ] {
            let ttl: i64 = raw.pttl(key).await.unwrap();
            assert!(ttl > 0 && ttl <= max_ms, "{key} expires (pttl {ttl})");
        }
        for key in ["lay:h:{ep-k}", "lay:cb:{ep-k}"] {
            let ttl: i64 = raw.pttl(key).await.unwrap();
            assert!(ttl > 0, "{key} expires (pttl {ttl})");
        }
        let mut keys: Vec<String> = raw.keys("lay:*").await.unwrap();
        keys.sort();
        let mut expected = vec![
            "lay:a:msg_k".to_string(),
            "lay:cb:{ep-k}".into(),
            "lay:d:msg_k".into(),
            "lay:h:{ep-k}".into(),
            "lay:idx:all".into(),
            "lay:idx:t:t1".into(),
            "lay:idx:wh:wh1".into(),
            "lay:lane:{call-k}".into(),
            "lay:rl:{rl-k}".into(),
            "lay:seen:{evt-k}".into(),
            bucket,
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }

    /// Calls per command since the last `CONFIG RESETSTAT`, script-internal calls included.
    async fn command_calls(raw: &mut redis::aio::MultiplexedConnection) -> std::collections::BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(raw).await.unwrap();
        info.lines()
            .filter_map(|l| l.strip_prefix("cmdstat_"))
            .filter_map(|l| {
                let (name, rest) = l.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
                Some((name.to_string(), calls))
            })
            .filter(|(name, _)| !["config", "info", "script"].contains(&name.as_str()) && !name.starts_with("script|"))
            .filter(|(name, _)| !name.starts_with("config|"))
            .collect()
    }

    async fn reset_stats(raw: &mut redis::aio::MultiplexedConnection) {
        redis::cmd("CONFIG").arg("RESETSTAT").exec_async(raw).await.unwrap();
    }

    /// The retry schedule's cost in commands (what Redis counts, inside scripts too): one per
    /// schedule or cancel as with one key, an idle claim poll one read per bucket, a claim one
    /// script per bucket with due retries that moves all of them with one `ZADD`.
    #[tokio::test]
    async fn the_bucketed_schedule_costs_what_the_module_doc_says() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let now = now_ms();
        // Load the claim script before counting.
        store.claim_due(now, 1, LEASE).await.unwrap();
        store.schedule_retry("warm", now).await.unwrap();
        store.claim_due(now, 1, LEASE).await.unwrap();
        store.cancel_retry("warm").await.unwrap();

        reset_stats(&mut raw).await;
        store.schedule_retry("msg_1", now).await.unwrap();
        store.cancel_retry("msg_1").await.unwrap();
        let calls = command_calls(&mut raw).await;
        assert_eq!(calls, [("zadd".to_string(), 1), ("zrem".to_string(), 1)].into(), "{calls:?}");

        reset_stats(&mut raw).await;
        assert!(store.claim_due(now, 100, LEASE).await.unwrap().is_empty());
        let calls = command_calls(&mut raw).await;
        assert_eq!(calls, [("zrangebyscore".to_string(), 16)].into(), "an idle poll: {calls:?}");

        // 40 due retries over several buckets: one script per bucket holding some.
        let ids: Vec<String> = (0..40).map(|i| format!("msg_{i:02}")).collect();
        for id in &ids {
            store.schedule_retry(id, now - secs(1)).await.unwrap();
        }
        let holding: HashSet<u32> = ids.iter().map(|id| hookmesh_store::redis::retry_bucket_of(id, 16)).collect();
        let k = holding.len() as u64;
        reset_stats(&mut raw).await;
        assert_eq!(store.claim_due(now, 100, LEASE).await.unwrap().len(), 40);
        let calls = command_calls(&mut raw).await;
        assert_eq!(
            calls,
            [("evalsha".to_string(), k), ("zadd".to_string(), k), ("zrangebyscore".to_string(), 16 + k)].into(),
            "a claim of 40 from {k} buckets: {calls:?}"
        );

        reset_stats(&mut raw).await;
        assert_eq!(store.retry_backlog().await.unwrap(), 40);
        let calls = command_calls(&mut raw).await;
        assert_eq!(calls, [("zcard".to_string(), 16)].into(), "{calls:?}");
    }

    #[tokio::test]
    async fn one_bucket_claims_in_one_script() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        let store = store.with_retry_buckets(1).await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let now = now_ms();
        store.claim_due(now, 1, LEASE).await.unwrap();
        reset_stats(&mut raw).await;
        assert!(store.claim_due(now, 100, LEASE).await.unwrap().is_empty());
        let calls = command_calls(&mut raw).await;
        assert_eq!(calls, [("evalsha".to_string(), 1), ("zrangebyscore".to_string(), 1)].into(), "{calls:?}");
        for i in 0..3 {
            store.schedule_retry(&format!("msg_{i}"), now - secs(1)).await.unwrap();
        }
        reset_stats(&mut raw).await;
        assert_eq!(store.claim_due(now, 100, LEASE).await.unwrap().len(), 3);
        let calls = command_calls(&mut raw).await;
        assert_eq!(
            calls,
            [("evalsha".to_string(), 1), ("zadd".to_string(), 1), ("zrangebyscore".to_string(), 1)].into(),
            "{calls:?}"
        );
    }

    /// The rest of the module doc's cost table: each hot-state operation alone, its scripts
    /// loaded beforehand.
    #[tokio::test]
    async fn hot_state_costs_what_the_module_doc_says() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let now = Utc::now();
        let open = |b: &mut Breaker| {
            b.state = CircuitState::Open;
            b.consecutive_failures += 1;
        };
        // Warm up: every script loaded.
        store.rate_reserve("warm", 100.0, 10, now).await.unwrap();
        store.record_health("warm", &sample(now, 1, 200, true)).await.unwrap();
        store.update_breaker("warm", &open).await.unwrap();
        store.lane_push("warm", "x").await.unwrap();

        let expect = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        reset_stats(&mut raw).await;
        store.mark_seen("evt", Duration::from_secs(60)).await.unwrap();
        store.is_seen("evt").await.unwrap();
        assert_eq!(command_calls(&mut raw).await, expect(&[("exists", 1), ("set", 1)]));

        reset_stats(&mut raw).await;
        store.rate_reserve("rl", 100.0, 10, now).await.unwrap();
        assert_eq!(command_calls(&mut raw).await, expect(&[("evalsha", 1), ("get", 1), ("set", 1)]));

        reset_stats(&mut raw).await;
        store.record_health("ep", &sample(now, 1, 200, true)).await.unwrap();
        assert_eq!(
            command_calls(&mut raw).await,
            expect(&[
                ("evalsha", 1),
                ("pexpire", 1),
                ("zadd", 1),
                ("zrange", 1),
                ("zremrangebyrank", 1),
                ("zremrangebyscore", 1)
            ])
        );

        reset_stats(&mut raw).await;
        store.get_breaker("ep").await.unwrap();
        assert_eq!(command_calls(&mut raw).await, expect(&[("get", 1)]));
        reset_stats(&mut raw).await;
        store.update_breaker("ep", &open).await.unwrap();
        assert_eq!(command_calls(&mut raw).await, expect(&[("evalsha", 1), ("get", 2), ("set", 1)]));

        reset_stats(&mut raw).await;
        store.lane_push("call", "msg_1").await.unwrap();
        assert_eq!(
            command_calls(&mut raw).await,
            expect(&[("evalsha", 1), ("lindex", 1), ("lpos", 1), ("pexpire", 1), ("rpush", 1)])
        );
        reset_stats(&mut raw).await;
        store.lane_pop("call", "msg_1").await.unwrap();
        assert_eq!(command_calls(&mut raw).await, expect(&[("lindex", 1), ("lrem", 1)]));
    }

    #[tokio::test]
    async fn the_bucket_count_changes_only_while_the_schedule_is_empty() {
        let server = RedisServer::start();
        let connect = |buckets: u32| {
            let url = server.url();
            async move {
                RedisStore::connect(&url, "hm", Retention::default()).await.unwrap().with_retry_buckets(buckets).await
            }
        };
        let sixteen = connect(16).await.unwrap();
        sixteen.schedule_retry("msg_1", now_ms()).await.unwrap();
        assert!(connect(16).await.is_ok(), "the same count again");
        let err = connect(4).await.unwrap_err().to_string();
        assert!(err.contains("16 buckets") && err.contains("1 retries") && err.contains("to 4"), "{err}");
        assert!(sixteen.cancel_retry("msg_1").await.unwrap());
        let four = connect(4).await.expect("an empty schedule may change its bucket count");
        four.schedule_retry("msg_1", now_ms()).await.unwrap();
        assert!(connect(16).await.is_err(), "now 4 is the recorded count");
        assert_eq!(four.claim_due(now_ms(), 10, LEASE).await.unwrap(), ["msg_1"]);
    }

    #[tokio::test]
    async fn a_single_key_schedule_of_earlier_versions_moves_into_the_buckets() {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let now = now_ms();
        let old: Vec<(i64, String)> =
            (0..2500).map(|i| (now.timestamp_millis() - 5000 + i, format!("old_{i:04}"))).collect();
        for chunk in old.chunks(500) {
            let _: () = raw.zadd_multiple("hm:retries", chunk).await.unwrap();
        }
        // An id a new process rescheduled already keeps its newer due time.
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        store.schedule_retry("old_0000", now + secs(3600)).await.unwrap();
        let store = store.with_retry_buckets(16).await.unwrap();
        assert!(!raw.exists::<_, bool>("hm:retries").await.unwrap(), "the single key is emptied");
        assert_eq!(store.retry_backlog().await.unwrap(), 2500);
        let claimed = store.claim_due(now, 5000, Duration::from_secs(7200)).await.unwrap();
        let expected: Vec<String> = old.iter().skip(1).map(|(_, id)| id.clone()).collect();
        assert_eq!(claimed, expected, "due times kept, oldest first");
        assert_eq!(store.claim_due(now + secs(3600), 10, LEASE).await.unwrap(), ["old_0000"]);
    }

    #[tokio::test]
    async fn prefixes_with_braces_are_refused() {
        let server = RedisServer::start();
        let err = RedisStore::connect(&server.url(), "{hm}", Retention::default()).await.unwrap_err();
        assert!(err.to_string().contains("{hm}") && err.to_string().contains("hash tag"), "{err}");
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        for n in [0, hookmesh_store::redis::MAX_RETRY_BUCKETS + 1] {
            let err = store.clone().with_retry_buckets(n).await.unwrap_err();
            assert!(err.to_string().contains("retry buckets"), "{err}");
        }
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
        let _: () = raw.set("hm:{retries:3}", "not a sorted set").await.unwrap();
        match store.retry_backlog().await {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("WRONGTYPE"), "{msg}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        let _: () = raw.hset("hm:d:msg_bad", "json", "{not json").await.unwrap();
        assert!(matches!(store.get_delivery("msg_bad").await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_closed_breaker_leaves_no_key() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), "hm", Retention::default()).await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let open = Breaker {
            state: CircuitState::Open,
            consecutive_failures: 5,
            opened_at: Some(now_ms()),
            ..Default::default()
        };
        store.put_breaker("ep-1", &open).await.unwrap();
        assert!(raw.exists::<_, bool>("hm:cb:{ep-1}").await.unwrap());
        let ttl: i64 = raw.ttl("hm:cb:{ep-1}").await.unwrap();
        assert!(ttl > 0, "an open breaker nobody touches is forgotten in time (ttl {ttl})");
        store.put_breaker("ep-1", &Breaker::default()).await.unwrap();
        assert!(!raw.exists::<_, bool>("hm:cb:{ep-1}").await.unwrap(), "a closed breaker is no key");
        assert_eq!(store.get_breaker("ep-1").await.unwrap(), Breaker::default());
        let keys: Vec<String> = raw.keys("hm:*").await.unwrap();
        assert_eq!(keys, Vec::<String>::new());
    }
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster only: the schedule spreads over slots and nodes, every key is tagged, and the
// delivery log stays out.

mod redis_cluster_layout {
    use super::*;
    use hookmesh_store::redis::DEFAULT_RETRY_BUCKETS;
    use redis::AsyncCommands;

    /// A plain connection to each master, to see where keys really are.
    async fn masters(cluster: &RedisCluster) -> Vec<redis::aio::MultiplexedConnection> {
        let mut out = Vec::new();
        for url in cluster.node_urls() {
            let client = redis::Client::open(url).unwrap();
            out.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        out
    }

    async fn keyslot(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(raw).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_buckets_spread_over_slots_and_nodes() {
        let (store, cluster) = backends::redis_cluster(Retention::default()).await;
        let prefix = store.prefix().to_string();
        let now = now_ms();
        let ids: Vec<String> = (0..320).map(|i| format!("msg_{i:04}")).collect();
        for (i, id) in ids.iter().enumerate() {
            store.schedule_retry(id, now - TimeDelta::milliseconds(i as i64)).await.unwrap();
        }
        let mut nodes = masters(&cluster).await;
        let mut per_node = Vec::new();
        for raw in &mut nodes {
            let mut keys: Vec<String> = raw.keys(format!("{prefix}:*")).await.unwrap();
            keys.sort();
            per_node.push(keys);
        }
        let mut all: Vec<String> = per_node.concat();
        all.sort();
        let mut buckets: Vec<String> =
            (0..DEFAULT_RETRY_BUCKETS).map(|b| format!("{prefix}:{{retries:{b}}}")).collect();
        buckets.sort();
        assert_eq!(all, buckets, "320 retries fill every bucket and nothing else");
        assert!(per_node.iter().all(|keys| !keys.is_empty()), "every master holds part of the schedule: {per_node:?}");
        let mut slots = HashSet::new();
        for bucket in &buckets {
            slots.insert(keyslot(&mut nodes[0], bucket).await);
            let size: usize = store_zcard(&cluster, bucket).await;
            assert!((5..=45).contains(&size), "{bucket} holds {size} of 320: the hash spreads ids");
        }
        assert_eq!(slots.len(), buckets.len(), "each bucket is a slot of its own");

        // One claimant takes them all, oldest due first, across buckets and nodes.
        let claimed = store.claim_due(now, 1000, LEASE).await.unwrap();
        let oldest_first: Vec<String> = ids.iter().rev().cloned().collect();
        assert_eq!(claimed, oldest_first);
        assert_eq!(store.retry_backlog().await.unwrap(), 320);
    }

    async fn store_zcard(cluster: &RedisCluster, key: &str) -> usize {
        for url in cluster.node_urls() {
            let client = redis::Client::open(url).unwrap();
            let mut raw = client.get_multiplexed_async_connection().await.unwrap();
            // The other masters answer MOVED.
            if let Ok(n) = raw.zcard::<_, usize>(key).await {
                return n;
            }
        }
        panic!("no master holds the slot of {key}")
    }

    /// Redis Cluster refuses a command or script whose keys span slots, and a script that
    /// touches a key it did not declare: every operation succeeding here, with ids that hold
    /// braces too, is the check that each one stays in one slot. The slot is the tag's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_hot_state_key_is_tagged_and_each_script_stays_in_one_slot() {
        let (store, cluster) = backends::redis_cluster(Retention::default()).await;
        let p = store.prefix().to_string();
        let now = Utc::now();
        for key in ["evt-1", "evt-{2}", "evt}3"] {
            assert!(store.mark_seen(key, Duration::from_secs(60)).await.unwrap());
            assert!(store.is_seen(key).await.unwrap());
        }
        store.rate_reserve("rl-1", 5.0, 1, now).await.unwrap();
        store.record_health("ep-1", &sample(now, 12, 500, false)).await.unwrap();
        assert_eq!(store.health_samples("ep-1", now - secs(1)).await.unwrap().len(), 1);
        let policy = hookmesh_core::breaker::BreakerPolicy { failure_threshold: 1, ..Default::default() };
        store
            .update_breaker("ep-1", &move |b| {
                b.record(false, now, &policy);
            })
            .await
            .unwrap();
        assert_eq!(store.get_breaker("ep-1").await.unwrap().state, CircuitState::Open);
        assert!(store.lane_push("call-1", "msg_1").await.unwrap());
        assert!(!store.lane_push("call-1", "msg_2").await.unwrap());
        assert_eq!(store.lane_pop("call-1", "msg_1").await.unwrap().as_deref(), Some("msg_2"));
        store.schedule_retry("msg_{x}", now).await.unwrap();
        assert_eq!(store.claim_due(now + secs(1), 10, LEASE).await.unwrap(), ["msg_{x}"]);
        assert!(store.cancel_retry("msg_{x}").await.unwrap());

        let mut nodes = masters(&cluster).await;
        let mut keys = Vec::new();
        for raw in &mut nodes {
            keys.extend(raw.keys::<_, Vec<String>>(format!("{p}:*")).await.unwrap());
        }
        keys.sort();
        let mut expected: Vec<String> =
            ["seen:{evt-1}", "seen:{evt-{2}}", "seen:{evt}3}", "rl:{rl-1}", "h:{ep-1}", "cb:{ep-1}", "lane:{call-1}"]
                .iter()
                .map(|k| format!("{p}:{k}"))
                .collect();
        expected.sort();
        assert_eq!(keys, expected);
        let raw = &mut nodes[0];
        for (key, tag) in
            [("seen:{evt-1}", "evt-1"), ("rl:{rl-1}", "rl-1"), ("h:{ep-1}", "ep-1"), ("cb:{ep-1}", "ep-1")]
        {
            let key = format!("{p}:{key}");
            assert_eq!(keyslot(raw, &key).await, keyslot(raw, tag).await, "{key} is placed by its tag `{tag}`");
        }
    }

    /// Two dispatchers (two stores, as two processes would have) claiming in small batches at
    /// once: every due retry is claimed exactly once, and both get a share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_dispatchers_share_the_schedule_without_sharing_an_id() {
        let (first, cluster) = backends::redis_cluster(Retention::default()).await;
        let second = Arc::new(RedisStore::connect(&cluster.url(), first.prefix(), Retention::default()).await.unwrap());
        let now = now_ms();
        let scheduled: HashSet<String> = (0..400).map(|i| format!("r{i:03}")).collect();
        for (i, id) in scheduled.iter().enumerate() {
            first.schedule_retry(id, now - TimeDelta::milliseconds(i as i64)).await.unwrap();
        }
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let claimers: Vec<_> = [first.clone(), second]
            .into_iter()
            .map(|store| {
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let mut mine = Vec::new();
                    loop {
                        let got = store.claim_due(now, 9, Duration::from_secs(60)).await.unwrap();
                        if got.is_empty() || mine.len() > 400 {
                            return mine;
                        }
                        mine.extend(got);
                    }
                })
            })
            .collect();
        let mut shares = Vec::new();
        for claimer in claimers {
            shares.push(claimer.await.unwrap());
        }
        let claimed: Vec<String> = shares.concat();
        let unique: HashSet<String> = claimed.iter().cloned().collect();
        assert_eq!(unique.len(), claimed.len(), "an id was claimed twice while leased");
        assert_eq!(unique, scheduled, "every due id was claimed");
        assert!(
            shares.iter().all(|s| !s.is_empty()),
            "both dispatchers got a share: {:?}",
            shares.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_delivery_log_is_refused_on_a_cluster() {
        let (store, _cluster) = backends::redis_cluster(Retention::default()).await;
        match store.put_delivery(&delivery("msg_c", "t1", "wh1", now_ms())).await {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("postgres"), "{msg}"),
            other => panic!("expected a refusal naming postgres, got {other:?}"),
        }
        assert!(store.get_delivery("msg_c").await.is_err());
        assert!(store.list_deliveries(&DeliveryQuery::default()).await.is_err());
    }
}

/// 20 dispatchers recording a failure at once: every failure counts (the circuit opens on
/// time), and of 20 deliveries asking to go when the open period ends, exactly one probes.
async fn concurrent_breaker_updates_are_never_lost(store: Arc<dyn HotState>) {
    use hookmesh_core::breaker::{Admission, BreakerPolicy, CircuitState};
    let policy = BreakerPolicy { failure_threshold: 20, open_for: Duration::from_secs(1), ..BreakerPolicy::default() };
    let now = chrono::Utc::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .update_breaker("ep-cas", &move |b| {
                        b.record(false, now, &policy);
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let b = store.get_breaker("ep-cas").await.unwrap();
    assert_eq!(b.consecutive_failures, 20);
    assert_eq!(b.state, CircuitState::Open);
    let later = now + chrono::Duration::seconds(2);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let (before, _) = store
                    .update_breaker("ep-cas", &move |b| {
                        b.admit(later, &policy);
                    })
                    .await
                    .unwrap();
                before.clone().admit(later, &policy)
            })
        })
        .collect();
    let mut probes = 0;
    for t in tasks {
        if t.await.unwrap() == Admission::Probe {
            probes += 1;
        }
    }
    assert_eq!(probes, 1, "exactly one half-open probe");
}
