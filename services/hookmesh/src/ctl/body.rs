//! The body of a request, inline in a webhook or in a template: the flags both take
//! (`--body-kind`/`--kind`, a file, `--map`, the example's format), applied onto what is
//! there, and the one-line summary a description shows.

use crate::ctl::output::{or_dash, source_str};
use crate::ctl::parse::{format_from_path, parse_mapping};
use anyhow::{bail, Result};
use clap::ValueEnum;
use hookmesh_proto::v1;
use std::path::Path;

/// The three kinds of body: a filled-in example document, name/value pairs, a text template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BodyKind {
    Fields,
    Pairs,
    Text,
}

/// Replaces mappings with the same path, appends the others.
fn merge_mappings(list: &mut Vec<v1::FieldMapping>, maps: &[String]) -> Result<()> {
    for m in maps {
        let m = parse_mapping(m)?;
        match list.iter_mut().find(|x| x.path == m.path) {
            Some(existing) => *existing = m,
            None => list.push(m),
        }
    }
    Ok(())
}

/// What the body flags ask for.
pub(super) struct BodyInput<'a> {
    pub kind: Option<BodyKind>,
    /// (path, contents)
    pub file: Option<(&'a Path, String)>,
    pub format: Option<&'a str>,
    pub maps: &'a [String],
}

/// Applies body flags onto an existing body (or none). `None` input changes nothing.
pub(super) fn apply_body(existing: Option<v1::TemplateBody>, input: BodyInput<'_>) -> Result<Option<v1::TemplateBody>> {
    use v1::template_body::Kind;
    if input.kind.is_none() && input.file.is_none() && input.maps.is_empty() && input.format.is_none() {
        return Ok(existing);
    }
    let existing_kind = existing.as_ref().and_then(|b| b.kind.clone());
    let kind = match (input.kind, &input.file, &existing_kind) {
        (Some(k), _, _) => k,
        (None, Some((path, _)), _) => match format_from_path(path) {
            Some(_) => BodyKind::Fields,
            None => bail!("--body-kind (fields, pairs, text) is required for {}", path.display()),
        },
        (None, None, Some(Kind::Fields(_))) => BodyKind::Fields,
        (None, None, Some(Kind::Text(_))) => BodyKind::Text,
        (None, None, _) => BodyKind::Pairs,
    };
    let kind = match kind {
        BodyKind::Fields => {
            let mut body = match existing_kind {
                Some(Kind::Fields(f)) => f,
                _ => v1::FieldsBody::default(),
            };
            if let Some((path, text)) = input.file {
                // A new example: old mappings only survive for paths given again.
                body.example = text;
                body.fields.clear();
                if input.format.is_none() {
                    if let Some(f) = format_from_path(path) {
                        body.format = f.to_string();
                    }
                }
            }
            if let Some(f) = input.format {
                body.format = f.to_string();
            }
            if body.example.trim().is_empty() {
                bail!("a fields body needs an example document (--body-file / --example-file)");
            }
            if body.format.is_empty() {
                body.format = "json".to_string();
            }
            merge_mappings(&mut body.fields, input.maps)?;
            Kind::Fields(body)
        }
        BodyKind::Pairs => {
            let mut pairs = match existing_kind {
                Some(Kind::Pairs(p)) => p.pairs,
                _ => Vec::new(),
            };
            if let Some((_, text)) = input.file {
                pairs.clear();
                let lines: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                merge_mappings(&mut pairs, &lines)?;
            }
            merge_mappings(&mut pairs, input.maps)?;
            if pairs.is_empty() {
                bail!("a pairs body needs at least one --map 'name=token:NAME'");
            }
            Kind::Pairs(v1::PairsBody { pairs })
        }
        BodyKind::Text => {
            if !input.maps.is_empty() {
                bail!("--map does not apply to a text body (write the tokens into the source)");
            }
            match (input.file, existing_kind) {
                (Some((_, text)), _) => Kind::Text(text),
                (None, Some(Kind::Text(t))) => Kind::Text(t),
                _ => bail!("a text body needs its source (--body-file / --source-file)"),
            }
        }
    };
    Ok(Some(v1::TemplateBody { kind: Some(kind) }))
}

/// `fields (json example): a=token:ani`, `pairs: …`, `text (3 lines)`.
pub(super) fn body_summary(b: &Option<v1::TemplateBody>) -> String {
    use v1::template_body::Kind;
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(Kind::Fields(f)) => {
            let maps: Vec<String> = f.fields.iter().map(|m| format!("{}={}", m.path, source_str(&m.source))).collect();
            if maps.is_empty() {
                format!("fields ({} example, example values)", or_dash(&f.format))
            } else {
                format!("fields ({} example): {}", or_dash(&f.format), maps.join(", "))
            }
        }
        Some(Kind::Pairs(p)) => {
            let maps: Vec<String> = p.pairs.iter().map(|m| format!("{}={}", m.path, source_str(&m.source))).collect();
            format!("pairs: {}", maps.join(", "))
        }
        Some(Kind::Text(t)) => format!("text ({} lines)", t.lines().count()),
        None => String::new(),
    }
}

pub(super) fn body_kind_name(b: &Option<v1::TemplateBody>) -> &'static str {
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(v1::template_body::Kind::Fields(_)) => "fields",
        Some(v1::template_body::Kind::Pairs(_)) => "pairs",
        Some(v1::template_body::Kind::Text(_)) => "text",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_flags() {
        use v1::template_body::Kind;
        let maps = vec!["caller=token:ani".to_string()];
        let b = apply_body(
            None,
            BodyInput {
                kind: None,
                file: Some((Path::new("ex.xml"), "<a><caller/></a>".into())),
                format: None,
                maps: &maps,
            },
        )
        .unwrap();
        let Some(Kind::Fields(f)) = b.clone().and_then(|b| b.kind) else { panic!("{b:?}") };
        assert_eq!(f.format, "xml");
        assert_eq!(f.fields.len(), 1);
        // Only maps on update: merged into the existing fields body.
        let more = vec!["caller=const:1".to_string(), "b=name".to_string()];
        let b2 = apply_body(b, BodyInput { kind: None, file: None, format: None, maps: &more }).unwrap();
        let Some(Kind::Fields(f)) = b2.and_then(|b| b.kind) else { panic!() };
        assert_eq!(f.fields.iter().map(|m| source_str(&m.source)).collect::<Vec<_>>(), ["const:1", "name"]);
        // Pairs from maps alone.
        let b = apply_body(None, BodyInput { kind: None, file: None, format: None, maps: &maps }).unwrap();
        assert!(matches!(b.and_then(|b| b.kind), Some(Kind::Pairs(_))));
        // Nothing asked, nothing changed.
        assert_eq!(apply_body(None, BodyInput { kind: None, file: None, format: None, maps: &[] }).unwrap(), None);
        // A text body needs a source; an unknown extension needs a kind.
        assert!(
            apply_body(None, BodyInput { kind: Some(BodyKind::Text), file: None, format: None, maps: &[] }).is_err()
        );
        assert!(apply_body(
            None,
            BodyInput { kind: None, file: Some((Path::new("b.j2"), "x".into())), format: None, maps: &[] }
        )
        .is_err());
    }
}
