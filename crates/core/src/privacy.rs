//! Masking of caller phone numbers and other personal fields in stored delivery logs, per
//! tenant.
//!
//! A tenant turns masking on in its [`TenantSettings`]. The renderer then lists the event's
//! personal values ([`personal_values`]: the tokens of [`PERSONAL_TOKENS`] plus the tenant's
//! own `mask_fields`) on the rendered request, and the dispatcher stores every copy it keeps
//! (the delivery's request, each attempt's URL, headers, request and response bodies, error
//! text) through a [`Masker`] built from them. The request as it must be sent again (retries,
//! resend) is kept sealed under the deployment's master key beside the masked copy; see the
//! dispatcher's `privacy` module.
//!
//! Masking works on values, not on template structure. A JSON body is masked inside its
//! string values only (each decoded, masked and re-encoded; a JSON number equal to a personal
//! value becomes `null`), so even a hostile value that looks like JSON syntax cannot break the
//! stored document. Other text (XML, form and text bodies, URLs, headers) is searched for each
//! personal value in every form rendering can give it (raw, JSON-escaped, XML-escaped,
//! form-encoded, percent-encoded) and replaced by a mask made of `*` and the value's last two
//! characters for phone numbers (`********36`), or by `***` otherwise. Masks contain no
//! character any of those formats escapes, so a masked JSON body is still valid JSON, a
//! masked form still decodes, and so on. Values shorter than [`MIN_MASKED_LEN`] characters
//! are left alone (a two-letter state code would otherwise mask every `CA` in the log).

use crate::event::Event;
use crate::tokens::token_value;
use crate::ValidationError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// Tokens masked for every tenant that turns masking on: caller and contact phone numbers,
/// names, street addresses, e-mail, the web visitor's IP address and position, and free text
/// of the conversation.
pub const PERSONAL_TOKENS: &[&str] = &[
    "ani",
    "call_from",
    "ani_full_name",
    "ani_first_name",
    "ani_middle_name",
    "ani_last_name",
    "ani_street_line_1",
    "ani_street_line_2",
    "ani_street_number",
    "ani_street_name",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "contact_phone",
    "visitor_ip_address",
    "visitor_lat",
    "visitor_long",
    "transcript",
    "transcript_segment",
    "call_summary",
    "recording_url",
];

/// Values shorter than this are not masked.
pub const MIN_MASKED_LEN: usize = 4;
/// Most extra fields a tenant may list.
pub const MAX_MASK_FIELDS: usize = 64;

/// A tenant's own settings, kept in the config registry (`tenant/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    pub tenant_id: String,
    /// Mask personal data in stored delivery logs.
    #[serde(default)]
    pub mask_personal_data: bool,
    /// Token or `data` field names masked in addition to [`PERSONAL_TOKENS`].
    #[serde(default)]
    pub mask_fields: Vec<String>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl TenantSettings {
    /// The settings of a tenant that never set any.
    pub fn default_for(tenant_id: &str) -> Self {
        TenantSettings {
            tenant_id: tenant_id.to_string(),
            mask_personal_data: false,
            mask_fields: Vec::new(),
            version: 0,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.tenant_id.trim().is_empty() {
            return Err(ValidationError::new("tenant_id", "is required"));
        }
        if self.mask_fields.len() > MAX_MASK_FIELDS {
            return Err(ValidationError::new("mask_fields", format!("at most {MAX_MASK_FIELDS} fields")));
        }
        for (i, f) in self.mask_fields.iter().enumerate() {
            let ok = !f.is_empty()
                && f.len() <= 64
                && f.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(ValidationError::new(
                    format!("mask_fields[{i}]"),
                    format!("`{f}` is not a field name (lowercase letters, digits and `_`, at most 64)"),
                ));
            }
        }
        Ok(())
    }
}

/// The personal values of `event` under `settings`, longest first; empty when the tenant does
/// not mask.
pub fn personal_values(event: &Event, settings: &TenantSettings) -> Vec<String> {
    if !settings.mask_personal_data {
        return Vec::new();
    }
    let names = PERSONAL_TOKENS.iter().copied().chain(settings.mask_fields.iter().map(String::as_str));
    let mut values: Vec<String> = names
        .filter_map(|name| match token_value(event, name)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|s| s.chars().count() >= MIN_MASKED_LEN)
        .collect();
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// Replaces personal values, in every form rendering can give them, by masks.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// (needle, mask), longest needle first so a value is masked before any value inside it.
    needles: Vec<(String, String)>,
    /// The values themselves (JSON numbers are matched whole).
    values: Vec<String>,
}

