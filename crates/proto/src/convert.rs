//! Conversions between the wire types of [`crate::v1`] and the domain types of
//! `hookmesh-core`.
//!
//! The wire spells enums as strings and JSON values as JSON text; parsing them here means a
//! bad value is refused with the field it came from (`trigger.event_types[1]`,
//! `request.body.fields[0].source.constant_json`), exactly like the domain's own checks.
//!
//! Decisions:
//! - Empty strings mean "unset": an empty method is POST, an empty content type JSON, an empty
//!   ordering `none`, an empty status list the default 200–299, an empty template id none.
//! - Timestamps are RFC 3339 on the wire; an empty one becomes `now` (the registry stamps
//!   writes itself).
//! - Signing secrets never travel in full: the wire carries a [`v1::SecretInfo`] with the
//!   first characters only, and secrets are never taken from the wire.
//! - A field mapping without a source is refused (`…source`: is required).
//! - Events from the wire go through [`event_from_value`], so gRPC clients get the same
//!   validation and normalisation as switches publishing JSON.

use crate::v1;
use chrono::{DateTime, SecondsFormat, Utc};
use hookmesh_core::delivery::{Attempt, AttemptTrigger, Delivery, RenderedRequest};
use hookmesh_core::error::ValidationError;
use hookmesh_core::event::{event_from_value, Direction, Event, EventError, EventType};
use hookmesh_core::privacy::{TenantSettings, PERSONAL_TOKENS};
use hookmesh_core::template::{ContentType, FieldMapping, Source, TemplateBody};
use hookmesh_core::tokens;
use hookmesh_core::webhook::{
    Condition, ConditionOp, DeliveryPolicy, KeyValue, Method, Ordering, RateLimit, RequestSpec, SignatureScheme,
    SigningSecret, StatusRange, SuccessCondition, Template, Trigger, Webhook,
};
use serde_json::{Map, Value};

/// How many characters of a secret [`v1::SecretInfo::prefix`] shows.
pub const SECRET_PREFIX_CHARS: usize = 10;

// ---------------------------------------------------------------------------------------------
// small helpers

