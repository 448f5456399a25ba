//! Compile any body for any content type; whatever compiles renders on the sample event into
//! output that is well-formed for its content type (README "Templates": "Bodies are rendered
//! per content type so the output is always well-formed and escaped").
//!
//! Input: byte 0 picks the content type (json, xml, form, text), byte 1 the body kind, the
//! rest (lossy UTF-8) is the body text:
//! - 0: fields, JSON example; 1: fields, XML example (the text is the example, no mappings:
//!   token references in the example map themselves);
//! - 2: pairs, one per line: `key=token`, `key:=<json constant>`, or `key` (its own name);
//! - 3: text (minijinja) template.
//!
//! Text templates carry the user's own literal text, so for them the guarantee is conditional:
//! when the template's *skeleton* (every `{{ … }}` / `%token%` replaced by a neutral value for
//! where it stands) is well-formed, the render must be too. Templates with `{% … %}` tags or
//! `safe` (which opt out of escaping) are rendered but not checked.
#![no_main]

mod common;

use hookmesh_core::template::{CompiledTemplate, ContentType, FieldMapping, RenderContext, Source, TemplateBody};
use hookmesh_core::tokens;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TYPES: [ContentType; 4] = [ContentType::Json, ContentType::Xml, ContentType::Form, ContentType::Text];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let content_type = TYPES[data[0] as usize % 4];
    let kind = data[1] % 4;
    let text = String::from_utf8_lossy(&data[2..]).into_owned();
    let body = match kind {
        0 => TemplateBody::Fields { format: ContentType::Json, example: text.clone(), fields: vec![] },
        1 => TemplateBody::Fields { format: ContentType::Xml, example: text.clone(), fields: vec![] },
        2 => TemplateBody::Pairs { pairs: parse_pairs(&text) },
        _ => TemplateBody::Text { source: text.clone() },
    };
    let Ok(compiled) = CompiledTemplate::compile(&body, content_type) else { return };
    let event = tokens::sample_event();
    let ctx = RenderContext { event: &event, tz: chrono_tz::UTC };
    let out = match compiled.render(&ctx) {
        Ok(out) => out,
        // Text templates may fail on data (a filter given the wrong type); structured bodies
        // cannot fail short of the size limit.
        Err(e) => {
            assert!(
                kind == 3 || matches!(e, hookmesh_core::template::RenderError::TooLarge(_)),
                "structured body failed to render: {e}"
            );
            return;
        }
    };
    let what = format!("{} body as {content_type}", ["fields(json)", "fields(xml)", "pairs", "text"][kind as usize]);

    if kind == 3 {
        check_text(&text, content_type, &out, &what);
        return;
    }
    // Structured bodies: fields(xml) → XML for xml and text, JSON for json; fields(json) and
    // pairs → JSON for json and text, XML for xml. Form for all.
    let as_xml = content_type == ContentType::Xml || (kind == 1 && content_type == ContentType::Text);
    if content_type == ContentType::Form {
        let pairs = common::form(&out, &what);
        let expected = compiled.render_pairs(&ctx).expect("structured bodies render as pairs");
        assert_eq!(pairs, expected, "{what}: form body and query pairs differ");
    } else if as_xml {
        let root = common::xml(&out, &what);
        if kind != 1 {
            assert_eq!(root.name, "payload", "{what}");
        }
    } else {
        let got = common::json(&out, &what);
        let expected = match (kind, &body) {
            (0, TemplateBody::Fields { example, .. }) => {
                serde_json::from_str::<Value>(example).ok().map(|v| fill(v, &ctx))
            }
            (2, TemplateBody::Pairs { pairs }) => Some(Value::Object(
                pairs
                    .iter()
                    .map(|p| {
                        let v = match &p.source {
                            Source::Token { token } => ctx.token(token).unwrap_or(Value::Null),
                            Source::Constant { value } => value.clone(),
                            Source::Name => Value::String(p.path.trim().to_string()),
                        };
                        (p.path.trim().to_string(), v)
                    })
                    .collect(),
            )),
            _ => None,
        };
        if let Some(expected) = expected {
            assert!(common::json_eq_loose(&got, &expected), "{what}: rendered {got}\nexpected {expected}");
        }
    }
});

