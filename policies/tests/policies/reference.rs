//! The evaluation against a separately written reference model, over 10,000 random worlds
//! (agencies, purposes, statutory and break-glass rules, artefacts with random validity,
//! grants, denials, revocations, uses and supersessions, and requests at random times).
//!
//! The model reads the world's own description (not the loaded `PolicySet`) and derives
//! an artefact's state from its events, so it shares no code with `eval.rs`.

use std::collections::{BTreeMap, BTreeSet};

use policies::{
    evaluate, AccessRequest, AgencyId, Basis, CitizenRef, ConsentArtefact, ConsentEventKind,
    ConsentId, ConsentTerms, FieldName, LegalBasis, Outcome, PolicySet, PurposeCode, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const PURPOSES: [&str; 3] = ["p0", "p1", "p2"];
const FIELDS: [&str; 6] = ["c0.f0", "c0.f1", "c0.f2", "c1.f0", "c1.f1", "c1.f2"];
/// Requests may also name a field missing from the vocabulary.
const UNKNOWN_FIELD: &str = "c2.ghost";
/// Agencies a0..a2 are registered; a3 is not.
const AGENCIES: usize = 3;

#[derive(Clone, Debug)]
struct Rule {
    purpose: usize,
    fields: Vec<usize>,
    public_task: bool,
}

#[derive(Clone, Debug)]
struct BreakGlass {
    purpose: usize,
    fields: Vec<usize>,
    validity: u64,
}

#[derive(Clone, Debug)]
struct WorldAgency {
    purposes: Vec<usize>,
    statutory: Vec<Rule>,
    break_glass: Vec<BreakGlass>,
}

#[derive(Clone, Debug)]
struct ArtefactSpec {
    agency: usize,
    purpose: usize,
    fields: Vec<usize>,
    direct: bool,
    created: u64,
    valid_from_delta: i64,
    duration: u64,
    max_uses: Option<u32>,
    data_life: Option<u64>,
    /// (operation 0 grant, 1 deny, 2 revoke, 3 use, 4 expire; seconds after the last)
    ops: Vec<(u8, u64)>,
    supersede: Option<usize>,
}

#[derive(Clone, Debug)]
struct RequestSpec {
    agency: usize,
    purpose: usize,
    /// Indices into FIELDS; FIELDS.len() means UNKNOWN_FIELD.
    fields: Vec<usize>,
    basis: Option<usize>,
    justification: Option<&'static str>,
    after: u64,
}

#[derive(Clone, Debug)]
struct World {
    agencies: Vec<WorldAgency>,
    artefacts: Vec<ArtefactSpec>,
    request: RequestSpec,
}

fn field_set() -> impl Strategy<Value = Vec<usize>> {
    proptest::sample::subsequence((0..FIELDS.len()).collect::<Vec<_>>(), 1..=4)
}

fn agency() -> impl Strategy<Value = WorldAgency> {
    (
        [
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.5),
        ],
        prop::collection::vec((0..3usize, field_set(), any::<bool>()), 0..=2),
        prop::collection::vec((0..3usize, field_set(), 1..100u64), 0..=1),
    )
        .prop_map(|(claims, rules, glass)| {
            let mut purposes: Vec<usize> = (0..3).filter(|p| claims[*p]).collect();
            // A rule's purpose must be one the agency may claim: add it if missing.
            for p in rules.iter().map(|r| r.0).chain(glass.iter().map(|g| g.0)) {
                if !purposes.contains(&p) {
                    purposes.push(p);
                }
            }
            WorldAgency {
                purposes,
                statutory: rules
                    .into_iter()
                    .map(|(purpose, fields, public_task)| Rule {
                        purpose,
                        fields,
                        public_task,
                    })
                    .collect(),
                break_glass: glass
                    .into_iter()
                    .map(|(purpose, fields, validity)| BreakGlass {
                        purpose,
                        fields,
                        validity,
                    })
                    .collect(),
            }
        })
}

fn artefact() -> impl Strategy<Value = ArtefactSpec> {
    (
        (
            likely_agency(),
            likely_purpose(),
            field_set(),
            any::<bool>(),
            0..50u64,
        ),
        (
            -20..60i64,
            1..80u64,
            prop::option::of(1..3u32),
            prop::option::of(0..100u64),
        ),
        prop::collection::vec(
            (
                prop_oneof![1 => 0..3u8, 2 => Just(3u8), 1 => 4..5u8],
                0..10u64,
            ),
            0..6,
        ),
        prop::option::of(0..8usize),
    )
        .prop_map(
            |(
                (agency, purpose, fields, direct, created),
                (valid_from_delta, duration, max_uses, data_life),
                ops,
                supersede,
            )| ArtefactSpec {
                agency,
                purpose,
                fields,
                direct,
                created,
                valid_from_delta,
                duration,
                max_uses,
                data_life,
                ops,
                supersede,
            },
        )
}

