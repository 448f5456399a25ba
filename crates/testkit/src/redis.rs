//! A private `redis-server` (Debian package `redis-server`) on a free port.
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
        RedisServer { child: Self::spawn(port, &args), port, dir, args }
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
