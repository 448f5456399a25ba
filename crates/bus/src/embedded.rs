//! The durable embedded bus of `hookmesh standalone`: a partitioned log per topic with keys,
//! consumer groups with committed offsets, the compacted config topic and the dead-letter
//! topic, kept in one directory on the embedded LSM engine fjall (the choice is measured in
//! `hookmesh_store::embedded`). The semantics are the in-memory bus's (the conformance suite
//! runs on both and on Kafka), plus durability.
//!
//! # What it guarantees
//! - **A publish answered OK is on disk**: [`Bus::publish`] answers only after the journal
//!   holding the record was fsynced. One writer thread appends every record and shares one
//!   fsync among all publishes that arrived meanwhile (group commit); a `publish_batch` is
//!   appended atomically. It survives SIGKILL and power loss. Records are encoded by the
//!   publishing task; the writer thread only appends, fsyncs and answers, and the journal is
//!   flushed to the OS once per group (`manual_journal_persist`), not after every append.
//! - Consumers see a record only once it is durable (never one that a crash could take back).
//! - Records with one key go to one partition (the same function as Kafka's producer here),
//!   in publish order; offsets grow per partition and are never reused, across restarts too.
//! - A consumer group resumes from its commits, across restarts. [`Consumer::commit`] takes
//!   effect at once in the process and is written and fsynced by the writer thread with its
//!   next group commit (at the latest a second later): after a crash a group may resume
//!   slightly earlier and see records again (at-least-once, as with Kafka's asynchronous
//!   commits); a commit is never lost once the next publish was answered.
//!   One consumer per group is active at a time, as in memory: a new subscription fences the
//!   older one.
//! - **Reclaiming**: records of a non-compacted topic are deleted once every group of the
//!   topic has committed past them (the engine's compactions return the space). Compacted
//!   topics keep the newest record of each key (tombstones included): an older record of the
//!   key is deleted when a newer one is appended, so reading the config topic from the start
//!   costs one record per live key. Besides, every second the writer thread deletes records of
//!   non-compacted topics older than the retention ([`DEFAULT_RETENTION`], 7 days, as Kafka's
//!   `retention.ms`), read or not: this bounds topics nobody consumes (the DLQ). Offsets are never reused after a deletion.
//! - **One process per directory**, a `FORMAT` file with the layout version
//!   (`hookmesh-bus 1`) that a binary reading another version refuses naming the file, and a
//!   damaged directory is an error naming it, never a panic.

use crate::{Bus, BusError, Consumer, Message, Record, Result, TopicSpec};
use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The layout this binary reads and writes.
pub const FORMAT: &str = "hookmesh-bus 1";
/// Most publish jobs applied under one fsync.
const GROUP_MAX: usize = 4096;
/// How long records of non-compacted topics are kept at most (as Kafka's default).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the retention sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The durable embedded bus; cheap to clone (one shared engine).
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: Database,
    /// topic id (u32 BE) ‖ partition (u32 BE) ‖ offset (u64 BE) → encoded record
    log: Keyspace,
    /// `topic/<name>` → spec; `end/<topic id ‖ partition>` → next offset (i64 BE);
    /// `group/<topic id><group>` → committed offsets (JSON); `latest/<topic id><key>` →
    /// partition ‖ offset of the key's newest record (compacted topics).
    meta: Keyspace,
    topics: Arc<RwLock<HashMap<String, Arc<Topic>>>>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Topic {
    id: u32,
    name: Arc<str>,
    compacted: bool,
    partitions: Vec<Partition>,
    appended: Notify,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

struct Partition {
    /// Next offset to append (the writer thread's).
    next: AtomicI64,
    /// Everything below is durable and visible to consumers.
    durable_end: AtomicI64,
    /// Everything below was reclaimed.
    base: AtomicI64,
}

struct Group {
    /// Next offset to read, per partition.
    committed: Mutex<Vec<i64>>,
    generation: AtomicU64,
    /// Committed since the writer last wrote the commits.
    dirty: std::sync::atomic::AtomicBool,
}

struct Job {
    topic: Arc<Topic>,
    /// The records, encoded by the publishing task (off the writer thread).
    records: Vec<Encoded>,
    /// The answer, and the records back, to be freed by the publishing task (a free on the
    /// thread that allocated is cheaper than one from the writer thread).
    reply: tokio::sync::oneshot::Sender<Answer>,
}

/// Where each record went (partition, offset), and the records themselves.
type Answer = (Result<Vec<(i32, i64)>>, Vec<Encoded>);

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSpec {
    id: u32,
    partitions: u32,
    compacted: bool,
}

fn log_key(topic: u32, partition: i32, offset: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&topic.to_be_bytes());
    k[4..8].copy_from_slice(&(partition as u32).to_be_bytes());
    k[8..].copy_from_slice(&(offset as u64).to_be_bytes());
    k
}

