//! The strict reader of both entry forms, the borrowed [`View`] it fills in, and the
//! verifier's [`decode_links`].

use super::rules::{text, withheld_item, ListCheck, Rules};
use super::{malformed, too_large};
use crate::commitment::Commitment;
use crate::entry::{ActorKind, Deferral, EntryError, SubjectTag, MAX_ENTRY_LEN};
use crate::hash::Hash;
pub(super) const MAJOR_UINT: u8 = 0;
pub(super) const MAJOR_BYTES: u8 = 2;
pub(super) const MAJOR_TEXT: u8 = 3;
pub(super) const MAJOR_ARRAY: u8 = 4;
pub(super) const MAJOR_NAMES: [&str; 8] = [
    "an unsigned integer",
    "a negative integer",
    "a byte string",
    "a text string",
    "an array",
    "a map",
    "a tag",
    "a simple value",
];
pub(super) const FALSE: u8 = 0xf4;
pub(super) const TRUE: u8 = 0xf5;
pub(super) const NULL: u8 = 0xf6;
/// The head of a map of `n` pairs (version 2) and of an array of `n` items (version 3).
pub(super) const MAP_HEAD: u8 = 0xa0;
pub(super) const ARRAY_HEAD: u8 = 0x80;

/// The names of an entry's fields by position: the array item in versions 3 to 5, the
/// key in version 2 (`docs/audit-log.md`); `official` is only in versions 4 and 5, the
/// last three only in version 5.
pub(super) const ENTRY_FIELDS: [&str; 25] = [
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
    "official",
    "policy_set",
    "claim",
    "terms",
    "deferral",
];

/// The head of a version-5 entry: an array of 24 items (a one-byte length follows 0x98).
pub(super) const V5_HEAD: [u8; 2] = [0x98, 24];
/// The head of a version-6 entry: an array of 25 items.
pub(super) const V6_HEAD: [u8; 2] = [0x98, 25];

/// Which structure (array in version 3, map in version 2) a field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Map {
    Entry,
    Actor,
    Withheld,
    Claim,
    Terms,
    Deferral,
}

impl Map {
    fn field_name(self, position: u8) -> &'static str {
        let names: &[&'static str] = match self {
            Map::Entry => &ENTRY_FIELDS,
            Map::Actor => &["actor.kind", "actor.id"],
            Map::Withheld => &["withheld.field", "withheld.reason"],
            Map::Claim => &["claim.legal_basis", "claim.justified"],
            Map::Deferral => &["deferral.of", "deferral.opening", "deferral.lift"],
            Map::Terms => &[
                "terms.agency",
                "terms.valid_from",
                "terms.expires_at",
                "terms.max_uses",
                "terms.data_life",
                "terms.supersedes",
            ],
        };
        names.get(usize::from(position)).copied().unwrap_or("?")
    }
}

/// Why bytes are not the canonical form (small and `Copy`, so the reader's results stay
/// cheap; turned into [`EntryError::Malformed`] once, at the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
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
    /// Neither a map of 20 pairs (version 2) nor an array of 20 (version 3) or 21 items
    /// (version 4).
    Entry,
    Map(u8),
    Array(u8),
    Utf8,
    Bool,
    Bytes32,
    Trailing,
}

impl Fault {
    pub(super) fn reason(self) -> String {
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
                             (version 3), 21 items (version 4), 24 items (version 5) or 25 items (version 6)"
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
pub(super) struct At {
    keyed: bool,
    map: Map,
    position: u8,
}

/// A fault and, when it is inside a field's value, that field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Located {
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
pub(super) fn at<const KEYED: bool>(map: Map, position: u8) -> impl Fn(Fault) -> Located {
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
pub(super) struct Items<'a> {
    pub(super) len: u64,
    pub(super) bytes: &'a [u8],
}

/// An entry read from its bytes, borrowing them (texts as their bytes, already checked to
/// be UTF-8); its field rules are not yet checked.
pub(super) struct View<'a> {
    /// Read in the map form (version 2).
    pub(super) keyed: bool,
    pub(super) v: u64,
    /// Hashes and tags borrow the entry's bytes too: returned by value inside `Result`s
    /// they were copied through the stack at an odd offset (after the discriminant), and
    /// the unaligned reloads of those stores showed as the decoder's hottest instructions.
    pub(super) prev: &'a [u8; 32],
    pub(super) time: u64,
    pub(super) actor_id: &'a [u8],
    pub(super) actor_kind: &'a [u8],
    pub(super) index: u64,
    pub(super) action: &'a [u8],
    pub(super) review: bool,
    pub(super) purpose: Option<&'a [u8]>,
    pub(super) subject: Option<&'a [u8; 32]>,
    pub(super) decision: &'a [u8],
    pub(super) released: Items<'a>,
    pub(super) withheld: Items<'a>,
    pub(super) initiator: Option<&'a [u8]>,
    pub(super) requested: Items<'a>,
    pub(super) consent_id: Option<&'a [u8]>,
    pub(super) processing: Option<&'a [u8]>,
    pub(super) legal_basis: Option<&'a [u8]>,
    pub(super) subject_prev: Option<u64>,
    pub(super) justification: Option<&'a [u8]>,
    pub(super) legal_reference: Option<&'a [u8]>,
    /// Read in the array form of 21 items (version 4).
    pub(super) wide: bool,
    pub(super) justification_commitment: Option<&'a [u8; 32]>,
    pub(super) official: Option<&'a [u8; 32]>,
    /// Read in the array form of 24 items (version 5).
    pub(super) v5: bool,
    pub(super) policy_set: Option<&'a [u8; 32]>,
    pub(super) claim: Option<ViewClaim<'a>>,
    pub(super) terms: Option<ViewTerms<'a>>,
    /// Read in the array form of 25 items (version 6).
    pub(super) v6: bool,
    pub(super) deferral: Option<Deferral>,
}

/// Item 22 (version 5), borrowed.
#[derive(Clone, Copy)]
pub(super) struct ViewClaim<'a> {
    pub(super) legal_basis: Option<&'a [u8]>,
    pub(super) justified: bool,
}

