//! What notifications cost the server per event, on one thread and without the network:
//!
//! - `notify/access/{off,gateway}`: an access decision (`Vault::access_decide`, applied
//!   and not waited for) with no endpoint set, and with the citizens' gateway set (the
//!   access path then only checks that the citizen's tag row is stored);
//! - `notify/deliver/batch_{1,100}`: one event's share of the delivery rounds that hand
//!   the events of already applied accesses out (`Vault::notifications_due`, which reads
//!   them from the log), sign each message (`Vault::sign_notification`) and record it
//!   delivered (`Vault::notification_results`), as the server's delivery loop does, with
//!   32 messages in flight at most; the accesses (statutory, round 1,000 citizens) are
//!   made outside the measured time, 1,000 before each drain.
//!
//! Run: `cargo bench -p vault-core --bench notify`. The vaults live under the system temp
//! directory (`TMPDIR`).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::collections::HashSet;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use vault_core::{AccessInput, DeliveryOutcome, ImportRow, Plaintext, Vault, WebhookTarget};

/// Citizens the accesses go round (a citizen's events are in one message at a time).
const CITIZENS: usize = 1000;
/// Accesses made before each drain: a round's worth of events at a few thousand accesses
/// a second, about one per citizen.
const CHUNK: u64 = 1000;

/// A vault with a name record of each of citizens `BENCH000000`.., and statutory police accesses to them (as
/// `scripts/bench-load` makes with notifications on).
fn vault(root: &Path) -> (Vault, Vec<AccessInput>) {
    let v = common::vault_in(root);
    for part in 0..CITIZENS.div_ceil(500) {
        let rows = (part * 500..CITIZENS.min(part * 500 + 500))
            .map(|i| ImportRow {
                citizen: format!("BENCH{i:06}"),
                category: "identity".to_owned(),
                fields: vec![(
                    "full_name".to_owned(),
                    Plaintext::new(format!("Bench Person {i}").into_bytes()),
                )],
            })
            .collect();
        v.import("civil_registry", rows).expect("import");
    }
    let fields = [
        "vehicle.registration".to_owned(),
        "identity.full_name".to_owned(),
    ];
    let inputs = (0..CITIZENS)
        .map(|i| {
            AccessInput::new(
                &format!("BENCH{i:06}"),
                "road_safety_enforcement",
                &fields,
                Some("public_task"),
                None,
                Some("officer 4711".to_owned()),
            )
            .expect("valid request")
        })
        .collect();
    (v, inputs)
}

/// Hands out, signs and records delivered every event there is, as the server's delivery
/// loop does (32 messages in flight at most); returns the events delivered.
fn drain(v: &Vault) -> u64 {
    let before = v.notification_stats().delivered;
    let in_flight = HashSet::new();
    loop {
        let due = v.notifications_due(&in_flight, 32).expect("due");
        if due.is_empty() {
            break;
        }
        let done: Vec<_> = due
            .into_iter()
            .map(|d| {
                std::hint::black_box(v.sign_notification(&d, 1_700_000_000).expect("signs"));
                (d, DeliveryOutcome::Delivered)
            })
            .collect();
        v.notification_results(&done).expect("recorded");
    }
    v.notification_stats().delivered - before
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    let tmp = tempfile::tempdir().expect("temp dir");
    let (v, inputs) = vault(tmp.path());
    let mut next = 0usize;
    // An access decided and applied; `durable` also waits until it (and every one before
    // it) is durable.
    let mut access = |v: &Vault, durable: bool| {
        let input = inputs[next % inputs.len()].clone();
        next += 1;
        if durable {
            v.access("national_police", input).map(|_| ())
        } else {
            v.access_decide("national_police", input).map(|_| ())
        }
        .expect("access")
    };
    g.bench_function("access/off", |b| b.iter(|| access(&v, false)));
    for batch in [1u16, 100] {
        v.set_webhook_batched(
            &WebhookTarget::Gateway,
            Some("https://gateway.bench.example/events"),
            batch,
        )
        .expect("gateway set");
        drain(&v);
        if batch == 1 {
            g.bench_function("access/gateway", |b| b.iter(|| access(&v, false)));
            drain(&v);
        }
        g.bench_function(format!("deliver/batch_{batch}"), |b| {
            b.iter_custom(|events| {
                let mut took = Duration::ZERO;
                let mut left = events;
                while left > 0 {
                    let n = left.min(CHUNK);
                    // The last one waits until all are durable: the store's writer is idle
                    // while the drain is timed.
                    for i in 1..=n {
                        access(&v, i == n);
                    }
                    let t0 = Instant::now();
                    let delivered = drain(&v);
                    took += t0.elapsed();
                    assert_eq!(delivered, n, "every access's event is delivered");
                    left -= n;
                }
                took
            })
        });
    }
    v.shutdown();
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
