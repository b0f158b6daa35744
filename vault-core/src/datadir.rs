//! The data directory: `init` (a new store with a sealed master key), `unseal` (the handle
//! the engine works with), `status` (readable without the passphrase), KEK rotation and
//! retirement, and `compact` (rewrites the store so that deleted values leave sled's log).
//!
//! `Tree::Meta` keys written here (formats in `docs/keys.md`):
//! - `vault.initialised`: the init marker, written in the same commit as the first sealed
//!   KEK, so a store without it is a half-initialised directory;
//! - `kek/` + id (u32 BE): a [`SealedKek`];
//! - `kek.current`: the id (u32 BE) of the KEK that wraps new keys;
//! - `kek.rotation`: an unfinished KEK rotation (its target id and start time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use policies::Timestamp;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::keys::{
    KdfParams, Kek, KeyError, Passphrase, PassphraseCheck, SealedKek, SealingKey,
    DEFAULT_KDF_ITERATIONS,
};
use crate::records::{
    in_batches, KeyRing, Progress, RecordError, RecordOptions, Records, REWRAP_BATCH,
};
use crate::storage::sled::SledOptions;
use crate::storage::{SledStore, Storage, StorageError, StoreSpec, Tree, WriteBatch};

/// Version of the data directory layout described in `docs/keys.md`.
pub const VAULT_FORMAT_VERSION: u8 = 1;
/// Meta key of the init marker.
pub const INIT_KEY: &[u8] = b"vault.initialised";
const KEK_PREFIX: &[u8] = b"kek/";
const KEK_CURRENT: &[u8] = b"kek.current";
const KEK_ROTATION: &[u8] = b"kek.rotation";
const META_FORMAT: u8 = 1;
/// File, beside sled's, holding the passphrase check values (`docs/keys.md`).
pub const PASSPHRASE_CHECK_FILE: &str = "vault.passphrase-check";
const CHECK_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct CheckFile {
    checks: Vec<PassphraseCheck>,
}

