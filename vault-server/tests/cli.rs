//! The `vault-server` binary's command line: help, version, usage errors (exit 2, usage on
//! stderr) and options given by environment variables.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Every variable the server reads its options or its passphrase from.
const VARS: [&str; 7] = [
    "VAULT_DEV",
    "VAULT_DATA_DIR",
    "VAULT_LISTEN",
    "VAULT_PASSPHRASE_FILE",
    "VAULT_ENABLE_ECHO",
    "VAULT_AGENCY_RATE",
    "VAULT_PASSPHRASE",
];

/// The server binary with none of its variables inherited from the test's environment.
fn server() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-server"));
    for v in VARS {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("vault-server runs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_option_and_its_variable() {
    let (code, out, _) = run(server().arg("--help"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Usage: vault-server"), "{out}");
    for (option, var) in [
        ("--dev", "VAULT_DEV"),
        ("--data-dir <DIR>", "VAULT_DATA_DIR"),
        ("--listen <ADDR>", "VAULT_LISTEN"),
        ("--passphrase-file <FILE>", "VAULT_PASSPHRASE_FILE"),
        ("--enable-echo", "VAULT_ENABLE_ECHO"),
        ("--agency-rate <REQ_PER_S>", "VAULT_AGENCY_RATE"),
    ] {
        assert!(out.contains(option), "{option} missing from\n{out}");
        assert!(
            out.contains(&format!("[env: {var}=")),
            "{var} missing from\n{out}"
        );
    }
    assert!(out.contains("[default: 127.0.0.1:8443]"), "{out}");
    assert!(out.contains("[default: 1000]"), "{out}");
    assert!(
        out.contains("VAULT_PASSPHRASE environment variable"),
        "{out}"
    );
    let (code, short, _) = run(server().arg("-h"));
    assert_eq!(code, Some(0));
    assert!(short.contains("Usage: vault-server"), "{short}");
}

#[test]
fn version_prints_the_crate_version() {
    let (code, out, _) = run(server().arg("--version"));
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim(),
        format!("vault-server {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let (code, out, err) = run(server().args(["--data-dir", "/nonexistent", "--bogus"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    assert!(err.contains("Usage: vault-server"), "{err}");
}

#[test]
fn data_dir_is_required_unless_dev() {
    let (code, _, err) = run(&mut server());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("the following required arguments were not provided"),
        "{err}"
    );
    assert!(err.contains("--data-dir <DIR>"), "{err}");
    // A false VAULT_DEV is not --dev.
    let (code, _, err) = run(server().env("VAULT_DEV", "0"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--data-dir is required unless --dev is given"),
        "{err}"
    );
}

#[test]
fn invalid_values_name_the_option_and_what_is_expected() {
    for (args, expected) in [
        (
            &["--agency-rate", "0"][..],
            "invalid value '0' for '--agency-rate <REQ_PER_S>': must be a positive number",
        ),
        (
            &["--agency-rate", "-5"][..],
            "invalid value '-5' for '--agency-rate <REQ_PER_S>': must be a positive number",
        ),
        (
            &["--agency-rate", "inf"][..],
            "invalid value 'inf' for '--agency-rate <REQ_PER_S>': must be a positive number",
        ),
        (
            &["--listen", "localhost"][..],
            "invalid value 'localhost' for '--listen <ADDR>': not an address and port like 127.0.0.1:8443",
        ),
        (&["--data-dir"][..], "a value is required for '--data-dir <DIR>'"),
    ] {
        let (code, _, err) = run(server().arg("--dev").args(args));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // The same checks apply to a value from the environment.
    let (code, _, err) = run(server().arg("--dev").env("VAULT_AGENCY_RATE", "fast"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid value 'fast' for '--agency-rate <REQ_PER_S>'"),
        "{err}"
    );
}

#[test]
fn options_come_from_environment_variables() {
    // Outside --dev, the data directory and passphrase file from the environment are used:
    // the missing passphrase file is reported by name.
    let dir = tempfile::tempdir().expect("temp dir");
    let pass = dir.path().join("no-such-passphrase");
    let (code, _, err) = run(server()
        .env("VAULT_DATA_DIR", dir.path())
        .env("VAULT_PASSPHRASE_FILE", &pass)
        .env("VAULT_LISTEN", "127.0.0.1:0"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot read the passphrase file {}",
            pass.display()
        )),
        "{err}"
    );

    // A dev vault started from the environment alone.
    let data = dir.path().join("data");
    let mut child = server()
        .env("VAULT_DEV", "1")
        .env("VAULT_DATA_DIR", &data)
        .env("VAULT_LISTEN", "127.0.0.1:0")
        .env("VAULT_ENABLE_ECHO", "true")
        .env("VAULT_AGENCY_RATE", "5")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vault-server starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(120));
    let _ = child.kill();
    let _ = child.wait();
    let first = first.expect("the server prints a line");
    assert!(
        first.starts_with("listening on https://localhost:"),
        "{first}"
    );
    assert!(
        !first.ends_with(":8443"),
        "VAULT_LISTEN chose the port: {first}"
    );
    assert!(data.join("dev").join("credentials.json").is_file());
}
