//! A citizen's export is streamed: the server's memory does not grow with their history.
//! A citizen with 100,000 entries (written through vault-core, 500 import rows a commit)
//! exports over the real server while its resident memory is sampled. Reading the history
//! fills the store's page cache (sled's, bounded by its `cache_capacity` and shared by
//! every read): the test first pages through the history (200 entries a request), so that
//! what the export itself holds is what is measured.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use vault_core::{Bearer, DataDir, ImportRow, InitOptions, Plaintext, TokenRequest};

const PASS: &str = "correct horse battery staple export";
const ENTRIES: usize = 100_000;

/// The server's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

/// A data directory whose citizen has `ENTRIES` entries; returns the citizen's token and
/// the CA certificate (PEM).
fn provision(root: &Path) -> (String, Vec<u8>) {
    let dir = DataDir::new(root);
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    dir.init(
        PASS,
        &policies,
        InitOptions {
            hostnames: vec!["localhost".to_owned()],
            origin: "test.example/log".to_owned(),
            dangerous_kdf_iterations: Some(10_000),
        },
    )
    .unwrap();
    let v = dir.open(PASS).unwrap();
    let secret = v
        .issue_token(TokenRequest::Citizen {
            citizen: "EE38001010001".to_owned(),
            valid_days: Some(30),
        })
        .unwrap()
        .token
        .secret()
        .to_owned();
    assert!(matches!(
        v.authenticate_token(&secret),
        Ok(Bearer::Citizen(_))
    ));
    for batch in 0..ENTRIES / 500 {
        let rows = (0..500)
            .map(|i| ImportRow {
                citizen: "EE38001010001".to_owned(),
                category: "health".to_owned(),
                fields: vec![(
                    "blood_type".to_owned(),
                    Plaintext::new(format!("\"{batch}-{i}\"").into_bytes()),
                )],
            })
            .collect();
        v.import("general_hospital", rows).unwrap();
    }
    let ca = base64::engine::general_purpose::STANDARD.encode(v.ca_cert_der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in ca.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    v.shutdown();
    drop(v);
    (secret, pem.into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_of_100000_entries_grows_the_server_by_less_than_50_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let (token, ca) = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || provision(&root))
            .await
            .unwrap()
    };
    let server = tests::start_server(&root, PASS);
    let pid = server.0.id();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tests::tls_config(&ca, None).unwrap())
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    // Warm up (TLS, the first pages of the store) before the baseline.
    let (s, _) = tests::send(
        client
            .get(format!("{}/v1/me/access-history?limit=200", server.1))
            .bearer_auth(&token),
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    let export = |token: String| {
        let (client, url) = (client.clone(), format!("{}/v1/me/export", server.1));
        async move {
            let resp = client.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap()
        }
    };
    let cold = rss(pid);
    let mut start: Option<u64> = None;
    let mut pages = 0;
    loop {
        let url = match start {
            Some(n) => format!("{}/v1/me/access-history?limit=200&start={n}", server.1),
            None => format!("{}/v1/me/access-history?limit=200", server.1),
        };
        let resp = client.get(url).bearer_auth(&token).send().await.unwrap();
        if resp.status() == 429 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(resp.status(), 200);
        let page: serde_json::Value = resp.json().await.unwrap();
        pages += 1;
        match page["next"].as_u64() {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    let before = rss(pid);
    eprintln!(
        "history read in {pages} pages: server RSS {} MB before, {} MB after (page cache)",
        cold >> 20,
        before >> 20
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let body = export(token.clone()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let export: serde_json::Value = serde_json::from_slice(&body).expect("one JSON document");
    let entries = export["access_history"]["entries"].as_array().unwrap();
    // The imports' entries, and the export's own (newest first).
    assert_eq!(entries.len(), ENTRIES + 1);
    assert_eq!(entries[0]["entry"]["action"], "citizen.export");
    assert!(export["access_history"]["next"].is_null());
    let grown = peak.saturating_sub(before);
    eprintln!(
        "export of {} entries ({} MB): server RSS {} MB before, peak {} MB (+{} MB)",
        entries.len(),
        body.len() >> 20,
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    assert!(
        grown < 50 << 20,
        "the server grew by {} MB during the export",
        grown >> 20
    );
}
