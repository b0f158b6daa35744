//! Citizens' records, encrypted field by field, and each citizen's keys.
//!
//! `Tree::Keys` holds one [`KeyEntry`] per citizen (key: the citizen id): the DEK of each
//! live generation and the subject-tag key, wrapped under a KEK, with a seal counter and a
//! count of live field ciphertexts per generation; or, after erasure, a tombstone with no
//! key material. `Tree::Records` holds one record per (citizen, category) (key: citizen id
//! `|| 0x00 ||` category): version, update time, source and the sealed fields.
//!
//! Writes are STAGED into a [`WriteBatch`] so the engine commits a record change together
//! with its audit entry. Staging reads the store, and the batch itself first (a later
//! staging call in the same batch sees what an earlier one staged). The caller serialises
//! writes about one citizen between staging and applying (the engine's write lock): two
//! batches staged concurrently from the same state would both claim the same version.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use policies::{Category, FieldName, Timestamp};
use serde::{Deserialize, Serialize};
#[cfg(feature = "test-hooks")]
use zeroize::Zeroizing;

use crate::codec::{self, CodecError};
use crate::envelope::{self, CitizenId, EnvelopeError, FieldContext, Plaintext};
use crate::keys::{Dek, Kek, KeyError, TagKey, WrappedKey};
use crate::storage::{Storage, StorageError, Tree, Write, WriteBatch};

/// A DEK is rotated before it has sealed this many values: floor(0.9 * 2^32), well under
/// the 2^32 random-nonce bound for AES-GCM (NIST SP 800-38D §8.3).
pub const DEFAULT_DEK_SEAL_LIMIT: u64 = 3_865_470_566;
/// Largest field plaintext, in bytes.
pub const MAX_FIELD_LEN: usize = 4096;
/// Largest encoded record (all fields of one category), in bytes: under the storage
/// layer's inline value limit, so every record is written durably by the commit path.
pub const MAX_RECORD_LEN: usize = 7 * 1024;
const _: () = assert!(MAX_RECORD_LEN <= crate::storage::sled::MAX_VALUE_LEN);
/// Longest source (agency id) recorded with a record.
pub const MAX_SOURCE_LEN: usize = 64;

const KEYS_FORMAT: u8 = 1;
const RECORD_FORMAT: u8 = 1;
/// Citizens re-wrapped per commit during a KEK rotation.
pub(crate) const REWRAP_BATCH: usize = 256;

/// Tuning of the record store.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// Seals per DEK generation before an automatic rotation ([`DEFAULT_DEK_SEAL_LIMIT`];
    /// tests use small values).
    pub dek_seal_limit: u64,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            dek_seal_limit: DEFAULT_DEK_SEAL_LIMIT,
        }
    }
}

/// Why a record or key operation failed. Messages name the citizen id and the field, never
/// a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The citizen's data was erased; nothing of it can be read or written.
    #[error("the data of citizen {citizen} was erased")]
    Erased {
        /// The citizen.
        citizen: String,
    },
    /// A field name is not lowercase snake case.
    #[error("invalid field name {field:?}: use lowercase snake case (for example blood_type)")]
    InvalidField {
        /// The offending name.
        field: String,
    },
    /// The same field appears twice in one write.
    #[error("field {field} appears twice in one write: send each field once")]
    DuplicateField {
        /// The field (`category.field`).
        field: String,
    },
    /// The source is empty or too long.
    #[error("invalid record source: use 1 to {MAX_SOURCE_LEN} bytes (the agency id)")]
    InvalidSource,
    /// A write with no field.
    #[error("a record write needs at least one field")]
    NoFields,
    /// A field value is larger than [`MAX_FIELD_LEN`].
    #[error("value of field {field} has {len} bytes, more than the limit of {max}: send a smaller value")]
    FieldTooLarge {
        /// The field (`category.field`).
        field: String,
        /// The value's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record would be larger than [`MAX_RECORD_LEN`] once encoded.
    #[error("record {category} would take {len} bytes, more than the limit of {max}: split the data over fewer or smaller fields")]
    RecordTooLarge {
        /// The category.
        category: String,
        /// The encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The record has more fields than a DEK may seal before rotation.
    #[error(
        "a record of {fields} fields exceeds the data-key seal limit of {limit}: raise the limit"
    )]
    SealLimitTooSmall {
        /// Fields to seal.
        fields: usize,
        /// The configured limit.
        limit: u64,
    },
    /// A stored field did not open: altered, moved, or its key is not the one it names.
    #[error("field {field} of citizen {citizen} failed to open: {source}; the stored record was altered or moved, restore it from a backup")]
    FieldIntegrity {
        /// The citizen.
        citizen: String,
        /// The field (`category.field`).
        field: String,
        /// What failed (never the plaintext).
        #[source]
        source: EnvelopeError,
    },
    /// A stored field names a DEK generation the citizen does not have.
    #[error("field {field} of citizen {citizen} names data key generation {generation}, which the citizen does not have: the stored record was altered or moved, restore it from a backup")]
    UnknownGeneration {
        /// The citizen.
        citizen: String,
        /// The field (`category.field`).
        field: String,
        /// The generation named.
        generation: u32,
    },
    /// A wrapped key failed to open.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A citizen's keys are wrapped under a KEK this handle does not hold.
    #[error("master key {kek_id} is not available (retired or not unsealed): restore the data directory from a backup taken before it was retired")]
    KekUnavailable {
        /// The missing KEK.
        kek_id: u32,
    },
    /// A stored value does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RecordError {
    /// A stable code for the error, for adapters and logs.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Erased { .. } => "erased",
            RecordError::InvalidField { .. } => "invalid_field",
            RecordError::DuplicateField { .. } => "duplicate_field",
            RecordError::InvalidSource => "invalid_source",
            RecordError::NoFields => "no_fields",
            RecordError::FieldTooLarge { .. } => "field_too_large",
            RecordError::RecordTooLarge { .. } => "record_too_large",
            RecordError::SealLimitTooSmall { .. } => "seal_limit_too_small",
            RecordError::FieldIntegrity { .. } | RecordError::UnknownGeneration { .. } => {
                "field_integrity"
            }
            RecordError::Key(e) => e.code(),
            RecordError::KekUnavailable { .. } => "kek_unavailable",
            RecordError::Codec(_) => "corrupt_value",
            RecordError::Storage(_) => "storage",
        }
    }
}

