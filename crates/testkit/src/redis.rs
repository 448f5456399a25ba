//! A private `redis-server` (Debian package `redis-server`) on a free port, or a private
//! Redis Cluster of three of them ([`RedisCluster`]).
//!
//! [`RedisServer::start`] keeps nothing on disk (conformance tests). [`RedisServer::start_aof`]
//! runs with the append-only file as the README tells operators to configure it, in a
//! directory of its own, and [`RedisServer::kill_and_restart`] SIGKILLs it and starts it
//! again on the same port and directory: what a crash of the Redis host looks like to hookmesh.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// The data directory of a persistent server (removed on drop).
    dir: Option<PathBuf>,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port; panics with a clear message when it is missing.
    pub fn start() -> RedisServer {
        let args = ["--save", "", "--appendonly", "no"].map(String::from).to_vec();
        Self::launch(crate::free_port(), args, None)
    }

    /// Starts a server that persists every write to its append-only file with `appendfsync`
    /// set to `fsync` (`always` or `everysec`), in a fresh directory.
    pub fn start_aof(fsync: &str) -> RedisServer {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("hookmesh-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis data directory");
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
            "--dir",
            dir.to_str().expect("UTF-8 temp dir"),
        ]
        .map(String::from)
        .to_vec();
        Self::launch(port, args, Some(dir))
    }

    fn launch(port: u16, args: Vec<String>, dir: Option<PathBuf>) -> RedisServer {
        // A port taken by something else in the meantime: that server exits at once, and the
        // port answers for someone else. Start again on another port.
        let mut port = port;
        for _ in 0..5 {
            let mut child = Self::spawn(port, &args);
            if child.try_wait().ok().flatten().is_none() {
                return RedisServer { child, port, dir, args };
            }
            port = crate::free_port();
        }
        panic!("redis-server could not start on a free port (five tries)");
    }

    /// Starts a server like [`RedisServer::start`] whose log goes to the file `log`; fails
    /// with a message that says what is missing.
    pub fn start_logged(log: &Path) -> Result<RedisServer, String> {
        let args = ["--save", "", "--appendonly", "no"].map(String::from).to_vec();
        let port = crate::free_port();
        let child = Self::try_spawn(port, &args, Some(log))?;
        Ok(RedisServer { child, port, dir: None, args })
    }

    fn spawn(port: u16, args: &[String]) -> Child {
        Self::try_spawn(port, args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(port: u16, args: &[String], log: Option<&Path>) -> Result<Child, String> {
        let bin = crate::find_binary("redis-server")
            .ok_or("redis-server is not installed: apt-get install redis-server".to_string())?;
        let stdout = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?),
            None => Stdio::null(),
        };
        let mut child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?;
        if !crate::wait_for_port(port, Duration::from_secs(10)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server did not listen on {port}"));
        }
        Ok(child)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILLs the server (no shutdown save, no final fsync) and starts it again on the same
    /// port and directory; answers once it accepts connections again.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, &self.args);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A private Redis Cluster of three masters (no replicas) on free loopback ports, nothing on
/// disk but each node's `nodes.conf` in a directory of its own; stopped and removed on drop.
///
/// Each node is `redis-server --cluster-enabled yes` with an explicit cluster bus port (the
/// default, port + 10000, may be taken or out of range); `redis-cli --cluster create` joins
/// them and assigns the 16384 slots; [`RedisCluster::start`] answers once every node reports
/// `cluster_state:ok`.
pub struct RedisCluster {
    nodes: Vec<Child>,
    /// The client ports of the masters.
    pub ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts and joins the cluster; panics with a clear message when `redis-server` or
    /// `redis-cli` is missing or the cluster does not come up within 30 s.
    pub fn start() -> RedisCluster {
        let server =
            crate::find_binary("redis-server").expect("redis-server is not installed: apt-get install redis-server");
        let cli = crate::find_binary("redis-cli").expect("redis-cli is not installed: apt-get install redis-tools");
        let first = crate::free_port();
        let dir = std::env::temp_dir().join(format!("hookmesh-redis-cluster-{}-{first}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis cluster directory");
        let mut cluster = RedisCluster { nodes: Vec::new(), ports: Vec::new(), dir };
        for i in 0..3 {
            let port = if i == 0 { first } else { crate::free_port() };
            let bus = crate::free_port();
            let child = Command::new(&server)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", cluster.dir.to_str().expect("UTF-8 temp dir")])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            assert!(crate::wait_for_port(port, Duration::from_secs(10)), "cluster node did not listen on {port}");
        }
        let addrs: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let create = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            create.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&create.stdout),
            String::from_utf8_lossy(&create.stderr)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for &port in &cluster.ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).lines().any(|l| l.trim() == "cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster on {:?} did not reach cluster_state:ok",
                    addrs
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, what hookmesh's `redis`
    /// setting takes for a cluster.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Plain `redis://` URLs of the masters, one per node.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}/")).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
