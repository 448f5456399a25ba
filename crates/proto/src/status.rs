//! How every service turns a backend failure into a gRPC status, so the code tells a client
//! whether to retry: `UNAVAILABLE` for a failure worth retrying with backoff (the broker or the
//! store was unreachable or busy), `INTERNAL` for one that retrying will not cure (unreadable
//! stored data, a missing topic). Bad input (`INVALID_ARGUMENT`), missing objects
//! (`NOT_FOUND`) and version conflicts (`ABORTED`: read again, then retry) are answered where
//! they are recognised.

use tonic::Status;

/// The status of a backend failure described by `error`.
pub fn backend(error: &dyn std::fmt::Display, retriable: bool) -> Status {
    if retriable {
        Status::unavailable(error.to_string())
    } else {
        Status::internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_says_whether_to_retry() {
        assert_eq!(backend(&"redis: broken pipe", true).code(), tonic::Code::Unavailable);
        let s = backend(&"stored value is unreadable", false);
        assert_eq!((s.code(), s.message()), (tonic::Code::Internal, "stored value is unreadable"));
    }
}
