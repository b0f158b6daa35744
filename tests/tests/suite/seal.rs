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

/// The leaf certificate the server answers a new TLS handshake with, verified against the
/// vault CA for `localhost`.
async fn served_cert(v: &Vault) -> Vec<u8> {
    let ca = std::fs::read(&v.creds.ca_cert).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        tests::tls_config(&ca, None).unwrap(),
    ));
    let port: u16 = v.url.rsplit(':').next().unwrap().parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls.connect(name, tcp).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_certificate_lives_at_most_366_days() {
    let v = Vault::start_dev().unwrap();
    let cert = vault_core::pki::leaf_validity(&served_cert(&v).await).unwrap();
    let lifespan = cert.not_after.duration_since(cert.not_before).unwrap();
    assert!(
        lifespan <= std::time::Duration::from_secs(366 * 86_400),
        "Mozilla's intermediate profile allows at most 366 days: {lifespan:?}"
    );
}

/// Sealed, the server answers TLS with a sealed-mode certificate (a key made at seal and
/// never stored, named in the seal's entry); the stored key is dropped with the vault and
/// reloaded from the store at unseal.
#[tokio::test(flavor = "multi_thread")]
async fn the_stored_server_key_is_dropped_at_seal_and_reloaded_at_unseal() {
    let v = Vault::start_dev().unwrap();
    let stored = served_cert(&v).await;
    let (status, body) = send(v.operator_client().post(v.at("/v1/admin/seal")))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let sealed_at = body["audit_index"].as_u64().expect("the seal's entry");

    let sealed = served_cert(&v).await;
    assert_ne!(sealed, stored, "sealed, TLS must not use the stored key");
    let (s, m) = (
        vault_core::pki::leaf_validity(&stored).unwrap(),
        vault_core::pki::leaf_validity(&sealed).unwrap(),
    );
    assert_eq!(m.names, s.names);
    assert!(
        m.not_after <= s.not_after,
        "valid no longer than the stored one"
    );
    // The operator unseals over a new connection, which verifies the sealed-mode
    // certificate against the vault CA.
    let (status, body) = send(
        v.operator_client()
            .post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_cert(&v).await, stored, "reloaded at unseal");

    // The seal's entry names the sealed-mode certificate.
    v.audit_size().await.unwrap();
    let (status, body) = send(
        v.client()
            .get(v.at(&format!("/v1/audit/entries?start={sealed_at}&limit=1")))
            .bearer_auth(&v.creds.auditor_token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    use base64::Engine as _;
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(body["entries"][0]["leaf"].as_str().unwrap())
        .unwrap();
    let entry = audit::Entry::decode(&leaf).unwrap();
    assert_eq!(entry.action, "vault.seal");
    assert_eq!(
        entry.initiator,
        Some(format!(
            "sealed-mode certificate {}",
            vault_core::Fingerprint::of(&sealed)
        ))
    );
}

/// The unseal body is read by the route itself (into buffers wiped on drop), not by the
/// JSON extractor: its rejections keep the API's shapes, and none echoes the passphrase.
#[tokio::test(flavor = "multi_thread")]
async fn the_unseal_body_is_refused_in_the_api_shapes() {
    let v = Vault::start_dev().unwrap();
    let op = v.operator_client();
    let (status, body) = send(op.post(v.at("/v1/admin/seal"))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let unseal = v.at("/v1/admin/unseal");
    let secret = "a passphrase that must not be echoed";
    for (req, want_status, want_code) in [
        (
            op.post(&unseal)
                .header("content-type", "application/json")
                .body(format!(r#"{{"passphrase": "{secret}""#)),
            400,
            "invalid_json",
        ),
        (
            op.post(&unseal)
                .header("content-type", "text/plain")
                .body(json!({ "passphrase": secret }).to_string()),
            415,
            "unsupported_media_type",
        ),
        (
            op.post(&unseal)
                .json(&json!({ "passphrase": secret, "extra": 1 })),
            400,
            "invalid_body",
        ),
        (op.post(&unseal).json(&json!({})), 400, "invalid_body"),
        (
            op.post(&unseal)
                .json(&json!({ "passphrase": "x".repeat(70 * 1024) })),
            413,
            "too_large",
        ),
    ] {
        let (status, body) = send(req).await.unwrap();
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"]["code"], want_code, "{body}");
        assert!(!body.to_string().contains(secret), "{body}");
    }
    let (status, body) = send(
        op.post(&unseal)
            .header("content-type", "application/json; charset=utf-8")
            .body(json!({ "passphrase": v.creds.passphrase }).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}
