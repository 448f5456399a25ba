//! Posted forms and the webhook and template forms: form fields ↔ API messages, and errors put
//! at the field they name.
//!
//! Form fields are named after the API's own field paths (`request.url`, `policy.timeout_ms`,
//! `trigger.event_types`), so an API error (`invalid argument: request.headers[1]: …`) lands at
//! the field it names. Lists are written one per line or comma-separated; key/value lists one
//! pair per line (`Name: value` for headers, `name=value` for query parameters); body mappings
//! as `hookmesh ctl --map` writes them (`name=token:ani`, `name=const:JSON`, `name=name`).
//! Syntax errors found here name the same field paths.

use hookmesh_proto::v1;
use hookmesh_proto::v1::source::Kind as SourceKind;
use hookmesh_proto::v1::template_body::Kind as BodyKind;
use serde::Serialize;
use std::collections::BTreeMap;

/// A posted `application/x-www-form-urlencoded` body, every pair in order (repeated names
/// kept).
#[derive(Debug, Clone, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(bytes: &[u8]) -> FormData {
        FormData(url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The trimmed value of `name`, empty when absent.
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_string()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

/// Errors by field (the form field's name; `""` for the form as a whole).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_string()).or_insert_with(|| msg.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Puts an API error's message (`request.url: …`, without the code) at the field it
    /// names; a message that names no field of the form goes to the top (`""`).
    pub fn from_api(message: &str, fields: &[&str], strip_prefix: &str) -> FieldErrors {
        let mut e = FieldErrors::default();
        let path = message.split_once(": ").map(|(p, _)| p).unwrap_or("");
        let path = path.strip_prefix(strip_prefix).unwrap_or(path);
        let key = fields
            .iter()
            .filter(|f| path == **f || path.starts_with(&format!("{f}.")) || path.starts_with(&format!("{f}[")))
            .max_by_key(|f| f.len())
            .copied()
            .unwrap_or("");
        e.add(key, message);
        e
    }
}

/// The webhook form's fields, as the API names them.
pub const WEBHOOK_FIELDS: &[&str] = &[
    "tenant_id",
    "id",
    "name",
    "description",
    "trigger",
    "trigger.event_types",
    "trigger.campaigns",
    "trigger.directions",
    "trigger.numbers",
    "trigger.ivr_options",
    "trigger.conditions",
    "trigger.expression",
    "signature_schemes",
    "request",
    "request.method",
    "request.url",
    "request.query",
    "request.headers",
    "request.content_type",
    "request.time_zone",
    "request.template_id",
    "request.body",
    "success",
    "success.status_codes",
    "success.response_path",
    "success.response_value_json",
    "policy",
    "policy.timeout_ms",
    "policy.retry_limit",
    "policy.retry_schedule",
    "policy.total_timeout_secs",
    "policy.rate_limit",
    "policy.max_concurrency",
    "policy.ordering",
    "policy.non_retryable_statuses",
    "policy.retention_days",
    "capture",
    "context_wait",
    "context_default",
    "wait_for",
    "max_wait",
];

/// The template form's fields, as the API names them (under `template.`).
pub const TEMPLATE_FIELDS: &[&str] = &["tenant_id", "id", "name", "group", "description", "content_type", "body"];

fn list(s: &str) -> Vec<String> {
    s.split([',', '\n']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn opt_u64(f: &FormData, name: &str, errors: &mut FieldErrors) -> Option<u64> {
    let t = f.text(name);
    if t.is_empty() {
        return None;
    }
    match t.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.add(name, format!("{name}: `{t}` is not a whole number"));
            None
        }
    }
}

fn opt_u32(f: &FormData, name: &str, errors: &mut FieldErrors) -> Option<u32> {
    opt_u64(f, name, errors).and_then(|n| match u32::try_from(n) {
        Ok(n) => Some(n),
        Err(_) => {
            errors.add(name, format!("{name}: {n} is too large"));
            None
        }
    })
}

