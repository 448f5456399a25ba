//! A `hookmesh <role>` process on free loopback ports, killed on drop.
//!
//! The binary is a parameter: the end-to-end tests pass their `CARGO_BIN_EXE_hookmesh`, the
//! bench the executable it runs in. [`Launch`] builds the command (`--grpc-addr` and
//! `--admin-addr` on port 0, receivers on loopback allowed), [`Launch::spawn`] starts it and
//! [`Starting::wait`] reads the `hookmesh <role> listening grpc=… admin=… [data=…]
//! [console=…]` line it prints once it serves. Its stderr (the log) is kept in memory or
//! written to a file; the rest of its stdout is drained so it never blocks on a full pipe.

use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Where a process's log (stderr) goes.
#[derive(Clone)]
pub enum Log {
    /// Kept in memory, line by line.
    Memory(Arc<Mutex<Vec<String>>>),
    /// Written to this file.
    File(PathBuf),
}

impl Log {
    /// The log so far (a file's last 4000 bytes).
    pub fn text(&self) -> String {
        match self {
            Log::Memory(lines) => lines.lock().join("\n"),
            Log::File(path) => file_tail(path, 4000),
        }
    }
}

/// The last `bytes` bytes of a file (`(no log)` when it cannot be read).
pub fn file_tail(path: &Path, bytes: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::from("(no log)") };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// What to start.
pub struct Launch {
    bin: PathBuf,
    role: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    remove: Vec<String>,
    log: Option<PathBuf>,
}

impl Launch {
    /// `<bin> <role> --grpc-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0`, never with the
    /// developer's `HOOKMESH_DATA_DIR`.
    pub fn new(bin: impl Into<PathBuf>, role: &str) -> Launch {
        Launch {
            bin: bin.into(),
            role: role.to_string(),
            args: ["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"].map(String::from).to_vec(),
            envs: Vec::new(),
            remove: vec!["HOOKMESH_DATA_DIR".into()],
            log: None,
        }
    }

    /// Lets it deliver to receivers on loopback, which the SSRF guard refuses by default.
    pub fn allow_loopback(self) -> Launch {
        self.args(["--allow-networks", "127.0.0.0/8"])
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Leaves out every `HOOKMESH_*` variable of this process's environment but `HOOKMESH_LOG`,
    /// so only the arguments configure it.
    pub fn without_hookmesh_env(mut self) -> Launch {
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str().filter(|k| k.starts_with("HOOKMESH_") && *k != "HOOKMESH_LOG") {
                self.remove.push(k.to_string());
            }
        }
        self
    }

    /// Writes its log to `path` instead of keeping it in memory.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log = Some(path.into());
        self
    }

    /// Starts the process; [`Starting::wait`] waits for its listening line.
    pub fn spawn(self) -> std::io::Result<Starting> {
        let mut cmd = Command::new(&self.bin);
        for k in &self.remove {
            cmd.env_remove(k);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v))).arg(&self.role).args(&self.args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let log = match &self.log {
            Some(path) => {
                cmd.stderr(std::fs::File::create(path)?);
                Log::File(path.clone())
            }
            None => {
                cmd.stderr(Stdio::piped());
                Log::Memory(Arc::default())
            }
        };
        let mut child = cmd.spawn()?;
        if let (Log::Memory(lines), Some(stderr)) = (&log, child.stderr.take()) {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().push(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.starts_with("hookmesh ") && line.contains(" listening ") {
                    let _ = tx.send(line);
                    break;
                }
            }
            for _ in lines.map_while(Result::ok) {}
        });
        Ok(Starting { child: Some(child), name: self.role, log, listening })
    }
}

/// A started process that has not said where it listens yet; killed if dropped.
pub struct Starting {
    child: Option<Child>,
    name: String,
    log: Log,
    listening: std::sync::mpsc::Receiver<String>,
}

impl Starting {
    /// Waits (blocking) for the listening line; on failure the error carries the log.
    pub fn wait(mut self, timeout: Duration) -> Result<Process, String> {
        let name = self.name.clone();
        let line = self.listening.recv_timeout(timeout).map_err(|_| {
            format!(
                "hookmesh {name} did not print its `listening` line within {timeout:?}; its log ends with:\n{}",
                self.log.text()
            )
        })?;
        let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_string);
        let addr = |key: &str| -> Result<SocketAddr, String> {
            field(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("hookmesh {name}: unexpected line `{line}`"))
        };
        let (grpc, admin) = (addr("grpc=")?, addr("admin=")?);
        Ok(Process {
            child: self.child.take().expect("a child until waited for"),
            name: self.name.clone(),
            grpc,
            admin,
            data: field("data="),
            console: field("console="),
            log: self.log.clone(),
        })
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running hookmesh process; killed (SIGKILL) on drop.
pub struct Process {
    child: Child,
    pub name: String,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    /// The `data=` of the listening line: the data directory, or `memory`.
    pub data: Option<String>,
    /// The `console=` of the listening line: the web console's URL, when it serves one.
    pub console: Option<String>,
    pub log: Log,
}

impl Process {
    /// Starts and waits up to 60 s; panics with the log when it does not come up.
    pub fn start(launch: Launch) -> Process {
        launch.spawn().expect("hookmesh starts").wait(Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        self.log.text()
    }

    /// The exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process with SIGKILL: no graceful shutdown, no final commit.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM hookmesh {}", self.name);
        self.child.wait().expect("wait for hookmesh")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
