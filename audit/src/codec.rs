//! The canonical CBOR codec of entries (the only module that knows `serde_cbor`).
//!
//! An entry (format version 3) is a CBOR array of its 20 fields in a fixed order (the
//! actor and each withheld item are arrays of 2), `null` for an absent value, definite
//! lengths and shortest integer forms; `docs/audit-log.md` lists the items. The leaf bytes
//! are what every verifier hashes, so each byte saved is hashing saved on every audit:
//! version 2 was the same fields as a map with the integer keys 0..=19, always all of them
//! and in ascending order, so its keys carried no information (24 bytes of a typical
//! access entry). Version 2 is still read: logs hold it from before the upgrade.
//!
//! Encoding goes through `serde_cbor` (sequences of the fields, `AsArray`) and writes
//! version 3 only.
//! Decoding is one hand-written strict reader of both forms (`Reader::entry`, with the
//! form as a const parameter: in version 3 there are no key bytes to check): each head must
//! use the shortest form, lengths are definite, in version 2 each key must be the next one
//! in order, and no byte may follow the entry. It accepts exactly the bytes an encoder of
//! the entry's version produces for a valid entry (a map carrying `v` = 3 or an array
//! carrying `v` = 2 is refused), so one entry has exactly one encoding per version, without
//! re-encoding anything (the previous decode, re-encode and compare path is kept in the
//! tests as the reference model the reader is checked against, with the derived map form
//! as the version-2 encoder).

#[cfg(test)]
use serde::de::{Deserializer, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

use crate::entry::{
    Actor, ActorKind, Entry, EntryError, SubjectTag, Withheld, ENTRY_VERSION, MAX_ENTRY_LEN,
    MAX_LIST_LEN, MAX_TEXT_LEN,
};
use crate::hash::Hash;

/// The entry format version that is a map with integer keys (still read, never written).
const MAP_VERSION: u64 = 2;

/// 32 bytes as a CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq)]
struct B32([u8; 32]);

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
// version-3 array form through `AsArray`. The derived `Deserialize` reads both forms.

#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
struct WireActor<'a> {
    /// item (v2: key) 0
    kind: &'a str,
    /// item (v2: key) 1
    id: &'a str,
}

#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
struct WireWithheld<'a> {
    /// item (v2: key) 0
    field: &'a str,
    /// item (v2: key) 1
    reason: &'a str,
}

/// Field position = array item (v3) = integer key (v2) = canonical order. Do not reorder:
/// the reader (`Reader::entry`), `AsArray` and `docs/audit-log.md` use these numbers.
#[cfg_attr(test, derive(Serialize, Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
struct WireEntry<'a> {
    v: u64,
    index: u64,
    time: u64,
    prev: B32,
    #[cfg_attr(test, serde(borrow))]
    actor: WireActor<'a>,
    #[cfg_attr(test, serde(borrow))]
    initiator: Option<&'a str>,
    action: &'a str,
    #[cfg_attr(test, serde(borrow))]
    processing: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    purpose: Option<&'a str>,
    subject: Option<B32>,
    subject_prev: Option<u64>,
    #[cfg_attr(test, serde(borrow))]
    requested: Vec<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    released: Vec<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    withheld: Vec<WireWithheld<'a>>,
    #[cfg_attr(test, serde(borrow))]
    legal_basis: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    legal_reference: Option<&'a str>,
    #[cfg_attr(test, serde(borrow))]
    consent_id: Option<&'a str>,
    decision: &'a str,
    #[cfg_attr(test, serde(borrow))]
    justification: Option<&'a str>,
    review: bool,
}

/// A wire struct serialised in the version-3 form: a CBOR array of its fields in order.
struct AsArray<'a, T>(&'a T);

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
        let mut t = s.serialize_tuple(20)?;
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
        t.serialize_element(&w.justification)?;
        t.serialize_element(&w.review)?;
        t.end()
    }
}