fn key_offset(k: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&k[8..16]);
    u64::from_be_bytes(a) as i64
}

fn end_key(topic: u32, partition: i32) -> Vec<u8> {
    let mut k = b"end/".to_vec();
    k.extend_from_slice(&topic.to_be_bytes());
    k.extend_from_slice(&(partition as u32).to_be_bytes());
    k
}

fn group_key(topic: u32, group: &str) -> Vec<u8> {
    let mut k = b"group/".to_vec();
    k.extend_from_slice(&topic.to_be_bytes());
    k.extend_from_slice(group.as_bytes());
    k
}

fn latest_key(topic: u32, key: &str) -> Vec<u8> {
    let mut k = b"latest/".to_vec();
    k.extend_from_slice(&topic.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A record as the writer thread appends it: its partition, its key (for compaction) and its
/// stored form.
struct Encoded {
    partition: i32,
    key: String,
    value: Vec<u8>,
}

/// Record encoding: timestamp (i64 BE), key, payload flag and bytes, headers; lengths u32 BE.
fn encode(ts: i64, r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + r.key.len() + r.payload.as_ref().map_or(0, |p| p.len()));
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    out.extend_from_slice(&ts.to_be_bytes());
    put(&mut out, r.key.as_bytes());
    match &r.payload {
        Some(p) => {
            out.push(1);
            put(&mut out, p);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
    for (name, value) in &r.headers {
        put(&mut out, name.as_bytes());
        put(&mut out, value);
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn decode(topic: &Arc<str>, partition: i32, offset: i64, v: &[u8]) -> Option<Message> {
    let mut c = Cursor(v);
    let ts = i64::from_be_bytes(c.take(8)?.try_into().ok()?);
    let key = String::from_utf8(c.bytes()?.to_vec()).ok()?;
    let payload = match c.take(1)?[0] {
        1 => Some(Bytes::copy_from_slice(c.bytes()?)),
        _ => None,
    };
    let n = c.u32()?;
    let mut headers = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let name = String::from_utf8(c.bytes()?.to_vec()).ok()?;
        headers.push((name, c.bytes()?.to_vec()));
    }
    Some(Message { topic: topic.clone(), partition, offset, key, payload, headers, timestamp_ms: ts })
}

/// Options of every keyspace: writes are made durable by the writer thread's one
/// `persist(SyncAll)` per group, so the engine must not also flush its journal buffer to the OS
/// after each write (a `write` syscall per write, most of the journal's cost). A keyspace keeps
/// the options it was created with.
fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().manual_journal_persist(true)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn check_format(dir: &Path) -> std::result::Result<(), String> {
    let file = dir.join("FORMAT");
    match std::fs::read(&file) {
        Ok(bytes) => {
            let found = String::from_utf8_lossy(&bytes).trim().to_string();
            if found != FORMAT {
                return Err(format!(
                    "{}: the data is in format `{found}`, this binary reads `{FORMAT}` only (a newer or older hookmesh wrote it)",
                    file.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
                return Err(format!(
                    "{}: missing, but {} holds other files: not a hookmesh data directory, or damaged",
                    file.display(),
                    dir.display()
                ));
            }
            let tmp = dir.join("FORMAT.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut f, format!("{FORMAT}\n").as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &file)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| format!("{}: cannot write: {e}", file.display()))
        }
        Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
    }
}

impl EmbeddedBus {
    /// Opens (creating when missing) the bus in `dir`, keeping records for
    /// [`DEFAULT_RETENTION`].
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedBus> {
        Self::open_with_retention(dir, DEFAULT_RETENTION)
    }

    /// Opens the bus in `dir`; records of non-compacted topics older than `retention` are
    /// deleted whether or not every group has read them (Kafka's `retention.ms`).
    pub fn open_with_retention(dir: impl AsRef<Path>, retention: Duration) -> Result<EmbeddedBus> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| BusError::Backend(format!("embedded bus {}: cannot create: {e}", dir.display())))?;
        check_format(&dir).map_err(BusError::Backend)?;
        let engine = dir.join("engine");
        let opened = std::panic::catch_unwind(|| -> std::result::Result<_, fjall::Error> {
            let db = Database::builder(&engine).manual_journal_persist(true).open()?;
            let log = db.keyspace("log", keyspace_options)?;
            let meta = db.keyspace("meta", keyspace_options)?;
            Ok((db, log, meta))
        });
        let (db, log, meta) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(fjall::Error::Locked)) => {
                return Err(BusError::Backend(format!(
                    "embedded bus {}: in use by another process (one process per data directory)",
                    dir.display()
                )))
            }
            Ok(Err(e)) => {
                return Err(BusError::Backend(format!("embedded bus {}: cannot open: {e}", engine.display())))
            }
            Err(_) => {
                return Err(BusError::Backend(format!(
                    "embedded bus {}: the engine failed while reading its files (damaged?)",
                    engine.display()
                )))
            }
        };
        let inner = Inner {
            dir,
            db,
            log,
            meta,
            topics: Arc::new(RwLock::new(HashMap::new())),
            jobs: Mutex::new(None),
            writer: Mutex::new(None),
        };
        inner.load()?;
        let inner = Arc::new(inner);
        let (tx, rx) = mpsc::channel::<Job>();
        let writer = Writer {
            db: inner.db.clone(),
            log: inner.log.clone(),
            meta: inner.meta.clone(),
            dir: inner.dir.clone(),
            topics: inner.topics.clone(),
            retention,
        };
        let thread = std::thread::Builder::new()
            .name("hm-bus-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| BusError::Backend(format!("embedded bus: writer thread: {e}")))?;
        *inner.jobs.lock() = Some(tx);
        *inner.writer.lock() = Some(thread);
        Ok(EmbeddedBus { inner })
    }

    /// The directory this bus lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes the engine's files take on disk.
    pub fn disk_space(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner.topics.read().get(name).cloned().ok_or_else(|| BusError::UnknownTopic(name.to_string()))
    }
}

impl Inner {
    fn err(&self, what: &str) -> impl Fn(fjall::Error) -> BusError + '_ {
        let what = what.to_string();
        move |e| BusError::Backend(format!("embedded bus {}: {what}: {e}", self.dir.display()))
    }

    fn corrupt(&self, what: String) -> BusError {
        BusError::Backend(format!("embedded bus {}: unreadable {what}", self.dir.display()))
    }

    /// Reads the topics, their ends and their groups.
    fn load(&self) -> Result<()> {
        let mut topics = self.topics.write();
        for kv in self.meta.prefix(b"topic/") {
            let (k, v) = kv.into_inner().map_err(self.err("topics"))?;
            let name = String::from_utf8_lossy(&k[6..]).into_owned();
            let spec: StoredSpec =
                serde_json::from_slice(&v).map_err(|e| self.corrupt(format!("topic `{name}`: {e}")))?;
            let t = self.new_topic(&name, &spec)?;
            for kv in self.meta.prefix(group_key(spec.id, "")) {
                let (k, v) = kv.into_inner().map_err(self.err("groups"))?;
                let group = String::from_utf8_lossy(&k[10..]).into_owned();
                let mut committed: Vec<i64> = serde_json::from_slice(&v)
                    .map_err(|e| self.corrupt(format!("commits of group `{group}` on `{name}`: {e}")))?;
                committed.resize(t.partitions.len(), 0);
                t.groups.lock().insert(
                    group,
                    Arc::new(Group { committed: Mutex::new(committed), generation: 0.into(), dirty: false.into() }),
                );
            }
            topics.insert(name, t);
        }
        Ok(())
    }

    fn new_topic(&self, name: &str, spec: &StoredSpec) -> Result<Arc<Topic>> {
        let mut partitions = Vec::with_capacity(spec.partitions as usize);
        for p in 0..spec.partitions as i32 {
            let stored_end = match self.meta.get(end_key(spec.id, p)).map_err(self.err("ends"))? {
                Some(v) => {
                    i64::from_be_bytes(v.as_ref().try_into().map_err(|_| self.corrupt(format!("end of {name}/{p}")))?)
                }
                None => 0,
            };
            let range = log_key(spec.id, p, 0)..log_key(spec.id, p + 1, 0);
            let last = match self.log.range(range.clone()).next_back() {
                Some(kv) => key_offset(&kv.key().map_err(self.err("log"))?) + 1,
                None => 0,
            };
            let end = stored_end.max(last);
            let base = match self.log.range(range).next() {
                Some(kv) => key_offset(&kv.key().map_err(self.err("log"))?),
                None => end,
            };
            partitions.push(Partition { next: end.into(), durable_end: end.into(), base: base.into() });
        }
        Ok(Arc::new(Topic {
            id: spec.id,
            name: Arc::from(name),
            compacted: spec.compacted,
            partitions,
            appended: Notify::new(),
            groups: Mutex::new(HashMap::new()),
        }))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.jobs.lock().take();
        if let Some(t) = self.writer.lock().take() {
            let _ = t.join();
        }
        let _ = self.db.persist(PersistMode::SyncAll);
    }
}

/// The writer thread's handles.
struct Writer {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    dir: PathBuf,
    topics: Arc<RwLock<HashMap<String, Arc<Topic>>>>,
    retention: Duration,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Job>) {
        let mut last_sweep = Instant::now();
        loop {
            let first = match rx.recv_timeout(SWEEP_EVERY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.write_commits();
                    self.sweep();
                    let _ = self.db.persist(PersistMode::SyncAll);
                    last_sweep = Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.write_commits();
                    let _ = self.db.persist(PersistMode::SyncAll);
                    break;
                }
            };
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
            let mut jobs = vec![first];
            while jobs.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.append(jobs);
        }
    }

    /// Writes the commits of every group committed to since the last call, then deletes the
    /// records of non-compacted topics that every group has committed (in this order, so a
    /// deletion never outlives its commit).
    fn write_commits(&self) {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        for t in topics {
            let groups: Vec<(String, Arc<Group>)> =
                t.groups.lock().iter().map(|(n, g)| (n.clone(), g.clone())).collect();
            let mut any = false;
            for (name, g) in &groups {
                if g.dirty.swap(false, Ordering::SeqCst) {
                    any = true;
                    let value = serde_json::to_vec(&*g.committed.lock()).unwrap_or_default();
                    if let Err(e) = self.meta.insert(group_key(t.id, name), value) {
                        g.dirty.store(true, Ordering::SeqCst);
                        tracing::warn!(error = %e, dir = %self.dir.display(), "embedded bus: writing commits failed");
                    }
                }
            }
            if !any || t.compacted {
                continue;
            }
            for (p, part) in t.partitions.iter().enumerate() {
                let min = groups.iter().map(|(_, g)| g.committed.lock()[p]).min().unwrap_or(0);
                let base = part.base.load(Ordering::SeqCst);
                if min <= base {
                    continue;
                }
                // Offsets of a non-compacted topic are dense from the base up (only the front is
                // ever deleted): their keys need no reading.
                let mut b = self.db.batch();
                for offset in base..min {
                    b.remove(&self.log, log_key(t.id, p as i32, offset).to_vec());
                }
                match b.commit() {
                    Ok(()) => {
                        part.base.fetch_max(min, Ordering::SeqCst);
                    }
                    Err(e) => tracing::warn!(error = %e, dir = %self.dir.display(), "embedded bus: reclaiming failed"),
                }
            }
        }
    }

    /// Deletes the records of non-compacted topics older than the retention (oldest first, up
    /// to 10,000 per partition per sweep). Not fsynced on its own.
    fn sweep(&self) {
        let cutoff = now_ms().saturating_sub(self.retention.as_millis().min(i64::MAX as u128) as i64);
        let topics: Vec<Arc<Topic>> = self.topics.read().values().filter(|t| !t.compacted).cloned().collect();
        for t in topics {
            for (p, part) in t.partitions.iter().enumerate() {
                let base = part.base.load(Ordering::SeqCst);
                let end = part.durable_end.load(Ordering::SeqCst);
                if base >= end {
                    continue;
                }
                let mut b = self.db.batch();
                let mut new_base = base;
                for kv in self.log.range(log_key(t.id, p as i32, base)..log_key(t.id, p as i32, end)).take(10_000) {
                    let Ok((k, v)) = kv.into_inner() else { break };
                    let ts = v.get(..8).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes"))).unwrap_or(0);
                    if ts >= cutoff {
                        break;
                    }
                    b.remove(&self.log, k.to_vec());
                    new_base = key_offset(&k) + 1;
                }
                if new_base > base {
                    match b.commit() {
                        Ok(()) => {
                            part.base.fetch_max(new_base, Ordering::SeqCst);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, dir = %self.dir.display(), "embedded bus: retention sweep failed")
                        }
                    }
                }
            }
        }
    }

    fn append(&self, jobs: Vec<Job>) {
        let (db, log, meta) = (&self.db, &self.log, &self.meta);
        let err = |what: &str, e: fjall::Error| {
            BusError::Backend(format!("embedded bus {}: {what}: {e}", self.dir.display()))
        };
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            let t = job.topic.clone();
            let mut b = db.batch();
            let mut out = Vec::with_capacity(job.records.len());
            let mut touched: Vec<(i32, i64)> = Vec::new();
            // The keys of this batch's records so far (compacted topics).
            let mut keys: Vec<&str> = Vec::new();
            for Encoded { partition, key, value } in &job.records {
                let p = *partition;
                let part = &t.partitions[p as usize];
                let offset = part.next.load(Ordering::SeqCst) + out.iter().filter(|(q, _)| *q == p).count() as i64;
                b.insert(log, log_key(t.id, p, offset).to_vec(), &value[..]);
                if t.compacted {
                    let lk = latest_key(t.id, key);
                    // The newest record of the key replaces the previous one (which may be in
                    // this very batch: then it is overwritten by the later `latest`).
                    let previous = out
                        .iter()
                        .zip(&keys)
                        .rev()
                        .find(|(_, k)| **k == key.as_str())
                        .map(|((q, o), _)| (*q, *o))
                        .or_else(|| {
                            meta.get(&lk).ok().flatten().and_then(|v| {
                                let v = v.as_ref();
                                (v.len() == 12).then(|| {
                                    let q = u32::from_be_bytes(v[..4].try_into().expect("4")) as i32;
                                    let o = i64::from_be_bytes(v[4..].try_into().expect("8"));
                                    (q, o)
                                })
                            })
                        });
                    if let Some((q, o)) = previous {
                        b.remove(log, log_key(t.id, q, o).to_vec());
                    }
                    let mut v = (p as u32).to_be_bytes().to_vec();
                    v.extend_from_slice(&offset.to_be_bytes());
                    b.insert(meta, lk, v);
                    keys.push(key.as_str());
                }
                out.push((p, offset));
                match touched.iter_mut().find(|(q, _)| *q == p) {
                    Some(e) => e.1 = offset + 1,
                    None => touched.push((p, offset + 1)),
                }
            }
            for (p, end) in &touched {
                b.insert(meta, end_key(t.id, *p), end.to_be_bytes().to_vec());
            }
            let res = b.commit().map_err(|e| err("append", e));
            if res.is_ok() {
                for (p, end) in &touched {
                    t.partitions[*p as usize].next.store(*end, Ordering::SeqCst);
                }
            }
            done.push((job, res.map(|_| (out, touched))));
        }
        self.write_commits();
        let synced = db.persist(PersistMode::SyncAll).map_err(|e| err("fsync", e));
        for (job, res) in done {
            let res = synced.clone().and(res);
            if let Ok((_, touched)) = &res {
                for (p, end) in touched {
                    job.topic.partitions[*p as usize].durable_end.fetch_max(*end, Ordering::SeqCst);
                }
                job.topic.appended.notify_waiters();
            }
            let _ = job.reply.send((res.map(|(out, _)| out), job.records));
        }
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()> {
        let inner = &self.inner;
        let mut topics = inner.topics.write();
        if topics.contains_key(&spec.name) {
            return Ok(());
        }
        let id = topics.values().map(|t| t.id + 1).max().unwrap_or(0);
        let stored = StoredSpec { id, partitions: spec.partitions.max(1), compacted: spec.compacted };
        let mut key = b"topic/".to_vec();
        key.extend_from_slice(spec.name.as_bytes());
        let value = serde_json::to_vec(&stored).map_err(|e| BusError::Backend(e.to_string()))?;
        inner.meta.insert(key, value).map_err(inner.err("create topic"))?;
        inner.db.persist(PersistMode::SyncAll).map_err(inner.err("fsync"))?;
        let t = inner.new_topic(&spec.name, &stored)?;
        topics.insert(spec.name.clone(), t);
        Ok(())
    }

    async fn publish(&self, topic: &str, record: Record) -> Result<(i32, i64)> {
        let mut out = self.publish_batch(topic, vec![record]).await?;
        out.pop().ok_or_else(|| BusError::Backend("embedded bus: empty append".into()))
    }

    async fn publish_batch(&self, topic: &str, records: Vec<Record>) -> Result<Vec<(i32, i64)>> {
        let t = self.topic(topic)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let n = t.partitions.len() as u32;
        let records = records
            .into_iter()
            .map(|r| Encoded { partition: crate::partition_for(&r.key, n), value: encode(now, &r), key: r.key })
            .collect();
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = match self.inner.jobs.lock().as_ref() {
            Some(tx) => tx.send(Job { topic: t, records, reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(BusError::Closed);
        }
        let (res, records) = rx.await.map_err(|_| BusError::Closed)?;
        drop(records);
        res
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>> {
        let t = self.topic(topic)?;
        let g = t
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert_with(|| {
                Arc::new(Group {
                    committed: Mutex::new(vec![0; t.partitions.len()]),
                    generation: AtomicU64::new(0),
                    dirty: false.into(),
                })
            })
            .clone();
        let generation = g.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let positions = g.committed.lock().clone();
        Ok(Box::new(EmbeddedConsumer::new(self.inner.clone(), t, Some((group.to_string(), g, generation)), positions)))
    }

    async fn reader(&self, topic: &str) -> Result<Box<dyn Consumer>> {
        let t = self.topic(topic)?;
        let positions = t.partitions.iter().map(|p| p.base.load(Ordering::SeqCst)).collect();
        Ok(Box::new(EmbeddedConsumer::new(self.inner.clone(), t, None, positions)))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let t = self.topic(topic)?;
        Ok(t.partitions.iter().map(|p| p.durable_end.load(Ordering::SeqCst)).collect())
    }
}

/// Records a consumer reads from one partition with one engine iterator (opening an iterator
/// over the engine's memtables and tables costs more than reading a record).
const READ_AHEAD: usize = 64;

struct EmbeddedConsumer {
    inner: Arc<Inner>,
    topic: Arc<Topic>,
    group: Option<(String, Arc<Group>, u64)>,
    /// Per partition, the offset after the last record handed out.
    positions: Vec<i64>,
    /// Per partition, the offset after the last record read (into `ahead`).
    read: Vec<i64>,
    /// Records read but not handed out yet, in order.
    ahead: VecDeque<Message>,
    next_partition: usize,
}

impl EmbeddedConsumer {
    fn new(
        inner: Arc<Inner>,
        topic: Arc<Topic>,
        group: Option<(String, Arc<Group>, u64)>,
        positions: Vec<i64>,
    ) -> Self {
        let read = positions.clone();
        EmbeddedConsumer { inner, topic, group, positions, read, ahead: VecDeque::new(), next_partition: 0 }
    }

    fn try_next(&mut self) -> Result<Option<Message>> {
        if self.ahead.is_empty() {
            self.read_ahead()?;
        }
        let Some(msg) = self.ahead.pop_front() else { return Ok(None) };
        self.positions[msg.partition as usize] = msg.offset + 1;
        Ok(Some(msg))
    }

    /// Reads up to [`READ_AHEAD`] records of the next partition (round robin) that has any.
    fn read_ahead(&mut self) -> Result<()> {
        let t = &self.topic;
        let n = t.partitions.len();
        for i in 0..n {
            let p = (self.next_partition + i) % n;
            let part = &t.partitions[p];
            let end = part.durable_end.load(Ordering::SeqCst);
            let pos = self.read[p].max(part.base.load(Ordering::SeqCst));
            if pos >= end {
                continue;
            }
            let range = log_key(t.id, p as i32, pos)..log_key(t.id, p as i32, end);
            for kv in self.inner.log.range(range).take(READ_AHEAD) {
                let (k, v) = kv.into_inner().map_err(self.inner.err("read"))?;
                let offset = key_offset(&k);
                let msg = decode(&t.name, p as i32, offset, &v)
                    .ok_or_else(|| self.inner.corrupt(format!("record {}/{p}/{offset}", t.name)))?;
                self.read[p] = offset + 1;
                self.ahead.push_back(msg);
            }
            if self.ahead.is_empty() {
                // Everything up to the durable end was reclaimed or compacted away.
                self.read[p] = end;
                self.positions[p] = self.positions[p].max(end);
                continue;
            }
            self.next_partition = (p + 1) % n;
            return Ok(());
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn recv(&mut self) -> Result<Message> {
        let topic = self.topic.clone();
        loop {
            let appended = topic.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some(m) = self.try_next()? {
                return Ok(m);
            }
            appended.await;
        }
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<()> {
        let Some((_, group, generation)) = &self.group else { return Ok(()) };
        if group.generation.load(Ordering::SeqCst) != *generation {
            // A newer subscription of the group owns the partitions now (we were "fenced").
            return Ok(());
        }
        let mut committed = group.committed.lock();
        let slot = committed
            .get_mut(partition as usize)
            .ok_or_else(|| BusError::Backend(format!("no partition {partition}")))?;
        if offset >= *slot {
            *slot = offset + 1;
            // Written (and the records every group is past reclaimed) by the writer thread
            // with its next group commit, within a second.
            group.dirty.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    fn positions(&self) -> Vec<i64> {
        self.positions.clone()
    }
}
