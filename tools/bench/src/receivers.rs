//! The loopback receivers of a run (the test kit's receiver with a hook of the bench's own):
//! each records only the arrival time and the event id of what it gets into one shared
//! [`Sink`], and answers as its [`Behavior`] says.

use crate::scenario::Behavior;
use anyhow::Context;
use axum::body::Bytes;
use hookmesh_testkit::receiver::{self as testkit, Reply, Request};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(crate) struct Sample {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

#[derive(Default)]
pub(crate) struct Inner {
    /// (webhook << 32 | event) → first arrival, ns since `Sink::base`.
    pub(crate) first: HashMap<u64, u64>,
    pub(crate) duplicates: u64,
    /// Arrivals of a counted webhook for an event of another tenant.
    pub(crate) unexpected: u64,
    /// Bodies without a readable event id.
    pub(crate) unreadable: u64,
    pub(crate) samples: HashMap<u32, Sample>,
    pub(crate) warm: HashSet<u32>,
}

pub(crate) struct Sink {
    pub(crate) base: Instant,
    pub(crate) counted: Vec<bool>,
    pub(crate) hook_tenant: Vec<u32>,
    pub(crate) tenants: u32,
    pub(crate) unique: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) limit_hits: AtomicU64,
    pub(crate) inner: Mutex<Inner>,
}

impl Sink {
    pub(crate) fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

pub(crate) struct Receiver {
    pub(crate) sink: Arc<Sink>,
    pub(crate) behavior: Behavior,
    /// Every request this receiver got from hookmesh (attempts, retries included).
    pub(crate) hits: AtomicU64,
}

/// The event number of a body that carries `"id": "e<n>"` (or `"w<n>"` for warm-up events).
pub(crate) fn event_number(body: &[u8]) -> Option<(u8, u32)> {
    let key = b"\"id\"";
    let at = body.windows(key.len()).position(|w| w == key)?;
    let mut rest = &body[at + key.len()..];
    while let Some((&c, tail)) = rest.split_first() {
        if c == b' ' || c == b':' || c == b'\n' || c == b'\t' {
            rest = tail;
        } else {
            break;
        }
    }
    let rest = rest.strip_prefix(b"\"")?;
    let (&kind, digits) = rest.split_first()?;
    let end = digits.iter().position(|c| !c.is_ascii_digit())?;
    let n = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some((kind, n))
}

/// Records one request of a run into the sink and answers as the receiver's behavior says.
fn receive(rx: &Receiver, req: Request) -> Reply {
    let sink = &rx.sink;
    let at = req.at.saturating_duration_since(sink.base).as_nanos() as u64;
    let path = req.uri.path();
    if path.starts_with("/l/") {
        sink.limit_hits.fetch_add(1, Ordering::Relaxed);
        return Reply::status(200);
    }
    rx.hits.fetch_add(1, Ordering::Relaxed);
    let body = &req.body;
    if path.starts_with("/warm/") {
        if let Some((_, n)) = event_number(body) {
            sink.inner.lock().unwrap().warm.insert(n);
        }
    } else if let Some(rest) = path.strip_prefix("/w/") {
        let hook: Option<u32> = rest.split('/').next().and_then(|s| s.parse().ok());
        let event = event_number(body);
        let mut guard = sink.inner.lock().unwrap();
        let inner = &mut *guard;
        match (hook, event) {
            (Some(h), Some((b'e', n))) if (h as usize) < sink.counted.len() => {
                inner.samples.entry(h).or_insert_with(|| Sample {
                    headers: req
                        .headers
                        .iter()
                        .filter(|(k, _)| *k != "host" && *k != "content-length")
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body: body.clone(),
                });
                if sink.counted[h as usize] {
                    if sink.hook_tenant[h as usize] != n % sink.tenants {
                        inner.unexpected += 1;
                    } else {
                        let key = (u64::from(h) << 32) | u64::from(n);
                        match inner.first.entry(key) {
                            std::collections::hash_map::Entry::Occupied(_) => inner.duplicates += 1,
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert(at);
                                sink.unique.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            _ => inner.unreadable += 1,
        }
    }
    match rx.behavior {
        Behavior::Fast => Reply::status(200),
        Behavior::Slow(d) => Reply::status(200).delay(d),
        Behavior::Fail(code) => Reply::status(code),
    }
}

/// Aborts a background task when dropped (also when a run fails half-way).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The receivers of a run; they stop when this is dropped.
pub(crate) struct Receivers {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) receivers: Vec<Arc<Receiver>>,
    _servers: Vec<testkit::Receiver>,
}

pub(crate) async fn start_receivers(sink: &Arc<Sink>, behaviors: &[Behavior]) -> anyhow::Result<Receivers> {
    let mut out = Receivers { addrs: Vec::new(), receivers: Vec::new(), _servers: Vec::new() };
    for &behavior in behaviors {
        let rx = Arc::new(Receiver { sink: sink.clone(), behavior, hits: AtomicU64::new(0) });
        let hook = rx.clone();
        let server = testkit::Receiver::start(move |req| receive(&hook, req)).await.context("binding a receiver")?;
        out.addrs.push(server.addr);
        out._servers.push(server);
        out.receivers.push(rx);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_numbers_are_read_from_bodies() {
        assert_eq!(event_number(br#"{"id":"e42","type":"call.ended"}"#), Some((b'e', 42)));
        assert_eq!(event_number(br#"{"call":"c1", "id": "w7"}"#), Some((b'w', 7)));
        assert_eq!(event_number(br#"{"call_id":"c1"}"#), None);
    }
}
