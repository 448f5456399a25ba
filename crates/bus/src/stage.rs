//! The consume loop every stage runs: receive, hand each record to the stage's handler with
//! bounded concurrency, and commit at the low-water mark once handlers finish. Records with the
//! same key are handled one after the other, in offset order, so per-call order survives the
//! parallelism; different keys proceed in parallel.
//!
//! A handler's future completes only when everything the record produced is acknowledged
//! (it retries transient failures itself); that is what makes the commit safe. On shutdown
//! the loop stops receiving, waits up to `drain` for in-flight handlers, commits what
//! finished, and returns.

use crate::{Consumer, Message, OffsetTracker};
use futures::FutureExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct LoopOptions {
    /// Records handled at once (over all partitions).
    pub max_in_flight: usize,
    /// Handle records of one key strictly in order.
    pub ordered_by_key: bool,
    /// How long shutdown waits for in-flight handlers.
    pub drain: Duration,
    /// When set, the loop publishes its consumer lag (end offsets − position + in flight) as
    /// `hookmesh_consumer_lag` every few seconds.
    pub lag_from: Option<(Arc<dyn crate::Bus>, String)>,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions { max_in_flight: 256, ordered_by_key: true, drain: Duration::from_secs(10), lag_from: None }
    }
}

/// Runs `attempt` until it succeeds, backing off from 50 ms doubling to 5 s: a handler's
/// future completes only once what its record produced is acknowledged, so transient bus or
/// store failures are retried here rather than dropping the record.
pub async fn until_ok<T, E: std::fmt::Display, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> Fut,
) -> T {
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The dead-letter record of a message a stage cannot read (a bug or a foreign producer):
/// the original bytes with the reason, so nothing is lost silently.
pub fn unreadable(msg: &Message, field: &str, error: impl std::fmt::Display) -> crate::Record {
    crate::Record::new(msg.key.clone(), msg.payload.clone().unwrap_or_default())
        .with_header("hookmesh-reason", format!("unreadable on {}: {error}", msg.topic).into_bytes())
        .with_header("hookmesh-field", field)
        .with_header("hookmesh-source", msg.topic.as_bytes())
}

/// Lets a handler release the per-key order before it completes: the next record of the same
/// key may start once the handler has done the part that must happen in order (for example
/// the dispatcher enqueues a delivery in order, then waits for the HTTP attempt). Without a
/// call the order is released when the handler completes.
#[derive(Clone)]
pub struct OrderRelease(Arc<tokio::sync::watch::Sender<bool>>);

impl OrderRelease {
    pub fn release(&self) {
        let _ = self.0.send(true);
    }
}

/// Runs one pipeline stage until `shutdown`: subscribes to `topic` as `group`, and hands every
/// record to `handle` (with the stage and the record's order release), retrying it until it
/// succeeds, so an offset is committed only once what its record produced is acknowledged.
/// The loop reports its consumer lag; `name` labels logs and `what` says what a failed attempt
/// was doing.
#[allow(clippy::too_many_arguments)]
pub async fn run_stage<S, H, Fut, T, E>(
    name: &'static str,
    what: &'static str,
    stage: Arc<S>,
    bus: Arc<dyn crate::Bus>,
    topic: &str,
    group: &str,
    options: LoopOptions,
    shutdown: CancellationToken,
    handle: H,
) -> Result<(), crate::BusError>
where
    S: Send + Sync + 'static,
    H: Fn(Arc<S>, Message, OrderRelease) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let consumer = bus.subscribe(topic, group).await?;
    let options = LoopOptions { lag_from: Some((bus, topic.to_string())), ..options };
    run_consumer(name, consumer, options, shutdown, move |msg, order| {
        let (stage, handle) = (stage.clone(), handle.clone());
        async move {
            until_ok(what, || handle(stage.clone(), msg.clone(), order.clone())).await;
        }
    })
    .await;
    Ok(())
}

