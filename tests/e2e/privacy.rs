//! Masking of personal data in stored delivery logs, per tenant (issue 5 §5), on both
//! backends: receivers get the real values on every attempt and on resend, while the delivery
//! log, the API and (on Redis) every stored byte show only masks.

use crate::control::{start, Backend};
use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

const PHONE: &str = "7776734736";
const EMAIL: &str = "freddy.krueger@example.com";
const ORDER: &str = "ORD-55121";

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_is_masked_in_the_log_memory() {
    personal_data_is_masked_in_the_log(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_is_masked_in_the_log_kafka_redis() {
    personal_data_is_masked_in_the_log(Backend::KafkaRedis).await
}

/// Every string Redis holds, whatever the key's type.
async fn redis_dump(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.unwrap();
    let mut out = String::new();
    for key in keys {
        let ty: String = redis::cmd("TYPE").arg(&key).query_async(&mut c).await.unwrap();
        let cmd = match ty.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            other => panic!("key {key} has unexpected type {other}"),
        };
        let v: redis::Value = cmd.query_async(&mut c).await.unwrap();
        out.push_str(&format!("{key} => {v:?}\n"));
    }
    out
}

async fn personal_data_is_masked_in_the_log(backend: Backend) {
    let key = {
        let out = std::process::Command::new(BIN).args(["token", "master-key"]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let env = start(backend, &["--master-key", &key]).await;
    let hm = &env.hm;
    let rx = Recorder::start().await;
    let ch = hm.channel().await;
    let mut tenants = v1::tenant_service_client::TenantServiceClient::new(ch.clone());

    // Masking is off until the tenant turns it on, and bad field names are refused by name.
    let before = tenants
        .get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!before.mask_personal_data && before.version == 0);
    assert!(before.personal_tokens.iter().any(|t| t == "ani"));
    let bad = v1::TenantSettings {
        tenant_id: "acme".into(),
        mask_personal_data: true,
        mask_fields: vec!["order ref".into()],
        ..Default::default()
    };
    let err = tenants
        .update_tenant_settings(v1::UpdateTenantSettingsRequest { settings: Some(bad), expected_version: 0 })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("settings.mask_fields[0]:"), "{}", err.message());

    // Turned on through ctl, with one field of the tenant's own.
    let (ok, stdout, stderr) =
        hm.ctl(&["tenant", "set", "--tenant", "acme", "--mask-personal-data", "true", "--mask-field", "order_ref"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("order_ref") && stdout.contains("yes"), "{stdout}");

    // Body is the event itself; the URL and a header carry values too. Two attempts fail.
    let mut w = webhook("acme", "CRM", &rx.url("/crm?from={{ ani }}"));
    let req = w.request.as_mut().unwrap();
    req.headers.push(v1::KeyValue { name: "x-caller".into(), value: "{{ contact_email }}".into() });
    w.policy = Some(v1::DeliveryPolicy { retry_limit: Some(1), retry_schedule: vec![1], ..Default::default() });
    hm.webhooks().await.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await.unwrap();
    rx.script(&[500, 500], 200);
    rx.respond_with_body(&format!("no contact {PHONE} yet"));
    let data = json!({"ani": PHONE, "contact_email": EMAIL, "order_ref": ORDER, "call_duration": 36});
    let published = hm.publish(&[event("evt-pii-1", "call.ended", "acme", "call-pii-1", data)]).await;
    assert_eq!(published.accepted, 1, "{published:?}");

    // The receiver gets the real values on the first attempt and on the retry.
    let got = rx.wait_for(2, Duration::from_secs(30)).await;
    for r in &got {
        let body = r.json();
        assert_eq!(body["data"]["ani"], PHONE);
        assert_eq!(body["data"]["order_ref"], ORDER);
        assert_eq!(r.header("x-caller").as_deref(), Some(EMAIL));
        assert!(r.query().contains(&("from".to_string(), PHONE.to_string())), "{:?}", r.query());
    }
    let id = got[0].header("webhook-id").unwrap();
    let failed = delivery_when(hm, &id, |d| d.status == "error").await;
    assert_eq!(failed.attempts.len(), 2);

    // The log shows masks everywhere: request, attempts, response bodies, errors.
    let shown = format!("{failed:?}");
    for secret in [PHONE, EMAIL, ORDER] {
        assert!(!shown.contains(secret), "{secret} is in the delivery log: {shown}");
    }
    let request = failed.request.as_ref().unwrap();
    assert!(request.url.ends_with("from=********36"), "{}", request.url);
    let body: serde_json::Value = serde_json::from_str(&request.body).expect("the masked body is still JSON");
    assert_eq!(body["data"]["ani"], "********36");
    assert_eq!(body["data"]["contact_email"], "***");
    assert_eq!(body["data"]["call_duration"], 36);
    assert_eq!(failed.attempts[1].response_body, "no contact ********36 yet");

    // Resend sends the original request again, and answers in masked form.
    let resent = hm.deliveries().await.resend(v1::ResendRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(resent.delivery.as_ref().unwrap().status, "success");
    assert!(!format!("{resent:?}").contains(PHONE), "{resent:?}");
    let third = &rx.received()[2];
    assert_eq!(third.json()["data"]["ani"], PHONE);
    assert_eq!(third.header("webhook-id").as_deref(), Some(id.as_str()));
    let logged = delivery_when(hm, &id, |d| d.status == "success").await;
    assert!(!format!("{logged:?}").contains(PHONE));

    // Another tenant's deliveries are not masked.
    let w = webhook("beta", "Plain", &rx.url("/plain"));
    hm.webhooks().await.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await.unwrap();
    hm.publish(&[event("evt-pii-2", "call.ended", "beta", "call-pii-2", json!({"ani": PHONE}))]).await;
    let got = rx.wait_for(4, Duration::from_secs(30)).await;
    let plain_id = got[3].header("webhook-id").unwrap();
    let plain = delivery_when(hm, &plain_id, |d| d.status == "success").await;
    assert!(plain.request.unwrap().body.contains(PHONE));

    // On Redis, no stored byte of acme's delivery holds a personal value.
    if let Some((_, redis)) = &env.backends {
        let dump = redis_dump(&redis.url()).await;
        assert!(dump.contains(&id), "the dump covers the delivery: {dump}");
        let acme_part: String = dump.lines().filter(|l| !l.contains(&plain_id)).collect::<Vec<_>>().join("\n");
        for secret in [EMAIL, ORDER] {
            assert!(!dump.contains(secret), "{secret} is stored in Redis");
        }
        assert!(!acme_part.contains(PHONE), "the phone number is stored in Redis outside beta's delivery");
    }
    assert!(!hm.log_text().contains(PHONE), "a log line holds the phone number");
}
