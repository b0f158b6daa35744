//! Boundary cases a citizen or an agency would notice: the exact second of expiry and of
//! the start of validity, the last allowed use, revocation at the next request,
//! supersession, and a statutory basis that does not consume a consent.

use policies::{
    evaluate, AccessRequest, Basis, CitizenRef, ConsentArtefact, ConsentId, ConsentTerms,
    LegalBasis, Outcome, Reason, Timestamp,
};

use crate::examples::{examples, f, request};

const T0: u64 = 1_795_946_400; // 2026-11-29T10:00:00Z

fn t(offset: u64) -> Timestamp {
    Timestamp::from_unix_seconds(T0 + offset)
}

fn research() -> AccessRequest {
    request(
        "health_research_institute",
        "health_research",
        &["health.vaccinations", "health.allergies"],
        None,
        None,
    )
}

/// Granted at t(0), valid [t(100), t(1000)), at most `max_uses` uses, covering `fields`.
fn consent(id: u8, fields: &[&str], max_uses: Option<u32>) -> ConsentArtefact {
    let req = research();
    let terms = ConsentTerms {
        agency: req.agency,
        purpose: req.purpose,
        fields: fields.iter().map(|n| f(n)).collect(),
        valid_from: t(100),
        expires_at: t(1000),
        max_uses,
        data_life: None,
    };
    let citizen = CitizenRef::new("c-1").expect("ref");
    ConsentArtefact::grant_direct(ConsentId::from_bytes([id; 16]), citizen, terms, None, t(0))
        .expect("valid grant")
}

/// The first field's outcome: the releasing artefact, or the reason it is withheld.
fn outcome(arts: &[ConsentArtefact], now: Timestamp) -> Result<ConsentId, Reason> {
    let set = examples();
    let req = research();
    match evaluate(&set, &req, arts, now).fields[0].outcome {
        Outcome::Released(Basis::Consent { artefact_id }) => Ok(artefact_id),
        Outcome::Released(other) => panic!("released on {other:?}, not on consent"),
        Outcome::Withheld(reason) => Err(reason),
    }
}

fn released_by(id: u8) -> Result<ConsentId, Reason> {
    Ok(ConsentId::from_bytes([id; 16]))
}

#[test]
fn at_exactly_expires_at_the_consent_no_longer_covers() {
    let a = [consent(1, &["health.vaccinations"], None)];
    assert_eq!(outcome(&a, t(999)), released_by(1));
    assert_eq!(outcome(&a, t(1000)), Err(Reason::ConsentExpired));
    assert_eq!(outcome(&a, t(5000)), Err(Reason::ConsentExpired));
}

#[test]
fn at_exactly_valid_from_the_consent_covers() {
    let a = [consent(1, &["health.vaccinations"], None)];
    assert_eq!(outcome(&a, t(99)), Err(Reason::ConsentNotYetValid));
    assert_eq!(outcome(&a, t(100)), released_by(1));
}

#[test]
fn the_last_allowed_use_is_served_and_the_next_is_refused() {
    let set = examples();
    let req = research();
    let mut arts = vec![consent(
        1,
        &["health.vaccinations", "health.allergies"],
        Some(2),
    )];
    for (i, now) in [t(200), t(300)].into_iter().enumerate() {
        let d = evaluate(&set, &req, &arts, now);
        assert_eq!(d.released().count(), 2, "use {}", i + 1);
        // Two fields from one artefact are one use.
        assert_eq!(d.consents_used(), [arts[0].id()]);
        arts[0].record_use(now).expect("use recorded");
    }
    assert_eq!(arts[0].uses(), 2);
    let d = evaluate(&set, &req, &arts, t(400));
    assert!(d.withheld().all(|(_, r)| r == Reason::UsesExhausted));
    assert_eq!(d.withheld().count(), 2);
    assert!(d.consents_used().is_empty());
}

#[test]
fn revocation_takes_effect_at_the_next_request() {
    let mut a = [consent(1, &["health.vaccinations"], None)];
    assert_eq!(outcome(&a, t(500)), released_by(1));
    a[0].revoke(t(500)).expect("revoke");
    assert_eq!(outcome(&a, t(500)), Err(Reason::ConsentRevoked));
    assert_eq!(outcome(&a, t(501)), Err(Reason::ConsentRevoked));
}

#[test]
fn a_narrower_superseding_consent_wins_over_the_old_one() {
    let old = consent(1, &["health.vaccinations", "health.allergies"], None);
    let req = research();
    let terms = ConsentTerms {
        agency: req.agency.clone(),
        purpose: req.purpose.clone(),
        fields: vec![f("health.allergies")],
        valid_from: t(100),
        expires_at: t(1000),
        max_uses: None,
        data_life: None,
    };
    let citizen = CitizenRef::new("c-1").expect("ref");
    let mut new = ConsentArtefact::request(
        ConsentId::from_bytes([2; 16]),
        citizen,
        terms,
        Some(&old),
        t(150),
    )
    .expect("superseding request");
    let set = examples();
    // A pending replacement changes nothing yet.
    let arts = [old.clone(), new.clone()];
    let d = evaluate(&set, &req, &arts, t(200));
    assert_eq!(d.released().count(), 2);
    new.grant(t(200)).expect("grant");
    let arts = [old, new];
    let d = evaluate(&set, &req, &arts, t(200));
    assert_eq!(
        d.fields[0].outcome,
        Outcome::Withheld(Reason::ConsentSuperseded)
    );
    assert_eq!(
        d.fields[1].outcome,
        Outcome::Released(Basis::Consent {
            artefact_id: ConsentId::from_bytes([2; 16])
        })
    );
}

#[test]
fn a_statutory_basis_does_not_spend_a_consent() {
    let set = examples();
    let req = request(
        "tax_authority",
        "tax_assessment",
        &["identity.full_name", "tax.annual_income"],
        None,
        None,
    );
    let d = evaluate(&set, &req, &[], t(0));
    assert!(matches!(
        d.fields[0].outcome,
        Outcome::Released(Basis::Statutory { .. })
    ));
    assert_eq!(d.fields[1].outcome, Outcome::Withheld(Reason::NoConsent));
    assert!(d.consents_used().is_empty());
    // Claiming a basis the rule does not have releases nothing.
    let claim = AccessRequest {
        legal_basis: Some(LegalBasis::PublicTask),
        ..req
    };
    let d = evaluate(&set, &claim, &[], t(0));
    assert_eq!(
        d.fields[0].outcome,
        Outcome::Withheld(Reason::NoStatutoryRule)
    );
}
