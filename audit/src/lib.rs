//! Tamper-evident, append-only audit log: hash chain, RFC 9162 Merkle tree, C2SP signed
//! checkpoints, inclusion and consistency proofs, offline verification.