/// Mostly a0 or a1, sometimes any (including the unregistered a3): so that requests
/// and artefacts often meet.
fn likely_agency() -> impl Strategy<Value = usize> {
    prop_oneof![5 => 0..2usize, 1 => 0..=AGENCIES]
}

/// Mostly p0 or p1, sometimes p2.
fn likely_purpose() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0..2usize, 1 => 0..3usize]
}

fn request() -> impl Strategy<Value = RequestSpec> {
    (
        likely_agency(),
        likely_purpose(),
        prop::collection::vec(0..=FIELDS.len(), 0..6),
        prop::option::of(0..4usize),
        prop::option::of(prop::sample::select(vec!["", "   ", "unconscious patient"])),
        0..60u64,
    )
        .prop_map(
            |(agency, purpose, fields, basis, justification, after)| RequestSpec {
                agency,
                purpose,
                fields,
                basis,
                justification,
                after,
            },
        )
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(agency(), AGENCIES),
        prop::collection::vec(artefact(), 0..8),
        request(),
    )
        .prop_map(|(agencies, artefacts, request)| World {
            agencies,
            artefacts,
            request,
        })
}

// ---- turning a world into policy files and artefacts ------------------------------------

fn policy_text(w: &World) -> String {
    let mut s = String::from("version = 1\n");
    for p in PURPOSES {
        s += &format!("[[purpose]]\ncode = \"{p}\"\ndescription = \"purpose {p}\"\n");
    }
    for c in ["c0", "c1"] {
        s += &format!(
            "[[category]]\nid = \"{c}\"\ndescription = \"d\"\nsensitivity = \"ordinary\"\n"
        );
        for f in ["f0", "f1", "f2"] {
            s += &format!("[[category.field]]\nname = \"{f}\"\ndescription = \"d\"\n");
        }
    }
    let list = |idx: &[usize], names: &[&str]| {
        idx.iter()
            .map(|i| format!("\"{}\"", names[*i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rule_no = 0;
    for (i, a) in w.agencies.iter().enumerate() {
        s += &format!(
            "[[agency]]\nid = \"a{i}\"\nname = \"Agency {i}\"\npurposes = [{}]\n",
            list(&a.purposes, &PURPOSES)
        );
        for r in &a.statutory {
            rule_no += 1;
            s += &format!(
                "[[agency.statutory]]\nid = \"r{rule_no}\"\npurpose = \"{}\"\nfields = [{}]\nlegal_basis = \"{}\"\nreference = \"Act {rule_no}\"\n",
                PURPOSES[r.purpose],
                list(&r.fields, &FIELDS),
                if r.public_task { "public_task" } else { "legal_obligation" }
            );
        }
    }
    for (i, a) in w.agencies.iter().enumerate() {
        for g in &a.break_glass {
            rule_no += 1;
            s += &format!(
                "[[break_glass]]\nid = \"r{rule_no}\"\nagency = \"a{i}\"\npurpose = \"{}\"\nfields = [{}]\nmax_validity = \"{}s\"\nreference = \"Act {rule_no}\"\n",
                PURPOSES[g.purpose],
                list(&g.fields, &FIELDS),
                g.validity
            );
        }
    }
    s
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_unix_seconds(s)
}

fn field(i: usize) -> FieldName {
    FieldName::new(FIELDS.get(i).copied().unwrap_or(UNKNOWN_FIELD)).expect("valid name")
}

/// Builds the artefacts through their public lifecycle; returns them and the last event time.
fn build_artefacts(w: &World) -> (Vec<ConsentArtefact>, u64) {
    let citizen = CitizenRef::new("citizen-1").expect("valid");
    let mut out: Vec<ConsentArtefact> = Vec::new();
    let mut last = 0;
    for (n, spec) in w.artefacts.iter().enumerate() {
        let old = spec
            .supersede
            .filter(|_| !out.is_empty())
            .map(|i| out[i % out.len()].clone());
        let (agency, purpose) = match &old {
            Some(o) => (o.agency().clone(), o.purpose().clone()),
            None => (
                AgencyId::new(&format!("a{}", spec.agency)).expect("valid"),
                PurposeCode::new(PURPOSES[spec.purpose]).expect("valid"),
            ),
        };
        let valid_from = (spec.created as i64 + spec.valid_from_delta).max(0) as u64;
        let terms = ConsentTerms {
            agency,
            purpose,
            fields: spec.fields.iter().map(|i| field(*i)).collect(),
            valid_from: t(valid_from),
            expires_at: t(valid_from.max(spec.created) + spec.duration),
            max_uses: spec.max_uses,
            data_life: spec.data_life,
        };
        let mut id = [0u8; 16];
        id[0] = n as u8;
        id[15] = 0x5a;
        let id = ConsentId::from_bytes(id);
        let create = |sup: Option<&ConsentArtefact>| {
            if spec.direct {
                ConsentArtefact::grant_direct(
                    id,
                    citizen.clone(),
                    terms.clone(),
                    sup,
                    t(spec.created),
                )
            } else {
                ConsentArtefact::request(id, citizen.clone(), terms.clone(), sup, t(spec.created))
            }
        };
        let mut a = match create(old.as_ref()) {
            Ok(a) => a,
            Err(_) => create(None).expect("terms are valid by construction"),
        };
        let mut now = spec.created;
        for (op, dt) in &spec.ops {
            now += dt;
            // Steps that do not apply are refused; the world keeps what happened.
            let _ = match op {
                0 => a.grant(t(now)),
                1 => a.deny(t(now)),
                2 => a.revoke(t(now)),
                3 => a.record_use(t(now)),
                _ => a.expire(t(now)),
            };
        }
        last = last.max(now);
        out.push(a);
    }
    (out, last)
}

fn access_request(w: &World) -> AccessRequest {
    let r = &w.request;
    AccessRequest {
        agency: AgencyId::new(&format!("a{}", r.agency)).expect("valid"),
        purpose: PurposeCode::new(PURPOSES[r.purpose]).expect("valid"),
        fields: r.fields.iter().map(|i| field(*i)).collect(),
        legal_basis: r.basis.map(|b| LegalBasis::ALL[b]),
        justification: r.justification.map(str::to_owned),
    }
}

// ---- the reference model ----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    Consent(ConsentId),
    Statutory(String),
    Vital(String),
    Withheld(&'static str),
}

/// The artefact's state at `now`, from its events.
fn model_state(a: &ConsentArtefact, all: &[ConsentArtefact], now: u64) -> &'static str {
    let has = |k: ConsentEventKind| a.events().iter().any(|e| e.kind == k);
    let superseded = all.iter().any(|b| {
        b.supersedes() == Some(a.id())
            && b.events()
                .iter()
                .any(|e| e.kind == ConsentEventKind::Granted)
    });
    let expires = a.expires_at().unix_seconds();
    if superseded {
        "consent_superseded"
    } else if has(ConsentEventKind::Denied) {
        "consent_denied"
    } else if has(ConsentEventKind::Revoked) {
        "consent_revoked"
    } else if now >= expires || has(ConsentEventKind::Expired) {
        "consent_expired"
    } else if !has(ConsentEventKind::Granted) {
        "consent_pending"
    } else if now < a.valid_from().unix_seconds() {
        "consent_not_yet_valid"
    } else if a.max_uses().is_some_and(|m| a.uses() >= m) {
        "uses_exhausted"
    } else {
        "usable"
    }
}

const REASON_ORDER: [&str; 7] = [
    "uses_exhausted",
    "consent_not_yet_valid",
    "consent_expired",
    "consent_revoked",
    "consent_superseded",
    "consent_pending",
    "consent_denied",
];

struct ModelDecision {
    fields: Vec<Expected>,
    notify_and_review: bool,
    delete_by: Option<u64>,
}

fn model(w: &World, arts: &[ConsentArtefact], now: u64) -> ModelDecision {
    let r = &w.request;
    let mut delete_by: Vec<u64> = Vec::new();
    let mut vital = false;
    let basis = r.basis.map(|b| LegalBasis::ALL[b]);
    let justified = r.justification.is_some_and(|j| !j.trim().is_empty());
    let mut rule_ids: BTreeMap<(usize, bool, usize), String> = BTreeMap::new();
    let mut n = 0;
    for (ai, a) in w.agencies.iter().enumerate() {
        for ri in 0..a.statutory.len() {
            n += 1;
            rule_ids.insert((ai, false, ri), format!("r{n}"));
        }
    }
    for (ai, a) in w.agencies.iter().enumerate() {
        for gi in 0..a.break_glass.len() {
            n += 1;
            rule_ids.insert((ai, true, gi), format!("r{n}"));
        }
    }
    let mut fields = Vec::new();
    for (pos, &f) in r.fields.iter().enumerate() {
        let e = 'decide: {
            if r.agency >= AGENCIES {
                break 'decide Expected::Withheld("agency_unknown");
            }
            let ag = &w.agencies[r.agency];
            if !ag.purposes.contains(&r.purpose) {
                break 'decide Expected::Withheld("purpose_not_allowed");
            }
            if basis == Some(LegalBasis::VitalInterest) && !justified {
                break 'decide Expected::Withheld("justification_missing");
            }
            if r.fields[..pos].contains(&f) {
                break 'decide Expected::Withheld("field_repeated");
            }
            if f >= FIELDS.len() {
                break 'decide Expected::Withheld("unknown_field");
            }
            if basis == Some(LegalBasis::VitalInterest) {
                for (gi, g) in ag.break_glass.iter().enumerate() {
                    if g.purpose == r.purpose && g.fields.contains(&f) {
                        vital = true;
                        delete_by.push(now + g.validity);
                        break 'decide Expected::Vital(rule_ids[&(r.agency, true, gi)].clone());
                    }
                }
                break 'decide Expected::Withheld("no_break_glass_rule");
            }
            if basis != Some(LegalBasis::Consent) {
                for (ri, rule) in ag.statutory.iter().enumerate() {
                    let rule_basis = if rule.public_task {
                        LegalBasis::PublicTask
                    } else {
                        LegalBasis::LegalObligation
                    };
                    let basis_ok = basis.is_none() || basis == Some(rule_basis);
                    if rule.purpose == r.purpose && basis_ok && rule.fields.contains(&f) {
                        break 'decide Expected::Statutory(
                            rule_ids[&(r.agency, false, ri)].clone(),
                        );
                    }
                }
                if basis.is_some() {
                    break 'decide Expected::Withheld("no_statutory_rule");
                }
            }
            let agency_id = format!("a{}", r.agency);
            let same: Vec<&ConsentArtefact> = arts
                .iter()
                .filter(|a| {
                    a.agency().as_str() == agency_id && a.purpose().as_str() == PURPOSES[r.purpose]
                })
                .collect();
            let naming: Vec<&&ConsentArtefact> = same
                .iter()
                .filter(|a| a.fields().contains(&field(f)))
                .collect();
            for a in &naming {
                if model_state(a, arts, now) == "usable" {
                    if let Some(l) = a.data_life() {
                        delete_by.push(now + l);
                    }
                    break 'decide Expected::Consent(a.id());
                }
            }
            let states: BTreeSet<&str> = naming.iter().map(|a| model_state(a, arts, now)).collect();
            if let Some(r) = REASON_ORDER.iter().find(|r| states.contains(*r)) {
                break 'decide Expected::Withheld(r);
            }
            if same.is_empty() {
                Expected::Withheld("no_consent")
            } else {
                Expected::Withheld("field_not_covered")
            }
        };
        fields.push(e);
    }
    ModelDecision {
        fields,
        notify_and_review: vital,
        delete_by: delete_by.into_iter().min(),
    }
}

fn observed(o: &Outcome<'_>) -> Expected {
    match o {
        Outcome::Released(Basis::Consent { artefact_id }) => Expected::Consent(*artefact_id),
        Outcome::Released(Basis::Statutory { rule_id, .. }) => {
            Expected::Statutory(rule_id.to_string())
        }
        Outcome::Released(Basis::VitalInterest { rule_id, .. }) => {
            Expected::Vital(rule_id.to_string())
        }
        Outcome::Withheld(r) => Expected::Withheld(r.code()),
    }
}

/// Independent of both: a released field has a covering artefact or rule at `now`.
fn assert_release_is_covered(
    w: &World,
    policy: &PolicySet,
    arts: &[ConsentArtefact],
    req: &AccessRequest,
    o: &Outcome<'_>,
    f: &FieldName,
    now: Timestamp,
) {
    match o {
        Outcome::Released(Basis::Consent { artefact_id }) => {
            let a = arts
                .iter()
                .find(|a| a.id() == *artefact_id)
                .expect("released on an artefact that exists");
            assert_eq!(a.agency(), &req.agency);
            assert_eq!(a.purpose(), &req.purpose);
            assert!(a.covers(f), "artefact does not name the field");
            assert_eq!(a.status_at(now), policies::ConsentStatus::Active);
            assert!(a.valid_from() <= now && now < a.expires_at());
            assert!(a.has_use_left());
            assert!(matches!(req.legal_basis, None | Some(LegalBasis::Consent)));
        }
        Outcome::Released(Basis::Statutory { rule_id, .. }) => {
            let rule = policy
                .statutory_rules()
                .find(|r| &r.id == *rule_id)
                .expect("rule exists");
            assert!(
                rule.agency == req.agency && rule.purpose == req.purpose && rule.fields.contains(f)
            );
        }
        Outcome::Released(Basis::VitalInterest { rule_id, .. }) => {
            let rule = policy
                .break_glass_rules()
                .find(|r| &r.id == *rule_id)
                .expect("rule exists");
            assert!(
                rule.agency == req.agency && rule.purpose == req.purpose && rule.fields.contains(f)
            );
            assert!(req
                .justification
                .as_deref()
                .is_some_and(|j| !j.trim().is_empty()));
        }
        Outcome::Withheld(_) => {}
    }
    let _ = w;
}

#[test]
fn evaluation_agrees_with_the_reference_model_on_10000_worlds() {
    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let seen_cell = std::cell::RefCell::new(&mut seen);
    let result = runner.run(&world(), |w| {
        let policy = PolicySet::from_sources(&[("world.toml", policy_text(&w))])
            .map_err(|e| TestCaseError::fail(format!("world policy does not load: {e}")))?;
        let (arts, last) = build_artefacts(&w);
        let now_s = last + w.request.after;
        let now = t(now_s);
        let req = access_request(&w);
        let decision = evaluate(&policy, &req, &arts, now);
        let expected = model(&w, &arts, now_s);
        prop_assert_eq!(decision.fields.len(), req.fields.len());
        for (i, d) in decision.fields.iter().enumerate() {
            prop_assert_eq!(d.field, &req.fields[i], "decisions follow the request");
            prop_assert_eq!(&observed(&d.outcome), &expected.fields[i], "field {}", i);
            assert_release_is_covered(&w, &policy, &arts, &req, &d.outcome, d.field, now);
            let key = match observed(&d.outcome) {
                Expected::Withheld(c) => c.to_owned(),
                Expected::Consent(_) => "released:consent".to_owned(),
                Expected::Statutory(_) => "released:statutory".to_owned(),
                Expected::Vital(_) => "released:vital".to_owned(),
            };
            *seen_cell.borrow_mut().entry(key).or_default() += 1;
        }
        prop_assert_eq!(
            decision.obligations.notify_citizen,
            expected.notify_and_review
        );
        prop_assert_eq!(decision.obligations.review, expected.notify_and_review);
        prop_assert_eq!(
            decision.obligations.delete_by.map(Timestamp::unix_seconds),
            expected.delete_by
        );
        let mut used: Vec<ConsentId> = expected
            .fields
            .iter()
            .filter_map(|e| match e {
                Expected::Consent(id) => Some(*id),
                _ => None,
            })
            .collect();
        used.dedup();
        let mut distinct = Vec::new();
        for id in used {
            if !distinct.contains(&id) {
                distinct.push(id);
            }
        }
        prop_assert_eq!(decision.consents_used(), distinct);
        Ok(())
    });
    if let Err(e) = result {
        panic!("disagreement with the reference model: {e}");
    }
    eprintln!("outcomes over 10,000 worlds: {seen:?}");
    // The worlds exercise every outcome, or agreement would prove little.
    for key in [
        "released:consent",
        "released:statutory",
        "released:vital",
        "agency_unknown",
        "purpose_not_allowed",
        "justification_missing",
        "field_repeated",
        "unknown_field",
        "no_consent",
        "field_not_covered",
        "consent_pending",
        "consent_denied",
        "consent_superseded",
        "consent_revoked",
        "consent_expired",
        "consent_not_yet_valid",
        "uses_exhausted",
        "no_statutory_rule",
        "no_break_glass_rule",
    ] {
        assert!(
            seen.get(key).copied().unwrap_or(0) >= 5,
            "outcome {key} seen only {:?} times: {seen:?}",
            seen.get(key)
        );
    }
}
