//! Redis [`Store`](crate::Store): the production backend, shared by every dispatcher and API
//! instance, on a single Redis (or a primary with replicas) or on Redis Cluster.
//!
//! One connection handle carries every call: a [`redis::aio::ConnectionManager`] (multiplexed,
//! reconnecting) on a single Redis, a [`redis::cluster_async::ClusterConnection`] (one
//! multiplexed connection per node, following slot moves) on Redis Cluster; both sit behind
//! one private enum that implements [`redis::aio::ConnectionLike`], so every operation is
//! written once. [`RedisStore::connect`] picks the kind from the URL: `redis://host:port/db`
//! for one server, `redis+cluster://host1:7000,host2:7001` for a cluster (any reachable nodes;
//! the rest of the topology is discovered). Commands that go together are pipelined, and
//! everything that must be atomic runs as one Lua script. Errors come back as
//! [`StoreError::Backend`] naming the operation and the cause; unreadable stored values as
//! [`StoreError::Corrupt`].
//!
//! # Key layout
//! Every key starts with a prefix `p` (default [`DEFAULT_PREFIX`], `hm`), so several
//! installations (or test runs) can share one Redis. Below, `<x>` is a placeholder and braces
//! are literal: they are Redis Cluster hash tags, so only the part between them picks the
//! slot. Every hot-state key carries one; the prefix may not contain braces.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:seen:{<key>}` | string | dedup mark, `SET 1 NX PX ttl` |
//! | `<p>:{retries:<n>}` | sorted set | retry bucket `n` (0 ≤ n < [`RedisStore::retry_buckets`]): the scheduled retries whose id hashes to it, scored by due unix ms |
//! | `<p>:{retries}:buckets` | string | the bucket count the installation uses (see [`RedisStore::with_retry_buckets`]) |
//! | `<p>:rl:{<key>}` | string | rate limit: theoretical arrival time, unix `seconds.nanos` |
//! | `<p>:h:{<endpoint>}` | sorted set | health samples scored by unix ms; member `<at, fixed width>\|<unique>\|<json>` |
//! | `<p>:cb:{<endpoint>}` | string | circuit breaker JSON, only while it is not closed |
//! | `<p>:lane:{<lane>}` | list | a per-call lane's delivery ids, head first |
//! | `<p>:ctx:{<len>:<tenant>/<call>}` | hash | a call's context (`len`: the tenant id's bytes): name → value, `PEXPIRE` ttl on every merge |
//! | `<p>:d:<id>` | hash | delivery (single Redis only): `json` (the [`Delivery`]), `created` (first trigger, unix ms), `created_at` (first trigger, RFC 3339 to the nanosecond), `webhook`, `tenant` |
//! | `<p>:a:<id>` | list | the delivery's attempts, JSON, oldest first (single Redis only) |
//! | `<p>:idx:all` | sorted set | delivery ids scored by `created` (single Redis only) |
//! | `<p>:idx:wh:<webhook_id>` | sorted set | the webhook's delivery ids scored by `created` (single Redis only) |
//! | `<p>:idx:t:<tenant_id>` | sorted set | the tenant's delivery ids scored by `created` (single Redis only) |
//!
//! Before Redis Cluster support the hot-state keys were untagged (`<p>:seen:<key>`, `<p>:rl:<key>`,
//! `<p>:h:<endpoint>`, `<p>:cb:<endpoint>`, `<p>:lane:<lane>`) and the retry schedule was the
//! one sorted set `<p>:retries`, which [`RedisStore::with_retry_buckets`] empties into the
//! buckets at start.
//!
//! # Redis Cluster
//! - Every hot-state command and script names exactly one key, so it runs in one slot
//!   whatever the ids contain; the tags decide which keys share a slot: an endpoint's health
//!   samples and breaker (`{<endpoint>}`) live together, and each retry bucket is a slot of
//!   its own, so the schedule spreads over the cluster's nodes instead of one key taking
//!   every retry. An id with a `}` in it shortens its tag, which only changes its slot.
//! - The delivery log's scripts touch the three indexes and the evicted deliveries' keys
//!   together, which no slot layout can keep in one slot: on a cluster the log lives in
//!   PostgreSQL ([`crate::Split`]) and this store's [`DeliveryLog`] methods refuse with a
//!   backend error that says so. `hookmesh` refuses a cluster without `postgres` at start.
//!
//! # The retry schedule in buckets
//! [`HotState::schedule_retry`] and [`HotState::cancel_retry`] go to bucket
//! `fnv1a(id) % buckets` (64-bit FNV-1a: stable across processes, versions and platforms):
//! one `ZADD` or `ZREM`, as with one key. [`HotState::claim_due`] takes two round trips:
//! 1. a read of each bucket's due head (`ZRANGEBYSCORE … WITHSCORES LIMIT 0 limit`, every
//!    bucket at once: pipelined on a single Redis, concurrent on a cluster); with nothing due
//!    it stops here;
//! 2. the `limit` oldest due ids over all buckets (by due time, then id) give each bucket a
//!    quota, and one claim script per bucket with a quota (again all at once) claims that
//!    many of the bucket's due ids *as they are at that moment*, moving them to
//!    `now + lease`. A concurrent claimant that took some in between only makes the script
//!    take the next due ones of that bucket; the claimed ids come back ordered by due time.
//!
//! Each caller walks the buckets from its own rotating starting bucket, so the claims of
//! several dispatchers reach different buckets (and nodes) first; the quotas keep a single
//! claimant in exact due order. [`HotState::retry_backlog`] sums the buckets' `ZCARD`s in one
//! round trip. The bucket count is part of the layout: every process of an installation
//! must use the same one, and it may be changed only while the schedule is empty (a retry
//! left in a bucket past the new count would never be claimed again), which
//! [`RedisStore::with_retry_buckets`] checks at start.
//!
//! # Cost in commands
//! As `INFO commandstats` counts them (commands inside a script included), with `N` retry
//! buckets; `the_bucketed_schedule_costs_what_the_module_doc_says` and
//! `hot_state_costs_what_the_module_doc_says` in the conformance tests check every row.
//!
//! | operation | round trips | commands |
//! |---|---|---|
//! | `mark_seen`, `is_seen` | 1 | 1: `SET NX PX`, `EXISTS` |
//! | `schedule_retry`, `cancel_retry` | 1 | 1: `ZADD`, `ZREM` on the id's bucket |
//! | `claim_due`, nothing due | 1 | `N` × `ZRANGEBYSCORE` |
//! | `claim_due` from `k` buckets | 2 | `N + k` × `ZRANGEBYSCORE`, `k` × `EVALSHA`, `k` × `ZADD` (one per 500 ids; the single-key script of earlier versions did one `ZADD` per id) |
//! | `claim_due` with one bucket | 1 | 2 + one `ZADD` per 500 ids: `EVALSHA`, `ZRANGEBYSCORE` (no read of heads to compare) |
//! | `retry_backlog` | 1 | `N` × `ZCARD` |
//! | `rate_reserve` | 1 | 3: `EVALSHA`, `GET`, `SET` |
//! | `record_health` | 1 | 6: `EVALSHA`, `ZADD`, `ZRANGE`, `ZREMRANGEBYSCORE`, `ZREMRANGEBYRANK`, `PEXPIRE` |
//! | `get_breaker` | 1 | 1: `GET` |
//! | `update_breaker` (a change, no race) | 2 | 4: `GET`, then `EVALSHA`, `GET`, `SET` or `DEL` |
//! | `lane_push` | 1 | 4–5: `EVALSHA`, `LPOS`, `RPUSH` (when new), `PEXPIRE`, `LINDEX` |
//! | `lane_pop` | 1 | 2: `LREM`, `LINDEX` (pipelined) |
//!
//! # What it guarantees, and how
//! - `created`, `created_at`, `webhook` and `tenant` are written with `HSETNX` / only when the
//!   hash is new, so a delivery's first trigger never changes; [`DeliveryLog::get_delivery`] puts
//!   it back into `created_at` and `request.first_trigger_at` whatever a later put carried.
//! - A put writes the hash, adds the id to the three indexes (`ZADD NX`) and applies
//!   retention in one script: per-webhook cap (`ZPOPMIN` of the excess) and max age
//!   (`ZRANGEBYSCORE idx:all` below the cutoff), each evicted delivery losing its hash,
//!   attempts and index entries. At most [`EVICT_BATCH`] of each per put; later puts take the
//!   rest. The hash and attempts also expire on their own at `created + max_age`, and each
//!   index at `max(now, created) + max_age` of its latest put, so a quiet installation leaks
//!   nothing. The ids are ordered by `(created ms, id)`: deliveries within one millisecond
//!   are ordered by id.
//! - [`DeliveryLog::add_attempt`] appends only while the delivery exists (a script checks and
//!   appends), and gives the list the hash's remaining lifetime.
//! - Each bucket's claim is one script: its due ids (oldest due first, ties by id) are moved
//!   to `now + lease` in the same step, and an id lives in one bucket only, so two claimants
//!   never get the same id while the lease holds, and an id nobody reschedules or cancels is
//!   due again when its lease runs out.
//! - Due times are rounded up to the millisecond and `now` down, so nothing is claimed early.

