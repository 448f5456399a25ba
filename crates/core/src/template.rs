//! Webhook body templates: extraction of fields from an example document, compilation at
//! configuration time, and rendering against an event.
//!
//! # Kinds of body
//! - [`TemplateBody::Fields`]: the customer pastes an example document (JSON or XML, as in
//!   the reference product's "Template Format" box). [`extract_fields`] lists its leaf fields;
//!   each is mapped to a data source ([`Source`]): a catalog token, a constant, or the field's
//!   own name. Rendering fills the example's structure with the mapped values, so the output
//!   is always well-formed, correctly escaped and typed.
//! - [`TemplateBody::Pairs`]: a flat key/value list.
//! - [`TemplateBody::Text`]: a minijinja template for bodies a structure cannot express.
//!
//! # Field paths
//! - JSON: object keys joined with `.`, array elements as `[i]`: `contact.first`,
//!   `items[0].sku`. A key that is empty or contains `.`, `[`, `]` or `"` is written as a
//!   quoted segment: `meta["a.b"]`. Empty objects and arrays are leaves (map them to an object
//!   or array token such as `tags` or `prompt_responses`). The example must be an object or
//!   an array; duplicate keys are refused. Key order of the example is kept in the output.
//! - XML: element names joined with `/` from the root (`lead/contact/first`), attributes as
//!   `@name` (`lead/contact/@id`); a name that repeats among siblings gets a 1-based index
//!   (`lead/items/item[2]`). An element without child elements is a leaf (its text, CDATA
//!   included). `xmlns` attributes are kept as they are and are not fields; comments,
//!   processing instructions and the DOCTYPE are dropped; whitespace between elements is
//!   dropped, other text between elements is kept verbatim.
//!
//! # Token references
//! An example value that is exactly `%name%` or `{{ name }}` (surrounding whitespace
//! ignored, `name` an identifier) is a token reference: [`extract_fields`] proposes it as a
//! [`Source::Token`], and an unmapped field with such a value is filled from that token
//! (an unknown token there is a configuration error on `example`). Values that merely contain
//! a reference (`"Hi %ani%"`) are constants: use a text template for interpolation.
//!
//! # Rendering per content type
//! | body \ content type | json | xml | form | text |
//! |---|---|---|---|---|
//! | fields (json example) | the example's structure | `<payload>` + elements | leaf pairs | JSON |
//! | fields (xml example) | `{"root": {...}}`, `@attr`, repeated names → arrays | the example's structure | leaf pairs | XML |
//! | pairs | object | `<payload><key>…</key></payload>` | pairs | JSON |
//! | text | auto-escape JSON | auto-escape XML | values url-encoded | no escaping |
//!
//! Absent tokens render as `null` in JSON, an empty element in XML and an empty string
//! elsewhere. Timestamp tokens are rendered in the webhook's time zone as RFC 3339 with
//! milliseconds and offset (`2019-03-27T20:05:00.000-04:00`; `Z` when the offset is zero).
//! In XML, object values become child elements (keys not valid as XML names are sanitised:
//! invalid characters → `_`), array values repeat an `<item>` element, and characters XML 1.0
//! cannot carry (control characters other than tab/CR/LF) are replaced by U+FFFD.
//!
//! # Text templates
//! `%token%` is a synonym of `{{ token }}` in template text (outside `{{ }}`/`{% %}` tags)
//! when `token` is a catalog token; any other `%` stays literal. Variables: every catalog
//! token, `event` (the whole event as JSON), `data` (the event's data object, including
//! keys outside the catalog) and `context` (call-context values, rendered as placeholders the
//! dispatcher fills: [`crate::context`]); any other top-level name is refused at compile time. Undefined
//! attributes are chainable (`{{ data.a.b }}` renders empty instead of failing the delivery).
//! With content type JSON, values are auto-escaped as JSON values (`{{ ani }}` →
//! `"7776734736"`); an expression or `%token%` written *inside* a JSON string literal of the
//! template (`"phone": "%ani%"`, `"name": "{{ first }} {{ last }}"`) is instead rendered as
//! escaped string content, so both styles give valid JSON.

use crate::error::ValidationError;
use crate::event::{parse_timestamp, Event};
use crate::tokens::{self, TokenType};
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event as XmlEvent};
use quick_xml::name::QName;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// Largest accepted template (example document, text source or serialised pair list).
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Largest rendered body (or sum of query pairs).
/// Instructions one text-template render may execute (minijinja fuel).
pub const TEMPLATE_FUEL: u64 = 200_000;
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

const BODY_TEMPLATE_NAME: &str = "body";
const JSON_IN_STRING_FILTER: &str = "_hm_json_in_string";
const FORM_ESCAPE: AutoEscape = AutoEscape::Custom("form");

// ---------------------------------------------------------------------------------------------
// Public data model
// ---------------------------------------------------------------------------------------------

/// The body's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    #[default]
    Json,
    Xml,
    Form,
    Text,
}

impl ContentType {
    /// The `Content-Type` header value.
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Xml => "application/xml",
            ContentType::Form => "application/x-www-form-urlencoded",
            ContentType::Text => "text/plain; charset=utf-8",
        }
    }

    /// The short name, as serialised: `json`, `xml`, `form`, `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => "json",
            ContentType::Xml => "xml",
            ContentType::Form => "form",
            ContentType::Text => "text",
        }
    }

    /// Parses a short name or a MIME type (parameters such as `; charset=utf-8` ignored;
    /// `text/xml`, `text/json`, `+json`/`+xml` suffixes accepted), case-insensitive.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match s.as_str() {
            "json" | "application/json" | "text/json" => Some(ContentType::Json),
            "xml" | "application/xml" | "text/xml" => Some(ContentType::Xml),
            "form"
            | "form-urlencoded"
            | "x-www-form-urlencoded"
            | "urlencoded"
            | "application/x-www-form-urlencoded" => Some(ContentType::Form),
            "text" | "plain" | "text/plain" => Some(ContentType::Text),
            other if other.contains('/') && other.ends_with("+json") => Some(ContentType::Json),
            other if other.contains('/') && other.ends_with("+xml") => Some(ContentType::Xml),
            _ => None,
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A catalog token (`ani` or `%ani%`), or a call-context value (`context.lead_id`, also
    /// `{{ context.lead_id }}`), resolved by the dispatcher like `{{ context.* }}` in text
    /// templates ([`crate::context`]).
    Token { token: String },
    /// A fixed value (any JSON value; in XML and form output its text).
    Constant { value: serde_json::Value },
    /// The field's own name: the last key of a JSON path, the element or attribute name of
    /// an XML path, the key of a pair.
    Name,
}

/// One field of a template and its data source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub path: String,
    pub source: Source,
}

/// A template's body definition, as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TemplateBody {
    /// An example document (JSON or XML per `format`); its leaf fields are extracted and each is filled from its mapping. Fields without a mapping keep the example's value, except that an example value that is itself a token reference ("%ani%" or "{{ ani }}") maps to that token.
    Fields {
        format: ContentType,
        example: String,
        #[serde(default)]
        fields: Vec<FieldMapping>,
    },
    /// A flat key/value list (path = key), rendered as a JSON object, an XML document (<payload><key>…</key></payload>), form pairs or query pairs depending on the content type.
    Pairs { pairs: Vec<FieldMapping> },
    /// A minijinja text template; `%token%` is accepted as a synonym of `{{ token }}`.
    Text { source: String },
}

impl TemplateBody {
    /// The content type a body renders in when none is given: a fields body's example format
    /// (a template made from an XML example sends XML), JSON otherwise.
    pub fn natural_content_type(&self) -> ContentType {
        match self {
            TemplateBody::Fields { format, .. } => *format,
            TemplateBody::Pairs { .. } | TemplateBody::Text { .. } => ContentType::default(),
        }
    }
}

/// What a render reads: the event, the webhook's time zone, and the nonce of call-context
/// placeholders (`context.*` renders as [`crate::context::placeholder`] when set, as absent
/// otherwise, e.g. in previews).
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    pub event: &'a Event,
    pub tz: chrono_tz::Tz,
    pub context: Option<&'a str>,
}

impl<'a> RenderContext<'a> {
    pub fn new(event: &'a Event, tz: chrono_tz::Tz) -> Self {
        RenderContext { event, tz, context: None }
    }
}

/// `context` in text templates: any name yields its placeholder.
#[derive(Debug)]
struct ContextPlaceholders(String);

impl minijinja::value::Object for ContextPlaceholders {
    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let name = key.as_str()?;
        crate::context::is_name(name).then(|| minijinja::Value::from(crate::context::placeholder(&self.0, name)))
    }
}

impl RenderContext<'_> {
    /// A token's value on the event ([`tokens::token_value`]); Timestamp-typed tokens are
    /// converted into the time zone as RFC 3339 with milliseconds and offset.
    pub fn token(&self, name: &str) -> Option<serde_json::Value> {
        let def = tokens::lookup(name);
        let value = tokens::token_value(self.event, def.map_or(name, |d| d.name))?;
        match def {
            Some(d) if matches!(d.ty, TokenType::Timestamp) => match parse_timestamp(&value) {
                Ok(t) => {
                    Some(Value::String(t.with_timezone(&self.tz).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                }
                Err(_) => Some(value),
            },
            _ => Some(value),
        }
    }
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("rendered body is {0} bytes, larger than the {MAX_RENDERED_BYTES} byte limit")]
    TooLarge(usize),
    #[error("template: {0}")]
    Template(String),
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/// Lists the leaf fields of an example document, each with the source it would get
/// unmapped: the token it references (`"%ani%"`, `"{{ ani }}"`), else its example value as a
/// constant. Errors name `example` (with line and column) or `format`.
pub fn extract_fields(format: ContentType, example: &str) -> Result<Vec<FieldMapping>, ValidationError> {
    check_size("example", example.len())?;
    let parsed = parse_example(format, example)?;
    Ok(parsed
        .leaves
        .into_iter()
        .map(|leaf| {
            let source = match leaf.example.as_str() {
                Some(s) if context_ref(s).is_some() => {
                    Source::Token { token: format!("context.{}", context_ref(s).expect("checked")) }
                }
                Some(s) if token_ref(s).is_some() => {
                    let name = token_ref(s).expect("checked");
                    Source::Token { token: tokens::lookup(name).map_or(name, |d| d.name).to_string() }
                }
                _ => Source::Constant { value: leaf.example },
            };
            FieldMapping { path: leaf.path, source }
        })
        .collect())
}

/// A leaf found in an example.
struct Leaf {
    path: String,
    /// The field's own name (for [`Source::Name`]).
    name: String,
    example: Value,
}

enum Shape {
    Json(JNode),
    Xml(XElem),
}

struct ParsedExample {
    shape: Shape,
    leaves: Vec<Leaf>,
}

fn parse_example(format: ContentType, example: &str) -> Result<ParsedExample, ValidationError> {
    let mut leaves = Vec::new();
    let shape = match format {
        ContentType::Json => {
            let raw: RawJson = serde_json::from_str(example).map_err(|e| {
                let text = e.to_string();
                let reason = text.rsplit_once(" at line ").map_or(text.as_str(), |(r, _)| r);
                ValidationError::new(
                    "example",
                    format!("is not valid JSON: line {}, column {}: {reason}", e.line(), e.column()),
                )
            })?;
            let root = match raw {
                RawJson::Obj(m) if m.is_empty() => JNode::Obj(Vec::new()),
                RawJson::Arr(a) if a.is_empty() => JNode::Arr(Vec::new()),
                raw @ (RawJson::Obj(_) | RawJson::Arr(_)) => build_json(raw, "", "", &mut leaves),
                RawJson::Scalar(_) => return Err(ValidationError::new("example", "must be a JSON object or array")),
            };
            Shape::Json(root)
        }
        ContentType::Xml => {
            let raw = parse_xml(example)?;
            let path = raw.name.clone();
            Shape::Xml(build_xml(raw, path, &mut leaves))
        }
        other => {
            return Err(ValidationError::new(
                "format",
                format!("must be json or xml (the example document's format), not {other}"),
            ))
        }
    };
    Ok(ParsedExample { shape, leaves })
}

/// The call-context name a token reference names: `context.lead_id`, `%context.lead_id%`,
/// `{{ context.lead_id }}` → `lead_id`.
pub fn context_ref(s: &str) -> Option<&str> {
    let s = s.trim();
    let inner = if let Some(inner) = s.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        inner
    } else if let Some(inner) = s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        inner.trim()
    } else {
        s
    };
    inner.strip_prefix("context.").filter(|n| crate::context::is_name(n))
}

