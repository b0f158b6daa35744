//! The embedded backend: one sled 0.34 database in one data directory (DESIGN.md §8).
//!
//! Layout, durability argument and limits are in `docs/storage.md`. In short:
//!
//! - every [`Tree`] is a sled tree of the same name;
//! - [`Storage::apply`] makes a batch visible to reads at once (an in-memory overlay of
//!   the batches not yet in sled) and queues it; [`Storage::wait_durable`] is a group
//!   commit: one leader at a time writes every queued batch as **one record** of the
//!   store's write-ahead log (`wal.rs`) and `fdatasync`s it, releases every waiter whose
//!   batch was in that record or an earlier one, and then writes the same writes into sled
//!   as plain inserts. A record is replayed whole at open, so a batch is recovered whole or
//!   not at all. sled is made durable (`Db::flush`, which on Linux only issues
//!   `sync_file_range`, then `fsync` of the sled data file `db`) only at checkpoints, when
//!   the log is full: sled 0.34 rolls its IO buffer on every transaction and flush, each
//!   roll waking its whole IO thread pool;
//! - values and keys are kept far below sled's blob threshold, so nothing ever lands in
//!   `blobs/` (files sled never fsyncs);
//! - any flush or fsync failure poisons the store: every later call returns
//!   [`StorageError::Poisoned`] until the process restarts and reopens the directory.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::ops::Bound;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

pub mod wal;

use self::wal::{Wal, WAL_FILE, WAL_START_KEY};
use crate::storage::{CommitTicket, Entries, Storage, StorageError, Tree, Write, WriteBatch};

/// Size of sled's log segments (and IO buffers) in the stores this module creates. Fixed at
/// creation: sled records it in `conf` and refuses to open with another value.
pub const SEGMENT_SIZE: usize = 1 << 20;

/// sled 0.34.7 writes a page (a whole tree node, all its keys and values) to a separate,
/// never-fsynced file under `blobs/` when its serialized size plus a 32-byte message header
/// exceeds `segment_size / 4 - 20` (`pagecache/logger.rs`, `reserve_inner`;
/// `MINIMUM_ITEMS_PER_SEGMENT = 4`, `SEG_HEADER_LEN = 20`). With [`SEGMENT_SIZE`] that is
/// 262,092 bytes per page.
pub const SLED_BLOB_THRESHOLD: usize = SEGMENT_SIZE / 4 - 20 - 32;

/// The largest value [`SledStore`] stores. A leaf node splits once it holds more than 16
/// entries (`node.rs`, `should_split`), so a full leaf is at most about 17 entries; 8 KiB
/// values with [`MAX_KEY_LEN`] keys keep a leaf under 150 KB, leaving a margin of over 40%
/// (about 29 entries) below [`SLED_BLOB_THRESHOLD`] for splits that lag behind inserts.
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// The longest key [`SledStore`] stores. Index nodes hold up to 256 children keyed by
/// separators no longer than a key: 257 x 512 bytes is about half the blob threshold.
pub const MAX_KEY_LEN: usize = 512;

/// The key in [`Tree::Meta`] holding the store format marker.
pub const FORMAT_KEY: &[u8] = b"store.format";

/// The version of the store format this program writes. Format 2 added the write-ahead
/// log; a format-1 store (no log) is upgraded when opened.
pub const FORMAT_VERSION: u8 = 2;

/// The oldest store format this program opens (and upgrades).
pub const OLDEST_FORMAT_VERSION: u8 = 1;

/// Environment variable read at open: a test-only failpoint (see [`SledStore::open`]).
pub const DANGEROUS_FAILPOINT_ENV: &str = "VAULT_DANGEROUS_FAILPOINT";

const FORMAT_MAGIC: &str = "vault-core sled store";

/// The marker stored at [`FORMAT_KEY`], encoded with [`crate::codec`] at
/// [`FORMAT_VERSION`].
#[derive(Serialize, Deserialize)]
struct FormatMarker {
    magic: String,
    #[serde(with = "serde_bytes_16")]
    store_id: [u8; 16],
}

/// The store id as a CBOR byte string (serde's bytes model; no CBOR crate here, codec.rs
/// owns that).
mod serde_bytes_16 {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct Bytes16;

    impl<'de> Visitor<'de> for Bytes16 {
        type Value = [u8; 16];

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("16 bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; 16], E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 16], A::Error> {
            let mut out = [0u8; 16];
            for (i, b) in out.iter_mut().enumerate() {
                *b = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            if seq.next_element::<u8>()?.is_some() {
                return Err(A::Error::invalid_length(17, &self));
            }
            Ok(out)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        d.deserialize_bytes(Bytes16)
    }
}

/// Options for opening or creating a [`SledStore`].
#[derive(Clone, Debug, Default)]
pub struct SledOptions {
    /// DANGEROUS, tests only: [`Storage::wait_durable`] returns at once, without sled's
    /// flush or the fsync, and sled's background flush is off. Acknowledged writes are then
    /// lost on a crash. Exists so the crash harness can show it detects such loss.
    pub dangerous_skip_durability: bool,
    /// The write-ahead log is checkpointed before it would grow past this many bytes
    /// (default [`wal::WAL_CAPACITY`]; tests pass a small one to run many checkpoints).
    pub wal_capacity: Option<u64>,
}

/// State of the group commit, guarded by one mutex.
#[derive(Debug, Default)]
struct DurableState {
    /// Every batch with a ticket at or below this is durable.
    durable: u64,
    /// A leader is running flush + fsync.
    flushing: bool,
    /// Threads parked in `wait_durable` while a leader works, with their tickets.
    parked: Vec<(u64, std::thread::Thread)>,
    /// Async waiters (`poll_durable`) with their tickets.
    wakers: Vec<(u64, std::task::Waker)>,
}

/// One key's latest write among the batches applied but not yet in sled.
struct Staged {
    /// Ticket of the batch that wrote it last.
    ticket: u64,
    /// The value, `None` for a delete.
    value: Option<Vec<u8>>,
}

/// Batches applied (visible to every read) but not yet written into sled, oldest first.
/// A group-commit leader moves them into sled as one transaction, then drops their overlay
/// entries; readers hold the read lock across the overlay look-up and the sled read, so a
/// batch is always found in one or the other.
#[derive(Default)]
struct Pending {
    /// The last ticket handed out.
    last: u64,
    /// The queued batches with their tickets, in ticket order.
    queue: VecDeque<(u64, WriteBatch)>,
    /// Per tree (index in [`Tree::ALL`]), the latest queued write of each key.
    overlay: Vec<BTreeMap<Vec<u8>, Staged>>,
}

/// A leader moves queued batches into sled in groups of at most this many bytes of keys and
/// values (at least one batch), so one sled transaction stays far below a log segment.
const GROUP_BYTES: usize = 256 * 1024;

fn batch_bytes(batch: &WriteBatch) -> usize {
    batch
        .writes()
        .iter()
        .map(|w| match w {
            Write::Put { key, value, .. } => key.len() + value.len(),
            Write::Delete { key, .. } => key.len(),
        })
        .sum()
}

/// The queued batches a leader takes for one durability step.
struct Group {
    /// Once the group is logged, every ticket up to this one is durable.
    target: u64,
    /// The batches, in ticket order (empty: nothing was queued).
    batches: Vec<(u64, WriteBatch)>,
}

/// The net effect of batches: per (tree, key), its last write (`None`: a delete).
type NetWrites<'b> = BTreeMap<(Tree, &'b [u8]), Option<&'b [u8]>>;

/// The net effect of batches in order: the last write of each key (a group rewrites
/// `meta`'s log size once per batch), in key order.
fn net_writes<'b>(batches: impl Iterator<Item = &'b WriteBatch>) -> NetWrites<'b> {
    let mut net = BTreeMap::new();
    for write in batches.flat_map(|b| b.writes()) {
        match write {
            Write::Put { tree, key, value } => net.insert((*tree, &key[..]), Some(&value[..])),
            Write::Delete { tree, key } => net.insert((*tree, &key[..]), None),
        };
    }
    net
}

