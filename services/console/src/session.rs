//! Sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie, everything else (the API
//! token, who it is, the CSRF token, a flash message) in memory here. Expired sessions are
//! dropped as new ones are made; the map is bounded so a flood of sign-ins cannot grow it
//! without end (the oldest session goes first).

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "hookmesh_session";
/// The double-submit cookie of the sign-in form.
pub const SIGNIN_COOKIE: &str = "hookmesh_signin";
const MAX_SESSIONS: usize = 10_000;

/// Who a session acts as (what the API said its token is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Operator,
    Tenant(String),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// The bearer token of every API call; `None` in open local mode.
    pub token: Option<String>,
    pub who: Who,
    /// Started from a portal link: scoped to one tenant, may be framed.
    pub portal: bool,
    pub csrf: String,
    pub expires: Instant,
    pub created: Instant,
    pub flash: Option<(String, String)>,
}

impl Session {
    pub fn is_operator(&self) -> bool {
        self.who == Who::Operator
    }

    pub fn tenant(&self) -> Option<&str> {
        match &self.who {
            Who::Tenant(t) => Some(t),
            Who::Operator => None,
        }
    }
}

/// A random URL-safe string of 32 bytes.
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Equal, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    pub fn create(&self, token: Option<String>, who: Who, portal: bool, ttl: Duration) -> Session {
        let now = Instant::now();
        let s = Session {
            id: random_id(),
            token,
            who,
            portal,
            csrf: random_id(),
            expires: now + ttl,
            created: now,
            flash: None,
        };
        let mut map = self.map.lock();
        map.retain(|_, v| v.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.values().min_by_key(|v| v.created).map(|v| v.id.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(s.id.clone(), s.clone());
        s
    }

    /// The live session of a request's cookie.
    pub fn get(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.map.lock();
        match map.get(&id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().remove(id);
    }

    /// Leaves a message for the next page of the session.
    pub fn flash(&self, id: &str, kind: &str, text: impl Into<String>) {
        if let Some(s) = self.map.lock().get_mut(id) {
            s.flash = Some((kind.to_string(), text.into()));
        }
    }

    /// Takes the message left for this page.
    pub fn take_flash(&self, id: &str) -> Option<(String, String)> {
        self.map.lock().get_mut(id).and_then(|s| s.flash.take())
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether this request reached the console over TLS (directly configured, or through a proxy
/// that says so).
pub fn secure(headers: &HeaderMap, configured: bool) -> bool {
    configured
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value. `same_site_none` (portal sessions framed by another site) only
/// applies over TLS, and makes the cookie `Partitioned` (kept per embedding site); otherwise
/// the cookie is `SameSite=Strict`.
pub fn set_cookie(name: &str, value: &str, max_age: Option<Duration>, secure: bool, same_site_none: bool) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly");
    if same_site_none && secure {
        // Partitioned (CHIPS): a browser that blocks third-party cookies still keeps this one
        // for the portal framed by that one site.
        c.push_str("; SameSite=None; Partitioned");
    } else {
        c.push_str("; SameSite=Strict");
    }
    if secure {
        c.push_str("; Secure");
    }
    match max_age {
        Some(d) => c.push_str(&format!("; Max-Age={}", d.as_secs())),
        None => c.push_str("; Max-Age=0"),
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie(COOKIE, "abc", Some(Duration::from_secs(60)), false, true);
        assert_eq!(c, "hookmesh_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
        let c = set_cookie(COOKIE, "abc", Some(Duration::from_secs(60)), true, true);
        assert!(c.contains("SameSite=None; Partitioned; Secure"), "{c}");
        let c = set_cookie(COOKIE, "", None, true, false);
        assert!(c.ends_with("SameSite=Strict; Secure; Max-Age=0"), "{c}");
    }

    #[test]
    fn sessions_expire_and_compare_in_constant_time() {
        let s = Sessions::default();
        let live = s.create(Some("t".into()), Who::Operator, false, Duration::from_secs(60));
        let dead = s.create(None, Who::Operator, false, Duration::ZERO);
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("x=1; {COOKIE}={}", live.id).parse().unwrap());
        assert_eq!(s.get(&h).unwrap().token.as_deref(), Some("t"));
        h.insert("cookie", format!("{COOKIE}={}", dead.id).parse().unwrap());
        assert!(s.get(&h).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert_ne!(live.csrf, live.id);
    }
}
