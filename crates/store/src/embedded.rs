//! The durable embedded [`Store`](crate::Store) of `hookmesh standalone`: the delivery log with its attempts
//! and indexes, and the hot state (retry schedule with leases, dedup marks with TTL, breakers,
//! health samples, lanes, rate-limit state), kept in one directory on an embedded LSM engine
//! (fjall). Same semantics as the memory and Redis stores (the conformance suite runs on all
//! three).
//!
//! # What it guarantees
//! - **An OK is on disk.** Every write (a put, an attempt, a mark, a claim, a reservation, …)
//!   answers only after the engine's journal holding it was fsynced (`fsync`, data and
//!   metadata). It survives SIGKILL of the process and power loss.
//! - **Group commit.** One writer thread applies the writes in arrival order and shares one
//!   fsync among every write that arrived while the previous fsync ran, so concurrent writers
//!   do not queue for a disk flush each. Each write is applied atomically (one engine batch),
//!   and read-modify-write operations (`mark_seen`, `claim_due`, lanes, `rate_reserve`, breaker
//!   updates) are serialised by that thread, so they are atomic without locks. The thread is
//!   the one serial point of the store, so it is kept to the engine's work: deliveries are
//!   encoded by the task that writes them, an update reads only the stored dates it keeps,
//!   the next attempt number of recent deliveries is remembered rather than scanned, and a
//!   breaker update that changes nothing writes nothing. The engine's journal is flushed to
//!   the OS once per group by that fsync, not after every write (`manual_journal_persist`).
//! - Reads see every applied write, including writes of a group whose fsync is still running
//!   (their writers have not been answered yet).
//! - **One process per directory**: the engine locks it; a second open fails naming it.
//! - **Format version**: `FORMAT` in the directory names the layout (`hookmesh-store 1`); a
//!   directory written in another format is refused with a message naming the file and both
//!   versions, and an unreadable value is a [`StoreError::Corrupt`] naming its table and key.
//!   Opening never panics: a panic inside the engine while recovering a damaged directory is
//!   turned into an error naming the directory.
//! - Retention as in the other stores: a new delivery evicts the oldest of its webhook beyond
//!   the per-webhook cap and every delivery older than the max age (with their attempts);
//!   besides, the writer thread sweeps deliveries past the max age and expired dedup marks
//!   every second, also when nothing is written. The engine reclaims the space of removed
//!   entries in its background compactions.
//!
//! # Why fjall
//! Measured with a throwaway program that mimics this store's writes: W concurrent writers,
//! each write one 1–3 KiB JSON value plus one sorted index entry (created-at + id), group
//! committed by one thread with a durable commit per drained group, then 2,000 reverse range
//! scans of 50 entries each with a point read per entry (the delivery-log listing). 10,000
//! writes per run on this project's 2-core development machine (virtual disk):
//!
//! | engine (durable commit)            | W  | writes/s | p50 ms | p99 ms | scans/s |
//! |------------------------------------|----|---------:|-------:|-------:|--------:|
//! | redb 5 (`Durability::Immediate`)   | 1  |    2,239 |   0.39 |   1.44 |  38,300 |
//! | fjall 3 (`persist(SyncAll)`)       | 1  |    3,938 |   0.20 |   1.20 |  20,961 |
//! | SQLite 3 (WAL, `synchronous=FULL`) | 1  |    3,612 |   0.21 |   1.63 |   2,982 |
//! | redb                               | 16 |   12,004 |   1.30 |   2.22 |  45,050 |
//! | fjall                              | 16 |   25,118 |   0.60 |   1.42 |  23,066 |
//! | SQLite                             | 16 |   14,501 |   0.83 |   4.18 |   2,869 |
//! | redb                               | 64 |   21,374 |   3.07 |   4.39 |  44,615 |
//! | fjall                              | 64 |   59,668 |   1.00 |   2.28 |  22,143 |
//! | SQLite                             | 64 |   14,987 |   3.33 |   9.45 |   2,771 |
//!
//! fjall writes 2–3× faster than redb under concurrency with the lowest tail latency (an LSM
//! appends to its journal; redb's copy-on-write B-tree rewrites pages per commit), and its
//! range scans, though half of redb's, are far beyond what the delivery-log API asks. The
//! store's workload is write-heavy (each delivery writes its record, attempts, health samples,
//! lane and breaker state; the log is read by people), so fjall it is. It is pure Rust (no C
//! toolchain, unlike SQLite) and LZ4 is left off (values are small JSON documents).

use crate::{DeliveryLog, DeliveryQuery, HotState, Result, Retention, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use hookmesh_core::breaker::Breaker;
use hookmesh_core::delivery::{Attempt, Delivery};
use hookmesh_core::health::HealthSample;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The layout this binary reads and writes.
pub const FORMAT: &str = "hookmesh-store 1";
/// Most writes applied under one fsync.
const GROUP_MAX: usize = 4096;
/// Expired dedup marks removed per group commit.
const SWEEP_MAX: usize = 256;
/// How often retention runs when the store is idle (or busy).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The durable embedded store; see the module docs for what it guarantees.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    db: Database,
    ks: Tables,
    /// Scheduled retries (claimed or not), kept by the writer thread.
    backlog: AtomicUsize,
}

/// The engine's keyspaces ("tables"): see `open` for the key layout of each.
struct Tables {
    seen: Keyspace,
    seen_exp: Keyspace,
    deliveries: Keyspace,
    attempts: Keyspace,
    by_time: Keyspace,
    by_webhook: Keyspace,
    retry_id: Keyspace,
    retry_due: Keyspace,
    rates: Keyspace,
    health: Keyspace,
    breakers: Keyspace,
    lanes: Keyspace,
    contexts: Keyspace,
}

