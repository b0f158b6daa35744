//! The storage layer: a small trait the engine is written against, and its backends.
//!
//! The trait is shaped for an embedded store (sled, the default) and for a networked SQL
//! database later (DESIGN.md §8): atomic multi-tree write batches, ordered range scans in
//! both directions, and an explicit durability step so that concurrent commits share one
//! sync (group commit). Nothing in this file, `group.rs` or `overlay.rs` is sled-specific:
//! `group.rs` is the group commit a backend drives with its own "make this group durable"
//! step, `overlay.rs` the in-memory view of the batches applied but not yet in the backend.

use std::fmt;

#[cfg(feature = "test-hooks")]
mod failpoints;
mod group;
mod overlay;
pub mod postgres;
pub mod sled;

pub use self::postgres::PgStore;
pub use self::sled::{SledOptions, SledStore};

/// Where a vault's store is and how to open it: the sled directory (the default) or a
/// PostgreSQL database (`docs/storage.md`).
#[derive(Clone, Debug)]
pub enum StoreSpec {
    /// The embedded store in `dir`.
    Sled {
        /// The store's directory (`<data dir>/store`).
        dir: std::path::PathBuf,
        /// Cache size and test switches.
        options: SledOptions,
    },
    /// A PostgreSQL database.
    Postgres {
        /// The database (its URL, parsed, and its TLS set-up).
        target: Box<postgres::PgTarget>,
        /// The lease's name and timing.
        options: postgres::PgOptions,
    },
}

impl StoreSpec {
    /// Creates a new store (refused where one exists).
    pub fn create(&self) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
        Ok(match self {
            StoreSpec::Sled { dir, .. } => std::sync::Arc::new(SledStore::create(dir)?),
            StoreSpec::Postgres { target, options } => {
                std::sync::Arc::new(PgStore::create((**target).clone(), options.clone())?)
            }
        })
    }

    /// Opens the existing store for writing (PostgreSQL: takes the writer lease).
    pub fn open(&self) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
        Ok(match self {
            StoreSpec::Sled { dir, options } => {
                std::sync::Arc::new(SledStore::open_with(dir, options.clone())?)
            }
            StoreSpec::Postgres { target, options } => {
                std::sync::Arc::new(PgStore::open((**target).clone(), options.clone())?)
            }
        })
    }

    /// Opens the existing store to read it (PostgreSQL: without the lease, beside a
    /// running vault; sled: the same as [`StoreSpec::open`], one process at a time).
    pub fn open_to_read(&self) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
        match self {
            StoreSpec::Sled { .. } => self.open(),
            StoreSpec::Postgres { target, .. } => Ok(std::sync::Arc::new(PgStore::open_read_only(
                (**target).clone(),
            )?)),
        }
    }

    /// The sled directory, where the passphrase check file lives beside the store.
    pub fn sled_dir(&self) -> Option<&std::path::Path> {
        match self {
            StoreSpec::Sled { dir, .. } => Some(dir),
            StoreSpec::Postgres { .. } => None,
        }
    }

    /// The store's location for messages (a directory, or a URL without its password).
    pub fn describe(&self) -> String {
        match self {
            StoreSpec::Sled { dir, .. } => dir.display().to_string(),
            StoreSpec::Postgres { target, .. } => target.describe().to_owned(),
        }
    }
}

/// Key-value pairs returned by a scan, in scan order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The logical trees (tables) of the vault. Each backend maps them to its own keyspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Tree {
    /// Format markers, sealed master keys, counters, the last signed checkpoint.
    Meta,
    /// Per-citizen wrapped data keys and subject-tag keys.
    Keys,
    /// Encrypted record fields, one value per (citizen, category).
    Records,
    /// Consent artefacts and consent requests.
    Consents,
    /// Hashed bearer tokens (citizens, auditors).
    Tokens,
    /// Enrolled agencies and their certificate pins.
    Agencies,
    /// Audit log leaves one per key, by big-endian index: the layout of stores written
    /// before [`Tree::AuditBlocks`], still read, no longer written.
    AuditLeaves,
    /// Audit log complete-subtree hashes, by (level, index).
    AuditNodes,
    /// Audit log index of each subject's entries, by (subject tag, index).
    AuditSubjects,
    /// Audit log leaves in blocks of consecutive leaves, by the big-endian index of a
    /// block's first leaf (`engine/log.rs`).
    AuditBlocks,
    /// Notifications not yet delivered (`engine/notify.rs`).
    Outbox,
}

