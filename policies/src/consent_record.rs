//! A granted consent artefact as an ISO/IEC TS 27560 consent receipt in the W3C DPV
//! profile (`dpv-27560:receipt-eu-gdpr`, holding one `dpv-27560:record-eu-gdpr` record):
//! JSON-LD, derived and unsigned. The signed form stays the C2SP receipt; the record
//! carries the SHA-256 of that signed note's exact text (`dct:source`) so a reader ties
//! the two. Layout and mapping: `docs/api.md`, "Consent records (DPV)".
//!
//! The record says only what the receipt and the artefact's status say, in DPV terms:
//! no free text, no field values. The agency's registered name is the one word taken
//! from the policy set (the profile requires the controller's name).

use serde_json::{json, Map, Value};
use std::sync::OnceLock;

use crate::consent::{ConsentArtefact, ConsentEventKind, ConsentStatus};
use crate::dpv::{self, consent_status_name, gdpr_legal_basis_name, CONTEXT_JSONLD};
use crate::ids::LegalBasis;
use crate::model::{PolicySet, Sensitivity};
use crate::time::Timestamp;

/// The profile the receipt conforms to.
pub const RECEIPT_PROFILE: &str = "https://w3id.org/dpv/schema/dpv-27560#receipt-eu-gdpr";
/// The profile the record inside it conforms to.
pub const RECORD_PROFILE: &str = "https://w3id.org/dpv/schema/dpv-27560#record-eu-gdpr";
/// The media type of a record.
pub const MEDIA_TYPE: &str = "application/ld+json";
/// The IRI prefix of the records' own nodes (consents, agencies).
pub const NODE_PREFIX: &str = "urn:consent-vault:";

/// The record of one granted consent artefact (JSON-LD), with its context inline.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsentRecord(Value);

impl ConsentRecord {
    /// The JSON-LD document.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// The JSON-LD document, owned.
    pub fn into_json(self) -> Value {
        self.0
    }
}

fn context() -> &'static Value {
    static CONTEXT: OnceLock<Value> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        serde_json::from_str::<Value>(CONTEXT_JSONLD)
            .ok()
            .and_then(|v| v.get("@context").cloned())
            // The shipped file is a JSON object with `@context` (a unit test reads it).
            .unwrap_or(Value::Null)
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// RFC 4648 base64url without padding (the `ni` URI of RFC 6920).
fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            s.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    s
}

fn time(t: Timestamp) -> Value {
    json!({ "@value": t.to_string(), "@type": "xsd:dateTime" })
}

fn concept(iri: &str) -> String {
    dpv::compact(iri).unwrap_or_else(|| iri.to_owned())
}

