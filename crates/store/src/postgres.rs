//! The delivery log in PostgreSQL: what a distributed deployment keeps for days and people
//! search, apart from the hot state in Redis.
//!
//! # Tables
//! `hm_deliveries` (one row per delivery: the columns the searches filter on, and the whole
//! delivery as JSON) and `hm_attempts` (one row per attempt), both partitioned by range of the
//! delivery's `created_at`, one partition per UTC day (`hm_deliveries_p20261204`). The schema
//! is in `migrations/`, compiled into the binary, versioned in `hm_schema_migrations` and
//! applied at start under an advisory lock, so replicas starting together apply it once.
//!
//! # Writes
//! Callers' writes go to one writer task per process, which takes whatever has queued while
//! its previous batch ran (up to [`MAX_BATCH`]) and writes it in one transaction of five
//! pipelined statements: advisory locks on the batch's delivery ids (two dispatchers replaying
//! one delivery never insert it twice), one multi-row upsert of the deliveries (`unnest` of
//! column arrays), one multi-row insert of the attempts, the per-webhook counts, and the trim
//! of webhooks over their cap. A caller's write returns once its batch has committed, so an
//! OK is durable; under load a batch carries many deliveries and the cost per delivery falls
//! far below one round-trip.
//!
//! # Retention
//! Rows older than the max age are not read (every query bounds `created_at`); whole
//! partitions past it are dropped by [`PostgresLog::maintain`], which also creates the
//! partitions of the coming days. Per webhook at most `per_webhook` deliveries are kept: each
//! batch counts what it added per webhook in `hm_webhook_counts` and deletes the oldest beyond
//! the cap through the webhook index.
//!
//! # Queries and their plans
//! Every search walks one index newest first and stops at the page's limit: by webhook
//! `hm_deliveries_webhook`, by tenant `hm_deliveries_tenant`, by call `hm_deliveries_call`,
//! otherwise `hm_deliveries_time`; the other filters (status, event type, campaign, direction,
//! tracking number) are checked on the rows the index yields. With 3 daily partitions, a
//! tenant's page is (`EXPLAIN` on PostgreSQL 15):
//! ```text
//! Limit
//!   -> Merge Append  Sort Key: hm_deliveries.created_at DESC, hm_deliveries.id DESC
//!     -> Index Scan using hm_deliveries_p20261204_tenant_id_created_at_id_idx on hm_deliveries_p20261204
//!          Index Cond: ((tenant_id = $1) AND (created_at >= $2))
//!     -> Index Scan using hm_deliveries_p20261203_tenant_id_created_at_id_idx on hm_deliveries_p20261203
//!     ...
//! ```
//! A delivery by id (`get_delivery`) is one primary-key probe per live partition.

use crate::{DeliveryLog, DeliveryQuery, Result, Retention, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Duration as TimeDelta, NaiveDate, SecondsFormat, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hookmesh_core::delivery::{Attempt, Delivery};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Most writes one batch carries.
pub const MAX_BATCH: usize = 512;

/// The migrations, in order; each runs once, in its own transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "delivery log", include_str!("../migrations/0001_delivery_log.sql"))];

/// Serialises migrations across processes (any constant unique to hookmesh).
const MIGRATION_LOCK: i64 = 0x686f6f6b6d657368;

/// One write batch, as [`BatchObserver`]s see it.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// Deliveries and attempts it carried.
    pub writes: usize,
    /// Statements it took (`BEGIN` and `COMMIT` included).
    pub statements: u64,
    pub took: Duration,
    pub committed: bool,
}

/// Told of every write batch (for metrics).
pub type BatchObserver = Arc<dyn Fn(&Batch) + Send + Sync>;

enum Op {
    Put(Box<Delivery>),
    /// Put unless the log has the id; the answer carries the one it has.
    Create(Box<Delivery>),
    Attempt(String, Box<Attempt>),
    /// A put and an attempt of that delivery, in one transaction (the put goes first, so a
    /// delivery the log did not hold gets its attempt too).
    PutWithAttempt(Box<Delivery>, Box<Attempt>),
}

struct Job {
    op: Op,
    done: oneshot::Sender<Result<Option<Delivery>>>,
}

pub struct PostgresLog {
    pool: Pool,
    writes: mpsc::Sender<Job>,
    retention: Retention,
    partitions: Arc<Mutex<HashSet<NaiveDate>>>,
    observer: Arc<Mutex<Option<BatchObserver>>>,
}

