//! Signed notifications over the real binaries: a webhook receiver over TLS (a real HTTPS
//! server in this test) that checks every Standard Webhooks `v1a` signature with an
//! independent Ed25519 (`ed25519-dalek`) against the keys the vault publishes, counts each
//! event id once, and checks the order per citizen; the receiver down for a while, an
//! endpoint that answers 410, and the vault killed with SIGKILL between the commit of
//! events and their delivery.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, wait_until, Vault};

const CITIZEN: &str = "EE38001010001";
const OTHER: &str = "EE49002020002";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Each event once, in the order first received: (path, id, body).
    events: Vec<(String, String, Value)>,
    ids: HashSet<String>,
    /// Deliveries of an id already received (at-least-once: allowed, counted once).
    repeats: usize,
    /// Requests whose signature or headers did not check (answered 401).
    rejected: Vec<String>,
    /// Requests to the path that answers 410.
    gone: usize,
    /// Messages accepted per path (a batch is one message of several events).
    messages: Vec<String>,
}

/// A webhook receiver over TLS on a fixed port, stopped and started again at will.
struct Receiver {
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    keys: Arc<Mutex<Vec<VerifyingKey>>>,
    seen: Arc<Mutex<Seen>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start(cert: &Path, key: &Path) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(tests::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            tls: Arc::new(tls),
            keys: Arc::default(),
            seen: Arc::default(),
            task: None,
        };
        r.serve(listener);
        r
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let (keys, seen) = (self.keys.clone(), self.seen.clone());
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: stopping the receiver drops them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, keys, seen) = (acceptor.clone(), keys.clone(), seen.clone());
                conns.spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (keys, seen) = (keys.clone(), seen.clone());
                        async move { Ok::<_, Infallible>(receive(req, &keys, &seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// Stops listening and drops every open connection.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn count(&self, path: &str) -> usize {
        let s = self.seen.lock().unwrap();
        s.events.iter().filter(|(p, _, _)| p == path).count()
    }

    fn events(&self, path: &str) -> Vec<Value> {
        let s = self.seen.lock().unwrap();
        s.events
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

/// Checks one delivery as a Standard Webhooks receiver would: the three headers, a
/// timestamp within five minutes, and a `v1a` signature over `id.timestamp.body` by one of
/// the published keys.
async fn receive(
    req: hyper::Request<Incoming>,
    keys: &Mutex<Vec<VerifyingKey>>,
    seen: &Mutex<Seen>,
) -> hyper::Response<Full<Bytes>> {
    let answer = |status: u16| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (id, ts, sigs) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    if path == "/gone" {
        seen.lock().unwrap().gone += 1;
        return answer(410);
    }
    let (Some(id), Some(ts), Some(sigs)) = (id, ts, sigs) else {
        seen.lock()
            .unwrap()
            .rejected
            .push(format!("{path}: a header is missing"));
        return answer(400);
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = ts.parse::<u64>().is_ok_and(|t| t.abs_diff(now) <= 300);
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(&body);
    let keys = keys.lock().unwrap().clone();
    let signed = sigs.split(' ').any(|s| {
        let Some(b64) = s.strip_prefix("v1a,") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&raw) else {
            return false;
        };
        keys.iter().any(|k| k.verify(&content, &sig).is_ok())
    });
    if !fresh || !signed {
        seen.lock()
            .unwrap()
            .rejected
            .push(format!("{path} {id}: fresh {fresh}, signed {signed}"));
        return answer(401);
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    // A batch carries its events in order, each with its own id to de-duplicate on.
    let events = if body["type"] == "batch" {
        body["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["id"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    } else {
        vec![(id, body)]
    };
    let mut s = seen.lock().unwrap();
    s.messages.push(path.clone());
    for (id, event) in events {
        if s.ids.insert(format!("{path} {id}")) {
            s.events.push((path.clone(), id, event));
        } else {
            s.repeats += 1;
        }
    }
    answer(204)
}

fn cli_ok(v: &Vault, args: &[&str]) -> String {
    let out = v.cli(args);
    assert!(
        out.status.success(),
        "vault-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn wait_for(r: &Receiver, path: &str, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while r.count(path) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} of {n} events at {path}; rejected: {:?}",
            r.count(path),
            r.seen.lock().unwrap().rejected
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn access(v: &Vault, n: usize) {
    let tax = v.agency_client("tax_authority");
    for _ in 0..n {
        let (status, body) = send(tax.post(v.at("/v1/access")).json(&json!({
            "citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"]
        })))
        .await
        .unwrap();
        assert!(status == 200 || status == 403, "{status} {body}");
    }
}

async fn metric(v: &Vault, name: &str) -> f64 {
    let text = v.public_text("/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

async fn wait_metric(v: &Vault, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value = metric(v, name).await;
        if ok(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stays at {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The types of the events about `citizen`, in the order received; panics unless their
/// audit indexes increase (the order the changes happened).
fn in_order(events: &[Value], citizen: &str) -> Vec<String> {
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["citizen"] == citizen)
        .collect();
    let indexes: Vec<u64> = mine
        .iter()
        .map(|e| e["data"]["audit_index"].as_u64().unwrap())
        .collect();
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "events about {citizen} out of order: {indexes:?}"
    );
    mine.iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_notifications_arrive_once_in_order_through_downtime_and_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::localhost_tls(tmp.path());
    let ca_arg = ca.to_str().unwrap().to_owned();
    let mut r = Receiver::start(&cert, &key).await;
    let mut v = Vault::start_dev_with_args(&["--webhook-ca", &ca_arg], &[]).unwrap();

    // An unknown agency and a plain-http URL are refused with a reason.
    let out = v.cli(&["notifications", "gateway", "set", "http://localhost/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
    cli_ok(&v, &["notifications", "gateway", "set", &r.url("/gw")]);
    cli_ok(
        &v,
        &["agency", "webhook", "set", "tax_authority", &r.url("/tax")],
    );
    cli_ok(
        &v,
        &[
            "agency",
            "webhook",
            "set",
            "general_hospital",
            &r.url("/gone"),
        ],
    );
    let listed = cli_ok(&v, &["notifications", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // The receiver trusts the keys the vault publishes, from a route anyone can read.
    let published: Value =
        serde_json::from_str(&v.public_text("/v1/notifications/keys").await.unwrap()).unwrap();
    let pk = published["keys"][0]["public_key"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(pk.strip_prefix("whpk_").unwrap())
        .unwrap();
    r.keys
        .lock()
        .unwrap()
        .push(VerifyingKey::from_bytes(&raw.try_into().unwrap()).unwrap());

    // A consent asked for and granted, used, withdrawn; another asked for and declined.
    let tax = v.agency_client("tax_authority");
    let (status, req) = send(tax.post(v.at("/v1/consent-requests")).json(&json!({
        "citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"],
        "expires_at": crate::days_ahead(90)
    })))
    .await
    .unwrap();
    assert_eq!(status, 201, "{req}");
    let consent = req["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/me/consent-requests/{consent}/approve");
    let (status, body) = send(v.as_citizen(0, Method::POST, &path)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    access(&v, 3).await;
    let hospital = v.agency_client("general_hospital");
    let (status, req) = send(hospital.post(v.at("/v1/consent-requests")).json(&json!({
        "citizen": OTHER, "purpose": "medical_treatment", "fields": ["health.blood_type"],
        "expires_at": crate::days_ahead(90)
    })))
    .await
    .unwrap();
    assert_eq!(status, 201, "{req}");
    let path = format!(
        "/v1/me/consent-requests/{}/deny",
        req["id"].as_str().unwrap()
    );
    let (status, body) = send(v.as_citizen(1, Method::POST, &path)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let path = format!("/v1/me/consents/{consent}/revoke");
    let (status, body) = send(v.as_citizen(0, Method::POST, &path)).await.unwrap();
    assert_eq!(status, 200, "{body}");

    wait_for(&r, "/gw", 8, "the gateway's events").await;
    wait_for(&r, "/tax", 2, "the agency's events").await;
    let gw = r.events("/gw");
    let mine = in_order(&gw, CITIZEN);
    assert_eq!(mine[..2], ["consent.requested", "consent.granted"]);
    assert!(
        mine[2..5].iter().all(|t| t.starts_with("access.")),
        "{mine:?}"
    );
    assert_eq!(mine[5], "consent.withdrawn");
    assert_eq!(
        in_order(&gw, OTHER),
        ["consent.requested", "consent.declined"]
    );
    let tax_events = r.events("/tax");
    assert_eq!(
        in_order(&tax_events, CITIZEN),
        ["consent.granted", "consent.withdrawn"]
    );
    assert!(tax_events
        .iter()
        .all(|e| e["data"]["consent_id"] == consent.as_str()));
    // Thin payloads: ids, the audit index, times; no field, value or text.
    for e in gw.iter().chain(&tax_events) {
        let text = e.to_string();
        assert!(
            !text.contains("blood_type") && !text.contains("health."),
            "{text}"
        );
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // The hospital's endpoint answered 410: disabled, and the operator sees why.
    wait_until(Duration::from_secs(10), || {
        cli_ok(&v, &["agency", "webhook", "show", "general_hospital"]).contains("DISABLED")
    })
    .unwrap();
    assert_eq!(r.seen.lock().unwrap().gone, 1, "no retry after 410");

    // The citizen's own feed: the same events, newest first, each with its leaf and proof.
    let (status, feed) = send(v.as_citizen(0, Method::GET, "/v1/me/notifications"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{feed}");
    let types: Vec<&str> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = mine.iter().map(String::as_str).collect();
    expected.reverse();
    assert_eq!(types, expected);
    for e in feed["entries"].as_array().unwrap() {
        assert!(e["leaf"].is_string() && e["proof"].is_array());
    }

    // The receiver down: events wait, attempts fail, nothing is lost when it is back.
    r.stop().await;
    access(&v, 4).await;
    wait_metric(&v, "vault_notification_attempts_failed_total", |n| n >= 1.0).await;
    assert!(metric(&v, "vault_notifications_queued").await >= 1.0);
    let metrics = v.public_text("/metrics").await.unwrap();
    assert!(
        metrics.contains(
            "vault_notification_endpoint_error{endpoint=\"the citizens' notification gateway\""
        ),
        "{metrics}"
    );
    r.restart().await;
    wait_for(&r, "/gw", 12, "after the receiver came back").await;

    // Killed between the commit of events and their delivery: delivered after restart.
    r.stop().await;
    access(&v, 2).await;
    v.kill();
    r.restart().await;
    v.restart_with_args(&["--webhook-ca", &ca_arg]).unwrap();
    wait_for(&r, "/gw", 14, "after a SIGKILL").await;
    let gw = r.events("/gw");
    let mine = in_order(&gw, CITIZEN);
    assert_eq!(mine.len(), 12);
    assert!(
        mine[6..].iter().all(|t| t.starts_with("access.")),
        "{mine:?}"
    );
    let rejected = r.seen.lock().unwrap().rejected.clone();
    assert!(rejected.is_empty(), "{rejected:?}");
    // What stays queued is the disabled endpoint's event; removing it drops it.
    wait_metric(&v, "vault_notifications_queued", |q| q == 1.0).await;
    let shown = cli_ok(&v, &["agency", "webhook", "show", "general_hospital"]);
    assert!(shown.contains("1 queued"), "{shown}");
    cli_ok(&v, &["agency", "webhook", "remove", "general_hospital"]);
    wait_metric(&v, "vault_notifications_queued", |q| q == 0.0).await;
    // Rotation: the old key signs beside the new one, so a receiver that knows only the
    // old key goes on accepting until it adds the new one.
    let rotated = cli_ok(&v, &["notifications", "rotate-key"]);
    assert!(
        rotated.contains("generation 2") && rotated.contains("generation 1"),
        "{rotated}"
    );
    access(&v, 1).await;
    wait_for(&r, "/gw", 15, "after a key rotation").await;
    assert!(r.seen.lock().unwrap().rejected.is_empty());

    // A gateway that takes batches: what queued while it was down arrives in a few signed
    // messages, each event once and in order.
    r.stop().await;
    let set = cli_ok(
        &v,
        &[
            "notifications",
            "gateway",
            "set",
            &r.url("/batch"),
            "--batch",
            "50",
        ],
    );
    assert!(set.contains("batches of up to 50"), "{set}");
    access(&v, 30).await;
    r.restart().await;
    wait_for(&r, "/batch", 30, "the batched events").await;
    let batched = r.events("/batch");
    let kinds = in_order(&batched, CITIZEN);
    assert_eq!(kinds.len(), 30);
    assert!(kinds.iter().all(|t| t.starts_with("access.")), "{kinds:?}");
    let seen = r.seen.lock().unwrap();
    let messages = seen.messages.iter().filter(|p| *p == "/batch").count();
    assert!(messages <= 5, "30 events in {messages} messages");
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
}
