//! Call context: values one webhook captures from its receiver's JSON response
//! (`capture: lead_id = $.data.id`) and later deliveries of the same call use in their URL,
//! query, headers and text body (`{{ context.lead_id }}`).
//!
//! # Where values are resolved
//! The renderer has no store, so it renders everything except `context.*`: each such reference
//! becomes a placeholder made only of ASCII letters, digits and `_` (so no escaping for JSON,
//! XML, form or URL output changes it), unique to the request by a random nonce, and the
//! request carries a [`ContextUse`] naming the values it needs. The dispatcher, which has the
//! store, reads the call's context just before an attempt and [`resolve`]s the placeholders,
//! escaping each value for where it stands (percent-encoded in the URL, CR/LF stripped in
//! headers, JSON string content / XML text / form-encoded / verbatim in the body by content
//! type). A value not there yet makes the delivery wait through the retry schedule (no consumer
//! slot is held); after the webhook's `context_wait` it takes its declared default, or the
//! delivery fails with `context value <name> was not captured within <wait>`.
//!
//! # Capture
//! After a successful attempt the dispatcher applies the webhook's [`Capture`]s to the
//! response body ([`capture`]) and merges the values into the call's context (tenant + call
//! id, [`CONTEXT_TTL`]) before the delivery is marked delivered. A body that is not JSON, or a
//! path that is absent, captures nothing and says so in the attempt's note.
//!
//! # Paths
//! A subset of JSONPath: `$`, then `.name` or `["name"]` for object keys and `[i]` for array
//! elements (`$.data.items[0].id`). The dotted form of `success.response_path` (`data.items.0.id`)
//! is read by the same evaluator ([`response_value`]).

use crate::error::ValidationError;
use crate::template::{percent_encode_into, xml_escape, ContentType};
use crate::webhook::KeyValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most captures one webhook may declare.
pub const MAX_CAPTURES: usize = 16;
/// Largest captured value (bytes of its text); a longer value is not captured.
pub const MAX_VALUE_BYTES: usize = 1024;
/// How long a call's context is kept after its last change.
pub const CONTEXT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a delivery waits for a context value unless the webhook says otherwise.
pub const DEFAULT_CONTEXT_WAIT: Duration = Duration::from_secs(30);
/// Longest `context_wait` a webhook may set.
pub const MAX_CONTEXT_WAIT: Duration = Duration::from_secs(3600);
/// Most names one call's context holds; a capture of a new name beyond it is not stored.
pub const MAX_NAMES_PER_CALL: usize = 64;
/// Longest context name.
pub const MAX_NAME_LEN: usize = 64;

/// One value to capture: `name = path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub name: String,
    pub path: String,
}

/// A webhook's part in call context: what it captures, how long its requests wait for values
/// other webhooks capture, and the fallbacks it declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<Capture>,
    /// How long a request waits for a value it uses; [`DEFAULT_CONTEXT_WAIT`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Values used when a name was not captured within the wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defaults: Vec<KeyValue>,
    /// Post-call enrichment: data points a delivery of this webhook is held for until later
    /// events of its call bring them ([`crate::enrich`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wait_for: Vec<String>,
    /// How long a delivery is held for `wait_for`; [`crate::enrich::DEFAULT_MAX_WAIT`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
}

impl ContextSpec {
    pub fn is_empty(&self) -> bool {
        *self == ContextSpec::default()
    }

    pub fn wait(&self) -> Duration {
        self.wait_ms.map_or(DEFAULT_CONTEXT_WAIT, Duration::from_millis)
    }

