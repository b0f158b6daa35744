//! Integration tests of the `vault-cli` binary. The live verbs are tested end to end
//! against the real server in `tests/tests/suite/cli.rs`.

mod audit_verify;
mod import_check;
mod offline;
