//! Call events: the canonical types, their aliases, the JSON schema switches publish, and
//! validation.
//!
//! # Schema
//! ```json
//! {
//!   "id": "evt-0001",                      // required, 1..=128 chars, unique per event
//!   "type": "call.ended",                  // required, canonical name or alias ("hangup")
//!   "occurred_at": "2026-11-23T10:00:00Z", // required, RFC 3339 (any offset) or unix millis
//!   "tenant_id": "acme",                   // required, the account/location the call belongs to
//!   "call_id": "093cc03c.e6a4",            // required for call.* and conversation.* events
//!   "data": { "ani": "7776734736", "tracking": "7774839229", "campaign_id": "c-1", ... }
//! }
//! ```
//! `data` holds the data points of the token catalog under their token names
//! (see [`crate::catalog`]); unknown keys are kept and reachable by attribute filters and text
//! templates. Timestamps are normalised to UTC at ingest.
//!
//! Validation never loses input: [`parse_event`] answers with an [`EventError`] naming the
//! field, and the ingest stage sends the original bytes with that reason to the dead-letter
//! topic.

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Largest accepted event, in bytes of its JSON encoding (the documented event schema).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Longest accepted event id, tenant id or call id.
pub const MAX_ID_LEN: usize = 128;

macro_rules! event_types {
    ($( $variant:ident => $name:literal $(, aliases: [$($alias:literal),*])? ;)*) => {
        /// Every event type hookmesh routes. Serialises as its canonical dotted name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant,)* }

        impl EventType {
            /// Every type, in catalog order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The canonical dotted name, e.g. `call.ended`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            /// Names the reference products use for the same event, accepted at ingest.
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(EventType::$variant => &[$($($alias),*)?],)* }
            }

            /// Parses a canonical name or an alias (case-insensitive, `_`/`-`/space tolerant
            /// for aliases).
            pub fn parse(name: &str) -> Option<EventType> {
                let lower = name.trim().to_ascii_lowercase();
                $(if lower == $name { return Some(EventType::$variant); })*
                let folded = lower.replace(['-', ' '], "_");
                $($($(if folded == $alias { return Some(EventType::$variant); })*)?)*
                None
            }
        }
    };
}

event_types! {
    CallStarted => "call.started", aliases: ["incoming_call", "call_received", "call_start", "call_begin", "call.begin", "call_started"];
    CallRinging => "call.ringing", aliases: ["ringing", "call_ringing"];
    CallAnswered => "call.answered", aliases: ["connected", "call_connected", "call.connected", "call_answered", "answered"];
    CallDialed => "call.dialed", aliases: ["dialed", "call_dialed", "outbound_dialed"];
    CallMissed => "call.missed", aliases: ["missed", "call_missed", "no_answer"];
    CallEnded => "call.ended", aliases: ["completed", "call_completed", "call.completed", "hangup", "call_hangup", "call_end", "call.end", "call_ended"];
    CallConverted => "call.converted", aliases: ["converted", "call_converted", "conversion"];
    CallFailed => "call.failed", aliases: ["failed", "call_failed"];
    CallRecordingReady => "call.recording_ready", aliases: ["recording_ready", "recording_available", "recording_completed", "call_recording_ready", "call_recording_available", "call.recording_available"];
    CallAnalyzed => "call.analyzed", aliases: ["call_analyzed", "analyzed", "analysis_ready", "call_analysis_ready", "call.analysis_ready", "transcription_completed", "post_call_analysis"];
    CallVoicemailDetected => "call.voicemail_detected", aliases: ["voicemail", "voicemail_detected", "call_voicemail_detected"];
    CallDtmf => "call.dtmf", aliases: ["dtmf", "ivr_option", "ivr_option_pressed", "call_dtmf", "keypress"];
    ConversationTranscript => "conversation.transcript", aliases: ["transcript"];
    ConversationIntentDetected => "conversation.intent_detected", aliases: ["intent_detected"];
    ConversationEntityCaptured => "conversation.entity_captured", aliases: ["entity_captured"];
    CampaignStarted => "campaign.started", aliases: ["campaign_started"];
    CampaignPaused => "campaign.paused", aliases: ["campaign_paused"];
    CampaignResumed => "campaign.resumed", aliases: ["campaign_resumed"];
    CampaignCompleted => "campaign.completed", aliases: ["campaign_completed"];
    CampaignQuotaReached => "campaign.quota_reached", aliases: ["campaign_quota_reached", "quota_reached"];
    ContactCreated => "contact.created", aliases: ["contact_created"];
    ContactUpdated => "contact.updated", aliases: ["contact_updated"];
    ContactDeleted => "contact.deleted", aliases: ["contact_deleted"];
    IntegrationConnected => "integration.connected", aliases: ["integration_connected"];
    IntegrationDisconnected => "integration.disconnected", aliases: ["integration_disconnected"];
    WebhookAttemptExhausted => "webhook.attempt_exhausted";
    WebhookEndpointFailing => "webhook.endpoint_failing";
    WebhookEndpointDisabled => "webhook.endpoint_disabled";
    WebhookEndpointRecovered => "webhook.endpoint_recovered";
}