use crate::{DeliveryLog, DeliveryQuery, HotState, Result, Retention, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use hookmesh_core::breaker::Breaker;
use hookmesh_core::delivery::{Attempt, Delivery};
use hookmesh_core::health::HealthSample;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Health samples one script call records at most.
const HEALTH_BATCH: usize = 512;

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "hm";
/// Retry buckets when none are configured: enough to spread the schedule over the nodes of
/// a mid-size cluster, few enough that an idle claim poll stays one small round trip.
pub const DEFAULT_RETRY_BUCKETS: u32 = 16;
/// Most retry buckets [`RedisStore::with_retry_buckets`] accepts.
pub const MAX_RETRY_BUCKETS: u32 = 1024;
/// The URL scheme of a Redis Cluster: `redis+cluster://host1:7000,host2:7001`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// Deliveries one put evicts at most, for each of the two retention rules.
pub const EVICT_BATCH: usize = 1000;
/// One [`DeliveryLog::list_deliveries`] call looks at no more than `SCAN_PER_RESULT × limit +
/// SCAN_BASE` index entries, so a filter that matches nothing cannot walk the whole log.
pub const SCAN_PER_RESULT: usize = 20;
pub const SCAN_BASE: usize = 1000;
/// Max ages above this (100 years) are treated as this, to keep expiry times in range.
const MAX_AGE_CAP_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// A webhook's own retention: removes its deliveries first triggered before a time, atomically
/// with their attempts and index entries.
///
/// KEYS: 1 idx:all, 2 idx:wh:{webhook}. ARGV: 1 prefix, 2 before ms (exclusive), 3 limit.
const EXPIRE_SCRIPT: &str = r#"
local prefix = ARGV[1]
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(members) do
  local h = prefix .. ':d:' .. member
  local tenant = redis.call('HGET', h, 'tenant')
  redis.call('DEL', h, prefix .. ':a:' .. member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  if tenant then redis.call('ZREM', prefix .. ':idx:t:' .. tenant, member) end
end
return #members
"#;

/// Put + index + retention, atomically.
///
/// KEYS: 1 delivery hash, 2 its attempts, 3 idx:all, 4 idx:wh:{webhook}, 5 idx:t:{tenant}.
/// ARGV: 1 id, 2 json, 3 created ms, 4 created RFC 3339, 5 webhook id, 6 tenant id,
/// 7 prefix, 8 per-webhook cap, 9 now ms, 10 max age ms, 11 evict batch.
const PUT_SCRIPT: &str = r#"
local id, prefix = ARGV[1], ARGV[7]
local cap, now, max_age, batch = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local function int(n) return string.format('%d', n) end

local created_s = ARGV[3]
if redis.call('HSETNX', KEYS[1], 'created', created_s) == 1 then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[4], 'webhook', ARGV[5], 'tenant', ARGV[6])
else
  created_s = redis.call('HGET', KEYS[1], 'created')
end
local created = tonumber(created_s)
redis.call('HSET', KEYS[1], 'json', ARGV[2])
redis.call('ZADD', KEYS[3], 'NX', created_s, id)
redis.call('ZADD', KEYS[4], 'NX', created_s, id)
redis.call('ZADD', KEYS[5], 'NX', created_s, id)

local function evict(member)
  local h = prefix .. ':d:' .. member
  local owner = redis.call('HMGET', h, 'webhook', 'tenant')
  redis.call('DEL', h, prefix .. ':a:' .. member)
  redis.call('ZREM', KEYS[3], member)
  if owner[1] then redis.call('ZREM', prefix .. ':idx:wh:' .. owner[1], member) end
  if owner[2] then redis.call('ZREM', prefix .. ':idx:t:' .. owner[2], member) end
end

local n = redis.call('ZCARD', KEYS[4])
if n > cap then
  local popped = redis.call('ZPOPMIN', KEYS[4], int(math.min(n - cap, batch)))
  for i = 1, #popped, 2 do evict(popped[i]) end
end

local below = '(' .. int(now - max_age)
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', below, 'LIMIT', 0, int(batch))) do
  evict(member)
end
-- Entries whose hash expired on its own no longer say which indexes hold them.
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', below)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', below)

