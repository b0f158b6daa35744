//! The end-to-end test binary: one binary, one module per concern.

mod api;
mod audit_trail;
mod backup;
mod cli;
mod connections;
mod crash;
mod deferred;
mod dev_mode;
mod erasure;
mod export_memory;
mod failover;
mod flows;
mod migrate;
mod openapi;
mod operator_audit;
mod pg;
mod replay;
mod repo_rules;
mod revocation;
mod ropa;
mod seal;
mod security;
mod tiles;
mod web;
mod witness;

/// The RFC 3339 instant `days` days from now (consent requests may end at most
/// `vault_core::MAX_CONSENT_REQUEST_DAYS` ahead).
fn days_ahead(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    vault_core::policies::Timestamp::from_unix_seconds(now + days * 86_400).to_string()
}