/// The unsealed master keys: every KEK of the data directory and which one wraps new keys.
pub struct KeyRing {
    keks: BTreeMap<u32, Kek>,
    current: u32,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kek_ids", &self.keks.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keks` whose current one is `current` (which must be among them).
    pub fn new(keks: Vec<Kek>, current: u32) -> Result<Self, RecordError> {
        let keks: BTreeMap<u32, Kek> = keks.into_iter().map(|k| (k.id(), k)).collect();
        if !keks.contains_key(&current) {
            return Err(RecordError::KekUnavailable { kek_id: current });
        }
        Ok(KeyRing { keks, current })
    }

    /// The KEK with `id`.
    pub fn get(&self, id: u32) -> Result<&Kek, RecordError> {
        self.keks
            .get(&id)
            .ok_or(RecordError::KekUnavailable { kek_id: id })
    }

    /// The KEK that wraps new keys.
    pub fn current(&self) -> &Kek {
        // Invariant: `new`, `insert_current` and `remove` keep `current` in the map.
        self.keks
            .get(&self.current)
            .expect("current KEK is in the ring")
    }

    /// The ids held, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    pub(crate) fn insert_current(&mut self, kek: Kek) {
        self.current = kek.id();
        self.keks.insert(kek.id(), kek);
    }

    pub(crate) fn remove(&mut self, id: u32) {
        if id != self.current {
            self.keks.remove(&id);
        }
    }
}

/// One DEK generation of a citizen.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Generation {
    generation: u32,
    key: WrappedKey,
    /// Values sealed under this generation so far.
    seals: u64,
    /// Field ciphertexts stored under this generation now.
    live_fields: u64,
}

/// A citizen's live keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CitizenKeys {
    current: u32,
    generations: Vec<Generation>,
    tag: WrappedKey,
    /// A `rotate_dek` in progress: its target generation.
    rotation: Option<u32>,
}

/// What `Tree::Keys` holds for a citizen.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum KeyEntry {
    Active(CitizenKeys),
    Erased { erased_at: Timestamp },
}

/// A stored record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredRecord {
    version: u64,
    updated_at: Timestamp,
    source: String,
    fields: BTreeMap<String, SealedField>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct SealedField(#[serde(with = "crate::serde_bytes")] Vec<u8>);

/// Where a citizen stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CitizenState {
    /// Nothing was ever written for this citizen.
    Unknown,
    /// The citizen has keys (and maybe records).
    Active,
    /// The citizen's data was erased at this instant.
    Erased {
        /// When.
        at: Timestamp,
    },
}

/// The result of a staged record write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The record's new version.
    pub version: u64,
    /// The citizen's audit subject tag.
    pub subject_tag: [u8; 32],
    /// The citizen's keys were created by this write.
    pub created_keys: bool,
    /// An automatic DEK rotation happened: the new generation.
    pub rotated_to: Option<u32>,
}

/// The result of a staged erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// The subject tag the citizen had (for the audit entry of the erasure), if any.
    pub subject_tag: Option<[u8; 32]>,
    /// Records deleted.
    pub records_deleted: usize,
}

/// A record's metadata, without values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// The category.
    pub category: String,
    /// The version (1 for the first write).
    pub version: u64,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// Who wrote it last.
    pub source: String,
    /// Its field names (within the category), sorted.
    pub fields: Vec<String>,
}

/// A decrypted record.
#[derive(Debug)]
pub struct RecordView {
    /// Metadata.
    pub info: RecordInfo,
    /// Every field, sorted by name.
    pub fields: Vec<(String, Plaintext)>,
}

/// How far a resumable operation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items (records or citizens) rewritten by this call.
    pub moved: usize,
    /// The operation is complete.
    pub done: bool,
}

