//! The processes of a run, started by the test kit: `hookmesh standalone`, or tansu,
//! redis-server and the four roles (with a PostgreSQL database of their own for the delivery
//! log); all killed when the [`Cluster`] is dropped.

use crate::stats::{cpu_seconds, peak_rss_mib, round, BenchDb, ProcStat};
use anyhow::{anyhow, bail, Context};
use hookmesh_testkit::hookmesh::{file_tail, Launch, Process, Starting};
use hookmesh_testkit::redis::RedisServer;
use hookmesh_testkit::tansu::TansuBroker;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Embedded => "embedded",
            Backend::KafkaRedis => "kafka-redis",
        }
    }
}

/// One process of a run, as the test kit started it.
pub(crate) enum Handle {
    Hookmesh(Process),
    Tansu(TansuBroker),
    Redis(RedisServer),
}

pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) handle: Handle,
    pub(crate) log: PathBuf,
    pub(crate) hookmesh: bool,
}

impl Proc {
    fn pid(&self) -> u32 {
        match &self.handle {
            Handle::Hookmesh(p) => p.pid(),
            Handle::Tansu(t) => t.pid(),
            Handle::Redis(r) => r.pid(),
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        match &mut self.handle {
            Handle::Hookmesh(p) => p.exited(),
            Handle::Tansu(t) => t.exited(),
            Handle::Redis(r) => r.exited(),
        }
    }
}

/// Every process a run started; killed (SIGKILL) when dropped, newest first.
#[derive(Default)]
pub(crate) struct Procs(pub(crate) Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(p) = self.0.pop() {
            drop(p);
        }
    }
}

impl Procs {
    pub(crate) fn cpu(&self) -> Vec<f64> {
        self.0.iter().map(|p| cpu_seconds(p.pid()).unwrap_or(0.0)).collect()
    }

    pub(crate) fn stats(&self, before: &[f64], after: &[f64]) -> Vec<ProcStat> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, p)| ProcStat {
                name: p.name.clone(),
                cpu_seconds: round(cpu_seconds(p.pid()).unwrap_or(0.0), 2),
                cpu_seconds_run: round(after.get(i).copied().unwrap_or(0.0) - before.get(i).copied().unwrap_or(0.0), 2),
                peak_rss_mib: round(peak_rss_mib(p.pid()).unwrap_or(0.0), 1),
                hookmesh: p.hookmesh,
            })
            .collect()
    }

    /// Fails with the process's log tail when one of them has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.0 {
            if let Some(status) = p.exited() {
                bail!("{} exited ({status}); its log ends with:\n{}", p.name, file_tail(&p.log, 4000));
            }
        }
        Ok(())
    }

    /// Starts tansu or redis-server (blocking until it listens) with its log at `log`.
    async fn start_backend(
        &mut self,
        name: &str,
        log: PathBuf,
        start: fn(&Path) -> Result<Handle, String>,
    ) -> anyhow::Result<()> {
        let path = log.clone();
        let handle = tokio::task::spawn_blocking(move || start(&path)).await?.map_err(|e| anyhow!("{e}"))?;
        self.0.push(Proc { name: name.to_string(), handle, log, hookmesh: false });
        Ok(())
    }
}

/// Starts `hookmesh <role> <args…>` with its log in `<logdir>/<tag>-<role>.log`.
fn spawn_hookmesh(
    exe: &Path,
    role: &str,
    args: &[String],
    logdir: &Path,
    tag: &str,
) -> anyhow::Result<(Starting, PathBuf)> {
    let log = logdir.join(format!("{tag}-{role}.log"));
    let starting = Launch::new(exe, role)
        .allow_loopback()
        .without_hookmesh_env()
        .args(args)
        .log_file(&log)
        .spawn()
        .with_context(|| format!("starting {role}"))?;
    Ok((starting, log))
}

