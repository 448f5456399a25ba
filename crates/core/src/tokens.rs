//! Tokens on events: [`token_value`] resolves a token of the catalog ([`crate::catalog`],
//! re-exported here) on an [`Event`]:
//! - envelope tokens come from the event itself: `event_id` (`id`), `event_type` (canonical
//!   dotted name), `occurred_at` (RFC 3339, milliseconds, `Z`), `tenant_id`, and `callid` /
//!   `call_id` (the event's `call_id`);
//! - every other token is the value stored under its name in the event's `data` object,
//!   exactly as ingest normalised it (timestamps as UTC RFC 3339 strings, integers and
//!   numbers as JSON numbers — see [`typed_data_fields`]). An absent or `null` value resolves
//!   to `None`; rendering decides whether that becomes an empty string, `null` or a default.
//!
//! Keys in `data` that are not in the catalog are kept and still reachable by name; the
//! catalog only documents, types and exemplifies the well-known ones.
//!
//! [`sample_event`] builds a `call.ended` event carrying every token's example; previews and
//! test sends render against it.

pub use crate::catalog::*;

use crate::event::{Event, EventType};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

/// Resolves a token on an event. Event-level tokens: `event_id` (event.id), `event_type`,
/// `occurred_at` (RFC3339 millis Z), `tenant_id`, `callid` and `call_id` (event.call_id; an
/// event without a call id falls back to `data`). Everything else: `event.data[name]` cloned
/// (None if absent or null). `name` may be written `%name%` as well.
pub fn token_value(event: &Event, name: &str) -> Option<Value> {
    let name = bare_name(name);
    let from_data = |key: &str| event.data.get(key).filter(|v| !v.is_null()).cloned();
    match name {
        "event_id" => Some(Value::String(event.id.clone())),
        "event_type" => Some(Value::String(event.event_type.as_str().to_string())),
        "occurred_at" => Some(Value::String(event.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true))),
        "tenant_id" => Some(Value::String(event.tenant_id.clone())),
        "callid" | "call_id" => match &event.call_id {
            Some(id) => Some(Value::String(id.clone())),
            None => from_data(name),
        },
        other => from_data(other),
    }
}

