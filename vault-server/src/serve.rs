//! The accept loop: TCP (at most `max_connections` open), then the TLS handshake (at most
//! `max_handshakes` at once, bounded in time), then HTTP/1.1 with keep-alive, each request
//! carrying the fingerprint of the client certificate (if any) that the connection's
//! handshake verified, and each bounded in time from its head to its answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse as _, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use vault_core::Fingerprint;

use crate::error::ApiError;

/// The client certificate the TLS layer verified for this request's connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerCertificate(pub(crate) Option<Fingerprint>);

/// Connection-layer limits (`vault-server --help`, docs/operations.md).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Open connections; one more is closed as soon as it is accepted.
    pub(crate) max_connections: usize,
    /// TLS handshakes in progress; one more is closed before its handshake starts.
    pub(crate) max_handshakes: usize,
    /// From accept to the end of the TLS handshake.
    pub(crate) handshake_timeout: Duration,
    /// For a request head, counted from when the connection waits for it: so also the
    /// longest a keep-alive connection may stay idle between requests.
    pub(crate) header_timeout: Duration,
    /// From a request's head to its answer, the body included (408 after it, and the
    /// connection is closed).
    pub(crate) request_timeout: Duration,
}

/// Serves `app` over TLS on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let (tcp, peer_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over the cap: closed at once, before any TLS work.
        let Ok(open) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer_addr, "connection refused: too many open connections");
            drop(tcp);
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%peer_addr, "connection refused: too many TLS handshakes");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _open = open;
            let accepted = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let stream = match accepted.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer_addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer_addr, "TLS handshake timed out");
                    return;
                }
            };
            drop(handshake);
            let peer = PeerCertificate(
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|cert| Fingerprint::of(cert)),
            );
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer);
                let answer = app.clone().oneshot(req);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        match tokio::time::timeout(limits.request_timeout, answer).await {
                            Ok(Ok(response)) => response,
                            Ok(Err(never)) => match never {},
                            Err(_) => timed_out(limits.request_timeout),
                        },
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer_addr, error = %e, "connection ended with an error");
            }
        });
    }
}

/// 408, and the connection is closed (whatever of the body is still coming is not read).
fn timed_out(limit: Duration) -> Response {
    let mut response = ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request was not received and answered within {} s: send the whole request at once, and retry",
            limit.as_secs()
        ),
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
