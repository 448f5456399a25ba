//! The limit: the same requests hookmesh sent, straight from a load generator to the same
//! receivers.

use crate::receivers::Sample;
use anyhow::{anyhow, Context};
use axum::body::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Limit {
    pub(crate) deliveries_per_s: f64,
    pub(crate) ratio: f64,
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) concurrency: usize,
    pub(crate) seconds: f64,
    /// CPU of this process (load generator and receivers) while driving it.
    pub(crate) bench_cpu_seconds: f64,
}

/// Sends `targets.len()` requests straight to the receivers, `concurrency` at a time, with the
/// headers and body hookmesh sent to each webhook.
pub(crate) async fn drive_limit(
    targets: Vec<(SocketAddr, u32)>,
    samples: &HashMap<u32, Sample>,
    concurrency: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the load generator's HTTP client")?;
    let fallback = samples.values().next().ok_or_else(|| anyhow!("no delivery arrived: nothing to replay"))?;
    let mut prepared: HashMap<u32, (reqwest::header::HeaderMap, Bytes)> = HashMap::new();
    for &(_, w) in &targets {
        if prepared.contains_key(&w) {
            continue;
        }
        let s = samples.get(&w).unwrap_or(fallback);
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in &s.headers {
            if let (Ok(k), Ok(v)) =
                (reqwest::header::HeaderName::from_bytes(k.as_bytes()), reqwest::header::HeaderValue::from_str(v))
            {
                h.append(k, v);
            }
        }
        prepared.insert(w, (h, s.body.clone()));
    }
    let prepared = Arc::new(prepared);
    // Open the connections first (one request each, not timed), as hookmesh's pool was warm.
    let mut warm = tokio::task::JoinSet::new();
    for &(addr, w) in targets.iter().take(concurrency) {
        let (client, prepared) = (client.clone(), prepared.clone());
        warm.spawn(async move {
            let (headers, body) = &prepared[&w];
            let _ =
                client.post(format!("http://{addr}/l/{w}")).headers(headers.clone()).body(body.clone()).send().await;
        });
    }
    while warm.join_next().await.is_some() {}
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, prepared, targets, next, failed) =
            (client.clone(), prepared.clone(), targets.clone(), next.clone(), failed.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(addr, w)) = targets.get(i) else { break };
                let (headers, body) = &prepared[&w];
                let ok = client
                    .post(format!("http://{addr}/l/{w}"))
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let total = targets.len() as u64;
    Ok((total, failed.load(Ordering::Relaxed), secs))
}
