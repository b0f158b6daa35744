//! Data directory: init, unseal, status, wrong passphrase, master key never in clear.

use std::time::SystemTime;

use vault_core::datadir::{self, DataDirError, InitOptions};
use vault_core::keys::{KeyError, MIN_KDF_ITERATIONS};
use vault_core::records::{RecordError, RecordOptions};
use vault_core::storage::SledStore;

use crate::keys_support::*;

#[test]
fn init_then_status_without_the_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), None);
    put(&v, "c1", "tax", &[("income", b"52000")]);
    put(&v, "c2", "tax", &[("income", b"61000")]);
    put(&v, "c2", "health", &[("blood_type", b"\"A+\"")]);
    drop(v);
    let s = datadir::status(&dir).unwrap();
    assert!(s.initialised);
    assert_eq!(s.created_at, Some(now()));
    assert_eq!(s.kek_ids, vec![1]);
    assert_eq!(s.current_kek, Some(1));
    assert_eq!(s.kek_rotation_target, None);
    assert_eq!(s.kdf_iterations, Some(MIN_KDF_ITERATIONS));
    assert_eq!((s.citizens, s.erased_citizens, s.records), (2, 0, 3));
    // One DEK and one tag key per citizen, under KEK 1.
    assert_eq!(s.wraps_per_kek.get(&1), Some(&4));
}

#[test]
fn values_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), None);
    put(
        &v,
        "c1",
        "tax",
        &[("income", b"52000"), ("employer", b"\"ACME\"")],
    );
    drop(v);
    let v = reopen(&dir, None);
    let all = read_all(&v, "c1");
    assert_eq!(all[&("tax".into(), "income".into())], b"52000");
    assert_eq!(all[&("tax".into(), "employer".into())], b"\"ACME\"");
}

#[test]
fn master_key_is_never_in_clear_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), None);
    for i in 0..20 {
        put(&v, &format!("c{i}"), "tax", &[("income", b"1")]);
    }
    v.rotate_kek(None, now(), None).unwrap();
    let keks = v.dangerous_kek_bytes();
    assert_eq!(keks.len(), 2);
    drop(v);
    for kek in &keks {
        assert_eq!(
            files_containing(&dir, kek),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>, SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|(p, b)| {
            let m = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p, b, m)
        })
        .collect()
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_modifies_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), None);
    put(&v, "c1", "tax", &[("income", b"52000")]);
    drop(v);
    let before = snapshot(&dir);
    let err =
        datadir::unseal(&dir, &pass("not the passphrase"), RecordOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DataDirError::Key(KeyError::WrongPassphrase { kek_id: 1 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("wrong passphrase: "), "{err}");
    assert_eq!(err.code(), "wrong_passphrase");
    let after = snapshot(&dir);
    let names = |s: &[(std::path::PathBuf, Vec<u8>, SystemTime)]| {
        s.iter()
            .map(|(p, b, m)| (p.clone(), b.len(), *m))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&before), names(&after));
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0);
        assert!(b.1 == a.1, "{} changed", b.0.display());
        assert_eq!(b.2, a.2, "{} mtime changed", b.0.display());
    }
    // And the right one still works.
    assert_eq!(read_all(&reopen(&dir, None), "c1").len(), 1);
    // Without the check file the sealed master key itself refuses the wrong passphrase.
    std::fs::remove_file(dir.join(datadir::PASSPHRASE_CHECK_FILE)).unwrap();
    let err =
        datadir::unseal(&dir, &pass("not the passphrase"), RecordOptions::default()).unwrap_err();
    assert_eq!(err.code(), "wrong_passphrase");
    assert_eq!(read_all(&reopen(&dir, None), "c1").len(), 1);
}

#[test]
fn init_refuses_an_initialised_directory_and_a_short_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, v) = init_at(tmp.path(), None);
    drop(v);
    let opts = InitOptions {
        kdf_iterations: MIN_KDF_ITERATIONS,
        ..InitOptions::default()
    };
    let err = datadir::init(&dir, &pass(PASS), opts.clone(), now()).unwrap_err();
    assert_eq!(err.code(), "already_initialised", "{err}");
    let err = datadir::init(
        &tmp.path().join("other"),
        &pass("short"),
        opts.clone(),
        now(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "passphrase_too_short", "{err}");
    assert!(!tmp.path().join("other").exists());
    let low = InitOptions {
        kdf_iterations: MIN_KDF_ITERATIONS - 1,
        ..InitOptions::default()
    };
    let err = datadir::init(&tmp.path().join("low"), &pass(PASS), low, now()).unwrap_err();
    assert_eq!(err.code(), "kdf_params", "{err}");
}

#[test]
fn not_initialised_and_half_initialised_directories_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = datadir::unseal(&empty, &pass(PASS), RecordOptions::default()).unwrap_err();
    assert!(
        matches!(err, DataDirError::NotInitialised { half: false, .. }),
        "{err:?}"
    );
    assert!(datadir::status(&empty).is_err());
    // A store whose init commit never happened.
    let half = tmp.path().join("half");
    drop(SledStore::create(&half).unwrap());
    let err = datadir::unseal(&half, &pass(PASS), RecordOptions::default()).unwrap_err();
    assert!(
        matches!(err, DataDirError::NotInitialised { half: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("half-initialised"), "{err}");
    let s = datadir::status(&half).unwrap();
    assert!(!s.initialised);
}

#[test]
fn invalid_writes_are_refused_with_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, v) = init_at(tmp.path(), None);
    let store = &**v.store();
    let mut batch = vault_core::storage::WriteBatch::new();
    let stage = |batch: &mut _, fields: Vec<(String, vault_core::envelope::Plaintext)>| {
        v.records()
            .stage_put(
                store,
                batch,
                &cid("c1"),
                &cat("tax"),
                fields,
                "tax_office",
                now(),
            )
            .unwrap_err()
    };
    let p = vault_core::envelope::Plaintext::from_slice;
    let big = vec![b'x'; vault_core::records::MAX_FIELD_LEN + 1];
    let e = stage(&mut batch, vec![("income".into(), p(&big))]);
    assert!(matches!(e, RecordError::FieldTooLarge { ref field, .. } if field == "tax.income"));
    let e = stage(&mut batch, vec![("Income!".into(), p(b"1"))]);
    assert_eq!(e.code(), "invalid_field");
    let e = stage(
        &mut batch,
        vec![("a".into(), p(b"1")), ("a".into(), p(b"2"))],
    );
    assert_eq!(e.code(), "duplicate_field");
    let e = stage(&mut batch, vec![]);
    assert_eq!(e.code(), "no_fields");
    let many: Vec<_> = (0..4)
        .map(|i| (format!("f{i}"), p(&vec![b'y'; 4000])))
        .collect();
    let e = stage(&mut batch, many);
    assert_eq!(e.code(), "record_too_large");
    assert!(batch.is_empty(), "a refused write stages nothing");
}
