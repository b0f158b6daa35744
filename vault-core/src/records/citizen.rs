//! The citizen key lifecycle: creating a citizen's keys, the audit subject tag, new DEK
//! generations, where a citizen stands, and erasure (a tombstone without key material).

#[cfg(feature = "test-hooks")]
use zeroize::Zeroizing;

use super::{
    citizen_prefix, decode_keys, encode_keys, staged_get, CitizenKeys, CitizenState,
    ErasureOutcome, Generation, KeyEntry, KeyRing, RecordError, Records,
};
use crate::envelope::CitizenId;
use crate::keys::{Dek, NoteKey, TagKey, WrappedKey};
use crate::storage::{Storage, Tree, Write, WriteBatch};

impl Records {
    /// Where the citizen stands (never written, active, erased).
    pub fn citizen_state(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<CitizenState, RecordError> {
        match self.load_keys(store, None, citizen) {
            Ok(None) => Ok(CitizenState::Unknown),
            Ok(Some(_)) => Ok(CitizenState::Active),
            Err(RecordError::Erased { .. }) => Ok(CitizenState::Erased),
            Err(e) => Err(e),
        }
    }

    /// The citizen's live keys; `None` when it never had any; [`RecordError::Erased`] when
    /// a tombstone (keyed by the citizen id's keyed hash, or by the id in clear for one
    /// written before the upgrade) says they were erased.
    pub(super) fn load_keys(
        &self,
        store: &dyn Storage,
        batch: Option<&WriteBatch>,
        citizen: &CitizenId,
    ) -> Result<Option<CitizenKeys>, RecordError> {
        let get = |key: &[u8]| match batch {
            Some(b) => staged_get(store, b, Tree::Keys, key),
            None => store.get(Tree::Keys, key),
        };
        let erased = || RecordError::Erased {
            citizen: citizen.to_string(),
        };
        match get(citizen.as_str().as_bytes())? {
            Some(bytes) => match decode_keys(&bytes)? {
                KeyEntry::Active(k) => Ok(Some(k)),
                KeyEntry::Erased { .. } | KeyEntry::Tombstone => Err(erased()),
            },
            None => {
                let tombstone = self.vault_keys()?.tombstone_key(citizen.as_str());
                match get(&tombstone)? {
                    None => Ok(None),
                    Some(_) => Err(erased()),
                }
            }
        }
    }

    pub(super) fn new_keys(
        ring: &KeyRing,
        citizen: &CitizenId,
    ) -> Result<(CitizenKeys, TagKey), RecordError> {
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

    pub(super) fn tag_of(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &CitizenKeys,
    ) -> Result<audit::SubjectTag, RecordError> {
        Ok(Self::tag_key_of(ring, citizen, keys)?.subject_tag())
    }

    /// The citizen's subject tag and note key (one unwrap of the tag key).
    pub(super) fn subject_keys_of(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &CitizenKeys,
    ) -> Result<(audit::SubjectTag, NoteKey), RecordError> {
        let tag_key = Self::tag_key_of(ring, citizen, keys)?;
        Ok((tag_key.subject_tag(), tag_key.note_key()))
    }

    fn tag_key_of(
        ring: &KeyRing,
        citizen: &CitizenId,
        keys: &CitizenKeys,
    ) -> Result<TagKey, RecordError> {
        let kek = ring.get(keys.tag.kek_id)?;
        Ok(keys.tag.unwrap_tag(kek, citizen.as_str())?)
    }

    /// The citizen's audit subject tag and note key, reading what `batch` stages if given;
    /// `None` when the citizen has no keys yet; [`RecordError::Erased`] after erasure.
    pub fn subject_keys(
        &self,
        store: &dyn Storage,
        batch: Option<&WriteBatch>,
        citizen: &CitizenId,
    ) -> Result<Option<(audit::SubjectTag, NoteKey)>, RecordError> {
        let ring = self.ring();
        self.load_keys(store, batch, citizen)?
            .map(|k| Self::subject_keys_of(&ring, citizen, &k))
            .transpose()
    }

    /// Adds a new DEK generation and makes it current.
    pub(super) fn add_generation(
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

    /// Stages the creation of the citizen's keys if they have none, and returns the
    /// citizen's subject tag (for an audit entry about a citizen never written to).
    pub fn stage_ensure_keys(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        citizen: &CitizenId,
    ) -> Result<audit::SubjectTag, RecordError> {
        let ring = self.ring();
        match self.load_keys(store, Some(batch), citizen)? {
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
    ) -> Result<Option<audit::SubjectTag>, RecordError> {
        let ring = self.ring();
        self.load_keys(store, None, citizen)?
            .map(|k| Self::tag_of(&ring, citizen, &k))
            .transpose()
    }

    /// Stages the erasure of the citizen: every record and the key record deleted, and a
    /// tombstone written under the keyed hash of the id (no id, no time, no key material:
    /// crypto-shredding, without the DEKs nothing sealed for the citizen can be opened
    /// again, and nothing stored links the id to its subject tag or its erasure entry).
    /// Later reads and writes fail with [`RecordError::Erased`]. See `docs/keys.md` for
    /// what remains in sled's files and in older backups, and `datadir::compact` for
    /// removing the former.
    pub fn stage_erase(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        citizen: &CitizenId,
    ) -> Result<ErasureOutcome, RecordError> {
        let keys = self.load_keys(store, Some(batch), citizen)?;
        let tombstone = self.vault_keys()?.tombstone_key(citizen.as_str());
        let subject_tag = match &keys {
            Some(k) => Some(Self::tag_of(&self.ring(), citizen, k)?),
            None => None,
        };
        let mut deleted = 0;
        let (start, end) = citizen_prefix(citizen);
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
        batch.delete(Tree::Keys, citizen.as_str().as_bytes().to_vec());
        batch.put(Tree::Keys, tombstone, encode_keys(&KeyEntry::Tombstone)?);
        Ok(ErasureOutcome {
            subject_tag,
            records_deleted: deleted,
        })
    }

    /// Stages the rewrite of every tombstone written before tombstones were keyed by a
    /// keyed hash (under the citizen id in clear, with the erasure time) as a
    /// [`KeyEntry::Tombstone`] under the keyed hash; returns how many (the upgrade).
    pub fn stage_upgrade_tombstones(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
    ) -> Result<u64, RecordError> {
        let keys = self.vault_keys()?;
        let mut n = 0;
        for item in crate::storage::scan_all(store, Tree::Keys) {
            let (key, value) = item?;
            if let KeyEntry::Erased { .. } = decode_keys(&value)? {
                let id = String::from_utf8_lossy(&key).into_owned();
                batch.delete(Tree::Keys, key);
                batch.put(
                    Tree::Keys,
                    keys.tombstone_key(&id),
                    encode_keys(&KeyEntry::Tombstone)?,
                );
                n += 1;
            }
        }
        Ok(n)
    }

    /// DANGEROUS, tests only: copies of the citizen's raw DEK and tag-key bytes, so that a
    /// test can search a data directory for them after erasure. Never call this in the vault.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_key_bytes(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, RecordError> {
        let Some(keys) = self.load_keys(store, None, citizen)? else {
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

    /// DANGEROUS, tests only: the stored (wrapped) key record and record values of the
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
