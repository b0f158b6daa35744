//! The three users' jobs over real TLS: consent, statutory access, break-glass, and the
//! citizen's history showing each of them.

use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, Vault};

crate::pg::on_both_stores!(
    consent_lifecycle_releases_exactly_the_consented_fields,
    statutory_rule_releases_without_consent_and_history_names_the_law,
    break_glass_needs_a_justification_and_is_flagged_at_once,
    agency_writes_only_its_own_categories_and_the_citizen_sees_the_new_value,
);

const CITIZEN: &str = "EE38001010001";

fn history_entries(h: &Value) -> Vec<Value> {
    h["entries"].as_array().cloned().unwrap_or_default()
}

async fn consent_lifecycle_releases_exactly_the_consented_fields(v: Vault) {
    let tax = v.agency_client("tax_authority");
    let ask = json!({"citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type", "health.allergies"]});

    // No consent: nothing, 403 with a reason per field, and the attempt is in the history.
    let (status, body) = send(tax.post(v.at("/v1/access")).json(&ask)).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(
        body.get("released").is_none(),
        "a refusal carries no data: {body}"
    );
    let reasons: Vec<&str> = body["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["no_consent", "no_consent"]);
    let refused_index = body["audit_index"].as_u64().unwrap();
    let (_, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history"))
        .await
        .unwrap();
    let seen = history_entries(&h)
        .into_iter()
        .find(|e| e["index"].as_u64() == Some(refused_index))
        .expect("refused attempt in history");
    assert_eq!(seen["entry"]["decision"], "refused");
    assert_eq!(seen["entry"]["actor"]["id"], "tax_authority");

    // The agency asks for consent to one field; the citizen approves.
    let (status, req) = send(tax.post(v.at("/v1/consent-requests")).json(&json!({
        "citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"],
        "expires_at": crate::days_ahead(90)
    })))
    .await
    .unwrap();
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["status"], "pending");
    let id = req["id"].as_str().unwrap().to_owned();
    let (_, pending) = send(v.as_citizen(0, Method::GET, "/v1/me/consent-requests"))
        .await
        .unwrap();
    assert!(pending["requests"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id.as_str()));
    let (status, approved) = send(v.as_citizen(
        0,
        Method::POST,
        &format!("/v1/me/consent-requests/{id}/approve"),
    ))
    .await
    .unwrap();
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "active");
    assert!(
        approved["receipt"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} "),
        "a signed receipt comes with the grant"
    );

    // Exactly the consented field; the other stays withheld.
    let (status, body) = send(tax.post(v.at("/v1/access")).json(&ask)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"], json!({"health.blood_type": "A+"}));
    assert_eq!(
        body["withheld"],
        json!([{"field": "health.allergies", "reason": "field_not_covered"}])
    );

    // Another agency gets nothing from this consent.
    let (status, body) = send(v.agency_client("social_benefits_office").post(v.at("/v1/access")).json(&json!({
        "citizen": CITIZEN, "purpose": "benefit_eligibility", "fields": ["health.blood_type"]
    }))).await.unwrap();
    assert_eq!(status, 403, "{body}");

    // Revoked: nothing from the next request on.
    let (status, revoked) =
        send(v.as_citizen(0, Method::POST, &format!("/v1/me/consents/{id}/revoke")))
            .await
            .unwrap();
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let (status, body) = send(tax.post(v.at("/v1/access")).json(&ask)).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["withheld"][0]["reason"], "consent_revoked");
}

async fn statutory_rule_releases_without_consent_and_history_names_the_law(v: Vault) {
    let (status, body) = send(
        v.agency_client("national_police")
            .post(v.at("/v1/access"))
            .json(&json!({
                "citizen": CITIZEN, "purpose": "road_safety_enforcement",
                "fields": ["vehicle.registration", "identity.full_name", "health.blood_type"],
                "legal_basis": "public_task", "initiator": "officer 4711"
            })),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["released"],
        json!({"vehicle.registration": "123 ABC", "identity.full_name": "Mari Tamm"})
    );
    assert_eq!(body["withheld"][0]["field"], "health.blood_type");
    let index = body["audit_index"].as_u64().unwrap();
    let (_, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history"))
        .await
        .unwrap();
    let e = history_entries(&h)
        .into_iter()
        .find(|e| e["index"].as_u64() == Some(index))
        .unwrap();
    assert_eq!(e["entry"]["legal_basis"], "public_task");
    assert!(
        e["entry"]["legal_reference"]
            .as_str()
            .unwrap()
            .contains("Road Traffic Act"),
        "{e}"
    );
    // The official is a caller's text: the leaf holds its commitment, the history the
    // text beside it.
    assert_eq!(e["entry"]["initiator"], Value::Null, "{e}");
    assert!(e["entry"]["official"].is_string(), "{e}");
    let official = e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["field"] == "official")
        .unwrap();
    assert_eq!(official["text"], "officer 4711");
    assert_eq!(
        e["entry"]["released"],
        json!(["vehicle.registration", "identity.full_name"])
    );
}

async fn break_glass_needs_a_justification_and_is_flagged_at_once(v: Vault) {
    let hospital = v.agency_client("general_hospital");
    let mut ask = json!({
        "citizen": CITIZEN, "purpose": "emergency_care", "fields": ["health.blood_type", "health.allergies"],
        "legal_basis": "vital_interest", "initiator": "dr. Saar"
    });
    let (status, body) = send(hospital.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["withheld"][0]["reason"], "justification_missing");

    ask["justification"] =
        json!("unconscious patient in the emergency room, blood transfusion needed");
    let (status, body) = send(hospital.post(v.at("/v1/access")).json(&ask))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"]["health.blood_type"], "A+");
    let index = body["audit_index"].as_u64().unwrap();

    // At once: the very next history read has it, flagged for review, with the reason.
    let (_, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history"))
        .await
        .unwrap();
    let e = history_entries(&h)
        .into_iter()
        .find(|e| e["index"].as_u64() == Some(index))
        .unwrap();
    assert_eq!(e["entry"]["review"], true);
    assert_eq!(e["entry"]["legal_basis"], "vital_interest");
    // The leaf carries only a commitment to the justification; the history sends the
    // text with its salt beside it.
    assert_eq!(e["entry"]["justification"], Value::Null);
    assert!(e["entry"]["justification_commitment"].is_string());
    let texts = e["texts"].as_array().unwrap();
    let j = texts
        .iter()
        .find(|t| t["field"] == "justification")
        .unwrap();
    assert!(j["text"].as_str().unwrap().contains("unconscious"));
    assert_eq!(j["salt"].as_str().unwrap().len(), 64);
}

async fn agency_writes_only_its_own_categories_and_the_citizen_sees_the_new_value(v: Vault) {
    let (status, body) = send(
        v.agency_client("vehicle_registry")
            .put(v.at(&format!("/v1/citizens/{CITIZEN}/records/vehicle")))
            .json(&json!({"fields": {"inspection_due": "2027-05-01"}})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    let (status, body) = send(
        v.agency_client("vehicle_registry")
            .put(v.at(&format!("/v1/citizens/{CITIZEN}/records/health")))
            .json(&json!({"fields": {"blood_type": "0-"}})),
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    let (_, records) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    let recs = records["records"].as_array().unwrap();
    let vehicle = recs.iter().find(|r| r["category"] == "vehicle").unwrap();
    assert_eq!(vehicle["fields"]["inspection_due"], "2027-05-01");
    let health = recs.iter().find(|r| r["category"] == "health").unwrap();
    assert_eq!(
        health["fields"]["blood_type"], "A+",
        "the refused write changed nothing"
    );
}
