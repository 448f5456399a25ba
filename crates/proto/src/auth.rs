//! Bearer-token authentication of the management and ingest APIs, and the tenant scope every
//! handler applies.
//!
//! Tokens are configured hashed, never in clear: each entry is `sha256:<hex>=operator` or
//! `sha256:<hex>=tenant:<tenant id>` (`hookmesh token new --tenant acme` prints a token and
//! its entry). An operator token sees every tenant; a tenant token sees and changes only its
//! own tenant's objects, and a request for another tenant's object answers not-found exactly
//! as if it did not exist. With no tokens configured the API is open (a warning is logged at
//! start): that is for trying hookmesh on one machine only.
//!
//! # Portal tokens
//! A portal token (`hmp_…`) is a tenant credential the API itself issues
//! (`TenantService.CreatePortalLink`, operators only) for the tenant portal of the web console:
//! `hmp_<base64url(tenant id NUL expiry unix seconds)>.<base64url(HMAC-SHA256)>`. The API
//! accepts it like a tenant token of that tenant until it expires, so a portal session is
//! isolated by the API exactly as a tenant token is, and nothing in the token can widen it
//! (changing the tenant breaks the signature). It is accepted also when no tokens are
//! configured: there it narrows, never widens. The signing key is derived from the master key
//! (`HOOKMESH_MASTER_KEY`), so every service of a deployment accepts the links any of them
//! issued; without a master key each process signs with a random key of its own (links work
//! with `hookmesh standalone` and die with the process).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::{Request, Status};

/// The prefix of a portal token.
pub const PORTAL_PREFIX: &str = "hmp_";
/// The longest a portal link may live.
pub const PORTAL_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The key that signs and checks portal tokens.
#[derive(Clone)]
pub struct PortalKey(Arc<[u8; 32]>);

impl std::fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalKey(..)")
    }
}

impl Default for PortalKey {
    /// A random key of this process.
    fn default() -> Self {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
        PortalKey(Arc::new(k))
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl PortalKey {
    /// The key derived from a deployment secret (the master key's bytes).
    pub fn derive(secret: &[u8]) -> PortalKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"hookmesh portal links v1");
        PortalKey(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..]).expect("HMAC takes any key");
        mac.update(payload);
        mac
    }

    /// A token for `tenant` valid for `ttl` (at most [`PORTAL_MAX_TTL`]); answers it and its
    /// expiry (unix seconds).
    pub fn issue(&self, tenant: &str, ttl: Duration) -> Result<(String, u64), String> {
        if tenant.is_empty() || tenant.len() > 200 || tenant.chars().any(|c| c.is_control()) {
            return Err("tenant_id: must be 1 to 200 characters without control characters".into());
        }
        if ttl.is_zero() || ttl > PORTAL_MAX_TTL {
            return Err(format!("ttl_secs: must be between 1 and {}", PORTAL_MAX_TTL.as_secs()));
        }
        let exp = now_secs() + ttl.as_secs();
        let payload = format!("{tenant}\0{exp}");
        let sig = self.mac(payload.as_bytes()).finalize().into_bytes();
        Ok((format!("{PORTAL_PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(sig)), exp))
    }

    /// The tenant and expiry of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Result<(String, u64), Status> {
        let bad = || Status::unauthenticated("authorization: invalid portal token");
        let rest = token.strip_prefix(PORTAL_PREFIX).ok_or_else(bad)?;
        let (payload, sig) = rest.split_once('.').ok_or_else(bad)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        self.mac(&payload).verify_slice(&sig).map_err(|_| bad())?;
        let text = String::from_utf8(payload).map_err(|_| bad())?;
        let (tenant, exp) = text.split_once('\0').ok_or_else(bad)?;
        let exp: u64 = exp.parse().map_err(|_| bad())?;
        if exp <= now_secs() {
            return Err(Status::unauthenticated("authorization: the portal link has expired"));
        }
        Ok((tenant.to_string(), exp))
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Tenant(String),
}

impl Principal {
    /// The principal of a request (set by the interceptor); operator when auth is off.
    pub fn of<T>(req: &Request<T>) -> Principal {
        req.extensions().get::<Principal>().cloned().unwrap_or(Principal::Operator)
    }

    pub fn can_see(&self, tenant_id: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(t) => t == tenant_id,
        }
    }

    /// The tenant a list must be limited to: a tenant token's own, or what the caller asked.
    pub fn scope(&self, requested: &str) -> Result<Option<String>, Status> {
        match self {
            Principal::Operator => Ok(if requested.is_empty() { None } else { Some(requested.to_string()) }),
            Principal::Tenant(t) if requested.is_empty() || requested == t => Ok(Some(t.clone())),
            // Asking for another tenant's list looks like an empty list would; say so plainly.
            Principal::Tenant(_) => Err(Status::permission_denied("tenant_id: this token belongs to another tenant")),
        }
    }

    /// The tenant a new object belongs to: a tenant token's own (the field may be empty).
    pub fn owner(&self, given: &str) -> Result<String, Status> {
        match self {
            Principal::Operator if given.is_empty() => Err(Status::invalid_argument("tenant_id: is required")),
            Principal::Operator => Ok(given.to_string()),
            Principal::Tenant(t) if given.is_empty() || given == t => Ok(t.clone()),
            Principal::Tenant(_) => Err(Status::permission_denied("tenant_id: this token belongs to another tenant")),
        }
    }
}

/// Hex SHA-256 of a token, as configured.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    by_hash: Arc<HashMap<String, Principal>>,
    portal: PortalKey,
}