/// Item 23 (version 5), borrowed.
#[derive(Clone, Copy)]
pub(super) struct ViewTerms<'a> {
    pub(super) agency: &'a [u8],
    pub(super) valid_from: u64,
    pub(super) expires_at: u64,
    pub(super) max_uses: Option<u64>,
    pub(super) data_life: Option<u64>,
    pub(super) supersedes: Option<&'a [u8]>,
}

/// What a [`View`] holds before the reader fills it in.
pub(super) const NO_HASH: [u8; 32] = [0; 32];

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
            wide: false,
            justification_commitment: None,
            official: None,
            v5: false,
            policy_set: None,
            claim: None,
            terms: None,
            v6: false,
            deferral: None,
        }
    }
}

/// A strict reader of the canonical forms: every head in its shortest form, definite
/// lengths only, and in the map form (`KEYED`, version 2) keys exactly the expected ones
/// in order.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
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
    pub(super) fn key(&mut self, map: Map, key: u8) -> Result<(), Fault> {
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
    pub(super) fn uint(&mut self) -> Result<u64, Fault> {
        self.head(MAJOR_UINT)
    }

    /// A text string's bytes, checked to be UTF-8 (ASCII, the common case, without the
    /// general validator).
    #[inline(always)]
    pub(super) fn text(&mut self) -> Result<&'a [u8], Fault> {
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
    pub(super) fn pair<const KEYED: bool>(
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

    /// Item 22: `null` or `[legal_basis (tstr / null), justified (bool)]`.
    fn claim(&mut self) -> Result<Option<ViewClaim<'a>>, Located> {
        if self.null() {
            return Ok(None);
        }
        if self.byte().map_err(at::<false>(Map::Entry, 22))? != ARRAY_HEAD + 2 {
            return Err(at::<false>(Map::Entry, 22)(Fault::Array(2)));
        }
        let legal_basis = self.field::<false, _>(Map::Claim, 0, Self::opt_text)?;
        let justified = self.field::<false, _>(Map::Claim, 1, Self::bool)?;
        Ok(Some(ViewClaim {
            legal_basis,
            justified,
        }))
    }

    /// Item 23: `null` or `[agency, valid_from, expires_at, max_uses / null,
    /// data_life / null, supersedes / null]`.
    fn terms(&mut self) -> Result<Option<ViewTerms<'a>>, Located> {
        if self.null() {
            return Ok(None);
        }
        if self.byte().map_err(at::<false>(Map::Entry, 23))? != ARRAY_HEAD + 6 {
            return Err(at::<false>(Map::Entry, 23)(Fault::Array(6)));
        }
        const T: Map = Map::Terms;
        Ok(Some(ViewTerms {
            agency: self.field::<false, _>(T, 0, Self::text)?,
            valid_from: self.field::<false, _>(T, 1, Self::uint)?,
            expires_at: self.field::<false, _>(T, 2, Self::uint)?,
            max_uses: self.field::<false, _>(T, 3, Self::opt_uint)?,
            data_life: self.field::<false, _>(T, 4, Self::opt_uint)?,
            supersedes: self.field::<false, _>(T, 5, Self::opt_text)?,
        }))
    }

    /// Item 24: `null`, `[disclose_at (uint / null)]` or `[of (uint), opening (bstr(32)),
    /// lift (bstr(32) / null)]`.
    fn deferral(&mut self) -> Result<Option<Deferral>, Located> {
        if self.null() {
            return Ok(None);
        }
        const D: Map = Map::Deferral;
        match self.byte().map_err(at::<false>(Map::Entry, 24))? {
            h if h == ARRAY_HEAD + 1 => Ok(Some(Deferral::Deferred {
                disclose_at: self.field::<false, _>(D, 0, Self::opt_uint)?,
            })),
            h if h == ARRAY_HEAD + 3 => Ok(Some(Deferral::Disclosure {
                of: self.field::<false, _>(D, 0, Self::uint)?,
                opening: *self.field::<false, _>(D, 1, Self::bytes32)?,
                lift: self
                    .field::<false, _>(D, 2, Self::opt_subject)?
                    .map(|c| Commitment(*c)),
            })),
            _ => Err(at::<false>(Map::Entry, 24)(Fault::Array(3))),
        }
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

    /// Reads a whole entry after its head (a map of 20 pairs if `KEYED`, version 2; an
    /// array of 21 items if `WIDE`, version 4, or of 24 if also `V5`; else an array of 20
    /// items) and nothing after it, into `w` and the three lists' checks.
    /// Out-parameters, not a returned `(View, [ListCheck; 3])`: moving those aggregates
    /// through `Result`s was the decoder's hottest work (stack copies, unaligned reloads).
    #[inline(always)]
    fn entry<const KEYED: bool, const WIDE: bool, const V5: bool, const V6: bool>(
        mut self,
        w: &mut View<'a>,
        checks: &mut [ListCheck; 3],
    ) -> Result<(), Located> {
        const E: Map = Map::Entry;
        let [requested_check, released_check, withheld_check] = checks;
        w.keyed = KEYED;
        w.wide = WIDE;
        w.v5 = V5;
        w.v6 = V6;
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
        if WIDE {
            w.justification_commitment = self.field::<KEYED, _>(E, 18, Self::opt_subject)?;
        } else {
            w.justification = self.field::<KEYED, _>(E, 18, Self::opt_text)?;
        }
        w.review = self.field::<KEYED, _>(E, 19, Self::bool)?;
        if WIDE {
            w.official = self.field::<KEYED, _>(E, 20, Self::opt_subject)?;
        }
        if V5 {
            w.policy_set = self.field::<KEYED, _>(E, 21, Self::opt_subject)?;
            w.claim = self.claim()?;
            w.terms = self.terms()?;
        }
        if V6 {
            w.deferral = self.deferral()?;
        }
        if !self.rest.is_empty() {
            return Err(Fault::Trailing.into());
        }
        Ok(())
    }
}

