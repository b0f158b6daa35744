//! Compliance replay (`vault_core::replay_export`, behind `vault-cli audit replay`) of a
//! 1,000,000-entry export, beside offline verification alone (`audit::export::verify`) of
//! the same file in the same run. The log is a realistic mix under the example policy set:
//! per citizen, one consent grant then nine access decisions, alternately a release under
//! that consent (one field released, one withheld) and a statutory release (two fields
//! under a claimed `public_task`). Every decision must replay clean.
//!
//! Run: `cargo bench -p vault-core --bench replay` (`REPLAY_BENCH_SIZE` to run smaller).
//! Rates are per on-CPU second (the bench runs on one thread), wall-clock in brackets.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use vault_core::audit::{
    sign_checkpoint, Actor, ActorKind, Claim, Commitment, EntryDraft, LogState, MemStore,
    NoteSigner, SubjectTag, Terms, TextField, Withheld,
};
use vault_core::policies::{ConsentId, PolicySet};
use vault_core::{policy_set_digest, replay_export, Replay, ReplaySet};

/// Log time of the first entry (2026-01-01), milliseconds.
const T0: u64 = 1_767_225_600_000;

fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    let out = f();
    let wall = wall.elapsed().as_secs_f64();
    let cpu = cpu
        .zip(cpu_time())
        .map_or(wall, |(a, b)| (b - a).as_secs_f64());
    (out, wall, cpu)
}

