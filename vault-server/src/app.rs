//! Shared state, the authentication extractors, and the bridge from async handlers to
//! the engine's blocking calls (which wait for the group-committed fsync).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use vault_core::{Bearer, CitizenToken, Fingerprint, Vault, VaultError};

use crate::error::ApiError;
use crate::limits::{Quota, Quotas, Rates};
use crate::metrics::Metrics;
use crate::serve::PeerCertificate;
use crate::tls::ServerCert;

/// The server renews its certificate when fewer than this remain before it expires.
pub(crate) const RENEW_BEFORE: Duration =
    Duration::from_secs(vault_core::SERVER_CERT_RENEW_BEFORE_DAYS * 86_400);
/// How often the running server checks whether its certificate is due for renewal.
pub(crate) const RENEW_CHECK_EVERY: Duration = Duration::from_secs(86_400);

/// The state every handler sees.
pub(crate) type App = Arc<AppState>;

/// Process-wide state.
pub(crate) struct AppState {
    /// The only long-lived handle on the vault: sealing drops it, and with it every key.
    vault: RwLock<Option<Arc<Vault>>>,
    /// What TLS answers with: the stored server certificate and key while unsealed, the
    /// sealed-mode ones (a key never stored, made at seal) while sealed.
    pub(crate) server_cert: Arc<ServerCert>,
    pub(crate) metrics: Metrics,
    /// Request quotas by caller.
    pub(crate) quotas: Quotas,
    /// Runs access decisions.
    pub(crate) decider: Decider,
    /// Kept while sealed, so the operator can still unseal.
    operator: Option<Fingerprint>,
    /// Failed unseal attempts since the last successful one. A sealed vault has no log to
    /// write to, so they are counted here and recorded in the next unseal's entry.
    unseal_failures: Mutex<u64>,
    /// The data directory an unseal opens, with its store's settings (`--cache-mb`,
    /// `--store`).
    data_dir: Mutex<Option<vault_core::DataDir>>,
    /// A vault on PostgreSQL: this node's role among several (`cluster.rs`).
    pub(crate) cluster: crate::cluster::Cluster,
    /// A standby's read-only view of the log (the public audit routes).
    standby_view: RwLock<Option<Arc<vault_core::Standby>>>,
    /// The witness policy and cosigning state (`--witness-policy`), if any.
    witnessing: std::sync::OnceLock<Arc<crate::witness::Witnessing>>,
    /// Webhook delivery (`notify.rs`).
    notifying: std::sync::OnceLock<Arc<crate::notify::Notifying>>,
    /// Permits for [`public_blocking`] (at most [`PUBLIC_READS`] at once).
    public_reads: tokio::sync::Semaphore,
    /// Full tiles already served (their bytes never change).
    pub(crate) tiles: crate::tile_cache::TileCache,
}

impl AppState {
    pub(crate) fn new(
        vault: Option<Arc<Vault>>,
        server_cert: Arc<ServerCert>,
        rates: Rates,
    ) -> App {
        Arc::new(AppState {
            server_cert,
            operator: vault.as_ref().map(|v| v.operator_fingerprint()),
            data_dir: Mutex::new(
                vault
                    .as_ref()
                    .map(|v| vault_core::DataDir::new(v.data_dir())),
            ),
            vault: RwLock::new(vault),
            cluster: Default::default(),
            standby_view: RwLock::new(None),
            witnessing: std::sync::OnceLock::new(),
            notifying: std::sync::OnceLock::new(),
            public_reads: tokio::sync::Semaphore::new(PUBLIC_READS),
            tiles: Default::default(),
            unseal_failures: Mutex::new(0),
            metrics: Metrics::default(),
            quotas: Quotas::new(rates),
            decider: Decider::start(),
        })
    }

