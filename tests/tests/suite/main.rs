//! The end-to-end test binary: one binary, one module per concern.

mod api;
mod audit_trail;
mod backup;
mod cli;
mod connections;
mod crash;
mod deferred;
mod dev_mode;
mod dpv;
mod erasure;
mod export_memory;
mod failover;
mod flows;
mod migrate;
mod notify;
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

/// A test CA (written to `dir/ca.pem`) and a `localhost` server certificate and key it
/// issued (`dir/server.pem`, `dir/server.key`), valid from yesterday for 30 days: for the
/// suite's own TLS servers (witnesses, webhook receivers).
fn localhost_tls(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use vault_core::pki::{Ca, Usage};
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let ca = Ca::generate("suite test CA", now - day, 30 * day).unwrap();
    let leaf = ca
        .issue(
            Usage::Server,
            "localhost",
            &["localhost".into()],
            now - day,
            now + 30 * day,
        )
        .unwrap();
    let (ca_pem, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, leaf.private_key_pem()).unwrap();
    (ca_pem, cert, key)
}
