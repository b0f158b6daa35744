//! Operator actions are in the log: backup, audit export, seal and unseal each append an
//! entry (an unseal names the failed attempts before it), and what is done with a citizen
//! token names the token, so the citizen sees which token read their records and when the
//! operator issued it.

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;
use tests::{send, Vault};

fn b64(s: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

/// The leaf bytes and decoded entry at `index`, as an auditor reads them (after a fresh
/// checkpoint covers it).
async fn entry_at(v: &Vault, index: u64) -> (Vec<u8>, audit::Entry) {
    assert!(
        v.audit_size().await.unwrap() > index,
        "entry {index} exists"
    );
    let (status, body) = send(
        v.client()
            .get(v.at(&format!("/v1/audit/entries?start={index}&limit=1")))
            .bearer_auth(&v.creds.auditor_token),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let leaf = b64(&body["entries"][0]["leaf"]);
    let entry = audit::Entry::decode(&leaf).unwrap();
    assert_eq!(entry.index, index);
    (leaf, entry)
}

fn is_operator(e: &audit::Entry, action: &str) -> bool {
    e.actor.kind == audit::ActorKind::Operator && e.action == action && e.decision == "done"
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_export_seal_and_unseal_each_append_their_entry() {
    let v = Vault::start_dev().unwrap();
    let op = v.operator_client();

    // Backup: one entry, the last one of the log the backup holds.
    let before = v.audit_size().await.unwrap();
    let resp = op.get(v.at("/v1/admin/backup")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let backup = resp.bytes().await.unwrap();
    assert_eq!(
        v.audit_size().await.unwrap(),
        before + 1,
        "backup: one entry"
    );
    let (leaf, e) = entry_at(&v, before).await;
    assert!(is_operator(&e, "backup"), "{e:?}");
    assert!(contains(&backup, &leaf), "the backup holds its own entry");

    // Audit export: one entry, and the export contains it.
    let before = v.audit_size().await.unwrap();
    let (export, out) = v.export_and_verify().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        v.audit_size().await.unwrap(),
        before + 1,
        "export: one entry"
    );
    let (leaf, e) = entry_at(&v, before).await;
    assert!(is_operator(&e, "audit.export"), "{e:?}");
    assert!(contains(&export, &leaf), "the export holds its own entry");

    // Seal, two failed unseals, then a successful one that counts them.
    let (status, body) = send(op.post(v.at("/v1/admin/seal"))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let sealed_at = body["audit_index"].as_u64().expect("the seal's entry");
    for _ in 0..2 {
        let (status, _) = send(
            op.post(v.at("/v1/admin/unseal"))
                .json(&json!({"passphrase": "not the passphrase at all"})),
        )
        .await
        .unwrap();
        assert_eq!(status, 401);
    }
    let (status, body) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let unsealed_at = body["audit_index"].as_u64().expect("the unseal's entry");
    assert_eq!(
        unsealed_at,
        sealed_at + 1,
        "nothing is written while sealed"
    );
    let (_, e) = entry_at(&v, sealed_at).await;
    assert!(is_operator(&e, "vault.seal"), "{e:?}");
    let (_, e) = entry_at(&v, unsealed_at).await;
    assert!(is_operator(&e, "vault.unseal"), "{e:?}");
    assert_eq!(e.initiator.as_deref(), Some("failed_attempts=2"));

    // The count restarts after a success.
    let (status, body) = send(op.post(v.at("/v1/admin/seal"))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        op.post(v.at("/v1/admin/unseal"))
            .json(&json!({"passphrase": v.creds.passphrase})),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, e) = entry_at(&v, body["audit_index"].as_u64().unwrap()).await;
    assert!(is_operator(&e, "vault.unseal"), "{e:?}");
    assert_eq!(e.initiator.as_deref(), Some("failed_attempts=0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_with_an_operator_minted_token_names_the_token_in_the_citizens_history() {
    let v = Vault::start_dev().unwrap();
    let (citizen, _) = v.citizen(0);
    let (status, minted) = send(
        v.operator_client()
            .post(v.at("/v1/admin/tokens"))
            .json(&json!({"role": "citizen", "citizen": citizen})),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{minted}");
    let token_id = minted["id"].as_str().unwrap().to_owned();
    let (status, body) = send(
        v.client()
            .get(v.at("/v1/me/records"))
            .bearer_auth(minted["token"].as_str().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // The citizen, with their own token, reads their history.
    let (status, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{h}");
    let decoded: Vec<(audit::Entry, serde_json::Value)> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| {
            (
                audit::Entry::decode(&b64(&it["leaf"])).unwrap(),
                it["entry"].clone(),
            )
        })
        .collect();
    let (read, read_json) = decoded
        .iter()
        .find(|(e, _)| e.action == "citizen.view_records")
        .expect("the read is in the citizen's history");
    assert_eq!(read.actor.kind, audit::ActorKind::Citizen);
    assert_eq!(
        read.initiator.as_deref(),
        Some(token_id.as_str()),
        "the read names the token used"
    );
    assert_eq!(read_json["initiator"], token_id.as_str());
    let (issue, _) = decoded
        .iter()
        .find(|(e, _)| e.action == "token.issue" && e.initiator.as_deref() == Some(&token_id))
        .expect("the token's issue, with the same id, is in the citizen's history");
    assert_eq!(issue.actor.kind, audit::ActorKind::Operator);
    assert!(issue.index < read.index && issue.time_ms <= read.time_ms);

    // The citizen's own reads name their own token, a different one.
    let (status, _) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, h) = send(v.as_citizen(0, Method::GET, "/v1/me/access-history?limit=1"))
        .await
        .unwrap();
    let own = audit::Entry::decode(&b64(&h["entries"][0]["leaf"])).unwrap();
    assert_eq!(own.action, "citizen.view_records");
    let own_token = own
        .initiator
        .clone()
        .expect("names the citizen's own token");
    assert_ne!(own_token, token_id);
    assert_eq!(own_token.len(), 16, "a token id is 16 hex digits");
}
