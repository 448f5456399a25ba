//! Shared helpers: the hookmesh process, a recording HTTP receiver, gRPC clients, waiting on
//! conditions.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hookmesh_proto::v1;
use parking_lot::Mutex;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_hookmesh");

/// A running `hookmesh standalone`; killed on drop.
pub struct Hookmesh {
    child: Child,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The `data=` of the listening line: the data directory, or `memory`.
    pub data: Option<String>,
    /// The `console=` of the listening line: the web console's URL, when it serves one.
    pub console: Option<String>,
    /// A standalone started without `--data-dir`/`--ephemeral` gets a fresh data directory of
    /// its own (the durable default), removed with this.
    _data_dir: Option<tempfile::TempDir>,
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
        let data_args: Vec<String> = match &own_dir {
            Some(d) => vec!["--data-dir".into(), d.path().display().to_string()],
            None => Vec::new(),
        };
        let mut child = Command::new(BIN)
            // Never the developer's own data directory.
            .env_remove("HOOKMESH_DATA_DIR")
            .envs(env.iter().copied())
            .args([role, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            // Test receivers listen on loopback, which the SSRF guard refuses by default.
            .args(if extra.contains(&"--no-default-allow") { vec![] } else { vec!["--allow-networks", "127.0.0.0/8"] })
            .args(extra.iter().filter(|a| **a != "--no-default-allow"))
            .args(&data_args)
            .env("HOOKMESH_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hookmesh starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("hookmesh prints its addresses");
        assert!(line.contains("listening"), "unexpected first line: {line:?}; log: {:?}", log.lock());
        let field = |name: &str| -> SocketAddr {
            let v = line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).expect("address");
            v.parse().expect("socket address")
        };
        let (grpc, admin) = (field("grpc"), field("admin"));
        let data = line.split_whitespace().find_map(|w| w.strip_prefix("data=")).map(str::to_string);
        let console = line.split_whitespace().find_map(|w| w.strip_prefix("console=")).map(str::to_string);
        std::thread::spawn(move || for _ in stdout.lines() {});
        Hookmesh { child, grpc, admin, log, data, console, _data_dir: own_dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
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

    pub fn log_text(&self) -> String {
        self.log.lock().join("\n")
    }
}

impl Hookmesh {
    /// Kills the process with SIGKILL: no graceful shutdown, no final commit.
    pub fn kill_hard(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Hookmesh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn query(&self) -> Vec<(String, String)> {
        let url = url::Url::parse(&format!("http://x{}", self.uri)).unwrap();
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }
}

#[derive(Default)]
struct ReceiverState {
    /// Delay before answering.
    delay: Duration,
    received: Vec<Received>,
    /// Statuses to answer, in order; after the list, `fallback`.
    script: Vec<u16>,
    fallback: u16,
    body: String,
}

/// A loopback HTTP receiver that records every request and answers scripted statuses.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

async fn record(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (status, reply, delay) = {
        let mut s = state.lock();
        s.received.push(Received {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
            body,
            at: Instant::now(),
        });
        let status = if s.script.is_empty() { s.fallback } else { s.script.remove(0) };
        (status, s.body.clone(), s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (StatusCode::from_u16(status).unwrap(), reply)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState { fallback: 200, body: "ok".into(), ..Default::default() }));
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answer these statuses first, then `fallback`.
    pub fn script(&self, statuses: &[u16], fallback: u16) {
        let mut s = self.state.lock();
        s.script = statuses.to_vec();
        s.fallback = fallback;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().delay = delay;
    }

    pub fn respond_with_body(&self, body: &str) {
        self.state.lock().body = body.to_string();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().received.len()
    }

    /// Waits until at least `n` requests arrived; panics with what arrived after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let got = wait_until(timeout, || self.count() >= n).await;
        assert!(got, "receiver got {} requests, expected {n}: {:#?}", self.count(), self.received());
        self.received()
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
