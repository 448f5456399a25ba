//! `parse_event` on arbitrary bytes: never panics, and an accepted event survives the trip the
//! pipeline gives it — serialised by ingest onto `hookmesh.events`, decoded by the router with
//! `serde_json` — unchanged. Re-ingesting the serialised event (DLQ replay, `ctl` publish of a
//! logged event) accepts it again, unchanged too.
#![no_main]

use hookmesh_core::event::{parse_event, Event, MAX_EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = parse_event(data) else { return };
    let bytes = serde_json::to_vec(&event).expect("an accepted event serialises");

    let decoded: Event = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("router cannot decode an accepted event ({e}): {}", String::from_utf8_lossy(&bytes))
    });
    assert_eq!(decoded, event, "serde round trip changed the event: {}", String::from_utf8_lossy(&bytes));

    // Serialising can grow the input (`1e2` → `100.0`, unix millis → RFC 3339), so only events
    // that still fit the ingest limit are re-ingested.
    if bytes.len() <= MAX_EVENT_BYTES {
        let again = parse_event(&bytes).unwrap_or_else(|e| {
            panic!("re-ingest refuses an accepted event ({e}): {}", String::from_utf8_lossy(&bytes))
        });
        assert_eq!(again, event, "re-ingest changed the event: {}", String::from_utf8_lossy(&bytes));
    }
});
