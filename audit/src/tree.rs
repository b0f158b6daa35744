//! The stored Merkle tree: the read trait a backend implements, the in-memory append state
//! and its plans, the in-memory store, roots and proof generation in O(log n) reads.

use std::error::Error as StdError;

use crate::entry::{Entry, EntryDraft, EntryError};
use crate::hash::{leaf_hash, node_hash, Frontier, Hash};

/// An error of the storage backend behind [`LogRead`], boxed so that any backend fits.
#[derive(Debug, thiserror::Error)]
#[error("audit log storage failed: {source}")]
pub struct StoreError {
    /// The backend's own error.
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

impl StoreError {
    /// Wraps a backend error.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Read access to a stored log. `node(level, i)` is the hash of the complete subtree of
/// `2^level` leaves starting at leaf `i * 2^level` (level 0 is the leaf hash); a backend
/// stores one for every complete subtree, as listed in each [`AppendPlan`], or may compute
/// level 0 from the stored leaf instead of storing it.
pub trait LogRead {
    /// The exact stored bytes of leaf `index`, or `None` if the log has no such leaf.
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// The stored hash of a complete subtree, or `None` if it is not (yet) complete.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;

    /// The hashes of the complete subtrees `start..end` at `level`, in order, stopping at
    /// the first one that is not complete. A backend with range reads overrides this (a
    /// tile is 256 of them).
    fn nodes(&self, level: u8, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::new();
        for index in start..end {
            match self.node(level, index)? {
                Some(h) => out.push(h),
                None => break,
            }
        }
        Ok(out)
    }

    /// The bytes of leaves `start..end`, in order, stopping at the first one the log does
    /// not hold. A backend with range reads overrides this.
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for index in start..end {
            match self.leaf(index)? {
                Some(l) => out.push(l),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Why a root or a proof could not be computed from a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A subtree hash that must exist for the requested size is missing: the store is
    /// smaller than asked or damaged.
    #[error("audit log node (level {level}, index {index}) is missing: the log is shorter than the requested size or its storage is damaged")]
    MissingNode {
        /// Subtree level.
        level: u8,
        /// Subtree index at that level.
        index: u64,
    },
    /// The requested index or sizes do not describe a valid proof.
    #[error("invalid proof request: index {index} and sizes {first}..{second} (need index < size, 0 < first <= second)")]
    BadRequest {
        /// Leaf index (inclusion) or 0.
        index: u64,
        /// Tree size (inclusion) or first size (consistency).
        first: u64,
        /// Tree size (consistency) or the same size (inclusion).
        second: u64,
    },
}

impl TreeError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "audit.store",
            Self::MissingNode { .. } => "audit.missing_node",
            Self::BadRequest { .. } => "audit.bad_proof_request",
        }
    }
}

fn read_node(store: &impl LogRead, level: u8, index: u64) -> Result<Hash, TreeError> {
    store
        .node(level, index)?
        .ok_or(TreeError::MissingNode { level, index })
}

/// MTH of the leaves `[start, end)`, where `start` is a multiple of the largest power of
/// two below `end - start` (every range RFC 9162 proofs need): greedy decomposition into
/// stored complete subtrees, folded right to left.
fn range_hash(store: &impl LogRead, start: u64, end: u64) -> Result<Hash, TreeError> {
    let mut parts = Vec::with_capacity(64);
    let mut pos = start;
    while pos < end {
        let mut level = 0u8;
        while level < 63 {
            let span = 1u64 << (level + 1);
            if !pos.is_multiple_of(span) || pos + span > end {
                break;
            }
            level += 1;
        }
        parts.push(read_node(store, level, pos >> level)?);
        pos += 1u64 << level;
    }
    let mut iter = parts.into_iter().rev();
    Ok(match iter.next() {
        None => crate::hash::empty_root(),
        Some(last) => iter.fold(last, |acc, left| node_hash(&left, &acc)),
    })
}

/// The root of the tree of the first `size` leaves, in O(log n) reads.
pub fn root(store: &impl LogRead, size: u64) -> Result<Hash, TreeError> {
    range_hash(store, 0, size)
}

fn split(n: u64) -> u64 {
    // Largest power of two strictly below n (n >= 2).
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of `size` leaves,
/// nearest the leaf first.
pub fn inclusion_proof(
    store: &impl LogRead,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::BadRequest {
            index,
            first: size,
            second: size,
        });
    }
    let mut path = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            path.push(range_hash(store, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_hash(store, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The RFC 9162 §2.1.4.1 consistency proof between the trees of `first` and `second`
/// leaves (`0 < first <= second`).
pub fn consistency_proof(
    store: &impl LogRead,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, TreeError> {
    if first == 0 || first > second {
        return Err(TreeError::BadRequest {
            index: 0,
            first,
            second,
        });
    }
    let mut path = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, second);
    let mut m = first;
    let mut complete = true;
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            path.push(range_hash(store, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(range_hash(store, lo, lo + k)?);
            lo += k;
            m -= k;
            complete = false;
        }
    }
    if !complete {
        path.push(range_hash(store, lo, hi)?);
    }
    path.reverse();
    Ok(path)
}

/// Why an append could not be planned or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A draft is not a valid entry.
    #[error("audit entry {index} is invalid: {source}")]
    Entry {
        /// The index the entry would have had.
        index: u64,
        /// What is wrong with it.
        #[source]
        source: EntryError,
    },
    /// The plan was made for another log size (another append happened in between).
    #[error("append plan starts at index {plan_first} but the log has {size} entries: plan again")]
    StalePlan {
        /// First index of the plan.
        plan_first: u64,
        /// Current size of the log.
        size: u64,
    },
    /// Loading the state failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A plan with no drafts.
    #[error("append plan has no entries")]
    Empty,
}

impl AppendError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Entry { .. } => "audit.invalid_entry",
            Self::StalePlan { .. } => "audit.stale_plan",
            Self::Tree(e) => e.code(),
            Self::Empty => "audit.empty_append",
        }
    }
}

