//! The citizen web page (DESIGN.md §1, issue 6): static HTML, CSS and plain JavaScript,
//! embedded in the binary so the page needs nothing at run time but this server. The
//! page talks only to the `/v1/me/...` routes with the citizen's token and to the public
//! audit and vocabulary routes; it verifies every history entry itself (WebCrypto
//! SHA-256 and Ed25519, `verify.js`) and shows what it decoded from the verified leaf
//! bytes. See `docs/web.md`.
//!
//! Every asset is served with a strict Content-Security-Policy: scripts and styles only
//! from this origin, no inline code, no framing, requests only to this origin.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::app::App;
use crate::routes::vocabulary;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const VERIFY_JS: &str = include_str!("verify.js");
const CBOR_JS: &str = include_str!("cbor.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// Only this origin's own files; no inline script or style, no plugins, no framing,
/// `fetch` only to this origin, object URLs (`blob:`) for the downloads the page makes.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
base-uri 'none'";

/// The page's routes: `/` and its assets under `/web/`, plus `GET /v1/vocabulary`.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/web/app.js", get(app_js))
        .route("/web/verify.js", get(verify_js))
        .route("/web/cbor.js", get(cbor_js))
        .route("/web/app.css", get(app_css))
        .route("/web/favicon.svg", get(favicon))
        .route("/v1/vocabulary", get(vocabulary::vocabulary))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // Assets change with the binary; the page must never run a stale verifier.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `GET /`: the page.
async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /web/app.js`: the page's behaviour.
async fn app_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /web/verify.js`: Merkle proofs and signed-note verification (WebCrypto).
async fn verify_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", VERIFY_JS)
}

/// `GET /web/cbor.js`: the strict CBOR decoder for audit leaves.
async fn cbor_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", CBOR_JS)
}

/// `GET /web/app.css`
async fn app_css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /web/favicon.svg`
async fn favicon() -> impl IntoResponse {
    asset("image/svg+xml", FAVICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for path in [
            "/web/app.css",
            "/web/cbor.js",
            "/web/verify.js",
            "/web/app.js",
        ] {
            assert!(INDEX_HTML.contains(path), "index.html links {path}");
        }
        // No inline script or handler the CSP would block, nothing from elsewhere.
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains(" onclick="));
        for text in [INDEX_HTML, APP_JS, VERIFY_JS, CBOR_JS, APP_CSS] {
            assert!(!text.contains("http://"), "no plain-http reference");
            assert!(!text.contains("https://"), "no other origin is referenced");
        }
    }

    #[test]
    fn scripts_never_insert_html() {
        // Data is put on the page with textContent only, so nothing the server or an
        // agency wrote can become markup.
        for text in [APP_JS, VERIFY_JS, CBOR_JS] {
            assert!(!text.contains("innerHTML"));
            assert!(!text.contains("outerHTML"));
            assert!(!text.contains("insertAdjacentHTML"));
            assert!(!text.contains("document.write"));
            assert!(!text.contains("eval("));
        }
    }
}
