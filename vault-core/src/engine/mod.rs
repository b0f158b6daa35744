//! The `Vault` engine: the one API behind the server and the CLI. Every operation is one
//! atomic storage commit of its change plus its audit entry, durable (group-committed
//! fsync) before it returns; data is decrypted only after the entry that records its
//! release is durable.
//!
//! Layout of a vault data directory: `store/` (the sled store: keys, records, consents,
//! tokens, enrolments, the audit log), `policies/` (the policy files it enforces).

mod admin;
mod consents;
mod deferred;
mod error;
pub(crate) mod log;
#[cfg(feature = "test-hooks")]
pub use log::dangerous_forget_log;
mod notes;
mod notify;
mod ops;
mod secrets;
mod server_cert;
mod standby;
mod writes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use audit::{
    Actor, ActorKind, EntryDraft, LogState, NoteSigner, NoteVerifier, SignedCheckpoint, SubjectTag,
};
use policies::{PolicySet, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::envelope::CitizenId;
pub use crate::envelope::Plaintext;
pub use admin::{
    Bearer, CitizenToken, EnrolOutcome, ErasureOutcome, ImportOutcome, ImportRow, KeyKind,
    LeafView, RotateOutcome, TokenOutcome, TokenRequest, DEFAULT_AGENCY_CERT_DAYS,
    DEFAULT_TOKEN_DAYS, MAX_AGENCY_CERT_DAYS, MAX_IMPORT_ROWS, MAX_TOKEN_DAYS,
};
#[cfg(test)]
pub(crate) use consents::terms_item;
pub use consents::{
    ConsentRequestInput, ConsentView, GrantInput, MAX_CONSENT_REQUEST_DAYS, MAX_PENDING_REQUESTS,
};
pub use deferred::{Disclosure, MAX_DISCLOSURES_PER_ROUND, MAX_LIFT_REFERENCE};
pub use error::{AuditFailure, ConsentLimit, Internal, VaultError};
pub use notes::EntryText;
pub use notify::{
    citizen_event_type, Delivery, DeliveryKey, DeliveryOutcome, NotificationKey, NotificationStats,
    WebhookTarget, WebhookView, MAX_WEBHOOK_BATCH, MAX_WEBHOOK_URL, NOTIFY_FIRST_BACKOFF,
    NOTIFY_KEY_OVERLAP_DAYS, NOTIFY_MAX_BACKOFF, NOTIFY_RETRY_HOURS,
};
#[cfg(test)]
pub(crate) use ops::access_entry;
pub(crate) use ops::COVERT_ACCESS;
pub use ops::{
    AccessInput, AccessOutcome, CitizenExport, History, HistoryEntry, PendingAccess, RecordView,
    WriteOutcome, MAX_FIELD_NAME_LEN, MAX_REQUEST_FIELDS, MAX_TEXT,
};
pub(crate) use server_cert::stored_server_identity;
pub use server_cert::{SERVER_CERT_DAYS, SERVER_CERT_RENEW_BEFORE_DAYS};
pub use standby::{PublicLog, Standby};
pub use writes::{check_write, CheckedWrite, WriteRejected, MAX_WRITE_FIELDS};

use crate::auth::VaultKeys;
use crate::codec;
use crate::datadir::{self, Unsealed};
use crate::keys::NoteKey;
use crate::keys::Passphrase;
use crate::offline::OfflineError;
use crate::pki::{Ca, Fingerprint, Issued, Usage};
use crate::records::RecordOptions;
use crate::storage::StoreSpec;
use crate::storage::{CommitTicket, Storage, StorageError, Tree, WriteBatch};
use notes::CallerTexts;
use secrets::SealedSecret;
use server_cert::ServerTls;

/// Env variable that, set to `1` at open, arms the test-only audit failpoint (feature
/// `test-hooks`): while a file named [`DANGEROUS_FAIL_AUDIT_FILE`] exists in the data
/// directory, every audit append fails (so every operation fails closed).
#[cfg(feature = "test-hooks")]
pub const DANGEROUS_FAILPOINTS_ENV: &str = "VAULT_DANGEROUS_FAILPOINTS";
/// See [`DANGEROUS_FAILPOINTS_ENV`].
#[cfg(feature = "test-hooks")]
pub const DANGEROUS_FAIL_AUDIT_FILE: &str = "DANGEROUS_FAIL_AUDIT";
/// With [`DANGEROUS_FAILPOINTS_ENV`] armed: when a file of this name exists in the data
/// directory at the start of an operation's commit, it is removed and the store's next
/// durability step panics (as a bug in a backend would).
#[cfg(feature = "test-hooks")]
pub const DANGEROUS_PANIC_DURABILITY_FILE: &str = "DANGEROUS_PANIC_DURABILITY";
/// A file in the data directory whose content, a number of seconds, moves the clock that
/// deferred disclosures are judged by forward (feature `test-hooks`; read at each use).
#[cfg(feature = "test-hooks")]
pub const DANGEROUS_CLOCK_OFFSET_FILE: &str = "DANGEROUS_CLOCK_OFFSET";

/// Format of the engine configuration written before records were authenticated
/// (`[1] || CBOR`, no vault key): opened only by the upgrade.
const LEGACY_CONFIG_FORMAT: u8 = 1;
/// Format of the engine configuration: `[2] || CBOR || MAC` ([`crate::auth::RecordMac`]).
const META_FORMAT: u8 = 2;
pub(crate) const ENGINE_KEY: &[u8] = b"engine.config";

/// Meta key of the SHA-256 (hex) of the policy files in force when the vault recorded
/// their bytes ([`policy_files_digest`]); read only to upgrade to [`POLICY_SET_KEY`].
pub(crate) const POLICY_DIGEST_KEY: &[u8] = b"policies.digest";

/// Meta key of the digest (hex) of the policy set in force ([`policy_set_digest`]).
pub(crate) const POLICY_SET_KEY: &[u8] = b"policies.set";

/// The digest of a policy set: SHA-256 of its canonical form
/// ([`PolicySet::canonical_bytes`]), named by every decision entry (`policy_set`).
pub fn policy_set_digest(set: &PolicySet) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(
        ring::digest::digest(&ring::digest::SHA256, &set.canonical_bytes()).as_ref(),
    );
    out
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) over the policy files of `dir`, `*.toml` in name order: each name, its
/// length and its bytes (what [`POLICY_DIGEST_KEY`] held before the set's canonical
/// digest).
pub(crate) fn policy_files_digest(dir: &Path) -> Result<String, OfflineError> {
    let io = |e: std::io::Error| OfflineError::Io {
        what: "read",
        path: dir.to_path_buf(),
        source: e,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).map_err(io)?;
        for part in [name.as_bytes(), &bytes] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
const CONFIG_KIND: &str = "engine config";
const DAY: u64 = 86_400;

/// What `init` needs beyond the passphrase.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Names the server certificate is valid for (DNS names or IP addresses).
    pub hostnames: Vec<String>,
    /// The log's origin line and key name (e.g. `vault.example.gov/consent-log`).
    pub origin: String,
    /// DANGEROUS: fewer PBKDF2 iterations (dev mode and tests only; never below the floor).
    pub dangerous_kdf_iterations: Option<u32>,
}

