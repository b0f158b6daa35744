//! The audit log inside the vault's store: `audit`'s tree and entries laid out in the
//! `AuditBlocks`, `AuditNodes` and `AuditSubjects` trees, appended in the same atomic
//! batch as the change each entry records. An `AuditSubjects` row's value is the sealed
//! note of its entry's free texts (`notes`), or empty.
//!
//! Leaves are stored in blocks of consecutive leaves ([`OpenBlock`]): the writer appends
//! each new leaf to the open block and stages the whole block again in each commit; the
//! group commit keeps only the last value of a key, so a group of N appends writes about
//! N / 16 block values instead of N leaves. Stores written before blocks hold their earlier
//! leaves one per key in `AuditLeaves`; every read looks in both ([`leaf`], [`leaves`]).

use audit::{Hash, LogRead, StoreError, SubjectTag};

use crate::storage::{Storage, Tree, WriteBatch};

/// Meta key of the log size (u64 big-endian), written in every append batch.
pub(crate) const LOG_SIZE_KEY: &[u8] = b"log.size";
/// Meta key of the last signed checkpoint (the note text).
pub(crate) const LAST_CHECKPOINT_KEY: &[u8] = b"log.last_checkpoint";
/// The last checkpoint published with its witnesses' cosignatures (a quorum of the witness
/// policy): the note, signed by the log and cosigned.
pub(crate) const WITNESSED_CHECKPOINT_KEY: &[u8] = b"log.witnessed_checkpoint";

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

/// Version byte at the start of every `AuditBlocks` value; then, per leaf in index order,
/// its length (u32 big-endian) and its bytes.
const BLOCK_VERSION: u8 = 1;

/// A block is closed (the next leaf starts a new one) once it holds this many leaves...
pub(crate) const BLOCK_MAX_LEAVES: u64 = 32;

/// ...or when the next leaf would take its value past this many bytes. A larger leaf is a
/// block of its own.
pub(crate) const BLOCK_MAX_BYTES: usize = 4096;

/// The block the next leaf is appended to: the index of its first leaf, its leaf count and
/// its value as stored. Lives in the writer's state; a vault opens with an empty block
/// at the log's size (earlier blocks stay as they are, possibly short).
#[derive(Clone, Debug)]
pub(crate) struct OpenBlock {
    start: u64,
    len: u64,
    value: Vec<u8>,
}

impl OpenBlock {
    /// An empty block whose first leaf will be `start`.
    pub(crate) fn at(start: u64) -> Self {
        Self {
            start,
            len: 0,
            value: vec![BLOCK_VERSION],
        }
    }

    fn has_room_for(&self, leaf: &[u8]) -> bool {
        self.len == 0
            || (self.len < BLOCK_MAX_LEAVES && self.value.len() + 4 + leaf.len() <= BLOCK_MAX_BYTES)
    }

    fn push(&mut self, leaf: &[u8]) -> Result<(), crate::engine::VaultError> {
        let len = u32::try_from(leaf.len())
            .map_err(|_| crate::engine::VaultError::internal("audit leaf larger than 4 GiB"))?;
        self.value.extend_from_slice(&len.to_be_bytes());
        self.value.extend_from_slice(leaf);
        self.len += 1;
        Ok(())
    }
}

/// The leaves of a stored block value, in order; an error (and then nothing) for a
/// malformed value.
pub(crate) fn block_leaves(value: &[u8]) -> BlockLeaves<'_> {
    match value.split_first() {
        Some((&BLOCK_VERSION, rest)) => BlockLeaves::Reading(rest),
        _ => BlockLeaves::Failed("stored audit leaf block has an unknown version"),
    }
}

/// The iterator of [`block_leaves`].
pub(crate) enum BlockLeaves<'a> {
    /// The bytes after the leaves read so far.
    Reading(&'a [u8]),
    /// The value is malformed: this error is the next item.
    Failed(&'static str),
    /// Nothing more.
    Done,
}

impl<'a> Iterator for BlockLeaves<'a> {
    type Item = Result<&'a [u8], StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match std::mem::replace(self, BlockLeaves::Done) {
            BlockLeaves::Done => None,
            BlockLeaves::Failed(why) => Some(Err(StoreError::new(why))),
            BlockLeaves::Reading([]) => None,
            BlockLeaves::Reading(bytes) => {
                let split = bytes.split_first_chunk::<4>().and_then(|(len, tail)| {
                    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
                    (len <= tail.len()).then(|| tail.split_at(len))
                });
                match split {
                    Some((leaf, tail)) => {
                        *self = BlockLeaves::Reading(tail);
                        Some(Ok(leaf))
                    }
                    None => Some(Err(StoreError::new("stored audit leaf block is truncated"))),
                }
            }
        }
    }
}

