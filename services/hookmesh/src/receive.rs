//! `hookmesh receive`: a demo receiver that prints every webhook it gets and checks its
//! Standard Webhooks signature when given the secret (`v1`) or the public key (`v1a`). For
//! trying hookmesh out, for the compose demo, and for tests; not a production endpoint. The
//! HTTP side is the test kit's receiver (the one the end-to-end tests and the bench use) with
//! a hook that prints.

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use hookmesh_core::signing;
use hookmesh_testkit::receiver::{self, Reply, Request};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct ReceiveArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKMESH_RECEIVE_ADDR", default_value = "127.0.0.1:9000")]
    pub addr: SocketAddr,
    /// The webhook's signing secret (whsec_…), to verify signatures.
    #[arg(long, env = "HOOKMESH_RECEIVE_SECRET")]
    pub secret: Option<String>,
    /// The webhook's v1a public key (whpk_…), to verify ed25519 signatures.
    #[arg(long, env = "HOOKMESH_RECEIVE_PUBLIC_KEY")]
    pub public_key: Option<String>,
    /// Status code to answer.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Exit after this many requests.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print bodies up to this many bytes.
    #[arg(long, default_value_t = 400)]
    pub max_body: usize,
}

struct Receiver {
    key: Option<Vec<u8>>,
    /// Checked at start to parse as a `whpk_` key.
    public_key: Option<String>,
    status: StatusCode,
    seen: AtomicU64,
    count: Option<u64>,
    max_body: usize,
    done: CancellationToken,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn receive(r: &Receiver, req: Request) -> Reply {
    let (headers, body) = (&req.headers, &req.body);
    let id = header(headers, "webhook-id");
    let ts = header(headers, "webhook-timestamp").parse::<i64>().unwrap_or(0);
    let sig = header(headers, "webhook-signature");
    let checks = [
        r.key.as_ref().map(|key| signing::verify(key, id, ts, body, sig)),
        r.public_key
            .as_deref()
            .and_then(|pk| signing::parse_public_key(pk).ok())
            .map(|pk| signing::verify_v1a(&pk, id, ts, body, sig)),
    ];
    let signature = if headers.get("webhook-signature").is_none() {
        "unsigned"
    } else if checks.iter().all(Option::is_none) {
        "signed (no --secret or --public-key to check)"
    } else if checks.iter().flatten().all(|ok| *ok) {
        "valid"
    } else {
        "INVALID"
    };
    let text = String::from_utf8_lossy(body);
    let shown: String = text.chars().take(r.max_body).collect();
    let more = if text.chars().count() > r.max_body { "…" } else { "" };
    println!("{} {} webhook-id={id} signature={signature} body={shown}{more}", req.method, req.uri);
    let n = r.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if r.count.is_some_and(|c| n >= c) {
        r.done.cancel();
    }
    Reply::status(r.status.as_u16())
}

pub async fn run(args: ReceiveArgs) -> anyhow::Result<()> {
    let key = match &args.secret {
        Some(s) => Some(signing::secret_key(s).with_context(|| "secret: not a whsec_ secret")?),
        None => None,
    };
    if let Some(pk) = &args.public_key {
        signing::parse_public_key(pk).map_err(|e| anyhow::anyhow!("public_key: {e}"))?;
    }
    let status =
        StatusCode::from_u16(args.status).with_context(|| format!("status: {} is not an HTTP status", args.status))?;
    let done = CancellationToken::new();
    let state = Arc::new(Receiver {
        key,
        public_key: args.public_key.clone(),
        status,
        seen: AtomicU64::new(0),
        count: args.count,
        max_body: args.max_body,
        done: done.clone(),
    });
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("addr: cannot bind {}", args.addr))?;
    eprintln!("hookmesh receive listening on http://{}", listener.local_addr()?);
    let shutdown = async move {
        tokio::select! {
            _ = done.cancelled() => {}
            _ = crate::runtime::shutdown_signal() => {}
        }
    };
    receiver::serve(listener, move |req| receive(&state, req), shutdown).await?;
    Ok(())
}
