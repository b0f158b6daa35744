//! Citizens' records, encrypted field by field, and each citizen's keys.
//!
//! `Tree::Keys` holds one [`KeyEntry`] per citizen: under the citizen id, the DEK of each
//! live generation and the subject-tag key, wrapped under a KEK, with a seal counter and a
//! count of live field ciphertexts per generation; or, after erasure, under the keyed hash
//! of the id ([`crate::auth::VaultKeys::tombstone_key`]), a tombstone with no key material
//! and no time. `Tree::Records` holds one record per (citizen, category) (key: citizen id
//! `|| 0x00 ||` category): version, update time, source and the sealed fields.
//!
//! Writes are STAGED into a [`WriteBatch`] so the engine commits a record change together
//! with its audit entry. Staging reads the store, and the batch itself first (a later
//! staging call in the same batch sees what an earlier one staged). The caller serialises
//! writes about one citizen between staging and applying (the engine's write lock): two
//! batches staged concurrently from the same state would both claim the same version.
//!
//! Files by job: this one holds [`Records`], the stored formats and the per-citizen key
//! layout; `keyring.rs` the unsealed KEKs; `citizen.rs` a citizen's keys, subject tag,
//! state and erasure; `fields.rs` record writes and reads; `rotation.rs` DEK rotation,
//! KEK re-wrapping and the census of wraps.

mod citizen;
mod fields;
mod keyring;
mod rotation;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use policies::Timestamp;
use serde::{Deserialize, Serialize};

use crate::auth::VaultKeys;
use crate::codec::{self, CodecError};
use crate::envelope::{CitizenId, EnvelopeError, Plaintext};
use crate::keys::{KeyError, WrappedKey};
use crate::storage::{Storage, StorageError, Tree, Write, WriteBatch};

pub use fields::FieldRead;
pub use keyring::KeyRing;
pub use rotation::Progress;
pub(crate) use rotation::{in_batches, REWRAP_BATCH};

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
    /// The vault key (which keys tombstones) is not loaded in this handle.
    #[error("the vault key is not loaded: open the vault with its passphrase first")]
    VaultKeyUnavailable,
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
            RecordError::VaultKeyUnavailable => "vault_key_unavailable",
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
    /// Under the citizen id.
    Active(CitizenKeys),
    /// A tombstone written before tombstones were keyed by a keyed hash, under the
    /// citizen id in clear: still refused, rewritten as [`KeyEntry::Tombstone`] by the
    /// upgrade (`Records::upgrade_tombstones`).
    Erased { erased_at: Timestamp },
    /// A tombstone, under [`crate::auth::VaultKeys::tombstone_key`] of the citizen id: no
    /// id, no time, no key material.
    Tombstone,
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
    /// The citizen's data was erased (the tombstone keeps no time).
    Erased,
}

/// The result of a staged record write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The record's new version.
    pub version: u64,
    /// The citizen's audit subject tag.
    pub subject_tag: audit::SubjectTag,
    /// The citizen's keys were created by this write.
    pub created_keys: bool,
    /// An automatic DEK rotation happened: the new generation.
    pub rotated_to: Option<u32>,
}

/// The result of a staged erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// The subject tag the citizen had (for the audit entry of the erasure), if any.
    pub subject_tag: Option<audit::SubjectTag>,
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

/// The key of `suffix` in a per-citizen tree (records, consents): citizen id `|| 0x00 ||`
/// suffix. A citizen id holds no 0x00 byte, so every key of one citizen lies in the range
/// of [`citizen_prefix`] and no other citizen's does.
pub(crate) fn citizen_key(citizen: &CitizenId, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(citizen.as_str().len() + 1 + suffix.len());
    k.extend_from_slice(citizen.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(suffix);
    k
}

/// The range `[start, end)` of the citizen's keys in a per-citizen tree ([`citizen_key`]).
pub(crate) fn citizen_prefix(citizen: &CitizenId) -> (Vec<u8>, Vec<u8>) {
    let mut start = citizen.as_str().as_bytes().to_vec();
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    (start, end)
}

fn record_key(citizen: &CitizenId, category: &str) -> Vec<u8> {
    citizen_key(citizen, category.as_bytes())
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

/// The record store: seals, opens, rotates and erases citizens' records.
#[derive(Debug)]
pub struct Records {
    ring: RwLock<KeyRing>,
    options: RecordOptions,
    /// The keys derived from the vault key (tombstones), once the engine opened it.
    vault_keys: OnceLock<Arc<VaultKeys>>,
}

impl Records {
    /// A record store over the unsealed `ring`.
    pub fn new(ring: KeyRing, options: RecordOptions) -> Self {
        Records {
            ring: RwLock::new(ring),
            options,
            vault_keys: OnceLock::new(),
        }
    }

    /// Gives the record store the vault's derived keys (the engine does at open); a
    /// second call keeps the first keys.
    pub fn install_vault_keys(&self, keys: Arc<VaultKeys>) {
        let _ = self.vault_keys.set(keys);
    }

    fn vault_keys(&self) -> Result<&VaultKeys, RecordError> {
        self.vault_keys
            .get()
            .map(|k| &**k)
            .ok_or(RecordError::VaultKeyUnavailable)
    }

    /// The options in force.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn options(&self) -> &RecordOptions {
        &self.options
    }

    pub(crate) fn ring(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn ring_mut(&self) -> RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(PoisonError::into_inner)
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
        let (s, e) = citizen_prefix(&a);
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