    /// Seals the vault: it stops serving data (503) and its keys are dropped (zeroized)
    /// once the requests in flight finish. TLS answers from then on with the sealed-mode
    /// certificate (a new key, never stored), so the stored server key goes with the
    /// vault. Its entry (`vault.seal`, naming the sealed-mode certificate) is written
    /// first, while the vault is still open; sealing goes on even if that entry cannot be
    /// written (the error is logged), since refusing to seal would keep the keys in memory.
    /// Returns `None` if it was sealed already, else the entry's index or the append's
    /// error (blocking: run it off the async threads).
    pub(crate) fn seal(&self) -> Option<Result<u64, VaultError>> {
        let mut slot = self
            .vault
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = slot.take()?;
        // A node on PostgreSQL forgets its passphrase: sealed, it takes nothing over.
        self.cluster.forget_passphrase();
        self.set_standby_view(None);
        let sealed_cert = v.sealed_server_identity();
        let entry = v.record_seal(sealed_cert.as_ref().ok().map(|(_, fp)| fp));
        if let Err(e) = &entry {
            tracing::error!(error = %e, "sealed, but the seal's audit entry was not written");
        }
        let swapped = sealed_cert
            .map_err(anyhow::Error::from)
            .and_then(|(identity, _)| self.server_cert.replace(identity));
        if let Err(e) = swapped {
            tracing::error!(
                error = %e,
                "sealed, but no sealed-mode certificate could be made: the stored server key stays in memory until the next unseal"
            );
        }
        v.shutdown();
        Some(entry)
    }

    /// Drops the vault at process exit, without an entry: like the start of the process
    /// with its passphrase, the end is not an operator's seal.
    pub(crate) fn close(&self) {
        let mut slot = self
            .vault
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = slot.take() {
            v.shutdown();
        }
    }