impl EventType {
    /// Call and conversation events belong to one call and must carry `call_id`.
    pub fn needs_call_id(self) -> bool {
        let name = self.as_str();
        name.starts_with("call.") || name.starts_with("conversation.")
    }

    /// Operational events are emitted by hookmesh itself, never accepted from switches.
    pub fn is_operational(self) -> bool {
        self.as_str().starts_with("webhook.")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::parse(s).ok_or_else(|| format!("unknown event type `{s}`"))
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EventType::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown event type `{s}`")))
    }
}

/// A validated, normalised event as it travels on `hookmesh.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
}

impl Event {
    /// The key that keeps one call's events in order on the bus.
    pub fn partition_key(&self) -> &str {
        self.call_id.as_deref().unwrap_or(&self.id)
    }

    /// Looks up a dotted path (`data.tags.region`, `call_id`, `type`) in the event's JSON form.
    /// A bare name that is not a top-level field is looked up in `data`.
    pub fn lookup(&self, path: &str) -> Option<Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let root: Value = match first {
            "id" => Value::String(self.id.clone()),
            "type" | "event_type" => Value::String(self.event_type.as_str().to_string()),
            "occurred_at" => Value::String(self.occurred_at.to_rfc3339()),
            "tenant_id" => Value::String(self.tenant_id.clone()),
            "call_id" => Value::String(self.call_id.clone()?),
            "data" => Value::Object(self.data.clone()),
            other => self.data.get(other)?.clone(),
        };
        let mut cur = root;
        for p in parts {
            cur = match cur {
                Value::Object(mut m) => m.remove(p)?,
                Value::Array(mut a) => {
                    let i: usize = p.parse().ok()?;
                    if i < a.len() {
                        a.swap_remove(i)
                    } else {
                        return None;
                    }
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    /// A string data field, if present and a string or number.
    pub fn data_str(&self, key: &str) -> Option<String> {
        match self.data.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// An operational event hookmesh emits about one of a tenant's webhooks
/// (`webhook.endpoint_failing`, …), so the tenant can subscribe a webhook to its own failures.
/// `data` carries `webhook_id`, `webhook_name`, `url` and whatever `details` add.
pub fn operational_event(
    event_type: EventType,
    tenant_id: &str,
    webhook_id: &str,
    webhook_name: &str,
    url: &str,
    details: Map<String, Value>,
    now: DateTime<Utc>,
) -> Event {
    let mut data = Map::new();
    data.insert("webhook_id".into(), Value::String(webhook_id.to_string()));
    data.insert("webhook_name".into(), Value::String(webhook_name.to_string()));
    data.insert("url".into(), Value::String(url.to_string()));
    data.extend(details);
    let id =
        format!("op_{}_{}_{}", event_type.as_str().trim_start_matches("webhook."), webhook_id, now.timestamp_micros());
    Event { id, event_type, occurred_at: now, tenant_id: tenant_id.to_string(), call_id: None, data }
}

/// Why an event was refused: the field and the reason, as a user would fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    pub field: String,
    pub reason: String,
}

impl EventError {
    /// Control characters are escaped, as in every validation error
    /// ([`crate::error::escape_control`]).
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EventError {
            field: crate::error::escape_control(&field.into()),
            reason: crate::error::escape_control(&reason.into()),
        }
    }
}

/// Parses and validates one event from the documented JSON schema.
pub fn parse_event(bytes: &[u8]) -> Result<Event, EventError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(EventError::new(
            "event",
            format!("is {} bytes, larger than the {} byte limit", bytes.len(), MAX_EVENT_BYTES),
        ));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EventError::new("event", format!("is not valid JSON: {e}")))?;
    event_from_value(value)
}

/// Validates an already-decoded JSON value (used by the protobuf path as well).
pub fn event_from_value(value: Value) -> Result<Event, EventError> {
    let Value::Object(mut obj) = value else {
        return Err(EventError::new("event", "must be a JSON object"));
    };
    let id = required_id(&mut obj, "id")?;
    let type_name = required_string(&mut obj, "type")?;
    let event_type = EventType::parse(&type_name)
        .ok_or_else(|| EventError::new("type", format!("unknown event type `{type_name}`")))?;
    let occurred_at = match obj.remove("occurred_at") {
        None | Some(Value::Null) => return Err(EventError::new("occurred_at", "is required")),
        Some(v) => parse_timestamp(&v).map_err(|r| EventError::new("occurred_at", r))?,
    };
    let tenant_id = required_id(&mut obj, "tenant_id")?;
    let call_id = match obj.remove("call_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(check_id("call_id", s)?),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(EventError::new("call_id", "must be a string")),
    };
    if event_type.needs_call_id() && call_id.is_none() {
        return Err(EventError::new("call_id", format!("is required for {event_type} events")));
    }
    let data = match obj.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(EventError::new("data", "must be a JSON object")),
    };
    if let Some(unknown) = obj.keys().next() {
        return Err(EventError::new(
            unknown.clone(),
            "is not a field of the event schema (put data points under `data`)",
        ));
    }
    let mut event = Event { id, event_type, occurred_at, tenant_id, call_id, data };
    normalise_data(&mut event)?;
    Ok(event)
}

