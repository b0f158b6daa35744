//! What a standby node of a vault on PostgreSQL serves without the writer lease: the last
//! published checkpoint, the log's public keys and proofs against published checkpoints,
//! read from the database (`docs/operations.md`, "Running several nodes"). Nothing here
//! writes, and nothing needs a citizen's key.

use std::sync::Arc;

use audit::Hash;

use super::log;
use super::{load_config, AuditFailure, ServerIdentity, VaultError};
use crate::datadir::Unsealed;
use crate::storage::{Storage, Tree};

/// What the active node and a standby both serve: the public side of the audit log, and
/// a citizen's history (read-only; proofs against the last published checkpoint).
pub trait PublicLog: Send + Sync {
    /// Who a bearer token speaks for.
    fn authenticate_token(&self, token: &str) -> Result<super::Bearer, VaultError>;
    /// A page of a citizen's own history, newest first, each entry with an inclusion proof
    /// against one published checkpoint (a standby's: the last one the active node
    /// published, at most a signing interval behind).
    fn access_history(
        &self,
        citizen: &str,
        start: Option<u64>,
        limit: usize,
    ) -> Result<super::History, VaultError>;
    /// A page of the citizen's notifications (`GET /v1/me/notifications`): the entries of
    /// their history a citizen is told of ([`super::citizen_event_type`]), newest first,
    /// each with its inclusion proof like the history's. A page holds at most `limit`
    /// items, read from at most `4 * limit` (up to 200) history entries, so it can hold
    /// fewer: follow `next` until it is `None`.
    fn citizen_notifications(
        &self,
        citizen: &str,
        start: Option<u64>,
        limit: usize,
    ) -> Result<super::History, VaultError> {
        let limit = limit.max(1);
        let mut h = self.access_history(citizen, start, (limit * 4).min(200))?;
        let mut kept = Vec::new();
        let mut rest = std::mem::take(&mut h.entries).into_iter();
        for e in rest.by_ref() {
            if kept.len() == limit {
                h.next = Some(e.index);
                break;
            }
            // A disclosed covert access is told of by its disclosure entry, not again
            // as an access at its original time.
            let deferred = matches!(e.entry.deferral, Some(audit::Deferral::Deferred { .. }));
            if !deferred
                && super::citizen_event_type(&e.entry.action, &e.entry.decision, e.entry.review)
                    .is_some()
            {
                kept.push(e);
            }
        }
        h.entries = kept;
        Ok(h)
    }
    /// The last published (signed) checkpoint, a C2SP signed note.
    fn latest_checkpoint(&self) -> Result<String, VaultError>;
    /// The last checkpoint published with a quorum of witness cosignatures, if any.
    fn witnessed_checkpoint(&self) -> Result<Option<String>, VaultError>;
    /// The log's note verifier key.
    fn log_verifier_key(&self) -> String;
    /// The consent receipts' note verifier key.
    fn receipt_verifier_key(&self) -> String;
    /// The leaf hash of `index` and its inclusion proof in the tree of `size` (at most the
    /// last published checkpoint's).
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), VaultError>;
    /// The consistency proof between two tree sizes (`to` at most the last published
    /// checkpoint's).
    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError>;
    /// Entries `start..start+limit` of the log, for auditors, bounded by the last published
    /// checkpoint's size.
    fn audit_entries(&self, start: u64, limit: u64) -> Result<Vec<super::LeafView>, VaultError>;
    /// The bytes of a C2SP tlog-tiles tile or entry bundle of the tree of the last
    /// published checkpoint; `None` when that tree does not hold the whole tile.
    fn tile(&self, tile: audit::TileId) -> Result<Option<Vec<u8>>, VaultError>;
}

/// A standby's read-only view of a vault on PostgreSQL (from
/// [`crate::DataDir::open_standby`]).
pub struct Standby {
    store: Arc<dyn Storage>,
    unsealed: Unsealed,
    keys: Arc<super::VaultKeys>,
    log_vkey: String,
    receipt_vkey: String,
    identity: ServerIdentity,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby").finish_non_exhaustive()
    }
}

