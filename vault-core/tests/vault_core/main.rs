//! vault-core's integration tests: one binary, one module per area.

mod storage_crash;
mod storage_fixture;
mod storage_model;
mod storage_open;
mod storage_strace;
