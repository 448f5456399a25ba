//! The hookmesh web console and tenant portal: server-rendered pages over the management gRPC
//! API, for operators (every tenant) and for each tenant's own people.
//!
//! # What it guarantees
//! - **Isolation is the API's own.** The console holds no credential of its own: every call
//!   carries the signed-in session's bearer token (an operator token, a tenant token, or a
//!   portal token the API issued), so a tenant session sees exactly what that token sees
//!   through the API, also when ids are typed into URLs (the API answers not-found).
//! - **Sessions are server-side.** The cookie (`hookmesh_session`) holds a random session id
//!   only: `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` when configured or when the
//!   request came through a TLS proxy (`X-Forwarded-Proto: https`). The API token stays in
//!   the console's memory and dies with the session (12 hours, or the portal link's expiry).
//!   A console restart signs everybody out; several console replicas need sticky sessions.
//! - **CSRF.** Every state-changing request is a POST that carries the session's CSRF token in
//!   a hidden `csrf` field, compared in constant time; a POST without it is refused (403) before
//!   anything is called. Sign-in itself uses a double-submit cookie.
//! - **Escaping.** Pages are minijinja templates with auto-escaping on; nothing is written into
//!   HTML outside the engine. Headers on every page: a strict `Content-Security-Policy` (scripts
//!   and styles from the console itself only), `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `Cache-Control: no-store`.
//! - **Framing.** Only tenant-portal pages may be framed, and only by the configured origins
//!   (`frame-ancestors`); every other page says `frame-ancestors 'none'`.
//! - **Open local mode.** When the API has no tokens configured, the console needs no
//!   sign-in and says so on every page.
//! - Requests are limited to 256 KiB.
//!
//! # Tenant portal
//! `GET /portal?token=hmp_…` (a link from `hookmesh ctl portal-link` or
//! `TenantService.CreatePortalLink`) checks the token with the API and starts a session with
//! it as the bearer token: the API itself accepts a portal token as a tenant credential of the
//! tenant it was signed for, until it expires. Nothing in the portal session can widen it: the
//! tenant is inside the signed token, the console never calls with another credential, and
//! there is no sign-in form inside a portal session. A platform that embeds the portal in an
//! `<iframe>` on another site lists its origin in `frame_origins` and serves the console over
//! TLS with `secure_cookies`: portal session cookies are then `SameSite=None; Partitioned;
//! Secure` (a `Strict` cookie is never sent inside a cross-site frame, and a partitioned one is
//! kept by browsers that block third-party cookies); CSRF tokens still guard every POST.
//!
//! # Layout
//! - `session.rs`: sessions, cookies, CSRF, who is signed in.
//! - `web.rs`: the router, security headers, the page renderer and error pages.
//! - `forms.rs`: posted forms, the webhook/template form ↔ API conversions, field errors.
//! - `pages/`: one file per area (auth, webhooks, deliveries, templates, misc).
//! - `templates/*.html`, `static/`: the pages and the one small vendored script.

mod forms;
mod pages;
mod session;
mod web;

use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The management gRPC API (`host:port` or a URL).
    pub api: String,
    /// Services served elsewhere than `api` (`DeliveryService` → its address): a distributed
    /// deployment without one endpoint that routes by gRPC path.
    pub api_routes: Vec<(String, String)>,
    /// Origins allowed to frame tenant-portal pages (`https://app.example.com`).
    pub frame_origins: Vec<String>,
    /// Mark session cookies `Secure` (the console is reached over TLS).
    pub secure_cookies: bool,
    /// How long a signed-in session lasts.
    pub session_ttl: Duration,
}

impl ConsoleConfig {
    pub fn new(api: impl Into<String>) -> ConsoleConfig {
        ConsoleConfig {
            api: api.into(),
            api_routes: Vec::new(),
            frame_origins: Vec::new(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }

    /// Checks the frame origins: each `scheme://host[:port]`, nothing a CSP could misread.
    pub fn validate(&self) -> Result<(), String> {
        for (i, o) in self.frame_origins.iter().enumerate() {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && (u.path() == "/" || u.path().is_empty())
                    && u.query().is_none()
                    && !o.ends_with('/')
            }) && !o.contains(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == '\'');
            if !ok {
                return Err(format!("frame_origins[{i}]: `{o}` is not an origin like https://app.example.com"));
            }
        }
        if self.session_ttl.is_zero() {
            return Err("session_ttl: must be more than zero".into());
        }
        Ok(())
    }
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    config: ConsoleConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let mut api = hookmesh_client::Client::connect_lazy(&config.api, None)?;
    for (service, addr) in &config.api_routes {
        api = api.with_route(service, addr)?;
    }
    let app = web::router(web::AppState::new(config, api));
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}

/// Binds `addr` and serves; answers the bound address and the server's task.
pub async fn start(
    config: ConsoleConfig,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("console_addr: cannot bind {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(config, listener, shutdown))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_origins_are_checked() {
        let mut c = ConsoleConfig::new("127.0.0.1:7600");
        c.frame_origins = vec!["https://app.example.com".into(), "http://localhost:3000".into()];
        assert!(c.validate().is_ok());
        for bad in ["app.example.com", "https://a.com/path", "https://a.com 'unsafe-inline'", "https://a.com;", "*"] {
            c.frame_origins = vec![bad.into()];
            assert!(c.validate().unwrap_err().starts_with("frame_origins[0]"), "{bad}");
        }
    }
}
