//! The vault engine: keys and envelope encryption, storage, and the operations that tie
//! records, consent evaluation and the audit log into single atomic commits.

pub use audit;
pub use policies;

pub mod agencies;
pub mod codec;
pub mod datadir;
pub mod envelope;
pub mod keys;
pub mod pki;
pub mod records;
mod serde_bytes;
pub mod storage;
pub mod tokens;
