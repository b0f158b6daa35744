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

/// `POST /v1/admin/seal`
pub(crate) async fn seal(State(app): State<App>, _op: OperatorCaller) -> Json<Value> {
    let was_unsealed = app.seal();
    Json(json!({ "sealed": true, "was_unsealed": was_unsealed }))
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
    tokio::task::spawn_blocking(move || app2.unseal(&passphrase))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(json!({ "sealed": false })))
}
