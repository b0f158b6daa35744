//! Sealing and unsealing a running vault (operator certificate). Sealed, every data route
//! answers 503 and the keys are dropped; unsealing reopens the vault with the passphrase.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::Body;
use crate::app::{App, OperatorCaller};
use crate::error::ApiError;

/// `POST /v1/admin/seal`: `audit_index` is the seal's entry (null when the vault was
/// sealed already, or when the entry could not be written: the vault is sealed anyway).
pub(crate) async fn seal(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    let app2 = app.clone();
    let entry = tokio::task::spawn_blocking(move || app2.seal())
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let index = entry.as_ref().and_then(|e| e.as_ref().ok().copied());
    Ok(Json(
        json!({ "sealed": true, "was_unsealed": entry.is_some(), "audit_index": index }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnsealBody {
    passphrase: String,
}

/// `POST /v1/admin/unseal`
pub(crate) async fn unseal(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<UnsealBody>,
) -> Result<Json<Value>, ApiError> {
    let passphrase = Zeroizing::new(body.passphrase);
    let app2 = app.clone();
    let index = tokio::task::spawn_blocking(move || app2.unseal(&passphrase))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(json!({ "sealed": false, "audit_index": index })))
}
