//! The encoder: an entry's wire form and its version-6 bytes (through `serde_cbor`).

#[cfg(test)]
use serde::de::{Deserializer, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

use super::rules::{ListCheck, Rules};
use super::too_large;
use crate::entry::{
    ActorKind, Deferral, Entry, EntryError, COMMITMENT_VERSION, ENTRY_VERSION, MAX_ENTRY_LEN,
    PROVENANCE_VERSION,
};

/// The entry format version that is an array of 20 items (still read, never written).
pub(super) const ARRAY_VERSION: u64 = 3;

/// 32 bytes as a CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct B32(pub(super) [u8; 32]);

impl Serialize for B32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[cfg(test)]
impl<'de> Deserialize<'de> for B32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = B32;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a 32-byte byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<B32, E> {
                <[u8; 32]>::try_from(v)
                    .map(B32)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

// The derived `Serialize` of the wire structs (tests only) is the version-2 map form in
// `serde_cbor`'s packed format (a field's key is its position); the encoder writes the
// array forms (version 3, and version 4 with its commitments) through `AsArray`. The
// derived `Deserialize` reads versions 2 and 3 (it skips the commitments).

#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct WireActor<'a> {
    /// item (v2: key) 0
    pub(super) kind: &'a str,
    /// item (v2: key) 1
    pub(super) id: &'a str,
}

#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct WireWithheld<'a> {
    /// item (v2: key) 0
    pub(super) field: &'a str,
    /// item (v2: key) 1
    pub(super) reason: &'a str,
}

/// Item 22 of version 5.
#[derive(Clone, Copy)]
pub(super) struct WireClaim<'a> {
    pub(super) legal_basis: Option<&'a str>,
    pub(super) justified: bool,
}

/// Item 23 of version 5.
#[derive(Clone, Copy)]
pub(super) struct WireTerms<'a> {
    pub(super) agency: &'a str,
    pub(super) valid_from: u64,
    pub(super) expires_at: u64,
    pub(super) max_uses: Option<u64>,
    pub(super) data_life: Option<u64>,
    pub(super) supersedes: Option<&'a str>,
}

/// Item 24 of version 6: `[disclose_at]` or `[of, opening, lift]`.
#[derive(Clone, Copy)]
pub(super) struct WireDeferral(pub(super) Deferral);

impl Serialize for WireDeferral {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Deferral::Deferred { disclose_at } => {
                let mut t = s.serialize_tuple(1)?;
                t.serialize_element(&disclose_at)?;
                t.end()
            }
            Deferral::Disclosure { of, opening, lift } => {
                let mut t = s.serialize_tuple(3)?;
                t.serialize_element(&of)?;
                t.serialize_element(&B32(opening))?;
                t.serialize_element(&lift.map(|c| B32(c.0)))?;
                t.end()
            }
        }
    }
}

impl Serialize for WireClaim<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.legal_basis)?;
        t.serialize_element(&self.justified)?;
        t.end()
    }
}

impl Serialize for WireTerms<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(6)?;
        t.serialize_element(self.agency)?;
        t.serialize_element(&self.valid_from)?;
        t.serialize_element(&self.expires_at)?;
        t.serialize_element(&self.max_uses)?;
        t.serialize_element(&self.data_life)?;
        t.serialize_element(&self.supersedes)?;
        t.end()
    }
}

