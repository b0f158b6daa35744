//! The embedded backend: one sled 0.34 database in one data directory (DESIGN.md §8).
//!
//! Layout, durability argument and limits are in `docs/storage.md`. In short:
//!
//! - every [`Tree`] is a sled tree of the same name;
//! - [`Storage::apply`] and [`Storage::wait_durable`] are the group commit of `group.rs`:
//!   a batch is visible to reads at once (through the overlay) and queued; one leader at a
//!   time makes a group durable by writing it as **one record** of the store's write-ahead
//!   log (`wal.rs`) and `fdatasync`ing it, releases every waiter whose batch was in that
//!   record or an earlier one, lets the next leader start, and then writes the same writes
//!   into sled as plain inserts (groups in order, one at a time).
//!   A record is replayed whole at open, so a batch is recovered whole or not at all. sled
//!   is made durable (`Db::flush`, which on Linux only issues `sync_file_range`, then
//!   `fsync` of the sled data file `db`) only at checkpoints, when the log is full;
//! - values and keys are kept far below sled's blob threshold, so nothing ever lands in
//!   `blobs/` (files sled never fsyncs);
//! - a failed log write, sync, checkpoint or write into sled poisons the store: every
//!   later call returns [`StorageError::Poisoned`] until the process restarts and reopens
//!   the directory;
//! - `dir.rs` refuses foreign, damaged and half-created directories, creates and opens
//!   stores, and upgrades format 1.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use self::dir::{no_panic, unusable};
use self::wal::Wal;
#[cfg(feature = "test-hooks")]
use super::failpoints::{Failpoint, Failpoints};
use super::group::{Durability, GroupCommit, NetWrites};
use super::overlay::merge;
use super::{lock, CommitTicket, Entries, Storage, StorageError, Tree, WriteBatch};

mod dir;
pub mod wal;

pub use self::dir::FORMAT_KEY;
#[cfg(feature = "test-hooks")]
pub use self::dir::{FORMAT_VERSION, OLDEST_FORMAT_VERSION, SEGMENT_SIZE};
#[cfg(feature = "test-hooks")]
pub use super::failpoints::DANGEROUS_FAILPOINT_ENV;

/// sled 0.34.7 writes a page (a whole tree node, all its keys and values) to a separate,
/// never-fsynced file under `blobs/` when its serialized size plus a 32-byte message header
/// exceeds `segment_size / 4 - 20` (`pagecache/logger.rs`, `reserve_inner`;
/// `MINIMUM_ITEMS_PER_SEGMENT = 4`, `SEG_HEADER_LEN = 20`). With [`SEGMENT_SIZE`] that is
/// 262,092 bytes per page. (Tests check that the value limit keeps pages below it.)
#[cfg(any(test, feature = "test-hooks"))]
pub const SLED_BLOB_THRESHOLD: usize = SEGMENT_SIZE / 4 - 20 - 32;

/// The largest value [`SledStore`] stores. A leaf node splits once it holds more than 16
/// entries (`node.rs`, `should_split`), so a full leaf is at most about 17 entries; 8 KiB
/// values with [`MAX_KEY_LEN`] keys keep a leaf under 150 KB, leaving a margin of over 40%
/// (about 29 entries) below [`SLED_BLOB_THRESHOLD`] for splits that lag behind inserts.
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// The longest key [`SledStore`] stores. Index nodes hold up to 256 children keyed by
/// separators no longer than a key: 257 x 512 bytes is about half the blob threshold.
pub const MAX_KEY_LEN: usize = 512;

