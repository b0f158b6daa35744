//! A webhook receiver for `scripts/bench-load` (`NOTIFY=1`): HTTPS on loopback with a
//! certificate of a CA it makes itself, answering every POST with 204 and counting them.
//! It does not verify signatures (the end-to-end test `tests/suite/notify.rs` does), so
//! that the benchmark's receiver takes as little of the machine's CPU as it can.
//!
//!   webhook-sink <CA_PEM_OUT>
//!
//! Writes the CA certificate to CA_PEM_OUT (for the vault's `--webhook-ca`), then prints
//! `listening on https://localhost:PORT` and serves until killed; on SIGTERM or SIGINT it
//! prints the count of requests received. A GET (any path) answers the count so far.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject as _;
use vault_core::pki::{Ca, Usage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: webhook-sink <CA_PEM_OUT>"))?;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ca = Ca::generate("webhook sink CA", now - day, 7 * day)?;
    let leaf = ca.issue(
        Usage::Server,
        "localhost",
        &["localhost".into()],
        now - day,
        now + 7 * day,
    )?;
    std::fs::write(&out, ca.cert_pem())?;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.private_key_pem().as_bytes())?;
    let tls = rustls::ServerConfig::builder_with_provider(tests::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "listening on https://localhost:{}",
        listener.local_addr()?.port()
    );
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        println!("received {}", counted.load(Ordering::Relaxed));
        std::process::exit(0);
    });
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, count) = (acceptor.clone(), count.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        if req.method() == hyper::Method::GET {
                            // The count so far, for the benchmark's report.
                            let n = count.load(Ordering::Relaxed).to_string();
                            return Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(200)
                                    .body(Full::new(Bytes::from(n)))
                                    .expect("a response"),
                            );
                        }
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(204)
                                .body(Full::new(Bytes::new()))
                                .expect("a response"),
                        )
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
