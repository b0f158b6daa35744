//! `vault-cli audit replay` over a log written by the real server: the decisions replay
//! clean under the vault's own policy set; a consent entry altered (and the export signed
//! again) and a statutory rule missing from the set judged against are reported at the
//! entries they change.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use audit::{Entry, MemStore, NoteSigner};
use reqwest::Method;
use serde_json::{json, Value};
use tests::{binary, send, Vault};

const CITIZEN: &str = "EE38001010001";

async fn access(v: &Vault, agency: &str, ask: Value) -> u64 {
    let (status, body) = send(v.agency_client(agency).post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert!(status == 200 || status == 403, "{status} {body}");
    body["audit_index"].as_u64().expect("an audit index")
}

fn replay(export: &Path, key: &str, args: &[&str]) -> (Output, Value) {
    let out = Command::new(binary("vault-cli"))
        .args(["audit", "replay", "--json", "--export"])
        .arg(export)
        .args(["--key", key])
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

/// The entries each finding names, in order, without repeats.
fn indices(report: &Value) -> Vec<u64> {
    let mut out: Vec<u64> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    out.dedup();
    out
}

fn codes_at(report: &Value, index: u64) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["index"] == index)
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The export's leaves (the format of `docs/audit-log.md`).
fn leaves(file: &[u8]) -> Vec<Vec<u8>> {
    let k = usize::from(u16::from_be_bytes([file[9], file[10]]));
    let at = 11 + k;
    let l = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    let mut at = at + 4 + l;
    let n = u64::from_be_bytes(file[at..at + 8].try_into().unwrap());
    at += 8;
    (0..n)
        .map(|_| {
            let len = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + len;
            file[at - len..at].to_vec()
        })
        .collect()
}

/// The log of `entries` written again (each `prev` follows the new bytes) and signed by a
/// key of the test's own; returns the export and its verifier key.
fn resigned(entries: Vec<Entry>) -> (Vec<u8>, String) {
    let mut store = MemStore::new();
    let mut state = audit::LogState::new();
    store
        .append(&mut state, entries.into_iter().map(|e| e.body).collect())
        .expect("the entries append");
    let signer = NoteSigner::generate("forger.example/consent-log").unwrap();
    let signed = audit::sign_checkpoint(&store, &signer, state.size(), None).unwrap();
    let mut file = Vec::new();
    audit::export::write(&store, &signed, &signer.verifier_key(), &mut file).unwrap();
    (file, signer.verifier_key())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_written_by_the_server_replays_clean_and_each_change_is_found_where_it_acts() {
    let v = Vault::start_dev().unwrap();
    let policies: PathBuf = v.data_dir().join("policies");
    let ask = json!({"citizen": CITIZEN, "purpose": "tax_assessment",
        "fields": ["health.blood_type", "health.allergies"]});

    // A refusal without consent; a consent requested and granted; a release under it; a
    // refusal to another agency; a revocation and the refusal after it.
    let no_consent = access(&v, "tax_authority", ask.clone()).await;
    let (status, req) = send(
        v.agency_client("tax_authority")
            .post(v.at("/v1/consent-requests"))
            .json(&json!({"citizen": CITIZEN, "purpose": "tax_assessment",
                "fields": ["health.blood_type"], "expires_at": crate::days_ahead(90)})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap().to_owned();
    let (status, body) = send(v.as_citizen(
        0,
        Method::POST,
        &format!("/v1/me/consent-requests/{id}/approve"),
    ))
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let consented = access(&v, "tax_authority", ask.clone()).await;
    let other_agency = access(
        &v,
        "social_benefits_office",
        json!({"citizen": CITIZEN, "purpose": "benefit_eligibility",
            "fields": ["health.blood_type"]}),
    )
    .await;
    let (status, body) =
        send(v.as_citizen(0, Method::POST, &format!("/v1/me/consents/{id}/revoke")))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let revoked = access(&v, "tax_authority", ask.clone()).await;
    // Statutory releases: with the basis claimed, and without (statutory rules first).
    let roadside = access(
        &v,
        "national_police",
        json!({"citizen": CITIZEN, "purpose": "road_safety_enforcement",
            "fields": ["vehicle.registration", "identity.full_name", "health.blood_type"],
            "legal_basis": "public_task"}),
    )
    .await;
    let tax_identity = access(
        &v,
        "tax_authority",
        json!({"citizen": CITIZEN, "purpose": "tax_assessment",
            "fields": ["identity.full_name"]}),
    )
    .await;
    // A claimed break-glass basis without a justification.
    let unjustified = access(
        &v,
        "general_hospital",
        json!({"citizen": CITIZEN, "purpose": "emergency_care",
            "fields": ["health.blood_type"], "legal_basis": "vital_interest"}),
    )
    .await;

    let export = v.dir.path().join("replay.export");
    let out = v.cli(&[
        "audit",
        "export",
        "--out",
        export.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key = v.public_text("/v1/audit/key").await.unwrap();
    let key = key.trim();

    // Clean under the vault's own set.
    let (out, report) = replay(&export, key, &["--policies", policies.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["findings"], json!([]), "{report}");
    assert_eq!(report["decisions"], 7, "{report}");
    assert_eq!(report["not_replayable"], 0, "{report}");
    assert_eq!(report["consent_steps"], 3, "{report}");

    // (a) The consent request altered to another field, the log signed again: the release
    // under it and the refusal after its revocation no longer follow.
    let file = std::fs::read(&export).unwrap();
    let mut entries: Vec<Entry> = leaves(&file)
        .iter()
        .map(|l| Entry::decode(l).unwrap())
        .collect();
    let request = entries
        .iter_mut()
        .find(|e| e.action == "consent.request" && e.consent_id.as_deref() == Some(id.as_str()))
        .expect("the consent request's entry");
    request.body.requested = vec!["health.allergies".into()];
    let (forged, forged_key) = resigned(entries);
    let forged_path = v.dir.path().join("forged.export");
    std::fs::write(&forged_path, forged).unwrap();
    let (out, report) = replay(
        &forged_path,
        &forged_key,
        &["--policies", policies.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(6), "{report}");
    assert_eq!(indices(&report), [consented, revoked], "{report}");
    assert_eq!(
        codes_at(&report, consented),
        ["released_not_allowed", "refused_but_allowed"],
        "{report}"
    );
    assert_eq!(
        codes_at(&report, revoked),
        ["reason_differs", "reason_differs"],
        "{report}"
    );
    // The vault's own key does not verify the forged export: nothing is replayed.
    let (out, report) = replay(
        &forged_path,
        key,
        &["--policies", policies.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert_eq!(report["code"], "audit.verify.key_mismatch", "{report}");

    // (b) Judged against a set without the roadside-check rule: the release that rested
    // on it is reported; under --policies that set matches no decision's digest.
    let trimmed = v.dir.path().join("trimmed-policies");
    copy_dir(&policies, &trimmed);
    let agencies = trimmed.join("agencies.toml");
    let text = std::fs::read_to_string(&agencies).unwrap();
    let start = text
        .find("[[agency.statutory]]\nid = \"police_roadside_check\"")
        .expect("the example set has the roadside-check rule");
    let end = start
        + text[start + 1..]
            .find("[[agency")
            .map_or(text.len() - start, |e| e + 1);
    std::fs::write(&agencies, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let (out, report) = replay(&export, key, &["--against", trimmed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6), "{report}");
    assert_eq!(indices(&report), [roadside], "{report}");
    assert_eq!(
        codes_at(&report, roadside),
        ["released_not_allowed", "released_not_allowed"],
        "{report}"
    );
    let (out, report) = replay(&export, key, &["--policies", trimmed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6), "{report}");
    let decisions = [
        no_consent,
        consented,
        other_agency,
        revoked,
        roadside,
        tax_identity,
        unjustified,
    ];
    let found = indices(&report);
    assert!(
        decisions.iter().all(|i| found.contains(i)),
        "every decision names a set not given: {report}"
    );
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["code"] == "unknown_policy_set"));
}
