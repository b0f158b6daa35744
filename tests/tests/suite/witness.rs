//! Witness cosigning over the real binaries: three `vault-witness` processes, a vault
//! that publishes only checkpoints a 2-of-3 quorum cosigned, a witness killed, and a log
//! rewritten offline (a fork) that every witness refuses. The cosigned checkpoints are
//! also checked with code this project did not write (Cloudflare's `signed_note` and
//! `ed25519-dalek`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tests::{binary, Vault};

use crate::web::Browser;
use vault_core::audit::WitnessPolicy;

/// A `vault-witness serve` process, killed when dropped.
struct Witness {
    child: Option<Child>,
    name: String,
    vkey: String,
    key: PathBuf,
    state: PathBuf,
    url: String,
    tls: Option<(PathBuf, PathBuf)>,
    log_key: String,
}

impl Witness {
    /// Generates a key in `dir` and starts the witness for the log `log_key`.
    fn start(dir: &Path, i: usize, log_key: &str, tls: Option<(PathBuf, PathBuf)>) -> Witness {
        let name = format!("witness{i}.example.org");
        let key = dir.join(format!("w{i}.key"));
        let out = Command::new(binary("vault-witness"))
            .args(["keygen", "--name", &name, "--key"])
            .arg(&key)
            .output()
            .expect("vault-witness runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vkey = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let mut w = Witness {
            child: None,
            name,
            vkey,
            key,
            state: dir.join(format!("w{i}.state")),
            url: String::new(),
            tls,
            log_key: log_key.to_owned(),
        };
        w.run("127.0.0.1:0");
        w
    }