/// Runs on the writer thread; answers a reply to send once the group's fsync is done.
type Job = Box<dyn FnOnce(&mut Writer) -> Reply + Send>;
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// State only the writer thread touches.
struct Writer {
    shared: Arc<Shared>,
    retention: Retention,
    /// Deliveries per webhook, counted on first use.
    per_webhook: HashMap<String, usize>,
    /// Per endpoint, its health samples' count and newest time, found on first use.
    health: HashMap<String, HealthSamples>,
    /// Tie-breaker of health samples with one timestamp: increases across restarts too.
    seq: u64,
    /// Where the live keys of the indexes trimmed from the front begin.
    low: LowMarks,
    /// The number of the next attempt of recently written deliveries, so recording an attempt
    /// needs no scan of the attempts table (cleared past [`ATTEMPT_CACHE_MAX`] entries; a
    /// delivery missing here is scanned).
    next_attempt: HashMap<String, u32>,
}

/// Most deliveries whose next attempt number the writer remembers.
const ATTEMPT_CACHE_MAX: usize = 65_536;

/// The indexes trimmed from the front (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Front {
    Health,
    ByWebhook,
    ByTime,
    RetryDue,
    SeenExp,
}

/// Where the live keys of each index trimmed from the front begin, per prefix.
///
/// Removing the oldest entries of a sorted index leaves tombstones that the engine's iterators
/// step over one by one until a compaction drops them, so a scan from the start of the index
/// after N removals costs O(N), and trimming on every write grows quadratically. Measured on
/// the health samples of one endpoint: past the 20,000-sample cap the trim took half of the
/// store's time, and a standalone under constant load fell from thousands of deliveries/s to
/// under 100. Each mark keeps the invariant *every live key under the prefix is ≥ the mark*:
/// an insert below it lowers it, removing the front through a key (once committed) raises it
/// just past that key, and front scans start at it. Unknown (after an open): the prefix
/// itself, one full scan.
#[derive(Default)]
struct LowMarks(HashMap<(Front, Vec<u8>), Vec<u8>>);

impl LowMarks {
    /// Where a front scan of `prefix` in `index` starts.
    fn start(&self, index: Front, prefix: &[u8]) -> Vec<u8> {
        self.0.get(&(index, prefix.to_vec())).cloned().unwrap_or_else(|| prefix.to_vec())
    }

    /// `key` was inserted under `prefix`.
    fn inserted(&mut self, index: Front, prefix: &[u8], key: &[u8]) {
        if let Some(low) = self.0.get_mut(&(index, prefix.to_vec())) {
            if key < low.as_slice() {
                *low = key.to_vec();
            }
        }
    }

    /// Every live key under `prefix` up to and including `key` was removed (and committed).
    fn removed_through(&mut self, index: Front, prefix: &[u8], key: &[u8]) {
        let mut next = key.to_vec();
        next.push(0);
        let low = self.0.entry((index, prefix.to_vec())).or_insert_with(|| prefix.to_vec());
        if next > *low {
            *low = next;
        }
    }
}

/// The first key after every key starting with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn engine_err<'a>(dir: &'a Path, what: &str) -> impl Fn(fjall::Error) -> StoreError + 'a {
    let what = what.to_string();
    move |e| StoreError::Backend(format!("embedded store {}: {what}: {e}", dir.display()))
}

