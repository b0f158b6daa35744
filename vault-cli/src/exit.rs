//! Exit codes (documented in `docs/operations.md`) and the error that carries one.

use vault_core::{OfflineError, VaultError};

/// Any failure not listed below (I/O, cannot reach the server, server fault).
pub(crate) const FAILURE: u8 = 1;
/// A command-line usage error (clap), or an audit export that does not verify.
pub(crate) const VERIFY_FAILED: u8 = 2;
/// A credential was refused: wrong passphrase, or the server refused the certificate.
pub(crate) const REFUSED_CREDENTIAL: u8 = 3;
/// The input or the request was rejected (nothing was changed): invalid rows, unknown
/// agency, a restore inconsistent with a published checkpoint, a 4xx answer.
pub(crate) const REJECTED: u8 = 4;
/// An import failed after some of its chunks were committed; the report names them.
pub(crate) const PARTIAL: u8 = 5;
/// `audit replay` found decisions the policy in force does not explain.
pub(crate) const REPLAY_FINDINGS: u8 = 6;
/// `audit verify`: the log verifies, but a deferred (covert) access is overdue for
/// disclosure.
pub(crate) const OVERDUE_DISCLOSURES: u8 = 7;

/// A failure with its exit code; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exit {
    /// The process exit code.
    pub(crate) code: u8,
    /// What went wrong and what to do.
    pub(crate) message: String,
}

impl Exit {
    /// A failure with `code`.
    pub(crate) fn error(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.into(),
        })
    }
}

/// The exit code for an engine error (offline verbs).
pub(crate) fn code_of(e: &VaultError) -> u8 {
    match e {
        VaultError::Unauthenticated { .. } => REFUSED_CREDENTIAL,
        VaultError::BadInput { .. }
        | VaultError::Forbidden { .. }
        | VaultError::NotFound { .. }
        | VaultError::Conflict { .. }
        | VaultError::ConsentLimit { .. }
        | VaultError::TooLarge { .. }
        | VaultError::Erased => REJECTED,
        VaultError::Unavailable(_)
        | VaultError::Storage(_)
        | VaultError::Audit(_)
        | VaultError::Internal(_) => FAILURE,
    }
}

/// The exit code for an offline (data directory) error: the one table of them.
pub(crate) fn offline_code(e: &OfflineError) -> u8 {
    match e {
        OfflineError::WrongPassphrase(_) => REFUSED_CREDENTIAL,
        OfflineError::WeakPassphrase(_)
        | OfflineError::NotInitialised(_)
        | OfflineError::AlreadyInitialised(_)
        | OfflineError::NotEmpty { .. }
        | OfflineError::InvalidPolicies { .. }
        | OfflineError::Busy { .. }
        | OfflineError::KeyStateRefused(_)
        | OfflineError::InvalidCheckpoint { .. }
        | OfflineError::RestoreRefused(_)
        | OfflineError::MigrateRefused(_)
        | OfflineError::PolicyMismatch { .. }
        | OfflineError::Backup(_) => REJECTED,
        OfflineError::NotCleaned { cause, .. } => offline_code(cause),
        OfflineError::Io { .. } | OfflineError::Store(_) | OfflineError::LogInconsistent { .. } => {
            FAILURE
        }
        OfflineError::Vault(e) => code_of(e),
    }
}

/// An offline error as an [`Exit`], prefixed with what was being done.
pub(crate) fn offline(what: &str, e: OfflineError) -> anyhow::Error {
    let code = offline_code(&e);
    anyhow::Error::new(e).context(Exit {
        code,
        message: what.to_owned(),
    })
}

/// The exit code of an error chain (an [`Exit`] anywhere in it, else [`FAILURE`]).
pub(crate) fn code_of_error(e: &anyhow::Error) -> u8 {
    // `downcast_ref` also finds an `Exit` added as context; `chain` finds one that is a
    // source further down.
    e.downcast_ref::<Exit>()
        .or_else(|| e.chain().find_map(|c| c.downcast_ref::<Exit>()))
        .map_or(FAILURE, |x| x.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_survives_added_context() {
        let e = Exit::error(REJECTED, "bad").context("while importing");
        assert_eq!(code_of_error(&e), REJECTED);
        let io = std::io::Error::other("disk");
        let e = anyhow::Error::new(io)
            .context(Exit {
                code: REFUSED_CREDENTIAL,
                message: "unsealing".to_owned(),
            })
            .context("outer");
        assert_eq!(code_of_error(&e), REFUSED_CREDENTIAL);
        assert_eq!(code_of_error(&anyhow::anyhow!("plain")), FAILURE);
    }
}
