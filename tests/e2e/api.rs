//! The management API and the input paths: reflection, admin port, validation naming the
//! field, dedup and the dead-letter list, preview, resend and test-send.

use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

async fn create(hm: &Hookmesh, w: v1::Webhook) -> Result<(v1::Webhook, String), tonic::Status> {
    let resp = hm
        .webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await?
        .into_inner();
    Ok((resp.webhook.unwrap(), resp.secret))
}

#[tokio::test]
async fn reflection_lists_every_service_and_admin_port_answers() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let hm = Hookmesh::start();
    let mut client = ServerReflectionClient::new(hm.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in ["IngestService", "WebhookService", "TemplateService", "RenderService", "DeliveryService"] {
        assert!(names.contains(&format!("hookmesh.v1.{s}").as_str()), "{names:?}");
    }

    let get = |path: &str| {
        let url = format!("http://{}{path}", hm.admin);
        async move {
            let resp = http_get(&url).await;
            resp
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    hm.publish(&[json!({"id": "bad"})]).await;
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("hookmesh_events_ingested_total{outcome=\"rejected\"} 1"), "{metrics}");
}

/// The reflection client most non-Rust tooling ships (Python's grpcio-reflection among them)
/// speaks `grpc.reflection.v1alpha`: it lists every service, the health service included, and
/// resolves a hookmesh service to its file.
#[tokio::test]
async fn reflection_v1alpha_client_lists_services_and_resolves_symbols() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let hm = Hookmesh::start();
    let mut client = ServerReflectionClient::new(hm.channel().await);
    let reqs = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("hookmesh.v1.DeliveryService".into())),
        },
    ];
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(reqs))
        .await
        .expect("grpc.reflection.v1alpha is served")
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in [
        "hookmesh.v1.IngestService",
        "hookmesh.v1.WebhookService",
        "hookmesh.v1.TemplateService",
        "hookmesh.v1.TenantService",
        "hookmesh.v1.RenderService",
        "hookmesh.v1.DeliveryService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s), "v1alpha reflection does not list {s}: {names:?}");
    }
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else { panic!("{resp:?}") };
    let file: prost_types::FileDescriptorProto =
        prost::Message::decode(files.file_descriptor_proto[0].as_slice()).expect("a FileDescriptorProto");
    assert_eq!(file.package.as_deref(), Some("hookmesh.v1"), "{file:?}");
    assert!(file.service.iter().any(|s| s.name.as_deref() == Some("DeliveryService")), "{file:?}");
}

/// `grpc.health.v1.Health/Check` answers SERVING for the whole server (`""`) and for every
/// service standalone mounts, NOT_FOUND for a service it does not serve; no token is needed
/// even when the API requires one (probes carry none). `Watch` turns NOT_SERVING as soon as
/// the process starts shutting down, like `/readyz`.
#[tokio::test]
async fn grpc_health_check_answers_per_service_and_follows_readiness() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let tokens = format!("sha256:{}=operator", hookmesh_proto::auth::hash_token("op-token"));
    let mut hm = Hookmesh::start_with(&["--tokens", &tokens]);
    let mut health = HealthClient::new(hm.channel().await);
    let check = |service: &str| HealthCheckRequest { service: service.to_string() };
    for service in [
        "",
        "hookmesh.v1.IngestService",
        "hookmesh.v1.WebhookService",
        "hookmesh.v1.TemplateService",
        "hookmesh.v1.TenantService",
        "hookmesh.v1.RenderService",
        "hookmesh.v1.DeliveryService",
    ] {
        let status = health.check(check(service)).await.unwrap_or_else(|e| panic!("Check({service:?}): {e:?}"));
        assert_eq!(status.into_inner().status(), ServingStatus::Serving, "Check({service:?})");
    }
    let err = health.check(check("hookmesh.v1.NoSuchService")).await.expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("hookmesh.v1.NoSuchService"), "{err:?}");
    // The management API itself still wants the token.
    let denied = hm.webhooks().await.list_webhooks(v1::ListWebhooksRequest::default()).await.expect_err("no token");
    assert_eq!(denied.code(), tonic::Code::Unauthenticated, "{denied:?}");

    let mut watch = health.watch(check("hookmesh.v1.DeliveryService")).await.unwrap().into_inner();
    let first = watch.message().await.unwrap().expect("the current status first");
    assert_eq!(first.status(), ServingStatus::Serving);
    // Hold the process in its drain: SIGTERM drops readiness before in-flight work finishes.
    unsafe { libc::kill(hm.pid() as i32, libc::SIGTERM) };
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a status change after SIGTERM")
        .expect("the stream stays open until the status changes")
        .expect("a message");
    assert_eq!(next.status(), ServingStatus::NotServing);
    let _ = hm.terminate();
}