/// Checks or writes `FORMAT` in `dir`.
pub(crate) fn check_format(dir: &Path, format: &str) -> std::result::Result<(), String> {
    let file = dir.join("FORMAT");
    match std::fs::read(&file) {
        Ok(bytes) => {
            let found = String::from_utf8_lossy(&bytes).trim().to_string();
            if found != format {
                return Err(format!(
                    "{}: the data is in format `{found}`, this binary reads `{format}` only (a newer or older hookmesh wrote it)",
                    file.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let nonempty = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
            if nonempty {
                return Err(format!(
                    "{}: missing, but {} holds other files: not a hookmesh data directory, or damaged",
                    file.display(),
                    dir.display()
                ));
            }
            let tmp = dir.join("FORMAT.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut f, format!("{format}\n").as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &file)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| format!("{}: cannot write: {e}", file.display()))
        }
        Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
    }
}

/// Options of every keyspace: writes are made durable by the writer thread's one
/// `persist(SyncAll)` per group, so the engine must not also flush its journal buffer to the OS
/// after each write (a `write` syscall per write, most of the journal's cost). A keyspace keeps
/// the options it was created with.
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().manual_journal_persist(true)
}

impl EmbeddedStore {
    /// Opens (creating when missing) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> Result<EmbeddedStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backend(format!("embedded store {}: cannot create: {e}", dir.display())))?;
        check_format(&dir, FORMAT).map_err(StoreError::Corrupt)?;
        let engine = dir.join("engine");
        // The engine may panic on a damaged file while recovering; that is an error here.
        let opened = std::panic::catch_unwind(|| -> std::result::Result<(Database, Tables), fjall::Error> {
            let db = Database::builder(&engine).manual_journal_persist(true).open()?;
            let ks = |name: &str| db.keyspace(name, keyspace_options);
            let tables = Tables {
                // key → expiry (unix ms, i64 BE)
                seen: ks("seen")?,
                // expiry (sortable) ‖ key → ()
                seen_exp: ks("seen_exp")?,
                // delivery id → JSON
                deliveries: ks("deliveries")?,
                // delivery id ‖ 0 ‖ number (u32 BE) → JSON
                attempts: ks("attempts")?,
                // created_at (sortable) ‖ id → webhook id
                by_time: ks("by_time")?,
                // webhook id ‖ 0 ‖ created_at ‖ id → ()
                by_webhook: ks("by_webhook")?,
                // delivery id → due (sortable)
                retry_id: ks("retry_id")?,
                // due ‖ delivery id → ()
                retry_due: ks("retry_due")?,
                // key → theoretical arrival time (unix ns, i64 BE)
                rates: ks("rates")?,
                // endpoint ‖ 0 ‖ at ‖ seq (u64 BE) → JSON
                health: ks("health")?,
                // endpoint → JSON
                breakers: ks("breakers")?,
                // lane → JSON list of ids, head first
                lanes: ks("lanes")?,
                // tenant ‖ 0 ‖ call id → expiry (unix ms, sortable) ‖ JSON map; the expiry is
                // also indexed in seen_exp under CONTEXT_MARK ‖ key so the sweep removes it
                contexts: ks("contexts")?,
            };
            Ok((db, tables))
        });
        let (db, ks) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(fjall::Error::Locked)) => {
                return Err(StoreError::Backend(format!(
                    "embedded store {}: in use by another process (one process per data directory)",
                    dir.display()
                )))
            }
            Ok(Err(e)) => {
                return Err(StoreError::Corrupt(format!("embedded store {}: cannot open: {e}", engine.display())))
            }
            Err(_) => {
                return Err(StoreError::Corrupt(format!(
                    "embedded store {}: the engine failed while reading its files (damaged?)",
                    engine.display()
                )))
            }
        };
        let backlog = ks.retry_id.iter().count();
        let shared = Arc::new(Shared { dir, db, ks, backlog: AtomicUsize::new(backlog) });
        let writer = Writer {
            shared: shared.clone(),
            retention,
            per_webhook: HashMap::new(),
            next_attempt: HashMap::new(),
            health: HashMap::new(),
            seq: (Utc::now().timestamp_micros().max(0) as u64) << 8,
            low: LowMarks::default(),
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("hm-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Backend(format!("embedded store: writer thread: {e}")))?;
        Ok(EmbeddedStore { shared, jobs: Some(tx), writer: Some(thread) })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Bytes the engine's files take on disk.
    pub fn disk_space(&self) -> u64 {
        self.shared.db.disk_space().unwrap_or(0)
    }

    /// Runs `f` on the writer thread; answers once its group is on disk.
    async fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Writer) -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |w: &mut Writer| {
            let out = f(w);
            Box::new(move |synced: Result<()>| {
                let _ = tx.send(synced.and(out));
            })
        });
        let closed = || StoreError::Backend("embedded store: closed".into());
        self.jobs.as_ref().ok_or_else(closed)?.send(job).map_err(|_| closed())?;
        rx.await.map_err(|_| StoreError::Backend("embedded store: the writer thread stopped".into()))?
    }

    fn err(&self, what: &str) -> impl Fn(fjall::Error) -> StoreError + '_ {
        engine_err(&self.shared.dir, what)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // The writer drains what was sent, syncs, and stops; then the engine closes.
        self.jobs.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        let mut last_sweep = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(SWEEP_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.sweep();
                    last_sweep = std::time::Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = std::time::Instant::now();
            }
            let mut replies = Vec::with_capacity(64);
            replies.push(first(&mut self));
            while replies.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(job) => replies.push(job(&mut self)),
                    Err(_) => break,
                }
            }
            self.sweep_seen();
            let synced = self.shared.db.persist(PersistMode::SyncAll).map_err(self.err("fsync"));
            for reply in replies {
                reply(synced.clone());
            }
        }
        let _ = self.shared.db.persist(PersistMode::SyncAll);
    }

    fn err(&self, what: &str) -> impl Fn(fjall::Error) -> StoreError + '_ {
        engine_err(&self.shared.dir, what)
    }

    fn ks(&self) -> &Tables {
        &self.shared.ks
    }

    fn batch(&self) -> fjall::OwnedWriteBatch {
        self.shared.db.batch()
    }

    fn sweep_seen(&mut self) {
        let now = Utc::now().timestamp_millis();
        let upto = sortable(now.saturating_add(1)).to_vec();
        let start = self.low.start(Front::SeenExp, &[]);
        if start >= upto {
            return;
        }
        let mut b = self.batch();
        let mut last = None;
        for kv in self.ks().seen_exp.range(start..upto).take(SWEEP_MAX) {
            let Ok(k) = kv.key() else { break };
            last = Some(k.to_vec());
            let key = &k[8..];
            if let Some(ctx) = key.strip_prefix(CONTEXT_MARK) {
                if let Ok(Some(v)) = self.ks().contexts.get(ctx) {
                    if v.len() >= 8 && v[..8] == k[..8] {
                        b.remove(&self.ks().contexts, ctx.to_vec());
                    }
                }
                b.remove(&self.ks().seen_exp, k.to_vec());
                continue;
            }
            // Only if the mark was not renewed since.
            if let Ok(Some(v)) = self.ks().seen.get(key) {
                if v.as_ref() == &k[..8] {
                    b.remove(&self.ks().seen, key.to_vec());
                }
            }
            b.remove(&self.ks().seen_exp, k.to_vec());
        }
        if b.commit().is_ok() {
            if let Some(last) = last {
                self.low.removed_through(Front::SeenExp, &[], &last);
            }
        }
    }

    fn remove_delivery(&mut self, b: &mut fjall::OwnedWriteBatch, time_key: &[u8], webhook: &str) -> Result<()> {
        let id = &time_key[8..];
        if let Ok(id) = std::str::from_utf8(id) {
            self.next_attempt.remove(id);
        }
        b.remove(&self.ks().by_time, time_key.to_vec());
        b.remove(&self.ks().by_webhook, webhook_key(webhook, time_key));
        b.remove(&self.ks().deliveries, id.to_vec());
        for kv in self.ks().attempts.prefix(attempt_prefix(id)) {
            b.remove(&self.ks().attempts, kv.key().map_err(self.err("attempts"))?.to_vec());
        }
        if let Some(n) = self.per_webhook.get_mut(webhook) {
            *n = n.saturating_sub(1);
        }
        Ok(())
    }

    /// The key of the next attempt of delivery `id`, which the log holds (the caller checked),
    /// counted as taken.
    fn take_attempt_key(&mut self, id: &str) -> Result<Vec<u8>> {
        let prefix = attempt_prefix(id.as_bytes());
        let next = match self.next_attempt.get(id) {
            Some(n) => *n,
            None => match self.ks().attempts.prefix(&prefix).next_back() {
                Some(kv) => {
                    let k = kv.key().map_err(self.err("attempts"))?;
                    let mut n = [0u8; 4];
                    n.copy_from_slice(&k[prefix.len()..prefix.len() + 4]);
                    u32::from_be_bytes(n) + 1
                }
                None => 0,
            },
        };
        self.remember_attempts(id, next + 1);
        let mut key = prefix;
        key.extend_from_slice(&next.to_be_bytes());
        Ok(key)
    }

    fn remember_attempts(&mut self, id: &str, next: u32) {
        if self.next_attempt.len() >= ATTEMPT_CACHE_MAX {
            self.next_attempt.clear();
        }
        self.next_attempt.insert(id.to_string(), next);
    }

    fn webhook_count(&mut self, webhook: &str) -> usize {
        if let Some(n) = self.per_webhook.get(webhook) {
            return *n;
        }
        let n = self.shared.ks.by_webhook.prefix(webhook_prefix(webhook)).count();
        self.per_webhook.insert(webhook.to_string(), n);
        n
    }

    /// Stores a delivery (encoded by the caller, off this thread), keeping the dates of the
    /// stored one; see [`Put`] for what happens to a stored one. A delivery the log does not
    /// hold is stored anew, with its attempt if there is one.
    fn put_delivery(&mut self, d: &Encoded, how: Put<'_>) -> Result<Option<fjall::Slice>> {
        let existing = self.ks().deliveries.get(d.id.as_bytes()).map_err(self.err("deliveries"))?;
        let mut b = self.batch();
        if let Some(existing) = existing {
            let attempt = match how {
                Put::Create => return Ok(Some(existing)),
                Put::Replace => None,
                Put::WithAttempt(json) => Some(json),
            };
            let old = decode::<StoredDates>(&existing, "deliveries", &d.id)?;
            if let Some(json) = attempt {
                let key = self.take_attempt_key(&d.id)?;
                b.insert(&self.ks().attempts, key, json);
            }
            let key = d.id.as_bytes().to_vec();
            b.insert(&self.ks().deliveries, key, &*d.with_dates(old)?);
            b.commit().map_err(self.err("put delivery"))?;
            return Ok(None);
        }
        let time_key = time_key(d.created_at, &d.id);
        let count = self.webhook_count(&d.webhook_id);
        self.remember_attempts(&d.id, 0);
        if let Put::WithAttempt(json) = how {
            let key = self.take_attempt_key(&d.id)?;
            b.insert(&self.ks().attempts, key, json);
        }
        b.insert(&self.ks().deliveries, d.id.as_bytes().to_vec(), &d.json[..]);
        b.insert(&self.ks().by_time, time_key.clone(), d.webhook_id.as_bytes().to_vec());
        b.insert(&self.ks().by_webhook, webhook_key(&d.webhook_id, &time_key), Vec::new());
        // Applied before retention runs: a new delivery that is itself the oldest (past the max
        // age, or the oldest of a full webhook) is dropped like any other.
        b.commit().map_err(self.err("put delivery"))?;
        self.per_webhook.insert(d.webhook_id.clone(), count + 1);
        let wprefix = webhook_prefix(&d.webhook_id);
        self.low.inserted(Front::ByWebhook, &wprefix, &webhook_key(&d.webhook_id, &time_key));
        self.low.inserted(Front::ByTime, &[], &time_key);

        let mut b = self.batch();
        let over = (count + 1).saturating_sub(self.retention.per_webhook);
        let oldest: Vec<Vec<u8>> = if over == 0 {
            Vec::new()
        } else {
            let start = self.low.start(Front::ByWebhook, &wprefix);
            let end = prefix_end(&wprefix).expect("a webhook prefix ends in 0");
            self.ks()
                .by_webhook
                .range(start..end)
                .take(over)
                .map(|kv| kv.key().map(|k| k.to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(self.err("by_webhook"))?
        };
        let skip = wprefix.len();
        let mut evicted = std::collections::HashSet::new();
        for k in &oldest {
            let tk = k[skip..].to_vec();
            self.remove_delivery(&mut b, &tk, &d.webhook_id)?;
            evicted.insert(tk);
        }
        let aged = self.evict_aged(&mut b, &evicted)?;
        b.commit().map_err(self.err("retention"))?;
        if let Some(last) = oldest.last() {
            self.low.removed_through(Front::ByWebhook, &wprefix, last);
        }
        if let Some(last) = aged {
            self.low.removed_through(Front::ByTime, &[], &last);
        }
        Ok(None)
    }

    /// Removes (into `b`) up to 1024 deliveries older than the max age, except `skip`; answers
    /// the last `by_time` key it went through, for the low mark once `b` is committed.
    fn evict_aged(
        &mut self,
        b: &mut fjall::OwnedWriteBatch,
        skip: &std::collections::HashSet<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let cutoff = Utc::now() - chrono::Duration::from_std(self.retention.max_age).unwrap_or(chrono::Duration::MAX);
        let upto = sortable_time(cutoff).to_vec();
        let start = self.low.start(Front::ByTime, &[]);
        if start >= upto {
            return Ok(None);
        }
        let old: Vec<(Vec<u8>, String)> = self
            .ks()
            .by_time
            .range(start..upto)
            .take(1024)
            .map(|kv| kv.into_inner().map(|(k, v)| (k.to_vec(), String::from_utf8_lossy(&v).into_owned())))
            .collect::<std::result::Result<_, _>>()
            .map_err(self.err("by_time"))?;
        let last = old.last().map(|(tk, _)| tk.clone());
        for (tk, webhook) in old {
            if !skip.contains(&tk) {
                self.remove_delivery(b, &tk, &webhook)?;
            }
        }
        Ok(last)
    }

    /// Retention while running, also when nothing is written: deliveries past the max age and
    /// expired dedup marks. Not fsynced on its own (a removal lost to a crash is redone).
    fn sweep(&mut self) {
        self.sweep_seen();
        let mut b = self.batch();
        let swept = self.evict_aged(&mut b, &std::collections::HashSet::new());
        match swept.and_then(|last| b.commit().map_err(self.err("retention")).map(|()| last)) {
            Ok(Some(last)) => self.low.removed_through(Front::ByTime, &[], &last),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "embedded store: retention sweep failed"),
        }
    }

    /// Records `samples` (encoded by the caller) of `endpoint` in one batch, then trims the
    /// endpoint's samples to the window and the cap in a second: two engine writes per batch,
    /// however many samples it holds. The newest sample's time is remembered, so the window
    /// needs no reverse scan.
    fn record_health(&mut self, endpoint: &str, samples: Vec<(DateTime<Utc>, Vec<u8>)>) -> Result<()> {
        let prefix = webhook_prefix(endpoint);
        let known = match self.health.get(endpoint) {
            Some(known) => *known,
            None => {
                let count = self.ks().health.prefix(&prefix).count();
                let newest = match self.ks().health.prefix(&prefix).next_back() {
                    Some(kv) => {
                        let k = kv.key().map_err(self.err("health"))?;
                        unsortable_time(&k[prefix.len()..prefix.len() + 8])
                    }
                    None => DateTime::<Utc>::MIN_UTC,
                };
                HealthSamples { count, newest }
            }
        };
        let HealthSamples { mut count, mut newest } = known;
        let mut b = self.batch();
        for (at, json) in samples {
            self.seq += 1;
            let mut key = prefix.clone();
            key.extend_from_slice(&sortable_time(at));
            key.extend_from_slice(&self.seq.to_be_bytes());
            self.low.inserted(Front::Health, &prefix, &key);
            b.insert(&self.ks().health, key, json);
            count += 1;
            newest = newest.max(at);
        }
        b.commit().map_err(self.err("health"))?;
        self.health.insert(endpoint.to_string(), HealthSamples { count, newest });
        // The window is relative to the newest sample, not to the ones just recorded.
        let window = chrono::Duration::from_std(crate::HEALTH_WINDOW).unwrap_or(chrono::Duration::MAX);
        let cutoff = newest.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut cutoff_key = prefix.clone();
        cutoff_key.extend_from_slice(&sortable_time(cutoff));
        let mut b = self.batch();
        let start = self.low.start(Front::Health, &prefix);
        let end = prefix_end(&prefix).expect("an endpoint prefix ends in 0");
        let mut last = None;
        for kv in self.ks().health.range(start..end) {
            let k = kv.key().map_err(self.err("health"))?;
            if *k >= *cutoff_key && count <= crate::HEALTH_SAMPLES {
                break;
            }
            b.remove(&self.ks().health, k.to_vec());
            last = Some(k.to_vec());
            count -= 1;
        }
        b.commit().map_err(self.err("health"))?;
        if let Some(last) = last {
            self.low.removed_through(Front::Health, &prefix, &last);
        }
        self.health.insert(endpoint.to_string(), HealthSamples { count, newest });
        Ok(())
    }
}

