//! Witness cosigning (C2SP tlog-witness v1.0.0, docs/witness.md): the active node submits
//! each new signed checkpoint to the witnesses of its witness policy (`--witness-policy`,
//! C2SP tlog-policy), with a consistency proof from each witness's last cosigned size, and
//! publishes the checkpoint with their cosignatures once they meet the policy's quorum
//! ([`vault_core::Vault::publish_witnessed`], which checks it). Access never waits for
//! witnesses: a witness that is down only holds back the publication of newer checkpoints,
//! which `/healthz` and `/metrics` report.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use vault_core::audit::witness::{accept_cosignature, add_checkpoint_body};
use vault_core::audit::{self, Checkpoint, WitnessPolicy};
use vault_core::Vault;

use crate::app::App;

/// How often the active node looks for a new signed checkpoint to submit.
const POLL: Duration = Duration::from_millis(50);
/// The pause before a round that follows one which did not reach quorum.
const ROUND_RETRY: Duration = Duration::from_secs(1);
/// A witness that failed is retried after this, doubled at each failure up to
/// [`MAX_BACKOFF`], with up to a quarter more at random.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// After this long without a witnessed checkpoint covering the signed one, `/healthz`
/// says the log is behind.
const BEHIND_AFTER: Duration = Duration::from_secs(10);
/// Publication latencies kept for the quantiles in `/metrics`.
const LATENCY_WINDOW: usize = 1024;

/// A warning repeated with the same reason is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct WitnessStatus {
    /// The size the witness last said it cosigned (409) or that it cosigned for us.
    known_size: u64,
    cosignatures: u64,
    failures: u64,
    consecutive_failures: u32,
    retry_at: Option<Instant>,
    last_ok: Option<SystemTime>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Status {
    witnesses: Vec<WitnessStatus>,
    witnessed_size: u64,
    signed_size: u64,
    /// Since when the latest signed checkpoint has had no witnessed one covering it.
    behind_since: Option<Instant>,
    next_round: Option<Instant>,
    latencies: VecDeque<Duration>,
    published: u64,
    /// The last warning logged about publication, and when.
    last_warning: Option<(Instant, String)>,
}

/// The witness policy and the cosigning state of this node.
pub(crate) struct Witnessing {
    policy: Arc<WitnessPolicy>,
    /// The policy as published at `/v1/audit/witness-policy`: with this log's `log` line.
    published_policy: String,
    client: reqwest::Client,
    timeout: Duration,
    status: Mutex<Status>,
}

