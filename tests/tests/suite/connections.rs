//! The connection layer's caps and timeouts, over real TCP and TLS against the real server
//! (the slow-client load test is the separate test binary `abuse`).

use std::sync::Arc;
use std::time::Duration;

use tests::Vault;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn port(v: &Vault) -> anyhow::Result<u16> {
    v.url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no port in the server URL"))
}

/// GET /healthz on a new connection that is closed afterwards.
async fn healthz(v: &Vault) -> anyhow::Result<u16> {
    let status = v
        .client()
        .get(v.at("/healthz"))
        .send()
        .await?
        .status()
        .as_u16();
    Ok(status)
}

/// Connections over `--max-handshakes` and `--max-connections` are closed at once, without
/// TLS work; the ones holding the caps are closed by the handshake and header timeouts,
/// after which new connections are served again.
#[tokio::test]
async fn connections_over_the_caps_are_refused_at_once() -> anyhow::Result<()> {
    let v = Vault::start_dev_with_args(
        &[
            "--max-connections",
            "12",
            "--max-handshakes",
            "4",
            "--handshake-timeout",
            "2",
            "--header-timeout",
            "2",
        ],
        &[],
    )?;
    let port = port(&v)?;
    // Closed at once: EOF (or a reset) within a second, before any byte is sent.
    async fn refused(port: u16) -> anyhow::Result<bool> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut b = [0u8; 1];
        Ok(matches!(
            tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ))
    }

    // Four silent connections hold every handshake slot: a fifth is refused.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        refused(port).await?,
        "a connection over --max-handshakes was not closed"
    );
    // The handshake timeout frees them; a real client is served again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        healthz(&v).await?,
        200,
        "served again once the silent handshakes timed out"
    );
    drop(silent);
    // The server sees the clients' connections close.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Twelve idle TLS connections fill every connection slot; the next is refused before
    // its handshake.
    let ca = std::fs::read(&v.creds.ca_cert)?;
    let tls = TlsConnector::from(Arc::new(tests::tls_config(&ca, None)?));
    let mut idle = Vec::new();
    for _ in 0..20 {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        match tls.connect(name, tcp).await {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    assert!(
        idle.len() == 12,
        "{} idle connections were served with --max-connections 12",
        idle.len()
    );
    assert!(
        refused(port).await?,
        "a connection over --max-connections was not closed"
    );
    // The header timeout (also the keep-alive idle limit) closes them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        healthz(&v).await?,
        200,
        "served again once the idle connections timed out"
    );
    Ok(())
}
