//! The HTTP side: `POST /add-checkpoint` and `GET /<origin hash>/checkpoint`, over TLS or
//! plain HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use audit::witness::{self, Refusal, WitnessedLog};
use audit::{CosignatureSigner, NoteVerifier};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::state::{LogState, State as Store};

struct Witness {
    signer: CosignatureSigner,
    logs: Vec<NoteVerifier>,
    /// Held from the consistency check to the durable write of the new state: two requests
    /// cannot both check against the same old state (tlog-witness, the rollback race).
    state: Mutex<Store>,
}

type Shared = Arc<Witness>;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn refusal(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let ct = match r {
        Refusal::Conflict { .. } => witness::SIZE_CONTENT_TYPE,
        _ => "text/plain; charset=utf-8",
    };
    text(status, ct, r.body())
}

async fn add_checkpoint(State(w): State<Shared>, body: Bytes) -> Response {
    let Ok(body) = std::str::from_utf8(&body) else {
        return refusal(&Refusal::BadRequest("the body is not UTF-8".into()));
    };
    let req = match witness::parse_add_checkpoint(body) {
        Ok(r) => r,
        Err(r) => {
            eprintln!("add-checkpoint refused ({}): {r}", r.status());
            return refusal(&r);
        }
    };
    let mut state = w.state.lock().await;
    let checked = witness::check_add_checkpoint(&req, &w.logs, |origin| {
        state.get(origin).map(|s| s.latest.clone())
    });
    let (checkpoint, note_text) = match checked {
        Ok(c) => c,
        Err(r) => {
            // Kept in the witness's log: a refused checkpoint signed by the log may be
            // evidence of a fork.
            eprintln!("add-checkpoint refused ({}): {r}", r.status());
            return refusal(&r);
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1));
    let line = w.signer.cosign(note_text, now);
    let log_sigs = &req.note[note_text.len() + 1..];
    let stored = LogState {
        latest: WitnessedLog {
            size: checkpoint.size,
            root: checkpoint.root,
        },
        note: format!("{note_text}\n{log_sigs}{line}"),
    };
    let origin = checkpoint.origin.clone();
    // The blocking write happens under the lock, off the async workers.
    let result = tokio::task::block_in_place(|| state.record(&origin, stored));
    if let Err(e) = result {
        eprintln!("add-checkpoint: cannot persist the new state: {e:#}");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "the witness cannot persist its state; nothing was cosigned\n".into(),
        );
    }
    eprintln!("cosigned {origin} at size {}", checkpoint.size);
    text(StatusCode::OK, "text/plain; charset=utf-8", line)
}

async fn monitor(
    State(w): State<Shared>,
    UrlPath((hash, leaf)): UrlPath<(String, String)>,
) -> Response {
    if leaf != "checkpoint" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let state = w.state.lock().await;
    match state.by_hash(&hash) {
        Some(s) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            s.note.clone(),
        )
            .into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "this witness has never cosigned a checkpoint of that log\n".into(),
        ),
    }
}

pub(crate) fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    Ok(Arc::new(config))
}

pub(crate) async fn serve(
    signer: CosignatureSigner,
    logs: Vec<NoteVerifier>,
    state: Store,
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    let vkey = signer.verifier_key();
    let shared = Arc::new(Witness {
        signer,
        logs,
        state: Mutex::new(state),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{hash}/{leaf}", get(monitor))
        .layer(DefaultBodyLimit::max(witness::MAX_REQUEST_LEN))
        .with_state(shared);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The address line is what scripts and tests wait for.
    println!("witness {vkey} listening on {scheme}://{addr}");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => http.serve_connection(TokioIo::new(tls), service).await,
                        _ => return,
                    }
                }
                None => http.serve_connection(TokioIo::new(tcp), service).await,
            };
            drop(result);
        });
    }
}
