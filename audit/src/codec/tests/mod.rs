//! The codec's tests: the reference model (the previous decode, re-encode and compare path)
//! and the sample entries shared by the test files, which are split by what they check.

mod props;
mod reader;
mod rules;
mod vectors;
mod versions;

use super::encode::*;
use super::reader::*;
use super::*;
use crate::entry::*;
use crate::{Commitment, TextField};

#[path = "../../../tests/support/drafts.rs"]
mod support;

/// The versions the reference model reads: 2 (the map form) and 3 (the array of 20
/// items); version 4 (the array of 21, with commitments) has its own tests (`versions.rs`).
const VERSIONS: [u64; 2] = [MAP_VERSION, ARRAY_VERSION];

/// The rule an entry in the form of another version breaks.
const FORM_RULE: &str = "not in its version's form (version 2 is a map, version 3 an array of 20 \
                         items, version 4 an array of 21, version 5 an array of 24, version 6 an array of 25)";

/// Writes `w` in the version-2 form (the map, `serde_cbor`'s packed struct format:
/// keys are field positions), whatever its `v`.
fn write_wire_map(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
    write_cbor(w, out)
}

/// The encoder of version `v`: `encode_entry` for 6, and for 5, 4, 3 and 2 their encoders as
/// they were (the same rules, the array of 21 or 20 items and the map form).
fn encode_as(e: &Entry, v: u64) -> Result<Vec<u8>, EntryError> {
    if v == ENTRY_VERSION {
        return encode_entry(e);
    }
    let mut wire = to_wire(e);
    wire.v = v;
    wire.rules(v == MAP_VERSION).check()?;
    let mut out = Vec::new();
    if v == MAP_VERSION {
        write_wire_map(&wire, &mut out)?;
    } else {
        write_wire(&wire, &mut out)?;
    }
    Ok(out)
}

/// The reference model: the previous decoder, for both forms (serde_cbor decode,
/// field rules, then re-encode in the form of the entry's version and compare byte
/// for byte).
fn reference_decode(bytes: &[u8]) -> Result<Entry, EntryError> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(too_large());
    }
    let w: WireEntry<'_> =
        serde_cbor::from_slice(bytes).map_err(|e: serde_cbor::Error| malformed(e.to_string()))?;
    let keyed = bytes.first().is_some_and(|b| b >> 5 == 5);
    let kind = w.rules(keyed).check()?;
    let mut scratch = Vec::new();
    if w.v == MAP_VERSION {
        write_wire_map(&w, &mut scratch)?;
    } else {
        write_wire(&w, &mut scratch)?;
    }
    if scratch.as_slice() != bytes {
        return Err(malformed("not the canonical encoding"));
    }
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(Entry {
        index: w.index,
        prev: w.prev.0,
        body: EntryDraft {
            time_ms: w.time,
            actor: Actor {
                kind,
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
            justification_commitment: None,
            official: None,
            review: w.review,
            subject: w.subject.map(|b| SubjectTag(b.0)),
            subject_prev: w.subject_prev,
            policy_set: None,
            claim: None,
            terms: None,
            deferral: None,
        },
    })
}

/// Serialises an entry as version `v` in the map form (`keyed`) or the array form,
/// without its field rules and size limit (canonical bytes of entries the encoders
/// refuse).
fn raw_in(e: &Entry, v: u64, keyed: bool) -> Vec<u8> {
    let mut w = to_wire(e);
    w.v = v;
    if keyed {
        serde_cbor::ser::to_vec_packed(&w)
    } else {
        serde_cbor::ser::to_vec(&AsArray(&w))
    }
    .expect("serialising to a vector cannot fail")
}

/// [`raw_in`] in the form of version `v` (the map for 2, else the array).
fn raw(e: &Entry, v: u64) -> Vec<u8> {
    raw_in(e, v, v == MAP_VERSION)
}

/// The new decoder and the reference model agree on `bytes`: both accept with the
/// same entry, or both reject. Returns whether they accepted.
fn agree(bytes: &[u8]) -> bool {
    let new = decode_entry(bytes);
    let reference = reference_decode(bytes);
    assert_eq!(
        new.as_ref().ok(),
        reference.as_ref().ok(),
        "new {new:?} reference {reference:?} on {bytes:02x?}"
    );
    assert_eq!(decode_links(bytes).is_ok(), new.is_ok());
    new.is_ok()
}

/// `bytes` decode to `e` by the owning decode and (versions 2 and 3) the reference model,
/// and to its links by the verifier's path.
fn assert_decodes_to(bytes: &[u8], e: &Entry) {
    assert_eq!(decode_entry(bytes).as_ref(), Ok(e));
    if bytes.first() != Some(&(ARRAY_HEAD + 21))
        && !bytes.starts_with(&V5_HEAD)
        && !bytes.starts_with(&V6_HEAD)
    {
        assert_eq!(reference_decode(bytes).as_ref(), Ok(e));
    }
    let links = decode_links(bytes).expect("decodes");
    assert_eq!(
        (links.index, links.prev, links.subject, links.subject_prev),
        (e.index, e.prev, e.subject, e.subject_prev)
    );
}

