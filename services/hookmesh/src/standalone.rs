//! `hookmesh standalone`: ingest, router, renderer and dispatcher in one process on the
//! in-memory bus and store, every gRPC service (with server reflection) on one port, and the
//! admin port with `/healthz`, `/readyz`, `/metrics`. Shuts down gracefully on SIGINT/SIGTERM:
//! stops consuming, lets in-flight work finish, then exits.

use anyhow::Context;
use hookmesh_bus::registry::ConfigView;
use hookmesh_bus::topics::Topics;
use hookmesh_bus::{Bus, MemoryBus};
use hookmesh_dispatcher::{Dispatcher, DispatcherConfig};
use hookmesh_ingest::Ingest;
use hookmesh_proto::v1;
use hookmesh_renderer::Renderer;
use hookmesh_router::Router;
use hookmesh_store::{MemoryStore, Store};
use hookmesh_telemetry::Readiness;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct StandaloneArgs {
    /// Address of the gRPC management and ingest API (port 0 picks a free port).
    #[arg(long, env = "HOOKMESH_GRPC_ADDR", default_value = "127.0.0.1:7600")]
    pub grpc_addr: SocketAddr,
    /// Address of the admin HTTP port (/healthz, /readyz, /metrics).
    #[arg(long, env = "HOOKMESH_ADMIN_ADDR", default_value = "127.0.0.1:7601")]
    pub admin_addr: SocketAddr,
    /// Partitions per topic of the in-memory bus.
    #[arg(long, env = "HOOKMESH_PARTITIONS", default_value_t = 4)]
    pub partitions: u32,
    /// Prefix of hookmesh's topic names.
    #[arg(long, env = "HOOKMESH_TOPIC_PREFIX", default_value = "hookmesh")]
    pub topic_prefix: String,
    /// HTTP requests in flight at once.
    #[arg(long, env = "HOOKMESH_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Log as JSON lines.
    #[arg(long, env = "HOOKMESH_LOG_JSON")]
    pub log_json: bool,
}

/// One future for SIGINT and SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    hookmesh_telemetry::init_logging(args.log_json);
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let (admin_addr, admin) = hookmesh_telemetry::serve_admin(args.admin_addr, readiness.clone(), shutdown.clone())
        .await
        .with_context(|| format!("cannot bind the admin port {}", args.admin_addr))?;

    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let topics = Topics::new(&args.topic_prefix);
    for spec in topics.specs(args.partitions) {
        bus.ensure_topic(&spec).await?;
    }
    let registry = ConfigView::start(bus.clone(), &topics.config, shutdown.clone()).await?;

    let ingest = Ingest { bus: bus.clone(), store: store.clone(), topics: topics.clone(), dedup_ttl: hookmesh_ingest::DEFAULT_DEDUP_TTL };
    let router = Router { bus: bus.clone(), topics: topics.clone(), registry: registry.clone() };
    let renderer = Renderer::new(bus.clone(), topics.clone(), registry.clone());
    let config = DispatcherConfig { max_in_flight: args.max_in_flight, ..Default::default() };
    let dispatcher = Dispatcher::new(bus.clone(), store.clone(), topics.clone(), registry.clone(), config);

    let mut stages = tokio::task::JoinSet::new();
    stages.spawn(hookmesh_ingest::run(ingest.clone(), "hookmesh-ingest", shutdown.clone()));
    stages.spawn(hookmesh_router::run(router, "hookmesh-router", shutdown.clone()));
    stages.spawn(hookmesh_renderer::run(renderer, "hookmesh-renderer", shutdown.clone()));
    let dispatcher_api = Arc::new(dispatcher.clone());
    stages.spawn(hookmesh_dispatcher::run(dispatcher, "hookmesh-dispatcher", shutdown.clone()));

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hookmesh_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("cannot bind the gRPC port {}", args.grpc_addr))?;
    let grpc_addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .add_service(reflection)
        .add_service(v1::ingest_service_server::IngestServiceServer::new(hookmesh_ingest::service::IngestApi { ingest }))
        .add_service(v1::webhook_service_server::WebhookServiceServer::new(hookmesh_router::registry::RegistryApi {
            registry: registry.clone(),
        }))
        .add_service(v1::template_service_server::TemplateServiceServer::new(hookmesh_router::registry::RegistryApi {
            registry: registry.clone(),
        }))
        .add_service(v1::render_service_server::RenderServiceServer::new(hookmesh_renderer::service::RenderApi {
            registry: registry.clone(),
        }))
        .add_service(v1::delivery_service_server::DeliveryServiceServer::new(hookmesh_dispatcher::service::DeliveryApi {
            dispatcher: dispatcher_api,
        }));
    let grpc_shutdown = shutdown.clone();
    let grpc = tokio::spawn(server.serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async move { grpc_shutdown.cancelled().await },
    ));

    readiness.set_ready(true);
    tracing::info!(%grpc_addr, %admin_addr, "hookmesh standalone ready");
    // One machine-readable line on stdout, for scripts and tests that start on port 0.
    println!("hookmesh standalone listening grpc={grpc_addr} admin={admin_addr}");

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down: finishing in-flight work"),
        res = grpc => {
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
    tracing::info!("stopped");
    Ok(())
}
