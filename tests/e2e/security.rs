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
    hm.webhooks()
        .await
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap()
        .id
}

#[tokio::test]
async fn receivers_on_non_public_addresses_are_refused_unless_allow_listed() {
    let hm = Hookmesh::start_with(&["--no-default-allow"]);
    let rx = Recorder::start().await;
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
                async move {
                    d.list_deliveries(v1::ListDeliveriesRequest { webhook_id: id, ..Default::default() })
                        .await
                        .unwrap()
                        .into_inner()
                        .deliveries
                }
            },
            |l: &Vec<v1::Delivery>| {
                list = l.clone();
                l.first().is_some_and(|d| d.status == "error")
            },
        )
        .await;
        assert!(done, "{list:?}");
        let detail =
            deliveries.get_delivery(v1::GetDeliveryRequest { id: list[0].id.clone() }).await.unwrap().into_inner();
        let attempt = &detail.attempts[0];
        assert_eq!(attempt.error_class, "blocked", "{attempt:?}");
        assert!(attempt.error.contains("not a public address"), "{}", attempt.error);
    }
    // Test-send goes through the same guard.
    let test = deliveries
        .test_send(v1::TestSendRequest { webhook_id: ids[1].clone(), event: None })
        .await
        .unwrap()
        .into_inner();
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

fn nf<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    r.unwrap_err().code()
}

fn bearer(token: &'static str) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(req)
    }
}

