//! The loaded policy set: vocabulary (purposes, categories and fields), the agency
//! registry with its statutory rules, and the break-glass rules.
//!
//! A [`PolicySet`] is only built by the loader ([`PolicySet::load_dir`],
//! [`PolicySet::from_sources`]), which has checked every reference; its contents are then
//! read-only.

use std::collections::BTreeMap;

use crate::ids::{AgencyId, Category, FieldName, LegalBasis, PurposeCode, RuleId};

/// A processing purpose an agency may claim.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purpose {
    /// Its code (`tax_assessment`).
    pub code: PurposeCode,
    /// What the purpose is, in words a citizen understands.
    pub description: String,
    /// The IRI of its W3C DPV purpose concept (one of `policies/dpv/concepts.tsv`), when
    /// the vocabulary names one.
    pub dpv: Option<String>,
}

/// Whether a field belongs to the GDPR Art. 9 special categories (health, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Sensitivity {
    /// Ordinary personal data.
    Ordinary,
    /// A special category of personal data (GDPR Art. 9).
    SpecialCategory,
}

impl Sensitivity {
    /// The code used in policy files.
    pub const fn code(self) -> &'static str {
        match self {
            Sensitivity::Ordinary => "ordinary",
            Sensitivity::SpecialCategory => "special_category",
        }
    }
}

/// A data category (`health`) and the names of its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CategoryDef {
    /// The category.
    pub id: Category,
    /// What the category holds.
    pub description: String,
    /// Its fields, in file order.
    pub fields: Vec<FieldName>,
    /// The IRI of its W3C DPV personal data concept (one of `policies/dpv/concepts.tsv`),
    /// when the vocabulary names one.
    pub dpv: Option<String>,
}

/// One field of the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldDef {
    /// Its full name, `category.field`.
    pub name: FieldName,
    /// What the field holds.
    pub description: String,
    /// Its sensitivity class.
    pub sensitivity: Sensitivity,
}

/// A rule that releases fields to an agency for a purpose without consent, because a law
/// obliges or empowers it (`legal_obligation` or `public_task`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatutoryRule {
    /// The rule's identifier, unique in the policy set.
    pub id: RuleId,
    /// The agency it serves.
    pub agency: AgencyId,
    /// The purpose it serves (one the agency may claim).
    pub purpose: PurposeCode,
    /// The fields it covers.
    pub fields: Vec<FieldName>,
    /// `legal_obligation` or `public_task`.
    pub legal_basis: LegalBasis,
    /// The law it rests on, as citable text.
    pub legal_reference: String,
    /// When the citizen learns of an access under this rule, if only later (covert
    /// access; `None`: at once, like every other access).
    pub disclosure: Option<Disclosure>,
}

/// When the citizen learns of a covert access (a statutory rule's `disclosure`,
/// `docs/policies.md`): until then the access is in the log but not in their history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Disclosure {
    /// This many days after the access (an operator may lift the secrecy sooner).
    AfterDays(u32),
    /// Only when an operator records that a court or prosecutor lifted the secrecy.
    UntilLifted,
}

impl Disclosure {
    /// The longest deferral `after_days` may set: ten years.
    pub const MAX_DAYS: u32 = 3650;

    /// The deadline of an access at `at_ms` (ms since the epoch): `None` until lifted.
    pub fn deadline_ms(self, at_ms: u64) -> Option<u64> {
        match self {
            Self::AfterDays(days) => Some(at_ms.saturating_add(u64::from(days) * 86_400_000)),
            Self::UntilLifted => None,
        }
    }

    /// The later of two disclosures (`UntilLifted` is the latest).
    pub fn later(self, other: Self) -> Self {
        match (self, other) {
            (Self::AfterDays(a), Self::AfterDays(b)) => Self::AfterDays(a.max(b)),
            _ => Self::UntilLifted,
        }
    }
}

/// A break-glass rule: fields an agency may receive under `vital_interest` (GDPR
/// Art. 6(1)(d)) with a mandatory justification; every use is flagged for review and
/// shown to the citizen at once.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakGlassRule {
    /// The rule's identifier, unique in the policy set.
    pub id: RuleId,
    /// The agency it serves.
    pub agency: AgencyId,
    /// The purpose it serves (one the agency may claim).
    pub purpose: PurposeCode,
    /// The fields it covers.
    pub fields: Vec<FieldName>,
    /// The longest time, in seconds, the agency may keep what it received this way.
    pub max_validity_secs: u64,
    /// The law it rests on, as citable text.
    pub legal_reference: String,
}

/// An agency in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Agency {
    /// Its identifier (matches its client certificate's enrolment).
    pub id: AgencyId,
    /// Its name, as shown to citizens.
    pub name: String,
    /// The categories it is the source of, and so may write.
    pub writes: Vec<Category>,
    /// The purposes it may claim.
    pub purposes: Vec<PurposeCode>,
    /// Its statutory rules.
    pub statutory: Vec<StatutoryRule>,
    /// Its break-glass rules.
    pub break_glass: Vec<BreakGlassRule>,
}