/// What the writer knows of one endpoint's stored health samples.
#[derive(Clone, Copy)]
struct HealthSamples {
    count: usize,
    /// The time of the newest (`MIN_UTC` when there is none).
    newest: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// `v` as 8 bytes that sort like the signed number.
fn sortable(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

fn time_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

fn sortable_time(t: DateTime<Utc>) -> [u8; 8] {
    sortable(time_ns(t))
}

fn unsortable_time(b: &[u8]) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(unsortable(b))
}

fn time_key(t: DateTime<Utc>, id: &str) -> Vec<u8> {
    let mut k = sortable_time(t).to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// `name ‖ 0`: the prefix of a per-webhook (per-endpoint) index.
fn webhook_prefix(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

fn webhook_key(webhook: &str, time_key: &[u8]) -> Vec<u8> {
    let mut k = webhook_prefix(webhook);
    k.extend_from_slice(time_key);
    k
}

fn attempt_prefix(id: &[u8]) -> Vec<u8> {
    let mut k = id.to_vec();
    k.push(0);
    k
}

fn encode<T: serde::Serialize>(v: &T, table: &str, key: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(format!("{table}/{key}: cannot encode: {e}")))
}

/// What [`Writer::put_delivery`] does with a delivery the log already holds.
enum Put<'a> {
    /// Leave it as it is and answer it.
    Create,
    /// Replace it (keeping its dates).
    Replace,
    /// Replace it and append this attempt (JSON), in one batch.
    WithAttempt(&'a [u8]),
}

/// A delivery encoded by the task that writes it, so the writer thread does not spend its time
/// on JSON: the JSON and what the writer needs to file it.
struct Encoded {
    id: String,
    webhook_id: String,
    created_at: DateTime<Utc>,
    first_trigger_at: DateTime<Utc>,
    json: Vec<u8>,
}

impl Encoded {
    fn of(d: &Delivery) -> Result<Encoded> {
        Ok(Encoded {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            created_at: d.created_at,
            first_trigger_at: d.request.first_trigger_at,
            json: encode(d, "deliveries", &d.id)?,
        })
    }

    /// The JSON with the dates of the stored version (encoded again only if they differ).
    fn with_dates(&self, old: StoredDates) -> Result<std::borrow::Cow<'_, [u8]>> {
        if old.created_at == self.created_at && old.request.first_trigger_at == self.first_trigger_at {
            return Ok(std::borrow::Cow::Borrowed(&self.json));
        }
        let mut d: Delivery = decode(&self.json, "deliveries", &self.id)?;
        d.created_at = old.created_at;
        d.request.first_trigger_at = old.request.first_trigger_at;
        encode(&d, "deliveries", &self.id).map(std::borrow::Cow::Owned)
    }
}

/// The dates of a stored delivery that an update keeps (the rest of the JSON is skipped, not
/// built).
#[derive(serde::Deserialize)]
struct StoredDates {
    created_at: DateTime<Utc>,
    request: StoredRequestDates,
}

#[derive(serde::Deserialize)]
struct StoredRequestDates {
    first_trigger_at: DateTime<Utc>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], table: &str, key: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("embedded store: {table}/{key}: {e}")))
}

