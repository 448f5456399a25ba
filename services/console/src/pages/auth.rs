//! Sign-in with an API token, sign-out, and the tenant portal's entry (`/portal?token=hmp_…`).

use crate::forms::FormData;
use crate::session::{self, Who};
use crate::web::{render, AppState, Page, PageResult, WebError};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::context;

fn with_cookie(mut resp: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn signin_view(state: &AppState, headers: &HeaderMap, error: Option<String>, status: StatusCode) -> Response {
    let open = state.api_is_open().await;
    // One nonce per browser: a page's sub-requests that land here (a favicon) must not
    // replace the one the form on screen carries.
    let nonce = session::cookie(headers, session::SIGNIN_COOKIE)
        .filter(|c| c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or_else(session::random_id);
    let secure = session::secure(headers, state.config.secure_cookies);
    let mut resp = render(
        "signin.html",
        context! { open_mode => open, error => error, signin_csrf => &nonce, me => context! { signed_in => false } },
    );
    *resp.status_mut() = status;
    with_cookie(
        resp,
        session::set_cookie(session::SIGNIN_COOKIE, &nonce, Some(std::time::Duration::from_secs(3600)), secure, false),
    )
}

pub async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    signin_view(&state, &headers, None, StatusCode::OK).await
}

/// Checks the token with the API and starts a session acting as what the API says it is.
pub async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Extension(form): Extension<FormData>,
) -> Response {
    // Double-submit: the hidden field must equal the cookie set with the form, which another
    // site can neither read nor set.
    let cookie = session::cookie(&headers, session::SIGNIN_COOKIE);
    let posted = form.text("signin_csrf");
    if cookie.is_none_or(|c| posted.is_empty() || !session::same(&c, &posted)) {
        return WebError::new(
            StatusCode::FORBIDDEN,
            "csrf: the sign-in form's CSRF token is missing or wrong; reload the page",
        )
        .into_response();
    }
    let token = form.text("token");
    if token.is_empty() {
        return signin_view(
            &state,
            &headers,
            Some("token: paste an operator or tenant API token".into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    if token.starts_with(hookmesh_proto::auth::PORTAL_PREFIX) {
        return signin_view(
            &state,
            &headers,
            Some("token: a portal token opens the console through its link (/portal?token=…)".into()),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match state.who(Some(&token)).await {
        Ok(who) => {
            // A new session id at every sign-in; a session this browser had ends.
            if let Some(old) = state.sessions.get(&headers) {
                state.sessions.remove(&old.id);
            }
            let s = state.sessions.create(Some(token), who, false, state.config.session_ttl);
            let secure = session::secure(&headers, state.config.secure_cookies);
            let resp = with_cookie(
                Redirect::to("/webhooks").into_response(),
                session::set_cookie(session::COOKIE, &s.id, Some(state.config.session_ttl), secure, false),
            );
            with_cookie(resp, session::set_cookie(session::SIGNIN_COOKIE, "", None, secure, false))
        }
        Err(e) => {
            let status = if e.code() == Some(tonic::Code::Unauthenticated) {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_GATEWAY
            };
            signin_view(&state, &headers, Some(format!("token: {e}")), status).await
        }
    }
}

pub async fn signout(page: Page, headers: HeaderMap) -> Response {
    page.state.sessions.remove(&page.session.id);
    let secure = session::secure(&headers, page.state.config.secure_cookies);
    let to = if page.session.portal { "/signin?signed_out=portal" } else { "/signin" };
    with_cookie(Redirect::to(to).into_response(), session::set_cookie(session::COOKIE, "", None, secure, false))
}

/// `/portal?token=hmp_…`: a session scoped to the token's tenant, then the webhooks page (the
/// token leaves the address bar).
pub async fn portal(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> PageResult {
    let q = super::view::query(&uri);
    let token = q.text("token");
    if !token.starts_with(hookmesh_proto::auth::PORTAL_PREFIX) {
        return Err(WebError::new(StatusCode::BAD_REQUEST, "token: a portal link carries a portal token (hmp_…)"));
    }
    let tenant = match state.who(Some(&token)).await {
        Ok(Who::Tenant(t)) => t,
        Ok(Who::Operator) => return Err(WebError::new(StatusCode::FORBIDDEN, "token: not a tenant portal token")),
        Err(e) => return Err(WebError::new(StatusCode::UNAUTHORIZED, format!("this portal link cannot be used: {e}"))),
    };
    if let Some(old) = state.sessions.get(&headers) {
        state.sessions.remove(&old.id);
    }
    // The session ends when the link does (the API would refuse its calls from then on).
    let ttl = portal_expiry(&token)
        .and_then(|exp| {
            exp.checked_sub(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
        })
        .map(std::time::Duration::from_secs)
        .map_or(state.config.session_ttl, |left| left.min(state.config.session_ttl));
    let s = state.sessions.create(Some(token), Who::Tenant(tenant), true, ttl);
    let secure = session::secure(&headers, state.config.secure_cookies);
    let framed = !state.config.frame_origins.is_empty();
    Ok(with_cookie(
        Redirect::to("/webhooks").into_response(),
        session::set_cookie(session::COOKIE, &s.id, Some(state.config.session_ttl), secure, framed),
    ))
}

/// The expiry (unix seconds) written in a portal token. Read without checking the signature,
/// only to end the session no later than the link: the API checks the token on every call.
fn portal_expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.strip_prefix(hookmesh_proto::auth::PORTAL_PREFIX)?.split_once('.')?.0;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    String::from_utf8(bytes).ok()?.split_once('\0')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_portal_session_ends_with_its_link() {
        let key = hookmesh_proto::auth::PortalKey::derive(b"k");
        let (token, exp) = key.issue("acme", std::time::Duration::from_secs(600)).unwrap();
        assert_eq!(super::portal_expiry(&token), Some(exp));
        assert_eq!(super::portal_expiry("hmp_garbage"), None);
    }
}
