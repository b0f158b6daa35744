//! The caps on an agency's consent requests: pending requests per citizen and agency, and
//! how far ahead `expires_at` may be. A refused request is logged like any refusal. The
//! consent index (by citizen, agency and purpose) that decisions and the cap read, and its
//! build at open for a store written before it.

use std::path::Path;

use vault_core::{
    ConsentLimit, ConsentRequestInput, DataDir, Vault, VaultError, MAX_CONSENT_REQUEST_DAYS,
    MAX_PENDING_REQUESTS,
};

const PASS: &str = "correct horse battery staple limits";

fn open(root: &Path) -> Vault {
    crate::init_data_dir(root, PASS).open(PASS).unwrap()
}

fn request(v: &Vault, agency: &str, citizen: &str, days: u64) -> Result<String, VaultError> {
    let (purpose, field) = match agency {
        "general_hospital" => ("medical_treatment", "health.blood_type"),
        _ => ("tax_assessment", "health.insurer"),
    };
    v.request_consent(
        agency,
        ConsentRequestInput {
            citizen: citizen.to_owned(),
            purpose: purpose.to_owned(),
            fields: vec![field.to_owned()],
            expires_at: crate::days_ahead(days),
            initiator: None,
        },
    )
    .map(|view| view.artefact.id().to_string())
}

/// The logged refusal at `index`.
fn assert_refusal_logged(v: &Vault, index: u64, agency: &str) {
    v.sign_checkpoint_now().unwrap();
    let e = &v.audit_entries(index, 1).unwrap()[0].entry;
    assert_eq!(e.action, "consent.request");
    assert_eq!(e.decision, "refused");
    assert_eq!(e.actor.id, agency);
}

#[test]
fn pending_requests_per_citizen_and_agency_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let mut ids = Vec::new();
    for _ in 0..MAX_PENDING_REQUESTS {
        ids.push(request(&v, "general_hospital", "alice", 30).unwrap());
    }
    let refused = request(&v, "general_hospital", "alice", 30).unwrap_err();
    let VaultError::ConsentLimit {
        limit: ConsentLimit::TooManyPending { max },
        audit_index: Some(index),
    } = refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(max, MAX_PENDING_REQUESTS);
    assert_refusal_logged(&v, index, "general_hospital");
    assert_eq!(
        v.citizen_consent_requests("alice").unwrap().len(),
        MAX_PENDING_REQUESTS,
        "the refused request is not stored"
    );

    // Per citizen and per agency.
    request(&v, "general_hospital", "bob", 30).unwrap();
    request(&v, "tax_authority", "alice", 30).unwrap();

    // An answer frees a place.
    let me = crate::citizen_token(&v, "alice");
    v.answer_consent_request(&me, &ids[0], false).unwrap();
    request(&v, "general_hospital", "alice", 30).unwrap();
    assert!(request(&v, "general_hospital", "alice", 30).is_err());
    v.shutdown();
}

#[test]
fn a_request_ending_too_far_ahead_is_refused_and_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let max = u64::from(MAX_CONSENT_REQUEST_DAYS);
    request(&v, "general_hospital", "alice", max - 1).unwrap();
    let refused = request(&v, "general_hospital", "alice", max + 1).unwrap_err();
    assert_eq!(refused.code(), "expires_too_late");
    let VaultError::ConsentLimit {
        limit: ConsentLimit::ExpiresTooLate { max_days },
        audit_index: Some(index),
    } = refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(max_days, MAX_CONSENT_REQUEST_DAYS);
    assert_refusal_logged(&v, index, "general_hospital");
    assert_eq!(v.citizen_consent_requests("alice").unwrap().len(), 1);
    v.shutdown();
}

#[test]
fn a_store_without_the_consent_index_gets_it_at_open() {
    use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    request(&v, "general_hospital", "alice", 30).unwrap();
    request(&v, "tax_authority", "alice", 30).unwrap();
    v.shutdown();
    drop(v);
    // As a store written before the index: artefacts only, no index entries, no marker.
    let store_dir = tmp.path().join("data").join("store");
    {
        let s = SledStore::open(&store_dir).unwrap();
        let mut b = WriteBatch::new();
        let mut dropped = 0;
        for (k, _) in s.scan(Tree::Consents, &[], None, usize::MAX).unwrap() {
            if k.iter().find(|b| **b <= 1) == Some(&1) {
                b.delete(Tree::Consents, k);
                dropped += 1;
            }
        }
        assert_eq!(dropped, 2, "one index entry per artefact");
        b.delete(Tree::Meta, b"consent_index".to_vec());
        s.commit(b).unwrap();
    }
    let v = DataDir::new(tmp.path().join("data")).open(PASS).unwrap();
    // The pending cap counts through the index: it sees the hospital's request again.
    for _ in 1..MAX_PENDING_REQUESTS {
        request(&v, "general_hospital", "alice", 30).unwrap();
    }
    assert!(matches!(
        request(&v, "general_hospital", "alice", 30),
        Err(VaultError::ConsentLimit { .. })
    ));
    v.shutdown();
    drop(v);
    let s = SledStore::open(&store_dir).unwrap();
    assert!(s.get(Tree::Meta, b"consent_index").unwrap().is_some());
}

#[test]
fn an_access_decision_finds_the_consent_through_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let me = crate::citizen_token(&v, "alice");
    let id = request(&v, "general_hospital", "alice", 30).unwrap();
    request(&v, "tax_authority", "alice", 30).unwrap();
    v.answer_consent_request(&me, &id, true).unwrap();
    let ask = |agency: &str, purpose: &str, field: &str| {
        let input = vault_core::AccessInput::new(
            "alice",
            purpose,
            &[field.to_owned()],
            Some("consent"),
            None,
            None,
        )
        .unwrap();
        v.access(agency, input).unwrap()
    };
    // Granted: the decision rests on the consent (no record yet, so `no_data`).
    let out = ask("general_hospital", "medical_treatment", "health.blood_type");
    assert_eq!(out.withheld[0].reason, "no_data", "{out:?}");
    // Another purpose of the same agency has no consent.
    let out = ask(
        "general_hospital",
        "health_insurance_billing",
        "health.blood_type",
    );
    assert_ne!(out.withheld[0].reason, "no_data", "{out:?}");
    // The use was recorded on the artefact.
    let consents = v.citizen_consents("alice").unwrap();
    assert_eq!(consents.len(), 1);
    v.shutdown();
}
