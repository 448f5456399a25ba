//! What telephony integrations need beyond one-event-one-URL, end to end on the standalone
//! (embedded backends) and on standalone over a real `tansu` broker and `redis-server`:
//! CEL expression filters on triggers, asymmetric (`v1a`, ed25519) signatures, and Kafka
//! destinations read back by a plain rdkafka consumer from a second real broker.

use crate::control::{start, Backend};
use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    standalone:
    expression_filter_routes_exactly_the_matching_calls,
    asymmetric_signatures_verify_with_the_public_key,
    kafka_destination_records_carry_verifiable_signatures,
);

const SALES: &str = r#"call.duration > 30 && call.status == "answered" && campaign.name.startsWith("Sales") && !(tags.region == "north")"#;

/// A CEL filter beside a list filter (inbound calls only): exactly the calls that satisfy both
/// arrive. Each call ends with a closing event that always matches; the webhook delivers one
/// call at a time (`per_call` ordering), so once every closing event has arrived, any wrongly
/// routed event of that call would have arrived before it.
async fn expression_filter_routes_exactly_the_matching_calls(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let rx = Recorder::start().await;
    let mut w = webhook("acme", "Sales calls", &rx.url("/sales"));
    w.trigger = Some(v1::Trigger {
        event_types: vec!["call.ended".into()],
        directions: vec!["inbound".into()],
        // The closing events lack the data points SALES reads: `error || true` is true in CEL.
        expression: format!("{SALES} || has(data.closing)"),
        ..Default::default()
    });
    w.policy = Some(v1::DeliveryPolicy { ordering: "per_call".into(), ..Default::default() });
    let (created, _) = hm.create_webhook(w).await;
    assert!(created.trigger.unwrap().expression.starts_with("call.duration > 30"));

    let sales = json!({"direction": "inbound", "call_duration": 45, "call_status": "answered",
        "campaign_name": "Sales East", "tags": {"region": "south"}});
    let with = |k: &str, v: serde_json::Value| {
        let mut d = sales.clone();
        d[k] = v;
        d
    };
    let calls = [
        ("c1", sales.clone(), true),
        ("c2", with("call_duration", json!(30)), false),
        ("c3", with("tags", json!({"region": "north"})), false),
        ("c4", with("campaign_name", json!("Support")), false),
        ("c5", with("direction", json!("outbound")), false),
        ("c6", with("call_status", json!("missed")), false),
        // No status at all: the expression cannot evaluate, and an error never matches.
        ("c7", json!({"direction": "inbound", "call_duration": 45, "campaign_name": "Sales"}), false),
        ("c8", with("call_duration", json!(3600)), true),
    ];
    let mut events = Vec::new();
    let mut expected = BTreeSet::new();
    for (call, data, hit) in &calls {
        events.push(event(&format!("{call}-end"), "call.ended", "acme", call, data.clone()));
        if *hit {
            expected.insert(format!("{call}-end"));
        }
        events.push(event(
            &format!("{call}-close"),
            "call.ended",
            "acme",
            call,
            json!({"direction": "inbound", "closing": true}),
        ));
        expected.insert(format!("{call}-close"));
    }
    let resp = hm.publish(&events).await;
    assert_eq!(resp.accepted as usize, events.len(), "{resp:?}");
    let closed =
        |rx: &Recorder| rx.received().iter().filter(|r| r.json()["id"].as_str().unwrap().ends_with("-close")).count();
    assert!(wait_until(WAIT, || closed(&rx) == calls.len()).await, "closing events: {:?}", rx.received());
    let got: BTreeSet<String> = rx.received().iter().map(|r| r.json()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, expected);

    // A malformed expression is refused at creation, naming the field and the position.
    let mut bad = webhook("acme", "Broken", &rx.url("/broken"));
    bad.trigger =
        Some(v1::Trigger { expression: "call.duration > 30 &&\n  campaign.nme == \"x\"".into(), ..Default::default() });
    let err = hm
        .webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(bad), disabled: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("trigger.expression: line 2, column 12: `campaign` has no field `nme`"),
        "{}",
        err.message()
    );
    // The same through ctl, on update: a syntax error, with its position.
    let (ok, _, stderr) =
        hm.ctl(&["webhook", "update", &created.id, "--expression", "call.duration > 30 && (call.status =="]);
    assert!(!ok);
    assert!(stderr.contains("trigger.expression: line 1, column "), "{stderr}");
    let (ok, stdout, stderr) = hm.ctl(&["webhook", "update", &created.id, "--expression", "call.duration > 60"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("call.duration > 60"), "{stdout}");
}

