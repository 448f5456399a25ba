//! The standard gRPC health service (`grpc.health.v1.Health`), answered from the same
//! [`Readiness`] as the admin port's `/readyz`: every service this process mounts, and the
//! overall service `""`, is `NOT_SERVING` until the process is ready (backends connected,
//! registry caught up) and again once shutdown starts; `SERVING` in between. A service this
//! process does not mount is `NOT_FOUND` for `Check` and `SERVICE_UNKNOWN` for `Watch`, as the
//! protocol asks.
//!
//! Like server reflection, it needs no API token: Kubernetes' gRPC probes, Envoy and
//! `grpc_health_probe` send none.

use futures::stream::{self, BoxStream, StreamExt};
use hookmesh_telemetry::Readiness;
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The health service of one process: `services` are the fully qualified names it mounts.
#[derive(Clone)]
pub struct GrpcHealth {
    readiness: Readiness,
    services: Arc<BTreeSet<String>>,
}

impl GrpcHealth {
    pub fn new(readiness: Readiness, services: impl IntoIterator<Item = String>) -> Self {
        GrpcHealth { readiness, services: Arc::new(services.into_iter().collect()) }
    }

    pub fn into_server(self) -> HealthServer<GrpcHealth> {
        HealthServer::new(self)
    }

    fn known(&self, service: &str) -> bool {
        service.is_empty() || self.services.contains(service)
    }
}

/// Where one `Watch` call is: before its first message, whether it has reported SERVING, and
/// whether it has reported the NOT_SERVING of shutdown (its last message).
struct Watching {
    rx: tokio::sync::watch::Receiver<bool>,
    first: bool,
    served: bool,
    over: bool,
}

fn status_of(ready: bool) -> ServingStatus {
    if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status as i32 }
}

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        if !self.known(service) {
            return Err(Status::not_found(format!(
                "service: `{}` is not served here",
                hookmesh_core::error::escape_control(service)
            )));
        }
        Ok(Response::new(response(status_of(self.readiness.is_ready()))))
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        if !self.known(&request.get_ref().service) {
            // The call stays open: the set of services of a process never changes.
            let unknown = stream::once(async { Ok(response(ServingStatus::ServiceUnknown)) }).chain(stream::pending());
            return Ok(Response::new(unknown.boxed()));
        }
        // The current status first, then one message per change. Readiness drops after having
        // been up only when the process shuts down: that NOT_SERVING is the last message, and
        // the call ends, so the server's graceful shutdown is not held open by watchers.
        let start = Watching { rx: self.readiness.subscribe(), first: true, served: false, over: false };
        let changes = stream::unfold(start, |mut w| async move {
            if w.over || (!w.first && w.rx.changed().await.is_err()) {
                return None;
            }
            let ready = *w.rx.borrow_and_update();
            w.over = w.served && !ready;
            w.served |= ready;
            w.first = false;
            Some((Ok(response(status_of(ready))), w))
        });
        Ok(Response::new(changes.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn req(service: &str) -> Request<HealthCheckRequest> {
        Request::new(HealthCheckRequest { service: service.to_string() })
    }

    #[tokio::test]
    async fn not_serving_until_ready_and_again_after() {
        let readiness = Readiness::default();
        let health = GrpcHealth::new(readiness.clone(), ["hookmesh.v1.RenderService".to_string()]);
        let status = |r: Response<HealthCheckResponse>| r.into_inner().status();
        for service in ["", "hookmesh.v1.RenderService"] {
            assert_eq!(status(health.check(req(service)).await.unwrap()), ServingStatus::NotServing, "{service:?}");
        }
        let mut watch = health.watch(req("")).await.unwrap().into_inner();
        assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
        readiness.set_ready(true);
        assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
        assert_eq!(status(health.check(req("hookmesh.v1.RenderService")).await.unwrap()), ServingStatus::Serving);
        readiness.set_ready(false);
        assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
        assert!(watch.next().await.is_none(), "the watch ends once the process stops serving");

        let err = health.check(req("hookmesh.v1.DeliveryService")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert_eq!(err.message(), "service: `hookmesh.v1.DeliveryService` is not served here");
        let mut unknown = health.watch(req("x\r\ny")).await.unwrap().into_inner();
        assert_eq!(unknown.next().await.unwrap().unwrap().status(), ServingStatus::ServiceUnknown);
    }
}
