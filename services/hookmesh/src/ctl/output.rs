//! What `ctl` prints on stdout: tables, `key:  value` descriptions, JSON documents, and the
//! small text forms (`-` for nothing, `5m` for 300 seconds) they share.

use comfy_table::{presets, Table};
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::io::Write;

/// Prints `text` on stdout, ending in a newline.
pub(super) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Prints `v` as pretty JSON on stdout.
pub(super) fn out_json(v: &Value) {
    out(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// One line per cell: no newlines or tabs inside a table.
fn cell(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// Aligned plain-text columns, two spaces apart, no borders; the last column is not padded.
/// Control characters in cells are written as spaces, so a row is one line.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r.iter().take(headers.len()).map(|c| cell(c)));
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut text = String::new();
    for line in t.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `key:  value` lines, keys aligned; empty values are left out.
pub(super) fn describe(rows: &[(&str, String)]) -> String {
    let width = rows.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        let pad = width - k.chars().count();
        text.push_str(&format!("{k}:{}  {}\n", " ".repeat(pad), cell(v)));
    }
    text
}

/// `-` for an empty text.
pub(super) fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// JSON `null` for an empty text.
pub(super) fn opt_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

/// 5s, 5m, 2h, 1d: the largest unit that divides evenly.
pub(super) fn fmt_secs(s: u64) -> String {
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Headers or query parameters as `[{"name", "value"}]`.
pub(super) fn kvs_json(list: &[v1::KeyValue]) -> Value {
    Value::Array(list.iter().map(|kv| json!({"name": kv.name, "value": kv.value})).collect())
}

/// `-` for no HTTP status (0).
pub(super) fn status_or_dash(s: u32) -> String {
    if s == 0 {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// A field mapping's source as `--map` takes it: `token:NAME`, `const:JSON`, `name`.
pub(super) fn source_str(s: &Option<v1::Source>) -> String {
    match s.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(v1::source::Kind::Token(t)) => format!("token:{t}"),
        Some(v1::source::Kind::ConstantJson(j)) => format!("const:{j}"),
        Some(v1::source::Kind::Name(_)) => "name".to_string(),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned() {
        let t = table(
            &["ID", "NAME", "URL"],
            &[vec!["a".into(), "long name".into(), "u".into()], vec!["bbbb".into(), "n\nx".into(), "".into()]],
        );
        assert_eq!(t, "ID    NAME       URL\na     long name  u\nbbbb  n x\n");
        let d = describe(&[("id", "1".into()), ("empty", String::new()), ("version", "2".into())]);
        assert_eq!(d, "id:       1\nversion:  2\n");
    }

    #[test]
    fn durations_in_the_largest_unit() {
        assert_eq!(fmt_secs(300), "5m");
        assert_eq!(fmt_secs(90), "90s");
        assert_eq!(fmt_secs(86_400), "1d");
    }
}
