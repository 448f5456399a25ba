//! Webhooks (subscriptions) and templates as stored in the configuration registry, with the
//! checks a management write must pass. Every check names the field it refused
//! (`request.url`, `trigger.event_types[1]`, `policy.retry_schedule[0]`).

use crate::error::ValidationError;
use crate::event::{Direction, EventType};
use crate::template::{CompiledTemplate, ContentType, InlineTemplate, TemplateBody};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Longest accepted URL (before rendering).
pub const MAX_URL_LEN: usize = 2048;
/// Most custom headers a webhook may set.
pub const MAX_HEADERS: usize = 32;
/// Longest header value.
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Longest name, description, id.
pub const MAX_NAME_LEN: usize = 200;

/// Headers a webhook may not set: hop-by-hop headers, headers the HTTP client owns, and the
/// Standard Webhooks signature headers that the dispatcher writes at send time.
pub const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "PATCH" => Some(Method::Patch),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    /// GET and DELETE carry the mapped fields as query parameters instead of a body.
    pub fn carries_body(self) -> bool {
        !matches!(self, Method::Get | Method::Delete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Eq,
    Ne,
    In,
    Prefix,
    Exists,
}

impl ConditionOp {
    pub fn parse(s: &str) -> Option<ConditionOp> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eq" | "=" | "==" => Some(ConditionOp::Eq),
            "ne" | "!=" => Some(ConditionOp::Ne),
            "in" => Some(ConditionOp::In),
            "prefix" => Some(ConditionOp::Prefix),
            "exists" => Some(ConditionOp::Exists),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConditionOp::Eq => "eq",
            ConditionOp::Ne => "ne",
            ConditionOp::In => "in",
            ConditionOp::Prefix => "prefix",
            ConditionOp::Exists => "exists",
        }
    }
}

/// A generic attribute condition: `path` is a token name or a dotted path into the event
/// (`data.tags.region`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub path: String,
    pub op: ConditionOp,
    #[serde(default)]
    pub value: Value,
}

/// Which events a webhook wants. Every list is optional (empty = any) and all are AND-combined.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Trigger {
    pub event_types: Vec<EventType>,
    /// Campaign ids or names.
    pub campaigns: Vec<String>,
    pub directions: Vec<Direction>,
    /// Tracking (DID) numbers; compared on digits only.
    pub numbers: Vec<String>,
    /// IVR option pressed (`1`) or its label (`Sales`).
    pub ivr_options: Vec<String>,
    pub conditions: Vec<Condition>,
    /// A CEL expression over the event that must hold as well ([`crate::expression`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

/// What the request looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    #[serde(default)]
    pub method: Method,
    pub url: String,
    #[serde(default)]
    pub query: Vec<KeyValue>,
    #[serde(default)]
    pub headers: Vec<KeyValue>,
    #[serde(default)]
    pub content_type: ContentType,
    /// IANA time zone for rendered times; UTC when empty.
    #[serde(default)]
    pub time_zone: String,
    /// A registry template of the same tenant; takes precedence over `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// An inline body template; when neither is set the body is the event itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<TemplateBody>,
}

/// An inclusive range of accepted status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

/// When a response counts as delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessCondition {
    #[serde(default = "default_status_ranges")]
    pub status_codes: Vec<StatusRange>,
    /// Dotted JSON path into the response body (`result.ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_path: Option<String>,
    /// Value the path must hold (compared as JSON; a string `"true"` matches `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_value: Option<Value>,
}

fn default_status_ranges() -> Vec<StatusRange> {
    vec![StatusRange { from: 200, to: 299 }]
}

impl Default for SuccessCondition {
    fn default() -> Self {
        SuccessCondition { status_codes: default_status_ranges(), response_path: None, response_value: None }
    }
}

impl SuccessCondition {
    pub fn status_ok(&self, status: u16) -> bool {
        self.status_codes.iter().any(|r| (r.from..=r.to).contains(&status))
    }

