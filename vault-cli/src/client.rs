//! The HTTPS client of the live verbs: mutual TLS with the operator certificate made at
//! `init` (rustls, ring provider only), the vault CA as the only trust anchor, and the
//! server's error shape turned into messages and exit codes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::exit::{self, Exit};

/// Where the running server is and how to authenticate to it.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Conn {
    /// The server's base URL, e.g. https://vault.example.gov:8443.
    #[arg(long, env = "VAULT_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The vault CA certificate (PEM), written by `vault-cli init` as ca.pem.
    #[arg(long, env = "VAULT_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The operator client certificate (PEM), written by `vault-cli init`.
    #[arg(long, env = "VAULT_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The operator client private key (PEM), written by `vault-cli init`.
    #[arg(long, env = "VAULT_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
}

/// A connection to the running vault.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
}

/// Requests may move a whole backup or audit export.
const TIMEOUT: Duration = Duration::from_secs(600);

fn read(path: &PathBuf, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// A TLS client configuration (ring provider) whose only trust anchors are the
/// certificates of the PEM file `ca_path` (the vault CA).
pub(crate) fn tls_trusting(
    ca_path: &PathBuf,
) -> anyhow::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    let ca = read(ca_path, "CA certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&ca) {
        let c = c.with_context(|| format!("{} is not a PEM certificate", ca_path.display()))?;
        roots
            .add(c)
            .with_context(|| format!("{} holds an unusable certificate", ca_path.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!("{} holds no PEM certificate", ca_path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .with_root_certificates(roots))
}

impl Client {
    /// A client presenting the operator certificate (every `/v1/admin` route).
    pub(crate) fn operator(conn: &Conn) -> anyhow::Result<Client> {
        Self::build(conn, true)
    }

    /// A client presenting the operator certificate if one is configured (public routes).
    pub(crate) fn public(conn: &Conn) -> anyhow::Result<Client> {
        Self::build(conn, false)
    }

    fn build(conn: &Conn, need_identity: bool) -> anyhow::Result<Client> {
        let server = conn.server.as_deref().context(
            "no server: give --server https://host:port or set VAULT_SERVER (offline verbs take --data-dir instead)",
        )?;
        let base = server.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            bail!("--server must be an https:// URL (the vault only speaks TLS), got {base:?}");
        }
        let ca_path = conn
            .ca
            .as_ref()
            .context("no CA certificate: give --ca ca.pem or set VAULT_CA")?;
        let builder = tls_trusting(ca_path)?;
        let tls = match (&conn.cert, &conn.key) {
            (Some(cert_path), Some(key_path)) => {
                let cert = read(cert_path, "client certificate")?;
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("{} is not a PEM certificate", cert_path.display()))?;
                if chain.is_empty() {
                    bail!("{} holds no PEM certificate", cert_path.display());
                }
                let key = zeroize::Zeroizing::new(read(key_path, "client key")?);
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .ok()
                    .with_context(|| format!("{} holds no PEM private key", key_path.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("the client certificate and key do not match")?
            }
            (None, None) if !need_identity => builder.with_no_client_auth(),
            _ => bail!(
                "the operator certificate is needed: give --cert operator.pem --key operator.key \
                 (or set VAULT_CERT and VAULT_KEY)"
            ),
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(TIMEOUT)
            .build()
            .context("building the HTTPS client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Client {
            runtime,
            http,
            base,
        })
    }

    fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<u8>> {
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "cannot reach the vault at {} ({what}): check --server, that the server runs, \
                     and that --ca/--cert/--key are the ones `vault-cli init` wrote",
                    self.base
                ))
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .with_context(|| format!("the answer to {what} was cut short"))?;
            if (200..300).contains(&status) {
                return Ok(body.to_vec());
            }
            Err(api_error(status, &body, what))
        })
    }

    /// `GET path`, the body as bytes.
    pub(crate) fn get_bytes(&self, path: &str, what: &str) -> anyhow::Result<Vec<u8>> {
        self.send(self.http.get(format!("{}{path}", self.base)), what)
    }

    /// `GET path`, the body as JSON.
    pub(crate) fn get_json(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        let bytes = self.get_bytes(path, what)?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {what} is not JSON"))
    }

    /// `PUT path` with a JSON body, the answer as JSON.
    pub(crate) fn put_json(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        let bytes = self.send(
            self.http.put(format!("{}{path}", self.base)).json(body),
            what,
        )?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {what} is not JSON"))
    }

    /// `DELETE path`, the answer as JSON.
    pub(crate) fn delete_json(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        let bytes = self.send(self.http.delete(format!("{}{path}", self.base)), what)?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {what} is not JSON"))
    }

    /// `POST path` with a JSON body, the answer as JSON.
    pub(crate) fn post_json(&self, path: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
        let bytes = self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            what,
        )?;
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {what} is not JSON"))
    }
}

/// The server's `{"error": {"code", "message"}}` as an [`Exit`].
pub(crate) fn api_error(status: u16, body: &[u8], what: &str) -> anyhow::Error {
    let parsed: Option<(String, String)> =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_owned(),
                e.get("message")?.as_str()?.to_owned(),
            ))
        });
    let (code, message) =
        parsed.unwrap_or_else(|| ("unknown".to_owned(), "no error details".to_owned()));
    let exit_code = match status {
        401 => exit::REFUSED_CREDENTIAL,
        400..=499 => exit::REJECTED,
        _ => exit::FAILURE,
    };
    let hint = match status {
        401 => ": is --cert the operator certificate `vault-cli init` wrote?",
        503 => ": the vault is sealed or its storage failed; see the server's log",
        _ => "",
    };
    Exit::error(
        exit_code,
        format!("{what} refused: {status} {code}: {message}{hint}"),
    )
}

/// Percent-encodes a path segment (ids are restricted, but never trust that here).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_code_and_message_and_pick_the_exit_code() {
        let e = api_error(
            403,
            br#"{"error":{"code":"not_source","message":"agency x is not the source"}}"#,
            "import",
        );
        assert_eq!(exit::code_of_error(&e), exit::REJECTED);
        let text = e.to_string();
        assert!(
            text.contains("403 not_source: agency x is not the source"),
            "{text}"
        );
        let e = api_error(401, b"", "enrol");
        assert_eq!(exit::code_of_error(&e), exit::REFUSED_CREDENTIAL);
        let e = api_error(500, b"<html>", "backup");
        assert_eq!(exit::code_of_error(&e), exit::FAILURE);
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("tax_authority"), "tax_authority");
        assert_eq!(segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
