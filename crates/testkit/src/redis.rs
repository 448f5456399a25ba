//! A private `redis-server` (Debian package `redis-server`) on a free port, nothing on disk.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server on a free port; panics with a clear message when it is missing.
    pub fn start() -> RedisServer {
        let bin =
            crate::find_binary("redis-server").expect("redis-server is not installed: apt-get install redis-server");
        let port = crate::free_port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        assert!(crate::wait_for_port(port, Duration::from_secs(10)), "redis-server did not listen on {port}");
        RedisServer { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
