//! The engine's errors: [`VaultError`] for operations on a running vault, with a stable
//! code per case. The adapters map each variant to an HTTP status or an exit code in one
//! exhaustive table each, so a new variant is a compile error there until it is mapped.
//! Internal and audit failures keep their sources ([`Internal`], [`AuditFailure`]).

use crate::storage::StorageError;

/// Why an engine operation failed. Messages never contain citizen data.
#[derive(Debug, thiserror::Error)]
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
        /// The audit entry that records the refused attempt, when one was written.
        audit_index: Option<u64>,
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
    /// A consent request over one of the vault's caps; the refused attempt is logged.
    #[error("{limit}")]
    ConsentLimit {
        /// Which cap.
        limit: ConsentLimit,
        /// The audit entry that records the refused request.
        audit_index: Option<u64>,
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
    /// The store failed earlier and refuses every call until the vault restarts; nothing
    /// was released.
    #[error("storage is unavailable: {0}")]
    Unavailable(StorageError),
    /// Storage failed; the request changed nothing that was acknowledged.
    #[error("storage failed: {0}")]
    Storage(StorageError),
    /// The audit log failed; nothing was released.
    #[error("audit log failed: {0}")]
    Audit(#[from] AuditFailure),
    /// Another internal fault.
    #[error("internal error: {0}")]
    Internal(#[from] Internal),
}

/// The caps on an agency's consent requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsentLimit {
    /// The agency already has this many pending requests for the citizen.
    #[error("this agency already has {max} pending consent requests for this citizen: wait for the citizen's answers, or for the requests to expire, before asking again")]
    TooManyPending {
        /// The cap.
        max: usize,
    },
    /// `expires_at` is further ahead than the cap.
    #[error("expires_at is more than {max_days} days ahead: ask for a consent that ends sooner")]
    ExpiresTooLate {
        /// The cap, in days from now.
        max_days: u32,
    },
}

impl ConsentLimit {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentLimit::TooManyPending { .. } => "too_many_pending_requests",
            ConsentLimit::ExpiresTooLate { .. } => "expires_too_late",
        }
    }
}

/// An internal fault, with its source. Details go to the server log, never to a caller.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// A record or citizen key operation failed.
    #[error(transparent)]
    Record(#[from] crate::records::RecordError),
    /// A key operation failed.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    /// The certificate authority failed.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// A stored value does not decode.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// An enrolment record failed.
    #[error(transparent)]
    Enrolment(#[from] crate::agencies::EnrolmentError),
    /// A token record failed.
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
    /// A signed note failed.
    #[error(transparent)]
    Note(#[from] audit::NoteError),
    /// A consent artefact refused a state change it should have allowed.
    #[error(transparent)]
    Consent(#[from] policies::ConsentError),
    /// A backup could not be written.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// A data-directory operation failed.
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    /// A stored record fails its authentication check (an offline edit).
    #[error(transparent)]
    Tampered(#[from] crate::auth::Tampered),
    /// A stored value breaks an invariant of the vault (no source error exists).
    #[error("{0}")]
    Inconsistent(String),
}

impl From<&str> for Internal {
    fn from(what: &str) -> Self {
        Internal::Inconsistent(what.to_owned())
    }
}

impl From<String> for Internal {
    fn from(what: String) -> Self {
        Internal::Inconsistent(what)
    }
}

/// Why the audit log could not be read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum AuditFailure {
    /// Planning or applying an append failed.
    #[error(transparent)]
    Append(#[from] audit::AppendError),
    /// Reading the tree failed.
    #[error(transparent)]
    Tree(#[from] audit::TreeError),
    /// The export could not be written.
    #[error(transparent)]
    Export(#[from] audit::export::ExportError),
    /// A checkpoint could not be signed.
    #[error(transparent)]
    Checkpoint(#[from] audit::CheckpointError),
    /// A stored entry does not decode.
    #[error("entry {index}: {source}")]
    Entry {
        /// Its index.
        index: u64,
        /// The decoder's finding.
        source: audit::EntryError,
    },
    /// An entry below the log size is missing.
    #[error("entry {index} is missing from the log")]
    Missing {
        /// Its index.
        index: u64,
    },
    /// The test failpoint refused the append (`test-hooks` only).
    #[error("audit append failed (test failpoint)")]
    Failpoint,
}

impl From<StorageError> for VaultError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Poisoned
            | StorageError::ReadOnly
            | StorageError::LeaseLost { .. }
            | StorageError::Conflict { .. } => VaultError::Unavailable(e),
            e => VaultError::Storage(e),
        }
    }
}

impl VaultError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::BadInput { code, .. }
            | VaultError::Forbidden { code, .. }
            | VaultError::Conflict { code, .. } => code,
            VaultError::Unauthenticated { .. } => "unauthenticated",
            VaultError::NotFound { .. } => "not_found",
            VaultError::ConsentLimit { limit, .. } => limit.code(),
            VaultError::TooLarge { .. } => "too_large",
            VaultError::Erased => "erased",
            VaultError::Unavailable(_) => "unavailable",
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
            audit_index: None,
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        VaultError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// An internal fault from its source error (or, for a broken invariant, a message).
    pub(crate) fn internal(e: impl Into<Internal>) -> Self {
        VaultError::Internal(e.into())
    }

    /// An audit-log failure from its source error.
    pub(crate) fn audit(e: impl Into<AuditFailure>) -> Self {
        VaultError::Audit(e.into())
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

impl From<crate::auth::Tampered> for VaultError {
    fn from(e: crate::auth::Tampered) -> Self {
        VaultError::Internal(e.into())
    }
}

impl From<crate::codec::CodecError> for VaultError {
    fn from(e: crate::codec::CodecError) -> Self {
        VaultError::Internal(e.into())
    }
}
