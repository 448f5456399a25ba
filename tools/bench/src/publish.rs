//! Configuring the webhooks of a run and publishing its events through `IngestService`.

use crate::cluster::Procs;
use crate::receivers::Sink;
use crate::scenario::Plan;
use crate::BenchArgs;
use anyhow::{anyhow, bail};
use futures::StreamExt;
use hookmesh_proto::v1::{
    self, ingest_service_client::IngestServiceClient, publish_item::Payload, template_body::Kind,
    webhook_service_client::WebhookServiceClient,
};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub(crate) fn webhook(
    tenant: String,
    name: String,
    url: String,
    example: Option<String>,
    policy: Option<v1::DeliveryPolicy>,
) -> v1::Webhook {
    v1::Webhook {
        tenant_id: tenant,
        name,
        trigger: Some(v1::Trigger { event_types: vec!["call.ended".into()], ..Default::default() }),
        request: Some(v1::Request {
            url,
            body: example.map(|example| v1::TemplateBody {
                kind: Some(Kind::Fields(v1::FieldsBody { format: "json".into(), example, fields: vec![] })),
            }),
            ..Default::default()
        }),
        policy,
        ..Default::default()
    }
}

/// Creates every webhook, 32 at a time, with a progress line every second when there are many.
pub(crate) async fn create_webhooks(channel: Channel, hooks: Vec<v1::Webhook>) -> anyhow::Result<()> {
    let total = hooks.len();
    let client = WebhookServiceClient::new(channel);
    let started = Instant::now();
    let mut last = Instant::now();
    let mut done = 0usize;
    let mut results = futures::stream::iter(hooks.into_iter().map(|w| {
        let mut client = client.clone();
        async move {
            let name = w.name.clone();
            client
                .create_webhook(v1::CreateWebhookRequest { webhook: Some(w), disabled: false })
                .await
                .map_err(|s| anyhow!("creating webhook `{name}`: {}: {}", s.code().description(), s.message()))
        }
    }))
    .buffer_unordered(32);
    while let Some(r) = results.next().await {
        r?;
        done += 1;
        if total > 100 && (last.elapsed() >= Duration::from_secs(1) || done == total) {
            last = Instant::now();
            eprintln!(
                "  webhooks created {done}/{total} ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64().max(0.001)
            );
        }
    }
    Ok(())
}

pub(crate) fn event(id: String, tenant: String, n: u64, occurred_at: &str) -> v1::Event {
    let call_id = format!("c{n}");
    let data = json!({
        "ani": format!("777{:07}", n % 10_000_000), "tracking": "7774839229",
        "campaign_id": "cmp-sales", "campaign_name": "Sales Campaign",
        "direction": if n.is_multiple_of(2) { "inbound" } else { "outbound" },
        "ani_first_name": "Nancy", "ani_last_name": "Thompson", "ani_city": "Springwood", "ani_state": "Ohio",
        "call_start_time": occurred_at, "answered_time": 20 + n % 600, "dialed_time": 35 + n % 600,
        "dialstatus": "ANSWER", "ivr_option": "1", "ivr_label": "Sales",
        "rec_audiourl": format!("https://audio.example.com/{call_id}.mp3"),
    });
    v1::Event {
        id,
        r#type: "call.ended".into(),
        occurred_at: occurred_at.to_string(),
        tenant_id: tenant,
        call_id,
        data_json: data.to_string(),
    }
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) async fn publish_batch(
    client: &mut IngestServiceClient<Channel>,
    events: Vec<v1::Event>,
) -> anyhow::Result<u32> {
    let items = events.into_iter().map(|e| v1::PublishItem { payload: Some(Payload::Event(e)) }).collect();
    let resp = client
        .publish(v1::PublishRequest { events: items })
        .await
        .map_err(|s| anyhow!("publish failed: {}: {}", s.code().description(), s.message()))?
        .into_inner();
    if let Some(r) = resp.results.iter().find(|r| !r.accepted && !r.duplicate) {
        eprintln!("  rejected event #{}: {}: {}", r.index, r.field, r.reason);
    }
    Ok(resp.rejected)
}

pub(crate) struct Published {
    pub(crate) first_sent_ns: u64,
    pub(crate) last_done_ns: u64,
    pub(crate) rejected: u64,
}

/// Publishes events 0..plan.events, recording when each one's Publish call was sent.
pub(crate) async fn publish_all(
    channel: Channel,
    plan: &Plan,
    args: &BenchArgs,
    sink: Arc<Sink>,
    sent: Arc<Vec<AtomicU64>>,
) -> anyhow::Result<Published> {
    let client = IngestServiceClient::new(channel);
    let batch = if args.rate > 0.0 {
        ((args.rate / 50.0).ceil() as usize).clamp(1, args.batch.max(1))
    } else {
        args.batch.max(1)
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(args.publishers.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let first_sent_ns = sink.now_ns();
    let mut rejected = 0u64;
    let mut next = 0u64;
    while next < plan.events {
        if args.rate > 0.0 {
            tokio::time::sleep_until((started + Duration::from_secs_f64(next as f64 / args.rate)).into()).await;
        }
        let permit = permits.clone().acquire_owned().await?;
        while let Some(done) = tasks.try_join_next() {
            rejected += u64::from(done??);
        }
        let end = (next + batch as u64).min(plan.events);
        let at = now_rfc3339();
        let events: Vec<v1::Event> = (next..end)
            .map(|n| event(format!("e{n}"), Plan::tenant_name((n % u64::from(plan.tenants)) as u32), n, &at))
            .collect();
        let (mut client, sink, sent) = (client.clone(), sink.clone(), sent.clone());
        let range = next..end;
        tasks.spawn(async move {
            let t = sink.now_ns() + 1;
            for n in range.clone() {
                sent[n as usize].store(t, Ordering::Relaxed);
            }
            let r = publish_batch(&mut client, events).await;
            sink.published.fetch_add(range.end - range.start, Ordering::Relaxed);
            drop(permit);
            r
        });
        next = end;
    }
    while let Some(done) = tasks.join_next().await {
        rejected += u64::from(done??);
    }
    Ok(Published { first_sent_ns, last_done_ns: sink.now_ns(), rejected })
}

/// Warm-up: `count` events of the warm-up tenant, spread over call ids (so over partitions),
/// until all reached the warm-up webhook.
pub(crate) async fn warm_up(channel: Channel, sink: &Sink, procs: &mut Procs, count: u32) -> anyhow::Result<()> {
    let mut client = IngestServiceClient::new(channel);
    let at = now_rfc3339();
    let events = (0..count).map(|k| event(format!("w{k}"), "bench-warmup".into(), u64::from(k), &at)).collect();
    publish_batch(&mut client, events).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = sink.inner.lock().unwrap().warm.len();
        if got >= count as usize {
            return Ok(());
        }
        procs.check_alive()?;
        if Instant::now() > deadline {
            bail!("warm-up: only {got} of {count} warm-up deliveries arrived within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
