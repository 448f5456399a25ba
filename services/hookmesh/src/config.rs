//! Settings of every `hookmesh` role, in layers: built-in defaults ← optional TOML file
//! (`--config`, `HOOKMESH_CONFIG`) ← environment variables (`HOOKMESH_*`) ← command-line
//! flags. Every value is validated at start with a message that names the key.
//!
//! ```toml
//! # hookmesh.toml — every key is optional
//! kafka = "kafka-0:9092,kafka-1:9092"   # HOOKMESH_KAFKA; absent in standalone = in-memory bus
//! redis = "redis://redis:6379/"          # HOOKMESH_REDIS; absent in standalone = in-memory store;
//!                                        # "redis+cluster://host1:7000,host2:7001" = Redis Cluster
//!                                        # (hot state only: needs `postgres` for the delivery log)
//! postgres = "postgres://hookmesh@db/hookmesh"  # HOOKMESH_POSTGRES: the delivery log in PostgreSQL
//!                                        # (hot state stays in Redis); absent = the log in Redis
//! grpc_addr = "0.0.0.0:7600"             # HOOKMESH_GRPC_ADDR
//! admin_addr = "0.0.0.0:7601"            # HOOKMESH_ADMIN_ADDR
//! topic_prefix = "hookmesh"              # HOOKMESH_TOPIC_PREFIX
//! partitions = 12                        # HOOKMESH_PARTITIONS (topics created at start)
//! replication_factor = 3                 # HOOKMESH_REPLICATION_FACTOR
//! kafka_session_timeout_ms = 10000       # HOOKMESH_KAFKA_SESSION_TIMEOUT_MS
//! instance_id = "dispatcher-0"           # HOOKMESH_INSTANCE_ID: a stable, unique name of this
//!                                        # process (the pod name): static Kafka group membership
//! kafka_assignment_strategy = "range,roundrobin"  # HOOKMESH_KAFKA_ASSIGNMENT_STRATEGY, or
//!                                        # cooperative-sticky on brokers that support it
//! kafka_message_timeout_ms = 30000       # HOOKMESH_KAFKA_MESSAGE_TIMEOUT_MS: how long a write waits
//!                                        # for an unreachable broker before Publish answers UNAVAILABLE
//! retry_lease_secs = 90                  # HOOKMESH_RETRY_LEASE_SECS: how long a claimed retry
//!                                        # stays with a dispatcher that died before it comes back
//! redis_prefix = "hm"                    # HOOKMESH_REDIS_PREFIX (no braces: they are hash tags)
//! retry_buckets = 16                     # HOOKMESH_RETRY_BUCKETS: Redis sorted sets the retry
//!                                        # schedule is spread over (1-1024); the same in every
//!                                        # process, changed only while no retry is scheduled;
//!                                        # each claim poll reads every bucket (1 suits one Redis)
//! max_in_flight = 1024                   # HOOKMESH_MAX_IN_FLIGHT (dispatcher HTTP requests)
//! retention_days = 30                    # HOOKMESH_RETENTION_DAYS (delivery log)
//! retention_per_webhook = 100000         # HOOKMESH_RETENTION_PER_WEBHOOK
//! log_json = false                       # HOOKMESH_LOG_JSON
//! allow_networks = ["10.0.0.0/8"]        # HOOKMESH_ALLOW_NETWORKS (comma-separated): non-public
//!                                        # receiver networks the dispatcher may reach
//! require_https = false                  # HOOKMESH_REQUIRE_HTTPS
//! tokens = ["sha256:<hex>=operator",     # HOOKMESH_TOKENS (comma-separated): management API
//!           "sha256:<hex>=tenant:acme"]  # bearer tokens, hashed (`hookmesh token new`)
//! master_key = "<base64 32 bytes>"       # HOOKMESH_MASTER_KEY: encrypts signing secrets at rest
//! master_keys_old = []                   # HOOKMESH_MASTER_KEYS_OLD: retired keys, read-only
//! endpoint_concurrency = 64              # HOOKMESH_ENDPOINT_CONCURRENCY: requests in flight per
//!                                        # endpoint per dispatcher (webhook max_concurrency wins)
//! breaker_failures = 5                   # HOOKMESH_BREAKER_FAILURES: consecutive failures that open
//! breaker_open_secs = 30                 # HOOKMESH_BREAKER_OPEN_SECS: open before a half-open probe
//! breaker_disable_after_secs = 432000    # HOOKMESH_BREAKER_DISABLE_AFTER_SECS: failing this long
//!                                        # without a success disables the webhook (5 days)
//! kafka_destinations = "analytics=k0:9092,k1:9092;crm@acme|beta=c0:9092"
//!                                        # HOOKMESH_KAFKA_DESTINATIONS: Kafka clusters webhooks may
//!                                        # deliver to, by name (`kafka://analytics/<topic>`), open
//!                                        # to every tenant or to the tenants after `@`; the
//!                                        # router and the dispatcher need the same value
//! ```

