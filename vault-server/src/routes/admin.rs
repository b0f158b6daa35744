//! Operator routes (operator client certificate made at `init`): the live verbs of
//! `vault-cli`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vault_core::policies::Timestamp;
use vault_core::{CitizenId, ImportRow, KeyKind, TokenRequest};

use super::{Body, Path};
use crate::app::{blocking, App, OperatorCaller};
use crate::error::ApiError;
use crate::views;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolBody {
    agency: String,
    #[serde(default)]
    valid_days: Option<u32>,
}

/// `POST /v1/admin/agencies`: enrols an agency of the policy registry and issues its
/// client certificate and key (returned once, never stored by the vault).
pub(crate) async fn enrol(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<EnrolBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let out = blocking(&app, move |v| v.enrol_agency(&body.agency, body.valid_days)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "agency": out.agency,
            "fingerprint": out.issued.fingerprint().to_hex(),
            "certificate_pem": out.issued.cert_pem,
            "private_key_pem": out.issued.private_key_pem(),
            "ca_certificate_pem": out.ca_pem,
            "audit_index": out.audit_index,
        })),
    ))
}

/// `GET /v1/admin/agencies`
pub(crate) async fn list_agencies(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    let list = blocking(&app, |v| v.list_agencies()).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Ok(Json(json!({
        "agencies": views::enrolments(&list, Timestamp::from_unix_seconds(now))
    })))
}

/// `POST /v1/admin/agencies/{id}/revoke`: refused at once, also on open connections.
pub(crate) async fn revoke_agency(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let index = blocking(&app, move |v| v.revoke_agency(&id)).await?;
    Ok(Json(json!({ "revoked": true, "audit_index": index })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiftBody {
    reference: String,
}

/// `POST /v1/admin/deferred/{index}/lift`: a court or prosecutor lifted the secrecy of the
/// deferred access `index`; it is disclosed to its citizen at once.
pub(crate) async fn lift_deferred(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(index): Path<String>,
    Body(body): Body<LiftBody>,
) -> Result<Json<Value>, ApiError> {
    let index: u64 = index.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_index",
            "the deferred entry's index is a decimal number",
        )
    })?;
    let d = blocking(&app, move |v| v.lift_deferred(index, &body.reference)).await?;
    Ok(Json(json!({
        "deferred_index": d.deferred_index,
        "audit_index": d.disclosure_index,
    })))
}

/// `POST /v1/admin/certificates/{fingerprint}/revoke`: revokes one agency certificate for
/// good, without revoking the agency; refused at once, also on open connections.
pub(crate) async fn revoke_certificate(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(fingerprint): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (agency, index) = blocking(&app, move |v| v.revoke_certificate(&fingerprint)).await?;
    Ok(Json(
        json!({ "revoked": true, "agency": agency, "audit_index": index }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "role", rename_all = "snake_case")]
pub(crate) enum TokenBody {
    Citizen {
        citizen: String,
        #[serde(default)]
        valid_days: Option<u32>,
    },
    Auditor {
        name: String,
        #[serde(default)]
        valid_days: Option<u32>,
    },
}

/// `POST /v1/admin/tokens`: issues a citizen or auditor bearer token (shown once).
pub(crate) async fn issue_token(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<TokenBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = match body {
        TokenBody::Citizen {
            citizen,
            valid_days,
        } => TokenRequest::Citizen {
            citizen,
            valid_days,
        },
        TokenBody::Auditor { name, valid_days } => TokenRequest::Auditor { name, valid_days },
    };
    let out = blocking(&app, move |v| v.issue_token(req)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": out.token.record.id,
            "token": out.token.secret(),
            "expires_at": out.token.record.expires_at.to_string(),
            "audit_index": out.audit_index,
        })),
    ))
}