/// Strictly decodes and checks an entry of either version without copying anything;
/// returns it with its actor kind.
#[inline(always)]
pub(super) fn decode_view(bytes: &[u8]) -> Result<(View<'_>, ActorKind), EntryError> {
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
        Some((_, rest)) if bytes.starts_with(&V6_HEAD) => {
            Reader::new(rest.get(1..).unwrap_or_default())
                .entry::<false, true, true, true>(&mut w, &mut checks)
        }
        Some((_, rest)) if bytes.starts_with(&V5_HEAD) => {
            Reader::new(rest.get(1..).unwrap_or_default())
                .entry::<false, true, true, false>(&mut w, &mut checks)
        }
        Some((&head, rest)) if head == ARRAY_HEAD + 21 => {
            Reader::new(rest).entry::<false, true, false, false>(&mut w, &mut checks)
        }
        Some((&head, rest)) if head == ARRAY_HEAD + 20 => {
            Reader::new(rest).entry::<false, false, false, false>(&mut w, &mut checks)
        }
        Some((&head, rest)) if head == MAP_HEAD + 20 => {
            Reader::new(rest).entry::<true, false, false, false>(&mut w, &mut checks)
        }
        Some(_) => Err(Fault::Entry.into()),
        None => Err(Fault::EndsEarly.into()),
    }?;
    let [requested, released, withheld] = checks;
    let kind = Rules {
        v: w.v,
        keyed: w.keyed,
        wide: w.wide,
        v5: w.v5,
        v6: w.v6,
        deferral: w.deferral,
        claim_basis: w.claim.and_then(|c| c.legal_basis),
        terms_agency: w.terms.map(|t| t.agency),
        terms_supersedes: w.terms.and_then(|t| t.supersedes),
        has_provenance: w.policy_set.is_some() || w.claim.is_some() || w.terms.is_some(),
        has_commitments: w.justification_commitment.is_some() || w.official.is_some(),
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
    pub(crate) time_ms: u64,
    pub(crate) deferral: Option<Deferral>,
    pub(crate) prev: Hash,
    pub(crate) subject: Option<SubjectTag>,
    pub(crate) subject_prev: Option<u64>,
}

/// Strictly decodes an entry of either version, keeping only its links (no allocation).
pub(crate) fn decode_links(bytes: &[u8]) -> Result<EntryLinks, EntryError> {
    let (w, _) = decode_view(bytes)?;
    Ok(EntryLinks {
        index: w.index,
        time_ms: w.time,
        deferral: w.deferral,
        prev: *w.prev,
        subject: w.subject.map(|t| SubjectTag(*t)),
        subject_prev: w.subject_prev,
    })
}
