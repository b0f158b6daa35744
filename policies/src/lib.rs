//! Consent and legal-basis model and its evaluation: pure functions of
//! (request, consents, rules, now), plus the policy files and their loader.
//!
//! - [`PolicySet`]: the vocabulary, agency registry, statutory and break-glass rules,
//!   loaded from TOML files by [`PolicySet::load_dir`] / [`PolicySet::from_sources`].
//! - [`ConsentArtefact`]: a citizen's consent, its state machine and its receipt text.
//! - [`evaluate`]: the per-field decision for an [`AccessRequest`].
//! - [`consent_record`]: a granted artefact as an ISO/IEC TS 27560 record in the W3C DPV
//!   profile (JSON-LD), with the [`dpv`] concepts policy files may name.
//! - [`ProcessingRecord`]: the record of processing activities (GDPR Art. 30) of a set.
//!
//! Nothing here reads a clock or does I/O, except the loader reading policy files.

pub mod canonical;
pub mod consent;
pub mod consent_record;
pub mod dpv;
pub mod eval;
pub mod ids;
pub mod load;
pub mod model;
pub mod report;
pub mod time;

pub use consent::{
    ConsentArtefact, ConsentError, ConsentEvent, ConsentEventKind, ConsentStatus, ConsentTerms,
};
pub use consent_record::{consent_record, ConsentRecord};
pub use dpv::{DpvConcept, DpvKind};
pub use eval::{
    evaluate, AccessRequest, Basis, Decision, FieldDecision, Obligations, Outcome, Reason,
};
pub use ids::{
    AgencyId, Category, CitizenRef, ConsentId, FieldName, IdError, LegalBasis, PurposeCode, RuleId,
};
pub use load::{PolicyError, PolicyErrorKind, PolicyErrors};
pub use model::{
    Agency, BreakGlassRule, CategoryDef, ConsentRefusal, Disclosure, FieldDef, PolicySet, Purpose,
    Sensitivity, StatutoryRule,
};
pub use report::ProcessingRecord;
pub use time::{Timestamp, TimestampError};
