//! Every metric hookmesh exports, named once. The registry below is the single source of
//! truth: `/metrics` serves it as Prometheus text, and when an OTLP endpoint is configured
//! [`crate::otlp_metrics`] also pushes it over OTLP.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `hookmesh_events_ingested_total` | counter | `outcome` = accepted, rejected, duplicate |
//! | `hookmesh_jobs_routed_total` | counter | |
//! | `hookmesh_render_errors_total` | counter | |
//! | `hookmesh_delivery_attempts_total` | counter | `outcome` = success, failure; `class` = 2xx…5xx, connect, timeout, …, kafka_ack (a Kafka destination acknowledged) |
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
//! | `hookmesh_log_write_batches_total` | counter | `outcome` = ok, failed: PostgreSQL delivery-log write batches |
//! | `hookmesh_log_writes_total` | counter | deliveries and attempts written in those batches |
//! | `hookmesh_log_statements_total` | counter | SQL statements those batches took (`BEGIN`, `COMMIT` included) |
//! | `hookmesh_log_write_batch_seconds` | histogram | time of one write batch (one transaction) |
//!
//! # The same metrics over OTLP
//!
//! Each metric is registered once (in [`Metrics::new`]); that one registration also records
//! how an OpenTelemetry SDK meter reads it, and [`Metrics::export_to`] creates the meter's
//! instruments from those records:
//!
//! - Counters and gauges become *observable* instruments whose callbacks read the registry's
//!   current values whenever the SDK collects. OTLP therefore carries exactly the numbers
//!   `/metrics` shows, counted since the process started, with nothing to keep in step.
//! - Histograms are the exception: the SDK has no observable histogram and prometheus-client
//!   does not hand out its bucket counts, so [`Histogram::observe`] records each value into the
//!   registry *and* into an SDK histogram with the same bucket bounds. An OTLP histogram holds
//!   the values observed since its export started (the `hookmesh` binary starts the export
//!   before any stage runs).
//! - A label set becomes string attributes of the same names (see [`Attributes`]).
//! - Names are the registry's family names: a counter is sent as "hookmesh_events_ingested",
//!   without the `_total` its `/metrics` sample carries (as the OpenTelemetry Prometheus
//!   compatibility rules ask; a collector's Prometheus exporter appends `_total` again). No unit
//!   is set.
//!
//! Families ([`Family`]) remember the label sets they have seen so that a callback can read
//! every series; label values are bounded (no URLs, no call ids), so that list stays short.

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A label set as OpenTelemetry attributes: one string attribute per label, same name, same
/// value as on `/metrics`.
pub trait Attributes {
    fn attributes(&self) -> Vec<KeyValue>;
}

/// Defines a label set once, for both the registry ([`EncodeLabelSet`]) and OTLP
/// ([`Attributes`]): the field names are the label names.
macro_rules! label_set {
    ($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name {
            $(pub $field: $ty),+
        }

        impl Attributes for $name {
            fn attributes(&self) -> Vec<KeyValue> {
                vec![$(KeyValue::new(stringify!($field), self.$field.to_string())),+]
            }
        }
    };
}

