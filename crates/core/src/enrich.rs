//! Post-call enrichment: a webhook holds a delivery until named data points arrive from later
//! events of the same call (`wait_for: [recording_url, transcript]`, `max_wait: 20m`), then
//! renders the request from the event with what arrived merged into its `data`, and sends it
//! on arrival of the last one or at the deadline with what it has.
//!
//! # How it flows
//! - **The trigger.** When an event matches an enrichment webhook and lacks some of the names
//!   it waits for (absent or `null` in `data`), the renderer does not render it: the request
//!   carries a [`Hold`] with the event and the names still awaited. An event that already
//!   carries every name, or has no call id (nothing later can belong to it), renders at once.
//! - **The data points.** The router sends every later event of the tenant's calls that carries
//!   one of a webhook's awaited names to that webhook as a data-point job, whatever its trigger
//!   says (a `call.recording_ready` event rarely repeats the campaign a trigger filters on). The
//!   dispatcher merges the values into the call's context under [`context_name`]
//!   (`data.recording_url`, JSON text, so objects and numbers keep their type; capture names
//!   have no dot, so the two never meet) and wakes the held deliveries of that webhook and call.
//! - **Firing.** The dispatcher looks at a held delivery when woken and, as a safety net, at
//!   least every [`POLL`]. With every name there, or once `max_wait` has passed since the first
//!   trigger, it merges what arrived into the event, renders the request as the renderer would
//!   have, records why it fired ([`Hold::fired`]) and sends. The total timeout of the delivery
//!   policy counts from then.
//! - **Waking.** Before a held delivery first reads the context it writes a marker
//!   ([`hold_marker`]) into it; a data-point job reads the context after merging its values.
//!   Whichever of the two comes second sees the other's write, so an arrival is never missed
//!   for longer than [`POLL`].
//!
//! Held deliveries are `pending` with a due time in the retry schedule: no consumer slot waits,
//! and a restart finds them there like any retry.

use crate::error::ValidationError;
use crate::event::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a delivery is held unless the webhook says otherwise (as long as CallRail waits
/// for a recording and its transcript).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(20 * 60);
/// Longest `max_wait` a webhook may set (well inside the call context's 24 h).
pub const MAX_MAX_WAIT: Duration = Duration::from_secs(6 * 3600);
/// Most names one webhook may wait for.
pub const MAX_WAIT_FOR: usize = 16;
/// Largest data point kept for a held delivery (bytes of its JSON text); a larger one is
/// treated as not arrived, and the attempt's log says so.
pub const MAX_POINT_BYTES: usize = 64 * 1024;
/// How often a held delivery looks again without being woken.
pub const POLL: Duration = Duration::from_secs(30);

/// The call-context name a data point is kept under.
pub fn context_name(point: &str) -> String {
    format!("data.{point}")
}

/// The call-context name that tells a data-point job of `webhook_id` to wake `delivery_id`.
pub fn hold_marker(webhook_id: &str, delivery_id: &str) -> String {
    format!("hold.{webhook_id}.{delivery_id}")
}

/// The delivery ids held for `webhook_id` among a call's context names.
pub fn held_deliveries<'a>(webhook_id: &str, names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let prefix = format!("hold.{webhook_id}.");
    names.filter_map(|n| n.strip_prefix(&prefix)).map(str::to_string).collect()
}

/// Validates a webhook's `wait_for` and `max_wait` (milliseconds).
pub fn validate(wait_for: &[String], max_wait_ms: Option<u64>) -> Result<(), ValidationError> {
    if wait_for.len() > MAX_WAIT_FOR {
        return Err(ValidationError::new("wait_for", format!("has more than {MAX_WAIT_FOR} names")));
    }
    for (i, name) in wait_for.iter().enumerate() {
        if !crate::context::is_name(name) {
            return Err(ValidationError::new(
                format!("wait_for[{i}]"),
                format!("`{name}` is not a data point name (lowercase letters, digits and `_`, e.g. recording_url)"),
            ));
        }
        if wait_for[..i].contains(name) {
            return Err(ValidationError::new(format!("wait_for[{i}]"), format!("`{name}` is listed twice")));
        }
    }
    if let Some(ms) = max_wait_ms {
        if wait_for.is_empty() {
            return Err(ValidationError::new("max_wait", "is set but wait_for names nothing to wait for"));
        }
        if ms == 0 || Duration::from_millis(ms) > MAX_MAX_WAIT {
            return Err(ValidationError::new(
                "max_wait",
                format!("must be more than 0 and at most {}h", MAX_MAX_WAIT.as_secs() / 3600),
            ));
        }
    }
    Ok(())
}

