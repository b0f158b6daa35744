//! Repository rules checked as ordinary tests (in the manner of rust-analyzer's `tidy`):
//! the dependency direction of DESIGN.md §2 and the one-crypto-library rule of §9.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn metadata() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs (cargo is the test runner itself)");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Workspace members and the names of their normal and build dependencies.
fn member_deps(meta: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members is an array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages is an array") {
        if !members.contains(pkg["id"].as_str().unwrap_or_default()) {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .expect("dependencies is an array")
            .iter()
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect();
        out.insert(pkg["name"].as_str().unwrap_or_default().to_owned(), deps);
    }
    out
}

const INTERNAL: [&str; 7] = [
    "audit",
    "policies",
    "vault-core",
    "vault-server",
    "vault-cli",
    "vault-witness",
    "tests",
];

#[test]
fn workspace_dependencies_point_one_way() {
    let allowed: BTreeMap<&str, &[&str]> = [
        ("audit", &[][..]),
        ("policies", &[][..]),
        ("vault-core", &["audit", "policies"][..]),
        ("vault-server", &["vault-core"][..]),
        ("vault-cli", &["vault-core", "audit"][..]),
        // The witness is run by other bodies than the vault's operator: it knows the log's
        // formats, nothing of the vault.
        ("vault-witness", &["audit"][..]),
        ("tests", &INTERNAL[..]),
    ]
    .into_iter()
    .collect();
    let deps = member_deps(&metadata());
    assert_eq!(
        deps.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        INTERNAL.iter().copied().collect::<BTreeSet<_>>(),
        "the workspace members are the seven crates of DESIGN.md §2"
    );
    for (krate, its_deps) in &deps {
        let ok = allowed[krate.as_str()];
        for d in its_deps.iter().filter(|d| INTERNAL.contains(&d.as_str())) {
            assert!(
                ok.contains(&d.as_str()),
                "{krate} depends on {d}: DESIGN.md §2 forbids this edge"
            );
        }
    }
}

#[test]
fn only_the_adapters_know_http_tls_and_clap() {
    // (dependency, the only members allowed to name it directly)
    let rules: [(&str, &[&str]); 9] = [
        ("axum", &["vault-server", "vault-witness", "tests"]),
        ("hyper", &["vault-server", "vault-witness", "tests"]),
        // vault-cli is an adapter too: its live verbs talk to the running server over
        // mutual TLS (DESIGN.md §1, §7), with reqwest over rustls (ring only). vault-core's
        // PostgreSQL backend is a TLS client of the database (its only use: building the
        // client configuration for tokio-postgres-rustls, `storage/postgres/connect.rs`).
        (
            "rustls",
            &[
                "vault-server",
                "vault-cli",
                "vault-core",
                "vault-witness",
                "tests",
            ],
        ),
        ("tokio-postgres", &["vault-core"]),
        ("tokio-postgres-rustls", &["vault-core"]),
        // vault-server is a client of its witnesses (`witness.rs`).
        ("reqwest", &["vault-server", "vault-cli", "tests"]),
        ("tokio-rustls", &["vault-server", "vault-witness", "tests"]),
        ("clap", &["vault-server", "vault-cli", "vault-witness"]),
        ("sled", &["vault-core", "tests"]),
    ];
    let deps = member_deps(&metadata());
    for (krate, its_deps) in &deps {
        for (dep, who) in rules {
            if its_deps.contains(dep) {
                assert!(
                    who.contains(&krate.as_str()),
                    "{krate} depends on {dep}; only {who:?} may"
                );
            }
        }
    }
}

#[test]
fn no_second_crypto_library_under_tls() {
    let meta = metadata();
    let names: BTreeSet<&str> = meta["packages"]
        .as_array()
        .expect("packages is an array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for banned in [
        "aws-lc-rs",
        "aws-lc-sys",
        "openssl",
        "openssl-sys",
        "native-tls",
    ] {
        assert!(
            !names.contains(banned),
            "{banned} is in the dependency graph: DESIGN.md §9 allows ring only"
        );
    }
}

/// vault-core's internal modules: the adapters may name none of them.
const INTERNAL_MODULES: [&str; 11] = [
    "agencies", "backup", "codec", "datadir", "engine", "envelope", "keys", "pki", "records",
    "storage", "tokens",
];

