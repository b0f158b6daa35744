//! Operations routes: health, Prometheus metrics, the OpenAPI document, and the optional
//! bare echo route that benchmarks use as the TLS + HTTP baseline.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::App;

/// `GET /healthz`: 200 when unsealed and serving; 503 when sealed, or when the store failed.
pub(crate) async fn healthz(State(app): State<App>) -> impl IntoResponse {
    match app.vault() {
        Some(v) if v.is_available() => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "message": "the store failed and refuses every operation; nothing is released: \
                            read the server log, then restart the server (it recovers the \
                            store from its write-ahead log)",
            })),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "sealed"})),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let vault = app.vault();
    let audit_size = vault.as_ref().map(|v| v.audit_size());
    let signed = vault.as_ref().map(|v| v.checkpoints_signed());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(audit_size, signed),
    )
}

/// `GET /openapi.json`
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
}

/// `POST /bench/echo` (only with `--enable-echo`): returns the body as it came.
pub(crate) async fn echo(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}