/// Waits for the listening line of a started hookmesh process and adds it to `procs`.
async fn wait_listening(
    procs: &mut Procs,
    role: &str,
    (starting, log): (Starting, PathBuf),
    timeout: Duration,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let process = tokio::task::spawn_blocking(move || starting.wait(timeout)).await?.map_err(|e| anyhow!("{e}"))?;
    let addrs = (process.grpc, process.admin);
    procs.0.push(Proc { name: role.to_string(), handle: Handle::Hookmesh(process), log, hookmesh: true });
    Ok(addrs)
}

pub(crate) struct Cluster {
    pub(crate) procs: Procs,
    /// WebhookService (standalone or router).
    pub(crate) management: SocketAddr,
    /// IngestService (standalone or ingest).
    pub(crate) ingest: SocketAddr,
    /// Admin port (/metrics) of the process that dispatches (standalone or dispatcher).
    pub(crate) dispatcher_admin: SocketAddr,
    /// The data directory of backend `embedded`.
    pub(crate) data_dir: Option<PathBuf>,
    /// The redis-server of backend kafka-redis.
    pub(crate) redis_port: Option<u16>,
    /// The delivery log's database of backend kafka-redis.
    pub(crate) postgres: Option<BenchDb>,
}

pub(crate) async fn start_cluster(
    hookmesh: &Path,
    backend: Backend,
    postgres: &str,
    logdir: &Path,
    tag: &str,
) -> anyhow::Result<Cluster> {
    let mut procs = Procs::default();
    let wait = Duration::from_secs(60);
    match backend {
        Backend::Memory | Backend::Embedded => {
            let mut args = Vec::new();
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
            let started = spawn_hookmesh(hookmesh, "standalone", &args, logdir, tag)?;
            let (grpc, admin) = wait_listening(&mut procs, "standalone", started, wait).await?;
            Ok(Cluster {
                procs,
                management: grpc,
                ingest: grpc,
                dispatcher_admin: admin,
                data_dir,
                redis_port: None,
                postgres: None,
            })
        }
        Backend::KafkaRedis => {
            procs
                .start_backend("tansu", logdir.join(format!("{tag}-tansu.log")), |log| {
                    TansuBroker::start_logged(log).map(Handle::Tansu)
                })
                .await?;
            procs
                .start_backend("redis-server", logdir.join(format!("{tag}-redis.log")), |log| {
                    RedisServer::start_logged(log).map(Handle::Redis)
                })
                .await?;
            let (bootstrap, redis_url, rport) = match (&procs.0[0].handle, &procs.0[1].handle) {
                (Handle::Tansu(t), Handle::Redis(r)) => (t.bootstrap(), r.url(), r.port),
                _ => unreachable!("tansu and redis-server were started first"),
            };
            let db = match postgres {
                "none" | "" => None,
                server => Some(BenchDb::create(server, tag).await?),
            };
            let mut args = Vec::new();
            if let Some(db) = &db {
                args.extend(["--postgres".to_string(), db.dsn.clone()]);
            }
            args.extend(
                [
                    "--kafka",
                    &bootstrap,
                    "--redis",
                    &redis_url,
                    "--partitions",
                    "4",
                    "--kafka-session-timeout-ms",
                    "6000",
                ]
                .map(String::from),
            );
            // The router creates the topics; the others find them.
            let started = spawn_hookmesh(hookmesh, "router", &args, logdir, tag)?;
            let (management, _) = wait_listening(&mut procs, "router", started, wait).await?;
            let mut started = Vec::new();
            for role in ["ingest", "renderer", "dispatcher"] {
                started.push((role, spawn_hookmesh(hookmesh, role, &args, logdir, tag)?));
            }
            let mut addrs = Vec::new();
            for (role, s) in started {
                addrs.push(wait_listening(&mut procs, role, s, wait).await?);
            }
            Ok(Cluster {
                procs,
                management,
                ingest: addrs[0].0,
                dispatcher_admin: addrs[2].1,
                data_dir: None,
                redis_port: Some(rport),
                postgres: db,
            })
        }
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach hookmesh at {addr}"))
}