/// What an append writes: the exact leaf bytes and every newly complete subtree hash. The
/// engine writes these in the same atomic commit as the change they record, then calls
/// [`LogState::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendPlan {
    /// Index of the first new leaf (the log size before the append).
    pub first_index: u64,
    /// `(index, encoded entry)` for every new leaf, in order.
    pub leaves: Vec<(u64, Vec<u8>)>,
    /// `(level, index, hash)` of every subtree completed by this append (level 0 = leaves).
    pub nodes: Vec<(u8, u64, Hash)>,
    /// The log size after the append.
    pub size: u64,
    frontier: Frontier,
    last_leaf: Hash,
}

/// The in-memory append state of a log: its size, right-edge frontier and last leaf hash.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogState {
    frontier: Frontier,
    last_leaf: Hash,
}

impl AppendPlan {
    /// The root of the log once the plan is applied (computed on demand: most appends
    /// never need it).
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl LogState {
    /// The state of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the state of a stored log of `size` entries in O(log n) reads.
    pub fn load(store: &impl LogRead, size: u64) -> Result<Self, TreeError> {
        let mut nodes = Vec::with_capacity(size.count_ones() as usize);
        let mut pos = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push(read_node(store, level, pos >> level)?);
                pos += 1u64 << level;
            }
        }
        let last_leaf = if size == 0 {
            [0u8; 32]
        } else {
            read_node(store, 0, size - 1)?
        };
        Ok(Self {
            frontier: Frontier::from_parts(size, nodes),
            last_leaf,
        })
    }

    /// The number of entries in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current tree root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The leaf hash of the last entry (all zeros for an empty log).
    pub fn last_leaf_hash(&self) -> Hash {
        self.last_leaf
    }

    /// Plans the append of `drafts` (assigning indices and `prev`) without changing the
    /// state.
    pub fn plan(&self, drafts: Vec<EntryDraft>) -> Result<AppendPlan, AppendError> {
        if drafts.is_empty() {
            return Err(AppendError::Empty);
        }
        let first_index = self.size();
        let mut frontier = self.frontier.clone();
        let mut last_leaf = self.last_leaf;
        let mut leaves = Vec::with_capacity(drafts.len());
        let mut nodes = Vec::with_capacity(drafts.len() * 2 + 64);
        for (i, draft) in drafts.into_iter().enumerate() {
            let index = first_index + i as u64;
            let entry = Entry::from_draft(draft, index, last_leaf);
            let bytes = entry
                .encode()
                .map_err(|source| AppendError::Entry { index, source })?;
            last_leaf = leaf_hash(&bytes);
            frontier.push_with(last_leaf, |l, idx, h| nodes.push((l, idx, h)));
            leaves.push((index, bytes));
        }
        Ok(AppendPlan {
            first_index,
            leaves,
            nodes,
            size: frontier.size(),
            frontier,
            last_leaf,
        })
    }

    /// Adopts a plan once its leaves and nodes are durably stored.
    pub fn apply(&mut self, plan: &AppendPlan) -> Result<(), AppendError> {
        if plan.first_index != self.size() {
            return Err(AppendError::StalePlan {
                plan_first: plan.first_index,
                size: self.size(),
            });
        }
        self.frontier = plan.frontier.clone();
        self.last_leaf = plan.last_leaf;
        Ok(())
    }
}