/// The index a block key or leaf key names.
pub(crate) fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::new("malformed audit leaf key"))
}

/// A failed leaf read as the engine reports it.
pub(crate) fn store_failure(e: StoreError) -> crate::engine::VaultError {
    crate::engine::VaultError::audit(audit::TreeError::Store(e))
}

/// The stored block that starts at or before `index` (the one that holds it, if any).
fn block_before(store: &dyn Storage, index: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let end = index.checked_add(1).map(leaf_key);
    let hit = store
        .scan_rev(
            Tree::AuditBlocks,
            &leaf_key(0),
            end.as_ref().map(|e| &e[..]),
            1,
        )
        .map_err(StoreError::new)?;
    match hit.into_iter().next() {
        None => Ok(None),
        Some((key, value)) => Ok(Some((key_index(&key)?, value))),
    }
}

/// The exact bytes of leaf `index`, if the log holds it.
pub(crate) fn leaf(store: &dyn Storage, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    if let Some((start, value)) = block_before(store, index)? {
        let offset = index - start;
        for (i, leaf) in (0u64..).zip(block_leaves(&value)) {
            let leaf = leaf?;
            if i == offset {
                return Ok(Some(leaf.to_vec()));
            }
        }
    }
    store
        .get(Tree::AuditLeaves, &leaf_key(index))
        .map_err(StoreError::new)
}

/// Leaves `start..end` that the log holds, in index order, at most `limit`.
pub(crate) fn leaves(
    store: &dyn Storage,
    start: u64,
    end: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    if start >= end || limit == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (key, leaf) in store
        .scan(
            Tree::AuditLeaves,
            &leaf_key(start),
            Some(&leaf_key(end)),
            limit,
        )
        .map_err(StoreError::new)?
    {
        out.push((key_index(&key)?, leaf));
    }
    // Every block holds at least one leaf: `limit` blocks after the first are enough.
    let mut blocks: Vec<(u64, Vec<u8>)> = block_before(store, start)?.into_iter().collect();
    if let Some(after) = start.checked_add(1) {
        for (key, value) in store
            .scan(
                Tree::AuditBlocks,
                &leaf_key(after),
                Some(&leaf_key(end)),
                limit,
            )
            .map_err(StoreError::new)?
        {
            blocks.push((key_index(&key)?, value));
        }
    }
    for (first, value) in &blocks {
        for (index, leaf) in (*first..).zip(block_leaves(value)) {
            if index >= end {
                break;
            }
            let leaf = leaf?;
            if index >= start {
                out.push((index, leaf.to_vec()));
            }
        }
    }
    out.sort_by_key(|(index, _)| *index);
    out.truncate(limit);
    Ok(out)
}

/// The lowest level of subtree hash kept in `Tree::AuditNodes`; lower ones are computed
/// from the leaves ([`StoreLog`]).
pub(crate) const FIRST_STORED_LEVEL: u8 = 4;

/// [`LogRead`] over the vault's store. It keeps the last leaf block it read, so reading
/// leaves in order (an export, a proof's leaves) reads each block once: a block's leaves
/// never change, a block only gains leaves at its end, and a leaf past the kept ones is
/// read again from the store.
pub(crate) struct StoreLog<'a> {
    store: &'a dyn Storage,
    block: std::cell::RefCell<Option<(u64, Vec<u8>)>>,
}

impl<'a> StoreLog<'a> {
    pub(crate) fn new(store: &'a dyn Storage) -> Self {
        Self {
            store,
            block: std::cell::RefCell::new(None),
        }
    }