    /// Checks the response-body condition; `Err` says why it failed.
    pub fn body_ok(&self, body: &[u8]) -> Result<(), String> {
        let Some(path) = &self.response_path else { return Ok(()) };
        let doc: Value =
            serde_json::from_slice(body).map_err(|_| format!("response body is not JSON, expected `{path}`"))?;
        let cur = crate::context::response_value(&doc, path).ok_or_else(|| format!("response has no `{path}`"))?;
        let Some(expected) = &self.response_value else { return Ok(()) };
        let matches = cur == expected
            || match (cur, expected) {
                (Value::Bool(b), Value::String(s)) | (Value::String(s), Value::Bool(b)) => s == &b.to_string(),
                (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => s == &n.to_string(),
                _ => false,
            };
        if matches {
            Ok(())
        } else {
            Err(format!("response `{path}` is {cur}, expected {expected}"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    #[default]
    None,
    PerCall,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// How hard to try. Unset values fall back to the defaults below.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryPolicy {
    /// Per-attempt timeout in milliseconds (default 10 s, at most 60 s).
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt (default: the schedule's length).
    pub retry_limit: Option<u32>,
    /// Delays in seconds before each retry; the first attempt is always immediate (default
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). Past its end the last delay repeats.
    pub retry_schedule: Vec<u64>,
    /// No attempt starts after first trigger + this many seconds (default 3 days).
    pub total_timeout_secs: Option<u64>,
    pub rate_limit: Option<RateLimit>,
    pub max_concurrency: Option<u32>,
    pub ordering: Ordering,
    /// Status codes that are failures but never worth retrying.
    pub non_retryable_statuses: Vec<u16>,
    /// Days the delivery log keeps this webhook's deliveries (with their attempts), counted
    /// from the first trigger; unset: the deployment's retention. The shorter of the two wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RETRY_SCHEDULE: &[u64] = &[5, 300, 1800, 7200, 18000, 36000, 36000];
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(3 * 24 * 3600);
/// Longest per-webhook log retention, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

impl DeliveryPolicy {
    pub fn timeout(&self) -> Duration {
        self.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT).min(MAX_TIMEOUT)
    }

    pub fn schedule(&self) -> &[u64] {
        if self.retry_schedule.is_empty() {
            DEFAULT_RETRY_SCHEDULE
        } else {
            &self.retry_schedule
        }
    }

    pub fn retry_limit(&self) -> u32 {
        self.retry_limit.unwrap_or(self.schedule().len() as u32)
    }

    pub fn total_timeout(&self) -> Duration {
        self.total_timeout_secs.map(Duration::from_secs).unwrap_or(DEFAULT_TOTAL_TIMEOUT)
    }
}

/// A Standard Webhooks signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// HMAC-SHA256 under a shared `whsec_` secret.
    V1,
    /// ed25519 under a `whsk_` key; receivers verify with its `whpk_` public key.
    V1a,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::V1 => "v1",
            SignatureScheme::V1a => "v1a",
        }
    }

    pub fn parse(s: &str) -> Option<SignatureScheme> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "hmac" => Some(SignatureScheme::V1),
            "v1a" | "ed25519" => Some(SignatureScheme::V1a),
            _ => None,
        }
    }

    /// The scheme a stored secret belongs to, by its prefix.
    pub fn of_secret(secret: &str) -> SignatureScheme {
        if secret.starts_with(crate::signing::SIGNING_KEY_PREFIX) {
            SignatureScheme::V1a
        } else {
            SignatureScheme::V1
        }
    }
}

fn default_schemes() -> Vec<SignatureScheme> {
    vec![SignatureScheme::V1]
}

/// A signing secret (`whsec_`, scheme `v1`) or signing key (`whsk_`, scheme `v1a`).
/// `expires_at` is set when a rotation retires it (grace period).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("secret", &"whsec_…")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A subscription: who wants which events, and how to deliver them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub trigger: Trigger,
    pub request: RequestSpec,
    #[serde(default)]
    pub success: SuccessCondition,
    #[serde(default)]
    pub policy: DeliveryPolicy,
    #[serde(default)]
    pub secrets: Vec<SigningSecret>,
    /// Which schemes sign each request (one `webhook-signature` entry per active key of each);
    /// `v1` alone unless set.
    #[serde(default = "default_schemes")]
    pub signature_schemes: Vec<SignatureScheme>,
    /// Call context: values this webhook captures from responses, how long its requests wait
    /// for values others capture, and fallbacks ([`crate::context`]).
    #[serde(default, skip_serializing_if = "crate::context::ContextSpec::is_empty")]
    pub context: crate::context::ContextSpec,
    /// Registry version: 1 on create, +1 on every change.
    #[serde(default)]
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn yes() -> bool {
    true
}