impl Authenticator {
    /// Parses entries `sha256:<hex>=operator` / `sha256:<hex>=tenant:<id>`.
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Result<Authenticator, String> {
        let mut by_hash = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let e = e.as_ref().trim();
            let (hash, who) = e
                .split_once('=')
                .ok_or_else(|| format!("tokens[{i}]: expected `sha256:<hex>=operator|tenant:<id>`"))?;
            let hex = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| format!("tokens[{i}]: the hash must start with `sha256:`"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("tokens[{i}]: `{hash}` is not a SHA-256 hex digest (use `hookmesh token hash`)"));
            }
            let principal = match who {
                "operator" => Principal::Operator,
                t => match t.strip_prefix("tenant:") {
                    Some(id) if !id.is_empty() => Principal::Tenant(id.to_string()),
                    _ => return Err(format!("tokens[{i}]: `{who}` is not `operator` or `tenant:<id>`")),
                },
            };
            by_hash.insert(hex.to_ascii_lowercase(), principal);
        }
        Ok(Authenticator { by_hash: Arc::new(by_hash), portal: PortalKey::default() })
    }

    /// Signs and checks portal tokens with `key` (see the module docs).
    pub fn with_portal_key(mut self, key: PortalKey) -> Authenticator {
        self.portal = key;
        self
    }

    /// The key of portal tokens.
    pub fn portal_key(&self) -> &PortalKey {
        &self.portal
    }

    pub fn is_enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Resolves `authorization: Bearer <token>`.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Status> {
        let bearer =
            header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).map(str::trim);
        if let Some(portal) = bearer.filter(|t| t.starts_with(PORTAL_PREFIX)) {
            return self.portal.verify(portal).map(|(tenant, _)| Principal::Tenant(tenant));
        }
        if !self.is_enabled() {
            return Ok(Principal::Operator);
        }
        let token =
            header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).ok_or_else(|| {
                Status::unauthenticated("authorization: a bearer token is required (ctl --token or HOOKMESH_TOKEN)")
            })?;
        self.by_hash
            .get(&hash_token(token.trim()))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("authorization: unknown token"))
    }

    /// The tonic interceptor: puts the [`Principal`] into the request's extensions.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
        let auth = self.clone();
        move |mut req: Request<()>| {
            let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
            let principal = auth.authenticate(header.as_deref())?;
            req.extensions_mut().insert(principal);
            // For the one handler that issues portal tokens.
            req.extensions_mut().insert(auth.portal.clone());
            Ok(req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resolve_to_principals() {
        let op = format!("sha256:{}=operator", hash_token("op-secret"));
        let acme = format!("sha256:{}=tenant:acme", hash_token("acme-secret"));
        let auth = Authenticator::from_entries(&[op, acme]).unwrap();
        assert_eq!(auth.authenticate(Some("Bearer op-secret")).unwrap(), Principal::Operator);
        assert_eq!(auth.authenticate(Some("Bearer acme-secret")).unwrap(), Principal::Tenant("acme".into()));
        assert_eq!(auth.authenticate(Some("Bearer nope")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(auth.authenticate(None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(Authenticator::from_entries(&["plain=operator"]).unwrap_err().starts_with("tokens[0]"));
        assert_eq!(Authenticator::default().authenticate(None).unwrap(), Principal::Operator);
    }

    #[test]
    fn portal_tokens_are_tenant_credentials_that_cannot_be_widened() {
        let key = PortalKey::derive(b"master");
        let auth = Authenticator::from_entries(&[format!("sha256:{}=operator", hash_token("op"))])
            .unwrap()
            .with_portal_key(key.clone());
        let (token, _) = key.issue("acme", Duration::from_secs(60)).unwrap();
        assert_eq!(auth.authenticate(Some(&format!("Bearer {token}"))).unwrap(), Principal::Tenant("acme".into()));
        // The same key derived elsewhere accepts it; another key does not.
        assert!(PortalKey::derive(b"master").verify(&token).is_ok());
        assert!(PortalKey::derive(b"other").verify(&token).is_err());
        // A payload rewritten to another tenant breaks the signature.
        let sig = token.rsplit_once('.').unwrap().1;
        let forged = format!("{PORTAL_PREFIX}{}.{sig}", URL_SAFE_NO_PAD.encode(format!("globex\0{}", now_secs() + 60)));
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {forged}"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        // Open mode: a portal token still narrows to its tenant.
        let open = Authenticator::default().with_portal_key(key.clone());
        assert_eq!(open.authenticate(Some(&format!("Bearer {token}"))).unwrap(), Principal::Tenant("acme".into()));
        assert!(key.issue("acme", Duration::ZERO).is_err());
        assert!(key.issue("", Duration::from_secs(1)).is_err());
        assert!(key.issue("acme", PORTAL_MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn expired_portal_tokens_are_refused() {
        let key = PortalKey::default();
        let payload = format!("acme\0{}", now_secs() - 1);
        let sig = key.mac(payload.as_bytes()).finalize().into_bytes();
        let token = format!("{PORTAL_PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(sig));
        assert!(key.verify(&token).unwrap_err().message().contains("expired"));
    }

    #[test]
    fn tenant_scope() {
        let t = Principal::Tenant("acme".into());
        assert_eq!(t.scope("").unwrap(), Some("acme".into()));
        assert!(t.scope("other").is_err());
        assert_eq!(t.owner("").unwrap(), "acme");
        assert!(t.owner("other").is_err());
        assert!(!t.can_see("other") && t.can_see("acme"));
        assert_eq!(Principal::Operator.scope("").unwrap(), None);
    }
}
