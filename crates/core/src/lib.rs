//! hookmesh's domain: events, the token catalog, webhooks, templates, matching, rendering,
//! retry policy and signing. No I/O lives here, so every rule can be unit-tested and every
//! service applies the same rules.
//!
//! # Layout
//! - [`event`]: canonical event types, aliases, the JSON schema and its validation.
//! - [`tokens`]: the token catalog templates draw from, and the sample event.
//! - [`template`]: field-mapping and text templates: extraction, compilation, rendering.
//! - [`webhook`]: subscriptions: trigger, request, success condition, delivery policy.
//! - [`matching`]: which webhooks want an event.
//! - [`expression`]: CEL trigger expressions: variables, the static check, the cost bound.
//! - [`render`]: turning a job into the exact HTTP request to send.
//! - [`context`]: call context: values captured from responses for later deliveries.
//! - [`enrich`]: post-call enrichment: deliveries held for data points later events bring.
//! - [`delivery`]: jobs, rendered requests, deliveries, attempts and their statuses.
//! - [`privacy`]: per-tenant masking of personal data in stored delivery logs.
//! - [`retry`]: retry decisions as data.
//! - [`signing`]: Standard Webhooks signatures and `whsec_` secrets.

pub mod breaker;
pub mod catalog;
pub mod context;
pub mod delivery;
pub mod enrich;
pub mod error;
pub mod event;
pub mod expression;
pub mod health;
pub mod matching;
pub mod privacy;
pub mod render;
pub mod retry;
pub mod signing;
pub mod template;
pub mod tokens;
pub mod webhook;

pub use error::ValidationError;
pub use event::{Event, EventType};
