//! Deferred disclosure of covert access (`docs/audit-log.md`): an access under a statutory
//! rule with `disclosure` is logged at once but kept out of the citizen's history until its
//! deadline passes (the vault's clock moved forward here) or an operator records the lift.

use std::path::Path;

use vault_core::audit;
use vault_core::{AccessInput, DataDir, Plaintext, Vault};

const PASS: &str = "correct horse battery staple deferred";
const DAYS: u64 = 30;

/// The example policies, with `tax_collection_assets` disclosed `disclosure` later.
fn open(root: &Path, disclosure: &str) -> Vault {
    let examples = crate::example_policies();
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for name in ["vocabulary.toml", "break_glass.toml", "agencies.toml"] {
        let mut text = std::fs::read_to_string(examples.join(name)).unwrap();
        if name == "agencies.toml" {
            let rule =
                "reference = \"Tax Collection Act 2017, s. 88(3) (seizure of movable assets)\"\n";
            assert!(text.contains(rule));
            text = text.replace(rule, &format!("{rule}disclosure = {disclosure}\n"));
        }
        std::fs::write(policies.join(name), text).unwrap();
    }
    let dir = DataDir::new(root.join("data"));
    crate::init_with(&dir, PASS, &policies);
    dir.open(PASS).unwrap()
}

fn seed(v: &Vault, citizen: &str) {
    v.write_record(
        "civil_registry",
        None,
        citizen,
        "contact",
        vec![(
            "postal_address".to_owned(),
            Plaintext::from_slice(b"1 Main St"),
        )],
    )
    .unwrap();
}

fn covert_access(v: &Vault, citizen: &str) -> u64 {
    let input = AccessInput::new(
        citizen,
        "tax_collection",
        &["contact.postal_address".to_owned()],
        Some("public_task"),
        Some("asset seizure file 7".to_owned()),
        Some("officer 12".to_owned()),
    )
    .unwrap();
    let out = v.access("tax_authority", input).unwrap();
    assert_eq!(out.released.len(), 1, "released like any other access");
    out.decision_id.trim_start_matches("dec-").parse().unwrap()
}

/// The history's indexes, newest first, and that every proof is against its checkpoint.
fn history(v: &Vault, citizen: &str) -> Vec<u64> {
    let h = v.access_history(citizen, None, 100).unwrap();
    h.entries.iter().map(|e| e.index).collect()
}

#[test]
fn a_deferred_access_appears_in_the_history_only_after_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path(), &format!("{{ after_days = {DAYS} }}"));
    seed(&v, "alice");
    let before = history(&v, "alice");
    let chain_before = v.access_history("alice", None, 100).unwrap().entries;
    let index = covert_access(&v, "alice");

    // Logged, with its deadline, under a tag that is not alice's.
    v.sign_checkpoint_now().unwrap();
    let e = v.audit_entries(index, 1).unwrap().remove(0).entry;
    let Some(audit::Deferral::Deferred {
        disclose_at: Some(at),
    }) = e.deferral
    else {
        panic!("a deferred entry: {e:?}");
    };
    assert_eq!(at, e.time_ms + DAYS * 86_400_000);
    assert_eq!(e.subject_prev, None);
    assert_ne!(e.subject, chain_before[0].entry.subject);

    // Before the deadline: alice's history is unchanged, and nothing is disclosed.
    assert_eq!(history(&v, "alice"), before);
    assert_eq!(v.disclose_due().unwrap(), vec![]);
    assert_eq!(v.deferred_pending().unwrap(), vec![(index, Some(at))]);
    v.dangerous_advance_clock(DAYS * 86_400 - 60);
    assert_eq!(v.disclose_due().unwrap(), vec![]);
    assert_eq!(history(&v, "alice"), before);

    // After it: disclosed once, with its original position, texts and time.
    v.dangerous_advance_clock(120);
    let d = v.disclose_due().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].citizen.as_deref(), d[0].deferred_index, d[0].lifted),
        (Some("alice"), index, false)
    );
    assert_eq!(v.disclose_due().unwrap(), vec![], "disclosed once");
    assert!(v.deferred_pending().unwrap().is_empty());
    let h = v.access_history("alice", None, 100).unwrap();
    let got: Vec<u64> = h.entries.iter().map(|e| e.index).collect();
    let mut want = vec![d[0].disclosure_index, index];
    want.extend(&before);
    assert_eq!(got, want);
    let disclosure = &h.entries[0];
    assert_eq!(disclosure.entry.action, "access.disclose");
    assert_eq!(disclosure.entry.subject, chain_before[0].entry.subject);
    assert_eq!(
        disclosure.entry.subject_prev,
        Some(before[0]),
        "in alice's chain"
    );
    let original = &h.entries[1];
    assert_eq!(original.entry.time_ms, e.time_ms);
    let texts: Vec<&str> = original.texts.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["officer 12", "asset seizure file 7"]);
    let Some(audit::Deferral::Disclosure { of, opening, lift }) = disclosure.entry.deferral else {
        panic!("a disclosure");
    };
    assert_eq!((of, lift), (index, None));
    assert_eq!(
        Some(audit::deferred_tag(
            &disclosure.entry.subject.unwrap(),
            &opening
        )),
        original.entry.subject
    );
    // Every proof holds against the history's checkpoint, and the log verifies.
    let root =
        audit::SignedCheckpoint::parse(&h.checkpoint, &audit::NoteVerifier::parse(&h.key).unwrap())
            .unwrap()
            .checkpoint
            .root;
    for e in &h.entries {
        audit::verify_inclusion(
            &audit::leaf_hash(&e.leaf),
            e.index,
            h.tree_size,
            &e.proof,
            &root,
        )
        .unwrap();
    }
    let export = v.audit_export().unwrap();
    let s = audit::export::verify(export.as_slice(), &h.key, &mut |_, _| {}).unwrap();
    assert_eq!(s.deferred[0].disclosed_by, Some(d[0].disclosure_index));
    assert!(s.overdue().is_empty());
    v.shutdown();
}

