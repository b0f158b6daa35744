//! The PostgreSQL backend (DESIGN.md §8, `docs/storage.md`, "PostgreSQL").
//!
//! - every [`Tree`] is a range of one table, `vault_kv (tree, key, value)`, keyed by
//!   `(tree, key)`; `bytea` orders as bytes, so scans keep sled's order;
//! - [`Storage::apply`] and [`Storage::wait_durable`] are the group commit of `group.rs`:
//!   a batch is visible to this process's reads at once (through the overlay) and queued;
//!   one leader at a time writes a group's net writes in **one transaction** on the writer
//!   connection (with `synchronous_commit` on), which first checks, holding the lease row,
//!   that this store's lease epoch is still the current one (fencing: a store that lost
//!   its lease commits nothing, `lease.rs`);
//! - a failed or uncertain commit (an error, a lost connection during `COMMIT`) poisons the
//!   store: this process's memory may no longer match the database, and only a reopen,
//!   which reads the database, is safe. A failed read fails that read only;
//! - the schema is versioned (`schema.rs`): migrations run at create and open, in one
//!   transaction, and a database newer than this binary is refused;
//! - the client is `tokio-postgres` on a small runtime owned by the store; a caller's
//!   thread waits for its query with `futures-executor` (any thread, also a thread of
//!   another runtime, may call the store), and TLS to the database is rustls on the ring
//!   provider (`connect.rs`).
//!
//! Keys, values and batches have the sled backend's limits, so a store can move between
//! the backends (`vault-cli migrate`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::group::{Durability, GroupCommit, NetWrites};
use super::overlay::merge;
use super::sled::{MAX_KEY_LEN, MAX_VALUE_LEN};
use super::{lock, CommitTicket, Entries, Storage, StorageError, Tree, WriteBatch};

mod cache;
mod connect;
mod lease;
mod schema;
#[cfg(feature = "test-hooks")]
pub mod testing;

pub use self::connect::PgTarget;
pub use self::lease::{LeaseInfo, DEFAULT_LEASE_TTL};
#[cfg(feature = "test-hooks")]
pub use self::schema::SCHEMA_VERSION;

use self::cache::ReadCache;
use self::lease::Lease;

/// The largest batch (bytes of keys and values) one commit takes: the sled backend's.
const MAX_BATCH_BYTES: usize = super::sled::wal::MAX_PAYLOAD;

/// Connections used for reads; queries on one connection are pipelined.
const READ_CONNECTIONS: usize = 4;

/// Options for opening a [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// How long the lease lasts without renewal (default [`DEFAULT_LEASE_TTL`]).
    pub lease_ttl: Duration,
    /// Wait this long for another node's lease to expire before failing (`None`: fail at
    /// once when another node holds it).
    pub wait_for_lease: Option<Duration>,
    /// The name the lease is taken under, shown to the other nodes and operators (the
    /// node's address, say).
    pub node: String,
    /// The most memory the writer's read cache may hold, in bytes (default
    /// [`super::sled::DEFAULT_CACHE_BYTES`]).
    pub cache_bytes: u64,
    /// Keys written only by compare-and-swap: a commit that writes one checks, in its
    /// transaction, that the stored value is still the one this store last read or wrote
    /// (the engine's last published checkpoint), and fails with
    /// [`StorageError::Conflict`] otherwise. With the name shown in that error.
    pub cas_keys: Vec<(Tree, Vec<u8>, &'static str)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_LEASE_TTL,
            wait_for_lease: Some(DEFAULT_LEASE_TTL + Duration::from_secs(5)),
            node: format!("vault process {}", std::process::id()),
            cache_bytes: super::sled::DEFAULT_CACHE_BYTES,
            cas_keys: Vec::new(),
        }
    }
}

/// A compare-and-swap key ([`PgOptions::cas_keys`]) and what this store last saw there
/// (in a commit's expectations: the value the key must still hold).
#[derive(Clone)]
struct CasKey {
    tree: Tree,
    key: Vec<u8>,
    /// What it holds, for messages.
    what: &'static str,
    /// The value last read from the database or committed (`Some(None)`: absent; `None`:
    /// not seen yet, so not checked).
    seen: Option<Option<Vec<u8>>>,
}