fn required_string(obj: &mut Map<String, Value>, field: &str) -> Result<String, EventError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Err(EventError::new(field, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(EventError::new(field, "must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EventError::new(field, "must be a string")),
    }
}

fn required_id(obj: &mut Map<String, Value>, field: &str) -> Result<String, EventError> {
    let s = required_string(obj, field)?;
    check_id(field, s)
}

fn check_id(field: &str, s: String) -> Result<String, EventError> {
    if s.len() > MAX_ID_LEN {
        return Err(EventError::new(field, format!("is longer than {MAX_ID_LEN} characters")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(EventError::new(field, "must not contain control characters"));
    }
    Ok(s)
}

/// RFC 3339 with any offset, or unix milliseconds (a JSON number, or a string of digits as a
/// gRPC client writes it); answers UTC. The UTC time must fall in the
/// years 0000–9999, the only ones RFC 3339 can write back.
pub fn parse_timestamp(v: &Value) -> Result<DateTime<Utc>, String> {
    let t = match v {
        // Unix milliseconds written as a string (gRPC's `Event.occurred_at` is a string field).
        Value::String(s) if is_integer(s.trim()) => s
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| format!("`{s}` is not a unix timestamp in milliseconds")),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e})")),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .ok_or_else(|| format!("{n} is not a unix timestamp in milliseconds")),
        _ => Err("must be an RFC 3339 string or unix milliseconds".to_string()),
    }?;
    if !(0..=9999).contains(&t.year()) {
        return Err(format!("{v} is outside the years 0000 to 9999 (in UTC) that RFC 3339 can write"));
    }
    Ok(t)
}

/// `-?[0-9]+`: what a unix timestamp written as text looks like.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Normalises well-known data points: timestamps to UTC RFC 3339, direction to its canonical
/// spelling. Type errors in them name the field.
fn normalise_data(event: &mut Event) -> Result<(), EventError> {
    for (key, ty) in crate::catalog::typed_data_fields() {
        let Some(v) = event.data.get_mut(key) else { continue };
        if v.is_null() {
            continue;
        }
        let field = || format!("data.{key}");
        match ty {
            crate::catalog::TokenType::Timestamp => {
                let t = parse_timestamp(v).map_err(|r| EventError::new(field(), r))?;
                *v = Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            }
            crate::catalog::TokenType::Integer | crate::catalog::TokenType::Number => {
                if let Value::String(s) = v {
                    let parsed: Option<Value> = if matches!(ty, crate::catalog::TokenType::Integer) {
                        s.trim().parse::<i64>().ok().map(Value::from)
                    } else {
                        s.trim().parse::<f64>().ok().and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    };
                    *v = parsed.ok_or_else(|| EventError::new(field(), format!("`{s}` is not a number")))?;
                } else if !v.is_number() {
                    return Err(EventError::new(field(), "must be a number"));
                }
            }
            _ => {}
        }
    }
    if let Some(v) = event.data.get_mut("direction") {
        if let Value::String(s) = v {
            let d = Direction::parse(s).ok_or_else(|| {
                EventError::new("data.direction", format!("`{s}` is not one of inbound, outbound, click_to_call"))
            })?;
            *v = Value::String(d.as_str().to_string());
        } else if !v.is_null() {
            return Err(EventError::new("data.direction", "must be a string"));
        }
    }
    Ok(())
}

/// Call direction, as filters and the `direction` data point spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    ClickToCall,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::ClickToCall => "click_to_call",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
            "inbound" | "in" | "incoming" => Some(Direction::Inbound),
            "outbound" | "out" | "outgoing" => Some(Direction::Outbound),
            "click_to_call" | "clicktocall" | "c2c" => Some(Direction::ClickToCall),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Event {
        event_from_value(v).expect("valid event")
    }

    #[test]
    fn aliases_normalise_to_canonical_types() {
        assert_eq!(EventType::parse("hangup"), Some(EventType::CallEnded));
        assert_eq!(EventType::parse("Incoming Call"), Some(EventType::CallStarted));
        assert_eq!(EventType::parse("connected"), Some(EventType::CallAnswered));
        assert_eq!(EventType::parse("call.ended"), Some(EventType::CallEnded));
        assert_eq!(EventType::parse("call.exploded"), None);
        // What arrives after the hang-up, as the peers name it.
        assert_eq!(EventType::parse("Recording Ready"), Some(EventType::CallRecordingReady));
        assert_eq!(EventType::parse("call_analyzed"), Some(EventType::CallAnalyzed));
        assert_eq!(EventType::parse("post-call-analysis"), Some(EventType::CallAnalyzed));
        let mut seen = std::collections::HashSet::new();
        for t in EventType::ALL {
            for a in t.aliases() {
                assert!(seen.insert(*a), "alias {a} names two types");
            }
        }
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
    }

    #[test]
    fn valid_event_is_normalised_to_utc() {
        let e = ok(json!({"id":"e1","type":"completed","occurred_at":"2026-01-01T12:00:00+02:00",
            "tenant_id":"t","call_id":"c1","data":{"direction":"Incoming","call_start_time":"2026-01-01T11:59:00-05:00"}}));
        assert_eq!(e.event_type, EventType::CallEnded);
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-01-01T10:00:00+00:00");
        assert_eq!(e.data["direction"], "inbound");
        assert_eq!(e.data["call_start_time"], "2026-01-01T16:59:00.000Z");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t","call_id":"c"}), "id"),
            (
                json!({"id":"e","type":"call.nope","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t","call_id":"c"}),
                "type",
            ),
            (
                json!({"id":"e","type":"call.ended","occurred_at":"yesterday","tenant_id":"t","call_id":"c"}),
                "occurred_at",
            ),
            (json!({"id":"e","type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","call_id":"c"}), "tenant_id"),
            (json!({"id":"e","type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t"}), "call_id"),
            (
                json!({"id":"e","type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t","call_id":"c","data":[]}),
                "data",
            ),
            (
                json!({"id":"e","type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t","call_id":"c","data":{"direction":"sideways"}}),
                "data.direction",
            ),
            (
                json!({"id":"e","type":"call.ended","occurred_at":"2026-01-01T00:00:00Z","tenant_id":"t","call_id":"c","extra":1}),
                "extra",
            ),
        ];
        for (v, field) in cases {
            let err = event_from_value(v).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn oversized_and_malformed_bytes_are_refused() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(parse_event(&big).unwrap_err().reason.contains("limit"));
        assert!(parse_event(b"{not json").unwrap_err().reason.contains("not valid JSON"));
    }

    #[test]
    fn lookup_walks_dotted_paths() {
        let e = ok(json!({"id":"e","type":"call.ended","occurred_at":0,"tenant_id":"t","call_id":"c",
            "data":{"tags":{"region":"south"},"list":[1,2]}}));
        assert_eq!(e.lookup("data.tags.region"), Some(json!("south")));
        assert_eq!(e.lookup("tags.region"), Some(json!("south")));
        assert_eq!(e.lookup("list.1"), Some(json!(2)));
        assert_eq!(e.lookup("call_id"), Some(json!("c")));
        assert_eq!(e.lookup("nope"), None);
    }

    #[test]
    fn unix_milliseconds_as_a_string_are_a_timestamp() {
        let t = Utc.timestamp_millis_opt(1_795_428_000_123).single().unwrap();
        assert_eq!(parse_timestamp(&json!("1795428000123")).unwrap(), t);
        assert_eq!(parse_timestamp(&json!(" 1795428000123 ")).unwrap(), t);
        assert_eq!(parse_timestamp(&json!(1_795_428_000_123_i64)).unwrap(), t);
        assert_eq!(parse_timestamp(&json!("-1000")).unwrap(), Utc.timestamp_millis_opt(-1000).single().unwrap());
        let e = parse_event(br#"{"id":"e","type":"campaign.paused","occurred_at":"1795428000123","tenant_id":"t","data":{"call_start_time":"1795428000123"}}"#).unwrap();
        assert_eq!(e.occurred_at, t);
        assert_eq!(e.data["call_start_time"], "2026-11-23T10:00:00.123Z");
        for bad in ["17954280001234567890123", "12.5", "1e3", "", "-"] {
            assert!(parse_timestamp(&json!(bad)).is_err(), "{bad:?}");
        }
        let err = parse_timestamp(&json!("253402300800000")).unwrap_err();
        assert!(err.contains("outside the years 0000 to 9999"), "{err}");
    }

    #[test]
    fn fuzz_regression_timestamp_outside_rfc3339_years() {
        // Accepted, then serialised as `+10000-01-01T00:00:00Z` / `-0001-…`, which no RFC 3339
        // parser reads back: re-ingesting the event failed.
        let inputs: [&[u8]; 4] = [
            br#"{"id":"e","type":"campaign.paused","occurred_at":253402300800000,"tenant_id":"t"}"#,
            br#"{"id":"e","type":"campaign.paused","occurred_at":"9999-12-31T23:59:59-01:00","tenant_id":"t"}"#,
            br#"{"id":"e","type":"campaign.paused","occurred_at":-62167219200001,"tenant_id":"t"}"#,
            br#"{"id":"e","type":"campaign.paused","occurred_at":0,"tenant_id":"t","data":{"call_start_time":253402300800000}}"#,
        ];
        for input in inputs {
            let err = parse_event(input).unwrap_err();
            assert!(err.reason.contains("outside the years 0000 to 9999"), "{err}");
        }
        for edge in [json!(253402300799999_i64), json!(-62167219200000_i64), json!("0000-01-01T00:00:00Z")] {
            let t = parse_timestamp(&edge).expect("edge of the range is accepted");
            let written = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(parse_timestamp(&Value::String(written)).unwrap(), t);
        }
    }
}
