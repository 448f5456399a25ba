//! Endpoint health figures from attempt samples: success rate, average and p95 response time
//! and last status, per window (last hour, last day).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One attempt, as health remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    pub at: DateTime<Utc>,
    pub duration_ms: u64,
    /// 0 when there was no response.
    pub status: u16,
    pub success: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HealthWindow {
    pub attempts: u64,
    pub successes: u64,
    pub success_rate: f64,
    pub avg_ms: f64,
    pub p95_ms: f64,
}

/// Figures over the samples taken at or after `since`.
pub fn window(samples: &[HealthSample], since: DateTime<Utc>) -> HealthWindow {
    let mut durations: Vec<u64> = Vec::new();
    let mut successes = 0;
    for s in samples.iter().filter(|s| s.at >= since) {
        durations.push(s.duration_ms);
        successes += u64::from(s.success);
    }
    if durations.is_empty() {
        return HealthWindow::default();
    }
    durations.sort_unstable();
    let n = durations.len();
    // Nearest-rank p95.
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    HealthWindow {
        attempts: n as u64,
        successes,
        success_rate: successes as f64 / n as f64,
        avg_ms: durations.iter().sum::<u64>() as f64 / n as f64,
        p95_ms: durations[rank - 1] as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_over_a_window() {
        let now = Utc::now();
        let mk = |mins: i64, ms: u64, ok: bool| HealthSample {
            at: now - chrono::Duration::minutes(mins),
            duration_ms: ms,
            status: if ok { 200 } else { 500 },
            success: ok,
        };
        let mut samples: Vec<_> = (1..=100).map(|i| mk(1, i, i % 4 != 0)).collect();
        samples.push(mk(120, 10_000, false));
        let hour = window(&samples, now - chrono::Duration::hours(1));
        assert_eq!(hour.attempts, 100);
        assert_eq!(hour.successes, 75);
        assert!((hour.success_rate - 0.75).abs() < 1e-9);
        assert!((hour.avg_ms - 50.5).abs() < 1e-9);
        assert_eq!(hour.p95_ms, 95.0);
        let day = window(&samples, now - chrono::Duration::days(1));
        assert_eq!(day.attempts, 101);
        assert_eq!(window(&[], now), HealthWindow::default());
    }
}