/// Whether `event` carries data point `name` (present and not `null`).
pub fn carries(event: &Event, name: &str) -> bool {
    event.data.get(name).is_some_and(|v| !v.is_null())
}

/// The names of `wait_for` that `event` does not carry.
pub fn missing(event: &Event, wait_for: &[String]) -> Vec<String> {
    wait_for.iter().filter(|n| !carries(event, n)).cloned().collect()
}

/// The data points of `wait_for` that `event` carries, as JSON text.
pub fn points_of(event: &Event, wait_for: &[String]) -> BTreeMap<String, String> {
    wait_for
        .iter()
        .filter_map(|n| event.data.get(n).filter(|v| !v.is_null()).map(|v| (n.clone(), v.to_string())))
        .filter(|(_, text)| text.len() <= MAX_POINT_BYTES)
        .collect()
}

/// A delivery held for data points, as the request carries it through the pipeline and the
/// delivery log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// The triggering event, until the request is rendered with what arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// The names the event did not carry when it triggered.
    pub waiting_for: Vec<String>,
    pub max_wait_ms: u64,
    /// Whether the wake-up marker is in the call's context.
    #[serde(default)]
    pub marked: bool,
    /// When it fired (rendered and released for sending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<DateTime<Utc>>,
    /// Why it fired, e.g. `sent when transcript arrived, after 4.2s` or
    /// `sent at the 20m deadline without transcript (recording_url arrived)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired: Option<String>,
}

impl Hold {
    pub fn new(event: Event, waiting_for: Vec<String>, max_wait_ms: u64) -> Hold {
        Hold { event: Some(event), waiting_for, max_wait_ms, marked: false, fired_at: None, fired: None }
    }

    /// The instant the hold gives up waiting, for a delivery first triggered at `created`.
    pub fn deadline(&self, created: DateTime<Utc>) -> DateTime<Utc> {
        created + chrono::Duration::milliseconds(self.max_wait_ms.min(i64::MAX as u64) as i64)
    }
}

/// What a held delivery should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Render the event with these data points merged, and send; the text says why.
    Fire { points: BTreeMap<String, Value>, reason: String },
    /// Look again after this long.
    Wait(Duration),
}

/// Decides for a hold first triggered at `created`, at `now`, with the call's context `values`
/// (every name, as the store holds them).
pub fn decide(hold: &Hold, created: DateTime<Utc>, now: DateTime<Utc>, values: &BTreeMap<String, String>) -> Verdict {
    let mut points = BTreeMap::new();
    let mut absent = Vec::new();
    for name in &hold.waiting_for {
        match values.get(&context_name(name)).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
            Some(v) if !v.is_null() => {
                points.insert(name.clone(), v);
            }
            _ => absent.push(name.as_str()),
        }
    }
    let elapsed = (now - created).to_std().unwrap_or_default();
    let deadline = hold.deadline(created);
    if absent.is_empty() {
        let reason = format!("sent when {} arrived, after {}", hold.waiting_for.join(", "), show(elapsed));
        return Verdict::Fire { points, reason };
    }
    if now >= deadline {
        let arrived: Vec<&str> = points.keys().map(String::as_str).collect();
        let mut reason = format!(
            "sent at the {} deadline without {}",
            humantime::format_duration(Duration::from_millis(hold.max_wait_ms)).to_string().replace(' ', ""),
            absent.join(", ")
        );
        if !arrived.is_empty() {
            reason.push_str(&format!(" ({} arrived)", arrived.join(", ")));
        }
        return Verdict::Fire { points, reason };
    }
    let left = (deadline - now).to_std().unwrap_or_default();
    Verdict::Wait(POLL.min(left + Duration::from_millis(1)))
}

