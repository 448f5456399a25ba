//! Call context in the dispatcher, the stage that holds the store (the design and its reasons:
//! `hookmesh_core::context`, and `docs/architecture.md`).
//!
//! - **Resolving.** Before an attempt, a request whose rendering left context placeholders
//!   reads its call's context. With every value there (or, after the wait, defaulted) the
//!   placeholders are replaced, escaped for where they stand, the request is stored resolved
//!   (retries and resends send the same values; delivery details show them), and the attempt
//!   goes on. A value still missing within the wait reschedules the delivery through the retry
//!   schedule without an attempt, so no consumer slot waits; after the wait a missing value
//!   without a default ends the delivery in `error` (class `context`) with
//!   `context value <name> was not captured within <wait>`.
//! - **Capturing.** After a successful attempt, before the delivery is marked delivered, the
//!   webhook's captures read the response body (as stored, so at most 16 KiB) and merge into
//!   the call's context for `CONTEXT_TTL`; the attempt's `context_note` says what was captured
//!   and what was not.

use super::*;
use hookmesh_core::context::{self, CONTEXT_TTL};
use std::collections::BTreeMap;

/// What the context says about an attempt about to start.
pub(crate) enum ContextStep {
    /// Nothing to wait for: send.
    Ready,
    /// A value is not there yet: try again after this long.
    Wait(Duration),
    /// The wait passed without a value and no default: `last_error` says which.
    Failed,
}

/// `30s`, `1500ms`.
fn show_wait(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl Dispatcher {
    pub(crate) async fn resolve_context(
        &self,
        d: &mut Delivery,
        now: DateTime<Utc>,
    ) -> Result<ContextStep, DispatchError> {
        let Some(use_) = d.request.context.clone() else { return Ok(ContextStep::Ready) };
        if use_.resolved.is_some() {
            return Ok(ContextStep::Ready);
        }
        let mut values = match &d.call_id {
            Some(call) => self.store.context_get(&d.tenant_id, call).await?,
            None => BTreeMap::new(),
        };
        values.retain(|k, _| use_.names.contains(k));
        let missing: Vec<String> = use_.missing(&values).cloned().collect();
        if !missing.is_empty() {
            let deadline = d.created_at + chrono::Duration::milliseconds(use_.wait_ms.min(i64::MAX as u64) as i64);
            if now < deadline {
                // Look again soon at first, less often as the wait goes on.
                let elapsed = (now - d.created_at).to_std().unwrap_or_default();
                let step = (elapsed / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
                let left = (deadline - now).to_std().unwrap_or_default();
                return Ok(ContextStep::Wait(step.min(left + Duration::from_millis(1))));
            }
            let undefaulted: Vec<&str> =
                missing.iter().filter(|n| !use_.defaults.contains_key(*n)).map(String::as_str).collect();
            if !undefaulted.is_empty() {
                let (noun, verb) = if undefaulted.len() == 1 { ("value", "was") } else { ("values", "were") };
                d.last_error = Some(format!(
                    "context {noun} {} {verb} not captured within {}",
                    undefaulted.join(", "),
                    show_wait(use_.wait_ms)
                ));
                d.last_error_class = Some(ErrorClass::Context);
                return Ok(ContextStep::Failed);
            }
            for n in missing {
                values.insert(n.clone(), use_.defaults[&n].clone());
            }
        }
        let r = &mut d.request;
        context::resolve(&use_, &mut r.url, &mut r.headers, &mut r.body, &values);
        if let Some(c) = r.context.as_mut() {
            c.resolved = Some(values);
        }
        Ok(ContextStep::Ready)
    }

    /// Captures the webhook's values from a successful attempt's response into the call's
    /// context, and notes on the attempt what it captured.
    pub(crate) async fn capture_context(
        &self,
        webhook: &Webhook,
        d: &Delivery,
        attempt: &mut Attempt,
    ) -> Result<(), DispatchError> {
        if webhook.context.captures.is_empty() || !attempt.succeeded() {
            return Ok(());
        }
        let Some(call) = &d.call_id else {
            attempt.context_note = Some("context: nothing captured, the event has no call id".into());
            return Ok(());
        };
        let got = context::capture(&webhook.context.captures, &attempt.response_body);
        let mut note = got.note;
        if !got.values.is_empty() {
            let refused = self.store.context_merge(&d.tenant_id, call, &got.values, CONTEXT_TTL).await?;
            if refused > 0 {
                note = Some(format!(
                    "{}; {refused} new name(s) not stored: the call's context holds at most {} names",
                    note.unwrap_or_default(),
                    context::MAX_NAMES_PER_CALL
                ));
            }
        }
        attempt.context_note = note;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_read_as_people_write_them() {
        assert_eq!(super::show_wait(30_000), "30s");
        assert_eq!(super::show_wait(1_500), "1500ms");
    }
}
