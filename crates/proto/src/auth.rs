//! Bearer-token authentication of the management and ingest APIs, and the tenant scope every
//! handler applies.
//!
//! Tokens are configured hashed, never in clear: each entry is `sha256:<hex>=operator` or
//! `sha256:<hex>=tenant:<tenant id>` (`hookmesh token new --tenant acme` prints a token and
//! its entry). An operator token sees every tenant; a tenant token sees and changes only its
//! own tenant's objects, and a request for another tenant's object answers not-found exactly
//! as if it did not exist. With no tokens configured the API is open (a warning is logged at
//! start): that is for trying hookmesh on one machine only.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Status};

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
        Ok(Authenticator { by_hash: Arc::new(by_hash) })
    }

    pub fn is_enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Resolves `authorization: Bearer <token>`.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Status> {
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
