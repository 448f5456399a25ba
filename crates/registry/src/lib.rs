//! The configuration registry as every service sees it: [`ConfigView`] materialises the
//! compacted config topic (webhooks, templates, tenant settings) in memory and follows it,
//! with optimistic, read-your-writes management writes; [`secrets::SecretCipher`] encrypts
//! the signing secrets stored in that topic under the deployment's master key.
//!
//! It sits on the [`hookmesh_bus::Bus`] trait, so the bus crate stays only topics.

pub mod secrets;
mod view;

pub use view::*;