impl Witnessing {
    /// Reads the witness policy file for the log with verifier key `log_vkey`: its `log`
    /// lines, if any, must be this log's; every witness needs its submission URL.
    pub(crate) fn load(
        path: &Path,
        log_vkey: &str,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the witness policy {}", path.display()))?;
        let policy = WitnessPolicy::parse(&text)
            .with_context(|| format!("the witness policy {}", path.display()))?;
        let own = audit::NoteVerifier::parse(log_vkey).context("this vault's log key")?;
        for log in policy.logs() {
            if log.verifier.public_key() != own.public_key() {
                bail!(
                    "the witness policy {} lists the log `{}`, which is not this vault's log \
                     ({log_vkey}): list only this vault's key, or no `log` line",
                    path.display(),
                    log.vkey
                );
            }
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the witness CA file {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        for w in policy.witnesses() {
            let Some(url) = &w.url else {
                bail!(
                    "witness `{}` in {} has no URL: add its submission prefix \
                     (`witness {} <vkey> https://...`)",
                    w.name,
                    path.display(),
                    w.name
                );
            };
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!(
                    "witness `{}`: URL `{url}` is not http:// or https://",
                    w.name
                );
            }
            if url.starts_with("https://") && ca.is_none() {
                bail!(
                    "witness `{}` is at {url}: give the CA certificates of its TLS server \
                     with --witness-ca",
                    w.name
                );
            }
        }
        let mut published_policy = String::new();
        if policy.logs().is_empty() {
            let _ = writeln!(published_policy, "log {log_vkey}");
        }
        published_policy.push_str(&text);
        if !published_policy.ends_with('\n') {
            published_policy.push('\n');
        }
        // The policy checked is the published one: with this log's key.
        let policy = WitnessPolicy::parse(&published_policy)
            .with_context(|| format!("the witness policy {}", path.display()))?;
        let status = Status {
            witnesses: policy
                .witnesses()
                .iter()
                .map(|_| WitnessStatus::default())
                .collect(),
            ..Status::default()
        };
        Ok(Self {
            policy: Arc::new(policy),
            published_policy,
            client: builder.build().context("the witness HTTP client")?,
            timeout,
            status: Mutex::new(status),
        })
    }

    /// Whether checkpoints are published only once witnessed (`quorum` is not `none`).
    pub(crate) fn required(&self) -> bool {
        !self.policy.needs_no_witness()
    }

    /// The policy, as published.
    pub(crate) fn published_policy(&self) -> &str {
        &self.published_policy
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Submits new checkpoints while this node is active, until the process ends.
    pub(crate) async fn run(self: Arc<Self>, app: App) {
        if !self.required() {
            return;
        }
        loop {
            tokio::time::sleep(POLL).await;
            let Some(vault) = app.vault() else { continue };
            self.round(&vault).await;
        }
    }

    async fn round(self: &Arc<Self>, vault: &Arc<Vault>) {
        let (note, signed_at) = vault.latest_checkpoint_signed_at();
        let Some(size) = checkpoint_size(&note) else {
            return;
        };
        let witnessed = vault
            .witnessed_checkpoint()
            .as_deref()
            .and_then(checkpoint_size);
        {
            let mut s = self.status();
            s.signed_size = size;
            s.witnessed_size = witnessed.unwrap_or(0);
            if witnessed.is_some_and(|w| w >= size) {
                s.behind_since = None;
                return;
            }
            let now = Instant::now();
            s.behind_since.get_or_insert(signed_at.unwrap_or(now));
            if s.next_round.is_some_and(|t| t > now) {
                return;
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.policy.witnesses().len() {
            let me = self.clone();
            let vault = vault.clone();
            let note = note.clone();
            tasks.spawn(async move { me.submit(&vault, i, &note, size).await });
        }
        let mut cosigned = note.clone();
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(line)) = done {
                cosigned.push_str(&line);
            }
        }
        let v = vault.clone();
        let policy = self.policy.clone();
        let published =
            tokio::task::spawn_blocking(move || v.publish_witnessed(&cosigned, &policy)).await;
        let mut s = self.status();
        match published {
            Ok(Ok(_)) => {
                s.witnessed_size = size;
                s.behind_since = None;
                s.next_round = None;
                s.published += 1;
                if let Some(at) = signed_at {
                    if s.latencies.len() == LATENCY_WINDOW {
                        s.latencies.pop_front();
                    }
                    s.latencies.push_back(at.elapsed());
                }
            }
            Ok(Err(e)) => {
                s.next_round = Some(Instant::now() + ROUND_RETRY);
                let reason = e.to_string();
                let repeat = s
                    .last_warning
                    .as_ref()
                    .is_some_and(|(at, r)| *r == reason && at.elapsed() < WARN_EVERY);
                if !repeat {
                    tracing::warn!(size, error = %reason, "checkpoint not published");
                    s.last_warning = Some((Instant::now(), reason));
                }
            }
            Err(e) => {
                s.next_round = Some(Instant::now() + ROUND_RETRY);
                tracing::error!(error = %e, "publishing a witnessed checkpoint panicked");
            }
        }
    }

    /// One witness's cosignature on `note` (of `size`), or `None` (recorded as its error).
    async fn submit(&self, vault: &Arc<Vault>, i: usize, note: &str, size: u64) -> Option<String> {
        let w = &self.policy.witnesses()[i];
        let url = format!(
            "{}/add-checkpoint",
            w.url.as_deref().unwrap_or_default().trim_end_matches('/')
        );
        if self.status().witnesses[i]
            .retry_at
            .is_some_and(|t| t > Instant::now())
        {
            return None;
        }
        // A 409 tells the witness's size; the second attempt uses it.
        for _ in 0..2 {
            let old = self.status().witnesses[i].known_size;
            if old > size {
                self.failed(
                    i,
                    format!(
                        "the witness has cosigned size {old}, larger than this log's {size}: \
                         the log was rolled back or forked (a restored backup?) since it \
                         cosigned; see docs/witness.md"
                    ),
                );
                return None;
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                let v = vault.clone();
                match tokio::task::spawn_blocking(move || v.consistency_proof(old, size)).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        self.failed(i, format!("no consistency proof from {old}: {e}"));
                        return None;
                    }
                    Err(e) => {
                        self.failed(i, format!("no consistency proof from {old}: {e}"));
                        return None;
                    }
                }
            };
            let body = add_checkpoint_body(old, &proof, note);
            let answer = self
                .client
                .post(&url)
                .timeout(self.timeout)
                .header("content-type", "text/plain; charset=utf-8")
                .body(body)
                .send()
                .await;
            let resp = match answer {
                Ok(r) => r,
                Err(e) => {
                    self.failed(i, format!("{url}: {}", crate::error::request_failure(&e)));
                    return None;
                }
            };
            let status = resp.status().as_u16();
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    self.failed(
                        i,
                        format!(
                            "{url}: reading the answer: {}",
                            crate::error::request_failure(&e)
                        ),
                    );
                    return None;
                }
            };
            match status {
                200 => match accept_cosignature(note, &text, &w.verifier) {
                    Ok(line) => {
                        let mut s = self.status();
                        let ws = &mut s.witnesses[i];
                        ws.known_size = size;
                        ws.cosignatures += 1;
                        ws.consecutive_failures = 0;
                        ws.retry_at = None;
                        ws.last_ok = Some(SystemTime::now());
                        ws.last_error = None;
                        return Some(line);
                    }
                    Err(e) => {
                        self.failed(i, format!("{url}: {e}"));
                        return None;
                    }
                },
                409 => match text.trim_end_matches('\n').parse::<u64>() {
                    Ok(n) => self.status().witnesses[i].known_size = n,
                    Err(_) => {
                        self.failed(i, format!("{url}: 409 without a size"));
                        return None;
                    }
                },
                _ => {
                    let first = text.lines().next().unwrap_or_default();
                    let first: String = first.chars().take(300).collect();
                    self.failed(i, format!("{url}: HTTP {status}: {first}"));
                    return None;
                }
            }
        }
        self.failed(i, format!("{url}: its size changed twice during one round"));
        None
    }

    fn failed(&self, i: usize, reason: String) {
        let name = &self.policy.witnesses()[i].name;
        let mut s = self.status();
        let ws = &mut s.witnesses[i];
        if ws.last_error.as_ref() != Some(&reason) || ws.consecutive_failures.is_multiple_of(16) {
            tracing::warn!(witness = %name, %reason, "witness did not cosign");
        }
        ws.failures += 1;
        ws.consecutive_failures = ws.consecutive_failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << ws.consecutive_failures.min(7).saturating_sub(1))
            .min(MAX_BACKOFF);
        // Jitter from the clock's nanoseconds: enough to spread retries of many nodes.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = backoff.mul_f64(f64::from(nanos % 1000) / 4000.0);
        ws.retry_at = Some(Instant::now() + backoff + jitter);
        ws.last_error = Some(reason);
    }

    /// The `witnessing` part of `/healthz`.
    pub(crate) fn health(&self) -> Value {
        let s = self.status();
        let behind = s.behind_since.map(|t| t.elapsed());
        let witnesses: Vec<Value> = self
            .policy
            .witnesses()
            .iter()
            .zip(&s.witnesses)
            .map(|(w, ws)| {
                json!({
                    "name": w.name,
                    "url": w.url,
                    "ok": ws.last_error.is_none() && ws.last_ok.is_some(),
                    "cosigned_size": ws.known_size,
                    "last_error": ws.last_error,
                })
            })
            .collect();
        json!({
            "status": if behind.is_some_and(|b| b >= BEHIND_AFTER) { "behind" } else { "ok" },
            "witnessed_size": s.witnessed_size,
            "signed_size": s.signed_size,
            "behind_seconds": behind.map_or(0.0, |b| b.as_secs_f64()),
            "witnesses": witnesses,
        })
    }

    /// The witness lines of `/metrics`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let s = self.status();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line("# HELP vault_witness_witnessed_size Size of the last checkpoint published with a quorum of witness cosignatures.".into());
        line("# TYPE vault_witness_witnessed_size gauge".into());
        line(format!("vault_witness_witnessed_size {}", s.witnessed_size));
        line("# HELP vault_witness_behind_seconds How long the latest signed checkpoint has waited for a witnessed one (0: none waits).".into());
        line("# TYPE vault_witness_behind_seconds gauge".into());
        line(format!(
            "vault_witness_behind_seconds {}",
            s.behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64())
        ));
        line(
            "# HELP vault_witness_up 1 if the witness's last answer was a valid cosignature."
                .into(),
        );
        line("# TYPE vault_witness_up gauge".into());
        for (w, ws) in self.policy.witnesses().iter().zip(&s.witnesses) {
            let up = ws.last_error.is_none() && ws.last_ok.is_some();
            line(format!(
                "vault_witness_up{{witness=\"{}\"}} {}",
                w.name,
                u8::from(up)
            ));
        }
        line(
            "# HELP vault_witness_cosignatures_total Valid cosignatures received, by witness."
                .into(),
        );
        line("# TYPE vault_witness_cosignatures_total counter".into());
        for (w, ws) in self.policy.witnesses().iter().zip(&s.witnesses) {
            line(format!(
                "vault_witness_cosignatures_total{{witness=\"{}\"}} {}",
                w.name, ws.cosignatures
            ));
        }
        line("# HELP vault_witness_failures_total Submissions without a valid cosignature, by witness.".into());
        line("# TYPE vault_witness_failures_total counter".into());
        for (w, ws) in self.policy.witnesses().iter().zip(&s.witnesses) {
            line(format!(
                "vault_witness_failures_total{{witness=\"{}\"}} {}",
                w.name, ws.failures
            ));
        }
        let mut sorted: Vec<Duration> = s.latencies.iter().copied().collect();
        sorted.sort();
        line("# HELP vault_witness_publish_seconds From signing a checkpoint to publishing it witnessed (last 1024).".into());
        line("# TYPE vault_witness_publish_seconds summary".into());
        for q in [0.5, 0.99] {
            let v = quantile(&sorted, q).map_or(f64::NAN, |d| d.as_secs_f64());
            line(format!(
                "vault_witness_publish_seconds{{quantile=\"{q}\"}} {v}"
            ));
        }
        line(format!(
            "vault_witness_publish_seconds_count {}",
            s.published
        ));
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn checkpoint_size(note: &str) -> Option<u64> {
    let (text, _) = note.split_once("\n\n")?;
    Checkpoint::parse(&format!("{text}\n")).ok().map(|c| c.size)
}
