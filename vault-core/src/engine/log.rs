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

/// [`LogRead`] over the vault's store.
pub(crate) struct StoreLog<'a>(pub(crate) &'a dyn Storage);

impl LogRead for StoreLog<'_> {
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .get(Tree::AuditLeaves, &leaf_key(index))
            .map_err(StoreError::new)
    }

    /// Level 0 (a leaf hash) is not stored: it is computed from the stored leaf, which is
    /// one read like a stored node, and saves one sled insert per entry on the commit path.
    /// Stores written before this have level-0 nodes too; they are never read.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        if level == 0 {
            return Ok(self.leaf(index)?.map(|leaf| audit::leaf_hash(&leaf)));
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

/// Stages an append plan's leaves, its nodes above level 0 (leaf hashes are computed from
/// the leaves, [`StoreLog`]), subject rows (each with its sealed note, or empty) and new
/// size into `batch`.
pub(crate) fn stage_plan(
    batch: &mut WriteBatch,
    plan: &audit::AppendPlan,
    subjects: &[(u64, SubjectTag, Vec<u8>)],
) {
    for (index, leaf) in &plan.leaves {
        batch.put(Tree::AuditLeaves, leaf_key(*index).to_vec(), leaf.clone());
    }
    for (level, index, hash) in plan.nodes.iter().filter(|(level, _, _)| *level > 0) {
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
