//! Citizen routes (bearer token). A citizen token only ever reaches its own citizen: the
//! citizen id comes from the token, never from the request.

use axum::body::{Body as ResponseBody, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vault_core::GrantInput;

use super::{Body, Path, Query};
use crate::app::{blocking, App, CitizenCaller};
use crate::error::ApiError;
use crate::views;

/// `GET /v1/me/records`
pub(crate) async fn records(
    State(app): State<App>,
    me: CitizenCaller,
) -> Result<Json<Value>, ApiError> {
    let records = blocking(&app, move |v| v.citizen_records(&me.token)).await?;
    Ok(Json(json!({ "records": views::records(&records)? })))
}

/// `GET /v1/me/consents`
pub(crate) async fn consents(
    State(app): State<App>,
    me: CitizenCaller,
) -> Result<Json<Value>, ApiError> {
    let list = blocking(&app, move |v| v.citizen_consents(&me.citizen)).await?;
    Ok(Json(
        json!({ "consents": list.iter().map(views::consent).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/me/consents/{id}/record`: one granted consent as an ISO/IEC TS 27560 record
/// in the W3C DPV profile (JSON-LD, `application/ld+json`), beside its signed receipt.
pub(crate) async fn record(
    State(app): State<App>,
    me: CitizenCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = blocking(&app, move |v| v.citizen_consent_record(&me.citizen, &id)).await?;
    let body = serde_json::to_vec(record.json()).map_err(|e| ApiError::internal(&e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            vault_core::policies::consent_record::MEDIA_TYPE,
        )],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantBody {
    agency: String,
    purpose: String,
    fields: Vec<String>,
    expires_at: String,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    max_uses: Option<u32>,
    #[serde(default)]
    data_life_days: Option<u32>,
}

/// `POST /v1/me/consents`
pub(crate) async fn grant(
    State(app): State<App>,
    me: CitizenCaller,
    Body(body): Body<GrantBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = GrantInput {
        agency: body.agency,
        purpose: body.purpose,
        fields: body.fields,
        expires_at: body.expires_at,
        valid_from: body.valid_from,
        max_uses: body.max_uses,
        data_life_days: body.data_life_days,
    };
    let view = blocking(&app, move |v| v.grant_consent(&me.token, input)).await?;
    Ok((StatusCode::CREATED, Json(views::consent(&view))))
}

/// `POST /v1/me/consents/{id}/revoke`
pub(crate) async fn revoke(
    State(app): State<App>,
    me: CitizenCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = blocking(&app, move |v| v.revoke_consent(&me.token, &id)).await?;
    Ok(Json(views::consent(&view)))
}

/// `GET /v1/me/consent-requests`
pub(crate) async fn requests(
    State(app): State<App>,
    me: CitizenCaller,
) -> Result<Json<Value>, ApiError> {
    let list = blocking(&app, move |v| v.citizen_consent_requests(&me.citizen)).await?;
    Ok(Json(
        json!({ "requests": list.iter().map(views::consent).collect::<Vec<_>>() }),
    ))
}

/// `POST /v1/me/consent-requests/{id}/approve`
pub(crate) async fn approve(
    State(app): State<App>,
    me: CitizenCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = blocking(&app, move |v| {
        v.answer_consent_request(&me.token, &id, true)
    })
    .await?;
    Ok(Json(views::consent(&view)))
}

/// `POST /v1/me/consent-requests/{id}/deny`
pub(crate) async fn deny(
    State(app): State<App>,
    me: CitizenCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = blocking(&app, move |v| {
        v.answer_consent_request(&me.token, &id, false)
    })
    .await?;
    Ok(Json(views::consent(&view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    #[serde(default)]
    pub(crate) start: Option<u64>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

/// `GET /v1/me/access-history?start=N&limit=M`: the citizen's own entries, newest
/// first from `start` (an index; default: the newest), each with its leaf bytes and an
/// inclusion proof against the one checkpoint returned beside them.
pub(crate) async fn history(
    State(app): State<App>,
    me: CitizenCaller,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    // Read-only: a standby serves it too, from the database.
    let h = crate::app::public_blocking(&app, move |log| {
        log.access_history(&me.citizen, page.start, limit)
    })
    .await?;
    Ok(Json(views::history(&h)))
}

/// History entries per page of a streamed export.
const EXPORT_PAGE: usize = 256;

/// `GET /v1/me/export`: everything the vault holds about the citizen, streamed: the
/// history is read, proved and sent a page at a time, so the server's memory does not grow
/// with it. A failure after the first bytes, or a seal, cuts the body short (the log says
/// why).
pub(crate) async fn export(
    State(app): State<App>,
    me: CitizenCaller,
) -> Result<Response, ApiError> {
    let x = blocking(&app, move |v| v.citizen_export(&me.token)).await?;
    let (head, tail) = views::export_frame(&x)?;
    let vault = app.serving()?;
    // Two pages in flight at most: the reader waits for the client.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::task::spawn_blocking(move || {
        if tx.blocking_send(Ok(Bytes::from(head))).is_err() {
            return;
        }
        let mut start = None;
        let mut first = true;
        loop {
            // A seal stops the export at the next page, so that it drops the vault's keys.
            if app.vault().is_none() {
                let _ = tx.blocking_send(Err(std::io::Error::other("the vault was sealed")));
                return;
            }
            let (entries, next) = match vault.export_history_page(&x, start, EXPORT_PAGE) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "a citizen export failed after its first bytes");
                    let _ = tx.blocking_send(Err(std::io::Error::other("the export failed")));
                    return;
                }
            };
            let mut chunk = String::new();
            for e in &entries {
                if !first {
                    chunk.push(',');
                }
                first = false;
                chunk.push_str(&views::history_entry(e).to_string());
            }
            if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return; // The client went away.
            }
            match next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        let _ = tx.blocking_send(Ok(Bytes::from_static(tail.as_bytes())));
    });
    let body = ResponseBody::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureBody {
    /// Must be `true`: erasure cannot be undone.
    confirm: bool,
}

/// `POST /v1/me/erasure`
pub(crate) async fn erasure(
    State(app): State<App>,
    me: CitizenCaller,
    Body(body): Body<ErasureBody>,
) -> Result<Json<Value>, ApiError> {
    if !body.confirm {
        return Err(ApiError::bad_request(
            "confirmation_required",
            "erasure destroys your data and cannot be undone: send {\"confirm\": true}",
        ));
    }
    let out = blocking(&app, move |v| v.erase_citizen(&me.citizen, Some(&me.token))).await?;
    Ok(Json(
        json!({ "erased": true, "audit_index": out.audit_index }),
    ))
}