impl Standby {
    /// The view over `unsealed` (a read-only store): its public keys and TLS identity.
    pub(crate) fn new(unsealed: Unsealed) -> Result<Self, VaultError> {
        let store = unsealed.store().clone();
        let bytes = store
            .get(Tree::Meta, super::ENGINE_KEY)?
            .ok_or_else(|| VaultError::internal("the engine configuration is missing"))?;
        let ring = unsealed.records().ring();
        let (config, keys) = load_config(&bytes, &ring)?;
        let seed = |s: &super::secrets::SealedSecret, name: &str| {
            let kek = ring.get(s.kek_id).map_err(VaultError::internal)?;
            let bytes = s.open(kek, name)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map(zeroize::Zeroizing::new)
                .map_err(|_| VaultError::internal(format!("sealed {name} is not 32 bytes")))
        };
        let log_signer =
            audit::NoteSigner::from_seed(&config.origin, &*seed(&config.log_seed, "log_seed")?)
                .map_err(VaultError::internal)?;
        let receipt_signer = audit::NoteSigner::from_seed(
            &format!("{}/receipts", config.origin),
            &*seed(&config.receipt_seed, "receipt_seed")?,
        )
        .map_err(VaultError::internal)?;
        drop(ring);
        let identity = super::stored_server_identity(&unsealed)?;
        unsealed.records().install_vault_keys(keys.clone());
        Ok(Self {
            store,
            unsealed,
            keys,
            log_vkey: log_signer.verifier_key(),
            receipt_vkey: receipt_signer.verifier_key(),
            identity,
        })
    }

    /// The server's stored TLS identity, which a standby answers TLS with.
    pub fn server_tls_identity(&self) -> ServerIdentity {
        self.identity.clone()
    }

    /// The last published checkpoint's size.
    fn published_size(&self) -> Result<u64, VaultError> {
        let note = self.latest_checkpoint()?;
        let size = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| VaultError::internal("the stored checkpoint has no size line"))?;
        Ok(size)
    }
}

impl PublicLog for Standby {
    fn authenticate_token(&self, token: &str) -> Result<super::Bearer, VaultError> {
        super::authenticate_token(&*self.store, &self.keys, token)
    }

    fn access_history(
        &self,
        citizen: &str,
        start: Option<u64>,
        limit: usize,
    ) -> Result<super::History, VaultError> {
        let keys = super::ops::history_keys(&*self.store, self.unsealed.records(), citizen)?;
        let note = self.latest_checkpoint()?;
        let verifier = audit::NoteVerifier::parse(&self.log_vkey).map_err(VaultError::internal)?;
        let tree_size = audit::SignedCheckpoint::parse(&note, &verifier)
            .map_err(|e| {
                VaultError::internal(format!("the stored checkpoint does not verify: {e}"))
            })?
            .checkpoint
            .size;
        let (entries, next) =
            super::ops::history_page(&*self.store, keys.as_ref(), start, limit.max(1), tree_size)?;
        Ok(super::History {
            checkpoint: note,
            key: self.log_vkey.clone(),
            tree_size,
            entries,
            next,
        })
    }

    fn latest_checkpoint(&self) -> Result<String, VaultError> {
        let bytes = self
            .store
            .get(Tree::Meta, log::LAST_CHECKPOINT_KEY)?
            .ok_or_else(|| VaultError::internal("no checkpoint was published yet"))?;
        String::from_utf8(bytes).map_err(|_| VaultError::internal("stored checkpoint is not UTF-8"))
    }

    fn witnessed_checkpoint(&self) -> Result<Option<String>, VaultError> {
        self.store
            .get(Tree::Meta, log::WITNESSED_CHECKPOINT_KEY)?
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| VaultError::internal("stored witnessed checkpoint is not UTF-8"))
            })
            .transpose()
    }

    fn log_verifier_key(&self) -> String {
        self.log_vkey.clone()
    }

    fn receipt_verifier_key(&self) -> String {
        self.receipt_vkey.clone()
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), VaultError> {
        inclusion_proof(&*self.store, self.published_size()?, index, size)
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        consistency_proof(&*self.store, self.published_size()?, from, to)
    }

    fn audit_entries(&self, start: u64, limit: u64) -> Result<Vec<super::LeafView>, VaultError> {
        audit_entries(&*self.store, self.published_size()?, start, limit)
    }

    fn tile(&self, tile: audit::TileId) -> Result<Option<Vec<u8>>, VaultError> {
        self::tile(&*self.store, self.published_size()?, tile)
    }
}

