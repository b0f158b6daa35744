//! [`DataDir`]: the offline facade. Every operation on a vault data directory that no
//! process serves (init, open, status, unseal check, key rotation, master key retirement,
//! compaction, restore) goes through it, so the rules that protect a stopped vault live
//! here once and the adapters only read arguments and print outcomes.
//!
//! Layout of a data directory: `store/` (the store: keys, records, consents, tokens,
//! enrolments, the audit log) and `policies/` (the policy files the vault enforces).

use std::io::Read;
use std::path::{Path, PathBuf};

use audit::{Checkpoint, NoteVerifier, SignedCheckpoint};
use policies::{PolicyErrors, PolicySet};

use crate::datadir::{self, CompactReport, DataDirError, Status};
use crate::engine::{log, InitOptions, InitOutput, KeyKind, RotateOutcome, Vault, VaultError};
use crate::keys::{KeyError, Passphrase};
use crate::pki::Issued;
use crate::storage::postgres::{PgOptions, PgTarget};
use crate::storage::sled::SledOptions;
use crate::storage::{self, StorageError, Tree};
use crate::storage::{Storage, StoreSpec};

/// The store's folder inside a data directory.
const STORE_DIR: &str = "store";
/// The policy files' folder inside a data directory.
const POLICIES_DIR: &str = "policies";

/// Why an offline operation failed. The adapters map each variant to an exit code or an
/// HTTP status in one table each; messages say what to do and never carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The passphrase does not open the vault; nothing was changed.
    #[error(transparent)]
    WrongPassphrase(KeyError),
    /// A new passphrase is refused (too short).
    #[error(transparent)]
    WeakPassphrase(KeyError),
    /// The directory holds no (or a half-) initialised vault.
    #[error(transparent)]
    NotInitialised(DataDirError),
    /// `init` on a directory that already holds a vault.
    #[error(transparent)]
    AlreadyInitialised(DataDirError),
    /// The target directory of `init` or `restore` is not new or empty.
    #[error("{} is not empty: {hint}", path.display())]
    NotEmpty {
        /// The directory.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
    },
    /// The policy files do not load.
    #[error("the policy files in {} are not valid:\n{errors}\nfix them (see `vault-cli policies check`) and run the command again", dir.display())]
    InvalidPolicies {
        /// Their directory.
        dir: PathBuf,
        /// Every error, with file and line.
        errors: PolicyErrors,
    },
    /// Another process (a running server) holds the store.
    #[error("{} is in use by another process: is the server running on it? Stop it, or use the live verbs", path.display())]
    Busy {
        /// The store directory.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: DataDirError,
    },
    /// A master key operation is refused in the current state (current or unknown key,
    /// key still in use, unfinished rotation).
    #[error(transparent)]
    KeyStateRefused(DataDirError),
    /// The published checkpoint given for a restore is unusable.
    #[error("the published checkpoint {reason}")]
    InvalidCheckpoint {
        /// What is wrong with it.
        reason: String,
    },
    /// A restore is refused; the target directory is empty again.
    #[error("refusing to restore: {0}")]
    RestoreRefused(RestoreRefusal),
    /// The backup file is damaged or not a backup.
    #[error(transparent)]
    Backup(crate::backup::BackupError),
    /// A step failed and the new directory could not be emptied again.
    #[error("{} could not be emptied after the failure: delete it by hand", path.display())]
    NotCleaned {
        /// The directory.
        path: PathBuf,
        /// What failed first.
        #[source]
        cause: Box<OfflineError>,
    },
    /// A file-system step failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stored audit log is behind, or forks from, the last checkpoint the vault signed.
    #[error("refusing to start: the audit log ({size} entries) is not consistent with the last checkpoint this vault signed ({source}); a data directory restored from an old backup must first get the missing entries back (see docs/operations.md)")]
    LogInconsistent {
        /// The stored log's size.
        size: u64,
        /// What the signer found.
        source: audit::CheckpointError,
    },
    /// This node's policy files differ from the set the store records (a vault on
    /// PostgreSQL, where every node must enforce the same set).
    #[error("this node's policy files (sha256:{local}) differ from the set the vault enforces (sha256:{stored}): copy the policy files of the other nodes into this data directory's policies/, or adopt these with `vault-server --adopt-policies` (recorded in the log as policies.adopt)")]
    PolicyMismatch {
        /// The recorded digest.
        stored: String,
        /// This node's.
        local: String,
    },
    /// A migration is refused or failed; the source store is unchanged.
    #[error("refusing to migrate: {0}")]
    MigrateRefused(String),
    /// The store or the key store failed (damaged, unreadable).
    #[error(transparent)]
    Store(DataDirError),
    /// An engine operation on the opened vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl OfflineError {
    /// The node holding the writer lease, when this failed because another node of a vault
    /// on PostgreSQL is active.
    pub fn lease_holder(&self) -> Option<&str> {
        // A store's errors reach here only as `Store(Storage(..))` (`From` below).
        match self {
            OfflineError::Store(DataDirError::Storage(StorageError::LeaseHeld {
                holder, ..
            })) => Some(holder),
            _ => None,
        }
    }
}