fn agency(id: &str) -> Actor {
    Actor {
        kind: ActorKind::Agency,
        id: id.to_owned(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The drafts of the log: entry 0 the init, then per citizen a grant and nine decisions.
fn drafts(n: u64, set: &PolicySet) -> Vec<EntryDraft> {
    let digest = policy_set_digest(set);
    let roadside = set
        .statutory_rules()
        .find(|r| r.id.as_str() == "police_roadside_check")
        .expect("the example set has the roadside rule")
        .legal_reference
        .clone();
    let official = Commitment::to_text(TextField::Official, &[7; 32], "officer 4711");
    let mut out = Vec::with_capacity(n as usize);
    let mut init = EntryDraft::new(
        T0,
        Actor {
            kind: ActorKind::System,
            id: "vault".into(),
        },
        "vault.init",
        "done",
    );
    init.policy_set = Some(digest);
    out.push(init);
    let mut latest: HashMap<SubjectTag, u64> = HashMap::new();
    let mut i = 1u64;
    while i < n {
        let (citizen, step) = ((i - 1) / 10, (i - 1) % 10);
        let mut tag = [0u8; 32];
        tag[..8].copy_from_slice(&citizen.to_be_bytes());
        tag[8] = 0xa5;
        let tag = SubjectTag(tag);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&citizen.to_be_bytes());
        let consent = ConsentId::from_bytes(id).to_string();
        let time = T0 + i * 10;
        let mut d = if step == 0 {
            let mut d = EntryDraft::new(
                time,
                Actor {
                    kind: ActorKind::Citizen,
                    id: String::new(),
                },
                "consent.grant",
                "done",
            );
            d.initiator = Some("0123456789abcdef".into());
            d.processing = Some("consent".into());
            d.purpose = Some("tax_assessment".into());
            d.requested = strings(&["health.blood_type"]);
            d.legal_basis = Some("consent".into());
            d.consent_id = Some(consent);
            d.terms = Some(Terms {
                agency: "tax_authority".into(),
                valid_from: time / 1000,
                expires_at: time / 1000 + 365 * 86_400,
                max_uses: None,
                data_life: None,
                supersedes: None,
            });
            d
        } else if step % 2 == 1 {
            let mut d = EntryDraft::new(time, agency("tax_authority"), "access", "partial");
            d.purpose = Some("tax_assessment".into());
            d.requested = strings(&["health.blood_type", "health.allergies"]);
            d.released = strings(&["health.blood_type"]);
            d.withheld = vec![Withheld {
                field: "health.allergies".into(),
                reason: "field_not_covered".into(),
            }];
            d.legal_basis = Some("consent".into());
            d.consent_id = Some(consent);
            d.claim = Some(Claim {
                legal_basis: None,
                justified: false,
            });
            d
        } else {
            let mut d = EntryDraft::new(time, agency("national_police"), "access", "granted");
            d.purpose = Some("road_safety_enforcement".into());
            d.requested = strings(&["vehicle.registration", "identity.full_name"]);
            d.released = d.requested.clone();
            d.legal_basis = Some("public_task".into());
            d.legal_reference = Some(roadside.clone());
            d.claim = Some(Claim {
                legal_basis: Some("public_task".into()),
                justified: false,
            });
            d
        };
        if d.action == "access" {
            d.processing = Some("disclosure".into());
            d.official = Some(official);
        }
        d.policy_set = Some(digest);
        d.subject = Some(tag);
        d.subject_prev = latest.insert(tag, i);
        out.push(d);
        i += 1;
    }
    out
}

fn main() {
    let n: u64 = std::env::var("REPLAY_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples");
    let set = PolicySet::load_dir(&dir).expect("the example set loads");
    println!("## compliance replay of a {n}-entry export");
    let started = Instant::now();
    let mut store = MemStore::new();
    let mut state = LogState::new();
    for chunk in drafts(n, &set).chunks(1000) {
        store
            .append(&mut state, chunk.to_vec())
            .expect("bench drafts are valid");
    }
    let signer = NoteSigner::generate("bench.example/log").expect("rng");
    let signed = sign_checkpoint(&store, &signer, state.size(), None).expect("signs");
    let mut file = Vec::with_capacity(330 * n as usize);
    vault_core::audit::export::write(&store, &signed, &signer.verifier_key(), &mut file)
        .expect("exports");
    drop(store);
    println!(
        "(built in {:.1} s; {:.1} MB file, {:.0} B/entry)",
        started.elapsed().as_secs_f64(),
        file.len() as f64 / 1e6,
        (file.len() as f64) / n as f64
    );
    let vkey = signer.verifier_key();
    let (mut verify, mut replay) = ((0f64, 0f64), (0f64, 0f64));
    let mut decisions = 0;
    // Rounds interleave the two so that load changes on a shared machine hit both alike;
    // each figure is the best of its rounds.
    // `REPLAY_BENCH_PROFILE=N`: N rounds, the replay only (for `perf record`).
    let profiling = std::env::var("REPLAY_BENCH_PROFILE").is_ok();
    let rounds: usize = std::env::var("REPLAY_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for _ in 0..rounds {
        if !profiling {
            let (s, wall, cpu) = timed(|| {
                vault_core::audit::export::verify(file.as_slice(), &vkey, &mut |_, _| {})
                    .expect("verifies")
            });
            assert_eq!(s.size, n);
            verify = (verify.0.max(n as f64 / cpu), verify.1.max(n as f64 / wall));
        }
        let sets = vec![ReplaySet::new(dir.clone(), set.clone())];
        let ((_, report), wall, cpu) = timed(|| {
            replay_export(file.as_slice(), &vkey, Replay::new(sets), &mut |_, _| {})
                .expect("verifies")
        });
        assert!(
            report.findings.is_empty(),
            "the bench log replays clean: {} findings, the first {:?}",
            report.findings.len(),
            report.findings.first()
        );
        decisions = report.decisions;
        replay = (
            replay.0.max(decisions as f64 / cpu),
            replay.1.max(decisions as f64 / wall),
        );
    }
    println!(
        "{:>40}: {:>10.0} entries/s  [{:>10.0}/s]",
        "verify", verify.0, verify.1
    );
    println!(
        "{:>40}: {:>10.0} decisions/s  [{:>10.0}/s] ({decisions} decisions, {:.0} entries/s)",
        "replay (verify + re-evaluate)",
        replay.0,
        replay.1,
        replay.0 * n as f64 / decisions as f64
    );
}
