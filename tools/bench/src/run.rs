//! One run of a plan end to end (receivers, processes, configuration, warm-up, publishing,
//! waiting, the limit, the report), and the runs of one scenario.

use crate::cluster::{connect, start_cluster};
use crate::limit::{drive_limit, Limit};
use crate::publish::{create_webhooks, publish_all, warm_up, webhook};
use crate::receivers::{start_receivers, AbortOnDrop, Inner, Sink};
use crate::report::*;
use crate::scenario::{plans, Plan, Scenario};
use crate::stats::{dir_bytes, dispatcher_metrics, loadavg, machine, metric_value, redis_commands, round, self_cpu};
use crate::BenchArgs;
use hookmesh_proto::v1;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) async fn run_once(
    args: &BenchArgs,
    hookmesh: &Path,
    plan: &Plan,
    logdir: &Path,
) -> anyhow::Result<RunReport> {
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
    let mut cluster = start_cluster(hookmesh, args.backend, &args.postgres, logdir, &tag).await?;
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

/// Runs every run of a scenario; the report is its primary run with every run in
/// `extra.runs` and the scenario's comparison.
pub(crate) async fn run_scenario(
    args: &BenchArgs,
    hookmesh: &Path,
    scenario: Scenario,
    logdir: &Path,
) -> anyhow::Result<(Value, Vec<RunReport>)> {
    let plans = plans(scenario, args.events);
    let mut runs = Vec::new();
    for plan in &plans {
        runs.push(run_once(args, hookmesh, plan, logdir).await?);
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