impl From<DataDirError> for OfflineError {
    fn from(e: DataDirError) -> Self {
        match e {
            DataDirError::Key(k @ KeyError::WrongPassphrase { .. }) => {
                OfflineError::WrongPassphrase(k)
            }
            DataDirError::Key(k @ KeyError::PassphraseTooShort { .. }) => {
                OfflineError::WeakPassphrase(k)
            }
            e @ DataDirError::NotInitialised { .. } => OfflineError::NotInitialised(e),
            e @ DataDirError::AlreadyInitialised { .. } => OfflineError::AlreadyInitialised(e),
            e @ (DataDirError::KekInUse { .. }
            | DataDirError::KekIsCurrent { .. }
            | DataDirError::KekSealsSecrets { .. }
            | DataDirError::UnknownKek { .. }
            | DataDirError::RotationInProgress { .. }) => OfflineError::KeyStateRefused(e),
            e => OfflineError::Store(e),
        }
    }
}

impl From<crate::codec::CodecError> for OfflineError {
    fn from(e: crate::codec::CodecError) -> Self {
        OfflineError::Store(DataDirError::Codec(e))
    }
}

impl From<StorageError> for OfflineError {
    fn from(e: StorageError) -> Self {
        OfflineError::Store(DataDirError::Storage(e))
    }
}

/// Why a restore was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRefusal {
    /// The backup's log is shorter than the published checkpoint.
    #[error("the backup's audit log has {size} entries but a checkpoint of {published} entries was already published; the restored vault would sign a checkpoint that contradicts it. Restore a backup taken after that checkpoint")]
    Shorter {
        /// The backup's log size.
        size: u64,
        /// The published size.
        published: u64,
    },
    /// The backup's log has another root at the published size.
    #[error("the backup's audit log is not consistent with the published checkpoint (its first {published} entries have another root): is this a backup of the same vault?")]
    OtherRoot {
        /// The published size.
        published: u64,
    },
    /// The backup's log is not contiguous.
    #[error("the backup's audit log has a gap at entry {index}")]
    Gap {
        /// The first missing index.
        index: u64,
    },
    /// An audit leaf key or leaf block of the backup is malformed.
    #[error("the backup holds a malformed audit leaf key or leaf block")]
    MalformedLeafKey,
    /// The published checkpoint is not signed by the restored vault's log key.
    #[error("the published checkpoint is not signed by this vault's log key: {reason}")]
    ForeignCheckpoint {
        /// What the verifier found.
        reason: String,
    },
}

/// A checkpoint already published (held by an auditor, or saved with `vault-cli audit
/// checkpoint --out`): a restore must extend it.
#[derive(Clone, Debug)]
pub struct PublishedCheckpoint {
    note: String,
    checkpoint: Checkpoint,
    signature_checked: bool,
}

