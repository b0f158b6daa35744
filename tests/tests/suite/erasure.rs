//! Erasure unlinks: after a citizen is erased over the real server, no stored byte (any
//! tree of the store, its write-ahead log once checkpointed, a backup taken afterwards,
//! the store restored from it) holds the citizen id in any encoding, and no tree outside
//! the audit log holds the erasure entry's time or the person's subject tag; the log still
//! verifies end to end.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::json;
use tests::{binary, send, Vault};
use vault_core::storage::{scan_all, SledStore, Tree};

/// Every encoding of the citizen id looked for.
fn id_encodings(id: &str) -> Vec<(String, Vec<u8>)> {
    let b = id.as_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let engines = [
        ("base64", base64::engine::general_purpose::STANDARD),
        (
            "base64 no pad",
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ),
        ("base64url", base64::engine::general_purpose::URL_SAFE),
        (
            "base64url no pad",
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ];
    let mut out = vec![
        ("raw".to_owned(), b.to_vec()),
        ("hex".to_owned(), hex.clone().into_bytes()),
        ("HEX".to_owned(), hex.to_uppercase().into_bytes()),
    ];
    for (name, e) in engines {
        out.push((name.to_owned(), e.encode(b).into_bytes()));
    }
    out
}

/// Integer encodings of the erasure time: milliseconds and seconds, big- and
/// little-endian, CBOR, decimal.
fn time_encodings(ms: u64) -> Vec<(String, Vec<u8>)> {
    let secs = ms / 1000;
    let mut cbor_ms = vec![0x1b];
    cbor_ms.extend_from_slice(&ms.to_be_bytes());
    let mut cbor_s = vec![0x1a];
    cbor_s.extend_from_slice(&u32::try_from(secs).unwrap().to_be_bytes());
    vec![
        ("ms u64 BE".to_owned(), ms.to_be_bytes().to_vec()),
        ("ms u64 LE".to_owned(), ms.to_le_bytes().to_vec()),
        ("ms CBOR".to_owned(), cbor_ms),
        ("ms decimal".to_owned(), ms.to_string().into_bytes()),
        ("s u64 BE".to_owned(), secs.to_be_bytes().to_vec()),
        ("s u64 LE".to_owned(), secs.to_le_bytes().to_vec()),
        ("s CBOR".to_owned(), cbor_s),
        ("s decimal".to_owned(), secs.to_string().into_bytes()),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every (tree, key, value) of a stopped store; opening it replays and checkpoints its
/// write-ahead log.
fn trees(store: &Path) -> Vec<(Tree, Vec<u8>, Vec<u8>)> {
    let s = SledStore::open(store).unwrap();
    let mut out = Vec::new();
    for tree in Tree::ALL {
        for item in scan_all(&s, tree) {
            let (k, v) = item.unwrap();
            out.push((tree, k, v));
        }
    }
    out
}

fn is_audit(t: Tree) -> bool {
    matches!(
        t,
        Tree::AuditLeaves | Tree::AuditBlocks | Tree::AuditNodes | Tree::AuditSubjects
    )
}

/// Fails on any `needles` found in the stores' entries (`audit_too`: in the audit trees
/// as well).
fn assert_absent(
    what: &str,
    entries: &[(Tree, Vec<u8>, Vec<u8>)],
    needles: &[(String, Vec<u8>)],
    audit_too: bool,
) {
    for (tree, k, v) in entries {
        if is_audit(*tree) && !audit_too {
            continue;
        }
        for (enc, n) in needles {
            assert!(
                !contains(k, n) && !contains(v, n),
                "{what}: tree {} holds the {enc} form in an entry (key {k:02x?})",
                tree.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_leaves_no_id_time_or_tag_in_the_store_its_log_or_a_backup() {
    let mut v = Vault::start_dev().unwrap();
    let (citizen, _) = v.citizen(0);
    let citizen = citizen.to_owned();
    // A pending consent request and an active token for the citizen, so that erasure has
    // consents and tokens to remove.
    let (status, body) = send(
        v.agency_client("general_hospital")
            .post(v.at("/v1/consent-requests"))
            .json(&json!({"citizen": citizen, "purpose": "medical_treatment",
                          "fields": ["health.blood_type"],
                          "expires_at": crate::days_ahead(90)})),
    )
    .await
    .unwrap();
    assert!(status == 200 || status == 201, "{status} {body}");
    // Nothing outside the log is written in the erasure's second but the erasure.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let (status, body) = send(
        v.operator_client()
            .post(v.at("/v1/admin/erase"))
            .json(&json!({"citizen": citizen, "confirm": true})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let index = body["audit_index"].as_u64().unwrap();
    v.audit_size().await.unwrap();
    let (status, body) = send(
        v.client()
            .get(v.at(&format!("/v1/audit/entries?start={index}&limit=1")))
            .bearer_auth(&v.creds.auditor_token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(body["entries"][0]["leaf"].as_str().unwrap())
        .unwrap();
    let entry = audit::Entry::decode(&leaf).unwrap();
    assert_eq!(entry.action, "erasure");
    let tag = entry
        .subject
        .expect("the erasure entry names the subject tag")
        .0;
    let tag_hex: String = tag.iter().map(|x| format!("{x:02x}")).collect();
    let mut linking = time_encodings(entry.time_ms);
    linking.push(("subject tag".to_owned(), tag.to_vec()));
    linking.push(("subject tag hex".to_owned(), tag_hex.into_bytes()));

    // The log verifies end to end.
    let (_, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A backup taken afterwards.
    let backup = v.dir.path().join("after-erasure.backup");
    let out = v.cli(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The store, stopped: every tree, then its write-ahead log once checkpointed.
    v.kill();
    let store = v.data_dir().join("store");
    let ids = id_encodings(&citizen);
    let live = trees(&store);
    assert!(
        live.iter()
            .any(|(t, k, _)| *t == Tree::Keys && k.first() == Some(&0)),
        "the erased citizen has a tombstone"
    );
    assert_absent("store", &live, &ids, true);
    assert_absent("store", &live, &linking, false);
    let wal = std::fs::read(store.join("vault.wal")).unwrap();
    for (enc, n) in ids.iter().chain(&linking) {
        assert!(
            !contains(&wal, n),
            "the write-ahead log holds the {enc} form"
        );
    }

    // The backup file, and the store restored from it.
    let bytes = std::fs::read(&backup).unwrap();
    for (enc, n) in &ids {
        assert!(
            !contains(&bytes, n),
            "the backup holds the {enc} form of the id"
        );
    }
    let restored = v.dir.path().join("restored");
    let out = Command::new(binary("vault-cli"))
        .args(["restore", "--backup"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(&restored)
        .arg("--policies")
        .arg(v.data_dir().join("policies"))
        .arg("--dangerous-no-published-checkpoint")
        .env("VAULT_PASSPHRASE", &v.creds.passphrase)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = trees(&restored.join("store"));
    assert_absent("restored store", &back, &ids, true);
    assert_absent("restored store", &back, &linking, false);

    // The erased citizen is still refused after the restore, like before.
    let server = tests::start_server(&restored, &v.creds.passphrase);
    let (status, _) = send(
        tests::client(&v.creds.ca_cert, None)
            .unwrap()
            .get(format!("{}/v1/me/records", server.1))
            .bearer_auth(v.citizen(0).1),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "the erased citizen's token was deleted");
}