impl std::fmt::Debug for PostgresLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLog").field("retention", &self.retention).finish_non_exhaustive()
    }
}

fn backend(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        // The server's own message (with its detail) says more than the client's summary.
        let msg = match e.as_db_error() {
            Some(db) => format!("{what}: {} ({})", db.message(), db.code().code()),
            None => format!("{what}: {e}"),
        };
        StoreError::Backend(msg)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Backend(format!("postgres connection: {e}"))
}

impl PostgresLog {
    /// Connects to `dsn` (a `postgres://` URL or `key=value` string), applies the migrations
    /// this build has and the database lacks, creates the partitions of the coming days and
    /// starts the batch writer.
    pub async fn connect(dsn: &str, retention: Retention) -> Result<PostgresLog> {
        let config = tokio_postgres::Config::from_str(dsn)
            .map_err(|e| StoreError::Backend(format!("postgres DSN `{}`: {e}", redact(dsn))))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        migrate(&pool).await?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let log = PostgresLog {
            pool: pool.clone(),
            writes: tx,
            retention,
            partitions: Arc::default(),
            observer: Arc::default(),
        };
        log.maintain().await?;
        let shared = Shared { partitions: log.partitions.clone(), observer: log.observer.clone() };
        tokio::spawn(writer(pool, rx, retention, shared));
        Ok(log)
    }

    /// Calls `observer` after every write batch (for metrics).
    pub fn observe_batches(&self, observer: BatchObserver) {
        *self.observer.lock() = Some(observer);
    }