#[test]
fn an_operators_lift_discloses_at_once_and_an_unlifted_entry_is_never_due() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path(), "{ until_lifted = true }");
    seed(&v, "bob");
    let before = history(&v, "bob");
    let index = covert_access(&v, "bob");
    v.dangerous_advance_clock(3650 * 86_400);
    assert_eq!(v.disclose_due().unwrap(), vec![]);
    assert_eq!(history(&v, "bob"), before);
    for bad in ["", "  ", &"x".repeat(201)] {
        assert!(v.lift_deferred(index, bad).is_err());
    }
    assert!(
        v.lift_deferred(index - 1, "court order 1").is_err(),
        "not deferred"
    );
    let d = v.lift_deferred(index, "court order 12 AB 345/26").unwrap();
    assert!(d.lifted);
    assert!(
        matches!(
            v.lift_deferred(index, "again"),
            Err(vault_core::VaultError::NotFound { .. })
        ),
        "lifted once: nothing more to disclose"
    );
    let h = v.access_history("bob", None, 100).unwrap();
    assert_eq!(h.entries[0].index, d.disclosure_index);
    assert_eq!(h.entries[1].index, index);
    let lift = &h.entries[0].texts[0];
    assert_eq!(lift.text, "court order 12 AB 345/26");
    let Some(audit::Deferral::Disclosure { lift: Some(c), .. }) = h.entries[0].entry.deferral
    else {
        panic!("a disclosure by lift");
    };
    assert!(c.matches(audit::TextField::Lift, &lift.salt, &lift.text));
    assert_eq!(h.entries[0].entry.actor.kind, audit::ActorKind::Operator);
    v.shutdown();
}

/// An erased citizen's covert access is still disclosed at its deadline, into the erased
/// subject's chain (which nobody can link to the person any more): auditors never see it
/// overdue, and its pending row stops naming the citizen at the erasure.
#[test]
fn a_covert_access_is_disclosed_when_due_after_its_citizens_erasure() {
    use vault_core::storage::{SledStore, Storage, Tree};
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path(), "{ after_days = 1 }");
    seed(&v, "carol");
    let index = covert_access(&v, "carol");
    let erasure = v.erase_citizen("carol", None).unwrap().audit_index;
    assert_eq!(v.deferred_pending().unwrap().len(), 1, "still to disclose");
    assert_eq!(v.disclose_due().unwrap(), vec![], "not before its deadline");
    v.shutdown();
    drop(v);
    {
        // The pending row no longer holds the id (it is encrypted; its length tells: a
        // 32-byte tag and no note in place of the id and the sealed texts).
        let s = SledStore::open(tmp.path().join("data").join("store")).unwrap();
        let mut end = b"deferred.".to_vec();
        end.push(0xff);
        let rows = s.scan(Tree::Meta, b"deferred.", Some(&end), 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1.len(), 1 + 12 + (1 + 1 + 8 + 32 + 4 + 32) + 16);
    }
    let v = DataDir::new(tmp.path().join("data")).open(PASS).unwrap();
    v.dangerous_advance_clock(2 * 86_400);
    let d = v.disclose_due().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].citizen.as_deref(), d[0].deferred_index),
        (None, index)
    );
    assert!(v.deferred_pending().unwrap().is_empty());
    let key = v.log_verifier_key().to_owned();
    let export = v.audit_export().unwrap();
    let s = audit::export::verify(export.as_slice(), &key, &mut |_, _| {}).unwrap();
    assert_eq!(s.deferred.len(), 1);
    assert_eq!(s.deferred[0].disclosed_by, Some(d[0].disclosure_index));
    assert!(s.overdue().is_empty());
    // The disclosure continues the erased subject's chain, after the erasure entry.
    let leaf = |i: u64| v.audit_entries(i, 1).unwrap().remove(0).entry;
    let (disclosure, erased) = (leaf(d[0].disclosure_index), leaf(erasure));
    assert_eq!(disclosure.subject, erased.subject);
    assert_eq!(disclosure.subject_prev, Some(erasure));
    v.shutdown();
}

