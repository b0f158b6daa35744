//! Evaluation: a pure function of (policy set, request, the citizen's artefacts, now)
//! that decides, field by field, what an agency receives, and why.
//!
//! The rules, in the order they apply (`docs/policies.md` states them for users):
//! 1. Request-wide refusals come first and withhold every field: unknown agency, a purpose
//!    the agency may not claim, a `vital_interest` claim without a justification.
//! 2. Per field: a field named a second time, or not in the vocabulary, is withheld.
//! 3. The claimed legal basis picks the path: `vital_interest` only break-glass rules;
//!    `legal_obligation` / `public_task` only statutory rules with that basis; `consent`
//!    only artefacts; no claim: statutory rules first, then artefacts.
//! 4. An artefact covers a field when it is for the same agency and purpose, names the
//!    field, is active at `now` (`valid_from <= now < expires_at`, not revoked), has a
//!    use left, and no granted artefact supersedes it. The first such artefact, in the
//!    order given, is the basis. Otherwise the reason comes from the most advanced of the
//!    artefacts that name the field (see [`Reason`]).
//!
//! Deny wins over allow: a request-wide refusal or a superseding artefact overrides any
//! artefact or rule that would otherwise release the field. Fields not requested never
//! appear in the decision.

use crate::consent::{ConsentArtefact, ConsentStatus};
use crate::ids::{AgencyId, ConsentId, FieldName, LegalBasis, PurposeCode, RuleId};
use crate::model::{Agency, PolicySet};
use crate::time::Timestamp;

/// What an agency asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    /// The requesting agency (from its authenticated certificate).
    pub agency: AgencyId,
    /// The purpose it claims.
    pub purpose: PurposeCode,
    /// The fields it asks for.
    pub fields: Vec<FieldName>,
    /// The legal basis it claims, if it names one.
    pub legal_basis: Option<LegalBasis>,
    /// Why it needs the data (mandatory for `vital_interest`).
    pub justification: Option<String>,
}

/// Why a field was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis<'a> {
    /// The citizen's consent artefact (one use of it must be recorded).
    Consent {
        /// The artefact.
        artefact_id: ConsentId,
    },
    /// A statutory rule (`legal_obligation` or `public_task`).
    Statutory {
        /// The rule.
        rule_id: &'a RuleId,
        /// Its legal basis.
        legal_basis: LegalBasis,
        /// The law it cites.
        legal_reference: &'a str,
    },
    /// A break-glass rule under `vital_interest`.
    VitalInterest {
        /// The rule.
        rule_id: &'a RuleId,
        /// The law it cites.
        legal_reference: &'a str,
    },
}

impl Basis<'_> {
    /// The GDPR legal basis this release rests on.
    pub fn legal_basis(&self) -> LegalBasis {
        match self {
            Basis::Consent { .. } => LegalBasis::Consent,
            Basis::Statutory { legal_basis, .. } => *legal_basis,
            Basis::VitalInterest { .. } => LegalBasis::VitalInterest,
        }
    }
}

