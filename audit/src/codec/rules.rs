//! The field rules of an entry, checked by the encoder before it writes and by the reader
//! after it reads (so both refuse exactly the same entries, with the same error). What
//! the reader calls is `#[inline]`: it is called from the reader's module, another codegen
//! unit.

use super::encode::WireWithheld;
use super::encode::ARRAY_VERSION;
use super::MAP_VERSION;
use crate::entry::{
    ActorKind, Deferral, EntryError, COMMITMENT_VERSION, DISCLOSE_ACTION, ENTRY_VERSION,
    MAX_LIST_LEN, MAX_TEXT_LEN, PROVENANCE_VERSION,
};

/// A broken field rule (small and `Copy`; becomes [`EntryError::Invalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Broken {
    field: &'static str,
    rule: &'static str,
}

impl From<Broken> for EntryError {
    fn from(b: Broken) -> Self {
        EntryError::Invalid {
            field: b.field,
            rule: b.rule,
        }
    }
}

/// The rules of a text field (`s` is its UTF-8 bytes).
#[inline]
pub(super) fn text(field: &'static str, s: &[u8], required: bool) -> Result<(), Broken> {
    if required && s.is_empty() {
        return Err(Broken {
            field,
            rule: "must not be empty",
        });
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(Broken {
            field,
            rule: "longer than 4096 bytes",
        });
    }
    Ok(())
}

#[inline]
pub(super) fn opt(field: &'static str, s: Option<&[u8]>) -> Result<(), Broken> {
    s.map_or(Ok(()), |s| text(field, s, false))
}

/// A list's item count and the first rule one of its items breaks (in item order).
pub(super) struct ListCheck {
    field: &'static str,
    len: u64,
    first_error: Option<Broken>,
}

impl ListCheck {
    #[inline]
    pub(super) fn new(field: &'static str, len: u64) -> Self {
        Self {
            field,
            len,
            first_error: None,
        }
    }

    /// Records the outcome of one item's rules unless an earlier item already failed.
    #[inline]
    pub(super) fn note(&mut self, item: Result<(), Broken>) {
        if self.first_error.is_none() {
            self.first_error = item.err();
        }
    }

    pub(super) fn texts(field: &'static str, items: &[&str]) -> Self {
        let mut check = Self::new(field, items.len() as u64);
        for s in items {
            check.note(text(field, s.as_bytes(), true));
        }
        check
    }

    pub(super) fn withheld(items: &[WireWithheld<'_>]) -> Self {
        let mut check = Self::new("withheld", items.len() as u64);
        for w in items {
            check.note(withheld_item(w.field.as_bytes(), w.reason.as_bytes()));
        }
        check
    }

    /// The count limit first, then the first failing item.
    #[inline]
    pub(super) fn result(self) -> Result<(), Broken> {
        if self.len > MAX_LIST_LEN as u64 {
            return Err(Broken {
                field: self.field,
                rule: "more than 1024 items",
            });
        }
        self.first_error.map_or(Ok(()), Err)
    }
}

#[inline]
pub(super) fn withheld_item(field: &[u8], reason: &[u8]) -> Result<(), Broken> {
    text("withheld.field", field, true)?;
    text("withheld.reason", reason, true)
}

/// Everything the field rules look at, from the encoder's or the decoder's side.
pub(super) struct Rules<'a> {
    pub(super) v: u64,
    /// The entry is a map (the version-2 form), not an array.
    pub(super) keyed: bool,
    /// The entry is an array of 21 items (the version-4 form) or of 24 (version 5), not
    /// of 20.
    pub(super) wide: bool,
    /// The entry is an array of 24 items (the version-5 form) or of 25 (version 6).
    pub(super) v5: bool,
    /// The entry is an array of 25 items (the version-6 form).
    pub(super) v6: bool,
    /// Version 6: item 24.
    pub(super) deferral: Option<Deferral>,
    /// Version 5: the claimed basis (item 22), the consent terms' agency and supersedes
    /// (item 23), and whether any of items 21 to 23 is present.
    pub(super) claim_basis: Option<&'a [u8]>,
    pub(super) terms_agency: Option<&'a [u8]>,
    pub(super) terms_supersedes: Option<&'a [u8]>,
    pub(super) has_provenance: bool,
    /// A commitment (`justification` or `official` of version 4) is present.
    pub(super) has_commitments: bool,
    pub(super) actor_kind: Option<ActorKind>,
    pub(super) actor_id: &'a [u8],
    pub(super) action: &'a [u8],
    pub(super) decision: &'a [u8],
    pub(super) initiator: Option<&'a [u8]>,
    pub(super) processing: Option<&'a [u8]>,
    pub(super) purpose: Option<&'a [u8]>,
    pub(super) legal_basis: Option<&'a [u8]>,
    pub(super) legal_reference: Option<&'a [u8]>,
    pub(super) consent_id: Option<&'a [u8]>,
    pub(super) justification: Option<&'a [u8]>,
    pub(super) requested: ListCheck,
    pub(super) released: ListCheck,
    pub(super) withheld: ListCheck,
    pub(super) index: u64,
    pub(super) has_subject: bool,
    pub(super) subject_prev: Option<u64>,
}

