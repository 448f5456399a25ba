//! Call context end to end, on the standalone and on standalone over a real `tansu` broker and
//! `redis-server`: a CRM lead created on `call.started` whose id (captured from the CRM's JSON
//! answer) addresses the `call.ended` update; a value that never arrives, after the wait, either
//! takes its declared default or fails the delivery with the reason; the context over gRPC.

use crate::control::{start, Backend};
use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    standalone:
    lead_created_on_start_is_updated_at_its_captured_id_on_end,
    a_value_never_captured_falls_back_or_fails_after_the_wait,
);

fn on(w: &mut v1::Webhook, event_type: &str) {
    w.trigger = Some(v1::Trigger { event_types: vec![event_type.into()], ..Default::default() });
}

async fn lead_created_on_start_is_updated_at_its_captured_id_on_end(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let crm = Recorder::start().await;
    crm.respond_with_body(r#"{"data":{"id":"L-42","owner":"Ann \"A\" <ann@example.com>"}}"#);

    let mut create = webhook("acme", "CRM: create lead", &crm.url("/leads"));
    on(&mut create, "call.started");
    create.captures = vec![
        v1::Capture { name: "lead_id".into(), path: "$.data.id".into() },
        v1::Capture { name: "owner".into(), path: "$.data.owner".into() },
    ];
    let (create, _) = hm.create_webhook(create).await;
    assert_eq!(create.captures.len(), 2);

    // Configured through ctl, as the README shows: URL, header and body use the captured id.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("update.json.j2");
    std::fs::write(
        &body,
        r#"{"lead": {{ context.lead_id }}, "note": "owner {{ context.owner }}", "seconds": {{ call_duration }}}"#,
    )
    .unwrap();
    let (ok, out, err) = hm.ctl(&[
        "webhook",
        "create",
        "--tenant",
        "acme",
        "--name",
        "CRM: update lead",
        "--url",
        &crm.url("/leads/{{ context.lead_id }}"),
        "--method",
        "PUT",
        "--event",
        "call.ended",
        "--header",
        "X-Lead: {{ context.lead_id }}",
        "--body-kind",
        "text",
        "--body-file",
        body.to_str().unwrap(),
        "--context-wait",
        "30s",
        "--output",
        "json",
    ]);
    assert!(ok, "ctl: {out}{err}");
    let update: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let update_id = update["webhook"]["id"].as_str().unwrap_or_else(|| panic!("{out}")).to_string();

    // The end of the call arrives first: its delivery waits for the lead id...
    let ended = event("c1-end", "call.ended", "acme", "call-1", json!({"call_duration": 42}));
    assert_eq!(hm.publish(&[ended]).await.accepted, 1);
    let (deferred, waiting) = wait_for_deferred(hm, &update_id, WAIT).await;
    assert!(deferred, "the update should wait for the lead id: {waiting:?}");
    assert_eq!(crm.count(), 0, "nothing is sent before the lead exists");

    // ...until the lead is created and its id captured.
    let started = event("c1-start", "call.started", "acme", "call-1", json!({}));
    assert_eq!(hm.publish(&[started]).await.accepted, 1);
    let got = crm.wait_for(2, WAIT).await;
    assert_eq!((got[0].method.as_str(), got[0].uri.as_str()), ("POST", "/leads"));
    let put = &got[1];
    assert_eq!((put.method.as_str(), put.uri.as_str()), ("PUT", "/leads/L-42"));
    assert_eq!(put.header("x-lead").as_deref(), Some("L-42"));
    assert_eq!(put.json(), json!({"lead": "L-42", "note": "owner Ann \"A\" <ann@example.com>", "seconds": 42}));

    // The log: the create attempt says what it captured, the update shows the values used.
    // The create's record may land just after the update went out (it is written with its
    // attempt's outcome).
    let mut listed = Vec::new();
    let logged = wait_until_async(
        WAIT,
        || deliveries_of(hm, &create.id),
        |l| {
            listed = l.clone();
            !l.is_empty()
        },
    )
    .await;
    assert!(logged, "the create delivery is logged");
    let created = delivery_when(hm, &listed[0].id, |d| d.status == "success").await;
    assert_eq!(created.attempts[0].context_note, "context: captured lead_id, owner");
    let updated = delivery_when(hm, &waiting[0].id, |d| d.status == "success").await;
    let used = &updated.delivery.as_ref().unwrap().context;
    assert_eq!(used.get("lead_id").map(String::as_str), Some("L-42"));
    assert_eq!(updated.attempts.len(), 1, "waiting made no attempts: {:?}", updated.attempts);
    assert!(updated.attempts[0].url.ends_with("/leads/L-42"));

    // Over gRPC, per tenant: another tenant's call of the same id has no context.
    let mut api = hm.deliveries().await;
    let ctx = |tenant: &str| v1::GetCallContextRequest { tenant_id: tenant.into(), call_id: "call-1".into() };
    let values = api.get_call_context(ctx("acme")).await.unwrap().into_inner().values;
    assert_eq!(values.get("lead_id").map(String::as_str), Some("L-42"));
    assert!(api.get_call_context(ctx("other")).await.unwrap().into_inner().values.is_empty());
    let err = api.get_call_context(ctx("")).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (tonic::Code::InvalidArgument, "tenant_id: is required"));
    // And through ctl.
    let (ok, out, err) = hm.ctl(&["call", "context", "call-1", "--tenant", "acme"]);
    assert!(ok, "{err}");
    assert!(out.contains("lead_id") && out.contains("L-42"), "{out}");
}

