//! Pushes the metrics registry over OTLP/HTTP (protobuf), beside the Prometheus `/metrics`
//! page, with the OpenTelemetry SDK.
//!
//! [`spawn`] builds an `SdkMeterProvider` whose `PeriodicReader` collects every interval and
//! hands the result to `opentelemetry-otlp`'s metric exporter; the registry's metrics become
//! the provider's instruments through [`crate::metrics::Metrics::export_to`] (which explains
//! what is sent and under which names). When the shutdown token is cancelled the provider is
//! shut down, which collects and exports one last time, so the final counts reach the
//! collector. A failed export is logged (`warn`, naming the endpoint) and the next interval
//! sends the current values again; the exports run on the SDK's own thread, so nothing here
//! can stop or slow a stage, and shutting down waits at most a few seconds for a collector.
//!
//! Series are cumulative: counters are monotonic `Sum`s, gauges `Gauge`s, histograms
//! `Histogram`s with the registry's bucket bounds; the resource is built as for traces
//! (`service.name` is `OTEL_SERVICE_NAME` or `hookmesh-<role>`, plus
//! `OTEL_RESOURCE_ATTRIBUTES`) and the scope is `hookmesh` with the crate version.
//!
//! # Environment
//!
//! The export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is set, unless `OTEL_METRICS_EXPORTER=none`. The SDK
//! reads the rest, as the OpenTelemetry specification defines them:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL; metrics go to `<endpoint>/v1/metrics`.
//! - `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: full URL, used as is (takes precedence).
//! - `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between exports, default 60000.
//! - `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`: per request, ms,
//!   default 10000.
//! - `OTEL_EXPORTER_OTLP_METRICS_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`: `k=v,k2=v2`,
//!   values percent-decoded.
//!
//! Only `http/protobuf` is spoken (as for traces), whatever `OTEL_EXPORTER_OTLP_PROTOCOL` says.

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What hookmesh decides about the export; every `None` (and the headers) is left to the
/// SDK's reading of the `OTEL_*` variables (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct OtlpMetricsConfig {
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The full URL to POST to (`…/v1/metrics`), overriding the environment.
    pub endpoint: Option<String>,
    /// Time between two exports, overriding `OTEL_METRIC_EXPORT_INTERVAL`.
    pub interval: Option<Duration>,
    /// Time allowed for one request, overriding the `OTEL_EXPORTER_OTLP_*TIMEOUT` variables.
    pub timeout: Option<Duration>,
    /// Extra request headers (authentication, tenant); a header of the same name in the
    /// `OTEL_EXPORTER_OTLP_*HEADERS` variables wins.
    pub headers: Vec<(String, String)>,
}

impl OtlpMetricsConfig {
    /// The configuration for `role` when the environment turns the export on, else `None`.
    pub fn from_env(role: &str) -> Option<Self> {
        endpoint_from(|k| std::env::var(k).ok())?;
        Some(OtlpMetricsConfig { service_name: crate::otel::service_name(role), ..Default::default() })
    }

    /// Where the exports go, for messages.
    fn endpoint(&self) -> String {
        self.endpoint.clone().or_else(|| endpoint_from(|k| std::env::var(k).ok())).unwrap_or_default()
    }
}

/// The endpoint the OTLP variables name, or `None` when they turn the export off.
fn endpoint_from(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let var = |k: &str| var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")) {
        return None;
    }
    var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .or_else(|| Some(format!("{}/v1/metrics", var("OTEL_EXPORTER_OTLP_ENDPOINT")?.trim_end_matches('/'))))
}

/// Starts the push when the environment configures an OTLP endpoint; the handle finishes
/// after the final export, once `shutdown` is cancelled.
pub fn start_from_env(role: &str, shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let config = OtlpMetricsConfig::from_env(role)?;
    tracing::info!("exporting metrics over OTLP to {}", config.endpoint());
    Some(spawn(config, shutdown))
}

/// Exports [`crate::metrics()`] every interval until `shutdown`, then once more. The export is
/// running when this returns (a histogram value observed from then on is in it); when the
/// exporter cannot be built, the reason is logged and the handle finishes at once.
pub fn spawn(config: OtlpMetricsConfig, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let endpoint = config.endpoint();
    let provider = match provider(&config, &endpoint) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(endpoint = %endpoint, "OTLP metrics export off: {e}");
            return tokio::spawn(async {});
        }
    };
    let scope = InstrumentationScope::builder("hookmesh").with_version(env!("CARGO_PKG_VERSION")).build();
    let exported = crate::metrics().export_to(&provider.meter_with_scope(scope));
    tokio::spawn(async move {
        shutdown.cancelled().await;
        // Shutting the provider down makes the final export; it blocks until that is done
        // (or the SDK gives up waiting).
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = stopped {
            tracing::warn!(endpoint = %endpoint, "OTLP metrics: final export incomplete: {e}");
        }
        drop(exported);
    })
}

fn provider(config: &OtlpMetricsConfig, endpoint: &str) -> anyhow::Result<SdkMeterProvider> {
    // reqwest (under the exporter) is built with rustls and no default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_headers(config.headers.iter().cloned().collect::<HashMap<_, _>>());
    if let Some(url) = &config.endpoint {
        builder = builder.with_endpoint(url);
    }
    if let Some(timeout) = config.timeout {
        builder = builder.with_timeout(timeout);
    }
    let exporter = Logged { inner: builder.build()?, endpoint: endpoint.to_string() };
    let mut reader = PeriodicReader::builder(exporter);
    if let Some(interval) = config.interval {
        reader = reader.with_interval(interval);
    }
    Ok(SdkMeterProvider::builder()
        .with_reader(reader.build())
        .with_resource(crate::otel::resource(&config.service_name))
        .build())
}

/// The OTLP exporter, logging what fails: the SDK reports failures only through its own
/// internal logs, which this build leaves off.
#[derive(Debug)]
struct Logged {
    inner: opentelemetry_otlp::MetricExporter,
    endpoint: String,
}

impl PushMetricExporter for Logged {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            tracing::warn!(endpoint = %self.endpoint, "OTLP metrics export failed: {e}");
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| vars.iter().find(|(key, _)| *key == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_environment_turns_the_export_on() {
        assert_eq!(endpoint_from(env(&[])), None);
        assert_eq!(endpoint_from(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])), None);
        assert_eq!(
            endpoint_from(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRICS_EXPORTER", "none")])),
            None
        );
        assert_eq!(
            endpoint_from(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])).as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            endpoint_from(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m.example/otlp/metrics"),
            ]))
            .as_deref(),
            Some("https://m.example/otlp/metrics")
        );
        assert_eq!(
            endpoint_from(env(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m.example/otlp/metrics")])).as_deref(),
            Some("https://m.example/otlp/metrics")
        );
    }
}