/// Field position = array item (v3, v4, v5) = integer key (v2) = canonical order. Do not reorder:
/// the reader (`Reader::entry`), `AsArray` and `docs/audit-log.md` use these numbers.
#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct WireEntry<'a> {
    pub(super) v: u64,
    pub(super) index: u64,
    pub(super) time: u64,
    pub(super) prev: B32,
    #[cfg_attr(test, serde(borrow))]
    pub(super) actor: WireActor<'a>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) initiator: Option<&'a str>,
    pub(super) action: &'a str,
    #[cfg_attr(test, serde(borrow))]
    pub(super) processing: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) purpose: Option<&'a str>,
    pub(super) subject: Option<B32>,
    pub(super) subject_prev: Option<u64>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) requested: Vec<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) released: Vec<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) withheld: Vec<WireWithheld<'a>>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) legal_basis: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) legal_reference: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    pub(super) consent_id: Option<&'a str>,
    pub(super) decision: &'a str,
    /// Versions 2 and 3: the justification in clear.
    #[cfg_attr(test, serde(borrow))]
    pub(super) justification: Option<&'a str>,
    pub(super) review: bool,
    /// Version 4: item 18, in place of `justification`.
    #[cfg_attr(test, serde(skip))]
    pub(super) justification_commitment: Option<B32>,
    /// Version 4: item 20.
    #[cfg_attr(test, serde(skip))]
    pub(super) official: Option<B32>,
    /// Version 5: item 21.
    #[cfg_attr(test, serde(skip))]
    pub(super) policy_set: Option<B32>,
    /// Version 5: item 22.
    #[cfg_attr(test, serde(skip))]
    pub(super) claim: Option<WireClaim<'a>>,
    /// Version 5: item 23.
    #[cfg_attr(test, serde(skip))]
    pub(super) terms: Option<WireTerms<'a>>,
    /// Version 6: item 24.
    #[cfg_attr(test, serde(skip))]
    pub(super) deferral: Option<WireDeferral>,
}

/// A wire struct serialised in an array form: a CBOR array of its fields in order (for
/// an entry, 25 items if its `v` is 6, 24 if 5, 21 if 4, else the 20 of version 3).
pub(super) struct AsArray<'a, T>(pub(super) &'a T);

impl Serialize for AsArray<'_, WireActor<'_>> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(self.0.kind)?;
        t.serialize_element(self.0.id)?;
        t.end()
    }
}

impl Serialize for AsArray<'_, WireWithheld<'_>> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(self.0.field)?;
        t.serialize_element(self.0.reason)?;
        t.end()
    }
}

impl Serialize for AsArray<'_, Vec<WireWithheld<'_>>> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for w in self.0 {
            seq.serialize_element(&AsArray(w))?;
        }
        seq.end()
    }
}

impl Serialize for AsArray<'_, WireEntry<'_>> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.0;
        let v6 = w.v == ENTRY_VERSION;
        let v5 = v6 || w.v == PROVENANCE_VERSION;
        let wide = v5 || w.v == COMMITMENT_VERSION;
        let mut t = s.serialize_tuple(match (wide, v5, v6) {
            (_, _, true) => 25,
            (_, true, false) => 24,
            (true, false, false) => 21,
            _ => 20,
        })?;
        t.serialize_element(&w.v)?;
        t.serialize_element(&w.index)?;
        t.serialize_element(&w.time)?;
        t.serialize_element(&w.prev)?;
        t.serialize_element(&AsArray(&w.actor))?;
        t.serialize_element(&w.initiator)?;
        t.serialize_element(w.action)?;
        t.serialize_element(&w.processing)?;
        t.serialize_element(&w.purpose)?;
        t.serialize_element(&w.subject)?;
        t.serialize_element(&w.subject_prev)?;
        t.serialize_element(&w.requested)?;
        t.serialize_element(&w.released)?;
        t.serialize_element(&AsArray(&w.withheld))?;
        t.serialize_element(&w.legal_basis)?;
        t.serialize_element(&w.legal_reference)?;
        t.serialize_element(&w.consent_id)?;
        t.serialize_element(w.decision)?;
        if wide {
            t.serialize_element(&w.justification_commitment)?;
        } else {
            t.serialize_element(&w.justification)?;
        }
        t.serialize_element(&w.review)?;
        if wide {
            t.serialize_element(&w.official)?;
        }
        if v5 {
            t.serialize_element(&w.policy_set)?;
            t.serialize_element(&w.claim)?;
            t.serialize_element(&w.terms)?;
        }
        if v6 {
            t.serialize_element(&w.deferral)?;
        }
        t.end()
    }
}

