//! An access decision's time (`Vault::access_decide`: consent evaluation and the audit
//! entry applied, before the durable wait) for a citizen with 20 and with 10,000 consent
//! artefacts of another agency: the decision reads only the requesting agency's artefacts
//! for the purpose asked (the consent index), so the two should take about the same time.
//!
//! Run: `cargo bench -p vault-core --bench decision`. The vaults live under the system
//! temp directory (`TMPDIR`).

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vault_core::{AccessInput, Bearer, GrantInput, TokenRequest, Vault};

fn days_ahead(days: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    vault_core::policies::Timestamp::from_unix_seconds(now + days * 86_400).to_string()
}

/// A vault whose citizen has one consent of the hospital and `others` of the tax authority.
fn vault(root: &Path, others: usize) -> Vault {
    let v = common::vault_in(root);
    let secret = v
        .issue_token(TokenRequest::Citizen {
            citizen: "alice".to_owned(),
            valid_days: Some(30),
        })
        .expect("token")
        .token
        .secret()
        .to_owned();
    let Ok(Bearer::Citizen(me)) = v.authenticate_token(&secret) else {
        panic!("a citizen token");
    };
    let grant = |agency: &str, purpose: &str, field: &str| GrantInput {
        agency: agency.to_owned(),
        purpose: purpose.to_owned(),
        fields: vec![field.to_owned()],
        expires_at: days_ahead(300),
        valid_from: None,
        max_uses: None,
        data_life_days: None,
    };
    v.grant_consent(
        &me,
        grant("general_hospital", "medical_treatment", "health.blood_type"),
    )
    .expect("grant");
    // Concurrent grants share the group commit's fsyncs.
    std::thread::scope(|s| {
        for t in 0..32 {
            let (v, me, grant) = (&v, &me, &grant);
            s.spawn(move || {
                for _ in (t..others).step_by(32) {
                    v.grant_consent(
                        me,
                        grant("tax_authority", "tax_assessment", "health.insurer"),
                    )
                    .expect("grant");
                }
            });
        }
    });
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for others in [20usize, 10_000] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let v = vault(tmp.path(), others);
        let input = AccessInput::new(
            "alice",
            "medical_treatment",
            &["health.blood_type".to_owned()],
            Some("consent"),
            None,
            Some("bench".to_owned()),
        )
        .expect("valid request");
        g.bench_with_input(
            BenchmarkId::new("other_agency_artefacts", others),
            &input,
            |b, input| {
                b.iter(|| {
                    v.access_decide("general_hospital", input.clone())
                        .expect("decides")
                })
            },
        );
        v.shutdown();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
