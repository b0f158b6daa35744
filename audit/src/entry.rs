//! Audit entries (format version 4; versions 2 and 3 are still read): what one log leaf
//! records.

use crate::commitment::Commitment;
use crate::hash::Hash;

/// The entry format version written by this crate: a CBOR array of 21 items, with a
/// commitment in place of each caller-supplied free text. The reader also accepts version
/// 3 (an array of 20 items, the justification in clear, no `official`) and version 2 (the
/// fields of version 3 as a map with integer keys); version 1 (text keys) was used only
/// before the first release and is not read.
pub const ENTRY_VERSION: u64 = 4;

/// Upper bound on the encoded size of one entry.
pub const MAX_ENTRY_LEN: usize = 1 << 20;

/// Upper bound on the length of each text field, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// Upper bound on the number of items of each list field.
pub const MAX_LIST_LEN: usize = 1024;

/// An opaque subject tag (the engine's per-citizen HMAC); the log never sees who it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectTag(pub [u8; 32]);

impl std::fmt::Debug for SubjectTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectTag(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActorKind {
    /// A public agency (id = agency id).
    Agency,
    /// The citizen the entry is about (id empty; the citizen appears only as `subject`).
    Citizen,
    /// An auditor (id = auditor id).
    Auditor,
    /// An operator (id = operator id).
    Operator,
    /// The vault itself (id = component name).
    System,
}

impl ActorKind {
    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Citizen => "citizen",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "agency" => Self::Agency,
            "citizen" => Self::Citizen,
            "auditor" => Self::Auditor,
            "operator" => Self::Operator,
            "system" => Self::System,
            _ => return None,
        })
    }
}

/// The actor of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Its kind.
    pub kind: ActorKind,
    /// Its id (empty for a citizen).
    pub id: String,
}

/// A requested field that was not released, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    /// Field name.
    pub field: String,
    /// Reason code.
    pub reason: String,
}

/// One entry of the log, as stored (the fields of format versions 2 to 4): the
/// draft's fields, read through `Deref` (`entry.action`), and the two the log assigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log.
    pub index: u64,
    /// Leaf hash of entry `index - 1` (all zeros for index 0).
    pub prev: Hash,
    /// Everything else.
    pub body: EntryDraft,
}

impl std::ops::Deref for Entry {
    type Target = EntryDraft;

    fn deref(&self) -> &EntryDraft {
        &self.body
    }
}

impl std::ops::DerefMut for Entry {
    fn deref_mut(&mut self) -> &mut EntryDraft {
        &mut self.body
    }
}

/// An entry before the log assigns its `index` and `prev`; an [`Entry`]'s other fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryDraft {
    /// Log time, milliseconds since the Unix epoch (UTC).
    pub time_ms: u64,
    /// Who acted.
    pub actor: Actor,
    /// A reference the vault writes itself (a token id, an agency id, a certificate
    /// fingerprint, `kek 3`, ...). In versions 2 and 3 it also held the official a caller
    /// named; version 4 carries that as the commitment `official`.
    pub initiator: Option<String>,
    /// What happened ("record.write", "access", "consent.grant", ...).
    pub action: String,
    /// Processing type ("collection", "disclosure", "erasure", ...).
    pub processing: Option<String>,
    /// Declared purpose.
    pub purpose: Option<String>,
    /// Field names requested.
    pub requested: Vec<String>,
    /// Field names released.
    pub released: Vec<String>,
    /// Field names withheld, with reasons.
    pub withheld: Vec<Withheld>,
    /// Legal basis ("consent", "statute", "break_glass", ...).
    pub legal_basis: Option<String>,
    /// Reference of the statute or rule applied.
    pub legal_reference: Option<String>,
    /// Consent artefact id.
    pub consent_id: Option<String>,
    /// Outcome ("granted", "partial", "refused", "done").
    pub decision: String,
    /// The justification in clear, as versions 2 and 3 carried it; the encoder (version
    /// 4) refuses it: set `justification_commitment` instead.
    pub justification: Option<String>,
    /// Version 4: the commitment to the justification a caller gave (item 18).
    pub justification_commitment: Option<Commitment>,
    /// Version 4: the commitment to the official a caller named (item 20).
    pub official: Option<Commitment>,
    /// Flagged for human review (e.g. break-glass).
    pub review: bool,
    /// The subject tag, if the entry is about a citizen.
    pub subject: Option<SubjectTag>,
    /// Index of the previous entry with the same subject (kept by the engine).
    pub subject_prev: Option<u64>,
}

impl EntryDraft {
    /// A draft with the required fields and everything else empty.
    pub fn new(time_ms: u64, actor: Actor, action: &str, decision: &str) -> Self {
        Self {
            time_ms,
            actor,
            initiator: None,
            action: action.to_owned(),
            processing: None,
            purpose: None,
            requested: Vec::new(),
            released: Vec::new(),
            withheld: Vec::new(),
            legal_basis: None,
            legal_reference: None,
            consent_id: None,
            decision: decision.to_owned(),
            justification: None,
            justification_commitment: None,
            official: None,
            review: false,
            subject: None,
            subject_prev: None,
        }
    }
}

/// Why an entry cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes are not a canonical CBOR entry of a known version.
    #[error("entry bytes are not a canonical entry of version 2, 3 or 4: {reason}")]
    Malformed {
        /// What the decoder found.
        reason: String,
    },
    /// A field breaks a rule of the format.
    #[error("entry field `{field}` is invalid: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
}

impl EntryError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "audit.entry.malformed",
            Self::Invalid { .. } => "audit.entry.invalid",
        }
    }
}

impl Entry {
    pub(crate) fn from_draft(body: EntryDraft, index: u64, prev: Hash) -> Self {
        Self { index, prev, body }
    }

    /// The canonical encoding (the leaf bytes), in format version 4. A justification in
    /// clear (`justification`) is refused: version 4 carries only commitments.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        crate::codec::encode_entry(self)
    }

    /// Strictly decodes leaf bytes of version 4, 3 or 2: missing, extra or (in version 2)
    /// unknown keys, trailing bytes, non-canonical encodings, a version in the other's
    /// form and other versions are rejected.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        crate::codec::decode_entry(bytes)
    }
}
