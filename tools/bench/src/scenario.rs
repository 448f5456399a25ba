//! The scenarios and the runs (plans) each is made of: which receivers, which webhooks of
//! which tenants, how many events.

use hookmesh_proto::v1;
use std::time::Duration;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// 1 webhook with a JSON fields template; 20,000 events.
    Baseline,
    /// Each event to 10 webhooks with different templates (2,000 events), then to 100 (200).
    Fanout,
    /// 4 fast receivers, without and with a fifth that answers after 2 s (5,000 events).
    SlowEndpoint,
    /// 4 fast receivers, without and with a fifth that answers 500 to everything, retry
    /// schedule [1,1,1] (5,000 events).
    FailingEndpoint,
    /// 1 webhook limited to 200 requests/s, burst 20 (2,000 events).
    RateLimited,
    /// 10,000 webhooks across 1,000 tenants; events spread over the tenants (2,000 events).
    ManyEndpoints,
    /// Every scenario above, one combined table.
    All,
}

impl Scenario {
    pub(crate) const EVERY: [Scenario; 6] = [
        Scenario::Baseline,
        Scenario::Fanout,
        Scenario::SlowEndpoint,
        Scenario::FailingEndpoint,
        Scenario::RateLimited,
        Scenario::ManyEndpoints,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::Fanout => "fanout",
            Scenario::SlowEndpoint => "slow-endpoint",
            Scenario::FailingEndpoint => "failing-endpoint",
            Scenario::RateLimited => "rate-limited",
            Scenario::ManyEndpoints => "many-endpoints",
            Scenario::All => "all",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behavior {
    Fast,
    Slow(Duration),
    Fail(u16),
}

#[derive(Clone)]
pub(crate) struct Hook {
    pub(crate) tenant: u32,
    pub(crate) receiver: usize,
    /// Example document of the JSON fields template.
    pub(crate) example: String,
    pub(crate) policy: Option<v1::DeliveryPolicy>,
    /// Deliveries to it are expected and measured (not to slow or failing receivers).
    pub(crate) counted: bool,
}

pub(crate) struct Plan {
    pub(crate) scenario: Scenario,
    pub(crate) variant: String,
    pub(crate) receivers: Vec<Behavior>,
    pub(crate) tenants: u32,
    pub(crate) hooks: Vec<Hook>,
    pub(crate) events: u64,
    /// Keep hookmesh running this long after the last expected delivery (to see retries).
    pub(crate) settle: Duration,
}

impl Plan {
    pub(crate) fn tenant_name(t: u32) -> String {
        format!("bench-t{t}")
    }

    /// Counted webhooks of each tenant.
    pub(crate) fn counted_by_tenant(&self) -> Vec<Vec<u32>> {
        let mut by = vec![Vec::new(); self.tenants as usize];
        for (i, h) in self.hooks.iter().enumerate() {
            if h.counted {
                by[h.tenant as usize].push(i as u32);
            }
        }
        by
    }

    pub(crate) fn expected(&self) -> u64 {
        let by = self.counted_by_tenant();
        (0..self.events).map(|n| by[(n % u64::from(self.tenants)) as usize].len() as u64).sum()
    }
}

/// The JSON fields template of the baseline (and of the other single-template scenarios).
pub(crate) const BASE_TEMPLATE: &str = r#"{"id": "%event_id%", "type": "%event_type%", "call": "%callid%", "caller": "%ani%", "tracking": "%tracking%", "campaign": "%campaign_name%", "direction": "%direction%", "seconds": "%answered_time%", "status": "%dialstatus%", "ivr": "%ivr_label%"}"#;

/// Tokens the fanout templates pick from (all present in the published events).
pub(crate) const FANOUT_TOKENS: &[&str] = &[
    "ani",
    "tracking",
    "campaign_name",
    "campaign_id",
    "direction",
    "answered_time",
    "dialed_time",
    "dialstatus",
    "ivr_option",
    "ivr_label",
    "ani_first_name",
    "ani_last_name",
    "ani_city",
    "ani_state",
    "call_start_time",
    "rec_audiourl",
    "event_type",
    "occurred_at",
    "callid",
    "tenant_id",
];

/// The k-th of the fanout templates: a different set, order and naming of fields each.
pub(crate) fn fanout_template(k: usize) -> String {
    let count = 3 + k % 8;
    let mut fields = vec![r#""id": "%event_id%""#.to_string(), format!(r#""hook": {k}"#)];
    for j in 0..count {
        let token = FANOUT_TOKENS[(k * 7 + j * 3) % FANOUT_TOKENS.len()];
        fields.push(format!(r#""f{k}_{j}_{token}": "%{token}%""#));
    }
    if k.is_multiple_of(3) {
        fields.push(format!(r#""nested{k}": {{"caller": "%ani%", "when": "%occurred_at%"}}"#));
    }
    format!("{{{}}}", fields.join(", "))
}

pub(crate) fn hook(tenant: u32, receiver: usize, example: String) -> Hook {
    Hook { tenant, receiver, example, policy: None, counted: true }
}

/// The runs of a scenario.
pub(crate) fn plans(scenario: Scenario, events: Option<u64>) -> Vec<Plan> {
    let plan = |variant: &str, receivers: Vec<Behavior>, tenants: u32, hooks: Vec<Hook>, events: u64| Plan {
        scenario,
        variant: variant.to_string(),
        receivers,
        tenants,
        hooks,
        events,
        settle: Duration::ZERO,
    };
    let fast4 = || (0..4).map(|r| hook(0, r, BASE_TEMPLATE.to_string())).collect::<Vec<_>>();
    match scenario {
        Scenario::Baseline => {
            vec![plan("", vec![Behavior::Fast], 1, vec![hook(0, 0, BASE_TEMPLATE.into())], events.unwrap_or(20_000))]
        }
        Scenario::Fanout => {
            let n = events.unwrap_or(2_000);
            let fan = |k: usize, n: u64| {
                plan(
                    &format!("x{k}"),
                    vec![Behavior::Fast; 4],
                    1,
                    (0..k).map(|i| hook(0, i % 4, fanout_template(i))).collect(),
                    n,
                )
            };
            vec![fan(10, n), fan(100, (n / 10).max(1))]
        }
        Scenario::SlowEndpoint => {
            let n = events.unwrap_or(5_000);
            let mut with = fast4();
            with.push(Hook { counted: false, ..hook(0, 4, BASE_TEMPLATE.into()) });
            vec![
                plan("without", vec![Behavior::Fast; 4], 1, fast4(), n),
                plan(
                    "with slow",
                    vec![
                        Behavior::Fast,
                        Behavior::Fast,
                        Behavior::Fast,
                        Behavior::Fast,
                        Behavior::Slow(Duration::from_secs(2)),
                    ],
                    1,
                    with,
                    n,
                ),
            ]
        }
        Scenario::FailingEndpoint => {
            let n = events.unwrap_or(5_000);
            let mut with = fast4();
            with.push(Hook {
                counted: false,
                policy: Some(v1::DeliveryPolicy {
                    retry_limit: Some(3),
                    retry_schedule: vec![1, 1, 1],
                    ..Default::default()
                }),
                ..hook(0, 4, BASE_TEMPLATE.into())
            });
            let mut failing = plan(
                "with failing",
                vec![Behavior::Fast, Behavior::Fast, Behavior::Fast, Behavior::Fast, Behavior::Fail(500)],
                1,
                with,
                n,
            );
            failing.settle = Duration::from_secs(5);
            vec![plan("without", vec![Behavior::Fast; 4], 1, fast4(), n), failing]
        }
        Scenario::RateLimited => {
            let mut h = hook(0, 0, BASE_TEMPLATE.into());
            h.policy = Some(v1::DeliveryPolicy {
                rate_limit: Some(v1::RateLimit { per_second: 200.0, burst: 20 }),
                ..Default::default()
            });
            vec![plan("200/s", vec![Behavior::Fast], 1, vec![h], events.unwrap_or(2_000))]
        }
        Scenario::ManyEndpoints => {
            let tenants = 1_000u32;
            let hooks = (0..10_000u32).map(|i| hook(i / 10, (i % 8) as usize, BASE_TEMPLATE.into())).collect();
            vec![plan("10k webhooks", vec![Behavior::Fast; 8], tenants, hooks, events.unwrap_or(2_000))]
        }
        Scenario::All => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashSet;

    #[test]
    fn fanout_templates_differ_and_carry_the_event_id() {
        let all: HashSet<String> = (0..100).map(fanout_template).collect();
        assert_eq!(all.len(), 100);
        for t in &all {
            let v: Value = serde_json::from_str(t).unwrap();
            assert_eq!(v["id"], "%event_id%");
        }
    }

    #[test]
    fn expected_deliveries_follow_tenants() {
        let p = &plans(Scenario::ManyEndpoints, Some(2_000))[0];
        assert_eq!(p.hooks.len(), 10_000);
        assert_eq!(p.expected(), 20_000);
        let p = &plans(Scenario::SlowEndpoint, Some(100))[1];
        assert_eq!(p.expected(), 400, "the slow endpoint is not counted");
    }
}
