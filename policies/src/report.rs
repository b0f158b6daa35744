//! The record of processing activities (GDPR Art. 30) derived from a [`PolicySet`]: per
//! agency as controller, each purpose with its legal bases, the data and data subjects
//! concerned, break-glass provisions and retention, and the recipients of the categories
//! the agency is the source of.
//!
//! A pure function of the policy set: nothing here reads a clock or a file. The shape
//! serialises as the stable JSON of `vault-cli policies report --format json`
//! (`docs/policies.md`, "Record of processing").

use std::collections::BTreeSet;

use serde::Serialize;

use crate::ids::{FieldName, LegalBasis};
use crate::model::{Agency, PolicySet, Sensitivity};

/// The version of the report's JSON shape.
pub const REPORT_VERSION: u32 = 1;

/// What the report says where the policy files define no retention period.
pub const RETENTION_NOT_DEFINED: &str = "not defined in the policy files";

/// The record of processing activities of every agency in a policy set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProcessingRecord {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// One entry per agency, ordered by agency id.
    pub controllers: Vec<ControllerRecord>,
}

/// One agency, as controller of its processing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ControllerRecord {
    /// The agency id.
    pub agency: String,
    /// Its name.
    pub name: String,
    /// The categories it is the source of (writes into the vault).
    pub source_of: Vec<CategoryRecord>,
    /// Each purpose it may claim, in the registry's order.
    pub purposes: Vec<PurposeRecord>,
    /// Who receives fields of the categories it is the source of, rule by rule (other
    /// agencies only; with consent, any agency may receive any field).
    pub recipients: Vec<RecipientRecord>,
    /// How long the vault keeps the records of the categories it is the source of.
    pub retention: String,
}

/// A data category and whether it holds special-category data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CategoryRecord {
    /// The category id.
    pub id: String,
    /// What it holds.
    pub description: String,
    /// Whether any of its fields is special-category data (GDPR Art. 9/10).
    pub special_category: bool,
}

/// One purpose of a controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PurposeRecord {
    /// The purpose code.
    pub code: String,
    /// What it is.
    pub description: String,
    /// Its W3C DPV concept, when the vocabulary names one.
    pub dpv: Option<String>,
    /// The categories of data the rules for this purpose cover, each special-category
    /// when one of the fields the rules cover is.
    pub categories: Vec<CategoryRecord>,
    /// The categories of data subjects, derived from the legal bases (the policy files
    /// have no notion of their own).
    pub data_subjects: Vec<String>,
    /// The statutory and break-glass rules for this purpose, in file order.
    pub rules: Vec<RuleRecord>,
    /// Consent is always a further basis: with a citizen's consent artefact, the agency
    /// may receive any field for this purpose.
    pub consent: LegalBasisRecord,
    /// How long the agency may keep what it receives.
    pub retention: Vec<String>,
}

/// A legal basis: its code and GDPR provision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LegalBasisRecord {
    /// `consent`, `legal_obligation`, `public_task` or `vital_interest`.
    pub code: String,
    /// The GDPR provision (`GDPR Art. 6(1)(c)`).
    pub gdpr: String,
}

impl LegalBasisRecord {
    fn of(basis: LegalBasis) -> Self {
        LegalBasisRecord {
            code: basis.code().to_owned(),
            gdpr: basis.gdpr_article().to_owned(),
        }
    }
}

/// Whether a rule is statutory or break-glass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleKind {
    /// A statutory rule (`legal_obligation` or `public_task`).
    Statutory,
    /// A break-glass rule (`vital_interest`, justification required, flagged for review).
    BreakGlass,
}

impl RuleKind {
    /// The code in the JSON report (`statutory`, `break_glass`).
    pub const fn code(self) -> &'static str {
        match self {
            RuleKind::Statutory => "statutory",
            RuleKind::BreakGlass => "break_glass",
        }
    }

    /// The words for it in a rendered report (`statutory`, `break-glass`).
    pub const fn label(self) -> &'static str {
        match self {
            RuleKind::Statutory => "statutory",
            RuleKind::BreakGlass => "break-glass",
        }
    }
}