/// The prepared statements of one connection.
struct Statements {
    get: Statement,
    scan: Statement,
    scan_to: Statement,
    scan_rev: Statement,
    scan_rev_to: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        const COLS: &str = "SELECT key, value FROM vault_kv WHERE tree = $1 AND key >= $2";
        Ok(Self {
            get: client
                .prepare("SELECT value FROM vault_kv WHERE tree = $1 AND key = $2")
                .await?,
            scan: client
                .prepare(&format!("{COLS} ORDER BY key LIMIT $3"))
                .await?,
            scan_to: client
                .prepare(&format!("{COLS} AND key < $4 ORDER BY key LIMIT $3"))
                .await?,
            scan_rev: client
                .prepare(&format!("{COLS} ORDER BY key DESC LIMIT $3"))
                .await?,
            scan_rev_to: client
                .prepare(&format!("{COLS} AND key < $4 ORDER BY key DESC LIMIT $3"))
                .await?,
        })
    }
}

/// One open connection with its statements.
struct Conn {
    client: Client,
    statements: Statements,
}

/// The PostgreSQL backend of [`Storage`]. Share it behind an `Arc`. Its `Debug` prints
/// the database's host, port and name, never the password.
pub struct PgStore {
    target: PgTarget,
    /// The runtime driving the connections.
    _rt: OwnedRuntime,
    handle: tokio::runtime::Handle,
    /// Read connections, each replaced when found closed.
    readers: Vec<Mutex<Option<Arc<Conn>>>>,
    next_reader: AtomicUsize,
    /// The writer connection: only a durability leader (or open and drop) uses it.
    writer: Mutex<Option<Client>>,
    /// The lease this store holds; `None`: a read-only store (commits are refused).
    lease: Option<Arc<Lease>>,
    /// The writer's read cache (none without the lease: another process writes).
    cache: Option<ReadCache>,
    /// The compare-and-swap keys, each with the value this store last read from the
    /// database or committed (`None` inside: absent; outer `None`: not seen yet).
    cas: Mutex<Vec<CasKey>>,
    #[cfg_attr(not(any(test, feature = "test-hooks")), allow(dead_code))]
    store_id: [u8; 16],
    group: GroupCommit,
    #[cfg(feature = "test-hooks")]
    failpoints: super::failpoints::Failpoints,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("poisoned", &self.group.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    /// Batches applied but never waited for are committed, and the lease is released, so
    /// that another node takes over at once. Not a durability promise: only
    /// `wait_durable` is.
    fn drop(&mut self) {
        if let Some(lease) = &self.lease {
            if !self.group.is_poisoned()
                && self.group.wait_durable(self.group.issued(), &*self).is_ok()
            {
                self.group.wait_finished();
            }
            lease.stop();
            // Also after a failure: the release names this store's epoch, so it cannot
            // touch a lease another node took since.
            if !lease.is_lost() {
                if let Some(client) = lock(&self.writer).as_ref() {
                    let _runtime = self.handle.enter();
                    let _ = futures_executor::block_on(tokio::time::timeout(
                        Duration::from_secs(2),
                        lease.release(client),
                    ));
                }
            }
        }
    }
}

/// The store's runtime, shut down without waiting when dropped: dropping a runtime the
/// plain way inside another runtime's async context (a server's handler) would panic.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A backend error for `operation`.
fn pg(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    move |e| StorageError::backend(operation, e)
}

impl PgStore {
    /// Creates the vault's tables in an empty database (a new store) and opens it as the
    /// writer. Refused when the database already holds a vault store.
    pub fn create(target: PgTarget, options: PgOptions) -> Result<Self, StorageError> {
        Self::start(target, options, true, true)
    }