/// A broken field rule (small and `Copy`; becomes [`EntryError::Invalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Broken {
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
fn text(field: &'static str, s: &[u8], required: bool) -> Result<(), Broken> {
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

fn opt(field: &'static str, s: Option<&[u8]>) -> Result<(), Broken> {
    s.map_or(Ok(()), |s| text(field, s, false))
}

/// A list's item count and the first rule one of its items breaks (in item order).
struct ListCheck {
    field: &'static str,
    len: u64,
    first_error: Option<Broken>,
}

impl ListCheck {
    fn new(field: &'static str, len: u64) -> Self {
        Self {
            field,
            len,
            first_error: None,
        }
    }

    /// Records the outcome of one item's rules unless an earlier item already failed.
    fn note(&mut self, item: Result<(), Broken>) {
        if self.first_error.is_none() {
            self.first_error = item.err();
        }
    }

    fn texts(field: &'static str, items: &[&str]) -> Self {
        let mut check = Self::new(field, items.len() as u64);
        for s in items {
            check.note(text(field, s.as_bytes(), true));
        }
        check
    }

    fn withheld(items: &[WireWithheld<'_>]) -> Self {
        let mut check = Self::new("withheld", items.len() as u64);
        for w in items {
            check.note(withheld_item(w.field.as_bytes(), w.reason.as_bytes()));
        }
        check
    }

    /// The count limit first, then the first failing item.
    fn result(self) -> Result<(), Broken> {
        if self.len > MAX_LIST_LEN as u64 {
            return Err(Broken {
                field: self.field,
                rule: "more than 1024 items",
            });
        }
        self.first_error.map_or(Ok(()), Err)
    }
}

fn withheld_item(field: &[u8], reason: &[u8]) -> Result<(), Broken> {
    text("withheld.field", field, true)?;
    text("withheld.reason", reason, true)
}

/// Everything the field rules look at, from the encoder's or the decoder's side.
struct Rules<'a> {
    v: u64,
    /// The entry is a map (the version-2 form), not an array.
    keyed: bool,
    actor_kind: Option<ActorKind>,
    actor_id: &'a [u8],
    action: &'a [u8],
    decision: &'a [u8],
    initiator: Option<&'a [u8]>,
    processing: Option<&'a [u8]>,
    purpose: Option<&'a [u8]>,
    legal_basis: Option<&'a [u8]>,
    legal_reference: Option<&'a [u8]>,
    consent_id: Option<&'a [u8]>,
    justification: Option<&'a [u8]>,
    requested: ListCheck,
    released: ListCheck,
    withheld: ListCheck,
    index: u64,
    has_subject: bool,
    subject_prev: Option<u64>,
}

impl Rules<'_> {
    /// Checks the field rules in a fixed order (the first broken rule is reported) and
    /// returns the actor kind.
    fn check(self) -> Result<ActorKind, Broken> {
        match (self.v, self.keyed) {
            (MAP_VERSION, true) | (ENTRY_VERSION, false) => {}
            (MAP_VERSION | ENTRY_VERSION, _) => {
                return Err(Broken {
                    field: "v",
                    rule: "not in its version's form (version 2 is a map, version 3 an array)",
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

impl<'a> WireEntry<'a> {
    /// The rules of this entry in the map form (`keyed`, version 2) or the array form.
    fn rules(&self, keyed: bool) -> Rules<'a> {
        Rules {
            v: self.v,
            keyed,
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

/// Serialises `value` into `out` (cleared first), refusing more than 1 MiB. The packed
/// format only matters to the tests' version-2 encoder (a derived struct's keys are its
/// field positions); the array form has no keys.
fn write_cbor(value: &impl Serialize, out: &mut Vec<u8>) -> Result<(), EntryError> {
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

/// Writes `w` in the version-3 form (the array), whatever its `v`.
fn write_wire(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
    write_cbor(&AsArray(w), out)
}

fn too_large() -> EntryError {
    EntryError::Invalid {
        field: "entry",
        rule: "encoded entry larger than 1 MiB",
    }
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>, EntryError> {
    let wire = to_wire(e);
    wire.rules(false).check()?;
    let mut out = Vec::with_capacity(256);
    write_wire(&wire, &mut out)?;
    Ok(out)
}

fn malformed(reason: impl Into<String>) -> EntryError {
    EntryError::Malformed {
        reason: reason.into(),
    }
}

const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_NAMES: [&str; 8] = [
    "an unsigned integer",
    "a negative integer",
    "a byte string",
    "a text string",
    "an array",
    "a map",
    "a tag",
    "a simple value",
];
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
/// The head of a map of `n` pairs (version 2) and of an array of `n` items (version 3).
const MAP_HEAD: u8 = 0xa0;
const ARRAY_HEAD: u8 = 0x80;

/// The names of an entry's fields by position: the array item in version 3, the key in
/// version 2 (`docs/audit-log.md`).
const ENTRY_FIELDS: [&str; 20] = [
    "v",
    "index",
    "time",
    "prev",
    "actor",
    "initiator",
    "action",
    "processing",
    "purpose",
    "subject",
    "subject_prev",
    "requested",
    "released",
    "withheld",
    "legal_basis",
    "legal_reference",
    "consent_id",
    "decision",
    "justification",
    "review",
];

/// Which structure (array in version 3, map in version 2) a field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Map {
    Entry,
    Actor,
    Withheld,
}

impl Map {
    fn field_name(self, position: u8) -> &'static str {
        let names: &[&'static str] = match self {
            Map::Entry => &ENTRY_FIELDS,
            Map::Actor => &["actor.kind", "actor.id"],
            Map::Withheld => &["withheld.field", "withheld.reason"],
        };
        names.get(usize::from(position)).copied().unwrap_or("?")
    }
}

/// Why bytes are not the canonical form (small and `Copy`, so the reader's results stay
/// cheap; turned into [`EntryError::Malformed`] once, at the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    EndsEarly,
    Type {
        expected: u8,
        found: u8,
    },
    IndefiniteOrReserved,
    NotShortest,
    /// The expected key of version 2 (its map and number; one byte each, so that results
    /// stay small).
    Key(Map, u8),
    /// Neither a map of 20 pairs (version 2) nor an array of 20 items (version 3).
    Entry,
    Map(u8),
    Array(u8),
    Utf8,
    Bool,
    Bytes32,
    Trailing,
}

impl Fault {
    fn reason(self) -> String {
        match self {
            Fault::EndsEarly => "the entry ends inside a value".into(),
            Fault::Type { expected, found } => format!(
                "expected {}, found {}",
                MAJOR_NAMES[usize::from(expected & 7)],
                MAJOR_NAMES[usize::from(found & 7)]
            ),
            Fault::IndefiniteOrReserved => "indefinite length or reserved head".into(),
            Fault::NotShortest => "integer or length not in its shortest form".into(),
            Fault::Key(map, key) => {
                format!("expected the key {key} (`{}`) next", map.field_name(key))
            }
            Fault::Entry => "expected a map of 20 pairs (version 2) or an array of 20 items \
                             (version 3)"
                .into(),
            Fault::Map(pairs) => format!("expected a map of {pairs} pairs"),
            Fault::Array(items) => format!("expected an array of {items} items"),
            Fault::Utf8 => "text is not valid UTF-8".into(),
            Fault::Bool => "expected a boolean".into(),
            Fault::Bytes32 => "expected a 32-byte byte string".into(),
            Fault::Trailing => "trailing bytes after the entry".into(),
        }
    }
}

/// The field a fault was found in: its position in its array (version 3) or map
/// (version 2, `keyed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct At {
    keyed: bool,
    map: Map,
    position: u8,
}

/// A fault and, when it is inside a field's value, that field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Located {
    fault: Fault,
    at: Option<At>,
}

impl From<Fault> for Located {
    fn from(fault: Fault) -> Self {
        Self { fault, at: None }
    }
}

/// Locates a fault in the field at `position` of `map`.
#[inline(always)]
fn at<const KEYED: bool>(map: Map, position: u8) -> impl Fn(Fault) -> Located {
    move |fault| Located {
        fault,
        at: Some(At {
            keyed: KEYED,
            map,
            position,
        }),
    }
}

impl From<Located> for EntryError {
    fn from(l: Located) -> Self {
        match l.at {
            None => malformed(l.fault.reason()),
            Some(At {
                keyed,
                map,
                position,
            }) => malformed(format!(
                "{} {position} (`{}`): {}",
                if keyed { "the value of key" } else { "item" },
                map.field_name(position),
                l.fault.reason()
            )),
        }
    }
}

impl From<Fault> for EntryError {
    fn from(f: Fault) -> Self {
        Located::from(f).into()
    }
}

/// The encoded items of a list the reader has already checked.
#[derive(Clone, Copy, Default)]
struct Items<'a> {
    len: u64,
    bytes: &'a [u8],
}

/// An entry read from its bytes, borrowing them (texts as their bytes, already checked to
/// be UTF-8); its field rules are not yet checked.
struct View<'a> {
    /// Read in the map form (version 2).
    keyed: bool,
    v: u64,
    /// Hashes and tags borrow the entry's bytes too: returned by value inside `Result`s
    /// they were copied through the stack at an odd offset (after the discriminant), and
    /// the unaligned reloads of those stores showed as the decoder's hottest instructions.
    prev: &'a [u8; 32],
    time: u64,
    actor_id: &'a [u8],
    actor_kind: &'a [u8],
    index: u64,
    action: &'a [u8],
    review: bool,
    purpose: Option<&'a [u8]>,
    subject: Option<&'a [u8; 32]>,
    decision: &'a [u8],
    released: Items<'a>,
    withheld: Items<'a>,
    initiator: Option<&'a [u8]>,
    requested: Items<'a>,
    consent_id: Option<&'a [u8]>,
    processing: Option<&'a [u8]>,
    legal_basis: Option<&'a [u8]>,
    subject_prev: Option<u64>,
    justification: Option<&'a [u8]>,
    legal_reference: Option<&'a [u8]>,
}

/// What a [`View`] holds before the reader fills it in.
const NO_HASH: [u8; 32] = [0; 32];

impl View<'_> {
    /// A view to be filled in by [`Reader::entry`].
    fn empty() -> Self {
        Self {
            keyed: false,
            v: 0,
            prev: &NO_HASH,
            time: 0,
            actor_id: &[],
            actor_kind: &[],
            index: 0,
            action: &[],
            review: false,
            purpose: None,
            subject: None,
            decision: &[],
            released: Items::default(),
            withheld: Items::default(),
            initiator: None,
            requested: Items::default(),
            consent_id: None,
            processing: None,
            legal_basis: None,
            subject_prev: None,
            justification: None,
            legal_reference: None,
        }
    }
}

/// A strict reader of the canonical forms: every head in its shortest form, definite
/// lengths only, and in the map form (`KEYED`, version 2) keys exactly the expected ones
/// in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Fault> {
        let (&b, rest) = self.rest.split_first().ok_or(Fault::EndsEarly)?;
        self.rest = rest;
        Ok(b)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], Fault> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Fault::EndsEarly)?;
        self.rest = rest;
        Ok(head)
    }

    #[inline(always)]
    fn take(&mut self, len: u64) -> Result<&'a [u8], Fault> {
        let len = usize::try_from(len).map_err(|_| Fault::EndsEarly)?;
        let (head, rest) = self.rest.split_at_checked(len).ok_or(Fault::EndsEarly)?;
        self.rest = rest;
        Ok(head)
    }

    /// Skips a `null` if one is next.
    #[inline(always)]
    fn null(&mut self) -> bool {
        match self.rest.split_first() {
            Some((&NULL, rest)) => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// The argument of a head of major type `major`, which must be in its shortest form.
    #[inline(always)]
    fn head(&mut self, major: u8) -> Result<u64, Fault> {
        let initial = self.byte()?;
        if initial >> 5 != major {
            return Err(Fault::Type {
                expected: major,
                found: initial >> 5,
            });
        }
        let info = initial & 0x1f;
        let (value, least) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.byte()?), 24),
            25 => (u64::from(u16::from_be_bytes(*self.array()?)), 1 << 8),
            26 => (u64::from(u32::from_be_bytes(*self.array()?)), 1 << 16),
            27 => (u64::from_be_bytes(*self.array()?), 1 << 32),
            _ => return Err(Fault::IndefiniteOrReserved),
        };
        if value < least {
            return Err(Fault::NotShortest);
        }
        Ok(value)
    }

    /// The next key, which must be exactly the integer `key` of `map` (0..=19: one byte).
    #[inline(always)]
    fn key(&mut self, map: Map, key: u8) -> Result<(), Fault> {
        match self.rest.split_first() {
            Some((&found, rest)) if found == key => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(Fault::Key(map, key)),
        }
    }

    /// The head of a pair (actor, withheld item): a map of 2 pairs in the map form
    /// (`KEYED`, version 2), else an array of 2 items.
    #[inline(always)]
    fn pair_head<const KEYED: bool>(&mut self) -> Result<(), Fault> {
        let (want, fault) = if KEYED {
            (MAP_HEAD + 2, Fault::Map(2))
        } else {
            (ARRAY_HEAD + 2, Fault::Array(2))
        };
        if self.byte()? != want {
            return Err(fault);
        }
        Ok(())
    }

    /// The value of the field at `position` of `map`, read by `read` (after its key in
    /// the map form); a fault in it names the field.
    #[inline(always)]
    fn field<const KEYED: bool, T>(
        &mut self,
        map: Map,
        position: u8,
        read: impl FnOnce(&mut Self) -> Result<T, Fault>,
    ) -> Result<T, Located> {
        if KEYED {
            self.key(map, position)?;
        }
        read(self).map_err(at::<KEYED>(map, position))
    }

    #[inline(always)]
    fn uint(&mut self) -> Result<u64, Fault> {
        self.head(MAJOR_UINT)
    }

    /// A text string's bytes, checked to be UTF-8 (ASCII, the common case, without the
    /// general validator).
    #[inline(always)]
    fn text(&mut self) -> Result<&'a [u8], Fault> {
        let len = self.head(MAJOR_TEXT)?;
        let bytes = self.take(len)?;
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(bytes)
        } else {
            Err(Fault::Utf8)
        }
    }

    #[inline(always)]
    fn opt_text(&mut self) -> Result<Option<&'a [u8]>, Fault> {
        if self.null() {
            return Ok(None);
        }
        self.text().map(Some)
    }

    #[inline(always)]
    fn bool(&mut self) -> Result<bool, Fault> {
        match self.byte()? {
            FALSE => Ok(false),
            TRUE => Ok(true),
            _ => Err(Fault::Bool),
        }
    }

    #[inline(always)]
    fn bytes32(&mut self) -> Result<&'a [u8; 32], Fault> {
        if self.head(MAJOR_BYTES)? != 32 {
            return Err(Fault::Bytes32);
        }
        self.array()
    }

    #[inline(always)]
    fn opt_subject(&mut self) -> Result<Option<&'a [u8; 32]>, Fault> {
        if self.null() {
            return Ok(None);
        }
        self.bytes32().map(Some)
    }

    #[inline(always)]
    fn opt_uint(&mut self) -> Result<Option<u64>, Fault> {
        if self.null() {
            return Ok(None);
        }
        self.uint().map(Some)
    }

    /// The bytes consumed since the reader was at `start` (`self.rest` is always a suffix
    /// of `start`, so the split is in range).
    fn since(&self, start: &'a [u8]) -> &'a [u8] {
        let (consumed, _) = start.split_at(start.len() - self.rest.len());
        consumed
    }

    #[inline(always)]
    fn texts(&mut self, field: &'static str, check: &mut ListCheck) -> Result<Items<'a>, Fault> {
        let len = self.head(MAJOR_ARRAY)?;
        let start = self.rest;
        *check = ListCheck::new(field, len);
        for _ in 0..len {
            let s = self.text()?;
            check.note(text(field, s, true));
        }
        let bytes = self.since(start);
        Ok(Items { len, bytes })
    }

    /// A pair of texts of `map` (the actor or a withheld item), whose head is reported at
    /// the entry's field `outer`: `{0: a, 1: b}` in the map form, `[a, b]` in the array.
    #[inline(always)]
    fn pair<const KEYED: bool>(
        &mut self,
        map: Map,
        outer: u8,
    ) -> Result<(&'a [u8], &'a [u8]), Located> {
        self.pair_head::<KEYED>()
            .map_err(at::<KEYED>(Map::Entry, outer))?;
        let a = self.field::<KEYED, _>(map, 0, Self::text)?;
        let b = self.field::<KEYED, _>(map, 1, Self::text)?;
        Ok((a, b))
    }

    #[inline(always)]
    fn withheld<const KEYED: bool>(&mut self, check: &mut ListCheck) -> Result<Items<'a>, Located> {
        if KEYED {
            self.key(Map::Entry, 13)?;
        }
        let len = self
            .head(MAJOR_ARRAY)
            .map_err(at::<KEYED>(Map::Entry, 13))?;
        let start = self.rest;
        *check = ListCheck::new("withheld", len);
        for _ in 0..len {
            let (field, reason) = self.pair::<KEYED>(Map::Withheld, 13)?;
            check.note(withheld_item(field, reason));
        }
        let bytes = self.since(start);
        Ok(Items { len, bytes })
    }

    /// Reads a whole entry after its head (a map of 20 pairs if `KEYED`, version 2, else
    /// an array of 20 items) and nothing after it, into `w` and the three lists' checks.
    /// Out-parameters, not a returned `(View, [ListCheck; 3])`: moving those aggregates
    /// through `Result`s was the decoder's hottest work (stack copies, unaligned reloads).
    #[inline(always)]
    fn entry<const KEYED: bool>(
        mut self,
        w: &mut View<'a>,
        checks: &mut [ListCheck; 3],
    ) -> Result<(), Located> {
        const E: Map = Map::Entry;
        let [requested_check, released_check, withheld_check] = checks;
        w.keyed = KEYED;
        w.v = self.field::<KEYED, _>(E, 0, Self::uint)?;
        w.index = self.field::<KEYED, _>(E, 1, Self::uint)?;
        w.time = self.field::<KEYED, _>(E, 2, Self::uint)?;
        w.prev = self.field::<KEYED, _>(E, 3, Self::bytes32)?;
        if KEYED {
            self.key(E, 4)?;
        }
        (w.actor_kind, w.actor_id) = self.pair::<KEYED>(Map::Actor, 4)?;
        w.initiator = self.field::<KEYED, _>(E, 5, Self::opt_text)?;
        w.action = self.field::<KEYED, _>(E, 6, Self::text)?;
        w.processing = self.field::<KEYED, _>(E, 7, Self::opt_text)?;
        w.purpose = self.field::<KEYED, _>(E, 8, Self::opt_text)?;
        w.subject = self.field::<KEYED, _>(E, 9, Self::opt_subject)?;
        w.subject_prev = self.field::<KEYED, _>(E, 10, Self::opt_uint)?;
        // `field` spelled out: through its closure the list reads were not inlined.
        if KEYED {
            self.key(E, 11)?;
        }
        w.requested = self
            .texts("requested", requested_check)
            .map_err(at::<KEYED>(E, 11))?;
        if KEYED {
            self.key(E, 12)?;
        }
        w.released = self
            .texts("released", released_check)
            .map_err(at::<KEYED>(E, 12))?;
        w.withheld = self.withheld::<KEYED>(withheld_check)?;
        w.legal_basis = self.field::<KEYED, _>(E, 14, Self::opt_text)?;
        w.legal_reference = self.field::<KEYED, _>(E, 15, Self::opt_text)?;
        w.consent_id = self.field::<KEYED, _>(E, 16, Self::opt_text)?;
        w.decision = self.field::<KEYED, _>(E, 17, Self::text)?;
        w.justification = self.field::<KEYED, _>(E, 18, Self::opt_text)?;
        w.review = self.field::<KEYED, _>(E, 19, Self::bool)?;
        if !self.rest.is_empty() {
            return Err(Fault::Trailing.into());
        }
        Ok(())
    }
}