/// `%name%` or `{{ name }}` (whole value, whitespace trimmed) → `name`.
fn token_ref(s: &str) -> Option<&str> {
    let s = s.trim();
    let inner = if let Some(inner) = s.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        inner
    } else {
        s.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))?.trim()
    };
    is_ident(inner).then_some(inner)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// After a `%`: the catalog token of a `%token%` reference starting there.
fn percent_token(after: &str) -> Option<&'static str> {
    let name = &after[..after.find('%')?];
    if is_ident(name) {
        catalog_token(name)
    } else {
        None
    }
}

/// Whether `name` is exactly a catalog token name.
fn catalog_token(name: &str) -> Option<&'static str> {
    tokens::lookup(name).map(|d| d.name).filter(|n| *n == name)
}

// ---- JSON examples --------------------------------------------------------------------------

/// A JSON document with object key order kept (and duplicate keys refused).
enum RawJson {
    Scalar(Value),
    Obj(Vec<(String, RawJson)>),
    Arr(Vec<RawJson>),
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawJson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::Null))
            }
            fn visit_none<E>(self) -> Result<RawJson, E> {
                Ok(RawJson::Scalar(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawJson, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<RawJson>()? {
                    items.push(item);
                }
                Ok(RawJson::Arr(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawJson, A::Error> {
                let mut members: Vec<(String, RawJson)> = Vec::new();
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    let value = map.next_value::<RawJson>()?;
                    members.push((key, value));
                }
                Ok(RawJson::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// The compiled structure of a JSON example; leaves index the template's slots.
#[derive(Debug, Clone)]
enum JNode {
    Leaf(usize),
    Obj(Vec<(String, JNode)>),
    Arr(Vec<JNode>),
}

/// A field path with its separators unified, so either notation finds a field of a JSON or an
/// XML example: `lead.first` = `lead/first`, `lead.@id` = `lead/@id`, `items[0].sku` =
/// `items[0]/sku`. Quoted JSON keys (`a["x.y"]`) are kept as written.
pub fn path_key(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in path.trim().chars() {
        if quoted {
            out.push(c);
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => escaped = false,
            }
        } else {
            match c {
                '"' => {
                    quoted = true;
                    out.push(c);
                }
                '.' | '/' => out.push('/'),
                c => out.push(c),
            }
        }
    }
    out
}

fn json_key_segment(parent: &str, key: &str) -> String {
    let simple = !key.is_empty() && !key.contains(['.', '[', ']', '"']);
    match (simple, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", serde_json::to_string(key).unwrap_or_default()),
    }
}

fn build_json(raw: RawJson, path: &str, name: &str, leaves: &mut Vec<Leaf>) -> JNode {
    match raw {
        RawJson::Obj(members) if !members.is_empty() => JNode::Obj(
            members
                .into_iter()
                .map(|(key, value)| {
                    let p = json_key_segment(path, &key);
                    let node = build_json(value, &p, &key, leaves);
                    (key, node)
                })
                .collect(),
        ),
        RawJson::Arr(items) if !items.is_empty() => JNode::Arr(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| build_json(item, &format!("{path}[{i}]"), name, leaves))
                .collect(),
        ),
        other => {
            let example = match other {
                RawJson::Scalar(v) => v,
                RawJson::Obj(_) => Value::Object(Map::new()),
                RawJson::Arr(_) => Value::Array(Vec::new()),
            };
            leaves.push(Leaf { path: path.to_string(), name: name.to_string(), example });
            JNode::Leaf(leaves.len() - 1)
        }
    }
}

// ---- XML examples ---------------------------------------------------------------------------

struct RawElem {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<RawChild>,
}

enum RawChild {
    Elem(RawElem),
    Text(String),
}

impl RawElem {
    fn push_text(&mut self, s: &str) {
        if let Some(RawChild::Text(t)) = self.children.last_mut() {
            t.push_str(s);
        } else {
            self.children.push(RawChild::Text(s.to_string()));
        }
    }
}

/// The compiled structure of an XML example.
#[derive(Debug, Clone)]
struct XElem {
    name: String,
    attrs: Vec<XAttr>,
    body: XBody,
}

#[derive(Debug, Clone)]
enum XAttr {
    Slot { name: String, slot: usize },
    Literal { name: String, value: String },
}

#[derive(Debug, Clone)]
enum XBody {
    Leaf(usize),
    Children(Vec<XChild>),
}

#[derive(Debug, Clone)]
enum XChild {
    Elem(XElem),
    Text(String),
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn xml_error(example: &str, offset: u64, reason: impl fmt::Display) -> ValidationError {
    let (line, col) = line_col(example, offset as usize);
    ValidationError::new("example", format!("is not valid XML: line {line}, column {col}: {reason}"))
}

fn parse_xml(example: &str) -> Result<RawElem, ValidationError> {
    let mut reader = quick_xml::Reader::from_str(example);
    {
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.expand_empty_elements = false;
    }
    let decoder = reader.decoder();
    let mut stack: Vec<RawElem> = Vec::new();
    let mut root: Option<RawElem> = None;

    fn close(el: RawElem, stack: &mut [RawElem], root: &mut Option<RawElem>) -> Result<(), &'static str> {
        if let Some(parent) = stack.last_mut() {
            parent.children.push(RawChild::Elem(el));
            Ok(())
        } else if root.is_some() {
            Err("more than one root element")
        } else {
            *root = Some(el);
            Ok(())
        }
    }

    loop {
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => return Err(xml_error(example, reader.error_position(), e)),
        };
        let pos = reader.buffer_position();
        let text: Option<Cow<'_, str>> = match event {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                // quick-xml does not check names; the output repeats them, so they must be
                // XML names (and `b[1]` or `@x` would also collide with generated paths).
                let check_name = |n: &str| {
                    if n.split(':').all(is_xml_name) {
                        Ok(())
                    } else {
                        Err(xml_error(example, pos, format!("`{n}` is not a valid XML name")))
                    }
                };
                check_name(&name)?;
                let mut attrs = Vec::new();
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| xml_error(example, pos, err))?;
                    let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    check_name(&key)?;
                    let value = attr.decode_and_unescape_value(decoder).map_err(|err| xml_error(example, pos, err))?;
                    attrs.push((key, value.into_owned()));
                }
                let el = RawElem { name, attrs, children: Vec::new() };
                if matches!(event, XmlEvent::Start(_)) {
                    stack.push(el);
                } else {
                    close(el, &mut stack, &mut root).map_err(|r| xml_error(example, pos, r))?;
                }
                None
            }
            XmlEvent::End(_) => {
                let el = stack.pop().ok_or_else(|| xml_error(example, pos, "unexpected end tag"))?;
                close(el, &mut stack, &mut root).map_err(|r| xml_error(example, pos, r))?;
                None
            }
            XmlEvent::Text(t) => Some(t.xml10_content().map_err(|err| xml_error(example, pos, err))?),
            XmlEvent::CData(c) => Some(c.decode().map_err(|err| xml_error(example, pos, err))?),
            XmlEvent::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) | Err(_) => return Err(xml_error(example, pos, "invalid character reference")),
                    }
                } else {
                    let name = r.decode().map_err(|err| xml_error(example, pos, err))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => s.to_string(),
                        None => return Err(xml_error(example, pos, format!("unknown entity `&{name};`"))),
                    }
                };
                Some(Cow::Owned(resolved))
            }
            XmlEvent::Eof => break,
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::DocType(_) => None,
        };
        if let Some(text) = text {
            if let Some(cur) = stack.last_mut() {
                cur.push_text(&text);
            } else if !text.trim().is_empty() {
                return Err(xml_error(example, pos, "text outside the root element"));
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(xml_error(example, example.len() as u64, format!("element <{}> is not closed", open.name)));
    }
    root.ok_or_else(|| xml_error(example, 0, "no root element"))
}

