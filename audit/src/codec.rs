//! The canonical CBOR codec of entries (the only module that knows `serde_cbor`).
//!
//! An entry (format version 2) is a CBOR map with small unsigned integer keys 0..=19 in
//! ascending order (RFC 8949 §4.2.1 deterministic order), every key always present (`null`
//! for an absent value), definite lengths and shortest integer forms; `docs/audit-log.md`
//! lists the keys. Integer keys (as in COSE and CWT) keep the leaf small: the leaf bytes
//! are what every verifier hashes, so each byte saved is hashing saved on every audit.
//!
//! Encoding goes through `serde_cbor` in its packed form (a struct field's key is its
//! position, so the struct's field order is the key order).
//! Decoding is a hand-written strict reader of exactly that form: each key must be the
//! next one in order, each head must use the shortest form, lengths are definite and no
//! byte may follow the map. It accepts exactly the bytes the encoder can produce for a
//! valid entry, so one entry has exactly one encoding, without re-encoding anything (the
//! previous decode, re-encode and compare path is kept in the tests as the reference
//! model the reader is checked against).

#[cfg(test)]
use serde::de::{Deserializer, Visitor};
use serde::ser::Serializer;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

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

#[derive(Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(deny_unknown_fields)]
struct WireActor<'a> {
    /// key 0
    kind: &'a str,
    /// key 1
    id: &'a str,
}

#[derive(Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(deny_unknown_fields)]
struct WireWithheld<'a> {
    /// key 0
    field: &'a str,
    /// key 1
    reason: &'a str,
}

