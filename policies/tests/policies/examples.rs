//! The example policy set (`policies/examples/`) loads cleanly and decides as a reader of
//! its files would expect.

use std::path::Path;

use policies::{
    evaluate, AccessRequest, AgencyId, Basis, Category, CitizenRef, ConsentArtefact, ConsentId,
    ConsentTerms, FieldName, LegalBasis, Outcome, PolicySet, PurposeCode, Reason, Sensitivity,
    Timestamp,
};

pub(crate) fn examples() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    match PolicySet::load_dir(&dir) {
        Ok(set) => set,
        Err(e) => panic!("the example policy set does not load:\n{e}"),
    }
}

pub(crate) fn f(name: &str) -> FieldName {
    FieldName::new(name).expect("valid field name")
}

pub(crate) fn request(
    agency: &str,
    purpose: &str,
    fields: &[&str],
    basis: Option<LegalBasis>,
    justification: Option<&str>,
) -> AccessRequest {
    AccessRequest {
        agency: AgencyId::new(agency).expect("valid"),
        purpose: PurposeCode::new(purpose).expect("valid"),
        fields: fields.iter().map(|n| f(n)).collect(),
        legal_basis: basis,
        justification: justification.map(str::to_owned),
    }
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-29T10:00:00Z").expect("valid")
}

#[test]
fn the_example_set_is_complete_enough_for_the_dev_mode() {
    let set = examples();
    assert!(set.agencies().count() >= 5);
    for a in [
        "tax_authority",
        "general_hospital",
        "vehicle_registry",
        "social_benefits_office",
        "national_police",
    ] {
        assert!(set.agency(&AgencyId::new(a).expect("id")).is_some(), "{a}");
    }
    assert!(set.categories().count() >= 6);
    assert!(set.fields().count() >= 30);
    assert!(set.statutory_rules().count() >= 5);
    assert!(set
        .statutory_rules()
        .all(|r| r.legal_reference.contains(", s. ")));
    assert_eq!(set.break_glass_rules().count(), 1);
    assert!(set
        .fields()
        .any(|f| f.sensitivity == Sensitivity::SpecialCategory));
    let hospital = AgencyId::new("general_hospital").expect("id");
    assert!(set.may_write(&hospital, &Category::new("health").expect("cat")));
    assert!(!set.may_write(&hospital, &Category::new("tax").expect("cat")));
}

#[test]
fn a_roadside_check_gets_vehicle_data_by_law_and_nothing_medical() {
    let set = examples();
    let req = request(
        "national_police",
        "road_safety_enforcement",
        &[
            "vehicle.registration",
            "vehicle.licence_points",
            "health.blood_type",
        ],
        None,
        None,
    );
    let d = evaluate(&set, &req, &[], now());
    let released: Vec<_> = d.released().map(|(f, _)| f.as_str()).collect();
    assert_eq!(released, ["vehicle.registration", "vehicle.licence_points"]);
    match d.fields[0].outcome {
        Outcome::Released(Basis::Statutory {
            rule_id,
            legal_basis,
            legal_reference,
        }) => {
            assert_eq!(rule_id.as_str(), "police_roadside_check");
            assert_eq!(legal_basis, LegalBasis::PublicTask);
            assert!(legal_reference.starts_with("Road Traffic Act 2015"));
        }
        other => panic!("expected a statutory release, got {other:?}"),
    }
    let withheld: Vec<_> = d.withheld().collect();
    assert_eq!(withheld, [(&f("health.blood_type"), Reason::NoConsent)]);
    assert_eq!(d.obligations, Default::default());
}

#[test]
fn emergency_access_needs_a_justification_and_is_flagged() {
    let set = examples();
    let fields = ["health.blood_type", "health.allergies", "tax.annual_income"];
    let bare = request(
        "general_hospital",
        "emergency_care",
        &fields,
        Some(LegalBasis::VitalInterest),
        None,
    );
    let d = evaluate(&set, &bare, &[], now());
    assert!(d.withheld().all(|(_, r)| r == Reason::JustificationMissing));
    assert_eq!(d.withheld().count(), 3);

    let why = Some("unconscious patient admitted to the emergency room, no relative reachable");
    let req = request(
        "general_hospital",
        "emergency_care",
        &fields,
        Some(LegalBasis::VitalInterest),
        why,
    );
    let d = evaluate(&set, &req, &[], now());
    let released: Vec<_> = d
        .released()
        .map(|(f, b)| (f.as_str(), b.legal_basis()))
        .collect();
    assert_eq!(
        released,
        [
            ("health.blood_type", LegalBasis::VitalInterest),
            ("health.allergies", LegalBasis::VitalInterest)
        ]
    );
    assert_eq!(
        d.withheld().next(),
        Some((&f("tax.annual_income"), Reason::NoBreakGlassRule))
    );
    assert!(d.obligations.notify_citizen && d.obligations.review);
    assert_eq!(
        d.obligations.delete_by,
        Some(now().saturating_add(24 * 3600))
    );
}

#[test]
fn research_needs_the_citizens_consent() {
    let set = examples();
    let req = request(
        "health_research_institute",
        "health_research",
        &["health.vaccinations"],
        None,
        None,
    );
    assert_eq!(
        evaluate(&set, &req, &[], now()).withheld().next(),
        Some((&f("health.vaccinations"), Reason::NoConsent))
    );
    let terms = ConsentTerms {
        agency: req.agency.clone(),
        purpose: req.purpose.clone(),
        fields: vec![f("health.vaccinations")],
        valid_from: now(),
        expires_at: now().saturating_add(365 * 86_400),
        max_uses: None,
        data_life: Some(30 * 86_400),
    };
    set.check_consent_request(&terms.agency, &terms.purpose, &terms.fields)
        .expect("a valid consent request");
    let citizen = CitizenRef::new("c-42").expect("ref");
    let id = ConsentId::from_bytes([7; 16]);
    let a = ConsentArtefact::grant_direct(id, citizen, terms, None, now()).expect("grant");
    let d = evaluate(&set, &req, std::slice::from_ref(&a), now());
    assert_eq!(
        d.fields[0].outcome,
        Outcome::Released(Basis::Consent { artefact_id: id })
    );
    assert_eq!(d.consents_used(), [id]);
    assert_eq!(
        d.obligations.delete_by,
        Some(now().saturating_add(30 * 86_400))
    );
}

#[test]
fn consent_requests_are_checked_against_the_registry() {
    let set = examples();
    let code = |agency: &str, purpose: &str, fields: &[&str]| {
        let fields: Vec<FieldName> = fields.iter().map(|n| f(n)).collect();
        set.check_consent_request(
            &AgencyId::new(agency).expect("id"),
            &PurposeCode::new(purpose).expect("id"),
            &fields,
        )
        .map_err(|e| e.code())
    };
    assert_eq!(
        code(
            "health_research_institute",
            "health_research",
            &["health.allergies"]
        ),
        Ok(())
    );
    assert_eq!(
        code("ghost_agency", "health_research", &["health.allergies"]),
        Err("agency_unknown")
    );
    assert_eq!(
        code("tax_authority", "health_research", &["health.allergies"]),
        Err("purpose_not_allowed")
    );
    assert_eq!(
        code("health_research_institute", "health_research", &[]),
        Err("no_fields")
    );
    assert_eq!(
        code(
            "health_research_institute",
            "health_research",
            &["health.dna"]
        ),
        Err("unknown_field")
    );
    assert_eq!(
        code(
            "health_research_institute",
            "health_research",
            &["health.allergies", "health.allergies"]
        ),
        Err("duplicate_field")
    );
}
