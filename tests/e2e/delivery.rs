//! A call event becomes a signed, rendered, retried webhook.

use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn create(hm: &Hookmesh, w: v1::Webhook) -> (v1::Webhook, String) {
    hm.create_webhook(w).await
}

#[tokio::test]
async fn json_field_mapping_is_delivered_signed() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let mut w = webhook("acme", "CRM", &rx.url("/crm/{{ callid }}"));
    let req = w.request.as_mut().unwrap();
    req.headers.push(v1::KeyValue { name: "X-Api-Key".into(), value: "k-123".into() });
    req.body = Some(v1::TemplateBody {
        kind: Some(v1::template_body::Kind::Fields(v1::FieldsBody {
            format: "json".into(),
            example: r#"{"phone": "%ani%", "campaign": "{{ campaign_name }}", "seconds": "%answered_time%", "tags": "%tags%", "source": "hookmesh"}"#.into(),
            fields: vec![],
        })),
    });
    w.trigger = Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() });
    let (created, secret) = create(&hm, w).await;
    assert!(secret.starts_with("whsec_"));

    let data = json!({"ani": "7776734736", "campaign_name": "Sales \"Q4\" </x> & more", "answered_time": 29, "tags": {"region": "south"}});
    let resp = hm
        .publish(&[
            event("e-1", "call.started", "acme", "call-1", data.clone()),
            event("e-2", "hangup", "acme", "call-1", data.clone()),
        ])
        .await;
    assert_eq!(resp.accepted, 2, "{resp:?}");

    let got = rx.wait_for(1, WAIT).await;
    let webhook_id = got[0].header("webhook-id").unwrap();
    // Only call.ended matches (the alias `hangup` normalised to it). The two events share a
    // key, so the router took call.started first: once the delivery is settled in the log,
    // both went through, and one request came.
    delivery_when(&hm, &webhook_id, |d| d.status == "success").await;
    assert_eq!(rx.count(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/crm/call-1");
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(r.header("x-api-key").as_deref(), Some("k-123"));
    assert_eq!(
        r.json(),
        json!({"phone": "7776734736", "campaign": "Sales \"Q4\" </x> & more", "seconds": 29, "tags": {"region": "south"}, "source": "hookmesh"})
    );
    verify_signature(&secret, r).expect("signature verifies with the Standard Webhooks library");

    // The delivery log shows it, with the same id as the webhook-id header.
    let mut deliveries = hm.deliveries().await;
    let list = deliveries
        .list_deliveries(v1::ListDeliveriesRequest { webhook_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.deliveries.len(), 1);
    let d = &list.deliveries[0];
    assert_eq!(d.id, webhook_id);
    assert_eq!(d.status, "success");
    assert_eq!(d.event_type, "call.ended");
    assert_eq!(d.attempts, 1);
}

#[tokio::test]
async fn xml_body_and_get_query_parameters() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let mut xml = webhook("acme", "XML CRM", &rx.url("/xml"));
    let req = xml.request.as_mut().unwrap();
    req.content_type = "xml".into();
    req.body = Some(v1::TemplateBody {
        kind: Some(v1::template_body::Kind::Fields(v1::FieldsBody {
            format: "xml".into(),
            example: r#"<lead source="hookmesh"><phone>%ani%</phone><name>%ani_full_name%</name></lead>"#.into(),
            fields: vec![],
        })),
    });
    create(&hm, xml).await;
    let mut get = webhook("acme", "GET CRM", &rx.url("/get"));
    let req = get.request.as_mut().unwrap();
    req.method = "GET".into();
    req.query.push(v1::KeyValue { name: "key".into(), value: "static".into() });
    req.body = Some(v1::TemplateBody {
        kind: Some(v1::template_body::Kind::Pairs(v1::PairsBody {
            pairs: vec![
                v1::FieldMapping {
                    path: "caller".into(),
                    source: Some(v1::Source { kind: Some(v1::source::Kind::Token("ani".into())) }),
                },
                v1::FieldMapping {
                    path: "who".into(),
                    source: Some(v1::Source { kind: Some(v1::source::Kind::Token("ani_full_name".into())) }),
                },
            ],
        })),
    });
    create(&hm, get).await;

    hm.publish(&[event("x-1", "call.ended", "acme", "c-1", json!({"ani": "5551234", "ani_full_name": "A & B <c>"}))])
        .await;
    let got = rx.wait_for(2, WAIT).await;
    let xml = got.iter().find(|r| r.uri == "/xml").expect("xml request");
    assert_eq!(xml.header("content-type").as_deref(), Some("application/xml"));
    let text = std::str::from_utf8(&xml.body).unwrap();
    let doc = roxmltree_like_parse(text);
    assert_eq!(
        doc,
        vec![("phone".to_string(), "5551234".to_string()), ("name".to_string(), "A & B <c>".to_string())],
        "{text}"
    );
    assert!(text.contains(r#"source="hookmesh""#), "{text}");

    let get = got.iter().find(|r| r.uri.starts_with("/get")).expect("GET request");
    assert_eq!(get.method, "GET");
    assert!(get.body.is_empty());
    let q = get.query();
    assert!(q.contains(&("key".into(), "static".into())), "{q:?}");
    assert!(q.contains(&("caller".into(), "5551234".into())), "{q:?}");
    assert!(q.contains(&("who".into(), "A & B <c>".into())), "{q:?}");
}

/// Leaf elements of a small XML document as (name, unescaped text).
fn roxmltree_like_parse(text: &str) -> Vec<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut buf = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                current = Some(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.decode().unwrap()),
            Event::GeneralRef(r) => buf.push_str(match &*r.decode().unwrap() {
                "amp" => "&",
                "lt" => "<",
                "gt" => ">",
                "quot" => "\"",
                "apos" => "'",
                other => panic!("unexpected entity {other}"),
            }),
            Event::End(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                if current.as_deref() == Some(name.as_str()) {
                    out.push((name, std::mem::take(&mut buf)));
                }
                current = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn failing_receiver_is_retried_until_it_recovers() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    rx.script(&[500, 503], 200);
    let mut w = webhook("acme", "Flaky", &rx.url("/flaky"));
    w.policy = Some(v1::DeliveryPolicy { retry_schedule: vec![1, 1, 1], ..Default::default() });
    let (created, secret) = create(&hm, w).await;
    hm.publish(&[event("r-1", "call.ended", "acme", "c-9", json!({}))]).await;
    let got = rx.wait_for(3, WAIT).await;
    // Same webhook-id on every attempt; every attempt freshly signed and valid.
    let ids: Vec<_> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for r in &got {
        verify_signature(&secret, r).unwrap();
    }
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(700), "retry waited for its schedule");
    let detail = delivery_when(&hm, &ids[0], |d| d.status == "success").await;
    assert_eq!(detail.attempts.len(), 3);
    assert_eq!(detail.attempts.iter().map(|a| a.response_status).collect::<Vec<_>>(), vec![500, 503, 200]);
    assert_eq!(detail.attempts[0].error_class, "status");
    let d = detail.delivery.unwrap();
    assert_eq!(d.webhook_id, created.id);
    assert_eq!(d.attempts, 3);
}

/// A new delivery is written to the log by its first attempt's record (see the dispatcher's
/// `deliver` module), but one whose first attempt is still running after a second is shown
/// `pending` meanwhile, then settled by that same attempt: one request, one attempt.
#[tokio::test]
async fn a_slow_first_attempt_is_shown_pending_while_it_runs() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    rx.set_delay(Duration::from_secs(4));
    let mut w = webhook("acme", "Slow CRM", &rx.url("/slow"));
    w.policy = Some(v1::DeliveryPolicy { timeout_ms: Some(10_000), ..Default::default() });
    let (created, _) = create(&hm, w).await;
    hm.publish(&[event("slow-1", "call.ended", "acme", "c-slow", json!({}))]).await;
    let hits = rx.wait_for_hits(1, WAIT).await;
    assert_eq!(hits.len(), 1);
    let mut listed = Vec::new();
    let shown = wait_until_async(
        Duration::from_secs(3),
        || deliveries_of(&hm, &created.id),
        |l| {
            listed = l.clone();
            l.first().is_some_and(|d| d.status == "pending" && d.attempts == 0)
        },
    )
    .await;
    assert!(shown, "the running attempt's delivery is listed as pending: {listed:?}");
    let id = listed[0].id.clone();
    let detail = delivery_when(&hm, &id, |d| d.status == "success").await;
    assert_eq!(detail.delivery.unwrap().attempts, 1);
    assert_eq!(detail.attempts.len(), 1, "one attempt, recorded once: {:?}", detail.attempts);
    assert_eq!(rx.count(), 1);
}
