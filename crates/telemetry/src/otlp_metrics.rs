//! Pushes the metrics registry over OTLP/HTTP, beside the Prometheus `/metrics` page.
//!
//! The registry in [`crate::metrics`] stays the only place a metric is defined: every
//! interval this module reads the registry's Prometheus text (what `/metrics` serves), turns
//! it into one OTLP `ExportMetricsServiceRequest` and POSTs it as `application/x-protobuf`.
//! One last export happens when the shutdown token is cancelled, so the final counts reach
//! the collector. A failed export is logged (`warn`, naming the endpoint) and the next interval
//! sends the current values again; nothing here can stop or slow a stage.
//!
//! # What is sent
//!
//! | Prometheus | OTLP |
//! |---|---|
//! | counter | cumulative, monotonic `Sum` |
//! | gauge | `Gauge` |
//! | histogram | cumulative `Histogram`, the same explicit bounds, per-bucket (not cumulative) counts |
//! | labels | string attributes |
//!
//! Names are the OpenMetrics family names: a counter is sent as `hookmesh_events_ingested`,
//! without the `_total` its `/metrics` sample carries (as the OpenTelemetry Prometheus
//! compatibility spec asks; a collector's Prometheus exporter appends `_total` again). Other
//! names are unchanged (`hookmesh_delivery_latency_seconds`) and no unit is set. Cumulative
//! series start when the registry was created ([`crate::metrics::Metrics::started`]). The
//! resource is built as for traces: `service.name` is `OTEL_SERVICE_NAME` or `hookmesh-<role>`,
//! plus `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! # Environment
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL; metrics go to `<endpoint>/v1/metrics`.
//! - `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: full URL, used as is (takes precedence).
//! - `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between exports, default 60000.
//! - `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` / `OTEL_EXPORTER_OTLP_TIMEOUT`: per request, ms,
//!   default 10000.
//! - `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_METRICS_HEADERS`: `k=v,k2=v2`, values
//!   percent-decoded; the metrics-specific one wins on the same key.
//! - `OTEL_METRICS_EXPORTER=none` turns the push off.
//!
//! Only `http/protobuf` is spoken (as for traces), whatever `OTEL_EXPORTER_OTLP_PROTOCOL` says.

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::Attributes;
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

const DEFAULT_INTERVAL: Duration = Duration::from_millis(60_000);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Where and how often to push; [`OtlpMetricsConfig::from_env`] reads the `OTEL_*` variables.
#[derive(Clone, Debug)]
pub struct OtlpMetricsConfig {
    /// The full URL to POST to (`…/v1/metrics`).
    pub url: String,
    /// Time between two exports.
    pub interval: Duration,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Extra request headers (authentication, tenant).
    pub headers: Vec<(String, String)>,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

impl OtlpMetricsConfig {
    /// The configuration the environment asks for, or `None` when no OTLP endpoint is set (or
    /// `OTEL_METRICS_EXPORTER=none`).
    pub fn from_env(role: &str) -> Option<Self> {
        Self::from_vars(role, |k| std::env::var(k).ok())
    }

    fn from_vars(role: &str, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |k: &str| var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if var("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
            return None;
        }
        let url = match var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            Some(url) => url,
            None => format!("{}/v1/metrics", var("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/')),
        };
        let millis = |key: &str, default: Duration| match var(key) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => {
                    tracing::warn!("{key}: `{v}` is not a positive number of milliseconds; using {default:?}");
                    Some(default)
                }
            },
        };
        let interval = millis("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_INTERVAL).unwrap_or(DEFAULT_INTERVAL);
        let timeout = millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", DEFAULT_TIMEOUT)
            .or_else(|| millis("OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_TIMEOUT))
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut headers = Vec::new();
        for key in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"] {
            for (k, v) in parse_headers(&var(key).unwrap_or_default()) {
                headers.retain(|(old, _): &(String, String)| !old.eq_ignore_ascii_case(&k));
                headers.push((k, v));
            }
        }
        let service_name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| format!("hookmesh-{role}"));
        Some(OtlpMetricsConfig { url, interval, timeout, headers, service_name })
    }
}

/// `k=v,k2=v2` with percent-encoded values, as `OTEL_EXPORTER_OTLP_HEADERS` has them; entries
/// without `=` are skipped.
fn parse_headers(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the push when the environment configures an OTLP endpoint; the handle finishes
/// after the final export, once `shutdown` is cancelled.
pub fn start_from_env(role: &str, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let config = OtlpMetricsConfig::from_env(role)?;
    tracing::info!("exporting metrics over OTLP to {}", config.url);
    Some(spawn(config, shutdown))
}

/// Exports [`crate::metrics()`] every `config.interval` until `shutdown`, then once more.
pub fn spawn(config: OtlpMetricsConfig, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(exporter) = Exporter::new(config) else { return };
        let period = exporter.config.interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => exporter.export().await,
            }
        }
        exporter.export().await;
    })
}

