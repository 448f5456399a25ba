//! Checks shared by the fuzz targets: "is this output well-formed for its content type", done
//! strictly enough that a failure is a product bug (README "Templates": bodies are rendered
//! per content type so the output is always well-formed and escaped).
#![allow(dead_code)]

use quick_xml::events::Event as XmlEvent;
use serde_json::Value;

// ---- JSON -----------------------------------------------------------------------------------

/// Parses `out` as one JSON document or panics with the output.
pub fn json(out: &str, what: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{what}: output is not JSON ({e}):\n{out}"))
}

/// JSON equality where floats may differ in their last bit: serde_json's default float
/// parsing is best-effort (the exact one is its `float_roundtrip` feature, which the workspace
/// does not enable), so text → f64 → text → f64 can move a float by one ulp.
pub fn json_eq_loose(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(p), Some(q)) if x.is_f64() || y.is_f64() => ulps(p, q) <= 1,
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq_loose(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq_loose(v, w)))
        }
        _ => a == b,
    }
}

/// Distance in units in the last place between two finite floats of the same sign.
fn ulps(p: f64, q: f64) -> u64 {
    if p == q {
        0
    } else if p.is_sign_negative() != q.is_sign_negative() || !p.is_finite() || !q.is_finite() {
        u64::MAX
    } else {
        p.to_bits().abs_diff(q.to_bits())
    }
}

// ---- form -----------------------------------------------------------------------------------

/// Parses `out` as application/x-www-form-urlencoded and checks it is in canonical form (what
/// `url::form_urlencoded::Serializer` writes: every byte outside `*-._` and alphanumerics
/// percent-encoded, space as `+`), so no value can leak a raw `&`, `=`, `%` or space.
pub fn form(out: &str, what: &str) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(out.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert!(is_canonical_form(out), "{what}: output is not canonical form encoding:\n{out:?}");
    pairs
}

/// Every byte is `[A-Za-z0-9*-._+&=]` or a `%XX` escape.
pub fn is_canonical_form(out: &str) -> bool {
    let b = out.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_' | b'+' | b'&' | b'=') => i += 1,
            _ => return false,
        }
    }
    true
}

// ---- XML ------------------------------------------------------------------------------------

/// A parsed element: name, attributes (values unescaped and normalised as XML 1.0 says) and
/// children.
#[derive(Debug, Clone, PartialEq)]
pub struct XNode {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<XChild>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum XChild {
    Elem(XNode),
    Text(String),
}

impl XNode {
    /// Concatenated text children (CDATA and references included).
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                XChild::Text(t) => Some(t.as_str()),
                XChild::Elem(_) => None,
            })
            .collect()
    }

    pub fn elems(&self) -> impl Iterator<Item = &XNode> {
        self.children.iter().filter_map(|c| match c {
            XChild::Elem(e) => Some(e),
            XChild::Text(_) => None,
        })
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> &XNode {
        self.elems().find(|e| e.name == name).unwrap_or_else(|| panic!("<{}> has no <{name}>: {self:?}", self.name))
    }

    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("<{}> has no @{name}: {self:?}", self.name))
    }
}

/// The characters XML 1.0 can carry (production [2] Char).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML 1.0 production [5] Name.
pub fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if is_name_start(c)) && chars.all(is_name_char)
}

/// XML 1.0 end-of-line handling (§2.11): CR LF and lone CR become LF.
fn normalize_eols(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// Resolves `&…;` references of an attribute value after attribute-value normalisation
/// (§3.3.3: literal whitespace characters become spaces; references are kept as written).
fn attr_value(raw: &str) -> Result<String, String> {
    let normalized: String =
        normalize_eols(raw).chars().map(|c| if matches!(c, '\t' | '\n') { ' ' } else { c }).collect();
    ensure!(!normalized.contains('<'), "`<` in attribute value {raw:?}");
    let value = quick_xml::escape::unescape(&normalized)
        .map_err(|e| format!("bad reference in attribute value {raw:?} ({e})"))?;
    if let Some(c) = value.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!("attribute value refers to {c:?}, not an XML 1.0 character"));
    }
    Ok(value.into_owned())
}

/// Parses `out` as a complete XML 1.0 document or panics with the reason and the output.
pub fn xml(out: &str, what: &str) -> XNode {
    try_xml(out).unwrap_or_else(|e| panic!("{what}: not well-formed XML: {e}:\n{out:?}"))
}

