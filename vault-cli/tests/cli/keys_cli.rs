//! `vault-cli init`, `status` and `keys rotate|retire|compact` on real data directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("keys-cli")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn cli(args: &[&str], env_pass: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-cli"));
    c.args(args).env_remove("VAULT_PASSPHRASE");
    if let Some(p) = env_pass {
        c.env("VAULT_PASSPHRASE", p);
    }
    c.output().expect("runs vault-cli")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const PASS: &str = "operator passphrase for tests\n";

fn init(root: &Path) -> PathBuf {
    let pass = root.join("pass");
    std::fs::write(&pass, PASS).expect("writes");
    let data = root.join("data");
    let out = cli(
        &[
            "init",
            "--data-dir",
            s(&data),
            "--passphrase-file",
            s(&pass),
            "--kdf-iterations",
            "10000",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "{{\"ok\":true,\"data_dir\":\"{}\",\"kek_id\":1,\"kdf\":\"pbkdf2-hmac-sha256\",\"kdf_iterations\":10000}}",
            s(&data)
        )
    );
    data
}

#[test]
fn init_then_status() {
    let root = scratch("init-status");
    let data = init(&root);
    let out = cli(&["status", "--data-dir", s(&data), "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(json.contains("\"initialised\":true"), "{json}");
    assert!(json.contains("\"kek_ids\":[1]"), "{json}");
    assert!(json.contains("\"current_kek\":1"), "{json}");
    assert!(json.contains("\"kdf_iterations\":10000"), "{json}");
    assert!(json.contains("\"citizens\":0"), "{json}");
    let out = cli(&["status", "--data-dir", s(&data)], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("initialised: yes"));
}

#[test]
fn errors_exit_non_zero_with_a_clear_message() {
    let root = scratch("errors");
    let data = init(&root);
    // Already initialised.
    let out = cli(
        &["init", "--data-dir", s(&data), "--kdf-iterations", "10000"],
        Some(PASS),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already initialised"),
        "{}",
        text(&out.stderr)
    );
    // No passphrase at all.
    let other = root.join("other");
    let out = cli(&["init", "--data-dir", s(&other)], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("VAULT_PASSPHRASE"),
        "{}",
        text(&out.stderr)
    );
    assert!(!other.exists());
    // Too short a passphrase.
    let out = cli(
        &["init", "--data-dir", s(&other), "--kdf-iterations", "10000"],
        Some("short"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("passphrase is too short"),
        "{}",
        text(&out.stderr)
    );
    // Not initialised.
    std::fs::create_dir_all(&other).expect("mkdir");
    let out = cli(&["status", "--data-dir", s(&other)], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not an initialised vault"),
        "{}",
        text(&out.stderr)
    );
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("reads dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            let m = std::fs::metadata(&p)
                .expect("meta")
                .modified()
                .expect("mtime");
            out.push((p.clone(), std::fs::read(&p).expect("reads"), m));
        }
    }
    out.sort();
    out
}

#[test]
fn wrong_passphrase_exits_non_zero_and_modifies_no_file() {
    let root = scratch("wrong");
    let data = init(&root);
    let before = snapshot(&data);
    let out = cli(
        &["keys", "rotate", "--data-dir", s(&data)],
        Some("not the operator passphrase"),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(before == snapshot(&data), "a file changed");
}

#[test]
fn rotate_retire_compact() {
    let root = scratch("rotate");
    let data = init(&root);
    let out = cli(
        &["keys", "retire", "--data-dir", s(&data), "--kek-id", "1"],
        Some(PASS),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is the current one"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(
        &["keys", "rotate", "--data-dir", s(&data), "--json"],
        Some(PASS),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"current_kek\":2"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(
        &["keys", "retire", "--data-dir", s(&data), "--kek-id", "1"],
        Some(PASS),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&["keys", "compact", "--data-dir", s(&data)], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&["status", "--data-dir", s(&data), "--json"], None);
    assert!(
        text(&out.stdout).contains("\"kek_ids\":[2]"),
        "{}",
        text(&out.stdout)
    );
    // The old passphrase still unseals (no passphrase change was asked).
    let out = cli(
        &["keys", "rotate", "--data-dir", s(&data), "--json"],
        Some(PASS),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"current_kek\":3"));
}
