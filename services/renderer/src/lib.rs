//! Renderer: turns each delivery job into the exact HTTP request its webhook describes.
//!
//! Consumes `hookmesh.jobs`, renders URL, query, headers and body with the webhook (and its
//! registry template) as the view holds them now, and produces a [`RenderedRequest`] to
//! `hookmesh.requests` with the same key. Compiled webhooks are cached per (webhook version,
//! template version). A render failure becomes a request carrying `render_error`, so the
//! dispatcher logs the delivery as an error: a failure is recorded, never lost, never a panic.
//! Jobs of a webhook deleted since routing are dropped with a log line (nobody wants them).
//!
//! Post-call enrichment (`hookmesh_core::enrich`): a job whose event lacks data points its
//! webhook waits for is passed on unrendered, holding the event, and the dispatcher renders it
//! with [`render_job`] when it fires; a data-point job is passed on as its data points.

pub mod service;

use bytes::Bytes;
use hookmesh_bus::stage::{run_stage, unreadable, LoopOptions};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::trace::{self, TRACEPARENT};
use hookmesh_bus::{Bus, BusError, Message, Record};
use hookmesh_core::delivery::{DeliveryJob, RenderedRequest};
use hookmesh_core::privacy::personal_values;
use hookmesh_core::render::{data_point_request, failed_request, held_request, CompiledWebhook};
use hookmesh_core::webhook::Webhook;
use hookmesh_registry::ConfigView;
use hookmesh_telemetry::{metrics, otel, SpanKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A compiled webhook with the (webhook version, template version) it was compiled for.
type CacheEntry = (u64, u64, Arc<CompiledWebhook>);

/// Compiled webhooks keyed by id, valid for one (webhook version, template version).
#[derive(Default)]
pub struct CompileCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl CompileCache {
    /// The compiled form of `webhook` under `registry`, or why it does not compile.
    pub fn get(&self, registry: &ConfigView, webhook: Arc<Webhook>) -> Result<Arc<CompiledWebhook>, String> {
        let template = match &webhook.request.template_id {
            Some(tid) => Some(registry.template(tid).ok_or_else(|| format!("template `{tid}` no longer exists"))?),
            None => None,
        };
        let tv = template.as_ref().map_or(0, |t| t.version);
        if let Some((wv, cached_tv, c)) = self.entries.lock().get(&webhook.id) {
            if *wv == webhook.version && *cached_tv == tv {
                return Ok(c.clone());
            }
        }
        let id = webhook.id.clone();
        let version = webhook.version;
        let compiled = Arc::new(CompiledWebhook::compile(webhook, template.as_deref()).map_err(|e| e.to_string())?);
        self.entries.lock().insert(id, (version, tv, compiled.clone()));
        Ok(compiled)
    }
}

/// Renders `job` with `webhook` as the registry holds it now (its template too); a failure is a
/// request carrying the reason. The dispatcher renders held deliveries with this when they fire.
pub fn render_job(
    registry: &ConfigView,
    cache: &CompileCache,
    webhook: &Arc<Webhook>,
    job: &DeliveryJob,
) -> RenderedRequest {
    match cache.get(registry, webhook.clone()) {
        Ok(compiled) => compiled.render(job).unwrap_or_else(|e| compiled.failed_request(job, e.to_string())),
        Err(reason) => failed_request(webhook, job, reason),
    }
}

/// `request` with the event's personal values listed when its tenant masks them: the
/// dispatcher masks these in everything it stores (see `hookmesh_core::privacy`).
pub fn with_personal(
    registry: &ConfigView,
    mut request: RenderedRequest,
    event: &hookmesh_core::event::Event,
) -> RenderedRequest {
    if let Some(settings) = registry.snapshot().tenants.get(&event.tenant_id) {
        request.personal = personal_values(event, settings);
    }
    request
}

/// How long a job waits for this process's registry view to catch up with the router's.
pub const REGISTRY_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Renderer {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub registry: Arc<ConfigView>,
    pub cache: Arc<CompileCache>,
}

impl Renderer {
    pub fn new(bus: Arc<dyn Bus>, topics: Topics, registry: Arc<ConfigView>) -> Self {
        Renderer { bus, topics, registry, cache: Arc::new(CompileCache::default()) }
    }

    /// Renders one job; `None` when its webhook no longer exists.
    pub async fn render(&self, job: &DeliveryJob) -> Option<RenderedRequest> {
        let webhook = self.registry.webhook_at_least(&job.webhook_id, job.webhook_version, REGISTRY_WAIT).await?;
        if job.data_points {
            return Some(data_point_request(&webhook, job));
        }
        let request =
            held_request(&webhook, job).unwrap_or_else(|| render_job(&self.registry, &self.cache, &webhook, job));
        let request = with_personal(&self.registry, request, &job.event);
        if let Some(e) = &request.render_error {
            metrics().render_errors.inc();
            tracing::warn!(delivery = %job.delivery_id, webhook = %job.webhook_id, error = %e, "render failed");
        }
        Some(request)
    }

    async fn handle(&self, msg: &Message) -> Result<(), BusError> {
        let Some(payload) = &msg.payload else { return Ok(()) };
        let job: DeliveryJob = match serde_json::from_slice(payload) {
            Ok(j) => j,
            Err(e) => {
                self.bus.publish(&self.topics.dlq, unreadable(msg, "job", e)).await?;
                return Ok(());
            }
        };
        if let Some(record) = self.request_record(&job, msg.header(TRACEPARENT)).await {
            self.bus.publish(&self.topics.requests, record).await?;
        }
        Ok(())
    }

    /// The `hookmesh.requests` record of a job, in a `renderer.render` span under `parent` (the
    /// job's trace context); `None` when its webhook no longer exists.
    pub async fn request_record(&self, job: &DeliveryJob, parent: Option<&[u8]>) -> Option<Record> {
        let Some(mut request) = self.render(job).await else {
            tracing::info!(delivery = %job.delivery_id, webhook = %job.webhook_id, "webhook deleted since routing; job dropped");
            return None;
        };
        let span = otel::stage_span("renderer.render", SpanKind::Consumer, parent, trace::child_of);
        span.set_attribute("webhook.id", request.webhook_id.clone());
        if let Some(e) = &request.render_error {
            span.fail(e.clone());
        }
        let traceparent = span.traceparent();
        request.traceparent = Some(traceparent.clone());
        let bytes = serde_json::to_vec(&request).expect("requests serialise");
        Some(Record::new(request.key(), Bytes::from(bytes)).with_header(TRACEPARENT, traceparent.into_bytes()))
    }
}

/// Consumes `hookmesh.jobs` until `shutdown`.
pub async fn run(renderer: Renderer, group: String, shutdown: CancellationToken) -> Result<(), BusError> {
    let (bus, topic) = (renderer.bus.clone(), renderer.topics.jobs.clone());
    run_stage(
        "renderer",
        "renderer: producing the request",
        Arc::new(renderer),
        bus,
        &topic,
        &group,
        LoopOptions::default(),
        shutdown,
        |renderer, msg, _order| async move { renderer.handle(&msg).await },
    )
    .await
}

/// Standalone's route-and-render stage: consumes `hookmesh.events` as the router does (under
/// the router's consumer group, so it resumes where a router left off), routes each event and
/// renders its jobs at once, and publishes the requests to `hookmesh.requests` in one batch
/// before the event's offset is committed.
///
/// Why: on one machine the `hookmesh.jobs` hop buys nothing (the router and the renderer
/// scale together, in one process) and costs, on the durable embedded bus, a journalled
/// append, a read and a reclaim per job. Crash semantics are the two stages': nothing is
/// committed before the requests are acknowledged, so a crash re-routes and re-renders (the
/// delivery ids are stable), never drops. The spans (`router.route`, `renderer.render`) and
/// metrics are the same. Distributed deployments keep the two stages; a standalone still runs
/// the renderer over `hookmesh.jobs` too, for jobs an earlier version left there.
pub async fn run_routed(
    router: hookmesh_router::Router,
    renderer: Renderer,
    group: String,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let (bus, topic) = (renderer.bus.clone(), renderer.topics.events.clone());
    run_stage(
        "router",
        "router: routing and rendering",
        Arc::new((router, renderer)),
        bus,
        &topic,
        &group,
        LoopOptions::default(),
        shutdown,
        |stages, msg, _order| async move {
            let (router, renderer) = &*stages;
            route_and_render(router, renderer, &msg).await
        },
    )
    .await
}

async fn route_and_render(
    router: &hookmesh_router::Router,
    renderer: &Renderer,
    msg: &Message,
) -> Result<usize, BusError> {
    let Some((jobs, span)) = router.route_message(msg).await? else { return Ok(0) };
    if jobs.is_empty() {
        return Ok(0);
    }
    let routed = span.traceparent();
    let mut records = Vec::with_capacity(jobs.len());
    for job in &jobs {
        records.extend(renderer.request_record(job, Some(routed.as_bytes())).await);
    }
    metrics().jobs_routed.inc_by(jobs.len() as u64);
    let n = records.len();
    if n > 0 {
        renderer.bus.publish_batch(&renderer.topics.requests, records).await?;
    }
    Ok(n)
}
