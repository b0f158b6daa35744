//! The publication rule of witnessed checkpoints (`Vault::publish_witnessed`): only this
//! log's own tree, cosigned by a quorum of the witness policy, never older than the last
//! published, and kept across a restart.

use std::path::Path;

use vault_core::audit::{CosignatureSigner, WitnessPolicy};
use vault_core::Vault;

const PASS: &str = "correct horse battery staple witnessed";

fn open(root: &Path) -> Vault {
    crate::init_data_dir(root, PASS).open(PASS).unwrap()
}

fn witnesses() -> Vec<CosignatureSigner> {
    (0..3u8)
        .map(|i| CosignatureSigner::from_seed(&format!("w{i}.example"), &[40 + i; 32]).unwrap())
        .collect()
}

fn policy(v: &Vault, ws: &[CosignatureSigner]) -> WitnessPolicy {
    let mut text = format!("log {}\n", v.log_verifier_key());
    for (i, w) in ws.iter().enumerate() {
        text.push_str(&format!("witness W{i} {}\n", w.verifier_key()));
    }
    text.push_str("group G 2 W0 W1 W2\nquorum G\n");
    WitnessPolicy::parse(&text).unwrap()
}

/// `note` cosigned by the witnesses `by`.
fn cosigned(note: &str, ws: &[CosignatureSigner], by: &[usize]) -> String {
    let text = &note[..note.rfind("\n\n").unwrap() + 1];
    let mut out = note.to_owned();
    for &i in by {
        out.push_str(&ws[i].cosign(text, 1_700_000_000 + i as u64));
    }
    out
}

fn code(e: vault_core::VaultError) -> &'static str {
    e.code()
}

#[test]
fn only_a_quorum_cosigned_checkpoint_of_this_tree_is_published_and_it_never_goes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let v = open(tmp.path());
    let ws = witnesses();
    let p = policy(&v, &ws);
    assert_eq!(v.witnessed_checkpoint(), None);
    let first = v.sign_checkpoint_now().unwrap();

    // One cosignature is below the 2-of-3 quorum; a forged one is refused outright.
    let e = v
        .publish_witnessed(&cosigned(&first, &ws, &[0]), &p)
        .unwrap_err();
    assert_eq!(code(e), "below_quorum");
    let other = CosignatureSigner::from_seed("w1.example", &[99; 32]).unwrap();
    let text = &first[..first.rfind("\n\n").unwrap() + 1];
    let forged = format!("{}{}", cosigned(&first, &ws, &[0]), other.cosign(text, 5));
    assert!(v.publish_witnessed(&forged, &p).is_err());
    assert_eq!(v.witnessed_checkpoint(), None);

    // Two are enough.
    let ok = cosigned(&first, &ws, &[0, 2]);
    let w = v.publish_witnessed(&ok, &p).unwrap();
    assert_eq!(w.cosigned_by, vec!["W0".to_owned(), "W2".to_owned()]);
    assert_eq!(v.witnessed_checkpoint().as_deref(), Some(ok.as_str()));

    // A newer one replaces it; the older one cannot come back.
    let me = crate::citizen_token(&v, "alice");
    v.citizen_records(&me).unwrap();
    let second = v.sign_checkpoint_now().unwrap();
    let newer = cosigned(&second, &ws, &[1, 2]);
    v.publish_witnessed(&newer, &p).unwrap();
    let e = v.publish_witnessed(&ok, &p).unwrap_err();
    assert_eq!(code(e), "rollback");

    // A checkpoint of another tree, signed by another log key, is not this log's.
    let tmp2 = tempfile::tempdir().unwrap();
    let v2 = open(tmp2.path());
    let foreign = cosigned(&v2.sign_checkpoint_now().unwrap(), &ws, &[0, 1, 2]);
    assert_eq!(
        code(v.publish_witnessed(&foreign, &p).unwrap_err()),
        "not_this_log"
    );
    drop(v2);

    // Published survives a restart.
    drop(v);
    let v = vault_core::DataDir::new(tmp.path().join("data"))
        .open(PASS)
        .unwrap();
    assert_eq!(v.witnessed_checkpoint().as_deref(), Some(newer.as_str()));
}

#[test]
fn a_standby_serves_the_witnessed_checkpoint_from_postgresql() {
    use vault_core::PublicLog as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::init_pg_data_dir(tmp.path(), PASS, "node-a");
    let v = dir.open(PASS).unwrap();
    let ws = witnesses();
    let p = policy(&v, &ws);
    let standby = dir.open_standby(PASS).unwrap();
    assert_eq!(standby.witnessed_checkpoint().unwrap(), None);
    let note = cosigned(&v.sign_checkpoint_now().unwrap(), &ws, &[0, 1]);
    v.publish_witnessed(&note, &p).unwrap();
    assert_eq!(
        standby.witnessed_checkpoint().unwrap().as_deref(),
        Some(note.as_str())
    );
}
