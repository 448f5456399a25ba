//! Every metric hookmesh exports, named once. The registry below is the single source of
//! truth: `/metrics` serves it as Prometheus text, and when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! [`crate::otlp_metrics`] also pushes it over OTLP (counters named without `_total` there).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `hookmesh_events_ingested_total` | counter | `outcome` = accepted, rejected, duplicate |
//! | `hookmesh_jobs_routed_total` | counter | |
//! | `hookmesh_render_errors_total` | counter | |
//! | `hookmesh_delivery_attempts_total` | counter | `outcome` = success, failure; `class` = 2xx…5xx, connect, timeout, … |
//! | `hookmesh_deliveries_completed_total` | counter | `status` = success, error |
//! | `hookmesh_retries_scheduled_total` | counter | |
//! | `hookmesh_delivery_latency_seconds` | histogram | first trigger → successful delivery |
//! | `hookmesh_response_time_seconds` | histogram | receiver response time per attempt |
//! | `hookmesh_requests_in_flight` | gauge | |
//! | `hookmesh_deliveries_deferred_total` | counter | |
//! | `hookmesh_operational_events_total` | counter | `event_type` = webhook.attempt_exhausted, … |
//! | `hookmesh_consumer_lag` | gauge | `topic`, `partition`: records not yet handled by this process |
//! | `hookmesh_retry_backlog` | gauge | retries scheduled (claimed or not) |
//! | `hookmesh_circuits` | gauge | `state` = open, half_open: endpoints this dispatcher saw in that state |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::SystemTime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub outcome: &'static str,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// When the registry was made: every counter and histogram counts from here.
    started: SystemTime,
    pub events_ingested: Family<OutcomeLabel, Counter>,
    pub jobs_routed: Counter,
    pub render_errors: Counter,
    pub attempts: Family<AttemptLabels, Counter>,
    pub deliveries_completed: Family<StatusLabel, Counter>,
    pub retries_scheduled: Counter,
    pub delivery_latency: Histogram,
    pub response_time: Histogram,
    pub in_flight: Gauge,
    pub deferred: Counter,
    pub operational_events: Family<EventLabel, Counter>,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub retry_backlog: Gauge,
    pub circuits: Family<CircuitLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabel {
    pub state: &'static str,
}

fn buckets() -> impl Iterator<Item = f64> {
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter()
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("hookmesh");
        let m = Metrics {
            events_ingested: Family::default(),
            jobs_routed: Counter::default(),
            render_errors: Counter::default(),
            attempts: Family::default(),
            deliveries_completed: Family::default(),
            retries_scheduled: Counter::default(),
            delivery_latency: Histogram::new(buckets()),
            response_time: Histogram::new(buckets()),
            in_flight: Gauge::default(),
            deferred: Counter::default(),
            operational_events: Family::default(),
            consumer_lag: Family::default(),
            retry_backlog: Gauge::default(),
            circuits: Family::default(),
            registry: Registry::default(),
            started: SystemTime::now(),
        };
        registry.register("events_ingested", "Events received by ingest, by outcome", m.events_ingested.clone());
        registry.register("jobs_routed", "Delivery jobs produced by the router", m.jobs_routed.clone());
        registry.register("render_errors", "Jobs whose request could not be rendered", m.render_errors.clone());
        registry.register("delivery_attempts", "HTTP attempts by outcome and status class", m.attempts.clone());
        registry.register(
            "deliveries_completed",
            "Deliveries that reached a final status",
            m.deliveries_completed.clone(),
        );
        registry.register("retries_scheduled", "Retries put on the schedule", m.retries_scheduled.clone());
        registry.register(
            "delivery_latency_seconds",
            "First trigger to successful delivery",
            m.delivery_latency.clone(),
        );
        registry.register("response_time_seconds", "Receiver response time per attempt", m.response_time.clone());
        registry.register("requests_in_flight", "HTTP requests currently in flight", m.in_flight.clone());
        registry.register(
            "deliveries_deferred",
            "Deliveries rescheduled without an attempt (circuit open, rate limit, endpoint busy)",
            m.deferred.clone(),
        );
        registry.register("operational_events", "Operational webhook.* events emitted", m.operational_events.clone());
        registry.register(
            "consumer_lag",
            "Records not yet handled by this process, per topic and partition",
            m.consumer_lag.clone(),
        );
        registry.register("retry_backlog", "Retries scheduled (claimed or not)", m.retry_backlog.clone());
        registry.register(
            "circuits",
            "Endpoints whose circuit this dispatcher last saw open or half-open",
            m.circuits.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The start of every cumulative series (OTLP's `start_time_unix_nano`).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn event(&self, outcome: &'static str) {
        self.events_ingested.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn attempt(&self, outcome: &'static str, class: &'static str) {
        self.attempts.get_or_create(&AttemptLabels { outcome, class }).inc();
    }

    pub fn operational_event(&self, event_type: &'static str) {
        self.operational_events.get_or_create(&EventLabel { event_type }).inc();
    }

    pub fn completed(&self, status: &'static str) {
        self.deliveries_completed.get_or_create(&StatusLabel { status }).inc();
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
