//! A sealed vault serves no data (503 everywhere) until the operator unseals it; the
//! receipt key is published beside the log key, and a consent receipt verifies with it.

use reqwest::Method;
use serde_json::json;
use tests::{send, Vault};

#[tokio::test(flavor = "multi_thread")]
async fn sealed_vault_answers_503_until_unsealed() {
    let v = Vault::start_dev().unwrap();
    let op = v.operator_client();
    let police = v.agency_client("national_police");
    let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"});
    let (status, _) = send(police.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 200);

    let (status, body) = send(op.post(v.at("/v1/admin/seal"))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    for (name, req) in [
        ("access", police.post(v.at("/v1/access")).json(&ask)),
        ("records", v.as_citizen(0, Method::GET, "/v1/me/records")),
        (
            "history",
            v.as_citizen(0, Method::GET, "/v1/me/access-history"),
        ),
        ("checkpoint", v.client().get(v.at("/v1/audit/checkpoint"))),
        ("healthz", v.client().get(v.at("/healthz"))),
    ] {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 503, "{name} while sealed: {text}");
        assert!(!text.contains("123 ABC"), "{name} leaked data while sealed");
    }
    let (status, _) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": "not the passphrase at all"})),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "a wrong passphrase does not unseal");
    let (status, body) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(police.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 200, "serving again after unseal: {body}");
    let (status, _) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 409, "unsealing an unsealed vault is a conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consent_receipt_verifies_with_the_published_receipt_key() {
    let v = Vault::start_dev().unwrap();
    let (status, grant) = send(v.as_citizen(0, Method::POST, "/v1/me/consents").json(&json!({
        "agency": "tax_authority", "purpose": "tax_assessment", "fields": ["health.insurer"],
        "expires_at": "2099-01-01T00:00:00Z", "max_uses": 3
    }))).await.unwrap();
    assert_eq!(status, 201, "{grant}");
    let receipt = grant["receipt"].as_str().unwrap();
    let key = v.public_text("/v1/audit/receipt-key").await.unwrap();
    let verifier = audit::NoteVerifier::parse(key.trim()).unwrap();
    let text = verifier.verify(receipt).unwrap();
    assert!(
        text.contains("tax_authority") && text.contains("health.insurer"),
        "{text}"
    );
    // The log's key does not verify a receipt: the two keys are distinct.
    let log_key = v.public_text("/v1/audit/key").await.unwrap();
    assert!(audit::NoteVerifier::parse(log_key.trim())
        .unwrap()
        .verify(receipt)
        .is_err());
}