/// Writes the check file atomically (temporary file, fsync, rename, fsync directory).
fn write_check_file(dir: &Path, checks: Vec<PassphraseCheck>) -> Result<(), DataDirError> {
    use std::io::Write as _;
    let bytes = codec::encode("passphrase check file", CHECK_FORMAT, &CheckFile { checks })?;
    let path = dir.join(PASSPHRASE_CHECK_FILE);
    let tmp = dir.join(format!("{PASSPHRASE_CHECK_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io("write", &tmp))?;
    f.write_all(&bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(())
}

/// Checks `passphrase` against the check file, if there is one, without opening the store;
/// returns the derived keys that matched (reused to open the sealed KEKs).
fn precheck(dir: &Path, passphrase: &Passphrase) -> Result<Vec<SealingKey>, DataDirError> {
    let path = dir.join(PASSPHRASE_CHECK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let file: CheckFile = codec::decode("passphrase check file", CHECK_FORMAT, &bytes)?;
    let mut matched = Vec::new();
    let mut last_id = 0;
    for check in &file.checks {
        last_id = check.kek_id;
        let key = SealingKey::derive(passphrase, &check.kdf)?;
        if check.matches(&key) {
            matched.push(key);
        }
    }
    if matched.is_empty() && !file.checks.is_empty() {
        return Err(KeyError::WrongPassphrase { kek_id: last_id }.into());
    }
    Ok(matched)
}

#[derive(Serialize, Deserialize)]
struct InitMarker {
    created_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct KekRotation {
    target: u32,
    started_at: Timestamp,
}

fn kek_key(id: u32) -> Vec<u8> {
    let mut k = KEK_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Why a data-directory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// `init` on a directory that already holds a store.
    #[error("{path} is already initialised: use `vault-cli status` to inspect it, or choose a new directory")]
    AlreadyInitialised {
        /// The directory.
        path: PathBuf,
    },
    /// The directory holds no initialised vault.
    #[error("{path} is not an initialised vault{}: run `vault-cli init`", if *.half { " (half-initialised: delete it and initialise again)" } else { "" })]
    NotInitialised {
        /// The directory.
        path: PathBuf,
        /// A store exists but the init commit never happened.
        half: bool,
    },
    /// A key operation failed (wrong passphrase included).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A record or key-record operation failed.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored value does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The KEK to retire still wraps some citizens' keys.
    #[error("master key {kek_id} still wraps {wraps} citizen keys: finish a rotation (`vault-cli keys rotate`) before retiring it")]
    KekInUse {
        /// The KEK.
        kek_id: u32,
        /// Wrapped keys under it.
        wraps: u64,
    },
    /// The KEK to retire still seals the vault's own secrets.
    #[error("the vault's own keys are still sealed under master key {kek_id} (an interrupted rotation?): run `vault-cli keys rotate --kind kek` first")]
    KekSealsSecrets {
        /// The KEK.
        kek_id: u32,
    },
    /// The KEK to retire is the current one.
    #[error("master key {kek_id} is the current one: rotate to a new master key first")]
    KekIsCurrent {
        /// The KEK.
        kek_id: u32,
    },
    /// No such KEK.
    #[error("there is no master key {kek_id}: see `vault-cli status` for the ids")]
    UnknownKek {
        /// The KEK.
        kek_id: u32,
    },
    /// A KEK rotation is unfinished.
    #[error("a rotation to master key {target} is unfinished: run the rotation again to complete it first")]
    RotationInProgress {
        /// Its target KEK.
        target: u32,
    },
    /// A file-system step of `compact` failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl DataDirError {
    /// A stable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            DataDirError::AlreadyInitialised { .. } => "already_initialised",
            DataDirError::NotInitialised { .. } => "not_initialised",
            DataDirError::Key(e) => e.code(),
            DataDirError::Records(e) => e.code(),
            DataDirError::Storage(_) => "storage",
            DataDirError::Codec(_) => "corrupt_value",
            DataDirError::KekInUse { .. } => "kek_in_use",
            DataDirError::KekSealsSecrets { .. } => "kek_seals_secrets",
            DataDirError::KekIsCurrent { .. } => "kek_is_current",
            DataDirError::UnknownKek { .. } => "unknown_kek",
            DataDirError::RotationInProgress { .. } => "rotation_in_progress",
            DataDirError::Io { .. } => "io",
        }
    }
}

/// Options of `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// PBKDF2 iterations ([`DEFAULT_KDF_ITERATIONS`]; never below
    /// [`crate::keys::MIN_KDF_ITERATIONS`]).
    pub kdf_iterations: u32,
    /// Options of the record store of the returned handle.
    pub records: RecordOptions,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf_iterations: DEFAULT_KDF_ITERATIONS,
            records: RecordOptions::default(),
        }
    }
}

/// What `status` reports, without the passphrase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The data directory layout version this program writes.
    pub format_version: u8,
    /// The init commit happened.
    pub initialised: bool,
    /// When `init` ran.
    pub created_at: Option<Timestamp>,
    /// The sealed KEKs, ascending.
    pub kek_ids: Vec<u32>,
    /// The KEK that wraps new keys.
    pub current_kek: Option<u32>,
    /// An unfinished KEK rotation's target.
    pub kek_rotation_target: Option<u32>,
    /// PBKDF2 iterations of the current KEK's seal.
    pub kdf_iterations: Option<u32>,
    /// Citizens with keys.
    pub citizens: u64,
    /// Erased citizens (tombstones).
    pub erased_citizens: u64,
    /// Records stored.
    pub records: u64,
    /// Wrapped citizen keys per KEK id.
    pub wraps_per_kek: BTreeMap<u32, u64>,
}