use anyhow::{bail, Context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default lease of a claimed retry: longer than the longest attempt (60 s) plus its gate, so
/// a live dispatcher never loses a claim it is still working on.
pub const DEFAULT_RETRY_LEASE_SECS: u64 = 90;

/// Flags shared by every role; each also reads its `HOOKMESH_*` variable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "HOOKMESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers; without it standalone uses the in-memory bus.
    #[arg(long, env = "HOOKMESH_KAFKA")]
    pub kafka: Option<String>,
    /// Redis URL (redis://host:port/); without it standalone uses the in-memory store.
    #[arg(long, env = "HOOKMESH_REDIS")]
    pub redis: Option<String>,
    /// PostgreSQL DSN of the delivery log (postgres://user@host/db); without it the log is
    /// kept beside the hot state (Redis, or the standalone store).
    #[arg(long, env = "HOOKMESH_POSTGRES")]
    pub postgres: Option<String>,
    /// Address of the gRPC API (port 0 picks a free port).
    #[arg(long, env = "HOOKMESH_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Address of the admin HTTP port (/healthz, /readyz, /metrics).
    #[arg(long, env = "HOOKMESH_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Prefix of hookmesh's topic names (`<prefix>.events`, …); `calls.raw` keeps its name.
    #[arg(long, env = "HOOKMESH_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// Partitions of the topics hookmesh creates.
    #[arg(long, env = "HOOKMESH_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Replication factor of the topics hookmesh creates.
    #[arg(long, env = "HOOKMESH_REPLICATION_FACTOR")]
    pub replication_factor: Option<i32>,
    /// Kafka consumer-group session timeout.
    #[arg(long, env = "HOOKMESH_KAFKA_SESSION_TIMEOUT_MS")]
    pub kafka_session_timeout_ms: Option<u32>,
    /// A stable, unique name of this process (e.g. the pod name): Kafka consumers join their
    /// group as static members under it, so a restart resumes at once. Never share it between
    /// two live processes.
    #[arg(long, env = "HOOKMESH_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// How a consumer group shares partitions (`partition.assignment.strategy`):
    /// `range,roundrobin` (default, eager), `range`, `roundrobin`, or `cooperative-sticky` (a
    /// rebalance moves only the partitions that change hands; needs a broker that completes
    /// incremental rebalances, such as Apache Kafka 2.4+).
    #[arg(long, env = "HOOKMESH_KAFKA_ASSIGNMENT_STRATEGY")]
    pub kafka_assignment_strategy: Option<String>,
    /// How long a write to Kafka waits for the broker's acknowledgement before it fails (ms):
    /// while the broker is unreachable, `Publish` answers UNAVAILABLE after this.
    #[arg(long, env = "HOOKMESH_KAFKA_MESSAGE_TIMEOUT_MS")]
    pub kafka_message_timeout_ms: Option<u32>,
    /// Seconds a claimed retry stays leased to a dispatcher (it comes back after this when the
    /// dispatcher dies); must exceed the longest attempt (60 s).
    #[arg(long, env = "HOOKMESH_RETRY_LEASE_SECS")]
    pub retry_lease_secs: Option<u64>,
    /// Prefix of every Redis key.
    #[arg(long, env = "HOOKMESH_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Redis sorted sets the retry schedule is spread over (the same in every process).
    #[arg(long, env = "HOOKMESH_RETRY_BUCKETS")]
    pub retry_buckets: Option<u32>,
    /// HTTP requests the dispatcher keeps in flight.
    #[arg(long, env = "HOOKMESH_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Days the delivery log keeps a delivery.
    #[arg(long, env = "HOOKMESH_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Deliveries the log keeps per webhook.
    #[arg(long, env = "HOOKMESH_RETENTION_PER_WEBHOOK")]
    pub retention_per_webhook: Option<usize>,
    /// Log as JSON lines.
    #[arg(long, env = "HOOKMESH_LOG_JSON")]
    pub log_json: Option<bool>,
    /// Non-public networks receivers may be in (CIDR, comma-separated), e.g. 127.0.0.0/8 to
    /// try hookmesh with a local receiver. Everything else non-public is refused (SSRF guard).
    #[arg(long, env = "HOOKMESH_ALLOW_NETWORKS", value_delimiter = ',')]
    pub allow_networks: Option<Vec<String>>,
    /// Refuse receivers that are not https.
    #[arg(long, env = "HOOKMESH_REQUIRE_HTTPS")]
    pub require_https: Option<bool>,
    /// Hashed bearer tokens of the API: `sha256:<hex>=operator` or `sha256:<hex>=tenant:<id>`
    /// (comma-separated; `hookmesh token new` makes one). None = the API is open.
    #[arg(long, env = "HOOKMESH_TOKENS", value_delimiter = ',')]
    pub tokens: Option<Vec<String>>,
    /// Master key (base64, 32 bytes) that encrypts signing secrets in the config topic and
    /// seals the original requests of tenants that mask personal data in the delivery log
    /// (`hookmesh token master-key` makes one).
    #[arg(long, env = "HOOKMESH_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Retired master keys still accepted for reading during a rotation (comma-separated).
    #[arg(long, env = "HOOKMESH_MASTER_KEYS_OLD", value_delimiter = ',', hide_env_values = true)]
    pub master_keys_old: Option<Vec<String>>,
    /// Requests in flight per endpoint per dispatcher, unless the webhook sets max_concurrency.
    #[arg(long, env = "HOOKMESH_ENDPOINT_CONCURRENCY")]
    pub endpoint_concurrency: Option<u32>,
    /// Consecutive failures that open an endpoint's circuit.
    #[arg(long, env = "HOOKMESH_BREAKER_FAILURES")]
    pub breaker_failures: Option<u32>,
    /// Seconds an open circuit waits before a half-open probe.
    #[arg(long, env = "HOOKMESH_BREAKER_OPEN_SECS")]
    pub breaker_open_secs: Option<f64>,
    /// Seconds of failing without a success after which the webhook is disabled.
    #[arg(long, env = "HOOKMESH_BREAKER_DISABLE_AFTER_SECS")]
    pub breaker_disable_after_secs: Option<u64>,
    /// Kafka clusters webhooks may deliver to, by name: `NAME[@TENANT|TENANT]=HOST:PORT[,…];…`
    /// (`@…`: only these tenants). A webhook's URL `kafka://NAME/TOPIC` delivers there;
    /// tenants never name brokers.
    #[arg(long, env = "HOOKMESH_KAFKA_DESTINATIONS")]
    pub kafka_destinations: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    kafka: Option<String>,
    redis: Option<String>,
    postgres: Option<String>,
    grpc_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    topic_prefix: Option<String>,
    partitions: Option<u32>,
    replication_factor: Option<i32>,
    kafka_session_timeout_ms: Option<u32>,
    instance_id: Option<String>,
    kafka_assignment_strategy: Option<String>,
    kafka_message_timeout_ms: Option<u32>,
    retry_lease_secs: Option<u64>,
    redis_prefix: Option<String>,
    retry_buckets: Option<u32>,
    max_in_flight: Option<usize>,
    retention_days: Option<u64>,
    retention_per_webhook: Option<usize>,
    log_json: Option<bool>,
    allow_networks: Option<Vec<String>>,
    require_https: Option<bool>,
    tokens: Option<Vec<String>>,
    master_key: Option<String>,
    master_keys_old: Option<Vec<String>>,
    endpoint_concurrency: Option<u32>,
    breaker_failures: Option<u32>,
    breaker_open_secs: Option<f64>,
    breaker_disable_after_secs: Option<u64>,
    kafka_destinations: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: Option<String>,
    pub redis: Option<String>,
    pub postgres: Option<String>,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub topic_prefix: String,
    pub partitions: u32,
    pub replication_factor: i32,
    pub kafka_session_timeout_ms: u32,
    pub instance_id: Option<String>,
    pub kafka_assignment_strategy: String,
    pub kafka_message_timeout_ms: u32,
    pub retry_lease: std::time::Duration,
    pub redis_prefix: String,
    pub retry_buckets: u32,
    pub max_in_flight: usize,
    pub retention_days: u64,
    pub retention_per_webhook: usize,
    pub log_json: bool,
    pub address_policy: hookmesh_dispatcher::ssrf::AddressPolicy,
    pub auth: hookmesh_proto::auth::Authenticator,
    pub cipher: Option<hookmesh_registry::secrets::SecretCipher>,
    pub endpoint_concurrency: u32,
    pub breaker: hookmesh_core::breaker::BreakerPolicy,
    /// Kafka destinations: name, bootstrap servers, the tenants that may use each.
    pub kafka_destinations: Vec<hookmesh_dispatcher::kafka::DestinationSpec>,
    /// Standalone only: the data directory of the embedded durable bus and store; `None`
    /// keeps them in memory. Set by `hookmesh standalone` (`--data-dir`, `--ephemeral`).
    pub data_dir: Option<PathBuf>,
    /// Standalone only: the web console to serve beside the API (`None`: none).
    pub console: Option<crate::console::StandaloneConsole>,
}

