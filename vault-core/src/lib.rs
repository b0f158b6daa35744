//! The vault engine: keys and envelope encryption, storage, and the operations that tie
//! records, consent evaluation and the audit log into single atomic commits.
//!
//! **API boundary.** The public surface is [`Vault`] (an unsealed, running vault) and
//! [`DataDir`] (a vault data directory that no process serves: init, open, status,
//! unseal check, key rotation, retirement, compaction, restore), with their typed inputs,
//! outcomes and errors. Storage, records, keys, backups and codecs are internal: the
//! adapters (`vault-server`, `vault-cli`) can name none of them
//! (`tests/tests/suite/repo_rules.rs`). The `test-hooks` feature, enabled only by this
//! workspace's tests and benches, makes the internal modules public so that those tests
//! can drive storage and keys directly.

// Without `test-hooks` the internal modules are private, so their `pub` items are
// crate-visible only; they are `pub` for the test-hooks surface.
#![cfg_attr(not(feature = "test-hooks"), allow(unreachable_pub))]

pub use audit;
pub use policies;

mod ct;
mod migrate;
mod offline;
mod replay;
mod serde_bytes;

// Internal modules: private, or public (hidden) under the `test-hooks` feature. Each is
// declared twice rather than by a macro, so that `cargo fmt` (rustfmt expands no macro)
// formats them.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod agencies;
#[cfg(not(feature = "test-hooks"))]
mod agencies;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod auth;
#[cfg(not(feature = "test-hooks"))]
mod auth;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod backup;
#[cfg(not(feature = "test-hooks"))]
mod backup;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod codec;
#[cfg(not(feature = "test-hooks"))]
mod codec;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod datadir;
#[cfg(not(feature = "test-hooks"))]
mod datadir;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod engine;
#[cfg(not(feature = "test-hooks"))]
mod engine;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod envelope;
#[cfg(not(feature = "test-hooks"))]
mod envelope;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod keys;
#[cfg(not(feature = "test-hooks"))]
mod keys;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod pki;
#[cfg(not(feature = "test-hooks"))]
mod pki;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod records;
#[cfg(not(feature = "test-hooks"))]
mod records;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod storage;
#[cfg(not(feature = "test-hooks"))]
mod storage;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod tokens;
#[cfg(not(feature = "test-hooks"))]
mod tokens;

pub use agencies::{CertState, Enrolment, PinnedCert};
pub use datadir::{CompactReport, Status};
pub use engine::{
    check_write, citizen_event_type, policy_set_digest, AccessInput, AccessOutcome, AuditFailure,
    Bearer, CheckedWrite, CitizenExport, CitizenToken, ConsentLimit, ConsentRequestInput,
    ConsentView, Delivery, DeliveryKey, DeliveryOutcome, Disclosure, EnrolOutcome, EntryText,
    ErasureOutcome, GrantInput, History, HistoryEntry, ImportOutcome, ImportRow, InitOptions,
    InitOutput, Internal, KeyKind, LeafView, NotificationKey, NotificationStats, PendingAccess,
    PublicLog, RecordView, RotateOutcome, ServerIdentity, Standby, TokenOutcome, TokenRequest,
    Vault, VaultError, WebhookTarget, WebhookView, WriteOutcome, WriteRejected,
    CHECKPOINT_INTERVAL, DEFAULT_AGENCY_CERT_DAYS, DEFAULT_TOKEN_DAYS, MAX_AGENCY_CERT_DAYS,
    MAX_CONSENT_REQUEST_DAYS, MAX_DISCLOSURES_PER_ROUND, MAX_FIELD_NAME_LEN, MAX_IMPORT_ROWS,
    MAX_LIFT_REFERENCE, MAX_PENDING_REQUESTS, MAX_REQUEST_FIELDS, MAX_TEXT, MAX_TOKEN_DAYS,
    MAX_WEBHOOK_BATCH, MAX_WEBHOOK_URL, MAX_WRITE_FIELDS, NOTIFY_FIRST_BACKOFF,
    NOTIFY_KEY_OVERLAP_DAYS, NOTIFY_MAX_BACKOFF, NOTIFY_RETRY_HOURS, SERVER_CERT_DAYS,
    SERVER_CERT_RENEW_BEFORE_DAYS,
};
pub use envelope::{CitizenId, Plaintext};
pub use migrate::MigrateReport;
pub use offline::{
    DataDir, InitReport, OfflineError, PublishedCheckpoint, RestoreOutcome, RestoreRefusal,
    UnsealReport,
};
pub use pki::{Fingerprint, Issued};
pub use replay::{replay_export, Finding, FindingKind, Replay, ReplayReport, ReplaySet};
pub use storage::postgres::LeaseInfo;
pub use storage::sled::DEFAULT_CACHE_BYTES;
pub use storage::StoreHealth;
pub use tokens::{IssuedToken, Role};
