//! API hardening over real TLS: every rejection (body, query, path, route, method,
//! credential, rate limit) answers with the one JSON error shape and the right status;
//! `/metrics` counts what happened; `/healthz` answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tests::{send, Vault};

const CITIZEN: &str = "EE38001010001";

/// The statutory police request the dev mode's curl example makes (released).
fn police_request() -> Value {
    json!({
        "citizen": CITIZEN, "purpose": "road_safety_enforcement",
        "fields": ["vehicle.registration", "identity.full_name"],
        "legal_basis": "public_task", "initiator": "officer 4711"
    })
}

/// Asserts `status` and that `body` is exactly `{"error": {"code": code, "message": ..}}`.
#[track_caller]
fn assert_error(got: (u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s, status, "status of {body}");
    let top: Vec<&String> = body.as_object().expect("a JSON object").keys().collect();
    assert_eq!(top, ["error"], "only `error` at the top: {body}");
    let inner: Vec<&String> = body["error"].as_object().expect("object").keys().collect();
    assert_eq!(inner, ["code", "message"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("message is text");
    assert!(!message.is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_uses_the_json_error_shape() {
    let v = Vault::start_dev().unwrap();
    let police = v.agency_client("national_police");
    let registry = v.agency_client("civil_registry");
    let access = v.at("/v1/access");

    // Malformed JSON.
    let got = send(
        police
            .post(&access)
            .header("content-type", "application/json")
            .body(r#"{"citizen": "#),
    )
    .await
    .unwrap();
    assert_error(got, 400, "invalid_json");

    // A JSON body sent as something else.
    let got = send(
        police
            .post(&access)
            .header("content-type", "text/plain")
            .body(police_request().to_string()),
    )
    .await
    .unwrap();
    assert_error(got, 415, "unsupported_media_type");
    let got = send(police.post(&access).body(police_request().to_string()))
        .await
        .unwrap();
    assert_error(got, 415, "unsupported_media_type");

    // Unknown and server-controlled fields.
    let mut extra = police_request();
    extra["audit_index"] = json!(0);
    let got = send(police.post(&access).json(&extra)).await.unwrap();
    assert_error(got, 400, "invalid_body");
    let got = send(police.post(&access).json(&json!({"citizen": CITIZEN})))
        .await
        .unwrap();
    assert_error(got, 400, "invalid_body");

    // A body over 64 KiB, and one field value over 4 KiB inside a small body.
    let huge = json!({"fields": {"full_name": "x".repeat(70 * 1024)}});
    let record = v.at(&format!("/v1/citizens/{CITIZEN}/records/identity"));
    let got = send(registry.put(&record).json(&huge)).await.unwrap();
    assert_error(got, 413, "too_large");
    let big_field = json!({"fields": {"full_name": "x".repeat(5000)}});
    let got = send(registry.put(&record).json(&big_field)).await.unwrap();
    assert_error(got, 413, "too_large");
    // Nothing of either reached the record.
    let (_, records) = send(v.as_citizen(0, Method::GET, "/v1/me/records"))
        .await
        .unwrap();
    let identity = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == "identity")
        .expect("seeded identity record")
        .clone();
    assert_eq!(identity["fields"]["full_name"], "Mari Tamm");
    assert_eq!(identity["version"], 1, "{identity}");

    // Query strings: unknown, missing and mistyped parameters.
    let client = v.client();
    for q in [
        "index=0&tree_size=1&verbose=1",
        "index=0",
        "index=zero&tree_size=1",
        "index=-1&tree_size=1",
    ] {
        let got = send(client.get(v.at(&format!("/v1/audit/proof/inclusion?{q}"))))
            .await
            .unwrap();
        assert_error(got, 400, "invalid_query");
    }
    let got = send(v.as_citizen(0, Method::GET, "/v1/me/access-history?page=2"))
        .await
        .unwrap();
    assert_error(got, 400, "invalid_query");

    // A path parameter that is not UTF-8 once percent-decoded.
    let got = send(v.as_citizen(0, Method::POST, "/v1/me/consents/%FF%FE/revoke"))
        .await
        .unwrap();
    assert_error(got, 400, "invalid_path");

    // Unknown route, wrong method (with `allow`).
    let got = send(client.get(v.at("/v1/nothing-here"))).await.unwrap();
    assert_error(got, 404, "not_found");
    let resp = police.delete(&access).send().await.unwrap();
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("POST"), "allow header: {allow:?}");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_error((status, body), 405, "method_not_allowed");
    let got = send(v.as_citizen(0, Method::PUT, "/v1/me/records"))
        .await
        .unwrap();
    assert_error(got, 405, "method_not_allowed");

    // Credentials: none, a made-up bearer, a citizen token on an auditor route, no client
    // certificate on an agency route.
    let got = send(client.get(v.at("/v1/me/records"))).await.unwrap();
    assert_error(got, 401, "unauthenticated");
    let got = send(
        client
            .get(v.at("/v1/me/records"))
            .bearer_auth("cv_not-a-real-token"),
    )
    .await
    .unwrap();
    assert_error(got, 401, "unauthenticated");
    let got = send(v.as_citizen(0, Method::GET, "/v1/audit/entries"))
        .await
        .unwrap();
    assert_error(got, 403, "wrong_role");
    let got = send(client.post(&access).json(&police_request()))
        .await
        .unwrap();
    assert_error(got, 401, "unauthenticated");

    // And the well-formed request still works after all that.
    let (status, body) = send(police.post(&access).json(&police_request()))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agency_rate_limit_answers_429_after_the_burst_per_agency() {
    // 5 requests/s, burst 10 (twice the rate).
    let v = Vault::start_dev_with_args(&["--agency-rate", "5"], &[]).unwrap();
    let police = v.agency_client("national_police");
    // Cheap requests (rejected after authentication, before the engine): the limiter
    // counts every authenticated agency request.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (s, body) = send(police.post(v.at("/v1/access")).json(&json!({})))
            .await
            .unwrap();
        if s == 429 {
            assert_error((s, body), 429, "rate_limited");
        }
        statuses.push(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        statuses[..10].iter().all(|s| *s == 400),
        "the burst passes: {statuses:?}"
    );
    let passed = statuses.iter().filter(|s| **s == 400).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(passed + limited, 40, "{statuses:?}");
    // Burst 10 plus what 5/s refills while the loop ran.
    let allowed = 10.0 + 5.0 * elapsed + 1.0;
    assert!(
        (passed as f64) <= allowed,
        "{passed} passed in {elapsed:.2} s: {statuses:?}"
    );
    assert!(limited >= 1, "{statuses:?}");

    // Per agency: another agency is not limited by the police's burst.
    let (s, _) = send(
        v.agency_client("tax_authority")
            .post(v.at("/v1/access"))
            .json(&json!({})),
    )
    .await
    .unwrap();
    assert_eq!(s, 400);

    // The bucket refills: after a second, the police gets through again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, body) = send(police.post(v.at("/v1/access")).json(&police_request()))
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");
}

/// Sends requests until one is refused; returns how many passed and the refusal.
async fn until_limited(
    mut make: impl FnMut() -> reqwest::RequestBuilder,
    at_most: usize,
) -> (usize, reqwest::Response) {
    for passed in 0..at_most {
        let resp = make().send().await.unwrap();
        if resp.status() == 429 {
            return (passed, resp);
        }
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    panic!("no 429 after {at_most} requests");
}

/// The `Retry-After` of a 429 answer (whole seconds), after checking its JSON error.
async fn retry_after(resp: reqwest::Response) -> u64 {
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    let body: Value = resp.json().await.unwrap();
    assert_error((429, body), 429, "rate_limited");
    secs
}

#[tokio::test(flavor = "multi_thread")]
async fn citizen_and_auditor_tokens_have_their_own_quotas_with_retry_after() {
    // 2 requests/s per token, bursts of 4.
    let v =
        Vault::start_dev_with_args(&["--citizen-rate", "2", "--auditor-rate", "2"], &[]).unwrap();
    let (passed, refused) =
        until_limited(|| v.as_citizen(0, Method::GET, "/v1/me/consents"), 20).await;
    assert!((4..=5).contains(&passed), "burst of 4: {passed} passed");
    assert_eq!(retry_after(refused).await, 1);
    // Per token: another citizen is not held back, nor is an auditor.
    let (s, body) = send(v.as_citizen(1, Method::GET, "/v1/me/consents"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");
    let auditor = || {
        v.client()
            .get(v.at("/v1/audit/entries?limit=1"))
            .bearer_auth(&v.creds.auditor_token)
    };
    let (passed, refused) = until_limited(auditor, 20).await;
    assert!((4..=5).contains(&passed), "burst of 4: {passed} passed");
    assert_eq!(retry_after(refused).await, 1);
    // Refilled after the Retry-After.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, body) = send(v.as_citizen(0, Method::GET, "/v1/me/consents"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");
    // An unknown token is refused before it is counted or gets a bucket.
    let (s, _) = send(
        v.client()
            .get(v.at("/v1/me/consents"))
            .bearer_auth("cv_not-a-real-token"),
    )
    .await
    .unwrap();
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_requests_have_a_per_agency_quota_and_caps() {
    // 1 consent request/s per agency, bursts of 2.
    let v = Vault::start_dev_with_args(&["--consent-request-rate", "1"], &[]).unwrap();
    let tax = v.agency_client("tax_authority");
    let ask = |citizen: &str, days: u64| {
        tax.post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": citizen, "purpose": "tax_assessment", "fields": ["health.insurer"],
            "expires_at": crate::days_ahead(days)}))
    };
    let (passed, refused) = until_limited(|| ask(CITIZEN, 30), 20).await;
    assert!((2..=3).contains(&passed), "burst of 2: {passed} passed");
    assert!(retry_after(refused).await >= 1);
    // Only consent requests: the agency's other routes still pass.
    let (s, body) = send(
        v.agency_client("national_police")
            .post(v.at("/v1/access"))
            .json(&police_request()),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{body}");

    // expires_at at most MAX_CONSENT_REQUEST_DAYS ahead; the refusal is logged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, body) = send(ask(
        CITIZEN,
        u64::from(vault_core::MAX_CONSENT_REQUEST_DAYS) + 2,
    ))
    .await
    .unwrap();
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "expires_too_late", "{body}");
    assert!(body["audit_index"].is_u64(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agency_has_at_most_20_pending_requests_per_citizen() {
    let v = Vault::start_dev_with_args(&["--consent-request-rate", "1000"], &[]).unwrap();
    let tax = v.agency_client("tax_authority");
    let ask = |citizen: &str| {
        tax.post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": citizen, "purpose": "tax_assessment", "fields": ["health.insurer"],
            "expires_at": crate::days_ahead(30)}))
    };
    for _ in 0..vault_core::MAX_PENDING_REQUESTS {
        let (s, body) = send(ask(CITIZEN)).await.unwrap();
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = send(ask(CITIZEN)).await.unwrap();
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "too_many_pending_requests", "{body}");
    let index = body["audit_index"].as_u64().expect("the refusal is logged");
    assert!(index < v.audit_size().await.unwrap());
    // Another citizen is another count.
    let (s, body) = send(ask("EE49002020002")).await.unwrap();
    assert_eq!(s, 201, "{body}");
}

/// Prometheus text -> `name{labels}` -> value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("`name value` lines");
        let value: f64 = value.parse().expect("a number");
        assert!(
            out.insert(key.to_owned(), value).is_none(),
            "{key} appears once"
        );
    }
    out
}

async fn scrape(v: &Vault) -> BTreeMap<String, f64> {
    let resp = v.client().get(v.at("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    parse_metrics(&resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_responses_decisions_audit_size_and_commit_latency() {
    let v = Vault::start_dev().unwrap();
    let (status, health) = send(v.client().get(v.at("/healthz"))).await.unwrap();
    assert_eq!(
        (status, health),
        (200, json!({"status": "ok", "store": {"backend": "sled"}}))
    );

    let before = scrape(&v).await;
    let get = |m: &BTreeMap<String, f64>, k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("metric {k} present: {m:?}"))
    };
    let size_before = v.audit_size().await.unwrap() as f64;

    // One release, one refusal, one 404.
    let (s, _) = send(
        v.agency_client("national_police")
            .post(v.at("/v1/access"))
            .json(&police_request()),
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    let (s, _) = send(
        v.agency_client("tax_authority")
            .post(v.at("/v1/access"))
            .json(&json!({"citizen": CITIZEN, "purpose": "tax_assessment", "fields": ["health.blood_type"]})),
    )
    .await
    .unwrap();
    assert_eq!(s, 403);
    let (s, _) = send(v.client().get(v.at("/v1/nothing"))).await.unwrap();
    assert_eq!(s, 404);

    let after = scrape(&v).await;
    let delta = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(
        delta("vault_access_decisions_total{outcome=\"released\"}"),
        1.0
    );
    assert_eq!(
        delta("vault_access_decisions_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(
        delta("vault_access_decisions_total{outcome=\"partial\"}"),
        0.0
    );
    // 2xx: at least the release, the `before` scrape and the checkpoint `audit_size` signs.
    assert!(delta("vault_http_responses_total{class=\"2xx\"}") >= 3.0);
    assert_eq!(delta("vault_http_responses_total{class=\"4xx\"}"), 2.0);
    assert_eq!(delta("vault_http_responses_total{class=\"5xx\"}"), 0.0);
    // Both decisions are in the log, and the gauge says so.
    let size = get(&after, "vault_audit_log_size");
    assert!(size >= size_before + 2.0, "{size} vs {size_before}");
    // The commit latency histogram: both decisions counted, buckets cumulative.
    assert!(delta("vault_commit_seconds_count") >= 2.0);
    assert!(get(&after, "vault_commit_seconds_sum") > get(&before, "vault_commit_seconds_sum"));
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter_map(|(k, v)| {
            let le = k
                .strip_prefix("vault_commit_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 2, "{after:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        buckets.last().map(|b| b.1),
        Some(get(&after, "vault_commit_seconds_count"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_largest_accepted_requests_are_logged_and_one_more_is_a_4xx() {
    let v = Vault::start_dev().unwrap();
    let police = v.agency_client("national_police");
    let registry = v.agency_client("vehicle_registry");
    let tax = v.agency_client("tax_authority");
    // 16 well-formed field names of 64 bytes (none in the vocabulary: each is withheld).
    let names = |n: usize, len: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let head = format!("c{i:02}.");
                format!("{head}{}", "f".repeat(len - head.len()))
            })
            .collect()
    };
    let text = |len: usize| "\u{e9}".repeat(len / 2) + &"x".repeat(len % 2);
    let access = |fields: Vec<String>, justification: String, initiator: String| {
        police.post(v.at("/v1/access")).json(&json!({
            "citizen": CITIZEN, "purpose": "road_safety_enforcement", "fields": fields,
            "legal_basis": "public_task", "justification": justification, "initiator": initiator}))
    };
    let consent = |fields: Vec<String>, initiator: String| {
        tax.post(v.at("/v1/consent-requests")).json(&json!({
            "citizen": CITIZEN, "purpose": "tax_assessment", "fields": fields,
            "expires_at": crate::days_ahead(90), "initiator": initiator}))
    };
    let vehicle: Value = json!({
        "registration": "123 ABC", "make_model": "Skoda Octavia", "insurance_policy": "P-1",
        "inspection_due": "2028-01-01", "driving_licence_class": "B", "licence_points": "0"});
    let write = |fields: Value, initiator: String| {
        registry
            .put(v.at(&format!("/v1/citizens/{CITIZEN}/records/vehicle")))
            .json(&json!({"fields": fields, "initiator": initiator}))
    };

    // The largest accepted: answered (403 refused / 201 / 200) with one entry each.
    let accepted: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("access", access(names(16, 64), text(1000), text(1000)), 403),
        (
            "consent request",
            consent(vec!["health.blood_type".into()], text(1000)),
            201,
        ),
        ("record write", write(vehicle.clone(), text(1000)), 200),
    ];
    for (name, req, want) in accepted {
        let before = v.audit_size().await.unwrap();
        let (status, body) = send(req).await.unwrap();
        assert_eq!(status, want, "{name}: {body}");
        assert_eq!(
            v.audit_size().await.unwrap(),
            before + 1,
            "{name} is logged"
        );
        if name == "access" {
            assert!(body["audit_index"].is_u64(), "{body}");
        }
    }

    // One byte or one item more: the documented 4xx, before evaluation, nothing logged.
    let mut long_name = names(16, 64);
    long_name[0].push('g');
    let mut vehicle_65 = serde_json::Map::new();
    for i in 0..65 {
        vehicle_65.insert(format!("f{i}"), json!("x"));
    }
    let refused: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "access, 17 fields",
            access(names(17, 64), text(1000), text(1000)),
            413,
            "too_large",
        ),
        (
            "access, 65-byte name",
            access(long_name.clone(), text(1000), text(1000)),
            400,
            "invalid_field",
        ),
        (
            "access, long justification",
            access(names(16, 64), text(1001), text(1000)),
            400,
            "invalid_text",
        ),
        (
            "access, long initiator",
            access(names(16, 64), text(1000), text(1001)),
            400,
            "invalid_text",
        ),
        (
            "consent request, 17 fields",
            consent(names(17, 64), text(1000)),
            413,
            "too_large",
        ),
        (
            "consent request, 65-byte name",
            consent(long_name, text(1000)),
            400,
            "invalid_field",
        ),
        (
            "consent request, long initiator",
            consent(vec!["health.blood_type".into()], text(1001)),
            400,
            "invalid_text",
        ),
        (
            "record write, long initiator",
            write(vehicle, text(1001)),
            400,
            "invalid_text",
        ),
        (
            "record write, 65 fields",
            write(Value::Object(vehicle_65), text(1000)),
            413,
            "too_large",
        ),
    ];
    let before = v.audit_size().await.unwrap();
    for (name, req, status, code) in refused {
        let got = send(req).await.unwrap();
        assert_eq!(got.0, status, "{name}: {}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{name}: {}", got.1);
    }
    assert_eq!(
        v.audit_size().await.unwrap(),
        before,
        "refused before evaluation"
    );
}
