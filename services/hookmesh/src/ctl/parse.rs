//! The flag syntaxes of `ctl` and reading its input files. Each error names the flag and
//! echoes what it refused: `--status \`abc\`: \`abc\` is not a status code`.

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use hookmesh_core::webhook::ConditionOp;
use hookmesh_proto::v1;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// `'Name: value'`.
pub(super) fn parse_header(s: &str) -> Result<v1::KeyValue> {
    let (name, value) = s.split_once(':').ok_or_else(|| anyhow!("--header `{s}`: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("--header `{s}`: `{name}` is not a header name");
    }
    Ok(v1::KeyValue { name: name.to_string(), value: value.trim().to_string() })
}

/// `'name=value'`.
pub(super) fn parse_query(s: &str) -> Result<v1::KeyValue> {
    let (name, value) = s.split_once('=').ok_or_else(|| anyhow!("--query `{s}`: expected 'name=value'"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!("--query `{s}`: the name is empty");
    }
    Ok(v1::KeyValue { name: name.to_string(), value: value.to_string() })
}

/// JSON if it parses, else the text as a string.
pub(super) fn json_or_string(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// `'PATH OP [VALUE]'`.
pub(super) fn parse_condition(s: &str) -> Result<v1::Condition> {
    let usage = || anyhow!("--condition `{s}`: expected 'PATH OP VALUE' (OP: eq, ne, in, prefix, exists)");
    let t = s.trim();
    let (path, rest) = t.split_once(char::is_whitespace).ok_or_else(usage)?;
    let rest = rest.trim_start();
    let (op, value) = match rest.split_once(char::is_whitespace) {
        Some((op, v)) => (op, v.trim()),
        None => (rest, ""),
    };
    let op = ConditionOp::parse(op).ok_or_else(usage)?;
    let value = match op {
        ConditionOp::Exists if value.is_empty() => None,
        ConditionOp::Exists => bail!("--condition `{s}`: `exists` takes no value"),
        _ if value.is_empty() => bail!("--condition `{s}`: the value is missing"),
        ConditionOp::In => Some(match serde_json::from_str::<Value>(value) {
            Ok(v @ Value::Array(_)) => v,
            _ => Value::Array(value.split(',').map(|p| json_or_string(p.trim())).collect()),
        }),
        _ => Some(json_or_string(value)),
    };
    Ok(v1::Condition {
        path: path.to_string(),
        op: op.as_str().to_string(),
        value_json: value.map(|v| v.to_string()).unwrap_or_default(),
    })
}

/// `200-299`, `302`, `2xx`, or a comma-separated list of those.
pub(super) fn parse_status_ranges(s: &str) -> Result<Vec<v1::StatusRange>> {
    let code = |p: &str| -> Result<u32> {
        let n: u32 = p.trim().parse().map_err(|_| anyhow!("--status `{s}`: `{p}` is not a status code"))?;
        if !(100..=599).contains(&n) {
            bail!("--status `{s}`: {n} is not an HTTP status code");
        }
        Ok(n)
    };
    let mut ranges = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.to_ascii_lowercase();
        let range = if let Some(d) = lower.strip_suffix("xx") {
            let d: u32 = d.parse().map_err(|_| anyhow!("--status `{s}`: `{part}` is not a status class"))?;
            if !(1..=5).contains(&d) {
                bail!("--status `{s}`: `{part}` is not a status class");
            }
            v1::StatusRange { from: d * 100, to: d * 100 + 99 }
        } else if let Some((a, b)) = part.split_once('-') {
            let r = v1::StatusRange { from: code(a)?, to: code(b)? };
            if r.from > r.to {
                bail!("--status `{s}`: {}-{} is an empty range", r.from, r.to);
            }
            r
        } else {
            let c = code(part)?;
            v1::StatusRange { from: c, to: c }
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        bail!("--status `{s}`: expected a status, a range (200-299) or a class (2xx)");
    }
    Ok(ranges)
}

/// A duration in whole seconds, as humantime reads it (`90s`, `30m`, `1h`, `2d`, `1w`,
/// `1h30m`, `1h 30m`, `2 days`), units in any case (`30M` is 30 minutes); a bare number is
/// seconds when `bare_secs`.
fn parse_duration_secs(s: &str, bare_secs: bool) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(n) = t.parse::<u64>() {
        return if bare_secs { Ok(n) } else { Err(format!("`{s}` needs a unit (s, m, h, d), e.g. {n}h")) };
    }
    let d = humantime::parse_duration(&t.to_lowercase()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => format!("`{s}` is too long"),
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("`{s}` is not a duration: `{value}` has no unit")
        }
        e => format!("`{s}` is not a duration (e.g. 90s, 30m, 1h, 2d): {e}"),
    })?;
    if d.subsec_nanos() != 0 {
        return Err(format!("`{s}` is not a whole number of seconds"));
    }
    Ok(d.as_secs())
}