impl<'a> WireEntry<'a> {
    /// The rules of this entry in the map form (`keyed`, version 2) or the array form (of
    /// 25 items if its `v` is 6, 24 if 5, 21 if 4, as `AsArray` writes it).
    pub(super) fn rules(&self, keyed: bool) -> Rules<'a> {
        let v6 = !keyed && self.v == ENTRY_VERSION;
        let v5 = v6 || (!keyed && self.v == PROVENANCE_VERSION);
        Rules {
            v: self.v,
            keyed,
            wide: v5 || (!keyed && self.v == COMMITMENT_VERSION),
            v5,
            v6,
            deferral: self.deferral.map(|d| d.0),
            claim_basis: self.claim.and_then(|c| c.legal_basis).map(str::as_bytes),
            terms_agency: self.terms.map(|t| t.agency.as_bytes()),
            terms_supersedes: self.terms.and_then(|t| t.supersedes).map(str::as_bytes),
            has_provenance: self.policy_set.is_some()
                || self.claim.is_some()
                || self.terms.is_some(),
            has_commitments: self.justification_commitment.is_some() || self.official.is_some(),
            actor_kind: ActorKind::parse(self.actor.kind),
            actor_id: self.actor.id.as_bytes(),
            action: self.action.as_bytes(),
            decision: self.decision.as_bytes(),
            initiator: self.initiator.map(str::as_bytes),
            processing: self.processing.map(str::as_bytes),
            purpose: self.purpose.map(str::as_bytes),
            legal_basis: self.legal_basis.map(str::as_bytes),
            legal_reference: self.legal_reference.map(str::as_bytes),
            consent_id: self.consent_id.map(str::as_bytes),
            justification: self.justification.map(str::as_bytes),
            requested: ListCheck::texts("requested", &self.requested),
            released: ListCheck::texts("released", &self.released),
            withheld: ListCheck::withheld(&self.withheld),
            index: self.index,
            has_subject: self.subject.is_some(),
            subject_prev: self.subject_prev,
        }
    }
}

pub(super) fn to_wire(e: &Entry) -> WireEntry<'_> {
    WireEntry {
        v: ENTRY_VERSION,
        prev: B32(e.prev),
        time: e.time_ms,
        actor: WireActor {
            id: &e.actor.id,
            kind: e.actor.kind.as_str(),
        },
        index: e.index,
        action: &e.action,
        review: e.review,
        purpose: e.purpose.as_deref(),
        subject: e.subject.map(|t| B32(t.0)),
        decision: &e.decision,
        released: e.released.iter().map(String::as_str).collect(),
        withheld: e
            .withheld
            .iter()
            .map(|w| WireWithheld {
                field: &w.field,
                reason: &w.reason,
            })
            .collect(),
        initiator: e.initiator.as_deref(),
        requested: e.requested.iter().map(String::as_str).collect(),
        consent_id: e.consent_id.as_deref(),
        processing: e.processing.as_deref(),
        legal_basis: e.legal_basis.as_deref(),
        subject_prev: e.subject_prev,
        justification: e.justification.as_deref(),
        legal_reference: e.legal_reference.as_deref(),
        justification_commitment: e.justification_commitment.map(|c| B32(c.0)),
        official: e.official.map(|c| B32(c.0)),
        policy_set: e.policy_set.map(B32),
        claim: e.claim.as_ref().map(|c| WireClaim {
            legal_basis: c.legal_basis.as_deref(),
            justified: c.justified,
        }),
        terms: e.terms.as_ref().map(|t| WireTerms {
            agency: &t.agency,
            valid_from: t.valid_from,
            expires_at: t.expires_at,
            max_uses: t.max_uses,
            data_life: t.data_life,
            supersedes: t.supersedes.as_deref(),
        }),
        deferral: e.deferral.map(WireDeferral),
    }
}

/// Serialises `value` into `out` (cleared first), refusing more than 1 MiB. The packed
/// format only matters to the tests' version-2 encoder (a derived struct's keys are its
/// field positions); the array form has no keys.
pub(super) fn write_cbor(value: &impl Serialize, out: &mut Vec<u8>) -> Result<(), EntryError> {
    out.clear();
    value
        .serialize(&mut serde_cbor::Serializer::new(&mut *out).packed_format())
        .map_err(|e| EntryError::Malformed {
            reason: e.to_string(),
        })?;
    if out.len() > MAX_ENTRY_LEN {
        return Err(too_large());
    }
    Ok(())
}

/// Writes `w` in an array form (of 25 items if its `v` is 6, 24 if 5, 21 if 4, else 20).
pub(super) fn write_wire(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
    write_cbor(&AsArray(w), out)
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>, EntryError> {
    let wire = to_wire(e);
    wire.rules(false).check()?;
    let mut out = Vec::with_capacity(256);
    write_wire(&wire, &mut out)?;
    Ok(out)
}