impl Webhook {
    /// Secrets that still sign at `now`.
    pub fn active_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningSecret> {
        self.secrets.iter().filter(move |s| s.expires_at.is_none_or(|e| e > now))
    }

    /// Secrets that sign at `now`: active, and of a scheme the webhook has switched on.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &SigningSecret> {
        self.active_secrets(now).filter(|s| self.signature_schemes.contains(&SignatureScheme::of_secret(&s.secret)))
    }

    /// Whether a scheme has a secret that is not retiring (the one a rotation replaces).
    pub fn has_current_secret(&self, scheme: SignatureScheme) -> bool {
        self.secrets.iter().any(|s| s.expires_at.is_none() && SignatureScheme::of_secret(&s.secret) == scheme)
    }
}

/// A reusable body definition shared inside a template group of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub content_type: ContentType,
    pub body: TemplateBody,
    #[serde(default)]
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn default_group() -> String {
    "default".to_string()
}

fn check_name(field: &str, value: &str, required: bool) -> Result<(), ValidationError> {
    if required && value.trim().is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(field, format!("is longer than {MAX_NAME_LEN} characters")));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// Checks an id a client chose (or that we generated): letters, digits, `-`, `_`, `.`.
pub fn check_id(field: &str, value: &str) -> Result<(), ValidationError> {
    check_name(field, value, true)?;
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(ValidationError::new(field, "may only contain letters, digits, `-`, `_` and `.`"));
    }
    Ok(())
}

/// Longest Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// A Kafka destination: `kafka://<connection>/<topic>`, the connection a name the
/// deployment configured (never brokers: see the dispatcher's `kafka` module), the topic a
/// fixed Kafka topic name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUrl {
    pub connection: String,
    pub topic: String,
}

/// Parses a `kafka://` URL; `Ok(None)` for any other scheme.
pub fn kafka_url(field: &str, raw: &str) -> Result<Option<KafkaUrl>, ValidationError> {
    let Some(rest) = raw.strip_prefix("kafka://") else { return Ok(None) };
    let Some((connection, topic)) = rest.split_once('/') else {
        return Err(ValidationError::new(field, format!("`{raw}` is not kafka://<connection>/<topic>")));
    };
    if connection.is_empty() || !connection.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
        return Err(ValidationError::new(
            field,
            format!("`{connection}` is not a Kafka destination name (letters, digits, `-`, `_`; brokers cannot be named here)"),
        ));
    }
    if topic.is_empty()
        || topic.len() > MAX_TOPIC_LEN
        || topic == "."
        || topic == ".."
        || !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ValidationError::new(
            field,
            format!("`{topic}` is not a Kafka topic name (1 to {MAX_TOPIC_LEN} of letters, digits, `.`, `_`, `-`; no tokens)"),
        ));
    }
    Ok(Some(KafkaUrl { connection: connection.to_string(), topic: topic.to_string() }))
}