#[tokio::test]
async fn invalid_configuration_is_refused_naming_the_field() {
    let hm = Hookmesh::start();
    let cases: Vec<(v1::Webhook, &str)> = vec![
        (webhook("acme", "a", "ftp://x.example"), "request.url"),
        (webhook("acme", "b", "https://x.example/{{ no_such_token }}"), "request.url"),
        (
            v1::Webhook {
                trigger: Some(v1::Trigger { event_types: vec!["call.exploded".into()], ..Default::default() }),
                ..webhook("acme", "c", "https://x.example")
            },
            "trigger.event_types[0]",
        ),
        (
            {
                let mut w = webhook("acme", "d", "https://x.example");
                w.request
                    .as_mut()
                    .unwrap()
                    .headers
                    .push(v1::KeyValue { name: "X-Bad".into(), value: "a\r\nInjected: 1".into() });
                w
            },
            "request.headers[0].value",
        ),
        (
            {
                let mut w = webhook("acme", "e", "https://x.example");
                w.request.as_mut().unwrap().time_zone = "Mars/Base".into();
                w
            },
            "request.time_zone",
        ),
        (
            {
                let mut w = webhook("acme", "f", "https://x.example");
                w.request.as_mut().unwrap().body = Some(v1::TemplateBody {
                    kind: Some(v1::template_body::Kind::Text("{\n  \"a\": {{ ani }},\n  \"b\": {{ ani | }}\n}".into())),
                });
                w
            },
            "request.body.text",
        ),
        (
            {
                let mut w = webhook("acme", "g", "https://x.example");
                w.request.as_mut().unwrap().body = Some(v1::TemplateBody {
                    kind: Some(v1::template_body::Kind::Pairs(v1::PairsBody {
                        pairs: vec![v1::FieldMapping {
                            path: "x".into(),
                            source: Some(v1::Source { kind: Some(v1::source::Kind::Token("nope".into())) }),
                        }],
                    })),
                });
                w
            },
            "request.body.pairs[0].source.token",
        ),
    ];
    for (w, field) in cases {
        let err = create(&hm, w).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "expected `{field}`, got: {}", err.message());
        if field == "request.body.text" {
            assert!(err.message().contains("line 3"), "syntax errors report the line: {}", err.message());
        }
    }
    // Names are unique per tenant, not globally.
    create(&hm, webhook("acme", "Same", "https://x.example")).await.unwrap();
    let dup = create(&hm, webhook("acme", "same", "https://y.example")).await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    create(&hm, webhook("other", "Same", "https://x.example")).await.unwrap();
}