/// Why a field was withheld. Each has a stable [`code`](Reason::code).
///
/// When several artefacts name a field and none covers it, the reason is that of the
/// most advanced one, in this order (most advanced first): uses exhausted, not yet valid,
/// expired, revoked, superseded, pending, denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The agency is not in the registry.
    AgencyUnknown,
    /// The agency may not claim the purpose.
    PurposeNotAllowed,
    /// `vital_interest` was claimed without a justification.
    JustificationMissing,
    /// The field is not in the vocabulary.
    UnknownField,
    /// The field was already named earlier in the same request.
    FieldRepeated,
    /// No artefact for this agency and purpose exists.
    NoConsent,
    /// Artefacts for this agency and purpose exist, but none names the field.
    FieldNotCovered,
    /// The covering artefact awaits the citizen's answer.
    ConsentPending,
    /// The citizen refused the request.
    ConsentDenied,
    /// The covering artefact was replaced by a newer one that does not cover the field.
    ConsentSuperseded,
    /// The citizen revoked the covering artefact.
    ConsentRevoked,
    /// The covering artefact has expired.
    ConsentExpired,
    /// The covering artefact is not valid yet.
    ConsentNotYetValid,
    /// The covering artefact has served all its uses.
    UsesExhausted,
    /// No statutory rule with the claimed basis covers the field.
    NoStatutoryRule,
    /// No break-glass rule covers the field.
    NoBreakGlassRule,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 16] = [
        Reason::AgencyUnknown,
        Reason::PurposeNotAllowed,
        Reason::JustificationMissing,
        Reason::UnknownField,
        Reason::FieldRepeated,
        Reason::NoConsent,
        Reason::FieldNotCovered,
        Reason::ConsentPending,
        Reason::ConsentDenied,
        Reason::ConsentSuperseded,
        Reason::ConsentRevoked,
        Reason::ConsentExpired,
        Reason::ConsentNotYetValid,
        Reason::UsesExhausted,
        Reason::NoStatutoryRule,
        Reason::NoBreakGlassRule,
    ];

    /// The stable code (API responses, audit entries).
    pub const fn code(self) -> &'static str {
        match self {
            Reason::AgencyUnknown => "agency_unknown",
            Reason::PurposeNotAllowed => "purpose_not_allowed",
            Reason::JustificationMissing => "justification_missing",
            Reason::UnknownField => "unknown_field",
            Reason::FieldRepeated => "field_repeated",
            Reason::NoConsent => "no_consent",
            Reason::FieldNotCovered => "field_not_covered",
            Reason::ConsentPending => "consent_pending",
            Reason::ConsentDenied => "consent_denied",
            Reason::ConsentSuperseded => "consent_superseded",
            Reason::ConsentRevoked => "consent_revoked",
            Reason::ConsentExpired => "consent_expired",
            Reason::ConsentNotYetValid => "consent_not_yet_valid",
            Reason::UsesExhausted => "uses_exhausted",
            Reason::NoStatutoryRule => "no_statutory_rule",
            Reason::NoBreakGlassRule => "no_break_glass_rule",
        }
    }
}

/// The outcome for one requested field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Released, on this basis.
    Released(Basis<'a>),
    /// Withheld, for this reason.
    Withheld(Reason),
}

/// The decision for one requested field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDecision<'a> {
    /// The field, as requested.
    pub field: &'a FieldName,
    /// What happens to it.
    pub outcome: Outcome<'a>,
}

/// What the engine must do besides answering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Obligations {
    /// Tell the citizen at once (a break-glass release).
    pub notify_citizen: bool,
    /// Flag the access for review by the data-protection officer (a break-glass release).
    pub review: bool,
    /// The earliest instant by which the agency must delete some of what it received
    /// (a consent's data-life, a break-glass rule's validity); `None` if none applies.
    pub delete_by: Option<Timestamp>,
}

/// The decision for a request: one entry per requested field, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Per requested field.
    pub fields: Vec<FieldDecision<'a>>,
    /// Obligations that come with the releases.
    pub obligations: Obligations,
}

impl<'a> Decision<'a> {
    /// The released fields with their basis.
    pub fn released(&self) -> impl Iterator<Item = (&'a FieldName, Basis<'a>)> + '_ {
        self.fields.iter().filter_map(|d| match d.outcome {
            Outcome::Released(b) => Some((d.field, b)),
            Outcome::Withheld(_) => None,
        })
    }

    /// The withheld fields with their reason.
    pub fn withheld(&self) -> impl Iterator<Item = (&'a FieldName, Reason)> + '_ {
        self.fields.iter().filter_map(|d| match d.outcome {
            Outcome::Withheld(r) => Some((d.field, r)),
            Outcome::Released(_) => None,
        })
    }

    /// The artefacts this decision uses, each once, in first-use order: the engine must
    /// record one use of each ([`ConsentArtefact::record_use`]) with the release.
    pub fn consents_used(&self) -> Vec<ConsentId> {
        let mut ids: Vec<ConsentId> = Vec::new();
        for (_, b) in self.released() {
            if let Basis::Consent { artefact_id } = b {
                if !ids.contains(&artefact_id) {
                    ids.push(artefact_id);
                }
            }
        }
        ids
    }
}

/// An artefact for the request's agency and purpose, with why it cannot serve now
/// (`None`: it can), computed once per request.
struct Candidate<'c> {
    artefact: &'c ConsentArtefact,
    blocker: Option<Reason>,
}