/// Strictly decodes and checks an entry of either version without copying anything;
/// returns it with its actor kind.
#[inline(always)]
fn decode_view(bytes: &[u8]) -> Result<(View<'_>, ActorKind), EntryError> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(too_large());
    }
    let mut w = View::empty();
    let mut checks = [
        ListCheck::new("requested", 0),
        ListCheck::new("released", 0),
        ListCheck::new("withheld", 0),
    ];
    match bytes.split_first() {
        Some((&head, rest)) if head == ARRAY_HEAD + 20 => {
            Reader::new(rest).entry::<false>(&mut w, &mut checks)
        }
        Some((&head, rest)) if head == MAP_HEAD + 20 => {
            Reader::new(rest).entry::<true>(&mut w, &mut checks)
        }
        Some(_) => Err(Fault::Entry.into()),
        None => Err(Fault::EndsEarly.into()),
    }?;
    let [requested, released, withheld] = checks;
    let kind = Rules {
        v: w.v,
        keyed: w.keyed,
        actor_kind: std::str::from_utf8(w.actor_kind)
            .ok()
            .and_then(ActorKind::parse),
        actor_id: w.actor_id,
        action: w.action,
        decision: w.decision,
        initiator: w.initiator,
        processing: w.processing,
        purpose: w.purpose,
        legal_basis: w.legal_basis,
        legal_reference: w.legal_reference,
        consent_id: w.consent_id,
        justification: w.justification,
        requested,
        released,
        withheld,
        index: w.index,
        has_subject: w.subject.is_some(),
        subject_prev: w.subject_prev,
    }
    .check()?;
    Ok((w, kind))
}