impl Masker {
    /// Values shorter than [`MIN_MASKED_LEN`] are ignored; so no mask is ever longer than what
    /// it replaces.
    pub fn new(values: &[String]) -> Self {
        let values: Vec<String> = values.iter().filter(|v| v.chars().count() >= MIN_MASKED_LEN).cloned().collect();
        let mut needles = Vec::new();
        for v in &values {
            let mask = mask_of(v);
            for form in forms(v) {
                if !needles.iter().any(|(n, _)| *n == form) {
                    needles.push((form, mask.clone()));
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        Masker { needles, values }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every personal value masked. A phone mask keeps two digits, which with the
    /// text around it can spell a value again (`00000000` in `0000000000`), so passes repeat
    /// until nothing is found; each replacement turns digits into `*` or shortens the text, so
    /// this ends (the bound is a guard).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for _ in 0..16 {
            let mut replaced = false;
            for (needle, mask) in &self.needles {
                if out.contains(needle.as_str()) {
                    out = Cow::Owned(out.replace(needle.as_str(), mask));
                    replaced = true;
                }
            }
            if !replaced {
                break;
            }
        }
        out
    }

    /// Masks `text` in place.
    pub fn mask_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.mask(text) {
            *text = masked;
        }
    }

    /// Masks a body: a JSON document is masked inside its string values only (decoded, masked,
    /// re-encoded), and a JSON number equal to a personal value becomes `null`, so no value,
    /// however hostile, can break the document's structure; anything else is masked as text.
    pub fn mask_body_in_place(&self, body: &mut String) {
        match self.mask_json(body) {
            Some(Cow::Owned(masked)) => *body = masked,
            Some(Cow::Borrowed(_)) => {}
            None => self.mask_in_place(body),
        }
    }

    /// `None` when `text` is not a JSON object or array.
    fn mask_json<'a>(&self, text: &'a str) -> Option<Cow<'a, str>> {
        if !matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'[')) {
            return None;
        }
        serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
        let b = text.as_bytes();
        let (mut out, mut last, mut i) = (String::new(), 0, 0);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    let start = i;
                    i += 1;
                    while b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                    let decoded: String = serde_json::from_str(&text[start..i]).ok()?;
                    if let Cow::Owned(masked) = self.mask(&decoded) {
                        out.push_str(&text[last..start]);
                        out.push_str(&serde_json::to_string(&masked).ok()?);
                        last = i;
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                        i += 1;
                    }
                    if self.values.iter().any(|v| v == &text[start..i]) {
                        out.push_str(&text[last..start]);
                        out.push_str("null");
                        last = i;
                    }
                }
                _ => i += 1,
            }
        }
        if last == 0 {
            return Some(Cow::Borrowed(text));
        }
        out.push_str(&text[last..]);
        Some(Cow::Owned(out))
    }
}

/// A phone number keeps its last two digits; anything else becomes `***`.
fn mask_of(value: &str) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let phone_like =
        digits >= 7 && value.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.'));
    if phone_like {
        let last: String = value.chars().filter(char::is_ascii_digit).skip(digits - 2).collect();
        format!("{}{last}", "*".repeat(digits - 2))
    } else {
        "***".to_string()
    }
}

