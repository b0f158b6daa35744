use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::storage::group::GROUP_BYTES;

/// A batch of one put.
pub(super) fn put(tree: Tree, k: &[u8], v: &[u8]) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(tree, k, v);
    b
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
    store.failpoints.arm("apply-after=2").unwrap();
    store.commit(put(Tree::Tokens, b"a", b"1")).unwrap();
    store.commit(put(Tree::Tokens, b"b", b"1")).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            store.commit(put(Tree::Tokens, b"c", b"1")),
            Err(StorageError::Backend { .. })
        ));
    }
    assert_eq!(store.get(Tree::Tokens, b"c").unwrap(), None);
    let err = store.failpoints.arm("sometimes").unwrap_err();
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
fn concurrent_commits_share_log_syncs() {
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
        "{steps} log syncs for {commits} commits"
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
        "two groups, two log records"
    );
    assert!(store.group.is_settled());
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
fn a_failed_durability_step_releases_every_waiter_with_an_error() {
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

#[test]
fn a_panicking_durability_step_poisons_and_releases_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::create(dir.path().join("s")).unwrap());
    store.dangerous_panic_next_durability();
    let (done, finished) = std::sync::mpsc::channel();
    // Detached threads: if one parked forever, the test fails at its timeout, not hangs.
    for t in 0..16u32 {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let r = store.commit(put(Tree::Records, &t.to_be_bytes(), b"v"));
            let _ = done.send(r.is_err());
        });
    }
    for _ in 0..16 {
        let failed = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a committer hung after the durability step panicked");
        assert!(failed, "a commit was acknowledged by a panicked step");
    }
    assert!(matches!(
        store.commit(put(Tree::Records, b"late", b"v")),
        Err(StorageError::Poisoned)
    ));
}
