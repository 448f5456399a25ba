//! OpenTelemetry traces: one trace per event, from ingest through router and renderer to the
//! dispatcher's HTTP attempt.
//!
//! Exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! `OTEL_*` variables apply; the service name is `hookmesh-<role>` unless `OTEL_SERVICE_NAME`
//! says otherwise). When it is not set nothing is recorded: [`stage_span`] costs one atomic
//! load and hands back a child `traceparent` made without the SDK.
//!
//! Context crosses processes in the `traceparent` record header: each stage opens a span whose
//! parent is the record's trace context, does its work inside it, and writes the span's own
//! context into the records it produces.

use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs an OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; answers the provider
/// to flush at shutdown.
pub fn init_from_env(role: &str) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    if std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").map_or(true, |v| v.trim().is_empty()) {
        return Ok(None);
    }
    // reqwest (under the exporter) is built with rustls and no default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(&service_name(role)))
        .build();
    install(provider.clone());
    Ok(Some(provider))
}

/// `OTEL_SERVICE_NAME`, or `hookmesh-<role>` when it is not set.
pub(crate) fn service_name(role: &str) -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| format!("hookmesh-{role}"))
}

/// The resource traces and metrics are sent under: `service.name`, plus what the SDK reads
/// from the environment (`OTEL_RESOURCE_ATTRIBUTES`).
pub(crate) fn resource(service_name: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build()
}

/// Makes `provider` the process's tracer provider and turns spans on (tests install an
/// in-memory exporter this way).
pub fn install(provider: opentelemetry_sdk::trace::SdkTracerProvider) {
    global::set_tracer_provider(provider);
    ENABLED.store(true, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

struct Carrier(HashMap<String, String>);

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// A stage's span; ends when dropped.
pub struct StageSpan {
    cx: Option<Context>,
    fallback: String,
}

impl StageSpan {
    /// The `traceparent` to write into records this work produces (and to send receivers).
    pub fn traceparent(&self) -> String {
        match &self.cx {
            Some(cx) => {
                let mut carrier = Carrier(HashMap::new());
                TraceContextPropagator::new().inject_context(cx, &mut carrier);
                carrier.0.remove("traceparent").unwrap_or_else(|| self.fallback.clone())
            }
            None => self.fallback.clone(),
        }
    }

    pub fn set_attribute(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value.into()));
        }
    }

    /// Marks the span failed with `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        if let Some(cx) = &self.cx {
            cx.span().set_status(Status::error(reason.into()));
        }
    }

    /// The trace id, for logs.
    pub fn trace_id(&self) -> Option<String> {
        crate::trace_id_of(&self.traceparent())
    }
}

impl Drop for StageSpan {
    fn drop(&mut self) {
        if let Some(cx) = &self.cx {
            cx.span().end();
        }
    }
}

/// Opens the span `name` as a child of `parent` (a `traceparent` header value); when tracing
/// is off it only derives a child `traceparent` with `fallback_child`.
pub fn stage_span(
    name: &'static str,
    kind: SpanKind,
    parent: Option<&[u8]>,
    fallback_child: impl FnOnce(Option<&[u8]>) -> String,
) -> StageSpan {
    let fallback = fallback_child(parent);
    if !enabled() {
        return StageSpan { cx: None, fallback };
    }
    let parent_cx = match parent.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(tp) => {
            let carrier = Carrier(HashMap::from([("traceparent".to_string(), tp.to_string())]));
            TraceContextPropagator::new().extract(&carrier)
        }
        None => Context::new(),
    };
    let tracer = global::tracer("hookmesh");
    let span = tracer.span_builder(name).with_kind(kind).start_with_context(&tracer, &parent_cx);
    StageSpan { cx: Some(parent_cx.with_span(span)), fallback }
}
