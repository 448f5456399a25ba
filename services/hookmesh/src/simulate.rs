//! `hookmesh simulate`: realistic call traffic for demos, tests and load.
//!
//! Each simulated call publishes `call.started` → `call.answered` → `call.dtmf` (the caller
//! presses an IVR option) → `call.ended`, with campaign, direction, tracking number, caller
//! (ANI) details, durations and a recording URL, through `IngestService.Publish`. Calls start at
//! `--rate` per second until `--calls` calls (or `--duration` seconds) have started. A progress
//! line is printed every second and a summary at the end. The connection (`--addr`, `--token`)
//! is `hookmesh-client`'s, as `ctl`'s.

use anyhow::Context;
use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use hookmesh_client::{Answer, Client, ConnectArgs};
use hookmesh_proto::v1::{self, publish_item::Payload};
use rand::Rng;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Tenant the calls belong to.
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    /// Calls to simulate (ignored when --duration is given).
    #[arg(long, default_value_t = 10)]
    pub calls: u64,
    /// Simulate for this many seconds instead of a fixed number of calls.
    #[arg(long)]
    pub duration: Option<f64>,
    /// New calls per second (0 = as fast as possible).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Campaigns to spread calls over (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "Sales Campaign,Service Campaign")]
    pub campaigns: Vec<String>,
    /// Directions to spread calls over: inbound, outbound, click_to_call.
    #[arg(long, value_delimiter = ',', default_value = "inbound,outbound")]
    pub directions: Vec<String>,
    /// Tracking (DID) numbers to spread calls over.
    #[arg(long, value_delimiter = ',', default_value = "7774839229,7774839230")]
    pub numbers: Vec<String>,
    /// Only publish these event types of each call (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub events: Vec<String>,
    /// Events per Publish call.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Print no progress lines, only the summary.
    #[arg(long)]
    pub quiet: bool,
}

const IVR: &[(&str, &str)] = &[("1", "Sales"), ("2", "Service"), ("3", "Parts")];
const FIRST: &[&str] = &["Freddy", "Nancy", "Glen", "Tina", "Rod", "Marge"];
const LAST: &[&str] = &["Krueger", "Thompson", "Lantz", "Gray", "Lane", "Simms"];

/// The events of one simulated call.
pub fn call_events(args: &SimulateArgs, n: u64, rng: &mut impl Rng) -> Vec<serde_json::Value> {
    let run = Utc::now().timestamp_millis();
    let call_id = format!("sim-{run:x}-{n:06}");
    let campaign = &args.campaigns[(n as usize) % args.campaigns.len().max(1)];
    let campaign_id = format!("cmp-{}", campaign.to_ascii_lowercase().replace(' ', "-"));
    let direction = &args.directions[(n as usize) % args.directions.len().max(1)];
    let tracking = &args.numbers[(n as usize) % args.numbers.len().max(1)];
    let (option, label) = IVR[rng.random_range(0..IVR.len())];
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let ani = format!("777{:07}", rng.random_range(0..10_000_000u32));
    let ring = rng.random_range(1..6u32);
    let talk = rng.random_range(20..600u32);
    let start = Utc::now();
    let answered = start + ChronoDuration::seconds(i64::from(ring * 3));
    let end = answered + ChronoDuration::seconds(i64::from(talk));
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let base = json!({
        "campaign_id": campaign_id, "campaign_name": campaign, "direction": direction,
        "tracking": tracking, "ani": ani, "ani_first_name": first, "ani_last_name": last,
        "ani_full_name": format!("{first} {last}"), "ani_city": "Springwood", "ani_state": "Ohio",
        "call_start_time": ts(start), "repeat_caller": rng.random_range(0..2u32),
        "tags": {"region": if n.is_multiple_of(2) { "south" } else { "north" }},
    });
    let with = |extra: serde_json::Value| {
        let mut d = base.clone();
        d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        d
    };
    let all = [
        ("call.started", start, with(json!({}))),
        ("call.answered", answered, with(json!({"answered_by": "ivr", "ring_count": ring}))),
        (
            "call.dtmf",
            answered + ChronoDuration::seconds(5),
            with(json!({"ivr_option": option, "ivr_label": label,
            "prompt_responses": [{"question": "department", "response": option}]})),
        ),
        (
            "call.ended",
            end,
            with(json!({"ivr_option": option, "ivr_label": label, "call_end_time": ts(end),
            "dialed_time": ring * 3 + talk, "answered_time": talk, "dialstatus": "ANSWER",
            "rec_audiourl": format!("https://audio.example.com/{call_id}.mp3")})),
        ),
    ];
    all.into_iter()
        .filter(|(t, _, _)| args.events.is_empty() || args.events.iter().any(|e| e == t))
        .enumerate()
        .map(|(i, (t, at, data))| {
            json!({"id": format!("{call_id}-{i}"), "type": t, "occurred_at": ts(at),
                "tenant_id": args.tenant, "call_id": call_id, "data": data})
        })
        .collect()
}

#[derive(Default)]
struct Totals {
    calls: u64,
    events: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let api = args.connect.connect().await?;
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let target = if deadline.is_some() { u64::MAX } else { args.calls };
    let mut rng = rand::rng();
    let mut totals = Totals::default();
    let mut pending: Vec<serde_json::Value> = Vec::new();
    let mut last_progress = Instant::now();
    while totals.calls < target && deadline.is_none_or(|d| Instant::now() < d) {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(totals.calls as f64 / args.rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                if !pending.is_empty() {
                    flush(&api, &mut pending, &mut totals).await?;
                }
                tokio::time::sleep(wait).await;
            }
        }
        pending.extend(call_events(&args, totals.calls, &mut rng));
        totals.calls += 1;
        if pending.len() >= args.batch {
            flush(&api, &mut pending, &mut totals).await?;
        }
        if !args.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(&totals, started, target);
        }
    }
    flush(&api, &mut pending, &mut totals).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulated {} calls, {} events in {:.1}s ({:.0} events/s): accepted {}, rejected {}, duplicates {}",
        totals.calls,
        totals.events,
        secs,
        totals.events as f64 / secs.max(0.001),
        totals.accepted,
        totals.rejected,
        totals.duplicates
    );
    Ok(())
}

fn progress(t: &Totals, started: Instant, target: u64) {
    let of = if target == u64::MAX { String::new() } else { format!("/{target}") };
    eprintln!(
        "calls {}{of}, events {} (accepted {}, rejected {}, duplicates {}), {:.0} events/s",
        t.calls,
        t.events,
        t.accepted,
        t.rejected,
        t.duplicates,
        t.events as f64 / started.elapsed().as_secs_f64().max(0.001)
    );
}

async fn flush(api: &Client, pending: &mut Vec<serde_json::Value>, totals: &mut Totals) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let events =
        pending.drain(..).map(|v| v1::PublishItem { payload: Some(Payload::Json(v.to_string())) }).collect::<Vec<_>>();
    let n = events.len() as u64;
    let resp = api.ingest().publish(v1::PublishRequest { events }).await.answer(api).context("publish failed")?;
    totals.events += n;
    totals.accepted += u64::from(resp.accepted);
    totals.rejected += u64::from(resp.rejected);
    totals.duplicates += u64::from(resp.duplicates);
    for r in resp.results.iter().filter(|r| !r.accepted && !r.duplicate) {
        eprintln!("rejected event #{}: {}: {}", r.index, r.field, r.reason);
    }
    Ok(())
}