/// Marks a context's entry in the `seen_exp` index (dedup keys never start with a 0 byte).
const CONTEXT_MARK: &[u8] = b"\0ctx\0";

fn context_key(tenant: &str, call_id: &str) -> Vec<u8> {
    let mut k = tenant.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(call_id.as_bytes());
    k
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn lane_ids(bytes: Option<fjall::Slice>, lane: &str) -> Result<Vec<String>> {
    match bytes {
        Some(b) => decode(&b, "lanes", lane),
        None => Ok(Vec::new()),
    }
}

#[async_trait]
impl HotState for EmbeddedStore {
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool> {
        let key = key.to_string();
        self.write(move |w| {
            let now = now_ms();
            if let Some(v) = w.ks().seen.get(key.as_bytes()).map_err(w.err("seen"))? {
                if unsortable(&v) > now {
                    return Ok(false);
                }
            }
            let exp = sortable(now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64));
            let mut idx = exp.to_vec();
            idx.extend_from_slice(key.as_bytes());
            let mut b = w.batch();
            b.insert(&w.ks().seen, key.as_bytes().to_vec(), exp.to_vec());
            b.insert(&w.ks().seen_exp, idx.clone(), Vec::new());
            b.commit().map_err(w.err("seen"))?;
            w.low.inserted(Front::SeenExp, &[], &idx);
            Ok(true)
        })
        .await
    }

    async fn is_seen(&self, key: &str) -> Result<bool> {
        let v = self.shared.ks.seen.get(key.as_bytes()).map_err(self.err("seen"))?;
        Ok(v.is_some_and(|v| unsortable(&v) > now_ms()))
    }

    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()> {
        let id = delivery_id.to_string();
        self.write(move |w| {
            let mut b = w.batch();
            let old = w.ks().retry_id.get(id.as_bytes()).map_err(w.err("retry_id"))?;
            if let Some(old) = &old {
                let mut k = old.to_vec();
                k.extend_from_slice(id.as_bytes());
                b.remove(&w.ks().retry_due, k);
            }
            let due = sortable_time(due);
            let mut k = due.to_vec();
            k.extend_from_slice(id.as_bytes());
            b.insert(&w.ks().retry_due, k.clone(), Vec::new());
            b.insert(&w.ks().retry_id, id.as_bytes().to_vec(), due.to_vec());
            b.commit().map_err(w.err("schedule retry"))?;
            w.low.inserted(Front::RetryDue, &[], &k);
            if old.is_none() {
                w.shared.backlog.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
        .await
    }

    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool> {
        let id = delivery_id.to_string();
        self.write(move |w| {
            let Some(old) = w.ks().retry_id.get(id.as_bytes()).map_err(w.err("retry_id"))? else { return Ok(false) };
            let mut k = old.to_vec();
            k.extend_from_slice(id.as_bytes());
            let mut b = w.batch();
            b.remove(&w.ks().retry_due, k);
            b.remove(&w.ks().retry_id, id.as_bytes().to_vec());
            b.commit().map_err(w.err("cancel retry"))?;
            w.shared.backlog.fetch_sub(1, Ordering::SeqCst);
            Ok(true)
        })
        .await
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>> {
        self.write(move |w| {
            let upto = sortable(time_ns(now).saturating_add(1)).to_vec();
            let start = w.low.start(Front::RetryDue, &[]);
            if start >= upto {
                return Ok(Vec::new());
            }
            let due: Vec<Vec<u8>> = w
                .ks()
                .retry_due
                .range(start..upto)
                .take(limit)
                .map(|kv| kv.key().map(|k| k.to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(w.err("retry_due"))?;
            let until = sortable_time(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX));
            let mut b = w.batch();
            let mut ids = Vec::with_capacity(due.len());
            let mut leased = Vec::with_capacity(due.len());
            for k in &due {
                let id = &k[8..];
                b.remove(&w.ks().retry_due, k.clone());
                let mut nk = until.to_vec();
                nk.extend_from_slice(id);
                b.insert(&w.ks().retry_due, nk.clone(), Vec::new());
                b.insert(&w.ks().retry_id, id.to_vec(), until.to_vec());
                ids.push(String::from_utf8_lossy(id).into_owned());
                leased.push(nk);
            }
            b.commit().map_err(w.err("claim"))?;
            // The claimed keys were the front (all due, oldest first); their leases go back in.
            if let Some(last) = due.last() {
                w.low.removed_through(Front::RetryDue, &[], last);
            }
            for nk in &leased {
                w.low.inserted(Front::RetryDue, &[], nk);
            }
            Ok(ids)
        })
        .await
    }

    async fn retry_backlog(&self) -> Result<usize> {
        Ok(self.shared.backlog.load(Ordering::SeqCst))
    }

    async fn rate_reserve(&self, key: &str, per_second: f64, burst: u32, now: DateTime<Utc>) -> Result<Duration> {
        let key = key.to_string();
        self.write(move |w| {
            let now_ns = time_ns(now);
            let tat = w.ks().rates.get(key.as_bytes()).map_err(w.err("rates"))?.map(|v| unsortable(&v));
            let (tat, wait) = crate::gcra_reserve(tat, now_ns, per_second, burst);
            w.ks().rates.insert(key.as_bytes().to_vec(), sortable(tat).to_vec()).map_err(w.err("rates"))?;
            Ok(Duration::from_nanos(wait as u64))
        })
        .await
    }

    async fn record_health(&self, endpoint: &str, sample: &HealthSample) -> Result<()> {
        self.record_health_batch(endpoint, std::slice::from_ref(sample)).await
    }

    async fn record_health_batch(&self, endpoint: &str, samples: &[HealthSample]) -> Result<()> {
        // One job (one group commit) for the whole batch, encoded here, off the writer thread.
        let encoded = samples
            .iter()
            .map(|s| encode(s, "health", endpoint).map(|json| (s.at, json)))
            .collect::<Result<Vec<_>>>()?;
        let endpoint = endpoint.to_string();
        self.write(move |w| w.record_health(&endpoint, encoded)).await
    }

    async fn health_samples(&self, endpoint: &str, since: DateTime<Utc>) -> Result<Vec<HealthSample>> {
        let mut from = webhook_prefix(endpoint);
        from.extend_from_slice(&sortable_time(since));
        let mut to = endpoint.as_bytes().to_vec();
        to.push(1);
        self.shared
            .ks
            .health
            .range(from..to)
            .map(|kv| {
                let v = kv.value().map_err(self.err("health"))?;
                decode(&v, "health", endpoint)
            })
            .collect()
    }

    async fn get_breaker(&self, endpoint: &str) -> Result<Breaker> {
        match self.shared.ks.breakers.get(endpoint.as_bytes()).map_err(self.err("breakers"))? {
            Some(v) => decode(&v, "breakers", endpoint),
            None => Ok(Breaker::default()),
        }
    }

    async fn put_breaker(&self, endpoint: &str, breaker: &Breaker) -> Result<()> {
        let endpoint = endpoint.to_string();
        let value = if *breaker == Breaker::default() { None } else { Some(encode(breaker, "breakers", &endpoint)?) };
        self.write(move |w| match value {
            Some(v) => w.ks().breakers.insert(endpoint.as_bytes().to_vec(), v).map_err(w.err("breakers")),
            None => w.ks().breakers.remove(endpoint.as_bytes().to_vec()).map_err(w.err("breakers")),
        })
        .await
    }

    async fn update_breaker(
        &self,
        endpoint: &str,
        change: &(dyn for<'b> Fn(&'b mut Breaker) + Send + Sync),
    ) -> Result<(Breaker, Breaker)> {
        // `change` cannot travel to the writer thread: apply it here and write the result only
        // if the stored state is still the one it saw (compare-and-set); else run it again.
        loop {
            let before = self.get_breaker(endpoint).await?;
            let mut after = before.clone();
            change(&mut after);
            if after == before {
                // Nothing to write (the common case: a closed circuit admitting an attempt).
                // What was read may belong to a group whose fsync is still running; a crash
                // can only take back a breaker state nobody was answered about yet.
                return Ok((before, after));
            }
            let endpoint_s = endpoint.to_string();
            let (b2, a2) = (before.clone(), after.clone());
            let done = self
                .write(move |w| {
                    let current = match w.ks().breakers.get(endpoint_s.as_bytes()).map_err(w.err("breakers"))? {
                        Some(v) => decode(&v, "breakers", &endpoint_s)?,
                        None => Breaker::default(),
                    };
                    if current != b2 {
                        return Ok(false);
                    }
                    if a2 == Breaker::default() {
                        w.ks().breakers.remove(endpoint_s.as_bytes().to_vec()).map_err(w.err("breakers"))?;
                    } else {
                        let v = encode(&a2, "breakers", &endpoint_s)?;
                        w.ks().breakers.insert(endpoint_s.as_bytes().to_vec(), v).map_err(w.err("breakers"))?;
                    }
                    Ok(true)
                })
                .await?;
            if done {
                return Ok((before, after));
            }
        }
    }

    async fn lane_push(&self, lane: &str, id: &str) -> Result<bool> {
        let (lane, id) = (lane.to_string(), id.to_string());
        self.write(move |w| {
            let mut q = lane_ids(w.ks().lanes.get(lane.as_bytes()).map_err(w.err("lanes"))?, &lane)?;
            if !q.contains(&id) {
                q.push(id.clone());
                let v = encode(&q, "lanes", &lane)?;
                w.ks().lanes.insert(lane.as_bytes().to_vec(), v).map_err(w.err("lanes"))?;
            }
            Ok(q.first() == Some(&id))
        })
        .await
    }

    async fn lane_pop(&self, lane: &str, id: &str) -> Result<Option<String>> {
        let (lane, id) = (lane.to_string(), id.to_string());
        self.write(move |w| {
            let Some(v) = w.ks().lanes.get(lane.as_bytes()).map_err(w.err("lanes"))? else { return Ok(None) };
            let mut q: Vec<String> = decode(&v, "lanes", &lane)?;
            q.retain(|x| *x != id);
            if q.is_empty() {
                w.ks().lanes.remove(lane.as_bytes().to_vec()).map_err(w.err("lanes"))?;
            } else {
                let v = encode(&q, "lanes", &lane)?;
                w.ks().lanes.insert(lane.as_bytes().to_vec(), v).map_err(w.err("lanes"))?;
            }
            Ok(q.first().cloned())
        })
        .await
    }

    async fn context_merge(
        &self,
        tenant: &str,
        call_id: &str,
        values: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<usize> {
        let key = context_key(tenant, call_id);
        let label = format!("{tenant}/{call_id}");
        let values = values.clone();
        self.write(move |w| {
            let now = now_ms();
            let mut all: BTreeMap<String, String> = match w.ks().contexts.get(&key).map_err(w.err("contexts"))? {
                Some(v) if v.len() >= 8 && unsortable(&v) > now => decode(&v[8..], "contexts", &label)?,
                _ => BTreeMap::new(),
            };
            let mut refused = 0;
            for (k, v) in values {
                if all.contains_key(&k) || all.len() < hookmesh_core::context::MAX_NAMES_PER_CALL {
                    all.insert(k, v);
                } else {
                    refused += 1;
                }
            }
            let exp = sortable(now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64));
            let mut v = exp.to_vec();
            v.extend(encode(&all, "contexts", &label)?);
            let mut idx = exp.to_vec();
            idx.extend_from_slice(CONTEXT_MARK);
            idx.extend_from_slice(&key);
            let mut b = w.batch();
            b.insert(&w.ks().contexts, key.clone(), v);
            b.insert(&w.ks().seen_exp, idx.clone(), Vec::new());
            b.commit().map_err(w.err("contexts"))?;
            w.low.inserted(Front::SeenExp, &[], &idx);
            Ok(refused)
        })
        .await
    }

    async fn context_get(&self, tenant: &str, call_id: &str) -> Result<BTreeMap<String, String>> {
        let key = context_key(tenant, call_id);
        match self.shared.ks.contexts.get(&key).map_err(self.err("contexts"))? {
            Some(v) if v.len() >= 8 && unsortable(&v) > now_ms() => {
                decode(&v[8..], "contexts", &format!("{tenant}/{call_id}"))
            }
            _ => Ok(BTreeMap::new()),
        }
    }
}

#[async_trait]
impl DeliveryLog for EmbeddedStore {
    async fn put_delivery(&self, delivery: &Delivery) -> Result<()> {
        let d = Encoded::of(delivery)?;
        // The buffers come back to be freed here: a free on the thread that allocated is
        // cheaper than one from the writer thread.
        let d = self.write(move |w| w.put_delivery(&d, Put::Replace).map(|_| d)).await?;
        drop(d);
        Ok(())
    }

    async fn create_delivery(&self, delivery: &Delivery) -> Result<Option<Delivery>> {
        let d = Encoded::of(delivery)?;
        match self.write(move |w| w.put_delivery(&d, Put::Create)).await? {
            Some(existing) => Ok(Some(decode(&existing, "deliveries", &delivery.id)?)),
            None => Ok(None),
        }
    }

    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize> {
        let webhook = webhook_id.to_string();
        self.write(move |w| {
            let prefix = webhook_prefix(&webhook);
            let mut upto = prefix.clone();
            upto.extend_from_slice(&sortable_time(before));
            let start = w.low.start(Front::ByWebhook, &prefix);
            if start >= upto {
                return Ok(0);
            }
            let old: Vec<Vec<u8>> = w
                .ks()
                .by_webhook
                .range(start..upto)
                .take(limit)
                .map(|kv| kv.key().map(|k| k[prefix.len()..].to_vec()))
                .collect::<std::result::Result<_, _>>()
                .map_err(w.err("by_webhook"))?;
            let mut b = w.batch();
            for tk in &old {
                w.remove_delivery(&mut b, tk, &webhook)?;
            }
            b.commit().map_err(w.err("retention"))?;
            if let Some(last) = old.last() {
                let mut key = prefix.clone();
                key.extend_from_slice(last);
                w.low.removed_through(Front::ByWebhook, &prefix, &key);
            }
            Ok(old.len())
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        match self.shared.ks.deliveries.get(id.as_bytes()).map_err(self.err("deliveries"))? {
            Some(v) => Ok(Some(decode(&v, "deliveries", id)?)),
            None => Ok(None),
        }
    }

    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        let id = delivery_id.to_string();
        let json = encode(attempt, "attempts", delivery_id)?;
        self.write(move |w| {
            if !w.ks().deliveries.contains_key(id.as_bytes()).map_err(w.err("deliveries"))? {
                return Ok(());
            }
            let key = w.take_attempt_key(&id)?;
            w.ks().attempts.insert(key, json).map_err(w.err("attempts"))
        })
        .await
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()> {
        let d = Encoded::of(delivery)?;
        let json = encode(attempt, "attempts", &d.id)?;
        // The buffers come back to be freed here (see `put_delivery`).
        let back = self.write(move |w| w.put_delivery(&d, Put::WithAttempt(&json)).map(|_| (d, json))).await?;
        drop(back);
        Ok(())
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.shared
            .ks
            .attempts
            .prefix(attempt_prefix(delivery_id.as_bytes()))
            .map(|kv| {
                let v = kv.value().map_err(self.err("attempts"))?;
                decode(&v, "attempts", delivery_id)
            })
            .collect()
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let ks = &self.shared.ks;
        let upper = match &q.before {
            Some(b) => self.get_delivery(b).await?.map(|d| time_key(d.created_at, &d.id)),
            None => None,
        };
        let limit = if q.limit == 0 { 50 } else { q.limit };
        let (index, lower, upper, skip) = match &q.webhook_id {
            Some(w) => {
                let prefix = webhook_prefix(w);
                let upper = match upper {
                    Some(u) => webhook_key(w, &u),
                    None => {
                        let mut end = w.as_bytes().to_vec();
                        end.push(1);
                        end
                    }
                };
                let skip = prefix.len();
                (&ks.by_webhook, prefix, upper, skip)
            }
            None => (&ks.by_time, Vec::new(), upper.unwrap_or_else(|| vec![0xff; 9]), 0),
        };
        let mut out = Vec::new();
        for kv in index.range(lower..upper).rev() {
            let k = kv.key().map_err(self.err("delivery index"))?;
            let id = String::from_utf8_lossy(&k[skip + 8..]).into_owned();
            let Some(d) = self.get_delivery(&id).await? else { continue };
            if q.matches(&d) {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expired call contexts leave the engine (not only the reads): the writer's sweep removes
    /// them beside expired dedup marks, and leaves a context renewed since its index entry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_removes_expired_contexts_and_keeps_renewed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Retention::default()).unwrap();
        let values = BTreeMap::from([("lead_id".to_string(), "L-1".to_string())]);
        let short = Duration::from_millis(50);
        store.context_merge("t1", "gone", &values, short).await.unwrap();
        store.context_merge("t1", "renewed", &values, short).await.unwrap();
        store.context_merge("t1", "renewed", &values, Duration::from_secs(3600)).await.unwrap();
        store.mark_seen("evt-1", short).await.unwrap();
        let gone = context_key("t1", "gone");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.shared.ks.contexts.get(&gone).unwrap().is_some()
            || store.shared.ks.seen.get(b"evt-1").unwrap().is_some()
        {
            assert!(std::time::Instant::now() < deadline, "the sweep never removed the expired context and mark");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(store.shared.ks.contexts.get(context_key("t1", "renewed")).unwrap().is_some());
        assert_eq!(store.context_get("t1", "renewed").await.unwrap(), values);
    }
}
