//! `SledStore` against a `BTreeMap` reference model: batches across trees, deletes, ordered
//! scans in both directions with bounds and limits, reopen, atomicity of failed batches,
//! concurrent group commit, and that no value ever reaches sled's unsynced `blobs/` folder.
//! The model and its checks are shared with the PostgreSQL backend's tests
//! (`storage_postgres.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use vault_core::storage::sled::{MAX_KEY_LEN, MAX_VALUE_LEN};
use vault_core::storage::{SledStore, Storage, StorageError, Tree, WriteBatch};

pub(crate) type Model = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

/// A scan to compare: (tree index, start, end, limit).
pub(crate) type Scan = (usize, Vec<u8>, Option<Vec<u8>>, usize);

pub(crate) const TREES: [Tree; 3] = [Tree::Records, Tree::AuditLeaves, Tree::Consents];

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
}

pub(crate) fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so that puts, deletes and scan bounds collide.
    proptest::collection::vec(0u8..4, 0..4)
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TREES.len(), key(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, k, v)| Op::Put(t, k, v)),
        1 => (0..TREES.len(), key()).prop_map(|(t, k)| Op::Delete(t, k)),
    ]
}

pub(crate) fn apply_model(model: &mut Model, batch: &[Op]) {
    for op in batch {
        match op {
            Op::Put(t, k, v) => {
                model.insert((TREES[*t], k.clone()), v.clone());
            }
            Op::Delete(t, k) => {
                model.remove(&(TREES[*t], k.clone()));
            }
        }
    }
}

pub(crate) fn to_batch(ops: &[Op]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(t, k, v) => batch.put(TREES[*t], k.clone(), v.clone()),
            Op::Delete(t, k) => batch.delete(TREES[*t], k.clone()),
        }
    }
    batch
}

fn model_scan(
    model: &Model,
    tree: Tree,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let all: Vec<_> = model
        .iter()
        .filter(|((t, k), _)| {
            *t == tree && k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e)
        })
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    if rev {
        all.into_iter().rev().take(limit).collect()
    } else {
        all.into_iter().take(limit).collect()
    }
}

pub(crate) fn assert_same(store: &dyn Storage, model: &Model, scans: &[Scan]) {
    for tree in TREES {
        let full = store.scan(tree, b"", None, usize::MAX).expect("scan");
        assert_eq!(full, model_scan(model, tree, b"", None, usize::MAX, false));
    }
    for (t, start, end, limit) in scans {
        let tree = TREES[*t];
        for rev in [false, true] {
            let got = if rev {
                store.scan_rev(tree, start, end.as_deref(), *limit)
            } else {
                store.scan(tree, start, end.as_deref(), *limit)
            }
            .expect("scan");
            let want = model_scan(model, tree, start, end.as_deref(), *limit, rev);
            assert_eq!(
                got, want,
                "{tree} [{start:?}, {end:?}) limit {limit} rev {rev}"
            );
        }
    }
    for ((tree, k), v) in model {
        assert_eq!(store.get(*tree, k).expect("get").as_ref(), Some(v));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_btreemap_model_before_and_after_reopen(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..12),
        failing in proptest::collection::vec(any::<bool>(), 12),
        scans in proptest::collection::vec(
            (0..TREES.len(), key(), proptest::option::of(key()), 0usize..6), 1..8),
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("s");
        let mut model = Model::new();
        {
            let store = SledStore::create(&dir).expect("create");
            for (i, batch) in batches.iter().enumerate() {
                if failing[i] {
                    // A failed apply changes nothing, in any tree.
                    store.dangerous_fail_next_applies(1);
                    prop_assert!(store.commit(to_batch(batch)).is_err());
                } else {
                    store.commit(to_batch(batch)).expect("commit");
                    apply_model(&mut model, batch);
                }
            }
            assert_same(&store, &model, &scans);
        }
        let store = SledStore::open(&dir).expect("reopen");
        assert_same(&store, &model, &scans);
    }
}

#[test]
fn an_oversized_write_rejects_the_whole_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = SledStore::create(tmp.path().join("s")).expect("create");
    let mut batch = WriteBatch::new();
    batch.put(Tree::Records, b"r".to_vec(), b"record".to_vec());
    batch.put(
        Tree::AuditLeaves,
        b"a".to_vec(),
        vec![0u8; MAX_VALUE_LEN + 1],
    );
    let err = store.commit(batch).expect_err("refused");
    assert!(matches!(
        err,
        StorageError::ValueTooLarge {
            tree: Tree::AuditLeaves,
            ..
        }
    ));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert_eq!(store.get(Tree::Records, b"r").expect("get"), None);
}

/// Many concurrent committers: every commit returns, everything is readable after reopen,
/// and nothing was written to sled's `blobs/` folder (files sled never fsyncs) even with
/// every value at the maximum size, packed into adjacent keys of one tree.
#[test]
fn concurrent_max_size_commits_are_durable_and_never_become_blobs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("s");
    let store = Arc::new(SledStore::create(&dir).expect("create"));
    let threads = 16u32;
    let per_thread = 40u32;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                for i in 0..per_thread {
                    let mut key = vec![b'k'; MAX_KEY_LEN - 8];
                    key.extend_from_slice(&(i * threads + t).to_be_bytes());
                    key.extend_from_slice(&t.to_be_bytes());
                    let mut batch = WriteBatch::new();
                    batch.put(Tree::Records, key.clone(), vec![t as u8; MAX_VALUE_LEN]);
                    batch.put(Tree::AuditLeaves, key, vec![i as u8; MAX_VALUE_LEN]);
                    store.commit(batch).expect("commit");
                }
            });
        }
    });
    drop(store);
    let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .expect("sled's blobs folder")
        .collect();
    assert!(blobs.is_empty(), "sled wrote blob files: {blobs:?}");
    let store = SledStore::open(&dir).expect("reopen");
    let records = store
        .scan(Tree::Records, b"", None, usize::MAX)
        .expect("scan");
    assert_eq!(records.len(), (threads * per_thread) as usize);
    assert!(records.iter().all(|(_, v)| v.len() == MAX_VALUE_LEN));
}

/// The blob check above can fail: plain sled with the same segment size does write a value
/// above the threshold to `blobs/`.
#[test]
fn a_value_above_the_blob_threshold_does_go_to_blobs_in_plain_sled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(tmp.path())
        .segment_size(vault_core::storage::sled::SEGMENT_SIZE)
        .open()
        .expect("sled");
    db.insert(
        b"big",
        vec![1u8; vault_core::storage::sled::SLED_BLOB_THRESHOLD + 1],
    )
    .expect("insert");
    db.flush().expect("flush");
    let blobs = std::fs::read_dir(tmp.path().join("blobs"))
        .expect("blobs folder")
        .count();
    assert!(blobs > 0, "sled's blob threshold is lower than documented");
}