    /// Opens the vault store in the database as the writer: migrates an older schema,
    /// refuses a newer one, and takes the lease (waiting for another node's to expire, as
    /// `options` says).
    pub fn open(target: PgTarget, options: PgOptions) -> Result<Self, StorageError> {
        Self::start(target, options, false, true)
    }

    /// Opens the vault store read-only, without the lease: reads work, every commit is
    /// refused (a standby node, `vault-cli status`).
    pub fn open_read_only(target: PgTarget) -> Result<Self, StorageError> {
        Self::start(target, PgOptions::default(), false, false)
    }

    fn start(
        target: PgTarget,
        options: PgOptions,
        create: bool,
        writer: bool,
    ) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vault-postgres")
            .enable_all()
            .build()
            .map_err(|e| StorageError::backend("starting the database client runtime", e))?;
        let handle = runtime.handle().clone();
        let rt = OwnedRuntime(Some(runtime));
        let client = target.connect(&handle)?;
        let store_id = futures_executor::block_on(schema::migrate(&client, &target, create))?;
        futures_executor::block_on(connect::check_durable_settings(&client, &target))?;
        let lease = if writer {
            let lease = futures_executor::block_on(Lease::acquire(
                &client,
                &target,
                &options.node,
                options.lease_ttl,
                options.wait_for_lease,
            ))?;
            let lease = Arc::new(lease);
            lease.clone().keep_renewed(&handle, target.clone());
            Some(lease)
        } else {
            None
        };
        let cache = lease
            .is_some()
            .then(|| ReadCache::new(usize::try_from(options.cache_bytes).unwrap_or(usize::MAX)));
        let store = Self {
            cas: Mutex::new(
                options
                    .cas_keys
                    .iter()
                    .map(|(tree, key, what)| CasKey {
                        tree: *tree,
                        key: key.clone(),
                        what,
                        seen: None,
                    })
                    .collect(),
            ),
            cache,
            readers: (0..READ_CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next_reader: AtomicUsize::new(0),
            writer: Mutex::new(writer.then_some(client)),
            lease,
            store_id,
            group: GroupCommit::default(),
            #[cfg(feature = "test-hooks")]
            failpoints: Default::default(),
            target,
            handle,
            _rt: rt,
        };
        #[cfg(feature = "test-hooks")]
        store
            .failpoints
            .arm_from_env()
            .map_err(|reason| store.target.unusable(reason))?;
        Ok(store)
    }

    /// The random id given to the store at creation.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// The lease this store holds (`None`: read-only).
    pub fn lease(&self) -> Option<LeaseInfo> {
        self.lease.as_ref().map(|l| l.info())
    }

    /// How many durability steps (commit transactions) this handle has run.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn durability_steps(&self) -> u64 {
        self.group.steps()
    }

