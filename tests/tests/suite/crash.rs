//! SIGKILL during concurrent agency writes and access requests, again and again: after
//! each restart no acknowledged write or audit entry is missing, and at the end the whole
//! log verifies offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tests::{send, Vault};

const CYCLES: usize = 50;
const WRITERS: usize = 6;

/// What the clients saw acknowledged: per writer the last acknowledged value, and every
/// acknowledged audit index with the action it must hold.
#[derive(Default)]
struct Acks {
    last_value: HashMap<usize, u64>,
    entries: Vec<(u64, &'static str)>,
}

fn citizen(w: usize) -> String {
    format!("CRASH-{w}")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_no_acknowledged_write_or_entry() {
    let mut v = Vault::start_dev().unwrap();
    let acks = Arc::new(Mutex::new(Acks::default()));
    let mut next_value: HashMap<usize, u64> = HashMap::new();
    let mut total_acked = 0usize;
    for cycle in 0..CYCLES {
        if cycle > 0 {
            v.restart().unwrap();
        }
        // Everything acknowledged before the last kill is there.
        verify(&v, &acks).await;
        let registry = v.agency_client("vehicle_registry");
        let police = v.agency_client("national_police");
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let start = *next_value.get(&w).unwrap_or(&1);
            next_value.insert(w, start + 10_000);
            let (registry, police, acks, url) = (
                registry.clone(),
                police.clone(),
                acks.clone(),
                v.url.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = start;
                loop {
                    let put = registry
                        .put(format!("{url}/v1/citizens/{}/records/vehicle", citizen(w)))
                        .json(&json!({"fields": {"registration": n.to_string()}}))
                        .send()
                        .await;
                    let Ok(resp) = put else { return };
                    if resp.status() != 200 {
                        return;
                    }
                    let Ok(body) = resp.json::<serde_json::Value>().await else { return };
                    {
                        let mut a = acks.lock().unwrap();
                        a.last_value.insert(w, n);
                        a.entries.push((body["audit_index"].as_u64().unwrap(), "record.write"));
                    }
                    n += 1;
                    let read = police
                        .post(format!("{url}/v1/access"))
                        .json(&json!({"citizen": citizen(w), "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"}))
                        .send()
                        .await;
                    let Ok(resp) = read else { return };
                    if resp.status() != 200 {
                        return;
                    }
                    let Ok(body) = resp.json::<serde_json::Value>().await else { return };
                    acks.lock().unwrap().entries.push((body["audit_index"].as_u64().unwrap(), "access"));
                }
            }));
        }
        let pause = 150 + (cycle as u64 * 37) % 350;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        v.kill();
        for t in tasks {
            let _ = t.await;
        }
        total_acked = acks.lock().unwrap().entries.len();
    }
    v.restart().unwrap();
    verify(&v, &acks).await;
    assert!(
        total_acked > CYCLES * 5,
        "the load was real: {total_acked} acknowledged answers"
    );

    // The whole log, written across fifty crashes, verifies offline.
    let (_, out) = v.export_and_verify().await.unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn verify(v: &Vault, acks: &Arc<Mutex<Acks>>) {
    let (last, entries) = {
        let a = acks.lock().unwrap();
        (a.last_value.clone(), a.entries.clone())
    };
    let size = v.audit_size().await.unwrap();
    let police = v.agency_client("national_police");
    for (w, n) in last {
        let (status, body) = send(police.post(v.at("/v1/access")).json(&json!({
            "citizen": citizen(w), "purpose": "road_safety_enforcement", "fields": ["vehicle.registration"], "legal_basis": "public_task"
        }))).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let stored: u64 = body["released"]["vehicle.registration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            stored >= n,
            "writer {w}: acknowledged value {n} lost, found {stored}"
        );
    }
    // Read as an auditor would, a page at a time (one request per entry would be
    // throttled by the auditor quota).
    let auditor = v.client();
    let wanted: std::collections::BTreeMap<u64, &str> = entries.into_iter().collect();
    let mut next = wanted.keys().next().copied();
    while let Some(start) = next {
        assert!(
            start < size,
            "acknowledged entry {start} beyond the log size {size}"
        );
        let (status, body) = send(
            auditor
                .get(v.at(&format!("/v1/audit/entries?start={start}&limit=1000")))
                .bearer_auth(&v.creds.auditor_token),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let page = body["entries"].as_array().expect("a page of entries");
        assert!(!page.is_empty(), "no entry listed at {start}: {body}");
        let mut seen = std::collections::HashMap::new();
        for e in page {
            seen.insert(
                e["index"].as_u64().expect("index"),
                e["entry"]["action"].clone(),
            );
        }
        let page_end = start + page.len() as u64;
        for (index, action) in wanted.range(start..page_end) {
            assert_eq!(seen.get(index), Some(&json!(action)), "entry {index}");
        }
        next = wanted
            .range(page_end.max(start + 1)..)
            .next()
            .map(|(i, _)| *i);
    }
}
