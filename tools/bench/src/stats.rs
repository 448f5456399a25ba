//! What a run reads off the machine and the servers: CPU time and peak RSS of processes,
//! Redis command counts, PostgreSQL statistics, the dispatcher's counters.

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A database of its own for one run's delivery log.
pub(crate) struct BenchDb {
    /// The server's DSN (where the database is created and dropped).
    pub(crate) server: String,
    pub(crate) name: String,
    /// The database's DSN.
    pub(crate) dsn: String,
}

impl BenchDb {
    pub(crate) async fn create(server: &str, tag: &str) -> anyhow::Result<BenchDb> {
        let name =
            format!("hookmesh_bench_{}_{}", std::process::id(), tag.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        let client = pg_connect(server).await?;
        // One statement per call: several in one simple query run as one transaction, which
        // neither may run in.
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
    pub(crate) async fn stats(&self) -> anyhow::Result<PgStats> {
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

    pub(crate) async fn drop_database(self) {
        if let Ok(client) = pg_connect(&self.server).await {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PgStats {
    pub(crate) commits: i64,
    pub(crate) rows: i64,
    pub(crate) bytes: i64,
}

pub(crate) async fn pg_connect(dsn: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("--postgres: cannot connect to `{dsn}` (`--postgres none` keeps the log in Redis)"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Calls per command of a redis-server so far (`INFO commandstats`), the INFO calls left out.
pub(crate) async fn redis_commands(port: u16) -> anyhow::Result<HashMap<String, u64>> {
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

/// The dispatcher's delivery counters from its /metrics, read just before it is killed.
pub(crate) async fn dispatcher_metrics(admin: SocketAddr) -> Value {
    pub(crate) const KEEP: &[&str] = &[
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
pub(crate) fn metric_value(metrics: &Value, name: &str) -> f64 {
    metrics.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProcStat {
    pub(crate) name: String,
    /// CPU seconds over the process's life (read just before it was killed).
    pub(crate) cpu_seconds: f64,
    /// CPU seconds between the first Publish and the last expected delivery.
    pub(crate) cpu_seconds_run: f64,
    pub(crate) peak_rss_mib: f64,
    #[serde(skip)]
    pub(crate) hookmesh: bool,
}

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (every thread), in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.get(s.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (field 3) … utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Peak resident set size (VmHWM), in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) fn self_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Bytes of the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
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

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub(crate) fn machine() -> Value {
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
pub(crate) fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
