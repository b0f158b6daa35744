//! Sealing and unsealing a running vault (operator certificate). Sealed, every data route
//! answers 503 and the keys are dropped; unsealing reopens the vault with the passphrase.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use zeroize::{Zeroize as _, Zeroizing};

use crate::app::{App, OperatorCaller};
use crate::error::ApiError;
use crate::router::MAX_BODY;

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
struct UnsealBody {
    #[serde(deserialize_with = "zeroizing")]
    passphrase: Zeroizing<String>,
}

fn zeroizing<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// `POST /v1/admin/unseal`. The body holds the passphrase: it is read into a buffer wiped
/// on drop, and parsed into a passphrase wiped on drop, not through the JSON extractor.
pub(crate) async fn unseal(
    State(app): State<App>,
    _op: OperatorCaller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, ApiError> {
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `content-type: application/json`",
        ));
    }
    let bytes = secret_body(body).await?;
    let passphrase = match serde_json::from_slice::<UnsealBody>(&bytes) {
        Ok(b) => b.passphrase,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(ApiError::bad_request(
                "invalid_json",
                format!("the request body is not valid JSON: {e}"),
            ))
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("the request body does not match the expected shape: {e}"),
            ))
        }
    };
    drop(bytes);
    let app2 = app.clone();
    let index = tokio::task::spawn_blocking(move || app2.unseal(&passphrase))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(json!({ "sealed": false, "audit_index": index })))
}

/// `application/json`, or `application/<anything>+json`, as the JSON extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// The whole body (at most [`MAX_BODY`] bytes), in a buffer that is never reallocated and
/// is wiped on drop. Each chunk received is wiped once copied when this handler holds it
/// alone; a chunk that still shares hyper's read buffer is only dropped.
async fn secret_body(mut body: axum::body::Body) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    use hyper::body::Body as _;
    let mut out = Zeroizing::new(Vec::with_capacity(MAX_BODY));
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let fits = out.len() + chunk.len() <= MAX_BODY;
        if fits {
            out.extend_from_slice(&chunk);
        }
        wipe(chunk);
        if !fits {
            return Err(too_large());
        }
    }
    Ok(out)
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is larger than the vault accepts (64 KiB)",
    )
}

/// Zeroes `chunk` if no other handle shares its memory; returns whether it did.
fn wipe(chunk: Bytes) -> bool {
    match chunk.try_into_mut() {
        Ok(mut owned) => {
            owned.as_mut().zeroize();
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, HeaderValue};

    use super::{is_json, wipe};

    #[test]
    fn a_chunk_held_alone_is_wiped_and_a_shared_one_is_not() {
        assert!(wipe(Bytes::from(b"secret".to_vec())));
        let shared = Bytes::from(b"secret".to_vec());
        let other = shared.clone();
        assert!(!wipe(shared));
        assert_eq!(&other[..], b"secret");
    }

    #[test]
    fn json_content_types_are_those_the_json_extractor_accepts() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