fn tree_index(tree: Tree) -> usize {
    Tree::ALL
        .iter()
        .position(|t| *t == tree)
        .expect("Tree::ALL lists every tree")
}

/// The sled backend of [`Storage`]. Share it behind an `Arc`. Its `Debug` prints only the
/// path and store id (sled's own `Debug` would dump every tree).
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// The sled data file, opened read-only once: `sync_all` on it is a checkpoint's fsync.
    data_file: File,
    store_id: [u8; 16],
    options: SledOptions,
    /// Orders applies and assigns tickets; the batches not yet in sled and their overlay.
    pending: RwLock<Pending>,
    /// The last ticket handed out (updated under `pending`'s write lock).
    issued: AtomicU64,
    durable: Mutex<DurableState>,
    poisoned: AtomicBool,
    /// Failpoint: when > 0, the next applies fail (and decrement it). `u64::MAX` = forever.
    fail_applies: AtomicU64,
    /// Failpoint (`apply-after=N`): applies that still succeed before every apply fails.
    succeed_applies_before_failing: Mutex<Option<u64>>,
    /// Failpoint: the next durability steps fail (and poison the store).
    fail_durability: AtomicU64,
    /// Durability steps (log record written and synced) run so far.
    durability_steps: AtomicU64,
    /// The write-ahead log; only a durability leader (or open and drop) uses it.
    wal: Mutex<Wal>,
    /// Threads inside `apply` (queued on `pending` or staging their batch): a leader about
    /// to flush lets them finish, up to [`GATHER_WINDOW`], so its group covers them.
    applying: AtomicU64,
}

/// The longest a durability leader waits for applies already under way to join its flush.
/// Only spent while other threads are inside `apply`: a lone committer never waits.
const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_micros(500);

/// Counts a thread inside `apply` for as long as it lives.
struct Applying<'a>(&'a AtomicU64);

impl<'a> Applying<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Applying(counter)
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for SledStore {
    /// Batches applied but never waited for are logged and written into sled, and sled is
    /// checkpointed, before sled closes: a clean close leaves nothing to replay. Not a
    /// durability promise: only `wait_durable` is.
    fn drop(&mut self) {
        if self.poisoned.load(Ordering::SeqCst) || self.options.dangerous_skip_durability {
            return;
        }
        let last = CommitTicket(self.issued.load(Ordering::SeqCst));
        if self.durable_step(last, true).is_ok() {
            let _ = self.checkpoint(&mut lock(&self.wal));
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("store_id", &self.store_id)
            .field("poisoned", &self.poisoned.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

fn unusable(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Unusable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn backend(
    operation: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    StorageError::Backend {
        operation,
        source: Box::new(e),
    }
}

/// An internal failure of the store itself (a test failpoint, or a broken invariant).
#[derive(Debug, thiserror::Error)]
#[error("store failure: {0}")]
struct Failpoint(&'static str);

/// A ticket that this store did not hand out.
#[derive(Debug, thiserror::Error)]
#[error("commit ticket {0} was not issued by this store")]
struct ForeignTicket(u64);

fn sled_config(dir: &Path, options: &SledOptions) -> sled::Config {
    // sled's background thread would fsync every 500 ms; the commit path does its own flush
    // and fsync, so it is off (and must be off for the skip-durability variant to lose data).
    let _ = options;
    sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_SIZE)
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput)
}

/// Runs a sled call that may panic on a damaged directory and turns a panic into an error.
fn no_panic<T>(
    dir: &Path,
    what: &str,
    f: impl FnOnce() -> sled::Result<T>,
) -> Result<T, StorageError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unusable(
            dir,
            format!(
                "{what} failed: {e}; the sled files are damaged or not a vault store: restore \
                 the data directory from a backup"
            ),
        )),
        Err(_) => Err(unusable(
            dir,
            format!(
                "{what} failed: sled crashed reading the directory (damaged log); restore the \
                 data directory from a backup"
            ),
        )),
    }
}

/// Checks sled's `conf` before sled sees it: sled silently rewrites a `conf` of 8 bytes or
/// less and only warns on a bad checksum, so a damaged or foreign `conf` is refused here.
fn check_sled_conf(dir: &Path) -> Result<(), StorageError> {
    let conf = std::fs::read(dir.join("conf"))
        .map_err(|e| unusable(dir, format!("cannot read sled's `conf`: {e}")))?;
    let text = String::from_utf8_lossy(&conf);
    let ours = format!("segment_size: {SEGMENT_SIZE}\n");
    if text.contains(&ours) {
        Ok(())
    } else if text.contains("segment_size: ") {
        Err(unusable(
            dir,
            "a sled database that is not a vault store (sled settings differ: its segment \
             size is not the vault's): point the vault at its own data directory",
        ))
    } else {
        Err(unusable(
            dir,
            "sled's `conf` file is damaged: restore the data directory from a backup",
        ))
    }
}

/// Opens sled on an existing directory. sled releases its file lock only once its
/// background threads let go of the database, shortly after the last handle is dropped, so
/// a lock conflict is retried for a moment before being reported.
fn open_sled(dir: &Path, options: &SledOptions) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let error = match catch_unwind(AssertUnwindSafe(|| sled_config(dir, options).open())) {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(unusable(
                    dir,
                    "opening the sled database failed: sled crashed reading the directory \
                     (damaged log); restore the data directory from a backup",
                ))
            }
        };
        let reason = match &error {
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                "the data directory is locked by another process: stop the other vault using \
                 it"
                .to_owned()
            }
            sled::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
                "permission denied opening the sled files ({e}): run the vault as the user that \
                 owns the data directory"
            ),
            sled::Error::Unsupported(message)
                if message.contains("io buffer size") || message.contains("compression") =>
            {
                format!(
                    "a sled database that is not a vault store (sled settings differ: \
                     {message}): point the vault at its own data directory"
                )
            }
            other => format!(
                "opening the sled database failed: {other}; the sled files are damaged or not \
                 a vault store: restore the data directory from a backup"
            ),
        };
        return Err(unusable(dir, reason));
    }
}

