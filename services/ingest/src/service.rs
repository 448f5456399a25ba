//! `IngestService`: batch publish with a result per event, and the dead-letter listing.

use crate::{Ingest, Outcome, HEADER_FIELD, HEADER_REASON, HEADER_RECEIVED_AT, HEADER_SOURCE, HEADER_TENANT};
use hookmesh_proto::auth::Principal;
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
        let mut resp = v1::PublishResponse::default();
        for (index, item) in items.into_iter().enumerate() {
            let bytes = match item.payload {
                Some(Payload::Json(s)) => s.into_bytes(),
                Some(Payload::Event(e)) => proto_event_json(&e),
                None => b"{}".to_vec(),
            };
            let mut r = v1::PublishResult { index: index as u32, ..Default::default() };
            // A tenant token publishes for its own tenant only; refused without reaching the DLQ
            // (it is a permission problem, not bad input).
            if let Principal::Tenant(own) = &principal {
                let tenant = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("tenant_id").and_then(Value::as_str).map(str::to_string));
                if tenant.as_deref() != Some(own.as_str()) {
                    r.field = "tenant_id".into();
                    r.reason = "this token publishes for its own tenant only".into();
                    resp.rejected += 1;
                    resp.results.push(r);
                    continue;
                }
            }
            let outcome = self.ingest.accept(&bytes, "grpc").await.map_err(|e| Status::unavailable(e.to_string()))?;
            match outcome {
                Outcome::Accepted(id) => {
                    r.accepted = true;
                    r.event_id = id;
                    resp.accepted += 1;
                }
                Outcome::Duplicate(id) => {
                    r.duplicate = true;
                    r.event_id = id;
                    resp.duplicates += 1;
                }
                Outcome::Rejected(e) => {
                    // The id, when the input has a readable one, tells the sender which event it was.
                    r.event_id = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_default();
                    r.field = e.field;
                    r.reason = e.reason;
                    resp.rejected += 1;
                }
            }
            resp.results.push(r);
        }
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
        let ends = bus.end_offsets(topic).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let mut reader = bus.reader(topic).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let mut entries = std::collections::VecDeque::new();
        let caught_up = |pos: &[i64]| pos.iter().zip(&ends).all(|(p, e)| p >= e);
        while !caught_up(&reader.positions()) {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), reader.recv())
                .await
                .map_err(|_| Status::deadline_exceeded("reading the dead-letter topic timed out"))?
                .map_err(|e| Status::unavailable(e.to_string()))?;
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