if redis.call('EXISTS', KEYS[1]) == 1 then
  local at = int(created + max_age)
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[2], at)
  local idx_at = math.max(now, created) + max_age
  for i = 3, 5 do
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl == -1 or (ttl >= 0 and now + ttl < idx_at) then
      redis.call('PEXPIREAT', KEYS[i], int(idx_at))
    end
  end
end
return 1
"#;

/// KEYS: 1 delivery hash, 2 its attempts. ARGV: 1 attempt JSON. Answers whether appended.
const ATTEMPT_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"#;

/// KEYS: 1 a retry bucket. ARGV: 1 now ms, 2 limit, 3 lease expiry ms. Answers the claimed
/// ids with the due times they had, `[id, due, id, due, …]`, oldest due first. One `ZADD` moves
/// them all (in chunks that stay under Lua's `unpack` limit).
const CLAIM_SCRIPT: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local args = {}
for i = 1, #due, 2 do
  args[#args + 1] = ARGV[3]
  args[#args + 1] = due[i]
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
return due
"#;

/// GCRA with reservations (see `crate::gcra_reserve`, the same arithmetic, to the ns): KEYS[1]
/// the theoretical arrival time as `seconds.nanos` (unix; Lua numbers are doubles, exact only
/// to 2^53, so unix ns cannot be one number); ARGV 1 now seconds, 2 now nanos, 3 interval ns,
/// 4 tolerance ns; answers the wait in ns (exact while the queue is shorter than 104 days).
const RATE_SCRIPT: &str = r#"
local now_s, now_n = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval, tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat_s, tat_n = now_s, now_n
local stored = redis.call('GET', KEYS[1])
if stored then
  local s, n = string.match(stored, '^(-?%d+)%.(%d+)$')
  s, n = tonumber(s), tonumber(n)
  if s and n and (s > now_s or (s == now_s and n > now_n)) then tat_s, tat_n = s, n end
end
tat_n = tat_n + interval
tat_s = tat_s + math.floor(tat_n / 1e9)
tat_n = tat_n % 1e9
local ahead = (tat_s - now_s) * 1e9 + (tat_n - now_n)
redis.call('SET', KEYS[1], string.format('%d.%09d', tat_s, tat_n), 'PX', string.format('%d', math.floor(ahead / 1e6) + 60000))
local wait = ahead - tolerance
if wait < 0 then wait = 0 end
if wait > 9e18 then wait = 9e18 end
return wait
"#;

/// Health sample append: KEYS[1] the endpoint's samples; ARGV 1 window ms, 2 most samples,
/// 3 ttl ms, then score (unix ms) / member pairs, one per sample. The window is relative to
/// the newest sample kept.
const HEALTH_SCRIPT: &str = r#"
redis.call('ZADD', KEYS[1], unpack(ARGV, 4))
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local cutoff = tonumber(newest[2]) - tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', cutoff))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Breaker compare-and-set: KEYS[1] the breaker; ARGV 1 the value read ("" = absent),
/// 2 the new value ("" = delete), 3 its TTL in seconds; answers 1 when swapped.
const BREAKER_CAS_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"#;

/// Call-context merge: KEYS[1] the context hash, ARGV[1] ttl ms, ARGV[2] most names, then
/// name, value pairs; answers how many new names were refused for the limit. One step, so a
/// reader never sees some names of a merge without the others.
const CONTEXT_MERGE_SCRIPT: &str = r#"
local refused, max = 0, tonumber(ARGV[2])
for i = 3, #ARGV - 1, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 or redis.call('HLEN', KEYS[1]) < max then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    refused = refused + 1
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return refused
"#;

/// Per-call lane push: KEYS[1] the lane list, ARGV[1] the delivery id; answers 1 at the head.
const LANE_PUSH_SCRIPT: &str = r#"
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then return 1 else return 0 end
"#;

/// The store's keys, one constructor per kind, so the layout lives in one place.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn seen(&self, key: &str) -> String {
        format!("{}:seen:{{{key}}}", self.prefix)
    }
    fn delivery(&self, id: &str) -> String {
        format!("{}:d:{id}", self.prefix)
    }
    fn attempts(&self, id: &str) -> String {
        format!("{}:a:{id}", self.prefix)
    }
    fn all(&self) -> String {
        format!("{}:idx:all", self.prefix)
    }
    fn webhook(&self, webhook_id: &str) -> String {
        format!("{}:idx:wh:{webhook_id}", self.prefix)
    }
    fn tenant(&self, tenant_id: &str) -> String {
        format!("{}:idx:t:{tenant_id}", self.prefix)
    }
    fn retry_bucket(&self, bucket: u32) -> String {
        format!("{}:{{retries:{bucket}}}", self.prefix)
    }
    fn retry_meta(&self) -> String {
        format!("{}:{{retries}}:buckets", self.prefix)
    }
    /// Where versions before the buckets kept the whole schedule.
    fn single_key_schedule(&self) -> String {
        format!("{}:retries", self.prefix)
    }
    fn rate(&self, key: &str) -> String {
        format!("{}:rl:{{{key}}}", self.prefix)
    }
    fn health(&self, endpoint: &str) -> String {
        format!("{}:h:{{{endpoint}}}", self.prefix)
    }
    fn breaker(&self, endpoint: &str) -> String {
        format!("{}:cb:{{{endpoint}}}", self.prefix)
    }
    fn lane(&self, lane: &str) -> String {
        format!("{}:lane:{{{lane}}}", self.prefix)
    }
    /// The tenant's length first, so no (tenant, call) pair spells another's key.
    fn context(&self, tenant: &str, call_id: &str) -> String {
        format!("{}:ctx:{{{}:{tenant}/{call_id}}}", self.prefix, tenant.len())
    }
}

