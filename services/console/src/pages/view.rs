//! API messages as the plain values the page templates read, and small helpers shared by the
//! pages (query strings, times).

use crate::forms::FormData;
use hookmesh_proto::v1;
use serde_json::{json, Value};

/// The query string of a request as form data.
pub fn query(uri: &axum::http::Uri) -> FormData {
    FormData::parse(uri.query().unwrap_or("").as_bytes())
}

/// An id as one path segment: everything but unreserved characters percent-encoded, so an id
/// typed into a URL can neither leave its segment nor break a `Location` header.
pub fn seg(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `a=1&b=2` of the non-empty pairs.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A time a person typed, as RFC 3339 UTC: RFC 3339 itself, a browser's `datetime-local`
/// (`2026-12-04T14:00`, read as UTC), or how long ago (`90m`, `2h`, `7d`). Empty stays empty.
pub fn time_input(field: &str, s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let secs = match (n.parse::<i64>(), unit.trim()) {
        (Ok(n), "s") => Some(n),
        (Ok(n), "m") => Some(n * 60),
        (Ok(n), "h") => Some(n * 3600),
        (Ok(n), "d") => Some(n * 86400),
        _ => None,
    };
    match secs {
        Some(secs) => {
            Ok((chrono::Utc::now() - chrono::Duration::seconds(secs))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        None => Err(format!("{field}: `{s}` is not a time (2026-12-04T14:00 UTC, RFC 3339, or 2h for two hours ago)")),
    }
}

/// `2026-12-04T14:00:01.123Z` → `2026-12-04 14:00:01`.
pub fn short_time(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => t.to_string(),
    }
}

pub fn kvs(list: &[v1::KeyValue]) -> Value {
    Value::Array(list.iter().map(|kv| json!({ "name": kv.name, "value": kv.value })).collect())
}

pub fn rendered(r: &v1::RenderedRequest) -> Value {
    json!({ "method": r.method, "url": r.url, "headers": kvs(&r.headers), "body": r.body })
}

pub fn webhook(w: &v1::Webhook) -> Value {
    let t = w.trigger.clone().unwrap_or_default();
    let r = w.request.clone().unwrap_or_default();
    json!({
        "id": w.id, "tenant_id": w.tenant_id, "name": w.name, "description": w.description,
        "enabled": w.enabled, "version": w.version,
        "events": if t.event_types.is_empty() { "all".to_string() } else { t.event_types.join(", ") },
        "method": if r.method.is_empty() { "POST".to_string() } else { r.method.clone() },
        "url": r.url, "content_type": r.content_type, "template_id": r.template_id,
        "secrets": w.secrets.iter().map(|s| json!({ "prefix": s.prefix, "created_at": short_time(&s.created_at), "expires_at": short_time(&s.expires_at) })).collect::<Vec<_>>(),
        "created_at": short_time(&w.created_at), "updated_at": short_time(&w.updated_at),
    })
}

pub fn delivery(d: &v1::Delivery) -> Value {
    json!({
        "id": d.id, "tenant_id": d.tenant_id, "webhook_id": d.webhook_id, "event_id": d.event_id,
        "event_type": d.event_type, "call_id": d.call_id, "status": d.status,
        "created_at": short_time(&d.created_at), "updated_at": short_time(&d.updated_at),
        "attempts": d.attempts, "next_attempt_at": short_time(&d.next_attempt_at),
        "last_status": d.last_status, "last_error": d.last_error, "last_error_class": d.last_error_class,
        "campaign": if d.campaign_name.is_empty() { d.campaign_id.clone() } else { d.campaign_name.clone() },
        "direction": d.direction, "tracking": d.tracking,
    })
}

pub fn attempt(a: &v1::Attempt) -> Value {
    json!({
        "number": a.number, "trigger": a.trigger, "started_at": short_time(&a.started_at),
        "method": a.method, "url": a.url, "request_headers": kvs(&a.request_headers),
        "request_body": a.request_body, "response_status": a.response_status,
        "response_headers": kvs(&a.response_headers), "response_body": a.response_body,
        "duration_ms": a.duration_ms, "error_class": a.error_class, "error": a.error,
    })
}

pub fn health(h: &v1::EndpointHealthResponse) -> Value {
    json!({
        "last_status": h.last_status, "last_attempt_at": short_time(&h.last_attempt_at), "circuit": h.circuit,
        "windows": h.windows.iter().map(|w| json!({
            "window": w.window, "attempts": w.attempts, "successes": w.successes,
            "success_rate": format!("{:.1} %", w.success_rate * 100.0),
            "avg_ms": format!("{:.0}", w.avg_ms), "p95_ms": format!("{:.0}", w.p95_ms),
        })).collect::<Vec<_>>(),
    })
}

pub fn template(t: &v1::Template) -> Value {
    use v1::template_body::Kind;
    json!({
        "id": t.id, "tenant_id": t.tenant_id, "name": t.name, "group": t.group, "description": t.description,
        "content_type": t.content_type, "version": t.version, "updated_at": short_time(&t.updated_at),
        "kind": match t.body.as_ref().and_then(|b| b.kind.as_ref()) {
            Some(Kind::Fields(f)) => format!("fields ({})", f.format),
            Some(Kind::Pairs(_)) => "pairs".to_string(),
            Some(Kind::Text(_)) => "text".to_string(),
            None => "-".to_string(),
        },
    })
}

pub fn token_categories(c: &[v1::TokenCategory]) -> Value {
    Value::Array(
        c.iter()
            .map(|c| json!({
                "name": c.name,
                "tokens": c.tokens.iter().map(|t| json!({ "name": t.name, "type": t.r#type, "description": t.description, "example": t.example_json })).collect::<Vec<_>>(),
            }))
            .collect(),
    )
}

/// Deliveries of the last 24 hours in hourly buckets by status, as SVG bar geometry.
pub fn chart(deliveries: &[v1::Delivery]) -> Value {
    let now = chrono::Utc::now();
    let mut buckets = [(0u32, 0u32); 24];
    for d in deliveries {
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&d.created_at) else { continue };
        let age = (now - t.with_timezone(&chrono::Utc)).num_minutes();
        if !(0..24 * 60).contains(&age) {
            continue;
        }
        let b = &mut buckets[23 - (age / 60) as usize];
        if d.status == "success" {
            b.0 += 1;
        } else if d.status != "pending" {
            b.1 += 1;
        }
    }
    let max = buckets.iter().map(|(s, f)| s + f).max().unwrap_or(0).max(1) as f64;
    let bars: Vec<Value> = buckets
        .iter()
        .enumerate()
        .map(|(i, (s, f))| {
            let hs = (*s as f64 / max * 100.0).round();
            let hf = (*f as f64 / max * 100.0).round();
            json!({ "x": i * 20 + 2, "ok_y": 110.0 - hs, "ok_h": hs, "fail_y": 110.0 - hs - hf, "fail_h": hf, "ok": s, "failed": f, "hours_ago": 23 - i })
        })
        .collect();
    json!({ "bars": bars, "max": max as u64 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_stay_in_their_segment() {
        assert_eq!(super::seg("wh_01a-b.c~"), "wh_01a-b.c~");
        assert_eq!(super::seg("../x\n/y"), "..%2Fx%0A%2Fy");
        assert!(super::time_input("since", "yesterday").unwrap_err().starts_with("since:"));
        assert_eq!(super::time_input("since", "2026-12-04T14:00").unwrap(), "2026-12-04T14:00:00Z");
    }
}
