//! JSON renderings of the engine's views, and the translation of JSON field values to
//! the bytes the vault seals (each value's own JSON text, so any JSON value round-trips).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use vault_core::audit::Entry;
use vault_core::policies::ConsentRecord;
use vault_core::policies::Timestamp;
use vault_core::{CertState, Enrolment};
use vault_core::{CitizenExport, ConsentView, History, HistoryEntry, Plaintext, RecordView};

use crate::error::ApiError;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Field name -> JSON text of the value (the engine's write rule checks names, counts
/// and sizes).
pub(crate) fn encode_fields(
    fields: BTreeMap<String, Value>,
) -> Result<Vec<(String, Plaintext)>, ApiError> {
    fields
        .into_iter()
        .map(|(name, value)| {
            let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::internal(&e))?;
            Ok((name, Plaintext::new(bytes)))
        })
        .collect()
}

fn decode_value(bytes: &Plaintext) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes.expose_bytes()).map_err(|_| {
        ApiError::internal(&"a stored field value is not JSON (written by another program?)")
    })
}

/// Released fields as a JSON object `{"category.field": value}`.
pub(crate) fn decode_fields(fields: &[(String, Plaintext)]) -> Result<Value, ApiError> {
    let mut map = Map::new();
    for (name, bytes) in fields {
        map.insert(name.clone(), decode_value(bytes)?);
    }
    Ok(Value::Object(map))
}

/// A citizen's records.
pub(crate) fn records(records: &[RecordView]) -> Result<Vec<Value>, ApiError> {
    records
        .iter()
        .map(|r| {
            let mut fields = Map::new();
            for (name, bytes) in &r.fields {
                fields.insert(name.clone(), decode_value(bytes)?);
            }
            Ok(json!({
                "category": r.category,
                "version": r.version,
                "updated_at": r.updated_at.to_string(),
                "source": r.source,
                "source_name": r.source_name,
                "fields": fields,
            }))
        })
        .collect()
}

/// A consent artefact with the names people read.
pub(crate) fn consent(v: &ConsentView) -> Value {
    let a = &v.artefact;
    json!({
        "id": a.id().to_string(),
        "agency": a.agency().as_str(),
        "agency_name": v.agency_name,
        "purpose": a.purpose().as_str(),
        "purpose_description": v.purpose_description,
        "fields": a.fields().iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        "status": v.status,
        "created_at": a.created_at().to_string(),
        "valid_from": a.valid_from().to_string(),
        "expires_at": a.expires_at().to_string(),
        "granted_at": a.granted_at().map(|t| t.to_string()),
        "revoked_at": a.revoked_at().map(|t| t.to_string()),
        "max_uses": a.max_uses(),
        "uses": a.uses(),
        "data_life_seconds": a.data_life(),
        "receipt": v.receipt,
    })
}

/// A consent in the citizen's export: [`consent`] plus its ISO/IEC TS 27560 record in the
/// W3C DPV profile (`dpv_record`, JSON-LD; null for a consent never granted).
pub(crate) fn exported_consent((v, record): &(ConsentView, Option<ConsentRecord>)) -> Value {
    let mut c = consent(v);
    if let Some(o) = c.as_object_mut() {
        o.insert(
            "dpv_record".into(),
            record.as_ref().map_or(Value::Null, |r| r.json().clone()),
        );
    }
    c
}

/// One decoded audit entry. Subject tags are shown as hex; citizens never appear.
pub(crate) fn entry(e: &Entry) -> Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    json!({
        "index": e.index,
        "time_ms": e.time_ms,
        "actor": { "kind": e.actor.kind.as_str(), "id": e.actor.id },
        "initiator": e.initiator,
        "action": e.action,
        "processing": e.processing,
        "purpose": e.purpose,
        "requested": e.requested,
        "released": e.released,
        "withheld": e.withheld.iter().map(|w| json!({"field": w.field, "reason": w.reason})).collect::<Vec<_>>(),
        "legal_basis": e.legal_basis,
        "legal_reference": e.legal_reference,
        "consent_id": e.consent_id,
        "decision": e.decision,
        "justification": e.justification,
        "justification_commitment": e.justification_commitment.as_ref().map(|c| hex(&c.0)),
        "official": e.official.as_ref().map(|c| hex(&c.0)),
        "review": e.review,
        "subject": e.subject.as_ref().map(|t| hex(&t.0)),
        "subject_prev": e.subject_prev,
        "prev": b64(&e.prev),
    })
}

/// The citizen's access history with proofs.
pub(crate) fn history(h: &History) -> Value {
    json!({
        "checkpoint": h.checkpoint,
        "key": h.key,
        "tree_size": h.tree_size,
        "entries": h.entries.iter().map(history_entry).collect::<Vec<_>>(),
        "next": h.next,
    })
}

/// One history entry with its proof.
pub(crate) fn history_entry(e: &HistoryEntry) -> Value {
    json!({
        "index": e.index,
        "leaf": b64(&e.leaf),
        "proof": e.proof.iter().map(|p| b64(p)).collect::<Vec<_>>(),
        "entry": entry(&e.entry),
        "texts": e.texts.iter().map(|t| json!({
            "field": t.field.as_str(),
            "text": t.text,
            "salt": t.salt.iter().map(|x| format!("{x:02x}")).collect::<String>(),
        })).collect::<Vec<_>>(),
    })
}

/// The text of everything about a citizen around the history's entries: what comes
/// before the first entry and what follows the last. The whole is one JSON object with
/// `access_history` shaped like a history page (`next` null); the entries between are
/// [`history_entry`] values separated by commas.
pub(crate) fn export_frame(x: &CitizenExport) -> Result<(String, &'static str), ApiError> {
    let text = |v: Value| serde_json::to_string(&v).map_err(|e| ApiError::internal(&e));
    let head = format!(
        "{{\"format\":\"consent-vault-citizen-export/v1\",\"citizen\":{},\"exported_at\":{},\"records\":{},\"consents\":{},\"access_history\":{{\"checkpoint\":{},\"key\":{},\"tree_size\":{},\"entries\":[",
        text(json!(x.citizen))?,
        text(json!(x.exported_at.to_string()))?,
        text(records(&x.records)?.into())?,
        text(x.consents.iter().map(exported_consent).collect::<Vec<_>>().into())?,
        text(json!(x.checkpoint))?,
        text(json!(x.key))?,
        x.tree_size,
    );
    Ok((head, "],\"next\":null}}"))
}

/// Enrolments for the operator.
pub(crate) fn enrolments(list: &[Enrolment], now: Timestamp) -> Vec<Value> {
    list.iter()
        .map(|e| {
            json!({
                "agency": e.agency,
                "revoked_at": e.revoked_at.map(|t| t.to_string()),
                "certificates": e.certs.iter().map(|c| json!({
                    "fingerprint": c.fingerprint.to_hex(),
                    "issued_at": c.issued_at.to_string(),
                    "not_after": c.not_after.to_string(),
                    "state": match c.state_at(now) {
                        CertState::Active => "active",
                        CertState::Revoked(_) => "revoked",
                        CertState::Expired(_) => "expired",
                    },
                    "revoked_at": c.revoked_at.map(|t| t.to_string()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}