/// Options for opening or creating a [`SledStore`].
#[derive(Clone, Debug, Default)]
pub struct SledOptions {
    /// DANGEROUS, tests only (feature `test-hooks`): [`Storage::wait_durable`] returns at
    /// once and the write-ahead log is not used: `apply` writes each batch into sled in
    /// one sled transaction, and nothing is flushed or fsynced. Acknowledged writes are
    /// then lost on a crash. Exists so the crash harness can show it detects such loss.
    #[cfg(feature = "test-hooks")]
    pub dangerous_skip_durability: bool,
    /// The write-ahead log is checkpointed before it would grow past this many bytes
    /// (default [`wal::WAL_CAPACITY`]; tests pass a small one to run many checkpoints).
    pub wal_capacity: Option<u64>,
    /// The most memory sled's page cache may hold, in bytes (default
    /// [`DEFAULT_CACHE_BYTES`]).
    pub cache_bytes: Option<u64>,
}

/// sled's page cache size unless set: sled's own default (1 GiB) grows a server's memory
/// with its store; this keeps the whole server well under 256 MB (`docs/benchmarks.md`).
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The sled backend of [`Storage`]. Share it behind an `Arc`. Its `Debug` prints only the
/// path and store id (sled's own `Debug` would dump every tree).
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    /// The sled tree of each [`Tree`], by [`Tree::index`].
    trees: Vec<sled::Tree>,
    /// The sled data file, opened read-only once: `sync_all` on it is a checkpoint's fsync.
    data_file: File,
    store_id: [u8; 16],
    /// [`SledOptions::dangerous_skip_durability`].
    #[cfg(feature = "test-hooks")]
    skip_durability: bool,
    /// The queue, overlay, leader and waiters; this store is its [`Durability`].
    group: GroupCommit,
    /// The write-ahead log; only a durability leader (or open and drop) uses it.
    wal: Mutex<Wal>,
    #[cfg(feature = "test-hooks")]
    failpoints: Failpoints,
}

