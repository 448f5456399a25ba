//! The benchmark behind `hookmesh bench`: measured throughput, latency and cost of a scenario
//! end to end, side by side with the limit of the machine it ran on.
//!
//! # Layout
//! - `scenario.rs`: the scenarios and the runs (plans) each is made of.
//! - `cluster.rs`: the processes of a run (started by `hookmesh-testkit`).
//! - `receivers.rs`: the loopback receivers and what they record.
//! - `publish.rs`: creating the webhooks, the warm-up, publishing the events.
//! - `limit.rs`: the load generator that measures the limit.
//! - `stats.rs`: CPU, RSS, Redis command counts, PostgreSQL statistics, dispatcher counters.
//! - `report.rs`: the report of a run and of a scenario, and the table.
//! - `run.rs`: one run end to end, and the runs of a scenario.
//!
//! # What one run does
//! 1. Starts loopback HTTP receivers in this process (the test kit's receiver with a hook that
//!    records the arrival time and the event id from the body; they answer 200 at once, after
//!    2 s, or 500, by scenario).
//! 2. Starts hookmesh as separate OS processes from the executable it is given: `hookmesh
//!    standalone` (backend `memory`: `--ephemeral`; backend `embedded`: the durable default on
//!    a fresh data directory `<log dir>/<run>-data`, whose bytes on disk per delivery the
//!    report gives as `extra.disk_bytes_per_delivery`), or a `tansu` broker, a `redis-server`
//!    and the four roles (backend `kafka-redis`, router first), each on free loopback ports,
//!    and reads the `hookmesh <role> listening grpc=… admin=…` line each prints.
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

mod cluster;
mod limit;
mod publish;
mod receivers;
mod report;
mod run;
mod scenario;
mod stats;

pub use cluster::Backend;
pub use scenario::Scenario;

use anyhow::{bail, Context};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;

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
    /// Also run the scenario on this backend, alternately with `--backend` (this one first in
    /// each pair), and report `--backend`'s deliveries/s as a share of this one's, per pair
    /// and their median: e.g. `--backend embedded --against memory`. One scenario, not `all`.
    #[arg(long, value_enum)]
    pub against: Option<Backend>,
    /// Pairs of runs with `--against`.
    #[arg(long, default_value_t = 3, requires = "against")]
    pub pairs: usize,
}

/// Deliveries/s of `--backend` as a share of `--against`'s in each pair `(against, backend)`,
/// and the median of those shares (`None` without pairs).
pub(crate) fn shares(pairs: &[(f64, f64)]) -> (Vec<f64>, Option<f64>) {
    let shares: Vec<f64> =
        pairs.iter().map(|(against, backend)| if *against > 0.0 { backend / against } else { 0.0 }).collect();
    let mut sorted = shares.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    };
    (shares, median)
}

/// Writes the JSON report to `out`, creating its directory.
fn write_report(out: &std::path::Path, value: &Value) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {}", out.display());
    Ok(())
}

/// The bytes on disk per delivery of the runs that keep a data directory.
fn print_disk(rows: &[report::RunReport]) {
    for r in rows {
        if let Some(bytes) = r.extra.get("disk_bytes_per_delivery") {
            let variant = if r.variant.is_empty() { String::new() } else { format!(" {}", r.variant) };
            println!(
                "{}{variant} on {}: {bytes} bytes on disk per delivery ({} bytes in the data directory after the run)",
                r.scenario,
                r.backend,
                r.extra.get("disk_bytes").cloned().unwrap_or_default()
            );
        }
    }
}

fn per_s(report: &Value) -> f64 {
    report.get("deliveries_per_s").and_then(Value::as_f64).unwrap_or(0.0)
}

