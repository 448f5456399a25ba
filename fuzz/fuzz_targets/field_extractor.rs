//! `extract_fields` on any text, as JSON (first byte even) or XML (odd): never panics; when it
//! extracts, the fields it proposes compile as a Fields body for every content type, or are
//! refused with a ValidationError naming the problem (never a panic).
#![no_main]

use hookmesh_core::template::{extract_fields, CompiledTemplate, ContentType, RenderContext, TemplateBody};
use hookmesh_core::tokens;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let format = if first % 2 == 0 { ContentType::Json } else { ContentType::Xml };
    let text = String::from_utf8_lossy(rest);
    let Ok(fields) = extract_fields(format, &text) else { return };

    // Paths are unique: each names one leaf.
    let mut paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    let before = paths.len();
    paths.dedup();
    assert_eq!(before, paths.len(), "extract_fields proposed a path twice: {fields:?}");

    let body = TemplateBody::Fields { format, example: text.into_owned(), fields };
    let event = tokens::sample_event();
    let ctx = RenderContext { event: &event, tz: chrono_tz::UTC };
    for ct in [ContentType::Json, ContentType::Xml, ContentType::Form, ContentType::Text] {
        // Either outcome is fine (e.g. a JSON key that is no XML name); a panic is not.
        if let Ok(compiled) = CompiledTemplate::compile(&body, ct) {
            let _ = compiled.render(&ctx);
            let _ = compiled.render_pairs(&ctx);
        }
    }
});
