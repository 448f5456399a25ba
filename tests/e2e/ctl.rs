//! `hookmesh ctl` driven the way an operator would: run the command, read the exit status, the
//! table columns, the `-o json` document and the one `error: …` line, and check that what the
//! command claims is what receivers on loopback actually get.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
/// Long enough for an event that was going to be delivered to have arrived.
const SETTLE: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------------------------
// running ctl

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `hookmesh ctl --addr <addr> <args>`, run off the runtime thread so the loopback receivers of
/// the test keep answering while the command waits on hookmesh (resend, test-send, recover).
async fn ctl_at(addr: &str, args: &[&str]) -> Out {
    let addr = addr.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .arg("ctl")
            .arg("--addr")
            .arg(&addr)
            .args(&args)
            .env_remove("HOOKMESH_TOKEN")
            .output()
            .expect("ctl runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

async fn ctl(hm: &Hookmesh, args: &[&str]) -> Out {
    ctl_at(&hm.url(), args).await
}

/// A command that must succeed quietly; answers its stdout.
async fn ok(hm: &Hookmesh, args: &[&str]) -> String {
    let out = ctl(hm, args).await;
    assert!(out.ok, "`hookmesh ctl {}` failed:\nstdout: {}\nstderr: {}", args.join(" "), out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "`hookmesh ctl {}` wrote to stderr: {}", args.join(" "), out.stderr);
    out.stdout
}

/// `-o json` output of a command that must succeed, parsed.
async fn json_of(hm: &Hookmesh, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let text = ok(hm, &args).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{}` is not JSON ({e}): {text}", args.join(" ")))
}

/// A failure the way ctl promises it: non-zero exit, nothing on stdout, exactly one line on
/// stderr starting with `error:`. Answers that line.
fn one_error_line(args: &[&str], out: &Out) -> String {
    let cmd = args.join(" ");
    assert!(!out.ok, "`hookmesh ctl {cmd}` succeeded but should fail:\n{}", out.stdout);
    assert!(out.stdout.is_empty(), "`hookmesh ctl {cmd}` failed but printed to stdout: {}", out.stdout);
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "`hookmesh ctl {cmd}`: expected one error line, got: {err:?}");
    assert!(err.starts_with("error: "), "`hookmesh ctl {cmd}`: {err:?}");
    err.to_string()
}

async fn fails(hm: &Hookmesh, args: &[&str]) -> String {
    one_error_line(args, &ctl(hm, args).await)
}

// ---------------------------------------------------------------------------------------------
// reading what ctl prints

/// The rows of an aligned table (first line: the headers), as header → cell. Columns start where
/// their header starts; cells may be empty or contain single spaces.
fn table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<char> = lines.next().expect("a header line").chars().collect();
    let starts: Vec<usize> =
        (0..header.len()).filter(|&i| header[i] != ' ' && (i == 0 || header[i - 1] == ' ')).collect();
    let names: Vec<String> = header.iter().collect::<String>().split_whitespace().map(str::to_string).collect();
    assert_eq!(starts.len(), names.len(), "headers without spaces: {header:?}");
    lines
        .map(|line| {
            let c: Vec<char> = line.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let from = starts[k].min(c.len());
                    let to = starts.get(k + 1).copied().unwrap_or(c.len()).min(c.len());
                    (name.clone(), c[from..to].iter().collect::<String>().trim().to_string())
                })
                .collect()
        })
        .collect()
}

/// Every `key: value` line of a description (up to the first blank line), in order.
fn described(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn all_of(text: &str, key: &str) -> Vec<String> {
    described(text).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}

fn field(text: &str, key: &str) -> String {
    all_of(text, key).into_iter().next().unwrap_or_else(|| panic!("no `{key}:` line in:\n{text}"))
}

/// The secret of a create or rotate-secret answer: the one `signing secret (shown once):` line.
fn shown_secret(text: &str) -> String {
    let lines: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("signing secret (shown once): ")).map(str::trim).collect();
    assert_eq!(lines.len(), 1, "expected one signing secret line in:\n{text}");
    assert!(lines[0].starts_with("whsec_") && lines[0].len() > 20, "{text}");
    lines[0].to_string()
}

/// `publish` prints a results table and then the summary line.
fn publish_output(text: &str) -> (Vec<BTreeMap<String, String>>, String) {
    let text = text.trim_end();
    let (rows, summary) = text.rsplit_once('\n').expect("a results table and a summary line");
    (table(rows), summary.to_string())
}

// ---------------------------------------------------------------------------------------------
// files and receivers

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("hookmesh-ctl-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `name` and answers its path.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// Events as JSON lines.
    fn events(&self, name: &str, events: &[Value]) -> String {
        let lines: Vec<String> = events.iter().map(Value::to_string).collect();
        self.write(name, &(lines.join("\n") + "\n"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel).canonicalize().unwrap();
    p.to_str().unwrap().to_string()
}

/// Waits for a request whose URI starts with `prefix`; answers the first such.
async fn request_to(rx: &Recorder, prefix: &str) -> Received {
    let got = wait_until(WAIT, || rx.received().iter().any(|r| r.uri.starts_with(prefix))).await;
    assert!(got, "no request to {prefix}; got: {:#?}", rx.received());
    rx.received().into_iter().find(|r| r.uri.starts_with(prefix)).unwrap()
}

fn requests_to(rx: &Recorder, prefix: &str) -> Vec<Received> {
    rx.received().into_iter().filter(|r| r.uri.starts_with(prefix)).collect()
}

/// The body of `preview` / rendered-request output: what follows the first blank line.
fn rendered_body(text: &str) -> String {
    text.split_once("\n\n").map(|(_, b)| b.trim_end().to_string()).unwrap_or_else(|| panic!("no body in:\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// 1. a webhook's life from flags

#[tokio::test]
async fn ctl_webhook_lifecycle_from_flags() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("lifecycle");
    let crm = repo_file("examples/crm.json");
    let url = rx.url("/crm");
    #[rustfmt::skip]
    let create = [
        "webhook", "create", "--tenant", "acme", "--name", "CRM", "--url", &url, "--event", "call.ended",
        "--direction", "inbound", "--ivr-option", "Sales", "--header", "X-Api-Key: k", "--query", "src=hookmesh",
        "--body-file", &crm, "--status", "200-299", "--retry-schedule", "1s,2s", "--timeout-ms", "3000",
    ];
    let created = ok(&hm, &create).await;
    let secret = shown_secret(&created);
    assert_eq!(created.matches(&secret).count(), 1, "the secret is printed once:\n{created}");
    let id = field(&created, "id");
    let request = format!("POST {url}");
    for (key, want) in [
        ("tenant", "acme"),
        ("name", "CRM"),
        ("enabled", "true"),
        ("version", "1"),
        ("events", "call.ended"),
        ("directions", "inbound"),
        ("ivr options", "Sales"),
        ("request", request.as_str()),
        ("query", "src=hookmesh"),
        ("header", "X-Api-Key: k"),
        ("content type", "json"),
        ("success", "200-299"),
        ("timeout", "3000 ms"),
        ("retry schedule", "1s, 2s"),
    ] {
        assert_eq!(field(&created, key), want, "`{key}` of:\n{created}");
    }
    let secrets = all_of(&created, "secret");
    assert_eq!(secrets.len(), 1, "{created}");
    assert!(secrets[0].starts_with("whsec_") && !secrets[0].contains(&secret[10..]), "only a prefix: {created}");

    // get -o json: the stored definition in the documented (hookmesh-core) shape, no secret.
    let w = json_of(&hm, &["webhook", "get", &id]).await;
    assert_eq!(
        (w["id"].as_str(), w["tenant_id"].as_str(), w["name"].as_str()),
        (Some(&*id), Some("acme"), Some("CRM"))
    );
    assert_eq!((&w["enabled"], &w["version"]), (&json!(true), &json!(1)));
    assert_eq!(w["trigger"]["event_types"], json!(["call.ended"]));
    assert_eq!(w["trigger"]["directions"], json!(["inbound"]));
    assert_eq!(w["trigger"]["ivr_options"], json!(["Sales"]));
    let r = &w["request"];
    assert_eq!((r["method"].as_str(), r["url"].as_str()), (Some("POST"), Some(&*url)));
    assert_eq!(r["headers"], json!([{"name": "X-Api-Key", "value": "k"}]));
    assert_eq!(r["query"], json!([{"name": "src", "value": "hookmesh"}]));
    assert_eq!(r["content_type"], "json");
    assert_eq!((r["body"]["kind"].as_str(), r["body"]["format"].as_str()), (Some("fields"), Some("json")));
    assert_eq!(r["body"]["example"].as_str().unwrap(), std::fs::read_to_string(&crm).unwrap());
    assert_eq!(w["success"]["status_codes"], json!([{"from": 200, "to": 299}]));
    assert_eq!((&w["policy"]["timeout_ms"], &w["policy"]["retry_schedule"]), (&json!(3000), &json!([1, 2])));
    assert_eq!(w["secrets"].as_array().unwrap().len(), 1);
    assert!(!w.to_string().contains(&secret[10..]), "get never shows the secret: {w}");

    // list --tenant: the row, and nothing of another tenant.
    ok(&hm, &["webhook", "create", "--tenant", "other", "--name", "Elsewhere", "--url", &rx.url("/other")]).await;
    let rows = table(&ok(&hm, &["webhook", "list", "--tenant", "acme"]).await);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    for (col, want) in [
        ("ID", id.as_str()),
        ("TENANT", "acme"),
        ("NAME", "CRM"),
        ("ENABLED", "true"),
        ("EVENTS", "call.ended"),
        ("URL", url.as_str()),
        ("VERSION", "1"),
    ] {
        assert_eq!(row[col], want, "{col} of {row:?}");
    }

    // update: the flags change the name, the rest stays, the version moves on.
    let updated = ok(&hm, &["webhook", "update", &id, "--name", "CRM v2"]).await;
    assert_eq!((field(&updated, "name"), field(&updated, "version")), ("CRM v2".into(), "2".into()), "{updated}");
    assert_eq!(field(&updated, "header"), "X-Api-Key: k");
    assert_eq!(field(&updated, "events"), "call.ended");
    // A stale expected version is refused and changes nothing.
    let stale = fails(&hm, &["webhook", "update", &id, "--name", "CRM v3", "--expected-version", "1"]).await;
    assert!(stale.contains("expected_version") && stale.contains("version 2"), "{stale}");
    let w = json_of(&hm, &["webhook", "get", &id]).await;
    assert_eq!((w["name"].as_str(), &w["version"]), (Some("CRM v2"), &json!(2)));

    // disable: matching calls are no longer delivered (a probe webhook of the tenant shows the
    // event went through); enable: they are again.
    ok(&hm, &["webhook", "create", "--tenant", "acme", "--name", "Probe", "--url", &rx.url("/probe")]).await;
    let out = ok(&hm, &["webhook", "disable", &id]).await;
    assert_eq!(out.trim(), format!("webhook {id} disabled (version 3)"));
    let rows = table(&ok(&hm, &["webhook", "list", "--tenant", "acme"]).await);
    assert_eq!(rows.iter().find(|r| r["ID"] == id).expect("row")["ENABLED"], "false", "{rows:?}");
    let data = json!({
        "ani": "5551234", "ani_full_name": "Ada Lovelace", "campaign_name": "Spring", "answered_time": 29,
        "direction": "inbound", "ivr_option": "1", "ivr_label": "Sales",
        "rec_audiourl": "https://rec.example/1.mp3", "tags": {"region": "south"},
    });
    let file = tmp.events("off.jsonl", &[event("p-1", "call.ended", "acme", "call-1", data.clone())]);
    let (_, summary) = publish_output(&ok(&hm, &["publish", "--file", &file]).await);
    assert_eq!(summary, "accepted 1, rejected 0, duplicates 0");
    request_to(&rx, "/probe").await;
    tokio::time::sleep(SETTLE).await;
    assert!(requests_to(&rx, "/crm").is_empty(), "a disabled webhook delivered: {:#?}", rx.received());
    let out = ok(&hm, &["webhook", "enable", &id]).await;
    assert_eq!(out.trim(), format!("webhook {id} enabled (version 4)"));

    // rotate-secret: a new secret, shown once; the old one keeps signing during the grace period.
    let rotated = ok(&hm, &["webhook", "rotate-secret", &id]).await;
    let new_secret = shown_secret(&rotated);
    assert_ne!(new_secret, secret);
    assert_eq!(rotated.matches(&new_secret).count(), 1, "{rotated}");
    assert!(!rotated.contains(&secret), "the old secret is not shown again: {rotated}");
    assert_eq!(field(&rotated, "version"), "5");
    let secrets = all_of(&rotated, "secret");
    assert_eq!(secrets.len(), 2, "{rotated}");
    assert!(secrets[0].contains("expires") && !secrets[1].contains("expires"), "{secrets:?}");

    let file = tmp.events("on.jsonl", &[event("p-2", "call.ended", "acme", "call-2", data)]);
    ok(&hm, &["publish", "--file", &file]).await;
    let got = request_to(&rx, "/crm").await;
    assert_eq!((got.method.as_str(), got.uri.as_str()), ("POST", "/crm?src=hookmesh"));
    assert_eq!(got.header("x-api-key").as_deref(), Some("k"));
    assert_eq!(
        got.json(),
        json!({"phone": "5551234", "name": "Ada Lovelace", "campaign": "Spring", "talk_seconds": 29,
               "pressed": "Sales", "recording": "https://rec.example/1.mp3", "tags": {"region": "south"}})
    );
    let signature = got.header("webhook-signature").expect("signed");
    assert_eq!(signature.split_whitespace().filter(|s| s.starts_with("v1,")).count(), 2, "{signature}");
    verify_signature(&secret, &got).expect("the old secret still verifies");
    verify_signature(&new_secret, &got).expect("the new secret verifies");

    // delete, then get: not found.
    let out = ok(&hm, &["webhook", "delete", &id]).await;
    assert_eq!(out.trim(), format!("deleted webhook {id}"));
    let gone = fails(&hm, &["webhook", "get", &id]).await;
    assert!(gone.starts_with("error: not found: ") && gone.contains(&id), "{gone}");
    let rows = table(&ok(&hm, &["webhook", "list", "--tenant", "acme"]).await);
    assert_eq!(rows.iter().map(|r| r["NAME"].as_str()).collect::<Vec<_>>(), ["Probe"]);
}

#[tokio::test]
async fn ctl_webhook_list_pages_with_a_hint_on_stderr() {
    let hm = Hookmesh::start();
    for name in ["A", "B", "C"] {
        ok(&hm, &["webhook", "create", "--tenant", "acme", "--name", name, "--url", "https://x.example/h"]).await;
    }
    let all = table(&ok(&hm, &["webhook", "list", "--tenant", "acme"]).await);
    assert_eq!(all.len(), 3, "without --limit every page is listed: {all:?}");
    let out = ctl(&hm, &["webhook", "list", "--tenant", "acme", "--limit", "2"]).await;
    assert!(out.ok, "{}", out.stderr);
    let page = table(&out.stdout);
    assert_eq!(page.len(), 2, "{}", out.stdout);
    assert_eq!(out.stderr.trim(), format!("more: --after {}", page[1]["ID"]), "the hint stays off stdout");
    let rest =
        table(&ok(&hm, &["webhook", "list", "--tenant", "acme", "--limit", "2", "--after", &page[1]["ID"]]).await);
    let mut ids: Vec<String> = page.iter().chain(&rest).map(|r| r["ID"].clone()).collect();
    ids.sort();
    let mut want: Vec<String> = all.iter().map(|r| r["ID"].clone()).collect();
    want.sort();
    assert_eq!(ids, want);
}

// ---------------------------------------------------------------------------------------------
// 2. a webhook from a JSON file

#[tokio::test]
async fn ctl_webhook_from_file_delivers_xml_with_put() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("file");
    let definition = json!({
        "tenant_id": "acme",
        "name": "XML lead",
        "request": {
            "url": rx.url("/xml"),
            "method": "PUT",
            "content_type": "xml",
            "body": {"kind": "fields", "format": "xml", "example": "<lead><phone>%ani%</phone></lead>"},
        },
        "trigger": {"event_types": ["call.ended"]},
    });
    let file = tmp.write("webhook.json", &serde_json::to_string_pretty(&definition).unwrap());
    let created = ok(&hm, &["webhook", "create", "--file", &file]).await;
    let secret = shown_secret(&created);
    let id = field(&created, "id");
    assert_eq!(field(&created, "request"), format!("PUT {}", rx.url("/xml")));
    assert_eq!(field(&created, "content type"), "xml");
    assert_eq!(field(&created, "events"), "call.ended");

    let events = tmp.events(
        "events.jsonl",
        &[
            event("x-1", "call.started", "acme", "call-x", json!({"ani": "5557777"})),
            event("x-2", "call.ended", "acme", "call-x", json!({"ani": "5557777"})),
        ],
    );
    let (rows, summary) = publish_output(&ok(&hm, &["publish", "--file", &events]).await);
    assert_eq!(summary, "accepted 2, rejected 0, duplicates 0");
    assert_eq!(rows.iter().map(|r| r["RESULT"].as_str()).collect::<Vec<_>>(), ["accepted", "accepted"]);
    let got = rx.wait_for(1, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(rx.count(), 1, "only call.ended matches: {:#?}", rx.received());
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.uri.as_str()), ("PUT", "/xml"));
    assert_eq!(r.header("content-type").as_deref(), Some("application/xml"));
    let body = std::str::from_utf8(&r.body).unwrap();
    assert!(body.contains("<lead><phone>5557777</phone></lead>"), "{body}");
    verify_signature(&secret, r).unwrap();

    // `get -o json`, edited, goes back in with `update --file`.
    let mut w = json_of(&hm, &["webhook", "get", &id]).await;
    assert_eq!((w["request"]["method"].as_str(), w["request"]["content_type"].as_str()), (Some("PUT"), Some("xml")));
    w["name"] = json!("XML lead (edited)");
    let edited = tmp.write("edited.json", &w.to_string());
    let updated = ok(&hm, &["webhook", "update", &id, "--file", &edited]).await;
    assert_eq!((field(&updated, "name"), field(&updated, "version")), ("XML lead (edited)".into(), "2".into()));
    assert_eq!(field(&updated, "request"), format!("PUT {}", rx.url("/xml")));
    assert_eq!(all_of(&updated, "secret").len(), 1, "secrets survive a file update: {updated}");
    // The same file again is stale now.
    let stale = fails(&hm, &["webhook", "update", &id, "--file", &edited, "--expected-version", "1"]).await;
    assert!(stale.contains("expected_version"), "{stale}");
}

// ---------------------------------------------------------------------------------------------
// 3. templates and tokens

#[tokio::test]
async fn ctl_templates_extract_preview_and_deliver() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("templates");
    let example = r#"{"phone": "%ani%", "caller": "", "source": "x", "call": {"id": "{{ callid }}"}}"#;
    let example_file = tmp.write("lead.json", example);
    #[rustfmt::skip]
    let created = ok(&hm, &[
        "template", "create", "--tenant", "acme", "--name", "Lead", "--group", "sales", "--kind", "fields",
        "--example-file", &example_file, "--map", "caller=token:ani_full_name", "--map", "source=const:\"crm\"",
    ]).await;
    let tpl = field(&created, "id");
    for (key, want) in [
        ("tenant", "acme"),
        ("group", "sales"),
        ("name", "Lead"),
        ("kind", "fields"),
        ("content type", "json"),
        ("version", "1"),
    ] {
        assert_eq!(field(&created, key), want, "`{key}` of:\n{created}");
    }
    let (_, mappings) = created.rsplit_once("\n\n").unwrap();
    let mappings: Vec<(String, String)> =
        table(mappings).into_iter().map(|r| (r["PATH"].clone(), r["SOURCE"].clone())).collect();
    assert_eq!(
        mappings,
        [("caller".to_string(), "token:ani_full_name".to_string()), ("source".into(), "const:\"crm\"".into())]
    );
    ok(
        &hm,
        &["template", "create", "--tenant", "other", "--name", "Theirs", "--kind", "pairs", "--map", "a=token:ani"],
    )
    .await;

    let rows = table(&ok(&hm, &["template", "list", "--tenant", "acme"]).await);
    assert_eq!(rows.len(), 1, "{rows:?}");
    for (col, want) in [
        ("ID", tpl.as_str()),
        ("TENANT", "acme"),
        ("GROUP", "sales"),
        ("NAME", "Lead"),
        ("TYPE", "json"),
        ("KIND", "fields"),
        ("VERSION", "1"),
    ] {
        assert_eq!(rows[0][col], want, "{col} of {rows:?}");
    }
    let t = json_of(&hm, &["template", "get", &tpl]).await;
    assert_eq!((t["id"].as_str(), t["group"].as_str(), &t["version"]), (Some(&*tpl), Some("sales"), &json!(1)));
    assert_eq!((t["body"]["kind"].as_str(), t["body"]["format"].as_str()), (Some("fields"), Some("json")));
    assert_eq!(t["body"]["example"].as_str().unwrap().trim(), example);
    assert_eq!(
        t["body"]["fields"],
        json!([{"path": "caller", "source": {"kind": "token", "token": "ani_full_name"}},
               {"path": "source", "source": {"kind": "constant", "value": "crm"}}])
    );

    // extract: the fields of an XML example and the source each gets.
    let xml = tmp.write(
        "lead.xml",
        r#"<lead source="web"><phone>%ani%</phone><name>who</name><dni>{{ tracking }}</dni></lead>"#,
    );
    let rows = table(&ok(&hm, &["template", "extract", "--format", "xml", "--example-file", &xml]).await);
    let fields: BTreeMap<String, String> = rows.into_iter().map(|r| (r["PATH"].clone(), r["SOURCE"].clone())).collect();
    assert_eq!(fields.get("lead/phone").map(String::as_str), Some("token:ani"), "{fields:?}");
    assert_eq!(fields.get("lead/dni").map(String::as_str), Some("token:tracking"), "{fields:?}");
    assert_eq!(fields.get("lead/name").map(String::as_str), Some("const:\"who\""), "{fields:?}");
    assert_eq!(fields.len(), 4, "the attribute is a field too: {fields:?}");
    let extracted = json_of(&hm, &["template", "extract", "--format", "xml", "--example-file", &xml]).await;
    assert_eq!(extracted["fields"].as_array().unwrap().len(), 4, "{extracted}");

    // preview on the sample event (built from the token catalog's examples).
    let preview = ok(&hm, &["preview", "--template", &tpl]).await;
    assert!(preview.contains("content-type: application/json"), "{preview}");
    let body: Value = serde_json::from_str(&rendered_body(&preview)).unwrap();
    assert_eq!(body["phone"], "7776734736", "{body}");
    assert_eq!(body["caller"], "Freddy Krueger", "{body}");
    assert_eq!(body["source"], "crm", "{body}");
    assert!(body["call"]["id"].as_str().is_some_and(|s| !s.is_empty()), "{body}");

    // A webhook rendering with the template delivers exactly what preview renders for the event.
    #[rustfmt::skip]
    let created = ok(&hm, &[
        "webhook", "create", "--tenant", "acme", "--name", "Via template", "--url", &rx.url("/lead"),
        "--event", "call.ended", "--template", &tpl,
    ]).await;
    let webhook = field(&created, "id");
    assert_eq!(field(&created, "template"), tpl);
    let ev =
        event("t-1", "call.ended", "acme", "call-77", json!({"ani": "5552000", "ani_full_name": "Ada <Lovelace>"}));
    let ev_file = tmp.write("event.json", &ev.to_string());
    ok(&hm, &["publish", "--file", &ev_file]).await;
    let got = request_to(&rx, "/lead").await;
    assert_eq!(
        got.json(),
        json!({"phone": "5552000", "caller": "Ada <Lovelace>", "source": "crm", "call": {"id": "call-77"}})
    );
    let preview = ok(&hm, &["preview", "--template", &tpl, "--event-file", &ev_file]).await;
    assert_eq!(rendered_body(&preview), std::str::from_utf8(&got.body).unwrap());
    let preview = json_of(&hm, &["preview", "--webhook", &webhook, "--event-file", &ev_file]).await;
    assert_eq!((preview["method"].as_str(), preview["url"].as_str()), (Some("POST"), Some(&*rx.url("/lead"))));
    assert_eq!(preview["body"].as_str().unwrap(), std::str::from_utf8(&got.body).unwrap());

    // A template in use cannot be deleted; the error names the webhook.
    let in_use = fails(&hm, &["template", "delete", &tpl]).await;
    assert!(in_use.contains(&webhook), "{in_use}");
    assert_eq!(field(&ok(&hm, &["template", "get", &tpl]).await, "version"), "1");
    ok(&hm, &["webhook", "delete", &webhook]).await;
    assert_eq!(ok(&hm, &["template", "delete", &tpl]).await.trim(), format!("deleted template {tpl}"));
    assert!(table(&ok(&hm, &["template", "list", "--tenant", "acme"]).await).is_empty());
}

/// `tokens` prints one table per category: `name:` then the table indented by two spaces.
fn token_categories(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let (name, rest) = block.split_once('\n').unwrap_or_else(|| panic!("{block:?}"));
            let name = name.strip_suffix(':').unwrap_or_else(|| panic!("a category line: {name:?}"));
            let rows: Vec<&str> =
                rest.lines().map(|l| l.strip_prefix("  ").unwrap_or_else(|| panic!("{l:?}"))).collect();
            (name.to_string(), table(&rows.join("\n")))
        })
        .collect()
}

#[tokio::test]
async fn ctl_tokens_lists_the_catalog() {
    let hm = Hookmesh::start();
    let cats = token_categories(&ok(&hm, &["tokens"]).await);
    for c in ["call_begin", "call_end", "dni"] {
        assert!(cats.contains_key(c), "category {c}: {:?}", cats.keys().collect::<Vec<_>>());
    }
    let token = |name: &str| -> BTreeMap<String, String> {
        cats.values().flatten().find(|r| r["TOKEN"] == name).unwrap_or_else(|| panic!("token {name}")).clone()
    };
    assert!(cats["call_begin"].iter().any(|r| r["TOKEN"] == "ani"), "ani is a call_begin token");
    for name in ["ani", "tracking", "callid", "visitor_long"] {
        let t = token(name);
        assert!(!t["TYPE"].is_empty() && !t["EXAMPLE"].is_empty() && !t["DESCRIPTION"].is_empty(), "{t:?}");
    }
    assert_eq!(token("ani")["EXAMPLE"], "\"7776734736\"");
    assert_eq!(token("visitor_long")["TYPE"], "number");

    let v = json_of(&hm, &["tokens"]).await;
    let categories = v["categories"].as_array().expect("categories");
    let mut names: Vec<&str> = categories.iter().map(|c| c["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, cats.keys().map(String::as_str).collect::<Vec<_>>(), "the same categories as the table");
    let all: Vec<&Value> = categories.iter().flat_map(|c| c["tokens"].as_array().unwrap()).collect();
    for name in ["ani", "tracking", "callid", "visitor_long"] {
        let t = all.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("{name} in -o json"));
        assert!(t["type"].is_string() && t["description"].is_string(), "{t}");
    }
    let ani = all.iter().find(|t| t["name"] == "ani").unwrap();
    assert_eq!(ani["example"], "7776734736");
    let visitor_long = all.iter().find(|t| t["name"] == "visitor_long").unwrap();
    assert!(visitor_long["example"].is_number(), "{visitor_long}");

    let one = token_categories(&ok(&hm, &["tokens", "--category", "call_begin"]).await);
    assert_eq!(one.keys().collect::<Vec<_>>(), ["call_begin"]);
    let unknown = fails(&hm, &["tokens", "--category", "nope"]).await;
    assert!(unknown.contains("nope") && unknown.contains("call_begin"), "{unknown}");
}

// ---------------------------------------------------------------------------------------------
// 4. errors

#[tokio::test]
async fn ctl_errors_are_one_line_naming_the_field() {
    let hm = Hookmesh::start();
    let tmp = TempDir::new("errors");
    let bad_text = tmp.write("bad.j2", "{\n  \"a\": {{ ani | }}\n}\n");
    let base = ["webhook", "create", "--tenant", "acme", "--name", "W"];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().copied().chain(extra.iter().copied()).collect() };
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (with(&["--url", "ftp://x"]), vec!["request.url"]),
        (
            with(&["--url", "https://x.example", "--event", "call.exploded"]),
            vec!["trigger.event_types[0]", "call.exploded"],
        ),
        (with(&["--url", "https://x.example", "--time-zone", "Mars/Base"]), vec!["request.time_zone", "Mars/Base"]),
        (with(&["--url", "https://x.example", "--header", "no colon"]), vec!["--header"]),
        (with(&["--url", "https://x.example", "--status", "abc"]), vec!["--status"]),
        // Control characters in an echoed value are escaped, on the server and in ctl itself.
        (
            with(&["--url", "https://x.example", "--header", "X-A\r\nInjected: 1"]),
            vec!["--header", "`X-A\\r\\nInjected` is not a header name"],
        ),
        (with(&["--url", "https://x.example", "--status", "2xx\nInjected"]), vec!["--status", "2xx\\nInjected"]),
    ];
    for (args, wants) in cases {
        let line = fails(&hm, &args).await;
        for want in wants {
            assert!(line.contains(want), "`{}`: expected `{want}` in {line:?}", args.join(" "));
        }
    }
    let text = with(&["--url", "https://x.example", "--body-kind", "text", "--body-file"]);
    let args: Vec<&str> = text.into_iter().chain([bad_text.as_str()]).collect();
    let line = fails(&hm, &args).await;
    assert!(line.contains("request.body.text") && line.contains("line 2"), "{line}");

    // Nothing was created by any of them.
    assert!(table(&ok(&hm, &["webhook", "list", "--tenant", "acme"]).await).is_empty());

    // Not found, in every family.
    for args in [
        &["webhook", "get", "wh_nope"][..],
        &["template", "get", "tpl_nope"],
        &["delivery", "get", "msg_nope"],
        &["delivery", "resend", "msg_nope"],
    ] {
        let line = fails(&hm, args).await;
        assert!(line.starts_with("error: not found: ") && line.contains("_nope"), "{line}");
    }

    // Nobody listening.
    let args = ["webhook", "list"];
    let started = Instant::now();
    let line = one_error_line(&args, &ctl_at("http://127.0.0.1:1", &args).await);
    assert!(line.starts_with("error: cannot reach hookmesh at http://127.0.0.1:1"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10), "a refused connection fails fast");
    // `simulate` says the same once: each cause appears once, no generic "transport error".
    let out = Command::new(BIN)
        .args(["simulate", "--addr", "http://127.0.0.1:1", "--tenant", "acme", "--calls", "1"])
        .env_remove("HOOKMESH_TOKEN")
        .output()
        .expect("simulate runs");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("error: cannot reach hookmesh at http://127.0.0.1:1: "), "{err}");
    assert_eq!(err.matches("tcp connect error").count(), 1, "{err}");
    assert!(!err.contains("transport error") && err.contains("Connection refused"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 5. the delivery log

/// The README's XML flow: a fields template made from an XML example sends XML
/// (`application/xml`) to a webhook that leaves its content type unset; a webhook set to
/// another content type than its template's is refused naming both fields; field paths take
/// `lead/first` and `lead.first` alike.
#[tokio::test]
async fn ctl_xml_template_sends_xml_and_a_disagreeing_webhook_is_refused() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("xml-template");
    let lead = tmp.write(
        "lead.xml",
        r#"<lead source="web"><first>%ani_first_name%</first><phone>x</phone><note>n</note></lead>"#,
    );
    #[rustfmt::skip]
    let created = json_of(&hm, &[
        "template", "create", "--tenant", "acme", "--name", "Lead", "--kind", "fields", "--example-file", &lead,
        "--map", "lead/phone=token:ani", "--map", "lead.note=const:\"called\"", "--map", "lead.@source=token:tracking",
    ]).await;
    assert_eq!(created["content_type"], "xml", "a template made from an XML example is XML: {created}");
    let template = created["id"].as_str().unwrap().to_string();

    #[rustfmt::skip]
    let webhook = json_of(&hm, &[
        "webhook", "create", "--tenant", "acme", "--name", "CRM", "--url", &rx.url("/lead"),
        "--event", "call.ended", "--template", &template,
    ]).await;
    assert_eq!(webhook["webhook"]["request"]["content_type"], "xml", "{webhook}");
    hm.publish(&[event(
        "x-1",
        "call.ended",
        "acme",
        "call-x",
        json!({"ani": "5551234", "ani_first_name": "Ada & Co", "tracking": "7774839229"}),
    )])
    .await;
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("content-type").as_deref(), Some("application/xml"));
    let body = String::from_utf8(got[0].body.to_vec()).unwrap();
    assert!(
        body.ends_with(
            r#"<lead source="7774839229"><first>Ada &amp; Co</first><phone>5551234</phone><note>called</note></lead>"#
        ),
        "{body}"
    );

    // A webhook set to JSON with the XML template: refused, naming both fields.
    #[rustfmt::skip]
    let line = fails(&hm, &[
        "webhook", "create", "--tenant", "acme", "--name", "Json", "--url", &rx.url("/json"),
        "--event", "call.ended", "--template", &template, "--content-type", "json",
    ]).await;
    assert!(line.contains("request.content_type: `json` disagrees with the content_type `xml` of template"), "{line}");
    assert!(line.contains(&template) && line.contains("request.template_id"), "{line}");
    // Set to the template's own content type: fine.
    #[rustfmt::skip]
    ok(&hm, &[
        "webhook", "create", "--tenant", "acme", "--name", "Xml", "--url", &rx.url("/xml"),
        "--event", "call.ended", "--template", &template, "--content-type", "xml",
    ]).await;
    // Changing the template's content type would break the webhooks using it: refused.
    let line = fails(&hm, &["template", "update", &template, "--content-type", "json"]).await;
    assert!(line.contains("would break") && line.contains("request.content_type"), "{line}");
}

/// Each delivery records the campaign (id and name), direction and tracking number of the
/// call behind it; `ctl delivery list` shows them and filters by each (`--campaign` by id or
/// name, `--direction`, `--tracking` in any spelling of the number), `delivery get` and
/// `-o json` show them.
#[tokio::test]
async fn ctl_delivery_log_shows_and_filters_by_campaign_direction_and_tracking() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    ok(
        &hm,
        &["webhook", "create", "--tenant", "acme", "--name", "All", "--url", &rx.url("/all"), "--event", "call.ended"],
    )
    .await;
    let call = |n: &str, campaign: Option<(&str, &str)>, direction: &str, tracking: &str| {
        let mut data = json!({"direction": direction, "tracking": tracking});
        if let Some((id, name)) = campaign {
            data["campaign_id"] = json!(id);
            data["campaign_name"] = json!(name);
        }
        event(&format!("e-{n}"), "call.ended", "acme", &format!("call-{n}"), data)
    };
    hm.publish(&[
        call("1", Some(("cmp-1", "Sales Campaign")), "inbound", "+1 (777) 483-9229"),
        call("2", Some(("cmp-1", "Sales Campaign")), "outbound", "5550001111"),
        call("3", Some(("cmp-2", "Support")), "inbound", "5550001111"),
        call("4", None, "click_to_call", "7774839229"),
    ])
    .await;
    rx.wait_for(4, WAIT).await;

    let calls_of = |out: &str| -> Vec<String> {
        let mut calls: Vec<String> = table(out).iter().map(|r| r["CALL_ID"].clone()).collect();
        calls.sort();
        calls
    };
    let list = |extra: &'static [&'static str]| {
        let hm = &hm;
        async move { calls_of(&ok(hm, &[&["delivery", "list", "--tenant", "acme"][..], extra].concat()).await) }
    };
    // Each is logged once its attempt's outcome is recorded, just after the receiver got it.
    let mut all = Vec::new();
    let logged = wait_until_async(
        WAIT,
        || list(&[]),
        |l| {
            all = l.clone();
            l.len() == 4
        },
    )
    .await;
    assert!(logged, "{all:?}");
    assert_eq!(all, ["call-1", "call-2", "call-3", "call-4"]);
    assert_eq!(list(&["--campaign", "cmp-1"]).await, ["call-1", "call-2"]);
    assert_eq!(list(&["--campaign", "sales campaign"]).await, ["call-1", "call-2"]);
    assert_eq!(list(&["--campaign", "Support"]).await, ["call-3"]);
    assert_eq!(list(&["--direction", "inbound"]).await, ["call-1", "call-3"]);
    assert_eq!(list(&["--direction", "click-to-call"]).await, ["call-4"]);
    assert_eq!(list(&["--tracking", "7774839229"]).await, ["call-1", "call-4"]);
    assert_eq!(list(&["--tracking", "+1 555 000 1111", "--direction", "inbound"]).await, ["call-3"]);
    assert_eq!(list(&["--campaign", "cmp-1", "--tracking", "555-000-1111"]).await, ["call-2"]);
    assert!(list(&["--campaign", "cmp-9"]).await.is_empty());

    // The table shows them.
    let rows = table(&ok(&hm, &["delivery", "list", "--call-id", "call-1"]).await);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0]["CAMPAIGN"].as_str(), rows[0]["DIRECTION"].as_str(), rows[0]["TRACKING"].as_str()),
        ("Sales Campaign", "inbound", "+1 (777) 483-9229")
    );
    let rows = table(&ok(&hm, &["delivery", "list", "--call-id", "call-4"]).await);
    assert_eq!((rows[0]["CAMPAIGN"].as_str(), rows[0]["DIRECTION"].as_str()), ("-", "click_to_call"));

    // get and -o json.
    let listed = json_of(&hm, &["delivery", "list", "--campaign", "Support"]).await;
    let d = &listed["deliveries"][0];
    assert_eq!(
        (&d["campaign_id"], &d["campaign_name"], &d["direction"], &d["tracking"]),
        (&json!("cmp-2"), &json!("Support"), &json!("inbound"), &json!("5550001111")),
        "{listed}"
    );
    let id = d["id"].as_str().unwrap();
    let detail = ok(&hm, &["delivery", "get", id]).await;
    assert_eq!(field(&detail, "campaign"), "Support (cmp-2)", "{detail}");
    assert_eq!((field(&detail, "direction"), field(&detail, "tracking")), ("inbound".into(), "5550001111".into()));

    // A direction that is none of the three is refused naming the flag's field.
    let line = fails(&hm, &["delivery", "list", "--direction", "sideways"]).await;
    assert!(line.contains("direction: `sideways` is not inbound, outbound or click_to_call"), "{line}");
}

#[tokio::test]
async fn ctl_deliveries_list_get_resend_recover_test_send_and_dlq() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    rx.script(&[], 500);
    let tmp = TempDir::new("deliveries");
    #[rustfmt::skip]
    let created = json_of(&hm, &[
        "webhook", "create", "--tenant", "acme", "--name", "Down", "--url", &rx.url("/down"),
        "--event", "call.ended", "--retry-limit", "0",
    ]).await;
    let webhook = created["webhook"]["id"].as_str().expect("webhook.id").to_string();
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["webhook"]["policy"]["retry_limit"], 0);

    // A failing receiver, no retries: the delivery ends in error.
    let file = tmp.events("d1.jsonl", &[event("d-1", "call.ended", "acme", "call-1", json!({"ani": "5550001"}))]);
    ok(&hm, &["publish", "--file", &file]).await;
    let first = rx.wait_for(1, WAIT).await[0].clone();
    let id = first.header("webhook-id").unwrap();
    delivery_when(&hm, &id, |d| d.status == "error").await;

    let list = json_of(&hm, &["delivery", "list", "--status", "error"]).await;
    let deliveries = list["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{list}");
    let d = &deliveries[0];
    assert_eq!((d["id"].as_str(), d["status"].as_str()), (Some(&*id), Some("error")));
    assert_eq!((d["webhook_id"].as_str(), d["event_id"].as_str()), (Some(&*webhook), Some("d-1")));
    assert_eq!((d["event_type"].as_str(), d["call_id"].as_str()), (Some("call.ended"), Some("call-1")));
    assert_eq!((&d["attempts"], &d["last_status"]), (&json!(1), &json!(500)));
    assert!(json_of(&hm, &["delivery", "list", "--status", "success"]).await["deliveries"]
        .as_array()
        .unwrap()
        .is_empty());
    let rows = table(&ok(&hm, &["delivery", "list", "--tenant", "acme"]).await);
    assert_eq!(rows.len(), 1);
    for (col, want) in [
        ("ID", id.as_str()),
        ("STATUS", "error"),
        ("WEBHOOK", webhook.as_str()),
        ("EVENT_TYPE", "call.ended"),
        ("CALL_ID", "call-1"),
        ("ATTEMPTS", "1"),
        ("LAST_STATUS", "500"),
    ] {
        assert_eq!(rows[0][col], want, "{col} of {rows:?}");
    }

    // get: state, the request, the attempts.
    let detail = ok(&hm, &["delivery", "get", &id]).await;
    assert_eq!((field(&detail, "status"), field(&detail, "last status")), ("error".into(), "500".into()), "{detail}");
    assert_eq!(field(&detail, "event"), "d-1 (call.ended)");
    assert!(detail.contains(&format!("\nrequest:\nPOST {}\n", rx.url("/down"))), "{detail}");
    let (_, attempts) = detail.split_once("\nattempts:\n").expect("an attempts section");
    let attempts = table(attempts);
    assert_eq!(attempts.len(), 1, "{detail}");
    assert_eq!(
        (attempts[0]["#"].as_str(), attempts[0]["TRIGGER"].as_str(), attempts[0]["STATUS"].as_str()),
        ("1", "scheduled", "500")
    );
    assert_eq!(attempts[0]["ERROR_CLASS"], "status");

    // The receiver recovers; resend succeeds with the same webhook-id and payload.
    rx.script(&[], 200);
    let resent = ok(&hm, &["delivery", "resend", &id]).await;
    let mut lines = resent.lines();
    assert_eq!(lines.next(), Some(format!("delivery {id}: success").as_str()), "{resent}");
    let attempt = lines.next().unwrap_or_default();
    assert!(attempt.contains("(resend)") && attempt.contains("→ 200"), "{resent}");
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id").as_deref(), Some(id.as_str()));
    assert_eq!(got[1].body, first.body);
    verify_signature(&secret, &got[1]).unwrap();
    let detail = json_of(&hm, &["delivery", "get", &id]).await;
    assert_eq!(detail["delivery"]["status"], "success");
    let triggers: Vec<&str> =
        detail["attempts"].as_array().unwrap().iter().map(|a| a["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["scheduled", "resend"]);
    let again = fails(&hm, &["delivery", "resend", &id]).await;
    assert!(again.contains(&id), "{again}");

    // A second failure, recovered in bulk.
    rx.script(&[], 500);
    let file = tmp.events("d2.jsonl", &[event("d-2", "call.ended", "acme", "call-2", json!({"ani": "5550002"}))]);
    ok(&hm, &["publish", "--file", &file]).await;
    let second = rx.wait_for(3, WAIT).await[2].header("webhook-id").unwrap();
    assert_ne!(second, id);
    delivery_when(&hm, &second, |d| d.status == "error").await;
    rx.script(&[], 200);
    let recovered = ok(&hm, &["delivery", "recover", &webhook, "--since", "1h"]).await;
    assert_eq!(recovered.trim(), "found 1, succeeded 1, failed 0");
    let got = rx.wait_for(4, WAIT).await;
    assert_eq!(got[3].header("webhook-id").as_deref(), Some(second.as_str()));
    delivery_when(&hm, &second, |d| d.status == "success").await;
    let recovered = ok(&hm, &["delivery", "recover", &webhook, "--since", "1h"]).await;
    assert_eq!(recovered.trim(), "found 0, succeeded 0, failed 0", "nothing left to recover");

    // test-send: sends now, shows the response, and leaves the log alone.
    let before = json_of(&hm, &["delivery", "list", "--webhook", &webhook]).await;
    assert_eq!(before["deliveries"].as_array().unwrap().len(), 2);
    rx.respond_with_body("thanks");
    let test = ok(&hm, &["delivery", "test-send", &webhook]).await;
    assert!(test.starts_with(&format!("POST {}\n", rx.url("/down"))), "{test}");
    let line = test.lines().find(|l| l.starts_with("attempt ")).unwrap_or_else(|| panic!("{test}"));
    assert!(line.contains("(test)") && line.contains("→ 200"), "{line}");
    assert!(test.contains("response body:\nthanks\n"), "{test}");
    assert_eq!(test.trim_end().lines().last(), Some("success: true"));
    let got = rx.wait_for(5, WAIT).await;
    verify_signature(&secret, &got[4]).unwrap();
    rx.script(&[], 503);
    let failed = json_of(&hm, &["delivery", "test-send", &webhook]).await;
    assert_eq!((&failed["success"], &failed["attempt"]["response_status"]), (&json!(false), &json!(503)), "{failed}");
    rx.wait_for(6, WAIT).await;
    let after = json_of(&hm, &["delivery", "list", "--webhook", &webhook]).await;
    assert_eq!(after, before, "test-sends are not in the delivery log");

    // Invalid input goes to the dead-letter list with the field and the reason.
    let bad = r#"{"id":"d-3","type":"call.ended","occurred_at":"2026-11-23T10:00:00Z","tenant_id":"acme"}"#;
    let file = tmp.write("bad.jsonl", &format!("{bad}\n"));
    let (rows, summary) = publish_output(&ok(&hm, &["publish", "--file", &file]).await);
    assert_eq!(summary, "accepted 0, rejected 1, duplicates 0");
    assert_eq!((rows[0]["RESULT"].as_str(), rows[0]["FIELD"].as_str()), ("rejected", "call_id"));
    let dlq = table(&ok(&hm, &["dlq", "list"]).await);
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!((dlq[0]["TENANT"].as_str(), dlq[0]["FIELD"].as_str()), ("acme", "call_id"));
    assert!(dlq[0]["REASON"].contains("required"), "{dlq:?}");
    assert!(dlq[0]["ORIGINAL"].starts_with(r#"{"id":"d-3""#), "{dlq:?}");
    let dlq = json_of(&hm, &["dlq", "list", "--tenant", "acme"]).await;
    let entries = dlq["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{dlq}");
    assert_eq!((entries[0]["field"].as_str(), entries[0]["original"].as_str()), (Some("call_id"), Some(bad)));
    assert!(json_of(&hm, &["dlq", "list", "--tenant", "other"]).await["entries"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn ctl_health_shows_the_endpoint_success_rate() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("health");
    let created = ok(&hm, &["webhook", "create", "--tenant", "acme", "--name", "H", "--url", &rx.url("/h")]).await;
    let webhook = field(&created, "id");
    let file = tmp.events("h.jsonl", &[event("h-1", "call.ended", "acme", "call-1", json!({}))]);
    ok(&hm, &["publish", "--file", &file]).await;
    rx.wait_for(1, WAIT).await;
    // The receiver has the request before the dispatcher has recorded its outcome (health
    // samples are written in groups): wait until the attempt is in the endpoint's health.
    let deadline = Instant::now() + WAIT;
    let mut health = ok(&hm, &["health", &webhook]).await;
    while field(&health, "last status") != "200" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        health = ok(&hm, &["health", &webhook]).await;
    }
    assert_eq!(field(&health, "webhook"), webhook);
    assert_eq!(field(&health, "last status"), "200");
    let (_, windows) = health.split_once("\n\n").expect("a windows table");
    let windows = table(windows);
    assert!(windows.iter().any(|w| w["ATTEMPTS"] == "1" && w["SUCCESSES"] == "1"), "{health}");
    let v = json_of(&hm, &["health", &webhook]).await;
    assert_eq!(v["webhook_id"].as_str(), Some(webhook.as_str()));
}

// ---------------------------------------------------------------------------------------------
// 6. publish

#[tokio::test]
async fn ctl_publish_summarises_accepted_rejected_and_duplicates() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("publish");
    ok(&hm, &["webhook", "create", "--tenant", "acme", "--name", "All", "--url", &rx.url("/all")]).await;
    let good = event("u-1", "call.started", "acme", "call-1", json!({}));
    let lines = [
        good.to_string(),
        good.to_string(),
        r#"{"id":"u-2","type":"call.ended","occurred_at":"2026-11-23T10:00:00Z","tenant_id":"acme"}"#.to_string(),
        event("u-3", "hangup", "acme", "call-1", json!({})).to_string(),
    ];
    let file = tmp.write("events.jsonl", &(lines.join("\n") + "\n"));
    let out = ctl(&hm, &["publish", "--file", &file]).await;
    assert!(out.ok, "publish exits 0 even when some events are rejected: {}", out.stderr);
    let (rows, summary) = publish_output(&out.stdout);
    assert_eq!(summary, "accepted 2, rejected 1, duplicates 1");
    let results: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r["INDEX"].as_str(), r["EVENT_ID"].as_str(), r["RESULT"].as_str(), r["FIELD"].as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("0", "u-1", "accepted", "-"),
            ("1", "u-1", "duplicate", "-"),
            ("2", "u-2", "rejected", "call_id"),
            ("3", "u-3", "accepted", "-")
        ]
    );
    assert!(rows[2]["REASON"].contains("required"), "{rows:?}");
    rx.wait_for(2, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(rx.count(), 2, "the duplicate and the rejected event are not delivered");

    // A JSON array, -o json: the same counts, per-event results.
    let array = json!([
        event("u-1", "call.started", "acme", "call-1", json!({})),
        event("u-4", "call.missed", "acme", "call-4", json!({})),
        {"id": "u-5", "type": "call.nope", "occurred_at": "2026-11-23T10:00:00Z", "tenant_id": "acme", "call_id": "c"},
    ]);
    let file = tmp.write("events.json", &array.to_string());
    let v = json_of(&hm, &["publish", "--file", &file]).await;
    assert_eq!((&v["accepted"], &v["rejected"], &v["duplicates"]), (&json!(1), &json!(1), &json!(1)), "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(
        results.iter().map(|r| r["result"].as_str().unwrap()).collect::<Vec<_>>(),
        ["duplicate", "accepted", "rejected"]
    );
    assert_eq!((results[2]["index"].as_u64(), results[2]["field"].as_str()), (Some(2), Some("type")));

    // A file that is not there: one line, non-zero.
    let missing = tmp.0.join("missing.jsonl");
    let line = fails(&hm, &["publish", "--file", missing.to_str().unwrap()]).await;
    assert!(line.contains("missing.jsonl"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// known rough edges, kept as tests that say what should happen

#[tokio::test]
async fn ctl_rotate_secret_with_zero_grace_retires_the_old_secret() {
    let hm = Hookmesh::start();
    let rx = Recorder::start().await;
    let tmp = TempDir::new("grace");
    let created = ok(&hm, &["webhook", "create", "--tenant", "acme", "--name", "G", "--url", &rx.url("/g")]).await;
    let (id, old) = (field(&created, "id"), shown_secret(&created));
    let args = ["webhook", "rotate-secret", &id, "--grace-secs", "0"];
    let out = ctl(&hm, &args).await;
    if !out.ok {
        // Refusing zero is as good as honouring it, as long as it says so.
        let line = one_error_line(&args, &out);
        assert!(line.contains("--grace-secs"), "{line}");
        return;
    }
    let new = shown_secret(&out.stdout);
    let file = tmp.events("g.jsonl", &[event("g-1", "call.ended", "acme", "call-1", json!({}))]);
    ok(&hm, &["publish", "--file", &file]).await;
    let got = rx.wait_for(1, WAIT).await;
    verify_signature(&new, &got[0]).unwrap();
    let signature = got[0].header("webhook-signature").unwrap();
    assert_eq!(signature.split_whitespace().count(), 1, "no grace asked, yet both secrets sign: {signature}");
    assert!(verify_signature(&old, &got[0]).is_err(), "the old secret was retired");
}

#[tokio::test]
async fn ctl_preview_of_a_template_has_no_blank_request_line() {
    let hm = Hookmesh::start();
    let tmp = TempDir::new("preview");
    let example = tmp.write("t.json", r#"{"phone": "%ani%"}"#);
    let created = ok(
        &hm,
        &["template", "create", "--tenant", "acme", "--name", "T", "--kind", "fields", "--example-file", &example],
    )
    .await;
    let preview = ok(&hm, &["preview", "--template", &field(&created, "id")]).await;
    let first = preview.lines().next().unwrap_or_default();
    assert!(!first.trim().is_empty(), "the first line is blank: {preview:?}");
}