/// Storage types an adapter must never name (vault-core chooses and builds the store).
const STORAGE_NAMES: [&str; 7] = [
    "SledStore",
    "SledOptions",
    "WriteBatch",
    "StorageError",
    "CommitTicket",
    "Tree::",
    "dyn Storage",
];

/// What in `text` reaches past vault-core's public surface (`Vault`, `DataDir` and their
/// types at the crate root): an internal module path or a storage type.
fn reaches_past_the_facade(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for m in INTERNAL_MODULES {
        if text.contains(&format!("vault_core::{m}::"))
            || text.contains(&format!("vault_core::{m};"))
        {
            found.push(format!("vault_core::{m}"));
        }
    }
    for name in STORAGE_NAMES {
        if text.contains(name) {
            found.push(name.to_owned());
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_facade_check_finds_what_it_looks_for() {
    assert_eq!(
        reaches_past_the_facade("use vault_core::storage::sled::SledStore;"),
        ["vault_core::storage", "SledStore"]
    );
    assert_eq!(
        reaches_past_the_facade("let b = WriteBatch::new(); b.put(Tree::Meta, k, v);"),
        ["WriteBatch", "Tree::"]
    );
    assert!(reaches_past_the_facade("use vault_core::{DataDir, Vault, VaultError};").is_empty());
}

#[test]
fn the_adapters_use_only_the_vault_core_facade() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for adapter in ["vault-server", "vault-cli"] {
        for sub in ["src", "tests"] {
            let dir = root.join(adapter).join(sub);
            if dir.exists() {
                rust_files(&dir, &mut files);
            }
        }
    }
    assert!(
        files.len() > 20,
        "the adapters' sources were found: {files:?}"
    );
    let mut faults = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source readable");
        for name in reaches_past_the_facade(&text) {
            faults.push(format!("{} names {name}", file.display()));
        }
    }
    assert!(
        faults.is_empty(),
        "the adapters reach past vault-core's public surface (Vault, DataDir and the \
         types at its root); add what they need to that surface instead:\n{}",
        faults.join("\n")
    );
    // Nor may they switch the internals on: test-hooks is for tests only.
    let meta = metadata();
    for pkg in meta["packages"].as_array().expect("packages is an array") {
        let name = pkg["name"].as_str().unwrap_or_default();
        if name != "vault-server" && name != "vault-cli" {
            continue;
        }
        for dep in pkg["dependencies"].as_array().expect("dependencies") {
            let normal = dep["kind"].is_null();
            if dep["name"] == "vault-core" && normal {
                let features = dep["features"].as_array().expect("features");
                assert!(
                    features.iter().all(|f| f != "test-hooks"),
                    "{name} enables vault-core's test-hooks in a normal dependency"
                );
            }
        }
    }
}

/// The names of the test-only failpoint variables (vault-core's feature `test-hooks`): a
/// release server built without the feature reads none of them, so none is in it.
const FAILPOINT_NAMES: [&str; 4] = [
    "VAULT_DANGEROUS_FAILPOINT",
    "VAULT_DANGEROUS_FAILPOINTS",
    "DANGEROUS_FAIL_AUDIT",
    "DANGEROUS_CLOCK_OFFSET",
];

#[test]
fn the_release_server_has_no_test_hooks() {
    // target/<profile>/deps/suite-xxxx -> target/release/vault-server
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let server = target.join("release").join("vault-server");
    let bytes = std::fs::read(&server).unwrap_or_else(|e| {
        panic!(
            "cannot read the release server {} ({e}): run `cargo build --release -p \
             vault-server --locked` first (scripts/test does)",
            server.display()
        )
    });
    let found: Vec<&str> = FAILPOINT_NAMES
        .into_iter()
        .filter(|name| bytes.windows(name.len()).any(|w| w == name.as_bytes()))
        .collect();
    assert!(
        found.is_empty(),
        "the release server {} contains the test-only failpoint names {found:?}: it was \
         built with vault-core's feature `test-hooks`; build it without the feature \
         (`cargo build --release -p vault-server --locked`) and check that no normal \
         dependency enables it",
        server.display()
    );
}