/// What `init` hands to the operator once.
#[derive(Debug)]
pub struct InitOutput {
    /// The vault CA certificate (trust anchor for the server and agency certificates).
    pub ca_cert_pem: String,
    /// The operator's client certificate and key.
    pub operator: Issued,
    /// The log's note verifier key.
    pub log_verifier_key: String,
}

/// The engine's configuration, stored in `Meta` (secrets sealed under the KEK).
#[derive(Serialize, Deserialize)]
struct EngineConfig {
    origin: String,
    #[serde(with = "crate::serde_bytes")]
    ca_cert: Vec<u8>,
    #[serde(with = "crate::serde_bytes")]
    server_cert: Vec<u8>,
    operator_fp: Fingerprint,
    ca_key: SealedSecret,
    server_key: SealedSecret,
    log_seed: SealedSecret,
    receipt_seed: SealedSecret,
    /// The vault key ([`crate::auth::VaultKeys`]); absent only in a legacy configuration.
    #[serde(default)]
    record_key: Option<SealedSecret>,
}

impl EngineConfig {
    /// The sealed secrets, by name.
    fn secrets(&self) -> Vec<(&'static str, &SealedSecret)> {
        let mut out = vec![
            ("ca_key", &self.ca_key),
            ("server_key", &self.server_key),
            ("log_seed", &self.log_seed),
            ("receipt_seed", &self.receipt_seed),
        ];
        if let Some(k) = &self.record_key {
            out.push(("record_key", k));
        }
        out
    }
}

/// The stored engine configuration, WITHOUT checking its MAC, and whether it is a legacy
/// one (written before records were authenticated).
fn read_config_unchecked(bytes: &[u8]) -> Result<(EngineConfig, bool), VaultError> {
    if bytes.first() == Some(&LEGACY_CONFIG_FORMAT) {
        return Ok((
            codec::decode(CONFIG_KIND, LEGACY_CONFIG_FORMAT, bytes)?,
            true,
        ));
    }
    let body = crate::auth::RecordMac::strip_unchecked(bytes);
    Ok((codec::decode(CONFIG_KIND, META_FORMAT, body)?, false))
}

/// Opens the vault key sealed in `config` and derives its keys.
fn open_vault_keys(
    config: &EngineConfig,
    ring: &crate::records::KeyRing,
) -> Result<Arc<VaultKeys>, VaultError> {
    let sealed = config.record_key.as_ref().ok_or_else(|| {
        VaultError::internal(
            "the engine configuration has no vault key: the data directory is damaged or was tampered with; restore it from a backup",
        )
    })?;
    let kek = ring.get(sealed.kek_id).map_err(VaultError::internal)?;
    let key = sealed.open(kek, "record_key")?;
    Ok(Arc::new(VaultKeys::derive(&key)))
}

/// The engine configuration with its MAC checked, and the vault's derived keys. A legacy
/// configuration is refused with the upgrade verb to run.
fn load_config(
    bytes: &[u8],
    ring: &crate::records::KeyRing,
) -> Result<(EngineConfig, Arc<VaultKeys>), VaultError> {
    let (config, legacy) = read_config_unchecked(bytes)?;
    if legacy {
        return Err(upgrade_required());
    }
    let keys = open_vault_keys(&config, ring)?;
    keys.records()
        .open(CONFIG_KIND, Tree::Meta, ENGINE_KEY, bytes)?;
    Ok((config, keys))
}

/// The vault's derived keys from a stored engine configuration (a backup's), with the
/// configuration's MAC checked.
pub(crate) fn vault_keys_of_config(
    bytes: &[u8],
    ring: &crate::records::KeyRing,
) -> Result<Arc<VaultKeys>, VaultError> {
    Ok(load_config(bytes, ring)?.1)
}

fn upgrade_required() -> VaultError {
    VaultError::conflict(
        "upgrade_required",
        "this data directory was written by an earlier version of the vault, whose records are not authenticated: with the vault stopped, run `vault-cli upgrade --data-dir DIR` once (it authenticates every record as it is now and logs it), then start the vault. If this directory was already upgraded, do not run it: the configuration was tampered with, restore the directory from a backup",
    )
}

/// The stored form of `config`, with its MAC.
fn encode_config(config: &EngineConfig, keys: &VaultKeys) -> Result<Vec<u8>, VaultError> {
    Ok(keys.records().seal(
        Tree::Meta,
        ENGINE_KEY,
        codec::encode(CONFIG_KIND, META_FORMAT, config)?,
    ))
}

/// The checkpoint note stored at `key` in Meta (`what` names it in errors), verified with
/// the log's key.
fn stored_checkpoint(
    store: &dyn Storage,
    key: &[u8],
    log_vkey: &str,
    what: &str,
) -> Result<Option<SignedCheckpoint>, VaultError> {
    let Some(bytes) = store.get(Tree::Meta, key)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| VaultError::internal(format!("stored {what} is not UTF-8")))?;
    let verifier = NoteVerifier::parse(log_vkey).map_err(VaultError::internal)?;
    SignedCheckpoint::parse(&text, &verifier)
        .map(Some)
        .map_err(|e| VaultError::internal(format!("the stored {what} does not verify: {e}")))
}

/// The server's TLS identity: certificate chain (DER, leaf first) and PKCS#8 key.
pub type ServerIdentity = (Vec<Vec<u8>>, Zeroizing<Vec<u8>>);

/// The shortest time between two checkpoints signed for readers (history, export, the
/// background signer); the operator's explicit signing is not held back.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The checkpoint signer's state.
#[derive(Default)]
struct Signing {
    /// When the last checkpoint was signed.
    last: Option<Instant>,
    /// Checkpoints signed since open.
    count: u64,
}