/// The bucket of a retry: 64-bit FNV-1a of the id, modulo the bucket count. Stable by
/// definition (no seed, no platform dependence), so every process agrees on it.
pub fn retry_bucket_of(delivery_id: &str, buckets: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in delivery_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(buckets.max(1))) as u32
}

/// The one connection handle: a single server or a cluster. Both are cheap to clone
/// (handles onto multiplexed connections) and reconnect on their own.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Sends one command per key (each naming one key) in one round trip and answers their
    /// replies in order: one pipeline on a single server; on a cluster, where a pipeline must
    /// stay in one slot, the commands go concurrently and each node gets its share at once.
    async fn each<T: redis::FromRedisValue>(&self, cmds: Vec<Cmd>) -> redis::RedisResult<Vec<T>> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut c.clone()).await
            }
            Conn::Cluster(c) => {
                futures::future::try_join_all(cmds.into_iter().map(|cmd| {
                    let mut conn = c.clone();
                    async move { cmd.query_async::<T>(&mut conn).await }
                }))
                .await
            }
        }
    }
}

/// The delivery log, dedup marks and retry schedule in Redis; see the module doc.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    retention: Retention,
    retry_buckets: u32,
    /// Where this store's next claim starts walking the buckets.
    next_bucket: std::sync::Arc<std::sync::atomic::AtomicU32>,
    put_script: Script,
    expire_script: Script,
    attempt_script: Script,
    claim_script: Script,
    rate_script: Script,
    health_script: Script,
    lane_push_script: Script,
    breaker_cas_script: Script,
    context_merge_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix)
            .field("cluster", &self.is_cluster())
            .field("retry_buckets", &self.retry_buckets)
            .field("retention", &self.retention)
            .finish()
    }
}

impl RedisStore {
    /// Connects to `url`: `redis://host:port/db` for one server, or
    /// `redis+cluster://host1:port1,host2:port2` ([`CLUSTER_SCHEME`]) for a Redis Cluster
    /// reached through any of those nodes. Keys go under `prefix` ([`DEFAULT_PREFIX`] when
    /// empty; braces are refused, they would become every key's hash tag), the retry schedule
    /// over [`DEFAULT_RETRY_BUCKETS`] buckets until [`RedisStore::with_retry_buckets`] says
    /// otherwise. Fails when the server cannot be reached now; later outages are retried by
    /// the connection and surface as [`StoreError::Backend`] per call.
    pub async fn connect(url: &str, prefix: &str, retention: Retention) -> Result<RedisStore> {
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        if prefix.contains(['{', '}']) {
            return Err(StoreError::Backend(format!(
                "redis prefix `{prefix}` contains a brace, which would make it every key's hash tag"
            )));
        }
        let conn = match cluster_nodes(url) {
            Some(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes)
                    .connection_timeout(Duration::from_secs(5))
                    .response_timeout(Duration::from_secs(10))
                    .build()
                    .map_err(backend("open cluster client"))?;
                Conn::Cluster(client.get_async_connection().await.map_err(backend("connect to the cluster"))?)
            }
            None => {
                let client = redis::Client::open(url).map_err(backend("open client"))?;
                // A call that never gets an answer (a server killed mid-reply, a network that
                // drops packets) fails after the response timeout and is retried by the caller,
                // instead of holding its message forever.
                let config = ConnectionManagerConfig::new()
                    .set_max_delay(Duration::from_secs(2))
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(10)));
                Conn::Single(ConnectionManager::new_with_config(client, config).await.map_err(backend("connect"))?)
            }
        };
        // Callers that start together should not all walk the buckets from the same one.
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
            ^ std::process::id();
        Ok(RedisStore {
            conn,
            keys: Keys { prefix: prefix.to_string() },
            retention,
            retry_buckets: DEFAULT_RETRY_BUCKETS,
            next_bucket: std::sync::Arc::new(std::sync::atomic::AtomicU32::new(start)),
            put_script: Script::new(PUT_SCRIPT),
            expire_script: Script::new(EXPIRE_SCRIPT),
            attempt_script: Script::new(ATTEMPT_SCRIPT),
            claim_script: Script::new(CLAIM_SCRIPT),
            rate_script: Script::new(RATE_SCRIPT),
            health_script: Script::new(HEALTH_SCRIPT),
            lane_push_script: Script::new(LANE_PUSH_SCRIPT),
            breaker_cas_script: Script::new(BREAKER_CAS_SCRIPT),
            context_merge_script: Script::new(CONTEXT_MERGE_SCRIPT),
        })
    }

    /// Spreads the retry schedule over `buckets` sorted sets (1 to [`MAX_RETRY_BUCKETS`]) and
    /// makes sure the installation agrees, at start rather than by losing retries later:
    /// - the count is recorded in `<p>:{retries}:buckets`; a different recorded count is
    ///   refused while its buckets still hold retries (the error names both counts and the
    ///   backlog), and replaced once they are empty;
    /// - a schedule left in the single key `<p>:retries` of earlier versions is moved into the
    ///   buckets, due times kept (`ZADD NX`: an id already rescheduled in its bucket keeps
    ///   that newer due time).
    ///
    /// A few commands at start, none per call. Stores built without it use
    /// [`DEFAULT_RETRY_BUCKETS`] and check nothing.
    pub async fn with_retry_buckets(mut self, buckets: u32) -> Result<RedisStore> {
        if !(1..=MAX_RETRY_BUCKETS).contains(&buckets) {
            return Err(StoreError::Backend(format!(
                "retry buckets must be between 1 and {MAX_RETRY_BUCKETS}, got {buckets}"
            )));
        }
        let mut conn = self.conn.clone();
        let meta = self.keys.retry_meta();
        let recorded: Option<u32> =
            redis::cmd("GET").arg(&meta).query_async(&mut conn).await.map_err(backend("retry buckets"))?;
        if let Some(old) = recorded.filter(|&old| old != buckets) {
            // A count written by hand out of range is read within range.
            self.retry_buckets = old.clamp(1, MAX_RETRY_BUCKETS);
            let left = self.retry_backlog().await?;
            if left > 0 {
                return Err(StoreError::Backend(format!(
                    "retry buckets: the retry schedule under prefix `{}` is spread over {old} buckets and \
                     holds {left} retries; keep {old} buckets until it is empty, then change to {buckets}",
                    self.keys.prefix
                )));
            }
        }
        self.retry_buckets = buckets;
        if recorded != Some(buckets) {
            redis::cmd("SET").arg(&meta).arg(buckets).exec_async(&mut conn).await.map_err(backend("retry buckets"))?;
        }
        self.adopt_single_key_schedule().await?;
        Ok(self)
    }

    /// Moves what is left in the single schedule key of earlier versions into the buckets.
    async fn adopt_single_key_schedule(&self) -> Result<()> {
        let legacy = self.keys.single_key_schedule();
        let mut conn = self.conn.clone();
        loop {
            let chunk: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&legacy)
                .arg(0)
                .arg(999)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .map_err(backend("adopt the single-key retry schedule"))?;
            if chunk.is_empty() {
                return Ok(());
            }
            let moves = chunk
                .iter()
                .map(|(id, due)| {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(self.retry_key(id)).arg("NX").arg(*due).arg(id);
                    cmd
                })
                .collect();
            self.conn.each::<i64>(moves).await.map_err(backend("adopt the single-key retry schedule"))?;
            let mut remove = redis::cmd("ZREM");
            remove.arg(&legacy);
            for (id, _) in &chunk {
                remove.arg(id);
            }
            remove.exec_async(&mut conn).await.map_err(backend("adopt the single-key retry schedule"))?;
            tracing::info!(moved = chunk.len(), "moved retries from the single-key schedule into buckets");
        }
    }

    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// Whether this store talks to a Redis Cluster (and so keeps no delivery log).
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// How many buckets the retry schedule is spread over.
    pub fn retry_buckets(&self) -> u32 {
        self.retry_buckets
    }

    /// The key of the bucket that holds `delivery_id`'s retry.
    fn retry_key(&self, delivery_id: &str) -> String {
        self.keys.retry_bucket(retry_bucket_of(delivery_id, self.retry_buckets))
    }

    /// The buckets in the order this call walks them: from a starting bucket that moves on
    /// with every call.
    fn buckets_in_turn(&self) -> Vec<u32> {
        let n = self.retry_buckets;
        let start = self.next_bucket.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        (0..n).map(|i| (start + i) % n).collect()
    }

    /// The delivery log needs multi-key scripts no cluster slot layout can serve.
    fn log_here(&self, op: &str) -> Result<()> {
        if self.is_cluster() {
            return Err(StoreError::Backend(format!(
                "redis {op}: a Redis Cluster keeps no delivery log; keep it in PostgreSQL (`postgres`)"
            )));
        }
        Ok(())
    }

    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.retention.max_age.as_millis()).unwrap_or(i64::MAX).min(MAX_AGE_CAP_MS)
    }
}