/// clap value parser: seconds or a duration with a unit.
pub(super) fn parse_secs(s: &str) -> Result<u64, String> {
    parse_duration_secs(s, true)
}

/// An RFC 3339 time or how long ago (`1h`), as RFC 3339 UTC.
pub(super) fn parse_since(s: &str, now: DateTime<Utc>) -> Result<String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    let secs = parse_duration_secs(s, false)
        .map_err(|e| anyhow!("{e}; expected an RFC 3339 time or how long ago (30m, 1h, 2d)"))?;
    let secs = i64::try_from(secs).map_err(|_| anyhow!("`{s}` is too long ago"))?;
    let t = now
        .checked_sub_signed(ChronoDuration::try_seconds(secs).ok_or_else(|| anyhow!("`{s}` is too long ago"))?)
        .ok_or_else(|| anyhow!("`{s}` is too long ago"))?;
    Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `5,300,1800` or `5s,5m,30m`.
pub(super) fn parse_schedule(s: &str) -> Result<Vec<u64>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| parse_duration_secs(p, true).map_err(|e| anyhow!("--retry-schedule: {e}")))
        .collect()
}

/// Requests per second from `10`, `10/s`, `600/m`, `3600/h`.
pub(super) fn parse_rate(s: &str) -> Result<f64> {
    let (n, per) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n.trim().parse().map_err(|_| anyhow!("--rate-limit `{s}`: expected e.g. 10/s or 600/m"))?;
    let div = match per.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => bail!("--rate-limit `{s}`: the unit must be s, m or h"),
    };
    let rate = n / div;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("--rate-limit `{s}`: must be more than 0");
    }
    Ok(rate)
}

/// `'path=token:NAME'`, `'path=%NAME%'`, `'path={{ NAME }}'`, `'path=const:JSON'` (text if
/// not JSON), `'path=name'`.
pub(super) fn parse_mapping(s: &str) -> Result<v1::FieldMapping> {
    let usage = || anyhow!("--map `{s}`: expected 'path=token:NAME', 'path=const:JSON' or 'path=name'");
    let (path, spec) = s.split_once('=').ok_or_else(usage)?;
    let path = path.trim();
    if path.is_empty() {
        return Err(usage());
    }
    let spec = spec.trim();
    use v1::source::Kind;
    let kind = if let Some(tok) = spec.strip_prefix("token:") {
        if tok.trim().is_empty() {
            return Err(usage());
        }
        Kind::Token(tok.trim().to_string())
    } else if let Some(c) = spec.strip_prefix("const:") {
        Kind::ConstantJson(json_or_string(c).to_string())
    } else if spec.eq_ignore_ascii_case("name") {
        Kind::Name(true)
    } else if (spec.starts_with('%') && spec.ends_with('%') && spec.len() > 2)
        || (spec.starts_with("{{") && spec.ends_with("}}"))
    {
        Kind::Token(spec.to_string())
    } else {
        return Err(usage());
    };
    Ok(v1::FieldMapping { path: path.to_string(), source: Some(v1::Source { kind: Some(kind) }) })
}

