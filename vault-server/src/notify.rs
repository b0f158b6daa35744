//! Webhook delivery (docs/notifications.md): the active node posts the events vault-core
//! hands out (read from the audit log, or queued in its outbox for a retry) to their
//! endpoints as Standard Webhooks (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1a,...`), at most `--webhook-concurrency` at once per endpoint,
//! each within `--webhook-timeout`, and reports each outcome back to vault-core, which
//! keeps the order, the retries, the cursors and the outbox. Access never waits for a
//! receiver.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use vault_core::{Delivery, DeliveryKey, DeliveryOutcome, Vault, WebhookTarget};

use crate::app::App;

/// How often the active node looks for new events to deliver; a finished delivery looks
/// again at once (the next event of its citizen may be waiting for it).
const POLL: Duration = Duration::from_millis(20);
/// Delivery latencies kept for the quantiles in `/metrics`.
const LATENCY_WINDOW: usize = 4096;
/// A failure with the same reason is logged at most this often per endpoint.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// The longest answer body read from a receiver (it is discarded).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Default)]
struct Status {
    /// Attempts that ended, to record in the next round (one store write for all).
    done: Vec<(Delivery, DeliveryOutcome)>,
    /// From the event to its delivery.
    latencies: VecDeque<Duration>,
    /// The last failure per endpoint, in words, and when it was logged.
    last_error: Vec<(WebhookTarget, String, Instant)>,
}

/// The webhook client and this node's delivery state.
pub(crate) struct Notifying {
    client: reqwest::Client,
    concurrency: usize,
    status: Mutex<Status>,
    /// The events of the messages handed out and not yet recorded as done: changed and
    /// read only by the delivery round (in place: it holds up to concurrency x batch
    /// keys), and counted by `/metrics`.
    in_flight: Arc<Mutex<HashSet<DeliveryKey>>>,
    /// Wakes the delivery loop when a delivery ends.
    wake: tokio::sync::Notify,
}

