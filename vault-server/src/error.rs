//! The one error shape of the API: `{"error": {"code", "message"}}` with the right status,
//! and `audit_index` beside `error` when a refused attempt was logged.
//! 5xx bodies are generic; their details go to the server log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// A stable, machine-readable code.
    pub(crate) code: &'static str,
    /// A message for people: what is wrong and what to do.
    pub(crate) message: String,
    /// The audit entry that records a refused attempt, when one was written.
    pub(crate) audit_index: Option<u64>,
    /// Seconds to wait before retrying (`Retry-After`), for a 429 answer.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            audit_index: None,
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` header of `seconds`.
    pub(crate) fn with_retry_after(self, seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..self
        }
    }

    /// 400: the request is malformed.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no or invalid credential.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: refused by policy.
    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 with a generic body; `detail` goes to the log only.
    pub(crate) fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the vault could not complete the request; nothing was released; try again later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(index) = self.audit_index {
            body["audit_index"] = index.into();
        }
        let mut res = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        res
    }
}

/// The one table of offline (open/unseal) errors: the server meets them when the operator
/// unseals a sealed vault.
impl From<vault_core::OfflineError> for ApiError {
    fn from(e: vault_core::OfflineError) -> Self {
        use vault_core::OfflineError as E;
        match e {
            E::Vault(e) => ApiError::from(e),
            e @ E::WrongPassphrase(_) => ApiError::unauthenticated(e.to_string()),
            e @ E::InvalidPolicies { .. } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_policies", e.to_string())
            }
            e @ E::PolicyMismatch { .. } => {
                ApiError::new(StatusCode::CONFLICT, "policy_mismatch", e.to_string())
            }
            e @ E::NotInitialised(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_initialised", e.to_string())
            }
            e @ (E::WeakPassphrase(_)
            | E::AlreadyInitialised(_)
            | E::NotEmpty { .. }
            | E::Busy { .. }
            | E::KeyStateRefused(_)
            | E::InvalidCheckpoint { .. }
            | E::RestoreRefused(_)
            | E::MigrateRefused(_)
            | E::Backup(_)
            | E::NotCleaned { .. }
            | E::Io { .. }
            | E::Store(_)
            | E::LogInconsistent { .. }) => ApiError::internal(&e),
        }
    }
}

/// The one table of engine errors: each variant's HTTP status.
impl From<vault_core::VaultError> for ApiError {
    fn from(e: vault_core::VaultError) -> Self {
        use vault_core::VaultError as E;
        let status = match &e {
            E::BadInput { .. } => StatusCode::BAD_REQUEST,
            E::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            E::Forbidden { .. } => StatusCode::FORBIDDEN,
            E::NotFound { .. } | E::Erased => StatusCode::NOT_FOUND,
            E::Conflict { .. } => StatusCode::CONFLICT,
            E::ConsentLimit { limit, .. } => match limit {
                vault_core::ConsentLimit::TooManyPending { .. } => StatusCode::CONFLICT,
                vault_core::ConsentLimit::ExpiresTooLate { .. } => StatusCode::BAD_REQUEST,
            },
            E::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Storage(_) | E::Audit(_) | E::Internal(_) => return ApiError::internal(&e),
        };
        let audit_index = match &e {
            E::Forbidden { audit_index, .. } | E::ConsentLimit { audit_index, .. } => *audit_index,
            _ => None,
        };
        ApiError {
            audit_index,
            ..ApiError::new(status, e.code(), e.to_string())
        }
    }
}

/// An outgoing request's failure in words, with its causes (connection refused, a TLS
/// failure, ...): for the witnesses' and the webhook receivers' health and logs.
pub(crate) fn request_failure(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
