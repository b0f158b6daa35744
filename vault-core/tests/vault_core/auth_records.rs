//! Records authenticated at rest: an offline edit of a stopped data directory (a changed,
//! added or swapped token, consent artefact, enrolment, or engine configuration) is
//! refused at use or at open, with an error naming the record kind; a data directory of
//! the earlier format is refused until `upgrade`, which authenticates it once.

use std::path::Path;

use vault_core::auth::MAC_LEN;
use vault_core::codec;
use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};
use vault_core::tokens::{Role, TokenRecord};
use vault_core::{
    Bearer, CitizenToken, ConsentRequestInput, DataDir, OfflineError, TokenRequest, Vault,
    VaultError,
};

const PASS: &str = "correct horse battery staple records";

fn init(root: &Path) -> DataDir {
    crate::init_data_dir(root, PASS)
}

fn token(v: &Vault, citizen: &str) -> String {
    v.issue_token(TokenRequest::Citizen {
        citizen: citizen.to_owned(),
        valid_days: Some(30),
    })
    .unwrap()
    .token
    .secret()
    .to_owned()
}

fn citizen_of(v: &Vault, secret: &str) -> Result<CitizenToken, VaultError> {
    match v.authenticate_token(secret)? {
        Bearer::Citizen(t) => Ok(t),
        _ => panic!("not a citizen token"),
    }
}

/// Stops the vault and releases its store.
fn close(v: Vault) {
    v.shutdown();
    drop(v);
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// The error names the record kind and says to restore from a backup.
fn tampered<T: std::fmt::Debug>(r: Result<T, impl std::fmt::Display>, kind: &str) {
    let msg = r.expect_err("an edited record must be refused").to_string();
    assert!(
        msg.contains(&format!(
            "stored {kind} record fails its authentication check"
        )) && msg.contains("restore"),
        "{msg}"
    );
}

/// Runs `edit` on the raw store of the stopped vault.
fn offline_edit(dir: &Path, edit: impl FnOnce(&dyn Storage) -> WriteBatch) {
    let store = SledStore::open(dir.join("store")).unwrap();
    let batch = edit(&store);
    store.commit(batch).unwrap();
}

fn strip(stored: &[u8]) -> &[u8] {
    &stored[..stored.len() - MAC_LEN]
}

fn with_mac_of(new_body: Vec<u8>, old_stored: &[u8]) -> Vec<u8> {
    let mut v = new_body;
    v.extend_from_slice(&old_stored[old_stored.len() - MAC_LEN..]);
    v
}

#[test]
fn an_edited_added_or_swapped_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let root = tmp.path().join("data");
    let v = dir.open(PASS).unwrap();
    let alice = token(&v, "alice");
    let bob = token(&v, "bob");
    assert_eq!(citizen_of(&v, &alice).unwrap().citizen(), "alice");
    close(v);
    let (ka, kb) = (sha256(alice.as_bytes()), sha256(bob.as_bytes()));

    // The issue's attack: alice's token record edited to name bob, MAC left as it was.
    offline_edit(&root, |s| {
        let stored = s.get(Tree::Tokens, &ka).unwrap().unwrap();
        let mut rec: TokenRecord = codec::decode("token", 1, strip(&stored)).unwrap();
        rec.role = Role::Citizen {
            citizen: "bob".to_owned(),
        };
        let body = codec::encode("token", 1, &rec).unwrap();
        let mut b = WriteBatch::new();
        b.put(Tree::Tokens, ka.clone(), with_mac_of(body, &stored));
        b
    });
    let v = dir.open(PASS).unwrap();
    tampered(citizen_of(&v, &alice), "token");
    assert_eq!(citizen_of(&v, &bob).unwrap().citizen(), "bob");
    close(v);

    // Swapped: bob's whole record (with its MAC) under alice's key.
    offline_edit(&root, |s| {
        let stored = s.get(Tree::Tokens, &kb).unwrap().unwrap();
        let mut b = WriteBatch::new();
        b.put(Tree::Tokens, ka.clone(), stored);
        b
    });
    let v = dir.open(PASS).unwrap();
    tampered(citizen_of(&v, &alice), "token");
    close(v);

    // Added: a token of the attacker's choosing, with a copied record and MAC.
    let forged = format!("vt1_{}", "A".repeat(43));
    offline_edit(&root, |s| {
        let stored = s.get(Tree::Tokens, &kb).unwrap().unwrap();
        let mut b = WriteBatch::new();
        b.put(Tree::Tokens, sha256(forged.as_bytes()), stored);
        b
    });
    let v = dir.open(PASS).unwrap();
    tampered(citizen_of(&v, &forged), "token");
    assert_eq!(citizen_of(&v, &bob).unwrap().citizen(), "bob");
    close(v);

    // The vault key is re-sealed with the other secrets when the KEK rotates, and counted
    // by the retirement check: the old KEK retires and the records still authenticate.
    dir.rotate(PASS, vault_core::KeyKind::Kek).unwrap();
    dir.retire_kek(PASS, 1).unwrap();
    let v = dir.open(PASS).unwrap();
    assert_eq!(citizen_of(&v, &bob).unwrap().citizen(), "bob");
    close(v);
}