/// Creates an empty write-ahead log in `dir` (synced) and records in sled that it starts
/// at sequence number 1.
fn new_log(dir: &Path, db: &sled::Db, options: &SledOptions) -> Result<Wal, StorageError> {
    let wal = Wal::create(dir, 1, options.wal_capacity)
        .map_err(|e| unusable(dir, format!("cannot create the write-ahead log: {e}")))?;
    no_panic(dir, "recording the log start", || {
        db.insert(WAL_START_KEY, &1u64.to_be_bytes()).map(|_| ())
    })?;
    Ok(wal)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SledStore {
    /// Creates a new store in `dir` (created if missing; refused unless empty), with a new
    /// random store id, and makes the creation durable before returning.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::create_with(dir, SledOptions::default())
    }

    /// [`SledStore::create`] with options.
    pub fn create_with(dir: impl AsRef<Path>, options: SledOptions) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(unusable(
                        dir,
                        "directory is not empty: choose an empty or new directory for a new store",
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| unusable(dir, format!("cannot create the directory: {e}")))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fsync_dir(parent).map_err(|e| {
                        unusable(dir, format!("cannot fsync the parent directory: {e}"))
                    })?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err(unusable(dir, "path is a file, not a directory"));
            }
            Err(e) => return Err(unusable(dir, format!("cannot read the directory: {e}"))),
        }
        let db = no_panic(dir, "creating the sled database", || {
            sled_config(dir, &options).create_new(true).open()
        })?;
        let mut store_id = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut store_id)
            .map_err(|_| unusable(dir, "the operating system's random generator failed"))?;
        let wal = new_log(dir, &db, &options)?;
        let store = Self::assemble(dir, db, store_id, options, wal)?;
        // The marker is written last: a directory without it is a half-created store.
        store.write_format_marker()?;
        // sled does not fsync `conf`, nor the directory entries of `conf`, `db`, `blobs/`.
        for name in ["conf", "db", WAL_FILE] {
            File::open(dir.join(name))
                .and_then(|f| f.sync_all())
                .map_err(|e| unusable(dir, format!("cannot fsync {name}: {e}")))?;
        }
        fsync_dir(dir).map_err(|e| unusable(dir, format!("cannot fsync the directory: {e}")))?;
        Ok(store)
    }

    /// Opens an existing store. Refuses, with [`StorageError::Unusable`] naming what is
    /// wrong, a path that is not a directory, an empty directory, a directory without sled
    /// files, a damaged sled database, a sled database that is not a vault store (no
    /// format marker, with data) and a half-created store (no format marker, no data).
    ///
    /// The environment variable [`DANGEROUS_FAILPOINT_ENV`] (tests only) arms failpoints:
    /// `apply` makes every apply fail, `apply-after=N` every apply after the first N,
    /// `durability` makes the first durability step fail (which poisons the store).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(dir, SledOptions::default())
    }

    /// [`SledStore::open`] with options.
    pub fn open_with(dir: impl AsRef<Path>, options: SledOptions) -> Result<Self, StorageError> {
        let dir = dir.as_ref();
        let meta = std::fs::metadata(dir).map_err(|e| {
            unusable(
                dir,
                format!("cannot read the data directory: {e}; check the path"),
            )
        })?;
        if !meta.is_dir() {
            return Err(unusable(dir, "path is a file, not a data directory"));
        }
        let has_conf = dir.join("conf").is_file();
        let has_db = dir.join("db").is_file();
        if !has_conf || !has_db {
            let empty = std::fs::read_dir(dir)
                .map(|mut e| e.next().is_none())
                .unwrap_or(false);
            let reason = if empty {
                "directory is empty: no store was created here; initialise it first".to_owned()
            } else {
                format!(
                    "not a vault store: sled file {} is missing; if a creation was \
                     interrupted, delete the directory and initialise again, otherwise \
                     restore it from a backup",
                    if has_conf { "`db`" } else { "`conf`" }
                )
            };
            return Err(unusable(dir, reason));
        }
        check_sled_conf(dir)?;
        let db = open_sled(dir, &options)?;
        let has_meta_tree = db
            .tree_names()
            .iter()
            .any(|n| &n[..] == Tree::Meta.name().as_bytes());
        let marker = if has_meta_tree {
            let meta = no_panic(dir, "opening the meta tree", || {
                db.open_tree(Tree::Meta.name())
            })?;
            no_panic(dir, "reading the store format marker", || {
                meta.get(FORMAT_KEY)
            })?
        } else {
            None
        };
        let Some(marker) = marker else {
            let has_data = db
                .tree_names()
                .iter()
                .any(|n| db.open_tree(n).map(|t| !t.is_empty()).unwrap_or(true));
            let reason = if has_data {
                "a sled database that is not a vault store (no store format marker): point the \
                 vault at its own data directory"
            } else {
                "half-created store (no store format marker, no data): creation was \
                 interrupted; delete the directory and initialise again"
            };
            return Err(unusable(dir, reason));
        };
        let version = marker.first().copied().unwrap_or(0);
        let readable = (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version);
        let marker: FormatMarker = crate::codec::decode(
            "store format marker",
            if readable { version } else { FORMAT_VERSION },
            &marker,
        )
        .map_err(|e| {
            unusable(
                dir,
                format!(
                    "store format marker is not readable: {e}; this program reads store \
                     formats {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
                ),
            )
        })?;
        if marker.magic != FORMAT_MAGIC {
            return Err(unusable(
                dir,
                "store format marker has the wrong magic: not a vault store",
            ));
        }
        let store = if version == 1 {
            Self::upgrade_format_1(dir, db, marker.store_id, options)?
        } else {
            let start = match no_panic(dir, "reading the log start", || db.get(WAL_START_KEY))? {
                Some(v) => <[u8; 8]>::try_from(&v[..]).map(u64::from_be_bytes).ok(),
                None => None,
            }
            .ok_or_else(|| {
                unusable(
                    dir,
                    "the start of the write-ahead log is not recorded in sled: the store is \
                     damaged; restore the data directory from a backup",
                )
            })?;
            let file = Wal::open(dir).map_err(|e| {
                unusable(
                    dir,
                    format!(
                        "cannot open the write-ahead log `{WAL_FILE}` ({e}): acknowledged \
                         writes may be in it; restore the data directory from a backup"
                    ),
                )
            })?;
            let store = Self::assemble(
                dir,
                db,
                marker.store_id,
                options.clone(),
                Wal::at(file, start, options.wal_capacity),
            )?;
            store.replay_wal()?;
            store
        };
        store.arm_env_failpoints()?;
        Ok(store)
    }

    /// Opens a format-1 store (no write-ahead log): creates the log, then rewrites the
    /// marker as the current format. A log file found here was left by an upgrade that
    /// stopped before the new marker was durable; it holds no acknowledged write (format-1
    /// code never writes one, the upgrade writes only the marker through it), so it is
    /// replaced.
    fn upgrade_format_1(
        dir: &Path,
        db: sled::Db,
        store_id: [u8; 16],
        options: SledOptions,
    ) -> Result<Self, StorageError> {
        let upgrade = |e: std::io::Error| {
            unusable(
                dir,
                format!("cannot upgrade the store to format {FORMAT_VERSION}: {e}"),
            )
        };
        match std::fs::remove_file(dir.join(WAL_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(upgrade(e)),
            _ => {}
        }
        let wal = new_log(dir, &db, &options)?;
        fsync_dir(dir).map_err(upgrade)?;
        let store = Self::assemble(dir, db, store_id, options, wal)?;
        store.write_format_marker()?;
        Ok(store)
    }

    /// Writes the current format marker through the log, then checkpoints so that sled
    /// itself holds it (a store is recognised from sled before its log is read).
    fn write_format_marker(&self) -> Result<(), StorageError> {
        let marker = crate::codec::encode(
            "store format marker",
            FORMAT_VERSION,
            &FormatMarker {
                magic: FORMAT_MAGIC.to_owned(),
                store_id: self.store_id,
            },
        )
        .map_err(|e| backend("encoding the store format marker", e))?;
        let mut batch = WriteBatch::new();
        batch.put(Tree::Meta, FORMAT_KEY, marker);
        self.commit_always_durable(batch)?;
        self.checkpoint(&mut lock(&self.wal))
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
            self.write_into_sled(writes.iter().map(wal::logged))?;
        }
        log.replayed_to(end);
        self.checkpoint(&mut log)
    }

    fn assemble(
        dir: &Path,
        db: sled::Db,
        store_id: [u8; 16],
        options: SledOptions,
        wal: Wal,
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
            options,
            pending: RwLock::new(Pending {
                overlay: Tree::ALL.iter().map(|_| BTreeMap::new()).collect(),
                ..Pending::default()
            }),
            issued: AtomicU64::new(0),
            durable: Mutex::new(DurableState::default()),
            poisoned: AtomicBool::new(false),
            fail_applies: AtomicU64::new(0),
            succeed_applies_before_failing: Mutex::new(None),
            fail_durability: AtomicU64::new(0),
            durability_steps: AtomicU64::new(0),
            applying: AtomicU64::new(0),
            wal: Mutex::new(wal),
        })
    }

    fn arm_env_failpoints(&self) -> Result<(), StorageError> {
        match std::env::var(DANGEROUS_FAILPOINT_ENV) {
            Ok(value) => self.arm_failpoints(&value),
            Err(_) => Ok(()),
        }
    }

    /// Arms the failpoints named by a [`DANGEROUS_FAILPOINT_ENV`] value.
    fn arm_failpoints(&self, value: &str) -> Result<(), StorageError> {
        match value {
            "apply" => self.dangerous_fail_next_applies(u64::MAX),
            "durability" => self.dangerous_fail_next_durability(1),
            other => match other.strip_prefix("apply-after=").map(str::parse::<u64>) {
                Some(Ok(n)) => {
                    *lock(&self.succeed_applies_before_failing) = Some(n);
                }
                _ => {
                    return Err(unusable(
                        &self.path,
                        format!(
                            "{DANGEROUS_FAILPOINT_ENV}={other:?} is not a failpoint \
                             (`apply`, `apply-after=N`, `durability`): unset it"
                        ),
                    ))
                }
            },
        }
        Ok(())
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The random id given to the store at creation.
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// How many durability steps (sled flush + fsync) this handle has run: with group
    /// commit, fewer than the commits when they are concurrent. For metrics.
    pub fn durability_steps(&self) -> u64 {
        self.durability_steps.load(Ordering::SeqCst)
    }

    /// DANGEROUS, tests only: the next `n` calls of [`Storage::apply`] fail with
    /// [`StorageError::Backend`] and change nothing (`u64::MAX`: every call).
    pub fn dangerous_fail_next_applies(&self, n: u64) {
        self.fail_applies.store(n, Ordering::SeqCst);
    }

    /// DANGEROUS, tests only: the next `n` durability steps fail as a failed fsync would,
    /// which poisons the store.
    pub fn dangerous_fail_next_durability(&self, n: u64) {
        self.fail_durability.store(n, Ordering::SeqCst);
    }

    fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::SeqCst) {
            Err(StorageError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree_index(tree)]
    }

    fn take_apply_failpoint(&self) -> bool {
        {
            let mut before = lock(&self.succeed_applies_before_failing);
            if let Some(n) = before.as_mut() {
                if *n == 0 {
                    return true;
                }
                *n -= 1;
            }
        }
        self.fail_applies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }

    fn validate(batch: &WriteBatch) -> Result<(), StorageError> {
        let len: usize = batch.writes().iter().map(wal::encoded_len).sum();
        if len > wal::MAX_PAYLOAD {
            return Err(StorageError::BatchTooLarge {
                len,
                max: wal::MAX_PAYLOAD,
            });
        }
        for write in batch.writes() {
            let (tree, key, value) = match write {
                Write::Put { tree, key, value } => (*tree, key, Some(value)),
                Write::Delete { tree, key } => (*tree, key, None),
            };
            if key.len() > MAX_KEY_LEN {
                return Err(StorageError::KeyTooLarge {
                    tree,
                    len: key.len(),
                    max: MAX_KEY_LEN,
                });
            }
            if let Some(value) = value {
                if value.len() > MAX_VALUE_LEN {
                    return Err(StorageError::ValueTooLarge {
                        tree,
                        len: value.len(),
                        max: MAX_VALUE_LEN,
                    });
                }
            }
        }
        Ok(())
    }

    /// One sled transaction over the trees the batches touch, writing the batches in order:
    /// after a crash all of them are present or none. Used only by the skip-durability
    /// variant (tests), which has no log.
    fn apply_sled<'b>(
        &self,
        batches: impl Iterator<Item = &'b WriteBatch>,
    ) -> Result<(), StorageError> {
        let net = net_writes(batches);
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
            Err(TransactionError::Storage(e)) => Err(backend("applying a batch", e)),
            // Not reachable (every tree of the batch is in the transaction); sled applied
            // nothing, and the caller is told rather than the process panicking.
            Err(TransactionError::Abort(())) => Err(backend(
                "applying a batch",
                Failpoint("tree missing from the transaction"),
            )),
        }
    }

    /// Makes sled durable and restarts the log at offset 0: records in sled where the log
    /// starts again, then `Db::flush` (sled writes its IO buffers to `db`, on Linux with
    /// `sync_file_range`, which is not a barrier for metadata or the disk cache) and
    /// `fsync` of `db`. Only called when every logged record is in sled (a leader writes
    /// its group into sled before it lets go), so nothing in the log is needed after it.
    fn checkpoint(&self, log: &mut Wal) -> Result<(), StorageError> {
        self.db
            .insert(WAL_START_KEY, &log.next_seq().to_be_bytes())
            .map_err(|e| backend("recording the log start", e))?;
        self.db
            .flush()
            .map_err(|e| backend("flushing sled's log", e))?;
        self.data_file
            .sync_all()
            .map_err(|e| backend("fsync of the sled data file", e))?;
        log.restart();
        Ok(())
    }

    /// Commit used at creation: always durable, whatever the options.
    fn commit_always_durable(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let ticket = self.apply(batch)?;
        self.durable_step(ticket, true)
    }

    /// Poisons the store and releases every waiter (they see `Poisoned`).
    fn fail(&self, state: &mut DurableState) {
        self.poisoned.store(true, Ordering::SeqCst);
        for (_, t) in state.parked.drain(..) {
            t.unpark();
        }
        for (_, w) in state.wakers.drain(..) {
            w.wake();
        }
    }

    fn durable_step(&self, ticket: CommitTicket, force: bool) -> Result<(), StorageError> {
        if self.options.dangerous_skip_durability && !force {
            return self.check_poisoned();
        }
        if ticket.0 > self.issued.load(Ordering::SeqCst) {
            return Err(backend("waiting for durability", ForeignTicket(ticket.0)));
        }
        let me = std::thread::current();
        let mut state = lock(&self.durable);
        loop {
            self.check_poisoned()?;
            if state.durable >= ticket.0 {
                return Ok(());
            }
            if state.flushing {
                // Park until a leader finds this ticket durable, or picks this thread to
                // lead the next step: one wake-up per waiter and step, not one per waiter
                // for every step (64 waiters on one condition variable woke 64 threads per
                // step, most only to wait again).
                if !state.parked.iter().any(|(_, t)| t.id() == me.id()) {
                    state.parked.push((ticket.0, me.clone()));
                }
                drop(state);
                std::thread::park();
                state = lock(&self.durable);
                continue;
            }
            // Become the leader: everything applied before the record is encoded is covered.
            state.flushing = true;
            state.parked.retain(|(_, t)| t.id() != me.id());
            drop(state);
            // Group commit's gather step: applies already under way finish first and ride
            // on this record instead of waiting for the next one.
            let gather_until = std::time::Instant::now() + GATHER_WINDOW;
            while self.applying.load(Ordering::SeqCst) > 0
                && std::time::Instant::now() < gather_until
            {
                std::thread::yield_now();
            }
            // 1. The commit: the queued batches' net effect as one log record, synced.
            let group = self.take_queued_group();
            let net = net_writes(group.batches.iter().map(|(_, b)| b));
            let logged = if group.batches.is_empty() {
                Ok(())
            } else {
                self.log_group(&net)
            };
            state = lock(&self.durable);
            if let Err(e) = logged {
                state.flushing = false;
                self.fail(&mut state);
                return Err(e);
            }
            state.durable = state.durable.max(group.target);
            let durable = state.durable;
            state.wakers.retain(|(t, w)| {
                if *t <= durable {
                    w.wake_by_ref();
                    false
                } else {
                    true
                }
            });
            state.parked.retain(|(t, thread)| {
                if *t <= durable {
                    thread.unpark();
                    false
                } else {
                    true
                }
            });
            drop(state);
            // 2. The same writes into sled. This thread stays the leader until they are
            // there, so groups reach sled in log order and a checkpoint (run by a later
            // leader) finds every logged record in sled.
            let written = self.write_logged_group(&group, &net);
            state = lock(&self.durable);
            state.flushing = false;
            if let Err(e) = written {
                // What sled holds in memory is unknown; the log has the group, and a
                // restart replays it.
                self.fail(&mut state);
                return if state.durable >= ticket.0 {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            // If this thread is done, hand the lead to one waiter still parked (this
            // thread leads again itself otherwise).
            if state.durable >= ticket.0 && !state.parked.is_empty() {
                let (_, next) = state.parked.swap_remove(0);
                next.unpark();
            }
        }
    }

    fn pending_read(&self) -> std::sync::RwLockReadGuard<'_, Pending> {
        // A panic while holding it leaves whole batches behind (each staged under the lock).
        self.pending
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending_write(&self) -> std::sync::RwLockWriteGuard<'_, Pending> {
        self.pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the oldest queued batches (up to [`GROUP_BYTES`]) for a durability step. An
    /// empty queue means every ticket issued is durable once earlier groups are (they were
    /// logged by earlier leaders, one at a time).
    fn take_queued_group(&self) -> Group {
        let mut pending = self.pending_write();
        let mut bytes = 0;
        let mut take = 0;
        for (_, batch) in &pending.queue {
            let b = batch_bytes(batch);
            if take > 0 && bytes + b > GROUP_BYTES {
                break;
            }
            bytes += b;
            take += 1;
        }
        if take == 0 {
            return Group {
                target: pending.last,
                batches: Vec::new(),
            };
        }
        let batches: Vec<(u64, WriteBatch)> = pending.queue.drain(..take).collect();
        Group {
            target: batches.last().map_or(0, |(t, _)| *t),
            batches,
        }
    }

    /// The leader's commit step: writes a group's net writes as one log record (after a
    /// checkpoint if the log is full) and syncs it.
    fn log_group(&self, net: &NetWrites<'_>) -> Result<(), StorageError> {
        if self
            .fail_durability
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(backend(
                "writing the write-ahead log",
                Failpoint("dangerous test failpoint `durability` triggered"),
            ));
        }
        self.durability_steps.fetch_add(1, Ordering::SeqCst);
        let mut log = lock(&self.wal);
        let len = log.encode(net.iter().map(|((tree, key), value)| (*tree, *key, *value)));
        if log.is_full_for(len) {
            self.checkpoint(&mut log)?;
        }
        log.write_encoded()
            .map_err(|e| backend("writing and syncing the write-ahead log", e))
    }

    /// Writes a logged group's net writes into sled (plain inserts: the log record is what
    /// makes them atomic and durable), then drops its overlay entries (those not rewritten
    /// by a later batch).
    fn write_logged_group(&self, group: &Group, net: &NetWrites<'_>) -> Result<(), StorageError> {
        if group.batches.is_empty() {
            return Ok(());
        }
        self.write_into_sled(net.iter().map(|((tree, key), value)| (*tree, *key, *value)))?;
        let mut pending = self.pending_write();
        for (_, batch) in &group.batches {
            for write in batch.writes() {
                let (Write::Put { tree, key, .. } | Write::Delete { tree, key }) = write;
                let overlay = &mut pending.overlay[tree_index(*tree)];
                if overlay.get(key).is_some_and(|s| s.ticket <= group.target) {
                    overlay.remove(key);
                }
            }
        }
        Ok(())
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
            .map_err(|e| backend("writing a logged group into sled", e))?;
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
        self.check_poisoned()?;
        if let Some(end) = end {
            if end <= start {
                return Ok(Vec::new());
            }
        }
        let upper = match end {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        let pending = self.pending_read();
        let range = self
            .tree(tree)
            .range::<&[u8], _>((Bound::Included(start), upper));
        let staged =
            pending.overlay[tree_index(tree)].range::<[u8], _>((Bound::Included(start), upper));
        if reverse {
            merge(range.rev(), staged.rev(), limit, true)
        } else {
            merge(range, staged, limit, false)
        }
    }
}

/// Merges a sled range with the overlay's range over the same bounds, in scan order
/// (descending when `reverse`): an overlay entry replaces sled's value for its key, an
/// overlay delete hides it. Stops after `limit` entries.
fn merge<'o>(
    base: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    staged: impl Iterator<Item = (&'o Vec<u8>, &'o Staged)>,
    limit: usize,
    reverse: bool,
) -> Result<Entries, StorageError> {
    let mut base = base.peekable();
    let mut staged = staged.peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        let base_key = match base.peek() {
            Some(Ok((k, _))) => Some(&k[..]),
            Some(Err(_)) => {
                return match base.next() {
                    Some(Err(e)) => Err(backend("scanning", e)),
                    _ => Err(backend("scanning", Failpoint("scan error vanished"))),
                }
            }
            None => None,
        };
        let order = match (base_key, staged.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(b), Some((s, _))) if reverse => s.as_slice().cmp(b),
            (Some(b), Some((s, _))) => b.cmp(s.as_slice()),
        };
        if order == std::cmp::Ordering::Less {
            if let Some(Ok((k, v))) = base.next() {
                out.push((k.to_vec(), v.to_vec()));
            }
            continue;
        }
        if order == std::cmp::Ordering::Equal {
            base.next();
        }
        if let Some((k, s)) = staged.next() {
            if let Some(v) = &s.value {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain counters behind, still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Storage for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_poisoned()?;
        let pending = self.pending_read();
        if let Some(staged) = pending.overlay[tree_index(tree)].get(key) {
            return Ok(staged.value.clone());
        }
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| backend("reading", e))
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
        self.check_poisoned()?;
        Self::validate(&batch)?;
        let _applying = Applying::enter(&self.applying);
        let mut pending = self.pending_write();
        self.check_poisoned()?;
        if self.take_apply_failpoint() {
            return Err(backend(
                "applying a batch",
                Failpoint("dangerous test failpoint `apply` triggered"),
            ));
        }
        let ticket = pending.last + 1;
        if self.options.dangerous_skip_durability {
            // No leader ever runs for this variant's commits: straight into sled.
            if let Err(e) = self.apply_sled(std::iter::once(&batch)) {
                self.poisoned.store(true, Ordering::SeqCst);
                return Err(e);
            }
        } else if !batch.is_empty() {
            for write in batch.writes() {
                let (tree, key, value) = match write {
                    Write::Put { tree, key, value } => (*tree, key, Some(value.clone())),
                    Write::Delete { tree, key } => (*tree, key, None),
                };
                pending.overlay[tree_index(tree)].insert(key.clone(), Staged { ticket, value });
            }
            pending.queue.push_back((ticket, batch));
        }
        pending.last = ticket;
        self.issued.store(ticket, Ordering::SeqCst);
        Ok(CommitTicket(ticket))
    }

    fn wait_durable(&self, ticket: CommitTicket) -> Result<(), StorageError> {
        self.durable_step(ticket, false)
    }

    fn poll_durable(
        &self,
        ticket: CommitTicket,
        waker: &std::task::Waker,
    ) -> std::task::Poll<Result<(), StorageError>> {
        use std::task::Poll;
        if self.options.dangerous_skip_durability {
            return Poll::Ready(self.check_poisoned());
        }
        if ticket.0 > self.issued.load(Ordering::SeqCst) {
            return Poll::Ready(Err(backend(
                "waiting for durability",
                ForeignTicket(ticket.0),
            )));
        }
        let mut state = lock(&self.durable);
        if let Err(e) = self.check_poisoned() {
            return Poll::Ready(Err(e));
        }
        if state.durable >= ticket.0 {
            return Poll::Ready(Ok(()));
        }
        if !state
            .wakers
            .iter()
            .any(|(t, w)| *t == ticket.0 && w.will_wake(waker))
        {
            state.wakers.push((ticket.0, waker.clone()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Tree, k: &[u8], v: &[u8]) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(tree, k, v);
        b
    }

    #[test]
    fn commit_then_reopen_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let id = {
            let store = SledStore::create(&path).unwrap();
            store.commit(put(Tree::Records, b"k", b"v")).unwrap();
            store.store_id()
        };
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.store_id(), id);
        assert_eq!(store.get(Tree::Records, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.get(Tree::Keys, b"k").unwrap(), None);
    }

    #[test]
    fn debug_names_the_store_and_not_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        store
            .commit(put(Tree::Records, b"k", b"secret-ciphertext"))
            .unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("SledStore"), "{debug}");
        assert!(!debug.contains("115, 101, 99, 114, 101, 116"), "{debug}");
        assert!(!debug.contains("Tree"), "{debug}");
    }

    #[test]
    fn create_refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        let err = SledStore::create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn oversized_values_and_keys_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let mut batch = put(Tree::Records, b"a", b"small");
        batch.put(Tree::Records, b"b", vec![0u8; MAX_VALUE_LEN + 1]);
        assert!(matches!(
            store.commit(batch),
            Err(StorageError::ValueTooLarge { len, max: MAX_VALUE_LEN, .. }) if len == MAX_VALUE_LEN + 1
        ));
        let batch = put(Tree::Records, &[1u8; MAX_KEY_LEN + 1], b"v");
        assert!(matches!(
            store.commit(batch),
            Err(StorageError::KeyTooLarge { .. })
        ));
        assert_eq!(store.get(Tree::Records, b"a").unwrap(), None);
        store
            .commit(put(
                Tree::Records,
                &[1u8; MAX_KEY_LEN],
                &vec![7u8; MAX_VALUE_LEN],
            ))
            .unwrap();
    }

    /// A batch too large for one log record is refused by `apply` before anything is
    /// queued (it would otherwise poison the store at the durability step); the largest
    /// batch the engine makes (a restore step: 2,048 entries of 8.5 KiB) fits.
    #[test]
    fn a_batch_too_large_for_one_log_record_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let big = |n: u32| {
            let mut batch = WriteBatch::new();
            for i in 0..n {
                batch.put(Tree::Records, i.to_be_bytes(), vec![7u8; MAX_VALUE_LEN]);
            }
            batch
        };
        let per_write = wal::encoded_len(&big(1).writes()[0]);
        let over = (wal::MAX_PAYLOAD / per_write + 1) as u32;
        assert!(matches!(
            store.commit(big(over)),
            Err(StorageError::BatchTooLarge { len, max: wal::MAX_PAYLOAD }) if len > wal::MAX_PAYLOAD
        ));
        assert_eq!(store.get(Tree::Records, &0u32.to_be_bytes()).unwrap(), None);
        store
            .commit(big(over - 1))
            .expect("the largest batch that fits");
        let mut restore_step = WriteBatch::new();
        for i in 0..2048u32 {
            restore_step.put(
                Tree::AuditLeaves,
                [&[1u8; 508][..], &i.to_be_bytes()].concat(),
                vec![9u8; MAX_VALUE_LEN],
            );
        }
        store
            .commit(restore_step)
            .expect("a restore step fits one record");
        drop(store);
        let store = SledStore::open(dir.path().join("s")).unwrap();
        assert_eq!(
            store.get(Tree::Records, &(over - 2).to_be_bytes()).unwrap(),
            Some(vec![7u8; MAX_VALUE_LEN])
        );
    }

    #[test]
    fn apply_failpoint_fails_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        store.dangerous_fail_next_applies(2);
        for _ in 0..2 {
            assert!(matches!(
                store.commit(put(Tree::Tokens, b"t", b"1")),
                Err(StorageError::Backend { .. })
            ));
        }
        assert_eq!(store.get(Tree::Tokens, b"t").unwrap(), None);
        store.commit(put(Tree::Tokens, b"t", b"1")).unwrap();
        assert_eq!(store.get(Tree::Tokens, b"t").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn failed_durability_poisons_every_later_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        store.dangerous_fail_next_durability(1);
        assert!(matches!(
            store.commit(put(Tree::Tokens, b"t", b"1")),
            Err(StorageError::Backend { .. })
        ));
        assert!(matches!(
            store.get(Tree::Tokens, b"t"),
            Err(StorageError::Poisoned)
        ));
        assert!(matches!(
            store.scan(Tree::Tokens, b"", None, 10),
            Err(StorageError::Poisoned)
        ));
        assert!(matches!(
            store.apply(put(Tree::Tokens, b"u", b"1")),
            Err(StorageError::Poisoned)
        ));
    }

    #[test]
    fn env_failpoint_values_are_parsed_and_unknown_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        store.arm_failpoints("apply-after=2").unwrap();
        store.commit(put(Tree::Tokens, b"a", b"1")).unwrap();
        store.commit(put(Tree::Tokens, b"b", b"1")).unwrap();
        for _ in 0..3 {
            assert!(matches!(
                store.commit(put(Tree::Tokens, b"c", b"1")),
                Err(StorageError::Backend { .. })
            ));
        }
        assert_eq!(store.get(Tree::Tokens, b"c").unwrap(), None);
        let err = store.arm_failpoints("sometimes").unwrap_err();
        assert!(err.to_string().contains("is not a failpoint"), "{err}");
    }

    #[test]
    fn a_ticket_from_another_store_is_refused_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let a = SledStore::create(dir.path().join("a")).unwrap();
        let b = SledStore::create(dir.path().join("b")).unwrap();
        let mut ticket = a.apply(put(Tree::Tokens, b"a", b"1")).unwrap();
        for _ in 0..3 {
            ticket = a.apply(put(Tree::Tokens, b"a", b"1")).unwrap();
        }
        assert!(matches!(
            b.wait_durable(ticket),
            Err(StorageError::Backend { .. })
        ));
        a.wait_durable(ticket).unwrap();
    }

    #[test]
    fn concurrent_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let before = store.durability_steps();
        let (threads, per_thread) = (32u32, 10u32);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..per_thread {
                        let key = (t * per_thread + i).to_be_bytes();
                        let mut batch = put(Tree::Records, &key, b"record");
                        batch.put(Tree::AuditLeaves, key, b"leaf".to_vec());
                        store.commit(batch).unwrap();
                    }
                });
            }
        });
        let steps = store.durability_steps() - before;
        let commits = u64::from(threads * per_thread);
        assert!(
            steps >= 1 && steps < commits,
            "{steps} flushes for {commits} commits"
        );
        let all = store
            .scan(Tree::AuditLeaves, b"", None, usize::MAX)
            .unwrap();
        assert_eq!(all.len() as u64, commits);
    }

    /// One step of the overlay model test: a batch of (tree, key, Some(value) | None)
    /// applied without waiting, optionally followed by a wait for its ticket.
    type Step = (Vec<(bool, u8, Option<u8>)>, bool);

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        (
            proptest::collection::vec(
                (any::<bool>(), 0u8..12, proptest::option::of(any::<u8>())),
                0..5,
            ),
            proptest::bool::weighted(0.3),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 40, ..Default::default() })]

        /// Reads see every applied batch at once, whether it is still queued (overlay),
        /// being grouped, or in sled: gets and scans in both directions, with bounds and
        /// limits, equal a BTreeMap model after every step, and again after reopening.
        #[test]
        fn reads_see_applied_batches_before_and_after_they_reach_sled(
            steps in proptest::collection::vec(step(), 1..24),
            scans in proptest::collection::vec((0u8..13, proptest::option::of(0u8..13), 0usize..6), 4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s");
            let trees = [Tree::Records, Tree::AuditSubjects];
            let mut model: [BTreeMap<Vec<u8>, Vec<u8>>; 2] = Default::default();
            let check = |store: &SledStore, model: &[BTreeMap<Vec<u8>, Vec<u8>>; 2]| {
                for (t, tree) in trees.iter().enumerate() {
                    for k in 0u8..12 {
                        assert_eq!(store.get(*tree, &[k]).unwrap(), model[t].get(&vec![k]).cloned());
                    }
                    for (start, end, limit) in &scans {
                        let (start, end) = (vec![*start], end.map(|e| vec![e]));
                        let in_range = |k: &&Vec<u8>| **k >= start && end.as_ref().is_none_or(|e| *k < e);
                        let want: Entries = model[t].iter().filter(|(k, _)| in_range(k))
                            .take(*limit).map(|(k, v)| (k.clone(), v.clone())).collect();
                        assert_eq!(store.scan(*tree, &start, end.as_deref(), *limit).unwrap(), want);
                        let want: Entries = model[t].iter().rev().filter(|(k, _)| in_range(k))
                            .take(*limit).map(|(k, v)| (k.clone(), v.clone())).collect();
                        assert_eq!(store.scan_rev(*tree, &start, end.as_deref(), *limit).unwrap(), want);
                    }
                }
            };
            {
                let store = SledStore::create(&path).unwrap();
                for (writes, wait) in &steps {
                    let mut batch = WriteBatch::new();
                    for (second, k, v) in writes {
                        let t = usize::from(*second);
                        match v {
                            Some(v) => {
                                batch.put(trees[t], vec![*k], vec![*v]);
                                model[t].insert(vec![*k], vec![*v]);
                            }
                            None => {
                                batch.delete(trees[t], vec![*k]);
                                model[t].remove(&vec![*k]);
                            }
                        }
                    }
                    let ticket = store.apply(batch).unwrap();
                    check(&store, &model);
                    if *wait {
                        store.wait_durable(ticket).unwrap();
                        check(&store, &model);
                    }
                }
            }
            // Dropping the handle writes what was never waited for into sled.
            let store = SledStore::open(&path).unwrap();
            check(&store, &model);
        }
    }

    #[test]
    fn a_group_is_capped_and_the_rest_goes_in_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let n = (GROUP_BYTES / MAX_VALUE_LEN + 5) as u32;
        let mut last = None;
        for i in 0..n {
            last = Some(
                store
                    .apply(put(Tree::Records, &i.to_be_bytes(), &[1u8; MAX_VALUE_LEN]))
                    .unwrap(),
            );
        }
        let before = store.durability_steps();
        store.wait_durable(last.unwrap()).unwrap();
        assert_eq!(
            store.durability_steps() - before,
            2,
            "two groups, two flushes"
        );
        assert!(store.pending_read().queue.is_empty());
        assert!(store.pending_read().overlay.iter().all(BTreeMap::is_empty));
        let all = store.scan(Tree::Records, b"", None, usize::MAX).unwrap();
        assert_eq!(all.len() as u32, n);
    }

    /// Wakes a flag: the test's stand-in for an async runtime's waker.
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_async_waiter_is_woken_by_the_step_that_covers_it_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let first = store.apply(put(Tree::Records, b"a", b"1")).unwrap();
        let second = store.apply(put(Tree::Records, b"b", b"2")).unwrap();
        assert!(store.poll_durable(second, &waker).is_pending());
        assert!(!flag.0.load(Ordering::SeqCst));
        // A step for the first ticket covers every batch queued: the second one too.
        store.wait_durable(first).unwrap();
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the covering step woke the waiter"
        );
        assert!(matches!(
            store.poll_durable(second, &waker),
            std::task::Poll::Ready(Ok(()))
        ));
        // A failed step wakes its async waiters with the failure.
        flag.0.store(false, Ordering::SeqCst);
        let third = store.apply(put(Tree::Records, b"c", b"3")).unwrap();
        assert!(store.poll_durable(third, &waker).is_pending());
        store.dangerous_fail_next_durability(1);
        assert!(store.wait_durable(third).is_err());
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(matches!(
            store.poll_durable(third, &waker),
            std::task::Poll::Ready(Err(StorageError::Poisoned))
        ));
    }

    #[test]
    fn a_failed_flush_releases_every_waiter_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path().join("s")).unwrap();
        store.dangerous_fail_next_durability(1);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16u32)
                .map(|t| {
                    let store = &store;
                    scope.spawn(move || store.commit(put(Tree::Records, &t.to_be_bytes(), b"v")))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(Result::is_err));
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(StorageError::Backend { .. }))));
        assert!(matches!(
            store.commit(put(Tree::Records, b"late", b"v")),
            Err(StorageError::Poisoned)
        ));
    }
}