    /// Unseals the sealed vault with `passphrase` (blocking: run it off the async threads);
    /// returns the index of its entry (`vault.unseal`), which names the failed attempts
    /// since the last successful unseal.
    pub(crate) fn unseal(&self, passphrase: &str) -> Result<u64, ApiError> {
        let mut slot = self
            .vault
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_sealed",
                "the vault is already unsealed",
            ));
        }
        let dir = self
            .data_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "no_data_dir",
                    "this server has no vault to unseal",
                )
            })?;
        let mut failures = self
            .unseal_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let vault = match dir.open(passphrase) {
            Ok(v) => Arc::new(v),
            Err(e) if e.lease_holder().is_some() => {
                // Another node is active: this one waits as its standby.
                let holder = e.lease_holder().unwrap_or_default().to_owned();
                self.cluster.standby(passphrase, &holder);
                return Err(crate::cluster::standby_error(&holder));
            }
            Err(e) => {
                *failures = failures.saturating_add(1);
                tracing::warn!(failed_attempts = *failures, error = %e, "unseal attempt failed");
                return Err(ApiError::from(e));
            }
        };
        // Serving starts only once the unseal's entry is durable.
        let index = vault.record_unseal(*failures).map_err(|e| {
            vault.shutdown();
            ApiError::from(e)
        })?;
        *failures = 0;
        renew_server_cert(&vault, RENEW_BEFORE);
        if let Err(e) = vault
            .server_tls_identity()
            .map_err(anyhow::Error::from)
            .and_then(|identity| self.server_cert.replace(identity))
        {
            tracing::error!(error = %e, "unsealed, but TLS still answers with the sealed-mode certificate");
        }
        vault.start_background_signer();
        if dir.postgres().is_some() {
            self.cluster.active(passphrase);
        }
        *slot = Some(vault);
        Ok(index)
    }

    /// Renews the server certificate if fewer than `renew_before` remain (see
    /// [`Vault::renew_server_cert_if_due`]) and answers new handshakes with the new one;
    /// returns the renewal's entry, if any. Does nothing while sealed (the unseal renews).
    /// Blocking: run it off the async threads.
    pub(crate) fn renew_server_cert(&self, renew_before: Duration) -> Option<u64> {
        // Held until the swap, so a seal cannot come between and be undone by it.
        let slot = self
            .vault
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let vault = slot.as_ref()?;
        let index = renew_server_cert(vault, renew_before)?;
        if let Err(e) = vault
            .server_tls_identity()
            .map_err(anyhow::Error::from)
            .and_then(|identity| self.server_cert.replace(identity))
        {
            tracing::error!(error = %e, "the renewed server certificate is not in use");
        }
        Some(index)
    }

    /// The data directory later unseals open, with its store's settings (the first open
    /// is the caller's).
    pub(crate) fn set_data_dir(&self, dir: vault_core::DataDir) {
        *self
            .data_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir);
    }

    /// The unsealed vault, or `None` while sealed.
    pub(crate) fn vault(&self) -> Option<Arc<Vault>> {
        match self.vault.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The vault, or the answer for a node that serves none: sealed, or a standby.
    pub(crate) fn serving(&self) -> Result<Arc<Vault>, ApiError> {
        self.vault().ok_or_else(|| match self.cluster.standby_of() {
            Some(active) => crate::cluster::standby_error(&active),
            None => sealed(),
        })
    }

    /// The public side of the log: the vault's, or a standby's read-only view of it.
    pub(crate) fn public_log(&self) -> Result<Arc<dyn vault_core::PublicLog>, ApiError> {
        if let Some(v) = self.vault() {
            return Ok(v.public_log());
        }
        let view = self
            .standby_view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match view {
            Some(view) => Ok(view),
            None => self.serving().map(|v| v.public_log()),
        }
    }

    /// Sets the webhook delivery (once, at start).
    pub(crate) fn set_notifying(&self, n: Arc<crate::notify::Notifying>) {
        let _ = self.notifying.set(n);
    }

    /// Webhook delivery.
    pub(crate) fn notifying(&self) -> Option<&Arc<crate::notify::Notifying>> {
        self.notifying.get()
    }

    /// Sets the witness policy (once, at start).
    pub(crate) fn set_witnessing(&self, w: Arc<crate::witness::Witnessing>) {
        let _ = self.witnessing.set(w);
    }

    /// The witness policy and cosigning state, if the server has a witness policy.
    pub(crate) fn witnessing(&self) -> Option<&Arc<crate::witness::Witnessing>> {
        self.witnessing.get()
    }

    /// Sets (or drops) the standby's view of the log.
    pub(crate) fn set_standby_view(&self, view: Option<Arc<vault_core::Standby>>) {
        *self
            .standby_view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = view;
    }

    /// True while this node holds a standby's view of the log.
    pub(crate) fn has_standby_view(&self) -> bool {
        self.standby_view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// The data directory unseals and takeovers open.
    pub(crate) fn data_dir(&self) -> Option<vault_core::DataDir> {
        self.data_dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs `vault` as the one served (a takeover), unless one is installed already;
    /// returns whether it was.
    pub(crate) fn install(&self, vault: Arc<Vault>) -> bool {
        let mut slot = self
            .vault
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() {
            return false;
        }
        *slot = Some(vault);
        true
    }

    /// Removes the vault served, if it is `failed` (a step down); requests in flight keep
    /// their handle until they finish.
    pub(crate) fn remove_failed(&self, failed: &Arc<Vault>) -> bool {
        let mut slot = self
            .vault
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_some_and(|v| Arc::ptr_eq(v, failed)) {
            *slot = None;
            return true;
        }
        false
    }
}

/// Renews `vault`'s server certificate if due; returns the renewal's entry. A failure is
/// logged, not fatal: the current certificate stays in use and the next check tries again.
pub(crate) fn renew_server_cert(vault: &Vault, renew_before: Duration) -> Option<u64> {
    match vault.renew_server_cert_if_due(renew_before) {
        Ok(Some(index)) => {
            tracing::info!(audit_index = index, "server certificate renewed");
            Some(index)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "the server certificate is due for renewal, but renewing it failed: the current one stays in use; the next check retries");
            None
        }
    }
}

/// Checks every `every` whether the server certificate is due for renewal
/// ([`AppState::renew_server_cert`]); runs until the process ends.
pub(crate) async fn renew_server_cert_periodically(app: App, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let app = app.clone();
        let _ = tokio::task::spawn_blocking(move || app.renew_server_cert(RENEW_BEFORE)).await;
    }
}

