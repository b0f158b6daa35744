//! Backups and security records are authenticated: `vault-cli restore` refuses a backup
//! with any byte changed (header, trees, end, MAC) or with a record edited and its
//! old-style checksum recomputed, with its "rejected" exit code and an empty target
//! directory, before writing anything; the unmodified backup restores. A token record
//! edited on the stopped data directory to name another citizen is refused by the real
//! server at its next start.

use std::path::Path;
use std::process::{Command, Output};

use tests::{binary, send, Vault};
use vault_core::codec;
use vault_core::storage::{SledStore, Storage, Tree, WriteBatch};
use vault_core::tokens::{Role, TokenRecord};

fn restore(v: &Vault, backup: &Path, target: &Path) -> Output {
    Command::new(binary("vault-cli"))
        .args(["restore", "--backup"])
        .arg(backup)
        .arg("--data-dir")
        .arg(target)
        .arg("--policies")
        .arg(v.data_dir().join("policies"))
        .arg("--dangerous-no-published-checkpoint")
        .env("VAULT_PASSPHRASE", &v.creds.passphrase)
        .output()
        .expect("runs vault-cli")
}

fn empty(dir: &Path) -> bool {
    dir.read_dir()
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fn position(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modified_backup_is_rejected_before_anything_is_written() {
    let v = Vault::start_dev().unwrap();
    let backup = v.dir.path().join("vault.backup");
    let out = v.cli(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read(&backup).unwrap();
    let n = good.len();

    let target = v.dir.path().join("target");
    let tampered = v.dir.path().join("tampered.backup");
    let mut offsets = vec![
        0,
        4,
        5,
        12,
        40,
        n / 4,
        n / 2,
        3 * n / 4,
        n - 33,
        n - 32,
        n - 1,
    ];
    offsets.sort_unstable();
    offsets.dedup();
    for at in offsets {
        let mut bytes = good.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&tampered, &bytes).unwrap();
        let out = restore(&v, &tampered, &target);
        assert_eq!(
            out.status.code(),
            Some(4),
            "byte {at} of {n} changed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            empty(&target),
            "byte {at}: the target directory is left empty"
        );
    }

    // The attack: in the tokens tree, the first citizen's id replaced by the
    // second's (same length), and the trailer recomputed as the old SHA-256 checksum.
    let (a, b) = (v.citizen(0).0.as_bytes(), v.citizen(1).0.as_bytes());
    assert_eq!(a.len(), b.len(), "dev citizen ids have one length");
    let start = position(&good, b"\x06tokens").expect("the tokens tree");
    let end = start + position(&good[start..], b"\x08agencies").expect("the next tree");
    let at = start + position(&good[start..end], a).expect("a token names the citizen");
    let mut bytes = good.clone();
    bytes[at..at + a.len()].copy_from_slice(b);
    let body = n - 32;
    let sum = ring_sha256(&bytes[..body]);
    bytes[body..].copy_from_slice(&sum);
    std::fs::write(&tampered, &bytes).unwrap();
    let out = restore(&v, &tampered, &target);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not authentic"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(empty(&target));

    // The backup as taken restores.
    let out = restore(&v, &backup, &target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ring_sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_edited_offline_to_name_another_citizen_is_refused_by_the_server() {
    let mut v = Vault::start_dev().unwrap();
    let (first, token) = v.citizen(0);
    let (first, token) = (first.to_owned(), token.to_owned());
    let second = v.citizen(1).0.to_owned();
    let records = |v: &Vault| send(v.client().get(v.at("/v1/me/records")).bearer_auth(&token));
    let (status, own) = records(&v).await.unwrap();
    assert_eq!(status, 200, "{own}");
    v.kill();

    // The record of the first citizen's token, edited to name the second; its MAC kept.
    let key = ring_sha256(token.as_bytes());
    {
        let store = SledStore::open(v.data_dir().join("store")).unwrap();
        let stored = store
            .get(Tree::Tokens, &key)
            .unwrap()
            .expect("the token record");
        let (body, mac) = stored.split_at(stored.len() - 32);
        let mut rec: TokenRecord = codec::decode("token", 1, body).unwrap();
        assert_eq!(rec.role, Role::Citizen { citizen: first });
        rec.role = Role::Citizen { citizen: second };
        let mut edited = codec::encode("token", 1, &rec).unwrap();
        edited.extend_from_slice(mac);
        let mut b = WriteBatch::new();
        b.put(Tree::Tokens, key, edited);
        store.commit(b).unwrap();
    }
    v.restart().unwrap();
    let (status, body) = records(&v).await.unwrap();
    assert_eq!(status, 500, "the edited token reads nothing: {body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
}
