//! Helpers for the key, record and data-directory tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vault_core::auth::VaultKeys;
use vault_core::datadir::{self, InitOptions, Unsealed};
use vault_core::envelope::{CitizenId, Plaintext};
use vault_core::keys::{Passphrase, MIN_KDF_ITERATIONS};
use vault_core::policies::{Category, FieldName, Timestamp};
use vault_core::records::RecordOptions;
use vault_core::storage::WriteBatch;

pub(crate) const PASS: &str = "correct horse battery staple";

pub(crate) fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_800_000_000)
}

/// A new data directory (test KDF cost) under `root`, unsealed.
pub(crate) fn init_at(root: &Path, limit: Option<u64>) -> (PathBuf, Unsealed) {
    let dir = root.join("data");
    let mut options = InitOptions {
        kdf_iterations: MIN_KDF_ITERATIONS,
        ..InitOptions::default()
    };
    if let Some(l) = limit {
        options.records.dek_seal_limit = l;
    }
    let vault = datadir::init(&dir, &pass(PASS), options, now()).unwrap();
    with_vault_keys(&vault);
    (dir, vault)
}

pub(crate) fn reopen(dir: &Path, limit: Option<u64>) -> Unsealed {
    let mut options = RecordOptions::default();
    if let Some(l) = limit {
        options.dek_seal_limit = l;
    }
    let v = datadir::unseal(dir, &pass(PASS), options).unwrap();
    with_vault_keys(&v);
    v
}

/// Gives the record store the vault keys the engine would (a fixed test key: these tests
/// run below the engine, which keeps the real one sealed in its configuration).
pub(crate) fn with_vault_keys(v: &Unsealed) {
    v.records()
        .install_vault_keys(std::sync::Arc::new(VaultKeys::derive(&[42u8; 32])));
}

pub(crate) fn cid(s: &str) -> CitizenId {
    CitizenId::new(s).unwrap()
}

pub(crate) fn cat(s: &str) -> Category {
    Category::new(s).unwrap()
}

pub(crate) fn fname(c: &str, f: &str) -> FieldName {
    FieldName::new(&format!("{c}.{f}")).unwrap()
}

/// Writes (and makes durable) `fields` into the record (citizen, category).
pub(crate) fn put(v: &Unsealed, citizen: &str, category: &str, fields: &[(&str, &[u8])]) -> u64 {
    let mut batch = WriteBatch::new();
    let out = v
        .records()
        .stage_put(
            &**v.store(),
            &mut batch,
            &cid(citizen),
            &cat(category),
            fields
                .iter()
                .map(|(n, val)| ((*n).to_owned(), Plaintext::from_slice(val)))
                .collect(),
            "tax_office",
            now(),
        )
        .unwrap();
    v.store().commit(batch).unwrap();
    out.version
}

/// Every (category, field) -> value of a citizen, decrypted.
pub(crate) fn read_all(v: &Unsealed, citizen: &str) -> BTreeMap<(String, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for r in v.records().read_all(&**v.store(), &cid(citizen)).unwrap() {
        for (f, p) in r.fields {
            out.insert((r.info.category.clone(), f), p.expose_bytes().to_vec());
        }
    }
    out
}

/// Every regular file under `dir`, with its bytes.
pub(crate) fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` that contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    assert!(needle.len() >= 16, "search for a key-sized needle");
    files_under(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p)
        .collect()
}
