//! `vault-cli audit verify --tiles URL`: fetches a log served as C2SP tlog-tiles (the
//! vault's `/checkpoint` and `/tile/...` routes, or any copy of them) and verifies it with
//! `audit::tiles::verify`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// How long one tile may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches the resources of a tiled log under one URL prefix.
pub(crate) struct Fetcher {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    prefix: String,
    token: Option<String>,
}

impl Fetcher {
    /// A fetcher of `url` (the log's prefix: `<url>/checkpoint`, `<url>/tile/...`),
    /// trusting only the CA in `ca` for https, sending `token` (an auditor token, for the
    /// entry bundles) only over https.
    pub(crate) fn new(
        url: &str,
        token: Option<String>,
        ca: Option<&PathBuf>,
    ) -> anyhow::Result<Self> {
        let prefix = url.trim_end_matches('/').to_owned();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(TIMEOUT);
        if prefix.starts_with("https://") {
            let ca = ca.context(
                "--tiles is an https:// URL: give --ca with the CA certificate (PEM) that signed the server's certificate (the vault's ca.pem)",
            )?;
            let tls = crate::client::tls_trusting(ca)?.with_no_client_auth();
            builder = builder.use_preconfigured_tls(tls);
        } else if prefix.starts_with("http://") {
            if token.is_some() {
                bail!("refusing to send the auditor token over plain http: use an https:// --tiles URL");
            }
        } else {
            bail!("--tiles must be an https:// (or http://) URL, got {prefix:?}");
        }
        let http = builder.build().context("building the HTTPS client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Self {
            runtime,
            http,
            prefix,
            token,
        })
    }

    /// The bytes at `path` under the prefix; an error says what the server answered.
    pub(crate) fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}/{path}", self.prefix);
        self.runtime.block_on(async {
            let mut req = self.http.get(&url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("the answer from {url} was cut short: {e}"))?;
            if status.is_success() {
                return Ok(body.to_vec());
            }
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => ": entry bundles need an auditor token (--token) unless the server runs with --public-entries",
                _ => "",
            };
            Err(format!("{url} answered {status} {detail}{hint}"))
        })
    }
}
