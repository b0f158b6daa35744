//! Operations routes: health, Prometheus metrics, the OpenAPI document, and the optional
//! bare echo route that benchmarks use as the TLS + HTTP baseline.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::app::App;

/// The store part of /healthz: the backend, and for PostgreSQL the node's lease and the
/// database's round trip.
pub(crate) fn store_json(health: &vault_core::StoreHealth) -> serde_json::Value {
    let mut store = json!({"backend": health.backend});
    if let Some(lease) = &health.lease {
        store["node"] = json!(lease.holder);
        store["lease_epoch"] = json!(lease.epoch);
        store["active"] = json!(lease.valid);
    }
    if let Some(rtt) = health.round_trip {
        store["db_round_trip_ms"] = json!(rtt.as_secs_f64() * 1000.0);
    }
    store
}

/// The store's health, measured off the async threads (a PostgreSQL store times a query).
async fn store_health(
    vault: Option<std::sync::Arc<vault_core::Vault>>,
) -> Option<vault_core::StoreHealth> {
    let v = vault?;
    tokio::task::spawn_blocking(move || v.store_health())
        .await
        .ok()
}

/// `GET /healthz`: 200 when unsealed and serving (on PostgreSQL: the active node); 503
/// when sealed, a standby (naming the active node), or when the store failed.
pub(crate) async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let vault = app.vault();
    let health = store_health(vault.clone()).await;
    match vault {
        Some(v) if v.is_available() => {
            let mut body = json!({"status": "ok", "store": health.as_ref().map(store_json)});
            // Only with a witness policy.
            if let Some(w) = app.witnessing() {
                body["witnessing"] = w.health();
            }
            (StatusCode::OK, Json(body))
        }
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "store": health.as_ref().map(store_json),
                "message": "the store failed or lost its writer lease and refuses every \
                            operation; nothing is released: read the server log, then restart \
                            the server (a sled store recovers from its write-ahead log; a node \
                            on PostgreSQL reloads the log from the database)",
            })),
        ),
        None => match app.cluster.standby_of() {
            Some(active) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "standby", "active_node": active})),
            ),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "sealed"})),
            ),
        },
    }
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let vault = app.vault();
    let audit_size = vault.as_ref().map(|v| v.audit_size());
    let signed = vault.as_ref().map(|v| v.checkpoints_signed());
    let health = store_health(vault.clone()).await;
    let mut text = app.metrics.render(audit_size, signed, health.as_ref());
    if let Some(w) = app.witnessing() {
        w.render_metrics(&mut text);
    }
    if let Some(n) = app.notifying() {
        n.render_metrics(vault.as_deref(), &mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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