/// A refused value is echoed with its control characters escaped (the message stays one line
/// a terminal shows as is), and fields are named as the API spells them.
#[tokio::test]
async fn errors_escape_echoed_control_characters_and_name_fields_as_the_api_does() {
    let hm = Hookmesh::start();
    let mut w = webhook("acme", "crlf", "https://x.example");
    w.request
        .as_mut()
        .unwrap()
        .headers
        .push(v1::KeyValue { name: "X-A\r\nInjected: 1\u{1b}[2J".into(), value: "v".into() });
    let err = create(&hm, w).await.expect_err("a header name with CR/LF");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "request.headers[0].name: `X-A\\r\\nInjected: 1\\u{1b}[2J` is not a valid header name");

    let mut w = webhook("acme", "tz", "https://x.example");
    w.request.as_mut().unwrap().time_zone = "Europe/\nParis".into();
    let err = create(&hm, w).await.expect_err("a time zone with LF");
    assert!(!err.message().contains('\n') && err.message().contains("`Europe/\\nParis`"), "{}", err.message());

    // Event input echoed back (gRPC publish results) is escaped too.
    let resp = hm
        .publish(&[json!({"id": "e1", "type": "call.\r\nended", "occurred_at": "2026-11-23T10:00:00Z",
        "tenant_id": "acme", "call_id": "c1", "data": {}})])
        .await;
    let error = &resp.results[0].reason;
    assert!(error.contains("call.\\r\\nended") && !error.contains('\r'), "{error}");

    let mut w = webhook("acme", "rv", "https://x.example");
    w.success = Some(v1::SuccessCondition {
        response_path: "ok".into(),
        response_value_json: "tru".into(),
        ..Default::default()
    });
    let err = create(&hm, w).await.expect_err("bad JSON");
    assert!(err.message().starts_with("success.response_value_json: is not valid JSON"), "{}", err.message());
    let mut w = webhook("acme", "rv2", "https://x.example");
    w.success = Some(v1::SuccessCondition { response_value_json: "true".into(), ..Default::default() });
    let err = create(&hm, w).await.expect_err("value without path");
    assert_eq!(err.message(), "success.response_path: is required when response_value_json is set");
    let mut w = webhook("acme", "cond", "https://x.example");
    w.trigger = Some(v1::Trigger {
        conditions: vec![v1::Condition { path: "data.region".into(), op: "in".into(), value_json: "\"south\"".into() }],
        ..Default::default()
    });
    let err = create(&hm, w).await.expect_err("`in` wants a list");
    assert_eq!(err.message(), "trigger.conditions[0].value_json: must be a list for `in`");
}

#[tokio::test]
async fn registry_crud_with_expected_versions_and_secret_rotation() {
    let hm = Hookmesh::start();
    let (w, first_secret) = create(&hm, webhook("acme", "CRM", "https://crm.example/hook")).await.unwrap();
    assert_eq!(w.version, 1);
    assert!(w.enabled);
    assert_eq!(w.secrets.len(), 1);
    assert!(!w.secrets[0].prefix.contains(&first_secret[10..]), "the secret is never shown again");
    let mut client = hm.webhooks().await;
    let mut changed = w.clone();
    changed.name = "CRM v2".into();
    let updated = client
        .update_webhook(v1::UpdateWebhookRequest { webhook: Some(changed.clone()), expected_version: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.version, updated.name.as_str()), (2, "CRM v2"));
    let stale = client
        .update_webhook(v1::UpdateWebhookRequest { webhook: Some(changed), expected_version: 1 })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    let disabled = client.disable_webhook(v1::SetEnabledRequest { id: w.id.clone() }).await.unwrap().into_inner();
    assert!(!disabled.enabled);
    let rotated = client
        .rotate_secret(v1::RotateSecretRequest { id: w.id.clone(), grace_secs: None, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, first_secret);
    let secrets = rotated.webhook.unwrap().secrets;
    assert_eq!(secrets.len(), 2, "old secret signs alongside the new one during the grace period");
    assert!(!secrets[0].expires_at.is_empty() && secrets[1].expires_at.is_empty());
    let list = client
        .list_webhooks(v1::ListWebhooksRequest { tenant_id: "acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.webhooks.len(), 1);
    client.delete_webhook(v1::DeleteWebhookRequest { id: w.id.clone(), expected_version: 0 }).await.unwrap();
    let gone = client.get_webhook(v1::GetWebhookRequest { id: w.id }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn duplicates_are_dropped_and_rejects_are_listed_with_reason_and_bytes() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    create(&hm, webhook("acme", "All", &rx.url("/all"))).await.unwrap();
    let good = event("d-1", "call.started", "acme", "c-1", json!({}));
    let bad = r#"{"id":"d-2","type":"call.started","occurred_at":"2026-11-23T10:00:00Z","tenant_id":"acme"}"#;
    let mut ingest = hm.ingest().await;
    let resp = ingest
        .publish(v1::PublishRequest {
            events: vec![
                v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(good.to_string())) },
                v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(good.to_string())) },
                v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(bad.to_string())) },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.accepted, resp.duplicates, resp.rejected), (1, 1, 1), "{resp:?}");
    assert_eq!(resp.results[2].field, "call_id");
    rx.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1, "the duplicate was not delivered");
    let dlq = ingest
        .list_dead_letters(v1::ListDeadLettersRequest { limit: 10, tenant_id: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dlq.entries.len(), 1);
    let e = &dlq.entries[0];
    assert_eq!(e.field, "call_id");
    assert!(e.reason.contains("required"), "{e:?}");
    assert_eq!(e.original, bad.as_bytes(), "original bytes are kept untouched");
    assert_eq!(e.tenant_id, "acme");
}