/// The node URLs of a `redis+cluster://h1:p1,h2:p2` URL, or `None` for a single-server URL.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix(CLUSTER_SCHEME)?;
    Some(
        rest.trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| format!("redis://{n}/"))
            .collect(),
    )
}

fn backend(op: &'static str) -> impl FnOnce(RedisError) -> StoreError {
    move |e| StoreError::Backend(format!("redis {op}: {e}"))
}

fn floor_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn ceil_ms(t: DateTime<Utc>) -> i64 {
    t.checked_add_signed(TimeDelta::nanoseconds(999_999)).unwrap_or(t).timestamp_millis()
}

fn duration_ms_ceil(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

/// A delivery hash's `json`, `created` and `created_at` fields, in that order.
type DeliveryFields = (Option<String>, Option<String>, Option<String>);

/// Reads a delivery hash, putting the first trigger back.
fn decode_delivery(id: &str, fields: DeliveryFields) -> Result<Option<Delivery>> {
    let (Some(json), created, created_at) = fields else { return Ok(None) };
    let mut d: Delivery =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("delivery {id}: {e}")))?;
    let first = match (created_at, created) {
        (Some(exact), _) => DateTime::parse_from_rfc3339(&exact)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("delivery {id} created_at {exact:?}: {e}")))?,
        (None, Some(ms)) => ms
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery {id} created {ms:?}")))?,
        (None, None) => d.created_at,
    };
    d.created_at = first;
    d.request.first_trigger_at = first;
    Ok(Some(d))
}