    /// How long a delivery is held for its `wait_for` data points.
    pub fn max_wait(&self) -> Duration {
        self.max_wait_ms.map_or(crate::enrich::DEFAULT_MAX_WAIT, Duration::from_millis)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::enrich::validate(&self.wait_for, self.max_wait_ms)?;
        if self.captures.len() > MAX_CAPTURES {
            return Err(ValidationError::new("captures", format!("has more than {MAX_CAPTURES} entries")));
        }
        for (i, c) in self.captures.iter().enumerate() {
            check_name(&format!("capture.{}", c.name), &c.name)?;
            if self.captures[..i].iter().any(|o| o.name == c.name) {
                return Err(ValidationError::new(format!("capture.{}", c.name), "is captured twice"));
            }
            check_path(&format!("capture.{}", c.name), &c.path)?;
        }
        if let Some(ms) = self.wait_ms {
            if Duration::from_millis(ms) > MAX_CONTEXT_WAIT {
                return Err(ValidationError::new(
                    "context_wait",
                    format!("must be at most {}s", MAX_CONTEXT_WAIT.as_secs()),
                ));
            }
        }
        if self.defaults.len() > MAX_CAPTURES {
            return Err(ValidationError::new("context_defaults", format!("has more than {MAX_CAPTURES} entries")));
        }
        for (i, d) in self.defaults.iter().enumerate() {
            let field = format!("context_default.{}", d.name);
            check_name(&field, &d.name)?;
            if self.defaults[..i].iter().any(|o| o.name == d.name) {
                return Err(ValidationError::new(field, "is given twice"));
            }
            if d.value.len() > MAX_VALUE_BYTES {
                return Err(ValidationError::new(field, format!("is longer than {MAX_VALUE_BYTES} bytes")));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a context name: a lowercase identifier (`lead_id`).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_NAME_LEN
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "`{name}` is not a context name (lowercase letters, digits and `_`, at most {MAX_NAME_LEN} characters)"
            ),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `$.a.b[0]["c.d"]` (or the dotted `a.b.0`) into steps.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let path = path.trim();
    if path.is_empty() {
        return Err("is empty".into());
    }
    let Some(rest) = path.strip_prefix('$') else {
        // The dotted form of success.response_path: keys, numeric segments index arrays.
        return Ok(path
            .split('.')
            .map(|s| s.parse::<usize>().map_or_else(|_| Step::Key(s.to_string()), Step::Index))
            .collect());
    };
    let mut steps = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j == start {
                    return Err(format!("empty key at position {}", start + 1));
                }
                steps.push(Step::Key(rest[start..j].to_string()));
                i = j;
            }
            b'[' => {
                let close = rest[i..].find(']').ok_or_else(|| format!("unclosed `[` at position {}", i + 2))? + i;
                let inner = &rest[i + 1..close];
                if let Some(key) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(Step::Key(key.to_string()));
                } else if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else {
                    return Err(format!("`[{inner}]` is neither an index nor a quoted key"));
                }
                i = close + 1;
            }
            _ => return Err(format!("expected `.` or `[` at position {}", i + 2)),
        }
    }
    Ok(steps)
}

/// Checks a capture path, the error naming `field`.
pub fn check_path(field: &str, path: &str) -> Result<(), ValidationError> {
    if !path.trim().starts_with('$') {
        return Err(ValidationError::new(field, format!("`{path}` must start with `$` (e.g. `$.data.id`)")));
    }
    if path.len() > 256 {
        return Err(ValidationError::new(field, "path is longer than 256 characters"));
    }
    parse_path(path).map(|_| ()).map_err(|e| ValidationError::new(field, format!("`{path}`: {e}")))
}

/// The value at `path` in `doc` (`$.a.b[0]` or dotted `a.b.0`), if there is one.
pub fn response_value<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for step in parse_path(path).ok()? {
        cur = match (cur, step) {
            (Value::Object(m), Step::Key(k)) => m.get(&k)?,
            (Value::Object(m), Step::Index(n)) => m.get(&n.to_string())?,
            (Value::Array(a), Step::Index(n)) => a.get(n)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// What a response gave: the values captured and a note on anything not captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub values: BTreeMap<String, String>,
    pub note: Option<String>,
}

/// Applies `captures` to a response body. Strings are taken verbatim, other values as JSON
/// text; `null`, absent paths and values longer than [`MAX_VALUE_BYTES`] are not captured.
pub fn capture(captures: &[Capture], body: &str) -> Captured {
    let mut out = Captured::default();
    if captures.is_empty() {
        return out;
    }
    let Ok(doc) = serde_json::from_str::<Value>(body) else {
        out.note = Some("context: nothing captured, the response body is not JSON".into());
        return out;
    };
    let mut missed = Vec::new();
    for c in captures {
        match response_value(&doc, &c.path) {
            None | Some(Value::Null) => missed.push(format!("{} ({} is absent)", c.name, c.path)),
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if text.len() > MAX_VALUE_BYTES {
                    missed.push(format!("{} (longer than {MAX_VALUE_BYTES} bytes)", c.name));
                } else {
                    out.values.insert(c.name.clone(), text);
                }
            }
        }
    }
    let mut parts = Vec::new();
    if !out.values.is_empty() {
        parts.push(format!("captured {}", out.values.keys().cloned().collect::<Vec<_>>().join(", ")));
    }
    if !missed.is_empty() {
        parts.push(format!("not captured: {}", missed.join(", ")));
    }
    out.note = Some(format!("context: {}", parts.join("; ")));
    out
}

