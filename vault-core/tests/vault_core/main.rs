//! vault-core's integration tests: one binary, one module per area.

mod auth_records;
mod checkpoint_signing;
mod consent_limits;
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

/// The RFC 3339 instant `days` days from now (consent requests may end at most
/// `vault_core::MAX_CONSENT_REQUEST_DAYS` ahead).
fn days_ahead(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    vault_core::policies::Timestamp::from_unix_seconds(now + days * 86_400).to_string()
}