/// The forms `value` takes in rendered JSON, XML, form and URL output.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let json = serde_json::to_string(value).unwrap_or_default();
    forms.push(json[1..json.len().saturating_sub(1).max(1)].to_string());
    forms.push(crate::template::xml_escape(value, false));
    forms.push(crate::template::xml_escape(value, true));
    forms.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
    let mut pct = String::new();
    crate::template::percent_encode_into(value, &mut pct);
    forms.push(pct);
    forms.sort();
    forms.dedup();
    forms.retain(|f| !f.is_empty());
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    fn settings(on: bool, extra: &[&str]) -> TenantSettings {
        TenantSettings {
            mask_personal_data: on,
            mask_fields: extra.iter().map(|s| s.to_string()).collect(),
            ..TenantSettings::default_for("acme")
        }
    }

    fn event() -> Event {
        parse_event(
            r#"{"id":"e1","type":"call.ended","tenant_id":"acme","call_id":"c1","occurred_at":"2026-01-01T00:00:00Z",
                "data":{"ani":"+1 (777) 673-4736","contact_email":"o'neil&co@example.com","ani_full_name":"Zoë O'Neil",
                        "ani_state":"CA","tracking":"7774839229","order_ref":"ORD-99812"}}"#
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn nothing_is_listed_unless_the_tenant_masks() {
        assert!(personal_values(&event(), &settings(false, &["order_ref"])).is_empty());
    }

    #[test]
    fn personal_tokens_and_the_tenants_fields_are_listed_but_not_business_numbers() {
        let values = personal_values(&event(), &settings(true, &["order_ref"]));
        assert!(values.contains(&"+1 (777) 673-4736".to_string()));
        assert!(values.contains(&"Zoë O'Neil".to_string()));
        assert!(values.contains(&"ORD-99812".to_string()));
        assert!(!values.contains(&"7774839229".to_string()), "the tracking number is the business's");
        assert!(!values.contains(&"CA".to_string()), "too short to mask safely");
    }

    #[test]
    fn every_rendered_form_is_masked_and_stays_valid() {
        let values = personal_values(&event(), &settings(true, &[]));
        let m = Masker::new(&values);
        let json =
            serde_json::json!({"name": "Zoë O'Neil", "email": "o'neil&co@example.com", "ani": "+1 (777) 673-4736"})
                .to_string();
        let masked = m.mask(&json);
        let back: Value = serde_json::from_str(&masked).expect("masked JSON stays valid");
        assert_eq!(back["ani"], "*********36");
        assert_eq!(back["name"], "***");
        assert_eq!(back["email"], "***");

        let xml = format!("<c><n>{}</n><e a=\"{}\"/></c>", "Zo&#235; O&apos;Neil", "o&apos;neil&amp;co@example.com");
        // The numeric reference is not a form rendering gives; the named one is.
        assert!(m.mask(&xml).contains("<e a=\"***\"/>"));
        assert!(m.mask("<n>Zoë O&apos;Neil</n>").contains("<n>***</n>"));

        let form: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("ani", "+1 (777) 673-4736")
            .append_pair("email", "o'neil&co@example.com")
            .finish();
        let decoded: Vec<(String, String)> =
            url::form_urlencoded::parse(m.mask(&form).as_bytes()).into_owned().collect();
        assert_eq!(decoded, vec![("ani".into(), "*********36".into()), ("email".into(), "***".into())]);

        let mut pct = String::new();
        crate::template::percent_encode_into("+1 (777) 673-4736", &mut pct);
        assert_eq!(m.mask(&format!("https://crm.example/c?from={pct}")), "https://crm.example/c?from=*********36");
    }

    #[test]
    fn json_bodies_are_masked_inside_strings_only() {
        // A hostile value that is also structural text of the document.
        let hostile = r#"k":"v"#.to_string();
        let m = Masker::new(&[hostile.clone(), "34.0522".to_string(), "7776734736".to_string()]);
        let doc = serde_json::json!({"k": "v", "name": hostile, "lat": 34.0522, "n": 7, "tel": "call 7776734736"});
        let mut body = doc.to_string();
        m.mask_body_in_place(&mut body);
        let back: Value = serde_json::from_str(&body).expect("still JSON");
        assert_eq!(back["k"], "v");
        assert_eq!(back["name"], "***");
        assert_eq!(back["lat"], Value::Null);
        assert_eq!(back["n"], 7);
        assert_eq!(back["tel"], "call ********36");
        let mut untouched = r#"{"a": "b"}"#.to_string();
        m.mask_body_in_place(&mut untouched);
        assert_eq!(untouched, r#"{"a": "b"}"#);
        let mut text = "caller 7776734736".to_string();
        m.mask_body_in_place(&mut text);
        assert_eq!(text, "caller ********36");
    }

    #[test]
    fn a_mask_does_not_spell_the_value_again() {
        // Found by the `masking` fuzz target: the mask's last two digits and the digits after
        // the first match made the value again.
        let m = Masker::new(&["00000000".to_string()]);
        let masked = m.mask("00000000000000");
        assert!(!masked.contains("00000000"), "{masked}");
        // Short values are not masked at all (their mask could be longer than they are).
        assert!(Masker::new(&["*".to_string(), "ab".to_string()]).is_empty());
    }

    #[test]
    fn text_without_personal_values_is_not_copied() {
        let m = Masker::new(&["7776734736".to_string()]);
        assert!(matches!(m.mask("nothing here"), Cow::Borrowed(_)));
        assert!(Masker::new(&[]).is_empty());
    }

    #[test]
    fn mask_fields_must_be_names() {
        let err = settings(true, &["ok_field", "Bad Field"]).validate().unwrap_err();
        assert_eq!(err.field, "mask_fields[1]");
        let many: Vec<String> = (0..=MAX_MASK_FIELDS).map(|i| format!("f{i}")).collect();
        let s = TenantSettings { mask_fields: many, ..settings(true, &[]) };
        assert_eq!(s.validate().unwrap_err().field, "mask_fields");
        assert_eq!(TenantSettings::default_for(" ").validate().unwrap_err().field, "tenant_id");
    }
}