impl Rules<'_> {
    /// Checks the field rules in a fixed order (the first broken rule is reported) and
    /// returns the actor kind.
    #[inline]
    pub(super) fn check(self) -> Result<ActorKind, Broken> {
        match (self.v, self.keyed, self.wide, self.v5, self.v6) {
            (MAP_VERSION, true, false, false, false)
            | (ARRAY_VERSION, false, false, false, false)
            | (COMMITMENT_VERSION, false, true, false, false)
            | (PROVENANCE_VERSION, false, true, true, false)
            | (ENTRY_VERSION, false, true, true, true) => {}
            (
                MAP_VERSION | ARRAY_VERSION | COMMITMENT_VERSION | PROVENANCE_VERSION
                | ENTRY_VERSION,
                _,
                _,
                _,
                _,
            ) => {
                return Err(Broken {
                    field: "v",
                    rule: "not in its version's form (version 2 is a map, version 3 an array \
                           of 20 items, version 4 an array of 21, version 5 an array of 24, \
                           version 6 an array of 25)",
                })
            }
            _ => {
                return Err(Broken {
                    field: "v",
                    rule: "unknown entry version",
                })
            }
        }
        let kind = self.actor_kind.ok_or(Broken {
            field: "actor.kind",
            rule: "unknown actor kind",
        })?;
        if kind == ActorKind::Citizen {
            if !self.actor_id.is_empty() {
                return Err(Broken {
                    field: "actor.id",
                    rule: "a citizen actor has an empty id (the citizen is the subject)",
                });
            }
        } else {
            text("actor.id", self.actor_id, true)?;
        }
        text("action", self.action, true)?;
        text("decision", self.decision, true)?;
        opt("initiator", self.initiator)?;
        opt("processing", self.processing)?;
        opt("purpose", self.purpose)?;
        opt("legal_basis", self.legal_basis)?;
        opt("legal_reference", self.legal_reference)?;
        opt("consent_id", self.consent_id)?;
        opt("justification", self.justification)?;
        opt("claim.legal_basis", self.claim_basis)?;
        if let Some(agency) = self.terms_agency {
            text("terms.agency", agency, true)?;
        }
        opt("terms.supersedes", self.terms_supersedes)?;
        if self.wide && self.justification.is_some() {
            return Err(Broken {
                field: "justification",
                rule: "versions 4 to 6 carry a commitment to the justification, never its text",
            });
        }
        if !self.wide && self.has_commitments {
            return Err(Broken {
                field: "justification",
                rule: "only versions 4 to 6 carry commitments",
            });
        }
        if !self.v5 && self.has_provenance {
            return Err(Broken {
                field: "policy_set",
                rule: "only versions 5 and 6 carry the policy set, claim and terms",
            });
        }
        match self.deferral {
            Some(_) if !self.v6 => {
                return Err(Broken {
                    field: "deferral",
                    rule: "only version 6 carries a deferral",
                })
            }
            Some(_) if !self.has_subject => {
                return Err(Broken {
                    field: "deferral",
                    rule: "a deferred entry and a disclosure have a subject",
                })
            }
            Some(Deferral::Deferred { .. }) if self.subject_prev.is_some() => {
                return Err(Broken {
                    field: "deferral",
                    rule: "a deferred entry's tag is used once: its subject_prev is null",
                })
            }
            Some(Deferral::Disclosure { of, .. }) if of >= self.index => {
                return Err(Broken {
                    field: "deferral",
                    rule: "a disclosure names an entry below its own index",
                })
            }
            Some(Deferral::Disclosure { .. }) if self.action != DISCLOSE_ACTION.as_bytes() => {
                return Err(Broken {
                    field: "deferral",
                    rule: "a disclosure's action is `access.disclose`",
                })
            }
            _ => {}
        }
        self.requested.result()?;
        self.released.result()?;
        self.withheld.result()?;
        match (self.has_subject, self.subject_prev) {
            (false, Some(_)) => Err(Broken {
                field: "subject_prev",
                rule: "set without a subject",
            }),
            (_, Some(p)) if p >= self.index => Err(Broken {
                field: "subject_prev",
                rule: "not below the entry's index",
            }),
            _ => Ok(kind),
        }
    }
}
