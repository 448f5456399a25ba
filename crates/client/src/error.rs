//! What goes wrong talking to hookmesh, said on one line: a refused call as `<code>: <message>`
//! (the server's message names the field), a call that never reached the server as
//! `cannot reach hookmesh at <addr>: <cause>`.

use crate::Client;
use tonic::{Code, Status};

/// A failed connection or call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The address is not a URL tonic can connect to.
    #[error("--addr `{addr}` is not a valid address: {reason}")]
    InvalidAddress { addr: String, reason: String },
    /// The token holds characters a header cannot carry.
    #[error("--token contains characters that cannot be sent in a header")]
    InvalidToken,
    /// Nothing answered at the address, or the connection broke during a call.
    #[error("cannot reach hookmesh at {addr}: {cause}")]
    Unreachable { addr: String, cause: String },
    /// The server answered the call with an error.
    #[error("{}", status_text(*code, message))]
    Status { addr: String, code: Code, message: String },
}

impl Error {
    /// The error of a call to `addr` that answered `s`: a transport failure during the call
    /// reads as an unreachable server.
    pub fn from_status(addr: &str, s: &Status) -> Error {
        if s.code() == Code::Unavailable && std::error::Error::source(s).is_some() {
            return Error::Unreachable { addr: addr.to_string(), cause: s.message().to_string() };
        }
        Error::Status { addr: addr.to_string(), code: s.code(), message: s.message().to_string() }
    }

    /// The gRPC code, for a caller that decides by it (an unreachable server is `Unavailable`);
    /// `None` for a bad address or token.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::Unreachable { .. } => Some(Code::Unavailable),
            Error::InvalidAddress { .. } | Error::InvalidToken => None,
        }
    }
}

fn status_text(code: Code, message: &str) -> String {
    if message.is_empty() {
        code_name(code).to_string()
    } else {
        format!("{}: {message}", code_name(code))
    }
}

/// The gRPC code as words: `not found`, `invalid argument`, ….
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Turns a call's answer into its message or an [`Error`] naming the client's address.
pub trait Answer<T> {
    fn answer(self, client: &Client) -> Result<T, Error>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, Status> {
    fn answer(self, client: &Client) -> Result<T, Error> {
        self.map(tonic::Response::into_inner).map_err(|s| Error::from_status(client.addr(), &s))
    }
}

/// An error and its causes on one line, `outer: cause: root cause`, each said once: a cause
/// whose text an earlier part already contains is left out (hyper's "tcp connect error" is
/// its own source's text too), and so is tonic's generic "transport error".
pub fn one_line<'a>(chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for err in chain {
        let text = err.to_string();
        if !text.is_empty() && text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `e` and its sources on one line ([`one_line`]).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    one_line(std::iter::successors(Some(e), |e| e.source()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_read_as_one_line() {
        let e =
            Error::from_status("http://x", &Status::invalid_argument("request.url: scheme `ftp` is not http or https"));
        assert_eq!(e.to_string(), "invalid argument: request.url: scheme `ftp` is not http or https");
        assert_eq!(e.code(), Some(Code::InvalidArgument));
        assert_eq!(
            Error::from_status("http://x", &Status::not_found("webhook wh_1")).to_string(),
            "not found: webhook wh_1"
        );
        assert_eq!(Error::from_status("http://x", &Status::new(Code::Aborted, "")).to_string(), "aborted");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Chained {
        text: &'static str,
        source: Option<Box<Chained>>,
    }

    #[test]
    fn causes_are_said_once() {
        let root = Chained { text: "Connection refused (os error 111)", source: None };
        let tcp =
            Chained { text: "tcp connect error: Connection refused (os error 111)", source: Some(Box::new(root)) };
        let transport = Chained { text: "transport error", source: Some(Box::new(tcp)) };
        let top = Chained { text: "cannot reach hookmesh", source: Some(Box::new(transport)) };
        assert_eq!(error_chain(&top), "cannot reach hookmesh: tcp connect error: Connection refused (os error 111)");
    }
}
