//! Shared helpers for the end-to-end tests: build and start the real binaries, and talk to
//! the running vault over real TLS with real client certificates.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Path of a workspace binary, built once per test process with the same cargo and
/// profile as the tests (so `cargo test` alone is enough), with vault-core's test hooks
/// (the failpoints some tests arm in the server process).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "-p", "vault-server", "-p", "vault-cli"])
            .args(["-p", "vault-witness"])
            .args(["--features", "vault-core/test-hooks"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building vault-server, vault-cli and vault-witness failed"
        );
        // target/<profile>/deps/tests-xxxx -> target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        exe.parent()
            .and_then(Path::parent)
            .expect("test binaries live in target/<profile>/deps")
            .to_path_buf()
    });
    dir.join(name)
}

/// One agency's credentials as the dev mode writes them.
#[derive(Clone, Debug, Deserialize)]
pub struct AgencyCredentials {
    /// Agency id.
    pub id: String,
    /// Client certificate, PEM file.
    pub cert: PathBuf,
    /// Private key, PEM file.
    pub key: PathBuf,
}

/// A certificate and key pair on disk.
#[derive(Clone, Debug, Deserialize)]
pub struct CertKey {
    /// Certificate, PEM file.
    pub cert: PathBuf,
    /// Private key, PEM file.
    pub key: PathBuf,
}

/// A citizen and their bearer token.
#[derive(Clone, Debug, Deserialize)]
pub struct CitizenCredentials {
    /// Citizen id.
    pub id: String,
    /// Bearer token.
    pub token: String,
}

/// What `vault-server --dev` writes to `<data>/dev/credentials.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Credentials {
    /// Base URL.
    pub url: String,
    /// The vault CA certificate (trust anchor for the server certificate), PEM file.
    pub ca_cert: PathBuf,
    /// The CA's private key (dev mode only; lets tests mint edge-case certificates).
    pub ca_key: PathBuf,
    /// Demo agencies.
    pub agencies: Vec<AgencyCredentials>,
    /// The operator's client certificate.
    pub operator: CertKey,
    /// Demo citizens.
    pub citizens: Vec<CitizenCredentials>,
    /// An auditor token.
    pub auditor_token: String,
    /// The dev passphrase.
    pub passphrase: String,
}

/// A running `vault-server` process on a data directory of its own.
pub struct Vault {
    child: Option<Child>,
    /// The data directory (removed when the test ends).
    pub dir: tempfile::TempDir,
    /// Base URL, e.g. `https://localhost:43121`.
    pub url: String,
    /// The dev credentials.
    pub creds: Credentials,
    /// The PostgreSQL store's URL (`--store`), if the vault's store is not sled.
    pub store: Option<String>,
}

/// Waits (up to 60 s) for a server started with its stdout piped to print
/// `listening on URL`; returns the URL.
pub fn wait_for_listening(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("server stdout is piped")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("the server did not print `listening on ...` within 60 s"))
}

impl Vault {
    /// Starts `vault-server --dev` on a fresh data directory and a free port.
    pub fn start_dev() -> anyhow::Result<Vault> {
        Self::start_dev_with(&[])
    }

    /// Like [`Vault::start_dev`], with extra environment variables for the server.
    pub fn start_dev_with(env: &[(&str, &str)]) -> anyhow::Result<Vault> {
        Self::start_dev_with_args(&[], env)
    }

    /// Like [`Vault::start_dev`], with extra command-line arguments (e.g.
    /// `["--agency-rate", "5"]`) and environment variables for the server.
    pub fn start_dev_with_args(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Vault> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let mut child = Command::new(binary("vault-server"))
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting vault-server")?;
        let url = wait_for_listening(&mut child)?;
        let creds: Credentials = serde_json::from_slice(
            &std::fs::read(data.join("dev").join("credentials.json"))
                .context("reading dev credentials")?,
        )?;
        let store = args
            .iter()
            .position(|a| *a == "--store")
            .and_then(|i| args.get(i + 1))
            .map(|s| (*s).to_owned());
        Ok(Vault {
            child: Some(child),
            dir,
            url,
            creds,
            store,
        })
    }