/// An unsealed vault.
pub struct Vault {
    dir: PathBuf,
    unsealed: Unsealed,
    store: Arc<dyn Storage>,
    policy: PolicySet,
    /// [`policy_set_digest`] of `policy`.
    policy_digest: [u8; 32],
    writer: Mutex<Writer>,
    log_signer: NoteSigner,
    log_vkey: String,
    receipt_signer: NoteSigner,
    checkpoint: RwLock<SignedCheckpoint>,
    /// When `checkpoint` was signed (`None`: before this process signed one).
    signed_at: Mutex<Option<Instant>>,
    /// The last checkpoint published with a quorum of witness cosignatures: its size and
    /// note.
    witnessed: RwLock<Option<(u64, String)>>,
    /// Held while a checkpoint is signed; when the last one was and how many were.
    sign_lock: Mutex<Signing>,
    ca: Ca,
    /// The server certificate and key, replaced by a renewal.
    server_tls: RwLock<ServerTls>,
    /// Serialises server certificate renewals.
    renew_lock: Mutex<()>,
    operator_fp: Fingerprint,
    agency_pins: RwLock<HashMap<Fingerprint, crate::agencies::Pin>>,
    /// The keys derived from the vault key: record MACs, tombstones, backups.
    keys: Arc<VaultKeys>,
    /// Webhook endpoints, the notification key and delivery counters.
    notifier: notify::Notifier,
    /// The audit failpoint's file, when [`DANGEROUS_FAILPOINTS_ENV`] armed it.
    #[cfg(feature = "test-hooks")]
    fail_audit: Option<PathBuf>,
    /// Seconds added to the clock deferred disclosures are judged by (tests only).
    #[cfg(feature = "test-hooks")]
    clock_offset: std::sync::atomic::AtomicU64,
    stop: Arc<AtomicBool>,
    committer: Committer,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn now_parts() -> (Timestamp, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    (
        Timestamp::from_unix_seconds(d.as_secs()),
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    )
}

fn system(action: &str, time_ms: u64) -> EntryDraft {
    EntryDraft::new(
        time_ms,
        Actor {
            kind: ActorKind::System,
            id: "vault".to_owned(),
        },
        action,
        "done",
    )
}

/// The master keys that seal the vault's own secrets (CA, server, log and receipt keys).
pub(crate) fn secrets_sealed_under(store: &dyn Storage) -> Result<Vec<u32>, VaultError> {
    let Some(bytes) = store.get(Tree::Meta, ENGINE_KEY)? else {
        return Err(VaultError::internal(
            "the vault configuration is missing (half-initialised store)",
        ));
    };
    // Only which KEKs seal the secrets is read here (a tampered id can only refuse a
    // retirement, or let one through whose secret then fails to open).
    let (config, _) = read_config_unchecked(&bytes)?;
    Ok(config.secrets().iter().map(|(_, s)| s.kek_id).collect())
}

/// Who a bearer token speaks for, checked against the tokens in `store`.
pub(crate) fn authenticate_token(
    store: &dyn Storage,
    keys: &VaultKeys,
    token: &str,
) -> Result<Bearer, VaultError> {
    let (now, _) = now_parts();
    match crate::tokens::check(store, keys.records(), token, now) {

            Ok(r) => Ok(match r.role {
                crate::tokens::Role::Citizen { citizen } => Bearer::Citizen(CitizenToken {
                    citizen,
                    token_id: r.id,
                }),
                crate::tokens::Role::Auditor { name } => Bearer::Auditor {
                    name,
                    token_id: r.id,
                },
            }),
            Err(crate::tokens::TokenError::Invalid) => Err(VaultError::Unauthenticated {
                message: "the bearer token is not valid (unknown, expired or revoked): ask the vault operator for a new one".to_owned(),
            }),
            Err(e) => Err(VaultError::internal(e)),
        }
}

fn to_system_time(t: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.unix_seconds())
}

impl Vault {
    /// Initialises a new vault in `dir` (new or empty except `policies/`): the sealed master
    /// key, the CA, the server and operator certificates, the log and receipt signing keys,
    /// and the log's first entry. Reached through [`crate::DataDir::init`].
    pub(crate) fn init(
        spec: &StoreSpec,
        passphrase: &str,
        options: InitOptions,
        policy: &PolicySet,
    ) -> Result<InitOutput, OfflineError> {
        if options.origin.is_empty()
            || options.origin.len() > 200
            || options
                .origin
                .chars()
                .any(|c| c.is_whitespace() || c == '+')
        {
            return Err(VaultError::bad(
                "invalid_origin",
                "the log origin must be 1-200 characters without spaces or '+', e.g. vault.example.gov/consent-log",
            )
            .into());
        }
        if options.hostnames.is_empty() {
            return Err(VaultError::bad(
                "invalid_hostnames",
                "name at least one host name for the server certificate",
            )
            .into());
        }
        let (now, now_ms) = now_parts();
        let mut init_options = datadir::InitOptions::default();
        if let Some(i) = options.dangerous_kdf_iterations {
            init_options.kdf_iterations = i;
        }
        let unsealed = datadir::init_in(
            spec,
            &Passphrase::new(passphrase.to_owned()),
            init_options,
            now,
        )?;
        let start = to_system_time(now);
        let ca = Ca::generate(
            "consent vault CA",
            start,
            Duration::from_secs(10 * 365 * DAY),
        )
        .map_err(VaultError::internal)?;
        let server = ca
            .issue(
                Usage::Server,
                "consent vault server",
                &options.hostnames,
                start,
                start + Duration::from_secs(SERVER_CERT_DAYS * DAY),
            )
            .map_err(VaultError::internal)?;
        let operator = ca
            .issue(
                Usage::Client,
                "vault operator",
                &[],
                start,
                start + Duration::from_secs(2 * 365 * DAY),
            )
            .map_err(VaultError::internal)?;
        let log_signer = NoteSigner::generate(&options.origin).map_err(VaultError::internal)?;
        let receipt_signer = NoteSigner::generate(&format!("{}/receipts", options.origin))
            .map_err(VaultError::internal)?;
        let ring = unsealed.records().ring();
        let kek = ring.current();
        let vault_key = crate::auth::generate_vault_key().map_err(VaultError::internal)?;
        let keys = VaultKeys::derive(&vault_key);
        let config = EngineConfig {
            origin: options.origin.clone(),
            ca_cert: ca.cert_der().to_vec(),
            server_cert: server.cert_der.clone(),
            operator_fp: operator.fingerprint(),
            ca_key: SealedSecret::seal(kek, "ca_key", &ca.dangerous_private_key_der())?,
            server_key: SealedSecret::seal(kek, "server_key", server.private_key_der())?,
            log_seed: SealedSecret::seal(kek, "log_seed", log_signer.seed_bytes())?,
            receipt_seed: SealedSecret::seal(kek, "receipt_seed", receipt_signer.seed_bytes())?,
            record_key: Some(SealedSecret::seal(kek, "record_key", &vault_key)?),
        };
        drop(ring);
        let store = unsealed.store().clone();
        let mut batch = WriteBatch::new();
        batch.put(Tree::Meta, ENGINE_KEY, encode_config(&config, &keys)?);
        let digest = policy_set_digest(policy);
        batch.put(Tree::Meta, POLICY_SET_KEY, hex(&digest).into_bytes());
        let mut draft = system("vault.init", now_ms);
        draft.processing = Some("administration".to_owned());
        draft.policy_set = Some(digest);
        let state = LogState::new();
        let plan = state.plan(vec![draft]).map_err(VaultError::audit)?;
        log::stage_plan(&mut batch, &plan, &[], &log::OpenBlock::at(0))?;
        store.commit(batch)?;
        Ok(InitOutput {
            ca_cert_pem: ca.cert_pem(),
            operator,
            log_verifier_key: log_signer.verifier_key(),
        })
    }