/// The receipt (and record) of `artefact` under `set`, as of `now`; `None` for an
/// artefact never granted (it has no signed receipt). `receipt_sha256` is the SHA-256 of
/// the signed C2SP receipt's exact text.
pub fn consent_record(
    artefact: &ConsentArtefact,
    set: &PolicySet,
    receipt_sha256: &[u8; 32],
    now: Timestamp,
) -> Option<ConsentRecord> {
    artefact.granted_at()?;
    let a = artefact;
    let id = a.id().to_string();
    let agency = format!("{NODE_PREFIX}agency:{}", a.agency());
    let record_id = format!("{NODE_PREFIX}consent:{id}");

    let purpose_def = set.purpose(a.purpose());
    let mut purpose = Map::new();
    purpose.insert("@type".into(), json!("dpv:Purpose"));
    purpose.insert("dct:identifier".into(), json!(a.purpose().as_str()));
    if let Some(iri) = purpose_def.and_then(|p| p.dpv.as_deref()) {
        purpose.insert("skos:broader".into(), json!(concept(iri)));
    }

    let mut special = false;
    let personal_data: Vec<Value> = a
        .fields()
        .iter()
        .map(|f| {
            let sensitive = set
                .field(f)
                .is_some_and(|d| d.sensitivity == Sensitivity::SpecialCategory);
            special |= sensitive;
            let mut pd = Map::new();
            let ty = if sensitive {
                "dpv:SpecialCategoryPersonalData"
            } else {
                "dpv:PersonalData"
            };
            pd.insert("@type".into(), json!(ty));
            pd.insert("dct:identifier".into(), json!(f.as_str()));
            let category = set.categories().find(|c| c.id.as_str() == f.category());
            if let Some(iri) = category.and_then(|c| c.dpv.as_deref()) {
                pd.insert("skos:broader".into(), json!(concept(iri)));
            }
            Value::Object(pd)
        })
        .collect();

    let mut legal_basis = vec![json!(gdpr_legal_basis_name(LegalBasis::Consent))];
    if special {
        // Art. 9(2)(a): explicit consent lifts the ban on special categories.
        legal_basis.push(json!("eu-gdpr:A9-2-a"));
    }

    let storage = match a.data_life() {
        Some(secs) => json!({ "@type": "dpv:TemporalDuration", "rdf:value": format!("PT{secs}S") }),
        None => json!({ "@type": "dpv:IndeterminateDuration" }),
    };

    let rights: Vec<Value> = ["eu-gdpr:A7-3", "eu-gdpr:A15", "eu-gdpr:A17", "eu-gdpr:A20"]
        .iter()
        .map(|r| json!({ "@type": ["dpv:DataSubjectRight", r] }))
        .collect();

    let mut statuses: Vec<Value> = a
        .events()
        .iter()
        .map(|e| {
            let (status, by) = match e.kind {
                ConsentEventKind::Requested => (ConsentStatus::Pending, agency.as_str()),
                ConsentEventKind::Granted => (ConsentStatus::Active, "dpv:DataSubject"),
                ConsentEventKind::Denied => (ConsentStatus::Denied, "dpv:DataSubject"),
                ConsentEventKind::Revoked => (ConsentStatus::Revoked, "dpv:DataSubject"),
                ConsentEventKind::Expired => (ConsentStatus::Expired, ""),
            };
            let mut s = Map::new();
            s.insert("@type".into(), json!(consent_status_name(status)));
            s.insert("dpv:isIndicatedAtTime".into(), time(e.at));
            if !by.is_empty() {
                s.insert("dpv:isIndicatedBy".into(), json!(by));
            }
            if e.kind == ConsentEventKind::Granted {
                let mut d = vec![json!({
                    "@type": "dpv:UntilTimeDuration",
                    "rdf:value": time(a.expires_at()),
                })];
                if let Some(m) = a.max_uses() {
                    d.push(json!({ "@type": "dpv:FixedOccurrencesDuration", "rdf:value": m }));
                }
                s.insert("dpv:hasDuration".into(), Value::Array(d));
            }
            Value::Object(s)
        })
        .collect();
    let recorded_expiry = a
        .events()
        .iter()
        .any(|e| e.kind == ConsentEventKind::Expired);
    if a.status_at(now) == ConsentStatus::Expired && !recorded_expiry {
        statuses.push(json!({
            "@type": consent_status_name(ConsentStatus::Expired),
            "dpv:isIndicatedAtTime": time(a.expires_at()),
        }));
    }

    let controller_name = set
        .agency(a.agency())
        .map_or_else(|| a.agency().as_str().to_owned(), |ag| ag.name.clone());

    let mut record = json!({
        "@id": record_id,
        "@type": "dpv:ConsentRecord",
        "dct:identifier": id,
        "dct:conformsTo": "dpv-27560:record-eu-gdpr",
        "dct:created": time(a.created_at()),
        "dpv:hasDataSubject": {
            "@type": "dpv:DataSubject",
            "dct:identifier": a.citizen().as_str(),
        },
        "dpv:hasDataController": agency,
        "dpv:hasEntity": {
            "@id": agency,
            "@type": ["dpv:DataController", "dpv:Organisation"],
            "dct:identifier": a.agency().as_str(),
            "dpv:hasName": controller_name,
        },
        "dpv:hasJurisdiction": "loc:EU",
        "dpv:hasApplicableLaw": "legal-eu:law-GDPR",
        "dpv:hasLegalBasis": legal_basis,
        "dpv:hasNotice": {
            "@type": "dpv:ConsentNotice",
            "dct:identifier": id,
            "dct:language": "en",
        },
        "dpv:hasProcess": {
            "@type": "dpv:Process",
            "dpv:hasPurpose": Value::Object(purpose),
            "dpv:hasPersonalData": personal_data,
            "dpv:hasDataController": agency,
            "dpv:hasRecipient": agency,
            "dpv:hasLegalBasis": legal_basis,
            "dpv:hasProcessingCondition": {
                "@type": "dpv:ProcessingDuration",
                "dpv:hasDuration": {
                    "@type": "dpv:TemporalDuration",
                    "rdf:value": format!("{}/{}", a.valid_from(), a.expires_at()),
                },
            },
            "dpv:hasStorageCondition": {
                "@type": "dpv:StorageDuration",
                "dpv:hasDuration": storage,
            },
            "dpv:hasConsentControl": { "@type": "dpv:WithdrawConsent" },
            "dpv:hasRight": rights,
            "dpv:hasJurisdiction": "loc:EU",
        },
        "dpv:hasConsentStatus": statuses,
    });
    if let (Some(old), Some(obj)) = (a.supersedes(), record.as_object_mut()) {
        obj.insert(
            "dct:replaces".into(),
            json!(format!("{NODE_PREFIX}consent:{old}")),
        );
    }

    Some(ConsentRecord(json!({
        "@context": context(),
        "@id": format!("{NODE_PREFIX}receipt:{id}"),
        "@type": "dpv:ConsentReceipt",
        "dct:identifier": id,
        "dct:conformsTo": "dpv-27560:receipt-eu-gdpr",
        "dct:created": time(now),
        "dct:source": {
            "@id": format!("ni:///sha-256;{}", base64url(receipt_sha256)),
            "dct:conformsTo": "https://c2sp.org/signed-note",
            "dct:format": "text/plain; charset=utf-8",
            "schema:sha256": hex(receipt_sha256),
        },
        "dpv:hasRecordOfActivity": record,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentTerms;
    use crate::dpv::{lookup, DpvKind};
    use crate::ids::{AgencyId, CitizenRef, ConsentId, FieldName, PurposeCode};

    fn t(s: u64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    const SET: &str = r#"version = 1
[[purpose]]
code = "care"
description = "Treat the patient"
dpv = "dpv:ServiceProvision"
[[category]]
id = "health"
description = "Medical record"
sensitivity = "special_category"
dpv = "pd:HealthRecord"
[[category.field]]
name = "blood_type"
description = "Blood group"
[[category]]
id = "contact"
description = "Contact"
sensitivity = "ordinary"
[[category.field]]
name = "email"
description = "E-mail"
[[agency]]
id = "hospital"
name = "Saint Mary General Hospital"
writes = ["health"]
purposes = ["care"]
"#;

    fn set() -> PolicySet {
        PolicySet::from_sources(&[("set.toml", SET)]).expect("valid set")
    }

    fn artefact() -> ConsentArtefact {
        let terms = ConsentTerms {
            agency: AgencyId::new("hospital").expect("id"),
            purpose: PurposeCode::new("care").expect("id"),
            fields: vec![
                FieldName::new("health.blood_type").expect("id"),
                FieldName::new("contact.email").expect("id"),
            ],
            valid_from: t(1000),
            expires_at: t(2000),
            max_uses: Some(3),
            data_life: Some(3600),
        };
        let id = ConsentId::from_bytes([7; 16]);
        let citizen = CitizenRef::new("c-1").expect("ref");
        let mut a = ConsentArtefact::request(id, citizen, terms, None, t(500)).expect("request");
        a.grant(t(600)).expect("grant");
        a
    }

    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                out.push(k.clone());
                strings(x, out);
            }),
            _ => {}
        }
    }

    #[test]
    fn the_loader_keeps_the_iri_of_a_prefixed_name() {
        let set = set();
        let care = PurposeCode::new("care").expect("id");
        let p = set.purpose(&care).and_then(|p| p.dpv.as_deref());
        assert_eq!(p, Some("https://w3id.org/dpv#ServiceProvision"));
        let health = set.categories().find(|c| c.id.as_str() == "health");
        let c = health.and_then(|c| c.dpv.as_deref());
        assert_eq!(c, Some("https://w3id.org/dpv/pd#HealthRecord"));
    }

    #[test]
    fn the_record_has_the_profile_fields_in_dpv_terms() {
        let r = consent_record(&artefact(), &set(), &[0xab; 32], t(700)).expect("granted");
        let v = r.json();
        assert_eq!(v["@type"], "dpv:ConsentReceipt");
        assert_eq!(v["dct:conformsTo"], "dpv-27560:receipt-eu-gdpr");
        assert_eq!(v["dct:identifier"], "07".repeat(16));
        assert_eq!(v["dct:created"]["@value"], "1970-01-01T00:11:40Z");
        assert_eq!(v["dct:source"]["schema:sha256"], "ab".repeat(32));
        assert!(v["dct:source"]["@id"]
            .as_str()
            .is_some_and(|s| s.starts_with("ni:///sha-256;q6ur")));
        assert!(v["@context"].is_object());
        let rec = &v["dpv:hasRecordOfActivity"];
        assert_eq!(rec["@type"], "dpv:ConsentRecord");
        assert_eq!(rec["dct:conformsTo"], "dpv-27560:record-eu-gdpr");
        assert_eq!(rec["dpv:hasDataSubject"]["dct:identifier"], "c-1");
        assert_eq!(
            rec["dpv:hasEntity"]["dpv:hasName"],
            "Saint Mary General Hospital"
        );
        assert_eq!(
            rec["dpv:hasLegalBasis"],
            json!(["eu-gdpr:A6-1-a", "eu-gdpr:A9-2-a"])
        );
        let p = &rec["dpv:hasProcess"];
        assert_eq!(p["dpv:hasPurpose"]["skos:broader"], "dpv:ServiceProvision");
        assert_eq!(p["dpv:hasPurpose"]["dct:identifier"], "care");
        let pd = p["dpv:hasPersonalData"].as_array().expect("list");
        assert_eq!(pd[0]["@type"], "dpv:SpecialCategoryPersonalData");
        assert_eq!(pd[0]["skos:broader"], "pd:HealthRecord");
        assert_eq!(pd[1]["@type"], "dpv:PersonalData");
        assert!(pd[1].get("skos:broader").is_none());
        assert_eq!(
            p["dpv:hasStorageCondition"]["dpv:hasDuration"]["rdf:value"],
            "PT3600S"
        );
        let st = rec["dpv:hasConsentStatus"].as_array().expect("list");
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["@type"], "dpv:ConsentRequested");
        assert_eq!(
            st[0]["dpv:isIndicatedBy"],
            "urn:consent-vault:agency:hospital"
        );
        assert_eq!(st[1]["@type"], "dpv:ConsentGiven");
        assert_eq!(st[1]["dpv:isIndicatedBy"], "dpv:DataSubject");
        assert_eq!(st[1]["dpv:hasDuration"][1]["rdf:value"], 3);
    }

    #[test]
    fn every_dpv_term_of_the_record_is_in_the_shipped_list() {
        let mut a = artefact();
        a.revoke(t(1500)).expect("revoke");
        let r = consent_record(&a, &set(), &[1; 32], t(1600)).expect("granted");
        let mut all = Vec::new();
        strings(&r.json()["dpv:hasRecordOfActivity"], &mut all);
        strings(&r.json()["@type"], &mut all);
        let mut checked = 0;
        for s in all.iter().filter(|s| {
            ["dpv:", "pd:", "eu-gdpr:", "legal-eu:", "loc:"]
                .iter()
                .any(|p| s.starts_with(p))
        }) {
            let known = [
                DpvKind::Purpose,
                DpvKind::PersonalData,
                DpvKind::LegalBasis,
                DpvKind::ConsentStatus,
                DpvKind::Right,
                DpvKind::Record,
            ]
            .into_iter()
            .any(|k| lookup(k, s).is_some());
            assert!(known, "{s} is not in policies/dpv/concepts.tsv");
            checked += 1;
        }
        assert!(checked > 40, "{checked}");
        assert!(all.iter().any(|s| s == "dpv:ConsentWithdrawn"));
    }

    #[test]
    fn no_record_before_a_grant_and_expiry_is_derived_at_read_time() {
        let terms = ConsentTerms {
            agency: AgencyId::new("hospital").expect("id"),
            purpose: PurposeCode::new("care").expect("id"),
            fields: vec![FieldName::new("contact.email").expect("id")],
            valid_from: t(1000),
            expires_at: t(2000),
            max_uses: None,
            data_life: None,
        };
        let id = ConsentId::from_bytes([8; 16]);
        let citizen = CitizenRef::new("c-1").expect("ref");
        let pending = ConsentArtefact::request(id, citizen, terms, None, t(500)).expect("request");
        assert!(consent_record(&pending, &set(), &[0; 32], t(600)).is_none());
        let mut a = pending;
        a.grant(t(600)).expect("grant");
        let r = consent_record(&a, &set(), &[0; 32], t(2500)).expect("granted");
        let rec = &r.json()["dpv:hasRecordOfActivity"];
        let st = rec["dpv:hasConsentStatus"].as_array().expect("list");
        assert_eq!(
            st.last().map(|s| &s["@type"]),
            Some(&json!("dpv:ConsentExpired"))
        );
        assert_eq!(rec["dpv:hasLegalBasis"], json!(["eu-gdpr:A6-1-a"]));
        assert_eq!(
            rec["dpv:hasProcess"]["dpv:hasStorageCondition"]["dpv:hasDuration"]["@type"],
            "dpv:IndeterminateDuration"
        );
        // Only the receipt's words: no description of the purpose or fields.
        let text = r.json().to_string();
        assert!(!text.contains("Treat the patient") && !text.contains("Blood group"));
    }

    #[test]
    fn base64url_is_rfc_4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
