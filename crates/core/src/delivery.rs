//! What flows between the stages and what the delivery log keeps.
//!
//! A delivery is one (webhook, event) pair. Its id is derived from both, so a job routed twice
//! after a crash is the same delivery with the same `webhook-id` header, and receivers can
//! deduplicate on it. Its `created_at` is the first trigger and never changes.

use crate::event::{Event, EventType};
use crate::webhook::{DeliveryPolicy, Method, SuccessCondition};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Stored response bodies are cut at this many bytes.
pub const MAX_STORED_RESPONSE_BYTES: usize = 16 * 1024;

/// The stable delivery id (`msg_` + 26 hex chars) of a webhook and an event.
pub fn delivery_id(webhook_id: &str, event_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(webhook_id.as_bytes());
    h.update([0]);
    h.update(event_id.as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(30);
    s.push_str("msg_");
    for b in &d[..13] {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Router → renderer: one matching webhook for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub delivery_id: String,
    pub webhook_id: String,
    pub webhook_version: u64,
    pub tenant_id: String,
    pub event: Event,
    pub first_trigger_at: DateTime<Utc>,
    /// A data-point job: the event carries data points the webhook holds deliveries for
    /// ([`crate::enrich`]); it is merged into the call's context, never sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_points: bool,
}

impl DeliveryJob {
    pub fn new(webhook_id: &str, webhook_version: u64, event: Event, now: DateTime<Utc>) -> Self {
        DeliveryJob {
            delivery_id: delivery_id(webhook_id, &event.id),
            webhook_id: webhook_id.to_string(),
            webhook_version,
            tenant_id: event.tenant_id.clone(),
            event,
            first_trigger_at: now,
            data_points: false,
        }
    }

    /// The data-point job of an event for a webhook that waits for some of its data points.
    pub fn data_points(webhook_id: &str, webhook_version: u64, event: Event, now: DateTime<Utc>) -> Self {
        DeliveryJob { data_points: true, ..DeliveryJob::new(webhook_id, webhook_version, event, now) }
    }

    /// `webhook_id/call_id`: keeps one call's order within a webhook while spreading a busy
    /// webhook across partitions.
    pub fn key(&self) -> String {
        format!("{}/{}", self.webhook_id, self.event.partition_key())
    }
}

/// What the delivery log keeps about the call behind a delivery, from the event's data points
/// `campaign_id`, `campaign_name`, `direction` (canonical spelling) and `tracking`; the log can
/// be filtered by each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The tracking (DID) number the caller dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
}

impl CallInfo {
    pub fn of(event: &Event) -> CallInfo {
        let get = |key: &str| event.data_str(key).filter(|s| !s.trim().is_empty());
        CallInfo {
            campaign_id: get("campaign_id"),
            campaign_name: get("campaign_name"),
            direction: get("direction"),
            tracking: get("tracking"),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == CallInfo::default()
    }
}

/// Renderer → dispatcher: exactly what to send (unsigned; signing happens at send time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedRequest {
    pub delivery_id: String,
    pub webhook_id: String,
    /// Registry version of the webhook this was rendered with.
    #[serde(default)]
    pub webhook_version: u64,
    pub tenant_id: String,
    pub event_id: String,
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The call's campaign, direction and tracking number.
    #[serde(default, skip_serializing_if = "CallInfo::is_empty")]
    pub call: CallInfo,
    pub first_trigger_at: DateTime<Utc>,
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub success: SuccessCondition,
    pub policy: DeliveryPolicy,
    /// Set when rendering failed: the delivery is logged as an error with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_error: Option<String>,
    /// W3C trace context of the event's trace; sent to the receiver as `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's personal values when the tenant masks them in stored logs
    /// ([`crate::privacy`]); never stored in clear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal: Vec<String>,
    /// The call-context values the request uses ([`crate::context`]): resolved by the
    /// dispatcher before the first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<crate::context::ContextUse>,
    /// Post-call enrichment ([`crate::enrich`]): the delivery is held for data points of later
    /// events, and rendered (URL, headers and body filled) only when it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<crate::enrich::Hold>,
    /// Set on a data-point job's request: the data points (JSON text) to merge into the call's
    /// context; nothing is sent or logged for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_points: Option<std::collections::BTreeMap<String, String>>,
}

impl RenderedRequest {
    pub fn key(&self) -> String {
        format!("{}/{}", self.webhook_id, self.call_id.as_deref().unwrap_or(&self.event_id))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Success,
    Retrying,
    Error,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pending" => Some(DeliveryStatus::Pending),
            "success" => Some(DeliveryStatus::Success),
            "retrying" => Some(DeliveryStatus::Retrying),
            "error" | "failed" => Some(DeliveryStatus::Error),
            _ => None,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Connect,
    Timeout,
    Tls,
    Status,
    ResponseCondition,
    /// The receiver's address is not allowed (SSRF guard).
    Blocked,
    Render,
    /// The total timeout passed before the attempt could start.
    Expired,
    /// A call-context value the request uses was not captured within the webhook's wait.
    Context,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Tls => "tls",
            ErrorClass::Status => "status",
            ErrorClass::ResponseCondition => "response_condition",
            ErrorClass::Blocked => "blocked",
            ErrorClass::Render => "render",
            ErrorClass::Expired => "expired",
            ErrorClass::Context => "context",
        }
    }
}

