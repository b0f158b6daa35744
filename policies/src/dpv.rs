//! The W3C Data Privacy Vocabulary (DPV) concepts the vault knows, shipped with it
//! (`policies/dpv/concepts.tsv`, from DPV 2.3 under the W3C Software and Document
//! License), and the JSON-LD context its consent records use (`policies/dpv/context.jsonld`).
//!
//! A policy file names a purpose's or a category's DPV concept by its prefixed name
//! (`dpv:ServiceProvision`, `pd:HealthRecord`) or its IRI; the loader accepts only concepts
//! of the right kind in this list, and keeps the IRI. Nothing is fetched at run time.

use crate::consent::ConsentStatus;
use crate::ids::LegalBasis;

/// The shipped concept list: `kind <TAB> prefixed name <TAB> IRI`, `#` comments.
pub const CONCEPTS_TSV: &str = include_str!("../dpv/concepts.tsv");

/// The shipped JSON-LD context of the consent records (a JSON object with `@context`).
pub const CONTEXT_JSONLD: &str = include_str!("../dpv/context.jsonld");

/// The namespaces of the prefixed names in the list, as the context defines them.
const PREFIXES: [(&str, &str); 5] = [
    ("dpv:", "https://w3id.org/dpv#"),
    ("pd:", "https://w3id.org/dpv/pd#"),
    ("eu-gdpr:", "https://w3id.org/dpv/legal/eu/gdpr#"),
    ("legal-eu:", "https://w3id.org/dpv/legal/eu#"),
    ("loc:", "https://w3id.org/dpv/loc#"),
];

/// What a concept of the list is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpvKind {
    /// A purpose of processing (`dpv:ServiceProvision`).
    Purpose,
    /// A personal data category (`pd:HealthRecord`, `dpv:SpecialCategoryPersonalData`).
    PersonalData,
    /// A legal basis (`eu-gdpr:A6-1-a`).
    LegalBasis,
    /// A consent status (`dpv:ConsentGiven`).
    ConsentStatus,
    /// A data subject's right (`eu-gdpr:A7-3`).
    Right,
    /// A class or property a consent record is written with.
    Record,
}

impl DpvKind {
    /// The kind's code in the list (`personal-data`).
    pub const fn code(self) -> &'static str {
        match self {
            DpvKind::Purpose => "purpose",
            DpvKind::PersonalData => "personal-data",
            DpvKind::LegalBasis => "legal-basis",
            DpvKind::ConsentStatus => "consent-status",
            DpvKind::Right => "right",
            DpvKind::Record => "record",
        }
    }

    fn from_code(s: &str) -> Option<Self> {
        [
            DpvKind::Purpose,
            DpvKind::PersonalData,
            DpvKind::LegalBasis,
            DpvKind::ConsentStatus,
            DpvKind::Right,
            DpvKind::Record,
        ]
        .into_iter()
        .find(|k| k.code() == s)
    }
}

/// One concept of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpvConcept {
    /// Its kind.
    pub kind: DpvKind,
    /// Its prefixed name (`dpv:ServiceProvision`).
    pub name: &'static str,
    /// Its IRI (`https://w3id.org/dpv#ServiceProvision`).
    pub iri: &'static str,
}

/// Every concept of the list, in file order. A malformed line (there is none: a unit
/// test reads them all) is skipped.
pub fn concepts() -> impl Iterator<Item = DpvConcept> {
    CONCEPTS_TSV
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let kind = DpvKind::from_code(parts.next()?)?;
            let name = parts.next()?;
            let iri = parts.next()?;
            parts
                .next()
                .is_none()
                .then_some(DpvConcept { kind, name, iri })
        })
}

/// The concept of `kind` that `value` names, by prefixed name or by IRI.
pub fn lookup(kind: DpvKind, value: &str) -> Option<DpvConcept> {
    concepts().find(|c| c.kind == kind && (c.name == value || c.iri == value))
}

/// Whether `value` has the shape of a concept reference (a prefixed name of a known
/// namespace or an `https://` IRI), known or not.
pub fn is_reference(value: &str) -> bool {
    let clean = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    let prefixed = PREFIXES
        .iter()
        .any(|(p, _)| value.len() > p.len() && value.starts_with(p));
    let iri = value.len() > "https://".len() && value.starts_with("https://");
    clean && (prefixed || iri)
}

