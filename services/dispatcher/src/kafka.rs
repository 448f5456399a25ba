//! Kafka destinations: a webhook whose URL is `kafka://<connection>/<topic>` delivers each
//! request as one record on `<topic>` of the Kafka cluster the deployment configured under
//! `<connection>` (`HOOKMESH_KAFKA_DESTINATIONS=analytics=kafka-0:9092,kafka-1:9092`).
//!
//! The record carries exactly what an HTTP request would: the rendered body as its value, the
//! webhook's headers (names lowercased), `content-type`, `webhook-id`, `webhook-timestamp`, `webhook-signature`
//! (signed at send time like every attempt) and `traceparent` as record headers, and the call
//! id (else the event id) as its key, so one call's records stay in order on one partition.
//! An attempt succeeds when the cluster acknowledged the record (`acks=all`, idempotent
//! producer); a failure or no acknowledgement within the webhook's timeout is an attempt that
//! failed (`connect` or `timeout`), retried, logged and counted in the endpoint's health like
//! an HTTP failure.
//!
//! # Which tenant may write where
//! A destination is open to every tenant unless the operator names the tenants that may use
//! it (`crm@acme|beta=c0:9092`); the registry refuses other tenants' webhooks and the
//! dispatcher checks again before producing. Topics are the tenant's choice, except
//! hookmesh's own topics (`calls.raw`, `<prefix>.*` as configured) and Kafka's internal ones
//! (`__…`), refused by the registry, so a destination that happens to be hookmesh's own
//! cluster cannot be used to write into the pipeline.
//!
//! # Why named connections only (SSRF)
//! A tenant cannot name brokers. A Kafka client connects to its bootstrap servers and then to
//! whatever listeners their metadata advertises, so checking the bootstrap addresses against
//! the SSRF allow-list would not stop a hostile broker from sending the dispatcher to an
//! internal address; librdkafka resolves and connects on its own, outside the guarded
//! resolver of the HTTP client. The operator configures each cluster by name, and webhooks
//! refer to the name; the registry refuses a name the deployment does not know.

use hookmesh_core::delivery::ErrorClass;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::Duration;

/// One configured destination cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSpec {
    pub name: String,
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Tenants that may deliver there; empty = every tenant.
    pub tenants: Vec<String>,
}

impl DestinationSpec {
    pub fn allows(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// The deployment's Kafka destinations: name → producer.
#[derive(Default)]
pub struct KafkaDestinations {
    producers: BTreeMap<String, (DestinationSpec, FutureProducer)>,
}

impl std::fmt::Debug for KafkaDestinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.producers.keys()).finish()
    }
}

/// Where a `kafka://` URL points.
#[derive(Debug, PartialEq, Eq)]
pub struct KafkaTarget<'a> {
    pub connection: &'a str,
    pub topic: &'a str,
}

/// Splits `kafka://<connection>/<topic>`; `None` for any other URL.
pub fn kafka_target(url: &str) -> Option<KafkaTarget<'_>> {
    let rest = url.strip_prefix("kafka://")?;
    let (connection, topic) = rest.split_once('/')?;
    Some(KafkaTarget { connection, topic })
}

impl KafkaDestinations {
    /// Producers for `(name, bootstrap servers)` pairs; no connection is opened until the first
    /// record. `extra` passes librdkafka properties through (TLS, SASL).
    pub fn new(connections: &[DestinationSpec], extra: &[(String, String)]) -> Result<Self, String> {
        let mut producers = BTreeMap::new();
        for spec in connections {
            let (name, brokers) = (&spec.name, &spec.brokers);
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", brokers)
                .set("client.id", format!("hookmesh-destination-{name}"))
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "2")
                // The longest per-attempt timeout; each attempt waits at most its own.
                .set("message.timeout.ms", "60000");
            for (k, v) in extra {
                c.set(k, v);
            }
            let p = c.create().map_err(|e| format!("kafka_destinations: `{name}`: {e}"))?;
            producers.insert(name.clone(), (spec.clone(), p));
        }
        Ok(KafkaDestinations { producers })
    }

    pub fn names(&self) -> Vec<String> {
        self.producers.keys().cloned().collect()
    }

    /// Produces one record for `tenant` and waits for the acknowledgement, at most `timeout`.
    /// Answers where it landed (`partition`, `offset`) or the error class and text.
    pub async fn send(
        &self,
        tenant: &str,
        target: &KafkaTarget<'_>,
        key: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<(i32, i64), (ErrorClass, String)> {
        let Some((spec, producer)) = self.producers.get(target.connection) else {
            return Err((
                ErrorClass::Blocked,
                format!("no Kafka destination `{}` is configured in this deployment", target.connection),
            ));
        };
        if !spec.allows(tenant) {
            return Err((
                ErrorClass::Blocked,
                format!("Kafka destination `{}` is not open to tenant `{tenant}`", target.connection),
            ));
        }
        // Names lowercased: HTTP header names are case-insensitive, Kafka's are not, and a
        // consumer looks for `webhook-id` however the webhook spelt its own headers.
        let names: Vec<String> = headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, (_, v)) in names.iter().zip(headers) {
            h = h.insert(Header { key: k.as_str(), value: Some(v.as_bytes()) });
        }
        let record = FutureRecord::to(target.topic).key(key).payload(body).headers(h);
        match tokio::time::timeout(timeout, producer.send(record, timeout)).await {
            Err(_) => Err((ErrorClass::Timeout, format!("no acknowledgement from Kafka within {timeout:?}"))),
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((e, _))) => Err((classify(&e), format!("Kafka refused the record: {e}"))),
        }
    }
}

