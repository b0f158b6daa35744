//! The tamper suite: every single-bit flip of an export of 100+ entries (and of a log of
//! version-2 entries continued in version 4), every deletion, duplication and reordering
//! of an entry, splices from another log and truncations are detected, with the first bad
//! entry named.

use audit::export::{verify, VerifyError, VerifyErrorKind};

use crate::common::{export_of, layout, leaves, mixed_export, reframe};

const N: u64 = 100;

fn check(file: &[u8], vkey: &str) -> Result<audit::export::Summary, VerifyError> {
    verify(file, vkey, &mut |_, _| {})
}

#[test]
fn untouched_export_verifies_with_progress() {
    let (file, vkey, _, signed) = export_of(N, 0);
    let mut calls = Vec::new();
    let s = verify(file.as_slice(), &vkey, &mut |d, t| calls.push((d, t))).expect("verifies");
    assert_eq!((s.size, s.root), (N, signed.checkpoint.root));
    assert_eq!(calls.first(), Some(&(0, N)));
    assert_eq!(calls.last(), Some(&(N, N)));
}

#[test]
fn every_single_bit_flip_is_detected_at_the_right_place() {
    let (file, vkey, _, _) = export_of(N, 0);
    assert_eq!(layout(&file).1.len(), N as usize);
    every_bit_flip_is_detected(&file, &vkey);
}

/// Version-2 entries (written before the upgrade), then version-4 ones: a flip in either
/// kind of entry is found, at its entry.
#[test]
fn every_single_bit_flip_of_a_mixed_version_export_is_detected_at_the_right_place() {
    let (file, vkey, _) = mixed_export(40);
    every_bit_flip_is_detected(&file, &vkey);
}

