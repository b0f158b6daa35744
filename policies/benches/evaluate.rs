//! Decisions per second: a request of 10 fields against a citizen with 20 artefacts,
//! on the example policy set, beside the raw floor of the same work (scan every field of
//! every artefact once per requested field, and allocate the result).
//!
//! `cargo bench -p policies --bench evaluate`

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use policies::{
    evaluate, AccessRequest, AgencyId, CitizenRef, ConsentArtefact, ConsentId, ConsentTerms,
    FieldName, LegalBasis, PolicySet, PurposeCode, Timestamp,
};

const FIELDS: [&str; 10] = [
    "health.blood_type",
    "health.allergies",
    "health.chronic_conditions",
    "health.current_medications",
    "health.vaccinations",
    "health.organ_donor",
    "identity.date_of_birth",
    "identity.nationality",
    "benefits.disability_status",
    "benefits.household_size",
];

fn f(n: &str) -> FieldName {
    FieldName::new(n).expect("valid field name")
}

/// 20 artefacts: 15 for other agencies and purposes, then for the requester 2 revoked,
/// 2 expired, and last the one that covers every field (the scan's worst case).
fn artefacts(now: Timestamp) -> Vec<ConsentArtefact> {
    let citizen = CitizenRef::new("c-bench").expect("valid");
    let others = [
        ("tax_authority", "tax_assessment"),
        ("social_benefits_office", "benefit_eligibility"),
        ("general_hospital", "medical_treatment"),
    ];
    let mut out = Vec::new();
    let mut n = 0u8;
    let mut make = |agency: &str, purpose: &str, fields: &[&str], expires: u64| {
        n += 1;
        let terms = ConsentTerms {
            agency: AgencyId::new(agency).expect("valid"),
            purpose: PurposeCode::new(purpose).expect("valid"),
            fields: fields.iter().map(|x| f(x)).collect(),
            valid_from: Timestamp::from_unix_seconds(0),
            expires_at: Timestamp::from_unix_seconds(expires),
            max_uses: Some(1000),
            data_life: Some(86_400),
        };
        ConsentArtefact::grant_direct(
            ConsentId::from_bytes([n; 16]),
            citizen.clone(),
            terms,
            None,
            Timestamp::from_unix_seconds(1),
        )
        .expect("valid grant")
    };
    let far = now.unix_seconds() + 365 * 86_400;
    for i in 0..15 {
        let (a, p) = others[i % others.len()];
        out.push(make(a, p, &FIELDS[i % 5..i % 5 + 4], far));
    }
    for i in 0..2 {
        let mut a = make(
            "health_research_institute",
            "health_research",
            &FIELDS[..6],
            far,
        );
        a.revoke(Timestamp::from_unix_seconds(10 + i))
            .expect("revoke");
        out.push(a);
    }
    for _ in 0..2 {
        out.push(make(
            "health_research_institute",
            "health_research",
            &FIELDS[2..],
            now.unix_seconds() - 5,
        ));
    }
    out.push(make(
        "health_research_institute",
        "health_research",
        &FIELDS,
        far,
    ));
    assert_eq!(out.len(), 20);
    out
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let set = PolicySet::load_dir(&dir).expect("the example set loads");
    let now = Timestamp::parse("2026-11-29T10:00:00Z").expect("valid");
    let arts = artefacts(now);
    let req = AccessRequest {
        agency: AgencyId::new("health_research_institute").expect("valid"),
        purpose: PurposeCode::new("health_research").expect("valid"),
        fields: FIELDS.iter().map(|x| f(x)).collect(),
        legal_basis: None,
        justification: None,
    };
    let d = evaluate(&set, &req, &arts, now);
    assert_eq!(
        d.released().count(),
        10,
        "every field is released by the last artefact"
    );
    let statutory = AccessRequest {
        agency: AgencyId::new("national_police").expect("valid"),
        purpose: PurposeCode::new("road_safety_enforcement").expect("valid"),
        fields: [
            "vehicle.registration",
            "vehicle.insurance_policy",
            "vehicle.inspection_due",
            "vehicle.driving_licence_class",
            "vehicle.licence_points",
            "identity.full_name",
            "identity.date_of_birth",
            "health.blood_type",
            "tax.annual_income",
            "police.criminal_record",
        ]
        .iter()
        .map(|x| f(x))
        .collect(),
        legal_basis: Some(LegalBasis::PublicTask),
        justification: None,
    };

    let mut g = c.benchmark_group("policies");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    g.bench_function("evaluate_10_fields_20_artefacts_consent", |b| {
        b.iter(|| evaluate(black_box(&set), black_box(&req), black_box(&arts), now))
    });
    g.bench_function("evaluate_10_fields_20_artefacts_statutory", |b| {
        b.iter(|| {
            evaluate(
                black_box(&set),
                black_box(&statutory),
                black_box(&arts),
                now,
            )
        })
    });
    // The raw floor: one allocation for the answer, and every requested field compared
    // with every field of every artefact (what any per-field evaluation must at least do
    // without an index).
    g.bench_function("raw_scan_10_fields_x_20_artefacts", |b| {
        b.iter(|| {
            let req = black_box(&req);
            let mut out: Vec<(&FieldName, usize)> = Vec::with_capacity(req.fields.len());
            for field in &req.fields {
                let hits = black_box(&arts)
                    .iter()
                    .filter(|a| a.fields().iter().any(|x| x == field))
                    .count();
                out.push((field, hits));
            }
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
