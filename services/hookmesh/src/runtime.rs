//! Running roles: `hookmesh standalone` runs all four stages in one process; `hookmesh
//! ingest|router|renderer|dispatcher` runs one. Either way the process builds its backends
//! (Kafka and Redis; in standalone the durable embedded ones in its data directory, or the
//! in-memory ones with `--ephemeral`), creates missing topics, materialises the registry,
//! starts its stage loops (a standalone on an in-process bus routes and renders in one stage,
//! skipping the `hookmesh.jobs` hop: `hookmesh_renderer::run_routed`), mounts its gRPC services on one port (plus server reflection, both
//! `grpc.reflection.v1` and `grpc.reflection.v1alpha`, and the standard `grpc.health.v1.Health`),
//! and serves `/healthz`, `/readyz`, `/metrics` on the admin port. `/readyz` and gRPC health
//! answer from the same readiness: not ready until the backends are connected and the registry
//! is caught up, not ready again once shutdown starts.
//!
//! Shutdown on SIGINT/SIGTERM: readiness drops, the stage loops stop consuming, in-flight work
//! finishes (bounded), offsets are committed, the process exits.

use crate::config::Settings;
use crate::datadir::DataDir;
use crate::health::GrpcHealth;
use anyhow::{bail, Context};
use hookmesh_bus::kafka::{KafkaBus, KafkaConfig};
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, EmbeddedBus, MemoryBus};
use hookmesh_dispatcher::{Dispatcher, DispatcherConfig};
use hookmesh_ingest::Ingest;
use hookmesh_proto::v1;
use hookmesh_registry::ConfigView;
use hookmesh_renderer::Renderer;
use hookmesh_router::Router;
use hookmesh_store::{EmbeddedStore, MemoryStore, Retention, Store};
use hookmesh_telemetry::metrics::OutcomeLabel;
use hookmesh_telemetry::Readiness;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Router,
    Renderer,
    Dispatcher,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Router => "router",
            Role::Renderer => "renderer",
            Role::Dispatcher => "dispatcher",
        }
    }

    /// Default (gRPC, admin) ports, distinct so all roles can run on one machine.
    pub fn default_ports(self) -> (u16, u16) {
        match self {
            Role::Ingest => (7610, 7611),
            Role::Router => (7620, 7621),
            Role::Renderer => (7630, 7631),
            Role::Dispatcher => (7640, 7641),
        }
    }
}

/// How long shutdown waits for the gRPC server to finish its answers in flight.
const GRPC_DRAIN: Duration = Duration::from_secs(5);

/// One future for SIGINT and SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn build_bus(s: &Settings, data: Option<&DataDir>, standalone: bool, role: &str) -> anyhow::Result<Arc<dyn Bus>> {
    match &s.kafka {
        Some(brokers) => {
            let mut config = KafkaConfig::new(brokers.clone());
            config.client_id = format!("hookmesh-{role}");
            config.session_timeout_ms = s.kafka_session_timeout_ms;
            config.replication_factor = s.replication_factor;
            config.instance_id = s.instance_id.clone();
            config.assignment_strategy = s.kafka_assignment_strategy.clone();
            config.message_timeout_ms = s.kafka_message_timeout_ms;
            Ok(Arc::new(KafkaBus::connect(config).with_context(|| format!("kafka: cannot connect to `{brokers}`"))?))
        }
        None if standalone => match data {
            Some(d) => {
                let dir = d.bus();
                let opening = dir.clone();
                let bus = tokio::task::spawn_blocking(move || EmbeddedBus::open(opening)).await?;
                Ok(Arc::new(bus.map_err(|e| crate::datadir::open_error(&dir, e))?))
            }
            None => Ok(Arc::new(MemoryBus::new())),
        },
        None => bail!("kafka: `hookmesh {role}` needs Kafka (--kafka or HOOKMESH_KAFKA); use `hookmesh standalone` for one process"),
    }
}

