//! Deferred disclosure of covert access, end to end (`docs/audit-log.md`, "Deferred
//! disclosure of covert access"): a police access under a rule with `disclosure` is
//! answered and logged at once, but the citizen's history (API and page) stays as it was
//! until the vault's clock passes the deadline (moved by the test-only clock file), when
//! it appears with its disclosure and verifies, in the API and in the page (headless
//! Chromium, as `web.rs`); an operator's lift discloses at once.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use tests::{hash_of, send, wait_until, Vault};

use crate::web::{card_state, Browser};

const DAYS: u64 = 30;

/// A dev vault whose police investigation rule defers disclosure by [`DAYS`] days.
fn vault_with_deferring_rule() -> Vault {
    let mut v = Vault::start_dev().unwrap();
    v.kill();
    let file = v.data_dir().join("policies").join("agencies.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let rule = "reference = \"Code of Criminal Procedure, s. 161 (information requests by investigators)\"\n";
    assert!(text.contains(rule));
    std::fs::write(
        &file,
        text.replace(
            rule,
            &format!("{rule}disclosure = {{ after_days = {DAYS} }}\n"),
        ),
    )
    .unwrap();
    v.restart_with_args(&["--adopt-policies"]).unwrap();
    v
}

async fn history(v: &Vault, i: usize) -> Value {
    let (status, h) = send(v.as_citizen(i, Method::GET, "/v1/me/access-history?limit=200"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{h}");
    h
}

fn indexes(h: &Value) -> Vec<u64> {
    h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

fn leaf(e: &Value) -> (Vec<u8>, audit::Entry) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(e["leaf"].as_str().unwrap())
        .unwrap();
    let entry = audit::Entry::decode(&bytes).unwrap();
    (bytes, entry)
}

/// Every entry of the history verifies against its checkpoint.
fn assert_verifies(h: &Value) {
    let root = {
        let vkey = audit::NoteVerifier::parse(h["key"].as_str().unwrap()).unwrap();
        audit::SignedCheckpoint::parse(h["checkpoint"].as_str().unwrap(), &vkey)
            .unwrap()
            .checkpoint
            .root
    };
    let size = h["tree_size"].as_u64().unwrap();
    for e in h["entries"].as_array().unwrap() {
        let (bytes, _) = leaf(e);
        let index = e["index"].as_u64().unwrap();
        audit::verify_inclusion(
            &audit::leaf_hash(&bytes),
            index,
            size,
            &e["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(hash_of)
                .collect::<Vec<_>>(),
            &root,
        )
        .unwrap_or_else(|err| panic!("entry {index}: {err}"));
    }
}

async fn covert_access(v: &Vault, citizen: &str) -> u64 {
    let police = v.agency_client("national_police");
    let (status, out) = send(police.post(v.at("/v1/access")).json(&json!({
        "citizen": citizen, "purpose": "criminal_investigation",
        "fields": ["identity.full_name"], "legal_basis": "legal_obligation",
        "initiator": "inspector 9", "justification": "case 2026/118"
    })))
    .await
    .unwrap();
    assert_eq!(status, 200, "{out}");
    let released = &out["released"];
    let n = released
        .as_object()
        .map(|m| m.len())
        .or_else(|| released.as_array().map(Vec::len));
    assert_eq!(n, Some(1), "released like any other access: {out}");
    out["audit_index"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_covert_access_is_disclosed_after_its_deadline_or_at_once_when_lifted() {
    let v = vault_with_deferring_rule();
    let (me, _) = v.citizen(0);
    let me = me.to_owned();
    let before = history(&v, 0).await;
    let index = covert_access(&v, &me).await;

    // Logged and verifiable by auditors at once; the citizen's history is unchanged.
    let (_, out) = v.export_and_verify().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deferred accesses: 1 (1 not yet disclosed)"),
        "{stdout}"
    );
    let now = history(&v, 0).await;
    assert_eq!(indexes(&now), indexes(&before));
    assert_verifies(&now);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        indexes(&history(&v, 0).await),
        indexes(&before),
        "not due yet"
    );
    // Nor does the page show it, and what it shows verifies.
    let downloads = tempfile::tempdir().unwrap();
    let b = Browser::start(downloads.path()).await.unwrap();
    b.goto(&v.at("/")).await.unwrap();
    b.type_into("#token", v.citizen(0).1).await.unwrap();
    b.click("#signin-form button[type=submit]").await.unwrap();
    let ready = "return document.body.dataset.ready === 'true'";
    b.wait_for("the history to load", ready, json!([]))
        .await
        .unwrap();
    assert_eq!(card_state(&b, index).await.unwrap(), Value::Null);
    let latest = indexes(&before)[0];
    assert_eq!(card_state(&b, latest).await.unwrap()["verified"], "ok");

    // The vault's clock passes the deadline: disclosed by the background task.
    std::fs::write(
        v.data_dir().join("DANGEROUS_CLOCK_OFFSET"),
        (DAYS * 86_400 + 60).to_string(),
    )
    .unwrap();
    let rt = tokio::runtime::Handle::current();
    wait_until(Duration::from_secs(20), || {
        let h = tokio::task::block_in_place(|| rt.block_on(history(&v, 0)));
        indexes(&h).contains(&index)
    })
    .unwrap();
    let after = history(&v, 0).await;
    assert_verifies(&after);
    let got = indexes(&after);
    assert_eq!(&got[2..], indexes(&before).as_slice(), "{got:?}");
    assert_eq!(got[1], index, "at its original position");
    let entries = after["entries"].as_array().unwrap();
    let (_, disclosure) = leaf(&entries[0]);
    let (_, original) = leaf(&entries[1]);
    assert_eq!(disclosure.action, "access.disclose");
    let Some(audit::Deferral::Disclosure { of, opening, lift }) = disclosure.deferral else {
        panic!("a disclosure: {disclosure:?}");
    };
    assert_eq!((of, lift), (index, None));
    assert_eq!(
        Some(audit::deferred_tag(&disclosure.subject.unwrap(), &opening)),
        original.subject
    );
    let texts: Vec<&str> = entries[1]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["inspector 9", "case 2026/118"]);
    // The page verifies both: the access through the disclosure that links it to her.
    b.goto(&v.at("/")).await.unwrap();
    b.wait_for("the second visit", ready, json!([]))
        .await
        .unwrap();
    let card = card_state(&b, index).await.unwrap();
    assert_eq!(card["verified"], "ok", "{card}");
    assert!(
        card["text"].as_str().unwrap().contains("Covert access"),
        "{card}"
    );
    let card = card_state(&b, got[0]).await.unwrap();
    assert_eq!(card["verified"], "ok", "{card}");
    assert!(
        card["text"]
            .as_str()
            .unwrap()
            .contains("secrecy period ended"),
        "{card}"
    );
    drop(b);
    let (_, out) = v.export_and_verify().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deferred accesses: 1 (0 not yet disclosed)")
    );

    // The operator's lift discloses another one at once, whatever its deadline.
    std::fs::remove_file(v.data_dir().join("DANGEROUS_CLOCK_OFFSET")).unwrap();
    let (other, _) = v.citizen(1);
    let other = other.to_owned();
    let before = history(&v, 1).await;
    let second = covert_access(&v, &other).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(indexes(&history(&v, 1).await), indexes(&before));
    let out = v.cli(&[
        "deferred",
        "lift",
        &second.to_string(),
        "--reference",
        "District Court 12 AB 345/26",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deferred_index"], second);
    let lifted = history(&v, 1).await;
    assert_verifies(&lifted);
    let got = indexes(&lifted);
    assert_eq!(got[1], second);
    let lift_text = &lifted["entries"][0]["texts"][0];
    assert_eq!(lift_text["field"], "lift");
    assert_eq!(lift_text["text"], "District Court 12 AB 345/26");
    // Lifted once: a second lift is refused.
    let out = v.cli(&[
        "deferred",
        "lift",
        &second.to_string(),
        "--reference",
        "again",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}