/// The bytes of `tile` read from `store`, if the tree of `published` entries (the last
/// signed checkpoint's size) holds the whole tile. A tile is read in one range scan
/// (`StoreLog::nodes`, `StoreLog::leaves`).
pub(super) fn tile(
    store: &dyn Storage,
    published: u64,
    tile: audit::TileId,
) -> Result<Option<Vec<u8>>, VaultError> {
    use audit::TileError as E;
    match audit::tiles::tile_bytes(&log::StoreLog::new(store), tile, published) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(E::NotInTree { .. }) => Ok(None),
        Err(E::Tree(e)) => Err(VaultError::audit(e)),
        Err(E::MissingLeaf { index }) => Err(VaultError::audit(AuditFailure::Missing { index })),
        Err(e) => Err(VaultError::internal(e.to_string())),
    }
}

/// Entries `start..start+limit` of the log in `store`, bounded by `published` (the last
/// signed checkpoint's size): only entries a signed checkpoint covers are listed.
pub(super) fn audit_entries(
    store: &dyn Storage,
    published: u64,
    start: u64,
    limit: u64,
) -> Result<Vec<super::LeafView>, VaultError> {
    let end = start.saturating_add(limit).min(published);
    if start >= end {
        return Ok(Vec::new());
    }
    let leaves = log::leaves(
        store,
        start,
        end,
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .map_err(log::store_failure)?;
    let mut out = Vec::with_capacity(leaves.len());
    for (index, leaf) in leaves {
        let entry = audit::Entry::decode(&leaf)
            .map_err(|source| VaultError::audit(AuditFailure::Entry { index, source }))?;
        out.push(super::LeafView {
            index,
            leaf_hash: audit::leaf_hash(&leaf),
            leaf,
            entry,
        });
    }
    Ok(out)
}

/// Refuses a tree size outside 1..=`published`.
fn check_size(published: u64, size: u64) -> Result<(), VaultError> {
    if size == 0 || size > published {
        return Err(VaultError::bad(
            "invalid_tree_size",
            format!(
                "tree size must be between 1 and the latest signed checkpoint's size ({published})"
            ),
        ));
    }
    Ok(())
}

/// The leaf hash of `index` and its inclusion proof in the tree of `size`, read from
/// `store` whose last published checkpoint has `published` entries.
pub(super) fn inclusion_proof(
    store: &dyn Storage,
    published: u64,
    index: u64,
    size: u64,
) -> Result<(Hash, Vec<Hash>), VaultError> {
    check_size(published, size)?;
    if index >= size {
        return Err(VaultError::bad(
            "invalid_index",
            "index must be below tree_size",
        ));
    }
    let leaf = log::leaf(store, index)
        .map_err(log::store_failure)?
        .ok_or_else(|| VaultError::audit(AuditFailure::Missing { index }))?;
    let proof = audit::inclusion_proof(&log::StoreLog::new(store), index, size)
        .map_err(VaultError::audit)?;
    Ok((audit::leaf_hash(&leaf), proof))
}

/// The consistency proof between two tree sizes, read from `store`.
pub(super) fn consistency_proof(
    store: &dyn Storage,
    published: u64,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, VaultError> {
    check_size(published, to)?;
    if from == 0 || from > to {
        return Err(VaultError::bad("invalid_tree_size", "need 1 <= from <= to"));
    }
    audit::consistency_proof(&log::StoreLog::new(store), from, to).map_err(VaultError::audit)
}

impl PublicLog for super::Vault {
    fn authenticate_token(&self, token: &str) -> Result<super::Bearer, VaultError> {
        super::Vault::authenticate_token(self, token)
    }

    fn access_history(
        &self,
        citizen: &str,
        start: Option<u64>,
        limit: usize,
    ) -> Result<super::History, VaultError> {
        super::Vault::access_history(self, citizen, start, limit)
    }

    fn latest_checkpoint(&self) -> Result<String, VaultError> {
        super::Vault::latest_checkpoint(self)
    }

    fn witnessed_checkpoint(&self) -> Result<Option<String>, VaultError> {
        Ok(super::Vault::witnessed_checkpoint(self))
    }

    fn log_verifier_key(&self) -> String {
        super::Vault::log_verifier_key(self).to_owned()
    }

    fn receipt_verifier_key(&self) -> String {
        super::Vault::receipt_verifier_key(self)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), VaultError> {
        super::Vault::inclusion_proof(self, index, size)
    }

    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, VaultError> {
        super::Vault::consistency_proof(self, from, to)
    }

    fn audit_entries(&self, start: u64, limit: u64) -> Result<Vec<super::LeafView>, VaultError> {
        super::Vault::audit_entries(self, start, limit)
    }

    fn tile(&self, tile: audit::TileId) -> Result<Option<Vec<u8>>, VaultError> {
        super::Vault::tile(self, tile)
    }
}
