//! `IngestService`: batch publish with a result per event, and the dead-letter listing.

use crate::{Ingest, Outcome, HEADER_FIELD, HEADER_REASON, HEADER_RECEIVED_AT, HEADER_SOURCE, HEADER_TENANT};
use hookmesh_proto::auth::Principal;
use hookmesh_proto::status;
use hookmesh_proto::v1::{self, publish_item::Payload};
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

/// Most events one `Publish` call may carry.
pub const MAX_BATCH: usize = 1000;

pub struct IngestApi {
    pub ingest: Ingest,
}

/// The JSON form of a protobuf event, so both input paths share one validation.
pub fn proto_event_json(e: &v1::Event) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(e.id.clone()));
    obj.insert("type".into(), Value::String(e.r#type.clone()));
    obj.insert("occurred_at".into(), Value::String(e.occurred_at.clone()));
    obj.insert("tenant_id".into(), Value::String(e.tenant_id.clone()));
    if !e.call_id.is_empty() {
        obj.insert("call_id".into(), Value::String(e.call_id.clone()));
    }
    let data = if e.data_json.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        // Invalid JSON is reported by validation against the whole document below.
        serde_json::from_str(&e.data_json).unwrap_or(Value::String(e.data_json.clone()))
    };
    obj.insert("data".into(), data);
    serde_json::to_vec(&Value::Object(obj)).expect("JSON serialises")
}

fn header(m: &hookmesh_bus::Message, name: &str) -> String {
    m.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

#[tonic::async_trait]
impl v1::ingest_service_server::IngestService for IngestApi {
    async fn publish(&self, request: Request<v1::PublishRequest>) -> Result<Response<v1::PublishResponse>, Status> {
        let principal = Principal::of(&request);
        let items = request.into_inner().events;
        if items.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "events: at most {MAX_BATCH} events per call, got {}",
                items.len()
            )));
        }
        // Parse once; refuse other tenants' events up front (a permission problem, not bad
        // input: it does not go to the DLQ).
        let mut results: Vec<v1::PublishResult> = Vec::with_capacity(items.len());
        let mut chains: Vec<(String, Vec<(usize, Vec<u8>)>)> = Vec::new();
        let mut chain_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, item) in items.into_iter().enumerate() {
            let bytes = match item.payload {
                Some(Payload::Json(s)) => s.into_bytes(),
                Some(Payload::Event(e)) => proto_event_json(&e),
                None => b"{}".to_vec(),
            };
            let parsed = serde_json::from_slice::<Value>(&bytes).ok();
            let field =
                |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_string);
            results.push(v1::PublishResult {
                index: index as u32,
                event_id: field("id").unwrap_or_default(),
                ..Default::default()
            });
            if let Principal::Tenant(own) = &principal {
                if field("tenant_id").as_deref() != Some(own.as_str()) {
                    results[index].field = "tenant_id".into();
                    results[index].reason = "this token publishes for its own tenant only".into();
                    continue;
                }
            }
            // Events of one call stay in order; different calls are accepted concurrently.
            let key = field("call_id").or_else(|| field("id")).unwrap_or_else(|| format!("#{index}"));
            let slot = *chain_of.entry(key.clone()).or_insert_with(|| {
                chains.push((key, Vec::new()));
                chains.len() - 1
            });
            chains[slot].1.push((index, bytes));
        }
        let ingest = &self.ingest;
        let outcomes = futures::future::join_all(chains.into_iter().map(|(_, chain)| async move {
            let mut out = Vec::with_capacity(chain.len());
            for (index, bytes) in chain {
                out.push((index, ingest.accept(&bytes, "grpc").await));
            }
            out
        }))
        .await;
        for (index, outcome) in outcomes.into_iter().flatten() {
            let r = &mut results[index];
            match outcome.map_err(|e| status::backend(&e, e.is_retriable()))? {
                Outcome::Accepted(id) => {
                    r.accepted = true;
                    r.event_id = id;
                }
                Outcome::Duplicate(id) => {
                    r.duplicate = true;
                    r.event_id = id;
                }
                Outcome::Rejected(e) => {
                    r.field = e.field;
                    r.reason = e.reason;
                }
            }
        }
        let mut resp = v1::PublishResponse::default();
        for r in &results {
            if r.accepted {
                resp.accepted += 1;
            } else if r.duplicate {
                resp.duplicates += 1;
            } else {
                resp.rejected += 1;
            }
        }
        resp.results = results;
        Ok(Response::new(resp))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        let tenant_filter = Principal::of(&request).scope(&request.get_ref().tenant_id)?;
        let req = request.into_inner();
        let limit = if req.limit == 0 { 100 } else { req.limit.min(10_000) } as usize;
        let bus = &self.ingest.bus;
        let topic = &self.ingest.topics.dlq;
        let ends = bus.end_offsets(topic).await.map_err(|e| status::backend(&e, e.is_retriable()))?;
        let mut reader = bus.reader(topic).await.map_err(|e| status::backend(&e, e.is_retriable()))?;
        let mut entries = std::collections::VecDeque::new();
        let caught_up = |pos: &[i64]| pos.iter().zip(&ends).all(|(p, e)| p >= e);
        while !caught_up(&reader.positions()) {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), reader.recv())
                .await
                .map_err(|_| Status::deadline_exceeded("reading the dead-letter topic timed out"))?
                .map_err(|e| status::backend(&e, e.is_retriable()))?;
            let tenant = header(&m, HEADER_TENANT);
            if tenant_filter.as_ref().is_some_and(|t| *t != tenant) {
                continue;
            }
            entries.push_back(v1::DeadLetter {
                topic: m.topic.to_string(),
                partition: m.partition,
                offset: m.offset,
                source: header(&m, HEADER_SOURCE),
                field: header(&m, HEADER_FIELD),
                reason: header(&m, HEADER_REASON),
                received_at: header(&m, HEADER_RECEIVED_AT),
                original: m.payload.as_deref().unwrap_or_default().to_vec(),
                tenant_id: tenant,
            });
            if entries.len() > limit {
                entries.pop_front();
            }
        }
        // Newest first, like the delivery log.
        Ok(Response::new(v1::ListDeadLettersResponse { entries: entries.into_iter().rev().collect() }))
    }
}
