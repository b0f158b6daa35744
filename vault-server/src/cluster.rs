//! Several nodes on one PostgreSQL store (docs/operations.md, "Running several nodes"):
//! one is active (its store holds the writer lease), the others are standbys that serve
//! the read-only routes (checkpoint, keys, proofs, a citizen's history) from the database,
//! answer the other routes 503 naming the active node, and take over when its lease
//! expires. A node whose store
//! failed or lost the lease steps down to standby by itself and comes back when it gets
//! the lease again, reloading the log from the database.
//!
//! To take over without an operator, a node on PostgreSQL keeps its passphrase in memory
//! (zeroized when dropped) while it is unsealed; sealing it forgets the passphrase, and a
//! sealed node takes nothing over. A sled vault never keeps it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use zeroize::Zeroizing;

use crate::app::{renew_server_cert, App, RENEW_BEFORE};
use crate::error::ApiError;

/// How often a standby tries to take the lease, and an active node checks its store.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    /// Kept while unsealed (PostgreSQL only), to take over or recover.
    passphrase: Option<Zeroizing<String>>,
    /// The active node's name while this node is a standby.
    standby_of: Option<String>,
}

/// This node's role in a vault on PostgreSQL.
#[derive(Default)]
pub(crate) struct Cluster {
    state: Mutex<State>,
}

impl Cluster {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This node is active, unsealed with `passphrase`.
    pub(crate) fn active(&self, passphrase: &str) {
        let mut s = self.state();
        s.passphrase = Some(Zeroizing::new(passphrase.to_owned()));
        s.standby_of = None;
    }

    /// This node is a standby of `active`, unsealed with `passphrase`.
    pub(crate) fn standby(&self, passphrase: &str, active: &str) {
        let mut s = self.state();
        s.passphrase = Some(Zeroizing::new(passphrase.to_owned()));
        s.standby_of = Some(active.to_owned());
    }

    /// Sealed: the passphrase is dropped and nothing is taken over.
    pub(crate) fn forget_passphrase(&self) {
        let mut s = self.state();
        s.passphrase = None;
        s.standby_of = None;
    }

    /// The active node's name while this node is a standby.
    pub(crate) fn standby_of(&self) -> Option<String> {
        self.state().standby_of.clone()
    }

    fn passphrase(&self) -> Option<Zeroizing<String>> {
        self.state().passphrase.clone()
    }

    fn set_standby_of(&self, active: String) {
        self.state().standby_of = Some(active);
    }
}

/// The answer of a standby to every data route.
pub(crate) fn standby_error(active: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "standby",
        format!(
            "this node is a standby: the active node is {active}; send requests there (its /healthz answers 200). This node takes over if the active one fails"
        ),
    )
}

/// Runs until the process ends: a standby tries to take the lease; an active node whose
/// store failed (a failed commit, a lost lease) steps down and becomes a standby.
pub(crate) async fn supervise(app: App) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(passphrase) = app.cluster.passphrase() else {
            continue;
        };
        match app.vault() {
            Some(v) if v.is_available() => {}
            Some(failed) => {
                if app.remove_failed(&failed) {
                    failed.shutdown();
                    tracing::error!(
                        "this node's store failed or lost the writer lease: stepping down to standby; it reloads the log from the database when it gets the lease again"
                    );
                    app.cluster
                        .set_standby_of("none yet (this node stepped down)".to_owned());
                }
            }
            None => {
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || take_over(&app, &passphrase)).await;
            }
        }
    }
}

/// One attempt to take the lease and open the vault from the database.
fn take_over(app: &App, passphrase: &str) {
    let Some(dir) = app.data_dir() else { return };
    let vault = match dir.clone().with_lease_wait(None).open(passphrase) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            match e.lease_holder() {
                Some(holder) => {
                    app.cluster.set_standby_of(holder.to_owned());
                    // A standby serves the public log from the database.
                    if !app.has_standby_view() {
                        match dir.open_standby(passphrase) {
                            Ok(view) => app.set_standby_view(Some(Arc::new(view))),
                            Err(e) => tracing::warn!(error = %e, "no standby view of the log"),
                        }
                    }
                }
                None => {
                    tracing::warn!(error = %e, "taking over failed; trying again");
                    app.cluster
                        .set_standby_of(format!("unknown (this node cannot open the store: {e})"));
                }
            }
            return;
        }
    };
    match vault.record_activation() {
        Ok(index) => tracing::warn!(audit_index = index, "this node is now the active one"),
        Err(e) => {
            tracing::error!(error = %e, "took the lease but could not record it; trying again");
            vault.shutdown();
            return;
        }
    }
    renew_server_cert(&vault, RENEW_BEFORE);
    if let Err(e) = vault
        .server_tls_identity()
        .map_err(anyhow::Error::from)
        .and_then(|identity| app.server_cert.replace(identity))
    {
        tracing::error!(error = %e, "active, but TLS still answers with the standby's certificate");
    }
    vault.start_background_signer();
    if app.install(vault.clone()) {
        app.cluster.active(passphrase);
        app.set_standby_view(None);
    } else {
        vault.shutdown();
    }
}