impl Notifying {
    /// A client trusting the CA certificates in `ca` (PEM) for the receivers' TLS servers.
    pub(crate) fn new(
        ca: Option<&Path>,
        timeout: Duration,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(concurrency);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the webhook CA file {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            client: builder.build().context("the webhook HTTP client")?,
            concurrency,
            status: Mutex::new(Status::default()),
            in_flight: Arc::default(),
            wake: tokio::sync::Notify::new(),
        })
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers events while this node is active, until the process ends.
    pub(crate) async fn run(self: Arc<Self>, app: App) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.wake.notified() => {}
            }
            let Some(vault) = app.vault() else { continue };
            let done = std::mem::take(&mut self.status().done);
            let concurrency = self.concurrency;
            let v = vault.clone();
            let in_flight = self.in_flight.clone();
            let round = tokio::task::spawn_blocking(move || {
                // What ended is recorded before the next events are chosen, and stays
                // in flight until then (it must not be handed out again).
                let recorded = if done.is_empty() {
                    Ok(())
                } else {
                    v.notification_results(&done)
                };
                let mut in_flight = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                for (d, _) in &done {
                    for k in &d.rows {
                        in_flight.remove(k);
                    }
                }
                let due = v.notifications_due(&in_flight, concurrency);
                if let Ok(due) = &due {
                    for d in due {
                        in_flight.extend(d.rows.iter().cloned());
                    }
                }
                (recorded, due)
            })
            .await;
            let due = match round {
                Ok((recorded, due)) => {
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "cannot record notification deliveries; they will be sent again");
                    }
                    match due {
                        Ok(due) => due,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the events to deliver (the log or the outbox); retried at the next round");
                            continue;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "a notification round panicked");
                    continue;
                }
            };
            for d in due {
                tokio::spawn(self.clone().deliver(vault.clone(), d));
            }
        }
    }

    async fn deliver(self: Arc<Self>, vault: Arc<Vault>, d: Delivery) {
        let outcome = self.attempt(&vault, &d).await;
        let delivered = matches!(outcome, DeliveryOutcome::Delivered);
        match &outcome {
            DeliveryOutcome::Failed { error, .. } => self.warn(&d, error),
            DeliveryOutcome::Gone => tracing::warn!(
                endpoint = %d.target,
                "the endpoint answered 410 Gone: it is disabled until the operator sets it again"
            ),
            DeliveryOutcome::Delivered => {}
        }
        drop(vault);
        if delivered {
            self.clear_error(&d.target);
        }
        let mut s = self.status();
        s.done.push((d.clone(), outcome));
        self.wake.notify_one();
        if delivered {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            for at in &d.at {
                if s.latencies.len() == LATENCY_WINDOW {
                    s.latencies.pop_front();
                }
                s.latencies.push_back(now.saturating_sub(*at));
            }
        }
    }

    async fn attempt(&self, vault: &Vault, d: &Delivery) -> DeliveryOutcome {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = match vault.sign_notification(d, timestamp) {
            Ok(s) => s,
            Err(e) => {
                return DeliveryOutcome::Failed {
                    error: format!("cannot sign: {e}"),
                    retry_after: None,
                }
            }
        };
        let sent = self
            .client
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                // Read (a bounded part of) the answer so the connection is reused.
                let mut r = r;
                let mut read = 0usize;
                while let Ok(Some(chunk)) = r.chunk().await {
                    read += chunk.len();
                    if read > MAX_ANSWER {
                        break;
                    }
                }
                DeliveryOutcome::Delivered
            }
            Ok(r) if r.status() == reqwest::StatusCode::GONE => DeliveryOutcome::Gone,
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                DeliveryOutcome::Failed {
                    error: format!("the endpoint answered {}", r.status()),
                    retry_after,
                }
            }
            Err(e) => DeliveryOutcome::Failed {
                error: describe(&e),
                retry_after: None,
            },
        }
    }

    fn warn(&self, d: &Delivery, error: &str) {
        let mut s = self.status();
        let now = Instant::now();
        let repeat = s
            .last_error
            .iter()
            .any(|(t, e, at)| *t == d.target && e == error && now.duration_since(*at) < WARN_EVERY);
        s.last_error.retain(|(t, _, _)| *t != d.target);
        s.last_error.push((d.target.clone(), error.to_owned(), now));
        if !repeat {
            tracing::warn!(
                endpoint = %d.target,
                event = %d.id,
                attempts = d.attempts + 1,
                error,
                "a notification was not delivered; it will be retried"
            );
        }
    }

    /// The delivery lines of `/metrics`.
    pub(crate) fn render_metrics(&self, vault: Option<&Vault>, out: &mut String) {
        let s = self.status();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        if let Some(v) = vault {
            let n = v.notification_stats();
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            for (name, kind, help, value) in [
                ("vault_notifications_queued", "gauge", "Events waiting for delivery (due or waiting for a retry).", n.queued as f64),
                ("vault_notifications_scheduled", "gauge", "Events scheduled for later (consent expiries).", n.scheduled as f64),
                ("vault_notifications_delivered_total", "counter", "Events delivered since this node opened the vault.", n.delivered as f64),
                ("vault_notifications_failed_total", "counter", "Events given up (after 72 h of retries) or dropped because their stored row failed its check.", n.failed as f64),
                ("vault_notification_attempts_failed_total", "counter", "Delivery attempts that failed (each is retried).", n.failed_attempts as f64),
                ("vault_notifications_oldest_queued_seconds", "gauge", "Age of the oldest event waiting for delivery (0: none waits).",
                 n.oldest_queued_ms.map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0)),
            ] {
                line(format!("# HELP {name} {help}"));
                line(format!("# TYPE {name} {kind}"));
                line(format!("{name} {value}"));
            }
        }
        line("# HELP vault_notifications_in_flight Events in deliveries under way (a batch counts its events).".into());
        line("# TYPE vault_notifications_in_flight gauge".into());
        line(format!(
            "vault_notifications_in_flight {}",
            self.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
        ));
        line("# HELP vault_notification_latency_seconds From an event to its delivery, over the last 4096 delivered.".into());
        line("# TYPE vault_notification_latency_seconds summary".into());
        let mut lat: Vec<Duration> = s.latencies.iter().copied().collect();
        lat.sort();
        for q in [0.5, 0.99] {
            let v = if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64()
            };
            line(format!(
                "vault_notification_latency_seconds{{quantile=\"{q}\"}} {v}"
            ));
        }
        line("# HELP vault_notification_endpoint_error 1 for an endpoint whose last attempt failed, with the reason.".into());
        line("# TYPE vault_notification_endpoint_error gauge".into());
        for (t, e, _) in &s.last_error {
            line(format!(
                "vault_notification_endpoint_error{{endpoint=\"{}\",error=\"{}\"}} 1",
                label(&t.to_string()),
                label(e)
            ));
        }
    }

    /// Forgets an endpoint's last error once it delivered again.
    fn clear_error(&self, target: &WebhookTarget) {
        self.status().last_error.retain(|(t, _, _)| t != target);
    }
}

/// A Prometheus label value: quotes, backslashes and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A request error in words, with a hint when the receiver's certificate is not trusted.
fn describe(e: &reqwest::Error) -> String {
    let mut out = crate::error::request_failure(e);
    if out.contains("UnknownIssuer") || out.contains("certificate") {
        out.push_str(" (give the CA certificates of the endpoint's TLS server with --webhook-ca)");
    }
    out
}