/// An unsealed data directory: the store and the record store holding the KEKs.
pub struct Unsealed {
    /// The sled directory holding the passphrase check file (none for PostgreSQL).
    check_dir: Option<PathBuf>,
    store: Arc<dyn Storage>,
    records: Records,
    sealing: Mutex<SealingKey>,
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

fn read_sealed_keks(store: &dyn Storage) -> Result<Vec<SealedKek>, DataDirError> {
    let mut end = KEK_PREFIX.to_vec();
    // Invariant: the prefix ends in '/', which has a successor byte.
    *end.last_mut().expect("non-empty prefix") += 1;
    store
        .scan(Tree::Meta, KEK_PREFIX, Some(&end), usize::MAX)?
        .into_iter()
        .map(|(_, v)| Ok(codec::decode("sealed master key", META_FORMAT, &v)?))
        .collect()
}

fn read_u32(store: &dyn Storage, key: &[u8]) -> Result<Option<u32>, DataDirError> {
    store
        .get(Tree::Meta, key)?
        .map(|v| Ok(codec::decode("meta counter", META_FORMAT, &v)?))
        .transpose()
}

fn read_rotation(store: &dyn Storage) -> Result<Option<KekRotation>, DataDirError> {
    store
        .get(Tree::Meta, KEK_ROTATION)?
        .map(|v| Ok(codec::decode("master key rotation", META_FORMAT, &v)?))
        .transpose()
}

/// Creates a new data directory in `dir` (new or empty): a store, and in one commit the
/// first KEK sealed under `passphrase` and the init marker.
#[cfg(any(test, feature = "test-hooks"))]
pub fn init(
    dir: &Path,
    passphrase: &Passphrase,
    options: InitOptions,
    now: Timestamp,
) -> Result<Unsealed, DataDirError> {
    init_in(
        &sled_spec(dir, &SledOptions::default()),
        passphrase,
        options,
        now,
    )
}

fn sled_spec(dir: &Path, options: &SledOptions) -> StoreSpec {
    StoreSpec::Sled {
        dir: dir.to_path_buf(),
        options: options.clone(),
    }
}

/// [`init`] of the store `spec` names (a sled directory or a PostgreSQL database).
pub fn init_in(
    spec: &StoreSpec,
    passphrase: &Passphrase,
    options: InitOptions,
    now: Timestamp,
) -> Result<Unsealed, DataDirError> {
    if let Some(dir) = spec.sled_dir() {
        if dir.join("conf").exists() || dir.join("db").exists() {
            return Err(DataDirError::AlreadyInitialised {
                path: dir.to_path_buf(),
            });
        }
    }
    passphrase.check_strength()?;
    let params = KdfParams::generate(options.kdf_iterations)?;
    let sealing = SealingKey::derive(passphrase, &params)?;
    let kek = Kek::generate(1)?;
    let sealed = SealedKek::seal(&kek, &sealing)?;
    let store = spec.create()?;
    // Before the init commit: a crash in between leaves a half-initialised directory.
    if let Some(dir) = spec.sled_dir() {
        write_check_file(dir, vec![PassphraseCheck::new(1, &sealing)?])?;
    }
    let mut batch = WriteBatch::new();
    batch.put(
        Tree::Meta,
        kek_key(1),
        codec::encode("sealed master key", META_FORMAT, &sealed)?,
    );
    batch.put(
        Tree::Meta,
        KEK_CURRENT,
        codec::encode("meta counter", META_FORMAT, &1u32)?,
    );
    batch.put(
        Tree::Meta,
        INIT_KEY,
        codec::encode(
            "init marker",
            VAULT_FORMAT_VERSION,
            &InitMarker { created_at: now },
        )?,
    );
    store.commit(batch)?;
    Ok(Unsealed {
        check_dir: spec.sled_dir().map(Path::to_path_buf),
        store,
        records: Records::new(KeyRing::new(vec![kek], 1)?, options.records),
        sealing: Mutex::new(sealing),
    })
}

/// Unseals the data directory `dir` with `passphrase`. Writes nothing; a wrong
/// passphrase is refused from the check file before the store is even opened, so it
/// leaves every file as it was.
#[cfg(any(test, feature = "test-hooks"))]
pub fn unseal(
    dir: &Path,
    passphrase: &Passphrase,
    options: RecordOptions,
) -> Result<Unsealed, DataDirError> {
    unseal_in(
        &sled_spec(dir, &SledOptions::default()),
        passphrase,
        options,
    )
}

/// [`unseal`] of the store `spec` names.
pub fn unseal_in(
    spec: &StoreSpec,
    passphrase: &Passphrase,
    options: RecordOptions,
) -> Result<Unsealed, DataDirError> {
    let derived = match spec.sled_dir() {
        Some(dir) => {
            not_initialised_unless_sled(dir)?;
            precheck(dir, passphrase)?
        }
        None => Vec::new(),
    };
    let store = open_initialised(spec, false)?;
    unseal_store(spec, store, passphrase, derived, options)
}

/// [`unseal_in`] over a store opened to read only (PostgreSQL: without the writer lease).
pub fn unseal_read_only(
    spec: &StoreSpec,
    passphrase: &Passphrase,
    options: RecordOptions,
) -> Result<Unsealed, DataDirError> {
    let store = open_initialised(spec, true)?;
    unseal_store(spec, store, passphrase, Vec::new(), options)
}

/// Refuses a directory without a sled store.
fn not_initialised_unless_sled(dir: &Path) -> Result<(), DataDirError> {
    if !dir.join("conf").exists() {
        return Err(DataDirError::NotInitialised {
            path: dir.to_path_buf(),
            half: dir.exists() && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()),
        });
    }
    Ok(())
}