/// Checks a URL as configured (tokens allowed in path and query, not in scheme or host).
/// `kafka://<connection>/<topic>` names a Kafka destination ([`kafka_url`]).
pub fn check_url(field: &str, raw: &str) -> Result<url::Url, ValidationError> {
    if raw.trim().is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(ValidationError::new(field, format!("is longer than {MAX_URL_LEN} characters")));
    }
    if kafka_url(field, raw)?.is_some() {
        return url::Url::parse(raw).map_err(|e| ValidationError::new(field, format!("`{raw}` is not a URL ({e})")));
    }
    // Tokens are checked by InlineTemplate; replace them by a placeholder to parse the rest.
    let probe = raw.replace("{{", "x").replace("}}", "x").replace('%', "x");
    let url =
        url::Url::parse(&probe).map_err(|e| ValidationError::new(field, format!("`{raw}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ValidationError::new(
            field,
            format!("scheme `{}` is not http, https or kafka (kafka://<connection>/<topic>)", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(ValidationError::new(field, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ValidationError::new(field, "must not contain credentials (use a header)"));
    }
    if url.fragment().is_some() {
        return Err(ValidationError::new(field, "must not contain a fragment"));
    }
    Ok(url)
}

/// Header name: an RFC 7230 token, not reserved.
pub fn check_header(field: &str, name: &str, value: &str) -> Result<(), ValidationError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
        return Err(ValidationError::new(format!("{field}.name"), format!("`{name}` is not a valid header name")));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ValidationError::new(
            format!("{field}.name"),
            format!("`{name}` is set by hookmesh and cannot be overridden"),
        ));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(ValidationError::new(
            format!("{field}.value"),
            format!("is longer than {MAX_HEADER_VALUE_LEN} bytes"),
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ValidationError::new(format!("{field}.value"), "must not contain CR, LF or NUL"));
    }
    Ok(())
}

pub fn parse_time_zone(field: &str, tz: &str) -> Result<chrono_tz::Tz, ValidationError> {
    if tz.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    tz.parse::<chrono_tz::Tz>()
        .map_err(|_| ValidationError::new(field, format!("`{tz}` is not an IANA time zone (e.g. America/New_York)")))
}

impl Webhook {
    /// Checks everything that does not need the registry (template references are checked by
    /// the registry, which knows the tenant's templates).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("tenant_id", &self.tenant_id)?;
        check_name("name", &self.name, true)?;
        if self.description.len() > 4096 {
            return Err(ValidationError::new("description", "is longer than 4096 characters"));
        }
        self.trigger.validate().map_err(|e| e.under("trigger"))?;
        self.request.validate().map_err(|e| e.under("request"))?;
        self.success.validate().map_err(|e| e.under("success"))?;
        self.policy.validate().map_err(|e| e.under("policy"))?;
        self.context.validate()?;
        if self.signature_schemes.is_empty() {
            return Err(ValidationError::new("signature_schemes", "must name at least one of v1, v1a"));
        }
        for (i, s) in self.signature_schemes.iter().enumerate() {
            if self.signature_schemes[..i].contains(s) {
                return Err(ValidationError::new(
                    format!("signature_schemes[{i}]"),
                    format!("`{}` is listed twice", s.as_str()),
                ));
            }
        }
        Ok(())
    }
}

impl Trigger {
    fn validate(&self) -> Result<(), ValidationError> {
        for (i, n) in self.numbers.iter().enumerate() {
            if !n.chars().any(|c| c.is_ascii_digit()) {
                return Err(ValidationError::new(format!("numbers[{i}]"), format!("`{n}` has no digits")));
            }
        }
        for (i, c) in self.conditions.iter().enumerate() {
            if c.path.trim().is_empty() {
                return Err(ValidationError::new(format!("conditions[{i}].path"), "is required"));
            }
            if c.op == ConditionOp::In && !c.value.is_array() {
                return Err(ValidationError::new(format!("conditions[{i}].value_json"), "must be a list for `in`"));
            }
            if c.op != ConditionOp::Exists && c.value.is_null() {
                return Err(ValidationError::new(format!("conditions[{i}].value_json"), "is required"));
            }
        }
        if let Some(expr) = &self.expression {
            crate::expression::ExpressionFilter::compile(expr).map_err(|e| e.under("expression"))?;
        }
        Ok(())
    }
}

impl RequestSpec {
    /// The Kafka destination, when the URL names one.
    pub fn kafka(&self) -> Option<KafkaUrl> {
        kafka_url("url", &self.url).ok().flatten()
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_url("url", &self.url)?;
        if self.kafka().is_some() {
            if !self.method.carries_body() {
                return Err(ValidationError::new(
                    "method",
                    format!("{} carries no body; a Kafka destination takes POST", self.method.as_str()),
                ));
            }
            if !self.query.is_empty() {
                return Err(ValidationError::new("query", "a Kafka destination has no query parameters"));
            }
        }
        InlineTemplate::compile(&self.url, "url")?;
        if self.headers.len() > MAX_HEADERS {
            return Err(ValidationError::new("headers", format!("has more than {MAX_HEADERS} entries")));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let field = format!("headers[{i}]");
            check_header(&field, &h.name, &h.value)?;
            if !h.name.eq_ignore_ascii_case("content-type") {
                InlineTemplate::compile(&h.value, &format!("{field}.value"))?;
            }
        }
        for (i, q) in self.query.iter().enumerate() {
            if q.name.is_empty() {
                return Err(ValidationError::new(format!("query[{i}].name"), "is required"));
            }
            InlineTemplate::compile(&q.value, &format!("query[{i}].value"))?;
        }
        parse_time_zone("time_zone", &self.time_zone)?;
        if let Some(id) = &self.template_id {
            check_id("template_id", id)?;
        }
        if let Some(body) = &self.body {
            CompiledTemplate::compile(body, self.content_type).map_err(|e| e.under("body"))?;
        }
        Ok(())
    }
}