#[async_trait]
impl HotState for RedisStore {
    async fn mark_seen(&self, key: &str, ttl: Duration) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.seen(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(duration_ms_ceil(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("mark_seen"))?;
        Ok(set.is_some())
    }

    async fn is_seen(&self, key: &str) -> Result<bool> {
        redis::cmd("EXISTS")
            .arg(self.keys.seen(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("is_seen"))
    }

    async fn schedule_retry(&self, delivery_id: &str, due: DateTime<Utc>) -> Result<()> {
        redis::cmd("ZADD")
            .arg(self.retry_key(delivery_id))
            .arg(ceil_ms(due))
            .arg(delivery_id)
            .exec_async(&mut self.conn.clone())
            .await
            .map_err(backend("schedule_retry"))
    }

    async fn cancel_retry(&self, delivery_id: &str) -> Result<bool> {
        let removed: i64 = redis::cmd("ZREM")
            .arg(self.retry_key(delivery_id))
            .arg(delivery_id)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("cancel_retry"))?;
        Ok(removed > 0)
    }

    async fn claim_due(&self, now: DateTime<Utc>, limit: usize, lease: Duration) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = floor_ms(now);
        let lease_until = now_ms.saturating_add(duration_ms_ceil(lease));
        let buckets = self.buckets_in_turn();
        // Quotas: how many of the `limit` oldest due ids each bucket holds. With one bucket
        // there is nothing to compare, and the claim alone is exact.
        let quotas: Vec<(u32, usize)> = if buckets.len() == 1 {
            vec![(buckets[0], limit)]
        } else {
            let heads: Vec<Vec<(String, f64)>> = self
                .conn
                .each(
                    buckets
                        .iter()
                        .map(|&b| {
                            let mut cmd = redis::cmd("ZRANGEBYSCORE");
                            cmd.arg(self.keys.retry_bucket(b))
                                .arg("-inf")
                                .arg(now_ms)
                                .arg("WITHSCORES")
                                .arg("LIMIT")
                                .arg(0)
                                .arg(limit);
                            cmd
                        })
                        .collect(),
                )
                .await
                .map_err(backend("claim_due"))?;
            let mut due: Vec<(f64, &str, usize)> = heads
                .iter()
                .enumerate()
                .flat_map(|(i, head)| head.iter().map(move |(id, at)| (*at, id.as_str(), i)))
                .collect();
            if due.is_empty() {
                return Ok(Vec::new());
            }
            due.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
            let mut quota = vec![0usize; buckets.len()];
            for (_, _, i) in due.iter().take(limit) {
                quota[*i] += 1;
            }
            buckets.iter().zip(quota).filter(|(_, q)| *q > 0).map(|(&b, q)| (b, q)).collect()
        };
        let claims = quotas.into_iter().map(|(bucket, quota)| {
            let mut conn = self.conn.clone();
            let mut invocation = self.claim_script.prepare_invoke();
            invocation.key(self.keys.retry_bucket(bucket)).arg(now_ms).arg(quota).arg(lease_until);
            async move { invocation.invoke_async::<Vec<(String, f64)>>(&mut conn).await }
        });
        let claimed = futures::future::try_join_all(claims).await.map_err(backend("claim_due"))?;
        let mut claimed: Vec<(f64, String)> = claimed.into_iter().flatten().map(|(id, at)| (at, id)).collect();
        claimed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(claimed.into_iter().map(|(_, id)| id).collect())
    }

    async fn retry_backlog(&self) -> Result<usize> {
        let counts: Vec<usize> = self
            .conn
            .each(
                (0..self.retry_buckets)
                    .map(|b| {
                        let mut cmd = redis::cmd("ZCARD");
                        cmd.arg(self.keys.retry_bucket(b));
                        cmd
                    })
                    .collect(),
            )
            .await
            .map_err(backend("retry_backlog"))?;
        Ok(counts.into_iter().sum())
    }