fn build_xml(el: RawElem, path: String, leaves: &mut Vec<Leaf>) -> XElem {
    let mut attrs = Vec::with_capacity(el.attrs.len());
    for (name, value) in el.attrs {
        if name == "xmlns" || name.starts_with("xmlns:") {
            attrs.push(XAttr::Literal { name, value });
        } else {
            leaves.push(Leaf { path: format!("{path}/@{name}"), name: name.clone(), example: Value::String(value) });
            attrs.push(XAttr::Slot { name, slot: leaves.len() - 1 });
        }
    }
    let has_elements = el.children.iter().any(|c| matches!(c, RawChild::Elem(_)));
    let body = if !has_elements {
        let text: String = el
            .children
            .into_iter()
            .filter_map(|c| match c {
                RawChild::Text(t) => Some(t),
                RawChild::Elem(_) => None,
            })
            .collect();
        leaves.push(Leaf { path, name: el.name.clone(), example: Value::String(text) });
        XBody::Leaf(leaves.len() - 1)
    } else {
        let mut totals: HashMap<String, usize> = HashMap::new();
        for c in &el.children {
            if let RawChild::Elem(e) = c {
                *totals.entry(e.name.clone()).or_default() += 1;
            }
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut children = Vec::new();
        for c in el.children {
            match c {
                RawChild::Elem(child) => {
                    let n = seen.entry(child.name.clone()).or_default();
                    *n += 1;
                    let child_path = if totals[&child.name] > 1 {
                        format!("{path}/{}[{n}]", child.name)
                    } else {
                        format!("{path}/{}", child.name)
                    };
                    children.push(XChild::Elem(build_xml(child, child_path, leaves)));
                }
                RawChild::Text(t) if !t.trim().is_empty() => children.push(XChild::Text(t)),
                RawChild::Text(_) => {}
            }
        }
        XBody::Children(children)
    };
    XElem { name: el.name, attrs, body }
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Src {
    Token(&'static str),
    /// A call-context value, by name.
    Context(String),
    Constant(Value),
    Name,
}

#[derive(Debug, Clone)]
struct Slot {
    path: String,
    name: String,
    source: Src,
}

#[derive(Debug, Clone)]
enum Compiled {
    Json { root: JNode, slots: Vec<Slot> },
    Xml { root: XElem, slots: Vec<Slot> },
    Pairs { slots: Vec<Slot> },
    Text { env: Environment<'static>, tokens: Vec<&'static str>, uses_event: bool, uses_data: bool },
}

/// A body template parsed once at configuration time and shared read-only.
#[derive(Clone)]
pub struct CompiledTemplate {
    content_type: ContentType,
    compiled: Compiled,
}

impl fmt::Debug for CompiledTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.compiled {
            Compiled::Json { .. } => "fields(json)",
            Compiled::Xml { .. } => "fields(xml)",
            Compiled::Pairs { .. } => "pairs",
            Compiled::Text { .. } => "text",
        };
        f.debug_struct("CompiledTemplate")
            .field("kind", &kind)
            .field("content_type", &self.content_type)
            .field("tokens", &self.tokens_used())
            .finish()
    }
}

fn check_size(field: &str, len: usize) -> Result<(), ValidationError> {
    if len > MAX_TEMPLATE_BYTES {
        Err(ValidationError::new(field, format!("is {len} bytes, larger than the {MAX_TEMPLATE_BYTES} byte limit")))
    } else {
        Ok(())
    }
}

fn compile_source(source: &Source, field: &str) -> Result<Src, ValidationError> {
    Ok(match source {
        Source::Token { token } if context_ref(token).is_some() => {
            Src::Context(context_ref(token).expect("checked").to_string())
        }
        Source::Token { token } if token.trim().starts_with("context.") => {
            return Err(ValidationError::new(
                format!("{field}.source.token"),
                format!("`{}` is not a context name (lowercase letters, digits and `_`)", token.trim()),
            ))
        }
        Source::Token { token } => Src::Token(
            tokens::lookup(token)
                .ok_or_else(|| {
                    ValidationError::new(format!("{field}.source.token"), format!("unknown token `{}`", token.trim()))
                })?
                .name,
        ),
        Source::Constant { value } => Src::Constant(value.clone()),
        Source::Name => Src::Name,
    })
}

impl CompiledTemplate {
    /// Validates and compiles a body for a content type. Errors name the offending field
    /// relative to the body, as the API spells them (`example`, `fields[2].path`,
    /// `pairs[1].source.token`, `text`).
    pub fn compile(body: &TemplateBody, content_type: ContentType) -> Result<Self, ValidationError> {
        let compiled = match body {
            TemplateBody::Fields { format, example, fields } => compile_fields(*format, example, fields, content_type)?,
            TemplateBody::Pairs { pairs } => compile_pairs(pairs, content_type)?,
            TemplateBody::Text { source } => compile_text(source, content_type)?,
        };
        Ok(CompiledTemplate { content_type, compiled })
    }

    /// The content type the template was compiled for.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Renders the body for an event. The output is well-formed for the content type and at
    /// most [`MAX_RENDERED_BYTES`] long.
    pub fn render(&self, ctx: &RenderContext) -> Result<String, RenderError> {
        let out = match &self.compiled {
            Compiled::Text { env, tokens, uses_event, uses_data } => {
                render_text(env, tokens, *uses_event, *uses_data, ctx)?
            }
            Compiled::Json { root, slots } => {
                let values = slot_values(slots, ctx);
                match self.content_type {
                    ContentType::Json | ContentType::Text => to_json(&json_out(root, &values))?,
                    ContentType::Xml => {
                        let mut w = XmlOut::new()?;
                        w.start("payload", &[])?;
                        w.jnode_content(root, &values)?;
                        w.end("payload")?;
                        w.finish()?
                    }
                    ContentType::Form => form_encode(&leaf_pairs(slots, &values)),
                }
            }
            Compiled::Xml { root, slots } => {
                let values = slot_values(slots, ctx);
                match self.content_type {
                    ContentType::Xml | ContentType::Text => {
                        let mut w = XmlOut::new()?;
                        w.xelem(root, &values)?;
                        w.finish()?
                    }
                    ContentType::Json => {
                        let out = Out::Obj(vec![(Cow::Borrowed(root.name.as_str()), xelem_out(root, &values))]);
                        to_json(&out)?
                    }
                    ContentType::Form => form_encode(&leaf_pairs(slots, &values)),
                }
            }
            Compiled::Pairs { slots } => {
                let values = slot_values(slots, ctx);
                match self.content_type {
                    ContentType::Json | ContentType::Text => to_json(&Out::Obj(
                        slots
                            .iter()
                            .zip(&values)
                            .map(|(s, v)| (Cow::Borrowed(s.path.as_str()), Out::Val(Cow::Borrowed(v))))
                            .collect(),
                    ))?,
                    ContentType::Xml => {
                        let mut w = XmlOut::new()?;
                        w.start("payload", &[])?;
                        for (s, v) in slots.iter().zip(&values) {
                            w.value_element(&s.path, &[], v)?;
                        }
                        w.end("payload")?;
                        w.finish()?
                    }
                    ContentType::Form => form_encode(&leaf_pairs(slots, &values)),
                }
            }
        };
        if out.len() > MAX_RENDERED_BYTES {
            return Err(RenderError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// The leaf fields as `(name, value)` pairs, for GET/DELETE query parameters: the key for
    /// pairs, the full field path for field mappings; values as in form bodies (strings
    /// verbatim, absent → empty, objects and arrays as JSON text).
    pub fn render_pairs(&self, ctx: &RenderContext) -> Result<Vec<(String, String)>, RenderError> {
        let slots = match &self.compiled {
            Compiled::Text { .. } => {
                return Err(RenderError::Template("text templates cannot be sent as query parameters".to_string()))
            }
            Compiled::Json { slots, .. } | Compiled::Xml { slots, .. } | Compiled::Pairs { slots } => slots,
        };
        let values = slot_values(slots, ctx);
        let pairs = leaf_pairs(slots, &values);
        let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        if total > MAX_RENDERED_BYTES {
            return Err(RenderError::TooLarge(total));
        }
        Ok(pairs)
    }

    /// The catalog tokens the template reads, sorted and unique.
    pub fn tokens_used(&self) -> Vec<String> {
        let set: BTreeSet<&str> = match &self.compiled {
            Compiled::Text { tokens, .. } => tokens.iter().copied().collect(),
            Compiled::Json { slots, .. } | Compiled::Xml { slots, .. } | Compiled::Pairs { slots } => slots
                .iter()
                .filter_map(|s| match s.source {
                    Src::Token(t) => Some(t),
                    _ => None,
                })
                .collect(),
        };
        set.into_iter().map(str::to_string).collect()
    }
}

fn compile_fields(
    format: ContentType,
    example: &str,
    fields: &[FieldMapping],
    content_type: ContentType,
) -> Result<Compiled, ValidationError> {
    check_size("example", example.len())?;
    let parsed = parse_example(format, example)?;
    let index: HashMap<&str, usize> = parsed.leaves.iter().enumerate().map(|(i, l)| (l.path.as_str(), i)).collect();
    let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, leaf) in parsed.leaves.iter().enumerate() {
        by_key.entry(path_key(&leaf.path)).or_default().push(i);
    }
    let mut mapped: Vec<Option<Src>> = vec![None; parsed.leaves.len()];
    for (i, mapping) in fields.iter().enumerate() {
        let field = format!("fields[{i}]");
        let leaf = match index.get(mapping.path.as_str()) {
            Some(&leaf) => leaf,
            None => match by_key.get(&path_key(&mapping.path)).map(Vec::as_slice) {
                Some(&[leaf]) => leaf,
                Some(several) => {
                    let names: Vec<&str> = several.iter().map(|&l| parsed.leaves[l].path.as_str()).collect();
                    return Err(ValidationError::new(
                        format!("{field}.path"),
                        format!("`{}` could be any of {}: write it as one of them", mapping.path, names.join(", ")),
                    ));
                }
                None => {
                    return Err(ValidationError::new(
                        format!("{field}.path"),
                        format!("`{}` is not a field of the example", mapping.path),
                    ))
                }
            },
        };
        if mapped[leaf].is_some() {
            return Err(ValidationError::new(
                format!("{field}.path"),
                format!("`{}` is mapped more than once", mapping.path),
            ));
        }
        mapped[leaf] = Some(compile_source(&mapping.source, &field)?);
    }
    let mut slots = Vec::with_capacity(parsed.leaves.len());
    for (leaf, src) in parsed.leaves.into_iter().zip(mapped) {
        let source = match src {
            Some(src) => src,
            None => match leaf
                .example
                .as_str()
                .and_then(|s| context_ref(s).map(|n| (n, true)).or(token_ref(s).map(|n| (n, false))))
            {
                Some((name, true)) => Src::Context(name.to_string()),
                Some((name, false)) => Src::Token(
                    tokens::lookup(name)
                        .ok_or_else(|| {
                            ValidationError::new("example", format!("unknown token `{name}` in field `{}`", leaf.path))
                        })?
                        .name,
                ),
                None => Src::Constant(leaf.example),
            },
        };
        slots.push(Slot { path: leaf.path, name: leaf.name, source });
    }
    Ok(match parsed.shape {
        Shape::Json(root) => {
            if content_type == ContentType::Xml {
                check_xml_names(&root)?;
            }
            Compiled::Json { root, slots }
        }
        Shape::Xml(root) => Compiled::Xml { root, slots },
    })
}

/// A JSON example rendered as XML needs keys that are element names.
fn check_xml_names(node: &JNode) -> Result<(), ValidationError> {
    match node {
        JNode::Leaf(_) => Ok(()),
        JNode::Arr(items) => items.iter().try_for_each(check_xml_names),
        JNode::Obj(members) => members.iter().try_for_each(|(k, v)| {
            if !is_xml_name(k) {
                return Err(ValidationError::new(
                    "example",
                    format!("key `{k}` is not a valid XML element name (content type is xml)"),
                ));
            }
            check_xml_names(v)
        }),
    }
}

fn compile_pairs(pairs: &[FieldMapping], content_type: ContentType) -> Result<Compiled, ValidationError> {
    let size = serde_json::to_string(pairs).map_or(0, |s| s.len());
    check_size("pairs", size)?;
    let mut seen = HashSet::new();
    let mut slots = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let field = format!("pairs[{i}]");
        let key = pair.path.trim();
        if key.is_empty() {
            return Err(ValidationError::new(format!("{field}.path"), "must not be empty"));
        }
        if !seen.insert(key) {
            return Err(ValidationError::new(format!("{field}.path"), format!("duplicate key `{key}`")));
        }
        if content_type == ContentType::Xml && !is_xml_name(key) {
            return Err(ValidationError::new(
                format!("{field}.path"),
                format!("`{key}` is not a valid XML element name (content type is xml)"),
            ));
        }
        slots.push(Slot {
            path: key.to_string(),
            name: key.to_string(),
            source: compile_source(&pair.source, &field)?,
        });
    }
    Ok(Compiled::Pairs { slots })
}

// ---- Text templates -------------------------------------------------------------------------

fn compile_text(source: &str, content_type: ContentType) -> Result<Compiled, ValidationError> {
    check_size("text", source.len())?;
    let processed = preprocess_text(source, content_type);
    let mut env = Environment::new();
    let escape = match content_type {
        ContentType::Json => AutoEscape::Json,
        ContentType::Xml => AutoEscape::Html,
        ContentType::Form => FORM_ESCAPE,
        ContentType::Text => AutoEscape::None,
    };
    env.set_auto_escape_callback(move |_| escape);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(format_value);
    // A template is a customer's input: bound the work one render may do, so a loop like
    // `range(100000)` inside `range(100000)` fails with an error instead of stalling a stage.
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_filter(JSON_IN_STRING_FILTER, json_in_string);
    env.add_template_owned(BODY_TEMPLATE_NAME, processed.clone())
        .map_err(|e| ValidationError::new("text", jinja_message(&e)))?;

    let mut allowed: HashSet<String> = env.globals().map(|(name, _)| name.to_string()).collect();
    for name in ["event", "data", "context", "loop", "caller", "varargs", "kwargs", "self", "super"] {
        allowed.insert(name.to_string());
    }
    let (undeclared, nested) = {
        let tmpl = env.get_template(BODY_TEMPLATE_NAME).map_err(|e| ValidationError::new("text", jinja_message(&e)))?;
        (tmpl.undeclared_variables(false), tmpl.undeclared_variables(true))
    };
    // `context.<name>`: names are checked here, as in URLs and headers.
    let mut context_names: Vec<&String> = nested.iter().filter(|n| n.starts_with("context.")).collect();
    context_names.sort();
    for full in context_names {
        let name = &full["context.".len()..];
        if !crate::context::is_name(name) {
            let at = find_var_line(&processed, "context").map(|l| format!("line {l}: ")).unwrap_or_default();
            return Err(ValidationError::new(
                "text",
                format!("{at}`{name}` is not a context name (lowercase letters, digits and `_`)"),
            ));
        }
    }
    let mut used_tokens = Vec::new();
    let mut unknown: Vec<(Option<usize>, String)> = Vec::new();
    for name in &undeclared {
        if let Some(token) = catalog_token(name) {
            used_tokens.push(token);
        } else if !allowed.contains(name) {
            unknown.push((find_var_line(&processed, name), name.clone()));
        }
    }
    unknown.sort_by(|a, b| (a.0.unwrap_or(usize::MAX), &a.1).cmp(&(b.0.unwrap_or(usize::MAX), &b.1)));
    if let Some((line, name)) = unknown.into_iter().next() {
        let hint = match tokens::lookup(&name) {
            Some(def) => format!(" (did you mean `{}`?)", def.name),
            None => String::new(),
        };
        let message = match line {
            Some(line) => format!("line {line}: unknown token `{name}`{hint}"),
            None => format!("unknown token `{name}`{hint}"),
        };
        return Err(ValidationError::new("text", message));
    }
    used_tokens.sort_unstable();
    let uses_event = undeclared.contains("event");
    let uses_data = undeclared.contains("data");

    // Filters, tests, functions, methods and includes are resolved when rendering: a trial
    // render on the sample event catches the ones that do not exist, which would otherwise
    // fail every delivery. Data-dependent failures are not held against the template.
    let sample = tokens::sample_event();
    let trial = RenderContext::new(&sample, chrono_tz::UTC);
    if let Err(e) = render_text_inner(&env, &used_tokens, uses_event, uses_data, &trial) {
        use minijinja::ErrorKind as K;
        if matches!(
            e.kind(),
            K::UnknownFilter
                | K::UnknownTest
                | K::UnknownFunction
                | K::UnknownMethod
                | K::TemplateNotFound
                | K::BadInclude
                | K::OutOfFuel
        ) {
            return Err(ValidationError::new("text", jinja_message(&e)));
        }
    }
    Ok(Compiled::Text { env, tokens: used_tokens, uses_event, uses_data })
}

fn jinja_message(e: &minijinja::Error) -> String {
    let reason = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("line {line}: {reason}"),
        None => reason,
    }
}

/// Rewrites `%token%` into `{{ token }}` in template text and, for JSON, routes expressions
/// written inside a JSON string literal through the in-string filter. Never adds or removes
/// newlines, so line numbers stay those of the user's source.
fn preprocess_text(src: &str, content_type: ContentType) -> String {
    let json = content_type == ContentType::Json;
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 16);
    let mut in_string = false;
    let mut i = 0;
    let mut text_start = 0;
    // Copies raw template text src[from..to], tracking JSON string state.
    let track = |segment: &str, in_string: &mut bool| {
        let mut escaped = false;
        for b in segment.bytes() {
            if *in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    *in_string = false;
                }
            } else if b == b'"' {
                *in_string = true;
            }
        }
    };
    while i < bytes.len() {
        let rest = &src[i..];
        if rest.starts_with("{#") {
            let end = rest.find("#}").map_or(src.len(), |e| i + e + 2);
            out.push_str(&src[text_start..end]);
            i = end;
            text_start = i;
        } else if rest.starts_with("{%") {
            let Some(close) = scan_tag_end(src, i + 2, "%}") else {
                break;
            };
            let end = close + 2;
            let inner = strip_ws_control(&src[i + 2..close]).trim();
            if inner == "raw" {
                // Copy through the matching endraw verbatim (its text still counts for JSON
                // string tracking).
                let mut j = end;
                let mut raw_end = src.len();
                while let Some(p) = src[j..].find("{%") {
                    let start = j + p;
                    let Some(c) = scan_tag_end(src, start + 2, "%}") else {
                        break;
                    };
                    if strip_ws_control(&src[start + 2..c]).trim() == "endraw" {
                        if json {
                            track(&src[end..start], &mut in_string);
                        }
                        raw_end = c + 2;
                        break;
                    }
                    j = c + 2;
                }
                out.push_str(&src[text_start..raw_end]);
                i = raw_end;
            } else {
                out.push_str(&src[text_start..end]);
                i = end;
            }
            text_start = i;
        } else if rest.starts_with("{{") {
            let Some(close) = scan_tag_end(src, i + 2, "}}") else {
                break;
            };
            let end = close + 2;
            if json && in_string {
                let inner = &src[i + 2..close];
                let (pre, body, post) = split_ws_control(inner);
                out.push_str("{{");
                out.push_str(pre);
                out.push_str(" (");
                out.push_str(body);
                out.push_str(")|");
                out.push_str(JSON_IN_STRING_FILTER);
                out.push(' ');
                out.push_str(post);
                out.push_str("}}");
            } else {
                out.push_str(&src[i..end]);
            }
            i = end;
            text_start = i;
        } else if let Some(after) = rest.strip_prefix('%') {
            if let Some(token) = percent_token(after) {
                if json && in_string {
                    out.push_str(&format!("{{{{ {token}|{JSON_IN_STRING_FILTER} }}}}"));
                } else {
                    out.push_str(&format!("{{{{ {token} }}}}"));
                }
                i += token.len() + 2;
            } else {
                out.push('%');
                i += 1;
            }
            text_start = i;
        } else {
            // Plain text: advance one char, tracking JSON strings.
            let ch_len = rest.chars().next().map_or(1, char::len_utf8);
            if json {
                track(&src[i..i + ch_len], &mut in_string);
            }
            out.push_str(&src[i..i + ch_len]);
            i += ch_len;
            text_start = i;
        }
    }
    out.push_str(&src[text_start.min(src.len())..]);
    out
}

