//! Which webhooks want an event: event type, campaigns, directions, numbers, IVR option,
//! attribute conditions and the trigger's CEL expression, all AND-combined; an empty list
//! means "any". Disabled webhooks and webhooks of another tenant never match. The expression
//! is evaluated last, only when every list filter holds, so the cheap filters keep the
//! expensive one off most events.

use crate::event::Event;
use crate::expression::{Bindings, EvalError, ExpressionFilter};
use crate::webhook::{Condition, ConditionOp, Webhook};
use serde_json::Value;

/// True when `webhook` wants `event`.
pub fn matches(webhook: &Webhook, event: &Event) -> bool {
    if !webhook.enabled || webhook.tenant_id != event.tenant_id {
        return false;
    }
    // Operational events (`webhook.*`) go only to webhooks that name them: a catch-all
    // webhook must not start receiving hookmesh's reports about other webhooks. And a webhook
    // never receives them about itself: a failing endpoint would otherwise feed itself.
    if event.event_type.is_operational()
        && (!webhook.trigger.event_types.contains(&event.event_type)
            || event.data_str("webhook_id").as_deref() == Some(webhook.id.as_str()))
    {
        return false;
    }
    let t = &webhook.trigger;
    if !t.event_types.is_empty() && !t.event_types.contains(&event.event_type) {
        return false;
    }
    if !t.campaigns.is_empty() {
        let id = event.data_str("campaign_id");
        let name = event.data_str("campaign_name");
        let hit = t.campaigns.iter().any(|c| campaign_is(c, id.as_deref(), name.as_deref()));
        if !hit {
            return false;
        }
    }
    if !t.directions.is_empty() {
        let d = event.data_str("direction");
        if !t.directions.iter().any(|x| d.as_deref() == Some(x.as_str())) {
            return false;
        }
    }
    if !t.numbers.is_empty() {
        let tracking = event.data_str("tracking");
        let hit = tracking.is_some_and(|n| t.numbers.iter().any(|x| same_phone_number(x, &n)));
        if !hit {
            return false;
        }
    }
    if !t.ivr_options.is_empty() {
        let option = event.data_str("ivr_option");
        let label = event.data_str("ivr_label");
        let hit = t.ivr_options.iter().any(|o| {
            option.as_deref() == Some(o.as_str()) || label.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(o))
        });
        if !hit {
            return false;
        }
    }
    t.conditions.iter().all(|c| condition_holds(c, event))
}

/// [`matches`] and then the trigger's expression, compiled by the caller (who caches it per
/// webhook version). `bindings` is built from `event` on first use and reused for the next
/// webhook. An expression that fails to evaluate answers `Err`: the event does not match.
pub fn matches_with_expression(
    webhook: &Webhook,
    event: &Event,
    expression: Option<&ExpressionFilter>,
    bindings: &mut Option<Bindings>,
) -> Result<bool, EvalError> {
    if !matches(webhook, event) {
        return Ok(false);
    }
    match expression {
        None => Ok(true),
        Some(f) => f.eval(bindings.get_or_insert_with(|| Bindings::new(event))),
    }
}

/// A campaign named by `wanted` (its id exactly, or its name in any case) is the campaign with
/// `id` and `name`. Webhook triggers and delivery-log filters both decide this way.
pub fn campaign_is(wanted: &str, id: Option<&str>, name: Option<&str>) -> bool {
    id == Some(wanted) || name.is_some_and(|n| n.eq_ignore_ascii_case(wanted))
}