impl Drop for SledStore {
    /// Batches applied but never waited for are logged and written into sled, and sled is
    /// checkpointed, before sled closes: a clean close leaves nothing to replay. Not a
    /// durability promise: only `wait_durable` is.
    fn drop(&mut self) {
        if self.group.is_poisoned() || self.skips_durability() {
            return;
        }
        if self.group.wait_durable(self.group.issued(), &*self).is_ok() {
            self.group.wait_finished();
            let _ = self.checkpoint(&mut lock(&self.wal));
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("store_id", &self.store_id)
            .field("poisoned", &self.group.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// The store over an opened sled database and its log file, whose record at offset 0
    /// has sequence number `wal_start`.
    fn assemble(
        dir: &Path,
        db: sled::Db,
        store_id: [u8; 16],
        options: &SledOptions,
        wal_file: File,
        wal_start: u64,
    ) -> Result<Self, StorageError> {
        let mut trees = Vec::with_capacity(Tree::ALL.len());
        for tree in Tree::ALL {
            trees.push(no_panic(dir, "opening a tree", || {
                db.open_tree(tree.name())
            })?);
        }
        let data_file = File::open(dir.join("db"))
            .map_err(|e| unusable(dir, format!("cannot open the sled data file `db`: {e}")))?;
        Ok(Self {
            path: dir.to_path_buf(),
            db,
            trees,
            data_file,
            store_id,
            #[cfg(feature = "test-hooks")]
            skip_durability: options.dangerous_skip_durability,
            group: GroupCommit::default(),
            wal: Mutex::new(Wal::at(wal_file, wal_start, options.wal_capacity)),
            #[cfg(feature = "test-hooks")]
            failpoints: Failpoints::default(),
        })
    }

    /// Replays the log's records into sled, in order, and checkpoints if there were any.
    /// Replaying a record whose writes sled already holds rewrites the same values; the
    /// records run in log order to the end, so every key ends at its last logged value.
    fn replay_wal(&self) -> Result<(), StorageError> {
        let mut log = lock(&self.wal);
        let (records, end) = wal::read_records(log.file(), log.next_seq()).map_err(|e| {
            unusable(
                &self.path,
                format!("{e}; restore the data directory from a backup"),
            )
        })?;
        if records.is_empty() {
            return Ok(());
        }
        for writes in &records {
            self.write_into_sled(writes.iter().map(super::Write::parts))?;
        }
        log.replayed_to(end);
        self.checkpoint(&mut log)
    }

    /// The data directory.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The random id given to the store at creation.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// How many durability steps (a log record written and synced) this handle has run:
    /// with group commit, fewer than the commits when they are concurrent.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn durability_steps(&self) -> u64 {
        self.group.steps()
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the next `n` calls of
    /// [`Storage::apply`] fail with [`StorageError::Backend`] and change nothing
    /// (`u64::MAX`: every call).
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_fail_next_applies(&self, n: u64) {
        self.failpoints.fail_next_applies(n);
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the next `n` durability steps fail as
    /// a failed fsync would, which poisons the store.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_fail_next_durability(&self, n: u64) {
        self.failpoints.fail_next_durability(n);
    }

    /// True for the skip-durability variant (tests only), which has no durability steps.
    fn skips_durability(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if self.skip_durability {
            return true;
        }
        false
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }

    /// Refuses a batch this store cannot hold: keys, values or its log record too large.
    fn validate(batch: &WriteBatch) -> Result<(), StorageError> {
        let len: usize = batch.writes().iter().map(wal::encoded_len).sum();
        if len > wal::MAX_PAYLOAD {
            return Err(StorageError::BatchTooLarge {
                len,
                max: wal::MAX_PAYLOAD,
            });
        }
        for write in batch.writes() {
            let (tree, key, value) = write.parts();
            if key.len() > MAX_KEY_LEN {
                return Err(StorageError::KeyTooLarge {
                    tree,
                    len: key.len(),
                    max: MAX_KEY_LEN,
                });
            }
            if let Some(value) = value.filter(|v| v.len() > MAX_VALUE_LEN) {
                return Err(StorageError::ValueTooLarge {
                    tree,
                    len: value.len(),
                    max: MAX_VALUE_LEN,
                });
            }
        }
        Ok(())
    }

    /// One sled transaction over the trees the batch touches: after a crash all of it is
    /// present or none. Used only by the skip-durability variant (tests), which has no log.
    #[cfg(feature = "test-hooks")]
    fn apply_sled(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;

        let net = super::group::net_writes(std::iter::once(batch));
        let mut touched: Vec<Tree> = net.keys().map(|(t, _)| *t).collect();
        touched.dedup();
        if touched.is_empty() {
            return Ok(());
        }
        let trees: Vec<&sled::Tree> = touched.iter().map(|t| self.tree(*t)).collect();
        let result: Result<(), TransactionError<()>> = trees.as_slice().transaction(|view| {
            for ((tree, key), value) in &net {
                let i = touched
                    .binary_search(tree)
                    .map_err(|_| ConflictableTransactionError::Abort(()))?;
                match value {
                    Some(value) => view[i].insert(*key, *value)?,
                    None => view[i].remove(*key)?,
                };
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(StorageError::backend("applying a batch", e)),
            // Not reachable (every tree of the batch is in the transaction); sled applied
            // nothing, and the caller is told rather than the process panicking.
            Err(TransactionError::Abort(())) => Err(StorageError::backend(
                "applying a batch",
                Failpoint("tree missing from the transaction"),
            )),
        }
    }

    /// Makes sled durable and restarts the log at offset 0: records in sled where the log
    /// starts again, then `Db::flush` (sled writes its IO buffers to `db`, on Linux with
    /// `sync_file_range`, which is not a barrier for metadata or the disk cache) and
    /// `fsync` of `db`. Only called when every logged record is in sled (the caller waits
    /// for the groups being finished, [`GroupCommit::wait_finished`]), so nothing in the log
    /// is needed after it.
    fn checkpoint(&self, log: &mut Wal) -> Result<(), StorageError> {
        self.db
            .insert(wal::WAL_START_KEY, &log.next_seq().to_be_bytes())
            .map_err(|e| StorageError::backend("recording the log start", e))?;
        self.db
            .flush()
            .map_err(|e| StorageError::backend("flushing sled's log", e))?;
        self.data_file
            .sync_all()
            .map_err(|e| StorageError::backend("fsync of the sled data file", e))?;
        log.restart()
            .map_err(|e| StorageError::backend("emptying the write-ahead log", e))?;
        Ok(())
    }

    /// Commit used at creation and upgrade: through the log, whatever the options.
    fn commit_always_durable(&self, batch: WriteBatch) -> Result<(), StorageError> {
        Self::validate(&batch)?;
        let ticket = self.group.apply(batch)?;
        self.group.wait_durable(ticket, self)
    }

    /// Plain sled inserts and removes, in order.
    fn write_into_sled<'a>(
        &self,
        writes: impl Iterator<Item = wal::LoggedWrite<'a>>,
    ) -> Result<(), StorageError> {
        for (tree, key, value) in writes {
            let tree = self.tree(tree);
            match value {
                Some(value) => tree.insert(key, value).map(|_| ()),
                None => tree.remove(key).map(|_| ()),
            }
            .map_err(|e| StorageError::backend("writing a logged group into sled", e))?;
        }
        Ok(())
    }

    fn collect(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Entries, StorageError> {
        self.group.check_poisoned()?;
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let overlay = self.group.overlay()?;
        let range = self
            .tree(tree)
            .range::<&[u8], _>((Bound::Included(start), upper))
            .map(|entry| entry.map_err(|e| StorageError::backend("scanning", e)));
        let staged = overlay.range(tree, start, upper);
        if reverse {
            merge(range.rev(), staged.rev(), limit, true)
        } else {
            merge(range, staged, limit, false)
        }
    }
}

/// The sled backend's durability step: the group as one write-ahead log record, synced
/// (after a checkpoint when the log is full), then the same writes into sled.
impl Durability for SledStore {
    fn make_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError> {
        #[cfg(feature = "test-hooks")]
        self.failpoints.durability()?;
        let mut log = lock(&self.wal);
        let len = log.encode(
            writes
                .iter()
                .map(|((tree, key), value)| (*tree, *key, *value)),
        );
        if log.is_full_for(len) {
            // Every logged group must be in sled before the log restarts.
            self.group.wait_finished();
            self.checkpoint(&mut log)?;
        }
        log.write_encoded()
            .map_err(|e| StorageError::backend("writing and syncing the write-ahead log", e))
    }

    fn after_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError> {
        self.write_into_sled(
            writes
                .iter()
                .map(|((tree, key), value)| (*tree, *key, *value)),
        )
    }
}

impl Storage for SledStore {
    fn is_poisoned(&self) -> bool {
        self.group.is_poisoned()
    }

    #[cfg(feature = "test-hooks")]
    fn dangerous_panic_next_durability(&self) {
        self.failpoints.panic_next_durability();
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let overlay = self.group.overlay()?;
        if let Some(staged) = overlay.get(tree, key) {
            return Ok(staged);
        }
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StorageError::backend("reading", e))
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        self.collect(tree, start, end, limit, false)
    }

    fn scan_rev(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        self.collect(tree, start, end, limit, true)
    }

    fn apply(&self, batch: WriteBatch) -> Result<CommitTicket, StorageError> {
        self.group.check_poisoned()?;
        Self::validate(&batch)?;
        #[cfg(feature = "test-hooks")]
        {
            self.failpoints.apply()?;
            if self.skip_durability {
                return self.group.apply_unqueued(batch, |b| self.apply_sled(b));
            }
        }
        self.group.apply(batch)
    }

    fn wait_durable(&self, ticket: CommitTicket) -> Result<(), StorageError> {
        if self.skips_durability() {
            return self.group.check_poisoned();
        }
        self.group.wait_durable(ticket, self)
    }

    fn poll_durable(
        &self,
        ticket: CommitTicket,
        waker: &std::task::Waker,
    ) -> std::task::Poll<Result<(), StorageError>> {
        if self.skips_durability() {
            return std::task::Poll::Ready(self.group.check_poisoned());
        }
        self.group.poll_durable(ticket, waker)
    }
}

#[cfg(test)]
mod tests;
