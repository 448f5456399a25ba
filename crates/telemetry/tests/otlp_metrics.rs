//! The OTLP metrics push against an in-process receiver on port 0: what arrives is decoded
//! with prost and checked as a collector would read it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hookmesh_telemetry::metrics;
use hookmesh_telemetry::metrics::{OutcomeLabel, PartitionLabels};
use hookmesh_telemetry::otlp_metrics::{spawn, OtlpMetricsConfig};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality, Metric};
use prost::Message;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

struct Received {
    headers: HeaderMap,
    request: ExportMetricsServiceRequest,
}

/// Records every decoded export; a body that does not decode fails the test.
async fn receiver() -> (SocketAddr, watch::Receiver<Vec<Received>>) {
    let (tx, rx) = watch::channel(Vec::new());
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            post(|State(tx): State<watch::Sender<Vec<Received>>>, headers: HeaderMap, body: Bytes| async move {
                let request =
                    ExportMetricsServiceRequest::decode(body).expect("body is an ExportMetricsServiceRequest");
                tx.send_modify(|all| all.push(Received { headers, request }));
                ExportMetricsServiceResponse::default().encode_to_vec()
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, rx)
}

fn config(addr: SocketAddr, interval: Duration) -> OtlpMetricsConfig {
    OtlpMetricsConfig {
        endpoint: Some(format!("http://{addr}/v1/metrics")),
        interval: Some(interval),
        timeout: Some(Duration::from_secs(5)),
        headers: vec![("x-scope-orgid".into(), "tenant-1".into())],
        service_name: "hookmesh-test".into(),
    }
}

/// The string attributes, by key: OTLP attributes are a set, whose order the SDK does not keep.
fn string_attrs(kvs: &[KeyValue]) -> Vec<(&str, &str)> {
    let mut attrs: Vec<_> = kvs
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.as_str(), s.as_str())),
            _ => None,
        })
        .collect();
    attrs.sort();
    attrs
}

fn metrics_of(r: &ExportMetricsServiceRequest) -> Vec<&Metric> {
    r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics).collect()
}

fn find<'a>(r: &'a ExportMetricsServiceRequest, name: &str) -> &'a metric::Data {
    let all = metrics_of(r);
    let names: Vec<_> = all.iter().map(|m| m.name.as_str()).collect();
    all.iter()
        .find(|m| m.name == name)
        .and_then(|m| m.data.as_ref())
        .unwrap_or_else(|| panic!("no {name} in {names:?}"))
}

fn int(v: Option<number_data_point::Value>) -> i64 {
    match v {
        Some(number_data_point::Value::AsInt(i)) => i,
        other => panic!("not an integer value: {other:?}"),
    }
}

#[tokio::test]
async fn pushes_the_registry_periodically() {
    // Counters and gauges are read from the registry when exported: what was recorded before
    // the export started is in it too.
    let m = metrics();
    m.events_ingested.get_or_create(&OutcomeLabel { outcome: "accepted" }).inc_by(3);
    m.in_flight.set(2);
    m.consumer_lag.get_or_create(&PartitionLabels { topic: "hookmesh.events".into(), partition: 4 }).set(7);

    let (addr, mut rx) = receiver().await;
    let shutdown = CancellationToken::new();
    let before_start = std::time::SystemTime::now();
    let handle = spawn(config(addr, Duration::from_millis(50)), shutdown.clone());
    // A histogram counts what is observed while the export runs.
    for v in [0.003, 0.2, 100.0] {
        m.delivery_latency.observe(v);
    }
    // Two exports before shutdown: the push repeats on its own.
    tokio::time::timeout(DEADLINE, rx.wait_for(|all| all.len() >= 2)).await.expect("two exports in time").unwrap();
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle).await.expect("exporter stops after shutdown").unwrap();

    let all = rx.borrow();
    let Received { headers, request } = all.last().unwrap();
    assert_eq!(headers.get("content-type").unwrap(), "application/x-protobuf");
    assert_eq!(headers.get("x-scope-orgid").unwrap(), "tenant-1");

    let resource = request.resource_metrics[0].resource.as_ref().expect("a resource");
    assert!(string_attrs(&resource.attributes).contains(&("service.name", "hookmesh-test")), "{resource:?}");

    let started = before_start.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let all = metrics_of(request);
    let events = all.iter().find(|m| m.name == "hookmesh_events_ingested").expect("hookmesh_events_ingested");
    assert_eq!(events.description, "Events received by ingest, by outcome");
    // A labelled family nobody has touched has no series, so it is not sent.
    assert!(!all.iter().any(|m| m.name == "hookmesh_operational_events"), "{all:?}");
    let metric::Data::Sum(sum) = find(request, "hookmesh_events_ingested") else { panic!("events: not a Sum") };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
    let accepted = sum
        .data_points
        .iter()
        .find(|p| string_attrs(&p.attributes) == [("outcome", "accepted")])
        .expect("an outcome=accepted point");
    assert!(int(accepted.value) >= 3, "{accepted:?}");
    // The cumulative series starts when the export started, before the point was taken.
    assert!(accepted.start_time_unix_nano >= started, "{accepted:?}");
    assert!(accepted.time_unix_nano >= accepted.start_time_unix_nano, "{accepted:?}");

    let metric::Data::Histogram(h) = find(request, "hookmesh_delivery_latency_seconds") else {
        panic!("latency: not a Histogram")
    };
    assert_eq!(h.aggregation_temporality, AggregationTemporality::Cumulative as i32);
    let p = &h.data_points[0];
    assert_eq!(
        p.explicit_bounds,
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
    );
    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{p:?}");
    assert_eq!(p.count, 3);
    // Per bucket, not cumulative: 0.003 in (0.0025, 0.005], 0.2 in (0.1, 0.25], 100 above 60.
    assert_eq!(p.bucket_counts, [0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert!((p.sum.unwrap() - 100.203).abs() < 1e-9, "{p:?}");

    let metric::Data::Gauge(g) = find(request, "hookmesh_requests_in_flight") else { panic!("in flight: not a Gauge") };
    assert_eq!(int(g.data_points[0].value), 2);
    let metric::Data::Gauge(lag) = find(request, "hookmesh_consumer_lag") else { panic!("lag: not a Gauge") };
    let point = lag
        .data_points
        .iter()
        .find(|p| string_attrs(&p.attributes) == [("partition", "4"), ("topic", "hookmesh.events")])
        .expect("a lag point per topic and partition");
    assert_eq!(int(point.value), 7);
}

#[tokio::test]
async fn shutdown_exports_once_more() {
    let (addr, rx) = receiver().await;
    let shutdown = CancellationToken::new();
    // No tick comes within the test: whatever arrives was sent because of the shutdown.
    let handle = spawn(config(addr, Duration::from_secs(3600)), shutdown.clone());
    metrics().retries_scheduled.inc_by(5);
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle).await.expect("exporter stops after shutdown").unwrap();

    let all = rx.borrow();
    assert_eq!(all.len(), 1, "exactly the final export");
    let metric::Data::Sum(sum) = find(&all[0].request, "hookmesh_retries_scheduled") else { panic!("not a Sum") };
    assert_eq!(int(sum.data_points[0].value), 5);
}

#[tokio::test]
async fn an_unreachable_collector_does_not_stop_shutdown() {
    // A port nobody listens on any more.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let handle = spawn(config(addr, Duration::from_millis(10)), shutdown.clone());
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle).await.expect("exporter stops after shutdown").expect("no panic");
}
