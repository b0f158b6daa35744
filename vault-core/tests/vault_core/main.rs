//! vault-core's integration tests: one binary, one module per area.

mod auth_records;
mod keys_crash;
mod keys_datadir;
mod keys_erasure;
mod keys_nonces;
mod keys_rotation;
mod keys_support;
mod keys_tamper;
mod storage_crash;
mod storage_fixture;
mod storage_model;
mod storage_open;
mod storage_strace;
