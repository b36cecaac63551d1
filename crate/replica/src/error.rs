//! Errors the HTTP interface answers with.

use std::fmt;
use tabnet_types::UserError;

/// An HTTP error status with a plain-text explanation: what the IC's replica answers for
/// malformed, unauthenticated or misdirected requests (the request never reached execution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// Why a call was not accepted into the ingress pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The request itself is bad (4xx) or the node cannot take it now (5xx).
    Http(HttpError),
    /// The request is well-formed but the system refused it before execution (the canister
    /// does not exist, is stopped, declined in `canister_inspect_message`, is out of cycles):
    /// a "non-replicated rejection" with a reject code and an IC error code.
    Rejected(UserError),
}

impl From<HttpError> for SubmitError {
    fn from(e: HttpError) -> Self {
        SubmitError::Http(e)
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Http(e) => e.fmt(f),
            SubmitError::Rejected(e) => e.fmt(f),
        }
    }
}
