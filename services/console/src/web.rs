//! The router, the session/CSRF gate every request passes, security headers, and rendering.

use crate::forms::FormData;
use crate::pages;
use crate::session::{self, Session, Sessions, Who};
use crate::ConsoleConfig;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hookmesh_client::Client;
use hookmesh_proto::v1;
use minijinja::{context, Environment, Value};
use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::Code;

/// The largest request the console reads.
pub const BODY_LIMIT: usize = 256 * 1024;
/// How long the answer "is the API open?" is reused.
const OPEN_PROBE_TTL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ConsoleConfig>,
    /// The shared connection; each request sends its session's token over it.
    pub api: Client,
    pub sessions: Sessions,
    open: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl AppState {
    pub fn new(config: ConsoleConfig, api: Client) -> AppState {
        AppState { config: Arc::new(config), api, sessions: Sessions::default(), open: Default::default() }
    }

    /// Whether the API runs without tokens (open local mode): a call without a token is
    /// answered as an operator's.
    pub async fn api_is_open(&self) -> bool {
        if let Some((at, open)) = *self.open.lock() {
            if at.elapsed() < OPEN_PROBE_TTL {
                return open;
            }
        }
        let open = matches!(self.who(None).await, Ok(Who::Operator));
        *self.open.lock() = Some((Instant::now(), open));
        open
    }

    /// Who the API says `token` is.
    pub async fn who(&self, token: Option<&str>) -> Result<Who, hookmesh_client::Error> {
        let client = self.api.with_token(token)?;
        // An operator must name a tenant here and is refused for not naming one; a tenant
        // (token or portal) gets its own settings.
        match client.tenants().get_tenant_settings(v1::GetTenantSettingsRequest { tenant_id: String::new() }).await {
            Ok(r) => Ok(Who::Tenant(r.into_inner().tenant_id)),
            Err(s) if s.code() == Code::InvalidArgument => Ok(Who::Operator),
            Err(s) => Err(hookmesh_client::Error::from_status(client.addr(), &s)),
        }
    }
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Auto-escaping by file name: every template is `.html`, so HTML escaping is always on.
        for (name, src) in TEMPLATES {
            env.add_template(name, src).expect("console templates parse");
        }
        env
    })
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("error_page.html", include_str!("../templates/error_page.html")),
    ("signin.html", include_str!("../templates/signin.html")),
    ("webhooks.html", include_str!("../templates/webhooks.html")),
    ("webhook.html", include_str!("../templates/webhook.html")),
    ("webhook_form.html", include_str!("../templates/webhook_form.html")),
    ("confirm.html", include_str!("../templates/confirm.html")),
    ("secret.html", include_str!("../templates/secret.html")),
    ("test_result.html", include_str!("../templates/test_result.html")),
    ("deliveries.html", include_str!("../templates/deliveries.html")),
    ("delivery_rows.html", include_str!("../templates/delivery_rows.html")),
    ("delivery.html", include_str!("../templates/delivery.html")),
    ("templates.html", include_str!("../templates/templates.html")),
    ("template_form.html", include_str!("../templates/template_form.html")),
    ("tokens.html", include_str!("../templates/tokens.html")),
    ("dead_letters.html", include_str!("../templates/dead_letters.html")),
    ("portal_link.html", include_str!("../templates/portal_link.html")),
    ("settings.html", include_str!("../templates/settings.html")),
];

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/webhooks") }))
        .route("/signin", get(pages::auth::signin_page).post(pages::auth::signin))
        .route("/signout", post(pages::auth::signout))
        .route("/portal", get(pages::auth::portal))
        .route("/webhooks", get(pages::webhooks::list))
        .route("/webhooks/new", get(pages::webhooks::new_form).post(pages::webhooks::new_post))
        .route("/webhooks/{id}", get(pages::webhooks::show))
        .route("/webhooks/{id}/edit", get(pages::webhooks::edit_form).post(pages::webhooks::edit_post))
        .route("/webhooks/{id}/enable", post(pages::webhooks::enable))
        .route("/webhooks/{id}/disable", post(pages::webhooks::disable))
        .route("/webhooks/{id}/delete", get(pages::webhooks::delete_confirm).post(pages::webhooks::delete))
        .route("/webhooks/{id}/rotate", post(pages::webhooks::rotate))
        .route("/webhooks/{id}/test", post(pages::webhooks::test_send))
        .route("/webhooks/{id}/recover", post(pages::deliveries::recover))
        .route("/deliveries", get(pages::deliveries::list))
        .route("/deliveries/{id}", get(pages::deliveries::show))
        .route("/deliveries/{id}/resend", post(pages::deliveries::resend))
        .route("/templates", get(pages::templates::list))
        .route("/templates/new", get(pages::templates::new_form).post(pages::templates::new_post))
        .route("/templates/{id}/edit", get(pages::templates::edit_form).post(pages::templates::edit_post))
        .route("/tokens", get(pages::misc::tokens))
        .route("/settings", get(pages::settings::show).post(pages::settings::save))
        .route("/dead-letters", get(pages::misc::dead_letters))
        .route("/portal-links", get(pages::misc::portal_link_form).post(pages::misc::portal_link))
        .route("/static/console.js", get(pages::misc::script))
        .route("/static/console.css", get(pages::misc::style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        // Liveness and readiness of a console Deployment: serving pages needs nothing else
        // (an unreachable API is said on the pages themselves).
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { WebError::new(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Paths open without a session.
fn is_public(path: &str) -> bool {
    path == "/signin"
        || path == "/portal"
        || path == "/favicon.ico"
        || path == "/healthz"
        || path.starts_with("/static/")
}

/// Every request: finds the session (or makes one in open local mode), sends everyone else to
/// sign-in, checks the CSRF token of every POST, and sets the security headers.
async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut session = state.sessions.get(req.headers());
    // An open-mode session ends when the API stops being open (tokens were configured).
    if session.as_ref().is_some_and(|s| s.token.is_none()) && !state.api_is_open().await {
        if let Some(s) = session.take() {
            state.sessions.remove(&s.id);
        }
    }
    let mut new_cookie = None;
    let secure = session::secure(req.headers(), state.config.secure_cookies);
    if session.is_none() && !is_public(&path) && state.api_is_open().await {
        let s = state.sessions.create(None, Who::Operator, false, state.config.session_ttl);
        new_cookie = Some(session::set_cookie(session::COOKIE, &s.id, Some(state.config.session_ttl), secure, false));
        session = Some(s);
    }
    let portal = session.as_ref().is_some_and(|s| s.portal);
    let mut resp = match (&session, is_public(&path)) {
        (None, false) if req.method() == Method::GET => Redirect::to("/signin").into_response(),
        (None, false) => WebError::new(StatusCode::FORBIDDEN, "sign in first").into_response(),
        _ => {
            let mut req = req;
            if req.method() == Method::POST && path != "/signin" {
                // Only /signin takes a POST without a session.
                let Some(s) = session.clone() else {
                    return headers(
                        WebError::new(StatusCode::FORBIDDEN, "sign in first").into_response(),
                        portal,
                        &state.config,
                    );
                };
                match read_form(req).await {
                    Ok((parts, form)) => {
                        if !form.get("csrf").is_some_and(|t| session::same(t, &s.csrf)) {
                            return headers(
                                WebError::new(
                                    StatusCode::FORBIDDEN,
                                    "csrf: the form's CSRF token is missing or wrong; reload the page and try again",
                                )
                                .into_response(),
                                portal,
                                &state.config,
                            );
                        }
                        req = Request::from_parts(parts, Body::empty());
                        req.extensions_mut().insert(form);
                    }
                    Err(e) => return headers(e.into_response(), portal, &state.config),
                }
            } else if req.method() == Method::POST {
                match read_form(req).await {
                    Ok((parts, form)) => {
                        req = Request::from_parts(parts, Body::empty());
                        req.extensions_mut().insert(form);
                    }
                    Err(e) => return headers(e.into_response(), portal, &state.config),
                }
            }
            if let Some(s) = session.clone() {
                req.extensions_mut().insert(s);
            }
            next.run(req).await
        }
    };
    // An error page of a session gets the session's layout (navigation, open-mode banner).
    if let (Some(info), Some(s)) = (resp.extensions().get::<ErrorInfo>().cloned(), &session) {
        let open = s.token.is_none() || state.api_is_open().await;
        let mut page = render(
            "error_page.html",
            context! {
                status => info.status.as_u16(), reason => info.status.canonical_reason(), message => info.message,
                me => context! { operator => s.is_operator(), tenant => s.tenant(), portal => s.portal, signed_in => s.token.is_some() },
                open_mode => open, csrf => &s.csrf,
            },
        );
        *page.status_mut() = info.status;
        resp = page;
    }
    if let Some(c) = new_cookie {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    headers(resp, portal, &state.config)
}

async fn read_form(req: Request) -> Result<(Parts, FormData), WebError> {
    let (parts, body) = req.into_parts();
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(WebError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the console takes form posts only"));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| WebError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than 256 KiB"))?;
    Ok((parts, FormData::parse(&bytes)))
}

fn headers(mut resp: Response, portal: bool, config: &ConsoleConfig) -> Response {
    let frame =
        if portal && !config.frame_origins.is_empty() { config.frame_origins.join(" ") } else { "'none'".to_string() };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors {frame}"
    );
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if !portal || config.frame_origins.is_empty() {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}

/// A signed-in request: the session and an API client that sends its token.
pub struct Page {
    pub state: AppState,
    pub session: Session,
    pub api: Client,
    pub open: bool,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session =
            parts.extensions.get::<Session>().cloned().ok_or_else(|| Redirect::to("/signin").into_response())?;
        let api = state
            .api
            .with_token(session.token.as_deref())
            .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
        let open = session.token.is_none() || state.api_is_open().await;
        Ok(Page { state: state.clone(), session, api, open })
    }
}

impl Page {
    /// Renders `name` with the page's common context (who, CSRF token, flash, banners).
    pub fn render(&self, name: &str, extra: Value) -> Response {
        let flash = self.state.sessions.take_flash(&self.session.id);
        let ctx = context! {
            me => context! {
                operator => self.session.is_operator(),
                tenant => self.session.tenant(),
                portal => self.session.portal,
                signed_in => self.session.token.is_some(),
            },
            open_mode => self.open,
            csrf => &self.session.csrf,
            flash => flash.map(|(k, t)| context! { kind => k, text => t }),
            ..extra
        };
        render(name, ctx)
    }

    /// Redirects to `to` with a message for the next page.
    pub fn redirect_with(&self, to: &str, kind: &str, text: impl Into<String>) -> Response {
        self.state.sessions.flash(&self.session.id, kind, text);
        Redirect::to(to).into_response()
    }
}

pub fn render(name: &str, ctx: Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// A page that failed: its status and a message for people.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError { status, message: message.into() }
    }
}

impl From<hookmesh_client::Error> for WebError {
    fn from(e: hookmesh_client::Error) -> WebError {
        let status = match e.code() {
            Some(Code::NotFound) => StatusCode::NOT_FOUND,
            Some(Code::PermissionDenied) => StatusCode::FORBIDDEN,
            Some(Code::Unauthenticated) => StatusCode::UNAUTHORIZED,
            Some(Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted) => {
                StatusCode::BAD_REQUEST
            }
            Some(Code::Unavailable) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        WebError::new(status, e.to_string())
    }
}

/// What an error page said, for the gate to render it again inside the signed-in layout.
#[derive(Debug, Clone)]
struct ErrorInfo {
    status: StatusCode,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut resp = render(
            "error.html",
            context! { status => self.status.as_u16(), reason => self.status.canonical_reason(), message => &self.message },
        );
        *resp.status_mut() = self.status;
        resp.extensions_mut().insert(ErrorInfo { status: self.status, message: self.message });
        resp
    }
}

/// The result of a page handler.
pub type PageResult = Result<Response, WebError>;

/// Turns a gRPC answer into its message or a [`WebError`].
pub trait Call<T> {
    fn page(self, api: &Client) -> Result<T, WebError>;
}

impl<T> Call<T> for Result<tonic::Response<T>, tonic::Status> {
    fn page(self, api: &Client) -> Result<T, WebError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| WebError::from(hookmesh_client::Error::from_status(api.addr(), &s)))
    }
}
