//! Crash tests that kill a writer mid-flight: the test binary runs one of its own (ignored)
//! tests as a child process that writes and prints `ack <what>` for every acknowledged write,
//! SIGKILLs it once enough were acknowledged, and then checks that every acknowledged write
//! survived.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the ignored test `test` of this test binary as a child with `env = dir`, reads its
/// `ack …` lines until at least `at_least` arrived (panics after 60 s), SIGKILLs it while it
/// is still writing, and answers every acknowledgement it printed (what follows `ack `),
/// those still in the pipe after the kill included.
pub fn acks_until_killed(test: &str, env: &str, dir: &Path, at_least: usize) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", test, "--ignored", "--nocapture", "--test-threads", "1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let ack = |line: String| line.strip_prefix("ack ").map(str::to_string);
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < at_least {
        assert!(Instant::now() < deadline, "the child acknowledged only {} writes", acked.len());
        let line = lines.next().expect("the child is still writing").expect("a line of the child");
        acked.extend(ack(line));
    }
    // SIGKILL while the writers are mid-flight.
    child.kill().expect("kill the child");
    // Acknowledgements printed before the kill are still in the pipe.
    acked.extend(lines.map_while(Result::ok).filter_map(ack));
    child.wait().expect("wait for the child");
    acked
}