/// The placeholder of `name` in a request rendered with `nonce`.
pub fn placeholder(nonce: &str, name: &str) -> String {
    format!("HMCTX{nonce}Z{name}ZX")
}

/// A fresh nonce: 16 lowercase hex characters.
pub fn new_nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The names whose placeholders of `nonce` occur in `text`.
pub fn names_in(nonce: &str, text: &str, out: &mut BTreeSet<String>) {
    let prefix = format!("HMCTX{nonce}Z");
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        let after = &rest[at + prefix.len()..];
        match after.find("ZX") {
            Some(end) if is_name(&after[..end]) => {
                out.insert(after[..end].to_string());
                rest = &after[end + 2..];
            }
            _ => rest = after,
        }
    }
}

/// What a rendered request needs from its call's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextUse {
    pub nonce: String,
    /// Names the request uses, sorted.
    pub names: Vec<String>,
    /// How long to wait for them from the delivery's first trigger.
    pub wait_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, String>,
    /// How values are escaped in the body.
    pub body_format: ContentType,
    /// The values the request was sent with, once resolved (shown in delivery details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<BTreeMap<String, String>>,
}

impl ContextUse {
    /// Names neither in `values` nor defaulted.
    pub fn missing<'a>(&'a self, values: &'a BTreeMap<String, String>) -> impl Iterator<Item = &'a String> + 'a {
        self.names.iter().filter(move |n| !values.contains_key(*n))
    }
}