impl Agency {
    /// Whether the agency may claim `purpose`.
    pub fn may_claim(&self, purpose: &PurposeCode) -> bool {
        self.purposes.iter().any(|p| p == purpose)
    }
}

/// A validated policy set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySet {
    pub(crate) purposes: BTreeMap<PurposeCode, Purpose>,
    pub(crate) categories: BTreeMap<Category, CategoryDef>,
    pub(crate) fields: BTreeMap<FieldName, FieldDef>,
    pub(crate) agencies: BTreeMap<AgencyId, Agency>,
}

/// Why a consent request (or a citizen's direct grant) cannot be accepted under the
/// policy set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentRefusal {
    /// The agency is not in the registry.
    #[error("agency {agency} is not in the registry: enrol it in the policy files first")]
    AgencyUnknown {
        /// The agency.
        agency: AgencyId,
    },
    /// The agency may not claim the purpose.
    #[error("agency {agency} may not claim purpose {purpose}: use one of its registered purposes")]
    PurposeNotAllowed {
        /// The agency.
        agency: AgencyId,
        /// The purpose.
        purpose: PurposeCode,
    },
    /// No field was named.
    #[error("a consent must cover at least one field: name the fields")]
    NoFields,
    /// A field is not in the vocabulary.
    #[error("field {field} is not in the vocabulary: check the spelling")]
    UnknownField {
        /// The field.
        field: FieldName,
    },
    /// A field is named twice.
    #[error("field {field} is named twice: name each field once")]
    DuplicateField {
        /// The field.
        field: FieldName,
    },
}

impl ConsentRefusal {
    /// A stable code for the server's error body.
    pub const fn code(&self) -> &'static str {
        match self {
            ConsentRefusal::AgencyUnknown { .. } => "agency_unknown",
            ConsentRefusal::PurposeNotAllowed { .. } => "purpose_not_allowed",
            ConsentRefusal::NoFields => "no_fields",
            ConsentRefusal::UnknownField { .. } => "unknown_field",
            ConsentRefusal::DuplicateField { .. } => "duplicate_field",
        }
    }
}

impl PolicySet {
    /// The agency with this id.
    pub fn agency(&self, id: &AgencyId) -> Option<&Agency> {
        self.agencies.get(id)
    }

    /// Every agency, ordered by id.
    pub fn agencies(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.values()
    }

    /// The field with this name.
    pub fn field(&self, name: &FieldName) -> Option<&FieldDef> {
        self.fields.get(name)
    }

    /// Every field, ordered by name.
    pub fn fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.values()
    }

    /// The purpose with this code.
    pub fn purpose(&self, code: &PurposeCode) -> Option<&Purpose> {
        self.purposes.get(code)
    }

    /// Every purpose, ordered by code.
    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values()
    }

    /// The category with this id.
    pub fn category(&self, id: &Category) -> Option<&CategoryDef> {
        self.categories.get(id)
    }

    /// Every category, ordered by id.
    pub fn categories(&self) -> impl Iterator<Item = &CategoryDef> {
        self.categories.values()
    }

    /// Every break-glass rule, ordered by agency.
    pub fn break_glass_rules(&self) -> impl Iterator<Item = &BreakGlassRule> {
        self.agencies.values().flat_map(|a| a.break_glass.iter())
    }

    /// Every statutory rule, ordered by agency.
    pub fn statutory_rules(&self) -> impl Iterator<Item = &StatutoryRule> {
        self.agencies.values().flat_map(|a| a.statutory.iter())
    }

    /// Whether `agency` is the source of `category` and so may write its records.
    pub fn may_write(&self, agency: &AgencyId, category: &Category) -> bool {
        self.agencies
            .get(agency)
            .is_some_and(|a| a.writes.contains(category))
    }

    /// Checks a consent request (or a direct grant) against the registry: the agency is
    /// known and may claim the purpose, and the fields are known, non-empty and distinct.
    pub fn check_consent_request(
        &self,
        agency: &AgencyId,
        purpose: &PurposeCode,
        fields: &[FieldName],
    ) -> Result<(), ConsentRefusal> {
        let a = self
            .agencies
            .get(agency)
            .ok_or_else(|| ConsentRefusal::AgencyUnknown {
                agency: agency.clone(),
            })?;
        if !a.may_claim(purpose) {
            return Err(ConsentRefusal::PurposeNotAllowed {
                agency: agency.clone(),
                purpose: purpose.clone(),
            });
        }
        if fields.is_empty() {
            return Err(ConsentRefusal::NoFields);
        }
        for (i, f) in fields.iter().enumerate() {
            if !self.fields.contains_key(f) {
                return Err(ConsentRefusal::UnknownField { field: f.clone() });
            }
            if fields[..i].contains(f) {
                return Err(ConsentRefusal::DuplicateField { field: f.clone() });
            }
        }
        Ok(())
    }
}
