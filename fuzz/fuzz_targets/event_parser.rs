//! `parse_event` on arbitrary bytes: never panics, and an accepted event survives the trip the
//! pipeline gives it — serialised by ingest onto `hookmesh.events`, decoded by the router with
//! `serde_json` — unchanged. Re-ingesting the serialised event (DLQ replay, `ctl` publish of a
//! logged event) accepts it again, unchanged too.
//!
//! Known and tolerated (see `common::json_eq_loose`): a float in `data` may move by one ulp,
//! because serde_json's default float parsing is not exact (its `float_roundtrip` feature is).
#![no_main]

mod common;

use hookmesh_core::event::{parse_event, Event, MAX_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(a: &Event, b: &Event) -> bool {
    a.id == b.id
        && a.event_type == b.event_type
        && a.occurred_at == b.occurred_at
        && a.tenant_id == b.tenant_id
        && a.call_id == b.call_id
        && common::json_eq_loose(&Value::Object(a.data.clone()), &Value::Object(b.data.clone()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = parse_event(data) else { return };
    let bytes = serde_json::to_vec(&event).expect("an accepted event serialises");
    let text = String::from_utf8_lossy(&bytes);

    let decoded: Event = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("router cannot decode an accepted event ({e}): {text}"));
    assert!(same(&decoded, &event), "serde round trip changed the event: {text}\n{event:?}\n{decoded:?}");

    // Serialising can grow the input (`1e2` → `100.0`, unix millis → RFC 3339), so only events
    // that still fit the ingest limit are re-ingested.
    if bytes.len() <= MAX_EVENT_BYTES {
        let again = parse_event(&bytes).unwrap_or_else(|e| panic!("re-ingest refuses an accepted event ({e}): {text}"));
        assert!(same(&again, &event), "re-ingest changed the event: {text}\n{event:?}\n{again:?}");
    }
});