/// Decides every requested field. Pure: no I/O, no clock; `artefacts` are the citizen's.
pub fn evaluate<'a>(
    policy: &'a PolicySet,
    request: &'a AccessRequest,
    artefacts: &[ConsentArtefact],
    now: Timestamp,
) -> Decision<'a> {
    let mut fields = Vec::with_capacity(request.fields.len());
    let mut obligations = Obligations::default();
    let agency = admit(policy, request);
    let candidates: Vec<Candidate<'_>> = artefacts
        .iter()
        .filter(|a| a.agency() == &request.agency && a.purpose() == &request.purpose)
        .map(|a| {
            let superseded = artefacts
                .iter()
                .any(|b| b.supersedes() == Some(a.id()) && b.granted_at().is_some());
            Candidate {
                artefact: a,
                blocker: blocker(a, superseded, now),
            }
        })
        .collect();
    for (i, field) in request.fields.iter().enumerate() {
        let outcome = match agency {
            Err(reason) => Outcome::Withheld(reason),
            Ok(_) if request.fields[..i].contains(field) => {
                Outcome::Withheld(Reason::FieldRepeated)
            }
            Ok(_) if policy.field(field).is_none() => Outcome::Withheld(Reason::UnknownField),
            Ok(agency) => decide(agency, request, &candidates, field, now, &mut obligations),
        };
        fields.push(FieldDecision { field, outcome });
    }
    Decision {
        fields,
        obligations,
    }
}

/// Request-wide checks: the agency, its purpose, a break-glass justification.
fn admit<'a>(policy: &'a PolicySet, request: &AccessRequest) -> Result<&'a Agency, Reason> {
    let agency = policy
        .agency(&request.agency)
        .ok_or(Reason::AgencyUnknown)?;
    if !agency.may_claim(&request.purpose) {
        return Err(Reason::PurposeNotAllowed);
    }
    let justified = request
        .justification
        .as_deref()
        .is_some_and(|j| !j.trim().is_empty());
    if request.legal_basis == Some(LegalBasis::VitalInterest) && !justified {
        return Err(Reason::JustificationMissing);
    }
    Ok(agency)
}

fn earliest(current: Option<Timestamp>, t: Timestamp) -> Option<Timestamp> {
    Some(current.map_or(t, |c| c.min(t)))
}

fn decide<'a>(
    agency: &'a Agency,
    request: &AccessRequest,
    candidates: &[Candidate<'_>],
    field: &FieldName,
    now: Timestamp,
    obligations: &mut Obligations,
) -> Outcome<'a> {
    match request.legal_basis {
        Some(LegalBasis::VitalInterest) => {
            let rule = agency
                .break_glass
                .iter()
                .find(|r| r.purpose == request.purpose && r.fields.contains(field));
            match rule {
                Some(r) => {
                    obligations.notify_citizen = true;
                    obligations.review = true;
                    obligations.delete_by = earliest(
                        obligations.delete_by,
                        now.saturating_add(r.max_validity_secs),
                    );
                    Outcome::Released(Basis::VitalInterest {
                        rule_id: &r.id,
                        legal_reference: &r.legal_reference,
                    })
                }
                None => Outcome::Withheld(Reason::NoBreakGlassRule),
            }
        }
        Some(LegalBasis::Consent) => consent(candidates, field, now, obligations),
        claimed => {
            let rule = agency.statutory.iter().find(|r| {
                r.purpose == request.purpose
                    && claimed.is_none_or(|b| b == r.legal_basis)
                    && r.fields.contains(field)
            });
            match (rule, claimed) {
                (Some(r), _) => Outcome::Released(Basis::Statutory {
                    rule_id: &r.id,
                    legal_basis: r.legal_basis,
                    legal_reference: &r.legal_reference,
                }),
                (None, None) => consent(candidates, field, now, obligations),
                (None, Some(_)) => Outcome::Withheld(Reason::NoStatutoryRule),
            }
        }
    }
}

/// Why an artefact cannot serve a request at `now`; `None` when it can.
fn blocker(a: &ConsentArtefact, superseded: bool, now: Timestamp) -> Option<Reason> {
    if superseded {
        return Some(Reason::ConsentSuperseded);
    }
    match a.status_at(now) {
        ConsentStatus::Active if now < a.valid_from() => Some(Reason::ConsentNotYetValid),
        ConsentStatus::Active if !a.has_use_left() => Some(Reason::UsesExhausted),
        ConsentStatus::Active => None,
        ConsentStatus::Pending => Some(Reason::ConsentPending),
        ConsentStatus::Denied => Some(Reason::ConsentDenied),
        ConsentStatus::Revoked => Some(Reason::ConsentRevoked),
        ConsentStatus::Expired => Some(Reason::ConsentExpired),
    }
}

/// Rank of a withholding reason among artefacts naming the field (higher wins).
fn rank(r: Reason) -> u8 {
    match r {
        Reason::UsesExhausted => 6,
        Reason::ConsentNotYetValid => 5,
        Reason::ConsentExpired => 4,
        Reason::ConsentRevoked => 3,
        Reason::ConsentSuperseded => 2,
        Reason::ConsentPending => 1,
        _ => 0,
    }
}

