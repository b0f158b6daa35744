//! Who may reach what: the mutual-TLS matrix, broken object-level authorisation (agency
//! B replaying agency A's requests, citizen tokens), and mass assignment.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tests::{client_from_pem, send, Vault};
use vault_core::pki::{Ca, Usage};

const DAY: Duration = Duration::from_secs(86_400);
/// Values seeded by the dev mode (long enough not to occur by chance in base64): none may
/// appear in any refused answer.
const SECRETS: [&str; 6] = [
    "Mari Tamm",
    "123 ABC",
    "\"A+\"",
    "penicillin",
    "Harbour Logistics",
    "Jaan Kask",
];

fn real_ca(v: &Vault) -> Ca {
    let cert = std::fs::read(&v.creds.ca_cert).unwrap();
    let key = std::fs::read(&v.creds.ca_key).unwrap();
    let cert = CertificateDer::pem_slice_iter(&cert)
        .next()
        .unwrap()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
    Ca::from_der(&cert, key.secret_der()).unwrap()
}

fn assert_no_data(body: &str) {
    for s in SECRETS {
        assert!(!body.contains(s), "citizen data {s:?} leaked in {body}");
    }
}

/// Sends an access request with a client presenting `cert`/`key`; returns the status, or
/// `None` when the TLS handshake refused the certificate.
async fn try_access(v: &Vault, cert: &str, key: &str) -> Option<u16> {
    let ca = std::fs::read(&v.creds.ca_cert).unwrap();
    let client = client_from_pem(&ca, Some((cert.as_bytes(), key.as_bytes()))).unwrap();
    let r = client
        .post(v.at("/v1/access"))
        .json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"}))
        .send()
        .await;
    match r {
        Ok(resp) => {
            let status = resp.status().as_u16();
            assert_no_data(&resp.text().await.unwrap_or_default());
            Some(status)
        }
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_matrix_refuses_every_bad_certificate() {
    let v = Vault::start_dev().unwrap();
    let now = SystemTime::now();
    let ca = real_ca(&v);
    let other = Ca::generate("some other CA", now - DAY, 365 * DAY).unwrap();

    // No certificate at all: the TLS layer lets it in (citizens have none), the route
    // refuses with 401.
    let (status, body) = send(v.client().post(v.at("/v1/access")).json(&json!({
        "citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"]
    }))).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_no_data(&body.to_string());

    let cases: Vec<(&str, vault_core::pki::Issued)> = vec![
        (
            "expired",
            ca.issue(
                Usage::Client,
                "national_police",
                &[],
                now - 10 * DAY,
                now - DAY,
            )
            .unwrap(),
        ),
        (
            "not yet valid",
            ca.issue(
                Usage::Client,
                "national_police",
                &[],
                now + DAY,
                now + 10 * DAY,
            )
            .unwrap(),
        ),
        (
            "wrong CA",
            other
                .issue(Usage::Client, "national_police", &[], now - DAY, now + DAY)
                .unwrap(),
        ),
        (
            "server-auth only",
            ca.issue(
                Usage::Server,
                "national_police",
                &["localhost".into()],
                now - DAY,
                now + DAY,
            )
            .unwrap(),
        ),
        (
            "unenrolled (right CA, never enrolled)",
            ca.issue(Usage::Client, "national_police", &[], now - DAY, now + DAY)
                .unwrap(),
        ),
    ];
    for (name, issued) in &cases {
        let outcome = try_access(&v, &issued.cert_pem, issued.private_key_pem()).await;
        assert!(
            matches!(outcome, None | Some(401)),
            "{name}: expected a refused handshake or 401, got {outcome:?}"
        );
    }
    // Self-signed: a CA certificate presented as its own client certificate.
    let self_signed = Ca::generate("national_police", now - DAY, 365 * DAY).unwrap();
    let key_pem = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(&*self_signed.dangerous_private_key_der());
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
    };
    let outcome = try_access(&v, &self_signed.cert_pem(), &key_pem).await;
    assert!(
        matches!(outcome, None | Some(401)),
        "self-signed: {outcome:?}"
    );

    // The enrolled police certificate works, then is refused at once after revocation,
    // also on the connection that is already open.
    let police = v.agency_client("national_police");
    let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"});
    let (status, _) = send(police.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = send(
        v.operator_client()
            .post(v.at("/v1/admin/agencies/national_police/revoke")),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(police.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 401, "revoked agency on its open connection: {body}");
    assert_no_data(&body.to_string());
    // An agency certificate is not the operator's.
    let (status, _) = send(
        v.agency_client("tax_authority")
            .get(v.at("/v1/admin/agencies")),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn agency_b_replaying_agency_a_gets_zero_bytes_of_citizen_data() {
    let v = Vault::start_dev().unwrap();
    let a = v.agency_client("national_police");
    let b = v.agency_client("tax_authority");
    // Everything A does (and may do).
    let mut requests: Vec<(Method, String, Value)> = Vec::new();
    for citizen in ["EE38001010001", "EE49002020002"] {
        requests.push((Method::POST, "/v1/access".into(), json!({"citizen": citizen, "purpose": "road_safety_enforcement", "fields": ["vehicle.registration", "identity.full_name"], "legal_basis": "public_task"})));
        requests.push((Method::POST, "/v1/access".into(), json!({"citizen": citizen, "purpose": "criminal_investigation", "fields": ["identity.full_name", "contact.postal_address"], "legal_basis": "legal_obligation"})));
        requests.push((Method::POST, "/v1/access".into(), json!({"citizen": citizen, "purpose": "identity_verification", "fields": ["identity.full_name"], "legal_basis": "public_task"})));
        requests.push((
            Method::PUT,
            format!("/v1/citizens/{citizen}/records/police"),
            json!({"fields": {"open_case": "none"}}),
        ));
        requests.push((Method::POST, "/v1/consent-requests".into(), json!({"citizen": citizen, "purpose": "criminal_investigation", "fields": ["health.blood_type"], "expires_at": crate::days_ahead(90)})));
    }
    let mut a_got_data = false;
    for (m, path, body) in &requests {
        let (status, out) = send(a.request(m.clone(), v.at(path)).json(body))
            .await
            .unwrap();
        a_got_data |= status == 200
            && out
                .get("released")
                .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()));
    }
    assert!(
        a_got_data,
        "agency A does receive data under its statutory rules"
    );
    for (m, path, body) in &requests {
        let resp = b
            .request(m.clone(), v.at(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_no_data(&text);
        let out: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(released) = out.get("released") {
            assert_eq!(released, &json!({}), "B got data replaying {path}: {text}");
        }
        assert!(
            status == 403 || status == 400,
            "B replaying {m} {path}: {status} {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_citizen_token_only_ever_reaches_its_own_citizen() {
    let v = Vault::start_dev().unwrap();
    for path in [
        "/v1/me/records",
        "/v1/me/records?citizen=EE49002020002",
        "/v1/me/consents",
        "/v1/me/access-history",
        "/v1/me/export",
    ] {
        let (status, body) = send(v.as_citizen(0, Method::GET, path)).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.to_string().contains("Jaan Kask"),
            "{path} showed another citizen's data"
        );
        let (status, body) = send(v.as_citizen(1, Method::GET, path)).await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        let text = body.to_string();
        for s in ["Mari Tamm", "penicillin", "Harbour Logistics"] {
            assert!(
                !text.contains(s),
                "{path} showed citizen 0's {s} to citizen 1"
            );
        }
    }
    // Citizen tokens are not agency or auditor credentials.
    let (status, _) = send(v.as_citizen(0, Method::GET, "/v1/audit/entries"))
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _) = send(
        v.client()
            .get(v.at("/v1/me/records"))
            .bearer_auth("vt1_not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    // Another citizen's consent id is simply not found.
    let (status, req) = send(v.agency_client("tax_authority").post(v.at("/v1/consent-requests")).json(&json!({
        "citizen": "EE49002020002", "purpose": "tax_assessment", "fields": ["health.blood_type"], "expires_at": crate::days_ahead(90)
    }))).await.unwrap();
    assert_eq!(status, 201);
    let id = req["id"].as_str().unwrap();
    let (status, _) = send(v.as_citizen(
        0,
        Method::POST,
        &format!("/v1/me/consent-requests/{id}/approve"),
    ))
    .await
    .unwrap();
    assert_eq!(status, 404, "citizen 0 cannot approve citizen 1's request");
}

#[tokio::test(flavor = "multi_thread")]
async fn mass_assignment_is_refused_and_changes_nothing() {
    let v = Vault::start_dev().unwrap();
    let before = v.audit_size().await.unwrap();
    let cases: Vec<(reqwest::RequestBuilder, &str)> = vec![
        (v.agency_client("national_police").post(v.at("/v1/access")).json(&json!({
            "citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"],
            "legal_basis": "public_task", "released": {"vehicle.registration": "x"}})), "access with released"),
        (v.agency_client("national_police").post(v.at("/v1/access")).json(&json!({
            "citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"],
            "audit_index": 3, "decision_id": "x"})), "access with audit fields"),
        (v.agency_client("vehicle_registry").put(v.at("/v1/citizens/EE38001010001/records/vehicle")).json(&json!({
            "fields": {"registration": "999 ZZZ"}, "version": 99})), "record with version"),
        (v.agency_client("vehicle_registry").put(v.at("/v1/citizens/EE38001010001/records/vehicle")).json(&json!({
            "fields": {"registration": "999 ZZZ"}, "source": "civil_registry"})), "record with source"),
        (v.as_citizen(0, Method::POST, "/v1/me/consents").json(&json!({
            "agency": "tax_authority", "purpose": "tax_assessment", "fields": ["health.blood_type"],
            "expires_at": "2099-01-01T00:00:00Z", "status": "active", "uses": 0})), "consent with status"),
        (v.as_citizen(0, Method::POST, "/v1/me/consents").json(&json!({
            "agency": "tax_authority", "purpose": "tax_assessment", "fields": ["health.blood_type"],
            "expires_at": "2099-01-01T00:00:00Z", "id": "00000000000000000000000000000000"})), "consent with id"),
        (v.agency_client("tax_authority").post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": "EE38001010001", "purpose": "tax_assessment", "fields": ["health.blood_type"],
            "expires_at": crate::days_ahead(90), "status": "active"})), "consent request with status"),
        (v.as_citizen(0, Method::POST, "/v1/me/erasure").json(&json!({"confirm": true, "citizen": "EE49002020002"})), "erasure naming another citizen"),
    ];
    for (req, name) in cases {
        let (status, body) = send(req).await.unwrap();
        assert_eq!(status, 400, "{name}: {body}");
        assert!(
            body["error"]["code"].is_string(),
            "{name}: error shape {body}"
        );
    }
    assert_eq!(
        v.audit_size().await.unwrap(),
        before,
        "refused bodies appended nothing"
    );
    let (_, records) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    let vehicle = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "vehicle")
        .unwrap()
        .clone();
    assert_eq!(vehicle["fields"]["registration"], "123 ABC");
    assert_eq!(vehicle["version"], 1);
}

