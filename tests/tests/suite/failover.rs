//! Several `vault-server` nodes on one PostgreSQL store, as an operator would run them:
//! the active node killed under access load (failover), paused until another takes over
//! (fencing), and the database stopped under load and started again. Real processes, a
//! real PostgreSQL cluster, real TLS.
//!
//! `VAULT_TEST_FAILOVER_KILLS` sets the number of kills (default 20).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tests::{binary, client, hash_of, hashes_of, wait_for_listening, Vault};
use vault_core::storage::postgres::testing::PgCluster;

/// Lease lifetime of the nodes under test: a failover takes about this long.
const LEASE_TTL: &str = "2";

/// One `vault-server` process on the shared data directory and store.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(data: &Path, store: &str, passphrase: &str) -> Node {
        let mut child = Command::new(binary("vault-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--lease-ttl",
                LEASE_TTL,
                "--data-dir",
            ])
            .arg(data)
            .args(["--store", store])
            .env("VAULT_PASSPHRASE", passphrase)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("vault-server starts");
        let url = wait_for_listening(&mut child).expect("the node listens");
        Node { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal_quietly();
        self.kill();
    }
}

impl Node {
    fn signal_quietly(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The shared credentials and clients.
struct Cluster {
    data: PathBuf,
    store: String,
    passphrase: String,
    police: reqwest::Client,
    public: reqwest::Client,
    operator: reqwest::Client,
    auditor_token: String,
    /// Keeps the data directory.
    dev: Vault,
}

impl Cluster {
    /// Provisions a dev vault on `store` (its demo agencies and records), stops it, and
    /// returns what nodes need to serve it.
    fn provision(store: String) -> Cluster {
        let mut dev =
            Vault::start_dev_with_args(&["--store", &store, "--lease-ttl", LEASE_TTL], &[])
                .expect("dev vault");
        dev.kill();
        let police = dev.agency("national_police");
        let op = &dev.creds.operator;
        Cluster {
            data: dev.data_dir(),
            passphrase: dev.creds.passphrase.clone(),
            police: client(&dev.creds.ca_cert, Some((&police.cert, &police.key))).expect("client"),
            public: client(&dev.creds.ca_cert, None).expect("client"),
            operator: client(&dev.creds.ca_cert, Some((&op.cert, &op.key))).expect("client"),
            auditor_token: dev.creds.auditor_token.clone(),
            store,
            dev,
        }
    }

    fn node(&self) -> Node {
        Node::start(&self.data, &self.store, &self.passphrase)
    }

    /// A public GET answered with JSON.
    async fn get_json(&self, url: String) -> Value {
        self.public
            .get(url)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON")
    }

    /// `/healthz` of `url`: its status code and body (`None`: unreachable).
    async fn health(&self, url: &str) -> Option<(u16, Value)> {
        let resp = self
            .public
            .get(format!("{url}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// The index of the active node among `nodes`, waiting up to `within`.
    async fn active(&self, nodes: &[Node], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            for (i, n) in nodes.iter().enumerate() {
                if let Some((200, _)) = self.health(&n.url).await {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no node became active within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One statutory access on `url`: `Ok(audit index)` when answered 200; otherwise the
    /// status (0: no answer), after checking that nothing was released.
    async fn access(&self, url: &str) -> Result<u64, u16> {
        let ask = json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration", "identity.full_name"], "legal_basis": "public_task"});
        let Ok(resp) = self
            .police
            .post(format!("{url}/v1/access"))
            .json(&ask)
            .timeout(Duration::from_secs(20))
            .send()
            .await
        else {
            return Err(0);
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status == 200 {
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert!(text.contains("Mari Tamm"), "a 200 carries the data: {text}");
            return Ok(body["audit_index"].as_u64().expect("audit index"));
        }
        assert!(
            !text.contains("Mari Tamm") && !text.contains("123 ABC"),
            "a {status} released data: {text}"
        );
        Err(status)
    }

    /// The public checkpoint of `url`, if it serves one.
    async fn checkpoint(&self, url: &str) -> Option<String> {
        let resp = self
            .public
            .get(format!("{url}/v1/audit/checkpoint"))
            .send()
            .await
            .ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    }

    /// Signs a checkpoint on the active node `url`, verifies the whole log with
    /// `vault-cli audit verify`, and checks that every acknowledged access is in it as an
    /// access by the police and that every checkpoint seen is consistent with it.
    async fn verify(&self, url: &str, acknowledged: &[u64], seen: &[String]) {
        let key = self
            .public
            .get(format!("{url}/v1/audit/key"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let verifier = audit::NoteVerifier::parse(key.trim()).unwrap();
        let note = self
            .operator
            .post(format!("{url}/v1/admin/checkpoint"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let last = audit::SignedCheckpoint::parse(&note, &verifier)
            .unwrap()
            .checkpoint;
        let export = self
            .operator
            .get(format!("{url}/v1/admin/audit/export"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let path = self.data.join("failover.export");
        std::fs::write(&path, &export).unwrap();
        let out = Command::new(binary("vault-cli"))
            .args(["audit", "verify"])
            .arg(&path)
            .args(["--key", key.trim()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the log verifies end to end: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every acknowledged access is an access entry at its index.
        let mut actions = std::collections::HashMap::new();
        let mut start = 0;
        while start < last.size {
            let page: Value = self
                .public
                .get(format!("{url}/v1/audit/entries?start={start}&limit=1000"))
                .bearer_auth(&self.auditor_token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let entries = page["entries"].as_array().unwrap();
            assert!(!entries.is_empty(), "entries from {start}");
            for e in entries {
                actions.insert(
                    e["index"].as_u64().unwrap(),
                    (
                        e["entry"]["action"].as_str().unwrap().to_owned(),
                        e["entry"]["actor"]["id"].as_str().unwrap_or("").to_owned(),
                    ),
                );
            }
            start += entries.len() as u64;
            // The auditor quota is 100 requests/s.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for index in acknowledged {
            let (action, actor) = actions
                .get(index)
                .unwrap_or_else(|| panic!("acknowledged access {index} is not in the log"));
            assert_eq!(
                (action.as_str(), actor.as_str()),
                ("access", "national_police"),
                "{index}"
            );
        }
        // Every checkpoint seen is consistent with the final log: no fork.
        for text in seen {
            let cp = audit::SignedCheckpoint::parse(text, &verifier)
                .expect("checkpoints verify")
                .checkpoint;
            if cp.size == 0 || cp.size == last.size {
                assert!(
                    cp.size == 0 || cp.root == last.root,
                    "same size, other root"
                );
                continue;
            }
            let proof: Value = self
                .get_json(format!(
                    "{url}/v1/audit/proof/consistency?from={}&to={}",
                    cp.size, last.size
                ))
                .await;
            let hashes = hashes_of(&proof);
            audit::verify_consistency(cp.size, last.size, &cp.root, &last.root, &hashes)
                .unwrap_or_else(|e| panic!("checkpoint of {} forks from the log: {e}", cp.size));
        }
    }
}

/// Sends accesses to whichever node `target` names, recording each acknowledged index,
/// until `stop`.
fn load(
    cluster: Arc<Cluster>,
    target: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acknowledged: Arc<Mutex<Vec<u64>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let (cluster, target, stop, acknowledged) = (
                cluster.clone(),
                target.clone(),
                stop.clone(),
                acknowledged.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = target.lock().unwrap().clone();
                    match cluster.access(&url).await {
                        Ok(index) => acknowledged.lock().unwrap().push(index),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect()
}

fn kills() -> usize {
    std::env::var("VAULT_TEST_FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_active_node_under_load_loses_nothing_and_forks_nothing() {
    let cluster = Arc::new(Cluster::provision(crate::pg::new_database()));
    let mut nodes: Vec<Node> = (0..3).map(|_| cluster.node()).collect();
    let first = cluster.active(&nodes, Duration::from_secs(30)).await;
    let target = Arc::new(Mutex::new(nodes[first].url.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let workers = load(
        cluster.clone(),
        target.clone(),
        stop.clone(),
        acknowledged.clone(),
    );
    let mut seen = Vec::new();
    let mut failovers = Vec::new();
    for kill in 0..kills() {
        let active = cluster.active(&nodes, Duration::from_secs(15)).await;
        *target.lock().unwrap() = nodes[active].url.clone();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(note) = cluster.checkpoint(&nodes[active].url).await {
            seen.push(note);
        }
        let before = acknowledged.lock().unwrap().len();
        let killed_at = Instant::now();
        nodes[active].kill();
        // A standby takes over and serves an access.
        let next = loop {
            let others: Vec<usize> = (0..nodes.len()).filter(|i| *i != active).collect();
            let mut found = None;
            for i in others {
                if let Some((200, _)) = cluster.health(&nodes[i].url).await {
                    if cluster.access(&nodes[i].url).await.is_ok() {
                        found = Some(i);
                    }
                }
            }
            if let Some(i) = found {
                break i;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(15),
                "kill {kill}: no standby took over within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        failovers.push(killed_at.elapsed());
        *target.lock().unwrap() = nodes[next].url.clone();
        assert!(
            acknowledged.lock().unwrap().len() >= before,
            "kill {kill}: the load went on"
        );
        // The killed node comes back as a standby.
        nodes[active] = cluster.node();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let active = cluster.active(&nodes, Duration::from_secs(15)).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > kills(),
        "load ran: {}",
        acknowledged.len()
    );
    cluster
        .verify(&nodes[active].url, &acknowledged, &seen)
        .await;
    let mut ms: Vec<u128> = failovers.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    println!(
        "failover over {} kills (lease {LEASE_TTL} s): min {} ms, median {} ms, max {} ms; {} accesses acknowledged",
        ms.len(),
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_active_node_commits_and_signs_nothing_after_a_takeover() {
    let cluster = Cluster::provision(crate::pg::new_database());
    let nodes = [cluster.node(), cluster.node()];
    let a = cluster.active(&nodes, Duration::from_secs(30)).await;
    let b = 1 - a;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        acknowledged.push(cluster.access(&nodes[a].url).await.expect("served by A"));
    }
    let mut seen: Vec<String> = cluster
        .checkpoint(&nodes[a].url)
        .await
        .into_iter()
        .collect();
    // Requests sent to A while it is paused are answered only after it resumes.
    nodes[a].signal("-STOP");
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let police = cluster.police.clone();
            let url = nodes[a].url.clone();
            tokio::spawn(async move {
                police
                    .post(format!("{url}/v1/access"))
                    .json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration", "identity.full_name"], "legal_basis": "public_task"}))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
            })
        })
        .collect();
    assert_eq!(cluster.active(&nodes, Duration::from_secs(15)).await, b);
    for _ in 0..5 {
        acknowledged.push(cluster.access(&nodes[b].url).await.expect("served by B"));
    }
    seen.extend(cluster.checkpoint(&nodes[b].url).await);
    nodes[a].signal("-CONT");
    // What A was asked while paused, and anything after, is refused without data.
    for p in pending {
        if let Ok(resp) = p.await.unwrap() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            assert_ne!(
                status, 200,
                "the paused node answered after the takeover: {text}"
            );
            assert!(!text.contains("Mari Tamm"), "released: {text}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((status, body)) = cluster.health(&nodes[a].url).await {
            if status == 503 && body["status"] == "standby" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "A did not step down within 10 s");
        cluster
            .access(&nodes[a].url)
            .await
            .expect_err("A serves nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.extend(cluster.checkpoint(&nodes[a].url).await);
    assert_eq!(cluster.active(&nodes, Duration::from_secs(5)).await, b);
    cluster.verify(&nodes[b].url, &acknowledged, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_fails_closed_and_the_node_recovers_by_itself() {
    // A cluster of its own: this test stops it.
    let pg = PgCluster::start().expect("a private PostgreSQL cluster");
    pg.sql("postgres", "CREATE DATABASE outage")
        .expect("database");
    let cluster = Arc::new(Cluster::provision(pg.url("outage")));
    let nodes = [cluster.node()];
    cluster.active(&nodes, Duration::from_secs(30)).await;
    let target = Arc::new(Mutex::new(nodes[0].url.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let workers = load(cluster.clone(), target, stop.clone(), acknowledged.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.stop().expect("database stops");
    let stopped = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // While the database is down nothing is acknowledged (a 200 that was in flight at the
    // stop is at most a handful), and every refusal carried no data (checked in access).
    let during = acknowledged.lock().unwrap().len() - stopped;
    assert!(
        during <= 8,
        "{during} accesses acknowledged with the database down"
    );
    let (status, body) = cluster.health(&nodes[0].url).await.expect("answers");
    assert_eq!(status, 503, "{body}");
    pg.start_server().expect("database starts again");
    let restarted = Instant::now();
    loop {
        if cluster.access(&nodes[0].url).await.is_ok() {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "the node did not recover within 30 s of the database's restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    cluster.verify(&nodes[0].url, &acknowledged, &[]).await;
}

/// Every node enforces the same policy set: a node whose policy files differ from the set
/// the vault records is refused, until it is told to adopt them, which the log records.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_other_policy_files_is_refused_until_told_to_adopt_them() {
    let cluster = Cluster::provision(crate::pg::new_database());
    let other = cluster.data.parent().unwrap().join("other-node");
    std::fs::create_dir_all(other.join("policies")).unwrap();
    for entry in std::fs::read_dir(cluster.data.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            other.join("policies").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    std::fs::copy(
        cluster.data.join("store-location"),
        other.join("store-location"),
    )
    .unwrap();
    // A change of what the set says (a comment would not do: the digest is over the
    // set's canonical form).
    let vocabulary = other.join("policies").join("vocabulary.toml");
    let text = std::fs::read_to_string(&vocabulary).unwrap();
    assert!(
        text.contains("description = \""),
        "the vocabulary has descriptions"
    );
    let edited = text.replacen(
        "description = \"",
        "description = \"(edited on this node) ",
        1,
    );
    std::fs::write(&vocabulary, edited).unwrap();

    let run = |adopt: bool| {
        let mut cmd = Command::new(binary("vault-server"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--lease-ttl",
            LEASE_TTL,
            "--data-dir",
        ])
        .arg(&other)
        .args(["--store", &cluster.store])
        .env("VAULT_PASSPHRASE", &cluster.passphrase);
        if adopt {
            cmd.arg("--adopt-policies");
        }
        cmd
    };
    // The dev server's lease is still live for up to LEASE_TTL: wait it out, so that
    // the node opens the vault at once (a standby would only report the refusal in its
    // /healthz, and keep running).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut child = run(false)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node with other policy files kept running");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    let refused = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && refused.contains("differ from the set the vault enforces"),
        "{refused}"
    );
    assert!(refused.contains("--adopt-policies"), "{refused}");

    let mut child = run(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = wait_for_listening(&mut child).expect("listens");
    let mut node = Node { child, url };
    assert_eq!(
        cluster
            .active(std::slice::from_ref(&node), Duration::from_secs(15))
            .await,
        0
    );
    let note = cluster
        .operator
        .post(format!("{}/v1/admin/checkpoint", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    let page: Value = cluster
        .public
        .get(format!(
            "{}/v1/audit/entries?start=0&limit={size}",
            node.url
        ))
        .bearer_auth(&cluster.auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let adopted = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["action"] == "policies.adopt")
        .count();
    assert_eq!(adopted, 1, "{page}");
    node.kill();
}

/// A standby serves the public log from the database (the checkpoint the active node
/// published, the keys, proofs that verify against it) and sends everything else to the
/// active node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_serves_the_public_log_and_names_the_active_node() {
    let cluster = Cluster::provision(crate::pg::new_database());
    let nodes = [cluster.node(), cluster.node()];
    let a = cluster.active(&nodes, Duration::from_secs(30)).await;
    let b = 1 - a;
    let mut accessed = Vec::new();
    for _ in 0..5 {
        accessed.push(
            cluster
                .access(&nodes[a].url)
                .await
                .expect("served by the active node"),
        );
    }
    let note = cluster
        .operator
        .post(format!("{}/v1/admin/checkpoint", nodes[a].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.checkpoint(&nodes[b].url).await.as_deref() != Some(note.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the standby does not serve the checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let key = |url: String| {
        let public = cluster.public.clone();
        async move {
            public
                .get(format!("{url}/v1/audit/key"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let active_key = key(nodes[a].url.clone()).await;
    assert_eq!(key(nodes[b].url.clone()).await, active_key);
    let verifier = audit::NoteVerifier::parse(active_key.trim()).unwrap();
    let cp = audit::SignedCheckpoint::parse(&note, &verifier)
        .unwrap()
        .checkpoint;
    let proof: Value = cluster
        .get_json(format!(
            "{}/v1/audit/proof/inclusion?index=2&tree_size={}",
            nodes[b].url, cp.size
        ))
        .await;
    audit::verify_inclusion(
        &hash_of(&proof["leaf_hash"]),
        2,
        cp.size,
        &hashes_of(&proof),
        &cp.root,
    )
    .expect("the standby's inclusion proof verifies");
    let proof: Value = cluster
        .get_json(format!(
            "{}/v1/audit/proof/consistency?from=1&to={}",
            nodes[b].url, cp.size
        ))
        .await;
    assert!(proof["hashes"].is_array(), "{proof}");
    // The citizen's history, read from the database, with proofs against that checkpoint.
    let token = cluster.dev.citizen(0).1.to_owned();
    let history: Value = cluster
        .public
        .get(format!("{}/v1/me/access-history?limit=200", nodes[b].url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["checkpoint"], note.as_str(), "{history}");
    let entries = history["entries"].as_array().expect("entries");
    for index in &accessed {
        let e = entries
            .iter()
            .find(|e| e["index"].as_u64() == Some(*index))
            .unwrap_or_else(|| panic!("access {index} is in the standby's history"));
        let leaf = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(e["leaf"].as_str().unwrap())
                .unwrap()
        };
        audit::verify_inclusion(
            &audit::leaf_hash(&leaf),
            *index,
            cp.size,
            &e["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(hash_of)
                .collect::<Vec<_>>(),
            &cp.root,
        )
        .expect("the history's proof verifies");
    }
    // The auditor's listing, read from the database up to that checkpoint.
    let listed: Value = cluster
        .public
        .get(format!(
            "{}/v1/audit/entries?start=0&limit={}",
            nodes[b].url, cp.size
        ))
        .bearer_auth(&cluster.auditor_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["entries"].as_array().map(Vec::len),
        Some(cp.size as usize),
        "{listed}"
    );
    // What writes the log (a citizen's records are logged) goes to the active node.
    let resp = cluster
        .public
        .get(format!("{}/v1/me/records", nodes[b].url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    // The data routes name the active node.
    let resp = cluster
        .police
        .post(format!("{}/v1/access", nodes[b].url))
        .json(&json!({"citizen": "EE38001010001", "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "standby", "{body}");
    let (_, health) = cluster.health(&nodes[b].url).await.unwrap();
    let active_name = health["active_node"].as_str().unwrap().to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&active_name),
        "{body}"
    );
}