/// `POST /v1/admin/tokens/{id}/revoke`
pub(crate) async fn revoke_token(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (count, index) = blocking(&app, move |v| v.revoke_token(&id)).await?;
    Ok(Json(json!({ "revoked": count, "audit_index": index })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    /// `kek` (re-wrap every data key) or `dek` (re-encrypt one citizen's fields).
    kind: String,
    #[serde(default)]
    citizen: Option<String>,
}

/// `POST /v1/admin/keys/rotate`
pub(crate) async fn rotate(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<RotateBody>,
) -> Result<Json<Value>, ApiError> {
    let kind = match (body.kind.as_str(), body.citizen) {
        ("kek", _) => KeyKind::Kek,
        ("dek", Some(c)) => KeyKind::Dek(
            CitizenId::new(&c)
                .map_err(|e| ApiError::bad_request("invalid_citizen", e.to_string()))?,
        ),
        ("dek", None) => {
            return Err(ApiError::bad_request(
                "citizen_required",
                "a data key rotation names the citizen",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                "kind is `kek` or `dek`",
            ))
        }
    };
    let out = blocking(&app, move |v| v.rotate_keys(kind)).await?;
    Ok(Json(
        json!({ "rotated": out.rotated, "key_id": out.key_id, "audit_index": out.audit_index }),
    ))
}

/// `POST /v1/admin/checkpoint`: signs a checkpoint of the current log now.
pub(crate) async fn sign_checkpoint(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<impl IntoResponse, ApiError> {
    let note = blocking(&app, |v| v.sign_checkpoint_now()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note))
}

/// `GET /v1/admin/audit/export`: the auditor export file (leaves + signed checkpoint +
/// verifier key), `application/octet-stream`. With a witness policy, the export ends at
/// the latest witnessed checkpoint and carries its cosignatures: the server waits up to
/// [`EXPORT_WITNESS_WAIT`] for one covering the export's own entry, else exports up to
/// the latest witnessed one.
pub(crate) async fn audit_export(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = if app.witnessing().is_some_and(|w| w.required()) {
        let size = blocking(&app, |v| v.begin_audit_export()).await?;
        let deadline = tokio::time::Instant::now() + EXPORT_WITNESS_WAIT;
        while tokio::time::Instant::now() < deadline {
            let witnessed = app
                .serving()?
                .witnessed_checkpoint()
                .and_then(|n| n.lines().nth(1).and_then(|l| l.parse::<u64>().ok()));
            if witnessed.is_some_and(|w| w >= size) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        blocking(&app, |v| v.witnessed_audit_export()).await?
    } else {
        blocking(&app, |v| v.audit_export()).await?
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

/// How long an audit export waits for its entry to be witnessed.
pub(crate) const EXPORT_WITNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/admin/backup`: a consistent backup of the whole store (still encrypted: field
/// values under citizens' keys, keys under the sealed master key).
pub(crate) async fn backup(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = blocking(&app, |v| v.backup()).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseBody {
    citizen: String,
    confirm: bool,
}

/// `POST /v1/admin/erase`: erasure on the citizen's behalf (e.g. a written request).
pub(crate) async fn erase(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<EraseBody>,
) -> Result<Json<Value>, ApiError> {
    if !body.confirm {
        return Err(ApiError::bad_request(
            "confirmation_required",
            "erasure cannot be undone: send \"confirm\": true",
        ));
    }
    let out = blocking(&app, move |v| v.erase_citizen(&body.citizen, None)).await?;
    Ok(Json(
        json!({ "erased": true, "audit_index": out.audit_index }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    /// The agency the legacy data comes from (must be the source of each category).
    agency: String,
    rows: Vec<ImportRowBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRowBody {
    citizen: String,
    category: String,
    fields: std::collections::BTreeMap<String, Value>,
}

/// `POST /v1/admin/import`: all rows in one commit, or none.
pub(crate) async fn import(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<ImportBody>,
) -> Result<Json<Value>, ApiError> {
    let mut rows = Vec::with_capacity(body.rows.len());
    for r in body.rows {
        rows.push(ImportRow {
            citizen: r.citizen,
            category: r.category,
            fields: views::encode_fields(r.fields)?,
        });
    }
    let agency = body.agency;
    let out = blocking(&app, move |v| v.import(&agency, rows)).await?;
    Ok(Json(
        json!({ "imported": out.rows, "audit_index": out.audit_index }),
    ))
}