    /// Leaf `index` from the kept block, if it holds it.
    fn kept_leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let kept = self.block.borrow();
        let Some((start, value)) = kept.as_ref() else {
            return Ok(None);
        };
        let Some(offset) = index.checked_sub(*start) else {
            return Ok(None);
        };
        for (i, leaf) in (0u64..).zip(block_leaves(value)) {
            let leaf = leaf?;
            if i == offset {
                return Ok(Some(leaf.to_vec()));
            }
        }
        Ok(None)
    }
}

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
        let leaves = leaves(self.store, start, end, span as usize)?;
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
        if let Some(leaf) = self.kept_leaf(index)? {
            return Ok(Some(leaf));
        }
        if let Some((start, value)) = block_before(self.store, index)? {
            *self.block.borrow_mut() = Some((start, value));
            if let Some(leaf) = self.kept_leaf(index)? {
                return Ok(Some(leaf));
            }
        }
        self.store
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
            .store
            .get(Tree::AuditNodes, &node_key(level, index))
            .map_err(StoreError::new)?
        {
            None => Ok(None),
            Some(v) => <Hash>::try_from(v.as_slice())
                .map(Some)
                .map_err(|_| StoreError::new("stored subtree hash is not 32 bytes")),
        }
    }

    /// One range scan: of the leaves below [`FIRST_STORED_LEVEL`] (hashed up), of the
    /// stored nodes above.
    fn nodes(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        if level < FIRST_STORED_LEVEL {
            let (Some(first), Some(last)) = (
                start.checked_shl(level.into()),
                end.checked_shl(level.into()),
            ) else {
                return Ok(Vec::new());
            };
            if first >> level != start || last >> level != end {
                return Ok(Vec::new());
            }
            let leaves = self.leaves(first, last)?;
            let mut hashes: Vec<Hash> = leaves.iter().map(|v| audit::leaf_hash(v)).collect();
            // Whole subtrees only: drop the leaves of an incomplete last one.
            hashes.truncate(hashes.len() >> level << level);
            for _ in 0..level {
                hashes = hashes
                    .chunks_exact(2)
                    .map(|pair| audit::node_hash(&pair[0], &pair[1]))
                    .collect();
            }
            return Ok(hashes);
        }
        let limit = usize::try_from(end - start).unwrap_or(usize::MAX);
        let rows = self
            .store
            .scan(
                Tree::AuditNodes,
                &node_key(level, start),
                Some(&node_key(level, end)),
                limit,
            )
            .map_err(StoreError::new)?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, (key, value)) in (start..).zip(rows) {
            if key[..] != node_key(level, expected)[..] {
                break;
            }
            let hash = <Hash>::try_from(value.as_slice())
                .map_err(|_| StoreError::new("stored subtree hash is not 32 bytes"))?;
            out.push(hash);
        }
        Ok(out)
    }

    /// One range scan of the blocks (and of the leaves stored one per key).
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let limit = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(limit.min(4096));
        for (expected, (index, leaf)) in (start..).zip(leaves(self.store, start, end, limit)?) {
            if index != expected {
                break;
            }
            out.push(leaf);
        }
        Ok(out)
    }
}