impl PublishedCheckpoint {
    /// Parses a signed checkpoint note; with `log_key` (a note verifier key), its signature
    /// is checked now, otherwise against the restored vault's own key once it opens.
    pub fn parse(note: &str, log_key: Option<&str>) -> Result<Self, OfflineError> {
        let invalid = |reason: String| OfflineError::InvalidCheckpoint { reason };
        let body = note
            .split_once("\n\n")
            .map(|(b, _)| format!("{b}\n"))
            .ok_or_else(|| {
                invalid("is not a signed note (no blank line before the signature)".to_owned())
            })?;
        let checkpoint =
            Checkpoint::parse(&body).map_err(|e| invalid(format!("does not parse: {e}")))?;
        if let Some(key) = log_key {
            let verifier = NoteVerifier::parse(key).map_err(|e| {
                invalid(format!(
                    "cannot be checked: the log key does not parse: {e}"
                ))
            })?;
            SignedCheckpoint::parse(note, &verifier)
                .map_err(|e| invalid(format!("does not verify with the log key: {e}")))?;
        }
        Ok(PublishedCheckpoint {
            note: note.to_owned(),
            checkpoint,
            signature_checked: log_key.is_some(),
        })
    }

    /// Its size.
    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    /// What the operator gets once (certificates, keys, the log's verifier key).
    pub output: InitOutput,
    /// The policy files copied into the data directory.
    pub policy_files: Vec<String>,
    /// Agencies in the policy registry.
    pub agencies: usize,
}

/// What a successful unseal check saw.
#[derive(Clone, Debug)]
pub struct UnsealReport {
    /// Entries in the audit log.
    pub audit_size: u64,
    /// The latest signed checkpoint (note text).
    pub checkpoint: String,
    /// The log's note verifier key.
    pub log_verifier_key: String,
    /// Agencies enrolled and not revoked.
    pub agencies_enrolled: usize,
    /// Agencies revoked.
    pub agencies_revoked: usize,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    /// Store entries restored.
    pub entries: u64,
    /// Entries in the restored audit log.
    pub audit_size: u64,
    /// The checkpoint the restored vault signed when it opened.
    pub checkpoint: String,
    /// The size of the published checkpoint it was checked against, if any.
    pub checked_against: Option<u64>,
}

/// The file of a data directory whose store is in PostgreSQL: the database's location
/// without its password, so that a command given the directory alone says where to look.
const POSTGRES_MARKER: &str = "store-location";

/// A vault data directory that no process serves. Its store is the sled store in
/// `store/`, or a PostgreSQL database ([`DataDir::on_postgres`]); the policy files are in
/// `policies/` either way.
#[derive(Clone, Debug)]
pub struct DataDir {
    dir: PathBuf,
    /// How the sled store is opened (its cache size).
    store: SledOptions,
    /// The PostgreSQL database holding the store instead.
    postgres: Option<(PgTarget, PgOptions)>,
    /// Open adopts this directory's policy files even where the store records others.
    adopt_policies: bool,
}

