//! The route table (DESIGN.md §6) and the layers every request passes: body limit and
//! response counting.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::app::App;
use crate::error::ApiError;
use crate::routes::{admin, agency, audit, citizen, notify, ops, seal};

/// Largest request body accepted (413 beyond).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The application.
/// `public_entries`: entry bundles (`/tile/entries/...`) need no auditor token.
pub(crate) fn router(app: App, enable_echo: bool, public_entries: bool) -> Router {
    let mut r = Router::new()
        .route(
            "/v1/citizens/{citizen}/records/{category}",
            put(agency::put_record),
        )
        .route("/v1/access", post(agency::access))
        .route("/v1/consent-requests", post(agency::consent_request))
        .route("/v1/me/records", get(citizen::records))
        .route(
            "/v1/me/consents",
            get(citizen::consents).post(citizen::grant),
        )
        .route("/v1/me/consents/{id}/revoke", post(citizen::revoke))
        .route("/v1/me/consents/{id}/record", get(citizen::record))
        .route("/v1/me/consent-requests", get(citizen::requests))
        .route(
            "/v1/me/consent-requests/{id}/approve",
            post(citizen::approve),
        )
        .route("/v1/me/consent-requests/{id}/deny", post(citizen::deny))
        .route("/v1/me/access-history", get(citizen::history))
        .route("/v1/me/export", get(citizen::export))
        .route("/v1/me/erasure", post(citizen::erasure))
        .route("/v1/me/notifications", get(notify::feed))
        .route("/v1/notifications/keys", get(notify::keys))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/witness-policy", get(audit::witness_policy))
        .route("/v1/audit/receipt-key", get(audit::receipt_key))
        .route("/v1/audit/entries", get(audit::entries))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route(
            "/v1/admin/agencies",
            get(admin::list_agencies).post(admin::enrol),
        )
        .route("/v1/admin/agencies/{id}/revoke", post(admin::revoke_agency))
        .route(
            "/v1/admin/agencies/{id}/webhook",
            get(notify::get_agency_webhook)
                .put(notify::put_agency_webhook)
                .delete(notify::delete_agency_webhook),
        )
        .route(
            "/v1/admin/gateway",
            get(notify::get_gateway)
                .put(notify::put_gateway)
                .delete(notify::delete_gateway),
        )
        .route("/v1/admin/webhooks", get(notify::list))
        .route(
            "/v1/admin/notifications/rotate-key",
            post(notify::rotate_key),
        )
        .route(
            "/v1/admin/certificates/{fingerprint}/revoke",
            post(admin::revoke_certificate),
        )
        .route(
            "/v1/admin/deferred/{index}/lift",
            post(admin::lift_deferred),
        )
        .route("/v1/admin/tokens", post(admin::issue_token))
        .route("/v1/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/v1/admin/keys/rotate", post(admin::rotate))
        .route("/v1/admin/checkpoint", post(admin::sign_checkpoint))
        .route("/v1/admin/audit/export", get(admin::audit_export))
        .route("/v1/admin/backup", get(admin::backup))
        .route("/v1/admin/erase", post(admin::erase))
        .route("/v1/admin/seal", post(seal::seal))
        .route("/v1/admin/unseal", post(seal::unseal))
        .route("/v1/admin/import", post(admin::import))
        .route("/checkpoint", get(audit::tiles_checkpoint))
        .route(
            "/tile/{*path}",
            get(audit::tile).layer(axum::Extension(audit::EntriesAccess {
                public: public_entries,
            })),
        )
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi));
    if enable_echo {
        r = r.route("/bench/echo", post(ops::echo));
    }
    // The citizen web page and the vocabulary it shows (crate::web).
    r = r.merge(crate::web::routes());
    // After every route: the 405 answer applies to the routes added so far.
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route: see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method: the `allow` header lists the ones it takes",
    )
}

async fn count(State(app): State<App>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    app.metrics.response(res.status().as_u16());
    res
}
