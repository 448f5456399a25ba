//! Topic names (the pipeline in docs/architecture.md) under a configurable prefix.

use crate::TopicSpec;

/// The topic set of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    pub events: String,
    pub jobs: String,
    pub requests: String,
    pub attempts: String,
    pub dlq: String,
    pub config: String,
}

impl Topics {
    /// `calls.raw` is the switches' topic and keeps its name; the others are `<prefix>.<name>`.
    pub fn new(prefix: &str) -> Self {
        let p = |n: &str| format!("{prefix}.{n}");
        Topics {
            raw: "calls.raw".to_string(),
            events: p("events"),
            jobs: p("jobs"),
            requests: p("requests"),
            attempts: p("attempts"),
            dlq: p("dlq"),
            config: p("config"),
        }
    }

    /// Every topic with its partition count; the config topic is compacted with one partition
    /// so all services apply registry writes in one order.
    pub fn specs(&self, partitions: u32) -> Vec<TopicSpec> {
        let spec =
            |name: &str, partitions: u32, compacted: bool| TopicSpec { name: name.to_string(), partitions, compacted };
        vec![
            spec(&self.raw, partitions, false),
            spec(&self.events, partitions, false),
            spec(&self.jobs, partitions, false),
            spec(&self.requests, partitions, false),
            spec(&self.attempts, partitions, false),
            spec(&self.dlq, 1, false),
            spec(&self.config, 1, true),
        ]
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics::new("hookmesh")
    }
}