impl SuccessCondition {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.status_codes.is_empty() {
            return Err(ValidationError::new("status_codes", "must list at least one status or range"));
        }
        for (i, r) in self.status_codes.iter().enumerate() {
            if !(100..=599).contains(&r.from) || !(100..=599).contains(&r.to) || r.from > r.to {
                return Err(ValidationError::new(
                    format!("status_codes[{i}]"),
                    format!("{}-{} is not a range of HTTP status codes", r.from, r.to),
                ));
            }
        }
        if self.response_value.is_some() && self.response_path.is_none() {
            return Err(ValidationError::new("response_path", "is required when response_value_json is set"));
        }
        Ok(())
    }
}

impl DeliveryPolicy {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(t) = self.timeout_ms {
            if t == 0 || Duration::from_millis(t) > MAX_TIMEOUT {
                return Err(ValidationError::new("timeout_ms", "must be between 1 and 60000"));
            }
        }
        if self.retry_schedule.len() > 50 {
            return Err(ValidationError::new("retry_schedule", "has more than 50 steps"));
        }
        for (i, s) in self.retry_schedule.iter().enumerate() {
            if *s > 7 * 24 * 3600 {
                return Err(ValidationError::new(format!("retry_schedule[{i}]"), "is longer than 7 days"));
            }
        }
        if self.retry_limit.is_some_and(|l| l > 50) {
            return Err(ValidationError::new("retry_limit", "must be at most 50"));
        }
        if let Some(r) = &self.rate_limit {
            if !(r.per_second > 0.0 && r.per_second <= 100_000.0) {
                return Err(ValidationError::new("rate_limit.per_second", "must be between 0 and 100000"));
            }
        }
        if self.max_concurrency == Some(0) {
            return Err(ValidationError::new("max_concurrency", "must be at least 1"));
        }
        for (i, s) in self.non_retryable_statuses.iter().enumerate() {
            if !(100..=599).contains(s) {
                return Err(ValidationError::new(format!("non_retryable_statuses[{i}]"), "is not an HTTP status"));
            }
        }
        if self.retention_days.is_some_and(|d| d == 0 || d > MAX_RETENTION_DAYS) {
            return Err(ValidationError::new("retention_days", format!("must be between 1 and {MAX_RETENTION_DAYS}")));
        }
        Ok(())
    }
}

