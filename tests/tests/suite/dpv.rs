//! Consent records in the standard form (issue 16): a granted consent's ISO/IEC TS 27560
//! record in the W3C DPV profile, over real TLS, checked by an independent JSON-LD
//! processor (PyLD, `dpv_check.py` beside this file) with no network, and tied to the
//! signed C2SP receipt by its hash; the same records in the citizen's export.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, Vault};

/// A Python 3 that has PyLD: the first of `python3` and Debian's `/usr/bin/python3`
/// (where `apt-get install python3-pyld` puts it; `scripts/test` installs it).
fn python_with_pyld() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import pyld"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("a python3 with PyLD: apt-get install python3-pyld (scripts/test does)")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs the independent check on `record` and the signed `receipt`; panics with its
/// verdict unless it passes.
fn independent_check(record: &Value, receipt: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("record.jsonld");
    let rcpt = dir.path().join("receipt.txt");
    std::fs::write(&rec, serde_json::to_vec(record).unwrap()).unwrap();
    std::fs::write(&rcpt, receipt).unwrap();
    let out = Command::new(python_with_pyld())
        .arg(repo("tests/tests/suite/dpv_check.py"))
        .arg(&rec)
        .arg(repo("policies/dpv/context.jsonld"))
        .arg(&rcpt)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim() == "ok",
        "dpv_check.py: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET /v1/me/consents/{id}/record` as citizen `i`: status, content type, body.
async fn record(v: &Vault, i: usize, id: &str) -> (u16, String, Value) {
    let resp = v
        .as_citizen(i, Method::GET, &format!("/v1/me/consents/{id}/record"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}

fn status_types(rec: &Value) -> Vec<String> {
    rec["dpv:hasRecordOfActivity"]["dpv:hasConsentStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["@type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_consent_is_a_dpv_record_that_a_json_ld_processor_reads() {
    let v = Vault::start_dev().unwrap();
    let (_, granted) = send(
        v.as_citizen(0, Method::POST, "/v1/me/consents")
            .json(&json!({
                "agency": "general_hospital", "purpose": "medical_treatment",
                "fields": ["health.blood_type", "identity.full_name"],
                "expires_at": crate::days_ahead(30), "max_uses": 5, "data_life_days": 7
            })),
    )
    .await
    .unwrap();
    let id = granted["id"].as_str().expect("granted").to_owned();
    let receipt = granted["receipt"]
        .as_str()
        .expect("signed receipt")
        .to_owned();

    let (status, ct, rec) = record(&v, 0, &id).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(ct, "application/ld+json");
    independent_check(&rec, &receipt);
    let r = &rec["dpv:hasRecordOfActivity"];
    let p = &r["dpv:hasProcess"];
    assert_eq!(p["dpv:hasPurpose"]["dct:identifier"], "medical_treatment");
    assert_eq!(p["dpv:hasPurpose"]["skos:broader"], "dpv:ServiceProvision");
    assert_eq!(
        p["dpv:hasPersonalData"][0]["skos:broader"],
        "pd:HealthRecord"
    );
    assert_eq!(
        r["dpv:hasLegalBasis"],
        json!(["eu-gdpr:A6-1-a", "eu-gdpr:A9-2-a"])
    );
    assert_eq!(status_types(&rec), ["dpv:ConsentGiven"]);
    // No record values and no free text: only what the receipt says.
    let text = rec.to_string();
    assert!(!text.contains("Treat a patient"), "{text}");

    // Revoked: the record shows the withdrawal, and still checks.
    let (s, _) = send(v.as_citizen(0, Method::POST, &format!("/v1/me/consents/{id}/revoke")))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let (_, _, revoked) = record(&v, 0, &id).await;
    assert_eq!(
        status_types(&revoked),
        ["dpv:ConsentGiven", "dpv:ConsentWithdrawn"]
    );
    independent_check(&revoked, &receipt);

    // A pending request has no receipt and so no record; nor has another citizen's
    // consent, or an id that is none: each the same 404.
    let hospital = v.agency_client("general_hospital");
    let (s, req) = send(hospital.post(v.at("/v1/consent-requests")).json(&json!({
        "citizen": v.citizen(0).0, "purpose": "medical_treatment",
        "fields": ["health.allergies"], "expires_at": crate::days_ahead(10)
    })))
    .await
    .unwrap();
    assert_eq!(s, 201, "{req}");
    let pending = req["id"].as_str().unwrap();
    for (who, asked) in [(0, pending), (1, id.as_str()), (0, "not-an-id")] {
        let (s, _, body) = record(&v, who, asked).await;
        assert_eq!(s, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }

    // The export carries every granted consent's record beside its receipt.
    let resp = v
        .as_citizen(0, Method::GET, "/v1/me/export")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let export: Value = resp.json().await.unwrap();
    let consents = export["consents"].as_array().unwrap();
    let mine = consents.iter().find(|c| c["id"] == id.as_str()).unwrap();
    independent_check(&mine["dpv_record"], &receipt);
    let mut a = mine["dpv_record"].clone();
    let mut b = revoked.clone();
    for x in [&mut a, &mut b] {
        x.as_object_mut().unwrap().remove("dct:created");
    }
    assert_eq!(a, b, "the export holds the route's record");
    assert!(consents
        .iter()
        .filter(|c| c["receipt"].is_null())
        .all(|c| c["dpv_record"].is_null()));
}