/// An in-memory log store: leaves in one buffer, every complete subtree hash by level.
/// A real backend for auditors' offline work, tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    data: Vec<u8>,
    offsets: Vec<usize>,
    levels: Vec<Vec<Hash>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of stored leaves.
    pub fn size(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Stores a plan's leaves and nodes (the plan must start at the current size).
    pub fn apply(&mut self, plan: &AppendPlan) -> Result<(), AppendError> {
        if plan.first_index != self.size() {
            return Err(AppendError::StalePlan {
                plan_first: plan.first_index,
                size: self.size(),
            });
        }
        for (_, bytes) in &plan.leaves {
            self.offsets.push(self.data.len());
            self.data.extend_from_slice(bytes);
        }
        for &(level, index, hash) in &plan.nodes {
            let level = usize::from(level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            debug_assert_eq!(self.levels[level].len() as u64, index);
            self.levels[level].push(hash);
        }
        Ok(())
    }

    /// Plans `drafts` on `state`, stores the plan and applies it to `state`.
    pub fn append(
        &mut self,
        state: &mut LogState,
        drafts: Vec<EntryDraft>,
    ) -> Result<AppendPlan, AppendError> {
        let plan = state.plan(drafts)?;
        self.apply(&plan)?;
        state.apply(&plan)?;
        Ok(plan)
    }

    /// Borrowed bytes of leaf `index`.
    pub fn leaf_bytes(&self, index: u64) -> Option<&[u8]> {
        let i = usize::try_from(index).ok()?;
        let start = *self.offsets.get(i)?;
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.data.len());
        self.data.get(start..end)
    }

    /// Drops every leaf from `size` on (a restore from an older backup, in tests).
    pub fn truncate(&mut self, size: u64) {
        let Ok(size) = usize::try_from(size) else {
            return;
        };
        if size >= self.offsets.len() {
            return;
        }
        self.data.truncate(self.offsets[size]);
        self.offsets.truncate(size);
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            nodes.truncate(size >> level);
        }
    }
}

impl LogRead for MemStore {
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.leaf_bytes(index).map(<[u8]>::to_vec))
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let Ok(i) = usize::try_from(index) else {
            return Ok(None);
        };
        Ok(self
            .levels
            .get(usize::from(level))
            .and_then(|nodes| nodes.get(i))
            .copied())
    }
}
