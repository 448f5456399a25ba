//! The error every configuration check answers with: which field, and why.
//!
//! Errors echo what they refuse (a header name, a time zone, a URL). Every error is built
//! through [`ValidationError::new`] (or `EventError::new` for events), which escapes control
//! characters with [`escape_control`], so a refused value holding CR/LF or an ANSI escape
//! cannot split the message over lines or drive a terminal.

/// A refused configuration: `field` is the dotted path of the offending input
/// (`request.url`, `trigger.event_types[2]`, `success.response_value_json`), spelt as the API
/// spells it; `message` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    /// Control characters in `field` and `message` are escaped ([`escape_control`]).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: escape_control(&field.into()), message: escape_control(&message.into()) }
    }

    /// The same error under a parent field: `request` + `url` → `request.url`.
    pub fn under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() { parent.to_string() } else { format!("{parent}.{}", self.field) };
        self
    }
}

/// `s` with every control character (C0, DEL, C1) and Unicode line or paragraph separator
/// written as an escape: CR as `\r`, LF as `\n`, tab as `\t`, others as `\u{1b}`. Text
/// without such characters comes back unchanged.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_errors_are_escaped() {
        let e = ValidationError::new(
            "request.headers[0].name",
            "`X-A\r\nInjected: 1\u{1b}[31m\u{2028}` is not a valid header name",
        );
        assert_eq!(e.message, "`X-A\\r\\nInjected: 1\\u{1b}[31m\\u{2028}` is not a valid header name");
        assert!(!e.to_string().contains(['\r', '\n', '\u{1b}']), "{e}");
        assert_eq!(escape_control("plain `text` ✓ 日本"), "plain `text` ✓ 日本");
        assert_eq!(escape_control("a\tb\u{7f}\u{85}"), "a\\tb\\u{7f}\\u{85}");
    }
}
