//! One file per area of the console; each handler takes a [`crate::web::Page`] (the session
//! and an API client with its token) and answers a rendered page or a redirect.
//!
//! - `auth.rs`: sign-in, sign-out, the tenant-portal entry.
//! - `webhooks.rs`: list, show (with health), create/edit (with "from an example"), enable,
//!   disable, delete, rotate secret, test request.
//! - `deliveries.rs`: the delivery log, details, resend, recover.
//! - `templates.rs`: body templates; `misc.rs`: token catalog, dead letters, portal links
//!   (operators), static files.
//! - `settings.rs`: a tenant's settings (masking personal data in the stored log).
//! - `view.rs`: API messages as the values templates read.

pub mod auth;
pub mod deliveries;
pub mod misc;
pub mod settings;
pub mod templates;
pub mod view;
pub mod webhooks;