    /// Creates the partitions of yesterday, today and the next two days, and drops those
    /// wholly past the max age (then recounts what each webhook keeps). Run at start and
    /// hourly by [`PostgresLog::spawn_maintenance`].
    pub async fn maintain(&self) -> Result<()> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let today = Utc::now().date_naive();
        for d in -1..=2 {
            ensure_partition(&client, &self.partitions, today + TimeDelta::days(d)).await?;
        }
        let rows = client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('hm_deliveries', 'hm_attempts')",
                &[],
            )
            .await
            .map_err(backend("listing partitions"))?;
        let cutoff = cutoff(self.retention);
        let mut dropped = 0;
        for row in rows {
            let name: String = row.get(0);
            let Some(day) = name.rsplit("_p").next().and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok()) else {
                continue;
            };
            // The partition holds [day, day + 1): gone once its end is older than the cutoff.
            let end = (day + TimeDelta::days(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            if end <= cutoff {
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await
                    .map_err(backend("dropping a partition"))?;
                self.partitions.lock().remove(&day);
                dropped += 1;
            }
        }
        if dropped > 0 {
            client
                .batch_execute(
                    "UPDATE hm_webhook_counts c SET kept = (SELECT count(*) FROM hm_deliveries d WHERE d.webhook_id = c.webhook_id); \
                     DELETE FROM hm_webhook_counts WHERE kept = 0",
                )
                .await
                .map_err(backend("recounting deliveries per webhook"))?;
            tracing::info!(dropped, "delivery log: dropped partitions past the max age");
        }
        Ok(())
    }

    /// Runs [`PostgresLog::maintain`] every hour until `cancel`.
    pub fn spawn_maintenance(self: &Arc<Self>, cancel: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
                if let Err(e) = me.maintain().await {
                    tracing::warn!(error = %e, "delivery log maintenance failed; trying again in an hour");
                }
            }
        });
    }

    async fn submit(&self, op: Op) -> Result<Option<Delivery>> {
        let (done, answer) = oneshot::channel();
        self.writes.send(Job { op, done }).await.map_err(|_| StoreError::Backend("postgres writer stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("postgres writer stopped".into()))?
    }
}

/// The DSN without its password, for error messages.
fn redact(dsn: &str) -> String {
    match (dsn.find("://"), dsn.find('@')) {
        (Some(s), Some(at)) if at > s => match dsn[s + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &dsn[..s + 3 + colon], &dsn[at..]),
            None => dsn.to_string(),
        },
        _ => dsn
            .split_whitespace()
            .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn cutoff(retention: Retention) -> DateTime<Utc> {
    Utc::now() - TimeDelta::from_std(retention.max_age).unwrap_or(TimeDelta::MAX)
}

async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(backend("migrations"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(backend("migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hm_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(backend("hm_schema_migrations"))?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM hm_schema_migrations", &[])
        .await
        .map_err(backend("hm_schema_migrations"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newest) = applied.iter().max() {
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if *newest > known {
            return Err(StoreError::Backend(format!(
                "the delivery log's schema is version {newest}, newer than this build knows ({known}): upgrade hookmesh"
            )));
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| backend("migration")(e).in_migration(*version, name))?;
        tx.execute("INSERT INTO hm_schema_migrations (version, name) VALUES ($1, $2)", &[version, name])
            .await
            .map_err(backend("hm_schema_migrations"))?;
        tracing::info!(version, name, "delivery log: applied migration");
    }
    tx.commit().await.map_err(backend("migrations"))
}

impl StoreError {
    fn in_migration(self, version: i32, name: &str) -> StoreError {
        match self {
            StoreError::Backend(m) => StoreError::Backend(format!("migration {version} ({name}): {m}")),
            other => other,
        }
    }
}

fn partition_names(day: NaiveDate) -> [String; 2] {
    let suffix = day.format("%Y%m%d");
    [format!("hm_deliveries_p{suffix}"), format!("hm_attempts_p{suffix}")]
}

/// Creates the day's partitions of both tables unless this process already knows them.
async fn ensure_partition(
    client: &tokio_postgres::Client,
    known: &Mutex<HashSet<NaiveDate>>,
    day: NaiveDate,
) -> Result<()> {
    if known.lock().contains(&day) {
        return Ok(());
    }
    let (from, to) = (day, day + TimeDelta::days(1));
    for (name, parent) in partition_names(day).iter().zip(["hm_deliveries", "hm_attempts"]) {
        let sql =
            format!("CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} FOR VALUES FROM ('{from}') TO ('{to}')");
        if let Err(e) = client.batch_execute(&sql).await {
            // Two processes creating the same partition at once: one wins, the other sees it.
            let raced = e.as_db_error().is_some_and(|db| {
                matches!(db.code().code(), "42P07" | "23505") // duplicate table / unique violation in the catalog
            });
            if !raced {
                return Err(backend("creating a partition")(e));
            }
        }
    }
    known.lock().insert(day);
    Ok(())
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn encode<T: serde::Serialize>(v: &T, what: &str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// What the writer task shares with the handle.
struct Shared {
    partitions: Arc<Mutex<HashSet<NaiveDate>>>,
    observer: Arc<Mutex<Option<BatchObserver>>>,
}

async fn writer(pool: Pool, mut rx: mpsc::Receiver<Job>, retention: Retention, shared: Shared) {
    let Shared { partitions, observer } = shared;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut found: HashMap<String, Delivery> = HashMap::new();
        let result = write_batch(&pool, &batch, retention, &partitions, &mut found).await;
        let observe = observer.lock().clone();
        if let Some(observe) = observe {
            observe(&Batch {
                writes: batch.len(),
                statements: *result.as_ref().unwrap_or(&0),
                took: started.elapsed(),
                committed: result.is_ok(),
            });
        }
        if let Err(e) = &result {
            tracing::warn!(error = %e, writes = batch.len(), "delivery log: a write batch failed");
        }
        for job in batch.drain(..) {
            let answer = match (&result, &job.op) {
                (Ok(_), Op::Create(d)) => Ok(found.get(&d.id).cloned()),
                (Ok(_), _) => Ok(None),
                (Err(e), _) => Err(e.clone()),
            };
            let _ = job.done.send(answer);
        }
    }
}

/// Existing deliveries (found in any partition) take the new status and document but keep
/// their row, and so their `created_at`; the others are inserted. Answers the webhooks that
/// gained deliveries, for the per-webhook cap.
const UPSERT_SQL: &str = "WITH input AS (
                     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
                                          $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                                          $13::text[])
                     AS i(id, created_at, tenant_id, webhook_id, status, event_type, call_id, campaign_id,
                          campaign_name, direction, tracking, created_exact, doc)),
                 updated AS (
                     UPDATE hm_deliveries d SET status = i.status, doc = i.doc
                     FROM input i WHERE d.id = i.id AND d.created_at >= $14
                     RETURNING d.id)
                 INSERT INTO hm_deliveries (id, created_at, tenant_id, webhook_id, status, event_type, call_id,
                                            campaign_id, campaign_name, direction, tracking, created_exact, doc)
                 SELECT i.id, i.created_at, i.tenant_id, i.webhook_id, i.status, i.event_type, i.call_id,
                        i.campaign_id, i.campaign_name, i.direction, i.tracking, i.created_exact, i.doc
                 FROM input i WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.id = i.id)
                 RETURNING webhook_id";

/// Attempts of a delivery that is not (or no longer) in the log are not kept. Each takes the
/// next number of its delivery, in the order they came.
const APPEND_SQL: &str = "INSERT INTO hm_attempts (delivery_id, created_at, seq, doc)
             SELECT d.id, d.created_at,
                    COALESCE((SELECT max(a.seq) FROM hm_attempts a WHERE a.delivery_id = d.id AND a.created_at = d.created_at), -1)
                      + row_number() OVER (PARTITION BY i.id ORDER BY i.ord),
                    i.doc
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS i(id, doc, ord)
             JOIN hm_deliveries d ON d.id = i.id AND d.created_at >= $3";

/// Counts what each webhook gained; answers the new counts.
const COUNT_SQL: &str = "INSERT INTO hm_webhook_counts AS c (webhook_id, kept)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (webhook_id) DO UPDATE SET kept = c.kept + excluded.kept
                 RETURNING webhook_id, kept";

/// For the webhooks over the cap, deletes the oldest beyond it (walking the webhook index from
/// the old end) with their attempts, and counts those out.
const CAP_SQL: &str = "WITH doomed AS (
                     SELECT x.id, x.created_at, x.webhook_id
                     FROM unnest($1::text[], $2::bigint[]) AS o(webhook_id, excess)
                     CROSS JOIN LATERAL (
                         SELECT d.id, d.created_at, d.webhook_id FROM hm_deliveries d
                         WHERE d.webhook_id = o.webhook_id
                         ORDER BY d.created_at, d.id LIMIT o.excess) x),
                 gone_attempts AS (
                     DELETE FROM hm_attempts a USING doomed x WHERE a.delivery_id = x.id AND a.created_at = x.created_at),
                 gone AS (
                     DELETE FROM hm_deliveries d USING doomed x WHERE d.id = x.id AND d.created_at = x.created_at
                     RETURNING d.webhook_id)
                 UPDATE hm_webhook_counts c SET kept = c.kept - g.n
                 FROM (SELECT webhook_id, count(*) n FROM gone GROUP BY webhook_id) g WHERE c.webhook_id = g.webhook_id";

/// A webhook's own retention: deletes its oldest deliveries first triggered before `$2` (at most
/// `$3`) with their attempts, counts them out, and answers how many went.
const EXPIRE_SQL: &str = "WITH doomed AS (
                     SELECT d.id, d.created_at FROM hm_deliveries d
                     WHERE d.webhook_id = $1 AND d.created_at < $2
                     ORDER BY d.created_at, d.id LIMIT $3),
                 gone_attempts AS (
                     DELETE FROM hm_attempts a USING doomed x WHERE a.delivery_id = x.id AND a.created_at = x.created_at),
                 gone AS (
                     DELETE FROM hm_deliveries d USING doomed x WHERE d.id = x.id AND d.created_at = x.created_at
                     RETURNING d.id),
                 counted AS (
                     UPDATE hm_webhook_counts c SET kept = greatest(c.kept - (SELECT count(*) FROM gone), 0)
                     WHERE c.webhook_id = $1)
                 SELECT count(*) FROM gone";

/// The deliveries of a batch as column arrays, for one `unnest` upsert.
#[derive(Default)]
struct DeliveryColumns {
    id: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
    tenant_id: Vec<String>,
    webhook_id: Vec<String>,
    status: Vec<String>,
    event_type: Vec<String>,
    call_id: Vec<Option<String>>,
    campaign_id: Vec<Option<String>>,
    campaign_name: Vec<Option<String>>,
    direction: Vec<Option<String>>,
    tracking: Vec<Option<String>>,
    created_exact: Vec<String>,
    doc: Vec<String>,
}

/// Writes one batch in one transaction; answers the number of statements it took. The
/// deliveries that `Create` jobs found already in the log go to `found`.
async fn write_batch(
    pool: &Pool,
    batch: &[Job],
    retention: Retention,
    partitions: &Mutex<HashSet<NaiveDate>>,
    found: &mut HashMap<String, Delivery>,
) -> Result<u64> {
    let cutoff = cutoff(retention);
    let mut client = pool.get().await.map_err(pool_error)?;
    // Partitions first, outside the transaction (creating one locks the parent table).
    let days: HashSet<NaiveDate> = batch
        .iter()
        .filter_map(|job| match &job.op {
            Op::Put(d) | Op::Create(d) | Op::PutWithAttempt(d, _) if d.created_at >= cutoff => {
                Some(d.created_at.date_naive())
            }
            _ => None,
        })
        .collect();
    for day in days {
        ensure_partition(&client, partitions, day).await?;
    }
    let tx = client.transaction().await.map_err(backend("delivery log write"))?;
    let mut statements = 2; // BEGIN, COMMIT
    let ids: HashSet<&str> = batch
        .iter()
        .map(|job| match &job.op {
            Op::Put(d) | Op::Create(d) | Op::PutWithAttempt(d, _) => d.id.as_str(),
            Op::Attempt(id, _) => id.as_str(),
        })
        .collect();
    let creates: Vec<&str> = batch
        .iter()
        .filter_map(|job| match &job.op {
            Op::Create(d) => Some(d.id.as_str()),
            _ => None,
        })
        .collect();
    // Every delivery of the batch locked (in one order everywhere, so two writers never
    // deadlock), then the ones to create looked up: both in one round trip.
    let lock_ids: Vec<&str> = ids.into_iter().collect();
    let lock_sql = tx
        .prepare_cached(
            "SELECT count(pg_advisory_xact_lock(h)) FROM \
             (SELECT DISTINCT hashtextextended(i, 0) h FROM unnest($1::text[]) i ORDER BY h) s",
        )
        .await
        .map_err(backend("locking deliveries"))?;
    let find_sql = tx
        .prepare_cached(
            "SELECT id, created_exact, doc FROM hm_deliveries WHERE id = ANY($1::text[]) AND created_at >= $2",
        )
        .await
        .map_err(backend("finding deliveries"))?;
    let lock_params: [&(dyn ToSql + Sync); 1] = [&lock_ids];
    let lock = tx.execute(&lock_sql, &lock_params);
    let find = async {
        if creates.is_empty() {
            return Ok(Vec::new());
        }
        tx.query(&find_sql, &[&creates, &cutoff]).await
    };
    let (locked, existing) = tokio::join!(lock, find);
    locked.map_err(backend("locking deliveries"))?;
    statements += 1 + u64::from(!creates.is_empty());
    for row in existing.map_err(backend("finding deliveries"))? {
        let d = decode_delivery(&row)?;
        found.insert(d.id.clone(), d);
    }
    // The last put of each id wins (they arrive in order); the earliest `created_at` of a new
    // delivery is kept, as the store keeps the first one.
    let mut puts: BTreeMap<&str, (&Delivery, DateTime<Utc>)> = BTreeMap::new();
    let mut attempts: Vec<(&str, String)> = Vec::new();
    for job in batch {
        match &job.op {
            // A delivery the log has is not created again; one created earlier in this batch
            // is (the first create wins, as the log keeps the first).
            Op::Create(d) if found.contains_key(&d.id) || puts.contains_key(d.id.as_str()) => {}
            Op::Put(d) | Op::Create(d) => {
                puts.entry(&d.id).and_modify(|e| e.0 = d).or_insert((d, d.created_at));
            }
            Op::Attempt(id, a) => {
                attempts.push((id, encode(a, "attempt")?));
            }
            Op::PutWithAttempt(d, a) => {
                puts.entry(&d.id).and_modify(|e| e.0 = d).or_insert((d, d.created_at));
                attempts.push((d.id.as_str(), encode(a, "attempt")?));
            }
        }
    }
    let mut cols = DeliveryColumns::default();
    for (id, (d, created_at)) in &puts {
        if *created_at < cutoff {
            continue; // already past the max age: not kept at all
        }
        cols.id.push(id.to_string());
        cols.created_at.push(*created_at);
        cols.tenant_id.push(d.tenant_id.clone());
        cols.webhook_id.push(d.webhook_id.clone());
        cols.status.push(d.status.as_str().to_string());
        cols.event_type.push(d.event_type.as_str().to_string());
        cols.call_id.push(d.call_id.clone());
        let call = &d.request.call;
        cols.campaign_id.push(call.campaign_id.clone());
        cols.campaign_name.push(call.campaign_name.clone());
        cols.direction.push(call.direction.clone());
        cols.tracking.push(call.tracking.as_deref().map(digits));
        cols.created_exact.push(created_at.to_rfc3339_opts(SecondsFormat::Nanos, true));
        cols.doc.push(encode(d, "delivery")?);
    }

    let upsert_sql = tx.prepare_cached(UPSERT_SQL).await.map_err(backend("writing deliveries"))?;
    let append_sql = tx.prepare_cached(APPEND_SQL).await.map_err(backend("writing attempts"))?;
    let upsert = async {
        if cols.id.is_empty() {
            return Ok::<_, StoreError>(Vec::new());
        }
        let params: [&(dyn ToSql + Sync); 14] = [
            &cols.id,
            &cols.created_at,
            &cols.tenant_id,
            &cols.webhook_id,
            &cols.status,
            &cols.event_type,
            &cols.call_id,
            &cols.campaign_id,
            &cols.campaign_name,
            &cols.direction,
            &cols.tracking,
            &cols.created_exact,
            &cols.doc,
            &cutoff,
        ];
        let rows = tx.query(&upsert_sql, &params).await.map_err(backend("writing deliveries"))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    };
    let append = async {
        if attempts.is_empty() {
            return Ok::<_, StoreError>(());
        }
        let (ids, docs): (Vec<&str>, Vec<&str>) = attempts.iter().map(|(i, d)| (*i, d.as_str())).unzip();
        tx.execute(&append_sql, &[&ids, &docs, &cutoff]).await.map_err(backend("writing attempts"))?;
        Ok(())
    };
    // The two go out together on the one connection (pipelined), in this order: every
    // statement is prepared already, so each sends its request when first polled.
    let (inserted, appended) = tokio::join!(upsert, append);
    let inserted = inserted?;
    appended?;
    statements += u64::from(!cols.id.is_empty()) + u64::from(!attempts.is_empty());

    if !inserted.is_empty() {
        let mut per: HashMap<String, i64> = HashMap::new();
        for w in inserted {
            *per.entry(w).or_default() += 1;
        }
        let (webhooks, added): (Vec<String>, Vec<i64>) = per.into_iter().unzip();
        let cap = retention.per_webhook as i64;
        // Count what each webhook gained ...
        let count_sql = tx.prepare_cached(COUNT_SQL).await.map_err(backend("counting deliveries per webhook"))?;
        let counted =
            tx.query(&count_sql, &[&webhooks, &added]).await.map_err(backend("counting deliveries per webhook"))?;

        statements += 1;
        let (over, excess): (Vec<String>, Vec<i64>) = counted
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) - cap))
            .filter(|(_, excess)| *excess > 0)
            .unzip();
        if !over.is_empty() {
            // ... and for the webhooks now over the cap, delete the oldest beyond it (walking
            // the webhook index from the old end) with their attempts, and count those out.
            let cap_sql = tx.prepare_cached(CAP_SQL).await.map_err(backend("per-webhook cap"))?;
            tx.execute(&cap_sql, &[&over, &excess]).await.map_err(backend("per-webhook cap"))?;
            statements += 1;
        }
    }
    tx.commit().await.map_err(backend("delivery log commit"))?;
    Ok(statements)
}