#[tokio::test]
async fn preview_test_send_and_resend() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    rx.script(&[], 500);
    let mut w = webhook("acme", "Down", &rx.url("/down"));
    w.request.as_mut().unwrap().body = Some(v1::TemplateBody {
        kind: Some(v1::template_body::Kind::Text(r#"{"caller": {{ ani }}, "call": "%callid%"}"#.into())),
    });
    w.policy = Some(v1::DeliveryPolicy { retry_limit: Some(0), ..Default::default() });
    let (w, secret) = create(&hm, w).await.unwrap();

    // Preview on the sample event renders without sending.
    let preview = hm
        .render()
        .await
        .preview(v1::PreviewRequest { target: Some(v1::preview_request::Target::WebhookId(w.id.clone())), event: None })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&preview.body).unwrap();
    assert_eq!(body["caller"], "7776734736", "sample event uses the catalog examples: {body}");
    assert_eq!(rx.count(), 0);

    // Test-send sends now and answers request and response; the log of real deliveries stays empty.
    let mut deliveries = hm.deliveries().await;
    let test =
        deliveries.test_send(v1::TestSendRequest { webhook_id: w.id.clone(), event: None }).await.unwrap().into_inner();
    assert!(!test.success);
    assert_eq!(test.attempt.unwrap().response_status, 500);
    assert_eq!(rx.count(), 1);
    verify_signature(&secret, &rx.received()[0]).unwrap();
    let list = deliveries
        .list_deliveries(v1::ListDeliveriesRequest { webhook_id: w.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(list.deliveries.is_empty());

    // A real delivery fails (no retries allowed) and ends in error.
    hm.publish(&[event("s-1", "call.ended", "acme", "c-1", json!({"ani": "5550001"}))]).await;
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    let id = got[1].header("webhook-id").unwrap();
    delivery_when(&hm, &id, |d| d.status == "error").await;

    // The receiver recovers; resend sends the same payload with the same webhook-id.
    rx.script(&[], 200);
    let resent = deliveries.resend(v1::ResendRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(resent.delivery.unwrap().status, "success");
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got[2].header("webhook-id").unwrap(), id);
    assert_eq!(got[2].body, got[1].body);
    verify_signature(&secret, &got[2]).unwrap();
    let detail = delivery_when(&hm, &id, |d| d.status == "success").await;
    assert_eq!(detail.attempts.iter().map(|a| a.trigger.as_str()).collect::<Vec<_>>(), vec!["scheduled", "resend"]);
    // A successful delivery cannot be resent.
    let again = deliveries.resend(v1::ResendRequest { id }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn filters_route_only_matching_calls() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let mut w = webhook("acme", "Sales presses", &rx.url("/sales"));
    w.trigger = Some(v1::Trigger {
        event_types: vec!["call.ended".into()],
        directions: vec!["inbound".into()],
        ivr_options: vec!["Sales".into()],
        campaigns: vec!["cmp-1".into()],
        numbers: vec!["+1 (777) 483-9229".into()],
        conditions: vec![v1::Condition { path: "tags.region".into(), op: "eq".into(), value_json: "\"south\"".into() }],
        ..Default::default()
    });
    create(&hm, w).await.unwrap();
    let base = json!({"direction": "inbound", "ivr_label": "Sales", "ivr_option": "1", "campaign_id": "cmp-1", "tracking": "7774839229", "tags": {"region": "south"}});
    let variant = |k: &str, v: serde_json::Value| {
        let mut d = base.clone();
        d[k] = v;
        d
    };
    hm.publish(&[
        event("f-0", "call.ended", "acme", "c-0", base.clone()),
        event("f-1", "call.started", "acme", "c-1", base.clone()),
        event("f-2", "call.ended", "acme", "c-2", variant("direction", json!("outbound"))),
        event("f-3", "call.ended", "acme", "c-3", variant("ivr_label", json!("Service"))),
        event("f-4", "call.ended", "acme", "c-4", variant("campaign_id", json!("cmp-2"))),
        event("f-5", "call.ended", "acme", "c-5", variant("tracking", json!("7770000000"))),
        event("f-6", "call.ended", "acme", "c-6", variant("tags", json!({"region": "north"}))),
        event("f-7", "call.ended", "other", "c-7", base.clone()),
        event("f-8", "call.ended", "acme", "c-8", base.clone()),
    ])
    .await;
    let got = rx.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut calls: Vec<_> = rx.received().iter().map(|r| r.json()["call_id"].as_str().unwrap().to_string()).collect();
    calls.sort();
    assert_eq!(calls, vec!["c-0", "c-8"], "{got:?}");
}

/// `Event.occurred_at` is a string field; the README allows unix milliseconds, so a string of
/// digits is accepted on every gRPC path that takes an event: Publish, Preview and TestSend.
#[tokio::test]
async fn grpc_event_occurred_at_accepts_unix_milliseconds_as_a_string() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let mut w = webhook("acme", "at", &rx.url("/at"));
    w.trigger = Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() });
    w.request.as_mut().unwrap().body = Some(v1::TemplateBody {
        kind: Some(v1::template_body::Kind::Fields(v1::FieldsBody {
            format: "json".into(),
            example: r#"{"at": "%occurred_at%", "start": "%call_start_time%"}"#.into(),
            fields: vec![],
        })),
    });
    let (w, _) = create(&hm, w).await.unwrap();
    let event = |id: &str| v1::Event {
        id: id.into(),
        r#type: "call.ended".into(),
        occurred_at: "1795428000123".into(),
        tenant_id: "acme".into(),
        call_id: "c-ms".into(),
        data_json: r#"{"call_start_time": "1795427990000"}"#.into(),
    };
    let expected = json!({"at": "2026-11-23T10:00:00.123Z", "start": "2026-11-23T09:59:50.000Z"});

    let resp = hm
        .ingest()
        .await
        .publish(v1::PublishRequest {
            events: vec![v1::PublishItem { payload: Some(v1::publish_item::Payload::Event(event("ms-1"))) }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.accepted, 1, "{resp:?}");
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].json(), expected);

    let preview = hm
        .render()
        .await
        .preview(v1::PreviewRequest {
            target: Some(v1::preview_request::Target::WebhookId(w.id.clone())),
            event: Some(event("ms-2")),
        })
        .await
        .expect("preview accepts unix milliseconds")
        .into_inner();
    let body: serde_json::Value = serde_json::from_str(&preview.request.unwrap().body).unwrap();
    assert_eq!(body, expected);

    let sent = hm
        .deliveries()
        .await
        .test_send(v1::TestSendRequest { webhook_id: w.id.clone(), event: Some(event("ms-3")) })
        .await
        .expect("test-send accepts unix milliseconds")
        .into_inner();
    assert!(sent.success, "{sent:?}");
    assert_eq!(rx.wait_for(2, Duration::from_secs(10)).await[1].json(), expected);

    // Not digits and not RFC 3339: refused naming the field.
    let mut bad = event("ms-4");
    bad.occurred_at = "1795428000123ms".into();
    let resp = hm
        .ingest()
        .await
        .publish(v1::PublishRequest {
            events: vec![v1::PublishItem { payload: Some(v1::publish_item::Payload::Event(bad)) }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].field, "occurred_at", "{resp:?}");
}

/// The delivery log keeps the `webhook-signature` header as it was sent (a receiver debugging
/// a failed verification compares it), and a delivery that could not be rendered (here a URL
/// over 2048 characters) is an error of class `render`, like the classes of attempts, with
/// no attempt made.
#[tokio::test]
async fn delivery_log_keeps_the_sent_signature_and_classes_a_render_failure() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let mut w = webhook("acme", "signed", &rx.url("/signed"));
    w.trigger = Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() });
    let (_, secret) = create(&hm, w).await.unwrap();
    hm.publish(&[event("sig-1", "call.ended", "acme", "c-sig", json!({"ani": "5551234"}))]).await;
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    verify_signature(&secret, &got[0]).expect("signed");
    let sent = got[0].header("webhook-signature").expect("a signature was sent");
    let id = got[0].header("webhook-id").unwrap();
    let d = delivery_when(&hm, &id, |d| d.status == "success").await;
    let logged: Vec<_> = d.attempts[0]
        .request_headers
        .iter()
        .filter(|h| h.name == "webhook-signature")
        .map(|h| h.value.clone())
        .collect();
    assert_eq!(logged, [sent], "the log keeps the signature that was sent");
    let (_, shown, _) = hm.ctl(&["delivery", "get", &id, "-v"]);
    assert!(shown.contains(&format!("> webhook-signature: {}", logged[0])), "{shown}");

    // A rendered URL over 2048 characters: no attempt, an error of class `render`.
    let mut long = webhook("acme", "long", &rx.url("/long/{{ ani_full_name }}"));
    long.trigger = Some(v1::Trigger { event_types: vec!["call.missed".into()], ..Default::default() });
    create(&hm, long).await.unwrap();
    hm.publish(&[event("long-1", "call.missed", "acme", "c-long", json!({"ani_full_name": "x".repeat(3000)}))]).await;
    let deliveries = hm.deliveries().await;
    let mut failed = None;
    let logged = wait_until_async(
        Duration::from_secs(20),
        || {
            let mut client = deliveries.clone();
            async move {
                let req = v1::ListDeliveriesRequest { event_type: "call.missed".into(), ..Default::default() };
                client.list_deliveries(req).await.unwrap().into_inner().deliveries
            }
        },
        |list: &Vec<v1::Delivery>| {
            failed = list.iter().find(|d| d.status == "error").cloned();
            failed.is_some()
        },
    )
    .await;
    assert!(logged, "the render failure is logged as an error delivery");
    let failed = failed.expect("the render failure is logged as an error delivery");
    assert_eq!(failed.last_error_class, "render", "{failed:?}");
    assert_eq!(failed.attempts, 0, "{failed:?}");
    assert!(failed.last_error.contains("2048") && !failed.last_error.starts_with("render:"), "{failed:?}");
    let (_, shown, _) = hm.ctl(&["delivery", "get", &failed.id]);
    assert!(shown.lines().any(|l| l.starts_with("error class:") && l.ends_with("render")), "{shown}");
    assert_eq!(rx.count(), 1, "nothing was sent for the failed render");
}