fn consent<'a>(
    candidates: &[Candidate<'_>],
    field: &FieldName,
    now: Timestamp,
    obligations: &mut Obligations,
) -> Outcome<'a> {
    let usable = candidates
        .iter()
        .find(|c| c.blocker.is_none() && c.artefact.covers(field));
    if let Some(c) = usable {
        if let Some(life) = c.artefact.data_life() {
            obligations.delete_by = earliest(obligations.delete_by, now.saturating_add(life));
        }
        return Outcome::Released(Basis::Consent {
            artefact_id: c.artefact.id(),
        });
    }
    let best = candidates
        .iter()
        .filter(|c| c.artefact.covers(field))
        .filter_map(|c| c.blocker)
        .max_by_key(|r| rank(*r));
    Outcome::Withheld(match best {
        Some(r) => r,
        None if candidates.is_empty() => Reason::NoConsent,
        None => Reason::FieldNotCovered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentTerms;
    use crate::ids::CitizenRef;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    fn artefact(id: u8, max_uses: Option<u32>) -> ConsentArtefact {
        let terms = ConsentTerms {
            agency: AgencyId::new("hospital").expect("id"),
            purpose: PurposeCode::new("care").expect("id"),
            fields: vec![FieldName::new("health.blood_type").expect("id")],
            valid_from: t(100),
            expires_at: t(200),
            max_uses,
            data_life: None,
        };
        let citizen = CitizenRef::new("c-1").expect("ref");
        ConsentArtefact::request(ConsentId::from_bytes([id; 16]), citizen, terms, None, t(50))
            .expect("valid")
    }

    #[test]
    fn reasons_rank_in_the_documented_order() {
        let order = [
            Reason::ConsentDenied,
            Reason::ConsentPending,
            Reason::ConsentSuperseded,
            Reason::ConsentRevoked,
            Reason::ConsentExpired,
            Reason::ConsentNotYetValid,
            Reason::UsesExhausted,
        ];
        for pair in order.windows(2) {
            assert!(rank(pair[0]) < rank(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn reason_codes_are_distinct() {
        let codes: std::collections::BTreeSet<&str> =
            Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
    }

    #[test]
    fn earliest_keeps_the_sooner_deadline() {
        assert_eq!(earliest(None, t(5)), Some(t(5)));
        assert_eq!(earliest(Some(t(3)), t(5)), Some(t(3)));
        assert_eq!(earliest(Some(t(7)), t(5)), Some(t(5)));
    }

    #[test]
    fn blocker_follows_the_artefact_through_its_life() {
        let mut a = artefact(1, Some(1));
        assert_eq!(blocker(&a, false, t(60)), Some(Reason::ConsentPending));
        a.grant(t(60)).expect("grant");
        assert_eq!(blocker(&a, false, t(99)), Some(Reason::ConsentNotYetValid));
        assert_eq!(blocker(&a, false, t(100)), None);
        assert_eq!(blocker(&a, true, t(100)), Some(Reason::ConsentSuperseded));
        assert_eq!(blocker(&a, false, t(200)), Some(Reason::ConsentExpired));
        a.record_use(t(100)).expect("use");
        assert_eq!(blocker(&a, false, t(101)), Some(Reason::UsesExhausted));
        a.revoke(t(150)).expect("revoke");
        assert_eq!(blocker(&a, false, t(150)), Some(Reason::ConsentRevoked));
        let mut d = artefact(2, None);
        d.deny(t(60)).expect("deny");
        assert_eq!(blocker(&d, false, t(150)), Some(Reason::ConsentDenied));
    }

    #[test]
    fn the_basis_names_its_legal_basis() {
        let id = RuleId::new("r").expect("id");
        assert_eq!(
            Basis::Consent {
                artefact_id: ConsentId::from_bytes([0; 16])
            }
            .legal_basis(),
            LegalBasis::Consent
        );
        let statutory = Basis::Statutory {
            rule_id: &id,
            legal_basis: LegalBasis::PublicTask,
            legal_reference: "Act",
        };
        assert_eq!(statutory.legal_basis(), LegalBasis::PublicTask);
        let vital = Basis::VitalInterest {
            rule_id: &id,
            legal_reference: "Act",
        };
        assert_eq!(vital.legal_basis(), LegalBasis::VitalInterest);
    }
}
