//! The routes of DESIGN.md §6, one module per kind of caller. Handlers only translate
//! between JSON and the engine; every rule lives in `vault-core`.

pub(crate) mod admin;
pub(crate) mod agency;
pub(crate) mod audit;
pub(crate) mod citizen;
pub(crate) mod notify;
pub(crate) mod ops;
pub(crate) mod seal;
pub(crate) mod vocabulary;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body extractor whose rejections use the API's error shape (400 for malformed or
/// unknown fields, 413 for too large, 415 for a wrong content type).
pub(crate) struct Body<T>(pub(crate) T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::bad_request(
            "invalid_body",
            format!(
                "the request body does not match the expected shape: {}",
                e.body_text()
            ),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "invalid_json",
            format!("the request body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `content-type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is larger than the vault accepts (64 KiB)",
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Query-string extractor whose rejections use the API's error shape (400 `invalid_query`
/// for a missing, malformed or unknown parameter).
pub(crate) struct Query<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    match r {
        QueryRejection::FailedToDeserializeQueryString(e) => ApiError::bad_request(
            "invalid_query",
            format!(
                "the query string does not match what this route accepts (see /openapi.json): {}",
                e.body_text()
            ),
        ),
        other => ApiError::bad_request("invalid_query", other.body_text()),
    }
}

/// Path-parameter extractor whose rejections use the API's error shape (400
/// `invalid_path` for a parameter that does not decode).
pub(crate) struct Path<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    match r {
        PathRejection::FailedToDeserializePathParams(e) => ApiError::bad_request(
            "invalid_path",
            format!(
                "a path parameter is not valid (percent-encoded UTF-8 text expected): {}",
                e.body_text()
            ),
        ),
        // A handler asking for parameters its route does not have: a bug, not bad input.
        other => ApiError::internal(&other.body_text()),
    }
}