    fn run(&mut self, listen: &str) {
        let mut cmd = Command::new(binary("vault-witness"));
        cmd.args(["serve", "--key"])
            .arg(&self.key)
            .arg("--state")
            .arg(&self.state)
            .args(["--log", &self.log_key, "--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd.spawn().expect("vault-witness serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .split_once(" listening on ")
            .map(|(_, u)| u.to_owned())
            .unwrap_or_else(|| panic!("the witness prints its address: {line:?}"));
        // With TLS the certificate names localhost.
        self.url = url.replace("127.0.0.1", "localhost");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and state.
    fn restart(&mut self) {
        let port = self.url.rsplit(':').next().unwrap().to_owned();
        self.run(&format!("127.0.0.1:{port}"));
    }

    /// The size of the checkpoint its state holds for the log.
    fn state_size(&self) -> u64 {
        let file = std::fs::read_dir(&self.state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| !p.to_string_lossy().ends_with(".tmp"))
            .expect("a state file");
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.kill();
    }
}

fn policy(witnesses: &[Witness], rule: &str) -> String {
    let mut p = String::from("# the vault's witnesses\n");
    for (i, w) in witnesses.iter().enumerate() {
        p.push_str(&format!("witness W{} {} {}\n", i + 1, w.vkey, w.url));
    }
    p.push_str(rule);
    p
}

/// The published checkpoint, once it has status 200 and a size of at least `min`.
async fn witnessed_at_least(v: &Vault, min: u64, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let resp = v
            .client()
            .get(v.at("/v1/audit/checkpoint"))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let note = resp.text().await.unwrap();
            if size_of(&note) >= min {
                return note;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no witnessed checkpoint of size >= {min} within {within:?}; /healthz: {}",
            v.public_text("/healthz").await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// Adds entries to the log: each read of a citizen's records is one.
async fn add_entries(v: &Vault, n: usize) {
    for _ in 0..n {
        let r = v
            .as_citizen(0, reqwest::Method::GET, "/v1/me/records")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "access is never blocked by witnesses");
        // Below the citizen quota (20/s, bursts of 40).
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// A `cosignature/v1` verifier written from the C2SP spec on `ed25519-dalek`, for
/// Cloudflare's `signed_note` note parser.
struct CosigV1 {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl CosigV1 {
    fn new(vkey: &str) -> CosigV1 {
        use base64::Engine as _;
        let mut parts = vkey.splitn(3, '+');
        let name = parts.next().unwrap().to_owned();
        let _id = parts.next().unwrap();
        let typed = base64::engine::general_purpose::STANDARD
            .decode(parts.next().unwrap())
            .unwrap();
        assert_eq!(typed[0], 0x04, "a cosignature/v1 key");
        CosigV1 {
            id: signed_note::key_id(&name, &typed),
            key: ed25519_dalek::VerifyingKey::from_bytes(&typed[1..].try_into().unwrap()).unwrap(),
            name,
        }
    }
}

impl signed_note::Verifier for CosigV1 {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 72 {
            return false;
        }
        let time = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut signed = format!("cosignature/v1\ntime {time}\n").into_bytes();
        signed.extend_from_slice(msg);
        let s = ed25519_dalek::Signature::from_bytes(&sig[8..].try_into().unwrap());
        self.key.verify_strict(&signed, &s).is_ok()
    }
}

/// The names whose signatures `signed_note` verifies on `note`: the log's and each
/// witness's.
fn independently_verified(note: &str, log_key: &str, witnesses: &[&Witness]) -> Vec<String> {
    let mut list: Vec<Box<dyn signed_note::Verifier>> = vec![Box::new(
        signed_note::StandardVerifier::new(log_key).unwrap(),
    )];
    for w in witnesses {
        list.push(Box::new(CosigV1::new(&w.vkey)));
    }
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).expect("a signed note");
    let (verified, _) = parsed
        .verify(&signed_note::VerifierList::new(list))
        .expect("every known signature verifies");
    verified.iter().map(|s| s.name().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_two_of_three_quorum_publishes_witnessed_checkpoints_and_survives_a_dead_witness() {
    let mut v = Vault::start_dev().unwrap();
    let log_key = v
        .public_text("/v1/audit/key")
        .await
        .unwrap()
        .trim()
        .to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = crate::localhost_tls(tmp.path());
    let tls = (cert, key);
    let mut ws: Vec<Witness> = (1..=3)
        .map(|i| Witness::start(tmp.path(), i, &log_key, Some(tls.clone())))
        .collect();
    let policy_file = tmp.path().join("witnesses.policy");
    std::fs::write(&policy_file, policy(&ws, "group G 2 W1 W2 W3\nquorum G\n")).unwrap();
    v.restart_with_args(&[
        "--witness-policy",
        policy_file.to_str().unwrap(),
        "--witness-ca",
        ca_pem.to_str().unwrap(),
    ])
    .unwrap();

    // Published once witnessed, over TLS, with at least two cosignatures that independent
    // code verifies, and that the published policy accepts.
    let note = witnessed_at_least(&v, 1, Duration::from_secs(20)).await;
    let names = independently_verified(&note, &log_key, &ws.iter().collect::<Vec<_>>());
    assert_eq!(names[0], log_key.split('+').next().unwrap());
    assert!(
        names.len() >= 3,
        "the log and two witnesses at least: {names:?}"
    );
    let published_policy = v.public_text("/v1/audit/witness-policy").await.unwrap();
    assert!(published_policy.starts_with(&format!("log {log_key}\n")));
    let checked = WitnessPolicy::parse(&published_policy)
        .unwrap()
        .check(&note)
        .unwrap();
    assert!(checked.quorum_met, "{checked:?}");

    // The citizen's page checks the cosignatures against the published policy and says,
    // in words, who vouched for the log.
    let (text, role) = page_integrity(&v).await;
    assert!(
        text.contains("independent witnesses (witness")
            && text.contains("confirmed this is the same log everyone sees"),
        "{text}"
    );
    assert_eq!(role, None, "{text}");

    // The log grows; each new checkpoint is witnessed.
    add_entries(&v, 5).await;
    let size = v.audit_size().await.unwrap();
    witnessed_at_least(&v, size, Duration::from_secs(20)).await;

    // One witness down: two still make the quorum.
    ws[2].kill();
    add_entries(&v, 5).await;
    let size = v.audit_size().await.unwrap();
    let note = witnessed_at_least(&v, size, Duration::from_secs(20)).await;
    let names = independently_verified(&note, &log_key, &ws.iter().collect::<Vec<_>>());
    assert!(!names.contains(&ws[2].name), "{names:?}");
    assert_eq!(names.len(), 3, "{names:?}");

    // A second one down: access goes on, publication waits, and the server says so.
    ws[1].kill();
    add_entries(&v, 3).await;
    let stuck = v.audit_size().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let published = size_of(&v.public_text("/v1/audit/checkpoint").await.unwrap());
    assert!(published < stuck, "published {published} without a quorum");
    let health: serde_json::Value =
        serde_json::from_str(&v.public_text("/healthz").await.unwrap()).unwrap();
    let wit = &health["witnessing"];
    assert_eq!(wit["witnessed_size"], published, "{health}");
    assert!(wit["signed_size"].as_u64().unwrap() >= stuck, "{health}");
    assert!(wit["behind_seconds"].as_f64().unwrap() > 0.0, "{health}");
    assert_eq!(wit["witnesses"][1]["ok"], false, "{health}");
    assert!(
        wit["witnesses"][1]["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{health}"
    );
    let metrics = v.public_text("/metrics").await.unwrap();
    assert!(
        metrics.contains("vault_witness_up{witness=\"W2\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("vault_witness_witnessed_size {published}")));

    // The witness comes back with its state: publication catches up.
    ws[1].restart();
    witnessed_at_least(&v, stuck, Duration::from_secs(90)).await;
    assert!(ws[1].state_size() >= stuck);

    // The auditor's export carries the cosignatures, and verifies against the policy
    // offline; a policy asking for all three witnesses refuses it.
    let export = tmp.path().join("log.export");
    let out = v.cli(&["audit", "export", "--out", export.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = |policy: &Path| {
        Command::new(binary("vault-cli"))
            .args(["audit", "verify"])
            .arg(&export)
            .args(["--key", &log_key, "--policy"])
            .arg(policy)
            .output()
            .unwrap()
    };
    let out = verify(&policy_file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("witnessed: cosigned by 2"), "{stdout}");
    let all_three = tmp.path().join("all.policy");
    std::fs::write(&all_three, policy(&ws, "group G all W1 W2 W3\nquorum G\n")).unwrap();
    let out = verify(&all_three);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("below its quorum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_rewritten_offline_is_refused_by_every_witness() {
    let mut v = Vault::start_dev().unwrap();
    let log_key = v
        .public_text("/v1/audit/key")
        .await
        .unwrap()
        .trim()
        .to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let ws: Vec<Witness> = (1..=3)
        .map(|i| Witness::start(tmp.path(), i, &log_key, None))
        .collect();
    let policy_file = tmp.path().join("witnesses.policy");
    std::fs::write(&policy_file, policy(&ws, "group G 2 W1 W2 W3\nquorum G\n")).unwrap();
    let args = ["--witness-policy", policy_file.to_str().unwrap()];
    v.restart_with_args(&args).unwrap();
    add_entries(&v, 5).await;
    let size = v.audit_size().await.unwrap();
    let before = witnessed_at_least(&v, size, Duration::from_secs(20)).await;
    let witnessed = size_of(&before);

    // Whoever holds the store rewrites the log: the vault starts a new one, a fork.
    v.kill();
    {
        let store = vault_core::storage::SledStore::open(v.data_dir().join("store")).unwrap();
        vault_core::engine::dangerous_forget_log(&store).unwrap();
    }
    v.restart_with_args(&args).unwrap();
    // Past the witnessed size, so that the vault offers the witnesses a proof from it.
    while v.audit_size().await.unwrap() <= witnessed + 2 {
        add_entries(&v, 5).await;
    }
    let forked = v.audit_size().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // No witness cosigned the fork: each still holds the old checkpoint, and the vault
    // still publishes only the old witnessed one.
    for w in &ws {
        assert_eq!(w.state_size(), witnessed, "{} cosigned the fork", w.name);
    }
    let published = v.public_text("/v1/audit/checkpoint").await.unwrap();
    assert_eq!(published, before);
    let health: serde_json::Value =
        serde_json::from_str(&v.public_text("/healthz").await.unwrap()).unwrap();
    for w in health["witnessing"]["witnesses"].as_array().unwrap() {
        let e = w["last_error"].as_str().unwrap_or_default();
        assert!(
            e.contains("HTTP 422") || e.contains("larger than this log's"),
            "each witness refuses the fork: {health}"
        );
    }
    // The citizen's page warns: what it is shown is not the log the witnesses confirmed.
    let (text, role) = page_integrity(&v).await;
    assert!(
        text.contains("NOT the one its witnesses confirmed"),
        "{text}"
    );
    assert_eq!(role.as_deref(), Some("alert"), "{text}");

    // What a reader checks: the fork is not consistent with the witnessed checkpoint.
    let history = v
        .as_citizen(0, reqwest::Method::GET, "/v1/me/access-history?limit=1")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let new_note = history["checkpoint"].as_str().unwrap();
    let to = size_of(new_note);
    assert!(to > witnessed && to <= forked + 1, "{to}");
    let proof = v
        .client()
        .get(v.at(&format!(
            "/v1/audit/proof/consistency?from={witnessed}&to={to}"
        )))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let proof = tests::hashes_of(&proof);
    let root = |note: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(note.lines().nth(2).unwrap())
            .unwrap()
    };
    assert!(vault_core::audit::verify_consistency(
        witnessed,
        to,
        &root(&before),
        &root(new_note),
        &proof
    )
    .is_err());
}

/// The citizen page's integrity notice after signing in as citizen 0.
async fn page_integrity(v: &Vault) -> (String, Option<String>) {
    let downloads = tempfile::tempdir().unwrap();
    let b = Browser::start(downloads.path()).await.unwrap();
    b.goto(&v.at("/")).await.unwrap();
    b.type_into("#token", v.citizen(0).1).await.unwrap();
    b.click("#signin-form button[type=submit]").await.unwrap();
    b.wait_for(
        "the history to load",
        "return document.body.dataset.ready === 'true'",
        json!([]),
    )
    .await
    .unwrap();
    let text = b.text("#integrity").await.unwrap();
    let role = b
        .js(
            "return document.getElementById('integrity').getAttribute('role')",
            json!([]),
        )
        .await
        .unwrap();
    (text, role.as_str().map(str::to_owned))
}