    async fn rate_reserve(&self, key: &str, per_second: f64, burst: u32, now: DateTime<Utc>) -> Result<Duration> {
        let interval = crate::gcra_interval_ns(per_second);
        // A leap second's nanos run past 1e9: carry them, so (seconds, nanos) compare in order.
        let (mut now_s, mut now_n) = (now.timestamp(), i64::from(now.timestamp_subsec_nanos()));
        if now_n >= 1_000_000_000 {
            (now_s, now_n) = (now_s + 1, now_n - 1_000_000_000);
        }
        let wait: i64 = self
            .rate_script
            .key(self.keys.rate(key))
            .arg(now_s)
            .arg(now_n)
            .arg(interval)
            .arg(crate::gcra_tolerance_ns(interval, burst))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend("rate_reserve"))?;
        Ok(Duration::from_nanos(wait.max(0) as u64))
    }

    async fn record_health(&self, endpoint: &str, sample: &HealthSample) -> Result<()> {
        self.record_health_batch(endpoint, std::slice::from_ref(sample)).await
    }

    async fn record_health_batch(&self, endpoint: &str, samples: &[HealthSample]) -> Result<()> {
        // One script call per chunk (Lua's `unpack` takes a few thousand values at most).
        for chunk in samples.chunks(HEALTH_BATCH) {
            let mut call = self.health_script.key(self.keys.health(endpoint));
            call.arg(i64::try_from(crate::HEALTH_WINDOW.as_millis()).unwrap_or(i64::MAX))
                .arg(crate::HEALTH_SAMPLES)
                .arg(crate::HEALTH_WINDOW.as_millis() as i64 + 3_600_000);
            for sample in chunk {
                let json = serde_json::to_string(sample).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                // Scores are whole ms; within one ms members order by their text, so the member
                // starts with the exact time, fixed width (the JSON's RFC 3339 drops trailing
                // zero digits and would put 12.123456 before 12.123), then a suffix that keeps
                // two identical samples two attempts and, within one process, equal times in
                // recording order.
                let member = format!("{}|{}|{json}", sample.at.format("%Y-%m-%dT%H:%M:%S%.9f"), uuid_like());
                call.arg(floor_ms(sample.at)).arg(member);
            }
            call.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(backend("record_health"))?;
        }
        Ok(())
    }

    async fn health_samples(&self, endpoint: &str, since: DateTime<Utc>) -> Result<Vec<HealthSample>> {
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.health(endpoint))
            .arg(floor_ms(since))
            .arg("+inf")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("health_samples"))?;
        members
            .iter()
            .map(|m| {
                let json = m.splitn(3, '|').nth(2).unwrap_or(m.as_str());
                serde_json::from_str::<HealthSample>(json)
                    .map_err(|e| StoreError::Corrupt(format!("health sample: {e}")))
            })
            .filter(|s| s.as_ref().map_or(true, |s| s.at >= since))
            .collect()
    }

    async fn get_breaker(&self, endpoint: &str) -> Result<Breaker> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.keys.breaker(endpoint))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("get_breaker"))?;
        match raw {
            Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("breaker: {e}"))),
            None => Ok(Breaker::default()),
        }
    }

    async fn put_breaker(&self, endpoint: &str, breaker: &Breaker) -> Result<()> {
        let key = self.keys.breaker(endpoint);
        let mut conn = self.conn.clone();
        if *breaker == Breaker::default() {
            redis::cmd("DEL").arg(key).query_async::<()>(&mut conn).await.map_err(backend("put_breaker"))
        } else {
            let json = serde_json::to_string(breaker).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            // A breaker nobody touched for a week is forgotten.
            redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("EX")
                .arg(7 * 24 * 3600)
                .query_async::<()>(&mut conn)
                .await
                .map_err(backend("put_breaker"))
        }
    }

    async fn update_breaker(
        &self,
        endpoint: &str,
        change: &(dyn for<'b> Fn(&'b mut Breaker) + Send + Sync),
    ) -> Result<(Breaker, Breaker)> {
        let key = self.keys.breaker(endpoint);
        let mut conn = self.conn.clone();
        for _ in 0..50 {
            let raw: Option<String> =
                redis::cmd("GET").arg(&key).query_async(&mut conn).await.map_err(backend("update_breaker"))?;
            let before: Breaker = match &raw {
                Some(j) => serde_json::from_str(j).map_err(|e| StoreError::Corrupt(format!("breaker: {e}")))?,
                None => Breaker::default(),
            };
            let mut after = before.clone();
            change(&mut after);
            if after == before {
                return Ok((before, after));
            }
            let new = if after == Breaker::default() {
                String::new()
            } else {
                serde_json::to_string(&after).map_err(|e| StoreError::Corrupt(e.to_string()))?
            };
            // Compare-and-set: only if nobody changed it since we read it.
            let swapped: i64 = self
                .breaker_cas_script
                .key(&key)
                .arg(raw.unwrap_or_default())
                .arg(new)
                .arg(7 * 24 * 3600)
                .invoke_async(&mut conn)
                .await
                .map_err(backend("update_breaker"))?;
            if swapped == 1 {
                return Ok((before, after));
            }
        }
        Err(StoreError::Backend(format!("breaker of `{endpoint}` kept changing under 50 updates")))
    }

    async fn lane_push(&self, lane: &str, id: &str) -> Result<bool> {
        let head: i64 = self
            .lane_push_script
            .key(self.keys.lane(lane))
            .arg(id)
            .arg(self.max_age_ms())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend("lane_push"))?;
        Ok(head == 1)
    }

    async fn lane_pop(&self, lane: &str, id: &str) -> Result<Option<String>> {
        let key = self.keys.lane(lane);
        let (_, head): ((), Option<String>) = redis::pipe()
            .cmd("LREM")
            .arg(&key)
            .arg(0)
            .arg(id)
            .ignore()
            .cmd("LINDEX")
            .arg(&key)
            .arg(0)
            .query_async(&mut self.conn.clone())
            .await
            .map(|(h,): (Option<String>,)| ((), h))
            .map_err(backend("lane_pop"))?;
        Ok(head)
    }

    async fn context_merge(
        &self,
        tenant: &str,
        call_id: &str,
        values: &BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<usize> {
        if values.is_empty() {
            return Ok(0);
        }
        let mut call = self.context_merge_script.key(self.keys.context(tenant, call_id));
        call.arg(ttl.as_millis().clamp(1, i64::MAX as u128) as i64).arg(hookmesh_core::context::MAX_NAMES_PER_CALL);
        for (k, v) in values {
            call.arg(k).arg(v);
        }
        let refused = call.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(backend("context_merge"))?;
        Ok(usize::try_from(refused).unwrap_or(0))
    }

    async fn context_get(&self, tenant: &str, call_id: &str) -> Result<BTreeMap<String, String>> {
        redis::cmd("HGETALL")
            .arg(self.keys.context(tenant, call_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("context_get"))
    }
}

impl RedisStore {
    /// Appends an attempt to a delivery the log holds; answers false (appending nothing) when
    /// it holds none.
    async fn append_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<bool> {
        self.log_here("add_attempt")?;
        let json = serde_json::to_string(attempt)
            .map_err(|e| StoreError::Corrupt(format!("attempt of {delivery_id}: {e}")))?;
        let appended = self
            .attempt_script
            .key(self.keys.delivery(delivery_id))
            .key(self.keys.attempts(delivery_id))
            .arg(json)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(backend("add_attempt"))?;
        Ok(appended == 1)
    }
}

#[async_trait]
impl DeliveryLog for RedisStore {
    async fn put_delivery(&self, d: &Delivery) -> Result<()> {
        self.log_here("put_delivery")?;
        let json = serde_json::to_string(d).map_err(|e| StoreError::Corrupt(format!("delivery {}: {e}", d.id)))?;
        let cap = u64::try_from(self.retention.per_webhook).unwrap_or(u64::MAX);
        self.put_script
            .key(self.keys.delivery(&d.id))
            .key(self.keys.attempts(&d.id))
            .key(self.keys.all())
            .key(self.keys.webhook(&d.webhook_id))
            .key(self.keys.tenant(&d.tenant_id))
            .arg(&d.id)
            .arg(json)
            .arg(floor_ms(d.created_at))
            .arg(d.created_at.to_rfc3339_opts(SecondsFormat::Nanos, true))
            .arg(&d.webhook_id)
            .arg(&d.tenant_id)
            .arg(&self.keys.prefix)
            .arg(cap)
            .arg(floor_ms(Utc::now()))
            .arg(self.max_age_ms())
            .arg(EVICT_BATCH)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(backend("put_delivery"))?;
        Ok(())
    }

    async fn expire_webhook(&self, webhook_id: &str, before: DateTime<Utc>, limit: usize) -> Result<usize> {
        self.log_here("expire_webhook")?;
        let n: i64 = self
            .expire_script
            .key(self.keys.all())
            .key(self.keys.webhook(webhook_id))
            .arg(&self.keys.prefix)
            .arg(floor_ms(before))
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend("expire_webhook"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        self.log_here("get_delivery")?;
        let fields: DeliveryFields = redis::cmd("HMGET")
            .arg(self.keys.delivery(id))
            .arg(&["json", "created", "created_at"])
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("get_delivery"))?;
        decode_delivery(id, fields)
    }

    async fn add_attempt(&self, delivery_id: &str, attempt: &Attempt) -> Result<()> {
        self.append_attempt(delivery_id, attempt).await.map(|_| ())
    }

    async fn record_attempt(&self, delivery: &Delivery, attempt: &Attempt) -> Result<()> {
        if self.append_attempt(&delivery.id, attempt).await? {
            return self.put_delivery(delivery).await;
        }
        // Not held yet: stored, then the attempt appended.
        self.put_delivery(delivery).await?;
        self.append_attempt(&delivery.id, attempt).await.map(|_| ())
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.log_here("attempts")?;
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.attempts(delivery_id))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(backend("attempts"))?;
        raw.iter()
            .map(|s| serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("attempt of {delivery_id}: {e}"))))
            .collect()
    }

    async fn list_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<Delivery>> {
        self.log_here("list_deliveries")?;
        let mut conn = self.conn.clone();
        let limit = if q.limit == 0 { 50 } else { q.limit };
        let index = match (&q.webhook_id, &q.tenant_id) {
            (Some(w), _) => self.keys.webhook(w),
            (None, Some(t)) => self.keys.tenant(t),
            (None, None) => self.keys.all(),
        };
        // The cursor is (created ms, id), the order the indexes keep; an unknown cursor (its
        // delivery is gone) is ignored, as the memory store does.
        let cursor = match &q.before {
            Some(before) => {
                let created: Option<i64> = redis::cmd("HGET")
                    .arg(self.keys.delivery(before))
                    .arg("created")
                    .query_async(&mut conn)
                    .await
                    .map_err(backend("list_deliveries cursor"))?;
                created.map(|ms| (ms, before.as_str()))
            }
            None => None,
        };
        // Scores are whole ms; `matches` applies the exact bounds afterwards.
        let mut max = q.until.map(floor_ms);
        if let Some((ms, _)) = cursor {
            max = Some(max.map_or(ms, |m| m.min(ms)));
        }
        let min = q.since.map(floor_ms);
        if let (Some(lo), Some(hi)) = (min, max) {
            if hi < lo {
                return Ok(Vec::new());
            }
        }
        let max_arg = max.map_or_else(|| "+inf".to_string(), |m| m.to_string());
        let min_arg = min.map_or_else(|| "-inf".to_string(), |m| m.to_string());

        let budget = SCAN_PER_RESULT.saturating_mul(limit).saturating_add(SCAN_BASE);
        let batch = limit.saturating_mul(2).clamp(32, 512);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut offset = 0;
        while offset < budget {
            let count = batch.min(budget - offset);
            let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max_arg)
                .arg(&min_arg)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(count)
                .query_async(&mut conn)
                .await
                .map_err(backend("list_deliveries scan"))?;
            offset += entries.len();
            let ids: Vec<String> = entries
                .iter()
                .filter(|(id, score)| match cursor {
                    // Scores are integral ms, exact in an f64.
                    Some((ms, before)) => (*score as i64) < ms || id.as_str() < before,
                    None => true,
                })
                .filter(|(id, _)| seen.insert(id.clone()))
                .map(|(id, _)| id.clone())
                .collect();
            if !ids.is_empty() {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HMGET").arg(self.keys.delivery(id)).arg(&["json", "created", "created_at"]);
                }
                let rows: Vec<DeliveryFields> =
                    pipe.query_async(&mut conn).await.map_err(backend("list_deliveries fetch"))?;
                for (id, fields) in ids.iter().zip(rows) {
                    // A missing hash has expired and waits for a put to clean its index entry.
                    if let Some(d) = decode_delivery(id, fields)? {
                        if q.matches(&d) {
                            out.push(d);
                            if out.len() == limit {
                                return Ok(out);
                            }
                        }
                    }
                }
            }
            if entries.len() < count {
                break;
            }
        }
        Ok(out)
    }
}

