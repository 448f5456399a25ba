//! `hookmesh bench`: measured throughput, latency and cost of a scenario end to end, side by
//! side with the limit of the machine it ran on.
//!
//! # What one run does
//! 1. Starts loopback HTTP receivers in this process (axum; each records the arrival time and
//!    the event id from the body, answers 200 at once, after 2 s, or 500, by scenario).
//! 2. Starts hookmesh as separate OS processes from this executable: `hookmesh standalone`
//!    (backend `memory`: `--ephemeral`; backend `embedded`: the durable default on a fresh
//!    data directory `<log dir>/<run>-data`, whose bytes on disk per delivery the report
//!    gives as `extra.disk_bytes_per_delivery`), or a `tansu` broker, a `redis-server` and the four roles (backend
//!    `kafka-redis`, router first), each on free loopback ports, and reads the
//!    `hookmesh <role> listening grpc=… admin=…` line each prints.
//! 3. Creates the scenario's webhooks through `WebhookService` (32 at a time), plus one
//!    warm-up webhook of its own tenant; publishes 16 warm-up events and waits until all of
//!    them arrived, so consumer-group joins and config propagation are not measured.
//! 4. Publishes the events through `IngestService.Publish` in batches (`--batch`, several
//!    calls in flight, or paced at `--rate`), remembering when each event's Publish call was
//!    sent, and waits until every expected delivery arrived (or `--timeout` seconds after
//!    the last publish). A progress line goes to stderr every second.
//! 5. Reads CPU time (utime+stime of `/proc/<pid>/stat`) and peak RSS (`VmHWM` of
//!    `/proc/<pid>/status`) of every process, then kills them all (also on error, Ctrl-C or
//!    SIGTERM: the processes are owned by a guard that kills them when dropped).
//! 6. The limit: drives the same receivers directly with a reqwest load generator for the
//!    same number of requests, with the bodies and headers hookmesh sent (captured from its
//!    first delivery to each webhook), `--limit-concurrency` requests in flight. hookmesh's
//!    deliveries/s is reported as a ratio of that.
//!
//! # Measures
//! - latency: receiver arrival − the moment the event's Publish call was sent; first
//!   arrival of each (webhook, event) pair. Recorded in microseconds into an HDR histogram
//!   (3 significant digits), which gives the percentiles and the maximum.
//! - deliveries/s: unique deliveries ÷ (last unique arrival − first Publish sent).
//! - CPU seconds per 1000 deliveries: CPU the hookmesh processes used between the first
//!   Publish and the last expected delivery (so start-up and configuration are not counted),
//!   per 1000 unique deliveries. The broker's and Redis's share is in
//!   `extra.infra_cpu_seconds_per_1000_deliveries`, this process's (receivers and publisher,
//!   which share the same cores) in `extra.bench_cpu_seconds_per_1000_deliveries`.
//!
//! # Scenarios
//! See [`Scenario`]. Multi-run scenarios (fanout ×10/×100, slow-endpoint and
//! failing-endpoint without/with the bad endpoint) report their primary run at the top level
//! and every run under `extra.runs`.
//!
//! # Report
//! `--out` writes one JSON object per scenario (a JSON array of them for `--scenario all`):
//! `{scenario, backend, machine {cores}, events_published, publish_rate_per_s,
//! deliveries_expected, deliveries_unique, deliveries_lost, deliveries_duplicated,
//! deliveries_per_s, latency_ms {p50,p90,p99,max}, cpu_seconds_per_1000_deliveries,
//! processes [{name, cpu_seconds, peak_rss_mib}], limit {deliveries_per_s, ratio},
//! extra {…}}`.

use anyhow::{anyhow, bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use futures::StreamExt;
use hookmesh_proto::v1::{
    self, ingest_service_client::IngestServiceClient, publish_item::Payload, template_body::Kind,
    webhook_service_client::WebhookServiceClient,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `hookmesh standalone --ephemeral`: the in-memory bus and store.
    Memory,
    /// `hookmesh standalone` on its durable embedded bus and store (a fresh data directory).
    Embedded,
    /// tansu (Kafka protocol) + redis-server + the four roles as separate processes.
    KafkaRedis,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Embedded => "embedded",
            Backend::KafkaRedis => "kafka-redis",
        }
    }
}

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
    const EVERY: [Scenario; 6] = [
        Scenario::Baseline,
        Scenario::Fanout,
        Scenario::SlowEndpoint,
        Scenario::FailingEndpoint,
        Scenario::RateLimited,
        Scenario::ManyEndpoints,
    ];

    fn name(self) -> &'static str {
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

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::Baseline)]
    pub scenario: Scenario,
    /// Backends hookmesh runs on.
    #[arg(long, value_enum, default_value_t = Backend::Memory)]
    pub backend: Backend,
    /// Events to publish (default per scenario; fanout keeps deliveries constant: N events
    /// to 10 webhooks, N/10 to 100).
    #[arg(long)]
    pub events: Option<u64>,
    /// Events per second to publish (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Write the JSON report here (an array of reports for `--scenario all`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Events per Publish call (as fast as possible; paced runs send rate/50 per call).
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Publish calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Seconds to wait for the expected deliveries after the last Publish.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Requests in flight of the direct load generator that measures the limit.
    #[arg(long, default_value_t = 256)]
    pub limit_concurrency: usize,
    /// PostgreSQL server for the delivery log of backend kafka-redis (a role that may create
    /// databases): each run creates a fresh database there and drops it afterwards. `none`
    /// keeps the log in Redis.
    #[arg(long, env = "HOOKMESH_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// Keep the processes' logs in this directory (default: a temporary directory, removed
    /// unless a run fails).
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Plans: what one run configures and publishes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behavior {
    Fast,
    Slow(Duration),
    Fail(u16),
}

#[derive(Clone)]
struct Hook {
    tenant: u32,
    receiver: usize,
    /// Example document of the JSON fields template.
    example: String,
    policy: Option<v1::DeliveryPolicy>,
    /// Deliveries to it are expected and measured (not to slow or failing receivers).
    counted: bool,
}

struct Plan {
    scenario: Scenario,
    variant: String,
    receivers: Vec<Behavior>,
    tenants: u32,
    hooks: Vec<Hook>,
    events: u64,
    /// Keep hookmesh running this long after the last expected delivery (to see retries).
    settle: Duration,
}

impl Plan {
    fn tenant_name(t: u32) -> String {
        format!("bench-t{t}")
    }

