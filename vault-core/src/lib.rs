//! The vault engine: keys and envelope encryption, storage, and the operations that tie
//! records, consent evaluation and the audit log into single atomic commits.

pub use audit;
pub use policies;

pub mod agencies;
pub mod backup;
pub mod codec;
mod ct;
pub mod datadir;
pub mod engine;
pub mod envelope;
pub mod keys;
pub mod pki;
pub mod records;
mod serde_bytes;
pub mod storage;
pub mod tokens;
