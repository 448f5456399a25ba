//! Retry decisions as data: one function turns an attempt's result and the webhook's policy
//! into what happens next. Jitter and the clamp on `Retry-After` live here and nowhere else.

use crate::delivery::ErrorClass;
use crate::webhook::DeliveryPolicy;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Longest `Retry-After` we honour; a receiver asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Jitter applied to scheduled delays: ±20 %.
pub const JITTER: f64 = 0.2;

/// What an attempt produced, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again after this delay.
    Retry(Duration),
    /// Stop: the delivery ends in `error`.
    GiveUp(String),
    /// Stop and disable the webhook (the receiver answered 410 Gone).
    Disable,
}

/// Decides after attempt number `attempts` (1 = the first attempt). `jitter` is a number in
/// [-1, 1] (random in production, fixed in tests).
pub fn decide(
    policy: &DeliveryPolicy,
    result: &AttemptResult,
    attempts: u32,
    first_trigger_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    if result.error_class.is_none() {
        return Decision::Delivered;
    }
    match result.status {
        Some(410) => return Decision::Disable,
        Some(s) if policy.non_retryable_statuses.contains(&s) => {
            return Decision::GiveUp(format!("status {s} is configured as not retryable"));
        }
        _ => {}
    }
    if result.error_class == Some(ErrorClass::Blocked) {
        return Decision::GiveUp("receiver address is not allowed".to_string());
    }
    let retries_done = attempts.saturating_sub(1);
    if retries_done >= policy.retry_limit() {
        return Decision::GiveUp(format!("retry limit of {} reached", policy.retry_limit()));
    }
    let delay = match result.retry_after {
        Some(ra) => ra.min(MAX_RETRY_AFTER),
        None => {
            let schedule = policy.schedule();
            let base = schedule[(retries_done as usize).min(schedule.len() - 1)] as f64;
            Duration::from_secs_f64((base * (1.0 + JITTER * jitter.clamp(-1.0, 1.0))).max(0.0))
        }
    };
    let deadline = first_trigger_at + policy.total_timeout();
    let due = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    if due > deadline {
        return Decision::GiveUp(format!(
            "total timeout of {}s would pass before the next attempt",
            policy.total_timeout().as_secs()
        ));
    }
    Decision::Retry(delay)
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status: Option<u16>) -> AttemptResult {
        AttemptResult { status, error_class: Some(ErrorClass::Status), retry_after: None }
    }

    #[test]
    fn follows_the_default_schedule_with_jitter() {
        let p = DeliveryPolicy::default();
        let t0 = Utc::now();
        assert_eq!(decide(&p, &failed(Some(500)), 1, t0, t0, 0.0), Decision::Retry(Duration::from_secs(5)));
        assert_eq!(decide(&p, &failed(Some(500)), 2, t0, t0, 1.0), Decision::Retry(Duration::from_secs(360)));
        assert_eq!(decide(&p, &failed(Some(500)), 3, t0, t0, -1.0), Decision::Retry(Duration::from_secs(1440)));
        assert!(matches!(decide(&p, &failed(Some(500)), 8, t0, t0, 0.0), Decision::GiveUp(_)));
        let ok = AttemptResult { status: Some(200), error_class: None, retry_after: None };
        assert_eq!(decide(&p, &ok, 1, t0, t0, 0.0), Decision::Delivered);
    }

    #[test]
    fn policy_overrides_limit_schedule_and_total_timeout() {
        let p = DeliveryPolicy { retry_limit: Some(1), retry_schedule: vec![2], ..Default::default() };
        let t0 = Utc::now();
        assert_eq!(decide(&p, &failed(None), 1, t0, t0, 0.0), Decision::Retry(Duration::from_secs(2)));
        assert!(matches!(decide(&p, &failed(None), 2, t0, t0, 0.0), Decision::GiveUp(_)));
        let p = DeliveryPolicy { total_timeout_secs: Some(60), retry_schedule: vec![30, 30, 30], ..Default::default() };
        assert!(matches!(
            decide(&p, &failed(None), 1, t0, t0 + chrono::Duration::seconds(20), 0.0),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(&p, &failed(None), 2, t0, t0 + chrono::Duration::seconds(40), 0.0),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn special_statuses() {
        let p = DeliveryPolicy { non_retryable_statuses: vec![400], ..Default::default() };
        let t0 = Utc::now();
        assert_eq!(decide(&p, &failed(Some(410)), 1, t0, t0, 0.0), Decision::Disable);
        assert!(matches!(decide(&p, &failed(Some(400)), 1, t0, t0, 0.0), Decision::GiveUp(_)));
        let ra = AttemptResult { retry_after: Some(Duration::from_secs(99_999)), ..failed(Some(429)) };
        assert_eq!(decide(&p, &ra, 1, t0, t0, 0.0), Decision::Retry(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("7", t0), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon", t0), None);
    }
}