    /// Counted webhooks of each tenant.
    fn counted_by_tenant(&self) -> Vec<Vec<u32>> {
        let mut by = vec![Vec::new(); self.tenants as usize];
        for (i, h) in self.hooks.iter().enumerate() {
            if h.counted {
                by[h.tenant as usize].push(i as u32);
            }
        }
        by
    }

    fn expected(&self) -> u64 {
        let by = self.counted_by_tenant();
        (0..self.events).map(|n| by[(n % u64::from(self.tenants)) as usize].len() as u64).sum()
    }
}

/// The JSON fields template of the baseline (and of the other single-template scenarios).
const BASE_TEMPLATE: &str = r#"{"id": "%event_id%", "type": "%event_type%", "call": "%callid%", "caller": "%ani%", "tracking": "%tracking%", "campaign": "%campaign_name%", "direction": "%direction%", "seconds": "%answered_time%", "status": "%dialstatus%", "ivr": "%ivr_label%"}"#;

/// Tokens the fanout templates pick from (all present in the published events).
const FANOUT_TOKENS: &[&str] = &[
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
fn fanout_template(k: usize) -> String {
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

fn hook(tenant: u32, receiver: usize, example: String) -> Hook {
    Hook { tenant, receiver, example, policy: None, counted: true }
}

/// The runs of a scenario.
fn plans(scenario: Scenario, events: Option<u64>) -> Vec<Plan> {
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

// ---------------------------------------------------------------------------------------------
// Receivers.

struct Sample {
    headers: Vec<(String, String)>,
    body: Bytes,
}

#[derive(Default)]
struct Inner {
    /// (webhook << 32 | event) → first arrival, ns since `Sink::base`.
    first: HashMap<u64, u64>,
    duplicates: u64,
    /// Arrivals of a counted webhook for an event of another tenant.
    unexpected: u64,
    /// Bodies without a readable event id.
    unreadable: u64,
    samples: HashMap<u32, Sample>,
    warm: HashSet<u32>,
}

struct Sink {
    base: Instant,
    counted: Vec<bool>,
    hook_tenant: Vec<u32>,
    tenants: u32,
    unique: AtomicU64,
    published: AtomicU64,
    limit_hits: AtomicU64,
    inner: Mutex<Inner>,
}

impl Sink {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

struct Receiver {
    sink: Arc<Sink>,
    behavior: Behavior,
    /// Every request this receiver got from hookmesh (attempts, retries included).
    hits: AtomicU64,
}

/// The event number of a body that carries `"id": "e<n>"` (or `"w<n>"` for warm-up events).
fn event_number(body: &[u8]) -> Option<(u8, u32)> {
    let key = b"\"id\"";
    let at = body.windows(key.len()).position(|w| w == key)?;
    let mut rest = &body[at + key.len()..];
    while let Some((&c, tail)) = rest.split_first() {
        if c == b' ' || c == b':' || c == b'\n' || c == b'\t' {
            rest = tail;
        } else {
            break;
        }
    }
    let rest = rest.strip_prefix(b"\"")?;
    let (&kind, digits) = rest.split_first()?;
    let end = digits.iter().position(|c| !c.is_ascii_digit())?;
    let n = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    Some((kind, n))
}

async fn receive(State(rx): State<Arc<Receiver>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sink = &rx.sink;
    let at = sink.now_ns();
    let path = uri.path();
    if path.starts_with("/l/") {
        sink.limit_hits.fetch_add(1, Ordering::Relaxed);
        return StatusCode::OK;
    }
    rx.hits.fetch_add(1, Ordering::Relaxed);
    if path.starts_with("/warm/") {
        if let Some((_, n)) = event_number(&body) {
            sink.inner.lock().unwrap().warm.insert(n);
        }
    } else if let Some(rest) = path.strip_prefix("/w/") {
        let hook: Option<u32> = rest.split('/').next().and_then(|s| s.parse().ok());
        let event = event_number(&body);
        let mut guard = sink.inner.lock().unwrap();
        let inner = &mut *guard;
        match (hook, event) {
            (Some(h), Some((b'e', n))) if (h as usize) < sink.counted.len() => {
                inner.samples.entry(h).or_insert_with(|| Sample {
                    headers: headers
                        .iter()
                        .filter(|(k, _)| *k != "host" && *k != "content-length")
                        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect(),
                    body: body.clone(),
                });
                if sink.counted[h as usize] {
                    if sink.hook_tenant[h as usize] != n % sink.tenants {
                        inner.unexpected += 1;
                    } else {
                        let key = (u64::from(h) << 32) | u64::from(n);
                        match inner.first.entry(key) {
                            std::collections::hash_map::Entry::Occupied(_) => inner.duplicates += 1,
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert(at);
                                sink.unique.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            _ => inner.unreadable += 1,
        }
    }
    match rx.behavior {
        Behavior::Fast => StatusCode::OK,
        Behavior::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        Behavior::Fail(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// Aborts a background task when dropped (also when a run fails half-way).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Receivers {
    addrs: Vec<SocketAddr>,
    receivers: Vec<Arc<Receiver>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start_receivers(sink: &Arc<Sink>, behaviors: &[Behavior]) -> anyhow::Result<Receivers> {
    let mut out = Receivers { addrs: Vec::new(), receivers: Vec::new(), tasks: Vec::new() };
    for &behavior in behaviors {
        let rx = Arc::new(Receiver { sink: sink.clone(), behavior, hits: AtomicU64::new(0) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a receiver")?;
        out.addrs.push(listener.local_addr()?);
        let app = axum::Router::new().fallback(receive).with_state(rx.clone());
        out.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        out.receivers.push(rx);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Processes.

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    hookmesh: bool,
}

/// Every process a run started; killed (SIGKILL) when dropped, newest first.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.0.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct ProcStat {
    name: String,
    /// CPU seconds over the process's life (read just before it was killed).
    cpu_seconds: f64,
    /// CPU seconds between the first Publish and the last expected delivery.
    cpu_seconds_run: f64,
    peak_rss_mib: f64,
    #[serde(skip)]
    hookmesh: bool,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (every thread), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.get(s.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (field 3) … utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Peak resident set size (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn self_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

impl Procs {
    fn cpu(&self) -> Vec<f64> {
        self.0.iter().map(|p| cpu_seconds(p.child.id()).unwrap_or(0.0)).collect()
    }

    fn stats(&self, before: &[f64], after: &[f64]) -> Vec<ProcStat> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, p)| ProcStat {
                name: p.name.clone(),
                cpu_seconds: round(cpu_seconds(p.child.id()).unwrap_or(0.0), 2),
                cpu_seconds_run: round(after.get(i).copied().unwrap_or(0.0) - before.get(i).copied().unwrap_or(0.0), 2),
                peak_rss_mib: round(peak_rss_mib(p.child.id()).unwrap_or(0.0), 1),
                hookmesh: p.hookmesh,
            })
            .collect()
    }

    /// Fails with the process's log tail when one of them has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.0 {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("{} exited ({status}); its log ends with:\n{}", p.name, log_tail(&p.log));
            }
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, mut cmd: Command, log: PathBuf, hookmesh: bool) -> anyhow::Result<usize> {
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stderr(file.try_clone()?);
        if hookmesh {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file);
        }
        cmd.stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str() {
                if k.starts_with("HOOKMESH_") && k != "HOOKMESH_LOG" {
                    cmd.env_remove(k);
                }
            }
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.0.push(Proc { name: name.to_string(), child, log, hookmesh });
        Ok(self.0.len() - 1)
    }
}

fn log_tail(path: &Path) -> String {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return String::from("(no log)"),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// Finds an executable on PATH or in `~/.cargo/bin` (as the test kit does).
fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The gRPC address a hookmesh process printed.
struct Listening {
    grpc: SocketAddr,
    admin: SocketAddr,
}

/// Starts `hookmesh <args…>` and returns a receiver of its `listening` line.
fn spawn_hookmesh(
    procs: &mut Procs,
    name: &str,
    args: &[String],
    logdir: &Path,
    tag: &str,
) -> anyhow::Result<(usize, std::sync::mpsc::Receiver<String>)> {
    let exe = std::env::current_exe().context("finding the hookmesh executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    let i = procs.spawn(name, cmd, logdir.join(format!("{tag}-{name}.log")), true)?;
    let stdout = procs.0[i].child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.starts_with("hookmesh ") && line.contains(" listening ") {
                let _ = tx.send(line);
                break;
            }
        }
        // Keep draining so the process never blocks on a full pipe.
        for _ in lines.map_while(Result::ok) {}
    });
    Ok((i, rx))
}

async fn wait_listening(
    procs: &mut Procs,
    i: usize,
    rx: std::sync::mpsc::Receiver<String>,
    timeout: Duration,
) -> anyhow::Result<Listening> {
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(timeout)).await?;
    let p = &procs.0[i];
    let line = line.map_err(|_| {
        anyhow!(
            "{} did not print its `listening` line within {timeout:?}; its log ends with:\n{}",
            p.name,
            log_tail(&p.log)
        )
    })?;
    let addr = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .ok_or_else(|| anyhow!("{}: unexpected line `{line}`", p.name))?
            .parse()
            .with_context(|| format!("{}: unexpected line `{line}`", p.name))
    };
    Ok(Listening { grpc: addr("grpc=")?, admin: addr("admin=")? })
}

struct Cluster {
    procs: Procs,
    /// WebhookService (standalone or router).
    management: SocketAddr,
    /// IngestService (standalone or ingest).
    ingest: SocketAddr,
    /// Admin port (/metrics) of the process that dispatches (standalone or dispatcher).
    dispatcher_admin: SocketAddr,
    /// The data directory of backend `embedded`.
    data_dir: Option<PathBuf>,
    /// The redis-server of backend kafka-redis.
    redis_port: Option<u16>,
    /// The delivery log's database of backend kafka-redis.
    postgres: Option<BenchDb>,
}

/// A database of its own for one run's delivery log.
struct BenchDb {
    /// The server's DSN (where the database is created and dropped).
    server: String,
    name: String,
    /// The database's DSN.
    dsn: String,
}

impl BenchDb {
    async fn create(server: &str, tag: &str) -> anyhow::Result<BenchDb> {
        let name =
            format!("hookmesh_bench_{}_{}", std::process::id(), tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        let client = pg_connect(server).await?;
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        let base = server.split('?').next().unwrap_or(server);
        let base = base.rsplit_once('/').filter(|(b, _)| b.contains("://") && b.len() > b.find("://").unwrap_or(0) + 3);
        let dsn = match base {
            Some((b, _)) => format!("{b}/{name}"),
            None => bail!("--postgres: `{server}` is not a postgres://user@host:port/db URL"),
        };
        Ok(BenchDb { server: server.to_string(), name, dsn })
    }

    /// Transactions, rows written and bytes of the database so far.
    async fn stats(&self) -> anyhow::Result<PgStats> {
        let client = pg_connect(&self.dsn).await?;
        let row = client
            .query_one(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted, pg_database_size(datname) \
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(PgStats { commits: row.get(0), rows: row.get(1), bytes: row.get(2) })
    }

    async fn drop_database(self) {
        if let Ok(client) = pg_connect(&self.server).await {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PgStats {
    commits: i64,
    rows: i64,
    bytes: i64,
}

async fn pg_connect(dsn: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("--postgres: cannot connect to `{dsn}` (`--postgres none` keeps the log in Redis)"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Calls per command of a redis-server so far (`INFO commandstats`), the INFO calls left out.
async fn redis_commands(port: u16) -> anyhow::Result<HashMap<String, u64>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let text: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|c| c.parse().ok());
        if let (Some(calls), false) = (calls, name == "info") {
            out.insert(name.to_ascii_uppercase(), calls);
        }
    }
    Ok(out)
}

const COMMON: &[&str] =
    &["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--allow-networks", "127.0.0.0/8"];

async fn start_cluster(backend: Backend, postgres: &str, logdir: &Path, tag: &str) -> anyhow::Result<Cluster> {
    let mut procs = Procs::default();
    let common: Vec<String> = COMMON.iter().map(|s| s.to_string()).collect();
    let wait = Duration::from_secs(60);
    match backend {
        Backend::Memory | Backend::Embedded => {
            let mut args = vec!["standalone".to_string()];
            args.extend(common);
            let data_dir = (backend == Backend::Embedded).then(|| logdir.join(format!("{tag}-data")));
            match &data_dir {
                Some(d) => {
                    if d.exists() {
                        std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
                    }
                    args.extend(["--data-dir".to_string(), d.display().to_string()]);
                }
                None => args.push("--ephemeral".to_string()),
            }
            let (i, rx) = spawn_hookmesh(&mut procs, "standalone", &args, logdir, tag)?;
            let l = wait_listening(&mut procs, i, rx, wait).await?;
            Ok(Cluster {
                procs,
                management: l.grpc,
                ingest: l.grpc,
                dispatcher_admin: l.admin,
                data_dir,
                redis_port: None,
                postgres: None,
            })
        }
        Backend::KafkaRedis => {
            let tansu = find_binary("tansu")
                .context("the `tansu` broker is not installed: cargo install tansu --locked --features dynostore")?;
            let redis = find_binary("redis-server")
                .context("redis-server is not installed (Debian: apt-get install redis-server)")?;
            let kport = free_port()?;
            let url = format!("tcp://127.0.0.1:{kport}");
            let mut cmd = Command::new(tansu);
            cmd.args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "warn");
            procs.spawn("tansu", cmd, logdir.join(format!("{tag}-tansu.log")), false)?;
            let rport = free_port()?;
            let mut cmd = Command::new(redis);
            cmd.args(["--port", &rport.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
            procs.spawn("redis-server", cmd, logdir.join(format!("{tag}-redis.log")), false)?;
            if !wait_for_port(kport, Duration::from_secs(20)).await {
                procs.check_alive()?;
                bail!("tansu did not listen on {kport}");
            }
            if !wait_for_port(rport, Duration::from_secs(10)).await {
                procs.check_alive()?;
                bail!("redis-server did not listen on {rport}");
            }
            let db = match postgres {
                "none" | "" => None,
                server => Some(BenchDb::create(server, tag).await?),
            };
            let role_args = |role: &str| {
                let mut a = vec![role.to_string()];
                if let Some(db) = &db {
                    a.extend(["--postgres".to_string(), db.dsn.clone()]);
                }
                a.extend(
                    [
                        "--kafka",
                        &format!("127.0.0.1:{kport}"),
                        "--redis",
                        &format!("redis://127.0.0.1:{rport}/"),
                        "--partitions",
                        "4",
                        "--kafka-session-timeout-ms",
                        "6000",
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                a.extend(common.iter().cloned());
                a
            };
            // The router creates the topics; the others find them.
            let (i, rx) = spawn_hookmesh(&mut procs, "router", &role_args("router"), logdir, tag)?;
            let router = wait_listening(&mut procs, i, rx, wait).await?;
            let mut started = Vec::new();
            for role in ["ingest", "renderer", "dispatcher"] {
                started.push(spawn_hookmesh(&mut procs, role, &role_args(role), logdir, tag)?);
            }
            let mut addrs = Vec::new();
            for (i, rx) in started {
                addrs.push(wait_listening(&mut procs, i, rx, wait).await?);
            }
            Ok(Cluster {
                procs,
                management: router.grpc,
                ingest: addrs[0].grpc,
                dispatcher_admin: addrs[2].admin,
                data_dir: None,
                redis_port: Some(rport),
                postgres: db,
            })
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach hookmesh at {addr}"))
}

// ---------------------------------------------------------------------------------------------
// Configuration, publishing, waiting.

fn webhook(
    tenant: String,
    name: String,
    url: String,
    example: Option<String>,
    policy: Option<v1::DeliveryPolicy>,
) -> v1::Webhook {
    v1::Webhook {
        tenant_id: tenant,
        name,
        trigger: Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() }),
        request: Some(v1::Request {
            url,
            body: example.map(|example| v1::TemplateBody {
                kind: Some(Kind::Fields(v1::FieldsBody { format: "json".into(), example, fields: vec![] })),
            }),
            ..Default::default()
        }),
        policy,
        ..Default::default()
    }
}

/// Creates every webhook, 32 at a time, with a progress line every second when there are many.
async fn create_webhooks(channel: Channel, hooks: Vec<v1::Webhook>) -> anyhow::Result<()> {
    let total = hooks.len();
    let client = WebhookServiceClient::new(channel);
    let started = Instant::now();
    let mut last = Instant::now();
    let mut done = 0usize;
    let mut results = futures::stream::iter(hooks.into_iter().map(|w| {
        let mut client = client.clone();
        async move {
            let name = w.name.clone();
            client
                .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
                .await
                .map_err(|s| anyhow!("creating webhook `{name}`: {}: {}", s.code().description(), s.message()))
        }
    }))
    .buffer_unordered(32);
    while let Some(r) = results.next().await {
        r?;
        done += 1;
        if total > 100 && (last.elapsed() >= Duration::from_secs(1) || done == total) {
            last = Instant::now();
            eprintln!(
                "  webhooks created {done}/{total} ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64().max(0.001)
            );
        }
    }
    Ok(())
}

fn event(id: String, tenant: String, n: u64, occurred_at: &str) -> v1::Event {
    let call_id = format!("c{n}");
    let data = json!({
        "ani": format!("777{:07}", n % 10_000_000), "tracking": "7774839229",
        "campaign_id": "cmp-sales", "campaign_name": "Sales Campaign",
        "direction": if n.is_multiple_of(2) { "inbound" } else { "outbound" },
        "ani_first_name": "Nancy", "ani_last_name": "Thompson", "ani_city": "Springwood", "ani_state": "Ohio",
        "call_start_time": occurred_at, "answered_time": 20 + n % 600, "dialed_time": 35 + n % 600,
        "dialstatus": "ANSWER", "ivr_option": "1", "ivr_label": "Sales",
        "rec_audiourl": format!("https://audio.example.com/{call_id}.mp3"),
    });
    v1::Event {
        id,
        r#type: "call.ended".into(),
        occurred_at: occurred_at.to_string(),
        tenant_id: tenant,
        call_id,
        data_json: data.to_string(),
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn publish_batch(client: &mut IngestServiceClient<Channel>, events: Vec<v1::Event>) -> anyhow::Result<u32> {
    let items = events.into_iter().map(|e| v1::PublishItem { payload: Some(Payload::Event(e)) }).collect();
    let resp = client
        .publish(v1::PublishRequest { events: items })
        .await
        .map_err(|s| anyhow!("publish failed: {}: {}", s.code().description(), s.message()))?
        .into_inner();
    if let Some(r) = resp.results.iter().find(|r| !r.accepted && !r.duplicate) {
        eprintln!("  rejected event #{}: {}: {}", r.index, r.field, r.reason);
    }
    Ok(resp.rejected)
}

struct Published {
    first_sent_ns: u64,
    last_done_ns: u64,
    rejected: u64,
}

/// Publishes events 0..plan.events, recording when each one's Publish call was sent.
async fn publish_all(
    channel: Channel,
    plan: &Plan,
    args: &BenchArgs,
    sink: Arc<Sink>,
    sent: Arc<Vec<AtomicU64>>,
) -> anyhow::Result<Published> {
    let client = IngestServiceClient::new(channel);
    let batch = if args.rate > 0.0 {
        ((args.rate / 50.0).ceil() as usize).clamp(1, args.batch.max(1))
    } else {
        args.batch.max(1)
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(args.publishers.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let first_sent_ns = sink.now_ns();
    let mut rejected = 0u64;
    let mut next = 0u64;
    while next < plan.events {
        if args.rate > 0.0 {
            tokio::time::sleep_until((started + Duration::from_secs_f64(next as f64 / args.rate)).into()).await;
        }
        let permit = permits.clone().acquire_owned().await?;
        while let Some(done) = tasks.try_join_next() {
            rejected += u64::from(done??);
        }
        let end = (next + batch as u64).min(plan.events);
        let at = now_rfc3339();
        let events: Vec<v1::Event> = (next..end)
            .map(|n| event(format!("e{n}"), Plan::tenant_name((n % u64::from(plan.tenants)) as u32), n, &at))
            .collect();
        let (mut client, sink, sent) = (client.clone(), sink.clone(), sent.clone());
        let range = next..end;
        tasks.spawn(async move {
            let t = sink.now_ns() + 1;
            for n in range.clone() {
                sent[n as usize].store(t, Ordering::Relaxed);
            }
            let r = publish_batch(&mut client, events).await;
            sink.published.fetch_add(range.end - range.start, Ordering::Relaxed);
            drop(permit);
            r
        });
        next = end;
    }
    while let Some(done) = tasks.join_next().await {
        rejected += u64::from(done??);
    }
    Ok(Published { first_sent_ns, last_done_ns: sink.now_ns(), rejected })
}

/// Warm-up: `count` events of the warm-up tenant, spread over call ids (so over partitions),
/// until all reached the warm-up webhook.
async fn warm_up(channel: Channel, sink: &Sink, procs: &mut Procs, count: u32) -> anyhow::Result<()> {
    let mut client = IngestServiceClient::new(channel);
    let at = now_rfc3339();
    let events = (0..count).map(|k| event(format!("w{k}"), "bench-warmup".into(), u64::from(k), &at)).collect();
    publish_batch(&mut client, events).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = sink.inner.lock().unwrap().warm.len();
        if got >= count as usize {
            return Ok(());
        }
        procs.check_alive()?;
        if Instant::now() > deadline {
            bail!("warm-up: only {got} of {count} warm-up deliveries arrived within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The limit.

#[derive(Debug, Clone, Serialize)]
struct Limit {
    deliveries_per_s: f64,
    ratio: f64,
    requests: u64,
    failed: u64,
    concurrency: usize,
    seconds: f64,
    /// CPU of this process (load generator and receivers) while driving it.
    bench_cpu_seconds: f64,
}

/// Sends `targets.len()` requests straight to the receivers, `concurrency` at a time, with the
/// headers and body hookmesh sent to each webhook.
async fn drive_limit(
    targets: Vec<(SocketAddr, u32)>,
    samples: &HashMap<u32, Sample>,
    concurrency: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the load generator's HTTP client")?;
    let fallback = samples.values().next().ok_or_else(|| anyhow!("no delivery arrived: nothing to replay"))?;
    let mut prepared: HashMap<u32, (reqwest::header::HeaderMap, Bytes)> = HashMap::new();
    for &(_, w) in &targets {
        if prepared.contains_key(&w) {
            continue;
        }
        let s = samples.get(&w).unwrap_or(fallback);
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in &s.headers {
            if let (Ok(k), Ok(v)) =
                (reqwest::header::HeaderName::from_bytes(k.as_bytes()), reqwest::header::HeaderValue::from_str(v))
            {
                h.append(k, v);
            }
        }
        prepared.insert(w, (h, s.body.clone()));
    }
    let prepared = Arc::new(prepared);
    // Open the connections first (one request each, not timed), as hookmesh's pool was warm.
    let mut warm = tokio::task::JoinSet::new();
    for &(addr, w) in targets.iter().take(concurrency) {
        let (client, prepared) = (client.clone(), prepared.clone());
        warm.spawn(async move {
            let (headers, body) = &prepared[&w];
            let _ =
                client.post(format!("http://{addr}/l/{w}")).headers(headers.clone()).body(body.clone()).send().await;
        });
    }
    while warm.join_next().await.is_some() {}
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, prepared, targets, next, failed) =
            (client.clone(), prepared.clone(), targets.clone(), next.clone(), failed.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(addr, w)) = targets.get(i) else { break };
                let (headers, body) = &prepared[&w];
                let ok = client
                    .post(format!("http://{addr}/l/{w}"))
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let total = targets.len() as u64;
    Ok((total, failed.load(Ordering::Relaxed), secs))
}

// ---------------------------------------------------------------------------------------------
// One run.

#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Clone, Serialize)]
struct RunReport {
    scenario: String,
    variant: String,
    backend: String,
    machine: Value,
    events_published: u64,
    publish_rate_per_s: f64,
    deliveries_expected: u64,
    deliveries_unique: u64,
    deliveries_lost: u64,
    deliveries_duplicated: u64,
    deliveries_per_s: f64,
    latency_ms: Latency,
    cpu_seconds_per_1000_deliveries: f64,
    processes: Vec<ProcStat>,
    limit: Limit,
    extra: serde_json::Map<String, Value>,
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map(|k| round(k / 1024.0 / 1024.0, 1));
    json!({"cores": cores, "cpu": model, "memory_gib": mem_gib})
}

/// The 1-minute load average of the machine.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Latencies in microseconds, 3 significant digits, up to an hour (a longer one counts as an
/// hour).
fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_max(3_600_000_000, 3).expect("bounds and precision are in range")
}

impl Latency {
    /// Percentiles of `micros` (see [`latency_histogram`]), in milliseconds; all 0 when
    /// nothing was recorded.
    fn of(micros: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |us: u64| round(us as f64 / 1e3, 1);
        Latency {
            p50: ms(micros.value_at_quantile(0.50)),
            p90: ms(micros.value_at_quantile(0.90)),
            p99: ms(micros.value_at_quantile(0.99)),
            max: ms(micros.max()),
        }
    }
}

async fn run_once(args: &BenchArgs, plan: &Plan, logdir: &Path) -> anyhow::Result<RunReport> {
    let label = if plan.variant.is_empty() {
        plan.scenario.name().to_string()
    } else {
        format!("{} {}", plan.scenario.name(), plan.variant)
    };
    let tag = label.replace(' ', "-").replace('/', "per");
    eprintln!("== {label} on {}: {} events, {} webhooks", args.backend.name(), plan.events, plan.hooks.len());
    let sink = Arc::new(Sink {
        base: Instant::now(),
        counted: plan.hooks.iter().map(|h| h.counted).collect(),
        hook_tenant: plan.hooks.iter().map(|h| h.tenant).collect(),
        tenants: plan.tenants,
        unique: AtomicU64::new(0),
        published: AtomicU64::new(0),
        limit_hits: AtomicU64::new(0),
        inner: Mutex::new(Inner::default()),
    });
    let receivers = start_receivers(&sink, &plan.receivers).await?;
    // Other work on the machine skews every number: keep its load beside them.
    let load_at_start = loadavg();
    let started = Instant::now();
    let mut cluster = start_cluster(args.backend, &args.postgres, logdir, &tag).await?;
    let startup_s = started.elapsed().as_secs_f64();
    let management = connect(cluster.management).await?;
    let ingest = connect(cluster.ingest).await?;

    // Configure.
    let t = Instant::now();
    let mut hooks: Vec<v1::Webhook> = plan
        .hooks
        .iter()
        .enumerate()
        .map(|(i, h)| {
            webhook(
                Plan::tenant_name(h.tenant),
                format!("bench-{i}"),
                format!("http://{}/w/{i}", receivers.addrs[h.receiver]),
                Some(h.example.clone()),
                h.policy.clone(),
            )
        })
        .collect();
    create_webhooks(management.clone(), std::mem::take(&mut hooks)).await?;
    let config_s = t.elapsed().as_secs_f64();
    // The warm-up webhook last: when it delivers, every stage has the whole configuration.
    create_webhooks(
        management.clone(),
        vec![webhook(
            "bench-warmup".into(),
            "warmup".into(),
            format!("http://{}/warm/", receivers.addrs[0]),
            None,
            None,
        )],
    )
    .await?;
    let t = Instant::now();
    warm_up(ingest.clone(), &sink, &mut cluster.procs, 16).await?;
    let warmup_s = t.elapsed().as_secs_f64();
    let warm_hits: u64 = receivers.receivers.iter().map(|r| r.hits.load(Ordering::Relaxed)).sum();

    // Measure.
    let expected = plan.expected();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..plan.events).map(|_| AtomicU64::new(0)).collect());
    let redis_before = match cluster.redis_port {
        Some(p) => Some(redis_commands(p).await?),
        None => None,
    };
    let pg_before = match &cluster.postgres {
        Some(db) => Some(db.stats().await?),
        None => None,
    };
    let cpu_before = cluster.procs.cpu();
    let self_before = self_cpu();
    let progress = AbortOnDrop({
        let sink = sink.clone();
        let events = plan.events;
        let label = label.clone();
        tokio::spawn(async move {
            let mut last = sink.unique.load(Ordering::Relaxed);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = sink.unique.load(Ordering::Relaxed);
                eprintln!(
                    "  [{label}] published {}/{events}, delivered {now}/{expected}, {} deliveries/s",
                    sink.published.load(Ordering::Relaxed),
                    now - last
                );
                last = now;
            }
        })
    });
    let published = publish_all(ingest.clone(), plan, args, sink.clone(), sent.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut polls = 0u64;
    while sink.unique.load(Ordering::Relaxed) < expected {
        if Instant::now() >= deadline {
            eprintln!(
                "  [{label}] timed out after {} s: {} of {expected} deliveries arrived",
                args.timeout,
                sink.unique.load(Ordering::Relaxed)
            );
            break;
        }
        polls += 1;
        if polls.is_multiple_of(100) {
            cluster.procs.check_alive()?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done_ns = sink.now_ns();
    let cpu_after = cluster.procs.cpu();
    let self_after = self_cpu();
    let redis_after = match cluster.redis_port {
        Some(p) => Some(redis_commands(p).await?),
        None => None,
    };
    let pg_after = match &cluster.postgres {
        Some(db) => Some(db.stats().await?),
        None => None,
    };
    if !plan.settle.is_zero() {
        tokio::time::sleep(plan.settle).await;
    }
    drop(progress);
    let metrics = dispatcher_metrics(cluster.dispatcher_admin).await;
    let processes = cluster.procs.stats(&cpu_before, &cpu_after);
    let hits_at_end: Vec<u64> = receivers.receivers.iter().map(|r| r.hits.load(Ordering::Relaxed)).collect();
    let data_dir = cluster.data_dir.clone();
    let bench_db = cluster.postgres.take();
    drop(cluster); // kills every process
    if let Some(db) = bench_db {
        db.drop_database().await;
    }

    // Analyse.
    let (latency, mut arrivals, duplicates, unexpected, unreadable) = {
        let inner = sink.inner.lock().unwrap();
        let mut lat = latency_histogram();
        let mut arr = Vec::with_capacity(inner.first.len());
        for (&key, &at) in &inner.first {
            let e = (key & 0xffff_ffff) as usize;
            arr.push(at);
            if let Some(s) = sent.get(e).map(|s| s.load(Ordering::Relaxed)).filter(|&s| s > 0) {
                lat.saturating_record(at.saturating_sub(s - 1) / 1_000);
            }
        }
        (lat, arr, inner.duplicates, inner.unexpected, inner.unreadable)
    };
    arrivals.sort_unstable();
    let unique = arrivals.len() as u64;
    let last_ns = arrivals.last().copied().unwrap_or(done_ns);
    let span_s = (last_ns.saturating_sub(published.first_sent_ns)) as f64 / 1e9;
    let deliveries_per_s = if span_s > 0.0 { unique as f64 / span_s } else { 0.0 };
    let publish_s = (published.last_done_ns - published.first_sent_ns) as f64 / 1e9;
    let run_cpu_hookmesh: f64 = processes.iter().filter(|p| p.hookmesh).map(|p| p.cpu_seconds_run).sum();
    let run_cpu_infra: f64 = processes.iter().filter(|p| !p.hookmesh).map(|p| p.cpu_seconds_run).sum::<f64>() + 0.0;
    let per_1000 = |cpu: f64| if unique > 0 { round(cpu / unique as f64 * 1000.0, 3) } else { 0.0 };

    // The limit: the same receivers, the same requests, straight from a load generator.
    let by_tenant = plan.counted_by_tenant();
    let mut targets = Vec::with_capacity(expected as usize);
    for n in 0..plan.events {
        for &w in &by_tenant[(n % u64::from(plan.tenants)) as usize] {
            targets.push((receivers.addrs[plan.hooks[w as usize].receiver], w));
        }
    }
    let limit_before = self_cpu();
    let (requests, failed, secs) = {
        let samples = std::mem::take(&mut sink.inner.lock().unwrap().samples);
        drive_limit(targets, &samples, args.limit_concurrency).await?
    };
    let limit_cpu = self_cpu() - limit_before;
    let limit_per_s = if secs > 0.0 { (requests - failed) as f64 / secs } else { 0.0 };
    drop(receivers);

    let mut extra = serde_json::Map::new();
    extra.insert("webhooks".into(), json!(plan.hooks.len()));
    extra.insert("loadavg_1m_at_start".into(), json!(load_at_start));
    extra.insert("loadavg_1m_at_end".into(), json!(loadavg()));
    extra.insert("tenants".into(), json!(plan.tenants));
    extra.insert("rate_requested_per_s".into(), json!(args.rate));
    extra.insert("events_rejected".into(), json!(published.rejected));
    extra.insert("deliveries_unexpected".into(), json!(unexpected));
    extra.insert("bodies_unreadable".into(), json!(unreadable));
    extra.insert("startup_seconds".into(), json!(round(startup_s, 2)));
    extra.insert("config_seconds".into(), json!(round(config_s, 2)));
    extra.insert("warmup_seconds".into(), json!(round(warmup_s, 2)));
    extra.insert("run_seconds".into(), json!(round(span_s, 2)));
    extra.insert("hookmesh_cpu_seconds".into(), json!(round(run_cpu_hookmesh, 2)));
    extra.insert("infra_cpu_seconds_per_1000_deliveries".into(), json!(per_1000(run_cpu_infra)));
    extra.insert("bench_cpu_seconds_per_1000_deliveries".into(), json!(per_1000(self_after - self_before)));
    let settle_cpu: f64 = processes.iter().filter(|p| p.hookmesh).map(|p| p.cpu_seconds).sum::<f64>()
        - cpu_after.iter().zip(&processes).filter(|(_, p)| p.hookmesh).map(|(c, _)| c).sum::<f64>();
    if !plan.settle.is_zero() {
        extra.insert("settle_seconds".into(), json!(plan.settle.as_secs_f64()));
        extra.insert("settle_hookmesh_cpu_seconds".into(), json!(round(settle_cpu.max(0.0), 2)));
    }
    if let Some(d) = &data_dir {
        let bytes = dir_bytes(d);
        extra.insert("disk_bytes".into(), json!(bytes));
        extra.insert("disk_bytes_per_delivery".into(), json!(round(bytes as f64 / (unique.max(1) as f64), 0)));
    }
    let per_delivery = |n: f64| round(n / unique.max(1) as f64, 2);
    if let (Some(before), Some(after)) = (&redis_before, &redis_after) {
        // What the run asked of Redis, per delivery, busiest command first.
        let mut by: Vec<(String, u64)> = after
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: u64 = by.iter().map(|(_, n)| n).sum();
        extra.insert("redis_commands_per_delivery".into(), json!(per_delivery(total as f64)));
        let by: serde_json::Map<String, Value> =
            by.into_iter().map(|(k, n)| (k, json!(per_delivery(n as f64)))).collect();
        extra.insert("redis_commands_per_delivery_by_command".into(), Value::Object(by));
    }
    if let (Some(before), Some(after)) = (pg_before, pg_after) {
        let statements = metric_value(&metrics, "hookmesh_log_statements_total");
        let writes = metric_value(&metrics, "hookmesh_log_writes_total");
        let batches = metric_value(&metrics, "hookmesh_log_write_batches_total{outcome=\"ok\"}");
        extra.insert(
            "postgres".into(),
            json!({
                "transactions_per_delivery": per_delivery((after.commits - before.commits) as f64),
                "rows_written_per_delivery": per_delivery((after.rows - before.rows) as f64),
                "bytes_per_delivery": round((after.bytes - before.bytes) as f64 / unique.max(1) as f64, 0),
                "write_statements_per_delivery_whole_process": per_delivery(statements),
                "writes_per_batch_whole_process": if batches > 0.0 { round(writes / batches, 1) } else { 0.0 },
            }),
        );
    }
    extra.insert("dispatcher_metrics".into(), metrics);
    extra.insert("receiver_hits".into(), json!(receivers_summary(&plan.receivers, &hits_at_end, warm_hits)));
    let report = RunReport {
        scenario: plan.scenario.name().into(),
        variant: plan.variant.clone(),
        backend: args.backend.name().into(),
        machine: machine(),
        events_published: plan.events,
        publish_rate_per_s: round(if publish_s > 0.0 { plan.events as f64 / publish_s } else { 0.0 }, 1),
        deliveries_expected: expected,
        deliveries_unique: unique,
        deliveries_lost: expected.saturating_sub(unique),
        deliveries_duplicated: duplicates,
        deliveries_per_s: round(deliveries_per_s, 1),
        latency_ms: Latency::of(&latency),
        cpu_seconds_per_1000_deliveries: per_1000(run_cpu_hookmesh),
        processes,
        limit: Limit {
            deliveries_per_s: round(limit_per_s, 1),
            ratio: if limit_per_s > 0.0 { round(deliveries_per_s / limit_per_s, 3) } else { 0.0 },
            requests,
            failed,
            concurrency: args.limit_concurrency,
            seconds: round(secs, 2),
            bench_cpu_seconds: round(limit_cpu, 2),
        },
        extra,
    };
    let mut report = report;
    scenario_extra(plan, &mut report, &arrivals, published.first_sent_ns);
    eprintln!(
        "  [{label}] {} of {} deliveries in {:.1} s: {:.0}/s (limit {:.0}/s), p50 {} ms, p99 {} ms",
        report.deliveries_unique,
        report.deliveries_expected,
        span_s,
        report.deliveries_per_s,
        report.limit.deliveries_per_s,
        report.latency_ms.p50,
        report.latency_ms.p99
    );
    Ok(report)
}

/// The dispatcher's delivery counters from its /metrics, read just before it is killed.
async fn dispatcher_metrics(admin: SocketAddr) -> Value {
    const KEEP: &[&str] = &[
        "hookmesh_delivery_attempts",
        "hookmesh_deliveries_completed",
        "hookmesh_retries_scheduled",
        "hookmesh_retry_backlog",
        "hookmesh_deliveries_deferred",
        "hookmesh_circuits",
        "hookmesh_log_",
    ];
    let text = match reqwest::Client::new()
        .get(format!("http://{admin}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return json!({"error": e.to_string()}),
    };
    let mut out = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if KEEP.iter().any(|k| line.starts_with(k)) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    out.insert(name.to_string(), json!(v));
                }
            }
        }
    }
    Value::Object(out)
}

/// A sample of [`dispatcher_metrics`] (0 when absent).
fn metric_value(metrics: &Value, name: &str) -> f64 {
    metrics.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn receivers_summary(behaviors: &[Behavior], hits: &[u64], warm: u64) -> Vec<Value> {
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
fn scenario_extra(plan: &Plan, report: &mut RunReport, arrivals: &[u64], first_sent_ns: u64) {
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

/// Runs every run of a scenario; the report is its primary run with every run in
/// `extra.runs` and the scenario's comparison.
async fn run_scenario(args: &BenchArgs, scenario: Scenario, logdir: &Path) -> anyhow::Result<(Value, Vec<RunReport>)> {
    let plans = plans(scenario, args.events);
    let mut runs = Vec::new();
    for plan in &plans {
        runs.push(run_once(args, plan, logdir).await?);
    }
    let primary = match scenario {
        Scenario::SlowEndpoint | Scenario::FailingEndpoint => runs.len() - 1,
        _ => 0,
    };
    let mut report = serde_json::to_value(&runs[primary])?;
    let obj = report.as_object_mut().expect("an object");
    obj.remove("variant");
    let extra = obj.get_mut("extra").and_then(Value::as_object_mut).expect("extra");
    extra.insert("variant".into(), json!(runs[primary].variant));
    if runs.len() > 1 {
        extra.insert("runs".into(), serde_json::to_value(&runs)?);
    }
    match scenario {
        Scenario::Fanout => {
            for r in &runs {
                extra.insert(format!("{}_deliveries_per_s", r.variant), json!(r.deliveries_per_s));
            }
        }
        Scenario::SlowEndpoint | Scenario::FailingEndpoint => {
            let (without, with) = (&runs[0], &runs[1]);
            extra.insert("fast_deliveries_per_s_without".into(), json!(without.deliveries_per_s));
            extra.insert("fast_deliveries_per_s_with".into(), json!(with.deliveries_per_s));
            extra.insert(
                "fast_throughput_ratio_with_vs_without".into(),
                json!(if without.deliveries_per_s > 0.0 {
                    round(with.deliveries_per_s / without.deliveries_per_s, 3)
                } else {
                    0.0
                }),
            );
            let bad = with
                .extra
                .get("receiver_hits")
                .and_then(Value::as_array)
                .and_then(|a| a.last())
                .and_then(|r| r.get("requests"))
                .cloned()
                .unwrap_or(Value::Null);
            if scenario == Scenario::SlowEndpoint {
                extra.insert("slow_endpoint_requests".into(), bad);
            } else {
                extra.insert("failing_endpoint_attempts".into(), bad);
                extra.insert(
                    "retry_path_cpu_seconds_per_1000_fast_deliveries".into(),
                    json!(round(with.cpu_seconds_per_1000_deliveries - without.cpu_seconds_per_1000_deliveries, 3)),
                );
                extra.insert("retry_settle_seconds".into(), json!(plans[1].settle.as_secs_f64()));
            }
        }
        _ => {}
    }
    Ok((report, runs))
}

// ---------------------------------------------------------------------------------------------
// Output.

fn table(rows: &[RunReport]) -> String {
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    // reqwest's rustls needs a process-wide crypto provider (the dispatcher installs the same).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scenarios: Vec<Scenario> =
        if args.scenario == Scenario::All { Scenario::EVERY.to_vec() } else { vec![args.scenario] };
    let (logdir, keep_logs) = match &args.logs {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("hookmesh-bench-{}", std::process::id())), false),
    };
    std::fs::create_dir_all(&logdir).with_context(|| format!("creating {}", logdir.display()))?;
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scenario in scenarios {
        let result = tokio::select! {
            r = run_scenario(&args, scenario, &logdir) => r,
            _ = crate::runtime::shutdown_signal() => {
                eprintln!("interrupted: every process the bench started was stopped; logs in {}", logdir.display());
                bail!("interrupted");
            }
        };
        match result {
            Ok((report, runs)) => {
                reports.push(report);
                rows.extend(runs);
            }
            Err(e) => {
                eprintln!("{} failed: {e:#}", scenario.name());
                failures.push(scenario.name());
            }
        }
    }
    println!();
    println!(
        "hookmesh bench, backend {}, {} cores; latency = receiver arrival − Publish sent; cpu-s/1k = CPU seconds of the hookmesh processes per 1000 deliveries",
        args.backend.name(),
        machine()["cores"]
    );
    print!("{}", table(&rows));
    for r in &rows {
        if let Some(bytes) = r.extra.get("disk_bytes_per_delivery") {
            let variant = if r.variant.is_empty() { String::new() } else { format!(" {}", r.variant) };
            println!(
                "{}{variant}: {bytes} bytes on disk per delivery ({} bytes in the data directory after the run)",
                r.scenario,
                r.extra.get("disk_bytes").cloned().unwrap_or_default()
            );
        }
    }
    if let Some(out) = &args.out {
        let value =
            if args.scenario == Scenario::All { Value::Array(reports) } else { reports.pop().unwrap_or(Value::Null) };
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    if !failures.is_empty() {
        bail!("{} failed; process logs are in {}", failures.join(", "), logdir.display());
    }
    if !keep_logs {
        let _ = std::fs::remove_dir_all(&logdir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_numbers_are_read_from_bodies() {
        assert_eq!(event_number(br#"{"id":"e42","type":"call.ended"}"#), Some((b'e', 42)));
        assert_eq!(event_number(br#"{"call":"c1", "id": "w7"}"#), Some((b'w', 7)));
        assert_eq!(event_number(br#"{"call_id":"c1"}"#), None);
    }

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

    #[test]
    fn expected_deliveries_follow_tenants() {
        let p = &plans(Scenario::ManyEndpoints, Some(2_000))[0];
        assert_eq!(p.hooks.len(), 10_000);
        assert_eq!(p.expected(), 20_000);
        let p = &plans(Scenario::SlowEndpoint, Some(100))[1];
        assert_eq!(p.expected(), 400, "the slow endpoint is not counted");
    }
}