/// RFC 3339 in UTC with `Z` and as many fractional digits as needed (lossless round trip).
pub fn timestamp_to_proto(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn opt_timestamp_to_proto(t: Option<&DateTime<Utc>>) -> String {
    t.map(timestamp_to_proto).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (any offset, answered in UTC); empty → `now`.
pub fn timestamp_from_proto(field: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ValidationError> {
    if s.trim().is_empty() {
        return Ok(now);
    }
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ValidationError::new(field, format!("`{s}` is not an RFC 3339 timestamp ({e})")))
}

fn json_from_proto(field: &str, s: &str) -> Result<Value, ValidationError> {
    serde_json::from_str(s).map_err(|e| ValidationError::new(field, format!("is not valid JSON: {e}")))
}

fn json_to_proto(v: &Value) -> String {
    v.to_string()
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

fn kv_from_proto(kv: v1::KeyValue) -> KeyValue {
    KeyValue { name: kv.name, value: kv.value }
}

fn kv_to_proto(kv: &KeyValue) -> v1::KeyValue {
    v1::KeyValue { name: kv.name.clone(), value: kv.value.clone() }
}

fn pairs_to_proto(pairs: &[(String, String)]) -> Vec<v1::KeyValue> {
    pairs.iter().map(|(n, v)| v1::KeyValue { name: n.clone(), value: v.clone() }).collect()
}

fn status_from_proto(field: String, s: u32) -> Result<u16, ValidationError> {
    if s > 599 {
        return Err(ValidationError::new(field, format!("{s} is not an HTTP status code")));
    }
    Ok(s as u16)
}

fn content_type_from_proto(field: &str, s: &str) -> Result<ContentType, ValidationError> {
    if s.trim().is_empty() {
        return Ok(ContentType::default());
    }
    ContentType::parse(s)
        .ok_or_else(|| ValidationError::new(field, format!("unknown content type `{s}` (json, xml, form, text)")))
}

// ---------------------------------------------------------------------------------------------
// webhooks

/// A webhook from the wire. Secrets are not taken from the wire; an empty id stays empty (the
/// registry generates one); empty timestamps become `now`.
pub fn webhook_from_proto(w: v1::Webhook, now: DateTime<Utc>) -> Result<Webhook, ValidationError> {
    let trigger = trigger_from_proto(w.trigger.unwrap_or_default()).map_err(|e| e.under("trigger"))?;
    let request = request_from_proto(w.request.unwrap_or_default()).map_err(|e| e.under("request"))?;
    let success = match w.success {
        Some(s) => success_from_proto(s).map_err(|e| e.under("success"))?,
        None => SuccessCondition::default(),
    };
    let policy = match w.policy {
        Some(p) => policy_from_proto(p).map_err(|e| e.under("policy"))?,
        None => DeliveryPolicy::default(),
    };
    Ok(Webhook {
        id: w.id,
        tenant_id: w.tenant_id,
        name: w.name,
        description: w.description,
        enabled: w.enabled,
        trigger,
        request,
        success,
        policy,
        secrets: Vec::new(),
        signature_schemes: signature_schemes_from_proto(&w.signature_schemes)?,
        context: hookmesh_core::context::ContextSpec {
            captures: w
                .captures
                .into_iter()
                .map(|c| hookmesh_core::context::Capture { name: c.name, path: c.path })
                .collect(),
            wait_ms: (w.context_wait_ms > 0).then_some(w.context_wait_ms),
            defaults: w.context_defaults.into_iter().map(kv_from_proto).collect(),
            wait_for: w.wait_for.into_iter().map(|n| n.trim().to_string()).collect(),
            max_wait_ms: (w.max_wait_ms > 0).then_some(w.max_wait_ms),
        },
        version: w.version,
        created_at: timestamp_from_proto("created_at", &w.created_at, now)?,
        updated_at: timestamp_from_proto("updated_at", &w.updated_at, now)?,
    })
}

/// A webhook for the wire: secrets as prefixes only.
pub fn webhook_to_proto(w: &Webhook) -> v1::Webhook {
    v1::Webhook {
        id: w.id.clone(),
        tenant_id: w.tenant_id.clone(),
        name: w.name.clone(),
        description: w.description.clone(),
        enabled: w.enabled,
        trigger: Some(trigger_to_proto(&w.trigger)),
        request: Some(request_to_proto(&w.request)),
        success: Some(success_to_proto(&w.success)),
        policy: Some(policy_to_proto(&w.policy)),
        // v1a signing keys are private: the wire carries their public keys only.
        secrets: w
            .secrets
            .iter()
            .filter(|s| SignatureScheme::of_secret(&s.secret) == SignatureScheme::V1)
            .map(secret_info)
            .collect(),
        version: w.version,
        created_at: timestamp_to_proto(&w.created_at),
        updated_at: timestamp_to_proto(&w.updated_at),
        signature_schemes: w.signature_schemes.iter().map(|s| s.as_str().to_string()).collect(),
        captures: w
            .context
            .captures
            .iter()
            .map(|c| v1::Capture { name: c.name.clone(), path: c.path.clone() })
            .collect(),
        context_wait_ms: w.context.wait_ms.unwrap_or(0),
        context_defaults: w.context.defaults.iter().map(kv_to_proto).collect(),
        wait_for: w.context.wait_for.clone(),
        max_wait_ms: w.context.max_wait_ms.unwrap_or(0),
        public_keys: w
            .secrets
            .iter()
            .filter(|s| SignatureScheme::of_secret(&s.secret) == SignatureScheme::V1a)
            .filter_map(|s| {
                Some(v1::PublicKey {
                    key: hookmesh_core::signing::public_key(&s.secret).ok()?,
                    created_at: timestamp_to_proto(&s.created_at),
                    expires_at: opt_timestamp_to_proto(s.expires_at.as_ref()),
                })
            })
            .collect(),
    }
}

/// Signature schemes from the wire; empty = `v1`.
pub fn signature_schemes_from_proto(names: &[String]) -> Result<Vec<SignatureScheme>, ValidationError> {
    if names.is_empty() {
        return Ok(vec![SignatureScheme::V1]);
    }
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            SignatureScheme::parse(n).ok_or_else(|| {
                ValidationError::new(format!("signature_schemes[{i}]"), format!("unknown scheme `{n}` (v1, v1a)"))
            })
        })
        .collect()
}

/// What the wire may know about a secret: its first characters and its lifetime.
pub fn secret_info(s: &SigningSecret) -> v1::SecretInfo {
    let mut prefix: String = s.secret.chars().take(SECRET_PREFIX_CHARS).collect();
    prefix.push('…');
    v1::SecretInfo {
        prefix,
        created_at: timestamp_to_proto(&s.created_at),
        expires_at: opt_timestamp_to_proto(s.expires_at.as_ref()),
    }
}

fn trigger_from_proto(t: v1::Trigger) -> Result<Trigger, ValidationError> {
    let event_types = t
        .event_types
        .iter()
        .enumerate()
        .map(|(i, s)| {
            EventType::parse(s)
                .ok_or_else(|| ValidationError::new(format!("event_types[{i}]"), format!("unknown event type `{s}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let directions = t
        .directions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Direction::parse(s).ok_or_else(|| {
                ValidationError::new(
                    format!("directions[{i}]"),
                    format!("unknown direction `{s}` (inbound, outbound, click_to_call)"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let conditions = t
        .conditions
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let op = ConditionOp::parse(&c.op).ok_or_else(|| {
                ValidationError::new(
                    format!("conditions[{i}].op"),
                    format!("unknown operator `{}` (eq, ne, in, prefix, exists)", c.op),
                )
            })?;
            let value = if c.value_json.trim().is_empty() {
                Value::Null
            } else {
                json_from_proto(&format!("conditions[{i}].value_json"), &c.value_json)?
            };
            Ok(Condition { path: c.path, op, value })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    Ok(Trigger {
        event_types,
        campaigns: t.campaigns,
        directions,
        numbers: t.numbers,
        ivr_options: t.ivr_options,
        conditions,
        expression: Some(t.expression).filter(|e| !e.trim().is_empty()),
    })
}

fn trigger_to_proto(t: &Trigger) -> v1::Trigger {
    v1::Trigger {
        event_types: t.event_types.iter().map(|e| e.as_str().to_string()).collect(),
        campaigns: t.campaigns.clone(),
        directions: t.directions.iter().map(|d| d.as_str().to_string()).collect(),
        numbers: t.numbers.clone(),
        ivr_options: t.ivr_options.clone(),
        conditions: t
            .conditions
            .iter()
            .map(|c| v1::Condition {
                path: c.path.clone(),
                op: c.op.as_str().to_string(),
                value_json: if c.value.is_null() { String::new() } else { json_to_proto(&c.value) },
            })
            .collect(),
        expression: t.expression.clone().unwrap_or_default(),
    }
}

fn request_from_proto(r: v1::Request) -> Result<RequestSpec, ValidationError> {
    let body = template_body_from_proto(r.body, "body")?;
    // Unset: the format of an inline fields body's example (an XML example sends XML).
    let content_type = if r.content_type.trim().is_empty() {
        body.as_ref().map(TemplateBody::natural_content_type).unwrap_or_default()
    } else {
        content_type_from_proto("content_type", &r.content_type)?
    };
    let method = if r.method.trim().is_empty() {
        Method::default()
    } else {
        Method::parse(&r.method).ok_or_else(|| {
            ValidationError::new("method", format!("unknown method `{}` (GET, POST, PUT, PATCH, DELETE)", r.method))
        })?
    };
    Ok(RequestSpec {
        method,
        url: r.url,
        query: r.query.into_iter().map(kv_from_proto).collect(),
        headers: r.headers.into_iter().map(kv_from_proto).collect(),
        content_type,
        time_zone: r.time_zone,
        template_id: non_empty(r.template_id),
        body,
    })
}

fn request_to_proto(r: &RequestSpec) -> v1::Request {
    v1::Request {
        method: r.method.as_str().to_string(),
        url: r.url.clone(),
        query: r.query.iter().map(kv_to_proto).collect(),
        headers: r.headers.iter().map(kv_to_proto).collect(),
        content_type: r.content_type.as_str().to_string(),
        time_zone: r.time_zone.clone(),
        template_id: r.template_id.clone().unwrap_or_default(),
        body: r.body.as_ref().map(template_body_to_proto),
    }
}

fn success_from_proto(s: v1::SuccessCondition) -> Result<SuccessCondition, ValidationError> {
    let status_codes = if s.status_codes.is_empty() {
        SuccessCondition::default().status_codes
    } else {
        s.status_codes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(StatusRange {
                    from: status_from_proto(format!("status_codes[{i}].from"), r.from)?,
                    to: status_from_proto(format!("status_codes[{i}].to"), r.to)?,
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()?
    };
    let response_value = if s.response_value_json.trim().is_empty() {
        None
    } else {
        Some(json_from_proto("response_value_json", &s.response_value_json)?)
    };
    Ok(SuccessCondition { status_codes, response_path: non_empty(s.response_path), response_value })
}

fn success_to_proto(s: &SuccessCondition) -> v1::SuccessCondition {
    v1::SuccessCondition {
        status_codes: s
            .status_codes
            .iter()
            .map(|r| v1::StatusRange { from: u32::from(r.from), to: u32::from(r.to) })
            .collect(),
        response_path: s.response_path.clone().unwrap_or_default(),
        response_value_json: s.response_value.as_ref().map(json_to_proto).unwrap_or_default(),
    }
}

fn policy_from_proto(p: v1::DeliveryPolicy) -> Result<DeliveryPolicy, ValidationError> {
    let ordering = match p.ordering.trim().to_ascii_lowercase().as_str() {
        "" | "none" => Ordering::None,
        "per_call" | "per-call" => Ordering::PerCall,
        other => {
            return Err(ValidationError::new("ordering", format!("unknown ordering `{other}` (none, per_call)")));
        }
    };
    let non_retryable_statuses = p
        .non_retryable_statuses
        .iter()
        .enumerate()
        .map(|(i, s)| status_from_proto(format!("non_retryable_statuses[{i}]"), *s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeliveryPolicy {
        timeout_ms: p.timeout_ms,
        retry_limit: p.retry_limit,
        retry_schedule: p.retry_schedule,
        total_timeout_secs: p.total_timeout_secs,
        rate_limit: p.rate_limit.map(|r| RateLimit { per_second: r.per_second, burst: r.burst }),
        max_concurrency: p.max_concurrency,
        ordering,
        non_retryable_statuses,
        retention_days: p.retention_days,
    })
}

fn policy_to_proto(p: &DeliveryPolicy) -> v1::DeliveryPolicy {
    v1::DeliveryPolicy {
        timeout_ms: p.timeout_ms,
        retry_limit: p.retry_limit,
        retry_schedule: p.retry_schedule.clone(),
        total_timeout_secs: p.total_timeout_secs,
        rate_limit: p.rate_limit.map(|r| v1::RateLimit { per_second: r.per_second, burst: r.burst }),
        max_concurrency: p.max_concurrency,
        ordering: match p.ordering {
            Ordering::None => "none",
            Ordering::PerCall => "per_call",
        }
        .to_string(),
        non_retryable_statuses: p.non_retryable_statuses.iter().map(|s| u32::from(*s)).collect(),
        retention_days: p.retention_days,
    }
}

// ---------------------------------------------------------------------------------------------
// templates

/// A template from the wire: empty group → `default`, empty content type → JSON, empty
/// timestamps → `now`; the body is required.
pub fn template_from_proto(t: v1::Template, now: DateTime<Utc>) -> Result<Template, ValidationError> {
    let body = template_body_from_proto(t.body, "body")?
        .ok_or_else(|| ValidationError::new("body", "is required (fields, pairs or text)"))?;
    // Unset: the format of a fields body's example (a template made from XML sends XML).
    let content_type = if t.content_type.trim().is_empty() {
        body.natural_content_type()
    } else {
        content_type_from_proto("content_type", &t.content_type)?
    };
    Ok(Template {
        id: t.id,
        tenant_id: t.tenant_id,
        name: t.name,
        group: if t.group.trim().is_empty() { hookmesh_core::webhook::default_group() } else { t.group },
        description: t.description,
        content_type,
        body,
        version: t.version,
        created_at: timestamp_from_proto("created_at", &t.created_at, now)?,
        updated_at: timestamp_from_proto("updated_at", &t.updated_at, now)?,
    })
}

pub fn template_to_proto(t: &Template) -> v1::Template {
    v1::Template {
        id: t.id.clone(),
        tenant_id: t.tenant_id.clone(),
        name: t.name.clone(),
        group: t.group.clone(),
        description: t.description.clone(),
        content_type: t.content_type.as_str().to_string(),
        body: Some(template_body_to_proto(&t.body)),
        version: t.version,
        created_at: timestamp_to_proto(&t.created_at),
        updated_at: timestamp_to_proto(&t.updated_at),
    }
}

/// A body from the wire; `field` is where it sits (`body`, `request.body`) and prefixes every
/// error. An absent body, or one with no kind set, is `None`.
pub fn template_body_from_proto(
    body: Option<v1::TemplateBody>,
    field: &str,
) -> Result<Option<TemplateBody>, ValidationError> {
    let Some(kind) = body.and_then(|b| b.kind) else {
        return Ok(None);
    };
    let body = match kind {
        v1::template_body::Kind::Fields(f) => TemplateBody::Fields {
            format: content_type_from_proto(&format!("{field}.format"), &f.format)?,
            example: f.example,
            fields: mappings_from_proto(f.fields, &format!("{field}.fields"))?,
        },
        v1::template_body::Kind::Pairs(p) => {
            TemplateBody::Pairs { pairs: mappings_from_proto(p.pairs, &format!("{field}.pairs"))? }
        }
        v1::template_body::Kind::Text(source) => TemplateBody::Text { source },
    };
    Ok(Some(body))
}

pub fn template_body_to_proto(b: &TemplateBody) -> v1::TemplateBody {
    let kind = match b {
        TemplateBody::Fields { format, example, fields } => v1::template_body::Kind::Fields(v1::FieldsBody {
            format: format.as_str().to_string(),
            example: example.clone(),
            fields: fields.iter().map(field_mapping_to_proto).collect(),
        }),
        TemplateBody::Pairs { pairs } => {
            v1::template_body::Kind::Pairs(v1::PairsBody { pairs: pairs.iter().map(field_mapping_to_proto).collect() })
        }
        TemplateBody::Text { source } => v1::template_body::Kind::Text(source.clone()),
    };
    v1::TemplateBody { kind: Some(kind) }
}

fn mappings_from_proto(list: Vec<v1::FieldMapping>, field: &str) -> Result<Vec<FieldMapping>, ValidationError> {
    list.into_iter().enumerate().map(|(i, m)| field_mapping_from_proto(m, &format!("{field}[{i}]"))).collect()
}

/// One mapping from the wire; `field` names it in errors (`body.fields[3]`).
pub fn field_mapping_from_proto(m: v1::FieldMapping, field: &str) -> Result<FieldMapping, ValidationError> {
    let source = match m.source.and_then(|s| s.kind) {
        Some(v1::source::Kind::Token(token)) => Source::Token { token },
        Some(v1::source::Kind::ConstantJson(json)) => {
            Source::Constant { value: json_from_proto(&format!("{field}.source.constant_json"), &json)? }
        }
        Some(v1::source::Kind::Name(_)) => Source::Name,
        None => {
            return Err(ValidationError::new(format!("{field}.source"), "is required (token, constant_json or name)"));
        }
    };
    Ok(FieldMapping { path: m.path, source })
}

pub fn field_mapping_to_proto(m: &FieldMapping) -> v1::FieldMapping {
    let kind = match &m.source {
        Source::Token { token } => v1::source::Kind::Token(token.clone()),
        Source::Constant { value } => v1::source::Kind::ConstantJson(json_to_proto(value)),
        Source::Name => v1::source::Kind::Name(true),
    };
    v1::FieldMapping { path: m.path.clone(), source: Some(v1::Source { kind: Some(kind) }) }
}

// ---------------------------------------------------------------------------------------------
// events

pub fn event_to_proto(e: &Event) -> v1::Event {
    v1::Event {
        id: e.id.clone(),
        r#type: e.event_type.as_str().to_string(),
        occurred_at: e.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        tenant_id: e.tenant_id.clone(),
        call_id: e.call_id.clone().unwrap_or_default(),
        data_json: Value::Object(e.data.clone()).to_string(),
    }
}

/// An event from the wire, validated and normalised exactly like the JSON schema.
pub fn event_from_proto(e: v1::Event) -> Result<Event, EventError> {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(e.id));
    obj.insert("type".into(), Value::String(e.r#type));
    obj.insert("occurred_at".into(), Value::String(e.occurred_at));
    obj.insert("tenant_id".into(), Value::String(e.tenant_id));
    if !e.call_id.is_empty() {
        obj.insert("call_id".into(), Value::String(e.call_id));
    }
    let data = if e.data_json.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(&e.data_json)
            .map_err(|err| EventError::new("data_json", format!("is not valid JSON: {err}")))?
    };
    obj.insert("data".into(), data);
    event_from_value(Value::Object(obj))
}

// ---------------------------------------------------------------------------------------------
// deliveries

fn attempt_trigger_str(t: AttemptTrigger) -> &'static str {
    match t {
        AttemptTrigger::Scheduled => "scheduled",
        AttemptTrigger::Retry => "retry",
        AttemptTrigger::Resend => "resend",
        AttemptTrigger::Recover => "recover",
        AttemptTrigger::Test => "test",
    }
}

pub fn delivery_to_proto(d: &Delivery) -> v1::Delivery {
    v1::Delivery {
        id: d.id.clone(),
        tenant_id: d.tenant_id.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.as_str().to_string(),
        call_id: d.call_id.clone().unwrap_or_default(),
        status: d.status.as_str().to_string(),
        created_at: timestamp_to_proto(&d.created_at),
        updated_at: timestamp_to_proto(&d.updated_at),
        attempts: d.attempts,
        next_attempt_at: opt_timestamp_to_proto(d.next_attempt_at.as_ref()),
        last_status: d.last_status.map(u32::from).unwrap_or(0),
        last_error: d.last_error.clone().unwrap_or_default(),
        last_error_class: d.last_error_class.map(|c| c.as_str().to_string()).unwrap_or_default(),
        context: d
            .request
            .context
            .as_ref()
            .and_then(|c| c.resolved.clone())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
        held_for: d.request.hold.as_ref().map(|h| h.waiting_for.clone()).unwrap_or_default(),
        hold_fired: d.request.hold.as_ref().and_then(|h| h.fired.clone()).unwrap_or_default(),
        campaign_id: d.request.call.campaign_id.clone().unwrap_or_default(),
        campaign_name: d.request.call.campaign_name.clone().unwrap_or_default(),
        direction: d.request.call.direction.clone().unwrap_or_default(),
        tracking: d.request.call.tracking.clone().unwrap_or_default(),
    }
}

pub fn attempt_to_proto(a: &Attempt) -> v1::Attempt {
    v1::Attempt {
        number: a.number,
        trigger: attempt_trigger_str(a.trigger).to_string(),
        started_at: timestamp_to_proto(&a.started_at),
        method: a.method.as_str().to_string(),
        url: a.url.clone(),
        request_headers: pairs_to_proto(&a.request_headers),
        request_body: a.request_body.clone(),
        response_status: a.response_status.map(u32::from).unwrap_or(0),
        response_headers: pairs_to_proto(&a.response_headers),
        response_body: a.response_body.clone(),
        duration_ms: a.duration_ms,
        error_class: a.error_class.map(|c| c.as_str().to_string()).unwrap_or_default(),
        error: a.error.clone().unwrap_or_default(),
        context_note: a.context_note.clone().unwrap_or_default(),
    }
}

pub fn rendered_to_proto(r: &RenderedRequest) -> v1::RenderedRequest {
    v1::RenderedRequest {
        method: r.method.as_str().to_string(),
        url: r.url.clone(),
        headers: pairs_to_proto(&r.headers),
        body: r.body.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// tenant settings

pub fn tenant_settings_to_proto(t: &TenantSettings) -> v1::TenantSettings {
    v1::TenantSettings {
        tenant_id: t.tenant_id.clone(),
        mask_personal_data: t.mask_personal_data,
        mask_fields: t.mask_fields.clone(),
        version: t.version,
        updated_at: if t.version == 0 { String::new() } else { timestamp_to_proto(&t.updated_at) },
        personal_tokens: PERSONAL_TOKENS.iter().map(|s| s.to_string()).collect(),
    }
}

/// The editable fields of `t` (tenant, version and time are the caller's to set).
pub fn tenant_settings_from_proto(t: v1::TenantSettings) -> TenantSettings {
    TenantSettings {
        mask_personal_data: t.mask_personal_data,
        mask_fields: t.mask_fields.into_iter().map(|f| f.trim().to_string()).collect(),
        ..TenantSettings::default_for(&t.tenant_id)
    }
}

// ---------------------------------------------------------------------------------------------
// token catalog

/// The token catalog, grouped by category.
pub fn tokens_to_proto() -> v1::ListTokensResponse {
    v1::ListTokensResponse {
        categories: tokens::by_category()
            .into_iter()
            .map(|(category, defs)| v1::TokenCategory {
                name: category.as_str().to_string(),
                tokens: defs
                    .into_iter()
                    .map(|d| v1::Token {
                        name: d.name.to_string(),
                        category: d.category.as_str().to_string(),
                        r#type: d.ty.as_str().to_string(),
                        description: d.description.to_string(),
                        example_json: d.example.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hookmesh_core::delivery::{DeliveryStatus, ErrorClass};
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + s, 0).single().unwrap()
    }

    fn full_webhook() -> Webhook {
        Webhook {
            id: "wh_1".into(),
            tenant_id: "acme".into(),
            name: "CRM".into(),
            description: "calls to the CRM".into(),
            enabled: false,
            trigger: Trigger {
                event_types: vec![EventType::CallEnded, EventType::CallMissed],
                campaigns: vec!["spring".into()],
                directions: vec![Direction::Inbound, Direction::ClickToCall],
                numbers: vec!["+1 555 0100".into()],
                ivr_options: vec!["Sales".into()],
                conditions: vec![
                    Condition { path: "data.tags.region".into(), op: ConditionOp::Eq, value: json!("south") },
                    Condition { path: "duration".into(), op: ConditionOp::In, value: json!([1, 2]) },
                    Condition { path: "ani".into(), op: ConditionOp::Exists, value: Value::Null },
                ],
                expression: Some("call.duration > 30 && !(tags.region == \"north\")".into()),
            },
            request: RequestSpec {
                method: Method::Put,
                url: "https://crm.example.com/calls/{{ callid }}".into(),
                query: vec![KeyValue { name: "src".into(), value: "hookmesh".into() }],
                headers: vec![KeyValue { name: "Authorization".into(), value: "Bearer x".into() }],
                content_type: ContentType::Xml,
                time_zone: "America/New_York".into(),
                template_id: Some("tpl_1".into()),
                body: Some(TemplateBody::Fields {
                    format: ContentType::Xml,
                    example: "<call><id>1</id><n>x</n><k>y</k></call>".into(),
                    fields: vec![
                        FieldMapping { path: "call.id".into(), source: Source::Token { token: "callid".into() } },
                        FieldMapping { path: "call.n".into(), source: Source::Constant { value: json!({"a": [1]}) } },
                        FieldMapping { path: "call.k".into(), source: Source::Name },
                    ],
                }),
            },
            success: SuccessCondition {
                status_codes: vec![StatusRange { from: 200, to: 299 }, StatusRange { from: 302, to: 302 }],
                response_path: Some("result.ok".into()),
                response_value: Some(json!(true)),
            },
            policy: DeliveryPolicy {
                timeout_ms: Some(5000),
                retry_limit: Some(3),
                retry_schedule: vec![5, 60, 600],
                total_timeout_secs: Some(86400),
                rate_limit: Some(RateLimit { per_second: 2.5, burst: 5 }),
                max_concurrency: Some(4),
                ordering: Ordering::PerCall,
                non_retryable_statuses: vec![400, 422],
                retention_days: Some(14),
            },
            secrets: vec![],
            signature_schemes: vec![SignatureScheme::V1, SignatureScheme::V1a],
            context: hookmesh_core::context::ContextSpec {
                captures: vec![hookmesh_core::context::Capture { name: "lead_id".into(), path: "$.data.id".into() }],
                wait_ms: Some(45_000),
                defaults: vec![KeyValue { name: "lead_id".into(), value: "unknown".into() }],
                wait_for: vec!["recording_url".into(), "transcript".into()],
                max_wait_ms: Some(20 * 60 * 1000),
            },
            version: 7,
            created_at: t(0),
            updated_at: t(3600),
        }
    }

    #[test]
    fn webhook_round_trips() {
        let w = full_webhook();
        let back = webhook_from_proto(webhook_to_proto(&w), t(99_999)).unwrap();
        assert_eq!(back, w);

        // Other body kinds too.
        let mut w2 = w.clone();
        w2.request.body = Some(TemplateBody::Pairs {
            pairs: vec![FieldMapping { path: "caller".into(), source: Source::Token { token: "ani".into() } }],
        });
        w2.request.template_id = None;
        w2.success.response_value = None;
        w2.success.response_path = None;
        w2.policy = DeliveryPolicy::default();
        assert_eq!(webhook_from_proto(webhook_to_proto(&w2), t(5)).unwrap(), w2);
        w2.request.body = Some(TemplateBody::Text { source: "{{ callid }}".into() });
        assert_eq!(webhook_from_proto(webhook_to_proto(&w2), t(5)).unwrap(), w2);
    }

    #[test]
    fn secrets_travel_as_prefixes_only() {
        let mut w = full_webhook();
        w.secrets = vec![
            SigningSecret {
                secret: "whsec_abcdefghijklmnopqrstuvwxyz".into(),
                created_at: t(0),
                expires_at: Some(t(10)),
            },
            SigningSecret { secret: "whsec_zyxwvutsrq".into(), created_at: t(5), expires_at: None },
        ];
        let p = webhook_to_proto(&w);
        assert_eq!(p.secrets[0].prefix, "whsec_abcd…");
        assert_eq!(p.secrets[0].expires_at, "2026-01-01T00:00:10Z");
        assert_eq!(p.secrets[1].expires_at, "");
        let text = format!("{p:?}");
        assert!(!text.contains("abcdefghijklmnop"), "{text}");
        // Never taken back from the wire.
        assert!(webhook_from_proto(p, t(0)).unwrap().secrets.is_empty());
    }

    #[test]
    fn v1a_keys_travel_as_public_keys_only() {
        let mut w = full_webhook();
        let key = hookmesh_core::signing::generate_signing_key();
        w.secrets = vec![
            SigningSecret { secret: "whsec_abcdefghijklmnopqrstuvwxyz".into(), created_at: t(0), expires_at: None },
            SigningSecret { secret: key.clone(), created_at: t(1), expires_at: Some(t(9)) },
        ];
        let p = webhook_to_proto(&w);
        assert_eq!(p.signature_schemes, ["v1", "v1a"]);
        assert_eq!(p.secrets.len(), 1, "only the v1 secret is listed as a secret");
        assert_eq!(p.public_keys.len(), 1);
        assert_eq!(p.public_keys[0].key, hookmesh_core::signing::public_key(&key).unwrap());
        assert_eq!(p.public_keys[0].expires_at, "2026-01-01T00:00:09Z");
        let text = format!("{p:?}");
        assert!(!text.contains("whsk_") && !text.contains(&key[5..20]), "{text}");
        // Schemes from the wire: empty is v1; unknown ones name the entry.
        assert_eq!(signature_schemes_from_proto(&[]).unwrap(), [SignatureScheme::V1]);
        let e = signature_schemes_from_proto(&["v1a".into(), "v2".into()]).unwrap_err();
        assert_eq!(e.field, "signature_schemes[1]");
    }

    #[test]
    fn empty_wire_fields_take_defaults() {
        let p = v1::Webhook {
            tenant_id: "acme".into(),
            name: "n".into(),
            enabled: true,
            request: Some(v1::Request { url: "https://x.example".into(), ..Default::default() }),
            success: Some(v1::SuccessCondition::default()),
            policy: Some(v1::DeliveryPolicy::default()),
            ..Default::default()
        };
        let w = webhook_from_proto(p, t(42)).unwrap();
        assert_eq!(w.id, "");
        assert_eq!(w.request.method, Method::Post);
        assert_eq!(w.request.content_type, ContentType::default());
        assert_eq!(w.request.template_id, None);
        assert_eq!(w.request.body, None);
        assert_eq!(w.success, SuccessCondition::default());
        assert_eq!(w.policy, DeliveryPolicy::default());
        assert_eq!(w.created_at, t(42));
        assert_eq!(w.updated_at, t(42));
    }

    fn field_of(p: v1::Webhook) -> String {
        webhook_from_proto(p, t(0)).unwrap_err().field
    }

    #[test]
    fn bad_wire_values_name_their_field() {
        let base = webhook_to_proto(&full_webhook());

        let mut p = base.clone();
        p.trigger.as_mut().unwrap().event_types[1] = "call.exploded".into();
        let err = webhook_from_proto(p, t(0)).unwrap_err();
        assert_eq!(err.field, "trigger.event_types[1]");
        assert_eq!(err.message, "unknown event type `call.exploded`");

        let mut p = base.clone();
        p.trigger.as_mut().unwrap().directions[0] = "sideways".into();
        assert_eq!(field_of(p), "trigger.directions[0]");

        let mut p = base.clone();
        p.trigger.as_mut().unwrap().conditions[1].op = "like".into();
        assert_eq!(field_of(p), "trigger.conditions[1].op");

        let mut p = base.clone();
        p.trigger.as_mut().unwrap().conditions[0].value_json = "{nope".into();
        assert_eq!(field_of(p), "trigger.conditions[0].value_json");

        let mut p = base.clone();
        p.request.as_mut().unwrap().method = "FETCH".into();
        assert_eq!(field_of(p), "request.method");

        let mut p = base.clone();
        p.request.as_mut().unwrap().content_type = "yaml".into();
        assert_eq!(field_of(p), "request.content_type");

        let mut p = base.clone();
        if let Some(v1::template_body::Kind::Fields(f)) =
            p.request.as_mut().unwrap().body.as_mut().unwrap().kind.as_mut()
        {
            f.fields[1].source = Some(v1::Source { kind: Some(v1::source::Kind::ConstantJson("[1,".into())) });
        }
        assert_eq!(field_of(p), "request.body.fields[1].source.constant_json");

        let mut p = base.clone();
        if let Some(v1::template_body::Kind::Fields(f)) =
            p.request.as_mut().unwrap().body.as_mut().unwrap().kind.as_mut()
        {
            f.fields[0].source = None;
        }
        assert_eq!(field_of(p), "request.body.fields[0].source");

        let mut p = base.clone();
        if let Some(v1::template_body::Kind::Fields(f)) =
            p.request.as_mut().unwrap().body.as_mut().unwrap().kind.as_mut()
        {
            f.format = "csv".into();
        }
        assert_eq!(field_of(p), "request.body.format");

        let mut p = base.clone();
        p.success.as_mut().unwrap().status_codes[1].to = 70_000;
        assert_eq!(field_of(p), "success.status_codes[1].to");

        let mut p = base.clone();
        p.success.as_mut().unwrap().response_value_json = "tru".into();
        assert_eq!(field_of(p), "success.response_value_json");

        let mut p = base.clone();
        p.policy.as_mut().unwrap().ordering = "fifo".into();
        assert_eq!(field_of(p), "policy.ordering");

        let mut p = base.clone();
        p.policy.as_mut().unwrap().non_retryable_statuses = vec![400, 1000];
        assert_eq!(field_of(p), "policy.non_retryable_statuses[1]");

        let mut p = base.clone();
        p.created_at = "yesterday".into();
        assert_eq!(field_of(p), "created_at");
    }

    #[test]
    fn rate_limit_is_absent_without_the_message() {
        let mut p = webhook_to_proto(&full_webhook());
        p.policy.as_mut().unwrap().rate_limit = None;
        assert_eq!(webhook_from_proto(p, t(0)).unwrap().policy.rate_limit, None);
    }

    #[test]
    fn template_round_trips() {
        let tpl = Template {
            id: "tpl_1".into(),
            tenant_id: "acme".into(),
            name: "CRM body".into(),
            group: "crm".into(),
            description: "d".into(),
            content_type: ContentType::Form,
            body: TemplateBody::Pairs {
                pairs: vec![
                    FieldMapping { path: "caller".into(), source: Source::Token { token: "ani".into() } },
                    FieldMapping { path: "src".into(), source: Source::Constant { value: json!("hookmesh") } },
                ],
            },
            version: 2,
            created_at: t(1),
            updated_at: t(2),
        };
        assert_eq!(template_from_proto(template_to_proto(&tpl), t(9)).unwrap(), tpl);

        let mut p = template_to_proto(&tpl);
        p.group = String::new();
        p.created_at = String::new();
        let back = template_from_proto(p, t(9)).unwrap();
        assert_eq!(back.group, "default");
        assert_eq!(back.created_at, t(9));

        let mut p = template_to_proto(&tpl);
        p.body = None;
        assert_eq!(template_from_proto(p, t(0)).unwrap_err().field, "body");
        let mut p = template_to_proto(&tpl);
        p.content_type = "yaml".into();
        assert_eq!(template_from_proto(p, t(0)).unwrap_err().field, "content_type");
        let mut p = template_to_proto(&tpl);
        if let Some(v1::template_body::Kind::Pairs(pb)) = p.body.as_mut().unwrap().kind.as_mut() {
            pb.pairs[1].source = Some(v1::Source { kind: Some(v1::source::Kind::ConstantJson("x".into())) });
        }
        assert_eq!(template_from_proto(p, t(0)).unwrap_err().field, "body.pairs[1].source.constant_json");
    }

    #[test]
    fn events_round_trip_and_are_validated() {
        let e = event_from_value(json!({
            "id": "evt_1", "type": "hangup", "occurred_at": "2026-01-01T12:00:00+02:00",
            "tenant_id": "acme", "call_id": "c1", "data": {"ani": "5551234", "direction": "incoming"}
        }))
        .unwrap();
        let p = event_to_proto(&e);
        assert_eq!(p.r#type, "call.ended");
        assert_eq!(p.occurred_at, "2026-01-01T10:00:00Z");
        assert_eq!(event_from_proto(p).unwrap(), e);

        let p = v1::Event {
            id: "e".into(),
            r#type: "call.nope".into(),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            tenant_id: "t".into(),
            call_id: "c".into(),
            data_json: String::new(),
        };
        assert_eq!(event_from_proto(p.clone()).unwrap_err().field, "type");
        let p2 = v1::Event { r#type: "call.ended".into(), call_id: String::new(), ..p.clone() };
        assert_eq!(event_from_proto(p2).unwrap_err().field, "call_id");
        let p3 = v1::Event { r#type: "call.ended".into(), data_json: "[".into(), ..p.clone() };
        assert_eq!(event_from_proto(p3).unwrap_err().field, "data_json");
        let p4 = v1::Event { r#type: "call.ended".into(), data_json: "[]".into(), ..p };
        assert_eq!(event_from_proto(p4).unwrap_err().field, "data");
    }

    #[test]
    fn deliveries_and_attempts() {
        let e = hookmesh_core::tokens::sample_event();
        let req = RenderedRequest {
            delivery_id: "msg_1".into(),
            webhook_id: "wh_1".into(),
            webhook_version: 1,
            tenant_id: "acme".into(),
            event_id: e.id.clone(),
            event_type: e.event_type,
            call_id: e.call_id.clone(),
            call: hookmesh_core::delivery::CallInfo::of(&e),
            first_trigger_at: t(0),
            method: Method::Post,
            url: "https://x.example/h".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{}".into(),
            success: SuccessCondition::default(),
            policy: DeliveryPolicy::default(),
            render_error: None,
            traceparent: None,
            personal: Vec::new(),
            context: None,
            hold: None,
            data_points: None,
        };
        let r = rendered_to_proto(&req);
        assert_eq!((r.method.as_str(), r.headers[0].name.as_str(), r.body.as_str()), ("POST", "content-type", "{}"));
        let mut d = Delivery::new(req, t(1));
        d.status = DeliveryStatus::Retrying;
        d.last_status = Some(503);
        d.next_attempt_at = Some(t(60));
        let p = delivery_to_proto(&d);
        assert_eq!(p.status, "retrying");
        assert_eq!(p.event_type, "call.ended");
        assert_eq!(p.last_status, 503);
        assert_eq!(p.next_attempt_at, "2026-01-01T00:01:00Z");
        assert_eq!(p.last_error, "");

        let a = Attempt {
            number: 2,
            trigger: AttemptTrigger::Resend,
            started_at: t(5),
            method: Method::Post,
            url: "https://x.example/h".into(),
            request_headers: vec![("webhook-id".into(), "msg_1".into())],
            request_body: "{}".into(),
            response_status: None,
            response_headers: vec![],
            response_body: String::new(),
            duration_ms: 10_000,
            error_class: Some(ErrorClass::Timeout),
            error: Some("timed out".into()),
            context_note: Some("context: captured lead_id".into()),
        };
        let p = attempt_to_proto(&a);
        assert_eq!((p.trigger.as_str(), p.response_status, p.error_class.as_str()), ("resend", 0, "timeout"));
        assert_eq!(p.context_note, "context: captured lead_id");
    }

    #[test]
    fn token_catalog_is_grouped() {
        let t = tokens_to_proto();
        assert!(!t.categories.is_empty());
        let all: Vec<&v1::Token> = t.categories.iter().flat_map(|c| &c.tokens).collect();
        assert!(all.iter().any(|tok| tok.name == "ani"));
        for c in &t.categories {
            for tok in &c.tokens {
                assert_eq!(tok.category, c.name);
                serde_json::from_str::<Value>(&tok.example_json).unwrap();
            }
        }
    }
}