/// The text of a file; `-` reads stdin.
pub(super) fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// json or xml from the file name, if it says.
pub(super) fn format_from_path(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "json" => Some("json"),
        "xml" => Some("xml"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::output::source_str;
    use chrono::TimeZone;

    #[test]
    fn headers() {
        let h = parse_header("Authorization:  Bearer a:b ").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("Authorization", "Bearer a:b"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn query_params() {
        let q = parse_query("src=hook=mesh").unwrap();
        assert_eq!((q.name.as_str(), q.value.as_str()), ("src", "hook=mesh"));
        assert_eq!(parse_query("empty=").unwrap().value, "");
        assert!(parse_query("novalue").is_err());
        assert!(parse_query("=x").is_err());
    }

    #[test]
    fn conditions() {
        let c = parse_condition("data.tags.region eq south").unwrap();
        assert_eq!((c.path.as_str(), c.op.as_str(), c.value_json.as_str()), ("data.tags.region", "eq", "\"south\""));
        let c = parse_condition("duration  ne  30").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("ne", "30"));
        let c = parse_condition("campaign_name eq Spring Sale").unwrap();
        assert_eq!(c.value_json, "\"Spring Sale\"");
        let c = parse_condition("ivr_option in Sales,Support").unwrap();
        assert_eq!(c.value_json, r#"["Sales","Support"]"#);
        let c = parse_condition(r#"ivr_option in ["1", 2]"#).unwrap();
        assert_eq!(c.value_json, r#"["1",2]"#);
        let c = parse_condition("ani exists").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("exists", ""));
        let c = parse_condition("tracking == \"5551234\"").unwrap();
        assert_eq!((c.op.as_str(), c.value_json.as_str()), ("eq", "\"5551234\""));
        assert!(parse_condition("ani").is_err());
        assert!(parse_condition("ani like x").is_err());
        assert!(parse_condition("ani eq").is_err());
        assert!(parse_condition("ani exists x").is_err());
    }

    #[test]
    fn status_ranges() {
        let r = |s: &str| parse_status_ranges(s).map(|v| v.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>());
        assert_eq!(r("200-299").unwrap(), [(200, 299)]);
        assert_eq!(r("204").unwrap(), [(204, 204)]);
        assert_eq!(r("2xx, 302").unwrap(), [(200, 299), (302, 302)]);
        assert!(r("299-200").is_err());
        assert!(r("200-700").is_err());
        assert!(r("abc").is_err());
        assert!(r("9xx").is_err());
        assert!(r("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90s", false), Ok(90));
        assert_eq!(parse_duration_secs("30m", false), Ok(1800));
        assert_eq!(parse_duration_secs("1h", false), Ok(3600));
        assert_eq!(parse_duration_secs("2d", false), Ok(172_800));
        assert_eq!(parse_duration_secs("1h30m", false), Ok(5400));
        assert_eq!(parse_duration_secs("1W", false), Ok(604_800));
        assert_eq!(parse_duration_secs("45", true), Ok(45));
        assert!(parse_duration_secs("45", false).is_err());
        assert!(parse_duration_secs("1x", false).is_err());
        assert!(parse_duration_secs("h", false).is_err());
        assert!(parse_duration_secs("1h30", false).is_err());
        assert!(parse_duration_secs("", true).is_err());
        assert_eq!(parse_schedule("5, 5m,30m,2h").unwrap(), [5, 300, 1800, 7200]);
        assert!(parse_schedule("5,soon").is_err());
        // What humantime reads beyond the short forms; units in any case, `M` is minutes.
        assert_eq!(parse_duration_secs("1h 30m", false), Ok(5400));
        assert_eq!(parse_duration_secs("2 days", false), Ok(172_800));
        assert_eq!(parse_duration_secs("30M", false), Ok(1800));
        assert!(parse_duration_secs("500ms", true).unwrap_err().contains("whole number of seconds"));
        assert!(parse_duration_secs("1h30", false).unwrap_err().contains("`30` has no unit"));
        assert!(parse_duration_secs("99999999999999999999w", false).is_err());
    }

    #[test]
    fn since() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0).unwrap();
        assert_eq!(parse_since("1h", now).unwrap(), "2026-01-02T11:00:00Z");
        assert_eq!(parse_since("2d", now).unwrap(), "2025-12-31T12:00:00Z");
        assert_eq!(parse_since("2026-01-01T10:00:00+02:00", now).unwrap(), "2026-01-01T08:00:00Z");
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("60", now).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10").unwrap(), 10.0);
        assert_eq!(parse_rate("10/s").unwrap(), 10.0);
        assert_eq!(parse_rate("600/m").unwrap(), 10.0);
        assert_eq!(parse_rate("3600/hour").unwrap(), 1.0);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("ten").is_err());
        assert!(parse_rate("10/d").is_err());
    }

    #[test]
    fn mappings() {
        let m = |s: &str| parse_mapping(s).map(|m| (m.path.clone(), source_str(&m.source)));
        assert_eq!(m("caller=token:ani").unwrap(), ("caller".into(), "token:ani".into()));
        assert_eq!(m("caller=%ani%").unwrap(), ("caller".into(), "token:%ani%".into()));
        assert_eq!(m("src=const:\"hm\"").unwrap(), ("src".into(), "const:\"hm\"".into()));
        assert_eq!(m("src=const:hookmesh").unwrap(), ("src".into(), "const:\"hookmesh\"".into()));
        assert_eq!(m("n=const:5").unwrap(), ("n".into(), "const:5".into()));
        assert_eq!(m("call.kind=name").unwrap(), ("call.kind".into(), "name".into()));
        assert!(m("caller=ani").is_err());
        assert!(m("=token:ani").is_err());
        assert!(m("caller").is_err());
    }
}