/// Withheld items from `(field, reason)` pairs.
fn withheld(pairs: &[(&str, &str)]) -> Vec<Withheld> {
    pairs
        .iter()
        .map(|(field, reason)| Withheld {
            field: (*field).into(),
            reason: (*reason).into(),
        })
        .collect()
}

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
    d.withheld = withheld(&[("income", "no_consent")]);
    d.subject = Some(SubjectTag([7; 32]));
    d.subject_prev = Some(3);
    d.purpose = Some("tax assessment".into());
    Entry::from_draft(d, 9, [1; 32])
}

/// Every optional field set, a citizen actor, review flagged, non-ASCII text.
fn citizen() -> Entry {
    let mut d = crate::entry::EntryDraft::new(
        u64::MAX,
        Actor {
            kind: ActorKind::Citizen,
            id: String::new(),
        },
        "consent.grant",
        "done",
    );
    d.initiator = Some(String::new());
    d.processing = Some("collection".into());
    d.purpose = Some("Überprüfung ✓".into());
    d.requested = vec!["a".into(), "b".into(), "c".into()];
    d.released = vec!["a".into(), "b".into()];
    d.withheld = withheld(&[("c", "r"), ("d", "s")]);
    d.legal_basis = Some("consent".into());
    d.legal_reference = Some("§ 4".into());
    d.consent_id = Some("c-1".into());
    d.justification = Some("requested by the citizen".into());
    d.review = true;
    d.subject = Some(SubjectTag([0xa5; 32]));
    d.subject_prev = Some(65_535);
    Entry::from_draft(d, 65_536, [0xff; 32])
}

/// No optional field, empty lists, index 0.
fn minimal() -> Entry {
    let d = crate::entry::EntryDraft::new(
        0,
        Actor {
            kind: ActorKind::System,
            id: "s".into(),
        },
        "x",
        "done",
    );
    Entry::from_draft(d, 0, [0; 32])
}

/// A typical access entry of the benchmark: its entry 500,000 (`benches/audit.rs`).
fn typical_access() -> Entry {
    let i = 500_000;
    Entry::from_draft(support::typical_access(i, Some(i - 100_000)), i, [0x5a; 32])
}

/// The hex fixtures of `testdata/entry-v2/`, written by the version-2 encoder before
/// version 3 existed, with the entries they hold.
fn v2_fixtures() -> [(&'static str, Entry); 3] {
    [
        (
            include_str!("../../../testdata/entry-v2/sample.hex"),
            sample(),
        ),
        (
            include_str!("../../../testdata/entry-v2/citizen.hex"),
            citizen(),
        ),
        (
            include_str!("../../../testdata/entry-v2/minimal.hex"),
            minimal(),
        ),
    ]
}

/// `major`'s head for `value` in every width it fits, shortest first.
fn heads(major: u8, value: u64) -> Vec<Vec<u8>> {
    let m = major << 5;
    let mut out = Vec::new();
    if value < 24 {
        out.push(vec![m | value as u8]);
    }
    if let Ok(v) = u8::try_from(value) {
        out.push(vec![m | 24, v]);
    }
    if let Ok(v) = u16::try_from(value) {
        out.push([&[m | 25][..], &v.to_be_bytes()].concat());
    }
    if let Ok(v) = u32::try_from(value) {
        out.push([&[m | 26][..], &v.to_be_bytes()].concat());
    }
    out.push([&[m | 27][..], &value.to_be_bytes()].concat());
    out
}

/// Skips one well-formed CBOR item of definite length at `at`; returns where it ends.
fn skip(bytes: &[u8], at: usize) -> usize {
    let (major, info) = (bytes[at] >> 5, bytes[at] & 0x1f);
    let (arg, mut end) = match info {
        0..=23 => (u64::from(info), at + 1),
        24..=27 => {
            let n = 1usize << (info - 24);
            let mut v = 0u64;
            for b in &bytes[at + 1..at + 1 + n] {
                v = v << 8 | u64::from(*b);
            }
            (v, at + 1 + n)
        }
        _ => panic!("the encoder writes definite lengths only"),
    };
    match major {
        2 | 3 => end += arg as usize,
        4 => (0..arg).for_each(|_| end = skip(bytes, end)),
        5 => (0..2 * arg).for_each(|_| end = skip(bytes, end)),
        _ => {}
    }
    end
}

/// The offset of the value of the entry's field named `name` in an encoded entry of
/// either form (after its key in the map form).
fn value_at(bytes: &[u8], name: &str) -> usize {
    let position = ENTRY_FIELDS
        .iter()
        .position(|k| *k == name)
        .expect("a field name");
    if bytes[0] == ARRAY_HEAD + 20 || bytes[0] == ARRAY_HEAD + 21 {
        return (0..position).fold(1, |at, _| skip(bytes, at));
    }
    if bytes.starts_with(&V5_HEAD) || bytes.starts_with(&V6_HEAD) {
        return (0..position).fold(2, |at, _| skip(bytes, at));
    }
    let mut at = 1;
    while usize::from(bytes[at]) != position {
        at = skip(bytes, skip(bytes, at));
    }
    at + 1
}
