//! The crate's error type.

/// What can go wrong in an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The endpoint could not be reached (connection refused, timeout, TLS).
    #[error("{operation} at {endpoint}: cannot reach the endpoint: {detail}")]
    Transport {
        /// Endpoint URL.
        endpoint: String,
        /// API operation.
        operation: String,
        /// What the transport said.
        detail: String,
    },
    /// The service answered with an error.
    #[error("{operation} at {endpoint}: {code}: {message} (HTTP {status})")]
    Api {
        /// Endpoint URL.
        endpoint: String,
        /// API operation.
        operation: String,
        /// HTTP status.
        status: u16,
        /// AWS error code (`AccessDenied`, `Throttling`…), or `HTTP<status>` when none.
        code: String,
        /// The service's message.
        message: String,
    },
    /// The answer could not be read.
    #[error("{operation} at {endpoint}: malformed answer: {detail}")]
    Malformed {
        /// Endpoint URL.
        endpoint: String,
        /// API operation.
        operation: String,
        /// Why.
        detail: String,
    },
    /// Credentials are missing or unreadable.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The `[audit]` configuration is wrong.
    #[error("audit configuration: {0}")]
    Config(String),
    /// The state file could not be read or written.
    #[error("state {path}: {detail}")]
    State {
        /// File.
        path: String,
        /// Why.
        detail: String,
    },
    /// An output (bulk endpoint…) failed.
    #[error("output {target}: {detail}")]
    Output {
        /// Output name / URL.
        target: String,
        /// Why.
        detail: String,
    },
}

impl AuditError {
    /// The AWS error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AuditError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}