/// The shape of an answer: its top-level keys and, for an error, its code.
fn answer_shape(status: u16, body: &Value) -> (u16, Value, Vec<String>) {
    let keys = body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    (status, body["error"]["code"].clone(), keys)
}

crate::pg::on_both_stores!(
    an_erased_citizen_answers_like_one_never_known_and_every_attempt_is_logged
);

async fn an_erased_citizen_answers_like_one_never_known_and_every_attempt_is_logged(v: Vault) {
    let (erased, never) = ("EE-ERASED-1", "EE-NEVER-KNOWN-1");
    let police = v.agency_client("national_police");
    let registry = v.agency_client("vehicle_registry");
    let tax = v.agency_client("tax_authority");
    let (status, body) = send(
        registry
            .put(v.at(&format!("/v1/citizens/{erased}/records/vehicle")))
            .json(&json!({"fields": {"registration": "555 ERA"}})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        v.operator_client()
            .post(v.at("/v1/admin/erase"))
            .json(&json!({"citizen": erased, "confirm": true})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    let access = |c: &str| {
        police.post(v.at("/v1/access")).json(&json!({
            "citizen": c, "purpose": "road_safety_enforcement",
            "fields": ["vehicle.registration"], "legal_basis": "public_task"}))
    };
    let foreign_write = |c: &str| {
        police
            .put(v.at(&format!("/v1/citizens/{c}/records/vehicle")))
            .json(&json!({"fields": {"registration": "666 XYZ"}}))
    };
    let consent_request = |c: &str| {
        tax.post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": c, "purpose": "tax_assessment", "fields": ["health.blood_type"],
            "expires_at": crate::days_ahead(90)}))
    };
    // The consent request goes last: for the never-known citizen it creates keys.
    type Probe<'a> = Box<dyn Fn(&str) -> reqwest::RequestBuilder + 'a>;
    let probes: Vec<(&str, Probe<'_>)> = vec![
        ("access", Box::new(access)),
        ("write by another agency", Box::new(foreign_write)),
        ("consent request", Box::new(consent_request)),
    ];
    let auditor = v.client();
    let last_entry = |size: u64| {
        auditor
            .get(v.at(&format!("/v1/audit/entries?start={}&limit=1", size - 1)))
            .bearer_auth(&v.creds.auditor_token)
    };
    for (name, probe) in &probes {
        let mut answers = Vec::new();
        for c in [erased, never] {
            let before = v.audit_size().await.unwrap();
            let (status, body) = send(probe(c)).await.unwrap();
            let after = v.audit_size().await.unwrap();
            assert_eq!(after, before + 1, "{name} for {c}: one entry ({body})");
            assert!(!body.to_string().contains("erased"), "{name}: {body}");
            if c == erased {
                let (_, entry) = send(last_entry(after)).await.unwrap();
                assert_eq!(
                    entry["entries"][0]["entry"]["subject"],
                    Value::Null,
                    "{name}: no subject tag, no key re-created"
                );
            }
            answers.push((answer_shape(status, &body), body));
        }
        assert_eq!(answers[0].0, answers[1].0, "{name}: {answers:?}");
        if *name == "access" {
            assert_eq!(answers[0].1["withheld"], answers[1].1["withheld"]);
            assert_eq!(answers[0].0 .0, 403);
        }
    }

    // The category's source writing for the erased citizen: refused like a foreign write,
    // logged, and no key is re-created (the entry has no subject tag).
    let before = v.audit_size().await.unwrap();
    let (status, body) = send(
        registry
            .put(v.at(&format!("/v1/citizens/{erased}/records/vehicle")))
            .json(&json!({"fields": {"registration": "777 NEW"}})),
    )
    .await
    .unwrap();
    let after = v.audit_size().await.unwrap();
    assert_eq!(after, before + 1, "the refused write is logged: {body}");
    let (status2, body2) = send(foreign_write(never)).await.unwrap();
    assert_eq!(
        answer_shape(status, &body),
        answer_shape(status2, &body2),
        "{body} / {body2}"
    );
    let (_, entry) = send(last_entry(after)).await.unwrap();
    assert_eq!(entry["entries"][0]["entry"]["decision"], "refused");
    assert_eq!(entry["entries"][0]["entry"]["subject"], Value::Null);
    // Still nothing to release: no record was re-created.
    let (status, body) = send(access(erased)).await.unwrap();
    assert_eq!(status, 403, "{body}");
}

