//! The audit trail as users check it: one entry per data answer, an export that
//! `vault-cli audit verify` accepts, checkpoints and proofs that the audit crate's own
//! verifier accepts, and fail-closed behaviour when the log cannot be written.

use std::process::Command;

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;
use tests::{binary, send, Vault};

crate::pg::on_both_stores!(
    every_data_answer_has_exactly_one_entry_and_the_log_verifies,
    audit_entries_lists_only_what_a_signed_checkpoint_covers,
);

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn hash(s: &serde_json::Value) -> audit::Hash {
    b64(s.as_str().unwrap()).try_into().unwrap()
}

async fn every_data_answer_has_exactly_one_entry_and_the_log_verifies(v: Vault) {
    let police = v.agency_client("national_police");
    let registry = v.agency_client("vehicle_registry");
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("access", police.post(v.at("/v1/access")).json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"}))),
        ("refused access", police.post(v.at("/v1/access")).json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["health.blood_type"]}))),
        ("write", registry.put(v.at("/v1/citizens/EE38001010001/records/vehicle")).json(&json!({"fields": {"inspection_due": "2028-01-01"}}))),
        ("records", v.as_citizen(0, Method::GET, "/v1/me/records")),
        ("export", v.as_citizen(0, Method::GET, "/v1/me/export")),
        ("grant", v.as_citizen(0, Method::POST, "/v1/me/consents").json(&json!({"agency": "tax_authority", "purpose": "tax_assessment", "fields": ["health.insurer"], "expires_at": "2099-01-01T00:00:00Z"}))),
    ];
    for (name, req) in requests {
        let before = v.audit_size().await.unwrap();
        let (status, body) = send(req).await.unwrap();
        assert!(
            status == 200 || status == 201 || status == 403,
            "{name}: {status} {body}"
        );
        let after = v.audit_size().await.unwrap();
        assert_eq!(after - before, 1, "{name} appended exactly one entry");
    }

    // The public checkpoint verifies with the published key, and a served inclusion
    // proof verifies for an auditor-read leaf.
    let key = v.public_text("/v1/audit/key").await.unwrap();
    let note = v.public_text("/v1/audit/checkpoint").await.unwrap();
    let verifier = audit::NoteVerifier::parse(key.trim()).unwrap();
    let cp = audit::SignedCheckpoint::parse(&note, &verifier)
        .unwrap()
        .checkpoint;
    let (status, entries) = send(
        v.client()
            .get(v.at(&format!("/v1/audit/entries?start=0&limit={}", cp.size)))
            .bearer_auth(&v.creds.auditor_token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let entries = entries["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len() as u64, cp.size);
    for e in &entries {
        let leaf = b64(e["leaf"].as_str().unwrap());
        assert_eq!(audit::leaf_hash(&leaf), hash(&e["leaf_hash"]));
        let decoded = audit::Entry::decode(&leaf).unwrap();
        assert_eq!(decoded.index, e["index"].as_u64().unwrap());
        let (_, proof) = send(v.client().get(v.at(&format!(
            "/v1/audit/proof/inclusion?index={}&tree_size={}",
            decoded.index, cp.size
        ))))
        .await
        .unwrap();
        let hashes: Vec<audit::Hash> = proof["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(hash)
            .collect();
        audit::verify_inclusion(
            &audit::leaf_hash(&leaf),
            decoded.index,
            cp.size,
            &hashes,
            &cp.root,
        )
        .unwrap();
    }
    // Consistency from an early size to the checkpoint.
    let early_root = {
        // Recompute the root of the first 3 leaves from the leaves themselves.
        let leaves: Vec<audit::Hash> = entries[..3]
            .iter()
            .map(|e| audit::leaf_hash(&b64(e["leaf"].as_str().unwrap())))
            .collect();
        audit::node_hash(&audit::node_hash(&leaves[0], &leaves[1]), &leaves[2])
    };
    let (_, cons) = send(v.client().get(v.at(&format!(
        "/v1/audit/proof/consistency?from=3&to={}",
        cp.size
    ))))
    .await
    .unwrap();
    let hashes: Vec<audit::Hash> = cons["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    audit::verify_consistency(3, cp.size, &early_root, &cp.root, &hashes).unwrap();

    // The auditor export verifies offline with vault-cli.
    let (export, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = v.dir.path().join("audit.export");
    // And a flipped byte in it is caught.
    let mut bad = export.to_vec();
    let i = bad.len() / 2;
    bad[i] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let out = Command::new(binary("vault-cli"))
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", key.trim()])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a tampered export must fail verification"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_log_cannot_be_written_every_data_route_fails_closed() {
    let v = Vault::start_dev_with(&[("VAULT_DANGEROUS_FAILPOINTS", "1")]).unwrap();
    let size = v.audit_size().await.unwrap();
    let (_, records_before) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    let size = size + 1; // that read is itself logged
    std::fs::write(
        v.data_dir()
            .join(vault_core::engine::DANGEROUS_FAIL_AUDIT_FILE),
        b"",
    )
    .unwrap();

    let police = v.agency_client("national_police");
    let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("statutory access", police.post(v.at("/v1/access")).json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration", "identity.full_name"], "legal_basis": "public_task"}))),
        ("write", v.agency_client("vehicle_registry").put(v.at("/v1/citizens/EE38001010001/records/vehicle")).json(&json!({"fields": {"registration": "666 EVL"}}))),
        ("consent request", v.agency_client("tax_authority").post(v.at("/v1/consent-requests")).json(&json!({"citizen": "EE38001010001", "purpose": "tax_assessment", "fields": ["health.insurer"], "expires_at": crate::days_ahead(90)}))),
        ("records", v.as_citizen(0, Method::GET, "/v1/me/records")),
        ("export", v.as_citizen(0, Method::GET, "/v1/me/export")),
        ("grant", v.as_citizen(0, Method::POST, "/v1/me/consents").json(&json!({"agency": "tax_authority", "purpose": "tax_assessment", "fields": ["health.insurer"], "expires_at": "2099-01-01T00:00:00Z"}))),
        ("erasure", v.as_citizen(0, Method::POST, "/v1/me/erasure").json(&json!({"confirm": true}))),
    ];
    for (name, req) in calls {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(
            status >= 500,
            "{name} answered {status} with the log failing: {text}"
        );
        for s in ["Mari Tamm", "123 ABC", "penicillin"] {
            assert!(!text.contains(s), "{name} leaked {s} while failing");
        }
    }
    std::fs::remove_file(
        v.data_dir()
            .join(vault_core::engine::DANGEROUS_FAIL_AUDIT_FILE),
    )
    .unwrap();
    assert_eq!(
        v.audit_size().await.unwrap(),
        size,
        "nothing was appended while failing"
    );
    let (status, records_after) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    assert_eq!(
        status, 200,
        "the citizen still exists: erasure did not happen"
    );
    assert_eq!(
        records_after, records_before,
        "no state changed while failing"
    );
}

/// The size line of a checkpoint note.
fn note_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

async fn audit_entries_lists_only_what_a_signed_checkpoint_covers(v: Vault) {
    let police = v.agency_client("national_police");
    let list = |index: u64| {
        v.client()
            .get(v.at(&format!("/v1/audit/entries?start={index}&limit=1")))
            .bearer_auth(&v.creds.auditor_token)
    };
    // Right after an operation its entry is applied but (until the signer's next tick)
    // beyond the signed checkpoint: it must not be listed while no checkpoint covers it.
    let mut unsigned = None;
    for _ in 0..20 {
        let (status, body) = send(police.post(v.at("/v1/access")).json(&json!({
            "citizen": "EE38001010001",
            "purpose": "road_safety_enforcement",
            "fields": ["health.blood_type"],
        })))
        .await
        .unwrap();
        assert_eq!(status, 403, "{body}");
        let index = body["audit_index"].as_u64().unwrap();
        let (status, listed) = send(list(index)).await.unwrap();
        assert_eq!(status, 200, "{listed}");
        let listed = listed["entries"].as_array().unwrap().len();
        let signed = note_size(&v.public_text("/v1/audit/checkpoint").await.unwrap());
        if listed > 0 {
            assert!(
                signed > index,
                "entry {index} listed while the signed checkpoint has size {signed}"
            );
        } else if signed <= index {
            unsigned = Some(index);
            break;
        }
    }
    let index = unsigned.expect("an entry was seen beyond the signed checkpoint");
    // Once a checkpoint covers it, it is listed.
    assert!(v.audit_size().await.unwrap() > index);
    let (status, listed) = send(list(index)).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(listed["entries"][0]["index"], index, "{listed}");
}

/// A 32-byte salt from its 64 hex digits.
fn salt_of(hex: &str) -> [u8; 32] {
    assert_eq!(hex.len(), 64, "{hex}");
    std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn free_texts_are_only_commitments_in_the_log_and_go_with_erasure() {
    let v = Vault::start_dev().unwrap();
    let me = v.citizen(0).0.to_owned();
    let (official, justification) = (
        "dr. Saar 91c2",
        "unconscious patient, suspected overdose 7f3a",
    );
    let (clerk, inspector) = ("clerk 55ab", "inspector 3d1e");
    let stranger_text = "nobody knows this person 8e1b";
    let hospital = v.agency_client("general_hospital");
    let (status, body) = send(hospital.post(v.at("/v1/access")).json(&json!({
        "citizen": me, "purpose": "emergency_care", "fields": ["health.blood_type"],
        "legal_basis": "vital_interest", "justification": justification, "initiator": official})))
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let access_index = body["audit_index"].as_u64().unwrap();
    let (status, body) = send(
        v.agency_client("vehicle_registry")
            .put(v.at(&format!("/v1/citizens/{me}/records/vehicle")))
            .json(&json!({"fields": {"inspection_due": "2028-01-01"}, "initiator": clerk})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        v.agency_client("tax_authority")
            .post(v.at("/v1/consent-requests"))
            .json(&json!({
        "citizen": me, "purpose": "tax_assessment", "fields": ["health.blood_type"],
        "expires_at": crate::days_ahead(90), "initiator": inspector})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    // A citizen the vault does not know: the entry has no subject, the text is not kept.
    let (status, body) = send(hospital.post(v.at("/v1/access")).json(&json!({
        "citizen": "EE-NOBODY-1", "purpose": "emergency_care", "fields": ["health.blood_type"],
        "legal_basis": "vital_interest", "justification": stranger_text})))
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    let texts = [official, justification, clerk, inspector, stranger_text];

    // The history returns each text with its salt, and each matches the commitment in
    // the leaf (as an auditor holding the text checks it).
    let (status, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history?limit=200"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{h}");
    let entries = h["entries"].as_array().unwrap();
    let mut seen = Vec::new();
    for e in entries {
        let leaf = audit::Entry::decode(&b64(e["leaf"].as_str().unwrap())).unwrap();
        for t in e["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            let salt = salt_of(t["salt"].as_str().unwrap());
            let (field, commitment) = match t["field"].as_str().unwrap() {
                "official" => (audit::TextField::Official, leaf.official),
                "justification" => (
                    audit::TextField::Justification,
                    leaf.justification_commitment,
                ),
                "lift" => match leaf.deferral {
                    Some(audit::Deferral::Disclosure { lift, .. }) => {
                        (audit::TextField::Lift, lift)
                    }
                    _ => panic!("a lift text on an entry that is no disclosure"),
                },
                other => panic!("unknown field {other}"),
            };
            assert!(
                commitment.unwrap().matches(field, &salt, text),
                "{text} matches its commitment"
            );
            seen.push((e["index"].as_u64().unwrap(), text.to_owned()));
        }
    }
    for t in [official, justification] {
        assert!(
            seen.contains(&(access_index, t.to_owned())),
            "{t}: {seen:?}"
        );
    }
    for t in [clerk, inspector] {
        assert!(seen.iter().any(|(_, s)| s == t), "{t}: {seen:?}");
    }

    // No leaf holds a free text, and none is stored in clear anywhere in the data dir.
    let (export, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in texts {
        assert!(!contains(&export, t), "{t} is in the log");
    }
    for f in files_under(&v.data_dir()) {
        let bytes = std::fs::read(&f).unwrap();
        for t in texts {
            assert!(!contains(&bytes, t), "{t} is in clear in {}", f.display());
        }
    }

    // After erasure the log still verifies end to end and still holds no text.
    let (status, body) = send(
        v.operator_client()
            .post(v.at("/v1/admin/erase"))
            .json(&json!({"citizen": me, "confirm": true})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (export, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in texts {
        assert!(!contains(&export, t), "{t} is in the log after erasure");
    }
}

/// A consent request the policies refuse is logged like every refused attempt: the 403
/// names the entry, the log grew by exactly it, and nothing was stored for the citizen.
#[tokio::test]
async fn a_consent_request_refused_by_policy_is_logged() {
    let v = Vault::start_dev().unwrap();
    let size = v.audit_size().await.unwrap();
    let (status, body) = send(
        v.agency_client("tax_authority")
            .post(v.at("/v1/consent-requests"))
            .json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "expires_at": crate::days_ahead(90), "initiator": "clerk 12"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "consent_request_refused", "{body}");
    assert_eq!(
        body["audit_index"], size,
        "the refusal names its entry: {body}"
    );
    assert_eq!(
        v.audit_size().await.unwrap(),
        size + 1,
        "one entry for the attempt"
    );
    let (_, pending) = send(v.as_citizen(0, Method::GET, "/v1/me/consent-requests"))
        .await
        .unwrap();
    assert_eq!(
        pending,
        json!({"requests": []}),
        "nothing was stored for the citizen"
    );
}

/// A panic inside the store's durability step (a bug in a backend) cannot hang the vault:
/// the request that hit it fails, nothing is released, every later data request answers
/// 503 at once, and `/healthz` says the store failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_commit_fails_closed_and_healthz_says_so() {
    panicking_commit(Vault::start_dev_with(&[("VAULT_DANGEROUS_FAILPOINTS", "1")]).unwrap()).await;
}

/// The same with the store in PostgreSQL: the commit transaction's leader panics.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_commit_on_postgres_fails_closed_and_healthz_says_so() {
    panicking_commit(crate::pg::start_dev_on_postgres_with(&[(
        "VAULT_DANGEROUS_FAILPOINTS",
        "1",
    )]))
    .await;
}

async fn panicking_commit(v: Vault) {
    std::fs::write(
        v.data_dir()
            .join(vault_core::engine::DANGEROUS_PANIC_DURABILITY_FILE),
        b"",
    )
    .unwrap();
    let police = v.agency_client("national_police");
    let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration", "identity.full_name"], "legal_basis": "public_task"});
    for attempt in 0..3 {
        let resp = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            police.post(v.at("/v1/access")).json(&ask).send(),
        )
        .await
        .expect("the request hung after the durability step panicked")
        .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(status >= 500, "attempt {attempt}: {status} {text}");
        if attempt > 0 {
            assert_eq!(status, 503, "attempt {attempt}: {text}");
        }
        for s in ["Mari Tamm", "123 ABC"] {
            assert!(!text.contains(s), "released {s} from a failed store");
        }
    }
    let (status, body) = send(v.client().get(v.at("/healthz"))).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
}