fn consent_keys(s: &dyn Storage, citizen: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut start = citizen.as_bytes().to_vec();
    let mut end = start.clone();
    start.push(0);
    end.push(1);
    s.scan(Tree::Consents, &start, Some(&end), usize::MAX)
        .unwrap()
}

#[test]
fn an_edited_or_moved_consent_artefact_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let root = tmp.path().join("data");
    let v = dir.open(PASS).unwrap();
    for citizen in ["alice", "bob"] {
        v.request_consent(
            "general_hospital",
            ConsentRequestInput {
                citizen: citizen.to_owned(),
                purpose: "medical_treatment".to_owned(),
                fields: vec!["health.blood_type".to_owned()],
                expires_at: crate::days_ahead(90),
                initiator: None,
            },
        )
        .unwrap();
    }
    assert_eq!(v.citizen_consent_requests("alice").unwrap().len(), 1);
    close(v);

    // One byte of alice's artefact changed.
    offline_edit(&root, |s| {
        let (k, mut stored) = consent_keys(s, "alice").remove(0);
        stored[5] ^= 1;
        let mut b = WriteBatch::new();
        b.put(Tree::Consents, k, stored);
        b
    });
    let v = dir.open(PASS).unwrap();
    tampered(v.citizen_consent_requests("alice"), "consent artefact");
    assert_eq!(v.citizen_consent_requests("bob").unwrap().len(), 1);
    close(v);

    // Bob's artefact copied under alice's prefix (same artefact id suffix).
    offline_edit(&root, |s| {
        let (k, stored) = consent_keys(s, "bob").remove(0);
        let mut moved = b"carol".to_vec();
        moved.extend_from_slice(&k[3..]);
        let mut b = WriteBatch::new();
        b.put(Tree::Consents, moved, stored);
        b
    });
    let v = dir.open(PASS).unwrap();
    tampered(v.citizen_consents("carol"), "consent artefact");
    close(v);
}

#[test]
fn an_edited_or_added_enrolment_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let root = tmp.path().join("data");
    let v = dir.open(PASS).unwrap();
    let first = v.enrol_agency("civil_registry", None).unwrap();
    v.revoke_certificate(&first.issued.fingerprint().to_hex())
        .unwrap();
    v.enrol_agency("general_hospital", None).unwrap();
    close(v);
    let good = {
        let s = SledStore::open(root.join("store")).unwrap();
        s.get(Tree::Agencies, b"civil_registry").unwrap().unwrap()
    };

    // The revoked certificate's `revoked_at` cleared (the MAC kept).
    offline_edit(&root, |s| {
        let stored = s.get(Tree::Agencies, b"civil_registry").unwrap().unwrap();
        let mut e: vault_core::Enrolment =
            codec::decode("agency enrolment", 1, strip(&stored)).unwrap();
        e.certs[0].revoked_at = None;
        let body = codec::encode("agency enrolment", 1, &e).unwrap();
        let mut b = WriteBatch::new();
        b.put(
            Tree::Agencies,
            b"civil_registry".to_vec(),
            with_mac_of(body, &stored),
        );
        b
    });
    tampered(dir.open(PASS), "agency enrolment");

    // Put back, then an enrolment swapped to another agency's key.
    offline_edit(&root, |s| {
        let hospital = s.get(Tree::Agencies, b"general_hospital").unwrap().unwrap();
        let mut b = WriteBatch::new();
        b.put(Tree::Agencies, b"civil_registry".to_vec(), good.clone());
        b.put(Tree::Agencies, b"national_police".to_vec(), hospital);
        b
    });
    tampered(dir.open(PASS), "agency enrolment");
    offline_edit(&root, |_| {
        let mut b = WriteBatch::new();
        b.delete(Tree::Agencies, b"national_police".to_vec());
        b
    });
    dir.open(PASS).unwrap().shutdown();
}