/// A realistic call.ended event built from every token's example (data filled with each
/// example parsed as JSON), id "evt_sample", tenant "sample", call_id = the callid example,
/// occurred_at a fixed time. Feeds previews and test-sends.
///
/// Envelope tokens (`event_id`, `event_type`, `occurred_at`, `tenant_id`, `callid`,
/// `call_id`) live on the event itself, not in `data`, exactly as on real events.
pub fn sample_event() -> Event {
    let mut data = Map::new();
    for def in CATALOG.iter().filter(|d| !d.is_event_level()) {
        data.insert(def.name.to_string(), def.example_value());
    }
    let call_id = match lookup("callid").map(TokenDef::example_value) {
        Some(Value::String(s)) => s,
        _ => "093cc03c.e6a4.6ac6.978f.740b10afeaca".to_string(),
    };
    Event {
        id: "evt_sample".to_string(),
        event_type: EventType::CallEnded,
        // The call_end_time example: the moment the sample call hung up.
        occurred_at: Utc.with_ymd_and_hms(2019, 3, 28, 0, 5, 30).single().unwrap_or_default(),
        tenant_id: "sample".to_string(),
        call_id: Some(call_id),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::{HashMap, HashSet};

    /// Every body token of reference 004, spelled out so a missing one fails the test.
    const REFERENCE_004: &[&str] = &[
        "callid",
        "session_id",
        "dialed_time",
        "answered_time",
        "dialstatus",
        "tracking",
        "ani",
        "call_start_time",
        "call_end_time",
        "target",
        "global_id",
        "landing_domain",
        "repeat_caller",
        "prompt_responses",
        "question",
        "question_link",
        "response",
        "domain_name",
        "campaign_name",
        "rec_audiourl",
        "rec_audiowavurl",
        "ani_is_valid",
        "ani_line_type",
        "ani_carrier",
        "ani_full_name",
        "ani_first_name",
        "ani_middle_name",
        "ani_last_name",
        "ani_type",
        "ani_street_line_1",
        "ani_street_line_2",
        "ani_city",
        "ani_zip",
        "ani_zip4",
        "ani_state",
        "ani_country_code",
        "ani_street_number",
        "ani_street_name",
        "ani_street_type",
        "ani_updated_at",
        "tags",
        "location_name",
        "location_address_line_1",
        "location_address_line_2",
        "location_address_city",
        "location_address_zip",
        "location_address_state",
        "account_id",
        "location_id",
        "page_id",
        "page_converted_on",
        "first_page_landed_on",
        "vehicle_vin",
        "vehicle_year",
        "vehicle_make",
        "vehicle_model",
        "referral_domain",
        "medium",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "keyword",
        "gclid",
        "ring_count",
        "site_id",
        "domain_id",
        "visitor_browser_family",
        "visitor_browser_version",
        "visitor_device",
        "visitor_country_code",
        "visitor_region",
        "visitor_city",
        "visitor_ip_address",
        "visitor_operating_system",
        "visitor_lat",
        "visitor_long",
    ];

    /// The reference's category of each 004 token (call_begin, call_end, dni, location_info).
    fn reference_category(name: &str) -> TokenCategory {
        const CALL_END: &[&str] = &[
            "dialed_time",
            "answered_time",
            "dialstatus",
            "call_end_time",
            "prompt_responses",
            "question",
            "question_link",
            "response",
            "rec_audiourl",
            "rec_audiowavurl",
            "ring_count",
        ];
        const DNI_EXTRA: &[&str] = &[
            "target",
            "global_id",
            "landing_domain",
            "domain_name",
            "page_id",
            "page_converted_on",
            "first_page_landed_on",
            "referral_domain",
            "medium",
            "keyword",
            "gclid",
        ];
        const LOCATION_EXTRA: &[&str] = &["account_id", "location_id", "site_id", "domain_id"];
        if CALL_END.contains(&name) {
            TokenCategory::CallEnd
        } else if DNI_EXTRA.contains(&name)
            || name.starts_with("vehicle_")
            || name.starts_with("utm_")
            || name.starts_with("visitor_")
        {
            TokenCategory::Dni
        } else if LOCATION_EXTRA.contains(&name) || name.starts_with("location_") {
            TokenCategory::LocationInfo
        } else {
            TokenCategory::CallBegin
        }
    }

    #[test]
    fn every_reference_token_is_present_with_its_category() {
        assert_eq!(REFERENCE_004.len(), 77);
        for name in REFERENCE_004 {
            let def = lookup(name).unwrap_or_else(|| panic!("token `{name}` missing from the catalog"));
            assert_eq!(def.name, *name);
            assert_eq!(def.category, reference_category(name), "category of `{name}`");
        }
    }

    #[test]
    fn requested_extra_tokens_are_present() {
        let extras = [
            ("call_sid", None),
            ("company_id", None),
            ("campaign_id", Some(TokenCategory::Campaign)),
            ("ai_agent_id", None),
            ("contact_id", Some(TokenCategory::Contact)),
            ("call_from", None),
            ("call_to", None),
            ("call_duration", None),
            ("call_status", None),
            ("direction", Some(TokenCategory::CallBegin)),
            ("call_rating", None),
            ("call_summary", None),
            ("recording_url", None),
            ("transcript", None),
            ("sentiment", None),
            ("agent_task_status", None),
            ("agent_feedback", None),
            ("dynamic_variables", None),
            ("post_call_outcomes", None),
            ("created_at", None),
            ("started_at", None),
            ("ended_at", None),
            ("contact_first_name", Some(TokenCategory::Contact)),
            ("contact_last_name", Some(TokenCategory::Contact)),
            ("contact_email", Some(TokenCategory::Contact)),
            ("contact_phone", Some(TokenCategory::Contact)),
            ("contact_company", Some(TokenCategory::Contact)),
            ("contact_custom_fields", Some(TokenCategory::Contact)),
            ("outcome", Some(TokenCategory::AgentOutcome)),
            ("outcome_reason", Some(TokenCategory::AgentOutcome)),
            ("appointment_booked", Some(TokenCategory::AgentOutcome)),
            ("follow_up_at", Some(TokenCategory::AgentOutcome)),
            ("intent", Some(TokenCategory::Conversation)),
            ("intent_confidence", Some(TokenCategory::Conversation)),
            ("entity_name", Some(TokenCategory::Conversation)),
            ("entity_value", Some(TokenCategory::Conversation)),
            ("transcript_segment", Some(TokenCategory::Conversation)),
            ("speaker", Some(TokenCategory::Conversation)),
            ("campaign_status", Some(TokenCategory::Campaign)),
            ("campaign_quota", Some(TokenCategory::Campaign)),
            ("ivr_option", Some(TokenCategory::CallBegin)),
            ("ivr_label", Some(TokenCategory::CallBegin)),
            ("answered_by", Some(TokenCategory::CallEnd)),
            ("event_id", Some(TokenCategory::Event)),
            ("event_type", Some(TokenCategory::Event)),
            ("occurred_at", Some(TokenCategory::Event)),
            ("tenant_id", Some(TokenCategory::Event)),
            ("call_id", Some(TokenCategory::Event)),
        ];
        for (name, category) in extras {
            let def = lookup(name).unwrap_or_else(|| panic!("token `{name}` missing from the catalog"));
            if let Some(c) = category {
                assert_eq!(def.category, c, "category of `{name}`");
            }
        }
    }

    #[test]
    fn types_follow_the_conventions() {
        let expect = [
            ("dialed_time", TokenType::Integer),
            ("answered_time", TokenType::Integer),
            ("ring_count", TokenType::Integer),
            ("call_duration", TokenType::Integer),
            ("repeat_caller", TokenType::Integer),
            ("ani_is_valid", TokenType::Integer),
            ("campaign_quota", TokenType::Integer),
            ("call_start_time", TokenType::Timestamp),
            ("call_end_time", TokenType::Timestamp),
            ("created_at", TokenType::Timestamp),
            ("started_at", TokenType::Timestamp),
            ("ended_at", TokenType::Timestamp),
            ("follow_up_at", TokenType::Timestamp),
            ("visitor_lat", TokenType::Number),
            ("visitor_long", TokenType::Number),
            ("intent_confidence", TokenType::Number),
            ("ani", TokenType::Phone),
            ("tracking", TokenType::Phone),
            ("rec_audiourl", TokenType::Url),
            ("tags", TokenType::Object),
            ("dynamic_variables", TokenType::Object),
            ("post_call_outcomes", TokenType::Object),
            ("prompt_responses", TokenType::Array),
            ("appointment_booked", TokenType::Boolean),
        ];
        for (name, ty) in expect {
            assert_eq!(lookup(name).unwrap().ty, ty, "type of `{name}`");
        }
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = HashSet::new();
        for def in catalog() {
            assert!(seen.insert(def.name), "duplicate token `{}`", def.name);
            assert!(
                !def.name.is_empty()
                    && def.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "token name `{}` is not snake_case",
                def.name
            );
            assert!(!def.description.is_empty(), "`{}` has no description", def.name);
        }
        assert_eq!(index().len(), catalog().len());
    }

    #[test]
    fn catalog_is_grouped_in_category_order() {
        let order = |c: TokenCategory| TokenCategory::ALL.iter().position(|x| *x == c).unwrap();
        // Grouped: once a category is left, it never comes back.
        let mut finished = HashSet::new();
        let mut current = None;
        for def in catalog() {
            if current != Some(def.category) {
                if let Some(prev) = current {
                    finished.insert(prev);
                }
                assert!(!finished.contains(&def.category), "`{}` is out of its category group", def.name);
                current = Some(def.category);
            }
        }
        let groups = by_category();
        assert_eq!(groups.len(), TokenCategory::ALL.len());
        assert!(groups.windows(2).all(|w| order(w[0].0) < order(w[1].0)));
        assert_eq!(groups.iter().map(|(_, d)| d.len()).sum::<usize>(), catalog().len());
        for (c, defs) in &groups {
            assert!(defs.iter().all(|d| d.category == *c));
        }
    }

    #[test]
    fn every_example_parses_and_matches_its_type() {
        for def in catalog() {
            let v: Value = serde_json::from_str(def.example)
                .unwrap_or_else(|e| panic!("example of `{}` is not JSON: {e}", def.name));
            let ok = match def.ty {
                TokenType::String => v.is_string(),
                TokenType::Phone => {
                    v.as_str().is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '+'))
                }
                TokenType::Url => v.as_str().is_some_and(|s| s.starts_with("http://") || s.starts_with("https://")),
                TokenType::Timestamp => v.as_str().is_some_and(|s| {
                    chrono::DateTime::parse_from_rfc3339(s).is_ok()
                        // Already in the form ingest normalises to.
                        && crate::event::parse_timestamp(&v)
                            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true) == s)
                            .unwrap_or(false)
                }),
                TokenType::Integer => v.is_i64(),
                TokenType::Number => v.is_number(),
                TokenType::Boolean => v.is_boolean(),
                TokenType::Object => v.is_object(),
                TokenType::Array => v.is_array(),
            };
            assert!(ok, "example {} of `{}` is not a {}", def.example, def.name, def.ty);
            assert_eq!(def.example_value(), v);
        }
        // 0/1 flags
        assert_eq!(lookup("repeat_caller").unwrap().example_value(), json!(1));
        assert_eq!(lookup("ani_is_valid").unwrap().example_value(), json!(1));
        // prompt_responses items carry question, question_link, response
        let pr = lookup("prompt_responses").unwrap().example_value();
        let item = &pr.as_array().unwrap()[0];
        for key in ["question", "question_link", "response"] {
            assert_eq!(item[key], lookup(key).unwrap().example_value(), "prompt_responses[0].{key}");
        }
    }

    #[test]
    fn lookup_accepts_placeholder_forms_and_case() {
        assert_eq!(lookup("ani").unwrap().name, "ani");
        assert_eq!(lookup("%ani%").unwrap().name, "ani");
        assert_eq!(lookup(" %ANI% ").unwrap().name, "ani");
        assert_eq!(lookup("{{ callid }}").unwrap().name, "callid");
        assert_eq!(lookup("Call_Start_Time").unwrap().category, TokenCategory::CallBegin);
        assert!(lookup("nope").is_none());
        assert!(lookup("%%").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn typed_data_fields_cover_timestamps_and_numbers_in_data_only() {
        let fields: HashMap<_, _> = typed_data_fields().collect();
        assert_eq!(fields.get("call_start_time"), Some(&TokenType::Timestamp));
        assert_eq!(fields.get("ring_count"), Some(&TokenType::Integer));
        assert_eq!(fields.get("visitor_lat"), Some(&TokenType::Number));
        assert!(!fields.contains_key("occurred_at"), "envelope tokens are not in data");
        assert!(!fields.contains_key("ani"));
        let expected = catalog()
            .iter()
            .filter(|d| !d.is_event_level())
            .filter(|d| matches!(d.ty, TokenType::Timestamp | TokenType::Integer | TokenType::Number))
            .count();
        assert_eq!(fields.len(), expected);
    }

    #[test]
    fn sample_event_round_trips_through_validation() {
        let sample = sample_event();
        assert_eq!(sample.id, "evt_sample");
        assert_eq!(sample.tenant_id, "sample");
        assert_eq!(sample.event_type, EventType::CallEnded);
        assert_eq!(sample.call_id.as_deref(), Some("093cc03c.e6a4.6ac6.978f.740b10afeaca"));
        let value = serde_json::to_value(&sample).unwrap();
        let parsed = crate::event::event_from_value(value).expect("sample event validates");
        assert_eq!(parsed, sample, "ingest normalisation leaves the sample unchanged");
        for def in catalog() {
            if def.is_event_level() {
                assert!(!sample.data.contains_key(def.name), "`{}` belongs to the envelope", def.name);
            } else {
                assert_eq!(sample.data.get(def.name), Some(&def.example_value()), "sample data `{}`", def.name);
            }
            let v = token_value(&sample, def.name).unwrap_or_else(|| panic!("`{}` resolves on the sample", def.name));
            assert_eq!(v, def.example_value(), "sample value of `{}` matches its example", def.name);
        }
    }

    #[test]
    fn token_value_resolves_envelope_and_data() {
        let event = crate::event::event_from_value(json!({
            "id": "e-1", "type": "hangup", "occurred_at": "2026-01-01T12:00:00+02:00",
            "tenant_id": "acme", "call_id": "c-42",
            "data": {"ani": "7776734736", "ring_count": "4", "tags": {"region": "south"}, "gclid": null}
        }))
        .unwrap();
        assert_eq!(token_value(&event, "callid"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "call_id"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "%callid%"), Some(json!("c-42")));
        assert_eq!(token_value(&event, "event_id"), Some(json!("e-1")));
        assert_eq!(token_value(&event, "event_type"), Some(json!("call.ended")));
        assert_eq!(token_value(&event, "occurred_at"), Some(json!("2026-01-01T10:00:00.000Z")));
        assert_eq!(token_value(&event, "tenant_id"), Some(json!("acme")));
        assert_eq!(token_value(&event, "ani"), Some(json!("7776734736")));
        assert_eq!(token_value(&event, "ring_count"), Some(json!(4)));
        assert_eq!(token_value(&event, "tags"), Some(json!({"region": "south"})));
        assert_eq!(token_value(&event, "gclid"), None, "null resolves to None");
        assert_eq!(token_value(&event, "keyword"), None, "absent resolves to None");

        let campaign = crate::event::event_from_value(json!({
            "id": "e-2", "type": "campaign.paused", "occurred_at": 0, "tenant_id": "acme",
            "data": {"campaign_id": "c-1"}
        }))
        .unwrap();
        assert_eq!(token_value(&campaign, "callid"), None);
        assert_eq!(token_value(&campaign, "campaign_id"), Some(json!("c-1")));
    }

    #[test]
    fn enums_serialise_as_their_names() {
        for c in TokenCategory::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        for ty in [
            TokenType::String,
            TokenType::Integer,
            TokenType::Number,
            TokenType::Boolean,
            TokenType::Timestamp,
            TokenType::Phone,
            TokenType::Url,
            TokenType::Object,
            TokenType::Array,
        ] {
            assert_eq!(serde_json::to_value(ty).unwrap(), json!(ty.as_str()));
        }
        let def = serde_json::to_value(lookup("ani").unwrap()).unwrap();
        assert_eq!(def["category"], "call_begin");
        assert_eq!(def["ty"], "phone");
        assert_eq!(def["example"], "\"7776734736\"");
    }
}
