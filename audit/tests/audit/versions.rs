//! Entry format versions across an upgrade: a log written in version 2 (the checked-in
//! export of `testdata/entry-v2/`) still verifies, holds the same entries as the version-4
//! log of the same drafts (but for the justification, a commitment in version 4), and
//! verifies when this code continues it in version 4.

use audit::export::verify;
use audit::{leaf_hash, Entry, LogRead, ENTRY_VERSION};

use crate::common::{build_log, emergency_commitment, leaves, mixed_export, signer, v2_export};

/// The entry's leaf bytes form: 0xb4 (a map of 20 pairs) in version 2, 0x94 (an array of
/// 20 items) in version 3, 0x95 (an array of 21 items) in version 4, 0x98 0x18 (an array
/// of 24 items) in version 5, 0x98 0x19 (of 25) in version 6.
fn version_of(leaf: &[u8]) -> u64 {
    match leaf[0] {
        0xb4 => 2,
        0x94 => 3,
        0x95 => 4,
        0x98 if leaf[1] == 24 => 5,
        0x98 if leaf[1] == 25 => 6,
        other => panic!("unexpected head {other:#04x}"),
    }
}

#[test]
fn a_version_2_export_written_before_version_3_still_verifies() {
    let (file, vkey) = v2_export();
    assert_eq!(
        vkey,
        signer().verifier_key(),
        "the fixture's key is the tests' key"
    );
    let s = verify(file, vkey, &mut |_, _| {}).expect("verifies");
    assert_eq!(s.size, 12);
    let old = leaves(file);
    assert!(old.iter().all(|l| version_of(l) == 2));
    // The same drafts appended now: version 6, and the same entries but for `prev` (the
    // hash chain runs over other bytes) and the justification, which version 4 carries
    // only as a commitment.
    assert_eq!(ENTRY_VERSION, 6);
    let (store, _) = build_log(12, 0, 17);
    let mut justified = 0;
    for (i, leaf) in old.iter().enumerate() {
        let new = store.leaf_bytes(i as u64).expect("stored");
        assert_eq!(version_of(new), 6);
        let mut was = Entry::decode(leaf).expect("a v2 leaf decodes");
        let mut now = Entry::decode(new).expect("a v6 leaf decodes");
        assert_eq!(was.index, i as u64);
        if let Some(text) = was.justification.take() {
            assert_eq!(text, "emergency");
            assert_eq!(
                now.justification_commitment.take(),
                Some(emergency_commitment(0))
            );
            justified += 1;
        }
        was.prev = [0; 32];
        now.prev = [0; 32];
        assert_eq!(was, now, "entry {i}");
    }
    assert!(justified > 0, "the fixture has a justification");
}

#[test]
fn a_log_of_version_2_then_version_6_entries_verifies() {
    let (v2_file, _) = v2_export();
    let old = leaves(v2_file);
    let (file, vkey, store) = mixed_export(30);
    let mut calls = Vec::new();
    let s = verify(file.as_slice(), &vkey, &mut |d, t| calls.push((d, t))).expect("verifies");
    assert_eq!(s.size, 42);
    assert_eq!(calls.last(), Some(&(42, 42)));
    let all = leaves(&file);
    assert_eq!(
        &all[..12],
        old.as_slice(),
        "the v2 leaves are kept byte for byte"
    );
    assert!(all[12..].iter().all(|l| version_of(l) == 6));
    // The chain and the subject chains run across the upgrade.
    let first_new = Entry::decode(&all[12]).expect("decodes");
    assert_eq!(first_new.prev, leaf_hash(&old[11]));
    assert!(all[12..]
        .iter()
        .map(|l| Entry::decode(l).expect("decodes"))
        .any(|e| e.subject_prev.is_some_and(|p| p < 12)));
    assert_eq!(store.leaf(12).expect("reads"), Some(all[12].clone()));
}