struct Exporter {
    config: OtlpMetricsConfig,
    client: reqwest::Client,
    resource: Resource,
}

impl Exporter {
    fn new(config: OtlpMetricsConfig) -> Option<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &config.headers {
            match (reqwest::header::HeaderName::try_from(k.as_str()), reqwest::header::HeaderValue::try_from(v)) {
                (Ok(k), Ok(v)) => {
                    headers.insert(k, v);
                }
                _ => {
                    tracing::warn!(endpoint = %config.url, "OTLP metrics: header `{k}` is not a valid HTTP header; not sent")
                }
            }
        }
        // reqwest's rustls needs a process-wide crypto provider (the dispatcher installs the same).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match reqwest::Client::builder().timeout(config.timeout).default_headers(headers).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(endpoint = %config.url, "OTLP metrics export off: no HTTP client: {}", chain(&e));
                return None;
            }
        };
        let sdk_resource =
            opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
        let attributes = sdk_resource.iter().map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()));
        let resource = Resource { attributes: Attributes::from(attributes).0, ..Default::default() };
        Some(Exporter { config, client, resource })
    }

    async fn export(&self) {
        let m = crate::metrics();
        let metrics = convert(&m.encode(), unix_nanos(m.started()), unix_nanos(SystemTime::now()));
        let body = request(self.resource.clone(), metrics).encode_to_vec();
        let url = &self.config.url;
        let sent = self.client.post(url).header("content-type", "application/x-protobuf").body(body).send().await;
        match sent {
            Err(e) => tracing::warn!(endpoint = %url, "OTLP metrics export failed: {}", chain(&e)),
            Ok(resp) if !resp.status().is_success() => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(200).collect();
                tracing::warn!(endpoint = %url, %status, "OTLP metrics export rejected: {text}");
            }
            Ok(resp) => {
                let partial = resp
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| ExportMetricsServiceResponse::decode(b).ok())
                    .and_then(|r| r.partial_success)
                    .filter(|p| p.rejected_data_points > 0);
                if let Some(p) = partial {
                    tracing::warn!(
                        endpoint = %url,
                        rejected = p.rejected_data_points,
                        "OTLP metrics export partly rejected: {}",
                        p.error_message
                    );
                }
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// One request carrying `metrics` under `resource` and the `hookmesh` scope.
pub fn request(resource: Resource, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "hookmesh".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Info, stateset, unknown: not sent (hookmesh defines none).
    Other,
}

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct HistogramSeries {
    /// `(le, cumulative count)` as the `_bucket` samples give them.
    buckets: Vec<(f64, u64)>,
    sum: Option<f64>,
    count: Option<u64>,
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
    numbers: Vec<NumberDataPoint>,
    histograms: Vec<(Labels, HistogramSeries)>,
}

/// Converts the Prometheus/OpenMetrics text [`crate::metrics::Metrics::encode`] writes into
/// OTLP metrics: `start` (ns since the epoch) starts every cumulative series, `now` stamps
/// every point. Families without a sample yet (a labelled family nobody touched) are left out.
pub fn convert(text: &str, start: u64, now: u64) -> Vec<Metric> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(meta) = line.strip_prefix('#') {
            let mut parts = meta.trim_start().splitn(3, ' ');
            let (Some(keyword), Some(name)) = (parts.next(), parts.next()) else { continue };
            let rest = parts.next().unwrap_or("").trim();
            if families.last().is_none_or(|f| f.name != name) {
                families.push(Family {
                    name: name.to_string(),
                    help: String::new(),
                    kind: Kind::Other,
                    numbers: Vec::new(),
                    histograms: Vec::new(),
                });
            }
            let family = families.last_mut().expect("just pushed");
            match keyword {
                "HELP" => family.help = unescape(rest),
                "TYPE" => {
                    family.kind = match rest {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        _ => Kind::Other,
                    }
                }
                _ => {}
            }
            continue;
        }
        let (Some(family), Some((sample, labels, value))) = (families.last_mut(), parse_sample(line)) else {
            continue;
        };
        let suffix = sample.strip_prefix(family.name.as_str());
        match (family.kind, suffix) {
            (Kind::Counter, Some("_total")) | (Kind::Gauge, Some("")) => {
                let value = match value.parse::<i64>() {
                    Ok(i) => number_data_point::Value::AsInt(i),
                    Err(_) => match parse_float(value) {
                        Some(f) => number_data_point::Value::AsDouble(f),
                        None => continue,
                    },
                };
                family.numbers.push(NumberDataPoint {
                    attributes: labels.iter().map(|(k, v)| string_attr(k, v)).collect(),
                    start_time_unix_nano: if family.kind == Kind::Counter { start } else { 0 },
                    time_unix_nano: now,
                    value: Some(value),
                    ..Default::default()
                });
            }
            (Kind::Histogram, Some(part @ ("_bucket" | "_sum" | "_count"))) => {
                let mut labels = labels;
                let le = labels.iter().position(|(k, _)| k == "le").map(|i| labels.remove(i).1);
                let series = match family.histograms.iter().position(|(l, _)| *l == labels) {
                    Some(i) => &mut family.histograms[i].1,
                    None => {
                        family.histograms.push((labels, HistogramSeries::default()));
                        &mut family.histograms.last_mut().expect("just pushed").1
                    }
                };
                let Some(v) = parse_float(value) else { continue };
                match (part, le.as_deref().and_then(parse_float)) {
                    ("_bucket", Some(le)) => series.buckets.push((le, v as u64)),
                    ("_sum", _) => series.sum = Some(v),
                    ("_count", _) => series.count = Some(v as u64),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    families.into_iter().filter_map(|f| to_metric(f, start, now)).collect()
}

fn to_metric(f: Family, start: u64, now: u64) -> Option<Metric> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match f.kind {
        Kind::Counter if !f.numbers.is_empty() => {
            metric::Data::Sum(Sum { data_points: f.numbers, aggregation_temporality: cumulative, is_monotonic: true })
        }
        Kind::Gauge if !f.numbers.is_empty() => metric::Data::Gauge(Gauge { data_points: f.numbers }),
        Kind::Histogram if !f.histograms.is_empty() => metric::Data::Histogram(Histogram {
            data_points: f.histograms.into_iter().map(|(labels, s)| histogram_point(&labels, s, start, now)).collect(),
            aggregation_temporality: cumulative,
        }),
        _ => return None,
    };
    Some(Metric { name: f.name, description: f.help, data: Some(data), ..Default::default() })
}

/// Prometheus buckets are cumulative (`le`), OTLP's count each bucket on its own, with one
/// more bucket than bounds for everything above the last bound.
fn histogram_point(labels: &Labels, mut s: HistogramSeries, start: u64, now: u64) -> HistogramDataPoint {
    s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let inf = s.buckets.iter().find(|(le, _)| *le == f64::INFINITY).map(|b| b.1);
    let count = s.count.or(inf).unwrap_or(0);
    let mut explicit_bounds = Vec::new();
    let mut bucket_counts = Vec::new();
    let mut below = 0;
    for (le, cumulative) in s.buckets.into_iter().filter(|(le, _)| le.is_finite()) {
        explicit_bounds.push(le);
        bucket_counts.push(cumulative.saturating_sub(below));
        below = below.max(cumulative);
    }
    bucket_counts.push(count.saturating_sub(below));
    HistogramDataPoint {
        attributes: labels.iter().map(|(k, v)| string_attr(k, v)).collect(),
        start_time_unix_nano: start,
        time_unix_nano: now,
        count,
        sum: s.sum,
        bucket_counts,
        explicit_bounds,
        ..Default::default()
    }
}

/// `name{k="v",…} value [timestamp] [# exemplar]` → `(name, labels, value)`.
fn parse_sample(line: &str) -> Option<(&str, Labels, &str)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    Some((name, labels, value))
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as PFamily;
    use prometheus_client::metrics::gauge::Gauge as PGauge;
    use prometheus_client::metrics::histogram::Histogram as PHistogram;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        outcome: &'static str,
        topic: String,
    }

    fn attrs(kvs: &[KeyValue]) -> Vec<(String, String)> {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("attribute {} is not a string: {other:?}", kv.key),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a metric::Data {
        let names: Vec<_> = metrics.iter().map(|m| m.name.as_str()).collect();
        metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.as_ref())
            .unwrap_or_else(|| panic!("no {name} in {names:?}"))
    }

    #[test]
    fn converts_a_small_registry() {
        let mut registry = Registry::with_prefix("t");
        let counter = PFamily::<L, Counter>::default();
        let untouched = PFamily::<L, Counter>::default();
        let gauge = PGauge::<i64>::default();
        let hist = PHistogram::new([0.1, 1.0]);
        registry.register("events", "Events, by \"outcome\"", counter.clone());
        registry.register("untouched", "Never incremented", untouched.clone());
        registry.register("in_flight", "In flight", gauge.clone());
        registry.register("latency_seconds", "Latency", hist.clone());
        counter.get_or_create(&L { outcome: "accepted", topic: "a\"b\\c".into() }).inc_by(3);
        counter.get_or_create(&L { outcome: "rejected", topic: "x".into() }).inc();
        gauge.set(-4);
        for v in [0.05, 0.5, 0.7, 9.0] {
            hist.observe(v);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        let metrics = convert(&text, 10, 20);
        assert!(!metrics.iter().any(|m| m.name == "t_untouched"), "{text}");
        assert_eq!(metrics.len(), 3, "{text}");

        let metric::Data::Sum(sum) = find(&metrics, "t_events") else { panic!("t_events is not a sum") };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        let mut points: Vec<_> = sum.data_points.iter().map(|p| (attrs(&p.attributes), p.value)).collect();
        points.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            points,
            vec![
                (
                    vec![("outcome".into(), "accepted".into()), ("topic".into(), "a\"b\\c".into())],
                    Some(number_data_point::Value::AsInt(3))
                ),
                (
                    vec![("outcome".into(), "rejected".into()), ("topic".into(), "x".into())],
                    Some(number_data_point::Value::AsInt(1))
                ),
            ]
        );
        assert!(sum.data_points.iter().all(|p| p.start_time_unix_nano == 10 && p.time_unix_nano == 20));
        let described = metrics.iter().find(|m| m.name == "t_events").unwrap();
        assert!(described.description.starts_with("Events, by \"outcome\""), "{}", described.description);

        let metric::Data::Gauge(g) = find(&metrics, "t_in_flight") else { panic!("t_in_flight is not a gauge") };
        assert_eq!(g.data_points.len(), 1);
        assert_eq!(g.data_points[0].value, Some(number_data_point::Value::AsInt(-4)));

        let metric::Data::Histogram(h) = find(&metrics, "t_latency_seconds") else { panic!("not a histogram") };
        assert_eq!(h.aggregation_temporality, AggregationTemporality::Cumulative as i32);
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.1, 1.0]);
        assert_eq!(p.bucket_counts, vec![1, 2, 1]);
        assert_eq!(p.count, 4);
        assert!((p.sum.unwrap() - 10.25).abs() < 1e-9);
        assert!(p.attributes.is_empty());
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (10, 20));
    }

    #[test]
    fn histogram_buckets_are_made_per_bucket_and_labels_kept() {
        let text = "# TYPE h histogram\n\
            h_bucket{le=\"1\",route=\"a\"} 2\n\
            h_bucket{le=\"+Inf\",route=\"a\"} 5\n\
            h_bucket{le=\"0.5\",route=\"a\"} 1\n\
            h_sum{route=\"a\"} 12.5\n\
            h_count{route=\"a\"} 5\n\
            # EOF\n";
        let metrics = convert(text, 1, 2);
        let metric::Data::Histogram(h) = find(&metrics, "h") else { panic!("not a histogram") };
        let p = &h.data_points[0];
        assert_eq!(attrs(&p.attributes), vec![("route".to_string(), "a".to_string())]);
        assert_eq!(p.explicit_bounds, vec![0.5, 1.0]);
        assert_eq!(p.bucket_counts, vec![1, 1, 3]);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
    }

    #[test]
    fn reads_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
        };
        assert!(OtlpMetricsConfig::from_vars("router", env(&[])).is_none());
        assert!(OtlpMetricsConfig::from_vars("router", env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).is_none());
        assert!(OtlpMetricsConfig::from_vars(
            "router",
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRICS_EXPORTER", "none")])
        )
        .is_none());

        let c =
            OtlpMetricsConfig::from_vars("router", env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).unwrap();
        assert_eq!(c.url, "http://c:4318/v1/metrics");
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.service_name, "hookmesh-router");
        assert!(c.headers.is_empty());

        let c = OtlpMetricsConfig::from_vars(
            "router",
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m.example/otlp/metrics"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20abc%3D, x-tenant = t1,broken"),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "X-Tenant=t2"),
                ("OTEL_SERVICE_NAME", "edge"),
            ]),
        )
        .unwrap();
        assert_eq!(c.url, "https://m.example/otlp/metrics");
        assert_eq!(c.interval, Duration::from_millis(1500));
        assert_eq!(c.timeout, Duration::from_millis(2000));
        assert_eq!(
            c.headers,
            vec![("Authorization".to_string(), "Basic abc=".to_string()), ("X-Tenant".to_string(), "t2".to_string())]
        );
        assert_eq!(c.service_name, "edge");

        let c = OtlpMetricsConfig::from_vars(
            "router",
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRIC_EXPORT_INTERVAL", "soon")]),
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(60));
    }
}
