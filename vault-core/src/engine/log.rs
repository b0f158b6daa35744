//! The audit log inside the vault's store: `audit`'s tree and entries laid out in the
//! `AuditLeaves`, `AuditNodes` and `AuditSubjects` trees, appended in the same atomic
//! batch as the change each entry records. An `AuditSubjects` row's value is the sealed
//! note of its entry's free texts (`notes`), or empty.

use audit::{Hash, LogRead, StoreError, SubjectTag};

use crate::storage::{Storage, Tree, WriteBatch};

/// Meta key of the log size (u64 big-endian), written in every append batch.
pub(crate) const LOG_SIZE_KEY: &[u8] = b"log.size";
/// Meta key of the last signed checkpoint (the note text).
pub(crate) const LAST_CHECKPOINT_KEY: &[u8] = b"log.last_checkpoint";

pub(crate) fn leaf_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn subject_key(tag: &SubjectTag, index: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&tag.0);
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The lowest level of subtree hash kept in `Tree::AuditNodes`; lower ones are computed
/// from the leaves ([`StoreLog`]).
pub(crate) const FIRST_STORED_LEVEL: u8 = 4;

/// [`LogRead`] over the vault's store.
pub(crate) struct StoreLog<'a>(pub(crate) &'a dyn Storage);

impl StoreLog<'_> {
    /// The hash of the complete subtree `(level, index)` below [`FIRST_STORED_LEVEL`], from
    /// its leaves; `None` when the log does not hold all of them.
    fn computed_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let span = 1u64 << level;
        let Some((start, end)) = index
            .checked_mul(span)
            .and_then(|start| Some((start, start.checked_add(span)?)))
        else {
            return Ok(None);
        };
        let leaves = self
            .0
            .scan(
                Tree::AuditLeaves,
                &leaf_key(start),
                Some(&leaf_key(end)),
                span as usize,
            )
            .map_err(StoreError::new)?;
        if leaves.len() as u64 != span {
            return Ok(None);
        }
        let mut hashes: Vec<Hash> = leaves.iter().map(|(_, v)| audit::leaf_hash(v)).collect();
        while hashes.len() > 1 {
            hashes = hashes
                .chunks_exact(2)
                .map(|pair| audit::node_hash(&pair[0], &pair[1]))
                .collect();
        }
        Ok(hashes.pop())
    }
}

impl LogRead for StoreLog<'_> {
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .get(Tree::AuditLeaves, &leaf_key(index))
            .map_err(StoreError::new)
    }

    /// Levels below [`FIRST_STORED_LEVEL`] are not stored: such a node is computed from the
    /// at most 8 leaves it covers, read in one range scan, which saves most of the node
    /// inserts of the commit path (a stored level >= 4 is completed by one leaf in 16).
    /// Stores written before this hold nodes of the lower levels too; they are never read.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        if level < FIRST_STORED_LEVEL {
            return self.computed_node(level, index);
        }
        match self
            .0
            .get(Tree::AuditNodes, &node_key(level, index))
            .map_err(StoreError::new)?
        {
            None => Ok(None),
            Some(v) => <Hash>::try_from(v.as_slice())
                .map(Some)
                .map_err(|_| StoreError::new("stored subtree hash is not 32 bytes")),
        }
    }
}

/// The stored log size (0 for a new log).
pub(crate) fn stored_size(store: &dyn Storage) -> Result<u64, crate::engine::VaultError> {
    match store.get(Tree::Meta, LOG_SIZE_KEY)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| crate::engine::VaultError::internal("stored log size is not 8 bytes")),
    }
}

/// The index of the latest entry about `tag`, if any.
pub(crate) fn last_about(
    store: &dyn Storage,
    tag: &SubjectTag,
) -> Result<Option<u64>, crate::engine::VaultError> {
    let start = subject_key(tag, 0);
    let end = {
        let mut e = [0u8; 33];
        e[..32].copy_from_slice(&tag.0);
        e[32] = 0xff;
        e
    };
    let hit = store.scan_rev(Tree::AuditSubjects, &start, Some(&end), 1)?;
    Ok(hit
        .first()
        .and_then(|(k, _)| <[u8; 8]>::try_from(&k[32..]).ok())
        .map(u64::from_be_bytes))
}