/// Opens the store `spec` names (to read only, with `read`), refusing one without the
/// init marker.
fn open_initialised(spec: &StoreSpec, read: bool) -> Result<Arc<dyn Storage>, DataDirError> {
    if let Some(dir) = spec.sled_dir() {
        not_initialised_unless_sled(dir)?;
    }
    let store = if read {
        spec.open_to_read()?
    } else {
        spec.open()?
    };
    if store.get(Tree::Meta, INIT_KEY)?.is_none() {
        return Err(DataDirError::NotInitialised {
            path: spec.describe().into(),
            half: true,
        });
    }
    Ok(store)
}

fn unseal_store(
    spec: &StoreSpec,
    store: Arc<dyn Storage>,
    passphrase: &Passphrase,
    mut derived: Vec<SealingKey>,
    options: RecordOptions,
) -> Result<Unsealed, DataDirError> {
    let current =
        read_u32(&*store, KEK_CURRENT)?.ok_or(RecordError::KekUnavailable { kek_id: 0 })?;
    let mut keks = Vec::new();
    for sealed in read_sealed_keks(&*store)? {
        let i = match derived.iter().position(|k| k.params() == &sealed.kdf) {
            Some(i) => i,
            None => {
                derived.push(SealingKey::derive(passphrase, &sealed.kdf)?);
                derived.len() - 1
            }
        };
        keks.push(sealed.open(&derived[i])?);
    }
    let current_params = read_sealed_keks(&*store)?
        .into_iter()
        .find(|s| s.kek_id == current)
        .map(|s| s.kdf)
        .ok_or(RecordError::KekUnavailable { kek_id: current })?;
    let i = derived
        .iter()
        .position(|k| k.params() == &current_params)
        .ok_or(RecordError::KekUnavailable { kek_id: current })?;
    let sealing = derived.swap_remove(i);
    Ok(Unsealed {
        check_dir: spec.sled_dir().map(Path::to_path_buf),
        store,
        records: Records::new(KeyRing::new(keks, current)?, options),
        sealing: Mutex::new(sealing),
    })
}

