//! The API's errors and the one place they become HTTP statuses.

use crate::control::ControlError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_store::StoreError;
use serde::Serialize;

/// Everything a handler can fail with. [`IntoResponse`] is the only mapping to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session or token.
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong user name or password.
    #[error("wrong user name or password")]
    BadLogin,
    /// Authenticated, but not allowed (read-only token writing, missing CSRF token).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Too many attempts; retry after this many seconds.
    #[error("too many attempts; retry in {0} s")]
    RateLimited(u64),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is over the size limit.
    #[error("request body too large")]
    TooLarge,
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// The daemon is not reachable.
    #[error("daemon unavailable: {0}")]
    Unavailable(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Anything else (a panicked worker…).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Unavailable(m) => ApiError::Unavailable(m),
            ControlError::Refused(m) => ApiError::Refused(m),
        }
    }
}

/// Body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Short machine-readable code (`unauthenticated`, `forbidden`, `bad_request`, …).
    pub error: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// Status and code, in one table.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::BadLogin => (StatusCode::UNAUTHORIZED, "bad_login"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "daemon_unavailable"),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "api request failed");
        }
        let mut resp = (
            status,
            axum::Json(ErrorBody {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response();
        if let ApiError::RateLimited(secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}
