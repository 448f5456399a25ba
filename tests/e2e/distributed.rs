//! The four stages as separate OS processes over the platform-scale backends: a real
//! Kafka-protocol broker (tansu), a Redis Cluster of three masters (hot state) and the
//! machine's PostgreSQL (the delivery log, in a database of the test's own): events published
//! to `calls.raw` by a plain Kafka producer arrive at the receivers exactly as configured, a
//! dispatcher killed with SIGKILL mid-stream loses nothing once a new one takes over, and the
//! delivery log listed over gRPC comes from PostgreSQL. (The fault suite runs the single
//! `redis-server` layout.)

use crate::support::*;
use hookmesh_proto::v1;
use hookmesh_testkit::postgres::PostgresDb;
use hookmesh_testkit::redis::RedisCluster;
use hookmesh_testkit::tansu::TansuBroker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

pub(crate) struct Cluster {
    _broker: TansuBroker,
    redis: RedisCluster,
    postgres: PostgresDb,
    args: Vec<String>,
    pub(crate) ingest: Hookmesh,
    pub(crate) router: Hookmesh,
    pub(crate) renderer: Hookmesh,
    pub(crate) dispatcher: Hookmesh,
    producer: FutureProducer,
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// The four roles over one broker and one redis-server, each given `extra` flags too.
    pub(crate) fn start_with(extra: &[&str]) -> Cluster {
        let broker = TansuBroker::start();
        let redis = RedisCluster::start();
        let postgres = PostgresDb::create();
        let args: Vec<String> = [
            "--kafka",
            &broker.bootstrap(),
            "--redis",
            &redis.url(),
            "--postgres",
            &postgres.url(),
            "--partitions",
            "3",
            "--kafka-session-timeout-ms",
            "6000",
            "--master-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        // The router creates the topics first; the others find them.
        let router = Hookmesh::start_role("router", &a);
        let ingest = Hookmesh::start_role("ingest", &a);
        let renderer = Hookmesh::start_role("renderer", &a);
        let dispatcher = Hookmesh::start_role("dispatcher", &a);
        let producer: FutureProducer =
            ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
        Cluster { _broker: broker, redis, postgres, args, ingest, router, renderer, dispatcher, producer }
    }

    fn role_args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// Publishes raw switch JSON to `calls.raw`, keyed by call id, as a switch would.
    pub(crate) async fn publish_raw(&self, events: &[serde_json::Value]) {
        for e in events {
            let key = e["call_id"].as_str().unwrap_or_default().to_string();
            let payload = e.to_string();
            // A switch that traces its calls sends its trace context along.
            let trace = format!(
                "00-{:032x}-00000000000000aa-01",
                0xca11_0000u128 + key.len() as u128 + (key.as_bytes().iter().map(|b| *b as u128).sum::<u128>() << 32)
            );
            let headers = rdkafka::message::OwnedHeaders::new()
                .insert(rdkafka::message::Header { key: "traceparent", value: Some(trace.as_bytes()) });
            self.producer
                .send(
                    FutureRecord::to("calls.raw").key(&key).payload(&payload).headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .expect("calls.raw accepts the record");
        }
    }
}

fn call(i: usize) -> Vec<serde_json::Value> {
    let call_id = format!("call-{i:04}");
    let data = json!({"ani": format!("555{i:07}"), "direction": if i.is_multiple_of(2) { "inbound" } else { "outbound" }, "answered_time": i});
    vec![
        event(&format!("{call_id}-s"), "call.started", "acme", &call_id, data.clone()),
        event(&format!("{call_id}-e"), "hangup", "acme", &call_id, data),
    ]
}

/// Asserts what `grpc.health.v1.Health/Check` answers on one role: SERVING for `""` and for
/// each of `own`, NOT_FOUND for the other stages' services.
async fn assert_health(role: &str, hm: &Hookmesh, own: &[&str]) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    const ALL: [&str; 6] =
        ["IngestService", "WebhookService", "TemplateService", "TenantService", "RenderService", "DeliveryService"];
    let mut client = HealthClient::new(hm.channel().await);
    let overall = client.check(HealthCheckRequest { service: String::new() }).await.expect("overall health");
    assert_eq!(overall.into_inner().status(), ServingStatus::Serving, "{role}: Check(\"\")");
    for s in ALL {
        let service = format!("hookmesh.v1.{s}");
        let got = client.check(HealthCheckRequest { service: service.clone() }).await;
        if own.contains(&s) {
            assert_eq!(got.expect(&service).into_inner().status(), ServingStatus::Serving, "{role}: {service}");
        } else {
            assert_eq!(got.expect_err(&service).code(), tonic::Code::NotFound, "{role} does not serve {service}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn four_processes_deliver_and_survive_a_killed_dispatcher() {
    let mut cluster = Cluster::start();
    // 0. Each role reports health for the services it mounts, and only those.
    assert_health("ingest", &cluster.ingest, &["IngestService"]).await;
    assert_health("router", &cluster.router, &["WebhookService", "TemplateService", "TenantService"]).await;
    assert_health("renderer", &cluster.renderer, &["RenderService"]).await;
    assert_health("dispatcher", &cluster.dispatcher, &["DeliveryService"]).await;
    let rx = Recorder::start().await;
    let mut w = v1::Webhook {
        tenant_id: "acme".into(),
        name: "CRM".into(),
        request: Some(v1::Request {
            url: rx.url("/crm/{{ callid }}"),
            body: Some(v1::TemplateBody {
                kind: Some(v1::template_body::Kind::Fields(v1::FieldsBody {
                    format: "json".into(),
                    example: r#"{"phone": "%ani%", "seconds": "%answered_time%"}"#.into(),
                    fields: vec![],
                })),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    w.trigger = Some(v1::Trigger {
        event_types: vec!["call.ended".into()],
        directions: vec!["inbound".into()],
        ..Default::default()
    });
    let created = cluster
        .router
        .webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret;

    // 1. Everything configured arrives, exactly as configured.
    let events: Vec<_> = (0..20).flat_map(call).collect();
    cluster.publish_raw(&events).await;
    let got = rx.wait_for(10, Duration::from_secs(90)).await;
    for r in &got {
        verify_signature(&secret, r).expect("signed");
        // One trace from the switch to the receiver: the receiver's traceparent continues the
        // trace the switch started for this call.
        let key = r.uri.trim_start_matches("/crm/");
        let expected = format!(
            "{:032x}",
            0xca11_0000u128 + key.len() as u128 + (key.as_bytes().iter().map(|b| *b as u128).sum::<u128>() << 32)
        );
        let tp = r.header("traceparent").expect("traceparent sent to the receiver");
        assert_eq!(tp.split('-').nth(1), Some(expected.as_str()), "{tp}");
        let body = r.json();
        let i: usize = r.uri.trim_start_matches("/crm/call-").parse().unwrap();
        assert_eq!(i % 2, 0, "only inbound calls: {}", r.uri);
        assert_eq!(body, json!({"phone": format!("555{i:07}"), "seconds": i}));
    }
    // Rejected input from a switch lands in the DLQ with its reason.
    cluster.publish_raw(&[json!({"id": "broken", "type": "call.ended", "tenant_id": "acme", "call_id": "x"})]).await;
    let mut ingest = cluster.ingest.ingest().await;
    let mut dlq = Vec::new();
    assert!(
        wait_until_async(
            Duration::from_secs(30),
            || {
                let mut ingest = ingest.clone();
                async move {
                    ingest
                        .list_dead_letters(v1::ListDeadLettersRequest::default())
                        .await
                        .map(|r| r.into_inner().entries)
                        .unwrap_or_default()
                }
            },
            |entries: &Vec<v1::DeadLetter>| {
                dlq = entries.clone();
                !entries.is_empty()
            }
        )
        .await
    );
    assert_eq!(dlq[0].field, "occurred_at");
    let _ = &mut ingest;

    // The dispatcher counts what it sent, by outcome and status class (no URLs in labels).
    let first_dispatcher = http_get(&format!("http://{}/metrics", cluster.dispatcher.admin)).await.1;
    let successes = first_dispatcher
        .lines()
        .find_map(|l| l.strip_prefix("hookmesh_delivery_attempts_total{outcome=\"success\",class=\"2xx\"}"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(successes.is_some_and(|n| n >= 10.0), "{first_dispatcher}");

    // 2. Kill the dispatcher with SIGKILL mid-stream; a new one must deliver everything.
    rx.set_delay(Duration::from_millis(20));
    let more: Vec<_> = (100..300).flat_map(call).collect();
    let expected: HashSet<String> = (100..300).filter(|i| i % 2 == 0).map(|i| format!("/crm/call-{i:04}")).collect();
    cluster.publish_raw(&more).await;
    assert!(wait_until(Duration::from_secs(90), || rx.count() >= 10 + 20).await, "deliveries started");
    cluster.dispatcher.kill_hard();
    let at_kill = rx.count();
    assert!(at_kill < 10 + expected.len(), "the kill must land mid-stream ({at_kill} requests already)");
    let args = cluster.role_args();
    cluster.dispatcher = Hookmesh::start_role("dispatcher", &args);
    let complete = wait_until(Duration::from_secs(120), || {
        let seen: HashSet<String> = rx.received().iter().map(|r| r.uri.clone()).collect();
        expected.is_subset(&seen)
    })
    .await;
    let seen: HashSet<String> = rx.received().iter().map(|r| r.uri.clone()).collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        complete,
        "missing after the dispatcher was killed at {at_kill} requests: {missing:?}\nnew dispatcher log:\n{}",
        cluster.dispatcher.log_text()
    );
    // Duplicates are allowed, but each carries the same webhook-id as its first delivery.
    let mut ids = std::collections::HashMap::new();
    for r in rx.received() {
        let id = r.header("webhook-id").unwrap();
        assert_eq!(ids.entry(r.uri.clone()).or_insert_with(|| id.clone()), &id, "stable webhook-id for {}", r.uri);
    }

    // The delivery log lists every delivery once, each successful, newest first, in pages;
    // it is kept in PostgreSQL, and Redis holds no delivery.
    let webhook_id = created.webhook.as_ref().unwrap().id.clone();
    let deliveries = cluster.dispatcher.deliveries().await;
    let list_all = || {
        let (mut deliveries, webhook_id) = (deliveries.clone(), webhook_id.clone());
        async move {
            let (mut listed, mut before) = (Vec::new(), String::new());
            loop {
                let page = deliveries
                    .list_deliveries(v1::ListDeliveriesRequest {
                        webhook_id: webhook_id.clone(),
                        limit: 37,
                        before: before.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("list deliveries")
                    .into_inner();
                listed.extend(page.deliveries);
                if page.next.is_empty() {
                    return listed;
                }
                before = page.next;
            }
        }
    };
    // The receiver may have a request whose success the new dispatcher has not yet recorded
    // (it sends again what the killed one left unrecorded): wait for the log to settle.
    let mut listed = Vec::new();
    let settled = wait_until_async(Duration::from_secs(60), list_all, |l: &Vec<v1::Delivery>| {
        listed = l.clone();
        l.len() >= 10 + expected.len() && l.iter().all(|d| d.status == "success")
    })
    .await;
    let pending: Vec<_> = listed.iter().filter(|d| d.status != "success").map(|d| (&d.id, &d.status)).collect();
    assert!(settled, "{} listed, not successful: {pending:?}", listed.len());
    let unique: HashSet<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(listed.len(), 10 + expected.len(), "every delivery listed once");
    assert_eq!(unique.len(), listed.len());
    let at = |d: &v1::Delivery| chrono::DateTime::parse_from_rfc3339(&d.created_at).expect("RFC 3339 created_at");
    assert!(listed.windows(2).all(|w| at(&w[0]) >= at(&w[1])), "newest first");
    let in_postgres = std::process::Command::new("psql")
        .arg(cluster.postgres.url())
        .args(["-qAtc", "SELECT count(*) FROM hm_deliveries"])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&in_postgres.stdout).trim(), (10 + expected.len()).to_string());
    for node in cluster.redis.node_urls() {
        let client = redis::Client::open(node.as_str()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let log_keys: Vec<String> = redis::cmd("KEYS").arg("hm:d:*").query_async(&mut raw).await.unwrap();
        assert_eq!(log_keys, Vec::<String>::new(), "no delivery kept in Redis ({node})");
        let all: Vec<String> = redis::cmd("KEYS").arg("hm:*").query_async(&mut raw).await.unwrap();
        assert!(all.iter().all(|k| k.contains('{')), "every key on {node} carries a hash tag: {all:?}");
    }

    // 3. Every process's /metrics shows what it did, with bounded labels.
    let metric = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
    };
    let scrape = |p: &Hookmesh| {
        let url = format!("http://{}/metrics", p.admin);
        async move { http_get(&url).await.1 }
    };
    let ingest_m = scrape(&cluster.ingest).await;
    assert!(metric(&ingest_m, "hookmesh_events_ingested_total{outcome=\"accepted\"}") >= 440.0, "{ingest_m}");
    assert!(metric(&ingest_m, "hookmesh_events_ingested_total{outcome=\"rejected\"}") >= 1.0);
    assert!(ingest_m.contains("hookmesh_consumer_lag{topic=\"calls.raw\",partition=\"0\"}"), "{ingest_m}");
    let router_m = scrape(&cluster.router).await;
    assert!(metric(&router_m, "hookmesh_jobs_routed_total") >= 110.0, "{router_m}");
    // (The replacement dispatcher may have found everything delivered already; the first
    // one's counters were checked before it was killed.)
    let dispatcher_m = scrape(&cluster.dispatcher).await;
    assert!(dispatcher_m.contains("hookmesh_delivery_latency_seconds_bucket"), "{dispatcher_m}");
    assert!(!dispatcher_m.contains("/crm/"), "no URLs in metric labels");

    // 4. The signing secret never appears in any process's log, nor in clear in the config topic.
    for (name, p) in [
        ("ingest", &cluster.ingest),
        ("router", &cluster.router),
        ("renderer", &cluster.renderer),
        ("dispatcher", &cluster.dispatcher),
    ] {
        assert!(!p.log_text().contains(&secret[6..]), "{name} logged the secret");
    }
    let reader: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster._broker.bootstrap())
        .set("group.id", "secret-check")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    reader.subscribe(&["hookmesh.config"]).unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), reader.recv()).await.expect("config record").unwrap();
    let text = String::from_utf8_lossy(record.payload().unwrap()).into_owned();
    assert!(text.contains("enc:v1:"), "secrets are encrypted at rest: {text}");
    assert!(!text.contains("whsec_"), "no clear secret in the config topic: {text}");
}