fn classify(e: &KafkaError) -> ErrorClass {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut) => ErrorClass::Timeout,
        _ => ErrorClass::Connect,
    }
}

/// Parses `name=host:port,host:port;name2@tenant|tenant=…` (the `kafka_destinations` setting).
pub fn parse_destinations(spec: &str) -> Result<Vec<DestinationSpec>, String> {
    let mut out: Vec<DestinationSpec> = Vec::new();
    for (i, entry) in spec.split(';').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let (head, brokers) = entry.split_once('=').ok_or_else(|| {
            format!("kafka_destinations[{i}]: `{entry}` is not NAME[@TENANT|TENANT]=HOST:PORT[,HOST:PORT]")
        })?;
        let (name, tenants) = match head.split_once('@') {
            Some((n, t)) => (n.trim(), t.split('|').map(|t| t.trim().to_string()).collect::<Vec<_>>()),
            None => (head.trim(), Vec::new()),
        };
        if tenants.iter().any(|t| t.is_empty()) {
            return Err(format!("kafka_destinations[{i}]: `{name}` lists an empty tenant"));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(format!(
                "kafka_destinations[{i}]: name `{name}` may only contain letters, digits, `-` and `_`"
            ));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(format!("kafka_destinations[{i}]: `{name}` is configured twice"));
        }
        let brokers: Vec<&str> = brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
        if brokers.is_empty() || brokers.iter().any(|b| !b.contains(':')) {
            return Err(format!("kafka_destinations[{i}]: `{name}` needs HOST:PORT brokers"));
        }
        out.push(DestinationSpec { name: name.to_string(), brokers: brokers.join(","), tenants });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_names_and_closed_destinations_are_blocked() {
        let d = KafkaDestinations::new(&parse_destinations("crm@acme=127.0.0.1:9").unwrap(), &[]).unwrap();
        let t = |c| KafkaTarget { connection: c, topic: "t" };
        let (class, why) = d.send("acme", &t("nope"), "k", &[], b"", Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(class, ErrorClass::Blocked);
        assert!(why.contains("no Kafka destination `nope`"), "{why}");
        let (class, why) = d.send("other", &t("crm"), "k", &[], b"", Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(class, ErrorClass::Blocked);
        assert!(why.contains("not open to tenant `other`"), "{why}");
    }

    #[test]
    fn urls_and_settings_parse() {
        assert_eq!(
            kafka_target("kafka://analytics/calls.v1"),
            Some(KafkaTarget { connection: "analytics", topic: "calls.v1" })
        );
        assert_eq!(kafka_target("https://x/y"), None);
        let d = parse_destinations("analytics=k0:9092, k1:9092; crm@acme|beta=c:9092").unwrap();
        assert_eq!(
            d[0],
            DestinationSpec { name: "analytics".into(), brokers: "k0:9092,k1:9092".into(), tenants: vec![] }
        );
        assert_eq!(d[1].name, "crm");
        assert_eq!(d[1].tenants, ["acme", "beta"]);
        assert!(d[0].allows("anyone") && d[1].allows("beta") && !d[1].allows("gamma"));
        assert!(parse_destinations("crm@=c:9092").unwrap_err().contains("empty tenant"));
        assert!(parse_destinations("a=k:1;a=k:2").unwrap_err().contains("twice"));
        assert!(parse_destinations("a b=k:1").unwrap_err().starts_with("kafka_destinations[0]: name"));
        assert!(parse_destinations("a=nohost").unwrap_err().contains("HOST:PORT"));
    }
}
