//! TLS for the vault: rustls with the `ring` provider only, TLS 1.3 and 1.2 with ECDHE and
//! AES-GCM suites only, and client certificates verified against the vault's agency CA.
//!
//! A client certificate is optional at the TLS layer (citizens and auditors use bearer
//! tokens), but one that is presented must chain to the agency CA, be within its validity
//! period and carry the clientAuth usage, or the handshake fails. Which enrolled agency (or
//! the operator) a certificate stands for is decided per request by its pinned fingerprint,
//! so that a revocation takes effect at once, also on open connections.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The only crypto provider of the process: `ring`, limited to ECDHE + AES-GCM suites.
pub(crate) fn crypto_provider() -> CryptoProvider {
    let base = provider::default_provider();
    CryptoProvider {
        cipher_suites: vec![
            provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
            provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
            provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![
            provider::kx_group::X25519,
            provider::kx_group::SECP256R1,
            provider::kx_group::SECP384R1,
        ],
        ..base
    }
}

/// Installs [`crypto_provider`] as the process default; call first thing in `main`.
pub(crate) fn install_provider() {
    // Err means a provider is already installed (a second call): nothing to do.
    let _ = crypto_provider().install_default();
}

/// The server's TLS configuration: its certificate chain and key, and the CA whose client
/// certificates it accepts.
pub(crate) fn server_config(
    cert_chain_der: Vec<Vec<u8>>,
    key_pkcs8_der: Vec<u8>,
    client_ca_der: &[u8],
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(crypto_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(client_ca_der.to_vec()))
        .context("the agency CA certificate is not usable as a trust anchor")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("cannot build the client certificate verifier")?;
    let chain = cert_chain_der
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
