//! The report of a run and of a scenario, and the table printed at the end.

use crate::limit::Limit;
use crate::scenario::{Behavior, Plan, Scenario};
use crate::stats::{round, ProcStat};
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    pub(crate) scenario: String,
    pub(crate) variant: String,
    pub(crate) backend: String,
    pub(crate) machine: Value,
    pub(crate) events_published: u64,
    pub(crate) publish_rate_per_s: f64,
    pub(crate) deliveries_expected: u64,
    pub(crate) deliveries_unique: u64,
    pub(crate) deliveries_lost: u64,
    pub(crate) deliveries_duplicated: u64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) latency_ms: Latency,
    pub(crate) cpu_seconds_per_1000_deliveries: f64,
    pub(crate) processes: Vec<ProcStat>,
    pub(crate) limit: Limit,
    pub(crate) extra: serde_json::Map<String, Value>,
}

/// Latencies in microseconds, 3 significant digits, up to an hour (a longer one counts as an
/// hour).
pub(crate) fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_max(3_600_000_000, 3).expect("bounds and precision are in range")
}

impl Latency {
    /// Percentiles of `micros` (see [`latency_histogram`]), in milliseconds; all 0 when
    /// nothing was recorded.
    pub(crate) fn of(micros: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |us: u64| round(us as f64 / 1e3, 1);
        Latency {
            p50: ms(micros.value_at_quantile(0.50)),
            p90: ms(micros.value_at_quantile(0.90)),
            p99: ms(micros.value_at_quantile(0.99)),
            max: ms(micros.max()),
        }
    }
}

pub(crate) fn receivers_summary(behaviors: &[Behavior], hits: &[u64], warm: u64) -> Vec<Value> {
    behaviors
        .iter()
        .zip(hits)
        .enumerate()
        .map(|(i, (b, &h))| {
            let kind = match b {
                Behavior::Fast => "fast".to_string(),
                Behavior::Slow(d) => format!("slow {} ms", d.as_millis()),
                Behavior::Fail(c) => format!("status {c}"),
            };
            // The warm-up deliveries all went to receiver 0.
            let h = if i == 0 { h.saturating_sub(warm) } else { h };
            json!({"receiver": i, "behavior": kind, "requests": h})
        })
        .collect()
}

/// Scenario-specific measures of one run.
pub(crate) fn scenario_extra(plan: &Plan, report: &mut RunReport, arrivals: &[u64], first_sent_ns: u64) {
    if plan.scenario == Scenario::RateLimited {
        // Measured rate over the run, after the burst, and the busiest one-second window.
        let n = arrivals.len();
        let overall =
            if n > 1 { n as f64 / ((arrivals[n - 1].saturating_sub(first_sent_ns)) as f64 / 1e9) } else { 0.0 };
        let burst = 20usize;
        let steady = if n > burst + 1 {
            (n - 1 - burst) as f64 / ((arrivals[n - 1] - arrivals[burst]) as f64 / 1e9)
        } else {
            0.0
        };
        let mut peak = 0usize;
        let mut j = 0usize;
        for i in 0..n {
            while arrivals[i] - arrivals[j] > 1_000_000_000 {
                j += 1;
            }
            peak = peak.max(i - j + 1);
        }
        let e = &mut report.extra;
        e.insert("configured_per_second".into(), json!(200.0));
        e.insert("configured_burst".into(), json!(burst));
        e.insert("measured_per_second".into(), json!(round(overall, 1)));
        e.insert("measured_per_second_after_burst".into(), json!(round(steady, 1)));
        e.insert("peak_one_second_window".into(), json!(peak));
    }
}

pub(crate) fn table(rows: &[RunReport]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<17} {:<13} {:<11} {:>7} {:>8} {:>5} {:>4} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
        "scenario",
        "variant",
        "backend",
        "events",
        "deliv.",
        "lost",
        "dup",
        "deliv/s",
        "limit/s",
        "ratio",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "cpu-s/1k",
        "RSS MiB"
    );
    for r in rows {
        let rss: f64 = r.processes.iter().filter(|p| p.hookmesh).map(|p| p.peak_rss_mib).sum();
        let _ = writeln!(
            s,
            "{:<17} {:<13} {:<11} {:>7} {:>8} {:>5} {:>4} {:>9.0} {:>9.0} {:>6.3} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.3} {:>8.0}",
            r.scenario,
            if r.variant.is_empty() { "-" } else { &r.variant },
            r.backend,
            r.events_published,
            r.deliveries_unique,
            r.deliveries_lost,
            r.deliveries_duplicated,
            r.deliveries_per_s,
            r.limit.deliveries_per_s,
            r.limit.ratio,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.max,
            r.cpu_seconds_per_1000_deliveries,
            rss
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_in_milliseconds() {
        let mut micros = latency_histogram();
        let none = Latency::of(&micros);
        assert_eq!((none.p50, none.p90, none.p99, none.max), (0.0, 0.0, 0.0, 0.0));
        for ms in 1..=1000 {
            micros.saturating_record(ms * 1000);
        }
        let l = Latency::of(&micros);
        // Within the histogram's 3 significant digits of the exact ranks.
        for (got, want) in [(l.p50, 500.0), (l.p90, 900.0), (l.p99, 990.0), (l.max, 1000.0)] {
            assert!((got - want).abs() <= want / 1000.0 + 0.1, "{got} ≉ {want}");
        }
    }
}