/// DANGEROUS, tests only (feature `test-hooks`): forgets the whole audit log of `store`
/// (every leaf, subtree hash and subject row, the size and the last signed checkpoint), as
/// whoever holds the store could to rewrite history: the vault opened on it starts a new
/// log, a fork of the one its witnesses have seen. The last witnessed checkpoint is kept,
/// as such a forger would keep it to look witnessed.
#[cfg(feature = "test-hooks")]
pub fn dangerous_forget_log(store: &dyn Storage) -> Result<(), crate::storage::StorageError> {
    let mut b = crate::storage::WriteBatch::new();
    for tree in [
        Tree::AuditLeaves,
        Tree::AuditNodes,
        Tree::AuditSubjects,
        Tree::AuditBlocks,
    ] {
        for row in crate::storage::scan_all(store, tree) {
            b.delete(tree, row?.0);
        }
    }
    for key in [LOG_SIZE_KEY, LAST_CHECKPOINT_KEY] {
        b.delete(Tree::Meta, key.to_vec());
    }
    store.commit(b)
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

/// The index of the latest entry about each recently seen subject, so that an append
/// need not scan the store for it. Exact because only the writer, under its lock, appends
/// subject rows and records each append here; bounded by emptying it when it holds
/// [`LATEST_ABOUT_CAPACITY`] subjects.
pub(crate) struct LatestAbout {
    latest: std::collections::HashMap<SubjectTag, u64>,
    capacity: usize,
}

impl Default for LatestAbout {
    fn default() -> Self {
        Self {
            latest: std::collections::HashMap::new(),
            capacity: LATEST_ABOUT_CAPACITY,
        }
    }
}

/// How many subjects [`LatestAbout`] remembers (about 6 MB) before it starts again.
const LATEST_ABOUT_CAPACITY: usize = 100_000;

impl LatestAbout {
    /// The index of the latest entry about `tag`, if any.
    pub(crate) fn get(
        &self,
        store: &dyn Storage,
        tag: &SubjectTag,
    ) -> Result<Option<u64>, crate::engine::VaultError> {
        match self.latest.get(tag) {
            Some(index) => Ok(Some(*index)),
            None => last_about(store, tag),
        }
    }

    /// Records applied subject rows `(index, tag, _)`, in index order.
    pub(crate) fn record(&mut self, rows: &[(u64, SubjectTag, Vec<u8>)]) {
        for (index, tag, _) in rows {
            if self.latest.len() >= self.capacity && !self.latest.contains_key(tag) {
                self.latest.clear();
            }
            self.latest.insert(*tag, *index);
        }
    }
}

/// The index of the latest entry about `tag`, if any, from the store.
fn last_about(
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

/// Stages an append plan's leaves (appended to `block`, each block the plan touches staged
/// whole), its nodes from [`FIRST_STORED_LEVEL`] up (lower ones are computed from the
/// leaves, [`StoreLog`]), subject rows (each with its sealed note, or empty) and new size
/// into `batch`. Returns the open block after the plan, for the writer to keep once the
/// batch is applied.
pub(crate) fn stage_plan(
    batch: &mut WriteBatch,
    plan: &audit::AppendPlan,
    subjects: &[(u64, SubjectTag, Vec<u8>)],
    block: &OpenBlock,
) -> Result<OpenBlock, crate::engine::VaultError> {
    let mut block = block.clone();
    let mut staged = true;
    for (index, leaf) in &plan.leaves {
        if block.start.checked_add(block.len) != Some(*index) {
            return Err(crate::engine::VaultError::internal(
                "the open audit leaf block does not end where the append starts",
            ));
        }
        if !block.has_room_for(leaf) {
            if !staged {
                batch.put(
                    Tree::AuditBlocks,
                    leaf_key(block.start).to_vec(),
                    block.value,
                );
            }
            block = OpenBlock::at(*index);
        }
        block.push(leaf)?;
        staged = false;
    }
    if !staged {
        batch.put(
            Tree::AuditBlocks,
            leaf_key(block.start).to_vec(),
            block.value.clone(),
        );
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
    Ok(block)
}

#[cfg(test)]
mod tests {
    use audit::{ActorKind, EntryDraft, LogState, MemStore};
    use proptest::prelude::*;

    use super::*;
    use crate::storage::sled::SledStore;

    /// Entry `i`, of a size that varies with `i` (about 80 to 1,100 bytes), so that blocks
    /// close on their byte bound as well as on their leaf count.
    fn draft(i: u64) -> EntryDraft {
        let actor = audit::Actor {
            kind: ActorKind::System,
            id: "vault".to_owned(),
        };
        let mut d = EntryDraft::new(1_700_000_000_000 + i, actor, "test", "done");
        d.requested = (0..(i * 7) % 40).map(|f| format!("field_{f:03}")).collect();
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Roots, inclusion and consistency proofs read from the store (with the low
        /// levels computed from leaves) equal those of audit's in-memory log, at every size;
        /// every leaf and every range of leaves reads back exactly, in a store whose first
        /// `legacy` leaves are stored one per key (as before leaf blocks) and the rest in
        /// blocks, with the writer reopened (a new open block) before some groups.
        #[test]
        fn the_store_log_answers_like_the_reference_log(
            groups in proptest::collection::vec((1usize..6, any::<bool>()), 1..30),
            legacy in 0u64..20,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SledStore::create(dir.path().join("s")).unwrap();
            let (mut state, mut ref_state, mut reference) =
                (LogState::new(), LogState::new(), MemStore::new());
            let mut block = OpenBlock::at(0);
            let mut n = 0u64;
            for (g, reopen) in groups {
                let drafts: Vec<EntryDraft> = (n..n + g as u64).map(draft).collect();
                n += g as u64;
                let plan = state.plan(drafts.clone()).unwrap();
                let mut batch = WriteBatch::default();
                if plan.first_index + (g as u64) <= legacy {
                    for (index, leaf) in &plan.leaves {
                        batch.put(Tree::AuditLeaves, leaf_key(*index).to_vec(), leaf.clone());
                    }
                    let mut rest = plan.clone();
                    rest.leaves.clear();
                    block = stage_plan(&mut batch, &rest, &[], &OpenBlock::at(n)).unwrap();
                } else {
                    if reopen {
                        block = OpenBlock::at(plan.first_index);
                    }
                    block = stage_plan(&mut batch, &plan, &[], &block).unwrap();
                }
                store.commit(batch).unwrap();
                state.apply(&plan).unwrap();
                reference.append(&mut ref_state, drafts).unwrap();
            }
            let log = StoreLog::new(&store);
            for index in 0..n {
                prop_assert_eq!(leaf(&store, index).unwrap(), reference.leaf(index).unwrap());
            }
            // One reader, forwards then backwards, through the block it keeps.
            for index in (0..=n).chain((0..=n).rev()) {
                prop_assert_eq!(log.leaf(index).unwrap(), reference.leaf(index).unwrap());
            }
            prop_assert_eq!(leaf(&store, n).unwrap(), None);
            for start in 0..n {
                for end in [start + 1, start + 3, n, n + 5] {
                    let want: Vec<(u64, Vec<u8>)> = (start..end.min(n))
                        .map(|i| (i, reference.leaf(i).unwrap().unwrap()))
                        .take(4)
                        .collect();
                    prop_assert_eq!(leaves(&store, start, end, 4).unwrap(), want);
                }
            }
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

    /// The remembered latest entry about a subject is the store's, also once the map was
    /// emptied for being full.
    #[test]
    fn latest_about_answers_like_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let mut latest = LatestAbout {
            latest: std::collections::HashMap::new(),
            capacity: 3,
        };
        let (mut state, mut block) = (LogState::new(), OpenBlock::at(0));
        let tags: Vec<SubjectTag> = (0u8..7).map(|t| SubjectTag([t; 32])).collect();
        for i in 0u64..60 {
            let tag = tags[(i * i % 7) as usize];
            assert_eq!(
                latest.get(&store, &tag).unwrap(),
                last_about(&store, &tag).unwrap()
            );
            let plan = state.plan(vec![draft(i)]).unwrap();
            let rows = vec![(i, tag, Vec::new())];
            let mut batch = WriteBatch::default();
            block = stage_plan(&mut batch, &plan, &rows, &block).unwrap();
            store.commit(batch).unwrap();
            state.apply(&plan).unwrap();
            latest.record(&rows);
            assert_eq!(latest.get(&store, &tag).unwrap(), Some(i));
        }
        for tag in &tags {
            assert_eq!(
                latest.get(&store, tag).unwrap(),
                last_about(&store, tag).unwrap()
            );
        }
    }

    /// A reader that kept the open block still reads the leaves appended to it later.
    #[test]
    fn a_kept_block_does_not_hide_later_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let (mut state, mut block) = (LogState::new(), OpenBlock::at(0));
        let log = StoreLog::new(&store);
        for i in 0u64..10 {
            let plan = state.plan(vec![draft(i)]).unwrap();
            let mut batch = WriteBatch::default();
            block = stage_plan(&mut batch, &plan, &[], &block).unwrap();
            store.commit(batch).unwrap();
            state.apply(&plan).unwrap();
            assert_eq!(log.leaf(i).unwrap().as_deref(), Some(&plan.leaves[0].1[..]));
            assert_eq!(log.leaf(i + 1).unwrap(), None);
        }
    }

    /// Block values keep their leaves exactly; a malformed value is an error, never a
    /// panic or a wrong leaf.
    #[test]
    fn block_values_round_trip_and_malformed_ones_are_errors() {
        let mut block = OpenBlock::at(7);
        let leaves: [&[u8]; 3] = [b"a", b"", &[0xff; 300]];
        for leaf in leaves {
            block.push(leaf).unwrap();
        }
        let read: Vec<&[u8]> = block_leaves(&block.value).map(Result::unwrap).collect();
        assert_eq!(read, leaves);
        for bad in [
            &[][..],
            &[2, 0, 0, 0, 1, 9][..],
            &[1, 0, 0, 0, 5, 1, 2][..],
            &[1, 0, 0][..],
        ] {
            let items: Vec<_> = block_leaves(bad).collect();
            assert!(
                items.iter().any(Result::is_err),
                "{bad:?} read as {items:?}"
            );
        }
    }
}
