//! The processes of a run: `hookmesh standalone`, or tansu, redis-server and the four roles
//! (with a PostgreSQL database of their own for the delivery log); all killed when the
//! [`Cluster`] is dropped.

use crate::stats::{cpu_seconds, peak_rss_mib, round, BenchDb, ProcStat};
use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Embedded => "embedded",
            Backend::KafkaRedis => "kafka-redis",
        }
    }
}

pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) hookmesh: bool,
}

/// Every process a run started; killed (SIGKILL) when dropped, newest first.
#[derive(Default)]
pub(crate) struct Procs(pub(crate) Vec<Proc>);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.0.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Procs {
    pub(crate) fn cpu(&self) -> Vec<f64> {
        self.0.iter().map(|p| cpu_seconds(p.child.id()).unwrap_or(0.0)).collect()
    }

    pub(crate) fn stats(&self, before: &[f64], after: &[f64]) -> Vec<ProcStat> {
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
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.0 {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("{} exited ({status}); its log ends with:\n{}", p.name, log_tail(&p.log));
            }
        }
        Ok(())
    }

    pub(crate) fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        log: PathBuf,
        hookmesh: bool,
    ) -> anyhow::Result<usize> {
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

pub(crate) fn log_tail(path: &Path) -> String {
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
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) async fn wait_for_port(port: u16, timeout: Duration) -> bool {
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
pub(crate) struct Listening {
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// Starts `hookmesh <args…>` and returns a receiver of its `listening` line.
pub(crate) fn spawn_hookmesh(
    exe: &Path,
    procs: &mut Procs,
    name: &str,
    args: &[String],
    logdir: &Path,
    tag: &str,
) -> anyhow::Result<(usize, std::sync::mpsc::Receiver<String>)> {
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

pub(crate) async fn wait_listening(
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

pub(crate) const COMMON: &[&str] =
    &["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--allow-networks", "127.0.0.0/8"];

pub(crate) async fn start_cluster(
    hookmesh: &Path,
    backend: Backend,
    postgres: &str,
    logdir: &Path,
    tag: &str,
) -> anyhow::Result<Cluster> {
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
            let (i, rx) = spawn_hookmesh(hookmesh, &mut procs, "standalone", &args, logdir, tag)?;
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
            let (i, rx) = spawn_hookmesh(hookmesh, &mut procs, "router", &role_args("router"), logdir, tag)?;
            let router = wait_listening(&mut procs, i, rx, wait).await?;
            let mut started = Vec::new();
            for role in ["ingest", "renderer", "dispatcher"] {
                started.push(spawn_hookmesh(hookmesh, &mut procs, role, &role_args(role), logdir, tag)?);
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

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach hookmesh at {addr}"))
}
