//! The writer's lease: one row, `vault_lease (holder, epoch, expires_at)`, by the
//! database's clock. A store takes it when it is free or expired, bumping the epoch (one
//! statement, a compare-and-swap); renews it every third of its lifetime on a connection
//! of its own; and every commit transaction checks, holding the row (`FOR SHARE`), that
//! the epoch is still its own. A takeover waits for that row, so a commit either lands
//! before the new epoch or fails: a paused or partitioned former writer commits nothing.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Transaction};

use super::PgTarget;
use crate::storage::{lock, StorageError};

/// How long a lease lasts without renewal unless set.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// What a store knows of its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The node name the lease was taken under.
    pub holder: String,
    /// The lease's epoch: one more at every takeover.
    pub epoch: i64,
    /// False once the lease was lost, or when it may have expired (no renewal for its
    /// whole lifetime, by this process's clock).
    pub valid: bool,
}

/// A lease held by this process.
pub(super) struct Lease {
    holder: String,
    epoch: i64,
    ttl_ms: i64,
    /// Until when the lease surely holds: the lifetime, counted from before the query that
    /// last took or renewed it.
    valid_until: Mutex<Instant>,
    lost: AtomicBool,
    stopped: Arc<AtomicBool>,
    /// Renewals that failed in a row (the database unreachable).
    failures: AtomicI64,
}

fn failed(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    move |e| StorageError::backend(operation, e)
}

impl Lease {
    /// Takes the lease for `holder` if it is free or expired; otherwise waits for it up to
    /// `wait`, then fails naming the holder. Polled from the caller's thread
    /// (`futures_executor`), so it sleeps the thread between tries.
    pub(super) async fn acquire(
        client: &Client,
        target: &PgTarget,
        holder: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<Self, StorageError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let deadline = Instant::now() + wait.unwrap_or_default();
        loop {
            let start = Instant::now();
            let row = client
                .query_opt(
                    "UPDATE vault_lease SET holder = $1, epoch = epoch + 1, \
                     expires_at = now() + ($2::INT8 * INTERVAL '1 millisecond') \
                     WHERE id = 1 AND expires_at <= now() RETURNING epoch",
                    &[&holder, &ttl_ms],
                )
                .await
                .map_err(failed("taking the writer lease"))?;
            if let Some(row) = row {
                let epoch: i64 = row.try_get(0).map_err(failed("reading the lease epoch"))?;
                return Ok(Self {
                    holder: holder.to_owned(),
                    epoch,
                    ttl_ms,
                    valid_until: Mutex::new(start + ttl),
                    lost: AtomicBool::new(false),
                    stopped: Arc::new(AtomicBool::new(false)),
                    failures: AtomicI64::new(0),
                });
            }
            let row = client
                .query_one(
                    "SELECT holder, epoch, \
                     CAST(EXTRACT(EPOCH FROM (expires_at - now())) * 1000 AS INT8) \
                     FROM vault_lease WHERE id = 1",
                    &[],
                )
                .await
                .map_err(failed("reading the writer lease"))?;
            let other: String = row.try_get(0).map_err(failed("reading the lease"))?;
            let remaining: i64 = row.try_get(2).map_err(failed("reading the lease"))?;
            if Instant::now() >= deadline {
                return Err(StorageError::LeaseHeld {
                    holder: other,
                    remaining_ms: remaining.max(0),
                    database: target.describe().to_owned(),
                });
            }
            let pause =
                Duration::from_millis(u64::try_from(remaining.clamp(50, 1000)).unwrap_or(1000));
            // A plain sleep: this runs on the caller's thread, outside the store's runtime.
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// In a commit transaction: true while the lease row still has this lease's epoch. It
    /// holds the row until the transaction ends, so a takeover waits for the commit.
    pub(super) async fn check_in(
        &self,
        txn: &Transaction<'_>,
    ) -> Result<bool, tokio_postgres::Error> {
        let rows = txn
            .query(
                "SELECT 1 FROM vault_lease WHERE id = 1 AND epoch = $1 FOR SHARE",
                &[&self.epoch],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    /// Marks the lease lost: the store refuses everything from now on.
    pub(super) fn lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// True once the lease was lost.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops the renewals.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub(super) fn info(&self) -> LeaseInfo {
        LeaseInfo {
            holder: self.holder.clone(),
            epoch: self.epoch,
            valid: !self.is_lost() && Instant::now() < *lock(&self.valid_until),
        }
    }

    /// Lets the lease expire now (a clean stop), if it is still this store's.
    pub(super) async fn release(&self, client: &Client) -> Result<(), StorageError> {
        client
            .execute(
                "UPDATE vault_lease SET expires_at = now() WHERE id = 1 AND epoch = $1",
                &[&self.epoch],
            )
            .await
            .map_err(failed("releasing the writer lease"))?;
        Ok(())
    }

    /// One renewal: `Ok(false)` when the lease is no longer this store's.
    async fn renew(&self, client: &Client) -> Result<bool, tokio_postgres::Error> {
        let start = Instant::now();
        let n = client
            .execute(
                "UPDATE vault_lease SET expires_at = now() + ($2::INT8 * INTERVAL '1 millisecond') \
                 WHERE id = 1 AND epoch = $1",
                &[&self.epoch, &self.ttl_ms],
            )
            .await?;
        if n == 1 {
            *lock(&self.valid_until) = start + Duration::from_millis(self.ttl_ms.unsigned_abs());
        }
        Ok(n == 1)
    }

    /// Renews the lease every third of its lifetime, on a connection of its own, until
    /// stopped or lost. A failed renewal (database unreachable) is retried; the lease is
    /// lost only when the database says another epoch holds it.
    pub(super) fn keep_renewed(self: Arc<Self>, handle: &tokio::runtime::Handle, target: PgTarget) {
        let period =
            Duration::from_millis(self.ttl_ms.unsigned_abs() / 3).max(Duration::from_millis(50));
        handle.spawn(async move {
            let mut client: Option<Client> = None;
            while !self.stopped.load(Ordering::SeqCst) && !self.is_lost() {
                tokio::time::sleep(period).await;
                if client.as_ref().is_none_or(Client::is_closed) {
                    client = target.connect_async().await.ok();
                }
                let Some(c) = &client else {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                match self.renew(c).await {
                    Ok(true) => self.failures.store(0, Ordering::Relaxed),
                    Ok(false) => self.lost(),
                    Err(_) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        client = None;
                    }
                }
            }
        });
    }
}