/// Runs until `shutdown` is cancelled. `name` labels logs.
pub async fn run_consumer<H, Fut>(
    name: &'static str,
    mut consumer: Box<dyn Consumer>,
    options: LoopOptions,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Message, OrderRelease) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut tracker = OffsetTracker::new();
    let mut tasks: JoinSet<(i32, i64, String, u64)> = JoinSet::new();
    // Per key: the sequence number of the last task and the signal it fires when done.
    let mut chains: HashMap<String, (u64, tokio::sync::watch::Receiver<bool>)> = HashMap::new();
    let mut seq: u64 = 0;
    let mut seen_partitions = std::collections::HashSet::new();
    let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = lag_tick.tick(), if options.lag_from.is_some() => {
                if let Some((bus, topic)) = &options.lag_from {
                    if let Ok(ends) = bus.end_offsets(topic).await {
                        let positions = consumer.positions();
                        // Only partitions this process has consumed: in a group, the others
                        // belong to other members, whose lag is theirs to report.
                        for (p, end) in ends.iter().enumerate().filter(|(p, _)| seen_partitions.contains(&(*p as i32))) {
                            let pos = positions.get(p).copied().unwrap_or(0);
                            let lag = (end - pos).max(0) + tracker.in_flight_on(p as i32) as i64;
                            hookmesh_telemetry::metrics()
                                .consumer_lag
                                .get_or_create(&hookmesh_telemetry::metrics::PartitionLabels { topic: topic.clone(), partition: p as i32 })
                                .set(lag);
                        }
                    }
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                finish(&mut tracker, &mut chains, consumer.as_ref(), name, done);
            }
            permit = permits.clone().acquire_owned() => {
                let permit = permit.expect("semaphore never closed");
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = consumer.recv() => m,
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage = name, error = %e, "receive failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                seq += 1;
                if seen_partitions.insert(msg.partition) {
                    tracing::info!(stage = name, partition = msg.partition, offset = msg.offset, "consuming partition");
                    // Report the new partition's lag now rather than at the next tick.
                    lag_tick.reset_immediately();
                }
                tracker.start(msg.partition, msg.offset);
                let (tx, rx) = tokio::sync::watch::channel(false);
                let tx = OrderRelease(Arc::new(tx));
                let previous = if options.ordered_by_key {
                    chains.insert(msg.key.clone(), (seq, rx)).map(|(_, r)| r)
                } else {
                    None
                };
                let handler = handler.clone();
                let (p, o, key, my_seq) = (msg.partition, msg.offset, msg.key.clone(), seq);
                tasks.spawn(async move {
                    if let Some(mut prev) = previous {
                        let _ = prev.wait_for(|done| *done).await;
                    }
                    let span = crate::trace::log_span(name, msg.header(crate::trace::TRACEPARENT));
                    let work = tracing::Instrument::instrument(handler(msg, tx.clone()), span);
                    let outcome = std::panic::AssertUnwindSafe(work).catch_unwind().await;
                    if outcome.is_err() {
                        // A bug, not bad input: log loudly and move on rather than stall the
                        // partition forever.
                        tracing::error!(stage = name, partition = p, offset = o, "handler panicked; record skipped");
                    }
                    tx.release();
                    drop(permit);
                    (p, o, key, my_seq)
                });
            }
        }
    }
    // Drain: let in-flight handlers finish (bounded), commit what completed.
    let deadline = tokio::time::sleep(options.drain);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(stage = name, in_flight = tasks.len(), "drain timed out; uncommitted records will be redelivered");
                tasks.abort_all();
                break;
            }
            Some(done) = tasks.join_next() => finish(&mut tracker, &mut chains, consumer.as_ref(), name, done),
        }
    }
}

fn finish(
    tracker: &mut OffsetTracker,
    chains: &mut HashMap<String, (u64, tokio::sync::watch::Receiver<bool>)>,
    consumer: &dyn Consumer,
    name: &'static str,
    done: Result<(i32, i64, String, u64), tokio::task::JoinError>,
) {
    match done {
        Ok((p, o, key, seq)) => {
            if chains.get(&key).is_some_and(|(s, _)| *s == seq) {
                chains.remove(&key);
            }
            if let Some(commit) = tracker.finish(p, o) {
                if let Err(e) = consumer.commit(p, commit) {
                    tracing::warn!(stage = name, error = %e, "commit failed");
                }
            }
        }
        Err(e) => tracing::error!(stage = name, error = %e, "handler task aborted"),
    }
}
