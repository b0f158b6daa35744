//! vault-core's integration tests: one binary, one module per area.

mod auth_records;
mod checkpoint_signing;
mod consent_limits;
mod deferred;
mod keys_crash;
mod keys_datadir;
mod keys_erasure;
mod keys_nonces;
mod keys_rotation;
mod keys_support;
mod keys_tamper;
mod notify;
mod storage_crash;
mod storage_fixture;
mod storage_model;
mod storage_open;
mod storage_postgres;
mod storage_strace;
mod witnessed;

/// The RFC 3339 instant `days` days from now (consent requests may end at most
/// `vault_core::MAX_CONSENT_REQUEST_DAYS` ahead).
fn days_ahead(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    vault_core::policies::Timestamp::from_unix_seconds(now + days * 86_400).to_string()
}

/// A data directory initialised under `root` with the example policies and `passphrase`
/// (a fast KDF), not opened.
fn init_data_dir(root: &std::path::Path, passphrase: &str) -> vault_core::DataDir {
    let dir = vault_core::DataDir::new(root.join("data"));
    init_with(&dir, passphrase, &example_policies());
    dir
}

/// The example policy set.
fn example_policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples")
}

/// Initialises `dir` with the policy files in `policies` and `passphrase` (a fast KDF).
fn init_with(dir: &vault_core::DataDir, passphrase: &str, policies: &std::path::Path) {
    dir.init(
        passphrase,
        policies,
        vault_core::InitOptions {
            hostnames: vec!["localhost".to_owned()],
            origin: "test.example/log".to_owned(),
            dangerous_kdf_iterations: Some(10_000),
        },
    )
    .unwrap();
}

/// A data directory under `root` whose store is a new database of the test process's
/// private PostgreSQL cluster, as node `node`, initialised as [`init_data_dir`] does.
fn init_pg_data_dir(root: &std::path::Path, passphrase: &str, node: &str) -> vault_core::DataDir {
    use vault_core::storage::postgres::testing::PgCluster;
    let url = PgCluster::shared().new_database().expect("database");
    let dir = vault_core::DataDir::new(root.join("data"))
        .on_postgres(&url, None, Some(node.to_owned()))
        .unwrap();
    init_with(&dir, passphrase, &example_policies());
    dir
}

/// The data directory under `root` opened again.
fn init_data_dir_reopen(root: &std::path::Path, passphrase: &str) -> vault_core::Vault {
    vault_core::DataDir::new(root.join("data"))
        .open(passphrase)
        .unwrap()
}

/// A new 30-day token of `citizen`, authenticated.
fn citizen_token(v: &vault_core::Vault, citizen: &str) -> vault_core::CitizenToken {
    let secret = v
        .issue_token(vault_core::TokenRequest::Citizen {
            citizen: citizen.to_owned(),
            valid_days: Some(30),
        })
        .unwrap()
        .token
        .secret()
        .to_owned();
    let vault_core::Bearer::Citizen(me) = v.authenticate_token(&secret).unwrap() else {
        panic!("a citizen token");
    };
    me
}
