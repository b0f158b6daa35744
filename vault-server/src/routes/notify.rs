//! Notification routes (docs/notifications.md): the operator's webhook endpoints and key
//! rotation, the public notification keys, and a citizen's own feed.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vault_core::{NotificationKey, WebhookTarget, WebhookView};

use super::{Body, Path, Query};
use crate::app::{blocking, App, CitizenCaller, OperatorCaller};
use crate::error::ApiError;
use crate::routes::citizen::Page;
use crate::views;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    url: String,
    /// Up to this many events in one message (1, the default: one message per event).
    #[serde(default = "one_event")]
    batch: u16,
}

fn one_event() -> u16 {
    1
}

fn webhook_view(w: &WebhookView) -> Value {
    json!({
        "target": w.target.reference(),
        "url": w.url,
        "set_at": w.set_at.to_string(),
        "disabled_at": w.disabled_at.map(|t| t.to_string()),
        "queued": w.queued,
        "batch": w.batch,
    })
}

fn keys_view(keys: &[NotificationKey]) -> Value {
    json!({
        "scheme": "Standard Webhooks v1a (Ed25519 over `webhook-id.webhook-timestamp.body`)",
        "keys": keys.iter().map(|k| json!({
            "generation": k.generation,
            "public_key": k.public_key,
            "current": k.current,
            "signs_until": k.signs_until.map(|t| t.to_string()),
        })).collect::<Vec<_>>(),
    })
}

async fn set(
    app: App,
    target: WebhookTarget,
    url: Option<(String, u16)>,
) -> Result<Json<Value>, ApiError> {
    let view = blocking(&app, move |v| match &url {
        Some((url, batch)) => v.set_webhook_batched(&target, Some(url), *batch),
        None => v.set_webhook(&target, None),
    })
    .await?;
    Ok(Json(match view {
        Some(w) => webhook_view(&w),
        None => json!({ "removed": true }),
    }))
}

async fn show(app: App, target: WebhookTarget) -> Result<Json<Value>, ApiError> {
    match blocking(&app, move |v| v.webhook(&target)).await? {
        Some(w) => Ok(Json(webhook_view(&w))),
        None => Err(ApiError::not_found("webhook")),
    }
}

/// `PUT /v1/admin/agencies/{id}/webhook`: sets the agency's endpoint.
pub(crate) async fn put_agency_webhook(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(id): Path<String>,
    Body(body): Body<WebhookBody>,
) -> Result<Json<Value>, ApiError> {
    set(app, WebhookTarget::Agency(id), Some((body.url, body.batch))).await
}

/// `GET /v1/admin/agencies/{id}/webhook`
pub(crate) async fn get_agency_webhook(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    show(app, WebhookTarget::Agency(id)).await
}

/// `DELETE /v1/admin/agencies/{id}/webhook`: removes it and what is queued for it.
pub(crate) async fn delete_agency_webhook(
    State(app): State<App>,
    _op: OperatorCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set(app, WebhookTarget::Agency(id), None).await
}

/// `PUT /v1/admin/gateway`: sets the citizens' notification gateway.
pub(crate) async fn put_gateway(
    State(app): State<App>,
    _op: OperatorCaller,
    Body(body): Body<WebhookBody>,
) -> Result<Json<Value>, ApiError> {
    set(app, WebhookTarget::Gateway, Some((body.url, body.batch))).await
}

/// `GET /v1/admin/gateway`
pub(crate) async fn get_gateway(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    show(app, WebhookTarget::Gateway).await
}

/// `DELETE /v1/admin/gateway`
pub(crate) async fn delete_gateway(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    set(app, WebhookTarget::Gateway, None).await
}

/// `GET /v1/admin/webhooks`: every endpoint set.
pub(crate) async fn list(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    let list = blocking(&app, |v| v.webhooks()).await?;
    Ok(Json(json!({
        "webhooks": list.iter().map(webhook_view).collect::<Vec<_>>()
    })))
}

/// `POST /v1/admin/notifications/rotate-key`: a new notification key; the old one signs
/// beside it for its overlap.
pub(crate) async fn rotate_key(
    State(app): State<App>,
    _op: OperatorCaller,
) -> Result<Json<Value>, ApiError> {
    let keys = blocking(&app, |v| v.rotate_notification_key()).await?;
    Ok(Json(keys_view(&keys)))
}

/// `GET /v1/notifications/keys`: the public keys that sign notifications now (no
/// credential needed).
pub(crate) async fn keys(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let keys = blocking(&app, |v| v.notification_keys()).await?;
    Ok(Json(keys_view(&keys)))
}

/// `GET /v1/me/notifications?start=N&limit=M`: the citizen's own notifications, newest
/// first, each an entry of their history with its proof.
pub(crate) async fn feed(
    State(app): State<App>,
    me: CitizenCaller,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let h = crate::app::public_blocking(&app, move |log| {
        log.citizen_notifications(&me.citizen, page.start, limit)
    })
    .await?;
    let mut body = views::history(&h);
    if let Some(entries) = body["entries"].as_array_mut() {
        for (item, e) in entries.iter_mut().zip(&h.entries) {
            item["type"] = json!(vault_core::citizen_event_type(
                &e.entry.action,
                &e.entry.decision,
                e.entry.review
            ));
        }
    }
    Ok(Json(body))
}