/// Merges arrived data points into the event's data.
pub fn merge(event: &mut Event, points: BTreeMap<String, Value>) {
    event.data.extend(points);
}

/// `4.2s`, `20m`, `1h30m`: whole units for long waits, tenths of a second for short ones.
fn show(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::sample_event;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn names_are_checked_and_errors_name_the_field() {
        assert!(validate(&["recording_url".into(), "transcript".into()], Some(1_200_000)).is_ok());
        let e = validate(&["Recording".into()], None).unwrap_err();
        assert_eq!(e.field, "wait_for[0]");
        let e = validate(&["transcript".into(), "transcript".into()], None).unwrap_err();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("wait_for[1]", "`transcript` is listed twice"));
        assert_eq!(validate(&["transcript".into()], Some(7 * 3600 * 1000)).unwrap_err().field, "max_wait");
        assert_eq!(validate(&[], Some(1000)).unwrap_err().field, "max_wait");
    }

    #[test]
    fn fires_on_arrival_of_every_name_with_typed_values() {
        let mut event = sample_event();
        event.data.remove("transcript");
        event.data.insert("recording_url".into(), Value::Null);
        let waiting = missing(&event, &["recording_url".into(), "transcript".into(), "ani".into()]);
        assert_eq!(waiting, vec!["recording_url".to_string(), "transcript".to_string()]);
        let hold = Hold::new(event.clone(), waiting, 20 * 60 * 1000);
        let t0 = at("2026-12-04T10:00:00Z");
        let mut values = BTreeMap::from([
            (context_name("recording_url"), json!("https://rec.example.com/1.mp3").to_string()),
            ("lead_id".to_string(), "L-1".to_string()),
            (hold_marker("w1", "msg_1"), "1".to_string()),
        ]);
        assert_eq!(decide(&hold, t0, at("2026-12-04T10:00:01Z"), &values), Verdict::Wait(POLL));
        values.insert(context_name("transcript"), json!({"text": "hello", "words": 1}).to_string());
        match decide(&hold, t0, at("2026-12-04T10:00:04.200Z"), &values) {
            Verdict::Fire { points, reason } => {
                assert_eq!(reason, "sent when recording_url, transcript arrived, after 4.2s");
                let mut e = event;
                merge(&mut e, points);
                assert_eq!(e.data["transcript"], json!({"text": "hello", "words": 1}));
                assert_eq!(e.data["recording_url"], json!("https://rec.example.com/1.mp3"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(held_deliveries("w1", values.keys()), vec!["msg_1".to_string()]);
        assert!(held_deliveries("w", values.keys()).is_empty());
    }

    #[test]
    fn fires_at_the_deadline_with_what_it_has() {
        let hold = Hold::new(sample_event(), vec!["recording_url".into(), "transcript".into()], 20 * 60 * 1000);
        let t0 = at("2026-12-04T10:00:00Z");
        let values = BTreeMap::from([(context_name("recording_url"), json!("https://r/1").to_string())]);
        // Just before the deadline it waits out exactly what is left.
        assert_eq!(
            decide(&hold, t0, at("2026-12-04T10:19:59.990Z"), &values),
            Verdict::Wait(Duration::from_millis(11))
        );
        match decide(&hold, t0, at("2026-12-04T10:20:00Z"), &values) {
            Verdict::Fire { points, reason } => {
                assert_eq!(reason, "sent at the 20m deadline without transcript (recording_url arrived)");
                assert_eq!(points.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn points_are_json_text_and_oversized_ones_stay_behind() {
        let mut e = sample_event();
        e.data.insert("recording_url".into(), json!("https://r/1"));
        e.data.insert("call_summary".into(), json!("x".repeat(MAX_POINT_BYTES)));
        let p = points_of(&e, &["recording_url".into(), "call_summary".into(), "nothing".into()]);
        assert_eq!(p, BTreeMap::from([("recording_url".to_string(), "\"https://r/1\"".to_string())]));
    }
}
