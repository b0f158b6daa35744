//! Erasure: every read of the citizen fails with `Erased`; the key bytes are nowhere in the
//! data directory, and after `compact` neither are the wrapped keys nor the ciphertexts.

use vault_core::datadir;
use vault_core::records::{CitizenState, RecordError, Records};
use vault_core::storage::WriteBatch;

use crate::keys_support::*;

fn erased<T: std::fmt::Debug>(r: Result<T, RecordError>) {
    match r {
        Err(RecordError::Erased { citizen }) => assert_eq!(citizen, "victim"),
        other => panic!("expected Erased, got {other:?}"),
    }
}

#[test]
fn erasure_destroys_keys_and_ciphertexts() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), Some(5));
    // Enough writes for several DEK generations and old versions in sled's log.
    for i in 0..6 {
        put(
            &v,
            "victim",
            "health",
            &[
                ("blood_type", b"\"A+\""),
                ("allergy", format!("\"pollen {i}\"").as_bytes()),
            ],
        );
        put(
            &v,
            "victim",
            "tax",
            &[("income", format!("{i}").as_bytes())],
        );
        put(&v, "bystander", "tax", &[("income", b"7")]);
    }
    let victim = cid("victim");
    let key_bytes = v
        .records()
        .dangerous_key_bytes(&**v.store(), &victim)
        .unwrap();
    assert!(key_bytes.len() >= 2, "DEK(s) and tag key");
    let stored = Records::dangerous_stored_bytes(&**v.store(), &victim).unwrap();
    let tag = v
        .records()
        .subject_tag(&**v.store(), &victim)
        .unwrap()
        .unwrap();

    let mut batch = WriteBatch::new();
    let out = v
        .records()
        .stage_erase(&**v.store(), &mut batch, &victim)
        .unwrap();
    assert_eq!(out.subject_tag, Some(tag));
    assert_eq!(out.records_deleted, 2);
    v.store().commit(batch).unwrap();

    let check_erased = |v: &datadir::Unsealed| {
        let store = &**v.store();
        let r = v.records();
        erased(r.read_fields(store, &victim, &[fname("health", "blood_type")]));
        erased(r.list_records(store, &victim));
        erased(r.read_all(store, &victim));
        erased(r.subject_tag(store, &victim));
        erased(r.rotate_dek(store, &victim, None));
        let mut b = WriteBatch::new();
        erased(r.stage_put(
            store,
            &mut b,
            &victim,
            &cat("tax"),
            vec![(
                "income".into(),
                vault_core::envelope::Plaintext::from_slice(b"1"),
            )],
            "tax_office",
            now(),
        ));
        erased(r.stage_ensure_keys(store, &mut b, &victim));
        assert!(b.is_empty());
        assert_eq!(
            r.citizen_state(store, &victim).unwrap(),
            CitizenState::Erased
        );
        assert_eq!(read_all(v, "bystander").len(), 1);
    };
    check_erased(&v);
    // KEK rotation skips the tombstone and does not resurrect anything.
    assert!(v.rotate_kek(None, now(), None).unwrap().done);
    drop(v);
    let v = reopen(&dir, Some(5));
    check_erased(&v);
    let s = datadir::status_of(&**v.store()).unwrap();
    assert_eq!((s.citizens, s.erased_citizens, s.records), (1, 1, 1));
    drop(v);

    // The raw DEK and tag-key bytes were never written (only wrapped).
    for k in &key_bytes {
        assert!(files_containing(&dir, k).is_empty());
    }
    // sled keeps superseded values in its log until their segment is reused: the wrapped
    // keys and ciphertexts of the victim may still be on disk here (still protected by the
    // KEK). `compact` rewrites the store with live entries only.
    let lingering_before: usize = stored
        .iter()
        .filter(|b| !files_containing(&dir, b).is_empty())
        .count();
    eprintln!("erasure: {lingering_before} of {} stored key/ciphertext values still in sled's files before compact", stored.len());
    let report = datadir::compact(&dir).unwrap();
    assert!(report.entries > 0);
    for b in &stored {
        assert!(
            files_containing(&dir, b).is_empty(),
            "a stored value of the erased citizen survived compaction"
        );
    }
    for k in &key_bytes {
        assert!(files_containing(&dir, k).is_empty());
    }
    // The compacted directory is the same vault.
    let v = reopen(&dir, Some(5));
    check_erased(&v);
    assert_eq!(
        read_all(&v, "bystander")[&("tax".into(), "income".into())],
        b"7"
    );

    drop(v);

    // An interrupted compaction (killed between its two renames) is finished by the next
    // one, and the old copy, which still holds erased bytes, is deleted.
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let old = dir.with_file_name(format!("{name}.pre-compaction"));
    let tmp = dir.with_file_name(format!("{name}.compacting"));
    datadir::compact(&dir).unwrap();
    std::fs::rename(&dir, &old).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    for entry in std::fs::read_dir(&old).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, tmp.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(old.join("erased-leftover"), b"old bytes").unwrap();
    datadir::compact(&dir).unwrap();
    assert!(!old.exists() && !tmp.exists());
    let v = reopen(&dir, Some(5));
    check_erased(&v);
}