/// The master keys sealed in `meta` (the `Meta` entries of a backup), opened with
/// `passphrase`: every sealed KEK, and the current one's id.
pub(crate) fn keks_of_meta(
    meta: &[(&[u8], &[u8])],
    passphrase: &Passphrase,
) -> Result<KeyRing, DataDirError> {
    let mut derived: Vec<SealingKey> = Vec::new();
    let mut keks = Vec::new();
    let mut current = None;
    for (k, v) in meta {
        if *k == KEK_CURRENT {
            current = Some(codec::decode::<u32>("meta counter", META_FORMAT, v)?);
        }
        if !k.starts_with(KEK_PREFIX) {
            continue;
        }
        let sealed: SealedKek = codec::decode("sealed master key", META_FORMAT, v)?;
        let i = match derived.iter().position(|d| d.params() == &sealed.kdf) {
            Some(i) => i,
            None => {
                derived.push(SealingKey::derive(passphrase, &sealed.kdf)?);
                derived.len() - 1
            }
        };
        keks.push(sealed.open(&derived[i])?);
    }
    let current = current.ok_or(RecordError::KekUnavailable { kek_id: 0 })?;
    Ok(KeyRing::new(keks, current)?)
}

/// Reports on the data directory without the passphrase (the vault must not be running:
/// sled admits one process per directory).
pub fn status(dir: &Path) -> Result<Status, DataDirError> {
    not_initialised_unless_sled(dir)?;
    let store = SledStore::open(dir)?;
    status_of(&store)
}

/// [`status`] of the store `spec` names (PostgreSQL: read beside a running vault).
pub fn status_in(spec: &StoreSpec) -> Result<Status, DataDirError> {
    status_of(&*open_initialised(spec, true)?)
}

/// [`status`] of an open store.
pub fn status_of(store: &dyn Storage) -> Result<Status, DataDirError> {
    let marker: Option<InitMarker> = store
        .get(Tree::Meta, INIT_KEY)?
        .map(|v| codec::decode("init marker", VAULT_FORMAT_VERSION, &v))
        .transpose()?;
    let sealed = read_sealed_keks(store)?;
    let current = read_u32(store, KEK_CURRENT)?;
    let (citizens, erased, wraps) = Records::key_census(store)?;
    let mut records = 0u64;
    for item in crate::storage::scan_all(store, Tree::Records) {
        item?;
        records += 1;
    }
    Ok(Status {
        format_version: VAULT_FORMAT_VERSION,
        initialised: marker.is_some(),
        created_at: marker.map(|m| m.created_at),
        kek_ids: sealed.iter().map(|s| s.kek_id).collect(),
        current_kek: current,
        kek_rotation_target: read_rotation(store)?.map(|r| r.target),
        kdf_iterations: sealed
            .iter()
            .find(|s| Some(s.kek_id) == current)
            .map(|s| s.kdf.iterations),
        citizens,
        erased_citizens: erased,
        records,
        wraps_per_kek: wraps,
    })
}