label_set!(OutcomeLabel { outcome: &'static str });
label_set!(AttemptLabels { outcome: &'static str, class: &'static str });
label_set!(StatusLabel { status: &'static str });
label_set!(EventLabel { event_type: &'static str });
label_set!(PartitionLabels { topic: String, partition: i32 });
label_set!(CircuitLabel { state: &'static str });

/// A labelled family of counters or gauges: prometheus-client's family, plus the label sets
/// it has seen, by which an OTLP callback reads every series.
#[derive(Clone, Debug)]
pub struct Family<L, M> {
    inner: prometheus_client::metrics::family::Family<L, M>,
    labels: Arc<RwLock<Vec<L>>>,
}

impl<L: Clone + Hash + Eq, M: Clone + Default> Default for Family<L, M> {
    fn default() -> Self {
        Family { inner: Default::default(), labels: Default::default() }
    }
}

impl<L: Clone + Hash + Eq, M: Clone + Default> Family<L, M> {
    /// The series of `labels`, created (at zero) on first use.
    pub fn get_or_create(&self, labels: &L) -> M {
        if self.inner.get(labels).is_none() {
            let mut seen = self.labels.write();
            if !seen.contains(labels) {
                seen.push(labels.clone());
            }
        }
        self.inner.get_or_create_owned(labels)
    }

    /// Calls `f` with every series and its labels.
    fn each(&self, mut f: impl FnMut(&L, &M)) {
        for labels in self.labels.read().iter() {
            if let Some(metric) = self.inner.get(labels) {
                f(labels, &metric);
            }
        }
    }
}

/// A histogram with fixed bucket bounds; [`Histogram::observe`] records into the registry and
/// into the SDK histogram of every running OTLP export.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: prometheus_client::metrics::histogram::Histogram,
    bounds: Vec<f64>,
    /// One SDK histogram per [`Exported`] handle alive, keyed by the handle's id.
    sdk: Arc<RwLock<Vec<SdkHistogram>>>,
}

type SdkHistogram = (u64, opentelemetry::metrics::Histogram<f64>);

impl Histogram {
    fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        Histogram {
            inner: prometheus_client::metrics::histogram::Histogram::new(bounds.iter().copied()),
            bounds,
            sdk: Arc::default(),
        }
    }

    pub fn observe(&self, v: f64) {
        self.inner.observe(v);
        for (_, h) in self.sdk.read().iter() {
            h.record(v, &[]);
        }
    }
}

/// Reads the current value and attributes of every series of one metric.
type Read<N> = Arc<dyn Fn(&mut dyn FnMut(N, &[KeyValue])) + Send + Sync>;

/// How OTLP reads one registered metric.
enum Source {
    Counter(Read<u64>),
    Gauge(Read<i64>),
    Histogram(Histogram),
}

/// A metric the registry serves on `/metrics` and OTLP reads through a [`Source`].
trait Exportable {
    fn prometheus(&self) -> impl prometheus_client::registry::Metric;
    fn source(&self) -> Source;
}

impl Exportable for Counter {
    fn prometheus(&self) -> impl prometheus_client::registry::Metric {
        self.clone()
    }
    fn source(&self) -> Source {
        let c = self.clone();
        Source::Counter(Arc::new(move |f| f(c.get(), &[])))
    }
}

impl Exportable for Gauge {
    fn prometheus(&self) -> impl prometheus_client::registry::Metric {
        self.clone()
    }
    fn source(&self) -> Source {
        let g = self.clone();
        Source::Gauge(Arc::new(move |f| f(g.get(), &[])))
    }
}

impl<L> Exportable for Family<L, Counter>
where
    L: Attributes + EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    fn prometheus(&self) -> impl prometheus_client::registry::Metric {
        self.inner.clone()
    }
    fn source(&self) -> Source {
        let family = self.clone();
        Source::Counter(Arc::new(move |f| family.each(|labels, c| f(c.get(), &labels.attributes()))))
    }
}

impl<L> Exportable for Family<L, Gauge>
where
    L: Attributes + EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    fn prometheus(&self) -> impl prometheus_client::registry::Metric {
        self.inner.clone()
    }
    fn source(&self) -> Source {
        let family = self.clone();
        Source::Gauge(Arc::new(move |f| family.each(|labels, g| f(g.get(), &labels.attributes()))))
    }
}

impl Exportable for Histogram {
    fn prometheus(&self) -> impl prometheus_client::registry::Metric {
        self.inner.clone()
    }
    fn source(&self) -> Source {
        Source::Histogram(self.clone())
    }
}

/// One metric as OTLP sees it: full name (no `_total`), description, source.
struct Described {
    name: String,
    help: &'static str,
    source: Source,
}

/// Registers each metric in the registry and notes how OTLP reads it, in one call.
struct Registrar {
    prefix: &'static str,
    registry: Registry,
    described: Vec<Described>,
}

impl Registrar {
    fn new(prefix: &'static str) -> Self {
        Registrar { prefix, registry: Registry::with_prefix(prefix), described: Vec::new() }
    }

    fn add(&mut self, name: &str, help: &'static str, metric: &impl Exportable) {
        self.registry.register(name, help, metric.prometheus());
        self.described.push(Described { name: format!("{}_{name}", self.prefix), help, source: metric.source() });
    }
}

pub struct Metrics {
    registry: Registry,
    /// Every registered metric, as OTLP reads it.
    described: Vec<Described>,
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
    pub log_write_batches: Family<OutcomeLabel, Counter>,
    pub log_writes: Counter,
    pub log_statements: Counter,
    pub log_write_batch_time: Histogram,
}

fn buckets() -> impl Iterator<Item = f64> {
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter()
}

/// Keeps a meter fed with the registry's metrics; dropping it detaches the meter's histograms
/// (its observable instruments end with its provider).
pub struct Exported {
    id: u64,
    histograms: Vec<Histogram>,
}

impl Drop for Exported {
    fn drop(&mut self) {
        for h in &self.histograms {
            h.sdk.write().retain(|(id, _)| *id != self.id);
        }
    }
}

impl Metrics {
    fn new() -> Self {
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
            log_write_batches: Family::default(),
            log_writes: Counter::default(),
            log_statements: Counter::default(),
            log_write_batch_time: Histogram::new(buckets()),
            registry: Registry::default(),
            described: Vec::new(),
        };
        let mut r = Registrar::new("hookmesh");
        r.add("events_ingested", "Events received by ingest, by outcome", &m.events_ingested);
        r.add("jobs_routed", "Delivery jobs produced by the router", &m.jobs_routed);
        r.add("render_errors", "Jobs whose request could not be rendered", &m.render_errors);
        r.add("delivery_attempts", "HTTP attempts by outcome and status class", &m.attempts);
        r.add("deliveries_completed", "Deliveries that reached a final status", &m.deliveries_completed);
        r.add("retries_scheduled", "Retries put on the schedule", &m.retries_scheduled);
        r.add("delivery_latency_seconds", "First trigger to successful delivery", &m.delivery_latency);
        r.add("response_time_seconds", "Receiver response time per attempt", &m.response_time);
        r.add("requests_in_flight", "HTTP requests currently in flight", &m.in_flight);
        r.add(
            "deliveries_deferred",
            "Deliveries rescheduled without an attempt (circuit open, rate limit, endpoint busy)",
            &m.deferred,
        );
        r.add("operational_events", "Operational webhook.* events emitted", &m.operational_events);
        r.add("consumer_lag", "Records not yet handled by this process, per topic and partition", &m.consumer_lag);
        r.add("retry_backlog", "Retries scheduled (claimed or not)", &m.retry_backlog);
        r.add("circuits", "Endpoints whose circuit this dispatcher last saw open or half-open", &m.circuits);
        r.add(
            "log_write_batches",
            "Delivery-log write batches (one transaction each), by outcome",
            &m.log_write_batches,
        );
        r.add("log_writes", "Deliveries and attempts written to the delivery log in batches", &m.log_writes);
        r.add("log_statements", "SQL statements of the delivery-log write batches", &m.log_statements);
        r.add("log_write_batch_seconds", "Time of one delivery-log write batch", &m.log_write_batch_time);
        Metrics { registry: r.registry, described: r.described, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Creates an instrument on `meter` for every metric: observable counters and gauges that
    /// read the registry, and histograms that [`Histogram::observe`] records into for as long
    /// as the answer is kept.
    pub fn export_to(&self, meter: &Meter) -> Exported {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut histograms = Vec::new();
        for Described { name, help, source } in &self.described {
            match source {
                Source::Counter(read) => {
                    let read = read.clone();
                    meter
                        .u64_observable_counter(name.clone())
                        .with_description(*help)
                        .with_callback(move |o| read(&mut |v, attributes| o.observe(v, attributes)))
                        .build();
                }
                Source::Gauge(read) => {
                    let read = read.clone();
                    meter
                        .i64_observable_gauge(name.clone())
                        .with_description(*help)
                        .with_callback(move |o| read(&mut |v, attributes| o.observe(v, attributes)))
                        .build();
                }
                Source::Histogram(h) => {
                    let sdk = meter
                        .f64_histogram(name.clone())
                        .with_description(*help)
                        .with_boundaries(h.bounds.clone())
                        .build();
                    h.sdk.write().push((id, sdk));
                    histograms.push(h.clone());
                }
            }
        }
        Exported { id, histograms }
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
