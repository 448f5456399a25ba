//! The `tansu` Kafka-protocol broker with the in-memory storage engine
//! (`cargo install tansu --locked --features dynostore`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TansuBroker {
    child: Child,
    pub port: u16,
}

impl TansuBroker {
    /// Starts a broker on a free port; panics with a clear message when `tansu` is missing.
    pub fn start() -> TansuBroker {
        let bin = crate::find_binary("tansu")
            .expect("the `tansu` broker is not installed: cargo install tansu --locked --features dynostore");
        let port = crate::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        // HOOKMESH_TEST_TANSU_LOG=/path keeps the broker's log there (for debugging tests).
        let log = std::env::var("HOOKMESH_TEST_TANSU_LOG").ok();
        let output = || match &log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
            None => Stdio::null(),
        };
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("tansu starts");
        assert!(crate::wait_for_port(port, Duration::from_secs(20)), "tansu did not listen on {port}");
        TansuBroker { child, port }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is answered, as when
    /// the broker's host stalls or the network drops packets.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} tansu");
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