/// An optional duration field (`30s`, `2m`, `1500ms`) in milliseconds (0 when empty).
fn opt_millis(f: &FormData, name: &str, errors: &mut FieldErrors) -> u64 {
    let t = f.text(name);
    if t.is_empty() {
        return 0;
    }
    match humantime::parse_duration(&t.to_lowercase()) {
        Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Err(_) => {
            errors.add(name, format!("{name}: `{t}` is not a duration (e.g. 30s, 20m)"));
            0
        }
    }
}

/// `name=value` lines of `field` (`what` says what the value is, for the error).
fn name_values(f: &FormData, field: &str, what: &str, errors: &mut FieldErrors) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in lines(f.get(field).unwrap_or("")) {
        match l.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_string(), v.trim().to_string())),
            None => errors.add(field, format!("{field}: `{l}`: expected 'name={what}'")),
        }
    }
    out
}

/// Milliseconds as the form shows a duration: `30s`, `20m`, `1s 500ms`; empty for 0.
fn millis_text(ms: u64) -> String {
    if ms == 0 {
        String::new()
    } else {
        humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
    }
}

fn json_or_string(s: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => v.to_string(),
        Err(_) => serde_json::Value::String(s.to_string()).to_string(),
    }
}

/// `200-299, 304` → ranges.
fn status_ranges(s: &str, field: &str, errors: &mut FieldErrors) -> Vec<v1::StatusRange> {
    let mut out = Vec::new();
    for part in list(s) {
        let (a, b) = part.split_once('-').unwrap_or((&part, &part));
        match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            (Ok(from), Ok(to)) => out.push(v1::StatusRange { from, to }),
            _ => errors.add(field, format!("{field}: `{part}` is not a status or a range like 200-299")),
        }
    }
    out
}

