//! Post-call enrichment end to end, on the standalone and on standalone over a real `tansu`
//! broker and `redis-server`: a `call.ended` delivery held until the recording and the
//! transcript arrive in later events of the call (one complete request, sent on the last
//! arrival), another sent at its deadline with what it has, and the delivery log saying that
//! each waited and why it was released.

use crate::control::{start, Backend};
use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    standalone:
    an_ended_call_is_held_until_its_recording_and_transcript_arrive,
    a_held_call_is_sent_at_its_deadline_with_what_arrived,
);

/// Creates a webhook through ctl, as the README shows; its id.
fn ctl_create(hm: &Hookmesh, args: &[&str]) -> String {
    let mut all = vec!["webhook", "create", "--tenant", "acme", "--output", "json"];
    all.extend_from_slice(args);
    let (ok, out, err) = hm.ctl(&all);
    assert!(ok, "ctl: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["webhook"]["id"].as_str().unwrap_or_else(|| panic!("{out}")).to_string()
}

/// Waits until the call's context holds `name`.
async fn context_has(hm: &Hookmesh, call: &str, name: &str) -> bool {
    let api = hm.deliveries().await;
    let ask = v1::GetCallContextRequest { tenant_id: "acme".into(), call_id: call.into() };
    wait_until_async(
        WAIT,
        || {
            let (mut api, ask) = (api.clone(), ask.clone());
            async move { api.get_call_context(ask).await.unwrap().into_inner().values }
        },
        |v| v.contains_key(name),
    )
    .await
}

async fn an_ended_call_is_held_until_its_recording_and_transcript_arrive(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let crm = Recorder::start().await;
    // Only Sales calls: the later events do not repeat the campaign, and need not.
    let id = ctl_create(
        hm,
        &[
            "--name",
            "CRM: complete call",
            "--url",
            &crm.url("/calls"),
            "--event",
            "call.ended",
            "--campaign",
            "Sales",
            "--wait-for",
            "recording_url,transcript",
            "--max-wait",
            "10m",
        ],
    );
    let (ok, out, _) = hm.ctl(&["webhook", "get", &id]);
    assert!(ok && out.contains("recording_url, transcript (at most 10m)"), "{out}");

    let ended = event("e-end", "call.ended", "acme", "call-1", json!({"campaign_name": "Sales", "call_duration": 42}));
    assert_eq!(hm.publish(&[ended]).await.accepted, 1);
    let (waiting, held) = wait_for_deferred(hm, &id, WAIT).await;
    assert!(waiting, "the ended call should be held: {held:?}");
    assert_eq!(held[0].held_for, vec!["recording_url".to_string(), "transcript".to_string()]);
    assert_eq!(held[0].hold_fired, "", "still held");

    // The recording arrives (under one of its aliases): one of two, so it still waits.
    let rec =
        event("e-rec", "recording_ready", "acme", "call-1", json!({"recording_url": "https://rec.example.com/1.mp3"}));
    assert_eq!(hm.publish(&[rec]).await.accepted, 1);
    assert!(context_has(hm, "call-1", "data.recording_url").await, "the recording reaches the call's context");
    let still = delivery_when(hm, &held[0].id, |_| true).await.delivery.unwrap();
    assert_eq!((still.status.as_str(), still.attempts, crm.count()), ("pending", 0, 0), "{still:?}");

    // The analysis brings the transcript (an object, as analysis services send it): sent now,
    // once, with both merged into the event's data.
    let analyzed = event(
        "e-ai",
        "call_analyzed",
        "acme",
        "call-1",
        json!({"transcript": {"text": "Agent: thanks for calling", "words": 4}, "sentiment": "positive"}),
    );
    assert_eq!(hm.publish(&[analyzed]).await.accepted, 1);
    let got = crm.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "call.ended");
    assert_eq!(body["data"]["call_duration"], 42);
    assert_eq!(body["data"]["recording_url"], "https://rec.example.com/1.mp3");
    assert_eq!(body["data"]["transcript"], json!({"text": "Agent: thanks for calling", "words": 4}));
    assert!(body["data"].get("sentiment").is_none(), "only the awaited data points are merged: {body}");
    assert_eq!(got[0].header("webhook-id").as_deref(), Some(held[0].id.as_str()));

    let sent = delivery_when(hm, &held[0].id, |d| d.status == "success").await;
    let d = sent.delivery.unwrap();
    assert_eq!(d.held_for, vec!["recording_url".to_string(), "transcript".to_string()]);
    assert!(d.hold_fired.starts_with("sent when recording_url, transcript arrived, after "), "{}", d.hold_fired);
    assert_eq!(sent.attempts.len(), 1, "holding made no attempts: {:?}", sent.attempts);
    let (ok, out, _) = hm.ctl(&["delivery", "get", &d.id]);
    assert!(ok && out.contains("sent when recording_url, transcript arrived"), "{out}");
    assert_eq!(crm.count(), 1, "the later events are not deliveries of their own");

    // An ended call that already carries everything is sent at once, without holding.
    let complete = event(
        "e2-end",
        "call.ended",
        "acme",
        "call-2",
        json!({"campaign_name": "Sales", "recording_url": "https://rec.example.com/2.mp3", "transcript": "hi"}),
    );
    assert_eq!(hm.publish(&[complete]).await.accepted, 1);
    let got = crm.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["data"]["transcript"], "hi");
    // Logged with its outcome once the attempt is recorded (it was never `pending`).
    let mut listed = Vec::new();
    let logged = wait_until_async(
        WAIT,
        || deliveries_of(hm, &id),
        |l| {
            listed = l.clone();
            l.iter().any(|d| d.call_id == "call-2")
        },
    )
    .await;
    assert!(logged, "{listed:?}");
    let direct = listed.into_iter().find(|d| d.call_id == "call-2").unwrap();
    assert!(direct.held_for.is_empty(), "{direct:?}");

    // A name that is not a data point name is refused, naming the entry.
    let (ok, _, err) = hm.ctl(&[
        "webhook",
        "create",
        "--tenant",
        "acme",
        "--name",
        "bad",
        "--url",
        &crm.url("/x"),
        "--wait-for",
        "recording_url,Transcript",
    ]);
    assert!(!ok);
    assert!(err.contains("wait_for[1]: `Transcript` is not a data point name"), "{err}");
}

