//! The `tansu` Kafka-protocol broker with the in-memory storage engine
//! (`cargo install tansu --locked --features dynostore`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TansuBroker {
    child: Child,
    pub port: u16,
}

impl TansuBroker {
    /// Starts a broker on a free port; panics with a clear message when `tansu` is missing.
    pub fn start() -> TansuBroker {
        // HOOKMESH_TEST_TANSU_LOG=/path keeps the broker's log there (for debugging tests).
        let log = std::env::var("HOOKMESH_TEST_TANSU_LOG").ok().map(PathBuf::from);
        Self::launch(log.as_deref(), if log.is_some() { "info" } else { "warn" }).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a broker whose log (warnings) goes to the file `log`; fails with a message that
    /// says what is missing.
    pub fn start_logged(log: &Path) -> Result<TansuBroker, String> {
        Self::launch(Some(log), "warn")
    }

    fn launch(log: Option<&Path>, level: &str) -> Result<TansuBroker, String> {
        let bin = crate::find_binary("tansu").ok_or(
            "the `tansu` broker is not installed: cargo install tansu --locked --features dynostore".to_string(),
        )?;
        let port = crate::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let output = || match log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
            None => Stdio::null(),
        };
        let mut child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .map_err(|e| format!("starting tansu: {e}"))?;
        if !crate::wait_for_port(port, Duration::from_secs(20)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("tansu did not listen on {port}"));
        }
        Ok(TansuBroker { child, port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
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