fn ranges_text(r: &[v1::StatusRange]) -> String {
    r.iter()
        .map(|r| if r.from == r.to { r.from.to_string() } else { format!("{}-{}", r.from, r.to) })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name=token:ani`, `name=const:JSON`, `name=name`, `name=%ani%`.
pub fn parse_mapping(s: &str) -> Result<v1::FieldMapping, String> {
    let usage = || format!("`{s}`: expected 'name=token:NAME', 'name=const:VALUE' or 'name=name'");
    let (path, spec) = s.split_once('=').ok_or_else(usage)?;
    let (path, spec) = (path.trim(), spec.trim());
    if path.is_empty() {
        return Err(usage());
    }
    let kind = if let Some(t) = spec.strip_prefix("token:") {
        SourceKind::Token(t.trim().to_string())
    } else if let Some(c) = spec.strip_prefix("const:") {
        SourceKind::ConstantJson(json_or_string(c))
    } else if spec.eq_ignore_ascii_case("name") {
        SourceKind::Name(true)
    } else if spec.len() > 2 && spec.starts_with('%') && spec.ends_with('%') {
        SourceKind::Token(spec.trim_matches('%').to_string())
    } else {
        return Err(usage());
    };
    Ok(v1::FieldMapping { path: path.to_string(), source: Some(v1::Source { kind: Some(kind) }) })
}

pub fn mapping_text(m: &v1::FieldMapping) -> String {
    let spec = match m.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(SourceKind::Token(t)) => format!("token:{t}"),
        Some(SourceKind::ConstantJson(c)) => format!("const:{c}"),
        Some(SourceKind::Name(_)) | None => "name".to_string(),
    };
    format!("{}={spec}", m.path)
}

/// One extracted field of a "from an example" body, as the form shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldRow {
    pub path: String,
    /// A token name, `__const` or `__name`.
    pub source: String,
    pub constant: String,
}

pub fn field_rows(mappings: &[v1::FieldMapping]) -> Vec<FieldRow> {
    mappings
        .iter()
        .map(|m| {
            let (source, constant) = match m.source.as_ref().and_then(|s| s.kind.as_ref()) {
                Some(SourceKind::Token(t)) => (t.trim_matches('%').to_string(), String::new()),
                Some(SourceKind::ConstantJson(c)) => (
                    "__const".to_string(),
                    match serde_json::from_str::<serde_json::Value>(c) {
                        Ok(serde_json::Value::String(s)) => s,
                        _ => c.clone(),
                    },
                ),
                Some(SourceKind::Name(_)) | None => ("__name".to_string(), String::new()),
            };
            FieldRow { path: m.path.clone(), source, constant }
        })
        .collect()
}

/// The posted rows `field.N.path|source|const`.
pub fn posted_rows(f: &FormData) -> Vec<FieldRow> {
    let mut rows = Vec::new();
    for i in 0..2000 {
        let Some(path) = f.get(&format!("field.{i}.path")) else { break };
        rows.push(FieldRow {
            path: path.to_string(),
            source: f.text(&format!("field.{i}.source")),
            constant: f.get(&format!("field.{i}.const")).unwrap_or("").to_string(),
        });
    }
    rows
}

fn rows_to_mappings(rows: &[FieldRow]) -> Vec<v1::FieldMapping> {
    rows.iter()
        .map(|r| {
            let kind = match r.source.as_str() {
                "__const" => SourceKind::ConstantJson(json_or_string(r.constant.trim())),
                "__name" | "" => SourceKind::Name(true),
                t => SourceKind::Token(t.to_string()),
            };
            v1::FieldMapping { path: r.path.clone(), source: Some(v1::Source { kind: Some(kind) }) }
        })
        .collect()
}

/// The body part of a form (`body.mode` and its fields) as an API body; `None` for no body.
pub fn body_from_form(f: &FormData, field: &str, errors: &mut FieldErrors) -> Option<v1::TemplateBody> {
    let kind = match f.text("body.mode").as_str() {
        "fields" => {
            let example = f.get("body.example").unwrap_or("").to_string();
            if example.trim().is_empty() {
                errors.add(field, format!("{field}: paste an example document (JSON or XML)"));
            }
            let format = match f.text("body.format").as_str() {
                "" => "json".to_string(),
                x => x.to_string(),
            };
            BodyKind::Fields(v1::FieldsBody { format, example, fields: rows_to_mappings(&posted_rows(f)) })
        }
        "pairs" => {
            let mut pairs = Vec::new();
            for l in lines(f.get("body.pairs").unwrap_or("")) {
                match parse_mapping(l) {
                    Ok(m) => pairs.push(m),
                    Err(e) => errors.add(field, format!("{field}.pairs: {e}")),
                }
            }
            BodyKind::Pairs(v1::PairsBody { pairs })
        }
        "text" => BodyKind::Text(f.get("body.text").unwrap_or("").to_string()),
        _ => return None,
    };
    Some(v1::TemplateBody { kind: Some(kind) })
}

/// Writes an API body into form fields.
pub fn body_to_form(b: &Option<v1::TemplateBody>, f: &mut BTreeMap<String, String>) -> Vec<FieldRow> {
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(BodyKind::Fields(x)) => {
            f.insert("body.mode".into(), "fields".into());
            f.insert("body.format".into(), x.format.clone());
            f.insert("body.example".into(), x.example.clone());
            return field_rows(&x.fields);
        }
        Some(BodyKind::Pairs(p)) => {
            f.insert("body.mode".into(), "pairs".into());
            f.insert("body.pairs".into(), p.pairs.iter().map(mapping_text).collect::<Vec<_>>().join("\n"));
        }
        Some(BodyKind::Text(t)) => {
            f.insert("body.mode".into(), "text".into());
            f.insert("body.text".into(), t.clone());
        }
        None => {}
    }
    Vec::new()
}

/// The webhook a posted form describes; syntax errors name the field.
pub fn webhook_from_form(f: &FormData) -> Result<v1::Webhook, FieldErrors> {
    let mut e = FieldErrors::default();
    let mut conditions = Vec::new();
    for l in lines(f.get("trigger.conditions").unwrap_or("")) {
        let mut parts = l.splitn(3, char::is_whitespace);
        let (path, op, value) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("").trim());
        if op.is_empty() {
            e.add(
                "trigger.conditions",
                format!("trigger.conditions: `{l}`: expected 'path op value' (op: eq, ne, in, prefix, exists)"),
            );
            continue;
        }
        conditions.push(v1::Condition {
            path: path.into(),
            op: op.into(),
            value_json: if value.is_empty() { String::new() } else { json_or_string(value) },
        });
    }
    let mut query = Vec::new();
    for l in lines(f.get("request.query").unwrap_or("")) {
        match l.split_once('=') {
            Some((k, v)) => query.push(v1::KeyValue { name: k.trim().into(), value: v.trim().into() }),
            None => e.add("request.query", format!("request.query: `{l}`: expected 'name=value'")),
        }
    }
    let mut headers = Vec::new();
    for l in lines(f.get("request.headers").unwrap_or("")) {
        match l.split_once(':') {
            Some((k, v)) => headers.push(v1::KeyValue { name: k.trim().into(), value: v.trim().into() }),
            None => e.add("request.headers", format!("request.headers: `{l}`: expected 'Name: value'")),
        }
    }
    let body = if f.text("body.mode") == "template" { None } else { body_from_form(f, "request.body", &mut e) };
    let template_id = if f.text("body.mode") == "template" { f.text("request.template_id") } else { String::new() };
    let rate = f.text("policy.rate_limit.per_second");
    let rate_limit = if rate.is_empty() {
        None
    } else {
        match rate.parse::<f64>() {
            Ok(per_second) => {
                Some(v1::RateLimit { per_second, burst: opt_u32(f, "policy.rate_limit.burst", &mut e).unwrap_or(0) })
            }
            Err(_) => {
                e.add("policy.rate_limit", format!("policy.rate_limit.per_second: `{rate}` is not a number"));
                None
            }
        }
    };
    let mut schedule = Vec::new();
    for s in list(&f.text("policy.retry_schedule")) {
        match s.trim_end_matches('s').parse() {
            Ok(n) => schedule.push(n),
            Err(_) => {
                e.add("policy.retry_schedule", format!("policy.retry_schedule: `{s}` is not a number of seconds"))
            }
        }
    }
    let mut non_retryable = Vec::new();
    for s in list(&f.text("policy.non_retryable_statuses")) {
        match s.parse() {
            Ok(n) => non_retryable.push(n),
            Err(_) => {
                e.add("policy.non_retryable_statuses", format!("policy.non_retryable_statuses: `{s}` is not a status"))
            }
        }
    }
    let w = v1::Webhook {
        id: f.text("id"),
        tenant_id: f.text("tenant_id"),
        name: f.text("name"),
        description: f.text("description"),
        enabled: f.get("enabled").is_some(),
        trigger: Some(v1::Trigger {
            event_types: list(&f.text("trigger.event_types")),
            campaigns: list(&f.text("trigger.campaigns")),
            directions: f.all("trigger.directions"),
            numbers: list(&f.text("trigger.numbers")),
            ivr_options: list(&f.text("trigger.ivr_options")),
            conditions,
            expression: f.text("trigger.expression"),
        }),
        // Empty keeps the webhook's schemes as they are.
        signature_schemes: f.all("signature_schemes"),
        public_keys: Vec::new(),
        captures: name_values(f, "capture", "$.json.path", &mut e)
            .into_iter()
            .map(|(name, path)| v1::Capture { name, path })
            .collect(),
        context_wait_ms: opt_millis(f, "context_wait", &mut e),
        context_defaults: name_values(f, "context_default", "value", &mut e)
            .into_iter()
            .map(|(name, value)| v1::KeyValue { name, value })
            .collect(),
        wait_for: list(&f.text("wait_for")),
        max_wait_ms: opt_millis(f, "max_wait", &mut e),
        request: Some(v1::Request {
            method: f.text("request.method"),
            url: f.text("request.url"),
            query,
            headers,
            content_type: f.text("request.content_type"),
            time_zone: f.text("request.time_zone"),
            template_id,
            body,
        }),
        success: Some(v1::SuccessCondition {
            status_codes: status_ranges(&f.text("success.status_codes"), "success.status_codes", &mut e),
            response_path: f.text("success.response_path"),
            response_value_json: {
                let v = f.text("success.response_value_json");
                if v.is_empty() {
                    v
                } else {
                    json_or_string(&v)
                }
            },
        }),
        policy: Some(v1::DeliveryPolicy {
            timeout_ms: opt_u64(f, "policy.timeout_ms", &mut e),
            retry_limit: opt_u32(f, "policy.retry_limit", &mut e),
            retry_schedule: schedule,
            total_timeout_secs: opt_u64(f, "policy.total_timeout_secs", &mut e),
            rate_limit,
            max_concurrency: opt_u32(f, "policy.max_concurrency", &mut e),
            ordering: f.text("policy.ordering"),
            non_retryable_statuses: non_retryable,
            retention_days: opt_u32(f, "policy.retention_days", &mut e),
        }),
        secrets: Vec::new(),
        version: f.text("version").parse().unwrap_or(0),
        created_at: String::new(),
        updated_at: String::new(),
    };
    if e.is_empty() {
        Ok(w)
    } else {
        Err(e)
    }
}

/// A webhook's fields as the form shows them: (values, directions, extracted-field rows).
pub fn webhook_to_form(w: &v1::Webhook) -> (BTreeMap<String, String>, Vec<String>, Vec<FieldRow>) {
    let mut f = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    put("id", w.id.clone());
    put("tenant_id", w.tenant_id.clone());
    put("name", w.name.clone());
    put("description", w.description.clone());
    put("version", w.version.to_string());
    if w.enabled {
        put("enabled", "on".into());
    }
    let t = w.trigger.clone().unwrap_or_default();
    put("trigger.event_types", t.event_types.join(", "));
    put("trigger.campaigns", t.campaigns.join(", "));
    put("trigger.numbers", t.numbers.join(", "));
    put("trigger.ivr_options", t.ivr_options.join(", "));
    put(
        "trigger.conditions",
        t.conditions
            .iter()
            .map(|c| format!("{} {} {}", c.path, c.op, c.value_json).trim().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    put("trigger.expression", t.expression.clone());
    put("capture", w.captures.iter().map(|c| format!("{}={}", c.name, c.path)).collect::<Vec<_>>().join("\n"));
    put("context_wait", millis_text(w.context_wait_ms));
    put(
        "context_default",
        w.context_defaults.iter().map(|d| format!("{}={}", d.name, d.value)).collect::<Vec<_>>().join("\n"),
    );
    put("wait_for", w.wait_for.join(", "));
    put("max_wait", millis_text(w.max_wait_ms));
    let r = w.request.clone().unwrap_or_default();
    put("request.method", r.method.clone());
    put("request.url", r.url.clone());
    put("request.query", r.query.iter().map(|kv| format!("{}={}", kv.name, kv.value)).collect::<Vec<_>>().join("\n"));
    put(
        "request.headers",
        r.headers.iter().map(|kv| format!("{}: {}", kv.name, kv.value)).collect::<Vec<_>>().join("\n"),
    );
    put("request.content_type", r.content_type.clone());
    put("request.time_zone", r.time_zone.clone());
    put("request.template_id", r.template_id.clone());
    let s = w.success.clone().unwrap_or_default();
    put("success.status_codes", ranges_text(&s.status_codes));
    put("success.response_path", s.response_path.clone());
    put("success.response_value_json", s.response_value_json.clone());
    let p = w.policy.clone().unwrap_or_default();
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    put("policy.timeout_ms", opt(p.timeout_ms));
    put("policy.retry_limit", opt(p.retry_limit.map(u64::from)));
    put("policy.retry_schedule", p.retry_schedule.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
    put("policy.total_timeout_secs", opt(p.total_timeout_secs));
    if let Some(rl) = &p.rate_limit {
        put("policy.rate_limit.per_second", rl.per_second.to_string());
        put("policy.rate_limit.burst", rl.burst.to_string());
    }
    put("policy.max_concurrency", opt(p.max_concurrency.map(u64::from)));
    put("policy.ordering", p.ordering.clone());
    put("policy.retention_days", opt(p.retention_days.map(u64::from)));
    put(
        "policy.non_retryable_statuses",
        p.non_retryable_statuses.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
    );
    let rows = if !r.template_id.is_empty() {
        f.insert("body.mode".into(), "template".into());
        Vec::new()
    } else if r.body.as_ref().and_then(|b| b.kind.as_ref()).is_none() {
        f.insert("body.mode".into(), "none".into());
        Vec::new()
    } else {
        body_to_form(&r.body, &mut f)
    };
    (f, t.directions, rows)
}

/// A posted form as values to refill the form with (first value of each name).
pub fn refill(f: &FormData) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in &f.0 {
        if k != "csrf" && !k.starts_with("field.") {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_webhook_form_round_trips() {
        let f = form(&[
            ("name", "crm"),
            ("enabled", "on"),
            ("trigger.event_types", "call.started, call.ended"),
            ("trigger.directions", "inbound"),
            ("trigger.directions", "outbound"),
            ("trigger.conditions", "data.tags.region eq \"eu\"\ndata.x exists"),
            ("request.url", "https://crm.example.com/hook"),
            ("request.headers", "X-Api-Key: 123\n"),
            ("request.query", "a=1"),
            ("body.mode", "fields"),
            ("body.format", "xml"),
            ("body.example", "<call><caller/></call>"),
            ("field.0.path", "call.caller"),
            ("field.0.source", "ani"),
            ("field.1.path", "call.src"),
            ("field.1.source", "__const"),
            ("field.1.const", "hookmesh"),
            ("success.status_codes", "200-299, 304"),
            ("policy.timeout_ms", "5000"),
            ("policy.retry_schedule", "0, 5, 300"),
            ("policy.rate_limit.per_second", "10"),
            ("policy.rate_limit.burst", "20"),
        ]);
        let w = webhook_from_form(&f).unwrap();
        assert_eq!(w.trigger.as_ref().unwrap().event_types, ["call.started", "call.ended"]);
        assert_eq!(w.trigger.as_ref().unwrap().directions, ["inbound", "outbound"]);
        assert_eq!(w.trigger.as_ref().unwrap().conditions[0].value_json, "\"eu\"");
        let (values, directions, rows) = webhook_to_form(&w);
        assert_eq!(values["request.headers"], "X-Api-Key: 123");
        assert_eq!(values["success.status_codes"], "200-299, 304");
        assert_eq!(values["policy.retry_schedule"], "0, 5, 300");
        assert_eq!(directions, ["inbound", "outbound"]);
        assert_eq!(rows[0].source, "ani");
        assert_eq!((rows[1].source.as_str(), rows[1].constant.as_str()), ("__const", "hookmesh"));
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let e = webhook_from_form(&form(&[("request.headers", "no colon"), ("policy.timeout_ms", "5s")])).unwrap_err();
        assert!(e.0["request.headers"].starts_with("request.headers: `no colon`"), "{e:?}");
        assert!(e.0["policy.timeout_ms"].contains("not a whole number"), "{e:?}");
    }

    #[test]
    fn api_errors_land_at_the_field_they_name() {
        let e = FieldErrors::from_api("request.headers[1]: bad name", WEBHOOK_FIELDS, "");
        assert_eq!(e.0["request.headers"], "request.headers[1]: bad name");
        let e = FieldErrors::from_api("request.url: must be http(s)", WEBHOOK_FIELDS, "");
        assert!(e.0.contains_key("request.url"), "{e:?}");
        let e = FieldErrors::from_api("policy.rate_limit.per_second: must be > 0", WEBHOOK_FIELDS, "");
        assert!(e.0.contains_key("policy.rate_limit"), "{e:?}");
        let e = FieldErrors::from_api("template.body.fields[0]: x", TEMPLATE_FIELDS, "template.");
        assert!(e.0.contains_key("body"), "{e:?}");
        let e = FieldErrors::from_api("something else", WEBHOOK_FIELDS, "");
        assert!(e.0.contains_key(""), "{e:?}");
    }
}