/// Every single-bit flip of `file` fails verification, naming the entry that holds the
/// bit (no entry for a header bit).
fn every_bit_flip_is_detected(file: &[u8], vkey: &str) {
    let file = file.to_vec();
    let (header, ranges) = layout(&file);
    let expected = |byte: usize| -> Option<u64> {
        ranges
            .iter()
            .position(|r| r.contains(&byte))
            .map(|i| i as u64)
    };
    assert!(header > 0 && !ranges.is_empty());
    let total_bits = file.len() * 8;
    let workers = 4;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let file = &file;
                s.spawn(move || {
                    let mut bad = Vec::new();
                    let mut copy = file.clone();
                    for bit in (w..total_bits).step_by(workers) {
                        let byte = bit / 8;
                        copy[byte] ^= 1 << (bit % 8);
                        match check(&copy, vkey) {
                            Ok(_) => bad.push(format!("bit {bit} (byte {byte}) undetected")),
                            Err(e) if e.index != expected(byte) => bad.push(format!(
                                "bit {bit} (byte {byte}): reported {:?}, want {:?}: {e}",
                                e.index,
                                expected(byte)
                            )),
                            Err(_) => {}
                        }
                        copy[byte] ^= 1 << (bit % 8);
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker finished"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {total_bits} flips wrong, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

#[test]
fn deletions_duplications_and_reorderings_name_the_first_bad_entry() {
    let (file, vkey, _, _) = export_of(N, 0);
    let orig = leaves(&file);
    for k in 0..N as usize {
        // Deletion, keeping the signed count.
        let mut l = orig.clone();
        l.remove(k);
        let e = check(&reframe(&file, &l, Some(N)), &vkey).expect_err("deletion detected");
        assert_eq!(e.index, Some(k as u64), "delete {k}: {e}");
        // Deletion with the count adjusted: caught against the signed checkpoint.
        let e = check(&reframe(&file, &l, None), &vkey).expect_err("deletion detected");
        assert!(matches!(
            e.kind,
            VerifyErrorKind::SizeMismatch {
                file: 99,
                checkpoint: 100
            }
        ));
        // Duplication, in place of the next entry or added.
        if k + 1 < N as usize {
            let mut l = orig.clone();
            l[k + 1] = orig[k].clone();
            let e = check(&reframe(&file, &l, None), &vkey).expect_err("duplicate detected");
            assert_eq!(e.index, Some(k as u64 + 1), "dup {k}: {e}");
        }
        let mut l = orig.clone();
        l.insert(k + 1, orig[k].clone());
        let e = check(&reframe(&file, &l, Some(N)), &vkey).expect_err("duplicate detected");
        assert_eq!(e.index, Some(k as u64 + 1), "dup-insert {k}: {e}");
        // Reordering with the next entry.
        if k + 1 < N as usize {
            let mut l = orig.clone();
            l.swap(k, k + 1);
            let e = check(&reframe(&file, &l, None), &vkey).expect_err("swap detected");
            assert_eq!(e.index, Some(k as u64), "swap {k}: {e}");
        }
    }
}

/// Around the upgrade (entries 0..12 in version 2, then version 4): a deleted or swapped
/// entry is named, whichever version it and its neighbour are in.
#[test]
fn edits_at_the_version_upgrade_name_the_first_bad_entry() {
    let (file, vkey, _) = mixed_export(20);
    let orig = leaves(&file);
    for k in [10usize, 11, 12, 13] {
        let mut l = orig.clone();
        l.remove(k);
        let e = check(&reframe(&file, &l, Some(32)), &vkey).expect_err("deletion detected");
        assert_eq!(e.index, Some(k as u64), "delete {k}: {e}");
        let mut l = orig.clone();
        l.swap(k, k + 1);
        let e = check(&reframe(&file, &l, None), &vkey).expect_err("swap detected");
        assert_eq!(e.index, Some(k as u64), "swap {k}: {e}");
    }
}

#[test]
fn splices_from_another_log_name_the_first_foreign_entry() {
    let (file, vkey, _, _) = export_of(N, 0);
    let (other, _, _, _) = export_of(N, 1);
    let (orig, foreign) = (leaves(&file), leaves(&other));
    for a in 1..N as usize {
        for len in [1usize, 2, 5, 30] {
            let b = (a + len).min(N as usize);
            let mut l = orig.clone();
            l[a..b].clone_from_slice(&foreign[a..b]);
            let e = check(&reframe(&file, &l, None), &vkey).expect_err("splice detected");
            assert_eq!(e.index, Some(a as u64), "splice {a}..{b}: {e}");
        }
    }
    // A whole other log under our checkpoint.
    let whole = reframe(&file, &foreign, None);
    assert!(check(&whole, &vkey).is_err());
}

#[test]
fn truncation_is_detected_against_the_signed_checkpoint() {
    let (file, vkey, _, _) = export_of(N, 0);
    let (header, ranges) = layout(&file);
    for cut in (0..file.len()).step_by(7) {
        let e = check(&file[..cut], &vkey).expect_err("truncation detected");
        let want = ranges
            .iter()
            .position(|r| r.contains(&cut) || r.start == cut)
            .map(|i| i as u64);
        if cut >= header {
            assert_eq!(e.index, want, "cut at {cut}: {e}");
            assert!(matches!(
                e.kind,
                VerifyErrorKind::Truncated | VerifyErrorKind::Decode(_)
            ));
        }
    }
    // Dropping whole entries from the end and fixing the count.
    let l = leaves(&file);
    let e = check(&reframe(&file, &l[..60], None), &vkey).expect_err("short");
    assert!(matches!(
        e.kind,
        VerifyErrorKind::SizeMismatch {
            file: 60,
            checkpoint: 100
        }
    ));
    // Appending data after the last entry.
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        check(&longer, &vkey).expect_err("trailing").kind,
        VerifyErrorKind::TrailingData
    ));
}

#[test]
fn wrong_keys_and_foreign_checkpoints_are_refused() {
    let (file, vkey, _, _) = export_of(N, 0);
    let stranger = audit::NoteSigner::generate("example.com/consent-log").expect("key");
    let e = check(&file, &stranger.verifier_key()).expect_err("other key");
    assert!(matches!(e.kind, VerifyErrorKind::KeyMismatch));
    assert!(matches!(
        check(&file, "garbage").expect_err("bad key").kind,
        VerifyErrorKind::BadKey(_)
    ));
    // Entries of our log under a checkpoint signed by someone else for their own log.
    let (theirs, their_vkey, store, _) = export_of(N, 0);
    let _ = (theirs, store);
    assert_eq!(their_vkey, vkey, "same key, same log: deterministic");
    let mut v2 = file.clone();
    v2[8] = 2;
    assert!(matches!(
        check(&v2, &vkey).expect_err("version").kind,
        VerifyErrorKind::UnsupportedVersion(2)
    ));
}