pub(crate) fn sealed() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "sealed",
        "the vault is sealed: an operator must unseal it (`vault-cli unseal`)",
    )
}

/// Runs a read of the public log (the vault's, or a standby's view) on the blocking pool.
pub(crate) async fn public_blocking<T, F>(app: &App, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn vault_core::PublicLog) -> Result<T, VaultError> + Send + 'static,
{
    let log = app.public_log()?;
    // Anyone may call these routes: at most PUBLIC_READS run at once, the others wait
    // here (a parked future, not a thread), so a flood of public reads cannot grow the
    // blocking pool, and with it the per-thread allocator heaps, without bound.
    let _permit = app
        .public_reads
        .acquire()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    tokio::task::spawn_blocking(move || f(&*log))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(ApiError::from)
}

/// Public reads (checkpoint, keys, proofs, tiles, a citizen's history) that run on the
/// blocking pool at once.
pub(crate) const PUBLIC_READS: usize = 16;

/// Runs an engine operation on the blocking pool and maps its error to the API's shape.
pub(crate) async fn blocking<T, F>(app: &App, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
{
    let vault = app.serving()?;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || f(&vault))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    app.metrics.engine_call(started.elapsed());
    out.map_err(ApiError::from)
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread that runs access decisions ([`Vault::access_decide`]: policy evaluation and
/// the audit entry applied under the engine's writer lock) one after another. Decisions
/// are serialised by the writer lock anyway; one thread draining a queue of them avoids a
/// thread hand-off per request and the convoy of pool threads on that lock. The durable
/// wait that follows is async ([`Vault::access_finish`]), so nothing long runs here.
pub(crate) struct Decider {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Decider {
    fn start() -> Decider {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vault-decider".to_owned())
            .spawn(move || {
                // Ends when the app state (the sender) is dropped.
                while let Ok(job) = queue.recv() {
                    // A panicking job drops its answer channel: its caller gets an internal
                    // error, and the thread goes on with the next decision.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map_or_else(
                |e| {
                    tracing::error!(error = %e, "cannot start the decision thread");
                    // Sends then fail, and every access request answers an internal error.
                    Decider {
                        jobs: std::sync::mpsc::channel().0,
                    }
                },
                |_| Decider { jobs },
            )
    }

    /// Runs `f` on the decision thread and returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| ApiError::internal(&"the decision thread is not running"))?;
        rx.await
            .map_err(|_| ApiError::internal(&"a decision failed without an answer (panic)"))
    }
}

/// An authenticated agency: its client certificate is pinned to an enrolled, unrevoked
/// agency. Checked on every request, so a revocation applies to open connections too.
pub(crate) struct AgencyCaller {
    pub(crate) agency: String,
}

impl FromRequestParts<App> for AgencyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let vault = app.serving()?;
        let Some(PeerCertificate(Some(fp))) = parts.extensions.get::<PeerCertificate>().copied()
        else {
            return Err(ApiError::unauthenticated(
                "agency routes need the agency's client certificate (mutual TLS)",
            ));
        };
        let agency = vault.authenticate_agency(&fp).map_err(ApiError::from)?;
        app.quotas.check(Quota::Agency, &agency)?;
        Ok(AgencyCaller { agency })
    }
}

/// The operator: the client certificate made at `init`.
pub(crate) struct OperatorCaller;

impl FromRequestParts<App> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        // The served vault's pin (a node that took over learns it then); the pin is kept
        // while sealed: the operator must be able to unseal.
        let pinned = app
            .vault()
            .map(|v| v.operator_fingerprint())
            .or(app.operator);
        match parts.extensions.get::<PeerCertificate>().copied() {
            Some(PeerCertificate(Some(fp))) if Some(fp) == pinned => Ok(OperatorCaller),
            _ => Err(ApiError::unauthenticated(
                "admin routes need the operator client certificate made by `vault-cli init`",
            )),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn token_role(parts: &Parts, app: &App) -> Result<Bearer, ApiError> {
    // A standby checks tokens too: it serves a citizen's history.
    let vault = app.public_log()?;
    let token = bearer(parts).ok_or_else(|| {
        ApiError::unauthenticated("send your token as `Authorization: Bearer <token>`")
    })?;
    vault.authenticate_token(token).map_err(ApiError::from)
}

/// A citizen, from their bearer token. Only ever their own data.
pub(crate) struct CitizenCaller {
    /// The citizen and the token used (entries name the token).
    pub(crate) token: CitizenToken,
    pub(crate) citizen: String,
}

impl FromRequestParts<App> for CitizenCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match token_role(parts, app)? {
            Bearer::Citizen(token) => {
                app.quotas.check(Quota::Citizen, token.token_id())?;
                Ok(CitizenCaller {
                    citizen: token.citizen().to_owned(),
                    token,
                })
            }
            _ => Err(ApiError::forbidden(
                "wrong_role",
                "this route is for citizens; the token presented is not a citizen's",
            )),
        }
    }
}

/// An auditor, from their bearer token.
pub(crate) struct AuditorCaller;

impl FromRequestParts<App> for AuditorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match token_role(parts, app)? {
            Bearer::Auditor { token_id, .. } => {
                app.quotas.check(Quota::Auditor, &token_id)?;
                Ok(AuditorCaller)
            }
            _ => Err(ApiError::forbidden(
                "wrong_role",
                "this route is for auditors; the token presented is not an auditor's",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use vault_core::Fingerprint;

    use super::AppState;
    use crate::tls::ServerCert;

    const DEV_PASSPHRASE: &str = "dev-only-passphrase-not-for-production";

    fn stored_cert(vault: &vault_core::Vault) -> Fingerprint {
        Fingerprint::of(&vault.server_tls_identity().unwrap().0[0])
    }

    #[test]
    fn sealing_drops_the_vault_and_the_stored_server_key() {
        let tmp = tempfile::tempdir().unwrap();
        let (vault, _, _) = crate::dev::provision(Some(tmp.path().join("data")), 0, |dir| {
            Ok(vault_core::DataDir::new(dir))
        })
        .unwrap();
        let stored = stored_cert(&vault);
        let cert = ServerCert::new(vault.server_tls_identity().unwrap()).unwrap();
        let rates = crate::limits::Rates {
            agency: 1000.0,
            consent_request: 10.0,
            citizen: 20.0,
            auditor: 100.0,
        };
        let app = AppState::new(Some(vault), cert, rates);
        let weak = Arc::downgrade(&app.vault().unwrap());
        assert_eq!(app.server_cert.fingerprint(), stored);

        let entry = app.seal().expect("was unsealed");
        entry.expect("the seal's entry is written");
        // Nothing holds the vault any more: its keys (CA, log, receipt, vault key, master
        // keys, the stored server key) are dropped.
        assert_eq!(
            weak.strong_count(),
            0,
            "the sealed state still holds the vault"
        );
        assert!(app.vault().is_none());
        // TLS answers with the sealed-mode certificate, not the stored one.
        let sealed = app.server_cert.fingerprint();
        assert_ne!(sealed, stored);

        app.unseal(DEV_PASSPHRASE).unwrap();
        // The stored certificate and key are reloaded from the store at unseal.
        let vault = app.vault().unwrap();
        assert_eq!(weak.strong_count(), 0, "a new vault, not the sealed one");
        assert_eq!(stored_cert(&vault), stored);
        assert_eq!(app.server_cert.fingerprint(), stored);
        drop(vault);

        // A renewal replaces what new handshakes get.
        assert_eq!(
            app.renew_server_cert(super::RENEW_BEFORE),
            None,
            "a new certificate is not due"
        );
        let index = app
            .renew_server_cert(Duration::from_secs(400 * 86_400))
            .expect("renewed: fewer than 400 days remain");
        let renewed = app.server_cert.fingerprint();
        assert_ne!(renewed, stored);
        assert_eq!(renewed, stored_cert(&app.vault().unwrap()));
        assert!(index > 0);
        app.close();
    }
}
