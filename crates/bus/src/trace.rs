//! W3C trace context (`traceparent`) carried in record headers, so one trace id follows an
//! event from ingest through router, renderer and dispatcher to the receiver. Every stage
//! keeps the trace id and writes a new span id for the records it produces.

use rand::RngCore;

/// Record header (and HTTP header) name.
pub const TRACEPARENT: &str = "traceparent";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new sampled trace: `00-<trace id>-<span id>-01`.
pub fn new_traceparent() -> String {
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    rand::rng().fill_bytes(&mut trace);
    rand::rng().fill_bytes(&mut span);
    format!("00-{}-{}-01", hex(&trace), hex(&span))
}

/// The log span work on one record runs in: every log line inside carries the record's
/// `trace_id` (the event's trace), so logs, traces and receivers' `traceparent` line up.
pub fn log_span(stage: &'static str, traceparent: Option<&[u8]>) -> tracing::Span {
    match traceparent.and_then(|v| std::str::from_utf8(v).ok()).and_then(trace_id) {
        Some(id) => tracing::info_span!("record", stage, trace_id = %id),
        None => tracing::info_span!("record", stage),
    }
}

/// The trace id of a valid `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    match parts.as_slice() {
        [version, trace, span, flags]
            if version.len() == 2
                && trace.len() == 32
                && span.len() == 16
                && flags.len() == 2
                && trace.bytes().all(|b| b.is_ascii_hexdigit())
                && *trace != "00000000000000000000000000000000" =>
        {
            Some(trace)
        }
        _ => None,
    }
}

/// A child of `parent` (same trace, new span), or a new trace when `parent` is absent or
/// malformed.
pub fn child_of(parent: Option<&[u8]>) -> String {
    let parent = parent.and_then(|p| std::str::from_utf8(p).ok());
    match parent.and_then(trace_id) {
        Some(trace) => {
            let mut span = [0u8; 8];
            rand::rng().fill_bytes(&mut span);
            format!("00-{trace}-{}-01", hex(&span))
        }
        None => new_traceparent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_keep_the_trace_id() {
        let root = new_traceparent();
        let tid = trace_id(&root).unwrap().to_string();
        let child = child_of(Some(root.as_bytes()));
        assert_eq!(trace_id(&child), Some(tid.as_str()));
        assert_ne!(child, root);
        assert!(trace_id(&child_of(Some(b"garbage"))).is_some());
        assert_eq!(trace_id("00-00000000000000000000000000000000-0000000000000001-01"), None);
    }
}
