//! Endpoint health samples, written in groups: every attempt adds a sample, and a writer task
//! takes what has queued for up to [`LINGER`] and records each endpoint's samples with one
//! store call. An attempt still waits until its sample is recorded (so a delivery shown as
//! settled has its sample in the endpoint's health), but a busy endpoint costs one hot-state
//! write per group instead of one per attempt.

use super::*;
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

/// How long the writer gathers samples after the first one of a group.
pub const LINGER: Duration = Duration::from_millis(5);
/// Most samples one group carries.
const MAX_GROUP: usize = 4096;

type Ack = oneshot::Sender<Result<(), StoreError>>;

/// The handle attempts record through.
#[derive(Clone)]
pub(crate) struct HealthWriter {
    tx: mpsc::Sender<(String, HealthSample, Ack)>,
}

impl HealthWriter {
    /// Starts the writer task (it ends when every handle is dropped).
    pub(crate) fn start(store: Arc<dyn Store>) -> HealthWriter {
        let (tx, rx) = mpsc::channel(MAX_GROUP);
        tokio::spawn(write_groups(store, rx));
        HealthWriter { tx }
    }

    /// Records one sample of `endpoint`; answers once it is stored.
    pub(crate) async fn record(&self, endpoint: &str, sample: HealthSample) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        let stopped = || StoreError::Backend("health writer stopped".into());
        self.tx.send((endpoint.to_string(), sample, ack)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn write_groups(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(String, HealthSample, Ack)>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while group.len() < MAX_GROUP {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => group.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        // Each endpoint's samples in the order they came, the endpoints written together.
        let mut by_endpoint: BTreeMap<String, (Vec<HealthSample>, Vec<Ack>)> = BTreeMap::new();
        for (endpoint, sample, ack) in group {
            let entry = by_endpoint.entry(endpoint).or_default();
            entry.0.push(sample);
            entry.1.push(ack);
        }
        let writes = by_endpoint.into_iter().map(|(endpoint, (samples, acks))| {
            let store = store.clone();
            async move {
                let result = store.record_health_batch(&endpoint, &samples).await;
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}
