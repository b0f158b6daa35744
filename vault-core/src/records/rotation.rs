//! Resumable rotation: a citizen's DEK (re-encrypting their fields), every citizen's keys
//! under a new KEK (re-wrapping), and the census of wraps per KEK.

use std::collections::BTreeMap;

use super::{decode_keys, encode_keys, KeyEntry, RecordError, Records, StoredRecord};
use crate::envelope::{self, CitizenId};
use crate::keys::WrappedKey;
use crate::storage::{Entries, Storage, Tree, WriteBatch};

/// Citizens re-wrapped per commit during a KEK rotation.
pub(crate) const REWRAP_BATCH: usize = 256;

/// How far a resumable operation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Items (records or citizens) rewritten by this call.
    pub moved: usize,
    /// The operation is complete.
    pub done: bool,
}

/// Runs a resumable operation in steps until it is complete or `max` items are done:
/// `step(room)` does at most `room` items (`room` <= `batch`) and says how many it did and
/// whether the operation is complete. `done: false` when `max` stopped it first.
pub(crate) fn in_batches<E>(
    max: Option<usize>,
    batch: usize,
    mut step: impl FnMut(usize) -> Result<Progress, E>,
) -> Result<Progress, E> {
    let mut moved = 0;
    loop {
        let room = max.map_or(batch, |m| m.saturating_sub(moved).min(batch));
        if room == 0 {
            return Ok(Progress { moved, done: false });
        }
        let p = step(room)?;
        moved += p.moved;
        if p.done {
            return Ok(Progress { moved, done: true });
        }
    }
}

/// Up to `max` entries of `Tree::Keys` after `cursor` (from the first when `None`), and
/// the cursor to continue from (`None` when the scan reached the end).
fn keys_after(
    store: &dyn Storage,
    cursor: Option<&[u8]>,
    max: usize,
) -> Result<(Entries, Option<Vec<u8>>), RecordError> {
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
    Ok((entries, next))
}

impl Records {
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
        let Some(mut keys) = self.load_keys(store, None, citizen)? else {
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
        let (entries, next) = keys_after(store, cursor, max)?;
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
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let (entries, next) = keys_after(store, cursor.as_deref(), 1024)?;
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
                    KeyEntry::Erased { .. } | KeyEntry::Tombstone => erased += 1,
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok((active, erased, per_kek))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumable operation over `total` items that does all it is given room for.
    fn run(total: usize, max: Option<usize>, batch: usize) -> (Progress, Vec<usize>) {
        let mut left = total;
        let mut rooms = Vec::new();
        let p = in_batches(max, batch, |room| {
            rooms.push(room);
            let n = room.min(left);
            left -= n;
            Ok::<_, ()>(Progress {
                moved: n,
                done: left == 0,
            })
        })
        .unwrap();
        (p, rooms)
    }

    #[test]
    fn in_batches_runs_to_the_end_in_steps_of_at_most_batch() {
        let (p, rooms) = run(600, None, 256);
        assert_eq!(
            p,
            Progress {
                moved: 600,
                done: true
            }
        );
        assert_eq!(rooms, [256, 256, 256]);
    }

    #[test]
    fn in_batches_stops_unfinished_at_max() {
        let (p, rooms) = run(600, Some(300), 256);
        assert_eq!(
            p,
            Progress {
                moved: 300,
                done: false
            }
        );
        assert_eq!(rooms, [256, 44]);
        let (p, rooms) = run(600, Some(0), 256);
        assert_eq!(
            p,
            Progress {
                moved: 0,
                done: false
            }
        );
        assert!(rooms.is_empty());
    }

    #[test]
    fn in_batches_reports_done_when_the_last_step_finishes_within_max() {
        let (p, _) = run(100, Some(100), 256);
        assert_eq!(
            p,
            Progress {
                moved: 100,
                done: true
            }
        );
    }
}