/// The prefixed name of an IRI of the list's namespaces (`dpv:ConsentGiven`), for
/// compact records; `None` for another IRI.
pub fn compact(iri: &str) -> Option<String> {
    PREFIXES.iter().find_map(|(p, ns)| {
        iri.strip_prefix(ns)
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{p}{rest}"))
    })
}

/// The DPV consent status of an artefact's status.
pub const fn consent_status_name(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Pending => "dpv:ConsentRequested",
        ConsentStatus::Active => "dpv:ConsentGiven",
        ConsentStatus::Denied => "dpv:ConsentRefused",
        ConsentStatus::Revoked => "dpv:ConsentWithdrawn",
        ConsentStatus::Expired => "dpv:ConsentExpired",
    }
}

/// The GDPR legal basis concept of the DPV EU-GDPR extension for a legal basis.
pub const fn gdpr_legal_basis_name(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "eu-gdpr:A6-1-a",
        LegalBasis::LegalObligation => "eu-gdpr:A6-1-c",
        LegalBasis::PublicTask => "eu-gdpr:A6-1-e",
        LegalBasis::VitalInterest => "eu-gdpr:A6-1-d",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_list_is_a_concept_of_a_known_namespace() {
        let lines = CONCEPTS_TSV
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        let all: Vec<_> = concepts().collect();
        assert_eq!(all.len(), lines, "a malformed line in concepts.tsv");
        assert!(all.len() > 400);
        for c in &all {
            assert!(is_reference(c.name) && is_reference(c.iri), "{c:?}");
            assert_eq!(compact(c.iri).as_deref(), Some(c.name), "{c:?}");
        }
        for kind in [
            "purpose",
            "personal-data",
            "legal-basis",
            "consent-status",
            "right",
        ] {
            assert!(all.iter().any(|c| c.kind.code() == kind), "{kind}");
        }
    }

    #[test]
    fn lookup_takes_a_name_or_an_iri_of_the_right_kind() {
        let c = lookup(DpvKind::Purpose, "dpv:ServiceProvision").expect("listed");
        assert_eq!(c.iri, "https://w3id.org/dpv#ServiceProvision");
        assert_eq!(
            lookup(DpvKind::Purpose, "https://w3id.org/dpv#ServiceProvision"),
            Some(c)
        );
        assert!(lookup(DpvKind::PersonalData, "pd:HealthRecord").is_some());
        assert!(lookup(DpvKind::PersonalData, "dpv:ServiceProvision").is_none());
        assert!(lookup(DpvKind::Purpose, "dpv:ProtectionOfVitalInterests").is_none());
        assert!(!is_reference("ServiceProvision"));
        assert!(!is_reference("dpv:Service Provision"));
        assert!(!is_reference("http://w3id.org/dpv#ServiceProvision"));
    }

    #[test]
    fn statuses_and_legal_bases_map_to_listed_concepts() {
        for s in [
            ConsentStatus::Pending,
            ConsentStatus::Active,
            ConsentStatus::Denied,
            ConsentStatus::Revoked,
            ConsentStatus::Expired,
        ] {
            assert!(
                lookup(DpvKind::ConsentStatus, consent_status_name(s)).is_some(),
                "{s:?}"
            );
        }
        for b in [
            LegalBasis::Consent,
            LegalBasis::LegalObligation,
            LegalBasis::PublicTask,
            LegalBasis::VitalInterest,
        ] {
            assert!(lookup(DpvKind::LegalBasis, gdpr_legal_basis_name(b)).is_some());
            assert!(lookup(DpvKind::LegalBasis, b.dpv_iri()).is_some(), "{b:?}");
        }
    }

    #[test]
    fn the_context_is_a_json_object_with_a_context() {
        let v: serde_json::Value = serde_json::from_str(CONTEXT_JSONLD).expect("JSON");
        let ctx = v
            .get("@context")
            .and_then(|c| c.as_object())
            .expect("@context");
        for (p, ns) in PREFIXES {
            let key = p.trim_end_matches(':');
            assert_eq!(ctx.get(key).and_then(|v| v.as_str()), Some(ns), "{key}");
        }
    }
}
