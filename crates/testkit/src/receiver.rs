//! The one loopback HTTP receiver of the end-to-end tests, the bench and `hookmesh receive`.
//!
//! - [`Receiver`]: an axum server that hands every request ([`Request`]: method, URI,
//!   headers, body, arrival time) to a hook and answers the [`Reply`] the hook returns
//!   (status, headers, body, a delay before answering). It keeps nothing itself, so a hook
//!   can record as little as the bench needs at high rates (the arrival and the event id).
//!   [`serve`] is the same on a listener of the caller's, until a shutdown future resolves.
//! - [`Recorder`]: a [`Receiver`] whose hook records every request ([`Received`]) with the
//!   status it was answered with ([`Hit`]), and answers scripted statuses, a delay and a body,
//!   or whatever a responder computes from the request and the history.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request, as the hook of a [`Receiver`] gets it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request arrived (its body read).
    pub at: Instant,
}

/// What a receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Slept before answering.
    pub delay: Duration,
    /// The body; `None` is empty (a [`Recorder`] answers its own body then).
    pub body: Option<Bytes>,
}

impl Reply {
    /// `status`, no headers, no delay, no body.
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), delay: Duration::ZERO, body: None }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = Some(body.into());
        self
    }
}

type Hook = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

async fn handle(
    State(hook): State<Hook>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let reply = hook(Request { method, uri, headers, body, at: Instant::now() });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &reply.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(HeaderName::from_static(k), v);
        }
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, reply.body.unwrap_or_default())
}

/// Serves every request on `listener` to `hook` until `shutdown` resolves (then finishes the
/// requests in flight).
pub async fn serve(
    listener: tokio::net::TcpListener,
    hook: impl Fn(Request) -> Reply + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hook: Hook = Arc::new(hook);
    let app = axum::Router::new().fallback(handle).with_state(hook);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// A receiver on a free loopback port; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(hook: impl Fn(Request) -> Reply + Send + Sync + 'static) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = serve(listener, hook, std::future::pending()).await;
        });
        Ok(Receiver { addr, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request a [`Recorder`] got.
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

/// One request and the status it was answered with.
#[derive(Debug, Clone)]
pub struct Hit {
    pub req: Received,
    pub status: u16,
}

type Responder = Arc<dyn Fn(&Received, &[Hit]) -> Reply + Send + Sync>;

struct RecorderState {
    hits: Vec<Hit>,
    /// Computes the answer from the request and the history; else the fields below.
    responder: Option<Responder>,
    /// Statuses to answer, in order; after the list, `fallback`.
    script: Vec<u16>,
    fallback: u16,
    delay: Duration,
    body: Bytes,
}

/// A loopback receiver that records every request and answers scripted statuses (200 and
/// "ok" unless told otherwise) or what a responder computes. Clones share the recording; the
/// server stops when the last clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    state: Arc<Mutex<RecorderState>>,
    _server: Arc<Receiver>,
}

impl Recorder {
    /// Answers 200 "ok" until [`Recorder::script`] says otherwise.
    pub async fn start() -> Recorder {
        Self::launch(None).await
    }

    /// Answers what `responder` computes from the request and every earlier [`Hit`].
    pub async fn answering(responder: impl Fn(&Received, &[Hit]) -> Reply + Send + Sync + 'static) -> Recorder {
        Self::launch(Some(Arc::new(responder))).await
    }

    async fn launch(responder: Option<Responder>) -> Recorder {
        let state = Arc::new(Mutex::new(RecorderState {
            hits: Vec::new(),
            responder,
            script: Vec::new(),
            fallback: 200,
            delay: Duration::ZERO,
            body: Bytes::from_static(b"ok"),
        }));
        let shared = state.clone();
        let server = Receiver::start(move |r| {
            let req = Received {
                method: r.method.to_string(),
                uri: r.uri.to_string(),
                headers: r.headers,
                body: r.body,
                at: r.at,
            };
            let mut s = shared.lock();
            let mut reply = match &s.responder {
                Some(responder) => responder(&req, &s.hits),
                None => {
                    let status = if s.script.is_empty() { s.fallback } else { s.script.remove(0) };
                    Reply::status(status).delay(s.delay)
                }
            };
            reply.body = Some(reply.body.unwrap_or_else(|| s.body.clone()));
            s.hits.push(Hit { req, status: reply.status });
            reply
        })
        .await
        .expect("a loopback receiver binds");
        Recorder { addr: server.addr, state, _server: Arc::new(server) }
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
        self.state.lock().body = Bytes::from(body.to_string());
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().hits.iter().map(|h| h.req.clone()).collect()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().hits.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().hits.len()
    }

    /// Waits until at least `n` requests arrived; panics with what arrived after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_for_hits(n, timeout).await.into_iter().map(|h| h.req).collect()
    }

    /// [`Recorder::wait_for`] with the answered statuses.
    pub async fn wait_for_hits(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + timeout;
        while self.count() < n && Instant::now() <= deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let hits = self.hits();
        assert!(hits.len() >= n, "receiver got {} requests, expected {n}: {hits:#?}", hits.len());
        hits
    }
}
