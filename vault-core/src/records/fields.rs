//! Records: staging writes (sealing every field for the new version), reading and
//! opening fields, listing and exporting a citizen's records.

use std::collections::BTreeMap;

use policies::{Category, FieldName, Timestamp};

use super::{
    citizen_prefix, decode_record, encode_keys, record_key, staged_get, CitizenKeys, KeyEntry,
    KeyRing, PutOutcome, RecordError, RecordInfo, RecordView, Records, SealedField, StoredRecord,
    MAX_FIELD_LEN, MAX_RECORD_LEN, MAX_SOURCE_LEN, RECORD_FORMAT,
};
use crate::codec;
use crate::envelope::{self, CitizenId, FieldContext, Plaintext};
use crate::keys::{Dek, NoteKey};
use crate::storage::{Storage, Tree, WriteBatch};

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
/// or decrypted until [`FieldRead::subject_keys`] or [`FieldRead::open`] is called.
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
    /// A read that found nothing: no keys, no record (what an erased citizen gives an
    /// agency, exactly like a citizen the vault never knew).
    pub fn nothing(citizen: &CitizenId) -> Self {
        FieldRead {
            citizen: citizen.clone(),
            keys: None,
            records: BTreeMap::new(),
        }
    }

    /// True when the read found a stored value for `field`.
    pub fn contains(&self, field: &FieldName) -> bool {
        self.records
            .get(field.category())
            .is_some_and(|r| r.fields.contains_key(field.field()))
    }

    /// The citizen's audit subject tag and note key; `None` when the citizen had no keys.
    pub fn subject_keys(
        &self,
        records: &Records,
    ) -> Result<Option<(audit::SubjectTag, NoteKey)>, RecordError> {
        let ring = records.ring();
        self.keys
            .as_ref()
            .map(|k| Records::subject_keys_of(&ring, &self.citizen, k))
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

impl Records {
    /// Seals `fields` as the new content of a record (replacing `old`'s ciphertexts), keeping
    /// the seal counters and live counts of `keys` right and rotating the DEK when the limit
    /// would be passed.
    #[allow(clippy::too_many_arguments)] // Private; each argument is a distinct input.
    pub(super) fn seal_fields(
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

    pub(super) fn open_record(
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

    pub(super) fn encode_record(
        category: &str,
        record: &StoredRecord,
    ) -> Result<Vec<u8>, RecordError> {
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
        let (mut keys, created) = match self.load_keys(store, Some(batch), citizen)? {
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

    /// Reads and opens the requested fields. Each answer is `None` when the field (or its
    /// record) does not exist. Fails with [`RecordError::Erased`] after erasure, and with
    /// [`RecordError::FieldIntegrity`] (naming the field) if a stored value does not open.
    pub fn read_fields(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
        wanted: &[FieldName],
    ) -> Result<Vec<(FieldName, Option<Plaintext>)>, RecordError> {
        let Some(keys) = self.load_keys(store, None, citizen)? else {
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
        let keys = self.load_keys(store, None, citizen)?;
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

    pub(super) fn scan_records(
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<(Vec<u8>, String, StoredRecord)>, RecordError> {
        let (start, end) = citizen_prefix(citizen);
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
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn list_records(
        &self,
        store: &dyn Storage,
        citizen: &CitizenId,
    ) -> Result<Vec<RecordInfo>, RecordError> {
        if self.load_keys(store, None, citizen)?.is_none() {
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
        let Some(keys) = self.load_keys(store, None, citizen)? else {
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
}
