//! Sending one attempt: the shared HTTP client (connection reuse, no redirects, per-attempt
//! timeout), Standard Webhooks signing at send time, and classification of the outcome.

use crate::ssrf::{AddressPolicy, Blocked, GuardedResolver};
use crate::DispatcherConfig;
use chrono::Utc;
use hookmesh_core::delivery::{
    truncate_body, Attempt, AttemptTrigger, ErrorClass, RenderedRequest, MAX_STORED_RESPONSE_BYTES,
};
use hookmesh_core::retry::{parse_retry_after, AttemptResult};
use hookmesh_core::signing;
use hookmesh_core::webhook::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const USER_AGENT: &str = concat!("hookmesh/", env!("CARGO_PKG_VERSION"));

/// The process-wide client: one connection pool for every endpoint, resolving through the
/// SSRF guard.
pub fn build_client(policy: Arc<AddressPolicy>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .expect("HTTP client builds")
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    }
}

fn classify(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() {
        return ErrorClass::Timeout;
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Blocked>().is_some() {
            return ErrorClass::Blocked;
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return ErrorClass::Tls;
        }
        source = s.source();
    }
    ErrorClass::Connect
}

fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sends `req` once, signed with `keys` (one signature per active secret or key): an HTTP
/// request, or one record to a Kafka destination ([`crate::kafka`]) with the same headers.
pub async fn send(
    client: &reqwest::Client,
    config: &DispatcherConfig,
    req: &RenderedRequest,
    keys: &[signing::Key],
    number: u32,
    trigger: AttemptTrigger,
) -> (Attempt, AttemptResult) {
    let started_at = Utc::now();
    let timestamp = started_at.timestamp();
    let mut headers = req.headers.clone();
    headers.push(("webhook-id".into(), req.delivery_id.clone()));
    headers.push(("webhook-timestamp".into(), timestamp.to_string()));
    // The event's trace continues at the receiver (the caller puts the attempt's own span
    // context here).
    if let Some(tp) = &req.traceparent {
        headers.push(("traceparent".into(), tp.clone()));
    }
    if !keys.is_empty() {
        let sig = signing::signatures(keys, &req.delivery_id, timestamp, req.body.as_bytes());
        headers.push(("webhook-signature".into(), sig));
    }
    let mut builder = client.request(method(req.method), &req.url).timeout(req.policy.timeout());
    for (k, v) in &headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if req.method.carries_body() {
        builder = builder.body(req.body.clone());
    }
    let mut attempt = Attempt {
        number,
        trigger,
        started_at,
        method: req.method,
        url: req.url.clone(),
        // Every header as sent, `webhook-signature` included: it is no secret (an HMAC under
        // the webhook's key), and a receiver debugging a failed verification needs it.
        request_headers: headers,
        request_body: req.body.clone(),
        response_status: None,
        response_headers: Vec::new(),
        response_body: String::new(),
        duration_ms: 0,
        error_class: None,
        error: None,
        context_note: None,
    };
    let clock = Instant::now();
    let mut result = AttemptResult { status: None, error_class: None, retry_after: None };
    if let Some(target) = crate::kafka::kafka_target(&req.url) {
        // The record's key keeps one call's records in order on one partition.
        let key = req.call_id.as_deref().unwrap_or(&req.event_id);
        let sent = config
            .kafka_destinations
            .send(&req.tenant_id, &target, key, &attempt.request_headers, req.body.as_bytes(), req.policy.timeout())
            .await;
        match sent {
            Ok((partition, offset)) => {
                attempt.response_body = format!("acknowledged: partition {partition}, offset {offset}");
            }
            Err((class, why)) => {
                attempt.error_class = Some(class);
                attempt.error = Some(why);
                result.error_class = Some(class);
            }
        }
        attempt.duration_ms = clock.elapsed().as_millis() as u64;
        return (attempt, result);
    }
    let policy: &AddressPolicy = &config.address_policy;
    let checked = match url::Url::parse(&req.url) {
        Ok(u) => policy.check_url(&u).map_err(|b| b.to_string()),
        Err(e) => Err(format!("invalid URL: {e}")),
    };
    if let Err(why) = checked {
        attempt.error_class = Some(ErrorClass::Blocked);
        attempt.error = Some(why);
        result.error_class = Some(ErrorClass::Blocked);
        return (attempt, result);
    }
    match builder.send().await {
        Err(e) => {
            let class = classify(&e);
            attempt.error_class = Some(class);
            attempt.error = Some(error_text(&e));
            result.error_class = Some(class);
        }
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            attempt.response_status = Some(status);
            result.status = Some(status);
            attempt.response_headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            result.retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            // Read at most what we store (plus one byte to know it was cut); a timeout while
            // reading the body is a timeout of the attempt.
            let mut body = Vec::new();
            let read_error = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        body.extend_from_slice(&chunk);
                        if body.len() > MAX_STORED_RESPONSE_BYTES {
                            break None;
                        }
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            attempt.response_body = truncate_body(&body);
            if let Some(e) = read_error {
                let class = classify(&e);
                attempt.error_class = Some(class);
                attempt.error = Some(format!("reading the response: {}", error_text(&e)));
            } else if !req.success.status_ok(status) {
                attempt.error_class = Some(ErrorClass::Status);
                attempt.error = Some(format!("status {status} is not an accepted status"));
            } else if let Err(why) = req.success.body_ok(&body) {
                attempt.error_class = Some(ErrorClass::ResponseCondition);
                attempt.error = Some(why);
            }
            result.error_class = attempt.error_class;
        }
    }
    attempt.duration_ms = clock.elapsed().as_millis() as u64;
    (attempt, result)
}

/// The status class label of an attempt, for metrics (bounded): an HTTP status class, the
/// error class, or `kafka_ack` for a record a Kafka destination acknowledged.
pub fn class_label(a: &Attempt) -> &'static str {
    match (a.response_status, a.error_class) {
        (None, None) if crate::kafka::kafka_target(&a.url).is_some() => "kafka_ack",
        (Some(s), _) if s < 200 => "1xx",
        (Some(s), _) if s < 300 => "2xx",
        (Some(s), _) if s < 400 => "3xx",
        (Some(s), _) if s < 500 => "4xx",
        (Some(_), _) => "5xx",
        (None, Some(c)) => c.as_str(),
        (None, None) => "none",
    }
}
