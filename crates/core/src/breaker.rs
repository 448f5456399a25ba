//! The circuit breaker of one endpoint, as data: the dispatcher asks [`Breaker::admit`]
//! before an attempt and reports each result to [`Breaker::record`]. Its state lives in the
//! store so every dispatcher sees the same circuit.
//!
//! - **closed**: attempts go out; `failure_threshold` consecutive failures open it.
//! - **open**: new deliveries wait as retries instead of hammering the receiver; after
//!   `open_for` one probe is let through (half-open).
//! - **half-open**: one probe at a time; its success closes the circuit (and the dispatcher
//!   pulls the endpoint's waiting retries forward), its failure opens it again.
//! - An endpoint failing without a success for `disable_after` is disabled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub open_for: Duration,
    /// A probe in flight longer than this is presumed lost and another may go.
    pub probe_timeout: Duration,
    pub disable_after: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(90),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Breaker {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    /// First failure since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_started_at: Option<DateTime<Utc>>,
}

/// What the dispatcher may do now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Go,
    /// Go, as the half-open probe.
    Probe,
    /// Wait this long, then ask again.
    Wait(Duration),
}

/// What a result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
    /// Failing for longer than `disable_after`.
    Disable,
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Breaker {
    pub fn admit(&mut self, now: DateTime<Utc>, p: &BreakerPolicy) -> Admission {
        match self.state {
            CircuitState::Closed => Admission::Go,
            CircuitState::Open => {
                let reopen = self.opened_at.unwrap_or(now) + dur(p.open_for);
                if now >= reopen {
                    self.state = CircuitState::HalfOpen;
                    self.probe_started_at = Some(now);
                    Admission::Probe
                } else {
                    Admission::Wait((reopen - now).to_std().unwrap_or(Duration::ZERO))
                }
            }
            CircuitState::HalfOpen => {
                let lost = self.probe_started_at.is_none_or(|t| now >= t + dur(p.probe_timeout));
                if lost {
                    self.probe_started_at = Some(now);
                    Admission::Probe
                } else {
                    Admission::Wait(p.open_for.min(Duration::from_secs(5)))
                }
            }
        }
    }

    pub fn record(&mut self, success: bool, now: DateTime<Utc>, p: &BreakerPolicy) -> Transition {
        if success {
            let was_open = self.state != CircuitState::Closed;
            *self = Breaker::default();
            return if was_open { Transition::Closed } else { Transition::None };
        }
        self.consecutive_failures += 1;
        let since = *self.failing_since.get_or_insert(now);
        if now - since >= dur(p.disable_after) {
            return Transition::Disable;
        }
        match self.state {
            CircuitState::Closed if self.consecutive_failures >= p.failure_threshold => {
                self.state = CircuitState::Open;
                self.opened_at = Some(now);
                Transition::Opened
            }
            CircuitState::HalfOpen => {
                self.state = CircuitState::Open;
                self.opened_at = Some(now);
                self.probe_started_at = None;
                Transition::None
            }
            _ => Transition::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let p = BreakerPolicy { failure_threshold: 3, open_for: Duration::from_secs(10), ..Default::default() };
        let t0 = Utc::now();
        let mut b = Breaker::default();
        assert_eq!(b.admit(t0, &p), Admission::Go);
        assert_eq!(b.record(false, t0, &p), Transition::None);
        assert_eq!(b.record(false, t0, &p), Transition::None);
        assert_eq!(b.record(false, t0, &p), Transition::Opened);
        assert_eq!(b.admit(t0 + chrono::Duration::seconds(4), &p), Admission::Wait(Duration::from_secs(6)));
        let t1 = t0 + chrono::Duration::seconds(10);
        assert_eq!(b.admit(t1, &p), Admission::Probe);
        assert!(matches!(b.admit(t1, &p), Admission::Wait(_)), "one probe at a time");
        assert_eq!(b.record(false, t1, &p), Transition::None);
        assert_eq!(b.state, CircuitState::Open, "a failed probe opens again");
        let t2 = t1 + chrono::Duration::seconds(10);
        assert_eq!(b.admit(t2, &p), Admission::Probe);
        assert_eq!(b.record(true, t2, &p), Transition::Closed);
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn failing_for_days_disables() {
        let p = BreakerPolicy::default();
        let t0 = Utc::now();
        let mut b = Breaker::default();
        b.record(false, t0, &p);
        assert_eq!(b.record(false, t0 + chrono::Duration::days(4), &p), Transition::None);
        assert_eq!(b.record(false, t0 + chrono::Duration::days(5), &p), Transition::Disable);
    }
}