impl Template {
    pub fn validate(&self) -> Result<CompiledTemplate, ValidationError> {
        check_id("id", &self.id)?;
        check_id("tenant_id", &self.tenant_id)?;
        check_name("name", &self.name, true)?;
        check_id("group", &self.group)?;
        CompiledTemplate::compile(&self.body, self.content_type).map_err(|e| e.under("body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn webhook(url: &str) -> Webhook {
        serde_json::from_value(json!({
            "id": "wh1", "tenant_id": "acme", "name": "CRM",
            "request": {"url": url},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_follow_the_design() {
        let w = webhook("https://crm.example.com/hook");
        assert!(w.enabled);
        assert_eq!(w.request.method, Method::Post);
        assert!(w.success.status_ok(204) && !w.success.status_ok(301));
        assert_eq!(w.policy.retry_limit(), 7);
        assert_eq!(w.policy.timeout(), DEFAULT_TIMEOUT);
        w.validate().unwrap();
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let mut w = webhook("ftp://x");
        assert_eq!(w.validate().unwrap_err().field, "request.url");
        w.request.url = "https://x/{{ nope_token }}".into();
        assert_eq!(w.validate().unwrap_err().field, "request.url");
        w.request.url = "https://x/{{ callid }}".into();
        w.validate().unwrap();
        w.request.headers.push(KeyValue { name: "X-Evil".into(), value: "a\r\nb".into() });
        assert_eq!(w.validate().unwrap_err().field, "request.headers[0].value");
        w.request.headers[0] = KeyValue { name: "webhook-signature".into(), value: "x".into() };
        assert_eq!(w.validate().unwrap_err().field, "request.headers[0].name");
        w.request.headers.clear();
        w.request.time_zone = "Mars/Olympus".into();
        assert_eq!(w.validate().unwrap_err().field, "request.time_zone");
        w.request.time_zone = "America/New_York".into();
        w.policy.retry_schedule = vec![1, 8 * 24 * 3600];
        assert_eq!(w.validate().unwrap_err().field, "policy.retry_schedule[1]");
    }

    #[test]
    fn only_switched_on_schemes_sign() {
        let mut w = webhook("https://crm.example.com/hook");
        assert_eq!(w.signature_schemes, [SignatureScheme::V1], "v1 unless set");
        let now = Utc::now();
        let hmac = crate::signing::generate_secret();
        let ed = crate::signing::generate_signing_key();
        w.secrets = vec![
            SigningSecret { secret: hmac.clone(), created_at: now, expires_at: None },
            SigningSecret { secret: ed.clone(), created_at: now, expires_at: None },
        ];
        let signing = |w: &Webhook| w.signing_secrets(now).map(|s| s.secret.clone()).collect::<Vec<_>>();
        assert_eq!(signing(&w), std::slice::from_ref(&hmac));
        w.signature_schemes = vec![SignatureScheme::V1a];
        assert_eq!(signing(&w), std::slice::from_ref(&ed));
        w.signature_schemes = vec![SignatureScheme::V1, SignatureScheme::V1a];
        assert_eq!(signing(&w), [hmac, ed]);
        assert!(w.has_current_secret(SignatureScheme::V1a));
        w.secrets[1].expires_at = Some(now + chrono::Duration::hours(1));
        assert!(!w.has_current_secret(SignatureScheme::V1a), "a retiring key is not current");
        w.signature_schemes = vec![SignatureScheme::V1a, SignatureScheme::V1a];
        assert_eq!(w.validate().unwrap_err().field, "signature_schemes[1]");
        w.signature_schemes.clear();
        assert_eq!(w.validate().unwrap_err().field, "signature_schemes");
    }

    #[test]
    fn kafka_destinations_name_a_connection_and_a_topic() {
        let mut w = webhook("kafka://analytics/calls.v1");
        w.validate().unwrap();
        assert_eq!(w.request.kafka(), Some(KafkaUrl { connection: "analytics".into(), topic: "calls.v1".into() }));
        for (url, says) in [
            ("kafka://10.0.0.1:9092/calls", "not a Kafka destination name"),
            ("kafka://analytics", "kafka://<connection>/<topic>"),
            ("kafka://analytics/", "not a Kafka topic name"),
            ("kafka://analytics/calls/{{ callid }}", "not a Kafka topic name"),
            ("kafka://analytics/a b", "not a Kafka topic name"),
            ("gopher://x/y", "not http, https or kafka"),
        ] {
            w.request.url = url.into();
            let e = w.validate().unwrap_err();
            assert_eq!(e.field, "request.url", "{url}");
            assert!(e.message.contains(says), "{url}: {e}");
        }
        w.request.url = "kafka://analytics/calls".into();
        w.request.method = Method::Get;
        assert_eq!(w.validate().unwrap_err().field, "request.method");
        w.request.method = Method::Post;
        w.request.query.push(KeyValue { name: "a".into(), value: "b".into() });
        assert_eq!(w.validate().unwrap_err().field, "request.query");
        assert_eq!(webhook("https://x.example/h").request.kafka(), None);
    }

    #[test]
    fn unknown_event_types_are_refused_by_serde_with_the_name() {
        let err = serde_json::from_value::<Trigger>(json!({"event_types": ["call.ended", "call.exploded"]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("call.exploded"), "{err}");
    }

    #[test]
    fn response_condition() {
        let s = SuccessCondition {
            response_path: Some("result.ok".into()),
            response_value: Some(json!(true)),
            ..Default::default()
        };
        assert!(s.body_ok(br#"{"result":{"ok":true}}"#).is_ok());
        assert!(s.body_ok(br#"{"result":{"ok":"true"}}"#).is_ok());
        assert!(s.body_ok(br#"{"result":{"ok":false}}"#).unwrap_err().contains("expected true"));
        assert!(s.body_ok(b"nope").is_err());
    }
}
