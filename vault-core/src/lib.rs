//! The vault engine: keys and envelope encryption, storage, and the operations that tie
//! records, consent evaluation and the audit log into single atomic commits.

pub use audit;
pub use policies;

pub mod agencies;
pub mod codec;
pub mod pki;
pub mod storage;
pub mod tokens;