async fn build_store(
    s: &Settings,
    data: Option<&DataDir>,
    standalone: bool,
    role: &str,
) -> anyhow::Result<Arc<dyn Store>> {
    let retention =
        Retention { max_age: Duration::from_secs(s.retention_days * 24 * 3600), per_webhook: s.retention_per_webhook };
    let store: Arc<dyn Store> = match &s.redis {
        Some(url) => Arc::new(
            hookmesh_store::RedisStore::connect(url, &s.redis_prefix, retention)
                .await
                .with_context(|| format!("redis: cannot connect to `{url}`"))?
                .with_retry_buckets(s.retry_buckets)
                .await
                .context("retry_buckets")?,
        ),
        None if standalone => match data {
            Some(d) => {
                let dir = d.store();
                let opening = dir.clone();
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(opening, retention)).await?;
                Arc::new(store.map_err(|e| crate::datadir::open_error(&dir, e))?)
            }
            None => Arc::new(MemoryStore::with_retention(retention)),
        },
        None => bail!("redis: `hookmesh {role}` needs Redis (--redis or HOOKMESH_REDIS)"),
    };
    let Some(dsn) = &s.postgres else { return Ok(store) };
    // The delivery log in PostgreSQL (migrated before this process reports ready), hot state
    // where it was.
    let log = hookmesh_store::PostgresLog::connect(dsn, retention).await.context("postgres: the delivery log")?;
    let log = Arc::new(log);
    log.observe_batches(Arc::new(|b| {
        let m = hookmesh_telemetry::metrics::metrics();
        m.log_write_batches.get_or_create(&OutcomeLabel { outcome: if b.committed { "ok" } else { "failed" } }).inc();
        if b.committed {
            m.log_writes.inc_by(b.writes as u64);
            m.log_statements.inc_by(b.statements);
        }
        m.log_write_batch_time.observe(b.took.as_secs_f64());
    }));
    log.spawn_maintenance(CancellationToken::new());
    tracing::info!("keeping the delivery log in PostgreSQL");
    Ok(Arc::new(hookmesh_store::Split { hot: store, log }))
}

