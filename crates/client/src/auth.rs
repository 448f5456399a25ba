//! The bearer token every management call carries (`authorization: Bearer <token>`); the
//! server resolves it to an operator or a tenant.

use crate::Error;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// A tonic interceptor that adds `authorization: Bearer <token>` to every call, or nothing when
/// there is no token.
#[derive(Clone, Debug, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The interceptor for `token`; a missing or blank token sends no header. Fails when the
    /// token cannot be written into a header.
    pub fn new(token: Option<&str>) -> Result<BearerToken, Error> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => MetadataValue::try_from(format!("Bearer {token}"))
                .map(|v| BearerToken(Some(v)))
                .map_err(|_| Error::InvalidToken),
            None => Ok(BearerToken(None)),
        }
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn header(mut auth: BearerToken) -> Option<String> {
        let req = auth.call(Request::new(())).unwrap();
        req.metadata().get("authorization").map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn the_token_goes_into_the_authorization_header() {
        assert_eq!(header(BearerToken::new(Some(" hmt_abc ")).unwrap()).as_deref(), Some("Bearer hmt_abc"));
        assert_eq!(header(BearerToken::new(Some("  ")).unwrap()), None);
        assert_eq!(header(BearerToken::new(None).unwrap()), None);
        assert!(matches!(BearerToken::new(Some("a\nb")), Err(Error::InvalidToken)));
    }
}