fn record_key(citizen: &CitizenId, category: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(citizen.as_str().len() + 1 + category.len());
    k.extend_from_slice(citizen.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(category.as_bytes());
    k
}

fn record_prefix(citizen: &CitizenId) -> (Vec<u8>, Vec<u8>) {
    let mut start = citizen.as_str().as_bytes().to_vec();
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

/// The value of `key` as the batch would leave it, else as stored.
fn staged_get(
    store: &dyn Storage,
    batch: &WriteBatch,
    tree: Tree,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StorageError> {
    for w in batch.writes().iter().rev() {
        match w {
            Write::Put {
                tree: t,
                key: k,
                value,
            } if *t == tree && k == key => return Ok(Some(value.clone())),
            Write::Delete { tree: t, key: k } if *t == tree && k == key => return Ok(None),
            _ => {}
        }
    }
    store.get(tree, key)
}

fn decode_keys(bytes: &[u8]) -> Result<KeyEntry, RecordError> {
    Ok(codec::decode("citizen key record", KEYS_FORMAT, bytes)?)
}

fn encode_keys(entry: &KeyEntry) -> Result<Vec<u8>, RecordError> {
    Ok(codec::encode("citizen key record", KEYS_FORMAT, entry)?)
}

fn decode_record(bytes: &[u8]) -> Result<StoredRecord, RecordError> {
    Ok(codec::decode("record", RECORD_FORMAT, bytes)?)
}

fn full_name(category: &str, field: &str) -> String {
    format!("{category}.{field}")
}

/// DEKs unwrapped during one call, by generation.
struct DekCache<'a> {
    ring: &'a KeyRing,
    citizen: &'a CitizenId,
    deks: BTreeMap<u32, Dek>,
}

impl<'a> DekCache<'a> {
    fn new(ring: &'a KeyRing, citizen: &'a CitizenId) -> Self {
        DekCache {
            ring,
            citizen,
            deks: BTreeMap::new(),
        }
    }

    fn get(
        &mut self,
        keys: &CitizenKeys,
        generation: u32,
        field: &str,
    ) -> Result<&Dek, RecordError> {
        if !self.deks.contains_key(&generation) {
            let g = keys
                .generations
                .iter()
                .find(|g| g.generation == generation)
                .ok_or_else(|| RecordError::UnknownGeneration {
                    citizen: self.citizen.to_string(),
                    field: field.to_owned(),
                    generation,
                })?;
            let kek = self.ring.get(g.key.kek_id)?;
            let dek = g.key.unwrap_dek(kek, self.citizen.as_str(), generation)?;
            self.deks.insert(generation, dek);
        }
        // Invariant: inserted just above when missing.
        Ok(self.deks.get(&generation).expect("DEK cached"))
    }
}

/// One read of a citizen's keys and of some of their records, from
/// [`Records::read_sealed`]. Holds only wrapped keys and ciphertexts: nothing is unwrapped
/// or decrypted until [`FieldRead::subject_tag`] or [`FieldRead::open`] is called.
pub struct FieldRead {
    citizen: CitizenId,
    keys: Option<CitizenKeys>,
    records: BTreeMap<String, StoredRecord>,
}

impl std::fmt::Debug for FieldRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldRead")
            .field("citizen", &self.citizen)
            .field("categories", &self.records.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl FieldRead {
    /// True when the read found a stored value for `field`.
    pub fn contains(&self, field: &FieldName) -> bool {
        self.records
            .get(field.category())
            .is_some_and(|r| r.fields.contains_key(field.field()))
    }

    /// The citizen's audit subject tag; `None` when the citizen had no keys.
    pub fn subject_tag(&self, records: &Records) -> Result<Option<[u8; 32]>, RecordError> {
        let ring = records.ring();
        self.keys
            .as_ref()
            .map(|k| Records::tag_of(&ring, &self.citizen, k))
            .transpose()
    }

    /// Opens the fields `wanted` from this read, like [`Records::read_fields`]: `None` for
    /// a field the read did not find (or whose category was not read).
    pub fn open(
        &self,
        records: &Records,
        wanted: &[FieldName],
    ) -> Result<Vec<(FieldName, Option<Plaintext>)>, RecordError> {
        let Some(keys) = &self.keys else {
            return Ok(wanted.iter().map(|f| (f.clone(), None)).collect());
        };
        let ring = records.ring();
        let mut by_category: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in wanted {
            by_category.entry(f.category()).or_default().push(f.field());
        }
        let mut opened: BTreeMap<(&str, String), Plaintext> = BTreeMap::new();
        for (cat, names) in &by_category {
            let Some(record) = self.records.get(*cat) else {
                continue;
            };
            for (name, p) in
                Records::open_record(&ring, &self.citizen, keys, cat, record, Some(names))?
            {
                opened.insert((cat, name), p);
            }
        }
        Ok(wanted
            .iter()
            .map(|f| {
                let v = opened.remove(&(f.category(), f.field().to_owned()));
                (f.clone(), v)
            })
            .collect())
    }
}

/// The record store: seals, opens, rotates and erases citizens' records.
#[derive(Debug)]
pub struct Records {
    ring: RwLock<KeyRing>,
    options: RecordOptions,
}

impl Records {
    /// A record store over the unsealed `ring`.
    pub fn new(ring: KeyRing, options: RecordOptions) -> Self {
        Records {
            ring: RwLock::new(ring),
            options,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &RecordOptions {
        &self.options
    }

    pub(crate) fn ring(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn ring_mut(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the citizen stands (never written, active, erased).
    pub fn citizen_state(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<CitizenState, RecordError> {
        Ok(match store.get(Tree::Keys, citizen.as_str().as_bytes())? {
            None => CitizenState::Unknown,
            Some(bytes) => match decode_keys(&bytes)? {
                KeyEntry::Active(_) => CitizenState::Active,
                KeyEntry::Erased { erased_at } => CitizenState::Erased { at: erased_at },
            },
        })
    }

    fn load_keys(
        store: &dyn Storage,
        batch: Option<&WriteBatch>,
        citizen: &CitizenId,
    ) -> Result<Option<CitizenKeys>, RecordError> {
        let key = citizen.as_str().as_bytes();
        let bytes = match batch {
            Some(b) => staged_get(store, b, Tree::Keys, key)?,
            None => store.get(Tree::Keys, key)?,
        };
        match bytes {
            None => Ok(None),
            Some(bytes) => match decode_keys(&bytes)? {
                KeyEntry::Active(k) => Ok(Some(k)),
                KeyEntry::Erased { .. } => Err(RecordError::Erased {
                    citizen: citizen.to_string(),
                }),
            },
        }
    }

    fn new_keys(ring: &KeyRing, citizen: &CitizenId) -> Result<(CitizenKeys, TagKey), RecordError> {
        let kek = ring.current();
        let dek = Dek::generate(1)?;
        let tag = TagKey::generate(0)?;
        let keys = CitizenKeys {
            current: 1,
            generations: vec![Generation {
                generation: 1,
                key: WrappedKey::wrap_dek(kek, citizen.as_str(), &dek)?,
                seals: 0,
                live_fields: 0,
            }],
            tag: WrappedKey::wrap_tag(kek, citizen.as_str(), &tag)?,
            rotation: None,
        };
        Ok((keys, tag))
    }

    fn tag_of(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &CitizenKeys,
    ) -> Result<[u8; 32], RecordError> {
        let kek = ring.get(keys.tag.kek_id)?;
        Ok(keys.tag.unwrap_tag(kek, citizen.as_str())?.subject_tag())
    }

    /// Adds a new DEK generation and makes it current.
    fn add_generation(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &mut CitizenKeys,
    ) -> Result<u32, RecordError> {
        let next = keys
            .generations
            .iter()
            .map(|g| g.generation)
            .max()
            .unwrap_or(0)
            // 2^32 generations would take 2^32 rotations: not reachable in practice.
            .saturating_add(1);
        let dek = Dek::generate(next)?;
        keys.generations.push(Generation {
            generation: next,
            key: WrappedKey::wrap_dek(ring.current(), citizen.as_str(), &dek)?,
            seals: 0,
            live_fields: 0,
        });
        keys.current = next;
        Ok(next)
    }

    /// Seals `fields` as the new content of a record (replacing `old`'s ciphertexts), keeping
    /// the seal counters and live counts of `keys` right and rotating the DEK when the limit
    /// would be passed.
    #[allow(clippy::too_many_arguments)] // Private; each argument is a distinct input.
    fn seal_fields(
        &self,
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &mut CitizenKeys,
        category: &str,
        old: Option<&StoredRecord>,
        fields: &BTreeMap<String, Plaintext>,
        version: u64,
    ) -> Result<(BTreeMap<String, SealedField>, Option<u32>), RecordError> {
        let n = fields.len() as u64;
        if n > self.options.dek_seal_limit {
            return Err(RecordError::SealLimitTooSmall {
                fields: fields.len(),
                limit: self.options.dek_seal_limit,
            });
        }
        let mut rotated = None;
        let current_seals = keys
            .generations
            .iter()
            .find(|g| g.generation == keys.current)
            .map_or(u64::MAX, |g| g.seals);
        if current_seals.saturating_add(n) > self.options.dek_seal_limit {
            rotated = Some(Self::add_generation(ring, citizen, keys)?);
        }
        let generation = keys.current;
        let g = keys
            .generations
            .iter()
            .find(|g| g.generation == generation)
            .ok_or_else(|| RecordError::UnknownGeneration {
                citizen: citizen.to_string(),
                field: category.to_owned(),
                generation,
            })?;
        let dek = g
            .key
            .unwrap_dek(ring.get(g.key.kek_id)?, citizen.as_str(), generation)?;
        let mut sealed = BTreeMap::new();
        for (name, value) in fields {
            let ctx = FieldContext {
                citizen,
                category,
                field: name,
                record_version: version,
            };
            let ct = envelope::seal(&dek, &ctx, value.expose_bytes()).map_err(|source| {
                RecordError::FieldIntegrity {
                    citizen: citizen.to_string(),
                    field: full_name(category, name),
                    source,
                }
            })?;
            sealed.insert(name.clone(), SealedField(ct));
        }
        // Counters: the old ciphertexts go, the new ones come.
        if let Some(old) = old {
            for (name, ct) in &old.fields {
                let gen = envelope::generation_of(&ct.0).map_err(|source| {
                    RecordError::FieldIntegrity {
                        citizen: citizen.to_string(),
                        field: full_name(category, name),
                        source,
                    }
                })?;
                if let Some(g) = keys.generations.iter_mut().find(|g| g.generation == gen) {
                    g.live_fields = g.live_fields.saturating_sub(1);
                }
            }
        }
        if let Some(g) = keys
            .generations
            .iter_mut()
            .find(|g| g.generation == generation)
        {
            g.seals = g.seals.saturating_add(n);
            g.live_fields = g.live_fields.saturating_add(n);
        }
        let current = keys.current;
        keys.generations
            .retain(|g| g.generation == current || g.live_fields > 0);
        if keys.generations.len() == 1 {
            keys.rotation = None;
        }
        Ok((sealed, rotated))
    }

    fn open_record(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &CitizenKeys,
        category: &str,
        record: &StoredRecord,
        only: Option<&[&str]>,
    ) -> Result<BTreeMap<String, Plaintext>, RecordError> {
        let mut cache = DekCache::new(ring, citizen);
        let mut out = BTreeMap::new();
        for (name, ct) in &record.fields {
            if only.is_some_and(|o| !o.contains(&name.as_str())) {
                continue;
            }
            let field = full_name(category, name);
            let gen =
                envelope::generation_of(&ct.0).map_err(|source| RecordError::FieldIntegrity {
                    citizen: citizen.to_string(),
                    field: field.clone(),
                    source,
                })?;
            let dek = cache.get(keys, gen, &field)?;
            let ctx = FieldContext {
                citizen,
                category,
                field: name,
                record_version: record.version,
            };
            let plain =
                envelope::open(dek, &ctx, &ct.0).map_err(|source| RecordError::FieldIntegrity {
                    citizen: citizen.to_string(),
                    field,
                    source,
                })?;
            out.insert(name.clone(), plain);
        }
        Ok(out)
    }

    fn encode_record(category: &str, record: &StoredRecord) -> Result<Vec<u8>, RecordError> {
        let bytes = codec::encode("record", RECORD_FORMAT, record)?;
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::RecordTooLarge {
                category: category.to_owned(),
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(bytes)
    }

    /// Stages a write of `fields` into the record (`citizen`, `category`): the given fields
    /// are set, the record's other fields kept, the version incremented, every field sealed
    /// again for the new version. Creates the citizen's keys on the first write. Nothing is
    /// written until the caller applies `batch`.
    #[allow(clippy::too_many_arguments)] // The engine's one call per record write.
    pub fn stage_put(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        citizen: &CitizenId,
        category: &Category,
        fields: Vec<(String, Plaintext)>,
        source: &str,
        now: Timestamp,
    ) -> Result<PutOutcome, RecordError> {
        let cat = category.as_str();
        if source.is_empty() || source.len() > MAX_SOURCE_LEN {
            return Err(RecordError::InvalidSource);
        }
        if fields.is_empty() {
            return Err(RecordError::NoFields);
        }
        let mut new_fields = BTreeMap::new();
        for (name, value) in fields {
            if FieldName::from_parts(category, &name).is_err() {
                return Err(RecordError::InvalidField { field: name });
            }
            if value.len() > MAX_FIELD_LEN {
                return Err(RecordError::FieldTooLarge {
                    field: full_name(cat, &name),
                    len: value.len(),
                    max: MAX_FIELD_LEN,
                });
            }
            if new_fields.contains_key(&name) {
                return Err(RecordError::DuplicateField {
                    field: full_name(cat, &name),
                });
            }
            new_fields.insert(name, value);
        }
        let ring = self.ring();
        let (mut keys, created) = match Self::load_keys(store, Some(batch), citizen)? {
            Some(k) => (k, false),
            None => (Self::new_keys(&ring, citizen)?.0, true),
        };
        let rkey = record_key(citizen, cat);
        let old = staged_get(store, batch, Tree::Records, &rkey)?
            .map(|b| decode_record(&b))
            .transpose()?;
        let mut merged = match &old {
            Some(old) => Self::open_record(&ring, citizen, &keys, cat, old, None)?,
            None => BTreeMap::new(),
        };
        merged.extend(new_fields);
        let version = old.as_ref().map_or(1, |o| o.version.saturating_add(1));
        let (sealed, rotated_to) = self.seal_fields(
            &ring,
            citizen,
            &mut keys,
            cat,
            old.as_ref(),
            &merged,
            version,
        )?;
        let record = StoredRecord {
            version,
            updated_at: now,
            source: source.to_owned(),
            fields: sealed,
        };
        let value = Self::encode_record(cat, &record)?;
        let subject_tag = Self::tag_of(&ring, citizen, &keys)?;
        batch.put(
            Tree::Keys,
            citizen.as_str().as_bytes(),
            encode_keys(&KeyEntry::Active(keys))?,
        );
        batch.put(Tree::Records, rkey, value);
        Ok(PutOutcome {
            version,
            subject_tag,
            created_keys: created,
            rotated_to,
        })
    }

    /// Stages the creation of the citizen's keys if they have none, and returns the
    /// citizen's subject tag (for an audit entry about a citizen never written to).
    pub fn stage_ensure_keys(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        citizen: &CitizenId,
    ) -> Result<[u8; 32], RecordError> {
        let ring = self.ring();
        match Self::load_keys(store, Some(batch), citizen)? {
            Some(keys) => Self::tag_of(&ring, citizen, &keys),
            None => {
                let (keys, tag) = Self::new_keys(&ring, citizen)?;
                batch.put(
                    Tree::Keys,
                    citizen.as_str().as_bytes(),
                    encode_keys(&KeyEntry::Active(keys))?,
                );
                Ok(tag.subject_tag())
            }
        }
    }

    /// The citizen's audit subject tag; `None` when the citizen has no keys yet;
    /// [`RecordError::Erased`] after erasure.
    pub fn subject_tag(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Option<[u8; 32]>, RecordError> {
        let ring = self.ring();
        Self::load_keys(store, None, citizen)?
            .map(|k| Self::tag_of(&ring, citizen, &k))
            .transpose()
    }

    /// Reads and opens the requested fields. Each answer is `None` when the field (or its
    /// record) does not exist. Fails with [`RecordError::Erased`] after erasure, and with
    /// [`RecordError::FieldIntegrity`] (naming the field) if a stored value does not open.
    pub fn read_fields(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
        wanted: &[FieldName],
    ) -> Result<Vec<(FieldName, Option<Plaintext>)>, RecordError> {
        let Some(keys) = Self::load_keys(store, None, citizen)? else {
            return Ok(wanted.iter().map(|f| (f.clone(), None)).collect());
        };
        let ring = self.ring();
        let mut by_category: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in wanted {
            by_category.entry(f.category()).or_default().push(f.field());
        }
        let mut opened: BTreeMap<(String, String), Plaintext> = BTreeMap::new();
        for (cat, names) in &by_category {
            let Some(bytes) = store.get(Tree::Records, &record_key(citizen, cat))? else {
                continue;
            };
            let record = decode_record(&bytes)?;
            for (name, p) in Self::open_record(&ring, citizen, &keys, cat, &record, Some(names))? {
                opened.insert(((*cat).to_owned(), name), p);
            }
        }
        Ok(wanted
            .iter()
            .map(|f| {
                let v = opened.remove(&(f.category().to_owned(), f.field().to_owned()));
                (f.clone(), v)
            })
            .collect())
    }

    /// Reads, once, the citizen's key record and the records of the categories `wanted`
    /// names (no other record), for a decision taken under the engine's writer lock: which
    /// fields exist, the subject tag, and later, once the decision's audit entry is durable,
    /// the values as they were when decided ([`FieldRead::open`]). Fails with
    /// [`RecordError::Erased`] after erasure.
    pub fn read_sealed(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
        wanted: &[FieldName],
    ) -> Result<FieldRead, RecordError> {
        let keys = Self::load_keys(store, None, citizen)?;
        let mut records = BTreeMap::new();
        if keys.is_some() {
            for f in wanted {
                let category = f.category();
                if records.contains_key(category) {
                    continue;
                }
                if let Some(bytes) = store.get(Tree::Records, &record_key(citizen, category))? {
                    records.insert(category.to_owned(), decode_record(&bytes)?);
                }
            }
        }
        Ok(FieldRead {
            citizen: citizen.clone(),
            keys,
            records,
        })
    }

    fn scan_records(
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<(Vec<u8>, String, StoredRecord)>, RecordError> {
        let (start, end) = record_prefix(citizen);
        let mut out = Vec::new();
        for (key, value) in store.scan(Tree::Records, &start, Some(&end), usize::MAX)? {
            let category = String::from_utf8_lossy(&key[start.len()..]).into_owned();
            out.push((key, category, decode_record(&value)?));
        }
        Ok(out)
    }

    fn info(category: String, r: &StoredRecord) -> RecordInfo {
        RecordInfo {
            category,
            version: r.version,
            updated_at: r.updated_at,
            source: r.source.clone(),
            fields: r.fields.keys().cloned().collect(),
        }
    }

    /// Every record of the citizen (metadata only), by category.
    pub fn list_records(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<RecordInfo>, RecordError> {
        if Self::load_keys(store, None, citizen)?.is_none() {
            return Ok(Vec::new());
        }
        Ok(Self::scan_records(store, citizen)?
            .into_iter()
            .map(|(_, c, r)| Self::info(c, &r))
            .collect())
    }

    /// Every record of the citizen, decrypted (for the citizen's own export).
    pub fn read_all(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<RecordView>, RecordError> {
        let Some(keys) = Self::load_keys(store, None, citizen)? else {
            return Ok(Vec::new());
        };
        let ring = self.ring();
        let mut out = Vec::new();
        for (_, category, record) in Self::scan_records(store, citizen)? {
            let fields = Self::open_record(&ring, citizen, &keys, &category, &record, None)?;
            out.push(RecordView {
                info: Self::info(category, &record),
                fields: fields.into_iter().collect(),
            });
        }
        Ok(out)
    }

    /// Stages the erasure of the citizen: every record deleted, the key record replaced by
    /// a tombstone holding only the time (crypto-shredding: without the DEKs nothing sealed
    /// for the citizen can be opened again). Later reads and writes fail with
    /// [`RecordError::Erased`]. See `docs/keys.md` for what remains in sled's log and in
    /// older backups, and `datadir::compact` for removing the former.
    pub fn stage_erase(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        citizen: &CitizenId,
        now: Timestamp,
    ) -> Result<ErasureOutcome, RecordError> {
        let keys = Self::load_keys(store, Some(batch), citizen)?;
        let subject_tag = match &keys {
            Some(k) => Some(Self::tag_of(&self.ring(), citizen, k)?),
            None => None,
        };
        let mut deleted = 0;
        let (start, end) = record_prefix(citizen);
        let pending: Vec<Vec<u8>> = batch
            .writes()
            .iter()
            .filter_map(|w| match w {
                Write::Put {
                    tree: Tree::Records,
                    key,
                    ..
                } if key.as_slice() >= start.as_slice() && key.as_slice() < end.as_slice() => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect();
        for (key, _) in store.scan(Tree::Records, &start, Some(&end), usize::MAX)? {
            batch.delete(Tree::Records, key);
            deleted += 1;
        }
        for key in pending {
            batch.delete(Tree::Records, key);
        }
        batch.put(
            Tree::Keys,
            citizen.as_str().as_bytes(),
            encode_keys(&KeyEntry::Erased { erased_at: now })?,
        );
        Ok(ErasureOutcome {
            subject_tag,
            records_deleted: deleted,
        })
    }

    /// Re-encrypts every field of the citizen under a new DEK generation, one record per
    /// commit, and drops the old generations once no field uses them. Resumable: after a
    /// crash, calling it again continues with the records not yet moved. `max_records`
    /// stops after that many records (returns `done: false`), for tests and for spreading
    /// the work. The caller keeps other writes about this citizen out meanwhile (the
    /// engine's write lock): a concurrent write would race on the key record.
    pub fn rotate_dek(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
        max_records: Option<usize>,
    ) -> Result<Progress, RecordError> {
        let Some(mut keys) = Self::load_keys(store, None, citizen)? else {
            return Ok(Progress {
                moved: 0,
                done: true,
            });
        };
        let ring = self.ring();
        let (target, started) = match keys.rotation {
            Some(t) => (t, false),
            None => {
                let t = Self::add_generation(&ring, citizen, &mut keys)?;
                keys.rotation = Some(t);
                (t, true)
            }
        };
        if started {
            let mut batch = WriteBatch::new();
            batch.put(
                Tree::Keys,
                citizen.as_str().as_bytes(),
                encode_keys(&KeyEntry::Active(keys.clone()))?,
            );
            store.commit(batch)?;
        }
        let mut moved = 0;
        for (rkey, category, record) in Self::scan_records(store, citizen)? {
            // Sealed before the rotation began (an automatic rotation during this loop
            // makes newer generations, which count as moved).
            let stale = record
                .fields
                .values()
                .any(|ct| envelope::generation_of(&ct.0).map_or(true, |g| g < target));
            if !stale {
                continue;
            }
            if max_records.is_some_and(|m| moved >= m) {
                return Ok(Progress { moved, done: false });
            }
            let plain = Self::open_record(&ring, citizen, &keys, &category, &record, None)?;
            let (sealed, _) = self.seal_fields(
                &ring,
                citizen,
                &mut keys,
                &category,
                Some(&record),
                &plain,
                record.version,
            )?;
            let moved_record = StoredRecord {
                fields: sealed,
                ..record
            };
            let mut batch = WriteBatch::new();
            batch.put(
                Tree::Records,
                rkey,
                Self::encode_record(&category, &moved_record)?,
            );
            batch.put(
                Tree::Keys,
                citizen.as_str().as_bytes(),
                encode_keys(&KeyEntry::Active(keys.clone()))?,
            );
            store.commit(batch)?;
            moved += 1;
        }
        // Every record is under the target generation or a newer one: the older
        // generations hold no live field and go (the live counts say so; a generation
        // still counted live is kept rather than trusted away).
        let current = keys.current;
        let before = keys.generations.len();
        keys.generations
            .retain(|g| g.generation == current || g.live_fields > 0);
        if keys.generations.len() != before || keys.rotation.is_some() {
            keys.rotation = None;
            let mut batch = WriteBatch::new();
            batch.put(
                Tree::Keys,
                citizen.as_str().as_bytes(),
                encode_keys(&KeyEntry::Active(keys))?,
            );
            store.commit(batch)?;
        }
        Ok(Progress { moved, done: true })
    }

    /// Re-wraps, under the ring's current KEK, the keys of up to `max` citizens whose keys
    /// are wrapped under another KEK, starting after `cursor`; one commit. Returns the
    /// number re-wrapped and the cursor to continue from (`None` at the end).
    pub(crate) fn rewrap_some(
        &self,
        store: &dyn Storage,
        cursor: Option<&[u8]>,
        max: usize,
    ) -> Result<(usize, Option<Vec<u8>>), RecordError> {
        let ring = self.ring();
        let target = ring.current();
        let start = match cursor {
            Some(c) => {
                let mut s = c.to_vec();
                s.push(0);
                s
            }
            None => Vec::new(),
        };
        let entries = store.scan(Tree::Keys, &start, None, max)?;
        let next = if entries.len() == max {
            entries.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let mut batch = WriteBatch::new();
        let mut count = 0;
        for (key, value) in entries {
            let KeyEntry::Active(mut keys) = decode_keys(&value)? else {
                continue;
            };
            let citizen = String::from_utf8_lossy(&key).into_owned();
            let mut changed = false;
            for g in &mut keys.generations {
                if g.key.kek_id != target.id() {
                    let dek = g
                        .key
                        .unwrap_dek(ring.get(g.key.kek_id)?, &citizen, g.generation)?;
                    g.key = WrappedKey::wrap_dek(target, &citizen, &dek)?;
                    changed = true;
                }
            }
            if keys.tag.kek_id != target.id() {
                let tag = keys.tag.unwrap_tag(ring.get(keys.tag.kek_id)?, &citizen)?;
                keys.tag = WrappedKey::wrap_tag(target, &citizen, &tag)?;
                changed = true;
            }
            if changed {
                batch.put(Tree::Keys, key, encode_keys(&KeyEntry::Active(keys))?);
                count += 1;
            }
        }
        if !batch.is_empty() {
            store.commit(batch)?;
        }
        Ok((count, next))
    }

    /// Counts, over every citizen: (citizens with keys, erased citizens, wraps per KEK id).
    pub(crate) fn key_census(
        store: &dyn Storage,
    ) -> Result<(u64, u64, BTreeMap<u32, u64>), RecordError> {
        let mut active = 0;
        let mut erased = 0;
        let mut per_kek = BTreeMap::new();
        let mut start = Vec::new();
        loop {
            let entries = store.scan(Tree::Keys, &start, None, 1024)?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            let mut next = last.clone();
            next.push(0);
            for (_, value) in &entries {
                match decode_keys(value)? {
                    KeyEntry::Active(k) => {
                        active += 1;
                        for id in k
                            .generations
                            .iter()
                            .map(|g| g.key.kek_id)
                            .chain([k.tag.kek_id])
                        {
                            *per_kek.entry(id).or_insert(0) += 1;
                        }
                    }
                    KeyEntry::Erased { .. } => erased += 1,
                }
            }
            if entries.len() < 1024 {
                break;
            }
            start = next;
        }
        Ok((active, erased, per_kek))
    }

    /// DANGEROUS, tests only (feature `test-hooks`): copies of the citizen's raw DEK and tag-key bytes, so that a
    /// test can search a data directory for them after erasure. Never call this in the vault.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_key_bytes(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, RecordError> {
        let Some(keys) = Self::load_keys(store, None, citizen)? else {
            return Ok(Vec::new());
        };
        let ring = self.ring();
        let mut out = Vec::new();
        for g in &keys.generations {
            let dek = g
                .key
                .unwrap_dek(ring.get(g.key.kek_id)?, citizen.as_str(), g.generation)?;
            out.push(dek.dangerous_copy_bytes());
        }
        let tag = keys
            .tag
            .unwrap_tag(ring.get(keys.tag.kek_id)?, citizen.as_str())?;
        out.push(tag.dangerous_copy_bytes());
        Ok(out)
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the stored (wrapped) key record and record values of the
    /// citizen, raw, so that a test can search a data directory for them after erasure.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_stored_bytes(
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut out = Vec::new();
        if let Some(bytes) = store.get(Tree::Keys, citizen.as_str().as_bytes())? {
            if let KeyEntry::Active(k) = decode_keys(&bytes)? {
                out.extend(k.generations.iter().map(|g| g.key.ciphertext.clone()));
                out.push(k.tag.ciphertext.clone());
            }
        }
        for (_, _, r) in Self::scan_records(store, citizen)? {
            out.extend(r.fields.into_values().map(|f| f.0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seal_limit_is_nine_tenths_of_2_pow_32() {
        assert_eq!(DEFAULT_DEK_SEAL_LIMIT, (0.9f64 * 4_294_967_296f64) as u64);
    }

    #[test]
    fn record_keys_of_two_citizens_never_share_a_prefix_range() {
        let a = CitizenId::new("a").unwrap();
        let ab = CitizenId::new("ab").unwrap();
        let (s, e) = record_prefix(&a);
        let k = record_key(&ab, "x");
        assert!(!(k.as_slice() >= s.as_slice() && k.as_slice() < e.as_slice()));
    }
}

/// Values written by the v1 code, kept so that a later format still reads them
/// (`docs/keys.md`): KEK 1 = 32 bytes of 7, sealed under "fixture passphrase" with
/// 10,000 iterations and a salt of 32 bytes of 9; citizen `citizen-1`, record `health`
/// with `blood_type` = `"A+"`, written at 1,800,000,000 by `hospital`.
#[cfg(test)]
mod v1_fixtures {
    use super::*;
    use crate::keys::{Passphrase, SealedKek, SealingKey};
    use crate::storage::SledStore;

    const SEALED_KEK: &str = "01a4666b656b5f696401636b6466a369616c676f726974686d7270626b6466322d686d61632d7368613235366a697465726174696f6e731927106473616c7458200909090909090909090909090909090909090909090909090909090909090909656e6f6e63658c18381898189c185818f811001018620f1819006a6369706865727465787458308475b92dd6b83c968e7dcdb9ce57d43fdb6898263c835c4fff76ecad1403b18f9f32495bf0db591f0e5f65e7ec85db25";
    const KEYS_KEY: &str = "636974697a656e2d31";
    const KEYS_VALUE: &str = "01a166416374697665a46763757272656e74016b67656e65726174696f6e7381a46a67656e65726174696f6e01636b6579a3666b656b5f696401656e6f6e63658c18281898185e18980318511318f60c184418de185f6a636970686572746578745830d89157a1141e4c1b9cae506acc761f3ffcee223327096560f8d0839c57f53651956c2a40b06637e2764765138bfc9d28657365616c73016b6c6976655f6669656c64730163746167a3666b656b5f696401656e6f6e63658c185018bc183b18630e18be18a81868189f189718b918306a636970686572746578745830a95f7b80c5260b92915a894d8543d96b4dfe921ff632e1aa189a8a970817756d7e3169895b349a0addf614d1c1d2d20868726f746174696f6ef6";
    const RECORD_KEY: &str = "636974697a656e2d31006865616c7468";
    const RECORD_VALUE: &str = "01a46776657273696f6e016a757064617465645f61741a6b49d20066736f7572636568686f73706974616c666669656c6473a16a626c6f6f645f7479706558250100000001e47c8a7a2401a228c496d9e2b303326a74edc90df9cca4caf56f23389140c764";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn v1_values_still_open() {
        let sealed: SealedKek = codec::decode("sealed master key", 1, &unhex(SEALED_KEK)).unwrap();
        let sk =
            SealingKey::derive(&Passphrase::new("fixture passphrase".into()), &sealed.kdf).unwrap();
        let kek = sealed.open(&sk).unwrap();
        assert_eq!(kek.secret_bytes(), &[7u8; 32]);

        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::create(tmp.path().join("s")).unwrap();
        let mut batch = WriteBatch::new();
        batch.put(Tree::Keys, unhex(KEYS_KEY), unhex(KEYS_VALUE));
        batch.put(Tree::Records, unhex(RECORD_KEY), unhex(RECORD_VALUE));
        store.commit(batch).unwrap();
        let records = Records::new(
            KeyRing::new(vec![kek], 1).unwrap(),
            RecordOptions::default(),
        );
        let citizen = CitizenId::new("citizen-1").unwrap();
        let all = records.read_all(&store, &citizen).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].info.version, 1);
        assert_eq!(all[0].info.source, "hospital");
        assert_eq!(
            all[0].info.updated_at,
            Timestamp::from_unix_seconds(1_800_000_000)
        );
        assert_eq!(all[0].fields[0].0, "blood_type");
        assert_eq!(all[0].fields[0].1.expose_bytes(), b"\"A+\"");
        assert!(records.subject_tag(&store, &citizen).unwrap().is_some());
    }
}