/// What the verifier needs of an entry.
pub(crate) struct EntryLinks {
    pub(crate) index: u64,
    pub(crate) prev: Hash,
    pub(crate) subject: Option<SubjectTag>,
    pub(crate) subject_prev: Option<u64>,
}

/// Strictly decodes an entry of either version, keeping only its links (no allocation).
pub(crate) fn decode_links(bytes: &[u8]) -> Result<EntryLinks, EntryError> {
    let (w, _) = decode_view(bytes)?;
    Ok(EntryLinks {
        index: w.index,
        prev: *w.prev,
        subject: w.subject.map(|t| SubjectTag(*t)),
        subject_prev: w.subject_prev,
    })
}

/// An owned copy of text bytes the reader has checked.
fn owned(bytes: &[u8]) -> Result<String, Fault> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| Fault::Utf8)
}

fn owned_opt(bytes: Option<&[u8]>) -> Result<Option<String>, Fault> {
    bytes.map(owned).transpose()
}

fn owned_texts(items: Items<'_>) -> Result<Vec<String>, Fault> {
    let mut r = Reader::new(items.bytes);
    (0..items.len).map(|_| owned(r.text()?)).collect()
}

fn owned_withheld<const KEYED: bool>(items: Items<'_>) -> Result<Vec<Withheld>, EntryError> {
    let mut r = Reader::new(items.bytes);
    (0..items.len)
        .map(|_| {
            let (field, reason) = r.pair::<KEYED>(Map::Withheld, 13)?;
            Ok(Withheld {
                field: owned(field)?,
                reason: owned(reason)?,
            })
        })
        .collect()
}

