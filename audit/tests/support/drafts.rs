//! Drafts shared by the codec's unit tests, the integration tests and the benchmark,
//! included by each with `#[path]`. The including module has `Actor`, `ActorKind`,
//! `EntryDraft`, `SubjectTag` and `Withheld` in scope (from `audit` or `crate::entry`).

use super::{Actor, ActorKind, EntryDraft, SubjectTag, Withheld};

/// Sets the fields of an agency's access under consent: an officer asks for the address
/// and the income for `purpose`, the address is released and the income withheld.
pub(crate) fn add_access_request(d: &mut EntryDraft, purpose: &str, consent_id: String) {
    d.initiator = Some("officer-17".into());
    d.purpose = Some(purpose.into());
    d.processing = Some("disclosure".into());
    d.requested = vec!["address".into(), "income".into()];
    d.released = vec!["address".into()];
    d.withheld = vec![Withheld {
        field: "income".into(),
        reason: "no_consent".into(),
    }];
    d.legal_basis = Some("consent".into());
    d.consent_id = Some(consent_id);
}

/// The benchmark's entry `i` (about 230 bytes encoded): one of 50 agencies reads one of
/// 100,000 subjects, whose previous entry is `subject_prev`.
pub(crate) fn typical_access(i: u64, subject_prev: Option<u64>) -> EntryDraft {
    let mut d = EntryDraft::new(
        1_767_225_600_000 + i,
        Actor {
            kind: ActorKind::Agency,
            id: format!("agency-{}", i % 50),
        },
        "access",
        "partial",
    );
    d.subject = Some(typical_subject(i));
    d.subject_prev = subject_prev;
    add_access_request(&mut d, "benefit-assessment", format!("c-{i}"));
    d
}

/// The subject of the benchmark's entry `i`.
pub(crate) fn typical_subject(i: u64) -> SubjectTag {
    let mut tag = [0u8; 32];
    tag[..8].copy_from_slice(&(i % 100_000).to_be_bytes());
    SubjectTag(tag)
}
