//! Integration tests of the `vault-cli` binary.

mod audit_verify;
mod keys_cli;