/// The entries about `tag`, newest first, starting at or below `before`: each index with
/// its row's value (the sealed note of its free texts, or empty).
pub(crate) fn rows_about(
    store: &dyn Storage,
    tag: &SubjectTag,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, crate::engine::VaultError> {
    let start = subject_key(tag, 0);
    let end = match before.and_then(|b| b.checked_add(1)) {
        Some(b) => subject_key(tag, b).to_vec(),
        None => {
            let mut e = tag.0.to_vec();
            e.push(0xff);
            e
        }
    };
    Ok(store
        .scan_rev(Tree::AuditSubjects, &start, Some(&end), limit)?
        .into_iter()
        .filter_map(|(k, v)| {
            <[u8; 8]>::try_from(&k[32..])
                .ok()
                .map(|i| (u64::from_be_bytes(i), v))
        })
        .collect())
}

/// Stages the blanking of every sealed note about `tag` (at erasure: the note key dies
/// with the tag key, so the notes are already unreadable; this also removes the bytes).
pub(crate) fn stage_blank_notes(
    store: &dyn Storage,
    batch: &mut WriteBatch,
    tag: &SubjectTag,
) -> Result<(), crate::engine::VaultError> {
    let start = subject_key(tag, 0);
    let mut end = tag.0.to_vec();
    end.push(0xff);
    for (key, value) in store.scan(Tree::AuditSubjects, &start, Some(&end), usize::MAX)? {
        if !value.is_empty() {
            batch.put(Tree::AuditSubjects, key, Vec::new());
        }
    }
    Ok(())
}

/// Stages an append plan's leaves, its nodes from [`FIRST_STORED_LEVEL`] up (lower ones are
/// computed from the leaves, [`StoreLog`]), subject rows (each with its sealed note, or
/// empty) and new size into `batch`.
pub(crate) fn stage_plan(
    batch: &mut WriteBatch,
    plan: &audit::AppendPlan,
    subjects: &[(u64, SubjectTag, Vec<u8>)],
) {
    for (index, leaf) in &plan.leaves {
        batch.put(Tree::AuditLeaves, leaf_key(*index).to_vec(), leaf.clone());
    }
    for (level, index, hash) in plan
        .nodes
        .iter()
        .filter(|(level, _, _)| *level >= FIRST_STORED_LEVEL)
    {
        batch.put(
            Tree::AuditNodes,
            node_key(*level, *index).to_vec(),
            hash.to_vec(),
        );
    }
    for (index, tag, note) in subjects {
        batch.put(
            Tree::AuditSubjects,
            subject_key(tag, *index).to_vec(),
            note.clone(),
        );
    }
    batch.put(
        Tree::Meta,
        LOG_SIZE_KEY.to_vec(),
        plan.size.to_be_bytes().to_vec(),
    );
}

#[cfg(test)]
mod tests {
    use audit::{ActorKind, EntryDraft, LogState, MemStore};
    use proptest::prelude::*;

    use super::*;
    use crate::storage::sled::SledStore;

    fn draft(i: u64) -> EntryDraft {
        let actor = audit::Actor {
            kind: ActorKind::System,
            id: "vault".to_owned(),
        };
        EntryDraft::new(1_700_000_000_000 + i, actor, "test", "done")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Roots, inclusion and consistency proofs read from the store (with the low
        /// levels computed from leaves) equal those of audit's in-memory log, at every size.
        #[test]
        fn the_store_log_answers_like_the_reference_log(
            groups in proptest::collection::vec(1usize..6, 1..30),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SledStore::create(dir.path().join("s")).unwrap();
            let (mut state, mut ref_state, mut reference) =
                (LogState::new(), LogState::new(), MemStore::new());
            let mut n = 0u64;
            for g in groups {
                let drafts: Vec<EntryDraft> = (n..n + g as u64).map(draft).collect();
                n += g as u64;
                let plan = state.plan(drafts.clone()).unwrap();
                let mut batch = WriteBatch::default();
                stage_plan(&mut batch, &plan, &[]);
                store.commit(batch).unwrap();
                state.apply(&plan).unwrap();
                reference.append(&mut ref_state, drafts).unwrap();
            }
            let log = StoreLog(&store);
            for size in 1..=n {
                prop_assert_eq!(audit::root(&log, size).unwrap(), audit::root(&reference, size).unwrap());
                for index in [0, size / 2, size - 1] {
                    prop_assert_eq!(
                        audit::inclusion_proof(&log, index, size).unwrap(),
                        audit::inclusion_proof(&reference, index, size).unwrap()
                    );
                }
                prop_assert_eq!(
                    audit::consistency_proof(&log, size.div_ceil(2), size).unwrap(),
                    audit::consistency_proof(&reference, size.div_ceil(2), size).unwrap()
                );
            }
            prop_assert_eq!(LogState::load(&log, n).unwrap().root(), state.root());
            prop_assert_eq!(log.node(2, n / 4).unwrap(), None);
        }
    }
}