impl Unsealed {
    /// The store.
    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    /// The record store (holds the unsealed KEKs).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The unsealed KEK ids and the current one.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn kek_ids(&self) -> (Vec<u32>, u32) {
        let ring = self.records.ring();
        (ring.ids(), ring.current().id())
    }

    /// DANGEROUS, tests only (feature `test-hooks`): copies of the raw bytes of every unsealed KEK, so that a test
    /// can search the data directory for them. Never call this in the vault.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_kek_bytes(&self) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
        let ring = self.records.ring();
        ring.ids()
            .into_iter()
            .filter_map(|id| ring.get(id).ok().map(Kek::dangerous_copy_bytes))
            .collect()
    }

    /// Rotates the master key: a new KEK becomes current (sealed under `new_passphrase`
    /// when given, which then also re-seals every older KEK, else under the current
    /// passphrase), then every citizen's keys are re-wrapped under it, a batch of citizens
    /// per commit. Field ciphertexts are not touched. If a rotation is unfinished (a crash,
    /// or `max_citizens` reached), this call finishes it instead of starting another; a
    /// `new_passphrase` is then refused (`RotationInProgress`: finish the rotation first,
    /// then change the passphrase with the next one). Stops after re-wrapping about
    /// `max_citizens` (`done: false`).
    ///
    /// Re-wrapping rewrites key records: no record write may run meanwhile (it could
    /// overwrite a re-wrapped key record with its older copy, or the reverse, losing a seal
    /// count or a new DEK generation). Run it offline, or with the engine's write lock
    /// held, in slices (`max_citizens`) if the lock must not be held long.
    pub fn rotate_kek(
        &self,
        new_passphrase: Option<&Passphrase>,
        now: Timestamp,
        max_citizens: Option<usize>,
    ) -> Result<Progress, DataDirError> {
        let mut sealing = self.sealing.lock().unwrap_or_else(PoisonError::into_inner);
        let unfinished = read_rotation(&*self.store)?;
        if let (Some(r), Some(_)) = (&unfinished, new_passphrase) {
            return Err(DataDirError::RotationInProgress { target: r.target });
        }
        if unfinished.is_none() {
            let next = {
                let ring = self.records.ring();
                ring.ids().last().copied().unwrap_or(0).saturating_add(1)
            };
            let kek = Kek::generate(next)?;
            let new_sealing = match new_passphrase {
                Some(p) => {
                    p.check_strength()?;
                    let params = KdfParams::generate(sealing.params().iterations)?;
                    Some(SealingKey::derive(p, &params)?)
                }
                None => None,
            };
            let key = new_sealing.as_ref().unwrap_or(&sealing);
            let mut batch = WriteBatch::new();
            if new_sealing.is_some() {
                let ring = self.records.ring();
                for id in ring.ids() {
                    let sealed = SealedKek::seal(ring.get(id)?, key)?;
                    batch.put(
                        Tree::Meta,
                        kek_key(id),
                        codec::encode("sealed master key", META_FORMAT, &sealed)?,
                    );
                }
            }
            if let Some(new) = &new_sealing {
                // Both passphrases pass the pre-check until the commit is durable.
                let current = self.records.ring().current().id();
                if let Some(dir) = &self.check_dir {
                    write_check_file(
                        dir,
                        vec![
                            PassphraseCheck::new(current, &sealing)?,
                            PassphraseCheck::new(next, new)?,
                        ],
                    )?;
                }
            }
            let sealed = SealedKek::seal(&kek, key)?;
            batch.put(
                Tree::Meta,
                kek_key(next),
                codec::encode("sealed master key", META_FORMAT, &sealed)?,
            );
            batch.put(
                Tree::Meta,
                KEK_CURRENT,
                codec::encode("meta counter", META_FORMAT, &next)?,
            );
            batch.put(
                Tree::Meta,
                KEK_ROTATION,
                codec::encode(
                    "master key rotation",
                    META_FORMAT,
                    &KekRotation {
                        target: next,
                        started_at: now,
                    },
                )?,
            );
            self.store.commit(batch)?;
            self.records.ring_mut().insert_current(kek);
            if let Some(s) = new_sealing {
                if let Some(dir) = &self.check_dir {
                    write_check_file(dir, vec![PassphraseCheck::new(next, &s)?])?;
                }
                *sealing = s;
            }
        }
        let mut cursor: Option<Vec<u8>> = None;
        let progress = in_batches(max_citizens, REWRAP_BATCH, |room| {
            let (n, next) = self
                .records
                .rewrap_some(&*self.store, cursor.as_deref(), room)?;
            cursor = next;
            Ok::<_, DataDirError>(Progress {
                moved: n,
                done: cursor.is_none(),
            })
        })?;
        if progress.done {
            let mut batch = WriteBatch::new();
            batch.delete(Tree::Meta, KEK_ROTATION);
            self.store.commit(batch)?;
        }
        Ok(progress)
    }

    /// Deletes the sealed KEK `kek_id` once nothing is wrapped or sealed under it. Refuses
    /// the current KEK, during an unfinished rotation, while any citizen key is wrapped
    /// under it, and while `sealed_secrets` (the KEKs sealing the vault's own secrets)
    /// names it.
    pub fn retire_kek(&self, kek_id: u32, sealed_secrets: &[u32]) -> Result<(), DataDirError> {
        let _sealing = self.sealing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = read_rotation(&*self.store)? {
            return Err(DataDirError::RotationInProgress { target: r.target });
        }
        {
            let ring = self.records.ring();
            if ring.current().id() == kek_id {
                return Err(DataDirError::KekIsCurrent { kek_id });
            }
            if !ring.ids().contains(&kek_id) {
                return Err(DataDirError::UnknownKek { kek_id });
            }
        }
        let (_, _, wraps) = Records::key_census(&*self.store)?;
        if let Some(&n) = wraps.get(&kek_id).filter(|n| **n > 0) {
            return Err(DataDirError::KekInUse { kek_id, wraps: n });
        }
        if sealed_secrets.contains(&kek_id) {
            return Err(DataDirError::KekSealsSecrets { kek_id });
        }
        let mut batch = WriteBatch::new();
        batch.delete(Tree::Meta, kek_key(kek_id));
        self.store.commit(batch)?;
        self.records.ring_mut().remove(kek_id);
        Ok(())
    }
}