/// Every certificate the vault issues (its CA, the server's, the operator's, each
/// agency's) is canonical DER: Python's `cryptography`, a strict DER parser built on
/// rust-asn1 that refuses an encoded DEFAULT value, reads every extension of each.
#[tokio::test]
async fn every_issued_certificate_is_strict_der() {
    let v = Vault::start_dev().unwrap();
    let port = v.url.rsplit(':').next().unwrap().to_owned();
    let mut files = vec![v.creds.ca_cert.clone(), v.creds.operator.cert.clone()];
    files.extend(v.creds.agencies.iter().map(|a| a.cert.clone()));
    let script = r#"
import ssl, sys
from cryptography import x509
pems = [open(p, "rb").read() for p in sys.argv[2:]]
pems.append(ssl.get_server_certificate(("localhost", int(sys.argv[1]))).encode())
for pem in pems:
    cert = x509.load_pem_x509_certificate(pem)
    list(cert.extensions)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    print(cert.subject.rfc4514_string(), "CA" if bc.ca else "end entity")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&port)
        .args(&files)
        .output()
        .expect("python3 runs (scripts/test installs the cryptography package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a certificate is not strict DER: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), files.len() + 1, "{stdout}");
    assert_eq!(
        stdout.matches("end entity").count(),
        files.len(),
        "{stdout}"
    );
}
