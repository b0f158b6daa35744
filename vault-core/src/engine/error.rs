//! The engine's error: one enum with a stable code per case and a kind that the server
//! maps to an HTTP status (only the server knows HTTP).

/// What kind of failure an error is, for the adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller sent something malformed.
    BadInput,
    /// No or invalid credential.
    Unauthenticated,
    /// Refused by policy.
    Forbidden,
    /// No such thing (among the caller's own).
    NotFound,
    /// Conflicts with the current state.
    Conflict,
    /// Larger than allowed.
    TooLarge,
    /// The vault cannot serve now (sealed, failed storage).
    Unavailable,
    /// A fault of the vault; details go to the log, never to the caller.
    Internal,
}

/// Why an engine operation failed. Messages never contain citizen data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Malformed input, with a stable code.
    #[error("{message}")]
    BadInput {
        /// Stable code.
        code: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The credential is missing, unknown, expired or revoked.
    #[error("{message}")]
    Unauthenticated {
        /// What to do.
        message: String,
    },
    /// Refused by policy.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Why, without revealing whether data exists.
        message: String,
    },
    /// Not found among what the caller may see.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: &'static str,
    },
    /// The operation conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What is in the way.
        message: String,
    },
    /// Too large.
    #[error("{message}")]
    TooLarge {
        /// What is too large.
        message: String,
    },
    /// The citizen's data was erased.
    #[error("the citizen's data was erased")]
    Erased,
    /// Storage failed; the request changed nothing that was acknowledged.
    #[error("storage failed: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The audit log failed; nothing was released.
    #[error("audit log failed: {0}")]
    Audit(String),
    /// Another internal fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl VaultError {
    /// The kind, for the adapters.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VaultError::BadInput { .. } => ErrorKind::BadInput,
            VaultError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            VaultError::Forbidden { .. } => ErrorKind::Forbidden,
            VaultError::NotFound { .. } | VaultError::Erased => ErrorKind::NotFound,
            VaultError::Conflict { .. } => ErrorKind::Conflict,
            VaultError::TooLarge { .. } => ErrorKind::TooLarge,
            VaultError::Storage(crate::storage::StorageError::Poisoned) => ErrorKind::Unavailable,
            VaultError::Storage(_) | VaultError::Audit(_) | VaultError::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::BadInput { code, .. }
            | VaultError::Forbidden { code, .. }
            | VaultError::Conflict { code, .. } => code,
            VaultError::Unauthenticated { .. } => "unauthenticated",
            VaultError::NotFound { .. } => "not_found",
            VaultError::TooLarge { .. } => "too_large",
            VaultError::Erased => "erased",
            VaultError::Storage(crate::storage::StorageError::Poisoned) => "unavailable",
            VaultError::Storage(_) | VaultError::Audit(_) | VaultError::Internal(_) => "internal",
        }
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        VaultError::BadInput {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        VaultError::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        VaultError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        VaultError::Internal(e.to_string())
    }
}

impl From<super::WriteRejected> for VaultError {
    fn from(e: super::WriteRejected) -> Self {
        use super::WriteRejected as W;
        match e {
            W::TooManyFields { .. } | W::FieldTooLarge { .. } | W::RecordTooLarge { .. } => {
                VaultError::TooLarge {
                    message: e.to_string(),
                }
            }
            W::NotSource { .. } => VaultError::forbidden(e.code(), e.to_string()),
            W::InvalidCitizen(_)
            | W::InvalidCategory(_)
            | W::NoFields
            | W::InvalidField(_)
            | W::UnknownField { .. }
            | W::DuplicateField { .. } => VaultError::bad(e.code(), e.to_string()),
        }
    }
}

impl From<crate::codec::CodecError> for VaultError {
    fn from(e: crate::codec::CodecError) -> Self {
        VaultError::Internal(e.to_string())
    }
}
