//! Appending through plans, loading state from a store, and the checkpoint refusals.

use std::collections::HashMap;

use audit::{
    inclusion_proof, leaf_hash, root, sign_checkpoint, verify_inclusion, Actor, ActorKind,
    AppendError, CheckpointError, Entry, EntryDraft, LogRead, LogState, MemStore,
};

use crate::common::{build_log, draft, signer};

#[test]
fn batching_does_not_change_the_log() {
    let (one, s1) = build_log(333, 0, 1);
    let (many, s2) = build_log(333, 0, 100);
    assert_eq!(s1, s2);
    for i in 0..333 {
        assert_eq!(one.leaf(i).expect("read"), many.leaf(i).expect("read"));
    }
    assert_eq!(root(&one, 333).expect("root"), s1.root());
}

#[test]
fn entries_chain_and_decode_to_what_was_drafted() {
    let (store, state) = build_log(40, 0, 7);
    let mut subjects = HashMap::new();
    let mut prev = [0u8; 32];
    for i in 0..40 {
        let bytes = store.leaf(i).expect("read").expect("leaf");
        let e = Entry::decode(&bytes).expect("decodes");
        let d = draft(i, 0, &mut subjects);
        assert_eq!(
            (e.index, e.prev, e.time_ms, &e.action),
            (i, prev, d.time_ms, &d.action)
        );
        assert_eq!((e.subject, e.subject_prev), (d.subject, d.subject_prev));
        assert_eq!(
            e.encode().expect("encodes"),
            bytes,
            "re-encoding is identity"
        );
        prev = leaf_hash(&bytes);
    }
    assert_eq!(state.last_leaf_hash(), prev);
}

#[test]
fn a_plan_changes_nothing_until_applied_and_a_stale_plan_is_refused() {
    let (mut store, mut state) = build_log(10, 0, 10);
    let before = state.clone();
    let mut subjects = HashMap::new();
    let drafts: Vec<_> = (10..15).map(|i| draft(i, 0, &mut subjects)).collect();
    let plan = state.plan(drafts.clone()).expect("plans");
    assert_eq!(state, before, "planning does not mutate");
    assert_eq!((plan.first_index, plan.size), (10, 15));
    assert_eq!(plan.leaves.len(), 5);
    // Every newly complete subtree: 5 leaves + (10,11)->(1,5), (12,13)->(1,6),
    // (1,5)+(1,4)? no: (8..12)->(2,2); (8..16) not complete.
    let levels: Vec<_> = plan.nodes.iter().map(|(l, i, _)| (*l, *i)).collect();
    assert_eq!(
        levels,
        vec![
            (0, 10),
            (0, 11),
            (1, 5),
            (2, 2),
            (0, 12),
            (0, 13),
            (1, 6),
            (0, 14)
        ]
    );
    // A failed commit: the state is untouched, a new plan gives the same result.
    let again = state.plan(drafts).expect("plans");
    assert_eq!(again, plan);
    store.apply(&plan).expect("stores");
    state.apply(&plan).expect("applies");
    assert_eq!(state.root(), root(&store, 15).expect("root"));
    assert!(matches!(
        state.apply(&plan),
        Err(AppendError::StalePlan {
            plan_first: 10,
            size: 15
        })
    ));
    assert!(matches!(
        store.apply(&plan),
        Err(AppendError::StalePlan { .. })
    ));
    assert!(matches!(state.plan(Vec::new()), Err(AppendError::Empty)));
    let loaded = LogState::load(&store, 15).expect("loads");
    assert_eq!(loaded, state);
    let p = inclusion_proof(&store, 12, 15).expect("proof");
    let leaf = store.node(0, 12).expect("read").expect("leaf");
    assert_eq!(verify_inclusion(&leaf, 12, 15, &p, &state.root()), Ok(()));
}

#[test]
fn invalid_drafts_are_refused_with_their_index() {
    let state = LogState::new();
    let mut d = EntryDraft::new(
        1,
        Actor {
            kind: ActorKind::Citizen,
            id: "someone".into(),
        },
        "access",
        "granted",
    );
    let err = state.plan(vec![d.clone()]).expect_err("refused");
    assert_eq!(err.code(), "audit.invalid_entry");
    d.actor.id.clear();
    d.subject_prev = Some(0);
    assert!(
        state.plan(vec![d.clone()]).is_err(),
        "subject_prev without subject"
    );
    d.subject = Some(audit::SubjectTag([1; 32]));
    assert!(
        state.plan(vec![d.clone()]).is_err(),
        "subject_prev not below index"
    );
    d.subject_prev = None;
    d.action.clear();
    assert!(state.plan(vec![d.clone()]).is_err(), "empty action");
    d.action = "x".repeat(5000);
    assert!(state.plan(vec![d]).is_err(), "overlong action");
}

#[test]
fn signing_refuses_a_rollback_or_a_fork_after_a_restore() {
    let s = signer();
    let (mut store, mut state) = build_log(50, 0, 10);
    let first = sign_checkpoint(&store, &s, 50, None).expect("signs");
    // Growing is fine.
    let mut subjects = HashMap::new();
    let more: Vec<_> = (0..60)
        .map(|i| draft(i, 0, &mut subjects))
        .skip(50)
        .collect();
    store.append(&mut state, more).expect("appends");
    let second =
        sign_checkpoint(&store, &s, 60, Some(&first.checkpoint)).expect("consistent growth");
    // Restore an old backup (size 50): signing below the last signed size is refused.
    store.truncate(50);
    let err = sign_checkpoint(&store, &s, 50, Some(&second.checkpoint)).expect_err("rollback");
    assert!(matches!(
        err,
        CheckpointError::Rollback {
            last: 60,
            requested: 50
        }
    ));
    assert_eq!(err.code(), "audit.checkpoint.rollback");
    // The restored log then diverges: new entries at 50..70 differ from the signed ones.
    let mut state = LogState::load(&store, 50).expect("loads");
    let other: Vec<_> = (0..70)
        .map(|i| draft(i, 9, &mut HashMap::new()))
        .skip(50)
        .collect();
    store.append(&mut state, other).expect("appends");
    let err = sign_checkpoint(&store, &s, 70, Some(&second.checkpoint)).expect_err("fork");
    assert!(matches!(err, CheckpointError::Fork { size: 60 }), "{err}");
    // Another signer's checkpoint is not this log's.
    let stranger = audit::NoteSigner::generate("example.com/other").expect("key");
    assert!(matches!(
        sign_checkpoint(&store, &stranger, 70, Some(&second.checkpoint)),
        Err(CheckpointError::OriginMismatch { .. })
    ));
    // Asking beyond the stored log fails instead of signing nonsense.
    assert!(matches!(
        sign_checkpoint(&store, &s, 71, None),
        Err(CheckpointError::Tree(_))
    ));
}

#[test]
fn mem_store_truncate_and_state_of_empty_log() {
    let store = MemStore::new();
    let state = LogState::load(&store, 0).expect("empty loads");
    assert_eq!(state.root(), audit::empty_root());
    assert_eq!(state.last_leaf_hash(), [0; 32]);
    assert!(LogState::load(&store, 1).is_err());
}