/// Runs the scenarios of `args` against the `hookmesh` executable at `hookmesh`, prints the
/// table and writes the report. Every process it started is stopped when `interrupted`
/// resolves (then it fails with "interrupted"), when a run fails, and when it returns.
pub async fn run(args: BenchArgs, hookmesh: PathBuf, interrupted: impl Future<Output = ()>) -> anyhow::Result<()> {
    // reqwest's rustls needs a process-wide crypto provider (the dispatcher installs the same).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scenarios: Vec<Scenario> =
        if args.scenario == Scenario::All { Scenario::EVERY.to_vec() } else { vec![args.scenario] };
    let (logdir, keep_logs) = match &args.logs {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("hookmesh-bench-{}", std::process::id())), false),
    };
    std::fs::create_dir_all(&logdir).with_context(|| format!("creating {}", logdir.display()))?;
    tokio::pin!(interrupted);
    if let Some(against) = args.against {
        if args.scenario == Scenario::All {
            bail!("--against compares one scenario: pick one with --scenario");
        }
        if args.pairs == 0 {
            bail!("--pairs: at least 1");
        }
        let mut rows = Vec::new();
        let mut pairs = Vec::new();
        for i in 1..=args.pairs {
            let mut pair = Vec::new();
            for backend in [against, args.backend] {
                let one = BenchArgs { backend, against: None, ..args.clone() };
                eprintln!("pair {i}/{}: {} on {}", args.pairs, args.scenario.name(), backend.name());
                let (report, runs) = tokio::select! {
                    r = run::run_scenario(&one, &hookmesh, args.scenario, &logdir) => r
                        .with_context(|| format!("pair {i}, backend {}; process logs are in {}", backend.name(), logdir.display()))?,
                    _ = &mut interrupted => {
                        eprintln!("interrupted: every process the bench started was stopped; logs in {}", logdir.display());
                        bail!("interrupted");
                    }
                };
                rows.extend(runs);
                pair.push(report);
            }
            pairs.push(pair);
        }
        let figures: Vec<(f64, f64)> = pairs.iter().map(|p| (per_s(&p[0]), per_s(&p[1]))).collect();
        let (each, median) = shares(&figures);
        println!();
        println!(
            "hookmesh bench, backend {} against {}, {} pairs, {} cores; cpu-s/1k = CPU seconds of the hookmesh processes per 1000 deliveries",
            args.backend.name(),
            against.name(),
            args.pairs,
            stats::machine()["cores"]
        );
        print!("{}", report::table(&rows));
        print_disk(&rows);
        let listed: Vec<String> = figures
            .iter()
            .zip(&each)
            .map(|((a, b), share)| format!("{b:.0}/{a:.0} = {:.0} %", share * 100.0))
            .collect();
        println!(
            "{} deliveries/s as a share of {}'s, per pair: {}; median {:.0} %",
            args.backend.name(),
            against.name(),
            listed.join(" · "),
            median.unwrap_or(0.0) * 100.0
        );
        if let Some(out) = &args.out {
            let value = serde_json::json!({
                "scenario": args.scenario.name(),
                "backend": args.backend.name(),
                "against": against.name(),
                "shares": each,
                "median_share": median,
                "pairs": pairs.into_iter().map(|p| serde_json::json!({"against": p[0], "backend": p[1]})).collect::<Vec<_>>(),
            });
            write_report(out, &value)?;
        }
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&logdir);
        }
        return Ok(());
    }
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scenario in scenarios {
        let result = tokio::select! {
            r = run::run_scenario(&args, &hookmesh, scenario, &logdir) => r,
            _ = &mut interrupted => {
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
        stats::machine()["cores"]
    );
    print!("{}", report::table(&rows));
    print_disk(&rows);
    if let Some(out) = &args.out {
        let value =
            if args.scenario == Scenario::All { Value::Array(reports) } else { reports.pop().unwrap_or(Value::Null) };
        write_report(out, &value)?;
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
    use super::shares;

    #[test]
    fn shares_are_per_pair_with_their_median() {
        let (each, median) = shares(&[(10_000.0, 6_000.0), (20_000.0, 15_000.0), (8_000.0, 4_000.0)]);
        assert_eq!(each, vec![0.6, 0.75, 0.5]);
        assert_eq!(median, Some(0.6));
        let (_, even) = shares(&[(100.0, 50.0), (100.0, 70.0)]);
        assert!((even.unwrap() - 0.6).abs() < 1e-9, "the mean of the middle two");
        assert_eq!(shares(&[]).1, None);
        assert_eq!(shares(&[(0.0, 5.0)]).0, vec![0.0], "no figure to compare against");
    }
}