    /// Opens and unseals the vault in `dir` with `passphrase`, loading its policy files
    /// from `dir/policies`. Reached through [`crate::DataDir::open`].
    pub(crate) fn open(
        dir: &Path,
        passphrase: &str,
        store: &StoreSpec,
        adopt_policies: bool,
    ) -> Result<Vault, OfflineError> {
        Self::open_with(dir, passphrase, false, store, adopt_policies).map(|(v, _)| v)
    }

    /// Opens the vault like [`Vault::open`]; with `upgrade`, a data directory written
    /// before records were authenticated is upgraded first (a vault key is created, every
    /// token, consent artefact, enrolment and the configuration get their MAC, tombstones
    /// keyed by a clear id are rekeyed and lose their time), in one commit with its audit
    /// entry `vault.upgrade`. Returns whether it upgraded.
    pub(crate) fn open_with(
        dir: &Path,
        passphrase: &str,
        upgrade: bool,
        store: &StoreSpec,
        adopt_policies: bool,
    ) -> Result<(Vault, bool), OfflineError> {
        let on_postgres = matches!(store, StoreSpec::Postgres { .. });
        let policy = PolicySet::load_dir(&dir.join("policies")).map_err(|errors| {
            OfflineError::InvalidPolicies {
                dir: dir.join("policies"),
                errors,
            }
        })?;
        let unsealed = datadir::unseal_in(
            store,
            &Passphrase::new(passphrase.to_owned()),
            RecordOptions::default(),
        )?;
        let store = unsealed.store().clone();
        let Some(config_bytes) = store.get(Tree::Meta, ENGINE_KEY)? else {
            return Err(OfflineError::from(datadir::DataDirError::NotInitialised {
                path: dir.to_path_buf(),
                half: true,
            }));
        };
        let (mut config, legacy) = read_config_unchecked(&config_bytes)?;
        let keys = if legacy {
            if !upgrade {
                return Err(upgrade_required().into());
            }
            let vault_key = crate::auth::generate_vault_key().map_err(VaultError::internal)?;
            let ring = unsealed.records().ring();
            config.record_key = Some(SealedSecret::seal(
                ring.current(),
                "record_key",
                &vault_key,
            )?);
            Arc::new(VaultKeys::derive(&vault_key))
        } else {
            let ring = unsealed.records().ring();
            load_config(&config_bytes, &ring)?.1
        };
        unsealed.records().install_vault_keys(keys.clone());
        let open = |s: &SealedSecret, name: &str| -> Result<Zeroizing<Vec<u8>>, VaultError> {
            let ring = unsealed.records().ring();
            let kek = ring.get(s.kek_id).map_err(VaultError::internal)?;
            s.open(kek, name)
        };
        let ca_key = open(&config.ca_key, "ca_key")?;
        let ca = Ca::from_der(&config.ca_cert, &ca_key).map_err(VaultError::internal)?;
        let server_key = open(&config.server_key, "server_key")?;
        let seed = |s: &SealedSecret, name: &str| -> Result<Zeroizing<[u8; 32]>, VaultError> {
            let bytes = open(s, name)?;
            let mut out = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(VaultError::internal(format!(
                    "sealed {name} is not 32 bytes"
                )));
            }
            out.copy_from_slice(&bytes);
            Ok(out)
        };
        let log_seed = seed(&config.log_seed, "log_seed")?;
        let log_signer =
            NoteSigner::from_seed(&config.origin, &log_seed).map_err(VaultError::internal)?;
        let receipt_seed = seed(&config.receipt_seed, "receipt_seed")?;
        let receipt_signer =
            NoteSigner::from_seed(&format!("{}/receipts", config.origin), &receipt_seed)
                .map_err(VaultError::internal)?;
        let log_vkey = log_signer.verifier_key();
        let size = log::stored_size(&*store)?;
        let state =
            LogState::load(&log::StoreLog::new(&*store), size).map_err(VaultError::audit)?;
        let last = stored_checkpoint(&*store, log::LAST_CHECKPOINT_KEY, &log_vkey, "checkpoint")?;
        let witnessed = stored_checkpoint(
            &*store,
            log::WITNESSED_CHECKPOINT_KEY,
            &log_vkey,
            "witnessed checkpoint",
        )?
        .map(|c| (c.checkpoint.size, c.note_text));
        let checkpoint = audit::sign_checkpoint(
            &log::StoreLog::new(&*store),
            &log_signer,
            size,
            last.as_ref().map(|c| &c.checkpoint),
        )
        .map_err(|source| OfflineError::LogInconsistent { size, source })?;
        store.commit({
            let mut b = WriteBatch::new();
            b.put(
                Tree::Meta,
                log::LAST_CHECKPOINT_KEY,
                checkpoint.note_text.as_bytes().to_vec(),
            );
            b
        })?;
        #[cfg(feature = "test-hooks")]
        let fail_audit = (std::env::var(DANGEROUS_FAILPOINTS_ENV).as_deref() == Ok("1"))
            .then(|| dir.join(DANGEROUS_FAIL_AUDIT_FILE));
        let vault = Vault {
            dir: dir.to_path_buf(),
            unsealed,
            policy_digest: policy_set_digest(&policy),
            policy,
            writer: Mutex::new(Writer {
                block: log::OpenBlock::at(state.size()),
                log: state,
                latest: log::LatestAbout::default(),
                applied: None,
            }),
            log_signer,
            log_vkey,
            receipt_signer,
            checkpoint: RwLock::new(checkpoint),
            signed_at: Mutex::new(None),
            witnessed: RwLock::new(witnessed),
            sign_lock: Mutex::new(Signing::default()),
            ca,
            server_tls: RwLock::new(ServerTls {
                cert: config.server_cert.clone(),
                key: server_key,
            }),
            renew_lock: Mutex::new(()),
            operator_fp: config.operator_fp,
            agency_pins: RwLock::new(HashMap::new()),
            notifier: notify::Notifier::open(&*store, &keys, size)?,
            keys,
            #[cfg(feature = "test-hooks")]
            fail_audit,
            #[cfg(feature = "test-hooks")]
            clock_offset: std::sync::atomic::AtomicU64::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            committer: Committer::start(&store),
            store,
        };
        if legacy {
            vault.upgrade_records(&config)?;
        }
        consents::build_index(&*vault.store, vault.keys.records())?;
        deferred::encrypt_legacy(&*vault.store, &vault.keys)?;
        let mut pins = HashMap::new();
        for e in crate::agencies::list(&*vault.store, vault.keys.records())
            .map_err(VaultError::internal)?
        {
            pins.extend(e.live_pins());
        }
        *vault
            .agency_pins
            .write()
            .unwrap_or_else(PoisonError::into_inner) = pins;
        // Several nodes on one database enforce one policy set: a node whose files differ
        // from the recorded set is refused unless told to adopt its own.
        let strict = on_postgres && !adopt_policies;
        vault.record_policy_digest(&dir.join("policies"), strict)?;
        Ok((vault, legacy))
    }

    /// Records the policy set this open loaded when it differs from the one recorded (at
    /// init or the last change): the entry `policies.adopt` naming the new digest
    /// (`policy_set`, and in `initiator` with the old one). An open with the recorded set
    /// writes no entry: `vault.init` or the last `policies.adopt` names it, and so does
    /// every decision made under it. With `strict`, a change is refused instead
    /// ([`OfflineError::PolicyMismatch`]). A vault that recorded only its files' digest
    /// ([`POLICY_DIGEST_KEY`]) keeps its set when the files are the same, and records the
    /// set's digest then.
    fn record_policy_digest(&self, dir: &Path, strict: bool) -> Result<(), OfflineError> {
        let local = hex(&self.policy_digest);
        let stored = match self.store.get(Tree::Meta, POLICY_SET_KEY)? {
            Some(s) => Some(String::from_utf8_lossy(&s).into_owned()),
            None => match self.store.get(Tree::Meta, POLICY_DIGEST_KEY)? {
                Some(files) if files == policy_files_digest(dir)?.as_bytes() => Some(local.clone()),
                Some(files) => Some(format!("{} (files)", String::from_utf8_lossy(&files))),
                None => None,
            },
        };
        let same = stored.as_deref() == Some(local.as_str());
        if let (false, true, Some(stored)) = (same, strict, &stored) {
            return Err(OfflineError::PolicyMismatch {
                stored: stored.clone(),
                local,
            });
        }
        if same {
            if self.store.get(Tree::Meta, POLICY_SET_KEY)?.is_none() {
                let mut b = WriteBatch::new();
                b.put(Tree::Meta, POLICY_SET_KEY, local.as_bytes().to_vec());
                self.store.commit(b)?;
            }
            return Ok(());
        }
        let (_, now_ms) = now_parts();
        self.transact(|tx| {
            tx.batch
                .put(Tree::Meta, POLICY_SET_KEY, local.as_bytes().to_vec());
            let mut d = system("policies.adopt", now_ms);
            d.processing = Some("administration".to_owned());
            d.policy_set = Some(self.policy_digest);
            d.initiator = Some(format!(
                "policy set sha256:{local} replaces {}",
                stored
                    .as_deref()
                    .map_or("none recorded".to_owned(), |s| format!("sha256:{s}"))
            ));
            tx.entry(d);
            Ok(())
        })?;
        Ok(())
    }

    /// The digest of the policy set in force ([`policy_set_digest`]).
    pub fn policy_digest(&self) -> [u8; 32] {
        self.policy_digest
    }

    /// The vault CA certificate (DER): the trust anchor for client certificates.
    pub fn ca_cert_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// DANGEROUS, dev mode only: the CA private key as PEM.
    pub fn dangerous_ca_key_pem(&self) -> Result<Zeroizing<String>, VaultError> {
        use base64::Engine as _;
        let der = self.ca.dangerous_private_key_der();
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*der));
        let mut pem = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    /// The policy set in force.
    pub fn policy(&self) -> &PolicySet {
        &self.policy
    }

    /// False once the store failed (a failed or panicked durability step or write): every
    /// data operation then answers [`VaultError::Unavailable`] until the server restarts.
    pub fn is_available(&self) -> bool {
        !self.store.is_poisoned()
    }

    /// The store's backend, its writer lease and round trip (PostgreSQL), for health checks.
    pub fn store_health(&self) -> crate::StoreHealth {
        self.store.health()
    }

    /// Records that this node became the active one of a vault on PostgreSQL (it took
    /// the writer lease): the entry `vault.activate`, naming the node and the lease epoch.
    pub fn record_activation(&self) -> Result<u64, VaultError> {
        let (_, now_ms) = now_parts();
        let health = self.store.health();
        let ((), index) = self.transact(|tx| {
            let mut d = system("vault.activate", now_ms);
            d.processing = Some("administration".to_owned());
            d.initiator = health
                .lease
                .as_ref()
                .map(|l| format!("node={} epoch={}", l.holder, l.epoch));
            tx.entry(d);
            Ok(())
        })?;
        Ok(index)
    }

    /// Number of entries in the audit log.
    pub fn audit_size(&self) -> u64 {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .size()
    }

    /// Every second, until [`Vault::shutdown`] or the vault is dropped: discloses the
    /// deferred accesses whose deadline passed ([`Vault::disclose_due`]) and signs a
    /// checkpoint of the log if it grew.
    pub fn start_background_signer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let stop = self.stop.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(vault) = weak.upgrade() else { return };
            // Deferred accesses whose deadline passed are disclosed here, by the node
            // that writes (a standby runs no `Vault`). The notifications of these
            // disclosures are to be taken from the returned `Disclosure`s.
            if let Err(e) = vault.disclose_due() {
                eprintln!("deferred disclosure failed: {e}");
            }
            if let Err(e) = vault.sign_if_grown() {
                // To the process's stderr (the server's log); never fatal to serving: the
                // next tick tries again.
                eprintln!("checkpoint signing failed: {e}");
            }
        });
    }

    /// Stops the background signer.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn sign_if_grown(&self) -> Result<(), VaultError> {
        self.checkpoint_covering(self.audit_size())
    }

    /// Signs (and durably records) a checkpoint of the whole log now; returns the note.
    pub fn sign_checkpoint_now(&self) -> Result<String, VaultError> {
        let mut signing = self
            .sign_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.sign_locked(&mut signing)?;
        Ok(self.latest_checkpoint_text())
    }

    /// Returns once the latest checkpoint covers the first `size` entries, signing one if
    /// it does not: at most one per [`CHECKPOINT_INTERVAL`], whatever the read rate. A
    /// reader that comes sooner waits for the interval's end, and the readers waiting
    /// meanwhile share the signature it brings.
    pub(crate) fn checkpoint_covering(&self, size: u64) -> Result<(), VaultError> {
        if self.checkpoint_size() >= size {
            return Ok(());
        }
        let mut signing = self
            .sign_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.checkpoint_size() >= size {
            return Ok(());
        }
        if let Some(next) = signing.last.map(|t| t + CHECKPOINT_INTERVAL) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        self.sign_locked(&mut signing)
    }

    /// Checkpoints signed since the vault was opened.
    pub fn checkpoints_signed(&self) -> u64 {
        self.sign_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }

    /// The vault's store, to arm its failpoints (tests only).
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_store(&self) -> &dyn Storage {
        &*self.store
    }

    /// Signs a checkpoint of the whole log if it grew since the last one.
    fn sign_locked(&self, signing: &mut Signing) -> Result<(), VaultError> {
        let size = self.audit_size();
        let last = self
            .checkpoint
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .checkpoint
            .clone();
        if size == last.size {
            return Ok(());
        }
        // A node that lost its writer lease (or may have: a paused process) signs nothing.
        if !self.store.holds_lease() {
            let epoch = self.store.health().lease.map_or(0, |l| l.epoch);
            return Err(VaultError::Unavailable(StorageError::LeaseLost { epoch }));
        }
        let signed = audit::sign_checkpoint(
            &log::StoreLog::new(&*self.store),
            &self.log_signer,
            size,
            Some(&last),
        )
        .map_err(VaultError::audit)?;
        let mut b = WriteBatch::new();
        b.put(
            Tree::Meta,
            log::LAST_CHECKPOINT_KEY,
            signed.note_text.as_bytes().to_vec(),
        );
        self.store.commit(b)?;
        *self
            .checkpoint
            .write()
            .unwrap_or_else(PoisonError::into_inner) = signed;
        let now = Instant::now();
        *self
            .signed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
        signing.last = Some(now);
        signing.count += 1;
        Ok(())
    }

    fn latest_checkpoint_text(&self) -> String {
        self.checkpoint
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .note_text
            .clone()
    }

    /// The latest signed checkpoint (note text).
    pub fn latest_checkpoint(&self) -> Result<String, VaultError> {
        Ok(self.latest_checkpoint_text())
    }

    /// The latest signed checkpoint and when this process signed it (`None`: signed
    /// before this process started).
    pub fn latest_checkpoint_signed_at(&self) -> (String, Option<Instant>) {
        let at = *self
            .signed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (self.latest_checkpoint_text(), at)
    }

    /// The last checkpoint published with a quorum of witness cosignatures, if any.
    pub fn witnessed_checkpoint(&self) -> Option<String> {
        self.witnessed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, note)| note.clone())
    }

    /// Publishes `note`, a checkpoint of this log with its witnesses' cosignatures, once
    /// they meet `policy`'s quorum: the note must be signed by this log, its tree must be
    /// this log's at that size (no fork), and its size at least the last published one's
    /// (no rollback). Durable before it returns; a node without the writer lease publishes
    /// nothing.
    pub fn publish_witnessed(
        &self,
        note: &str,
        policy: &audit::WitnessPolicy,
    ) -> Result<audit::WitnessedCheckpoint, VaultError> {
        let own = NoteVerifier::parse(&self.log_vkey).map_err(VaultError::internal)?;
        let signed = SignedCheckpoint::parse(note, &own).map_err(|e| {
            VaultError::bad(
                "not_this_log",
                format!("the checkpoint is not this log's: {e}"),
            )
        })?;
        let witnessed = policy.check(note).map_err(|e| {
            VaultError::bad(
                "bad_cosignature",
                format!("the checkpoint fails the witness policy: {e}"),
            )
        })?;
        if !witnessed.quorum_met {
            return Err(VaultError::conflict(
                "below_quorum",
                format!(
                    "cosigned by {} ({}), below the witness policy's quorum",
                    witnessed.cosigned_by.len(),
                    witnessed.cosigned_by.join(", ")
                ),
            ));
        }
        let c = &signed.checkpoint;
        if c.size > self.audit_size()
            || audit::root(&log::StoreLog::new(&*self.store), c.size).map_err(VaultError::audit)?
                != c.root
        {
            return Err(VaultError::conflict(
                "not_this_tree",
                format!("the checkpoint of size {} is not this log's tree", c.size),
            ));
        }
        let mut slot = self
            .witnessed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((size, _)) = slot.as_ref() {
            if *size > c.size {
                return Err(VaultError::conflict(
                    "rollback",
                    format!(
                        "a checkpoint of size {size} is published already; {} is older",
                        c.size
                    ),
                ));
            }
        }
        if !self.store.holds_lease() {
            let epoch = self.store.health().lease.map_or(0, |l| l.epoch);
            return Err(VaultError::Unavailable(StorageError::LeaseLost { epoch }));
        }
        let mut b = WriteBatch::new();
        b.put(
            Tree::Meta,
            log::WITNESSED_CHECKPOINT_KEY,
            note.as_bytes().to_vec(),
        );
        self.store.commit(b)?;
        *slot = Some((c.size, note.to_owned()));
        Ok(witnessed)
    }

    /// The log's note verifier key.
    pub fn log_verifier_key(&self) -> &str {
        &self.log_vkey
    }

    /// The active node's side of [`PublicLog`] (the same answers a standby gives).
    pub fn public_log(self: &Arc<Self>) -> Arc<dyn PublicLog> {
        self.clone()
    }

    /// The consent receipts' note verifier key.
    pub fn receipt_verifier_key(&self) -> String {
        self.receipt_signer.verifier_key()
    }

    /// The data directory this vault was opened from.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The pin of the operator certificate made at `init` (public: a certificate's hash).
    pub fn operator_fingerprint(&self) -> Fingerprint {
        self.operator_fp
    }

    /// True when `fp` is the operator certificate made at `init`.
    pub fn is_operator(&self, fp: &Fingerprint) -> bool {
        crate::ct::eq(&fp.0, &self.operator_fp.0)
    }

    /// The agency a client certificate is pinned to, if the certificate is neither
    /// revoked nor expired now (checked on every request, so an open connection is
    /// refused from its next request).
    pub fn authenticate_agency(&self, fp: &Fingerprint) -> Result<String, VaultError> {
        self.authenticate_agency_at(fp, now_parts().0)
    }

    /// [`Vault::authenticate_agency`] at `now`.
    pub(crate) fn authenticate_agency_at(
        &self,
        fp: &Fingerprint,
        now: Timestamp,
    ) -> Result<String, VaultError> {
        let pins = self
            .agency_pins
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let refusal = match pins.get(fp).map(|p| p.check(now)) {
            Some(Ok(agency)) => return Ok(agency.to_owned()),
            Some(Err(r)) => r,
            None => crate::agencies::PinRefusal::Unknown,
        };
        Err(VaultError::Unauthenticated {
            message: match refusal {
                crate::agencies::PinRefusal::Expired(t) => format!(
                    "this client certificate expired at {t}: ask the vault operator to enrol the agency again"
                ),
                crate::agencies::PinRefusal::Unknown => "this client certificate is not enrolled for any agency, or it was revoked: ask the vault operator".to_owned(),
            },
        })
    }

    /// Who a bearer token speaks for; a citizen's comes with the token's public id, which
    /// the entries of what is done with it name.
    pub fn authenticate_token(&self, token: &str) -> Result<Bearer, VaultError> {
        authenticate_token(&*self.store, &self.keys, token)
    }

    /// Runs `f` under the writer lock, then appends its audit drafts and commits its batch
    /// with them in one atomic, durable commit. Returns `f`'s result and the index of the
    /// first entry appended. Nothing is written if `f` fails or the append fails.
    fn transact<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, VaultError>,
    ) -> Result<(T, u64), VaultError> {
        let (out, index, ticket) = self.transact_applied(f)?;
        self.store.wait_durable(ticket)?;
        Ok((out, index))
    }

    /// Waits, without blocking a thread, until the batch of `ticket` is durable: the
    /// committer thread runs the durability step ([`Committer`]).
    async fn durable(&self, ticket: CommitTicket) -> Result<(), VaultError> {
        let mut asked = false;
        std::future::poll_fn(|cx| {
            let poll = self.store.poll_durable(ticket, cx.waker());
            if poll.is_pending() && !asked {
                asked = true;
                self.committer.ask(ticket);
            }
            poll
        })
        .await?;
        Ok(())
    }

    /// [`Vault::transact`] up to the applied batch: the caller must wait for `ticket` to be
    /// durable before acknowledging anything or releasing data.
    fn transact_applied<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, VaultError>,
    ) -> Result<(T, u64, CommitTicket), VaultError> {
        let (out, index, ticket, ()) = self.transact_applied_then(f, |_| ())?;
        Ok((out, index, ticket))
    }

    /// [`Vault::transact_applied`], then `then` on the store while the writer lock is still
    /// held: it sees the applied batch and nothing committed after it.
    fn transact_applied_then<T, U>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, VaultError>,
        then: impl FnOnce(&dyn Storage) -> U,
    ) -> Result<(T, u64, CommitTicket, U), VaultError> {
        let mut state = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tx = Tx {
            vault: self,
            batch: WriteBatch::new(),
            drafts: Vec::new(),
            notes: Vec::new(),
            about: Vec::new(),
            deferring: Vec::new(),
        };
        let out = f(&mut tx)?;
        let Tx {
            mut batch,
            mut drafts,
            notes,
            about,
            deferring,
            ..
        } = tx;
        #[cfg(feature = "test-hooks")]
        if let Some(f) = &self.fail_audit {
            if f.exists() {
                return Err(VaultError::audit(AuditFailure::Failpoint));
            }
            let panic_file = self.dir.join(DANGEROUS_PANIC_DURABILITY_FILE);
            if std::fs::remove_file(&panic_file).is_ok() {
                self.store.dangerous_panic_next_durability();
            }
        }
        let base = state.log.size();
        let mut subjects: Vec<(u64, SubjectTag, Vec<u8>)> = Vec::new();
        for (i, ((d, note), deferring)) in drafts.iter_mut().zip(&notes).zip(&deferring).enumerate()
        {
            if let Some(def) = deferring {
                // A deferred entry: its tag is used once and indexed under no subject; its
                // texts are sealed for the citizen's tag, kept in its pending row.
                let index = base + i as u64;
                let sealed = match note {
                    Some((key, texts)) => notes::seal(key, &def.tag, index, texts)?,
                    None => Vec::new(),
                };
                let disclose_at = match d.deferral {
                    Some(audit::Deferral::Deferred { disclose_at }) => disclose_at,
                    _ => {
                        return Err(VaultError::internal(
                            "a deferred draft without its deferral",
                        ))
                    }
                };
                d.subject_prev = None;
                deferred::stage_pending(&mut batch, &self.keys, index, def, disclose_at, sealed)?;
                continue;
            }
            if let Some(tag) = d.subject {
                let in_tx = subjects
                    .iter()
                    .rev()
                    .find(|(_, t, _)| *t == tag)
                    .map(|(i, _, _)| *i);
                d.subject_prev = match in_tx {
                    Some(i) => Some(i),
                    None => state.latest.get(&*self.store, &tag)?,
                };
                let index = base + i as u64;
                let sealed = match note {
                    Some((key, texts)) => notes::seal(key, &tag, index, texts)?,
                    None => Vec::new(),
                };
                subjects.push((index, tag, sealed));
            }
        }
        let mut fresh_tags = Vec::new();
        for (i, (d, citizen)) in drafts.iter().zip(&about).enumerate() {
            if let Some(citizen) = citizen {
                self.notifier.stage(
                    &*self.store,
                    &mut batch,
                    &self.keys,
                    d,
                    base + i as u64,
                    citizen,
                    &mut fresh_tags,
                )?;
            }
        }
        let plan = state.log.plan(drafts).map_err(VaultError::audit)?;
        let block = log::stage_plan(&mut batch, &plan, &subjects, &state.block)?;
        let ticket = self.store.apply(batch)?;
        state.applied = Some(ticket);
        self.notifier.tags_stored(&self.keys, fresh_tags);
        state.log.apply(&plan).map_err(VaultError::audit)?;
        state.block = block;
        state.latest.record(&subjects);
        let after = then(&*self.store);
        drop(state);
        Ok((out, plan.first_index, ticket, after))
    }
}