async fn a_value_never_captured_falls_back_or_fails_after_the_wait(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let crm = Recorder::start().await;
    let mut strict = webhook("acme", "strict", &crm.url("/strict/{{ context.lead_id }}"));
    on(&mut strict, "call.ended");
    strict.context_wait_ms = 1500;
    let (strict, _) = hm.create_webhook(strict).await;
    let mut lenient = webhook("acme", "lenient", &crm.url("/lenient/{{ context.lead_id }}"));
    on(&mut lenient, "call.ended");
    lenient.context_wait_ms = 1500;
    lenient.context_defaults = vec![v1::KeyValue { name: "lead_id".into(), value: "unknown lead".into() }];
    let (lenient, _) = hm.create_webhook(lenient).await;

    // A capture name that is not a name, and a bad path, are refused naming the capture.
    let mut bad = webhook("acme", "bad", &crm.url("/x"));
    bad.captures = vec![v1::Capture { name: "lead_id".into(), path: "data.id".into() }];
    let err = hm
        .webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(bad), disabled: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("capture.lead_id: `data.id` must start with `$`"), "{}", err.message());

    assert_eq!(hm.publish(&[event("c2-end", "call.ended", "acme", "call-2", json!({}))]).await.accepted, 1);
    let got = crm.wait_for(1, WAIT).await;
    assert_eq!(got[0].uri, "/lenient/unknown%20lead");
    let failed = delivery_when(
        hm,
        &deliveries_of(hm, &strict.id).await.first().map(|d| d.id.clone()).unwrap_or_default(),
        |d| d.status == "error",
    )
    .await;
    let d = failed.delivery.unwrap();
    assert_eq!(d.last_error, "context value lead_id was not captured within 1500ms");
    assert_eq!(d.last_error_class, "context");
    assert!(failed.attempts.is_empty(), "nothing was sent: {:?}", failed.attempts);
    let fell_back = deliveries_of(hm, &lenient.id).await;
    let fell_back = delivery_when(hm, &fell_back[0].id, |d| d.status == "success").await;
    assert_eq!(fell_back.delivery.unwrap().context.get("lead_id").map(String::as_str), Some("unknown lead"));
    assert_eq!(crm.count(), 1, "the strict webhook sent nothing");

    // Once a lead exists, a resend of the failed delivery sends it with the captured id.
    let leads = Recorder::start().await;
    leads.respond_with_body(r#"{"data":{"id":"L-7"}}"#);
    let mut create = webhook("acme", "create", &leads.url("/leads"));
    on(&mut create, "call.started");
    create.captures = vec![v1::Capture { name: "lead_id".into(), path: "$.data.id".into() }];
    hm.create_webhook(create).await;
    assert_eq!(hm.publish(&[event("c2-start", "call.started", "acme", "call-2", json!({}))]).await.accepted, 1);
    let mut api = hm.deliveries().await;
    let ask = v1::GetCallContextRequest { tenant_id: "acme".into(), call_id: "call-2".into() };
    let captured = wait_until_async(
        WAIT,
        || {
            let mut api = api.clone();
            let ask = ask.clone();
            async move { api.get_call_context(ask).await.unwrap().into_inner().values }
        },
        |v| v.contains_key("lead_id"),
    )
    .await;
    assert!(captured);
    let resent =
        api.resend(v1::ResendRequest { id: d.id.clone() }).await.unwrap_or_else(|e| panic!("resend: {e}")).into_inner();
    assert_eq!(resent.delivery.unwrap().status, "success");
    let got = crm.wait_for(2, WAIT).await;
    assert_eq!(got[1].uri, "/strict/L-7");
}

/// A tenant token reads its own calls' context only.
#[tokio::test(flavor = "multi_thread")]
async fn call_context_over_grpc_is_tenant_isolated() {
    use hookmesh_proto::auth::hash_token;
    let tokens = format!("sha256:{}=operator,sha256:{}=tenant:acme", hash_token("op-token"), hash_token("acme-token"));
    let hm = Hookmesh::start_with(&["--tokens", &tokens]);
    let ch = hm.channel().await;
    let bearer = |token: &'static str| {
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(req)
        }
    };
    let mut acme =
        v1::delivery_service_client::DeliveryServiceClient::with_interceptor(ch.clone(), bearer("acme-token"));
    let ask = |tenant: &str| v1::GetCallContextRequest { tenant_id: tenant.into(), call_id: "call-1".into() };
    let err = acme.get_call_context(ask("other")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Its own tenant, named or implied by the token.
    assert!(acme.get_call_context(ask("acme")).await.unwrap().into_inner().values.is_empty());
    assert!(acme.get_call_context(ask("")).await.unwrap().into_inner().values.is_empty());
    let mut op = v1::delivery_service_client::DeliveryServiceClient::with_interceptor(ch, bearer("op-token"));
    assert!(op.get_call_context(ask("other")).await.is_ok());
}