    /// The database's round-trip time for a trivial query.
    pub fn round_trip(&self) -> Result<Duration, StorageError> {
        let conn = self.reader()?;
        let start = std::time::Instant::now();
        futures_executor::block_on(conn.client.simple_query("SELECT 1"))
            .map_err(pg("measuring the round trip"))?;
        Ok(start.elapsed())
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the next `n` calls of
    /// [`Storage::apply`] fail and change nothing (`u64::MAX`: every call).
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_fail_next_applies(&self, n: u64) {
        self.failpoints.fail_next_applies(n);
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the next `n` durability steps fail
    /// before their transaction commits, which poisons the store.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_fail_next_durability(&self, n: u64) {
        self.failpoints.fail_next_durability(n);
    }

    /// DANGEROUS, tests only (feature `test-hooks`): the lease is no longer renewed, as
    /// in a paused process, so another store can take it over once it expires.
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_pause_lease_renewal(&self) {
        if let Some(lease) = &self.lease {
            lease.stop();
        }
    }

    /// A read connection, reconnecting one found closed.
    fn reader(&self) -> Result<Arc<Conn>, StorageError> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let mut slot = lock(&self.readers[i]);
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let client = self.target.connect(&self.handle)?;
        let statements = futures_executor::block_on(Statements::prepare(&client))
            .map_err(pg("preparing the read statements"))?;
        let conn = Arc::new(Conn { client, statements });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Notes what the database holds at a compare-and-swap key, if `key` is one.
    /// (Stores that never read a key do not check it: the engine reads the last
    /// checkpoint at open.)
    fn saw(&self, tree: Tree, key: &[u8], value: Option<&[u8]>) {
        for c in lock(&self.cas).iter_mut() {
            if c.tree == tree && c.key == key {
                c.seen = Some(value.map(<[u8]>::to_vec));
            }
        }
    }

    /// The compare-and-swap keys `writes` touches and this store has seen: each must
    /// still hold its `seen` value.
    fn expectations(&self, writes: &NetWrites<'_>) -> Vec<CasKey> {
        lock(&self.cas)
            .iter()
            .filter(|c| c.seen.is_some() && writes.contains_key(&(c.tree, c.key.as_slice())))
            .cloned()
            .collect()
    }

    fn validate(batch: &WriteBatch) -> Result<(), StorageError> {
        let mut len = 0usize;
        for write in batch.writes() {
            let (tree, key, value) = write.parts();
            if key.len() > MAX_KEY_LEN {
                return Err(StorageError::KeyTooLarge {
                    tree,
                    len: key.len(),
                    max: MAX_KEY_LEN,
                });
            }
            if let Some(value) = value.filter(|v| v.len() > MAX_VALUE_LEN) {
                return Err(StorageError::ValueTooLarge {
                    tree,
                    len: value.len(),
                    max: MAX_VALUE_LEN,
                });
            }
            len += key.len() + value.map_or(0, <[u8]>::len) + 8;
        }
        if len > MAX_BATCH_BYTES {
            return Err(StorageError::BatchTooLarge {
                len,
                max: MAX_BATCH_BYTES,
            });
        }
        Ok(())
    }

    fn collect(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Entries, StorageError> {
        self.group.check_poisoned()?;
        if limit == 0 || end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let overlay = self.group.overlay()?;
        // Queued writes in the range can hide at most as many of the database's rows.
        let hidden = overlay.range(tree, start, upper).count();
        let want_rows = limit.saturating_add(hidden);
        let rows = match self
            .cache
            .as_ref()
            .map(|c| (c, c.scan(tree, start, end, reverse, want_rows)))
        {
            Some((_, Ok(rows))) => rows,
            Some((cache, Err(ticket))) => {
                let rows = self.scan_rows(tree, start, end, reverse, want_rows)?;
                cache.fill_scan(ticket, tree, start, end, reverse, want_rows, &rows);
                rows
            }
            None => self.scan_rows(tree, start, end, reverse, want_rows)?,
        };
        let base = rows.into_iter().map(Ok);
        let staged = overlay.range(tree, start, upper);
        if reverse {
            merge(base, staged.rev(), limit, true)
        } else {
            merge(base, staged, limit, false)
        }
    }

    /// Up to `want` rows of `tree` from the database in `start..end`, in scan order.
    fn scan_rows(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        want: usize,
    ) -> Result<Entries, StorageError> {
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let conn = self.reader()?;
        let s = &conn.statements;
        let tree_id = tree_id(tree);
        let rows = futures_executor::block_on(async {
            match (end, reverse) {
                (None, false) => conn.client.query(&s.scan, &[&tree_id, &start, &want]).await,
                (None, true) => {
                    conn.client
                        .query(&s.scan_rev, &[&tree_id, &start, &want])
                        .await
                }
                (Some(end), false) => {
                    conn.client
                        .query(&s.scan_to, &[&tree_id, &start, &want, &end])
                        .await
                }
                (Some(end), true) => {
                    conn.client
                        .query(&s.scan_rev_to, &[&tree_id, &start, &want, &end])
                        .await
                }
            }
        })
        .map_err(pg("scanning"))?;
        rows.into_iter()
            .map(|row| {
                let key: Vec<u8> = row.try_get(0).map_err(pg("decoding a scanned key"))?;
                let value: Vec<u8> = row.try_get(1).map_err(pg("decoding a scanned value"))?;
                Ok((key, value))
            })
            .collect()
    }
}

/// The stored values of the compare-and-swap keys in `expected`, each row locked until the
/// transaction ends (sent together, pipelined).
async fn cas_values(
    txn: &tokio_postgres::Transaction<'_>,
    expected: &[CasKey],
) -> Result<Vec<Option<Vec<u8>>>, tokio_postgres::Error> {
    let mut out = Vec::with_capacity(expected.len());
    // One query per key; there is one compare-and-swap key (the last checkpoint).
    for e in expected {
        let row = txn
            .query_opt(
                "SELECT value FROM vault_kv WHERE tree = $1 AND key = $2 FOR UPDATE",
                &[&tree_id(e.tree), &e.key.as_slice()],
            )
            .await?;
        out.push(row.map(|r| r.try_get(0)).transpose()?);
    }
    Ok(out)
}

/// A tree's id in the `tree` column: its position in [`Tree::ALL`], which never changes.
fn tree_id(tree: Tree) -> i16 {
    // Tree::ALL has 10 entries.
    i16::try_from(tree.index()).unwrap_or(i16::MAX)
}

/// The PostgreSQL backend's durability step: one transaction that checks the lease and
/// writes the group's net effect, committed with `synchronous_commit` on.
impl Durability for PgStore {
    fn make_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError> {
        let Some(lease) = &self.lease else {
            return Err(StorageError::ReadOnly);
        };
        let mut puts: (Vec<i16>, Vec<&[u8]>, Vec<&[u8]>) = Default::default();
        let mut deletes: (Vec<i16>, Vec<&[u8]>) = Default::default();
        for ((tree, key), value) in writes {
            match value {
                Some(value) => {
                    puts.0.push(tree_id(*tree));
                    puts.1.push(key);
                    puts.2.push(value);
                }
                None => {
                    deletes.0.push(tree_id(*tree));
                    deletes.1.push(key);
                }
            }
        }
        let expected = self.expectations(writes);
        let mut writer = lock(&self.writer);
        let Some(client) = writer.as_mut() else {
            return Err(StorageError::ReadOnly);
        };
        #[cfg(feature = "test-hooks")]
        let failpoint = self.failpoints.durability();
        futures_executor::block_on(async {
            let txn = client
                .transaction()
                .await
                .map_err(pg("starting a commit transaction"))?;
            let put_params: [&(dyn ToSql + Sync); 3] = [&puts.0, &puts.1, &puts.2];
            let delete_params: [&(dyn ToSql + Sync); 2] = [&deletes.0, &deletes.1];
            let outcome = {
                let upsert = async {
                    if puts.0.is_empty() {
                        return Ok(0);
                    }
                    txn.execute(
                        "INSERT INTO vault_kv (tree, key, value) \
                     SELECT * FROM unnest($1::int2[], $2::bytea[], $3::bytea[]) \
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                        &put_params,
                    )
                    .await
                };
                let delete = async {
                    if deletes.0.is_empty() {
                        return Ok(0);
                    }
                    txn.execute(
                        "DELETE FROM vault_kv WHERE (tree, key) IN \
                     (SELECT * FROM unnest($1::int2[], $2::bytea[]))",
                        &delete_params,
                    )
                    .await
                };
                if expected.is_empty() {
                    // Sent together (pipelined): the lease check, the upserts, the deletes.
                    let (held, _, _) = tokio::try_join!(lease.check_in(&txn), upsert, delete)
                        .map_err(pg("writing a commit transaction"))?;
                    held.then_some(None)
                } else {
                    // The lease check and the compare-and-swap keys' stored values first, held
                    // until the commit; then the writes.
                    let (held, stored) =
                        tokio::try_join!(lease.check_in(&txn), cas_values(&txn, &expected))
                            .map_err(pg("checking the lease and the compare-and-swap keys"))?;
                    let conflict = expected
                        .iter()
                        .zip(&stored)
                        .find(|(want, got)| want.seen.as_ref() != Some(*got))
                        .map(|(e, _)| (e.tree, e.what));
                    if held && conflict.is_none() {
                        tokio::try_join!(upsert, delete)
                            .map_err(pg("writing a commit transaction"))?;
                    }
                    held.then_some(conflict)
                }
            };
            match outcome {
                None => {
                    let _ = txn.rollback().await;
                    lease.lost();
                    return Err(StorageError::LeaseLost {
                        epoch: lease.info().epoch,
                    });
                }
                Some(Some((tree, what))) => {
                    let _ = txn.rollback().await;
                    return Err(StorageError::Conflict { tree, what });
                }
                Some(None) => {}
            }
            #[cfg(feature = "test-hooks")]
            if let Err(e) = failpoint {
                let _ = txn.rollback().await;
                return Err(e);
            }
            txn.commit()
                .await
                .map_err(pg("committing (the outcome is unknown; restart the vault)"))
        })?;
        for c in lock(&self.cas).iter_mut() {
            if let Some(value) = writes.get(&(c.tree, c.key.as_slice())) {
                c.seen = Some(value.map(<[u8]>::to_vec));
            }
        }
        Ok(())
    }

    fn after_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError> {
        if let Some(cache) = &self.cache {
            cache.committed(writes);
        }
        Ok(())
    }
}

impl Storage for PgStore {
    fn is_poisoned(&self) -> bool {
        self.group.is_poisoned() || self.lease.as_ref().is_some_and(|l| l.is_lost())
    }

    #[cfg(feature = "test-hooks")]
    fn dangerous_panic_next_durability(&self) {
        self.failpoints.panic_next_durability();
    }

    fn holds_lease(&self) -> bool {
        self.lease.as_ref().is_some_and(|l| l.info().valid)
    }

    fn health(&self) -> super::StoreHealth {
        super::StoreHealth {
            backend: "postgres",
            lease: self.lease(),
            round_trip: self.round_trip().ok(),
        }
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let overlay = self.group.overlay()?;
        if let Some(staged) = overlay.get(tree, key) {
            return Ok(staged);
        }
        let ticket = match self.cache.as_ref().map(|c| c.get(tree, key)) {
            Some(Ok(hit)) => return Ok(hit),
            Some(Err(ticket)) => Some(ticket),
            None => None,
        };
        let conn = self.reader()?;
        let row = futures_executor::block_on(
            conn.client
                .query_opt(&conn.statements.get, &[&tree_id(tree), &key]),
        )
        .map_err(pg("reading"))?;
        let value = row
            .map(|row| row.try_get(0).map_err(pg("decoding a value")))
            .transpose()?;
        if let (Some(cache), Some(ticket)) = (&self.cache, ticket) {
            cache.fill_get(ticket, tree, key, value.clone());
        }
        self.saw(tree, key, value.as_deref());
        Ok(value)
    }

    fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        self.collect(tree, start, end, limit, false)
    }

    fn scan_rev(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StorageError> {
        self.collect(tree, start, end, limit, true)
    }

    fn apply(&self, batch: WriteBatch) -> Result<CommitTicket, StorageError> {
        self.group.check_poisoned()?;
        match &self.lease {
            None => return Err(StorageError::ReadOnly),
            Some(lease) if lease.is_lost() => {
                return Err(StorageError::LeaseLost {
                    epoch: lease.info().epoch,
                })
            }
            Some(_) => {}
        }
        Self::validate(&batch)?;
        #[cfg(feature = "test-hooks")]
        self.failpoints.apply()?;
        self.group.apply(batch)
    }

    fn wait_durable(&self, ticket: CommitTicket) -> Result<(), StorageError> {
        self.group.wait_durable(ticket, self)
    }

    fn poll_durable(
        &self,
        ticket: CommitTicket,
        waker: &std::task::Waker,
    ) -> std::task::Poll<Result<(), StorageError>> {
        self.group.poll_durable(ticket, waker)
    }
}