/// A suffix for set members that must not collapse: a fixed-width counter (so one process's
/// members sort in creation order), then the process id and start time (so processes with one
/// pid, as in containers, still differ).
fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = *START
        .get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{n:016x}-{:x}-{start:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_round_up_and_now_rounds_down() {
        let whole = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!((floor_ms(whole), ceil_ms(whole)), (1_700_000_000_123, 1_700_000_000_123));
        let past = whole + TimeDelta::nanoseconds(1);
        assert_eq!((floor_ms(past), ceil_ms(past)), (1_700_000_000_123, 1_700_000_000_124));
        let before_epoch = DateTime::from_timestamp_millis(-1).unwrap() + TimeDelta::nanoseconds(1);
        assert_eq!((floor_ms(before_epoch), ceil_ms(before_epoch)), (-1, 0));
        assert_eq!(duration_ms_ceil(Duration::from_micros(1)), 1);
        assert_eq!(duration_ms_ceil(Duration::from_millis(5)), 5);
        assert_eq!(duration_ms_ceil(Duration::MAX), i64::MAX);
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let k = Keys { prefix: "hm".into() };
        assert_eq!(k.seen("x"), "hm:seen:{x}");
        assert_eq!(k.rate("x"), "hm:rl:{x}");
        assert_eq!(k.health("ep"), "hm:h:{ep}");
        assert_eq!(k.breaker("ep"), "hm:cb:{ep}");
        assert_eq!(k.lane("call-1"), "hm:lane:{call-1}");
        assert_eq!(k.delivery("msg_1"), "hm:d:msg_1");
        assert_eq!(k.attempts("msg_1"), "hm:a:msg_1");
        assert_eq!(k.all(), "hm:idx:all");
        assert_eq!(k.webhook("wh"), "hm:idx:wh:wh");
        assert_eq!(k.tenant("t"), "hm:idx:t:t");
        assert_eq!(k.retry_bucket(7), "hm:{retries:7}");
    }

    #[test]
    fn retry_buckets_are_stable_and_spread() {
        // FNV-1a 64 reference values: the bucket of an id must never change between versions.
        assert_eq!(retry_bucket_of("", u32::MAX), (0xcbf2_9ce4_8422_2325u64 % u64::from(u32::MAX)) as u32);
        assert_eq!(retry_bucket_of("a", u32::MAX), (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32);
        assert_eq!(retry_bucket_of("anything", 1), 0);
        let mut per_bucket = [0usize; 16];
        for i in 0..16_000 {
            per_bucket[retry_bucket_of(&format!("msg_{i:06}"), 16) as usize] += 1;
        }
        assert!(per_bucket.iter().all(|&n| (800..1200).contains(&n)), "uneven spread: {per_bucket:?}");
    }

    #[test]
    fn cluster_urls_name_their_nodes() {
        assert_eq!(
            cluster_nodes("redis+cluster://10.0.0.1:7000, 10.0.0.2:7001/"),
            Some(vec!["redis://10.0.0.1:7000/".to_string(), "redis://10.0.0.2:7001/".to_string()])
        );
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379/"), None);
    }
}