#[test]
fn a_covert_access_notifies_nobody_until_its_disclosure_does() {
    use std::collections::HashSet;
    use vault_core::{DeliveryOutcome, WebhookTarget};
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path(), "{ until_lifted = true }");
    v.set_webhook(
        &WebhookTarget::Gateway,
        Some("https://gw.example.gov/events"),
    )
    .unwrap();
    seed(&v, "carol");
    let drain = |v: &Vault| {
        let mut out = Vec::new();
        loop {
            let due = v.notifications_due(&HashSet::new(), 8).unwrap();
            if due.is_empty() {
                return out;
            }
            for d in &due {
                out.push(serde_json::from_str::<serde_json::Value>(&d.body).unwrap());
                v.notification_result(d, &DeliveryOutcome::Delivered)
                    .unwrap();
            }
        }
    };
    drain(&v);
    let index = covert_access(&v, "carol");
    assert!(
        drain(&v).is_empty(),
        "the covert access itself notifies nobody"
    );
    // Nor is it in carol's feed.
    use vault_core::PublicLog as _;
    let feed = v.citizen_notifications("carol", None, 50).unwrap();
    assert!(feed.entries.iter().all(|e| e.index != index));
    let d = v.lift_deferred(index, "court order 7").unwrap();
    let sent = drain(&v);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "access.disclosed");
    assert_eq!(sent[0]["data"]["citizen"], "carol");
    assert_eq!(sent[0]["data"]["discloses"], index);
    assert_eq!(sent[0]["data"]["audit_index"], d.disclosure_index);
    // The feed tells of it once, by its disclosure entry.
    let feed = v.citizen_notifications("carol", None, 50).unwrap();
    let indexes: Vec<u64> = feed.entries.iter().map(|e| e.index).collect();
    assert!(
        indexes.contains(&d.disclosure_index) && !indexes.contains(&index),
        "{indexes:?}"
    );
    v.shutdown();
}

/// A covert access releases nothing under the citizen's consent: a field it would have
/// released so is withheld as `covert_access`, the consent's use count does not move (the
/// citizen sees it at once), the statutory fields are released and deferred, and a
/// replay of the log finds the decision as the policy makes it.
#[test]
fn a_covert_access_uses_no_consent_and_replays_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path(), &format!("{{ after_days = {DAYS} }}"));
    seed(&v, "alice");
    v.write_record(
        "civil_registry",
        None,
        "alice",
        "identity",
        vec![("full_name".to_owned(), Plaintext::from_slice(b"Alice"))],
    )
    .unwrap();
    let me = crate::citizen_token(&v, "alice");
    let id = v
        .request_consent(
            "tax_authority",
            vault_core::ConsentRequestInput {
                citizen: "alice".to_owned(),
                purpose: "tax_collection".to_owned(),
                fields: vec!["identity.full_name".to_owned()],
                expires_at: crate::days_ahead(90),
                initiator: None,
            },
        )
        .unwrap()
        .artefact
        .id()
        .to_string();
    v.answer_consent_request(&me, &id, true).unwrap();
    let uses = |v: &Vault| {
        v.citizen_consents("alice")
            .unwrap()
            .iter()
            .find(|c| c.artefact.id().to_string() == id)
            .unwrap()
            .artefact
            .uses()
    };
    assert_eq!(uses(&v), 0);
    let before = history(&v, "alice");

    // No claimed basis: the address under the deferring statute, the name under consent.
    let input = AccessInput::new(
        "alice",
        "tax_collection",
        &[
            "contact.postal_address".to_owned(),
            "identity.full_name".to_owned(),
        ],
        None,
        None,
        Some("officer 12".to_owned()),
    )
    .unwrap();
    let out = v.access("tax_authority", input).unwrap();
    let released: Vec<&str> = out.released.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(released, ["contact.postal_address"]);
    assert_eq!(out.withheld.len(), 1);
    assert_eq!(out.withheld[0].field, "identity.full_name");
    assert_eq!(out.withheld[0].reason, "covert_access");
    assert_eq!(uses(&v), 0, "the consent's count does not tell");
    assert_eq!(history(&v, "alice"), before);
    let index: u64 = out.decision_id.trim_start_matches("dec-").parse().unwrap();
    v.sign_checkpoint_now().unwrap();
    let e = v.audit_entries(index, 1).unwrap().remove(0).entry;
    assert!(matches!(e.deferral, Some(audit::Deferral::Deferred { .. })));
    assert_eq!(e.consent_id, None);

    // The same request without the statute's field is an ordinary consented access.
    let input = AccessInput::new(
        "alice",
        "tax_collection",
        &["identity.full_name".to_owned()],
        None,
        None,
        None,
    )
    .unwrap();
    assert_eq!(v.access("tax_authority", input).unwrap().released.len(), 1);
    assert_eq!(uses(&v), 1);

    v.sign_checkpoint_now().unwrap();
    let export = v.audit_export().unwrap();
    let set = vault_core::ReplaySet::load(&tmp.path().join("policies")).unwrap();
    let (_, report) = vault_core::replay_export(
        export.as_slice(),
        v.log_verifier_key(),
        vault_core::Replay::new([set]),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.decisions, 2);
    v.shutdown();
}