/// Strictly decodes an entry of either version.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    let (w, kind) = decode_view(bytes)?;
    let withheld = if w.keyed {
        owned_withheld::<true>(w.withheld)?
    } else {
        owned_withheld::<false>(w.withheld)?
    };
    Ok(Entry {
        index: w.index,
        time_ms: w.time,
        actor: Actor {
            kind,
            id: owned(w.actor_id)?,
        },
        initiator: owned_opt(w.initiator)?,
        action: owned(w.action)?,
        processing: owned_opt(w.processing)?,
        purpose: owned_opt(w.purpose)?,
        requested: owned_texts(w.requested)?,
        released: owned_texts(w.released)?,
        withheld,
        legal_basis: owned_opt(w.legal_basis)?,
        legal_reference: owned_opt(w.legal_reference)?,
        consent_id: owned_opt(w.consent_id)?,
        decision: owned(w.decision)?,
        justification: owned_opt(w.justification)?,
        review: w.review,
        subject: w.subject.map(|t| SubjectTag(*t)),
        subject_prev: w.subject_prev,
        prev: *w.prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The versions the reader accepts: 2 (the map form) and 3 (the array form).
    const VERSIONS: [u64; 2] = [MAP_VERSION, ENTRY_VERSION];

    /// Writes `w` in the version-2 form (the map, `serde_cbor`'s packed struct format:
    /// keys are field positions), whatever its `v`.
    fn write_wire_map(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
        write_cbor(w, out)
    }

    /// The encoder of version `v`: `encode_entry` for 3, and for 2 the version-2
    /// encoder as it was (the same rules, the map form).
    fn encode_as(e: &Entry, v: u64) -> Result<Vec<u8>, EntryError> {
        if v == ENTRY_VERSION {
            return encode_entry(e);
        }
        let mut wire = to_wire(e);
        wire.v = v;
        wire.rules(true).check()?;
        let mut out = Vec::new();
        write_wire_map(&wire, &mut out)?;
        Ok(out)
    }

    /// The reference model: the previous decoder, for both forms (serde_cbor decode,
    /// field rules, then re-encode in the form of the entry's version and compare byte
    /// for byte).
    fn reference_decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(too_large());
        }
        let w: WireEntry<'_> = serde_cbor::from_slice(bytes)
            .map_err(|e: serde_cbor::Error| malformed(e.to_string()))?;
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
            review: w.review,
            subject: w.subject.map(|b| SubjectTag(b.0)),
            subject_prev: w.subject_prev,
            prev: w.prev.0,
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
        d.withheld = vec![
            Withheld {
                field: "c".into(),
                reason: "r".into(),
            },
            Withheld {
                field: "d".into(),
                reason: "s".into(),
            },
        ];
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
        let i = 500_000u64;
        let mut d = crate::entry::EntryDraft::new(
            1_767_225_600_000 + i,
            Actor {
                kind: ActorKind::Agency,
                id: format!("agency-{}", i % 50),
            },
            "access",
            "partial",
        );
        let mut tag = [0u8; 32];
        tag[..8].copy_from_slice(&(i % 100_000).to_be_bytes());
        d.subject = Some(SubjectTag(tag));
        d.subject_prev = Some(i - 100_000);
        d.initiator = Some("officer-17".into());
        d.purpose = Some("benefit-assessment".into());
        d.processing = Some("disclosure".into());
        d.requested = vec!["address".into(), "income".into()];
        d.released = vec!["address".into()];
        d.withheld = vec![Withheld {
            field: "income".into(),
            reason: "no_consent".into(),
        }];
        d.legal_basis = Some("consent".into());
        d.consent_id = Some(format!("c-{i}"));
        Entry::from_draft(d, i, [0x5a; 32])
    }

    /// The hex fixtures of `testdata/entry-v2/`, written by the version-2 encoder before
    /// version 3 existed, with the entries they hold.
    fn v2_fixtures() -> [(&'static str, Entry); 3] {
        [
            (include_str!("../testdata/entry-v2/sample.hex"), sample()),
            (include_str!("../testdata/entry-v2/citizen.hex"), citizen()),
            (include_str!("../testdata/entry-v2/minimal.hex"), minimal()),
        ]
    }

    #[test]
    fn version_2_leaves_written_by_the_old_encoder_still_decode() {
        for (hex_text, e) in v2_fixtures() {
            let bytes = hex::decode(hex_text.trim()).expect("fixture is hex");
            assert_eq!(bytes[..3], [0xb4, 0x00, 0x02], "a map with v = 2");
            assert_eq!(decode_entry(&bytes), Ok(e.clone()));
            assert_eq!(reference_decode(&bytes), Ok(e.clone()));
            let links = decode_links(&bytes).expect("decodes");
            assert_eq!(
                (links.index, links.prev, links.subject, links.subject_prev),
                (e.index, e.prev, e.subject, e.subject_prev)
            );
            // The tests' version-2 encoder is the old one, byte for byte.
            assert_eq!(encode_as(&e, MAP_VERSION), Ok(bytes));
        }
    }

    #[test]
    fn round_trip_is_identity_and_fields_are_in_canonical_order() {
        let e = sample();
        let bytes = encode_entry(&e).unwrap();
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        // Array of 20 items: "v" = 3, "index" = 9, "time" (a 64-bit head).
        assert_eq!(&bytes[..4], &[0x94, 0x03, 0x09, 0x1b]);
        // The actor is [kind, id], each withheld item [field, reason].
        let at = value_at(&bytes, "actor");
        assert_eq!(&bytes[at..at + 8], b"\x82\x66agency");
        let at = value_at(&bytes, "withheld");
        assert_eq!(&bytes[at..at + 9], b"\x81\x82\x66income");
        // Version 2: map of 20 pairs: key 0 ("v") = 2, key 1 ("index") = 9, key 2 ("time").
        let v2 = encode_as(&e, MAP_VERSION).unwrap();
        assert_eq!(decode_entry(&v2).unwrap(), e);
        assert_eq!(&v2[..6], &[0xb4, 0x00, 0x02, 0x01, 0x09, 0x02]);
        for (key, name) in ENTRY_FIELDS.iter().enumerate() {
            assert_eq!(v2[value_at(&v2, name) - 1], key as u8, "{name}");
        }
        let at = value_at(&v2, "actor");
        assert_eq!(&v2[at..at + 9], b"\xa2\x00\x66agency");
    }

    /// Version 3 is version 2 without its keys: 20 entry keys, 2 actor keys and 2 per
    /// withheld item fewer, every value byte the same; so the benchmark's typical access
    /// entry needs one SHA-256 block fewer for its leaf hash.
    #[test]
    fn version_3_drops_exactly_the_key_bytes_of_version_2() {
        for e in [sample(), citizen(), minimal(), typical_access()] {
            let v2 = encode_as(&e, MAP_VERSION).expect("valid");
            let v3 = encode_entry(&e).expect("valid");
            assert_eq!(v2.len() - v3.len(), 22 + 2 * e.withheld.len());
            for name in ENTRY_FIELDS.iter().skip(1) {
                let (a2, a3) = (value_at(&v2, name), value_at(&v3, name));
                let (e2, e3) = (skip(&v2, a2), skip(&v3, a3));
                // The actor and the withheld items lose their keys; every other value
                // is the same bytes.
                let keys = match *name {
                    "actor" => 2,
                    "withheld" => 2 * e.withheld.len(),
                    _ => 0,
                };
                assert_eq!(e2 - a2, e3 - a3 + keys, "{name}");
                if keys == 0 {
                    assert_eq!(v2[a2..e2], v3[a3..e3], "{name}");
                }
            }
        }
        // SHA-256 of 0x00 || leaf: 64-byte blocks, at least 9 bytes of padding.
        let blocks = |leaf: &[u8]| (1 + leaf.len() + 9).div_ceil(64);
        let e = typical_access();
        let (v2, v3) = (
            encode_as(&e, MAP_VERSION).expect("valid"),
            encode_entry(&e).expect("valid"),
        );
        assert_eq!((v2.len(), blocks(&v2)), (251, 5));
        assert_eq!((v3.len(), blocks(&v3)), (227, 4));
    }

    #[test]
    fn non_canonical_integer_is_rejected() {
        for v in VERSIONS {
            let bytes = encode_as(&sample(), v).unwrap();
            // "v" is one byte (2 or 3); rewrite it in the two-byte form 0x18 0x0v.
            let at = value_at(&bytes, "v");
            assert_eq!(u64::from(bytes[at]), v);
            let mut long = bytes[..at].to_vec();
            long.extend_from_slice(&[0x18, v as u8]);
            long.extend_from_slice(&bytes[at + 1..]);
            assert!(matches!(
                decode_entry(&long),
                Err(EntryError::Malformed { .. })
            ));
            assert!(!agree(&long));
        }
    }

    #[test]
    fn trailing_bytes_unknown_versions_and_the_other_versions_form_are_rejected() {
        for v in VERSIONS {
            let mut bytes = encode_as(&sample(), v).unwrap();
            let at = value_at(&bytes, "v");
            for other in [0x00, 0x01, 0x04, 0x17] {
                let mut b = bytes.clone();
                b[at] = other;
                assert_eq!(
                    decode_entry(&b),
                    Err(EntryError::Invalid {
                        field: "v",
                        rule: "unknown entry version"
                    })
                );
                assert!(!agree(&b));
            }
            // A map carrying v = 3, an array carrying v = 2.
            let mut b = bytes.clone();
            b[at] = (MAP_VERSION + ENTRY_VERSION - v) as u8;
            let want = Err(EntryError::Invalid {
                field: "v",
                rule: "not in its version's form (version 2 is a map, version 3 an array)",
            });
            assert_eq!(decode_entry(&b), want);
            assert_eq!(reference_decode(&b), want);
            assert!(decode_links(&b).is_err());
            bytes.push(0);
            assert!(decode_entry(&bytes).is_err());
            assert!(!agree(&bytes));
        }
    }

    /// Each version's head with the other version's inner forms (an array entry with map
    /// pairs, a map entry with array pairs) is refused, naming the field.
    #[test]
    fn pairs_must_have_the_form_of_their_entry() {
        let e = sample();
        let (v2, v3) = (
            encode_as(&e, MAP_VERSION).unwrap(),
            encode_entry(&e).unwrap(),
        );
        // The v3 entry with the actor as the map {0: kind, 1: id}.
        let at = value_at(&v3, "actor");
        let mut b = v3[..at].to_vec();
        b.extend_from_slice(b"\xa2\x00\x66agency\x01\x6atax-office");
        b.extend_from_slice(&v3[skip(&v3, at)..]);
        assert_eq!(
            decode_entry(&b),
            Err(malformed("item 4 (`actor`): expected an array of 2 items"))
        );
        assert!(!agree(&b));
        // The v2 entry with the withheld item as the array [field, reason].
        let at = value_at(&v2, "withheld");
        let mut b = v2[..at].to_vec();
        b.extend_from_slice(b"\x81\x82\x66income\x6ano_consent");
        b.extend_from_slice(&v2[skip(&v2, at)..]);
        assert_eq!(
            decode_entry(&b),
            Err(malformed(
                "the value of key 13 (`withheld`): expected a map of 2 pairs"
            ))
        );
        assert!(!agree(&b));
        // v3 with a 3-item actor, v2 with a 1-pair actor.
        let at = value_at(&v3, "actor");
        let mut b = v3.clone();
        b[at] = 0x83;
        assert!(!agree(&b));
        let at = value_at(&v2, "actor");
        let mut b = v2.clone();
        b[at] = 0xa1;
        assert!(!agree(&b));
    }

    #[test]
    fn citizen_actor_with_id_is_refused() {
        let mut e = sample();
        e.actor = Actor {
            kind: ActorKind::Citizen,
            id: "123".into(),
        };
        for v in VERSIONS {
            assert!(matches!(
                encode_as(&e, v),
                Err(EntryError::Invalid {
                    field: "actor.id",
                    ..
                })
            ));
        }
    }

    #[test]
    fn samples_round_trip_and_their_links_are_read() {
        for v in VERSIONS {
            for e in [sample(), citizen(), minimal(), typical_access()] {
                let bytes = encode_as(&e, v).expect("valid");
                assert_eq!(decode_entry(&bytes), Ok(e.clone()));
                assert_eq!(reference_decode(&bytes), Ok(e.clone()));
                let links = decode_links(&bytes).expect("decodes");
                assert_eq!(
                    (links.index, links.prev, links.subject, links.subject_prev),
                    (e.index, e.prev, e.subject, e.subject_prev)
                );
            }
        }
    }

    /// Every substitution, deletion and insertion of one byte in three valid encodings of
    /// each version is accepted or rejected exactly as the reference model does (all are
    /// rejected but the few that spell another valid entry, e.g. another time or flag).
    #[test]
    fn every_single_byte_change_is_judged_like_the_reference() {
        for v in VERSIONS {
            for e in [sample(), citizen(), minimal()] {
                let bytes = encode_as(&e, v).expect("valid");
                let mut accepted = 0;
                for pos in 0..=bytes.len() {
                    for b in 0..=255u8 {
                        let mut ins = bytes.clone();
                        ins.insert(pos, b);
                        accepted += usize::from(agree(&ins));
                        if pos < bytes.len() && bytes[pos] != b {
                            let mut sub = bytes.clone();
                            sub[pos] = b;
                            accepted += usize::from(agree(&sub));
                        }
                    }
                    if pos < bytes.len() {
                        let mut del = bytes.clone();
                        del.remove(pos);
                        accepted += usize::from(agree(&del));
                        assert!(!agree(&bytes[..pos]), "a prefix is never an entry");
                    }
                }
                assert!(accepted > 0, "some changes spell another valid entry");
            }
        }
    }

    #[test]
    fn malformed_reasons_name_what_was_expected_and_found() {
        assert_eq!(
            Reader::new(b"\x61x").uint(),
            Err(Fault::Type {
                expected: MAJOR_UINT,
                found: MAJOR_TEXT
            })
        );
        assert_eq!(
            EntryError::from(Fault::Type {
                expected: MAJOR_UINT,
                found: MAJOR_TEXT
            })
            .to_string(),
            "entry bytes are not a canonical entry of version 2 or 3: expected an unsigned \
             integer, found a text string"
        );
        assert_eq!(Reader::new(b"\x18\x17").uint(), Err(Fault::NotShortest));
        assert_eq!(
            Reader::new(b"\x1f").uint(),
            Err(Fault::IndefiniteOrReserved)
        );
        assert_eq!(Reader::new(b"\x19\x01").uint(), Err(Fault::EndsEarly));
        assert_eq!(
            Reader::new(b"\x03").key(Map::Entry, 2),
            Err(Fault::Key(Map::Entry, 2))
        );
        assert_eq!(
            Reader::new(b"").key(Map::Entry, 2),
            Err(Fault::Key(Map::Entry, 2))
        );
        assert_eq!(
            EntryError::from(Fault::Key(Map::Entry, 2)).to_string(),
            "entry bytes are not a canonical entry of version 2 or 3: expected the key 2 \
             (`time`) next"
        );
        // In version 3 a wrong value names its item; in version 2 its key.
        let bytes = encode_entry(&minimal()).expect("valid");
        let at = value_at(&bytes, "initiator");
        let mut b = bytes.clone();
        b[at] = 0x00;
        assert_eq!(
            decode_entry(&b).map_err(|e| e.to_string()),
            Err(
                "entry bytes are not a canonical entry of version 2 or 3: item 5 \
                 (`initiator`): expected a text string, found an unsigned integer"
                    .into()
            )
        );
        let mut b = bytes.clone();
        b[value_at(&bytes, "actor") + 1] = 0x40;
        assert_eq!(
            decode_entry(&b),
            Err(malformed(
                "item 0 (`actor.kind`): expected a text string, found a byte string"
            ))
        );
        let mut b = bytes.clone();
        b[value_at(&bytes, "review")] = 0xf6;
        assert_eq!(
            decode_entry(&b),
            Err(malformed("item 19 (`review`): expected a boolean"))
        );
        let v2 = encode_as(&minimal(), MAP_VERSION).expect("valid");
        let at = value_at(&v2, "initiator");
        let mut b = v2.clone();
        b[at] = 0x00;
        assert_eq!(
            decode_entry(&b),
            Err(malformed(
                "the value of key 5 (`initiator`): expected a text string, found an \
                 unsigned integer"
            ))
        );
        let mut b = v2.clone();
        b[at - 1] = 0x06;
        assert_eq!(
            decode_entry(&b),
            Err(malformed("expected the key 5 (`initiator`) next"))
        );
        // Neither version's head; nothing at all; a byte after the entry.
        for head in [0xb3, 0xb5, 0x93, 0x95, 0x00, 0xbf, 0x9f] {
            let mut b = bytes.clone();
            b[0] = head;
            assert_eq!(decode_entry(&b), Err(EntryError::from(Fault::Entry)));
        }
        assert_eq!(decode_entry(b""), Err(EntryError::from(Fault::EndsEarly)));
        let mut b = bytes.clone();
        b.push(0xf6);
        assert_eq!(decode_entry(&b), Err(EntryError::from(Fault::Trailing)));
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
        if bytes[0] == ARRAY_HEAD + 20 {
            return (0..position).fold(1, |at, _| skip(bytes, at));
        }
        let mut at = 1;
        while usize::from(bytes[at]) != position {
            at = skip(bytes, skip(bytes, at));
        }
        at + 1
    }

    /// Rewrites the head of the field `key` (its shortest form) in every wider form: only
    /// the shortest decodes, as for the reference model.
    fn only_shortest_head_decodes(e: &Entry, v: u64, key: &str, major: u8, value: u64) {
        let bytes = encode_as(e, v).expect("valid");
        let at = value_at(&bytes, key);
        let forms = heads(major, value);
        assert_eq!(&bytes[at..at + forms[0].len()], forms[0].as_slice());
        for (i, form) in forms.iter().enumerate() {
            let mut b = bytes[..at].to_vec();
            b.extend_from_slice(form);
            b.extend_from_slice(&bytes[at + forms[0].len()..]);
            assert_eq!(agree(&b), i == 0, "v{v}: {key} = {value} in form {i}");
        }
    }

    #[test]
    fn integers_and_lengths_must_use_their_shortest_head() {
        let edges = [
            0,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
        ];
        for v in VERSIONS {
            for value in edges {
                let mut e = minimal();
                e.time_ms = value;
                only_shortest_head_decodes(&e, v, "time", MAJOR_UINT, value);
                let mut e = sample();
                e.index = value.max(1);
                e.subject_prev = Some(value.max(1) - 1);
                only_shortest_head_decodes(&e, v, "index", MAJOR_UINT, value.max(1));
                only_shortest_head_decodes(&e, v, "subject_prev", MAJOR_UINT, value.max(1) - 1);
            }
            for len in [0usize, 1, 23, 24, 255, 256, 4096] {
                let mut e = minimal();
                e.justification = Some("j".repeat(len));
                only_shortest_head_decodes(&e, v, "justification", MAJOR_TEXT, len as u64);
                e.requested = vec!["f".into(); len.min(1024)];
                only_shortest_head_decodes(&e, v, "requested", MAJOR_ARRAY, len.min(1024) as u64);
                e.withheld = vec![
                    Withheld {
                        field: "f".into(),
                        reason: "r".into(),
                    };
                    len.min(1024)
                ];
                only_shortest_head_decodes(&e, v, "withheld", MAJOR_ARRAY, len.min(1024) as u64);
            }
        }
    }

    #[test]
    fn indefinite_and_reserved_heads_are_rejected() {
        for v in VERSIONS {
            let bytes = encode_as(&minimal(), v).expect("valid");
            // "time": 0 is 0x00.
            let at = value_at(&bytes, "time");
            assert_eq!(bytes[at], 0x00);
            for info in 28..=31u8 {
                let mut b = bytes.clone();
                b[at] = info;
                assert!(!agree(&b));
                assert!(matches!(
                    decode_entry(&b),
                    Err(EntryError::Malformed { .. })
                ));
            }
            // "action": "x" as an indefinite-length text of one chunk.
            let at = value_at(&bytes, "action");
            assert_eq!(&bytes[at..at + 2], b"\x61x");
            let mut b = bytes[..at].to_vec();
            b.extend_from_slice(b"\x7f\x61x\xff");
            b.extend_from_slice(&bytes[at + 2..]);
            assert!(!agree(&b));
            // The entry, the actor and a list as indefinite-length containers.
            let mut b = bytes.clone();
            b[0] |= 0x1f;
            b.push(0xff);
            assert!(!agree(&b));
            let at_actor = value_at(&bytes, "actor");
            let end = skip(&bytes, at_actor);
            let mut b = bytes[..at_actor].to_vec();
            b.push(bytes[at_actor] | 0x1f);
            b.extend_from_slice(&bytes[at_actor + 1..end]);
            b.push(0xff);
            b.extend_from_slice(&bytes[end..]);
            assert!(!agree(&b));
            let at_list = value_at(&bytes, "requested");
            let mut b = bytes[..at_list].to_vec();
            b.extend_from_slice(b"\x9f\xff");
            b.extend_from_slice(&bytes[at_list + 1..]);
            assert!(!agree(&b));
            // A tagged value (tag 0 on the time) and a byte string where text is expected.
            let at_time = value_at(&bytes, "time");
            let mut b = bytes[..at_time].to_vec();
            b.push(0xc0);
            b.extend_from_slice(&bytes[at_time..]);
            assert!(!agree(&b));
            let mut b = bytes.clone();
            b[at] = 0x41;
            assert!(!agree(&b));
        }
    }

    /// An edit that breaks a rule, and the field and rule reported.
    type RuleCase = (Box<dyn Fn(&mut Entry)>, &'static str, &'static str);

    /// Canonical bytes of entries that break one field rule: the decoder reports exactly
    /// the reference model's error, and the encoder refuses the entry with the same one.
    #[test]
    fn each_field_rule_is_enforced_on_both_sides() {
        let cases: Vec<RuleCase> = vec![
            (
                Box::new(|e| e.action.clear()),
                "action",
                "must not be empty",
            ),
            (
                Box::new(|e| e.decision.clear()),
                "decision",
                "must not be empty",
            ),
            (
                Box::new(|e| e.actor.id.clear()),
                "actor.id",
                "must not be empty",
            ),
            (
                Box::new(|e| e.actor.id = "x".repeat(MAX_TEXT_LEN + 1)),
                "actor.id",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| {
                    e.actor = Actor {
                        kind: ActorKind::Citizen,
                        id: "1".into(),
                    }
                }),
                "actor.id",
                "a citizen actor has an empty id (the citizen is the subject)",
            ),
            (
                Box::new(|e| e.action = "x".repeat(MAX_TEXT_LEN + 1)),
                "action",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.decision = "x".repeat(MAX_TEXT_LEN + 1)),
                "decision",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.initiator = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "initiator",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.processing = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "processing",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.purpose = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "purpose",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.legal_basis = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "legal_basis",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.legal_reference = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "legal_reference",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.consent_id = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "consent_id",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.justification = Some("x".repeat(MAX_TEXT_LEN + 1))),
                "justification",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.requested = vec!["a".into(), String::new()]),
                "requested",
                "must not be empty",
            ),
            (
                Box::new(|e| e.requested = vec!["a".into(); MAX_LIST_LEN + 1]),
                "requested",
                "more than 1024 items",
            ),
            (
                Box::new(|e| e.released = vec![String::new(), "x".repeat(MAX_TEXT_LEN + 1)]),
                "released",
                "must not be empty",
            ),
            (
                Box::new(|e| e.released = vec!["a".into(), "x".repeat(MAX_TEXT_LEN + 1)]),
                "released",
                "longer than 4096 bytes",
            ),
            (
                Box::new(|e| e.released = vec!["a".into(); MAX_LIST_LEN + 1]),
                "released",
                "more than 1024 items",
            ),
            (
                Box::new(|e| {
                    e.withheld = vec![
                        Withheld {
                            field: "f".into(),
                            reason: "r".into(),
                        };
                        MAX_LIST_LEN + 1
                    ]
                }),
                "withheld",
                "more than 1024 items",
            ),
            (
                Box::new(|e| {
                    e.withheld = vec![
                        Withheld {
                            field: "f".into(),
                            reason: "r".into(),
                        },
                        Withheld {
                            field: String::new(),
                            reason: String::new(),
                        },
                    ]
                }),
                "withheld.field",
                "must not be empty",
            ),
            (
                Box::new(|e| {
                    e.withheld = vec![
                        Withheld {
                            field: "f".into(),
                            reason: String::new(),
                        },
                        Withheld {
                            field: String::new(),
                            reason: "r".into(),
                        },
                    ]
                }),
                "withheld.reason",
                "must not be empty",
            ),
            (
                Box::new(|e| e.subject = None),
                "subject_prev",
                "set without a subject",
            ),
            (
                Box::new(|e| e.subject_prev = Some(e.index)),
                "subject_prev",
                "not below the entry's index",
            ),
            (
                Box::new(|e| e.subject_prev = Some(u64::MAX)),
                "subject_prev",
                "not below the entry's index",
            ),
            // Two broken rules: the first in rule order is reported.
            (
                Box::new(|e| {
                    e.decision.clear();
                    e.requested = vec![String::new()];
                }),
                "decision",
                "must not be empty",
            ),
        ];
        for (edit, field, rule) in cases {
            let mut e = sample();
            edit(&mut e);
            let want = Err(EntryError::Invalid { field, rule });
            for v in VERSIONS {
                assert_eq!(encode_as(&e, v), want.clone().map(|_: ()| Vec::new()));
                let bytes = raw(&e, v);
                assert_eq!(decode_entry(&bytes), want.clone().map(|_: ()| e.clone()));
                assert_eq!(reference_decode(&bytes).map(|_| ()), want);
                assert!(decode_links(&bytes).is_err());
            }
        }
        // At the limits themselves every rule is met.
        let mut e = sample();
        e.action = "x".repeat(MAX_TEXT_LEN);
        e.purpose = Some(String::new());
        e.requested = vec!["a".into(); MAX_LIST_LEN];
        e.released = vec!["x".repeat(MAX_TEXT_LEN)];
        e.withheld = vec![
            Withheld {
                field: "f".into(),
                reason: "r".into(),
            };
            MAX_LIST_LEN
        ];
        e.subject_prev = Some(e.index - 1);
        for v in VERSIONS {
            let bytes = encode_as(&e, v).expect("valid at the limits");
            assert_eq!(decode_entry(&bytes), Ok(e.clone()));
            assert!(agree(&bytes));
        }
        // Another version, or a version in the other's form, is reported before any other
        // broken rule, in both forms.
        e.action.clear();
        for keyed in [true, false] {
            assert_eq!(
                decode_entry(&raw_in(&e, 1, keyed)),
                Err(EntryError::Invalid {
                    field: "v",
                    rule: "unknown entry version"
                })
            );
            let v = if keyed { ENTRY_VERSION } else { MAP_VERSION };
            let want = Err(EntryError::Invalid {
                field: "v",
                rule: "not in its version's form (version 2 is a map, version 3 an array)",
            });
            assert_eq!(decode_entry(&raw_in(&e, v, keyed)), want);
            assert_eq!(reference_decode(&raw_in(&e, v, keyed)), want);
        }
    }

    /// An entry of `target` encoded bytes in the form of version `v` (its justification
    /// pads it), serialised without the encoder's rules.
    fn entry_of_len(v: u64, target: usize) -> (Entry, Vec<u8>) {
        let mut e = minimal();
        e.requested = vec!["r".repeat(MAX_TEXT_LEN); 255];
        e.justification = Some("j".repeat(1000));
        let short = raw(&e, v).len();
        e.justification = Some("j".repeat(1000 + target - short));
        let bytes = raw(&e, v);
        assert_eq!(bytes.len(), target);
        (e, bytes)
    }

    #[test]
    fn an_entry_of_exactly_1_mib_is_accepted_and_one_byte_more_is_refused() {
        for v in VERSIONS {
            let (e, bytes) = entry_of_len(v, MAX_ENTRY_LEN);
            assert_eq!(encode_as(&e, v).as_ref(), Ok(&bytes));
            assert_eq!(decode_entry(&bytes), Ok(e));
            let (e, bytes) = entry_of_len(v, MAX_ENTRY_LEN + 1);
            assert_eq!(encode_as(&e, v), Err(too_large()));
            assert_eq!(decode_entry(&bytes), Err(too_large()));
            assert!(decode_links(&bytes).is_err());
            assert!(!agree(&bytes));
        }
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            30 => "[a-z._-]{1,12}",
            6 => ".{1,20}",
            2 => Just(String::new()),
            1 => (4095usize..=4097).prop_map(|n| "t".repeat(n)),
        ]
    }

    fn any_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..30,
            any::<u64>(),
            250u64..70_000,
            (1u64 << 32) - 3..(1 << 32) + 3
        ]
    }

    fn any_kind() -> impl Strategy<Value = ActorKind> {
        prop_oneof![
            Just(ActorKind::Agency),
            Just(ActorKind::Citizen),
            Just(ActorKind::Auditor),
            Just(ActorKind::Operator),
            Just(ActorKind::System),
        ]
    }

    /// Entries of every shape, most valid, some breaking a field rule.
    fn any_entry() -> impl Strategy<Value = Entry> {
        let texts = || proptest::collection::vec(any_text(), 0..4);
        let opt = || proptest::option::of(any_text());
        (
            (
                any_u64(),
                any_u64(),
                any_kind(),
                any_text(),
                any_text(),
                any_text(),
            ),
            (opt(), opt(), opt(), opt(), opt(), opt(), opt()),
            (
                texts(),
                texts(),
                proptest::collection::vec((any_text(), any_text()), 0..3),
            ),
            (
                any::<bool>(),
                proptest::option::of(any::<[u8; 32]>()),
                proptest::option::of(any_u64()),
                any::<[u8; 32]>(),
            ),
        )
            .prop_map(|(a, b, c, d)| {
                let (index, time_ms, kind, id, action, decision) = a;
                let (
                    initiator,
                    processing,
                    purpose,
                    legal_basis,
                    legal_reference,
                    consent_id,
                    justification,
                ) = b;
                let (requested, released, withheld) = c;
                let (review, subject, subject_prev, prev) = d;
                Entry {
                    index,
                    time_ms,
                    actor: Actor {
                        kind,
                        id: if kind == ActorKind::Citizen && id.len() < 5 {
                            String::new()
                        } else {
                            id
                        },
                    },
                    initiator,
                    action,
                    processing,
                    purpose,
                    requested,
                    released,
                    withheld: withheld
                        .into_iter()
                        .map(|(field, reason)| Withheld { field, reason })
                        .collect(),
                    legal_basis,
                    legal_reference,
                    consent_id,
                    decision,
                    justification,
                    review,
                    subject: subject.map(SubjectTag),
                    subject_prev,
                    prev,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A valid entry round-trips in both versions; an invalid one is refused by the
        /// encoders, and its canonical bytes by the decoder and the reference, all with
        /// the same error.
        #[test]
        fn decode_inverts_encode_and_rules_match_the_reference(
            e in any_entry(),
            v in prop::sample::select(VERSIONS.to_vec()),
        ) {
            match encode_as(&e, v) {
                Ok(bytes) => {
                    prop_assert_eq!(decode_entry(&bytes), Ok(e.clone()));
                    prop_assert_eq!(reference_decode(&bytes), Ok(e));
                }
                Err(err) => {
                    let bytes = raw(&e, v);
                    prop_assert_eq!(decode_entry(&bytes), Err(err.clone()));
                    prop_assert_eq!(reference_decode(&bytes).map(|_| ()), Err(err));
                }
            }
        }

        /// Any few substitutions, insertions and deletions of bytes in a valid encoding of
        /// either version: the decoder accepts exactly when the reference model does, with
        /// the same entry.
        #[test]
        fn mutated_bytes_are_judged_like_the_reference(
            e in any_entry(),
            v in prop::sample::select(VERSIONS.to_vec()),
            edits in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..5),
        ) {
            let Ok(mut bytes) = encode_as(&e, v) else { return Ok(()) };
            for (kind, at, b) in edits {
                match kind {
                    0 if !bytes.is_empty() => {
                        let i = at.index(bytes.len());
                        bytes[i] = b;
                    }
                    1 => bytes.insert(at.index(bytes.len() + 1), b),
                    _ if !bytes.is_empty() => {
                        bytes.remove(at.index(bytes.len()));
                    }
                    _ => {}
                }
            }
            agree(&bytes);
        }
    }
}