/// Runs `roles` until a signal; `label` names the process in logs and errors.
pub async fn run(roles: &[Role], s: Settings, label: &str) -> anyhow::Result<()> {
    let standalone = roles.len() == 4;
    hookmesh_telemetry::init_logging(s.log_json);
    // Before any port is bound: a second process on the same directory is refused for that.
    // Held (locked) until the process ends.
    let data = match &s.data_dir {
        Some(dir) if standalone => {
            let d = DataDir::open(dir)?;
            tracing::info!(data_dir = %d.path().display(), "keeping state in the data directory (--ephemeral keeps it in memory)");
            Some(d)
        }
        _ => None,
    };
    let tracer_provider =
        hookmesh_telemetry::otel::init_from_env(label).context("OTEL_EXPORTER_OTLP_ENDPOINT: tracing setup")?;
    if tracer_provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    // The metrics push gets its own token, cancelled once the stages have drained, so its last
    // export carries their final counts.
    let metrics_flush = CancellationToken::new();
    let otlp_metrics = hookmesh_telemetry::otlp_metrics::start_from_env(label, metrics_flush.clone());
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let (admin_addr, admin) = hookmesh_telemetry::serve_admin(s.admin_addr, readiness.clone(), shutdown.clone())
        .await
        .with_context(|| format!("admin_addr: cannot bind {}", s.admin_addr))?;

    let bus = build_bus(&s, data.as_ref(), standalone, label).await?;
    let needs_store = roles.contains(&Role::Ingest) || roles.contains(&Role::Dispatcher);
    let store = if needs_store { Some(build_store(&s, data.as_ref(), standalone, label).await?) } else { None };
    let topics = Topics::new(&s.topic_prefix);
    for spec in topics.specs(s.partitions) {
        bus.ensure_topic(&spec).await.with_context(|| format!("creating topic `{}`", spec.name))?;
    }
    if s.cipher.is_none() {
        tracing::warn!("no master key (HOOKMESH_MASTER_KEY): signing secrets are stored in clear in the config topic");
    }
    let registry = ConfigView::start(bus.clone(), &topics.config, s.cipher.clone(), shutdown.clone())
        .await
        .context("reading the config registry")?;
    if roles.contains(&Role::Router) {
        registry.reencrypt_stale().await.context("re-encrypting secrets under the current master key")?;
    }

    // Reflection in both versions: grpcurl and recent clients ask v1, many others (Python's
    // grpcio-reflection among them) still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hookmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("gRPC reflection v1")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("gRPC reflection v1alpha")?;
    let mut grpc = tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::new(reflection_v1))
        .add_service(reflection_v1alpha);
    // The management services this process mounts, for the health service.
    let mut served: Vec<&'static str> = Vec::new();
    if !s.auth.is_enabled() {
        tracing::warn!(
            "no API tokens configured (HOOKMESH_TOKENS): the management API is open to anyone who reaches it"
        );
    }
    let intercept = s.auth.interceptor();
    let mut stages = tokio::task::JoinSet::new();
    let group = |r: Role| format!("{}-{}", s.topic_prefix, r.name());

    if roles.contains(&Role::Ingest) {
        let ingest = Ingest {
            bus: bus.clone(),
            store: store.clone().expect("ingest has a store"),
            topics: topics.clone(),
            dedup_ttl: hookmesh_ingest::DEFAULT_DEDUP_TTL,
        };
        stages.spawn(hookmesh_ingest::run(ingest.clone(), group(Role::Ingest), shutdown.clone()));
        served.push(v1::ingest_service_server::SERVICE_NAME);
        grpc = grpc.add_service(v1::ingest_service_server::IngestServiceServer::with_interceptor(
            hookmesh_ingest::service::IngestApi { ingest },
            intercept.clone(),
        ));
    }
    // One process on an in-process bus routes and renders in one stage (no `hookmesh.jobs`
    // hop; see `hookmesh_renderer::run_routed`).
    let fused = roles.contains(&Role::Router) && roles.contains(&Role::Renderer) && s.kafka.is_none();
    if roles.contains(&Role::Router) {
        let router = Router::new(bus.clone(), topics.clone(), registry.clone());
        if fused {
            let renderer = Renderer::new(bus.clone(), topics.clone(), registry.clone());
            stages.spawn(hookmesh_renderer::run_routed(router, renderer, group(Role::Router), shutdown.clone()));
        } else {
            stages.spawn(hookmesh_router::run(router, group(Role::Router), shutdown.clone()));
        }
        let kafka_destinations: Arc<Vec<(String, Vec<String>)>> =
            Arc::new(s.kafka_destinations.iter().map(|d| (d.name.clone(), d.tenants.clone())).collect());
        let api = || hookmesh_router::service::RegistryApi {
            registry: registry.clone(),
            kafka_destinations: kafka_destinations.clone(),
            topics: topics.clone(),
        };
        served.extend([
            v1::webhook_service_server::SERVICE_NAME,
            v1::template_service_server::SERVICE_NAME,
            v1::tenant_service_server::SERVICE_NAME,
        ]);
        grpc = grpc
            .add_service(v1::webhook_service_server::WebhookServiceServer::with_interceptor(api(), intercept.clone()))
            .add_service(v1::template_service_server::TemplateServiceServer::with_interceptor(api(), intercept.clone()))
            .add_service(v1::tenant_service_server::TenantServiceServer::with_interceptor(api(), intercept.clone()));
    }
    if roles.contains(&Role::Renderer) {
        let renderer = Renderer::new(bus.clone(), topics.clone(), registry.clone());
        stages.spawn(hookmesh_renderer::run(renderer, group(Role::Renderer), shutdown.clone()));
        served.push(v1::render_service_server::SERVICE_NAME);
        grpc = grpc.add_service(v1::render_service_server::RenderServiceServer::with_interceptor(
            hookmesh_renderer::service::RenderApi { registry: registry.clone() },
            intercept.clone(),
        ));
    }
    if roles.contains(&Role::Dispatcher) {
        let config = DispatcherConfig {
            max_in_flight: s.max_in_flight,
            address_policy: Arc::new(s.address_policy.clone()),
            endpoint_concurrency: s.endpoint_concurrency,
            breaker: s.breaker,
            cipher: s.cipher.clone(),
            retry_lease: s.retry_lease,
            attempt_history: s.kafka.is_some(),
            kafka_destinations: Arc::new(
                hookmesh_dispatcher::kafka::KafkaDestinations::new(&s.kafka_destinations, &[])
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            ),
            ..Default::default()
        };
        let dispatcher = Dispatcher::new(
            bus.clone(),
            store.clone().expect("dispatcher has a store"),
            topics.clone(),
            registry.clone(),
            config,
        );
        let api = Arc::new(dispatcher.clone());
        stages.spawn(hookmesh_dispatcher::run(dispatcher, group(Role::Dispatcher), shutdown.clone()));
        served.push(v1::delivery_service_server::SERVICE_NAME);
        grpc = grpc.add_service(v1::delivery_service_server::DeliveryServiceServer::with_interceptor(
            hookmesh_dispatcher::service::DeliveryApi { dispatcher: api },
            intercept.clone(),
        ));
    }

    let health = GrpcHealth::new(readiness.clone(), served.iter().map(|n| n.to_string()));
    let grpc = grpc.add_service(health.into_server());

    let listener = tokio::net::TcpListener::bind(s.grpc_addr)
        .await
        .with_context(|| format!("grpc_addr: cannot bind {}", s.grpc_addr))?;
    let grpc_addr = listener.local_addr()?;
    let grpc_shutdown = shutdown.clone();
    let mut server = tokio::spawn(
        grpc.serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async move {
            grpc_shutdown.cancelled().await
        }),
    );

    let console = match &s.console {
        Some(c) => crate::console::start_in_process(c, grpc_addr, shutdown.clone()).await?,
        None => None,
    };
    readiness.set_ready(true);
    let local = if data.is_some() { "embedded" } else { "memory" };
    let backends = match (&s.kafka, &s.redis) {
        (Some(_), Some(_)) => "kafka+redis".to_string(),
        (Some(_), None) => format!("kafka+{local}"),
        (None, Some(_)) => format!("{local}+redis"),
        (None, None) => local.to_string(),
    };
    tracing::info!(%grpc_addr, %admin_addr, backends, "hookmesh {label} ready");
    if let Some(a) = console {
        tracing::info!("web console at http://{a}");
    }
    // One machine-readable line on stdout, for scripts and tests that start on port 0; in
    // standalone it names where the state is kept (`data=memory` with --ephemeral).
    let data_field = match (&data, standalone) {
        (Some(d), _) => format!(" data={}", d.path().display()),
        (None, true) if s.kafka.is_none() || s.redis.is_none() => " data=memory".to_string(),
        _ => String::new(),
    };
    let console_field = console.map(|a| format!(" console=http://{a}")).unwrap_or_default();
    println!("hookmesh {label} listening grpc={grpc_addr} admin={admin_addr}{data_field}{console_field}");

    let mut server_stopped = false;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down: finishing in-flight work"),
        res = &mut server => {
            server_stopped = true;
            shutdown.cancel();
            res.context("gRPC server task")?.context("gRPC server")?;
        }
    }
    readiness.set_ready(false);
    shutdown.cancel();
    while let Some(res) = stages.join_next().await {
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "stage stopped with an error");
        }
    }
    let _ = admin.await;
    // The gRPC server stops gracefully: answers in flight (a health watcher's NOT_SERVING
    // among them) are written out before the process exits; a client that keeps a stream
    // open does not hold the exit for long.
    if !server_stopped && tokio::time::timeout(GRPC_DRAIN, &mut server).await.is_err() {
        tracing::info!("gRPC clients still connected after {GRPC_DRAIN:?}; closing");
    }
    metrics_flush.cancel();
    if let Some(h) = otlp_metrics {
        let _ = h.await;
    }
    if let Some(p) = tracer_provider {
        let _ = p.shutdown();
    }
    tracing::info!("stopped");
    Ok(())
}
