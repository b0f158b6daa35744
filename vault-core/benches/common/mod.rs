//! What the vault-core benches share: a vault initialised in a temp directory.

use std::path::Path;

use vault_core::{DataDir, InitOptions, Vault};

/// The passphrase of the benches' vaults.
const PASS: &str = "correct horse battery staple bench";

/// A vault initialised under `root` with the example policy set (a cheap key derivation),
/// and opened.
pub(crate) fn vault_in(root: &Path) -> Vault {
    let dir = DataDir::new(root.join("data"));
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    dir.init(
        PASS,
        &policies,
        InitOptions {
            hostnames: vec!["localhost".to_owned()],
            origin: "bench.example/log".to_owned(),
            dangerous_kdf_iterations: Some(10_000),
        },
    )
    .expect("init");
    dir.open(PASS).expect("open")
}