/// The thread that runs durability steps for async waiters ([`Vault::durable`]): they ask
/// for a ticket and it calls the store's blocking `wait_durable` (leading the group
/// commit, or joining the one under way), so no thread is parked per waiting request. It
/// holds the store only weakly and only while waiting, so dropping the vault closes the
/// store; it exits when the vault is dropped.
struct Committer {
    asked: Arc<(Mutex<CommitterState>, std::sync::Condvar)>,
}

#[derive(Default)]
struct CommitterState {
    /// The highest ticket asked for.
    wanted: Option<CommitTicket>,
    stop: bool,
}

impl Committer {
    fn start(store: &Arc<dyn Storage>) -> Committer {
        let asked: Arc<(Mutex<CommitterState>, std::sync::Condvar)> = Arc::default();
        let shared = asked.clone();
        let store = Arc::downgrade(store);
        std::thread::spawn(move || loop {
            let ticket = {
                let (lock, cvar) = &*shared;
                let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if state.stop {
                        return;
                    }
                    if let Some(t) = state.wanted.take() {
                        break t;
                    }
                    state = cvar.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let Some(store) = store.upgrade() else { return };
            // An error poisons the store and wakes every waiter with it; nothing to do here.
            let _ = store.wait_durable(ticket);
        });
        Committer { asked }
    }

    fn ask(&self, ticket: CommitTicket) {
        let (lock, cvar) = &*self.asked;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if state.wanted.is_none_or(|w| w < ticket) {
            state.wanted = Some(ticket);
            cvar.notify_one();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.asked;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cvar.notify_one();
    }
}

/// What the writer lock guards: the log's right edge, the leaf block being filled, and
/// the latest entry about recently seen subjects.
struct Writer {
    log: LogState,
    block: log::OpenBlock,
    latest: log::LatestAbout,
    /// The ticket of the last batch that appended entries (`None`: none since open, the
    /// log read at open being durable).
    applied: Option<CommitTicket>,
}

/// One transaction being built under the writer lock.
struct Tx<'a> {
    vault: &'a Vault,
    batch: WriteBatch,
    drafts: Vec<EntryDraft>,
    /// For each draft, the free texts to seal for its subject, under that subject's key.
    notes: Vec<Option<(NoteKey, Vec<EntryText>)>>,
    /// For each draft, the citizen it notifies about ([`Tx::notify_about`]).
    about: Vec<Option<CitizenId>>,
    /// For each draft, whose deferred access it is (`None`: not deferred).
    deferring: Vec<Option<deferred::Deferring>>,
}

impl Tx<'_> {
    fn store(&self) -> &dyn Storage {
        &*self.vault.store
    }