/// Entries copied per commit by `compact`.
const COMPACT_BATCH: usize = 512;

/// What `compact` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactReport {
    /// Entries copied, over all trees.
    pub entries: u64,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Rewrites the store of a stopped vault into a fresh sled database holding only the live
/// entries, then swaps it in, so that values deleted earlier (an erased citizen's wrapped
/// keys and ciphertexts, a retired KEK) no longer sit in sled's log segments. Offline only.
///
/// Steps: copy every tree into `<dir>.compacting` (durable), rename `<dir>` to
/// `<dir>.pre-compaction`, rename `<dir>.compacting` to `<dir>`, delete
/// `<dir>.pre-compaction`. Running it again after an interruption finishes the swap
/// (between the renames `<dir>.compacting` is the complete store) and deletes a
/// leftover `<dir>.pre-compaction`.
pub fn compact(dir: &Path) -> Result<CompactReport, DataDirError> {
    let tmp = sibling(dir, ".compacting");
    let old = sibling(dir, ".pre-compaction");
    // Finish an interrupted compaction first.
    if !dir.exists() && tmp.exists() && old.exists() {
        // Interrupted between the renames: the copy is complete.
        std::fs::rename(&tmp, dir).map_err(io("move into place", &tmp))?;
    }
    if dir.exists() && old.exists() {
        // Interrupted before the old store was deleted: it still holds what was erased.
        std::fs::remove_dir_all(&old).map_err(io("remove the leftover", &old))?;
    }
    let src = open_initialised(&sled_spec(dir, &SledOptions::default()), false)?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("remove the leftover", &tmp))?;
    }
    let dst = SledStore::create(&tmp)?;
    let mut entries = 0u64;
    for tree in Tree::ALL {
        let mut batch = WriteBatch::new();
        for item in crate::storage::scan_all(&*src, tree) {
            let (k, v) = item?;
            batch.put(tree, k, v);
            entries += 1;
            if batch.len() == COMPACT_BATCH {
                dst.commit(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            dst.commit(batch)?;
        }
    }
    drop(src);
    drop(dst);
    let check = dir.join(PASSPHRASE_CHECK_FILE);
    if check.exists() {
        std::fs::copy(&check, tmp.join(PASSPHRASE_CHECK_FILE)).map_err(io("copy", &check))?;
        std::fs::File::open(tmp.join(PASSPHRASE_CHECK_FILE))
            .and_then(|f| f.sync_all())
            .map_err(io("fsync", &tmp))?;
    }
    std::fs::rename(dir, &old).map_err(io("move aside", dir))?;
    std::fs::rename(&tmp, dir).map_err(io("move into place", &tmp))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(io("fsync", parent))?;
    }
    std::fs::remove_dir_all(&old).map_err(io("remove", &old))?;
    Ok(CompactReport { entries })
}
