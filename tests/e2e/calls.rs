//! What telephony integrations need beyond one-event-one-URL, end to end on the standalone
//! (embedded backends) and on standalone over a real `tansu` broker and `redis-server`:
//! CEL expression filters on triggers.

use crate::control::{start, Backend};
use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn standalone() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn kafka_redis() {
                super::$name(super::Backend::KafkaRedis).await
            }
        }
    )*};
}

on_both_backends!(expression_filter_routes_exactly_the_matching_calls);

const SALES: &str = r#"call.duration > 30 && call.status == "answered" && campaign.name.startsWith("Sales") && !(tags.region == "north")"#;

/// A CEL filter beside a list filter (inbound calls only): exactly the calls that satisfy both
/// arrive. Each call ends with a closing event that always matches; the webhook delivers one
/// call at a time (`per_call` ordering), so once every closing event has arrived, any wrongly
/// routed event of that call would have arrived before it.
async fn expression_filter_routes_exactly_the_matching_calls(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let rx = Receiver::start().await;
    let mut w = webhook("acme", "Sales calls", &rx.url("/sales"));
    w.trigger = Some(v1::Trigger {
        event_types: vec!["call.ended".into()],
        directions: vec!["inbound".into()],
        // `has()` first: a data point the event lacks stops the evaluation, in `||` too.
        expression: format!("has(data.closing) || ({SALES})"),
        ..Default::default()
    });
    w.policy = Some(v1::DeliveryPolicy { ordering: "per_call".into(), ..Default::default() });
    let (created, _) = hm.create_webhook(w).await;
    assert!(created.trigger.unwrap().expression.ends_with("!(tags.region == \"north\"))"));

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
        |rx: &Receiver| rx.received().iter().filter(|r| r.json()["id"].as_str().unwrap().ends_with("-close")).count();
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
