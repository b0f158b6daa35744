//! `DataDir::migrate`: a stopped vault's sled store moved into a new PostgreSQL database,
//! its log checked before and after (`docs/operations.md`, "Running several nodes").

use std::path::PathBuf;
use std::sync::Arc;

use audit::Checkpoint;

use crate::datadir::{self, DataDirError};
use crate::engine::log;
use crate::offline::{busy_or, check_extends, io_error, log_frontier};
use crate::storage::{self, Storage, StoreSpec, Tree};
use crate::{DataDir, OfflineError};

/// What a migration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// Entries copied, over all trees.
    pub entries: u64,
    /// The audit log's size, the same before and after.
    pub audit_size: u64,
    /// Its root (base64, as in a checkpoint), the same before and after.
    pub root: String,
    /// The size of the last signed checkpoint, which the log was checked to extend.
    pub checkpoint_size: Option<u64>,
    /// Where the sled store was moved (kept until the operator deletes it).
    pub kept: PathBuf,
}

/// Entries copied per commit by a migration.
const MIGRATE_BATCH: usize = 1024;

impl DataDir {
    /// Moves this stopped vault's sled store into the new, empty PostgreSQL database `to`
    /// (this directory [`DataDir::on_postgres`]): the log is read from the exact stored
    /// leaves and checked to extend the last checkpoint the vault signed, every tree is
    /// copied, the copy's log is read back and must have the same size and root, and
    /// only then is `store/` renamed to `store.migrated` (kept for the operator to delete
    /// once the vault runs on PostgreSQL) and the directory marked as on PostgreSQL. Any
    /// refusal or failure before the rename leaves the directory as it was (the database
    /// may then hold a partial copy: drop its tables before trying again). Needs no
    /// passphrase: the values move as they are stored, encrypted.
    pub fn migrate(&self, to: &DataDir) -> Result<MigrateReport, OfflineError> {
        let StoreSpec::Sled { dir: from_dir, .. } = self.spec()? else {
            return Err(OfflineError::MigrateRefused(
                "the source must be a data directory with a sled store (no --store)".to_owned(),
            ));
        };
        let to_spec @ StoreSpec::Postgres { .. } = to.spec_for_migration()? else {
            return Err(OfflineError::MigrateRefused(
                "the target must be a PostgreSQL database (--to postgres://...)".to_owned(),
            ));
        };
        let source: Arc<dyn Storage> = Arc::new(
            crate::storage::SledStore::open(&from_dir)
                .map_err(|e| busy_or(&from_dir, DataDirError::Storage(e)))?,
        );
        if source.get(Tree::Meta, datadir::INIT_KEY)?.is_none() {
            return Err(OfflineError::from(DataDirError::NotInitialised {
                path: self.path().to_path_buf(),
                half: true,
            }));
        }
        let checkpoint = stored_checkpoint(&*source)?;
        let (before, _) = log_frontier(&*source, 0)?;
        if let Some(cp) = &checkpoint {
            check_extends(&*source, cp)?;
        }
        let target = to_spec.create()?;
        let mut entries = 0u64;
        for tree in Tree::ALL {
            let mut batch = storage::WriteBatch::new();
            for item in storage::scan_all(&*source, tree) {
                let (k, v) = item?;
                batch.put(tree, k, v);
                entries += 1;
                if batch.len() == MIGRATE_BATCH {
                    target.commit(std::mem::take(&mut batch))?;
                }
            }
            if !batch.is_empty() {
                target.commit(batch)?;
            }
        }
        let (after, _) = log_frontier(&*target, 0)?;
        if after.size() != before.size() || after.root() != before.root() {
            return Err(OfflineError::MigrateRefused(format!(
                "the copy's log ({} entries) differs from the source's ({} entries): the source is unchanged; drop the database's vault tables and try again",
                after.size(),
                before.size()
            )));
        }
        for tree in Tree::ALL {
            let a = storage::scan_all(&*source, tree).count();
            let b = storage::scan_all(&*target, tree).count();
            if a != b {
                return Err(OfflineError::MigrateRefused(format!(
                    "the copy's {tree} has {b} entries, the source's {a}: the source is unchanged"
                )));
            }
        }
        drop(target);
        drop(source);
        let kept = self.path().join("store.migrated");
        std::fs::rename(&from_dir, &kept).map_err(io_error("move aside", &from_dir))?;
        to.mark_postgres()?;
        Ok(MigrateReport {
            entries,
            audit_size: after.size(),
            root: {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(after.root())
            },
            checkpoint_size: checkpoint.map(|c| c.size),
            kept,
        })
    }
}

/// The last checkpoint a store's vault signed (its body; the signature is the vault's,
/// checked by whoever holds the key), if it signed one.
fn stored_checkpoint(store: &dyn Storage) -> Result<Option<Checkpoint>, OfflineError> {
    let Some(note) = store.get(Tree::Meta, log::LAST_CHECKPOINT_KEY)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&note);
    let body = text.split("\n\n").next().unwrap_or_default();
    let checkpoint = Checkpoint::parse(&format!("{body}\n")).map_err(|e| {
        OfflineError::MigrateRefused(format!("the stored checkpoint does not parse ({e})"))
    })?;
    Ok(Some(checkpoint))
}