async fn a_held_call_is_sent_at_its_deadline_with_what_arrived(backend: Backend) {
    let env = start(backend, &[]).await;
    let hm = &env.hm;
    let crm = Recorder::start().await;
    let body = r#"{"call": {{ call_id }}, "recording": {{ recording_url }}, "summary": {{ call_summary }}}"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.json.j2");
    std::fs::write(&file, body).unwrap();
    let id = ctl_create(
        hm,
        &[
            "--name",
            "CRM: call with summary",
            "--url",
            &crm.url("/calls"),
            "--event",
            "call.ended",
            "--body-kind",
            "text",
            "--body-file",
            file.to_str().unwrap(),
            "--wait-for",
            "recording_url",
            "--wait-for",
            "call_summary",
            "--max-wait",
            "5s",
        ],
    );
    // The recording comes in the same batch; the summary never does.
    let ended = event("d-end", "call.ended", "acme", "call-9", json!({}));
    let rec = event("d-rec", "call.recording_ready", "acme", "call-9", json!({"recording_url": "https://rec/9.mp3"}));
    assert_eq!(hm.publish(&[ended, rec]).await.accepted, 2);
    let got = crm.wait_for(1, WAIT).await;
    let sent = got[0].json();
    assert_eq!(sent, json!({"call": "call-9", "recording": "https://rec/9.mp3", "summary": null}), "{sent}");

    let d = deliveries_of(hm, &id).await.remove(0);
    let d = delivery_when(hm, &d.id, |d| d.status == "success").await.delivery.unwrap();
    assert_eq!(d.hold_fired, "sent at the 5s deadline without call_summary (recording_url arrived)");
    // Sent at the deadline, not before: signed (webhook-timestamp, Unix seconds) at least the
    // wait after the first trigger.
    let signed_at: i64 = got[0].header("webhook-timestamp").unwrap().parse().unwrap();
    let first = chrono::DateTime::parse_from_rfc3339(&d.created_at).unwrap().timestamp();
    assert!(signed_at - first >= 4, "signed {}s after the first trigger", signed_at - first);
}

/// A held delivery is durable: SIGKILL while it waits for its transcript, start again on the
/// same data directory, and the transcript published after the restart releases it, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_delivery_survives_sigkill_and_is_released_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let crm = Recorder::start().await;
    let mut hm = Hookmesh::start_with(&["--data-dir", &data]);
    let id = ctl_create(
        &hm,
        &["--name", "CRM", "--url", &crm.url("/calls"), "--event", "call.ended", "--wait-for", "transcript"],
    );
    assert_eq!(hm.publish(&[event("k-end", "call.ended", "acme", "call-k", json!({}))]).await.accepted, 1);
    let (waiting, held) = wait_for_deferred(&hm, &id, WAIT).await;
    assert!(waiting, "held before the kill: {held:?}");
    hm.kill_hard();

    let hm = Hookmesh::start_with(&["--data-dir", &data]);
    let after = delivery_when(&hm, &held[0].id, |_| true).await.delivery.unwrap();
    assert_eq!((after.status.as_str(), after.held_for.clone()), ("pending", vec!["transcript".to_string()]));
    assert_eq!(after.created_at, held[0].created_at, "the first trigger is kept");
    let analyzed = event("k-ai", "call.analyzed", "acme", "call-k", json!({"transcript": "Agent: hello"}));
    assert_eq!(hm.publish(&[analyzed]).await.accepted, 1);
    let got = crm.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["data"]["transcript"], "Agent: hello");
    let sent = delivery_when(&hm, &held[0].id, |d| d.status == "success").await.delivery.unwrap();
    assert!(sent.hold_fired.starts_with("sent when transcript arrived"), "{}", sent.hold_fired);
    assert_eq!(crm.count(), 1);
}