/// Verifies every `v1a` entry the way a receiver would, independently of hookmesh's signing
/// code: ed25519 (`ed25519-dalek`'s strict verification) over `{id}.{timestamp}.{body}` as the
/// Standard Webhooks specification defines it, with the `whpk_` key the API served. No
/// Standard Webhooks library verifies `v1a` yet (the Rust `standardwebhooks` crate and the
/// Python `standardwebhooks` package check `v1` only), so this is the spec, implemented here.
/// Answers how many entries verified.
fn verify_v1a(public_key: &str, r: &Received) -> usize {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes: [u8; 32] = b64.decode(public_key.strip_prefix("whpk_").expect("whpk_ key")).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).unwrap();
    let content = format!(
        "{}.{}.{}",
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
        std::str::from_utf8(&r.body).unwrap()
    );
    r.header("webhook-signature")
        .unwrap()
        .split(' ')
        .filter_map(|e| e.strip_prefix("v1a,"))
        .filter(|sig| {
            let sig = ed25519_dalek::Signature::from_slice(&b64.decode(sig).unwrap()).unwrap();
            key.verify_strict(content.as_bytes(), &sig).is_ok()
        })
        .count()
}

/// Waits until `rx` got the event with id `event_id`; answers that request.
async fn received_event(rx: &Recorder, event_id: &str) -> Received {
    let find = || rx.received().into_iter().find(|r| r.json()["id"] == event_id);
    assert!(wait_until(WAIT, || find().is_some()).await, "{event_id} never arrived: {:?}", rx.received());
    find().unwrap()
}

