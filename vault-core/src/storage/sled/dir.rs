//! The sled store's directory: the checks that refuse foreign, damaged and half-created
//! directories before sled touches them, the store format marker, creation, opening and
//! the upgrade of a format-1 store (`docs/storage.md`, "Opening" and "Store format
//! marker").

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use super::wal::{Wal, WAL_FILE, WAL_START_KEY};
use super::{SledOptions, SledStore, DEFAULT_CACHE_BYTES};
use crate::storage::{lock, StorageError, Tree, WriteBatch};

/// Size of sled's log segments (and IO buffers) in the stores this module creates. Fixed at
/// creation: sled records it in `conf` and refuses to open with another value.
pub const SEGMENT_SIZE: usize = 1 << 20;

/// The key in [`Tree::Meta`] holding the store format marker.
pub const FORMAT_KEY: &[u8] = b"store.format";

/// The version of the store format this program writes. Format 2 added the write-ahead
/// log; a format-1 store (no log) is upgraded when opened.
pub const FORMAT_VERSION: u8 = 2;

/// The oldest store format this program opens (and upgrades).
pub const OLDEST_FORMAT_VERSION: u8 = 1;

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

pub(super) fn unusable(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::Unusable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn sled_config(dir: &Path, options: &SledOptions) -> sled::Config {
    // sled's background thread would flush and fsync every 500 ms; the store makes sled
    // durable itself, at checkpoints, so it is off (and must be off for the
    // skip-durability variant to lose data).
    sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_SIZE)
        .flush_every_ms(None)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(options.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES))
}

/// Runs a sled call that may panic on a damaged directory and turns a panic into an error.
pub(super) fn no_panic<T>(
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

/// The sequence number of a new log's first record.
const NEW_LOG_START: u64 = 1;

/// Creates an empty write-ahead log file in `dir` (synced) and records in sled that it
/// starts at [`NEW_LOG_START`].
fn new_log(dir: &Path, db: &sled::Db) -> Result<File, StorageError> {
    let file = Wal::create(dir)
        .map_err(|e| unusable(dir, format!("cannot create the write-ahead log: {e}")))?;
    no_panic(dir, "recording the log start", || {
        db.insert(WAL_START_KEY, &NEW_LOG_START.to_be_bytes())
            .map(|_| ())
    })?;
    Ok(file)
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
        let wal = new_log(dir, &db)?;
        let store = Self::assemble(dir, db, store_id, &options, wal, NEW_LOG_START)?;
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
    /// With the feature `test-hooks`, the environment variable `VAULT_DANGEROUS_FAILPOINT`
    /// arms failpoints: `apply` makes every apply fail, `apply-after=N` every apply after
    /// the first N, `durability` makes the first durability step fail (which poisons the
    /// store).
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
            let store = Self::assemble(dir, db, marker.store_id, &options, file, start)?;
            store.replay_wal()?;
            store
        };
        #[cfg(feature = "test-hooks")]
        store
            .failpoints
            .arm_from_env()
            .map_err(|reason| unusable(dir, reason))?;
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
        let wal = new_log(dir, &db)?;
        fsync_dir(dir).map_err(upgrade)?;
        let store = Self::assemble(dir, db, store_id, &options, wal, NEW_LOG_START)?;
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
        .map_err(|e| StorageError::backend("encoding the store format marker", e))?;
        let mut batch = WriteBatch::new();
        batch.put(Tree::Meta, FORMAT_KEY, marker);
        self.commit_always_durable(batch)?;
        self.checkpoint(&mut lock(&self.wal))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::put;
    use crate::storage::{SledStore, Storage, Tree};

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
    fn create_refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        let err = SledStore::create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}