#[test]
fn an_edited_engine_configuration_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let root = tmp.path().join("data");
    dir.open(PASS).unwrap().shutdown();
    // `operator_fp` pointed at a certificate the attacker holds, the MAC kept.
    offline_edit(&root, |s| {
        use serde_cbor::Value;
        let stored = s.get(Tree::Meta, b"engine.config").unwrap().unwrap();
        let mut config: Value = codec::decode("engine config", 2, strip(&stored)).unwrap();
        let Value::Map(m) = &mut config else {
            panic!("the configuration is a map")
        };
        m.insert(
            Value::Text("operator_fp".to_owned()),
            Value::Array(vec![Value::Integer(0xAB); 32]),
        );
        let body = codec::encode("engine config", 2, &config).unwrap();
        let mut b = WriteBatch::new();
        b.put(
            Tree::Meta,
            b"engine.config".to_vec(),
            with_mac_of(body, &stored),
        );
        b
    });
    tampered(dir.open(PASS), "engine config");
}

/// Turns a data directory of this version into one as the earlier version wrote it: no
/// MAC on any record, a format-1 configuration without a vault key, and a tombstone
/// under the clear citizen id with its erasure time.
fn make_legacy(root: &Path, erased: &str) {
    use serde_cbor::Value;
    offline_edit(root, |s| {
        let mut b = WriteBatch::new();
        for tree in [Tree::Tokens, Tree::Consents, Tree::Agencies] {
            for (k, v) in s.scan(tree, &[], None, usize::MAX).unwrap() {
                // Stores of that age had no consent index (built at open since).
                if tree == Tree::Consents && k.iter().find(|b| **b <= 1) == Some(&1) {
                    b.delete(tree, k);
                    continue;
                }
                b.put(tree, k, strip(&v).to_vec());
            }
        }
        b.delete(Tree::Meta, b"consent_index".to_vec());
        let stored = s.get(Tree::Meta, b"engine.config").unwrap().unwrap();
        let mut config: Value = codec::decode("engine config", 2, strip(&stored)).unwrap();
        if let Value::Map(m) = &mut config {
            m.remove(&Value::Text("record_key".to_owned()));
        }
        b.put(
            Tree::Meta,
            b"engine.config".to_vec(),
            codec::encode("engine config", 1, &config).unwrap(),
        );
        for (k, v) in s.scan(Tree::Keys, &[0], Some(&[1]), usize::MAX).unwrap() {
            assert!(v.len() < 20, "a tombstone holds no key material");
            b.delete(Tree::Keys, k);
        }
        let old: Value = Value::Map(
            [(
                Value::Text("Erased".to_owned()),
                Value::Map(
                    [(
                        Value::Text("erased_at".to_owned()),
                        Value::Integer(1_800_000_000),
                    )]
                    .into(),
                ),
            )]
            .into(),
        );
        b.put(
            Tree::Keys,
            erased.as_bytes().to_vec(),
            codec::encode("citizen key record", 1, &old).unwrap(),
        );
        b
    });
}

#[test]
fn an_earlier_data_directory_is_refused_until_upgraded_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(tmp.path());
    let root = tmp.path().join("data");
    let v = dir.open(PASS).unwrap();
    let alice = token(&v, "alice");
    v.enrol_agency("civil_registry", None).unwrap();
    v.request_consent(
        "general_hospital",
        ConsentRequestInput {
            citizen: "alice".to_owned(),
            purpose: "medical_treatment".to_owned(),
            fields: vec!["health.blood_type".to_owned()],
            expires_at: crate::days_ahead(90),
            initiator: None,
        },
    )
    .unwrap();
    token(&v, "gone");
    v.erase_citizen("gone", None).unwrap();
    let size = v.audit_size();
    close(v);
    make_legacy(&root, "gone");

    match dir.open(PASS) {
        Err(OfflineError::Vault(VaultError::Conflict { code, message })) => {
            assert_eq!(code, "upgrade_required");
            assert!(message.contains("vault-cli upgrade"), "{message}");
        }
        other => panic!("expected upgrade_required, got {other:?}"),
    }
    assert!(dir.upgrade(PASS).unwrap());
    assert!(
        !dir.upgrade(PASS).unwrap(),
        "a second upgrade changes nothing"
    );
    let v = dir.open(PASS).unwrap();
    assert_eq!(citizen_of(&v, &alice).unwrap().citizen(), "alice");
    assert_eq!(v.citizen_consent_requests("alice").unwrap().len(), 1);
    assert_eq!(v.list_agencies().unwrap().len(), 1);
    // The old tombstone still refuses the citizen, and is rekeyed without its time.
    assert!(matches!(
        v.erase_citizen("gone", None),
        Err(VaultError::Erased)
    ));
    let upgrade = v.audit_entries(size, 1).unwrap();
    assert_eq!(upgrade[0].entry.action, "vault.upgrade");
    close(v);
    let s = SledStore::open(root.join("store")).unwrap();
    assert!(s.get(Tree::Keys, b"gone").unwrap().is_none());
    assert_eq!(s.scan(Tree::Keys, &[0], Some(&[1]), 10).unwrap().len(), 1);
}
