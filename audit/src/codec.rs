//! The canonical CBOR codec of entries (the only module that knows `serde_cbor`).
//!
//! An entry is a CBOR map with text keys in RFC 8949 §4.2.1 deterministic order (shorter
//! keys first, then bytewise), every key always present (`null` for an absent value),
//! definite lengths and shortest integer forms; `docs/audit-log.md` lists the keys.
//! Decoding is strict: after a successful decode the value is encoded again and must
//! reproduce the input byte for byte, so one entry has exactly one encoding.

use serde::de::{Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::entry::{
    Actor, ActorKind, Entry, EntryError, SubjectTag, Withheld, ENTRY_VERSION, MAX_ENTRY_LEN,
    MAX_LIST_LEN, MAX_TEXT_LEN,
};
use crate::hash::Hash;

/// 32 bytes as a CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq)]
struct B32([u8; 32]);

impl Serialize for B32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireActor<'a> {
    id: &'a str,
    kind: &'a str,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWithheld<'a> {
    field: &'a str,
    reason: &'a str,
}

/// Field order = canonical key order (length, then bytes). Do not reorder.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry<'a> {
    v: u64,
    prev: B32,
    time: u64,
    #[serde(borrow)]
    actor: WireActor<'a>,
    index: u64,
    action: &'a str,
    review: bool,
    #[serde(borrow)]
    purpose: Option<&'a str>,
    subject: Option<B32>,
    decision: &'a str,
    #[serde(borrow)]
    released: Vec<&'a str>,
    #[serde(borrow)]
    withheld: Vec<WireWithheld<'a>>,
    #[serde(borrow)]
    initiator: Option<&'a str>,
    #[serde(borrow)]
    requested: Vec<&'a str>,
    #[serde(borrow)]
    consent_id: Option<&'a str>,
    #[serde(borrow)]
    processing: Option<&'a str>,
    #[serde(borrow)]
    legal_basis: Option<&'a str>,
    subject_prev: Option<u64>,
    #[serde(borrow)]
    justification: Option<&'a str>,
    #[serde(borrow)]
    legal_reference: Option<&'a str>,
}

fn text(field: &'static str, s: &str, required: bool) -> Result<(), EntryError> {
    if required && s.is_empty() {
        return Err(EntryError::Invalid {
            field,
            rule: "must not be empty",
        });
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(EntryError::Invalid {
            field,
            rule: "longer than 4096 bytes",
        });
    }
    Ok(())
}

fn opt(field: &'static str, s: Option<&str>) -> Result<(), EntryError> {
    s.map_or(Ok(()), |s| text(field, s, false))
}

fn list(field: &'static str, items: &[&str]) -> Result<(), EntryError> {
    if items.len() > MAX_LIST_LEN {
        return Err(EntryError::Invalid {
            field,
            rule: "more than 1024 items",
        });
    }
    items.iter().try_for_each(|s| text(field, s, true))
}

impl WireEntry<'_> {
    fn validate(&self) -> Result<(), EntryError> {
        if self.v != ENTRY_VERSION {
            return Err(EntryError::Invalid {
                field: "v",
                rule: "unknown entry version",
            });
        }
        let kind = ActorKind::parse(self.actor.kind).ok_or(EntryError::Invalid {
            field: "actor.kind",
            rule: "unknown actor kind",
        })?;
        if kind == ActorKind::Citizen {
            if !self.actor.id.is_empty() {
                return Err(EntryError::Invalid {
                    field: "actor.id",
                    rule: "a citizen actor has an empty id (the citizen is the subject)",
                });
            }
        } else {
            text("actor.id", self.actor.id, true)?;
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
        list("requested", &self.requested)?;
        list("released", &self.released)?;
        if self.withheld.len() > MAX_LIST_LEN {
            return Err(EntryError::Invalid {
                field: "withheld",
                rule: "more than 1024 items",
            });
        }
        for w in &self.withheld {
            text("withheld.field", w.field, true)?;
            text("withheld.reason", w.reason, true)?;
        }
        match (self.subject, self.subject_prev) {
            (None, Some(_)) => Err(EntryError::Invalid {
                field: "subject_prev",
                rule: "set without a subject",
            }),
            (_, Some(p)) if p >= self.index => Err(EntryError::Invalid {
                field: "subject_prev",
                rule: "not below the entry's index",
            }),
            _ => Ok(()),
        }
    }
}

fn to_wire(e: &Entry) -> WireEntry<'_> {
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
    }
}

