//! The durable default: `hookmesh standalone --data-dir <dir>` keeps what it accepted across a
//! SIGKILL in the middle of a stream of events, and across SIGTERM.
//!
//! One run: a webhook on a stored template to a healthy receiver, and one with a short retry
//! schedule to a receiver that fails (503) until the end; tenant settings with masking on; a
//! master key (secrets are stored encrypted). Events are published at a fixed rate (20/s);
//! once deliveries flow, the process is stopped mid-stream and started again on the same
//! directory. Then: webhooks, the template, the tenant settings are the same (same versions);
//! every delivery of the log from before the stop is still there with an unchanged first
//! trigger date and at least the attempts it had; retries that were pending are still
//! pending; after the failing receiver recovers, every event the API accepted (before and
//! after the restart) reached both receivers, repeats only with the same `webhook-id`, every
//! signature verifies with the secrets given at creation, and nothing stays scheduled.

use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    Kill,
    Term,
}

fn start(dir: &std::path::Path, key: &str) -> Hookmesh {
    Hookmesh::start_with(&[
        "--data-dir",
        &dir.display().to_string(),
        "--master-key",
        key,
        // A dispatcher killed with claimed retries: they come back after the lease.
        "--retry-lease-secs",
        "3",
    ])
}

/// Publishes one call.ended event every 50 ms until `stop` or the first failed call; answers
/// the call ids the API accepted.
async fn publish_stream(addr: String, prefix: &'static str, stop: Arc<AtomicBool>, max: usize) -> Vec<String> {
    let mut accepted = Vec::new();
    let Ok(ch) = tonic::transport::Channel::from_shared(addr).unwrap().connect().await else { return accepted };
    let mut ingest = v1::ingest_service_client::IngestServiceClient::new(ch);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..max {
        tick.tick().await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let call = format!("{prefix}-{i}");
        let e = event(
            &format!("evt-{call}"),
            "call.ended",
            "acme",
            &call,
            json!({"ani": "7776734736", "order_ref": "R-1"}),
        );
        let req = v1::PublishRequest {
            events: vec![v1::PublishItem { payload: Some(v1::publish_item::Payload::Json(e.to_string())) }],
        };
        match ingest.publish(req).await {
            Ok(r) if r.get_ref().accepted == 1 => accepted.push(call),
            Ok(r) => panic!("event {call} refused: {:?}", r.into_inner()),
            Err(_) => break, // the process went away mid-stream
        }
    }
    accepted
}

async fn all_deliveries(hm: &Hookmesh) -> HashMap<String, v1::Delivery> {
    let mut client = hm.deliveries().await;
    let mut out = HashMap::new();
    let mut before = String::new();
    loop {
        let page = client
            .list_deliveries(v1::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                limit: 1000,
                before: before.clone(),
                ..Default::default()
            })
            .await
            .expect("list deliveries")
            .into_inner();
        for d in page.deliveries {
            out.insert(d.id.clone(), d);
        }
        if page.next.is_empty() {
            return out;
        }
        before = page.next;
    }
}

struct Registry {
    webhooks: Vec<v1::Webhook>,
    templates: Vec<v1::Template>,
    settings: v1::TenantSettings,
}

