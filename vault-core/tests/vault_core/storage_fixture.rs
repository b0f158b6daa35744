//! A store written by the format-1 code, kept in the repository: this program must keep
//! opening it and reading what it holds (a format change keeps reading the old one).
//!
//! The fixture (`fixtures/store-v1/`) was made by `write_store_fixture` below:
//! `VAULT_WRITE_STORE_FIXTURE=<empty dir> cargo test -p vault-core --test vault_core
//! storage_fixture::write_store_fixture -- --ignored --exact`.

use std::path::Path;

use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vault_core/fixtures/store-v1"
);

/// The fixture's store id (printed by the writer when the fixture was made).
const FIXTURE_STORE_ID: &str = include_str!("fixtures/store-v1.id");

fn record(i: u8) -> Vec<u8> {
    format!("record {i}").into_bytes()
}

#[test]
#[ignore = "writes the format-1 fixture; run by hand (see the module documentation)"]
fn write_store_fixture() {
    let dir = std::env::var_os("VAULT_WRITE_STORE_FIXTURE").expect("target directory");
    let store = SledStore::create(&dir).expect("create");
    for i in 0..20u8 {
        let mut batch = WriteBatch::new();
        batch.put(
            Tree::Records,
            format!("citizen/{i:02}").into_bytes(),
            record(i),
        );
        batch.put(Tree::AuditLeaves, u64::from(i).to_be_bytes(), vec![i; 40]);
        batch.put(Tree::Meta, b"test.count".to_vec(), vec![i + 1]);
        store.commit(batch).expect("commit");
    }
    let mut batch = WriteBatch::new();
    batch.delete(Tree::Records, b"citizen/03".to_vec());
    store.commit(batch).expect("commit");
    let id: String = store
        .store_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(Path::new(&dir).with_extension("id"), id).expect("write id");
}

#[test]
fn a_store_written_by_format_1_still_opens_with_its_data() {
    // Open a copy: sled writes to a directory it opens.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).expect("mkdir");
    for entry in std::fs::read_dir(FIXTURE).expect("fixture present") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir(dir.join(entry.file_name())).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
        }
    }
    std::fs::create_dir_all(dir.join("blobs")).expect("blobs");
    let store = SledStore::open(&dir).expect("the format-1 fixture opens");
    let id: String = store
        .store_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, FIXTURE_STORE_ID.trim());
    let records = store
        .scan(Tree::Records, b"citizen/", None, 100)
        .expect("scan");
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..20u8)
        .filter(|i| *i != 3)
        .map(|i| (format!("citizen/{i:02}").into_bytes(), record(i)))
        .collect();
    assert_eq!(records, want);
    let leaves = store
        .scan_rev(Tree::AuditLeaves, b"", None, 2)
        .expect("scan");
    assert_eq!(leaves[0], (19u64.to_be_bytes().to_vec(), vec![19; 40]));
    assert_eq!(leaves[1], (18u64.to_be_bytes().to_vec(), vec![18; 40]));
    assert_eq!(
        store.get(Tree::Meta, b"test.count").expect("get"),
        Some(vec![20])
    );
    // Opening upgraded it to the current format (a write-ahead log); a write through the
    // log and a reopen keep everything.
    assert!(dir.join(vault_core::storage::sled::wal::WAL_FILE).is_file());
    let mut batch = WriteBatch::new();
    batch.put(Tree::Records, b"citizen/99".to_vec(), record(99));
    store.commit(batch).expect("commit after the upgrade");
    drop(store);
    let store = SledStore::open(&dir).expect("the upgraded store opens");
    let records = store
        .scan(Tree::Records, b"citizen/", None, 100)
        .expect("scan");
    assert_eq!(records.len(), want.len() + 1);
    assert_eq!(records[..want.len()], want[..]);
    assert_eq!(
        store.get(Tree::Records, b"citizen/99").expect("get"),
        Some(record(99))
    );
}