    /// Runs `vault-cli` against this server as its operator (server, CA, certificate and
    /// passphrase from the environment variables it reads).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(None, args)
    }

    /// Like [`Vault::cli`], presenting the operator certificate and key in `operator`
    /// (`operator.pem`, `operator.key`) instead of the dev ones when given.
    pub fn cli_as(&self, operator: Option<&Path>, args: &[&str]) -> Output {
        let (cert, key) = match operator {
            Some(d) => (d.join("operator.pem"), d.join("operator.key")),
            None => (
                self.creds.operator.cert.clone(),
                self.creds.operator.key.clone(),
            ),
        };
        Command::new(binary("vault-cli"))
            .args(args)
            .env("VAULT_SERVER", &self.url)
            .env("VAULT_CA", &self.creds.ca_cert)
            .env("VAULT_CERT", cert)
            .env("VAULT_KEY", key)
            .env("VAULT_PASSPHRASE", &self.creds.passphrase)
            .env_remove("VAULT_POLICIES")
            .output()
            .expect("runs vault-cli")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the server with SIGKILL (no shutdown path runs).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data directory (not dev mode: it unseals with
    /// the dev passphrase), on a new free port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_with_args(&[])
    }

    /// Like [`Vault::restart`], with extra command-line arguments for the server.
    pub fn restart_with_args(&mut self, args: &[&str]) -> anyhow::Result<()> {
        self.kill();
        let mut child = Command::new(binary("vault-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .args(self.store.iter().flat_map(|s| ["--store", s.as_str()]))
            .args(args)
            .env("VAULT_PASSPHRASE", &self.creds.passphrase)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("restarting vault-server")?;
        self.url = wait_for_listening(&mut child)?;
        self.child = Some(child);
        Ok(())
    }

    /// The agency's credentials by id.
    pub fn agency(&self, id: &str) -> &AgencyCredentials {
        self.creds
            .agencies
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("dev mode enrols agency {id}"))
    }

    /// An HTTPS client trusting the vault CA and presenting no certificate.
    pub fn client(&self) -> reqwest::Client {
        client(&self.creds.ca_cert, None).expect("client builds")
    }

    /// An HTTPS client presenting agency `id`'s certificate.
    pub fn agency_client(&self, id: &str) -> reqwest::Client {
        let a = self.agency(id);
        client(&self.creds.ca_cert, Some((&a.cert, &a.key))).expect("client builds")
    }

    /// An HTTPS client presenting the operator certificate.
    pub fn operator_client(&self) -> reqwest::Client {
        let o = &self.creds.operator;
        client(&self.creds.ca_cert, Some((&o.cert, &o.key))).expect("client builds")
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ring provider the whole project uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading PEM certificates")
}

/// A TLS client config trusting `ca_pem`, with an optional client certificate chain and key
/// given as PEM bytes.
pub fn tls_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca_pem)? {
        roots.add(c)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_slice(key).context("no private key in PEM")?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

/// A reqwest client over [`tls_config`], from files.
pub fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> anyhow::Result<reqwest::Client> {
    let ca = std::fs::read(ca)?;
    let id = match identity {
        None => None,
        Some((c, k)) => Some((std::fs::read(c)?, std::fs::read(k)?)),
    };
    client_from_pem(&ca, id.as_ref().map(|(c, k)| (&c[..], &k[..])))
}

/// A reqwest client over [`tls_config`], from PEM bytes.
pub fn client_from_pem(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> anyhow::Result<reqwest::Client> {
    let tls = tls_config(ca_pem, identity)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTPS client")
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("condition not met within {timeout:?}")
}

/// Sends `req` and returns the status and the JSON body (`Null` when the body is empty or
/// not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<(u16, serde_json::Value)> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

impl Vault {
    /// The first demo citizen's id and token.
    pub fn citizen(&self, i: usize) -> (&str, &str) {
        let c = &self.creds.citizens[i];
        (&c.id, &c.token)
    }

    /// A GET as citizen `i`.
    pub fn as_citizen(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client()
            .request(method, self.at(path))
            .bearer_auth(self.citizen(i).1)
    }

    /// The text of a public route (no client certificate), e.g. `/v1/audit/key`; a non-2xx
    /// answer is an error.
    pub async fn public_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self
            .client()
            .get(self.at(path))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The current audit log size, from the public checkpoint after asking the operator
    /// to sign one now.
    pub async fn audit_size(&self) -> anyhow::Result<u64> {
        let note = self
            .operator_client()
            .post(self.at("/v1/admin/checkpoint"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        note.lines()
            .nth(1)
            .context("checkpoint has a size line")?
            .parse()
            .context("size is a number")
    }

    /// Fetches the auditor export (operator route) and runs `vault-cli audit verify` on it
    /// with the published log key; returns the export and the verifier's output.
    pub async fn export_and_verify(&self) -> anyhow::Result<(Vec<u8>, std::process::Output)> {
        let key = self.public_text("/v1/audit/key").await?;
        let export = self
            .operator_client()
            .get(self.at("/v1/admin/audit/export"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec();
        let path = self.dir.path().join("verify.export");
        std::fs::write(&path, &export)?;
        let out = Command::new(binary("vault-cli"))
            .args(["audit", "verify"])
            .arg(&path)
            .args(["--key", key.trim()])
            .output()?;
        Ok((export, out))
    }
}

/// A `vault-server` process on a data directory (not `--dev`), killed when dropped; `.1` is
/// its URL.
pub struct Server(pub Child, pub String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vault-server --data-dir DIR` with `passphrase` and waits until it listens.
pub fn start_server(dir: &Path, passphrase: &str) -> Server {
    start_server_with(dir, passphrase, &[])
}

/// Like [`start_server`], with extra arguments (e.g. `["--store", URL]`).
pub fn start_server_with(dir: &Path, passphrase: &str, args: &[&str]) -> Server {
    let mut child = Command::new(binary("vault-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("VAULT_PASSPHRASE", passphrase)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vault-server starts");
    let url = wait_for_listening(&mut child).expect("the server listens within 60 s");
    Server(child, url)
}

/// A base64 hash of a proof or entry answer (`leaf_hash`, an element of `hashes`).
pub fn hash_of(v: &serde_json::Value) -> audit::Hash {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// The `hashes` of a proof answer.
pub fn hashes_of(proof: &serde_json::Value) -> Vec<audit::Hash> {
    proof["hashes"]
        .as_array()
        .expect("hashes is an array")
        .iter()
        .map(hash_of)
        .collect()
}
