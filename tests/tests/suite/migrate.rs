//! Moving between the stores: `vault-cli migrate` from a sled vault into PostgreSQL (the
//! same log, checked before and after, the vault serving from the database), and a backup
//! of either store restored into the other.

use std::process::Command;

use serde_json::{json, Value};
use tests::{binary, hashes_of, send, start_server_with, Vault};

async fn police_access(v: &Vault) -> u16 {
    let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"});
    let (status, body) = send(
        v.agency_client("national_police")
            .post(v.at("/v1/access"))
            .json(&ask),
    )
    .await
    .unwrap();
    assert!(status == 200 || status == 503, "{status} {body}");
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sled_vault_migrates_into_postgres_with_the_same_log() {
    let mut v = Vault::start_dev().unwrap();
    for _ in 0..5 {
        assert_eq!(police_access(&v).await, 200);
    }
    let size = v.audit_size().await.unwrap();
    let before = v.public_text("/v1/audit/checkpoint").await.unwrap();
    v.kill();
    let url = crate::pg::new_database();
    let out = Command::new(binary("vault-cli"))
        .args(["migrate", "--json", "--from"])
        .arg(v.data_dir())
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["audit_size"], size, "{report}");
    assert_eq!(report["checkpoint_size"], size, "{report}");
    assert!(v.data_dir().join("store.migrated").is_dir());

    // Without --store the directory says where its store went.
    let out = Command::new(binary("vault-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(v.data_dir())
        .env("VAULT_PASSPHRASE", &v.creds.passphrase)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--store"), "{err}");
    // A second migration finds no sled store.
    let out = Command::new(binary("vault-cli"))
        .args(["migrate", "--from"])
        .arg(v.data_dir())
        .args(["--to", &crate::pg::new_database()])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The vault serves from PostgreSQL: the same log, grown, consistent with the
    // checkpoint published before the move.
    v.store = Some(url);
    v.restart().unwrap();
    assert_eq!(police_access(&v).await, 200);
    let key = v.public_text("/v1/audit/key").await.unwrap();
    let verifier = vault_core::audit::NoteVerifier::parse(key.trim()).unwrap();
    let old = vault_core::audit::SignedCheckpoint::parse(&before, &verifier)
        .unwrap()
        .checkpoint;
    let after = v.audit_size().await.unwrap();
    assert!(after > size, "{after} > {size}");
    let now = v.public_text("/v1/audit/checkpoint").await.unwrap();
    let new = vault_core::audit::SignedCheckpoint::parse(&now, &verifier)
        .unwrap()
        .checkpoint;
    let (_, proof) = send(v.client().get(v.at(&format!(
        "/v1/audit/proof/consistency?from={}&to={}",
        old.size, new.size
    ))))
    .await
    .unwrap();
    vault_core::audit::verify_consistency(
        old.size,
        new.size,
        &old.root,
        &new.root,
        &hashes_of(&proof),
    )
    .unwrap();
    let (_, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn restore(v: &Vault, backup: &std::path::Path, target: &std::path::Path, store: Option<&str>) {
    let out = Command::new(binary("vault-cli"))
        .args(["restore", "--backup"])
        .arg(backup)
        .arg("--data-dir")
        .arg(target)
        .arg("--policies")
        .arg(v.data_dir().join("policies"))
        .arg("--dangerous-no-published-checkpoint")
        .args(store.iter().flat_map(|s| ["--store", *s]))
        .env("VAULT_PASSPHRASE", &v.creds.passphrase)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_either_store_restores_into_the_other() {
    for from_postgres in [true, false] {
        let v = if from_postgres {
            crate::pg::start_dev_on_postgres()
        } else {
            Vault::start_dev().unwrap()
        };
        assert_eq!(police_access(&v).await, 200);
        let size = v.audit_size().await.unwrap();
        let backup = v.dir.path().join("vault.backup");
        let out = v.cli(&["backup", "--out", backup.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = v.dir.path().join("restored");
        let url = crate::pg::new_database();
        // Into the other store.
        let store = if from_postgres {
            None
        } else {
            Some(url.as_str())
        };
        restore(&v, &backup, &target, store);
        // The restored vault opens on the other store with the whole log.
        let args: Vec<&str> = store.iter().flat_map(|s| ["--store", *s]).collect();
        let server = start_server_with(&target, &v.creds.passphrase, &args);
        let checkpoint = v
            .client()
            .get(format!("{}/v1/audit/checkpoint", server.1))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let restored_size: u64 = checkpoint.lines().nth(1).unwrap().parse().unwrap();
        assert!(
            restored_size >= size,
            "{restored_size} >= {size} (from postgres: {from_postgres})"
        );
    }
}
