//! One trace per event: the trace id opened at ingest is the trace id of the router's,
//! renderer's and dispatcher's spans for the same event, down to the HTTP attempt, and the
//! receiver gets the attempt's span as its `traceparent`. The four stages run in-process on the
//! memory backends with an in-memory span exporter.

use axum::http::HeaderMap;
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, MemoryBus};
use hookmesh_dispatcher::ssrf::{AddressPolicy, Network};
use hookmesh_dispatcher::{Dispatcher, DispatcherConfig};
use hookmesh_ingest::Ingest;
use hookmesh_registry::ConfigView;
use hookmesh_renderer::Renderer;
use hookmesh_router::Router;
use hookmesh_store::{MemoryStore, Store};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_follows_an_event_from_ingest_to_the_receiver() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    hookmesh_telemetry::otel::install(provider.clone());

    // A receiver that keeps the traceparent it was sent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let sink = sink.clone();
        async move {
            sink.lock().push(headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string());
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let topics = Topics::new("hookmesh");
    for spec in topics.specs(2) {
        bus.ensure_topic(&spec).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let registry = ConfigView::start(bus.clone(), &topics.config, None, shutdown.clone()).await.unwrap();
    let webhook: hookmesh_core::webhook::Webhook = serde_json::from_value(serde_json::json!({
        "id": "wh-trace", "tenant_id": "acme", "name": "CRM", "version": 1,
        "request": {"url": format!("http://{addr}/crm")},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    registry.put_webhook(webhook, 0).await.unwrap();

    let ingest =
        Ingest { bus: bus.clone(), store: store.clone(), topics: topics.clone(), dedup_ttl: Duration::from_secs(60) };
    let policy = AddressPolicy { allow: vec![Network::parse("127.0.0.0/8").unwrap()], require_https: false };
    let config = DispatcherConfig { address_policy: Arc::new(policy), ..Default::default() };
    let dispatcher = Dispatcher::new(bus.clone(), store, topics.clone(), registry.clone(), config);
    let router = Router::new(bus.clone(), topics.clone(), registry.clone());
    let renderer = Renderer::new(bus.clone(), topics.clone(), registry.clone());
    tokio::spawn(hookmesh_router::run(router, "r".into(), shutdown.clone()));
    tokio::spawn(hookmesh_renderer::run(renderer, "n".into(), shutdown.clone()));
    tokio::spawn(hookmesh_dispatcher::run(dispatcher, "d".into(), shutdown.clone()));

    let event =
        br#"{"id":"e-1","type":"call.ended","occurred_at":"2026-11-23T10:00:00Z","tenant_id":"acme","call_id":"c-1"}"#;
    ingest.accept(event, "grpc").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the receiver got nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The attempt span ends right after the response; wait for it to be exported.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let spans = loop {
        let spans = exporter.get_finished_spans().unwrap();
        if spans.iter().any(|s| s.name == "webhook.attempt") || tokio::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let span =
        |name: &str| spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no `{name}` span in {spans:#?}"));
    let ingest_span = span("ingest.event");
    let trace_id = ingest_span.span_context.trace_id();
    for name in ["router.route", "renderer.render", "webhook.attempt"] {
        assert_eq!(span(name).span_context.trace_id(), trace_id, "{name} belongs to the event's trace");
    }
    // Each stage's span is the child of the one before it.
    assert_eq!(span("router.route").parent_span_id, ingest_span.span_context.span_id());
    assert_eq!(span("renderer.render").parent_span_id, span("router.route").span_context.span_id());
    let attempt = span("webhook.attempt");
    assert_eq!(attempt.parent_span_id, span("renderer.render").span_context.span_id());
    // The receiver continues the same trace, as a child of the attempt.
    let tp = seen.lock()[0].clone();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.get(1).copied(), Some(trace_id.to_string().as_str()), "{tp}");
    assert_eq!(parts.get(2).copied(), Some(attempt.span_context.span_id().to_string().as_str()), "{tp}");
    shutdown.cancel();
    let _ = provider.shutdown();
}

/// Log lines written while working on an event carry the event's trace id, in text and JSON
/// logs alike, so an SRE can go from a log line to the trace (and to the receiver's
/// `traceparent`).
#[tokio::test(flavor = "multi_thread")]
async fn log_lines_carry_the_events_trace_id() {
    use crate::support::*;
    use hookmesh_proto::v1;

    for json_logs in [false, true] {
        let hm = if json_logs { Hookmesh::start_with(&["--log-json", "true"]) } else { Hookmesh::start() };
        let rx = Recorder::start().await;
        rx.script(&[], 500);
        let mut w = webhook("acme", "Failing", &rx.url("/fail"));
        w.policy = Some(v1::DeliveryPolicy { retry_limit: Some(0), ..Default::default() });
        hm.webhooks()
            .await
            .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
            .await
            .unwrap();
        hm.publish(&[event("evt-log-1", "call.ended", "acme", "call-log-1", serde_json::json!({}))]).await;
        let got = rx.wait_for(1, Duration::from_secs(20)).await;
        let tp = got[0].header("traceparent").expect("the receiver gets a traceparent");
        let trace_id = tp.split('-').nth(1).unwrap().to_string();
        let logged = wait_until(Duration::from_secs(20), || hm.log_text().contains("delivery ended in error")).await;
        assert!(logged, "no failure logged: {}", hm.log_text());
        let log = hm.log_text();
        let line = log.lines().find(|l| l.contains("delivery ended in error")).unwrap();
        if json_logs {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(v["span"]["trace_id"], trace_id.as_str(), "{line}");
        } else {
            assert!(line.contains(&format!("trace_id={trace_id}")), "{line}");
        }
    }
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the `hookmesh` binary exports its spans and pushes
/// its metrics over OTLP/HTTP (beside `/metrics`): a stand-in collector decodes what it gets.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_exports_spans_and_metrics_over_otlp() {
    use crate::support::*;
    use hookmesh_proto::v1;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value as Num};
    use prost::Message;

    // (service.name, metric name, attributes, value) of every number point received.
    type Point = (String, String, Vec<(String, String)>, f64);
    let points: Arc<Mutex<Vec<Point>>> = Arc::default();
    let sink = points.clone();
    // (trace id, span name) of every span received.
    let spans: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let span_sink = spans.clone();
    // The tenant header of every metrics request received.
    let tenants: Arc<Mutex<Vec<String>>> = Arc::default();
    let tenant_sink = tenants.clone();
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                let tenant = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                tenant_sink.lock().push(tenant);
                async move {
                    let req = ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics request");
                    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                    {
                        Some(Any::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let mut got = sink.lock();
                    for rm in req.resource_metrics {
                        let service = rm
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(|kv| text(&kv.value))
                            .unwrap_or_default();
                        for m in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                            let dps = match m.data {
                                Some(Data::Sum(s)) => s.data_points,
                                Some(Data::Gauge(g)) => g.data_points,
                                _ => continue,
                            };
                            for dp in dps {
                                let attrs = dp.attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect();
                                let value = match dp.value {
                                    Some(Num::AsInt(i)) => i as f64,
                                    Some(Num::AsDouble(d)) => d,
                                    None => continue,
                                };
                                got.push((service.clone(), m.name.clone(), attrs, value));
                            }
                        }
                    }
                    axum::http::StatusCode::OK
                }
            }),
        )
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let spans = span_sink.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
                    let mut got = spans.lock();
                    for s in req.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans) {
                        let id: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                        got.push((id, s.name));
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let hm = Hookmesh::start_role_env(
        "standalone",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            // Percent-encoded, as the variable's format has it.
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "X-Scope-OrgID=tenant%201"),
        ],
    );
    let rx = Recorder::start().await;
    hm.webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest {
            webhook: Some(webhook("acme", "CRM", &rx.url("/crm"))),
            disabled: false,
        })
        .await
        .unwrap();
    hm.publish(&[event("evt-otlp-1", "call.ended", "acme", "call-otlp-1", serde_json::json!({}))]).await;
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    let trace_id = got[0].header("traceparent").unwrap().split('-').nth(1).unwrap().to_string();

    // Every stage's span of this event's trace reaches the collector.
    let stages = ["ingest.event", "router.route", "renderer.render", "webhook.attempt"];
    let exported = wait_until(Duration::from_secs(20), || {
        let spans = spans.lock();
        stages.iter().all(|stage| spans.iter().any(|(id, name)| *id == trace_id && name == stage))
    })
    .await;
    assert!(exported, "spans of trace {trace_id} missing; got {:?}", spans.lock());

    let has = |name: &str, attr: (&str, &str)| {
        points.lock().iter().any(|(service, n, attrs, v)| {
            service == "hookmesh-standalone"
                && n == name
                && attrs.iter().any(|(k, val)| k == attr.0 && val == attr.1)
                && *v >= 1.0
        })
    };
    let pushed = wait_until(Duration::from_secs(20), || {
        has("hookmesh_events_ingested", ("outcome", "accepted"))
            && has("hookmesh_delivery_attempts", ("outcome", "success"))
            && has("hookmesh_deliveries_completed", ("status", "success"))
    })
    .await;
    let names: std::collections::BTreeSet<String> = points.lock().iter().map(|p| p.1.clone()).collect();
    assert!(pushed, "the collector did not get the delivery's counters; it got {names:?}");
    let tenants = tenants.lock();
    assert!(tenants.iter().all(|t| t == "tenant 1"), "headers from OTEL_EXPORTER_OTLP_METRICS_HEADERS: {tenants:?}");
}
