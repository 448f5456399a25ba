//! The README's quick start, run as written: every `$ ` command of that section, against a
//! fresh hookmesh and the demo receiver, must succeed and deliver what the text promises.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn quick_start_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("## Quick start").expect("README has a Quick start section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end].lines().filter_map(|l| l.strip_prefix("$ ")).map(str::to_string).collect()
}

#[tokio::test]
async fn readme_quick_start_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let first_lines: Vec<&str> = readme.lines().take(4).collect();
    assert!(first_lines.iter().any(|l| l.contains("cargo run --release -p hookmesh -- standalone")), "{first_lines:?}");
    assert!(first_lines.iter().any(|l| l.contains("make test")), "{first_lines:?}");

    // The commands below reach the test's hookmesh through HOOKMESH_ADDR, as the quick start
    // tells its readers they can.
    let quick_start = &readme[readme.find("## Quick start").unwrap()..readme.find("## Events").unwrap()];
    for said in ["`HOOKMESH_ADDR`", "`HOOKMESH_TOKEN`", "`hookmesh ctl` and `hookmesh simulate`"] {
        assert!(quick_start.contains(said), "the quick start does not mention {said}");
    }

    let commands = quick_start_commands();
    assert!(commands.len() >= 6, "{commands:?}");
    let bin_dir = std::path::Path::new(BIN).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let receiver_port = hookmesh_testkit::free_port();
    let mut hm = None;
    let mut receiver = None;
    let printed = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut outputs = Vec::new();
    for cmd in &commands {
        if cmd.starts_with("cargo build") || cmd.starts_with("export PATH") {
            continue; // the test runs the binary cargo already built
        }
        let cmd = cmd.replace("127.0.0.1:9000", &format!("127.0.0.1:{receiver_port}"));
        if let Some(flags) = cmd.strip_prefix("hookmesh standalone") {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            hm = Some(Hookmesh::start_with(&[&["--no-default-allow"], flags.as_slice()].concat()));
            continue;
        }
        let hm = hm.as_ref().expect("standalone is started before other commands");
        if cmd.starts_with("hookmesh receive") {
            let mut child = Command::new("bash")
                .args(["-c", &format!("exec {cmd}")])
                .env("PATH", &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let sink = printed.clone();
            std::thread::spawn(move || {
                BufReader::new(out).lines().map_while(Result::ok).for_each(|l| sink.lock().push(l))
            });
            assert!(hookmesh_testkit::wait_for_port(receiver_port, Duration::from_secs(10)), "receiver listens");
            receiver = Some(child);
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", &cmd])
            .current_dir(repo_root())
            .env("PATH", &path)
            .env("HOOKMESH_ADDR", hm.url())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "`{cmd}` failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        if cmd.starts_with("hookmesh simulate") {
            // The README promises five requests at the receiver.
            let got = wait_until(Duration::from_secs(20), || {
                printed.lock().iter().filter(|l| l.starts_with("POST /crm")).count() >= 5
            })
            .await;
            assert!(got, "receiver printed: {:?}", printed.lock());
        }
        outputs.push((cmd, stdout));
    }
    let (_, list) =
        outputs.iter().find(|(c, _)| c.starts_with("hookmesh ctl delivery list")).expect("the README lists deliveries");
    assert_eq!(list.matches(" success ").count(), 5, "{list}");
    let lines = printed.lock().clone();
    assert!(lines.iter().all(|l| l.contains("\"phone\":") && l.contains("webhook-id=msg_")), "{lines:?}");
    if let Some(mut r) = receiver {
        let _ = r.kill();
        let _ = r.wait();
    }
}
