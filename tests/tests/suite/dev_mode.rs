//! The README's run command: `vault-server --dev` starts a working vault and every `curl`
//! example it prints works as printed (run by the real `curl`, over TLS with the printed
//! certificate paths).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::binary;

#[test]
fn every_printed_curl_example_works_as_printed() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is missing: run `bash scripts/test`, which installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary("vault-server"))
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // The report ends with the operator's example; wait for it.
    while !lines
        .iter()
        .any(|l: &String| l.contains("/v1/admin/agencies"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("dev mode did not print its examples:\n{}", lines.join("\n"));
            }
        }
    }
    let text = lines.join("\n");
    assert!(
        text.contains("NOT FOR PRODUCTION"),
        "dev mode says plainly it is not for production"
    );
    let curls: Vec<&String> = lines.iter().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 6, "an example for each user: {text}");
    for cmd in curls {
        // -w prints the status after the body; -sS keeps errors visible.
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{cmd} -o /dev/null -w '%{{http_code}}'"))
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let refusal_example = cmd.contains("health.blood_type");
        let expected = if refusal_example { "403" } else { "200" };
        assert_eq!(
            status,
            expected,
            "example failed: {cmd}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
