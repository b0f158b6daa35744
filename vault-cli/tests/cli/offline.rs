//! `vault-cli init`, `status`, `unseal`, `upgrade`, `keys rotate|retire|compact` on real data
//! directories (the server stopped).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("vault-cli")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub(crate) fn cli(args: &[&str], env_pass: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-cli"));
    c.args(args)
        .env_remove("VAULT_PASSPHRASE")
        .env_remove("VAULT_SERVER")
        .env_remove("VAULT_CA")
        .env_remove("VAULT_CERT")
        .env_remove("VAULT_KEY")
        .env_remove("VAULT_POLICIES");
    if let Some(p) = env_pass {
        c.env("VAULT_PASSPHRASE", p);
    }
    c.output().expect("runs vault-cli")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples")
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
            "--policies",
            s(&examples()),
            "--origin",
            "test.example/consent-log",
            "--hostname",
            "localhost",
            "--operator-out",
            s(&root.join("operator")),
            "--passphrase-file",
            s(&pass),
            "--dangerous-kdf-iterations",
            "10000",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    let vkey = v["log_verifier_key"].as_str().expect("key");
    assert!(vkey.starts_with("test.example/consent-log+"), "{vkey}");
    // The operator's files are there; the key is private.
    for f in ["operator.pem", "operator.key", "ca.pem", "log.vkey"] {
        assert!(root.join("operator").join(f).is_file(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join("operator/operator.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(root.join("operator/log.vkey"))
            .expect("reads")
            .trim(),
        vkey
    );
    assert!(data.join("policies/agencies.toml").is_file());
    data
}

#[test]
fn init_then_status_then_unseal() {
    let root = scratch("init-status");
    let data = init(&root);
    let out = cli(&["status", "--data-dir", s(&data), "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["initialised"], true);
    assert_eq!(v["kek_ids"], serde_json::json!([1]));
    assert_eq!(v["kdf_iterations"], 10000);
    assert_eq!(v["citizens"], 0);
    assert_eq!(v["policies_valid"], true);
    let out = cli(&["status", "--data-dir", s(&data)], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("initialised: yes"));

    let out = cli(&["unseal", "--data-dir", s(&data), "--json"], Some(PASS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    // init wrote the log's first entry; the checkpoint signed at open covers it.
    assert_eq!(v["audit_size"], 1);
    assert!(v["checkpoint"]
        .as_str()
        .expect("note")
        .starts_with("test.example/consent-log\n1\n"));
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reads dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p)
                    .expect("meta")
                    .modified()
                    .expect("mtime");
                out.push((p.clone(), std::fs::read(&p).expect("reads"), m));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn wrong_passphrase_exits_3_and_modifies_no_file() {
    let root = scratch("wrong");
    let data = init(&root);
    let before = snapshot(&data);
    for args in [
        &["unseal", "--data-dir", s(&data)][..],
        &["keys", "rotate", "--kind", "kek", "--data-dir", s(&data)][..],
    ] {
        let out = cli(args, Some("not the operator passphrase"));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("wrong passphrase"), "{err}");
        assert!(before == snapshot(&data), "a file changed");
    }
}

#[test]
fn errors_exit_non_zero_with_a_clear_message() {
    let root = scratch("errors");
    let data = init(&root);
    let base = |dir: &Path, out: &Path| -> Vec<String> {
        [
            "init",
            "--data-dir",
            s(dir),
            "--policies",
            s(&examples()),
            "--origin",
            "x.example/log",
            "--hostname",
            "localhost",
            "--operator-out",
            s(out),
            "--dangerous-kdf-iterations",
            "10000",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect()
    };
    let args = base(&data, &root.join("op2"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    // Not an empty directory.
    let out = cli(&argv, Some(PASS));
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("is not empty"),
        "{}",
        text(&out.stderr)
    );
    // No passphrase at all: nothing is created.
    let other = root.join("other");
    let args = base(&other, &root.join("op3"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&argv, None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("VAULT_PASSPHRASE"),
        "{}",
        text(&out.stderr)
    );
    assert!(!other.exists());
    // Too short a passphrase: refused before anything is created.
    let out = cli(&argv, Some("short"));
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("passphrase is too short"),
        "{}",
        text(&out.stderr)
    );
    assert!(!other.exists());
    // Invalid policies: every error reported, nothing created.
    let bad = root.join("bad-policies");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(
        bad.join("agencies.toml"),
        "version = 1\n[[agency]]\nid = \"Bad Id\"\n",
    )
    .expect("writes");
    let mut args = base(&other, &root.join("op3"));
    args[4] = s(&bad).to_owned();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&argv, Some(PASS));
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("agencies.toml"),
        "{}",
        text(&out.stderr)
    );
    assert!(!other.exists());
    // Not initialised.
    std::fs::create_dir_all(&other).expect("mkdir");
    let out = cli(&["status", "--data-dir", s(&other)], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not an initialised vault"),
        "{}",
        text(&out.stderr)
    );
    // A live verb without a server says how to name one.
    let out = cli(&["agency", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--server"),
        "{}",
        text(&out.stderr)
    );
    // Erasure needs the confirmation.
    let out = cli(&["erase", "C1", "--server", "https://localhost:1"], None);
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
}

#[test]
fn rotate_retire_compact() {
    let root = scratch("rotate");
    let data = init(&root);
    let out = cli(
        &["keys", "retire", "--data-dir", s(&data), "--kek-id", "1"],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("is the current one"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(
        &[
            "keys",
            "rotate",
            "--kind",
            "kek",
            "--data-dir",
            s(&data),
            "--json",
        ],
        Some(PASS),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["key_id"], 2);
    let out = cli(
        &["keys", "retire", "--data-dir", s(&data), "--kek-id", "1"],
        Some(PASS),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&["keys", "compact", "--data-dir", s(&data)], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&["status", "--data-dir", s(&data), "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["kek_ids"], serde_json::json!([2]));
    // The vault still opens: its own keys were re-sealed under master key 2 before 1 went.
    let out = cli(&["unseal", "--data-dir", s(&data), "--json"], Some(PASS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // init, the rotation.
    assert_eq!(v["audit_size"], 2);
    // A data key rotation names its citizen.
    let out = cli(
        &["keys", "rotate", "--kind", "dek", "--data-dir", s(&data)],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("--citizen"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_master_key_rotation_changes_the_passphrase() {
    let root = scratch("repass");
    let data = init(&root);
    let short = root.join("short");
    std::fs::write(&short, "short\n").expect("writes");
    let new = root.join("new-pass");
    let new_pass = "a completely different operator passphrase";
    std::fs::write(&new, format!("{new_pass}\n")).expect("writes");
    let rotate = |file: &Path, extra: &[&str]| {
        let mut args = vec!["keys", "rotate", "--data-dir", s(&data)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--new-passphrase-file", s(file)]);
        cli(&args, Some(PASS))
    };
    // Refused: a data key rotation, a live rotation, a weak passphrase; nothing changes.
    let out = rotate(&new, &["--kind", "dek", "--citizen", "C1"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = cli(
        &[
            "keys",
            "rotate",
            "--new-passphrase-file",
            s(&new),
            "--server",
            "https://localhost:1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = rotate(&short, &["--kind", "kek"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refused"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&["unseal", "--data-dir", s(&data), "--json"], Some(PASS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The change: master key 2, sealed (with key 1) under the new passphrase only.
    let out = rotate(&new, &["--kind", "kek", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["key_id"], 2);
    let out = cli(&["unseal", "--data-dir", s(&data)], Some(PASS));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = cli(
        &["unseal", "--data-dir", s(&data), "--json"],
        Some(new_pass),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // init, the refused weak passphrase wrote nothing, the rotation.
    assert_eq!(v["audit_size"], 2);
    let out = cli(
        &["keys", "retire", "--data-dir", s(&data), "--kek-id", "1"],
        Some(new_pass),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn upgrade_on_a_current_directory_changes_nothing() {
    let root = scratch("upgrade");
    let data = init(&root);
    let out = cli(&["upgrade", "--data-dir", s(&data), "--json"], Some(PASS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["upgraded"], false);
    let out = cli(
        &["upgrade", "--data-dir", s(&data)],
        Some("not the passphrase"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
