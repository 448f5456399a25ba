//! Test support: real backing services on free loopback ports, stopped on drop.
//!
//! - [`redis::RedisServer`]: `redis-server --port P --save '' --appendonly no`.
//! - [`redis::RedisCluster`]: three `redis-server --cluster-enabled yes` masters joined by
//!   `redis-cli --cluster create`.
//! - [`tansu::TansuBroker`]: the Kafka-protocol broker `tansu` with in-memory storage.
//! - [`postgres::PostgresDb`]: a fresh database on the machine's PostgreSQL.
//! - [`hookmesh::Process`]: a `hookmesh <role>` process of a given binary.
//! - [`child::acks_until_killed`]: a writer in a child process, SIGKILLed mid-flight.
//! - [`receiver::Recorder`]: the recording HTTP receiver ([`receiver::Receiver`] for a hook of
//!   one's own, as the bench's).
//!
//! These are what the conformance and end-to-end tests run against: in-memory backends are a
//! product feature and never stand in for the real ones in tests of the real ones.

pub mod child;
pub mod hookmesh;
pub mod postgres;
pub mod receiver;
pub mod redis;
pub mod tansu;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago, and that this process has not handed out
/// before: tests running in parallel never get the same port from here (the kernel may offer a
/// just-released port again).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Finds an executable on PATH or in `~/.cargo/bin`.
pub fn find_binary(name: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}
