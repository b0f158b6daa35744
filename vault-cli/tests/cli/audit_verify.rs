//! `vault-cli audit verify` on real export files.

use std::path::PathBuf;
use std::process::Command;

use audit::{sign_checkpoint, Actor, ActorKind, EntryDraft, LogState, MemStore, NoteSigner};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit-verify");
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(format!("{}-{name}", std::process::id()))
}

/// Writes an export of `n` entries; returns its path, the verifier key, and each entry's
/// first byte offset.
fn export(n: u64, name: &str) -> (PathBuf, String, Vec<usize>) {
    let mut store = MemStore::new();
    let mut state = LogState::new();
    let drafts: Vec<_> = (0..n)
        .map(|i| {
            EntryDraft::new(
                1_767_225_600_000 + i,
                Actor {
                    kind: ActorKind::Operator,
                    id: format!("op-{i}"),
                },
                "key.rotate",
                "done",
            )
        })
        .collect();
    store.append(&mut state, drafts).expect("appends");
    let signer = NoteSigner::generate("example.org/audit").expect("key");
    let signed = sign_checkpoint(&store, &signer, n, None).expect("signs");
    let mut file = Vec::new();
    audit::export::write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
    let header = file.len()
        - (0..n)
            .map(|i| 4 + store.leaf_bytes(i).expect("leaf").len())
            .sum::<usize>();
    let mut offsets = Vec::new();
    let mut pos = header;
    for i in 0..n {
        offsets.push(pos);
        pos += 4 + store.leaf_bytes(i).expect("leaf").len();
    }
    let path = tmp(name);
    std::fs::write(&path, &file).expect("writes export");
    (path, signer.verifier_key(), offsets)
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vault-cli"))
}

#[test]
fn a_good_export_verifies_and_exits_zero() {
    let (path, vkey, _) = export(150, "good");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &vkey])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: 150 entries of example.org/audit verified"),
        "{stdout}"
    );
    // The key may come from a file.
    let key_file = tmp("good.vkey");
    std::fs::write(&key_file, format!("{vkey}\n")).expect("writes key");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .arg("--key")
        .arg(format!("@{}", key_file.display()))
        .arg("--json")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("{\"ok\":true,\"origin\":\"example.org/audit\",\"size\":150,"),
        "{stdout}"
    );
}

#[test]
fn a_tampered_export_fails_and_names_the_first_bad_entry() {
    let (path, vkey, offsets) = export(150, "bad");
    let mut file = std::fs::read(&path).expect("reads");
    // Change one character of entry 42's actor id ("op-42" -> "op-43").
    let entry = &file[offsets[42]..offsets[43]];
    let at = offsets[42]
        + entry
            .windows(5)
            .position(|w| w == b"op-42")
            .expect("id present")
        + 4;
    file[at] = b'3';
    std::fs::write(&path, &file).expect("writes");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &vkey])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("first bad entry: 42"), "{stderr}");
    let out = cli()
        .args(["audit", "verify", "--json", "--key", &vkey])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("{\"ok\":false,\"index\":42,\"code\":\"audit.verify.altered_entry\""),
        "{stdout}"
    );
}

#[test]
fn a_wrong_key_or_missing_file_fails() {
    let (path, _, _) = export(3, "key");
    let other = NoteSigner::generate("example.org/audit").expect("key");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &other.verifier_key()])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another verifier key"));
    let out = cli()
        .args([
            "audit",
            "verify",
            "/nonexistent/export",
            "--key",
            &other.verifier_key(),
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the export file"));
}

/// A log with a deferred access at entry 1 due at `deadline` ms, and a last entry at
/// `last` ms; never disclosed.
fn deferred_export(deadline: u64, last: u64, name: &str) -> (PathBuf, String) {
    let mut store = MemStore::new();
    let mut state = LogState::new();
    let system = |time_ms, action: &str| {
        EntryDraft::new(
            time_ms,
            Actor {
                kind: ActorKind::System,
                id: "vault".into(),
            },
            action,
            "done",
        )
    };
    let mut deferred = system(1_000, "access");
    deferred.subject = Some(audit::deferred_tag(
        &audit::SubjectTag([0xc1; 32]),
        &[7; 32],
    ));
    deferred.deferral = Some(audit::Deferral::Deferred {
        disclose_at: Some(deadline),
    });
    let drafts = vec![
        system(0, "vault.init"),
        deferred,
        system(last, "audit.export"),
    ];
    store.append(&mut state, drafts).expect("appends");
    let signer = NoteSigner::generate("example.org/audit").expect("key");
    let signed = sign_checkpoint(&store, &signer, 3, None).expect("signs");
    let mut file = Vec::new();
    audit::export::write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
    let path = tmp(name);
    std::fs::write(&path, &file).expect("writes export");
    (path, signer.verifier_key())
}

#[test]
fn an_overdue_deferred_access_is_reported_with_exit_7() {
    let hour = audit::DISCLOSURE_GRACE_MS;
    let (path, vkey) = deferred_export(5_000, 5_000 + hour - 1, "deferred-due");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &vkey])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deferred accesses: 1 (1 not yet disclosed)"),
        "{stdout}"
    );
    assert!(!stdout.contains("OVERDUE"), "{stdout}");

    let (path, vkey) = deferred_export(5_000, 5_000 + hour, "deferred-overdue");
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &vkey])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("OVERDUE: deferred access 1 was due for disclosure at 1970-01-01T00:00:05Z"),
        "{stdout}"
    );
    let out = cli()
        .args(["audit", "verify"])
        .arg(&path)
        .args(["--key", &vkey, "--json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], true);
    assert_eq!(report["deferred"], 1);
    assert_eq!(report["deferred_pending"], 1);
    assert_eq!(
        report["overdue"],
        serde_json::json!([{"index": 1, "disclose_at": 5000}])
    );
}