/// Field position = integer key (0..=19) = canonical key order. Do not reorder: the reader
/// (`Reader::entry`) and `docs/audit-log.md` use these numbers.
#[derive(Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(deny_unknown_fields)]
struct WireEntry<'a> {
    v: u64,
    index: u64,
    time: u64,
    prev: B32,
    #[serde(borrow)]
    actor: WireActor<'a>,
    #[serde(borrow)]
    initiator: Option<&'a str>,
    action: &'a str,
    #[serde(borrow)]
    processing: Option<&'a str>,
    #[serde(borrow)]
    purpose: Option<&'a str>,
    subject: Option<B32>,
    subject_prev: Option<u64>,
    #[serde(borrow)]
    requested: Vec<&'a str>,
    #[serde(borrow)]
    released: Vec<&'a str>,
    #[serde(borrow)]
    withheld: Vec<WireWithheld<'a>>,
    #[serde(borrow)]
    legal_basis: Option<&'a str>,
    #[serde(borrow)]
    legal_reference: Option<&'a str>,
    #[serde(borrow)]
    consent_id: Option<&'a str>,
    decision: &'a str,
    #[serde(borrow)]
    justification: Option<&'a str>,
    review: bool,
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
        if self.v != ENTRY_VERSION {
            return Err(Broken {
                field: "v",
                rule: "unknown entry version",
            });
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
    fn rules(&self) -> Rules<'a> {
        Rules {
            v: self.v,
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

fn write_wire(w: &WireEntry<'_>, out: &mut Vec<u8>) -> Result<(), EntryError> {
    out.clear();
    let mut ser = serde_cbor::Serializer::new(&mut *out).packed_format();
    w.serialize(&mut ser).map_err(|e| EntryError::Malformed {
        reason: e.to_string(),
    })?;
    if out.len() > MAX_ENTRY_LEN {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> EntryError {
    EntryError::Invalid {
        field: "entry",
        rule: "encoded entry larger than 1 MiB",
    }
}

pub(crate) fn encode_entry(e: &Entry) -> Result<Vec<u8>, EntryError> {
    let wire = to_wire(e);
    wire.rules().check()?;
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

/// The names of an entry's keys, by key number (`docs/audit-log.md`).
const ENTRY_KEYS: [&str; 20] = [
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

/// Which map a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Map {
    Entry,
    Actor,
    Withheld,
}

impl Map {
    fn key_name(self, key: u8) -> &'static str {
        let names: &[&'static str] = match self {
            Map::Entry => &ENTRY_KEYS,
            Map::Actor => &["actor.kind", "actor.id"],
            Map::Withheld => &["withheld.field", "withheld.reason"],
        };
        names.get(usize::from(key)).copied().unwrap_or("?")
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
    /// The expected key (its map and number; one byte each, so that results stay small).
    Key(Map, u8),
    Map(u8),
    Utf8,
    Bool,
    Bytes32,
    Trailing,
}

impl From<Fault> for EntryError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::EndsEarly => malformed("the entry ends inside a value"),
            Fault::Type { expected, found } => malformed(format!(
                "expected {}, found {}",
                MAJOR_NAMES[usize::from(expected & 7)],
                MAJOR_NAMES[usize::from(found & 7)]
            )),
            Fault::IndefiniteOrReserved => malformed("indefinite length or reserved head"),
            Fault::NotShortest => malformed("integer or length not in its shortest form"),
            Fault::Key(map, key) => malformed(format!(
                "expected the key {key} (`{}`) next",
                map.key_name(key)
            )),
            Fault::Map(pairs) => malformed(format!("expected a map of {pairs} pairs")),
            Fault::Utf8 => malformed("text is not valid UTF-8"),
            Fault::Bool => malformed("expected a boolean"),
            Fault::Bytes32 => malformed("expected a 32-byte byte string"),
            Fault::Trailing => malformed("trailing bytes after the entry"),
        }
    }
}

/// The encoded items of a list the reader has already checked.
#[derive(Clone, Copy)]
struct Items<'a> {
    len: u64,
    bytes: &'a [u8],
}

/// An entry read from its bytes, borrowing them (texts as their bytes, already checked to
/// be UTF-8); its field rules are not yet checked.
struct View<'a> {
    v: u64,
    prev: Hash,
    time: u64,
    actor_id: &'a [u8],
    actor_kind: &'a [u8],
    index: u64,
    action: &'a [u8],
    review: bool,
    purpose: Option<&'a [u8]>,
    subject: Option<SubjectTag>,
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

/// A strict reader of the canonical form: every head in its shortest form, definite
/// lengths only, keys exactly the expected ones in order.
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
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Fault::EndsEarly)?;
        self.rest = rest;
        Ok(*head)
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
            25 => (u64::from(u16::from_be_bytes(self.array()?)), 1 << 8),
            26 => (u64::from(u32::from_be_bytes(self.array()?)), 1 << 16),
            27 => (u64::from_be_bytes(self.array()?), 1 << 32),
            _ => return Err(Fault::IndefiniteOrReserved),
        };
        if value < least {
            return Err(Fault::NotShortest);
        }
        Ok(value)
    }

    /// The next key, which must be exactly the integer `key` of `map` (0..=23: one byte).
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

    /// A map head of exactly `pairs` pairs.
    #[inline(always)]
    fn map(&mut self, pairs: u8) -> Result<(), Fault> {
        if self.byte()? != 0xa0 + pairs {
            return Err(Fault::Map(pairs));
        }
        Ok(())
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
    fn bytes32(&mut self) -> Result<[u8; 32], Fault> {
        if self.head(MAJOR_BYTES)? != 32 {
            return Err(Fault::Bytes32);
        }
        self.array()
    }

    /// The bytes consumed since the reader was at `start` (`self.rest` is always a suffix
    /// of `start`, so the split is in range).
    fn since(&self, start: &'a [u8]) -> &'a [u8] {
        let (consumed, _) = start.split_at(start.len() - self.rest.len());
        consumed
    }

    #[inline(always)]
    fn texts(&mut self, field: &'static str) -> Result<(Items<'a>, ListCheck), Fault> {
        let len = self.head(MAJOR_ARRAY)?;
        let start = self.rest;
        let mut check = ListCheck::new(field, len);
        for _ in 0..len {
            let s = self.text()?;
            check.note(text(field, s, true));
        }
        let bytes = self.since(start);
        Ok((Items { len, bytes }, check))
    }

    #[inline(always)]
    fn withheld_pair(&mut self) -> Result<(&'a [u8], &'a [u8]), Fault> {
        self.map(2)?;
        self.key(Map::Withheld, 0)?;
        let field = self.text()?;
        self.key(Map::Withheld, 1)?;
        Ok((field, self.text()?))
    }

    #[inline(always)]
    fn withheld(&mut self) -> Result<(Items<'a>, ListCheck), Fault> {
        let len = self.head(MAJOR_ARRAY)?;
        let start = self.rest;
        let mut check = ListCheck::new("withheld", len);
        for _ in 0..len {
            let (field, reason) = self.withheld_pair()?;
            check.note(withheld_item(field, reason));
        }
        let bytes = self.since(start);
        Ok((Items { len, bytes }, check))
    }

    /// Reads a whole entry (the map and nothing after it).
    #[inline(always)]
    fn entry(mut self) -> Result<(View<'a>, [ListCheck; 3]), Fault> {
        self.map(20)?;
        self.key(Map::Entry, 0)?;
        let v = self.uint()?;
        self.key(Map::Entry, 1)?;
        let index = self.uint()?;
        self.key(Map::Entry, 2)?;
        let time = self.uint()?;
        self.key(Map::Entry, 3)?;
        let prev = self.bytes32()?;
        self.key(Map::Entry, 4)?;
        self.map(2)?;
        self.key(Map::Actor, 0)?;
        let actor_kind = self.text()?;
        self.key(Map::Actor, 1)?;
        let actor_id = self.text()?;
        self.key(Map::Entry, 5)?;
        let initiator = self.opt_text()?;
        self.key(Map::Entry, 6)?;
        let action = self.text()?;
        self.key(Map::Entry, 7)?;
        let processing = self.opt_text()?;
        self.key(Map::Entry, 8)?;
        let purpose = self.opt_text()?;
        self.key(Map::Entry, 9)?;
        let subject = if self.null() {
            None
        } else {
            Some(SubjectTag(self.bytes32()?))
        };
        self.key(Map::Entry, 10)?;
        let subject_prev = if self.null() {
            None
        } else {
            Some(self.uint()?)
        };
        self.key(Map::Entry, 11)?;
        let (requested, requested_check) = self.texts("requested")?;
        self.key(Map::Entry, 12)?;
        let (released, released_check) = self.texts("released")?;
        self.key(Map::Entry, 13)?;
        let (withheld, withheld_check) = self.withheld()?;
        self.key(Map::Entry, 14)?;
        let legal_basis = self.opt_text()?;
        self.key(Map::Entry, 15)?;
        let legal_reference = self.opt_text()?;
        self.key(Map::Entry, 16)?;
        let consent_id = self.opt_text()?;
        self.key(Map::Entry, 17)?;
        let decision = self.text()?;
        self.key(Map::Entry, 18)?;
        let justification = self.opt_text()?;
        self.key(Map::Entry, 19)?;
        let review = self.bool()?;
        if !self.rest.is_empty() {
            return Err(Fault::Trailing);
        }
        let view = View {
            v,
            prev,
            time,
            actor_id,
            actor_kind,
            index,
            action,
            review,
            purpose,
            subject,
            decision,
            released,
            withheld,
            initiator,
            requested,
            consent_id,
            processing,
            legal_basis,
            subject_prev,
            justification,
            legal_reference,
        };
        Ok((view, [requested_check, released_check, withheld_check]))
    }
}

/// Strictly decodes and checks an entry without copying anything; returns it with its
/// actor kind.
#[inline(always)]
fn decode_view(bytes: &[u8]) -> Result<(View<'_>, ActorKind), EntryError> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(too_large());
    }
    let (w, [requested, released, withheld]) = Reader::new(bytes).entry()?;
    let kind = Rules {
        v: w.v,
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

/// Strictly decodes an entry, keeping only its links (no allocation).
pub(crate) fn decode_links(bytes: &[u8]) -> Result<EntryLinks, EntryError> {
    let (w, _) = decode_view(bytes)?;
    Ok(EntryLinks {
        index: w.index,
        prev: w.prev,
        subject: w.subject,
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

fn owned_withheld(items: Items<'_>) -> Result<Vec<Withheld>, Fault> {
    let mut r = Reader::new(items.bytes);
    (0..items.len)
        .map(|_| {
            let (field, reason) = r.withheld_pair()?;
            Ok(Withheld {
                field: owned(field)?,
                reason: owned(reason)?,
            })
        })
        .collect()
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    let (w, kind) = decode_view(bytes)?;
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
        withheld: owned_withheld(w.withheld)?,
        legal_basis: owned_opt(w.legal_basis)?,
        legal_reference: owned_opt(w.legal_reference)?,
        consent_id: owned_opt(w.consent_id)?,
        decision: owned(w.decision)?,
        justification: owned_opt(w.justification)?,
        review: w.review,
        subject: w.subject,
        subject_prev: w.subject_prev,
        prev: w.prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference model: the previous decoder (serde_cbor decode, field rules, then
    /// re-encode and compare byte for byte).
    fn reference_decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(too_large());
        }
        let w: WireEntry<'_> = serde_cbor::from_slice(bytes)
            .map_err(|e: serde_cbor::Error| malformed(e.to_string()))?;
        let kind = w.rules().check()?;
        let mut scratch = Vec::new();
        write_wire(&w, &mut scratch)?;
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

    /// Serialises an entry without its field rules and size limit (canonical bytes of
    /// entries the encoder refuses).
    fn raw(e: &Entry, v: u64) -> Vec<u8> {
        let mut w = to_wire(e);
        w.v = v;
        serde_cbor::ser::to_vec_packed(&w).expect("serialising to a vector cannot fail")
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

    #[test]
    fn round_trip_is_identity_and_keys_are_in_canonical_order() {
        let e = sample();
        let bytes = encode_entry(&e).unwrap();
        assert_eq!(decode_entry(&bytes).unwrap(), e);
        // Map of 20 pairs: key 0 ("v") = 2, key 1 ("index") = 9, key 2 ("time").
        assert_eq!(&bytes[..5], &[0xb4, 0x00, 0x02, 0x01, 0x09]);
        assert_eq!(bytes[5], 0x02);
        for (key, name) in ENTRY_KEYS.iter().enumerate() {
            assert_eq!(bytes[value_at(&bytes, name) - 1], key as u8, "{name}");
        }
    }

    #[test]
    fn non_canonical_integer_is_rejected() {
        let e = sample();
        let bytes = encode_entry(&e).unwrap();
        // "v": 2 is 0x00 0x02; rewrite the 2 as the two-byte form 0x18 0x02.
        let mut long = bytes[..2].to_vec();
        long.extend_from_slice(&[0x18, 0x02]);
        long.extend_from_slice(&bytes[3..]);
        assert!(matches!(
            decode_entry(&long),
            Err(EntryError::Malformed { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_unknown_version_are_rejected() {
        let e = sample();
        let mut bytes = encode_entry(&e).unwrap();
        for other in [0x00, 0x01, 0x03] {
            let mut v = bytes.clone();
            v[2] = other;
            assert_eq!(
                decode_entry(&v),
                Err(EntryError::Invalid {
                    field: "v",
                    rule: "unknown entry version"
                })
            );
        }
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

    #[test]
    fn samples_round_trip_and_their_links_are_read() {
        for e in [sample(), citizen(), minimal()] {
            let bytes = encode_entry(&e).expect("valid");
            assert_eq!(decode_entry(&bytes), Ok(e.clone()));
            assert_eq!(reference_decode(&bytes), Ok(e.clone()));
            let links = decode_links(&bytes).expect("decodes");
            assert_eq!(
                (links.index, links.prev, links.subject, links.subject_prev),
                (e.index, e.prev, e.subject, e.subject_prev)
            );
        }
    }

    /// Every substitution, deletion and insertion of one byte in three valid encodings is
    /// accepted or rejected exactly as the reference model does (all are rejected but the
    /// few that spell another valid entry, e.g. another time or flag).
    #[test]
    fn every_single_byte_change_is_judged_like_the_reference() {
        for e in [sample(), citizen(), minimal()] {
            let bytes = encode_entry(&e).expect("valid");
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
            "entry bytes are not a canonical version-2 entry: expected an unsigned integer, \
             found a text string"
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
            "entry bytes are not a canonical version-2 entry: expected the key 2 (`time`) next"
        );
        let mut bytes = encode_entry(&minimal()).expect("valid");
        bytes.push(0xf6);
        assert_eq!(decode_entry(&bytes), Err(EntryError::from(Fault::Trailing)));
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

    /// The offset of the value of the top-level key named `name` in an encoded entry.
    fn value_at(bytes: &[u8], name: &str) -> usize {
        let key = ENTRY_KEYS
            .iter()
            .position(|k| *k == name)
            .expect("a key name") as u8;
        let mut at = 1;
        while bytes[at] != key {
            at = skip(bytes, skip(bytes, at));
        }
        at + 1
    }

    /// Rewrites the head right after `key` (its shortest form) in every wider form: only
    /// the shortest decodes, as for the reference model.
    fn only_shortest_head_decodes(e: &Entry, key: &str, major: u8, value: u64) {
        let bytes = encode_entry(e).expect("valid");
        let at = value_at(&bytes, key);
        let forms = heads(major, value);
        assert_eq!(&bytes[at..at + forms[0].len()], forms[0].as_slice());
        for (i, form) in forms.iter().enumerate() {
            let mut b = bytes[..at].to_vec();
            b.extend_from_slice(form);
            b.extend_from_slice(&bytes[at + forms[0].len()..]);
            assert_eq!(agree(&b), i == 0, "{key} = {value} in form {i}");
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
        for value in edges {
            let mut e = minimal();
            e.time_ms = value;
            only_shortest_head_decodes(&e, "time", MAJOR_UINT, value);
            let mut e = sample();
            e.index = value.max(1);
            e.subject_prev = Some(value.max(1) - 1);
            only_shortest_head_decodes(&e, "index", MAJOR_UINT, value.max(1));
            only_shortest_head_decodes(&e, "subject_prev", MAJOR_UINT, value.max(1) - 1);
        }
        for len in [0usize, 1, 23, 24, 255, 256, 4096] {
            let mut e = minimal();
            e.justification = Some("j".repeat(len));
            only_shortest_head_decodes(&e, "justification", MAJOR_TEXT, len as u64);
            e.requested = vec!["f".into(); len.min(1024)];
            only_shortest_head_decodes(&e, "requested", MAJOR_ARRAY, len.min(1024) as u64);
        }
    }

    #[test]
    fn indefinite_and_reserved_heads_are_rejected() {
        let bytes = encode_entry(&minimal()).expect("valid");
        // "time" (key 2): 0 is 0x02 0x00.
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
            assert_eq!(encode_entry(&e), want.clone().map(|_: ()| Vec::new()));
            let bytes = raw(&e, ENTRY_VERSION);
            assert_eq!(decode_entry(&bytes), want.clone().map(|_: ()| e.clone()));
            assert_eq!(reference_decode(&bytes).map(|_| ()), want);
            assert!(decode_links(&bytes).is_err());
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
        let bytes = encode_entry(&e).expect("valid at the limits");
        assert_eq!(decode_entry(&bytes), Ok(e.clone()));
        assert!(agree(&bytes));
        // Another version is reported before any other broken rule.
        e.action.clear();
        assert_eq!(
            decode_entry(&raw(&e, 1)),
            Err(EntryError::Invalid {
                field: "v",
                rule: "unknown entry version"
            })
        );
    }

    /// An entry of `target` encoded bytes (its justification pads it), serialised without
    /// the encoder's rules.
    fn entry_of_len(target: usize) -> (Entry, Vec<u8>) {
        let mut e = minimal();
        e.requested = vec!["r".repeat(MAX_TEXT_LEN); 255];
        e.justification = Some("j".repeat(1000));
        let short = raw(&e, ENTRY_VERSION).len();
        e.justification = Some("j".repeat(1000 + target - short));
        let bytes = raw(&e, ENTRY_VERSION);
        assert_eq!(bytes.len(), target);
        (e, bytes)
    }

    #[test]
    fn an_entry_of_exactly_1_mib_is_accepted_and_one_byte_more_is_refused() {
        let (e, bytes) = entry_of_len(MAX_ENTRY_LEN);
        assert_eq!(encode_entry(&e).as_ref(), Ok(&bytes));
        assert_eq!(decode_entry(&bytes), Ok(e));
        let (e, bytes) = entry_of_len(MAX_ENTRY_LEN + 1);
        assert_eq!(encode_entry(&e), Err(too_large()));
        assert_eq!(decode_entry(&bytes), Err(too_large()));
        assert!(decode_links(&bytes).is_err());
        assert!(!agree(&bytes));
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

        /// A valid entry round-trips; an invalid one is refused by the encoder, and its
        /// canonical bytes by the decoder and the reference, all with the same error.
        #[test]
        fn decode_inverts_encode_and_rules_match_the_reference(e in any_entry()) {
            match encode_entry(&e) {
                Ok(bytes) => {
                    prop_assert_eq!(decode_entry(&bytes), Ok(e.clone()));
                    prop_assert_eq!(reference_decode(&bytes), Ok(e));
                }
                Err(err) => {
                    let bytes = raw(&e, ENTRY_VERSION);
                    prop_assert_eq!(decode_entry(&bytes), Err(err.clone()));
                    prop_assert_eq!(reference_decode(&bytes).map(|_| ()), Err(err));
                }
            }
        }

        /// Any few substitutions, insertions and deletions of bytes in a valid encoding:
        /// the decoder accepts exactly when the reference model does, with the same entry.
        #[test]
        fn mutated_bytes_are_judged_like_the_reference(
            e in any_entry(),
            edits in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..5),
        ) {
            let Ok(mut bytes) = encode_entry(&e) else { return Ok(()) };
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