async fn registry(hm: &Hookmesh) -> Registry {
    let mut webhooks = hm
        .webhooks()
        .await
        .list_webhooks(v1::ListWebhooksRequest { tenant_id: "acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    webhooks.sort_by(|a, b| a.id.cmp(&b.id));
    let templates = hm
        .templates()
        .await
        .list_templates(v1::ListTemplatesRequest { tenant_id: "acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .templates;
    let settings = v1::tenant_service_client::TenantServiceClient::new(hm.channel().await)
        .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    Registry { webhooks, templates, settings }
}

async fn restart_keeps_everything(stop_with: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let out = std::process::Command::new(BIN).args(["token", "master-key"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut hm = start(dir.path(), &key);
    let canonical = dir.path().canonicalize().unwrap().display().to_string();
    assert_eq!(hm.data.as_deref(), Some(canonical.as_str()), "the listening line names the data directory");

    let crm = Recorder::start().await;
    let flaky = Recorder::start().await;
    flaky.script(&[], 503);
    let template = hm
        .templates()
        .await
        .create_template(v1::CreateTemplateRequest {
            template: Some(v1::Template {
                tenant_id: "acme".into(),
                name: "lead".into(),
                content_type: "json".into(),
                body: Some(v1::TemplateBody {
                    kind: Some(v1::template_body::Kind::Fields(v1::FieldsBody {
                        format: "json".into(),
                        example: r#"{"phone": "%ani%", "source": "hookmesh"}"#.into(),
                        fields: vec![],
                    })),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("template created")
        .into_inner();
    let mut w = webhook("acme", "CRM", &crm.url("/crm/{{ callid }}"));
    w.request.as_mut().unwrap().template_id = template.id.clone();
    let crm_hook =
        hm.webhooks().await.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await;
    let crm_hook = crm_hook.expect("CRM webhook").into_inner();
    let mut w = webhook("acme", "Analytics", &flaky.url("/flaky/{{ callid }}"));
    w.policy = Some(v1::DeliveryPolicy {
        timeout_ms: Some(2_000),
        retry_limit: Some(50),
        retry_schedule: vec![1, 1, 2],
        ..Default::default()
    });
    let flaky_hook = hm
        .webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await
        .expect("flaky webhook")
        .into_inner();
    let (ok, out, err) =
        hm.ctl(&["tenant", "set", "--tenant", "acme", "--mask-personal-data", "true", "--mask-field", "order_ref"]);
    assert!(ok, "{out}{err}");
    let before = registry(&hm).await;
    assert_eq!(before.webhooks.len(), 2);

    // Events at a fixed rate; stop the process once deliveries flow, mid-stream.
    let stop = Arc::new(AtomicBool::new(false));
    let first = tokio::spawn(publish_stream(hm.url(), "a", stop.clone(), 10_000));
    assert!(
        wait_until(Duration::from_secs(30), || crm.count() >= 20 && flaky.count() >= 3).await,
        "deliveries never flowed: crm {}, flaky {}\n{}",
        crm.count(),
        flaky.count(),
        hm.log_text()
    );
    let log_before = all_deliveries(&hm).await;
    let retrying_before: BTreeSet<String> = log_before
        .values()
        .filter(|d| d.webhook_id == flaky_hook.webhook.as_ref().unwrap().id && d.status == "retrying")
        .map(|d| d.id.clone())
        .collect();
    assert!(!retrying_before.is_empty(), "retries are pending before the stop");
    match stop_with {
        Stop::Kill => hm.kill_hard(),
        Stop::Term => assert!(hm.terminate().success(), "graceful exit\n{}", hm.log_text()),
    }
    let accepted_first = first.await.unwrap();
    assert!(accepted_first.len() >= 20, "{} events accepted before the stop", accepted_first.len());
    let published_until_stop = accepted_first.len();

    // Same directory: everything is back.
    let hm = start(dir.path(), &key);
    let after = registry(&hm).await;
    assert_eq!(after.webhooks, before.webhooks, "webhooks (with their versions and secret infos)");
    assert_eq!(after.templates, before.templates, "templates");
    assert_eq!(after.settings, before.settings, "tenant settings");
    assert!(after.settings.mask_personal_data && after.settings.version > 0);
    let log_after = all_deliveries(&hm).await;
    for (id, d) in &log_before {
        let now = log_after.get(id).unwrap_or_else(|| panic!("delivery {id} lost by the restart"));
        assert_eq!(now.created_at, d.created_at, "first trigger date of {id}");
        assert!(now.attempts >= d.attempts, "attempts of {id}: {} then {}", d.attempts, now.attempts);
    }
    // The attempts themselves, masked as the tenant asked.
    let any = retrying_before.iter().next().unwrap();
    let detail = delivery_when(&hm, any, |_| true).await;
    assert!(!detail.attempts.is_empty(), "attempts of {any}");
    assert!(!detail.request.as_ref().unwrap().body.contains("7776734736"), "the log keeps the mask");
    let still_pending =
        log_after.values().filter(|d| retrying_before.contains(&d.id) && d.status == "retrying").count();
    assert!(still_pending > 0, "pending retries survived the restart");

    // More events on the restarted process, then the failing receiver recovers.
    let accepted_second = publish_stream(hm.url(), "b", Arc::new(AtomicBool::new(false)), 20).await;
    assert_eq!(accepted_second.len(), 20);
    flaky.script(&[], 200);

    let accepted: Vec<String> = accepted_first.iter().chain(&accepted_second).cloned().collect();
    let expected = |prefix: &str| accepted.iter().map(|c| format!("/{prefix}/{c}")).collect::<BTreeSet<_>>();
    let (crm_expected, flaky_expected) = (expected("crm"), expected("flaky"));
    let got = |rx: &Recorder| rx.received().into_iter().map(|r| r.uri).collect::<BTreeSet<_>>();
    let complete = wait_until(Duration::from_secs(120), || {
        crm_expected.is_subset(&got(&crm)) && flaky_expected.is_subset(&got(&flaky))
    })
    .await;
    let missing: Vec<_> =
        crm_expected.difference(&got(&crm)).chain(flaky_expected.difference(&got(&flaky))).cloned().collect();
    assert!(
        complete,
        "{stop_with:?}: {} of {} accepted events not delivered ({published_until_stop} before the stop): {missing:?}\n{}",
        missing.len(),
        accepted.len(),
        hm.log_text()
    );

    // Repeats only with the first request's webhook-id; the secrets from creation still sign.
    for (rx, secret) in [(&crm, &crm_hook.secret), (&flaky, &flaky_hook.secret)] {
        let mut ids: HashMap<String, String> = HashMap::new();
        for r in rx.received() {
            verify_signature(secret, &r).unwrap_or_else(|e| panic!("{}: {e}", r.uri));
            let id = r.header("webhook-id").expect("webhook-id");
            let first = ids.entry(r.uri.clone()).or_insert_with(|| id.clone());
            assert_eq!(first, &id, "a repeat of {} with another webhook-id", r.uri);
        }
    }
    // The retries complete: every delivery of the log ends in success.
    let done = wait_until_async(
        Duration::from_secs(60),
        || all_deliveries(&hm),
        |log| log.len() >= 2 * accepted.len() && log.values().all(|d| d.status == "success"),
    )
    .await;
    let log_end = all_deliveries(&hm).await;
    let not_done: Vec<_> = log_end.values().filter(|d| d.status != "success").map(|d| (&d.id, &d.status)).collect();
    assert!(done, "{} deliveries, not successful: {not_done:?}", log_end.len());
    for id in &retrying_before {
        assert!(log_end[id].attempts >= 2, "the pending retry {id} was retried after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_keeps_everything_accepted() {
    restart_keeps_everything(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_everything_accepted() {
    restart_keeps_everything(Stop::Term).await;
}

#[tokio::test]
async fn a_second_process_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Hookmesh::start_with(&["--data-dir", &dir.path().display().to_string()]);
    let out = std::process::Command::new(BIN)
        .args(["standalone", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let canonical = dir.path().canonicalize().unwrap().display().to_string();
    assert!(err.contains(&canonical) && err.contains("in use by another hookmesh process"), "{err}");
}

#[tokio::test]
async fn ephemeral_runs_in_memory_and_says_so() {
    let hm = Hookmesh::start_with(&["--ephemeral"]);
    assert_eq!(hm.data.as_deref(), Some("memory"));
}

/// A data directory whose engine file was damaged is refused at start with an error naming the
/// file, not a panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_engine_file_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    drop(Hookmesh::start_with(&["--data-dir", &data]));
    let version = dir.path().join("store").join("engine").join("version");
    std::fs::write(&version, b"garbage!").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["standalone", "--data-dir", &data, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .output()
            .expect("hookmesh runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a damaged directory: {stderr}");
    assert!(stderr.contains(&format!("{}: not the engine's version marker (damaged)", version.display())), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