#[tokio::test]
async fn a_tenant_token_never_sees_or_touches_another_tenants_objects() {
    use hookmesh_proto::auth::hash_token;
    use v1::delivery_service_client::DeliveryServiceClient;
    use v1::ingest_service_client::IngestServiceClient;
    use v1::render_service_client::RenderServiceClient;
    use v1::webhook_service_client::WebhookServiceClient;

    let tokens = format!(
        "sha256:{}=operator,sha256:{}=tenant:acme,sha256:{}=tenant:other",
        hash_token("op-token"),
        hash_token("acme-token"),
        hash_token("other-token")
    );
    let hm = Hookmesh::start_with(&["--tokens", &tokens]);
    let _ = &hm;
    let rx = Recorder::start().await;
    let ch = hm.channel().await;

    // No token, or a wrong one: refused.
    let err =
        WebhookServiceClient::new(ch.clone()).list_webhooks(v1::ListWebhooksRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = WebhookServiceClient::with_interceptor(ch.clone(), bearer("guess"))
        .list_webhooks(v1::ListWebhooksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // acme creates a webhook (tenant taken from its token) and gets a failed delivery.
    rx.script(&[], 500);
    let mut acme = WebhookServiceClient::with_interceptor(ch.clone(), bearer("acme-token"));
    let w = v1::Webhook {
        name: "CRM".into(),
        request: Some(v1::Request { url: rx.url("/acme"), ..Default::default() }),
        policy: Some(v1::DeliveryPolicy { retry_limit: Some(0), ..Default::default() }),
        ..Default::default()
    };
    let created = acme
        .create_webhook(v1::CreateWebhookRequest { webhook: Some(w.clone()), disabled: false })
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(created.tenant_id, "acme");
    let mut acme_ingest = IngestServiceClient::with_interceptor(ch.clone(), bearer("acme-token"));
    let published = acme_ingest
        .publish(v1::PublishRequest {
            events: vec![
                v1::PublishItem {
                    payload: Some(v1::publish_item::Payload::Json(
                        event("t-1", "call.ended", "acme", "c-1", json!({})).to_string(),
                    )),
                },
                v1::PublishItem {
                    payload: Some(v1::publish_item::Payload::Json(
                        event("t-2", "call.ended", "other", "c-2", json!({})).to_string(),
                    )),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((published.accepted, published.rejected), (1, 1), "{published:?}");
    assert_eq!(published.results[1].field, "tenant_id");
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    let delivery_id = got[0].header("webhook-id").unwrap();
    let op_d = DeliveryServiceClient::with_interceptor(ch.clone(), bearer("op-token"));
    let failed = wait_until_async(
        Duration::from_secs(20),
        || {
            let mut c = op_d.clone();
            let id = delivery_id.clone();
            async move { c.get_delivery(v1::GetDeliveryRequest { id }).await.ok().and_then(|r| r.into_inner().delivery) }
        },
        |d: &Option<v1::Delivery>| d.as_ref().is_some_and(|d| d.status == "error"),
    )
    .await;
    assert!(failed, "acme's delivery failed as scripted");

    // Tenant settings: a tenant reads and changes only its own.
    use v1::tenant_service_client::TenantServiceClient;
    let mut other_t = TenantServiceClient::with_interceptor(ch.clone(), bearer("other-token"));
    let own = other_t.get_tenant_settings(v1::GetTenantSettingsRequest::default()).await.unwrap().into_inner();
    assert_eq!(own.tenant_id, "other");
    let err = other_t.get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: "acme".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let hijack = v1::TenantSettings { tenant_id: "acme".into(), ..Default::default() };
    let err = other_t
        .update_tenant_settings(v1::UpdateTenantSettingsRequest { settings: Some(hijack), expected_version: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // `other` sees nothing of acme's and every attempt answers not-found, as if it did not exist.
    let mut other = WebhookServiceClient::with_interceptor(ch.clone(), bearer("other-token"));
    assert!(other.list_webhooks(v1::ListWebhooksRequest::default()).await.unwrap().into_inner().webhooks.is_empty());
    assert_eq!(nf(other.get_webhook(v1::GetWebhookRequest { id: created.id.clone() }).await), tonic::Code::NotFound);
    let mut changed = created.clone();
    changed.name = "hijacked".into();
    assert_eq!(
        nf(other.update_webhook(v1::UpdateWebhookRequest { webhook: Some(changed), expected_version: 0 }).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        nf(other.disable_webhook(v1::SetEnabledRequest { id: created.id.clone() }).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        nf(other
            .rotate_secret(v1::RotateSecretRequest { id: created.id.clone(), grace_secs: None, ..Default::default() })
            .await),
        tonic::Code::NotFound
    );
    assert_eq!(
        nf(other.delete_webhook(v1::DeleteWebhookRequest { id: created.id.clone(), expected_version: 0 }).await),
        tonic::Code::NotFound
    );
    let missing = nf(other.get_webhook(v1::GetWebhookRequest { id: "wh_does_not_exist".into() }).await);
    assert_eq!(missing, tonic::Code::NotFound, "same answer as for an id that does not exist");
    let mut spoof = w.clone();
    spoof.tenant_id = "acme".into();
    spoof.name = "spoof".into();
    let err =
        other.create_webhook(v1::CreateWebhookRequest { webhook: Some(spoof), disabled: false }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    let mut other_d = DeliveryServiceClient::with_interceptor(ch.clone(), bearer("other-token"));
    assert!(other_d
        .list_deliveries(v1::ListDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deliveries
        .is_empty());
    assert_eq!(
        nf(other_d.get_delivery(v1::GetDeliveryRequest { id: delivery_id.clone() }).await),
        tonic::Code::NotFound
    );
    assert_eq!(nf(other_d.resend(v1::ResendRequest { id: delivery_id.clone() }).await), tonic::Code::NotFound);
    assert_eq!(
        nf(other_d.test_send(v1::TestSendRequest { webhook_id: created.id.clone(), event: None }).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        nf(other_d
            .recover(v1::RecoverRequest { webhook_id: created.id.clone(), since: "2020-01-01T00:00:00Z".into() })
            .await),
        tonic::Code::NotFound
    );
    let mut other_r = RenderServiceClient::with_interceptor(ch.clone(), bearer("other-token"));
    let preview = other_r
        .preview(v1::PreviewRequest {
            target: Some(v1::preview_request::Target::WebhookId(created.id.clone())),
            event: None,
        })
        .await;
    assert_eq!(nf(preview), tonic::Code::NotFound);
    let mut other_i = IngestServiceClient::with_interceptor(ch.clone(), bearer("other-token"));
    let dlq = other_i.list_dead_letters(v1::ListDeadLettersRequest::default()).await.unwrap().into_inner();
    assert!(dlq.entries.is_empty());
    assert_eq!(rx.count(), 1, "nothing was sent on other's behalf");

    // acme still can; the operator sees every tenant.
    assert_eq!(
        acme.get_webhook(v1::GetWebhookRequest { id: created.id.clone() }).await.unwrap().into_inner().name,
        "CRM"
    );
    let mut op = WebhookServiceClient::with_interceptor(ch.clone(), bearer("op-token"));
    assert_eq!(op.list_webhooks(v1::ListWebhooksRequest::default()).await.unwrap().into_inner().webhooks.len(), 1);
    let mut op_d = op_d;
    assert_eq!(
        op_d.get_delivery(v1::GetDeliveryRequest { id: delivery_id })
            .await
            .unwrap()
            .into_inner()
            .delivery
            .unwrap()
            .tenant_id,
        "acme"
    );
}
