//! TLS for the vault: rustls with the `ring` provider only, TLS 1.3 and 1.2 with ECDHE and
//! AES-GCM suites only, and client certificates verified against the vault's agency CA.
//!
//! A client certificate is optional at the TLS layer (citizens and auditors use bearer
//! tokens), but one that is presented must chain to the agency CA, be within its validity
//! period and carry the clientAuth usage, or the handshake fails. Which enrolled agency (or
//! the operator) a certificate stands for is decided per request by its pinned fingerprint,
//! so that a revocation takes effect at once, also on open connections.

use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use rustls::crypto::{ring as provider, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use vault_core::{Fingerprint, ServerIdentity};

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

/// The certificate and key the server answers TLS with, replaceable while it runs: new
/// handshakes use the one in place when they start. Holds the stored server key while the
/// vault is unsealed, and the sealed-mode key ([`vault_core::Vault::sealed_server_identity`])
/// while it is sealed.
pub(crate) struct ServerCert {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerCert({})", self.fingerprint())
    }
}

impl ServerCert {
    /// Answers with `identity` until [`ServerCert::replace`].
    pub(crate) fn new(identity: ServerIdentity) -> anyhow::Result<Arc<ServerCert>> {
        let provider = Arc::new(crypto_provider());
        let current = RwLock::new(certified(&provider, identity)?);
        Ok(Arc::new(ServerCert { provider, current }))
    }

    /// Answers new handshakes with `identity` from now on; the one replaced is dropped
    /// once the handshakes that use it end.
    pub(crate) fn replace(&self, identity: ServerIdentity) -> anyhow::Result<()> {
        let new = certified(&self.provider, identity)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    /// The fingerprint of the certificate answered with now.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .cert
            .first()
            .map_or(Fingerprint([0; 32]), |c| Fingerprint::of(c))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The chain and key as rustls signs with them, checked to be a pair.
fn certified(
    provider: &CryptoProvider,
    (chain, key): ServerIdentity,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    // rustls takes the key by value; `key` itself is wiped when it is dropped here.
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    let certified = CertifiedKey::from_der(chain, der, provider)
        .context("the server certificate and key do not form a usable pair")?;
    Ok(Arc::new(certified))
}

/// The server's TLS configuration: its certificate and key from `cert`, and the CA whose
/// client certificates it accepts.
pub(crate) fn server_config(
    cert: Arc<ServerCert>,
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
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
