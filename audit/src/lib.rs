//! Tamper-evident, append-only audit log: hash chain, RFC 9162 Merkle tree, C2SP signed
//! checkpoints, inclusion and consistency proofs, offline verification.
//!
//! The crate knows nothing about citizens or the vault's storage: entries name subjects
//! only by opaque tags, and the engine stores leaves and subtree hashes through
//! [`LogRead`] and [`AppendPlan`]. Formats are documented in `docs/audit-log.md`.

mod codec;
mod commitment;
pub mod cosignature;
mod entry;
pub mod export;
mod hash;
mod note;
mod proof;
mod subjects;
pub mod tiles;
mod tree;
pub mod witness;
pub mod witness_policy;

#[cfg(test)]
mod testvectors;

pub use commitment::{Commitment, TextField, COMMITMENT_LABEL, SALT_LEN};
pub use cosignature::{CosignatureSigner, CosignatureVerifier};
pub use entry::{
    deferred_tag, Actor, ActorKind, Claim, Deferral, Entry, EntryDraft, EntryError, SubjectTag,
    Terms, Withheld, COMMITMENT_VERSION, DEFERRED_TAG_LABEL, DISCLOSE_ACTION, DISCLOSURE_GRACE_MS,
    ENTRY_VERSION, MAX_ENTRY_LEN, MAX_LIST_LEN, MAX_TEXT_LEN, PROVENANCE_VERSION,
};
pub use hash::{empty_root, leaf_hash, node_hash, Frontier, Hash, HASH_LEN};
pub use note::{
    key_id, sign_checkpoint, split_note, Checkpoint, CheckpointError, NoteError, NoteSigner,
    NoteVerifier, SignatureLine, SignedCheckpoint,
};
pub use proof::{parse_hash, verify_consistency, verify_inclusion, ProofError};
pub use tiles::{TileError, TileId, TileLevel, TilePathError};
pub use tree::{
    consistency_proof, inclusion_proof, root, AppendError, AppendPlan, LogRead, LogState, MemStore,
    StoreError, TreeError,
};
pub use witness_policy::{PolicyError, WitnessPolicy, WitnessedCheckpoint};