/// Parses `out` as a complete XML 1.0 document with quick-xml (to `Eof` without error) and
/// checks what quick-xml leaves to the application: only XML characters (raw or referenced),
/// valid names, matching end tags, exactly one root element, no text outside it, no `]]>` in
/// text, known entities only. Answers the root element.
pub fn try_xml(out: &str) -> Result<XNode, String> {
    if let Some(bad) = out.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!("holds {bad:?}, which XML 1.0 cannot carry"));
    }
    let mut reader = quick_xml::Reader::from_str(out);
    {
        let config = reader.config_mut();
        config.trim_text(false);
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
    }
    let mut stack: Vec<XNode> = Vec::new();
    let mut root: Option<XNode> = None;
    let mut first = true;
    loop {
        let ev = reader.read_event().map_err(|e| format!("at {}: {e}", reader.error_position()))?;
        ensure!(first || !matches!(ev, XmlEvent::Decl(_)), "XML declaration not at the start");
        first = false;
        let text: Option<String> = match ev {
            XmlEvent::Start(ref e) | XmlEvent::Empty(ref e) => {
                let name = std::str::from_utf8(e.name().as_ref()).map_err(|e| e.to_string())?.to_string();
                ensure!(is_xml_name(&name), "`{name}` is not an XML name");
                let mut attrs = Vec::new();
                for a in e.attributes().with_checks(true) {
                    let a = a.map_err(|err| format!("bad attribute in <{name}> ({err})"))?;
                    let key = std::str::from_utf8(a.key.as_ref()).map_err(|e| e.to_string())?.to_string();
                    ensure!(is_xml_name(&key), "attribute `{key}` is not an XML name");
                    let raw = std::str::from_utf8(&a.value).map_err(|e| e.to_string())?;
                    attrs.push((key, attr_value(raw)?));
                }
                let node = XNode { name, attrs, children: Vec::new() };
                if matches!(ev, XmlEvent::Start(_)) {
                    stack.push(node);
                } else {
                    close(node, &mut stack, &mut root)?;
                }
                None
            }
            XmlEvent::End(_) => {
                let node = stack.pop().ok_or("unexpected end tag")?;
                close(node, &mut stack, &mut root)?;
                None
            }
            XmlEvent::Text(t) => {
                let s = t.xml10_content().map_err(|e| e.to_string())?.into_owned();
                ensure!(!s.contains("]]>"), "`]]>` in text");
                Some(s)
            }
            XmlEvent::CData(c) => Some(normalize_eols(&c.decode().map_err(|e| e.to_string())?)),
            XmlEvent::GeneralRef(r) => {
                let s = if r.is_char_ref() {
                    let c = r
                        .resolve_char_ref()
                        .map_err(|e| format!("bad character reference ({e})"))?
                        .ok_or("bad character reference")?;
                    ensure!(is_xml_char(c), "reference to {c:?}, not an XML 1.0 character");
                    c.to_string()
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?.into_owned();
                    quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_string()
                };
                Some(s)
            }
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::DocType(_) => None,
            XmlEvent::Eof => break,
        };
        if let Some(text) = text {
            match stack.last_mut() {
                Some(cur) => match cur.children.last_mut() {
                    Some(XChild::Text(t)) => t.push_str(&text),
                    _ => cur.children.push(XChild::Text(text)),
                },
                None => ensure!(
                    text.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')),
                    "text {text:?} outside the root element"
                ),
            }
        }
    }
    ensure!(stack.is_empty(), "unclosed elements");
    root.ok_or_else(|| "no root element".to_string())
}

fn close(node: XNode, stack: &mut [XNode], root: &mut Option<XNode>) -> Result<(), String> {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(XChild::Elem(node));
    } else {
        ensure!(root.is_none(), "more than one root element");
        *root = Some(node);
    }
    Ok(())
}

/// What the product's XML output does to a text value (template.rs module docs, "Rendering
/// per content type"): characters XML 1.0 cannot carry become U+FFFD.
pub fn xml_carried(s: &str) -> String {
    s.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect()
}

/// The element name the product gives an object key in XML output: invalid name characters
/// (including `:`) become `_`, and `_` is put in front of a name that cannot start one.
pub fn xml_key_name(key: &str) -> String {
    let ok_start = |c: char| c != ':' && is_name_start(c);
    let ok_char = |c: char| c != ':' && is_name_char(c);
    let mut name: String = key.chars().map(|c| if ok_char(c) { c } else { '_' }).collect();
    if !name.chars().next().is_some_and(ok_start) {
        name.insert(0, '_');
    }
    name
}