/// Replaces the placeholders of `nonce` in `text` with values escaped by `escape`; a name
/// without a value becomes empty (callers resolve only once every name has one).
fn substitute(nonce: &str, text: &str, values: &BTreeMap<String, String>, escape: impl Fn(&str) -> String) -> String {
    let prefix = format!("HMCTX{nonce}Z");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        match after.find("ZX") {
            Some(end) if is_name(&after[..end]) => {
                if let Some(v) = values.get(&after[..end]) {
                    out.push_str(&escape(v));
                }
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&prefix);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fills the context placeholders of a rendered request (URL, headers, body) with `values`,
/// each escaped for where it stands.
pub fn resolve(
    use_: &ContextUse,
    url: &mut String,
    headers: &mut [(String, String)],
    body: &mut String,
    values: &BTreeMap<String, String>,
) {
    let n = &use_.nonce;
    *url = substitute(n, url, values, |v| {
        let mut s = String::new();
        percent_encode_into(v, &mut s);
        s
    });
    for (_, v) in headers.iter_mut() {
        *v = substitute(n, v, values, |x| x.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')).collect());
    }
    *body = substitute(n, body, values, |v| match use_.body_format {
        ContentType::Json => {
            let quoted = serde_json::to_string(v).expect("strings serialise");
            quoted[1..quoted.len() - 1].to_string()
        }
        ContentType::Xml => xml_escape(v, true),
        ContentType::Form => url::form_urlencoded::byte_serialize(v.as_bytes()).collect(),
        ContentType::Text => v.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_keys_indexes_and_quoted_keys() {
        let doc = json!({"data": {"id": "L-42", "items": [{"sku": 7}], "a.b": true}});
        assert_eq!(response_value(&doc, "$.data.id"), Some(&json!("L-42")));
        assert_eq!(response_value(&doc, "$.data.items[0].sku"), Some(&json!(7)));
        assert_eq!(response_value(&doc, "$.data[\"a.b\"]"), Some(&json!(true)));
        assert_eq!(response_value(&doc, "data.items.0.sku"), Some(&json!(7)));
        assert_eq!(response_value(&doc, "$.data.nope"), None);
        assert_eq!(response_value(&doc, "$.data.items[3]"), None);
        assert!(check_path("capture.x", "$.a.b[0].c").is_ok());
        let e = check_path("capture.lead_id", "data.id").unwrap_err();
        assert_eq!(e.field, "capture.lead_id");
        assert!(e.message.contains("must start with `$`"), "{}", e.message);
        let e = check_path("capture.lead_id", "$.a[x]").unwrap_err();
        assert!(e.message.contains("neither an index nor a quoted key"), "{}", e.message);
        assert!(check_path("f", "$.a..b").is_err());
        assert!(check_path("f", "$.a[0").is_err());
    }

    #[test]
    fn capture_takes_values_and_notes_what_it_missed() {
        let caps = vec![
            Capture { name: "lead_id".into(), path: "$.data.id".into() },
            Capture { name: "score".into(), path: "$.data.score".into() },
            Capture { name: "owner".into(), path: "$.data.owner".into() },
        ];
        let got = capture(&caps, r#"{"data":{"id":"L-42","score":9.5}}"#);
        assert_eq!(got.values.get("lead_id").map(String::as_str), Some("L-42"));
        assert_eq!(got.values.get("score").map(String::as_str), Some("9.5"));
        assert!(!got.values.contains_key("owner"));
        assert_eq!(
            got.note.as_deref(),
            Some("context: captured lead_id, score; not captured: owner ($.data.owner is absent)")
        );
        let got = capture(&caps, "<ok/>");
        assert!(got.values.is_empty());
        assert_eq!(got.note.as_deref(), Some("context: nothing captured, the response body is not JSON"));
        let big = format!(r#"{{"data":{{"id":"{}"}}}}"#, "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(capture(&caps[..1], &big).values.is_empty());
    }

    #[test]
    fn spec_errors_name_the_field() {
        let mut s =
            ContextSpec { captures: vec![Capture { name: "Lead".into(), path: "$.id".into() }], ..Default::default() };
        assert_eq!(s.validate().unwrap_err().field, "capture.Lead");
        s.captures = vec![Capture { name: "lead_id".into(), path: "$.id".into() }; 2];
        assert_eq!(s.validate().unwrap_err().message, "is captured twice");
        s.captures.truncate(1);
        s.wait_ms = Some(2 * 3600 * 1000);
        assert_eq!(s.validate().unwrap_err().field, "context_wait");
        s.wait_ms = Some(30_000);
        s.defaults = vec![KeyValue { name: "lead_id".into(), value: "x".repeat(MAX_VALUE_BYTES + 1) }];
        assert_eq!(s.validate().unwrap_err().field, "context_default.lead_id");
        s.defaults[0].value = "unknown".into();
        assert!(s.validate().is_ok());
        s.captures = (0..=MAX_CAPTURES).map(|i| Capture { name: format!("v{i}"), path: "$.a".into() }).collect();
        assert_eq!(s.validate().unwrap_err().field, "captures");
    }

    #[test]
    fn resolve_escapes_for_each_place() {
        let nonce = "0123456789abcdef";
        let p = placeholder(nonce, "lead_id");
        let hostile = "a/b \"q\" <x> & é\r\nX: y";
        let values = BTreeMap::from([("lead_id".to_string(), hostile.to_string())]);
        let mut names = BTreeSet::new();
        names_in(nonce, &format!("x{p}y{}", placeholder("ffff", "other")), &mut names);
        assert_eq!(names, BTreeSet::from(["lead_id".to_string()]));
        for (format, body, check) in [
            (ContentType::Json, format!(r#"{{"id":"{p}","n":"pre-{p}"}}"#), 0),
            (ContentType::Xml, format!("<a id=\"{p}\">{p}</a>"), 1),
            (ContentType::Form, format!("id={p}"), 2),
            (ContentType::Text, format!("id {p}"), 3),
        ] {
            let use_ = ContextUse {
                nonce: nonce.into(),
                names: vec!["lead_id".into()],
                wait_ms: 1,
                defaults: BTreeMap::new(),
                body_format: format,
                resolved: None,
            };
            let mut url = format!("https://crm.example.com/leads/{p}?x={p}");
            let mut headers = vec![("x-lead".to_string(), p.clone())];
            let mut body = body;
            resolve(&use_, &mut url, &mut headers, &mut body, &values);
            let parsed = url::Url::parse(&url).unwrap();
            assert_eq!(
                parsed.path_segments().unwrap().next_back().unwrap(),
                "a%2Fb%20%22q%22%20%3Cx%3E%20%26%20%C3%A9%0D%0AX%3A%20y"
            );
            assert_eq!(parsed.query_pairs().next().unwrap().1, hostile);
            assert_eq!(headers[0].1, "a/b \"q\" <x> & éX: y");
            match check {
                0 => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["id"], json!(hostile));
                    assert_eq!(v["n"], json!(format!("pre-{hostile}")));
                }
                1 => assert!(body.contains("&lt;x&gt;") && body.contains("&quot;q&quot;"), "{body}"),
                2 => assert_eq!(url::form_urlencoded::parse(body.as_bytes()).next().unwrap().1, hostile),
                _ => assert_eq!(body, format!("id {hostile}")),
            }
        }
    }
}