fn write_wire(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
    out.clear();
    serde_cbor::to_writer(&mut *out, w).map_err(|e| EntryError::Malformed {
        reason: e.to_string(),
    })?;
    if out.len() > MAX_ENTRY_LEN {
        return Err(EntryError::Invalid {
            field: "entry",
            rule: "encoded entry larger than 1 MiB",
        });
    }
    Ok(())
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>, EntryError> {
    let wire = to_wire(e);
    wire.validate()?;
    let mut out = Vec::with_capacity(256);
    write_wire(&wire, &mut out)?;
    Ok(out)
}

fn decode_wire<'a>(bytes: &'a [u8], scratch: &mut Vec<u8>) -> Result<WireEntry<'a>, EntryError> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(EntryError::Invalid {
            field: "entry",
            rule: "encoded entry larger than 1 MiB",
        });
    }
    let wire: WireEntry<'a> =
        serde_cbor::from_slice(bytes).map_err(|e: serde_cbor::Error| EntryError::Malformed {
            reason: e.to_string(),
        })?;
    wire.validate()?;
    write_wire(&wire, scratch)?;
    if scratch.as_slice() != bytes {
        return Err(EntryError::Malformed {
            reason: "not the canonical encoding".to_owned(),
        });
    }
    Ok(wire)
}

/// What the verifier needs of an entry, borrowed from the leaf bytes.
pub(crate) struct EntryLinks {
    pub(crate) index: u64,
    pub(crate) prev: Hash,
    pub(crate) subject: Option<SubjectTag>,
    pub(crate) subject_prev: Option<u64>,
}

/// Strictly decodes an entry, keeping only its links (no allocation but `scratch`).
pub(crate) fn decode_links(bytes: &[u8], scratch: &mut Vec<u8>) -> Result<EntryLinks, EntryError> {
    let w = decode_wire(bytes, scratch)?;
    Ok(EntryLinks {
        index: w.index,
        prev: w.prev.0,
        subject: w.subject.map(|b| SubjectTag(b.0)),
        subject_prev: w.subject_prev,
    })
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    let mut scratch = Vec::with_capacity(bytes.len());
    let w = decode_wire(bytes, &mut scratch)?;
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(Entry {
        index: w.index,
        time_ms: w.time,
        actor: Actor {
            kind: ActorKind::parse(w.actor.kind).ok_or(EntryError::Invalid {
                field: "actor.kind",
                rule: "unknown actor kind",
            })?,
            id: w.actor.id.to_owned(),
        },
        initiator: w.initiator.map(str::to_owned),
        action: w.action.to_owned(),
        processing: w.processing.map(str::to_owned),
        purpose: w.purpose.map(str::to_owned),
        requested: owned(&w.requested),
        released: owned(&w.released),
        withheld: w
            .withheld
            .iter()
            .map(|x| Withheld {
                field: x.field.to_owned(),
                reason: x.reason.to_owned(),
            })
            .collect(),
        legal_basis: w.legal_basis.map(str::to_owned),
        legal_reference: w.legal_reference.map(str::to_owned),
        consent_id: w.consent_id.map(str::to_owned),
        decision: w.decision.to_owned(),
        justification: w.justification.map(str::to_owned),
        review: w.review,
        subject: w.subject.map(|b| SubjectTag(b.0)),
        subject_prev: w.subject_prev,
        prev: w.prev.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        let mut d = crate::entry::EntryDraft::new(
            1_700_000_000_000,
            Actor {
                kind: ActorKind::Agency,
                id: "tax-office".into(),
            },
            "access",
            "partial",
        );
        d.requested = vec!["address".into(), "income".into()];
        d.released = vec!["address".into()];
        d.withheld = vec![Withheld {
            field: "income".into(),
            reason: "no_consent".into(),
        }];
        d.subject = Some(SubjectTag([7; 32]));
        d.subject_prev = Some(3);
        d.purpose = Some("tax assessment".into());
        Entry::from_draft(d, 9, [1; 32])
    }

    #[test]
    fn round_trip_is_identity_and_keys_are_in_canonical_order() {
        let e = sample();
        let bytes = encode_entry(&e).unwrap();
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        // Map of 20 pairs, first key "v", second "prev".
        assert_eq!(bytes[0], 0xb4);
        assert_eq!(&bytes[1..3], &[0x61, b'v']);
        assert_eq!(&bytes[4..9], &[0x64, b'p', b'r', b'e', b'v']);
    }

    #[test]
    fn non_canonical_integer_is_rejected() {
        let e = sample();
        let bytes = encode_entry(&e).unwrap();
        // "v": 1 is 0x61 0x76 0x01; rewrite the 1 as the two-byte form 0x18 0x01.
        let mut long = bytes[..3].to_vec();
        long.extend_from_slice(&[0x18, 0x01]);
        long.extend_from_slice(&bytes[4..]);
        assert!(matches!(
            decode_entry(&long),
            Err(EntryError::Malformed { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_unknown_version_are_rejected() {
        let e = sample();
        let mut bytes = encode_entry(&e).unwrap();
        let mut v2 = bytes.clone();
        v2[3] = 0x02;
        assert_eq!(
            decode_entry(&v2),
            Err(EntryError::Invalid {
                field: "v",
                rule: "unknown entry version"
            })
        );
        bytes.push(0);
        assert!(decode_entry(&bytes).is_err());
    }

    #[test]
    fn citizen_actor_with_id_is_refused() {
        let mut e = sample();
        e.actor = Actor {
            kind: ActorKind::Citizen,
            id: "123".into(),
        };
        assert!(matches!(
            encode_entry(&e),
            Err(EntryError::Invalid {
                field: "actor.id",
                ..
            })
        ));
    }
}