/// One statutory or break-glass rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RuleRecord {
    /// The rule id.
    pub id: String,
    /// Statutory or break-glass.
    pub kind: RuleKind,
    /// Its legal basis.
    pub legal_basis: LegalBasisRecord,
    /// The law cited.
    pub reference: String,
    /// The fields it releases, in file order.
    pub fields: Vec<String>,
    /// For a break-glass rule, the longest time in seconds the agency may keep the data.
    pub max_validity_secs: Option<u64>,
}

/// One disclosure of a controller's categories to another agency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RecipientRecord {
    /// The receiving agency's id.
    pub agency: String,
    /// Its name.
    pub name: String,
    /// The rule it receives them under.
    pub rule: String,
    /// Statutory or break-glass.
    pub kind: RuleKind,
    /// The purpose of the rule.
    pub purpose: String,
    /// The rule's legal basis.
    pub legal_basis: LegalBasisRecord,
    /// The law cited.
    pub reference: String,
    /// The fields of the controller's categories the rule releases.
    pub fields: Vec<String>,
}

/// Formats whole seconds in the largest exact unit, days only from two days on (`45s`,
/// `90m`, `24h`, `2d`).
pub fn format_duration(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 && s > 86_400 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl ProcessingRecord {
    /// The record of processing of every agency in `set`.
    pub fn of(set: &PolicySet) -> Self {
        ProcessingRecord {
            version: REPORT_VERSION,
            controllers: set.agencies().map(|a| controller(set, a)).collect(),
        }
    }
}

/// The record of category `id`; special-category when one of `fields` (all its fields
/// when `None`) is.
fn category_record(set: &PolicySet, id: &str, fields: Option<&[&FieldName]>) -> CategoryRecord {
    let def = set.categories().find(|c| c.id.as_str() == id);
    let special = |f: &FieldName| {
        f.category() == id
            && set
                .field(f)
                .is_some_and(|d| d.sensitivity == Sensitivity::SpecialCategory)
    };
    let special = match fields {
        Some(fields) => fields.iter().any(|f| special(f)),
        None => def.is_some_and(|c| c.fields.iter().any(special)),
    };
    CategoryRecord {
        id: id.to_owned(),
        description: def.map(|c| c.description.clone()).unwrap_or_default(),
        special_category: special,
    }
}

fn controller(set: &PolicySet, agency: &Agency) -> ControllerRecord {
    let purposes = agency
        .purposes
        .iter()
        .map(|code| {
            let def = set.purpose(code);
            let mut rules: Vec<RuleRecord> = agency
                .statutory
                .iter()
                .filter(|r| &r.purpose == code)
                .map(|r| RuleRecord {
                    id: r.id.as_str().to_owned(),
                    kind: RuleKind::Statutory,
                    legal_basis: LegalBasisRecord::of(r.legal_basis),
                    reference: r.legal_reference.clone(),
                    fields: r.fields.iter().map(|f| f.as_str().to_owned()).collect(),
                    max_validity_secs: None,
                })
                .collect();
            rules.extend(
                agency
                    .break_glass
                    .iter()
                    .filter(|r| &r.purpose == code)
                    .map(|r| RuleRecord {
                        id: r.id.as_str().to_owned(),
                        kind: RuleKind::BreakGlass,
                        legal_basis: LegalBasisRecord::of(LegalBasis::VitalInterest),
                        reference: r.legal_reference.clone(),
                        fields: r.fields.iter().map(|f| f.as_str().to_owned()).collect(),
                        max_validity_secs: Some(r.max_validity_secs),
                    }),
            );
            let covered: Vec<&FieldName> = agency
                .statutory
                .iter()
                .filter(|r| &r.purpose == code)
                .flat_map(|r| r.fields.iter())
                .chain(
                    agency
                        .break_glass
                        .iter()
                        .filter(|r| &r.purpose == code)
                        .flat_map(|r| r.fields.iter()),
                )
                .collect();
            let categories: BTreeSet<&str> = covered.iter().map(|f| f.category()).collect();
            let mut data_subjects = Vec::new();
            if rules.iter().any(|r| r.kind == RuleKind::Statutory) {
                data_subjects.push(
                    "citizens whose records the vault holds and about whom the agency asks under a statutory rule"
                        .to_owned(),
                );
            }
            if rules.iter().any(|r| r.kind == RuleKind::BreakGlass) {
                data_subjects.push(
                    "citizens who cannot consent and whose vital interests are at stake (break-glass)"
                        .to_owned(),
                );
            }
            data_subjects
                .push("citizens who granted the agency a consent for this purpose".to_owned());
            let mut retention = Vec::new();
            if rules.iter().any(|r| r.kind == RuleKind::Statutory) {
                retention.push(format!("under statutory rules: {RETENTION_NOT_DEFINED}"));
            }
            for r in &rules {
                if let Some(secs) = r.max_validity_secs {
                    retention.push(format!(
                        "under break-glass rule {}: at most {} after release",
                        r.id,
                        format_duration(secs)
                    ));
                }
            }
            retention.push(
                "under consent: the consent's data life, when the citizen set one; else not defined"
                    .to_owned(),
            );
            PurposeRecord {
                code: code.as_str().to_owned(),
                description: def.map(|p| p.description.clone()).unwrap_or_default(),
                dpv: def.and_then(|p| p.dpv.clone()),
                categories: categories
                    .iter()
                    .map(|c| category_record(set, c, Some(&covered)))
                    .collect(),
                data_subjects,
                rules,
                consent: LegalBasisRecord::of(LegalBasis::Consent),
                retention,
            }
        })
        .collect();
    ControllerRecord {
        agency: agency.id.as_str().to_owned(),
        name: agency.name.clone(),
        source_of: agency
            .writes
            .iter()
            .map(|c| category_record(set, c.as_str(), None))
            .collect(),
        purposes,
        recipients: recipients(set, agency),
        retention: RETENTION_NOT_DEFINED.to_owned(),
    }
}

/// Every rule of another agency that releases fields of `source`'s categories, ordered by
/// agency id, then statutory before break-glass rules in file order.
fn recipients(set: &PolicySet, source: &Agency) -> Vec<RecipientRecord> {
    let own = |f: &&FieldName| source.writes.iter().any(|c| c.as_str() == f.category());
    let mut out = Vec::new();
    for other in set.agencies().filter(|a| a.id != source.id) {
        let statutory = other.statutory.iter().map(|r| {
            (
                RuleKind::Statutory,
                &r.id,
                &r.purpose,
                r.legal_basis,
                &r.legal_reference,
                &r.fields,
            )
        });
        let break_glass = other.break_glass.iter().map(|r| {
            let basis = LegalBasis::VitalInterest;
            (
                RuleKind::BreakGlass,
                &r.id,
                &r.purpose,
                basis,
                &r.legal_reference,
                &r.fields,
            )
        });
        for (kind, id, purpose, basis, reference, fields) in statutory.chain(break_glass) {
            let fields: Vec<String> = fields
                .iter()
                .filter(own)
                .map(|f| f.as_str().to_owned())
                .collect();
            if !fields.is_empty() {
                out.push(RecipientRecord {
                    agency: other.id.as_str().to_owned(),
                    name: other.name.clone(),
                    rule: id.as_str().to_owned(),
                    kind,
                    purpose: purpose.as_str().to_owned(),
                    legal_basis: LegalBasisRecord::of(basis),
                    reference: reference.clone(),
                    fields,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PolicySet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        match PolicySet::load_dir(&dir) {
            Ok(set) => set,
            Err(e) => panic!("the example set is valid: {e:?}"),
        }
    }

    fn controller<'a>(r: &'a ProcessingRecord, id: &str) -> &'a ControllerRecord {
        r.controllers
            .iter()
            .find(|c| c.agency == id)
            .unwrap_or_else(|| panic!("{id} is in the report"))
    }

    #[test]
    fn every_agency_purpose_and_rule_of_the_example_set_appears_once() {
        let set = example();
        let r = ProcessingRecord::of(&set);
        let ids: Vec<&str> = r.controllers.iter().map(|c| c.agency.as_str()).collect();
        let want: Vec<&str> = set.agencies().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, want);
        let rules: Vec<&str> = r
            .controllers
            .iter()
            .flat_map(|c| c.purposes.iter())
            .flat_map(|p| p.rules.iter())
            .map(|r| r.id.as_str())
            .collect();
        let mut want: Vec<&str> = set
            .statutory_rules()
            .map(|r| r.id.as_str())
            .chain(set.break_glass_rules().map(|r| r.id.as_str()))
            .collect();
        let mut got = rules.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
        for (c, a) in r.controllers.iter().zip(set.agencies()) {
            let codes: Vec<&str> = c.purposes.iter().map(|p| p.code.as_str()).collect();
            let want: Vec<&str> = a.purposes.iter().map(|p| p.as_str()).collect();
            assert_eq!(codes, want, "{}", c.agency);
            assert_eq!(c.name, a.name);
        }
        let tax = controller(&r, "tax_authority");
        let assess = &tax.purposes[0];
        assert_eq!(assess.code, "tax_assessment");
        assert_eq!(assess.rules[0].id, "tax_assessment_identity");
        assert_eq!(assess.rules[0].legal_basis.gdpr, "GDPR Art. 6(1)(c)");
        assert_eq!(
            assess.rules[0].reference,
            "Income Tax Act 2019, s. 42(1) (identification of the taxpayer)"
        );
        let cats: Vec<&str> = assess.categories.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(cats, ["benefits", "contact", "identity"]);
    }

    #[test]
    fn recipients_are_the_other_agencies_rules_on_the_sources_categories() {
        let r = ProcessingRecord::of(&example());
        let vehicle = controller(&r, "vehicle_registry");
        let got: Vec<(&str, &str, Vec<&str>)> = vehicle
            .recipients
            .iter()
            .map(|x| {
                (
                    x.agency.as_str(),
                    x.rule.as_str(),
                    x.fields.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "national_police",
                    "police_roadside_check",
                    vec![
                        "vehicle.registration",
                        "vehicle.insurance_policy",
                        "vehicle.inspection_due",
                        "vehicle.driving_licence_class",
                        "vehicle.licence_points"
                    ]
                ),
                (
                    "social_benefits_office",
                    "benefits_fraud_check",
                    vec!["vehicle.registration", "vehicle.make_model"]
                ),
                (
                    "tax_authority",
                    "tax_collection_assets",
                    vec!["vehicle.registration", "vehicle.make_model"]
                ),
            ]
        );
        // The hospital's own rules on its own category are not disclosures.
        assert!(controller(&r, "general_hospital").recipients.is_empty());
        // The source's fields only: the benefits office's share of the tax authority's rule.
        let benefits = controller(&r, "social_benefits_office");
        assert_eq!(benefits.recipients.len(), 1);
        assert_eq!(benefits.recipients[0].rule, "tax_assessment_benefits");
        assert_eq!(benefits.recipients[0].legal_basis.code, "legal_obligation");
    }

    #[test]
    fn break_glass_and_retention_are_stated_not_invented() {
        let r = ProcessingRecord::of(&example());
        let hospital = controller(&r, "general_hospital");
        assert_eq!(hospital.retention, RETENTION_NOT_DEFINED);
        let emergency = hospital
            .purposes
            .iter()
            .find(|p| p.code == "emergency_care")
            .expect("emergency_care");
        assert_eq!(emergency.rules.len(), 1);
        let bg = &emergency.rules[0];
        assert_eq!(bg.kind, RuleKind::BreakGlass);
        assert_eq!(bg.legal_basis.code, "vital_interest");
        assert_eq!(bg.max_validity_secs, Some(86_400));
        assert!(emergency
            .retention
            .iter()
            .any(|t| t
                == "under break-glass rule emergency_medical_access: at most 24h after release"));
        assert!(emergency.categories.iter().all(|c| c.special_category));
        // Billing covers only the insurer, an ordinary field of the health category.
        let billing = hospital
            .purposes
            .iter()
            .find(|p| p.code == "health_insurance_billing")
            .expect("billing");
        assert!(billing.categories.iter().all(|c| !c.special_category));
        assert!(hospital.source_of[0].special_category);
        // A consent-only purpose: no rule, no category named, consent stated.
        let research = controller(&r, "health_research_institute");
        assert!(research.purposes[0].rules.is_empty());
        assert!(research.purposes[0].categories.is_empty());
        assert_eq!(research.purposes[0].consent.gdpr, "GDPR Art. 6(1)(a)");
        assert_eq!(research.purposes[0].data_subjects.len(), 1);
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(format_duration(86_400), "24h");
        assert_eq!(format_duration(172_800), "2d");
        assert_eq!(format_duration(7_200), "2h");
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(120), "2m");
        assert_eq!(format_duration(0), "0s");
    }
}