/// What started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttemptTrigger {
    #[default]
    Scheduled,
    Retry,
    Resend,
    Recover,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub trigger: AttemptTrigger,
    pub started_at: DateTime<Utc>,
    pub method: Method,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u16>,
    #[serde(default)]
    pub response_headers: Vec<(String, String)>,
    #[serde(default)]
    pub response_body: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the attempt captured into the call's context, or why it captured nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_note: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error_class.is_none()
    }
}

/// Cuts a response body to [`MAX_STORED_RESPONSE_BYTES`] on a character boundary.
pub fn truncate_body(body: &[u8]) -> String {
    let cut = body.len().min(MAX_STORED_RESPONSE_BYTES);
    let mut s = String::from_utf8_lossy(&body[..cut]).into_owned();
    if body.len() > cut {
        // A cut in the middle of a multi-byte character leaves a replacement char; fine.
        s.push_str("…[truncated]");
    }
    s
}

/// A delivery in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub status: DeliveryStatus,
    /// First trigger; never changes.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The class of `last_error`: the last attempt's, `render` when the request could not be
    /// rendered (no attempt is made), `expired` when the total timeout passed first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_class: Option<ErrorClass>,
    /// A send slot reserved under the endpoint's rate limit, when the delivery waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_at: Option<DateTime<Utc>>,
    /// As stored: masked when the tenant masks personal data ([`crate::privacy`]).
    pub request: RenderedRequest,
    /// The request as it must be sent again, sealed under the master key, when `request`
    /// is a masked copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_request: Option<String>,
}

impl Delivery {
    pub fn new(request: RenderedRequest, now: DateTime<Utc>) -> Self {
        Delivery {
            id: request.delivery_id.clone(),
            tenant_id: request.tenant_id.clone(),
            webhook_id: request.webhook_id.clone(),
            event_id: request.event_id.clone(),
            event_type: request.event_type,
            call_id: request.call_id.clone(),
            status: DeliveryStatus::Pending,
            created_at: request.first_trigger_at,
            updated_at: now,
            attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            last_error_class: None,
            slot_at: None,
            request,
            sealed_request: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let a = delivery_id("wh1", "evt1");
        assert_eq!(a, delivery_id("wh1", "evt1"));
        assert_ne!(a, delivery_id("wh1", "evt2"));
        assert_ne!(delivery_id("wh1e", "vt1"), a);
        assert!(a.starts_with("msg_") && a.len() == 30);
    }

    #[test]
    fn response_bodies_are_truncated() {
        let big = vec![b'a'; MAX_STORED_RESPONSE_BYTES * 2];
        let s = truncate_body(&big);
        assert!(s.len() < MAX_STORED_RESPONSE_BYTES + 20 && s.ends_with("[truncated]"));
        assert_eq!(truncate_body(b"ok"), "ok");
    }
}
