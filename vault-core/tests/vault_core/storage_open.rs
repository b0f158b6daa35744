//! Opening refuses what is not a healthy vault store, with a message that names the problem,
//! and never panics on damaged files.

use std::path::Path;

use vault_core::storage::{SledStore, Storage, StorageError, Tree, WriteBatch};

fn open_err(dir: &Path) -> String {
    match SledStore::open(dir) {
        Ok(_) => panic!("{} opened but should be refused", dir.display()),
        Err(StorageError::Unusable { path, reason }) => {
            assert_eq!(path, dir);
            reason
        }
        Err(other) => panic!("expected Unusable, got {other}"),
    }
}

fn populated(dir: &Path, batches: u32) {
    let store = SledStore::create(dir).expect("create");
    for i in 0..batches {
        let mut batch = WriteBatch::new();
        batch.put(Tree::Records, i.to_be_bytes(), vec![i as u8; 300]);
        batch.put(Tree::AuditLeaves, i.to_be_bytes(), vec![!(i as u8); 300]);
        store.commit(batch).expect("commit");
    }
}

#[test]
fn missing_path_file_and_empty_directory_are_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");
    assert!(open_err(&missing).contains("cannot read the data directory"));
    assert!(!missing.exists(), "open must not create a directory");

    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a directory").expect("write");
    assert!(open_err(&file).contains("not a data directory"));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(open_err(&empty).contains("directory is empty"));
    assert_eq!(std::fs::read_dir(&empty).expect("read").count(), 0);
}

#[test]
fn a_directory_of_other_files_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("notes.txt"), b"hello").expect("write");
    assert!(open_err(tmp.path()).contains("not a vault store"));
}

#[test]
fn a_foreign_sled_database_is_refused() {
    // sled's defaults (another segment size) and the vault's own sled settings.
    for segment_size in [None, Some(vault_core::storage::sled::SEGMENT_SIZE)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let mut config = sled::Config::new().path(tmp.path());
            if let Some(size) = segment_size {
                config = config.segment_size(size);
            }
            let db = config.open().expect("sled");
            db.insert(b"someone else's", b"data").expect("insert");
            db.open_tree("meta")
                .and_then(|t| t.insert(b"k", b"v"))
                .expect("insert");
            db.flush().expect("flush");
        }
        let reason = open_err(tmp.path());
        assert!(
            reason.contains("a sled database that is not a vault store"),
            "{reason}"
        );
    }
}

#[test]
fn a_half_created_store_is_refused() {
    // sled files but no format marker and no data: creation stopped before the marker.
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(
        sled::Config::new()
            .path(tmp.path())
            .segment_size(vault_core::storage::sled::SEGMENT_SIZE)
            .open()
            .expect("sled"),
    );
    let reason = open_err(tmp.path());
    assert!(reason.contains("half-created"), "{reason}");
    assert!(reason.contains("initialise again"), "{reason}");
}

#[test]
fn a_missing_sled_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    populated(&dir, 3);
    std::fs::remove_file(dir.join("conf")).expect("rm conf");
    assert!(open_err(&dir).contains("`conf` is missing"));
}

#[test]
fn an_emptied_conf_is_refused_not_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    populated(&dir, 3);
    std::fs::write(dir.join("conf"), b"").expect("empty conf");
    let reason = open_err(&dir);
    assert!(reason.contains("`conf` file is damaged"), "{reason}");
    assert_eq!(std::fs::read(dir.join("conf")).expect("read").len(), 0);
}

#[test]
fn a_store_open_elsewhere_is_refused_as_locked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let _first = SledStore::create(&dir).expect("create");
    let reason = open_err(&dir);
    assert!(reason.contains("locked by another process"), "{reason}");
}

#[test]
fn a_garbled_conf_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    populated(&dir, 3);
    let mut conf = std::fs::read(dir.join("conf")).expect("read");
    for b in conf.iter_mut().take(20) {
        *b ^= 0x5a;
    }
    std::fs::write(dir.join("conf"), &conf).expect("write");
    let reason = open_err(&dir);
    assert!(reason.contains("`conf` file is damaged"), "{reason}");

    // Readable but with other settings: another program's sled database.
    std::fs::write(
        dir.join("conf"),
        b"segment_size: 7\nuse_compression: false\n\0\0\0\0",
    )
    .expect("write");
    let reason = open_err(&dir);
    assert!(reason.contains("sled settings differ"), "{reason}");
}

#[test]
fn a_truncated_data_file_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    populated(&dir, 50);
    std::fs::File::options()
        .write(true)
        .open(dir.join("db"))
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    // Remove sled's snapshots too, so only the (now empty) log is left to recover from.
    for entry in std::fs::read_dir(&dir).expect("read") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        {
            std::fs::remove_file(path).expect("rm snapshot");
        }
    }
    let reason = open_err(&dir);
    assert!(reason.contains("no store format marker"), "{reason}");
}

/// Garbling or truncating the data file anywhere either yields a clear refusal or a store
/// whose every value is still one that was written (sled treats a bad checksum at the log's
/// tail as a torn write); it never panics, never returns another error kind.
#[test]
fn damaged_data_files_never_panic_and_never_yield_invented_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pristine = tmp.path().join("pristine");
    populated(&pristine, 60);
    let len = std::fs::metadata(pristine.join("db")).expect("meta").len();
    let mut refused = 0;
    for (case, fraction) in [0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99]
        .into_iter()
        .enumerate()
    {
        for truncate in [false, true] {
            let dir = tmp.path().join(format!("case{case}{truncate}"));
            std::fs::create_dir(&dir).expect("mkdir");
            for entry in std::fs::read_dir(&pristine).expect("read") {
                let entry = entry.expect("entry");
                if entry.file_type().expect("type").is_file() {
                    std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
                } else {
                    std::fs::create_dir(dir.join(entry.file_name())).expect("mkdir");
                }
            }
            let offset = (len as f64 * fraction) as u64;
            let db = dir.join("db");
            if truncate {
                std::fs::File::options()
                    .write(true)
                    .open(&db)
                    .and_then(|f| f.set_len(offset))
                    .expect("truncate");
            } else {
                let mut bytes = std::fs::read(&db).expect("read db");
                let end = (offset as usize + 64).min(bytes.len());
                for b in &mut bytes[offset as usize..end] {
                    *b ^= 0xA5;
                }
                std::fs::write(&db, bytes).expect("write db");
            }
            let outcome = std::panic::catch_unwind(|| SledStore::open(&dir));
            match outcome {
                Err(_) => panic!(
                    "open panicked on a damaged data file (case {case}, truncate {truncate})"
                ),
                Ok(Err(StorageError::Unusable { reason, .. })) => {
                    assert!(!reason.is_empty());
                    refused += 1;
                }
                Ok(Err(other)) => panic!("unexpected error kind: {other}"),
                Ok(Ok(store)) => {
                    for (tree, invert) in [(Tree::Records, false), (Tree::AuditLeaves, true)] {
                        let Ok(entries) = store.scan(tree, b"", None, usize::MAX) else {
                            continue; // a read error is a clear error too
                        };
                        for (k, v) in entries {
                            let i =
                                u32::from_be_bytes(k.as_slice().try_into().expect("4-byte key"));
                            let byte = if invert { !(i as u8) } else { i as u8 };
                            assert_eq!(v, vec![byte; 300], "invented value at {i}");
                        }
                    }
                }
            }
        }
    }
    // Truncating the whole log (offset 0) loses the marker: at least that is refused.
    assert!(refused >= 1);
}