/// `v1a` beside `v1`, `v1a` alone, and the rotation of a `v1a` key with a grace period.
async fn asymmetric_signatures_verify_with_the_public_key(backend: Backend) {
    let env = start(backend, &["--master-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]).await;
    let hm = &env.hm;
    let rx = Recorder::start().await;
    let mut api = hm.webhooks().await;

    // Both schemes: the v1 entry verifies with the Standard Webhooks library, the v1a entry
    // with the public key the API serves.
    let mut w = webhook("acme", "Both", &rx.url("/both"));
    w.signature_schemes = vec!["v1".into(), "v1a".into()];
    let both =
        api.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await.unwrap().into_inner();
    assert!(both.secret.starts_with("whsec_"), "{both:?}");
    assert!(both.public_key.starts_with("whpk_"), "{both:?}");
    let view = both.webhook.unwrap();
    assert_eq!(view.signature_schemes, ["v1", "v1a"]);
    assert_eq!(view.public_keys.len(), 1);
    assert_eq!(view.public_keys[0].key, both.public_key);
    assert_eq!(view.secrets.len(), 1, "the v1a key is private: only its public key is listed");
    hm.publish(&[event("e-both", "call.ended", "acme", "c-both", json!({"ani": "7776734736"}))]).await;
    let got = rx.wait_for(1, WAIT).await;
    verify_signature(&both.secret, &got[0]).expect("v1 verifies with the standardwebhooks crate");
    assert_eq!(verify_v1a(&both.public_key, &got[0]), 1, "{:?}", got[0].header("webhook-signature"));

    // v1a alone: no shared secret exists, and the header carries only v1a entries.
    let rx2 = Recorder::start().await;
    let mut w = webhook("acme", "Asymmetric", &rx2.url("/v1a"));
    w.signature_schemes = vec!["v1a".into()];
    let only =
        api.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await.unwrap().into_inner();
    assert!(only.secret.is_empty());
    let id = only.webhook.as_ref().unwrap().id.clone();
    assert!(only.webhook.as_ref().unwrap().secrets.is_empty());
    hm.publish(&[event("e-1", "call.ended", "acme", "c-1", json!({}))]).await;
    let got = rx2.wait_for(1, WAIT).await;
    let sig = got[0].header("webhook-signature").unwrap();
    assert!(sig.split(' ').all(|e| e.starts_with("v1a,")), "{sig}");
    assert_eq!(verify_v1a(&only.public_key, &got[0]), 1);
    // A tampered body does not verify.
    let mut tampered = got[0].clone();
    tampered.body = axum::body::Bytes::from(got[0].body.iter().copied().chain(*b" ").collect::<Vec<u8>>());
    assert_eq!(verify_v1a(&only.public_key, &tampered), 0);

    // The demo receiver checks v1a with the public key too.
    if backend == Backend::Memory {
        let port = hookmesh_testkit::free_port();
        let mut w = webhook("acme", "Demo receiver", &format!("http://127.0.0.1:{port}/demo"));
        w.signature_schemes = vec!["v1a".into()];
        w.trigger = Some(v1::Trigger { event_types: vec!["call.missed".into()], ..Default::default() });
        let demo_hook = api
            .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
            .await
            .unwrap()
            .into_inner();
        let demo = std::process::Command::new(BIN)
            .args(["receive", "--addr", &format!("127.0.0.1:{port}"), "--count", "1"])
            .args(["--public-key", &demo_hook.public_key])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(tokio::task::block_in_place(|| hookmesh_testkit::wait_for_port(port, Duration::from_secs(10))));
        hm.publish(&[event("e-demo", "call.missed", "acme", "c-demo", json!({}))]).await;
        let out = tokio::task::block_in_place(|| demo.wait_with_output()).unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("webhook-id=msg_") && printed.contains("signature=valid"), "{printed}");
    }

    // Rotation: the old key keeps signing for the grace period, beside the new one.
    let rotated = api
        .rotate_secret(v1::RotateSecretRequest { id: id.clone(), grace_secs: Some(3600), scheme: "v1a".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.secret.is_empty() && rotated.public_key.starts_with("whpk_"));
    assert_ne!(rotated.public_key, only.public_key);
    let keys = rotated.webhook.unwrap().public_keys;
    assert_eq!(keys.len(), 2);
    assert!(!keys[0].expires_at.is_empty() && keys[1].expires_at.is_empty(), "{keys:?}");
    hm.publish(&[event("e-2", "call.ended", "acme", "c-2", json!({}))]).await;
    let second = &received_event(&rx2, "e-2").await;
    assert_eq!(verify_v1a(&only.public_key, second), 1, "the old key signs during the grace period");
    assert_eq!(verify_v1a(&rotated.public_key, second), 1, "and the new one");
    // Retiring at once: only the newest key signs.
    let now = api
        .rotate_secret(v1::RotateSecretRequest { id: id.clone(), grace_secs: Some(0), scheme: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.webhook.unwrap().public_keys.len(), 1);
    hm.publish(&[event("e-3", "call.ended", "acme", "c-3", json!({}))]).await;
    let third = &received_event(&rx2, "e-3").await;
    assert_eq!(verify_v1a(&now.public_key, third), 1);
    assert_eq!(verify_v1a(&rotated.public_key, third), 0, "a retired key no longer signs");
    // Rotating a scheme the webhook does not use is refused, naming the field.
    let err = api
        .rotate_secret(v1::RotateSecretRequest { id: id.clone(), grace_secs: None, scheme: "v1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("scheme:"), "{}", err.message());

    // Switching v1a on for an HMAC-only webhook through ctl makes a key and shows its public key.
    let rx3 = Recorder::start().await;
    let (plain, plain_secret) = hm.create_webhook(webhook("acme", "Plain", &rx3.url("/plain"))).await;
    assert_eq!(plain.signature_schemes, ["v1"]);
    assert!(plain.public_keys.is_empty());
    let (ok, stdout, stderr) = hm.ctl(&["-o", "json", "webhook", "update", &plain.id, "--signature", "v1,v1a"]);
    assert!(ok, "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let public = shown["public_keys"][0]["key"].as_str().unwrap().to_string();
    hm.publish(&[event("e-4", "call.ended", "acme", "c-4", json!({}))]).await;
    let got = rx3.wait_for(1, WAIT).await;
    verify_signature(&plain_secret, &got[0]).expect("the v1 secret still signs");
    assert_eq!(verify_v1a(&public, &got[0]), 1);
    let (ok, _, stderr) = hm.ctl(&["webhook", "update", &plain.id, "--signature", "v2"]);
    assert!(!ok && stderr.contains("signature_schemes[0]: unknown scheme `v2`"), "{stderr}");

    // The private key never leaves the process: not in any answer, not in the log, and on
    // Kafka the config topic holds it encrypted under the master key.
    let all = api.list_webhooks(v1::ListWebhooksRequest::default()).await.unwrap().into_inner();
    assert!(!format!("{all:?}").contains("whsk_"));
    assert!(!hm.log_text().contains("whsk_"), "a signing key was logged");
    if let Some((broker, _)) = &env.backends {
        use rdkafka::Message;
        let records = read_records(&broker.bootstrap(), "hookmesh.config", WAIT, |got| {
            got.iter().any(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).contains(&id))
        })
        .await;
        let text: String =
            records.iter().map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()).collect();
        assert!(text.contains(&id) && text.contains("enc:v1:"), "{text}");
        assert!(!text.contains("whsk_") && !text.contains("whsec_"), "keys in clear in the config topic");
    }
}

/// Reads records of `topic` from the beginning with a plain rdkafka consumer until `done`
/// holds on what was read (or `timeout` passes); answers what was read.
async fn read_records(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", uuid_like()))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) && std::time::Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            got.push(m.detach());
        }
    }
    got
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

fn record_header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    use rdkafka::Message;
    m.headers()?.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A record as the recording receiver would have seen a request, so the same verifiers apply.
fn as_received(m: &rdkafka::message::OwnedMessage) -> Received {
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let mut headers = axum::http::HeaderMap::new();
    for h in m.headers().unwrap().iter() {
        headers.insert(
            axum::http::HeaderName::from_bytes(h.key.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(h.value.unwrap_or_default()).unwrap(),
        );
    }
    Received {
        method: "KAFKA".into(),
        uri: String::new(),
        headers,
        body: axum::body::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        at: std::time::Instant::now(),
    }
}

async fn create_topic(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let r = admin
        .create_topics(&[NewTopic::new(topic, 2, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topic");
    for t in r {
        t.expect("topic created");
    }
}

/// A webhook that delivers to a Kafka topic instead of a URL: routed by its trigger (an
/// expression included), rendered, signed (v1 and v1a) into record headers, retried while the
/// destination cluster stalls, logged and counted in health like an HTTP endpoint.
async fn kafka_destination_records_carry_verifiable_signatures(backend: Backend) {
    use rdkafka::Message;
    let destination = tokio::task::block_in_place(hookmesh_testkit::tansu::TansuBroker::start);
    let bootstrap = destination.bootstrap();
    create_topic(&bootstrap, "crm.calls").await;
    // `partners` is open to tenant beta only.
    let spec = format!("analytics={bootstrap};partners@beta={bootstrap}");
    let env = start(backend, &["--kafka-destinations", &spec]).await;
    let hm = &env.hm;

    // Only configured names open to the tenant: brokers in the URL, a name this deployment
    // lacks, another tenant's destination, or hookmesh's own topics are refused.
    for (url, says) in [
        (format!("kafka://{bootstrap}/crm.calls"), "request.url: `127.0.0.1:"),
        (
            "kafka://billing/crm.calls".to_string(),
            "request.url: no Kafka destination `billing` in this deployment (open to this tenant: analytics)",
        ),
        (
            "kafka://partners/crm.calls".to_string(),
            "request.url: no Kafka destination `partners` in this deployment (open to this tenant: analytics)",
        ),
        (
            "kafka://analytics/hookmesh.config".to_string(),
            "request.url: topic `hookmesh.config` is hookmesh's or Kafka's own",
        ),
        ("kafka://analytics/__consumer_offsets".to_string(), "request.url: topic `__consumer_offsets`"),
    ] {
        let err = hm
            .webhooks()
            .await
            .create_webhook(v1::CreateWebhookRequest {
                webhook: Some(webhook("acme", "Refused", &url)),
                disabled: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with(says), "{}", err.message());
    }

    let (ok, stdout, stderr) = hm.ctl(&[
        "-o",
        "json",
        "webhook",
        "create",
        "--tenant",
        "acme",
        "--name",
        "CRM stream",
        "--url",
        "kafka://analytics/crm.calls",
        "--event",
        "call.ended",
        "--expression",
        "call.duration > 30",
        "--header",
        "X-Source: hookmesh",
        "--signature",
        "v1,v1a",
        "--timeout-ms",
        "1000",
        "--retry-schedule",
        "1",
        "--retry-limit",
        "5",
    ]);
    assert!(ok, "{stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let id = created["webhook"]["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let public = created["public_key"].as_str().unwrap().to_string();

    hm.publish(&[
        event("k-1", "call.ended", "acme", "call-1", json!({"call_duration": 45})),
        event("k-2", "call.ended", "acme", "call-2", json!({"call_duration": 5})),
        event("k-3", "call.ended", "acme", "call-3", json!({"call_duration": 90})),
    ])
    .await;
    let records = read_records(&bootstrap, "crm.calls", WAIT, |got| got.len() >= 2).await;
    let mut keys: Vec<String> =
        records.iter().map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned()).collect();
    keys.sort();
    assert_eq!(keys, ["call-1", "call-3"], "only the calls the expression lets through");
    for m in &records {
        let r = as_received(m);
        verify_signature(&secret, &r).expect("v1 verifies with the standardwebhooks crate");
        assert_eq!(verify_v1a(&public, &r), 1);
        assert_eq!(record_header(m, "x-source").as_deref(), Some("hookmesh"));
        assert_eq!(record_header(m, "content-type").as_deref(), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(body["call_id"], String::from_utf8_lossy(m.key().unwrap()).as_ref());
    }
    // The delivery log and health know them like HTTP deliveries (each logged once its
    // attempt's outcome is recorded, just after the record was acknowledged).
    let mut deliveries = hm.deliveries().await;
    let mut listed = Vec::new();
    let both = wait_until_async(
        WAIT,
        || deliveries_of(hm, &id),
        |l| {
            listed = l.clone();
            l.len() >= 2
        },
    )
    .await;
    assert!(both, "{listed:?}");
    assert_eq!(listed.len(), 2);
    let first = delivery_when(hm, &listed[0].id, |d| d.status == "success").await;
    let attempt = &first.attempts[0];
    assert_eq!(attempt.url, "kafka://analytics/crm.calls");
    assert!(attempt.response_body.starts_with("acknowledged: partition "), "{attempt:?}");
    assert!(attempt.request_headers.iter().any(|h| h.name == "webhook-signature"));

    // Test-send produces a record too (on the sample event), and answers the acknowledgement.
    let test =
        deliveries.test_send(v1::TestSendRequest { webhook_id: id.clone(), event: None }).await.unwrap().into_inner();
    assert!(test.success, "{test:?}");
    assert!(test.attempt.unwrap().response_body.starts_with("acknowledged: partition "));

    // The destination stalls: the attempt times out and is retried; once it is back the retry
    // lands. Both attempts are in the log and in the endpoint's health.
    destination.pause();
    hm.publish(&[event("k-4", "call.ended", "acme", "call-4", json!({"call_duration": 31}))]).await;
    let stalled = loop {
        let found = deliveries
            .list_deliveries(v1::ListDeliveriesRequest {
                webhook_id: id.clone(),
                call_id: "call-4".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        if let Some(d) = found.into_iter().next() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failed = delivery_when(hm, &stalled.id, |d| d.attempts >= 1 && d.status == "retrying").await;
    assert_eq!(failed.attempts[0].error_class, "timeout", "{:?}", failed.attempts[0]);
    destination.resume();
    let done = delivery_when(hm, &stalled.id, |d| d.status == "success").await;
    assert!(done.delivery.unwrap().attempts >= 2);
    let records =
        read_records(&bootstrap, "crm.calls", WAIT, |got| got.iter().any(|m| m.key() == Some(b"call-4".as_slice())))
            .await;
    let late: Vec<_> = records.iter().filter(|m| m.key() == Some(b"call-4".as_slice())).collect();
    assert!(!late.is_empty());
    // A stalled record may land twice (the first attempt's, then the retry's): always with
    // the same webhook-id, so a consumer deduplicates as an HTTP receiver does.
    let ids: std::collections::HashSet<_> = late.iter().map(|m| record_header(m, "webhook-id")).collect();
    assert_eq!(ids.len(), 1);
    for m in late {
        assert_eq!(verify_v1a(&public, &as_received(m)), 1);
    }
    // Acknowledged records are counted apart from HTTP status classes.
    let metrics = http_get(&format!("http://{}/metrics", hm.admin)).await.1;
    let acked = "hookmesh_delivery_attempts_total{outcome=\"success\",class=\"kafka_ack\"}";
    assert!(metrics.lines().any(|l| l.starts_with(acked)), "{metrics}");
    let health =
        deliveries.endpoint_health(v1::EndpointHealthRequest { webhook_id: id.clone() }).await.unwrap().into_inner();
    let hour = health.windows.iter().find(|w| w.window == "1h").unwrap();
    assert!(hour.attempts >= 4 && hour.successes == 3, "{health:?}");
}

/// The three together on the four roles as separate processes (one broker and one
/// redis-server for hookmesh, a second broker as the Kafka destination): switches publish to
/// `calls.raw`, the router (which alone knows the expression) routes, the dispatcher (which
/// alone holds the producer) streams and signs.
#[tokio::test(flavor = "multi_thread")]
async fn distributed_roles_filter_sign_and_stream() {
    use rdkafka::Message;
    let destination = tokio::task::block_in_place(hookmesh_testkit::tansu::TansuBroker::start);
    let bootstrap = destination.bootstrap();
    create_topic(&bootstrap, "calls.long").await;
    let spec = format!("analytics={bootstrap}");
    let cluster =
        tokio::task::block_in_place(|| crate::distributed::Cluster::start_with(&["--kafka-destinations", &spec]));
    let rx = Recorder::start().await;
    let mut api = cluster.router.webhooks().await;

    let mut http = webhook("acme", "Long inbound calls", &rx.url("/long"));
    http.trigger = Some(v1::Trigger {
        expression: "call.duration > 30 && call.direction == \"inbound\"".into(),
        ..Default::default()
    });
    http.signature_schemes = vec!["v1a".into()];
    let http = api
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(http), disabled: false })
        .await
        .unwrap()
        .into_inner();
    let mut stream = webhook("acme", "Long calls stream", "kafka://analytics/calls.long");
    stream.trigger = Some(v1::Trigger { expression: "call.duration > 30".into(), ..Default::default() });
    stream.signature_schemes = vec!["v1".into(), "v1a".into()];
    let stream = api
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(stream), disabled: false })
        .await
        .unwrap()
        .into_inner();

    let calls: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            let direction = if i % 2 == 0 { "inbound" } else { "outbound" };
            event(
                &format!("d-{i}"),
                "call.ended",
                "acme",
                &format!("call-{i}"),
                json!({"call_duration": i * 20, "direction": direction}),
            )
        })
        .collect();
    cluster.publish_raw(&calls).await;
    // Durations 0, 20, 40, 60, 80, 100: calls 2..=5 are long; of those 2 and 4 are inbound.
    let records = read_records(&bootstrap, "calls.long", Duration::from_secs(90), |got| got.len() >= 4).await;
    let mut keys: Vec<String> =
        records.iter().map(|m| String::from_utf8_lossy(m.key().unwrap()).into_owned()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys, ["call-2", "call-3", "call-4", "call-5"]);
    for m in &records {
        let r = as_received(m);
        verify_signature(&stream.secret, &r).expect("v1 verifies with the standardwebhooks crate");
        assert_eq!(verify_v1a(&stream.public_key, &r), 1);
    }
    let got = rx.wait_for(2, Duration::from_secs(90)).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.json()["call_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, ["call-2", "call-4"]);
    for r in &got {
        assert_eq!(verify_v1a(&http.public_key, r), 1);
    }
}
