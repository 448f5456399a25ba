//! Hostile token values: the sample event with `ani`, `ani_full_name`, `campaign_name` and
//! `tags` replaced by fuzz-built strings (any Unicode, quotes, `</x>`, `&`, `]]>`, newlines,
//! control characters, `{{ }}`, `%ani%` …). Every structured template and the text templates
//! must still give well-formed output that carries the values exactly: JSON and form
//! verbatim; XML verbatim except that characters XML 1.0 cannot carry become U+FFFD (template.rs
//! module docs), with object keys made into element names (invalid characters → `_`).
#![no_main]

mod common;

use hookmesh_core::template::{CompiledTemplate, ContentType, FieldMapping, RenderContext, Source, TemplateBody};
use hookmesh_core::tokens;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    "\\",
    "</x>",
    "<x>",
    "<",
    ">",
    "&",
    "&amp;",
    "&#0;",
    "&lt;",
    "]]>",
    "<![CDATA[",
    "--",
    "<!--",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\0",
    "\u{1}",
    "\u{8}",
    "\u{b}",
    "\u{c}",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{2029}",
    "\u{d7ff}",
    "\u{e000}",
    "\u{fffe}",
    "\u{ffff}",
    "\u{fffd}",
    "\u{feff}",
    "\u{10ffff}",
    "\u{1f600}",
    "é",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "%ani%",
    "{{ ani }}",
    "%",
    "%25",
    "+",
    "=",
    "&a=b",
    "?",
    "#",
    " ",
    "  ",
    ":",
    "/",
    "null",
    "0",
    "-1",
    "1e999",
    "true",
    "{\"a\":1}",
    "[]",
    "\u{300}",
];

fn hostile(u: &mut Unstructured) -> Result<String> {
    let mut s = String::new();
    let n = u.int_in_range(0..=12)?;
    for _ in 0..n {
        match u.int_in_range(0..=3)? {
            0 | 1 => s.push_str(u.choose(FRAGMENTS)?),
            2 => s.push(u.arbitrary::<char>()?),
            _ => s.push(char::from(u.int_in_range(0u8..=0x7f)?)),
        }
    }
    Ok(s)
}

struct Values {
    ani: String,
    name: String,
    campaign: String,
    tags: Map<String, Value>,
}

fn values(u: &mut Unstructured) -> Result<Values> {
    let ani = hostile(u)?;
    let name = hostile(u)?;
    let campaign = hostile(u)?;
    let mut tags = Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let k = hostile(u)?;
        let v = match u.int_in_range(0..=2)? {
            0 => Value::String(hostile(u)?),
            1 => json!({ "inner": hostile(u)? }),
            _ => json!([hostile(u)?, null, 7]),
        };
        tags.insert(k, v);
    }
    Ok(Values { ani, name, campaign, tags })
}

fn compile(body: &TemplateBody, ct: ContentType) -> CompiledTemplate {
    CompiledTemplate::compile(body, ct).unwrap_or_else(|e| panic!("fixed template does not compile: {e}"))
}

fn tok(path: &str, token: &str) -> FieldMapping {
    FieldMapping { path: path.to_string(), source: Source::Token { token: token.to_string() } }
}

/// An XML rendering of a JSON value (README: "nested tokens … become elements in XML"):
/// objects → child elements, arrays → repeated `<item>`, null → empty element, scalars → text.
fn check_xml_value(node: &common::XNode, v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            let kids: Vec<&common::XNode> = node.elems().collect();
            assert_eq!(kids.len(), m.len(), "{at}: children {kids:?} for {v}");
            for ((k, child), el) in m.iter().zip(kids) {
                assert_eq!(el.name, common::xml_key_name(k), "{at}: element name for key {k:?}");
                check_xml_value(el, child, &format!("{at}/{}", el.name));
            }
        }
        Value::Array(items) => {
            let kids: Vec<&common::XNode> = node.elems().collect();
            assert_eq!(kids.len(), items.len(), "{at}: items {kids:?} for {v}");
            for (item, el) in items.iter().zip(kids) {
                assert_eq!(el.name, "item", "{at}");
                check_xml_value(el, item, &format!("{at}/item"));
            }
        }
        Value::Null => assert!(node.children.is_empty(), "{at}: null renders as an empty element"),
        Value::String(s) => assert_eq!(node.text(), common::xml_carried(s), "{at}"),
        other => assert_eq!(node.text(), other.to_string(), "{at}"),
    }
}

