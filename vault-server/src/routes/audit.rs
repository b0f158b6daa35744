//! Auditor (bearer token) and public audit routes: checkpoint, verifier key, entries and
//! proofs. Proofs are hashes only and public; entries need an auditor token.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Path, Query};
use crate::app::{public_blocking, App, AuditorCaller};
use crate::error::ApiError;
use crate::views;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `GET /v1/audit/checkpoint` (public): the latest published checkpoint, `text/plain`:
/// with a witness policy, the latest one whose cosignatures meet its quorum (503
/// `not_witnessed` before the first); without, the latest signed one.
pub(crate) async fn checkpoint(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let note = published_checkpoint(&app).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    ))
}

/// The checkpoint `/v1/audit/checkpoint` publishes.
pub(crate) async fn published_checkpoint(app: &App) -> Result<String, ApiError> {
    if app.witnessing().is_some_and(|w| w.required()) {
        let note = public_blocking(app, |log| log.witnessed_checkpoint()).await?;
        return note.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_witnessed",
                "no checkpoint has reached the witness quorum yet: the vault keeps submitting \
                 (see /healthz); try again later",
            )
            .with_retry_after(5)
        });
    }
    public_blocking(app, |log| log.latest_checkpoint()).await
}

/// `GET /v1/audit/witness-policy` (public): the witness policy (C2SP tlog-policy) the
/// published checkpoints meet, `text/plain`; 404 `no_witness_policy` without one.
pub(crate) async fn witness_policy(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let w = app.witnessing().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_witness_policy",
            "this vault publishes its checkpoints without witnesses",
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        w.published_policy().to_owned(),
    ))
}

/// `GET /v1/audit/key` (public): the note verifier key, `text/plain`.
pub(crate) async fn key(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let key = public_blocking(&app, |log| Ok(log.log_verifier_key())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], key))
}

/// `GET /v1/audit/receipt-key` (public): the verifier key of consent receipts.
pub(crate) async fn receipt_key(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let key = public_blocking(&app, |log| Ok(log.receipt_verifier_key())).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    #[serde(default)]
    start: u64,
    #[serde(default)]
    limit: Option<u64>,
}

/// `GET /v1/audit/entries?start=N&limit=M` (auditor).
pub(crate) async fn entries(
    State(app): State<App>,
    _auditor: AuditorCaller,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = public_blocking(&app, move |log| log.audit_entries(q.start, limit)).await?;
    let entries: Vec<Value> = list
        .iter()
        .map(|e| {
            json!({
                "index": e.index,
                "leaf": b64(&e.leaf),
                "leaf_hash": b64(&e.leaf_hash),
                "entry": views::entry(&e.entry),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    index: u64,
    tree_size: u64,
}

/// `GET /v1/audit/proof/inclusion?index=N&tree_size=M` (public).
pub(crate) async fn inclusion(
    State(app): State<App>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    let (leaf_hash, proof) =
        public_blocking(&app, move |log| log.inclusion_proof(q.index, q.tree_size)).await?;
    Ok(Json(json!({
        "index": q.index,
        "tree_size": q.tree_size,
        "leaf_hash": b64(&leaf_hash),
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/audit/proof/consistency?from=M1&to=M2` (public).
pub(crate) async fn consistency(
    State(app): State<App>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    let proof = public_blocking(&app, move |log| log.consistency_proof(q.from, q.to)).await?;
    Ok(Json(json!({
        "from": q.from,
        "to": q.to,
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

/// Whether entry bundles (`/tile/entries/...`) are public (`--public-entries`) or need an
/// auditor token like `/v1/audit/entries`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EntriesAccess {
    pub(crate) public: bool,
}

/// `GET /checkpoint` (public, C2SP tlog-tiles): the published checkpoint, as
/// `/v1/audit/checkpoint` serves it (with witnesses: the latest witnessed one, with its
/// cosignatures); not cached (it changes every second while the log grows).
pub(crate) async fn tiles_checkpoint(
    State(app): State<App>,
) -> Result<impl IntoResponse, ApiError> {
    let note = published_checkpoint(&app).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    ))
}

/// `GET /tile/{L}/{N}[.p/{W}]` (public) and `GET /tile/entries/{N}[.p/{W}]` (auditor, or
/// public with `--public-entries`): C2SP tlog-tiles of the tree of the latest signed
/// checkpoint. The bytes at a path never change (a partial tile's path names its width),
/// so every tile is cached for a year.
pub(crate) async fn tile(
    State(app): State<App>,
    axum::Extension(access): axum::Extension<EntriesAccess>,
    Path(path): Path<String>,
    req: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let id = vault_core::audit::TileId::parse(&format!("tile/{path}"))
        .map_err(|e| ApiError::bad_request("invalid_tile_path", e.to_string()))?;
    if id.level() == vault_core::audit::TileLevel::Entries && !access.public {
        let (mut parts, _) = req.into_parts();
        <AuditorCaller as axum::extract::FromRequestParts<App>>::from_request_parts(
            &mut parts, &app,
        )
        .await?;
    }
    let bytes = match app.tiles.get(&id) {
        Some(bytes) => bytes,
        None => {
            let bytes = public_blocking(&app, move |log| log.tile(id)).await?;
            let Some(bytes) = bytes else {
                return Err(ApiError::not_found(format!(
                    "{} is not in the tree of the latest signed checkpoint: fetch /checkpoint and request only the tiles its size covers",
                    id.path()
                )));
            };
            let bytes = axum::body::Bytes::from(bytes);
            app.tiles.put(id, bytes.clone());
            bytes
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    ))
}