/// Two spellings of one phone number (`+1 (777) 483-9229`, `7774839229`): the digits agree,
/// the country code aside. Webhook triggers and delivery-log filters both decide this way.
pub fn same_phone_number(a: &str, b: &str) -> bool {
    same_number(&digits(a), &digits(b))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// `+1 777 483 9229` and `7774839229` are the same number: compare the national part when one
/// side carries a country code.
fn same_number(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a == b || (a.len() >= 10 && b.ends_with(a)) || (b.len() >= 10 && a.ends_with(b)))
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn condition_holds(c: &Condition, event: &Event) -> bool {
    let actual = event.lookup(&c.path).filter(|v| !v.is_null());
    match c.op {
        ConditionOp::Exists => {
            let want = !matches!(c.value, Value::Bool(false));
            actual.is_some() == want
        }
        ConditionOp::Eq => actual.is_some_and(|a| a == c.value || as_text(&a) == as_text(&c.value)),
        ConditionOp::Ne => actual.is_none_or(|a| a != c.value && as_text(&a) != as_text(&c.value)),
        ConditionOp::In => {
            let Some(a) = actual else { return false };
            let Value::Array(list) = &c.value else { return false };
            list.iter().any(|v| *v == a || as_text(v) == as_text(&a))
        }
        ConditionOp::Prefix => actual.is_some_and(|a| as_text(&a).starts_with(&as_text(&c.value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{event_from_value, Direction, EventType};
    use serde_json::json;

    fn event(data: Value) -> Event {
        event_from_value(
            json!({"id":"e","type":"call.ended","occurred_at":0,"tenant_id":"acme","call_id":"c","data":data}),
        )
        .unwrap()
    }

    fn webhook(trigger: Value) -> Webhook {
        serde_json::from_value(json!({"id":"w","tenant_id":"acme","name":"n","request":{"url":"https://x.example"},
            "trigger": trigger, "created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}))
        .unwrap()
    }

    #[test]
    fn every_filter_must_hold() {
        let e = event(json!({"campaign_id":"c-1","campaign_name":"Sales Campaign","direction":"inbound",
            "tracking":"(777) 483-9229","ivr_option":"1","ivr_label":"Sales","tags":{"region":"south"}}));
        assert!(matches(&webhook(json!({})), &e));
        assert!(matches(&webhook(json!({"event_types":["call.ended"]})), &e));
        assert!(!matches(&webhook(json!({"event_types":["call.started"]})), &e));
        assert!(matches(&webhook(json!({"campaigns":["sales campaign"]})), &e));
        assert!(!matches(&webhook(json!({"campaigns":["c-2"]})), &e));
        assert!(matches(&webhook(json!({"directions":["inbound"]})), &e));
        assert!(!matches(&webhook(json!({"directions":["outbound","click_to_call"]})), &e));
        assert!(matches(&webhook(json!({"numbers":["+1 777-483-9229"]})), &e));
        assert!(!matches(&webhook(json!({"numbers":["7774839230"]})), &e));
        assert!(matches(&webhook(json!({"ivr_options":["Sales"]})), &e));
        assert!(!matches(&webhook(json!({"ivr_options":["Service","2"]})), &e));
        assert!(matches(&webhook(json!({"conditions":[{"path":"tags.region","op":"eq","value":"south"}]})), &e));
        assert!(matches(
            &webhook(json!({"conditions":[{"path":"tags.region","op":"in","value":["north","south"]}]})),
            &e
        ));
        assert!(matches(&webhook(json!({"conditions":[{"path":"campaign_name","op":"prefix","value":"Sales"}]})), &e));
        assert!(!matches(&webhook(json!({"conditions":[{"path":"gclid","op":"exists"}]})), &e));
        assert!(matches(&webhook(json!({"conditions":[{"path":"gclid","op":"ne","value":"x"}]})), &e));
        // AND-combined: one failing filter is enough to refuse.
        assert!(!matches(&webhook(json!({"directions":["inbound"],"ivr_options":["Parts"]})), &e));
    }

    #[test]
    fn the_expression_is_and_combined_with_the_list_filters() {
        let e = event(json!({"direction":"inbound","call_duration":45,"campaign_name":"Sales East"}));
        let mut w = webhook(json!({"directions":["inbound"],
            "expression":"call.duration > 30 && campaign.name.startsWith(\"Sales\")"}));
        w.validate().unwrap();
        let f = crate::expression::ExpressionFilter::compile(w.trigger.expression.as_deref().unwrap()).unwrap();
        let mut b = None;
        assert_eq!(matches_with_expression(&w, &e, Some(&f), &mut b), Ok(true));
        // A list filter that fails wins without evaluating the expression.
        w.trigger.directions = vec![Direction::Outbound];
        let mut b = None;
        assert_eq!(matches_with_expression(&w, &e, Some(&f), &mut b), Ok(false));
        assert!(b.is_none(), "the expression was not evaluated");
        // And an expression that fails refuses an event the lists accept.
        w.trigger.directions.clear();
        let short = event(json!({"direction":"inbound","call_duration":12,"campaign_name":"Sales East"}));
        assert_eq!(matches_with_expression(&w, &short, Some(&f), &mut None), Ok(false));
        // A malformed expression is refused under `trigger.expression`, with the position.
        w.trigger.expression = Some("call.duration >".into());
        let err = w.validate().unwrap_err();
        assert_eq!(err.field, "trigger.expression");
        assert!(err.message.starts_with("line 1, column "), "{err}");
    }

    #[test]
    fn operational_events_about_a_webhook_skip_that_webhook() {
        let mut e = event(json!({"webhook_id": "w"}));
        e.event_type = EventType::WebhookEndpointFailing;
        assert!(!matches(&webhook(json!({})), &e));
        assert!(!matches(&webhook(json!({"event_types": ["webhook.endpoint_failing"]})), &e), "not about itself");
        e.data.insert("webhook_id".into(), json!("other"));
        assert!(!matches(&webhook(json!({})), &e), "catch-all webhooks do not get operational events");
        e.data.insert("webhook_id".into(), json!("other"));
        assert!(matches(&webhook(json!({"event_types": ["webhook.endpoint_failing"]})), &e));
    }

    #[test]
    fn disabled_and_foreign_webhooks_get_nothing() {
        let e = event(json!({}));
        let mut w = webhook(json!({}));
        w.enabled = false;
        assert!(!matches(&w, &e));
        let mut w = webhook(json!({}));
        w.tenant_id = "other".into();
        assert!(!matches(&w, &e));
        assert_eq!(e.event_type, EventType::CallEnded);
        assert_eq!(Direction::parse("OUT"), Some(Direction::Outbound));
    }
}
