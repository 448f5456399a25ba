//! Security: the SSRF guard refuses receivers on non-public addresses unless allow-listed.

use crate::support::*;
use hookmesh_proto::v1;
use serde_json::json;
use std::time::Duration;

async fn webhook_to(hm: &Hookmesh, name: &str, url: &str) -> String {
    let w = v1::Webhook {
        tenant_id: "acme".into(),
        name: name.into(),
        request: Some(v1::Request { url: url.into(), ..Default::default() }),
        policy: Some(v1::DeliveryPolicy { retry_limit: Some(0), ..Default::default() }),
        ..Default::default()
    };
    hm.webhooks().await.create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false }).await.unwrap().into_inner().webhook.unwrap().id
}

#[tokio::test]
async fn receivers_on_non_public_addresses_are_refused_unless_allow_listed() {
    let hm = Hookmesh::start_with(&["--no-default-allow"]);
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/ip"),
        format!("http://localhost:{port}/name"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://[::1]:{port}/v6"),
    ];
    let mut ids = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        ids.push(webhook_to(&hm, &format!("w{i}"), url).await);
    }
    hm.publish(&[event("b-1", "call.ended", "acme", "c-1", json!({}))]).await;
    let mut deliveries = hm.deliveries().await;
    for id in &ids {
        let mut list = Vec::new();
        let done = wait_until_async(
            Duration::from_secs(20),
            || {
                let mut d = deliveries.clone();
                let id = id.clone();
                async move { d.list_deliveries(v1::ListDeliveriesRequest { webhook_id: id, ..Default::default() }).await.unwrap().into_inner().deliveries }
            },
            |l: &Vec<v1::Delivery>| {
                list = l.clone();
                l.first().is_some_and(|d| d.status == "error")
            },
        )
        .await;
        assert!(done, "{list:?}");
        let detail = deliveries.get_delivery(v1::GetDeliveryRequest { id: list[0].id.clone() }).await.unwrap().into_inner();
        let attempt = &detail.attempts[0];
        assert_eq!(attempt.error_class, "blocked", "{attempt:?}");
        assert!(attempt.error.contains("not a public address"), "{}", attempt.error);
    }
    // Test-send goes through the same guard.
    let test = deliveries.test_send(v1::TestSendRequest { webhook_id: ids[1].clone(), event: None }).await.unwrap().into_inner();
    assert_eq!(test.attempt.unwrap().error_class, "blocked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 0, "nothing reached the loopback receiver");

    // The same receivers are reachable once the deployment allow-lists loopback.
    let allowed = Hookmesh::start_with(&["--no-default-allow", "--allow-networks", "127.0.0.0/8,::1/128"]);
    // (The receiver listens on IPv4 only, so the [::1] URL is left out here.)
    for (i, url) in urls[..3].iter().enumerate() {
        webhook_to(&allowed, &format!("w{i}"), url).await;
    }
    allowed.publish(&[event("b-2", "call.ended", "acme", "c-2", json!({}))]).await;
    let got = rx.wait_for(3, Duration::from_secs(20)).await;
    let mut paths: Vec<_> = got.iter().map(|r| r.uri.clone()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/ip", "/mapped", "/name"]);
}
