//! Shared helpers: the hookmesh process, a recording HTTP receiver, gRPC clients, waiting on
//! conditions.

#![allow(dead_code, unused_imports)]

use hookmesh_proto::v1;
use hookmesh_testkit::hookmesh::{Launch, Process};
pub use hookmesh_testkit::receiver::{Hit, Received, Recorder, Reply};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_hookmesh");

/// A running `hookmesh standalone` (or another role); killed on drop. The process's
/// addresses, `data`, `console`, `pid()`, `kill_hard()`, `terminate()` and `log_text()` are
/// those of [`Process`].
pub struct Hookmesh {
    process: Process,
    /// A standalone started without `--data-dir`/`--ephemeral` gets a fresh data directory of
    /// its own (the durable default), removed with this.
    _data_dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Hookmesh {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Hookmesh {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Hookmesh {
    pub fn start() -> Hookmesh {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Hookmesh {
        Self::start_role("standalone", extra)
    }

    /// Starts `hookmesh <role>` (standalone, ingest, router, renderer, dispatcher) on free ports.
    pub fn start_role(role: &str, extra: &[&str]) -> Hookmesh {
        Self::start_role_env(role, extra, &[])
    }

    /// [`Hookmesh::start_role`] with extra environment variables.
    pub fn start_role_env(role: &str, extra: &[&str], env: &[(&str, &str)]) -> Hookmesh {
        let own_dir = (role == "standalone"
            && !extra.iter().any(|a| a.starts_with("--data-dir") || *a == "--ephemeral")
            && !env.iter().any(|(k, _)| *k == "HOOKMESH_DATA_DIR"))
        .then(|| tempfile::tempdir().expect("a temporary data directory"));
        let mut launch = Launch::new(BIN, role);
        for (k, v) in env {
            launch = launch.env(k, v);
        }
        // Test receivers listen on loopback, which the SSRF guard refuses by default.
        if !extra.contains(&"--no-default-allow") {
            launch = launch.allow_loopback();
        }
        launch = launch.args(extra.iter().filter(|a| **a != "--no-default-allow"));
        if let Some(d) = &own_dir {
            launch = launch.args(["--data-dir".to_string(), d.path().display().to_string()]);
        }
        let process = Process::start(launch.env("HOOKMESH_LOG", "info"));
        Hookmesh { process, _data_dir: own_dir }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.expect("gRPC connects")
    }

    pub async fn webhooks(&self) -> v1::webhook_service_client::WebhookServiceClient<Channel> {
        v1::webhook_service_client::WebhookServiceClient::new(self.channel().await)
    }

    pub async fn templates(&self) -> v1::template_service_client::TemplateServiceClient<Channel> {
        v1::template_service_client::TemplateServiceClient::new(self.channel().await)
    }

    pub async fn ingest(&self) -> v1::ingest_service_client::IngestServiceClient<Channel> {
        v1::ingest_service_client::IngestServiceClient::new(self.channel().await)
    }

    pub async fn deliveries(&self) -> v1::delivery_service_client::DeliveryServiceClient<Channel> {
        v1::delivery_service_client::DeliveryServiceClient::new(self.channel().await)
    }

    pub async fn render(&self) -> v1::render_service_client::RenderServiceClient<Channel> {
        v1::render_service_client::RenderServiceClient::new(self.channel().await)
    }

    /// Creates `w` (enabled); answers the stored webhook and its signing secret.
    pub async fn create_webhook(&self, w: v1::Webhook) -> (v1::Webhook, String) {
        let resp = self
            .webhooks()
            .await
            .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
            .await
            .expect("webhook created")
            .into_inner();
        (resp.webhook.expect("the created webhook"), resp.secret)
    }

    /// Runs `hookmesh ctl --addr <this> <args>`; answers (exit success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN).arg("ctl").arg("--addr").arg(self.url()).args(args).output().expect("ctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Publishes events given as JSON values; answers the response.
    pub async fn publish(&self, events: &[serde_json::Value]) -> v1::PublishResponse {
        let items = events
            .iter()
            .map(|e| v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(e.to_string())) })
            .collect();
        self.ingest().await.publish(v1::PublishRequest { events: items }).await.expect("publish").into_inner()
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; answers whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A valid event of the documented schema.
pub fn event(id: &str, event_type: &str, tenant: &str, call_id: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": event_type, "occurred_at": "2026-11-23T10:00:00Z",
        "tenant_id": tenant, "call_id": call_id, "data": data,
    })
}

/// Verifies a received request with the Standard Webhooks reference library.
pub fn verify_signature(secret: &str, r: &Received) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("{e:?}"))?;
    wh.verify(&r.body, &r.headers).map_err(|e| format!("{e:?}"))
}

/// Polls the delivery log until delivery `id` satisfies `cond`; panics with the last state.
pub async fn delivery_when(hm: &Hookmesh, id: &str, cond: impl Fn(&v1::Delivery) -> bool) -> v1::GetDeliveryResponse {
    let mut client = hm.deliveries().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = client.get_delivery(v1::GetDeliveryRequest { id: id.to_string() }).await.map(|r| r.into_inner());
        if let Ok(d) = &last {
            if d.delivery.as_ref().is_some_and(&cond) {
                return d.clone();
            }
        }
        assert!(Instant::now() < deadline, "delivery {id} never reached the expected state; last: {last:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls an async probe every 50 ms until `cond` holds on its value or `timeout` passes.
pub async fn wait_until_async<T, F, Fut>(timeout: Duration, mut probe: F, mut cond: impl FnMut(&T) -> bool) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe().await;
        if cond(&v) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tiny HTTP GET over a raw socket (keeps the test free of another HTTP client).
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = url::Url::parse(url).unwrap();
    let mut s = tokio::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap())).await.unwrap();
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", u.path()).as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A webhook definition with only what the API requires.
pub fn webhook(tenant: &str, name: &str, url: &str) -> v1::Webhook {
    v1::Webhook {
        tenant_id: tenant.into(),
        name: name.into(),
        request: Some(v1::Request { url: url.into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Two tests per behaviour, `<behaviour>::<first>` on the embedded or in-memory standalone and
/// `<behaviour>::kafka_redis` on tansu and redis-server; each behaviour is an
/// `async fn(Backend)` beside the call, and `Backend` the calling module's. (The console tests
/// include this file and use no such pairs.)
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($first:ident: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn $first() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn kafka_redis() {
                super::$name(super::Backend::KafkaRedis).await
            }
        }
    )*};
}

/// The deliveries of one webhook, newest first.
pub async fn deliveries_of(hm: &Hookmesh, webhook_id: &str) -> Vec<v1::Delivery> {
    hm.deliveries()
        .await
        .list_deliveries(v1::ListDeliveriesRequest { webhook_id: webhook_id.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Waits (up to `timeout`) until the newest delivery of `webhook_id` is `pending` with a next
/// attempt time: deferred without an attempt (waiting for a context value or data points).
/// Answers whether it came to that, and the deliveries as last listed.
pub async fn wait_for_deferred(hm: &Hookmesh, webhook_id: &str, timeout: Duration) -> (bool, Vec<v1::Delivery>) {
    let mut listed = Vec::new();
    let deferred = wait_until_async(
        timeout,
        || deliveries_of(hm, webhook_id),
        |l| {
            listed = l.clone();
            l.first().is_some_and(|d| d.status == "pending" && !d.next_attempt_at.is_empty())
        },
    )
    .await;
    (deferred, listed)
}