impl Tree {
    /// Every tree, in a fixed order.
    pub const ALL: [Tree; 11] = [
        Tree::Meta,
        Tree::Keys,
        Tree::Records,
        Tree::Consents,
        Tree::Tokens,
        Tree::Agencies,
        Tree::AuditLeaves,
        Tree::AuditNodes,
        Tree::AuditSubjects,
        Tree::AuditBlocks,
        Tree::Outbox,
    ];

    /// The tree's position in [`Tree::ALL`] (also its byte in a write-ahead log record).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The tree's stable name (also its name on disk).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::Keys => "keys",
            Tree::Records => "records",
            Tree::Consents => "consents",
            Tree::Tokens => "tokens",
            Tree::Agencies => "agencies",
            Tree::AuditLeaves => "audit_leaves",
            Tree::AuditNodes => "audit_nodes",
            Tree::AuditSubjects => "audit_subjects",
            Tree::AuditBlocks => "audit_blocks",
            Tree::Outbox => "outbox",
        }
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One write of a batch. `Debug` prints the tree and the sizes only: keys can name a
/// citizen and values are stored secrets (ciphertexts, wrapped keys).
#[derive(Clone, PartialEq, Eq)]
pub enum Write {
    /// Set `key` to `value` in `tree`.
    Put {
        /// The tree written.
        tree: Tree,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` from `tree` (no error if absent).
    Delete {
        /// The tree written.
        tree: Tree,
        /// The key.
        key: Vec<u8>,
    },
}

impl Write {
    /// The tree, the key, and the value (`None`: a delete).
    pub(crate) fn parts(&self) -> (Tree, &[u8], Option<&[u8]>) {
        match self {
            Write::Put { tree, key, value } => (*tree, key, Some(value)),
            Write::Delete { tree, key } => (*tree, key, None),
        }
    }
}

/// A set of writes over any trees, applied all together or not at all. `Debug` prints
/// trees and sizes only, like [`Write`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    writes: Vec<Write>,
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Put { tree, key, value } => f
                .debug_struct("Put")
                .field("tree", tree)
                .field("key_len", &key.len())
                .field("value_len", &value.len())
                .finish(),
            Write::Delete { tree, key } => f
                .debug_struct("Delete")
                .field("tree", tree)
                .field("key_len", &key.len())
                .finish(),
        }
    }
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push(Write::Put {
            tree,
            key: key.into(),
            value: value.into(),
        });
    }

    /// Adds a delete.
    pub fn delete(&mut self, tree: Tree, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Delete {
            tree,
            key: key.into(),
        });
    }

    /// Appends every write of `other`, after this batch's own.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn extend(&mut self, other: WriteBatch) {
        self.writes.extend(other.writes);
    }

    /// The writes, in the order they were added (a later write to a key wins).
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True when the batch has no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Proof that a batch was applied; [`Storage::wait_durable`] turns it into durability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitTicket(pub(crate) u64);

/// The storage contract the engine is written against.
///
/// A batch becomes visible to readers when [`Storage::apply`] returns and durable (it
/// survives a crash or power loss) when [`Storage::wait_durable`] returns for its ticket;
/// durability covers every batch applied before it, so concurrent callers share one
/// sync. Callers acknowledge nothing before `wait_durable` returns. After a
/// failed durability step the store refuses every further call: what is in memory may no
/// longer match the disk, and only a restart (which reads the disk) is safe.
pub trait Storage: Send + Sync {
    /// The value at `key`, if any.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Up to `limit` entries with `start <= key < end` (no upper bound when `end` is
    /// `None`), in ascending key order.
    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError>;

    /// Like [`Storage::scan`], in descending key order (the last entries first).
    fn scan_rev(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError>;

    /// Applies every write of `batch` atomically (all trees or none). Visible at once,
    /// not yet durable. Backends bound key, value and batch sizes
    /// ([`StorageError::KeyTooLarge`], [`StorageError::ValueTooLarge`],
    /// [`StorageError::BatchTooLarge`]; the sled backend: 512 bytes, 8,192 bytes, 64 MiB);
    /// a refused batch changes nothing.
    fn apply(&self, batch: WriteBatch) -> Result<CommitTicket, StorageError>;

    /// Returns once every batch applied up to `ticket` is durable on disk.
    fn wait_durable(&self, ticket: CommitTicket) -> Result<(), StorageError>;

    /// Non-blocking form of [`Storage::wait_durable`] for async callers: `Ready` once
    /// `ticket` is durable (or the store failed), otherwise `Pending` with `waker` woken
    /// when a durability step finishes that covers `ticket`. It does not run a durability
    /// step itself: some thread must call [`Storage::wait_durable`] for a ticket at or above
    /// this one (the engine's committer thread does). The default blocks in `wait_durable`,
    /// for backends without a waker list.
    fn poll_durable(
        &self,
        ticket: CommitTicket,
        waker: &std::task::Waker,
    ) -> std::task::Poll<Result<(), StorageError>> {
        let _ = waker;
        std::task::Poll::Ready(self.wait_durable(ticket))
    }

    /// True once a failed (or panicked) durability step or write poisoned the store: every
    /// call fails until the process restarts.
    fn is_poisoned(&self) -> bool;

    /// False when this store may no longer publish anything: a PostgreSQL store whose
    /// writer lease was lost or may have expired (no renewal for its whole lifetime), or
    /// that holds none. The engine signs no checkpoint then.
    fn holds_lease(&self) -> bool {
        true
    }

    /// What the backend tells about itself for health checks and metrics.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            backend: "sled",
            lease: None,
            round_trip: None,
        }
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the next durability step panics, as a
    /// bug in a backend would; the store must poison itself and release every waiter.
    #[cfg(feature = "test-hooks")]
    fn dangerous_panic_next_durability(&self);

    /// Applies `batch` and waits until it is durable.
    fn commit(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let ticket = self.apply(batch)?;
        self.wait_durable(ticket)
    }
}

/// A store's backend, and for PostgreSQL its writer lease and the database's round trip.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    /// `sled` or `postgres`.
    pub backend: &'static str,
    /// The writer lease this store holds (PostgreSQL).
    pub lease: Option<postgres::LeaseInfo>,
    /// The time a trivial query took just now (PostgreSQL; `None` when it failed).
    pub round_trip: Option<std::time::Duration>,
}

/// What can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend failed (I/O, corruption detected by the backend).
    #[error("storage backend failed on {operation}: {source}")]
    Backend {
        /// What was being done.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A value is larger than the backend stores inline (and so durably).
    #[error("value of {len} bytes for tree {tree} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The tree written.
        tree: Tree,
        /// The value's size.
        len: usize,
        /// The largest value allowed.
        max: usize,
    },
    /// A key is longer than the backend stores safely.
    #[error("key of {len} bytes for tree {tree} exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The tree written.
        tree: Tree,
        /// The key's size.
        len: usize,
        /// The longest key allowed.
        max: usize,
    },
    /// A batch is larger than the backend commits in one piece (the sled backend: its
    /// write-ahead log record, 64 MiB); nothing of it is applied.
    #[error("batch of {len} bytes exceeds the limit of {max} bytes for one commit: split it")]
    BatchTooLarge {
        /// The batch's size as the backend counts it.
        len: usize,
        /// The largest batch allowed.
        max: usize,
    },
    /// An earlier durability step failed; the store must be reopened.
    #[error("storage is failed after an earlier durability error: restart the vault")]
    Poisoned,
    /// The store is open read-only (a standby node): it commits nothing.
    #[error("this node is a standby with a read-only store: writes go to the active node")]
    ReadOnly,
    /// Another node took the writer lease: this store commits nothing more.
    #[error("this node lost the writer lease (epoch {epoch}) to another node: it commits nothing more and must restart as a standby")]
    LeaseLost {
        /// This store's lease epoch.
        epoch: i64,
    },
    /// A compare-and-swap key's stored value is not the one this store last saw: another
    /// writer changed it. Nothing of the group was committed.
    #[error("refusing to commit: {tree} {what} in the database is not the one this node last saw; another writer changed it. This node stops writing: restart it")]
    Conflict {
        /// The tree.
        tree: Tree,
        /// What the key holds.
        what: &'static str,
    },
    /// Another node holds the writer lease.
    #[error("another vault node ({holder}) holds the writer lease of {database} for {remaining_ms} ms more: stop it, or wait and start this node as a standby")]
    LeaseHeld {
        /// The other node's name.
        holder: String,
        /// How long its lease lasts without renewal, by the database's clock.
        remaining_ms: i64,
        /// The database (no password).
        database: String,
    },
    /// The directory is not a store this program can open.
    #[error("cannot open store at {path}: {reason}")]
    Unusable {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl StorageError {
    /// A [`StorageError::Backend`] for `operation`.
    pub(crate) fn backend(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Backend {
            operation,
            source: Box::new(source),
        }
    }
}

/// Entries read per page by [`scan_all`].
const SCAN_PAGE: usize = 4096;

/// Every entry of `tree` in ascending key order, read a page at a time (memory bounded by
/// one page).
pub fn scan_all(store: &dyn Storage, tree: Tree) -> ScanAll<'_> {
    ScanAll {
        store,
        tree,
        next: Some(Vec::new()),
        end: None,
        page: Vec::new().into_iter(),
    }
}

/// The entries of `tree` from `start` (inclusive) to `end` (exclusive), in ascending key
/// order, read a page at a time like [`scan_all`].
pub fn scan_range<'a>(store: &'a dyn Storage, tree: Tree, start: &[u8], end: &[u8]) -> ScanAll<'a> {
    ScanAll {
        store,
        tree,
        next: Some(start.to_vec()),
        end: Some(end.to_vec()),
        page: Vec::new().into_iter(),
    }
}

/// The iterator of [`scan_all`] and [`scan_range`].
pub struct ScanAll<'a> {
    store: &'a dyn Storage,
    tree: Tree,
    /// The start key of the next page; `None` once the last page was read.
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for ScanAll<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.page.next() {
                return Some(Ok(item));
            }
            let start = self.next.take()?;
            let page = match self
                .store
                .scan(self.tree, &start, self.end.as_deref(), SCAN_PAGE)
            {
                Ok(page) => page,
                Err(e) => return Some(Err(e)),
            };
            if page.len() == SCAN_PAGE {
                self.next = page.last().map(|(k, _)| {
                    let mut n = k.clone();
                    n.push(0);
                    n
                });
            }
            self.page = page.into_iter();
        }
    }
}

/// Locks a mutex of the storage layer. A panic while holding one leaves plain counters,
/// flags and file offsets behind, each still valid, so a poisoned lock is used as it is.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_index_is_its_position_in_all() {
        for (i, tree) in Tree::ALL.into_iter().enumerate() {
            assert_eq!(tree.index(), i, "{tree}");
        }
    }

    #[test]
    fn batch_debug_shows_trees_and_sizes_not_keys_or_values() {
        let mut batch = WriteBatch::new();
        batch.put(
            Tree::Records,
            b"citizen-1234".to_vec(),
            b"ciphertext".to_vec(),
        );
        batch.delete(Tree::Tokens, b"token-hash".to_vec());
        let debug = format!("{batch:?}");
        assert!(
            debug.contains("Records") && debug.contains("key_len: 12"),
            "{debug}"
        );
        assert!(
            debug.contains("value_len: 10") && debug.contains("Tokens"),
            "{debug}"
        );
        for secret in ["citizen", "ciphertext", "token-hash", "99, 105, 116"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn scan_all_reads_every_entry_in_order_across_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::create(dir.path().join("store")).expect("store");
        let n = 2 * SCAN_PAGE as u32 + 7;
        let mut batch = WriteBatch::new();
        for i in 0..n {
            batch.put(Tree::Records, i.to_be_bytes().to_vec(), vec![1]);
        }
        store.commit(batch).expect("commit");
        let keys: Vec<Vec<u8>> = scan_all(&store, Tree::Records)
            .map(|item| item.expect("read").0)
            .collect();
        let want: Vec<Vec<u8>> = (0..n).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys, want);
        assert_eq!(scan_all(&store, Tree::Tokens).count(), 0);
    }
}