fn decode_delivery(row: &tokio_postgres::Row) -> Result<Delivery> {
    let doc: &str = row.get("doc");
    let id: &str = row.get("id");
    let mut d: Delivery = serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("delivery {id}: {e}")))?;
    // The first put's trigger time, whatever later puts carried.
    let exact: &str = row.get("created_exact");
    let first = DateTime::parse_from_rfc3339(exact)
        .map_err(|e| StoreError::Corrupt(format!("delivery {id} created_exact {exact:?}: {e}")))?
        .with_timezone(&Utc);
    d.created_at = first;
    d.request.first_trigger_at = first;
    Ok(d)
}

#[async_trait]
impl DeliveryLog for PostgresLog {
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        self.submit(Op::Put(Box::new(delivery.clone()))).await.map(|_| ())
    }

    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client.prepare_cached(EXPIRE_SQL).await.map_err(backend("expiring deliveries"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let row =
            client.query_one(&stmt, &[&webhook_id, &before, &limit]).await.map_err(backend("expiring deliveries"))?;
        Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT id, created_exact, doc FROM hm_deliveries WHERE id = $1 AND created_at >= $2 \
                 ORDER BY created_at LIMIT 1",
            )
            .await
            .map_err(backend("reading a delivery"))?;
        let row =
            client.query_opt(&stmt, &[&id, &cutoff(self.retention)]).await.map_err(backend("reading a delivery"))?;
        row.as_ref().map(decode_delivery).transpose()
    }

    async fn create_delivery(&self, delivery: &Delivery) -> Result<Option<Delivery>> {
        self.submit(Op::Create(Box::new(delivery.clone()))).await
    }

    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        self.submit(Op::Attempt(delivery_id.to_string(), Box::new(attempt.clone()))).await.map(|_| ())
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()> {
        let op = Op::PutWithAttempt(Box::new(delivery.clone()), Box::new(attempt.clone()));
        self.submit(op).await.map(|_| ())
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(
                "SELECT doc FROM hm_attempts WHERE delivery_id = $1 AND created_at >= $2 ORDER BY created_at, seq",
            )
            .await
            .map_err(backend("reading attempts"))?;
        let rows =
            client.query(&stmt, &[&delivery_id, &cutoff(self.retention)]).await.map_err(backend("reading attempts"))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get(0))
                    .map_err(|e| StoreError::Corrupt(format!("attempt of {delivery_id}: {e}")))
            })
            .collect()
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = if q.limit == 0 { 50 } else { q.limit } as i64;
        let floor = cutoff(self.retention);
        let mut sql = Query::new("SELECT id, created_exact, doc FROM hm_deliveries WHERE TRUE");
        let since = sql.bind(q.since.map_or(floor, |s| s.max(floor)));
        sql.and(format!("created_at >= {since}"));
        if let Some(u) = q.until {
            let u = sql.bind(u);
            sql.and(format!("created_at < {u}"));
        }
        if let Some(t) = &q.tenant_id {
            let t = sql.bind(t.clone());
            sql.and(format!("tenant_id = {t}"));
        }
        if let Some(w) = &q.webhook_id {
            let w = sql.bind(w.clone());
            sql.and(format!("webhook_id = {w}"));
        }
        if let Some(s) = q.status {
            let s = sql.bind(s.as_str().to_string());
            sql.and(format!("status = {s}"));
        }
        if let Some(t) = q.event_type {
            let t = sql.bind(t.as_str().to_string());
            sql.and(format!("event_type = {t}"));
        }
        if let Some(c) = &q.call_id {
            let c = sql.bind(c.clone());
            sql.and(format!("call_id = {c}"));
        }
        if let Some(c) = &q.campaign {
            // As the triggers match: the id exactly, or the name in any case.
            let c = sql.bind(c.clone());
            sql.and(format!("(campaign_id = {c} OR upper(campaign_name) = upper({c}))"));
        }
        if let Some(d) = &q.direction {
            let d = sql.bind(d.clone());
            sql.and(format!("direction = {d}"));
        }
        if let Some(t) = &q.tracking {
            let d = digits(t);
            if d.is_empty() {
                return Ok(Vec::new());
            }
            // Two spellings of one number: the digits agree, or one side (of 10 digits or
            // more) is the other's national part.
            let t = sql.bind(d);
            sql.and(format!(
                "(tracking = {t} OR (length({t}) >= 10 AND tracking LIKE '%' || {t}) \
                 OR (length(tracking) >= 10 AND {t} LIKE '%' || tracking))"
            ));
        }
        if let Some(before) = &q.before {
            let cursor = client
                .query_opt(
                    "SELECT created_at FROM hm_deliveries WHERE id = $1 AND created_at >= $2 ORDER BY created_at LIMIT 1",
                    &[before, &floor],
                )
                .await
                .map_err(backend("reading the page cursor"))?;
            if let Some(row) = cursor {
                let at = sql.bind(row.get::<_, DateTime<Utc>>(0));
                let id = sql.bind(before.clone());
                sql.and(format!("(created_at, id) < ({at}, {id})"));
            }
        }
        let limit = sql.bind(limit);
        sql.text.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {limit}"));
        let stmt = client.prepare_cached(&sql.text).await.map_err(backend("listing deliveries"))?;
        let rows = client.query(&stmt, &sql.refs()).await.map_err(backend("listing deliveries"))?;
        rows.iter().map(decode_delivery).collect()
    }
}

/// A query with numbered parameters, built filter by filter.
struct Query {
    text: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Query {
    fn new(text: &str) -> Query {
        Query { text: text.to_string(), params: Vec::new() }
    }

    /// Adds a parameter; answers its placeholder.
    fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    fn and(&mut self, condition: String) {
        self.text.push_str(" AND ");
        self.text.push_str(&condition);
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}
