//! Agency routes (client certificate): write records, request access, ask for consent.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vault_core::{AccessInput, ConsentRequestInput};

use super::{Body, Path};
use crate::app::{blocking, AgencyCaller, App};
use crate::error::ApiError;
use crate::views;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteRecordBody {
    fields: BTreeMap<String, Value>,
    #[serde(default)]
    initiator: Option<String>,
}

/// `PUT /v1/citizens/{citizen}/records/{category}`
pub(crate) async fn put_record(
    State(app): State<App>,
    caller: AgencyCaller,
    Path((citizen, category)): Path<(String, String)>,
    Body(body): Body<WriteRecordBody>,
) -> Result<Json<Value>, ApiError> {
    let fields = views::encode_fields(body.fields)?;
    let agency = caller.agency.clone();
    let (c, cat) = (citizen.clone(), category.clone());
    let out = blocking(&app, move |v| {
        v.write_record(&agency, body.initiator.as_deref(), &c, &cat, fields)
    })
    .await?;
    Ok(Json(json!({
        "citizen": citizen,
        "category": category,
        "version": out.version,
        "audit_index": out.audit_index,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessBody {
    citizen: String,
    purpose: String,
    fields: Vec<String>,
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    initiator: Option<String>,
}

/// `POST /v1/access`
pub(crate) async fn access(
    State(app): State<App>,
    caller: AgencyCaller,
    Body(body): Body<AccessBody>,
) -> Result<Response, ApiError> {
    let agency = caller.agency.clone();
    let input = AccessInput::new(
        &body.citizen,
        &body.purpose,
        &body.fields,
        body.legal_basis.as_deref(),
        body.justification,
        body.initiator,
    )?;
    // The decision (policy evaluation, audit entry applied) is blocking work; the wait for
    // its group-committed fsync is not: no thread is parked per request in flight.
    let vault = app.serving()?;
    let started = std::time::Instant::now();
    let decider = vault.clone();
    let decided = app
        .decider
        .run(move || decider.access_decide(&agency, input))
        .await?;
    let out = match decided {
        Ok(pending) => vault.access_finish(pending).await,
        Err(e) => Err(e),
    };
    app.metrics.engine_call(started.elapsed());
    let out = out.map_err(ApiError::from)?;
    let withheld: Vec<Value> = out
        .withheld
        .iter()
        .map(|w| json!({"field": w.field, "reason": w.reason}))
        .collect();
    if out.released.is_empty() {
        app.metrics.decision("refused");
        let body = json!({
            "error": {
                "code": "refused",
                "message": "no requested field may be released to this agency for this purpose; see `withheld` for each field's reason",
            },
            "decision_id": out.decision_id,
            "withheld": withheld,
            "audit_index": out.audit_index,
        });
        return Ok((StatusCode::FORBIDDEN, Json(body)).into_response());
    }
    app.metrics.decision(if withheld.is_empty() {
        "released"
    } else {
        "partial"
    });
    let released = views::decode_fields(&out.released)?;
    Ok(Json(json!({
        "decision_id": out.decision_id,
        "released": released,
        "withheld": withheld,
        "audit_index": out.audit_index,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentRequestBody {
    citizen: String,
    purpose: String,
    fields: Vec<String>,
    expires_at: String,
    #[serde(default)]
    initiator: Option<String>,
}

/// `POST /v1/consent-requests`
pub(crate) async fn consent_request(
    State(app): State<App>,
    caller: AgencyCaller,
    Body(body): Body<ConsentRequestBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.quotas
        .check(crate::limits::Quota::ConsentRequest, &caller.agency)?;
    let agency = caller.agency.clone();
    let input = ConsentRequestInput {
        citizen: body.citizen,
        purpose: body.purpose,
        fields: body.fields,
        expires_at: body.expires_at,
        initiator: body.initiator,
    };
    let view = blocking(&app, move |v| v.request_consent(&agency, input)).await?;
    Ok((StatusCode::CREATED, Json(views::consent(&view))))
}