    fn entry(&mut self, draft: EntryDraft) {
        self.drafts.push(draft);
        self.notes.push(None);
        self.about.push(None);
        self.deferring.push(None);
    }

    /// Marks the last entry as one that notifies about `citizen`: the events it produces
    /// (`notify.rs`) are queued in the same commit.
    fn notify_about(&mut self, citizen: &CitizenId) {
        if let Some(last) = self.about.last_mut() {
            *last = Some(citizen.clone());
        }
    }

    /// Appends `draft` with a caller's free texts: the leaf gets their commitments; the
    /// texts and salts are sealed under `key`, the note key of the draft's subject, in the
    /// entry's subject row. Without a subject (or a key) only the commitments are kept.
    fn entry_with_texts(
        &mut self,
        mut draft: EntryDraft,
        texts: CallerTexts,
        key: Option<NoteKey>,
    ) -> Result<(), VaultError> {
        let texts = texts.commit_into(&mut draft)?;
        let note = match key {
            Some(key) if draft.subject.is_some() && !texts.is_empty() => Some((key, texts)),
            _ => None,
        };
        self.drafts.push(draft);
        self.notes.push(note);
        self.about.push(None);
        self.deferring.push(None);
        Ok(())
    }

    /// Appends `draft`, an access to be disclosed later, as the deferred entry of the
    /// citizen of `deferring`: its subject becomes the deferred tag (under a fresh
    /// opening), `deferral` its deadline; its texts are sealed for the citizen and kept
    /// with the pending row until disclosure (`deferred.rs`).
    fn deferred_entry(
        &mut self,
        mut draft: EntryDraft,
        texts: CallerTexts,
        key: NoteKey,
        citizen: &str,
        tag: SubjectTag,
        disclose_at: Option<u64>,
    ) -> Result<(), VaultError> {
        let mut opening = [0u8; 32];
        crate::keys::fill_random(&mut opening).map_err(VaultError::internal)?;
        draft.subject = Some(audit::deferred_tag(&tag, &opening));
        draft.subject_prev = None;
        draft.deferral = Some(audit::Deferral::Deferred { disclose_at });
        let texts = texts.commit_into(&mut draft)?;
        self.drafts.push(draft);
        self.notes.push((!texts.is_empty()).then_some((key, texts)));
        self.about.push(None);
        self.deferring.push(Some(deferred::Deferring {
            citizen: citizen.to_owned(),
            tag,
            opening,
        }));
        Ok(())
    }
}

/// A data directory in a new temporary folder, initialised with the example policies, a
/// fast KDF and `hostnames` on its server certificate (unit tests).
#[cfg(test)]
pub(crate) fn test_data_dir(
    passphrase: &str,
    hostnames: &[&str],
) -> (tempfile::TempDir, crate::DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::DataDir::new(tmp.path().join("data"));
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    dir.init(
        passphrase,
        &policies,
        InitOptions {
            hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
            origin: "test.example/log".to_owned(),
            dangerous_kdf_iterations: Some(10_000),
        },
    )
    .unwrap();
    (tmp, dir)
}