impl DataDir {
    /// The data directory at `dir` (nothing is read until an operation runs).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DataDir {
            dir: dir.into(),
            store: SledOptions::default(),
            postgres: None,
            adopt_policies: false,
        }
    }

    /// The same directory, whose open adopts its policy files when the store records
    /// another set (a vault on PostgreSQL refuses that otherwise, so that every node
    /// enforces the same set); the change is the audit entry `policies.adopt`.
    pub fn with_policy_adoption(mut self, adopt: bool) -> Self {
        self.adopt_policies = adopt;
        self
    }

    /// The same directory with its store in the PostgreSQL database at `url`
    /// (`postgres://user:password@host:port/database`); `ca_file`: a PEM file of the CA
    /// certificates of the database server, for TLS (required unless the database is on a
    /// Unix socket or loopback); `node`: the name this process takes the writer lease under.
    pub fn on_postgres(
        mut self,
        url: &str,
        ca_file: Option<&Path>,
        node: Option<String>,
    ) -> Result<Self, OfflineError> {
        let ca_pem = ca_file
            .map(|f| std::fs::read(f).map_err(io_error("read the store CA file", f)))
            .transpose()?;
        let target = PgTarget::parse(url, ca_pem.as_deref())?;
        let mut options = PgOptions::default();
        if let Some(node) = node {
            options.node = node;
        }
        if let Some(bytes) = self.store.cache_bytes {
            options.cache_bytes = bytes;
        }
        options.cas_keys = vec![(
            Tree::Meta,
            crate::engine::log::LAST_CHECKPOINT_KEY.to_vec(),
            "the last published checkpoint",
        )];
        self.postgres = Some((target, options));
        Ok(self)
    }

    /// How long opening waits for another node's writer lease to expire before it fails
    /// with the holder's name (PostgreSQL only; `None`: not at all).
    pub fn with_lease_wait(mut self, wait: Option<std::time::Duration>) -> Self {
        if let Some((_, options)) = &mut self.postgres {
            options.wait_for_lease = wait;
        }
        self
    }

    /// A standby's read-only view of this vault on PostgreSQL, opened without the writer
    /// lease: the last published checkpoint, the log's public keys, proofs, and the stored
    /// server TLS identity the standby answers with. PostgreSQL only.
    pub fn open_standby(&self, passphrase: &str) -> Result<crate::Standby, OfflineError> {
        let spec = match self.spec()? {
            StoreSpec::Postgres { target, .. } => StoreSpec::Postgres {
                target,
                options: PgOptions::default(),
            },
            StoreSpec::Sled { dir, .. } => {
                return Err(OfflineError::from(StorageError::Unusable {
                    path: dir,
                    reason: "only a vault on PostgreSQL has standby nodes".to_owned(),
                }))
            }
        };
        let unsealed = datadir::unseal_read_only(
            &spec,
            &Passphrase::new(passphrase.to_owned()),
            Default::default(),
        )?;
        Ok(crate::Standby::new(unsealed)?)
    }

    /// [`DataDir::spec`] of a migration's target: the directory still holds the sled
    /// store it migrates from.
    pub(crate) fn spec_for_migration(&self) -> Result<StoreSpec, OfflineError> {
        match &self.postgres {
            Some((target, options)) => Ok(StoreSpec::Postgres {
                target: Box::new(target.clone()),
                options: options.clone(),
            }),
            None => self.spec(),
        }
    }

    /// Sets the writer lease's lifetime (PostgreSQL only).
    pub fn with_lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        if let Some((_, options)) = &mut self.postgres {
            options.lease_ttl = ttl;
            options.wait_for_lease = Some(ttl + std::time::Duration::from_secs(5));
        }
        self
    }

    /// The database of the store, if it is in PostgreSQL (no password).
    pub fn postgres(&self) -> Option<&PgTarget> {
        self.postgres.as_ref().map(|(t, _)| t)
    }

    /// Where the store is, refusing a directory whose store is elsewhere than told.
    pub(crate) fn spec(&self) -> Result<StoreSpec, OfflineError> {
        let wrong = |reason: String| {
            OfflineError::from(StorageError::Unusable {
                path: self.dir.clone(),
                reason,
            })
        };
        let marker = self.dir.join(POSTGRES_MARKER);
        match &self.postgres {
            None => {
                if !self.store_dir().exists() {
                    if let Ok(at) = std::fs::read_to_string(&marker) {
                        return Err(wrong(format!(
                            "its store is in PostgreSQL ({}): give the database with --store URL",
                            at.trim()
                        )));
                    }
                }
                Ok(StoreSpec::Sled {
                    dir: self.store_dir(),
                    options: self.store.clone(),
                })
            }
            Some((target, options)) => {
                if self.store_dir().exists() {
                    return Err(wrong(
                        "its store is the sled store in store/, not a database: leave out --store, or move it with `vault-cli migrate`".to_owned(),
                    ));
                }
                Ok(StoreSpec::Postgres {
                    target: Box::new(target.clone()),
                    options: options.clone(),
                })
            }
        }
    }

    /// The same directory, whose store [`DataDir::open`] opens with a page cache of at most
    /// `bytes` (default [`crate::DEFAULT_CACHE_BYTES`]).
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.store.cache_bytes = Some(bytes);
        if let Some((_, options)) = &mut self.postgres {
            options.cache_bytes = bytes;
        }
        self
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.join(STORE_DIR)
    }

    fn policies_dir(&self) -> PathBuf {
        self.dir.join(POLICIES_DIR)
    }

    /// Creates a vault in this (new or empty) directory: the policy files of `policies` are
    /// checked and copied in, then the sealed master key, the CA, the server and operator
    /// certificates, the log and receipt signing keys and the log's first entry are
    /// written. On failure the directory is left empty again.
    pub fn init(
        &self,
        passphrase: &str,
        policies: &Path,
        options: InitOptions,
    ) -> Result<InitReport, OfflineError> {
        Passphrase::new(passphrase.to_owned())
            .check_strength()
            .map_err(OfflineError::WeakPassphrase)?;
        load_policies(policies)?;
        self.create_empty(
            "`vault-cli init` makes a new vault in a new or empty directory (use `vault-cli status --data-dir` to inspect an existing one)",
        )?;
        self.undo_on_error(|| {
            let policy_files = copy_policies(policies, &self.policies_dir())?;
            // What the vault will load is what was checked.
            let policy = load_policies(&self.policies_dir())?;
            let spec = self.spec()?;
            self.mark_postgres()?;
            let output = Vault::init(&spec, passphrase, options, &policy)?;
            Ok(InitReport {
                output,
                policy_files,
                agencies: policy.agencies().count(),
            })
        })
    }

    /// Opens and unseals the vault with `passphrase`, loading its policy files.
    pub fn open(&self, passphrase: &str) -> Result<Vault, OfflineError> {
        Vault::open(&self.dir, passphrase, &self.spec()?, self.adopt_policies)
    }

    /// Writes the marker naming the database (no password), for a store in PostgreSQL.
    pub(crate) fn mark_postgres(&self) -> Result<(), OfflineError> {
        if let Some((target, _)) = &self.postgres {
            let path = self.dir.join(POSTGRES_MARKER);
            write_new_synced(&path, format!("{}\n", target.describe()).as_bytes())
                .map_err(io_error("write", &path))?;
        }
        Ok(())
    }

    /// The store's state, read without the passphrase, and whether its policy files load.
    pub fn status(&self) -> Result<(Status, Result<PolicySet, PolicyErrors>), OfflineError> {
        let spec = self.spec()?;
        let status = match spec.sled_dir() {
            Some(store) => datadir::status(store).map_err(|e| busy_or(store, e))?,
            None => datadir::status_in(&spec)?,
        };
        Ok((status, PolicySet::load_dir(&self.policies_dir())))
    }

    /// Opens the vault once to prove that `passphrase` unseals it, and closes it again.
    pub fn check_unseal(&self, passphrase: &str) -> Result<UnsealReport, OfflineError> {
        if self.postgres.is_none() && !self.store_dir().exists() {
            self.spec()?;
            return Err(OfflineError::from(DataDirError::NotInitialised {
                path: self.dir.clone(),
                half: false,
            }));
        }
        let vault = self.open(passphrase)?;
        let report = (|| {
            let agencies = vault.list_agencies()?;
            let enrolled = agencies.iter().filter(|e| e.revoked_at.is_none()).count();
            Ok::<_, VaultError>(UnsealReport {
                audit_size: vault.audit_size(),
                checkpoint: vault.latest_checkpoint()?,
                log_verifier_key: vault.log_verifier_key().to_owned(),
                agencies_enrolled: enrolled,
                agencies_revoked: agencies.len() - enrolled,
            })
        })();
        vault.shutdown();
        Ok(report?)
    }

    /// Rotates a key of the stopped vault (see [`Vault::rotate_keys`]); an interrupted
    /// rotation is finished by running it again.
    pub fn rotate(&self, passphrase: &str, kind: KeyKind) -> Result<RotateOutcome, OfflineError> {
        let vault = self.open(passphrase)?;
        let out = vault.rotate_keys(kind);
        vault.shutdown();
        Ok(out?)
    }

    /// Rotates the master key and changes the passphrase that seals it (see
    /// [`Vault::rotate_kek_with_new_passphrase`]).
    pub fn change_passphrase(
        &self,
        passphrase: &str,
        new_passphrase: &str,
    ) -> Result<RotateOutcome, OfflineError> {
        let vault = self.open(passphrase)?;
        let out = vault.rotate_kek_with_new_passphrase(new_passphrase);
        vault.shutdown();
        Ok(out?)
    }

    /// Issues a new operator certificate (signed by the vault CA) and pins it in place of
    /// the current one, which the server refuses from its next start on; the replacement
    /// is an audit entry. Returns the certificate and key (shown once) and the entry.
    pub fn replace_operator_cert(&self, passphrase: &str) -> Result<(Issued, u64), OfflineError> {
        let vault = self.open(passphrase)?;
        let out = vault.replace_operator_cert();
        vault.shutdown();
        Ok(out?)
    }

    /// Upgrades a data directory written before records were authenticated (a stopped
    /// vault that `open` refuses with `upgrade_required`): creates the vault key, puts a
    /// MAC on every token, consent artefact, enrolment and on the configuration as they
    /// are stored now, and rekeys old tombstones, in one commit with the audit entry
    /// `vault.upgrade`. Returns `false` (and changes nothing) when the directory is
    /// already upgraded. Run it once, right after installing the version that needs it:
    /// it vouches for the records as they are.
    pub fn upgrade(&self, passphrase: &str) -> Result<bool, OfflineError> {
        let (vault, upgraded) = Vault::open_with(
            &self.dir,
            passphrase,
            true,
            &self.spec()?,
            self.adopt_policies,
        )?;
        vault.shutdown();
        Ok(upgraded)
    }

    /// Deletes the old sealed master key `kek_id` once nothing is sealed or wrapped under
    /// it any more: not the current key, no citizen key, and none of the vault's own
    /// secrets (retiring the key that seals them would make the vault unopenable).
    pub fn retire_kek(&self, passphrase: &str, kek_id: u32) -> Result<(), OfflineError> {
        let unsealed = datadir::unseal_in(
            &self.spec()?,
            &Passphrase::new(passphrase.to_owned()),
            Default::default(),
        )?;
        let sealed = crate::engine::secrets_sealed_under(&**unsealed.store())?;
        Ok(unsealed.retire_kek(kek_id, &sealed)?)
    }

    /// Rewrites the store with live entries only (see `docs/keys.md`).
    pub fn compact(&self) -> Result<CompactReport, OfflineError> {
        if let Some((target, _)) = &self.postgres {
            return Err(OfflineError::from(StorageError::Unusable {
                path: target.describe().into(),
                reason: "compaction rewrites a sled store; PostgreSQL reclaims deleted rows itself (VACUUM, docs/operations.md)".to_owned(),
            }));
        }
        let store = self.store_dir();
        datadir::compact(&store).map_err(|e| busy_or(&store, e))
    }

    /// Restores `backup` into this new (or empty) directory with the policy files of
    /// `policies`, and opens the result once with `passphrase` to prove it is whole.
    ///
    /// With `published`, the restored log must extend that checkpoint: the root of its
    /// first `published.size()` leaves, recomputed from the exact stored leaf bytes, must
    /// be the published root, checked BEFORE the vault is first opened (opening signs a
    /// checkpoint), and the checkpoint's signature must be the vault's. Any refusal or
    /// failure leaves the directory empty again.
    pub fn restore(
        &self,
        backup: impl Read,
        policies: &Path,
        published: Option<&PublishedCheckpoint>,
        passphrase: &str,
    ) -> Result<RestoreOutcome, OfflineError> {
        load_policies(policies)?;
        self.create_empty("restore into a new or empty directory (never over a vault)")?;
        self.undo_on_error(|| {
            let backup = authenticate_backup(backup, passphrase)?;
            let entries = {
                let spec = self.spec()?;
                self.mark_postgres()?;
                let store = spec.create()?;
                let entries = backup.restore(&*store).map_err(OfflineError::Backup)?;
                if let Some(p) = published {
                    check_extends(&*store, &p.checkpoint)?;
                }
                entries
            };
            copy_policies(policies, &self.policies_dir())?;
            let vault = self.open(passphrase)?;
            let outcome = (|| {
                if let Some(p) = published.filter(|p| !p.signature_checked) {
                    let verifier = NoteVerifier::parse(vault.log_verifier_key())
                        .map_err(|e| VaultError::internal(format!("the vault's log key: {e}")))?;
                    SignedCheckpoint::parse(&p.note, &verifier).map_err(|e| {
                        OfflineError::RestoreRefused(RestoreRefusal::ForeignCheckpoint {
                            reason: e.to_string(),
                        })
                    })?;
                }
                Ok(RestoreOutcome {
                    entries,
                    audit_size: vault.audit_size(),
                    checkpoint: vault.latest_checkpoint()?,
                    checked_against: published.map(PublishedCheckpoint::size),
                })
            })();
            vault.shutdown();
            outcome
        })
    }

    /// Creates the directory, refusing one that holds anything.
    fn create_empty(&self, hint: &'static str) -> Result<(), OfflineError> {
        match std::fs::read_dir(&self.dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(OfflineError::NotEmpty {
                        path: self.dir.clone(),
                        hint,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", &self.dir)(e)),
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error("create", &self.dir))
    }

    /// Runs `f` on the directory [`DataDir::create_empty`] made; on failure empties it
    /// again, so the command can simply be run again.
    fn undo_on_error<T>(
        &self,
        f: impl FnOnce() -> Result<T, OfflineError>,
    ) -> Result<T, OfflineError> {
        f().map_err(|e| match empty_dir(&self.dir) {
            Ok(()) => e,
            Err(_) => OfflineError::NotCleaned {
                path: self.dir.clone(),
                cause: Box::new(e),
            },
        })
    }
}

/// Reads `backup` and checks its MAC, before anything is written: the passphrase opens
/// the master keys the backup holds, they open its vault key, which gives the backup key.
/// Any failure on the way (a wrong passphrase included: it cannot be told apart from a
/// modified sealed key) refuses the backup as not authentic.
fn authenticate_backup(
    backup: impl Read,
    passphrase: &str,
) -> Result<crate::backup::AuthenticBackup, OfflineError> {
    use crate::backup::BackupError;
    let parsed = crate::backup::parse(backup).map_err(OfflineError::Backup)?;
    let not_authentic = |why: String| OfflineError::Backup(BackupError::NotAuthentic(why));
    let keys = {
        let meta = parsed.meta();
        let ring = datadir::keks_of_meta(
            &meta,
            &Passphrase::new(passphrase.to_owned()),
        )
        .map_err(|e| {
            not_authentic(format!(
                "the passphrase does not open its master keys ({e}): the passphrase is wrong or the backup was modified"
            ))
        })?;
        let config = meta
            .iter()
            .find(|(k, _)| *k == crate::engine::ENGINE_KEY)
            .map(|(_, v)| *v)
            .ok_or_else(|| not_authentic("it holds no engine configuration".to_owned()))?;
        crate::engine::vault_keys_of_config(config, &ring)
            .map_err(|e| not_authentic(format!("its engine configuration: {e}")))?
    };
    parsed.authenticate(&keys).map_err(OfflineError::Backup)
}

/// The store was locked by another process, or failed otherwise.
pub(crate) fn busy_or(store: &Path, e: DataDirError) -> OfflineError {
    let locked = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .filter_map(|e| e.downcast_ref::<std::io::Error>())
    .any(|e| e.kind() == std::io::ErrorKind::WouldBlock);
    if locked {
        OfflineError::Busy {
            path: store.to_path_buf(),
            source: e,
        }
    } else {
        OfflineError::from(e)
    }
}

pub(crate) fn io_error(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> OfflineError {
    let path = path.to_path_buf();
    move |source| OfflineError::Io { what, path, source }
}

fn load_policies(dir: &Path) -> Result<PolicySet, OfflineError> {
    PolicySet::load_dir(dir).map_err(|errors| OfflineError::InvalidPolicies {
        dir: dir.to_path_buf(),
        errors,
    })
}

/// Copies every `*.toml` file of `src` into `dst` (created; never over a file), each
/// synced; returns their names, sorted.
fn copy_policies(src: &Path, dst: &Path) -> Result<Vec<String>, OfflineError> {
    std::fs::create_dir_all(dst).map_err(io_error("create", dst))?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(src).map_err(io_error("read", src))? {
        let path = entry.map_err(io_error("read", src))?.path();
        let Some(name) = path.file_name().filter(|_| path.is_file()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "toml") {
            let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
            let target = dst.join(name);
            write_new_synced(&target, &bytes).map_err(io_error("write", &target))?;
            names.push(name.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn write_new_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Removes everything inside `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The log's leaves read in index order from the exact stored bytes: its frontier, and the
/// root of its first `prefix` leaves if it has that many. Refuses a gap or a malformed
/// leaf key or block.
pub(crate) fn log_frontier(
    store: &dyn Storage,
    prefix: u64,
) -> Result<(audit::Frontier, Option<audit::Hash>), OfflineError> {
    let refuse = |r: RestoreRefusal| Err(OfflineError::RestoreRefused(r));
    let mut frontier = audit::Frontier::default();
    let mut root = (prefix == 0).then(audit::empty_root);
    let mut push = |index: u64, leaf: &[u8]| {
        if index != frontier.size() {
            return Err(RestoreRefusal::Gap {
                index: frontier.size(),
            });
        }
        frontier.push(audit::leaf_hash(leaf));
        if frontier.size() == prefix {
            root = Some(frontier.root());
        }
        Ok(())
    };
    // Leaves stored one per key (stores written before leaf blocks) come first, then
    // the blocks; anything out of order is a gap.
    for item in storage::scan_all(store, Tree::AuditLeaves) {
        let (key, leaf) = item?;
        let Ok(index) = log::key_index(&key) else {
            return refuse(RestoreRefusal::MalformedLeafKey);
        };
        if let Err(r) = push(index, &leaf) {
            return refuse(r);
        }
    }
    for item in storage::scan_all(store, Tree::AuditBlocks) {
        let (key, block) = item?;
        let Ok(start) = log::key_index(&key) else {
            return refuse(RestoreRefusal::MalformedLeafKey);
        };
        for (index, leaf) in (start..).zip(log::block_leaves(&block)) {
            let Ok(leaf) = leaf else {
                return refuse(RestoreRefusal::MalformedLeafKey);
            };
            if let Err(r) = push(index, leaf) {
                return refuse(r);
            }
        }
    }
    Ok((frontier, root))
}

/// Refuses a restored log that does not extend `published`: the root of its first
/// `published.size` leaves, from the exact stored leaf bytes, must be the published root.
pub(crate) fn check_extends(
    store: &dyn Storage,
    published: &Checkpoint,
) -> Result<(), OfflineError> {
    let refuse = |r: RestoreRefusal| Err(OfflineError::RestoreRefused(r));
    let (frontier, root) = log_frontier(store, published.size)?;
    if frontier.size() < published.size {
        return refuse(RestoreRefusal::Shorter {
            size: frontier.size(),
            published: published.size,
        });
    }
    if root != Some(published.root) {
        return refuse(RestoreRefusal::OtherRoot {
            published: published.size,
        });
    }
    Ok(())
}