struct Templates {
    compiled: Vec<((usize, ContentType), CompiledTemplate)>,
}

impl Templates {
    /// The compiled template for body `i` (in field order) and a content type.
    fn get(&self, i: usize, ct: ContentType) -> &CompiledTemplate {
        &self.compiled.iter().find(|(k, _)| *k == (i, ct)).expect("compiled").1
    }
}

/// The templates are fixed: compiled once (as a webhook's are at configuration time).
fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| {
        let fields_json = TemplateBody::Fields {
            format: ContentType::Json,
            example: r#"{"phone":"%ani%","name":"{{ ani_full_name }}","c":{"campaign":"%campaign_name%","n":3},"tags":"%tags%","list":["%ani%",{}],"mapped":""}"#.into(),
            fields: vec![tok("mapped", "campaign_name")],
        };
        let fields_xml = TemplateBody::Fields {
            format: ContentType::Xml,
            example: r#"<?xml version="1.0"?><lead src="%ani%" kind="x"><name>%ani_full_name%</name><campaign c="{{ campaign_name }}">%campaign_name%</campaign><tags>%tags%</tags><phone/></lead>"#.into(),
            fields: vec![tok("lead/phone", "ani"), tok("lead/@kind", "ani_full_name")],
        };
        let pairs = TemplateBody::Pairs {
            pairs: vec![tok("phone", "ani"), tok("name", "ani_full_name"), tok("campaign", "campaign_name"), tok("tags", "tags")],
        };
        let text_json = TemplateBody::Text {
            source: "{\n  \"phone\": {{ ani }},\n  \"name\": \"{{ ani_full_name }}\",\n  \"campaign\": \"%campaign_name%\",\n  \"both\": \"Hi {{ ani_full_name }} / %ani%!\",\n  \"tags\": {{ tags }},\n  \"pct\": %ani%,\n  \"n\": {{ dialed_time }}\n}\n".into(),
        };
        let text_xml = TemplateBody::Text {
            source: "<lead>\n  <phone>{{ ani }}</phone>\n  <name>%ani_full_name%</name>\n  <campaign>x{{ campaign_name }}y</campaign>\n</lead>".into(),
        };
        let text_form = TemplateBody::Text { source: "phone={{ ani }}&name=%ani_full_name%&tags={{ tags }}".into() };
        let mut compiled = Vec::new();
        for (i, body, cts) in [
            (0, &fields_json, &[ContentType::Json, ContentType::Xml][..]),
            (1, &fields_xml, &[ContentType::Xml, ContentType::Json][..]),
            (2, &pairs, &[ContentType::Form, ContentType::Json, ContentType::Xml][..]),
            (3, &text_json, &[ContentType::Json][..]),
            (4, &text_xml, &[ContentType::Xml][..]),
            (5, &text_form, &[ContentType::Form][..]),
        ] {
            for &ct in cts {
                compiled.push(((i, ct), compile(body, ct)));
            }
        }
        Templates { compiled }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(v) = values(&mut u) else { return };
    let mut event = tokens::sample_event();
    event.data.insert("ani".into(), Value::String(v.ani.clone()));
    event.data.insert("ani_full_name".into(), Value::String(v.name.clone()));
    event.data.insert("campaign_name".into(), Value::String(v.campaign.clone()));
    event.data.insert("tags".into(), Value::Object(v.tags.clone()));
    let tags = Value::Object(v.tags.clone());
    let ctx = RenderContext { event: &event, tz: chrono_tz::UTC };
    let t = templates();

    // ---- fields, JSON example, rendered as JSON
    let out = t.get(0, ContentType::Json).render(&ctx).expect("renders");
    let got = common::json(&out, "fields(json) as json");
    let expected = json!({"phone": v.ani, "name": v.name, "c": {"campaign": v.campaign, "n": 3}, "tags": tags,
        "list": [v.ani, {}], "mapped": v.campaign});
    assert_eq!(got, expected, "fields(json) as json:\n{out}");

    // ---- the same body as XML: <payload> + elements
    let out = t.get(0, ContentType::Xml).render(&ctx).expect("renders");
    let root = common::xml(&out, "fields(json) as xml");
    assert_eq!(root.name, "payload");
    assert_eq!(root.child("phone").text(), common::xml_carried(&v.ani), "fields(json) as xml: phone\n{out}");
    assert_eq!(root.child("name").text(), common::xml_carried(&v.name), "fields(json) as xml: name\n{out}");
    assert_eq!(root.child("c").child("campaign").text(), common::xml_carried(&v.campaign), "{out}");
    check_xml_value(root.child("tags"), &tags, "payload/tags");

    // ---- fields, XML example: attributes, text, nested tokens
    let out = t.get(1, ContentType::Xml).render(&ctx).expect("renders");
    let root = common::xml(&out, "fields(xml) as xml");
    assert_eq!(root.name, "lead");
    let x = common::xml_carried;
    assert_eq!(root.attr("src"), x(&v.ani), "fields(xml): @src\n{out:?}");
    assert_eq!(root.attr("kind"), x(&v.name), "fields(xml): @kind\n{out:?}");
    assert_eq!(root.child("name").text(), x(&v.name), "fields(xml): name\n{out:?}");
    assert_eq!(root.child("campaign").attr("c"), x(&v.campaign), "fields(xml): campaign/@c\n{out:?}");
    assert_eq!(root.child("campaign").text(), x(&v.campaign), "fields(xml): campaign\n{out:?}");
    assert_eq!(root.child("phone").text(), x(&v.ani), "fields(xml): phone\n{out:?}");
    check_xml_value(root.child("tags"), &tags, "lead/tags");

    // ... and the XML example as JSON
    let out = t.get(1, ContentType::Json).render(&ctx).expect("renders");
    let got = common::json(&out, "fields(xml) as json");
    assert_eq!(got["lead"]["@src"], json!(v.ani), "{out}");
    assert_eq!(got["lead"]["name"], json!(v.name), "{out}");
    assert_eq!(got["lead"]["campaign"]["#text"], json!(v.campaign), "{out}");
    assert_eq!(got["lead"]["tags"], tags, "{out}");

    // ---- pairs as form, JSON and XML
    let out = t.get(2, ContentType::Form).render(&ctx).expect("renders");
    let got = common::form(&out, "pairs as form");
    let tags_text = serde_json::to_string(&tags).expect("tags serialise");
    let expected: Vec<(String, String)> = vec![
        ("phone".into(), v.ani.clone()),
        ("name".into(), v.name.clone()),
        ("campaign".into(), v.campaign.clone()),
        ("tags".into(), tags_text.clone()),
    ];
    assert_eq!(got, expected, "pairs as form:\n{out}");
    let out = t.get(2, ContentType::Json).render(&ctx).expect("renders");
    assert_eq!(
        common::json(&out, "pairs as json"),
        json!({"phone": v.ani, "name": v.name, "campaign": v.campaign, "tags": tags}),
        "{out}"
    );
    let out = t.get(2, ContentType::Xml).render(&ctx).expect("renders");
    let root = common::xml(&out, "pairs as xml");
    assert_eq!(root.child("phone").text(), x(&v.ani), "{out:?}");
    assert_eq!(root.child("campaign").text(), x(&v.campaign), "{out:?}");
    check_xml_value(root.child("tags"), &tags, "payload/tags");

    // ---- text template, JSON: values as JSON values and inside string literals
    let out = t.get(3, ContentType::Json).render(&ctx).expect("renders");
    let got = common::json(&out, "text as json");
    let expected = json!({"phone": v.ani, "name": v.name, "campaign": v.campaign,
        "both": format!("Hi {} / {}!", v.name, v.ani), "tags": tags, "pct": v.ani, "n": 36});
    assert_eq!(got, expected, "text as json:\n{out}");

    // ---- text template, XML: element content (escaped, non-XML characters → U+FFFD)
    let out = t.get(4, ContentType::Xml).render(&ctx).expect("renders");
    let root = common::xml(&out, "text as xml");
    assert_eq!(root.child("phone").text(), x(&v.ani), "{out:?}");
    assert_eq!(root.child("name").text(), x(&v.name), "{out:?}");
    assert_eq!(root.child("campaign").text(), format!("x{}y", x(&v.campaign)), "{out:?}");

    // ---- text template, form: values url-encoded
    let out = t.get(5, ContentType::Form).render(&ctx).expect("renders");
    let got = common::form(&out, "text as form");
    let expected: Vec<(String, String)> =
        vec![("phone".into(), v.ani.clone()), ("name".into(), v.name.clone()), ("tags".into(), tags_text)];
    assert_eq!(got, expected, "text as form:\n{out}");
});