/// `key=token`, `key:=json`, `key` per line.
fn parse_pairs(text: &str) -> Vec<FieldMapping> {
    text.lines()
        .map(|line| {
            if let Some((k, v)) = line.split_once(":=") {
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                FieldMapping { path: k.to_string(), source: Source::Constant { value } }
            } else if let Some((k, t)) = line.split_once('=') {
                FieldMapping { path: k.to_string(), source: Source::Token { token: t.to_string() } }
            } else {
                FieldMapping { path: line.to_string(), source: Source::Name }
            }
        })
        .collect()
}

/// The example with every token-reference value (`"%name%"`, `"{{ name }}"`) replaced by the
/// token's value on the event (absent → null), as a fields(json) body renders as JSON.
fn fill(v: Value, ctx: &RenderContext) -> Value {
    match v {
        Value::String(s) => match token_ref(&s) {
            Some(name) => ctx.token(name).unwrap_or(Value::Null),
            None => Value::String(s),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(|x| fill(x, ctx)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, fill(x, ctx))).collect()),
        other => other,
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn token_ref(s: &str) -> Option<&str> {
    let s = s.trim();
    let inner = match s.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        Some(inner) => inner,
        None => s.strip_prefix("{{")?.strip_suffix("}}")?.trim(),
    };
    is_ident(inner).then_some(inner)
}

fn catalog_token(name: &str) -> bool {
    is_ident(name) && tokens::lookup(name).is_some_and(|d| d.name == name)
}

// ---- text templates -------------------------------------------------------------------------

fn check_text(source: &str, content_type: ContentType, out: &str, what: &str) {
    if content_type == ContentType::Text || source.contains("{%") || source.contains("safe") || source.contains("_hm_")
    {
        return;
    }
    let Some(skeleton) = skeleton(source, content_type) else { return };
    match content_type {
        ContentType::Json => {
            if serde_json::from_str::<Value>(&skeleton).is_ok() {
                common::json(out, &format!("{what} (skeleton {skeleton:?})"));
            }
        }
        ContentType::Xml => {
            if common::try_xml(&skeleton).is_ok() {
                common::xml(out, &format!("{what} (skeleton {skeleton:?})"));
            }
        }
        ContentType::Form => {
            if common::is_canonical_form(&skeleton) {
                common::form(out, &format!("{what} (skeleton {skeleton:?})"));
            }
        }
        ContentType::Text => {}
    }
}

/// The template with comments removed and every expression replaced by what stands for any
/// value there: `null` (a JSON value) or nothing (inside a JSON string); in XML `&amp; --`,
/// text that is valid in element content and attribute values and invalid in names, between
/// attributes and in comments (where escaping cannot help); nothing in form.
fn skeleton(src: &str, content_type: ContentType) -> Option<String> {
    let json = content_type == ContentType::Json;
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    let value = |in_string: bool| match content_type {
        ContentType::Json if in_string => "",
        ContentType::Json => "null",
        ContentType::Xml => "&amp; --",
        _ => "",
    };
    while i < src.len() {
        let rest = &src[i..];
        if rest.starts_with("{#") {
            i += rest.find("#}")? + 2;
        } else if rest.starts_with("{{") {
            let close = scan_tag_end(src, i + 2, "}}")?;
            out.push_str(value(in_string));
            i = close + 2;
        } else if let Some(after) = rest.strip_prefix('%') {
            let name = after.find('%').map(|e| &after[..e]);
            match name {
                Some(name) if catalog_token(name) => {
                    out.push_str(value(in_string));
                    i += name.len() + 2;
                }
                _ => {
                    out.push('%');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next()?;
            if json {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_string = false;
                    }
                } else if c == '"' {
                    in_string = true;
                }
            }
            out.push(c);
            i += c.len_utf8();
        }
    }
    // minijinja drops one trailing newline.
    if out.ends_with('\n') {
        out.pop();
        if out.ends_with('\r') {
            out.pop();
        }
    }
    Some(out)
}

fn scan_tag_end(src: &str, from: usize, close: &str) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut j = from;
    while j < bytes.len() {
        match bytes[j] {
            q @ (b'"' | b'\'') => {
                j += 1;
                while j < bytes.len() && bytes[j] != q {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                j += 1;
            }
            _ if src.get(j..).is_some_and(|r| r.starts_with(close)) => return Some(j),
            _ => j += 1,
        }
    }
    None
}
