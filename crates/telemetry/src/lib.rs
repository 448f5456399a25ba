//! Logs, metrics and the admin HTTP port every service exposes:
//! `/healthz` (the process is alive), `/readyz` (connected and caught up on config) and
//! `/metrics` (Prometheus text; also pushed over OTLP when configured, see [`otlp_metrics`]).
//! Metric names are defined once here, labels are bounded (no URLs, no call ids).

pub mod metrics;
pub mod otel;
pub mod otlp_metrics;

pub use opentelemetry::trace::SpanKind;

pub use metrics::metrics;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Structured logs to stderr; `RUST_LOG` (or `HOOKMESH_LOG`) filters, default `info`.
/// `json = true` writes one JSON object per line. Lines written while a stage works on a
/// record carry its `trace_id` (see `hookmesh_bus::trace::log_span`).
pub fn init_logging(json: bool) {
    let filter =
        std::env::var("HOOKMESH_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".to_string());
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Readiness of one process: set once backends are connected and the registry is caught up,
/// cleared when shutdown starts. `/readyz` and the gRPC health service both answer from it;
/// [`Readiness::subscribe`] follows its changes (gRPC `Health/Watch`).
#[derive(Clone)]
pub struct Readiness(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.send_replace(ready);
    }

    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// A receiver that sees every later change (and the current value first).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Binds the admin port (port 0 picks a free one) and serves until `shutdown`.
pub async fn serve_admin(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(prometheus))
        .with_state(readiness);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok((local, handle))
}

async fn ready(State(r): State<Readiness>) -> impl IntoResponse {
    if r.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn prometheus() -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], metrics().encode())
}

/// The trace id of a `traceparent` value.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_, id) = (parts.next()?, parts.next()?);
    (id.len() == 32).then(|| id.to_string())
}