/// Finds `close` after `from`, skipping string literals inside the tag.
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
            _ if bytes[j..].starts_with(close.as_bytes()) => return Some(j),
            _ => j += 1,
        }
    }
    None
}

fn split_ws_control(inner: &str) -> (&str, &str, &str) {
    let (pre, rest) = match inner.as_bytes().first() {
        Some(b'-' | b'+') => inner.split_at(1),
        _ => ("", inner),
    };
    let (body, post) = match rest.as_bytes().last() {
        Some(b'-' | b'+') => rest.split_at(rest.len() - 1),
        _ => (rest, ""),
    };
    (pre, body, post)
}

fn strip_ws_control(inner: &str) -> &str {
    split_ws_control(inner).1
}

/// The first line on which `name` is used as a variable inside a tag.
fn find_var_line(src: &str, name: &str) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let close = match &bytes[i..i + 2] {
            b"{{" => "}}",
            b"{%" => "%}",
            b"{#" => {
                i = src[i..].find("#}").map_or(bytes.len(), |e| i + e + 2);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let end = scan_tag_end(src, i + 2, close).unwrap_or(bytes.len());
        let mut j = i + 2;
        let mut prev = b' ';
        while j < end {
            let b = bytes[j];
            if b == b'"' || b == b'\'' {
                j += 1;
                while j < end && bytes[j] != b {
                    if bytes[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                j += 1;
                prev = b;
                continue;
            }
            if b.is_ascii_alphabetic() || b == b'_' {
                let start = j;
                while j < end && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if &src[start..j] == name && prev != b'.' {
                    return Some(src[..start].matches('\n').count() + 1);
                }
                prev = b'a';
                continue;
            }
            if !b.is_ascii_whitespace() {
                prev = b;
            }
            j += 1;
        }
        i = end.max(i + 2);
    }
    None
}

/// Text form of a template value for XML and form output.
fn jinja_text(value: &minijinja::Value) -> String {
    if value.is_undefined() || value.is_none() {
        String::new()
    } else if let Some(s) = value.as_str() {
        s.to_string()
    } else if matches!(value.kind(), ValueKind::Map | ValueKind::Seq) {
        serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
    } else {
        value.to_string()
    }
}

fn format_value(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let escape = state.auto_escape();
    let absent = value.is_undefined() || value.is_none();
    let write = |out: &mut minijinja::Output, s: &str| out.write_str(s).map_err(minijinja::Error::from);
    match escape {
        AutoEscape::Json if absent => write(out, "null"),
        AutoEscape::Html if value.is_safe() => write(out, value.as_str().unwrap_or_default()),
        AutoEscape::Html => write(out, &xml_escape(&jinja_text(value), false)),
        e if e == FORM_ESCAPE => {
            if value.is_safe() {
                write(out, value.as_str().unwrap_or_default())
            } else {
                let text = jinja_text(value);
                let encoded: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
                write(out, &encoded)
            }
        }
        AutoEscape::None if absent => Ok(()),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// The in-string filter: the value as escaped JSON string content (no quotes), marked safe.
fn json_in_string(value: minijinja::Value) -> minijinja::Value {
    let text = jinja_text(&value);
    let quoted = serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".to_string());
    minijinja::Value::from_safe_string(quoted[1..quoted.len() - 1].to_string())
}

fn render_text(
    env: &Environment<'static>,
    used: &[&'static str],
    uses_event: bool,
    uses_data: bool,
    ctx: &RenderContext,
) -> Result<String, RenderError> {
    render_text_inner(env, used, uses_event, uses_data, ctx).map_err(|e| RenderError::Template(jinja_message(&e)))
}

fn render_text_inner(
    env: &Environment<'static>,
    used: &[&'static str],
    uses_event: bool,
    uses_data: bool,
    ctx: &RenderContext,
) -> Result<String, minijinja::Error> {
    let mut vars: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    for &name in used {
        let value = ctx.token(name).map_or(minijinja::Value::from(()), minijinja::Value::from_serialize);
        vars.insert(name, value);
    }
    if uses_event {
        vars.insert("event", minijinja::Value::from_serialize(ctx.event));
    }
    if uses_data {
        vars.insert("data", minijinja::Value::from_serialize(&ctx.event.data));
    }
    if let Some(nonce) = ctx.context {
        vars.insert("context", minijinja::Value::from_object(ContextPlaceholders(nonce.to_string())));
    }
    env.get_template(BODY_TEMPLATE_NAME)?.render(vars)
}

// ---------------------------------------------------------------------------------------------
// Rendering structured bodies
// ---------------------------------------------------------------------------------------------

fn slot_values(slots: &[Slot], ctx: &RenderContext) -> Vec<Value> {
    slots
        .iter()
        .map(|s| match &s.source {
            Src::Token(name) => ctx.token(name).unwrap_or(Value::Null),
            // A placeholder the dispatcher fills (absent in previews and without a call).
            Src::Context(name) => {
                ctx.context.map_or(Value::Null, |nonce| Value::String(crate::context::placeholder(nonce, name)))
            }
            Src::Constant(v) => v.clone(),
            Src::Name => Value::String(s.name.clone()),
        })
        .collect()
}

/// A value as text: strings verbatim, null empty, other values as JSON text.
fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Number(n) => Cow::Owned(n.to_string()),
        other => Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
    }
}

fn leaf_pairs(slots: &[Slot], values: &[Value]) -> Vec<(String, String)> {
    slots.iter().zip(values).map(|(s, v)| (s.path.clone(), value_text(v).into_owned())).collect()
}

fn form_encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// An ordered JSON output tree.
enum Out<'a> {
    Val(Cow<'a, Value>),
    Obj(Vec<(Cow<'a, str>, Out<'a>)>),
    Arr(Vec<Out<'a>>),
}

impl Serialize for Out<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Val(v) => v.serialize(s),
            Out::Obj(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            Out::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

fn to_json(out: &Out) -> Result<String, RenderError> {
    serde_json::to_string(out).map_err(|e| RenderError::Template(e.to_string()))
}

fn json_out<'a>(node: &'a JNode, values: &'a [Value]) -> Out<'a> {
    match node {
        JNode::Leaf(i) => Out::Val(Cow::Borrowed(&values[*i])),
        JNode::Obj(members) => {
            Out::Obj(members.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), json_out(v, values))).collect())
        }
        JNode::Arr(items) => Out::Arr(items.iter().map(|v| json_out(v, values)).collect()),
    }
}

/// An XML example as JSON: attributes as `@name`, leaf text of an element with attributes
/// as `#text`, repeated child names as arrays, literal text between elements as `#text`.
fn xelem_out<'a>(el: &'a XElem, values: &'a [Value]) -> Out<'a> {
    let mut members: Vec<(Cow<'a, str>, Out<'a>)> = Vec::new();
    for attr in &el.attrs {
        if let XAttr::Slot { name, slot } = attr {
            members.push((Cow::Owned(format!("@{name}")), Out::Val(Cow::Borrowed(&values[*slot]))));
        }
    }
    match &el.body {
        XBody::Leaf(i) => {
            if members.is_empty() {
                return Out::Val(Cow::Borrowed(&values[*i]));
            }
            members.push((Cow::Borrowed("#text"), Out::Val(Cow::Borrowed(&values[*i]))));
        }
        XBody::Children(children) => {
            let mut order: Vec<&str> = Vec::new();
            let mut groups: HashMap<&str, Vec<Out<'a>>> = HashMap::new();
            let mut text = String::new();
            for child in children {
                match child {
                    XChild::Elem(e) => {
                        if !groups.contains_key(e.name.as_str()) {
                            order.push(&e.name);
                        }
                        groups.entry(&e.name).or_default().push(xelem_out(e, values));
                    }
                    XChild::Text(t) => text.push_str(t.trim()),
                }
            }
            for name in order {
                let mut items = groups.remove(name).unwrap_or_default();
                let out = if items.len() == 1 {
                    items.pop().unwrap_or(Out::Val(Cow::Owned(Value::Null)))
                } else {
                    Out::Arr(items)
                };
                members.push((Cow::Borrowed(name), out));
            }
            if !text.is_empty() {
                members.push((Cow::Borrowed("#text"), Out::Val(Cow::Owned(Value::String(text)))));
            }
        }
    }
    Out::Obj(members)
}

// ---- XML output -----------------------------------------------------------------------------

fn is_xml_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | 'a'..='z' | '_'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_xml_name_char(c: char) -> bool {
    is_xml_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A valid XML element name without a namespace prefix.
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if is_xml_name_start(c)) && chars.all(is_xml_name_char)
}

/// A key from a token value, made into a valid element name.
fn xml_name(s: &str) -> Cow<'_, str> {
    if is_xml_name(s) {
        return Cow::Borrowed(s);
    }
    let mut name: String = s.chars().map(|c| if is_xml_name_char(c) { c } else { '_' }).collect();
    if !name.chars().next().is_some_and(is_xml_name_start) {
        name.insert(0, '_');
    }
    Cow::Owned(name)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Escapes text (`attr == false`) or an attribute value for XML 1.0; characters XML cannot
/// carry become U+FFFD.
pub(crate) fn xml_escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            c if !is_xml_char(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

struct XmlOut {
    w: quick_xml::Writer<Vec<u8>>,
}

fn xml_io(e: std::io::Error) -> RenderError {
    RenderError::Template(format!("writing XML: {e}"))
}

impl XmlOut {
    fn new() -> Result<Self, RenderError> {
        let mut w = quick_xml::Writer::new(Vec::new());
        w.write_event(XmlEvent::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))).map_err(xml_io)?;
        Ok(XmlOut { w })
    }

    fn finish(self) -> Result<String, RenderError> {
        String::from_utf8(self.w.into_inner()).map_err(|e| RenderError::Template(e.to_string()))
    }

    fn start_tag<'b>(name: &'b str, attrs: &[(&str, Cow<'_, str>)]) -> BytesStart<'b> {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute(Attribute {
                key: QName(k.as_bytes()),
                value: Cow::Owned(xml_escape(v, true).into_bytes()),
            });
        }
        start
    }

    fn start(&mut self, name: &str, attrs: &[(&str, Cow<'_, str>)]) -> Result<(), RenderError> {
        self.w.write_event(XmlEvent::Start(Self::start_tag(name, attrs))).map_err(xml_io)
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, Cow<'_, str>)]) -> Result<(), RenderError> {
        self.w.write_event(XmlEvent::Empty(Self::start_tag(name, attrs))).map_err(xml_io)
    }

    fn end(&mut self, name: &str) -> Result<(), RenderError> {
        self.w.write_event(XmlEvent::End(BytesEnd::new(name))).map_err(xml_io)
    }

    fn text(&mut self, s: &str) -> Result<(), RenderError> {
        if s.is_empty() {
            return Ok(());
        }
        self.w.write_event(XmlEvent::Text(BytesText::from_escaped(xml_escape(s, false)))).map_err(xml_io)
    }

    /// `<name attrs>value</name>`; null → `<name/>`.
    fn value_element(&mut self, name: &str, attrs: &[(&str, Cow<'_, str>)], v: &Value) -> Result<(), RenderError> {
        if v.is_null() {
            return self.empty(name, attrs);
        }
        self.start(name, attrs)?;
        self.value_content(v)?;
        self.end(name)
    }

    /// Objects → child elements, arrays → repeated `<item>`, scalars → text.
    fn value_content(&mut self, v: &Value) -> Result<(), RenderError> {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    self.value_element(&xml_name(k), &[], child)?;
                }
                Ok(())
            }
            Value::Array(items) => {
                for item in items {
                    self.value_element("item", &[], item)?;
                }
                Ok(())
            }
            other => self.text(&value_text(other)),
        }
    }

    fn jnode_content(&mut self, node: &JNode, values: &[Value]) -> Result<(), RenderError> {
        match node {
            JNode::Leaf(i) => self.value_content(&values[*i]),
            JNode::Obj(members) => {
                for (k, v) in members {
                    self.jnode_element(k, v, values)?;
                }
                Ok(())
            }
            JNode::Arr(items) => {
                for v in items {
                    self.jnode_element("item", v, values)?;
                }
                Ok(())
            }
        }
    }

    fn jnode_element(&mut self, name: &str, node: &JNode, values: &[Value]) -> Result<(), RenderError> {
        if let JNode::Leaf(i) = node {
            return self.value_element(&xml_name(name), &[], &values[*i]);
        }
        let name = xml_name(name);
        self.start(&name, &[])?;
        self.jnode_content(node, values)?;
        self.end(&name)
    }

    fn xelem(&mut self, el: &XElem, values: &[Value]) -> Result<(), RenderError> {
        let attrs: Vec<(&str, Cow<'_, str>)> = el
            .attrs
            .iter()
            .map(|a| match a {
                XAttr::Slot { name, slot } => (name.as_str(), value_text(&values[*slot])),
                XAttr::Literal { name, value } => (name.as_str(), Cow::Borrowed(value.as_str())),
            })
            .collect();
        match &el.body {
            XBody::Leaf(i) => self.value_element(&el.name, &attrs, &values[*i]),
            XBody::Children(children) => {
                self.start(&el.name, &attrs)?;
                for child in children {
                    match child {
                        XChild::Elem(e) => self.xelem(e, values)?,
                        XChild::Text(t) => self.text(t)?,
                    }
                }
                self.end(&el.name)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inline templates
// ---------------------------------------------------------------------------------------------

/// How an inline template escapes token values.
#[derive(Debug, Clone, Copy)]
pub enum Escape {
    /// Values verbatim.
    None,
    /// Percent-encode everything but RFC 3986 unreserved characters (for path segments and
    /// query values).
    UrlComponent,
    /// Strip CR, LF and NUL (for header values).
    Header,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Token(&'static str),
    /// `{{ context.name }}`: a call-context value ([`crate::context`]).
    Context(String),
}

/// Inline token text for URLs, query values and header values: `https://x/{{ callid }}?a=%ani%`;
/// `{{ context.name }}` is a call-context value ([`crate::context`]).
#[derive(Debug, Clone)]
pub struct InlineTemplate {
    parts: Vec<Part>,
}

impl InlineTemplate {
    /// Parses `{{ token }}` and `%token%` (the latter only when `token` is a catalog token;
    /// any other `%` stays literal). Errors name `field`: unknown tokens, `{{ … }}` that is not
    /// a token name, an unclosed `{{`, text longer than [`MAX_TEMPLATE_BYTES`].
    pub fn compile(text: &str, field: &str) -> Result<Self, ValidationError> {
        check_size(field, text.len())?;
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if rest.starts_with("{{") {
                let Some(close) = rest.find("}}") else {
                    return Err(ValidationError::new(field, "unclosed `{{`"));
                };
                let inner = rest[2..close].trim();
                let inner = inner.strip_prefix('%').and_then(|s| s.strip_suffix('%')).unwrap_or(inner);
                if let Some(name) = inner.strip_prefix("context.") {
                    if !crate::context::is_name(name) {
                        return Err(ValidationError::new(
                            field,
                            format!("`{name}` is not a context name (lowercase letters, digits and `_`)"),
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Context(name.to_string()));
                    i += close + 2;
                    continue;
                }
                if !is_ident(inner) {
                    return Err(ValidationError::new(
                        field,
                        format!("`{}` is not a token name (write `{{{{ token }}}}` or `%token%`)", &rest[..close + 2]),
                    ));
                }
                let def = tokens::lookup(inner)
                    .ok_or_else(|| ValidationError::new(field, format!("unknown token `{inner}`")))?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Token(def.name));
                i += close + 2;
            } else if let Some(after) = rest.strip_prefix('%') {
                if let Some(token) = percent_token(after) {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Token(token));
                    i += token.len() + 2;
                } else {
                    literal.push('%');
                    i += 1;
                }
            } else {
                let c = rest.chars().next().unwrap_or('\0');
                literal.push(c);
                i += c.len_utf8();
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(InlineTemplate { parts })
    }

    /// Renders the text; token values escaped per `escape`, absent tokens empty, strings
    /// without quotes and other values as JSON text.
    pub fn render(&self, ctx: &RenderContext, escape: Escape) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                // Letters, digits and `_` only: no escaping changes a placeholder.
                Part::Context(name) => {
                    if let Some(nonce) = ctx.context {
                        out.push_str(&crate::context::placeholder(nonce, name));
                    }
                }
                Part::Token(name) => {
                    let Some(value) = ctx.token(name) else {
                        continue;
                    };
                    let text = value_text(&value);
                    match escape {
                        Escape::None => out.push_str(&text),
                        Escape::UrlComponent => percent_encode_into(&text, &mut out),
                        Escape::Header => out.extend(text.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0'))),
                    }
                }
            }
        }
        out
    }

    /// Whether the text has no tokens (renders the same for every event).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The catalog tokens the text reads, sorted and unique.
    pub fn tokens_used(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Token(t) => Some(*t),
                Part::Literal(_) | Part::Context(_) => None,
            })
            .collect();
        set.into_iter().map(str::to_string).collect()
    }
}

pub(crate) fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOSTILE: &str = "He said \"hi\" </x> & <y attr='1'>\n\r\tline \"} ]}{{ ani }} %ani% \\ ✓ 日本 😀";

    fn event_with(data: Value) -> Event {
        let mut e = tokens::sample_event();
        if let Value::Object(m) = data {
            for (k, v) in m {
                e.data.insert(k, v);
            }
        }
        e
    }

    fn hostile_event() -> Event {
        event_with(json!({"ani_first_name": HOSTILE, "ani_last_name": "\"}</last>&amp;"}))
    }

    fn utc(e: &Event) -> RenderContext<'_> {
        RenderContext::new(e, chrono_tz::UTC)
    }

    fn fields(format: ContentType, example: &str, mappings: &[(&str, Source)]) -> TemplateBody {
        TemplateBody::Fields {
            format,
            example: example.to_string(),
            fields: mappings.iter().map(|(p, s)| FieldMapping { path: p.to_string(), source: s.clone() }).collect(),
        }
    }

    fn tok(name: &str) -> Source {
        Source::Token { token: name.to_string() }
    }

    fn text(source: &str) -> TemplateBody {
        TemplateBody::Text { source: source.to_string() }
    }

    fn compile(body: &TemplateBody, ct: ContentType) -> CompiledTemplate {
        CompiledTemplate::compile(body, ct).unwrap_or_else(|e| panic!("compile: {e}"))
    }

    fn compile_err(body: &TemplateBody, ct: ContentType) -> ValidationError {
        CompiledTemplate::compile(body, ct).expect_err("must not compile")
    }

    fn render(body: &TemplateBody, ct: ContentType, e: &Event) -> String {
        compile(body, ct).render(&utc(e)).unwrap_or_else(|err| panic!("render: {err}"))
    }

    fn render_json(body: &TemplateBody, e: &Event) -> Value {
        let out = render(body, ContentType::Json, e);
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("invalid JSON {out}: {err}"))
    }

    /// Parses XML back with quick-xml: (path, text) for every element with text or no
    /// children, and (path/@attr, value) for attributes.
    fn xml_values(xml: &str) -> Vec<(String, String)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        reader.config_mut().trim_text(false);
        let mut stack: Vec<(String, String, bool)> = Vec::new();
        let mut out = Vec::new();
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("invalid XML {xml}: {e}")) {
                XmlEvent::Start(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    let path = match stack.last_mut() {
                        Some(p) => {
                            p.2 = true;
                            format!("{}/{name}", p.0)
                        }
                        None => name,
                    };
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let k = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                        out.push((format!("{path}/@{k}"), a.unescape_value().unwrap().into_owned()));
                    }
                    stack.push((path, String::new(), false));
                }
                XmlEvent::Empty(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                    let path = match stack.last_mut() {
                        Some(p) => {
                            p.2 = true;
                            format!("{}/{name}", p.0)
                        }
                        None => name,
                    };
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let k = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                        out.push((format!("{path}/@{k}"), a.unescape_value().unwrap().into_owned()));
                    }
                    out.push((path, String::new()));
                }
                XmlEvent::End(_) => {
                    let (path, text, has_children) = stack.pop().unwrap();
                    if !has_children || !text.trim().is_empty() {
                        out.push((path, text));
                    }
                }
                XmlEvent::Text(t) => stack.last_mut().unwrap().1.push_str(&t.decode().unwrap()),
                XmlEvent::CData(t) => stack.last_mut().unwrap().1.push_str(&t.decode().unwrap()),
                XmlEvent::GeneralRef(r) => {
                    let s = match r.resolve_char_ref().unwrap() {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&r.decode().unwrap())
                            .expect("predefined entity")
                            .to_string(),
                    };
                    stack.last_mut().unwrap().1.push_str(&s);
                }
                XmlEvent::Eof => break,
                _ => {}
            }
        }
        assert!(stack.is_empty(), "unclosed elements in {xml}");
        out
    }

    fn xml_get(values: &[(String, String)], path: &str) -> String {
        values.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no `{path}` in {values:?}")).1.clone()
    }

    fn form_values(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
    }

    // ---- content type and serde shapes ----------------------------------------------------

    #[test]
    fn content_type_names_and_mime() {
        for ct in [ContentType::Json, ContentType::Xml, ContentType::Form, ContentType::Text] {
            assert_eq!(ContentType::parse(ct.as_str()), Some(ct));
            assert_eq!(ContentType::parse(ct.mime()), Some(ct));
            assert_eq!(serde_json::to_value(ct).unwrap(), json!(ct.as_str()));
        }
        assert_eq!(ContentType::parse("text/xml"), Some(ContentType::Xml));
        assert_eq!(ContentType::parse("Application/JSON; charset=utf-8"), Some(ContentType::Json));
        assert_eq!(ContentType::parse("application/soap+xml"), Some(ContentType::Xml));
        assert_eq!(ContentType::parse("image/png"), None);
        assert_eq!(ContentType::default(), ContentType::Json);
        assert_eq!(ContentType::Text.mime(), "text/plain; charset=utf-8");
    }

    #[test]
    fn bodies_serialise_with_kind_tags() {
        let body = fields(
            ContentType::Json,
            "{\"a\":\"\"}",
            &[("a", tok("ani")), ("b", Source::Name), ("c", Source::Constant { value: json!(1) })],
        );
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            json!({"kind":"fields","format":"json","example":"{\"a\":\"\"}","fields":[
                {"path":"a","source":{"kind":"token","token":"ani"}},
                {"path":"b","source":{"kind":"name"}},
                {"path":"c","source":{"kind":"constant","value":1}}]})
        );
        assert_eq!(serde_json::from_value::<TemplateBody>(v).unwrap(), body);
        let no_fields: TemplateBody =
            serde_json::from_value(json!({"kind":"fields","format":"xml","example":"<a/>"})).unwrap();
        assert!(matches!(no_fields, TemplateBody::Fields { fields, .. } if fields.is_empty()));
        assert_eq!(serde_json::to_value(text("x")).unwrap(), json!({"kind":"text","source":"x"}));
        assert_eq!(
            serde_json::to_value(TemplateBody::Pairs { pairs: vec![] }).unwrap(),
            json!({"kind":"pairs","pairs":[]})
        );
    }

    // ---- extraction -----------------------------------------------------------------------

    #[test]
    fn extracts_the_reference_example_in_order() {
        let got = extract_fields(ContentType::Json, r#"{"Firstname":"","Lastname":"","email":""}"#).unwrap();
        let paths: Vec<&str> = got.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Firstname", "Lastname", "email"]);
        assert!(got.iter().all(|f| f.source == Source::Constant { value: json!("") }));
    }

    #[test]
    fn extracts_nested_json_with_token_references() {
        let example = r#"{
            "contact": {"first": "%ani_first_name%", "phone": "{{ ani }}", "id": 7},
            "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}],
            "tags": {}, "list": [], "meta": {"a.b": true, "z": null}
        }"#;
        let got = extract_fields(ContentType::Json, example).unwrap();
        let expected = vec![
            ("contact.first", tok("ani_first_name")),
            ("contact.phone", tok("ani")),
            ("contact.id", Source::Constant { value: json!(7) }),
            ("items[0].sku", Source::Constant { value: json!("A1") }),
            ("items[0].qty", Source::Constant { value: json!(2) }),
            ("items[1].sku", Source::Constant { value: json!("B2") }),
            ("items[1].qty", Source::Constant { value: json!(1) }),
            ("tags", Source::Constant { value: json!({}) }),
            ("list", Source::Constant { value: json!([]) }),
            ("meta[\"a.b\"]", Source::Constant { value: json!(true) }),
            ("meta.z", Source::Constant { value: json!(null) }),
        ];
        let got: Vec<(&str, Source)> = got.iter().map(|f| (f.path.as_str(), f.source.clone())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn extracts_xml_elements_and_attributes() {
        let example = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a lead -->
<lead xmlns="urn:crm" source="web">
  <contact id="%callid%">
    <first>%ani_first_name%</first>
    <last/>
    <phone>{{ ani }}</phone>
  </contact>
  <note>a &amp; b &#x41;<![CDATA[<raw>]]></note>
  <items><item>1</item><item>2</item></items>
</lead>"#;
        let got = extract_fields(ContentType::Xml, example).unwrap();
        let got: Vec<(&str, Source)> = got.iter().map(|f| (f.path.as_str(), f.source.clone())).collect();
        let c = |v: &str| Source::Constant { value: json!(v) };
        assert_eq!(
            got,
            vec![
                ("lead/@source", c("web")),
                ("lead/contact/@id", tok("callid")),
                ("lead/contact/first", tok("ani_first_name")),
                ("lead/contact/last", c("")),
                ("lead/contact/phone", tok("ani")),
                ("lead/note", c("a & b A<raw>")),
                ("lead/items/item[1]", c("1")),
                ("lead/items/item[2]", c("2")),
            ]
        );
    }

    #[test]
    fn extraction_errors_carry_line_and_column() {
        let err = extract_fields(ContentType::Json, "{\n  \"a\": ,\n}").unwrap_err();
        assert_eq!(err.field, "example");
        assert!(err.message.contains("line 2, column"), "{err}");
        let err = extract_fields(ContentType::Json, "{\"a\": 1, \"a\": 2}").unwrap_err();
        assert!(err.message.contains("duplicate key `a`") && err.message.contains("line 1"), "{err}");
        let err = extract_fields(ContentType::Json, "\"just a string\"").unwrap_err();
        assert_eq!(err.field, "example");
        let err = extract_fields(ContentType::Xml, "<a>\n  <b>\n</a>").unwrap_err();
        assert_eq!(err.field, "example");
        assert!(err.message.contains("line 3"), "{err}");
        let err = extract_fields(ContentType::Xml, "<a/><b/>").unwrap_err();
        assert!(err.message.contains("more than one root"), "{err}");
        let err = extract_fields(ContentType::Xml, "<a>&nbsp;</a>").unwrap_err();
        assert!(err.message.contains("unknown entity"), "{err}");
        let err = extract_fields(ContentType::Xml, "<a><b></b>").unwrap_err();
        assert!(err.message.contains("not closed"), "{err}");
        let err = extract_fields(ContentType::Form, "a=b").unwrap_err();
        assert_eq!(err.field, "format");
    }

    // ---- the reference workflow -----------------------------------------------------------

    #[test]
    fn reference_workflow_maps_extracted_fields_to_tokens() {
        let example = r#"{"first":"","last":"","phone":""}"#;
        let mut mapped = extract_fields(ContentType::Json, example).unwrap();
        mapped[0].source = tok("%ani_first_name%");
        mapped[1].source = tok("ani_last_name");
        mapped[2].source = tok("%ani%");
        let body = TemplateBody::Fields { format: ContentType::Json, example: example.into(), fields: mapped };
        let e = tokens::sample_event();
        assert_eq!(render(&body, ContentType::Json, &e), r#"{"first":"Freddy","last":"Krueger","phone":"7776734736"}"#);
        let t = compile(&body, ContentType::Json);
        assert_eq!(t.tokens_used(), ["ani", "ani_first_name", "ani_last_name"]);
    }

    #[test]
    fn unmapped_fields_keep_example_values_or_their_token() {
        let body = fields(
            ContentType::Json,
            r#"{"fixed":"yes","n":3,"caller":"%ani%","who":"","key":""}"#,
            &[("key", Source::Name)],
        );
        let v = render_json(&body, &tokens::sample_event());
        assert_eq!(v, json!({"fixed":"yes","n":3,"caller":"7776734736","who":"","key":"key"}));
    }

    // ---- hostile values -------------------------------------------------------------------

    #[test]
    fn hostile_values_stay_valid_json() {
        let e = hostile_event();
        let body = fields(
            ContentType::Json,
            r#"{"a":{"first":"","last":""},"list":["%ani_first_name%"]}"#,
            &[("a.first", tok("ani_first_name")), ("a.last", tok("ani_last_name"))],
        );
        let v = render_json(&body, &e);
        assert_eq!(v, json!({"a":{"first":HOSTILE,"last":"\"}</last>&amp;"},"list":[HOSTILE]}));

        let pairs = TemplateBody::Pairs {
            pairs: vec![
                FieldMapping { path: "first".into(), source: tok("ani_first_name") },
                FieldMapping { path: "we\"ird".into(), source: Source::Name },
            ],
        };
        assert_eq!(render_json(&pairs, &e), json!({"first": HOSTILE, "we\"ird": "we\"ird"}));

        let t = text(
            "{\"raw\": {{ ani_first_name }}, \"quoted\": \"%ani_first_name%\",\n \"both\": \"{{ ani_first_name }} / {{- ani_last_name }}\", \"n\": %dialed_time%, \"s\": \"%dialed_time%\", \"pct\": \"100% %ani%\"}",
        );
        let v = render_json(&t, &e);
        assert_eq!(
            v,
            json!({"raw": HOSTILE, "quoted": HOSTILE, "both": format!("{HOSTILE} /\"}}</last>&amp;"),
                   "n": 36, "s": "36", "pct": "100% 7776734736"})
        );
    }

    #[test]
    fn hostile_values_stay_valid_xml() {
        let e = hostile_event();
        let expected_first = HOSTILE.to_string();
        let body = fields(
            ContentType::Xml,
            r#"<lead kind="x"><contact name="%ani_first_name%"><first/><last>%ani_last_name%</last></contact></lead>"#,
            &[("lead/contact/first", tok("ani_first_name"))],
        );
        let xml = render(&body, ContentType::Xml, &e);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
        let v = xml_values(&xml);
        assert_eq!(xml_get(&v, "lead/@kind"), "x");
        assert_eq!(xml_get(&v, "lead/contact/@name"), expected_first);
        assert_eq!(xml_get(&v, "lead/contact/first"), expected_first);
        assert_eq!(xml_get(&v, "lead/contact/last"), "\"}</last>&amp;");

        let pairs =
            TemplateBody::Pairs { pairs: vec![FieldMapping { path: "first".into(), source: tok("ani_first_name") }] };
        let v = xml_values(&render(&pairs, ContentType::Xml, &e));
        assert_eq!(xml_get(&v, "payload/first"), expected_first);

        let t = text("<lead>\n  <first>%ani_first_name%</first>\n  <c v=\"{{ ani_first_name }}\">{{ ani_last_name }}</c>\n</lead>");
        let v = xml_values(&render(&t, ContentType::Xml, &e));
        assert_eq!(xml_get(&v, "lead/first"), expected_first);
        assert_eq!(xml_get(&v, "lead/c/@v"), expected_first);
        assert_eq!(xml_get(&v, "lead/c"), "\"}</last>&amp;");

        // Characters XML 1.0 cannot carry are replaced, never emitted.
        let e = event_with(json!({"ani_first_name": "a\u{1}b\u{FFFF}c"}));
        let v = xml_values(&render(&pairs, ContentType::Xml, &e));
        assert_eq!(xml_get(&v, "payload/first"), "a\u{FFFD}b\u{FFFD}c");
        let v = xml_values(&render(&t, ContentType::Xml, &e));
        assert_eq!(xml_get(&v, "lead/first"), "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn hostile_values_stay_valid_form() {
        let e = hostile_event();
        let body = fields(ContentType::Json, r#"{"a":{"first":"%ani_first_name%"},"n":"%dialed_time%"}"#, &[]);
        let out = render(&body, ContentType::Form, &e);
        assert_eq!(
            form_values(&out),
            vec![("a.first".to_string(), HOSTILE.to_string()), ("n".to_string(), "36".to_string())]
        );
        let pairs = TemplateBody::Pairs {
            pairs: vec![
                FieldMapping { path: "first name".into(), source: tok("ani_first_name") },
                FieldMapping { path: "tags".into(), source: tok("tags") },
            ],
        };
        let out = render(&pairs, ContentType::Form, &e);
        assert_eq!(
            form_values(&out),
            vec![
                ("first name".to_string(), HOSTILE.to_string()),
                ("tags".to_string(), r#"{"region":"south"}"#.to_string())
            ]
        );
        let t = text("first=%ani_first_name%&last={{ ani_last_name }}&fixed=a+b");
        let out = render(&t, ContentType::Form, &e);
        assert_eq!(
            form_values(&out),
            vec![
                ("first".to_string(), HOSTILE.to_string()),
                ("last".to_string(), "\"}</last>&amp;".to_string()),
                ("fixed".to_string(), "a b".to_string())
            ]
        );
    }

    // ---- types and structure --------------------------------------------------------------

    #[test]
    fn numbers_stay_numbers_and_absent_tokens_are_null() {
        let mut e = tokens::sample_event();
        e.data.remove("ani_city");
        let body = fields(
            ContentType::Json,
            r#"{"dialed":"","repeat":"%repeat_caller%","city":"%ani_city%","c":0}"#,
            &[("dialed", tok("dialed_time")), ("c", Source::Constant { value: json!(2.5) })],
        );
        assert_eq!(render_json(&body, &e), json!({"dialed":36,"repeat":1,"city":null,"c":2.5}));
        let xml = render(&body, ContentType::Xml, &e);
        let v = xml_values(&xml);
        assert_eq!(xml_get(&v, "payload/dialed"), "36");
        assert_eq!(xml_get(&v, "payload/city"), "");
        assert_eq!(render(&text("{{ ani_city }}|%ani_city%"), ContentType::Text, &e), "|");
        assert_eq!(render_json(&text("[{{ ani_city }}, {{ dialed_time }}]"), &e), json!([null, 36]));
    }

    #[test]
    fn nested_tokens_stay_structured() {
        let e = tokens::sample_event();
        let tags = e.data["tags"].clone();
        let prompts = e.data["prompt_responses"].clone();
        assert!(tags.is_object() && prompts.is_array());
        let body = fields(
            ContentType::Json,
            r#"{"tags":{},"ivr":[],"inline":"%tags%"}"#,
            &[("tags", tok("tags")), ("ivr", tok("prompt_responses"))],
        );
        assert_eq!(render_json(&body, &e), json!({"tags": tags, "ivr": prompts, "inline": tags}));
        assert_eq!(
            render_json(&text(r#"{"t": {{ tags }}, "p": {{ prompt_responses }}}"#), &e),
            json!({"t": tags, "p": prompts})
        );

        let xml = render(&body, ContentType::Xml, &e);
        let v = xml_values(&xml);
        assert_eq!(xml_get(&v, "payload/tags/region"), "south");
        assert_eq!(xml_get(&v, "payload/ivr/item/question"), "one");
        assert_eq!(xml_get(&v, "payload/ivr/item/response"), "1");

        let xbody = fields(
            ContentType::Xml,
            "<call><ivr/><tags>%tags%</tags></call>",
            &[("call/ivr", tok("prompt_responses"))],
        );
        let v = xml_values(&render(&xbody, ContentType::Xml, &e));
        assert_eq!(xml_get(&v, "call/tags/region"), "south");
        assert_eq!(xml_get(&v, "call/ivr/item/question"), "one");
    }

    #[test]
    fn cross_format_rendering() {
        let e = tokens::sample_event();
        let xbody = fields(
            ContentType::Xml,
            r#"<lead id="%callid%"><first>%ani_first_name%</first><items><item>1</item><item>2</item></items></lead>"#,
            &[],
        );
        assert_eq!(
            render_json(&xbody, &e),
            json!({"lead": {"@id": e.call_id.clone().unwrap(), "first": "Freddy", "items": {"item": ["1", "2"]}}})
        );
        let text_out = render(&xbody, ContentType::Text, &e);
        assert!(text_out.starts_with("<?xml"), "{text_out}");
        let jbody = fields(ContentType::Json, r#"{"first":"%ani_first_name%"}"#, &[]);
        assert_eq!(render(&jbody, ContentType::Text, &e), r#"{"first":"Freddy"}"#);
        let err = compile_err(&fields(ContentType::Json, r#"{"first name":""}"#, &[]), ContentType::Xml);
        assert_eq!(err.field, "example");
    }

    #[test]
    fn timestamps_render_in_the_webhook_time_zone() {
        let e = tokens::sample_event();
        let ny = RenderContext::new(&e, chrono_tz::America::New_York);
        assert_eq!(ny.token("call_start_time"), Some(json!("2019-03-27T20:05:00.000-04:00")));
        assert_eq!(ny.token("%call_start_time%"), Some(json!("2019-03-27T20:05:00.000-04:00")));
        assert_eq!(utc(&e).token("call_start_time"), Some(json!("2019-03-28T00:05:00.000Z")));
        let body = fields(ContentType::Json, r#"{"start":"%call_start_time%"}"#, &[]);
        assert_eq!(
            compile(&body, ContentType::Json).render(&ny).unwrap(),
            r#"{"start":"2019-03-27T20:05:00.000-04:00"}"#
        );
        let t = compile(&text("{{ call_start_time }}"), ContentType::Text);
        assert_eq!(t.render(&ny).unwrap(), "2019-03-27T20:05:00.000-04:00");
        let inline = InlineTemplate::compile("x?t=%call_start_time%", "url").unwrap();
        assert_eq!(inline.render(&ny, Escape::UrlComponent), "x?t=2019-03-27T20%3A05%3A00.000-04%3A00");
    }

    // ---- compile errors -------------------------------------------------------------------

    #[test]
    fn field_paths_take_either_separator_for_json_and_xml() {
        assert_eq!(path_key("lead.first"), "lead/first");
        assert_eq!(path_key("lead/@id"), path_key("lead.@id"));
        assert_eq!(path_key(r#"a["x.y"].b"#), r#"a["x.y"]/b"#);
        let e = event_with(json!({"ani_first_name": "Ada", "ani": "5551234"}));
        let xml = "<lead id=\"1\"><first>x</first><phone>y</phone></lead>";
        for (first, id) in [("lead/first", "lead/@id"), ("lead.first", "lead.@id")] {
            let body = fields(ContentType::Xml, xml, &[(first, tok("ani_first_name")), (id, tok("ani"))]);
            assert_eq!(
                render(&body, ContentType::Xml, &e),
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><lead id=\"5551234\"><first>Ada</first><phone>y</phone></lead>",
                "{first}"
            );
        }
        let json_example = r#"{"lead": {"first": "x", "items": [{"sku": "a"}]}}"#;
        for (first, sku) in [("lead.first", "lead.items[0].sku"), ("lead/first", "lead/items[0]/sku")] {
            let body = fields(ContentType::Json, json_example, &[(first, tok("ani_first_name")), (sku, tok("ani"))]);
            let out: Value = serde_json::from_str(&render(&body, ContentType::Json, &e)).unwrap();
            assert_eq!(out, json!({"lead": {"first": "Ada", "items": [{"sku": "5551234"}]}}), "{first}");
        }
        // One field mapped under both spellings is still mapped twice.
        let body = fields(ContentType::Json, json_example, &[("lead.first", tok("ani")), ("lead/first", tok("ani"))]);
        assert!(compile_err(&body, ContentType::Json).message.contains("mapped more than once"));
        // When the spellings name two different fields, the exact one wins; a loose match
        // that fits both is refused naming them.
        let two = r#"{"a": {"b": 1}, "a/b": 2}"#;
        let body = fields(ContentType::Json, two, &[("a/b", tok("ani"))]);
        let out: Value = serde_json::from_str(&render(&body, ContentType::Json, &e)).unwrap();
        assert_eq!(out, json!({"a": {"b": 1}, "a/b": "5551234"}));
        let three = r#"{"a": {"b": {"c": 1}}, "a/b": {"c": 2}}"#;
        let err = compile_err(&fields(ContentType::Json, three, &[("a.b/c", tok("ani"))]), ContentType::Json);
        assert_eq!(err.field, "fields[0].path");
        assert!(err.message.contains("a.b.c") && err.message.contains("a/b.c"), "{err}");
    }

    #[test]
    fn compile_errors_name_their_field() {
        let ex = r#"{"a":"","b":"","c":"","d":""}"#;
        let cases: Vec<(TemplateBody, &str, &str)> = vec![
            (
                fields(
                    ContentType::Json,
                    ex,
                    &[("a", Source::Name), ("b", Source::Name), ("c", Source::Name), ("d", tok("foo"))],
                ),
                "fields[3].source.token",
                "unknown token `foo`",
            ),
            (
                fields(ContentType::Json, ex, &[("a", Source::Name), ("b", Source::Name), ("nope", Source::Name)]),
                "fields[2].path",
                "not a field",
            ),
            (
                fields(ContentType::Json, ex, &[("a", Source::Name), ("a", Source::Name)]),
                "fields[1].path",
                "more than once",
            ),
            (fields(ContentType::Json, r#"{"a":"%nosuchtoken%"}"#, &[]), "example", "unknown token `nosuchtoken`"),
            (fields(ContentType::Json, "{", &[]), "example", "line 1"),
            (fields(ContentType::Text, "hello", &[]), "format", "json or xml"),
            (fields(ContentType::Form, "a=b", &[]), "format", "json or xml"),
            (
                TemplateBody::Pairs {
                    pairs: vec![
                        FieldMapping { path: "a".into(), source: tok("ani") },
                        FieldMapping { path: "b".into(), source: tok("%bogus%") },
                    ],
                },
                "pairs[1].source.token",
                "unknown token `%bogus%`",
            ),
            (
                TemplateBody::Pairs { pairs: vec![FieldMapping { path: " ".into(), source: Source::Name }] },
                "pairs[0].path",
                "empty",
            ),
            (
                TemplateBody::Pairs {
                    pairs: vec![
                        FieldMapping { path: "k".into(), source: Source::Name },
                        FieldMapping { path: "k".into(), source: Source::Name },
                    ],
                },
                "pairs[1].path",
                "duplicate",
            ),
            (text("ok\n{{ ani }}\n{% if ani %}unclosed"), "text", "line 3"),
            (text("line one\n{{ ani + }}"), "text", "line 2: syntax error"),
        ];
        for (body, field, needle) in cases {
            let err = compile_err(&body, ContentType::Json);
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(needle), "{err} should contain {needle}");
        }
        let pairs = TemplateBody::Pairs { pairs: vec![FieldMapping { path: "1bad".into(), source: Source::Name }] };
        assert_eq!(compile_err(&pairs, ContentType::Xml).field, "pairs[0].path");
        assert!(CompiledTemplate::compile(&pairs, ContentType::Json).is_ok());
    }

    #[test]
    fn unknown_variables_in_text_templates_are_refused_with_their_line() {
        let err = compile_err(&text("{\n  \"a\": {{ ani }},\n  \"b\": {{ mystery }}\n}"), ContentType::Json);
        assert_eq!(err.field, "text");
        assert_eq!(err.message, "line 3: unknown token `mystery`");
        let err = compile_err(&text("{% for x in nope %}{{ x }}{% endfor %}"), ContentType::Text);
        assert_eq!(err.message, "line 1: unknown token `nope`");
        let err = compile_err(&text("a\n{{ ani | nosuchfilter }}"), ContentType::Text);
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("text", "line 2: unknown filter: filter nosuchfilter is unknown")
        );
        let err = compile_err(&text("{% include 'other' %}"), ContentType::Text);
        assert_eq!(err.field, "text");
        let err = compile_err(&text("{{ ANI }}"), ContentType::Text);
        assert!(err.message.contains("did you mean `ani`"), "{err}");
        // Catalog tokens, event, data, loop variables, set variables and builtins are fine.
        let ok = compile(
            &text("{% set n = dialed_time %}{% for r in prompt_responses %}{{ loop.index }}{{ r.question }}{% endfor %}{{ event.type }}{{ data.custom_key }}{{ n }}{% for i in range(2) %}{{ i }}{% endfor %}"),
            ContentType::Text,
        );
        assert_eq!(ok.tokens_used(), ["dialed_time", "prompt_responses"]);
        let mut e = tokens::sample_event();
        e.data.insert("custom_key".into(), json!("K"));
        assert_eq!(ok.render(&utc(&e)).unwrap(), "1onecall.endedK3601");
    }

    #[test]
    fn context_names_in_text_templates_are_checked_and_render_as_placeholders() {
        let e = tokens::sample_event();
        let body = text(r#"{"lead": {{ context.lead_id }}, "note": "for {{ context.owner }}"}"#);
        let t = compile(&body, ContentType::Json);
        // Without a nonce (previews) the values are absent.
        let out = t.render(&utc(&e)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"lead": null, "note": "for "}));
        let ctx = RenderContext { event: &e, tz: chrono_tz::UTC, context: Some("abc") };
        let out = t.render(&ctx).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["lead"], json!(crate::context::placeholder("abc", "lead_id")));
        let err = compile_err(&text("a\n{{ context.LeadId }}"), ContentType::Text);
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("text", "line 2: `LeadId` is not a context name (lowercase letters, digits and `_`)")
        );
        let err = InlineTemplate::compile("https://x/{{ context.a-b }}", "url").unwrap_err();
        assert_eq!(err.field, "url");
        assert!(err.message.contains("`a-b` is not a context name"), "{}", err.message);
    }

    #[test]
    fn percent_tokens_in_text_templates() {
        let e = tokens::sample_event();
        let out = render(&text("Call from %ani% (50% off, %notatoken%, %%) {{ '%ani%' }}"), ContentType::Text, &e);
        assert_eq!(out, "Call from 7776734736 (50% off, %notatoken%, %%) %ani%");
        let out = render(&text("{% raw %}%ani% {{ ani }}{% endraw %} %ani%"), ContentType::Text, &e);
        assert_eq!(out, "%ani% {{ ani }} 7776734736");
        // Chainable undefined: missing data paths render empty instead of failing.
        assert_eq!(render(&text("[{{ data.nope.deeper }}]"), ContentType::Text, &e), "[]");
    }

    #[test]
    fn size_limits() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_TEMPLATE_BYTES));
        assert_eq!(compile_err(&fields(ContentType::Json, &big, &[]), ContentType::Json).field, "example");
        assert_eq!(extract_fields(ContentType::Json, &big).unwrap_err().field, "example");
        assert_eq!(compile_err(&text(&"x".repeat(MAX_TEMPLATE_BYTES + 1)), ContentType::Text).field, "text");
        let err = InlineTemplate::compile(&"x".repeat(MAX_TEMPLATE_BYTES + 1), "request.url").unwrap_err();
        assert_eq!(err.field, "request.url");

        let e = tokens::sample_event();
        let t = compile(
            &text(&format!("{{% for i in range(20000) %}}{}{{% endfor %}}", "y".repeat(80))),
            ContentType::Text,
        );
        assert!(matches!(t.render(&utc(&e)), Err(RenderError::TooLarge(n)) if n > MAX_RENDERED_BYTES));
        let e = event_with(json!({"ani_first_name": "z".repeat(MAX_RENDERED_BYTES)}));
        let body = fields(ContentType::Json, r#"{"a":"%ani_first_name%"}"#, &[]);
        let err = compile(&body, ContentType::Json).render(&utc(&e)).unwrap_err();
        assert!(err.to_string().contains("byte limit"), "{err}");
        assert!(matches!(compile(&body, ContentType::Json).render_pairs(&utc(&e)), Err(RenderError::TooLarge(_))));
    }

    // ---- query pairs ----------------------------------------------------------------------

    #[test]
    fn render_pairs_for_query_parameters() {
        let e = tokens::sample_event();
        let body = fields(
            ContentType::Json,
            r#"{"contact":{"phone":"%ani%"},"n":"%dialed_time%","t":{}}"#,
            &[("t", tok("tags"))],
        );
        let pairs = compile(&body, ContentType::Json).render_pairs(&utc(&e)).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("contact.phone".to_string(), "7776734736".to_string()),
                ("n".to_string(), "36".to_string()),
                ("t".to_string(), r#"{"region":"south"}"#.to_string())
            ]
        );
        let p = TemplateBody::Pairs { pairs: vec![FieldMapping { path: "caller".into(), source: tok("ani") }] };
        assert_eq!(
            compile(&p, ContentType::Json).render_pairs(&utc(&e)).unwrap(),
            vec![("caller".to_string(), "7776734736".to_string())]
        );
        let err = compile(&text("{{ ani }}"), ContentType::Json).render_pairs(&utc(&e)).unwrap_err();
        assert_eq!(err.to_string(), "template: text templates cannot be sent as query parameters");
    }

    // ---- inline templates -----------------------------------------------------------------

    #[test]
    fn inline_templates() {
        let e = event_with(json!({"ani_first_name": "A b/c?d=e&f\r\nX-Evil: 1\0"}));
        let ctx = utc(&e);
        let url = InlineTemplate::compile(
            "https://x.example/{{ callid }}/%ani_first_name%?a=%ani%&p=100%25&q=%notatoken%",
            "request.url",
        )
        .unwrap();
        assert!(!url.is_static());
        assert_eq!(url.tokens_used(), ["ani", "ani_first_name", "callid"]);
        assert_eq!(
            url.render(&ctx, Escape::UrlComponent),
            format!(
                "https://x.example/{}/A%20b%2Fc%3Fd%3De%26f%0D%0AX-Evil%3A%201%00?a=7776734736&p=100%25&q=%notatoken%",
                e.call_id.clone().unwrap()
            )
        );
        let header = InlineTemplate::compile("Bearer {{ ani_first_name }}", "request.headers.x").unwrap();
        assert_eq!(header.render(&ctx, Escape::Header), "Bearer A b/c?d=e&fX-Evil: 1");
        assert_eq!(header.render(&ctx, Escape::None), "Bearer A b/c?d=e&f\r\nX-Evil: 1\0");
        let tags = InlineTemplate::compile("{{tags}}", "f").unwrap();
        assert_eq!(tags.render(&ctx, Escape::None), r#"{"region":"south"}"#);
        let mut e2 = e.clone();
        e2.data.remove("ani");
        assert_eq!(InlineTemplate::compile("a=%ani%;", "f").unwrap().render(&utc(&e2), Escape::None), "a=;");
        assert!(InlineTemplate::compile("https://x/static?a=1%20", "f").unwrap().is_static());

        let err = InlineTemplate::compile("https://x/{{ nope }}", "request.url").unwrap_err();
        assert_eq!((err.field.as_str(), err.message.as_str()), ("request.url", "unknown token `nope`"));
        assert_eq!(InlineTemplate::compile("{{ ani | upper }}", "h").unwrap_err().field, "h");
        assert_eq!(InlineTemplate::compile("{{ ani", "h").unwrap_err().message, "unclosed `{{`");
    }

    #[test]
    fn compiled_templates_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<CompiledTemplate>();
        assert_send_sync::<InlineTemplate>();
    }

    #[test]
    fn fuzz_regression_runaway_loops_are_refused() {
        let body = TemplateBody::Text {
            source: "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}".into(),
        };
        let started = std::time::Instant::now();
        let err = CompiledTemplate::compile(&body, ContentType::Text).unwrap_err();
        assert_eq!(err.field, "text", "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn fuzz_regression_non_ascii_inside_tag() {
        // A non-ASCII character inside `{{ … }}` (here U+FFFD) made the tag scanner slice a
        // string in the middle of a character and panic.
        let src = "{\n  \"phone\": {{ ani }},\n  \"name\": \"{{ ani\u{FFFD}first_name }}\"\n}\n";
        for ct in [ContentType::Json, ContentType::Xml, ContentType::Form, ContentType::Text] {
            let _ = CompiledTemplate::compile(&text(src), ct);
        }
        let e = tokens::sample_event();
        let body = text("{\"a\": {{ \"é\" ~ ani_first_name }}}");
        assert_eq!(render_json(&body, &e), json!({"a": "éFreddy"}));
        let body = text("é: {{ ani_first_name|default('ü') }}");
        assert_eq!(render(&body, ContentType::Text, &e), "é: Freddy");
    }

    #[test]
    fn fuzz_regression_non_ascii_before_unknown_token() {
        // Locating the line of an unknown token stepped through the source byte by byte and
        // panicked on the first multi-byte character.
        let err = compile_err(&text("é\n{{ nope }}"), ContentType::Json);
        assert_eq!(err.message, "line 2: unknown token `nope`");
        let err = compile_err(&text("{# ü #}\n日本 {{ ünknown }}"), ContentType::Text);
        assert_eq!(err.field, "text");
    }

    #[test]
    fn fuzz_regression_xml_example_names() {
        // quick-xml accepts any name; `<1a/>`, `<b[1]/>` or `<@x/>` in an example were
        // repeated verbatim in the XML output (not well-formed) and `b[1]` / `@x` gave two
        // fields the same path.
        for example in ["<1a/>", "<a><b/><b/><b[1]/></a>", "<a x=\"1\"><@x/></a>", "<a b[1]=\"x\"/>", "<a:/>"] {
            let err = extract_fields(ContentType::Xml, example).unwrap_err();
            assert!(err.message.contains("is not a valid XML name"), "{example}: {err}");
            let err = compile_err(&fields(ContentType::Xml, example, &[]), ContentType::Xml);
            assert_eq!(err.field, "example");
        }
        let ok = "<a:lead xmlns:a=\"urn:x\" a:id=\"1\" é-x.1=\"2\"><_b>%ani%</_b></a:lead>";
        let got: Vec<String> = extract_fields(ContentType::Xml, ok).unwrap().into_iter().map(|f| f.path).collect();
        assert_eq!(got, ["a:lead/@a:id", "a:lead/@é-x.1", "a:lead/_b"]);
    }
}