impl SettingsArgs {
    /// Resolves the layers; `grpc_port`/`admin_port` are the role's default ports.
    pub fn resolve(&self, grpc_port: u16, admin_port: u16) -> anyhow::Result<Settings> {
        let file: FileSettings = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("config: cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("config: {} is not a valid hookmesh TOML file", path.display()))?
            }
            None => FileSettings::default(),
        };
        // Portal links are signed with a key derived from the master key, so every service of a
        // deployment accepts the links any of them issued.
        let portal_secret = self.master_key.clone().or(file.master_key.clone()).filter(|k| !k.trim().is_empty());
        let mut s = Settings {
            kafka: self.kafka.clone().or(file.kafka).filter(|k| !k.is_empty()),
            redis: self.redis.clone().or(file.redis).filter(|r| !r.is_empty()),
            postgres: self.postgres.clone().or(file.postgres).filter(|p| !p.is_empty()),
            grpc_addr: self
                .grpc_addr
                .or(file.grpc_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], grpc_port))),
            admin_addr: self
                .admin_addr
                .or(file.admin_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], admin_port))),
            topic_prefix: self.topic_prefix.clone().or(file.topic_prefix).unwrap_or_else(|| "hookmesh".into()),
            partitions: self.partitions.or(file.partitions).unwrap_or(6),
            replication_factor: self.replication_factor.or(file.replication_factor).unwrap_or(1),
            kafka_session_timeout_ms: self.kafka_session_timeout_ms.or(file.kafka_session_timeout_ms).unwrap_or(10_000),
            instance_id: self.instance_id.clone().or(file.instance_id).filter(|i| !i.trim().is_empty()),
            kafka_assignment_strategy: self
                .kafka_assignment_strategy
                .clone()
                .or(file.kafka_assignment_strategy)
                .unwrap_or_else(|| hookmesh_bus::kafka::DEFAULT_ASSIGNMENT_STRATEGY.into()),
            kafka_message_timeout_ms: self.kafka_message_timeout_ms.or(file.kafka_message_timeout_ms).unwrap_or(30_000),
            retry_lease: std::time::Duration::from_secs(
                self.retry_lease_secs.or(file.retry_lease_secs).unwrap_or(DEFAULT_RETRY_LEASE_SECS),
            ),
            redis_prefix: self.redis_prefix.clone().or(file.redis_prefix).unwrap_or_else(|| "hm".into()),
            retry_buckets: self
                .retry_buckets
                .or(file.retry_buckets)
                .unwrap_or(hookmesh_store::redis::DEFAULT_RETRY_BUCKETS),
            max_in_flight: self.max_in_flight.or(file.max_in_flight).unwrap_or(1024),
            retention_days: self.retention_days.or(file.retention_days).unwrap_or(30),
            retention_per_webhook: self.retention_per_webhook.or(file.retention_per_webhook).unwrap_or(100_000),
            log_json: self.log_json.or(file.log_json).unwrap_or(false),
            address_policy: hookmesh_dispatcher::ssrf::AddressPolicy {
                allow: self
                    .allow_networks
                    .clone()
                    .or(file.allow_networks)
                    .unwrap_or_default()
                    .iter()
                    .filter(|n| !n.trim().is_empty())
                    .map(|n| hookmesh_dispatcher::ssrf::Network::parse(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("allow_networks: {e}"))?,
                require_https: self.require_https.or(file.require_https).unwrap_or(false),
            },
            auth: hookmesh_proto::auth::Authenticator::from_entries(
                &self
                    .tokens
                    .clone()
                    .or(file.tokens)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| !t.trim().is_empty())
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            cipher: match self.master_key.clone().or(file.master_key).filter(|k| !k.is_empty()) {
                Some(k) => Some(
                    hookmesh_registry::secrets::SecretCipher::new(
                        &k,
                        &self.master_keys_old.clone().or(file.master_keys_old).unwrap_or_default(),
                    )
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                None => None,
            },
            endpoint_concurrency: self.endpoint_concurrency.or(file.endpoint_concurrency).unwrap_or(64),
            breaker: {
                let d = hookmesh_core::breaker::BreakerPolicy::default();
                hookmesh_core::breaker::BreakerPolicy {
                    failure_threshold: self.breaker_failures.or(file.breaker_failures).unwrap_or(d.failure_threshold),
                    open_for: self
                        .breaker_open_secs
                        .or(file.breaker_open_secs)
                        .map(std::time::Duration::from_secs_f64)
                        .unwrap_or(d.open_for),
                    probe_timeout: d.probe_timeout,
                    disable_after: self
                        .breaker_disable_after_secs
                        .or(file.breaker_disable_after_secs)
                        .map(std::time::Duration::from_secs)
                        .unwrap_or(d.disable_after),
                }
            },
            kafka_destinations: hookmesh_dispatcher::kafka::parse_destinations(
                &self.kafka_destinations.clone().or(file.kafka_destinations).unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            data_dir: None,
            console: None,
        };
        if let Some(k) = portal_secret {
            s.auth = s.auth.with_portal_key(hookmesh_proto::auth::PortalKey::derive(k.trim().as_bytes()));
        }
        if s.endpoint_concurrency == 0 {
            bail!("endpoint_concurrency: must be at least 1");
        }
        if s.breaker.failure_threshold == 0 {
            bail!("breaker_failures: must be at least 1");
        }
        if s.partitions == 0 || s.partitions > 1000 {
            bail!("partitions: must be between 1 and 1000, got {}", s.partitions);
        }
        if s.replication_factor < 1 {
            bail!("replication_factor: must be at least 1");
        }
        if s.topic_prefix.is_empty() || !s.topic_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            bail!("topic_prefix: `{}` may only contain letters, digits, `.`, `_` and `-`", s.topic_prefix);
        }
        if s.max_in_flight == 0 {
            bail!("max_in_flight: must be at least 1");
        }
        if let Some(r) = &s.redis {
            match r.strip_prefix(hookmesh_store::redis::CLUSTER_SCHEME) {
                Some(list) => {
                    let host_port = |n: &str| {
                        n.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                    };
                    if !list.trim_end_matches('/').split(',').map(str::trim).all(host_port) {
                        bail!("redis: `{r}` is not a redis+cluster://host:port,host:port,… URL");
                    }
                    if s.postgres.is_none() {
                        bail!(
                            "redis: a Redis Cluster keeps hot state only; set postgres (HOOKMESH_POSTGRES) \
                             for the delivery log, or use a single Redis (redis://)"
                        );
                    }
                }
                None if !r.starts_with("redis://") && !r.starts_with("rediss://") => {
                    bail!("redis: `{r}` is neither a redis:// URL nor a redis+cluster://host:port,… list");
                }
                None => {}
            }
        }
        if s.redis_prefix.contains(['{', '}']) {
            bail!("redis_prefix: `{}` may not contain braces (Redis Cluster hash tags)", s.redis_prefix);
        }
        if !(1..=hookmesh_store::redis::MAX_RETRY_BUCKETS).contains(&s.retry_buckets) {
            bail!(
                "retry_buckets: must be between 1 and {}, got {}",
                hookmesh_store::redis::MAX_RETRY_BUCKETS,
                s.retry_buckets
            );
        }
        if let Some(p) = &s.postgres {
            if !p.starts_with("postgres://") && !p.starts_with("postgresql://") && !p.contains('=') {
                bail!("postgres: `{p}` is neither a postgres:// URL nor a `host=… dbname=…` string");
            }
        }
        if let Some(id) = &s.instance_id {
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || id.len() > 200 {
                bail!("instance_id: `{id}` may only contain letters, digits, `.`, `_` and `-` (at most 200)");
            }
        }
        if !["cooperative-sticky", "range", "roundrobin", "range,roundrobin"]
            .contains(&s.kafka_assignment_strategy.as_str())
        {
            bail!(
                "kafka_assignment_strategy: `{}` is not one of cooperative-sticky, range, roundrobin",
                s.kafka_assignment_strategy
            );
        }
        if !(1000..=300_000).contains(&s.kafka_message_timeout_ms) {
            bail!("kafka_message_timeout_ms: must be between 1000 and 300000, got {}", s.kafka_message_timeout_ms);
        }
        if s.retry_lease.as_secs() == 0 {
            bail!("retry_lease_secs: must be at least 1");
        }
        if s.kafka_session_timeout_ms < 1000 {
            bail!("kafka_session_timeout_ms: must be at least 1000");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_resolve_flag_over_file_over_default() {
        let dir = std::env::temp_dir().join(format!("hookmesh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hookmesh.toml");
        std::fs::write(&file, "partitions = 12\ntopic_prefix = \"prod\"\n").unwrap();
        let args = SettingsArgs { config: Some(file.clone()), partitions: Some(3), ..Default::default() };
        let s = args.resolve(7600, 7601).unwrap();
        assert_eq!(s.partitions, 3, "flag wins");
        assert_eq!(s.topic_prefix, "prod", "file over default");
        assert_eq!(s.grpc_addr.port(), 7600);
        std::fs::write(&file, "partitons = 12\n").unwrap();
        let err = format!("{:#}", SettingsArgs { config: Some(file), ..Default::default() }.resolve(1, 2).unwrap_err());
        assert!(err.contains("partitons"), "unknown keys are named: {err}");
        let err =
            SettingsArgs { redis: Some("localhost:6379".into()), ..Default::default() }.resolve(1, 2).unwrap_err();
        assert!(err.to_string().starts_with("redis:"), "{err}");
        let args = SettingsArgs { kafka_destinations: Some("analytics=k0:9092,k1:9092".into()), ..Default::default() };
        assert_eq!(args.resolve(1, 2).unwrap().kafka_destinations[0].brokers, "k0:9092,k1:9092");
        let err = SettingsArgs { kafka_destinations: Some("analytics".into()), ..Default::default() }
            .resolve(1, 2)
            .unwrap_err();
        assert!(err.to_string().starts_with("kafka_destinations[0]:"), "{err}");
    }

    #[test]
    fn a_redis_cluster_needs_postgres_and_buckets_are_bounded() {
        let cluster = Some("redis+cluster://10.0.0.1:7000,10.0.0.2:7001".to_string());
        let err = SettingsArgs { redis: cluster.clone(), ..Default::default() }.resolve(1, 2).unwrap_err().to_string();
        assert!(err.starts_with("redis:") && err.contains("postgres"), "{err}");
        let s = SettingsArgs { redis: cluster, postgres: Some("postgres://db/hm".into()), ..Default::default() }
            .resolve(1, 2)
            .unwrap();
        assert_eq!(s.retry_buckets, hookmesh_store::redis::DEFAULT_RETRY_BUCKETS);
        let err = SettingsArgs {
            redis: Some("redis+cluster://10.0.0.1".into()),
            postgres: Some("postgres://db/hm".into()),
            ..Default::default()
        }
        .resolve(1, 2)
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("redis:"), "{err}");
        for n in [0, 5000] {
            let err =
                SettingsArgs { retry_buckets: Some(n), ..Default::default() }.resolve(1, 2).unwrap_err().to_string();
            assert!(err.starts_with("retry_buckets:"), "{err}");
        }
        let err = SettingsArgs { redis_prefix: Some("{hm}".into()), ..Default::default() }
            .resolve(1, 2)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("redis_prefix:"), "{err}");
    }
}
