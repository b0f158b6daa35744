//! Audit entries (format version 6; versions 2 to 5 are still read): what one log leaf
//! records.

use crate::commitment::Commitment;
use crate::hash::Hash;

/// The entry format version written by this crate: a CBOR array of 25 items, version 5's
/// 24 and the `deferral` of a deferred access or of its disclosure (`Deferral`). The
/// reader also accepts version 5 (an array of 24 items: version 4's 21 and the provenance
/// a replay needs, `policy_set`, `claim`, `terms`), version 4 (an array of 21 items, commitments in place of free texts), version
/// 3 (an array of 20 items, the justification in clear, no `official`) and version 2 (the
/// fields of version 3 as a map with integer keys); version 1 (text keys) was used only
/// before the first release and is not read.
pub const ENTRY_VERSION: u64 = 6;

/// The first version with the provenance a replay needs (an array of 24 items).
pub const PROVENANCE_VERSION: u64 = 5;

/// The first version with commitments in place of free texts (an array of 21 items).
pub const COMMITMENT_VERSION: u64 = 4;

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

/// What an access request claimed (item 22, version 5): what the evaluation needs of the
/// request beyond the fields, purpose and agency the entry already names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The legal basis the request claimed (`consent`, `legal_obligation`, ...), if any.
    pub legal_basis: Option<String>,
    /// Whether the request gave a non-blank justification.
    pub justified: bool,
}

/// The terms of a consent artefact (item 23, version 5), on every consent entry, so a
/// replay rebuilds the artefact from the log alone (its id is `consent_id`, its purpose
/// `purpose`, its fields `requested`, its status change the `action`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The agency the consent is given to.
    pub agency: String,
    /// Start of validity (inclusive), seconds since the Unix epoch.
    pub valid_from: u64,
    /// End of validity (exclusive), seconds since the Unix epoch.
    pub expires_at: u64,
    /// How many requests it may serve, if limited.
    pub max_uses: Option<u64>,
    /// Seconds the agency may keep what it receives, if limited.
    pub data_life: Option<u64>,
    /// The id of the artefact it supersedes.
    pub supersedes: Option<String>,
}

/// Item 24 (version 6): what makes an entry part of a deferred disclosure
/// (`docs/audit-log.md`, "Deferred disclosure of covert access").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferral {
    /// An access the citizen learns of only later: its `subject` is a deferred tag
    /// ([`deferred_tag`]), not the citizen's.
    Deferred {
        /// From when (ms since the epoch) the vault must disclose it; `None`: only when
        /// the secrecy is lifted.
        disclose_at: Option<u64>,
    },
    /// The disclosure of the deferred entry `of` to the citizen its `subject` names.
    Disclosure {
        /// The deferred entry's index (below the disclosure's own).
        of: u64,
        /// The opening of the deferred entry's tag.
        opening: [u8; 32],
        /// The commitment to the reference of the decision that lifted the secrecy
        /// (`None`: disclosed because the deadline passed).
        lift: Option<Commitment>,
    },
}

/// The action of a disclosure entry ([`Deferral::Disclosure`]).
pub const DISCLOSE_ACTION: &str = "access.disclose";

/// The label of a deferred tag (NUL-terminated).
pub const DEFERRED_TAG_LABEL: &[u8] = b"vault deferred subject v1\0";

/// How long after its deadline an undisclosed deferred entry is overdue: the vault
/// discloses within seconds; an hour leaves room for a restart or a failover.
pub const DISCLOSURE_GRACE_MS: u64 = 3_600_000;

/// The deferred tag of an entry about the citizen tagged `tag`, under the random
/// `opening`: `SHA-256(DEFERRED_TAG_LABEL || tag || opening)`. Without the opening it
/// cannot be linked to `tag`.
pub fn deferred_tag(tag: &SubjectTag, opening: &[u8; 32]) -> SubjectTag {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DEFERRED_TAG_LABEL);
    ctx.update(&tag.0);
    ctx.update(opening);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    SubjectTag(out)
}

/// One entry of the log, as stored (the fields of format versions 2 to 6): the
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
    /// Version 5: the SHA-256 of the canonical form of the policy set in force (item 21),
    /// on every decision and on the entries that record the set loaded.
    pub policy_set: Option<Hash>,
    /// Version 5: what an access request claimed (item 22).
    pub claim: Option<Claim>,
    /// Version 5: a consent artefact's terms (item 23).
    pub terms: Option<Terms>,
    /// Version 6: a deferred access, or the disclosure of one (item 24).
    pub deferral: Option<Deferral>,
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
            policy_set: None,
            claim: None,
            terms: None,
            deferral: None,
        }
    }
}

/// Why an entry cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The bytes are not a canonical CBOR entry of a known version.
    #[error("entry bytes are not a canonical entry of version 2, 3, 4, 5 or 6: {reason}")]
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

    /// The canonical encoding (the leaf bytes), in format version 6. A justification in
    /// clear (`justification`) is refused: versions 4 to 6 carry only commitments.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        crate::codec::encode_entry(self)
    }

    /// Strictly decodes leaf bytes of version 6, 5, 4, 3 or 2: missing, extra or (in version 2)
    /// unknown keys, trailing bytes, non-canonical encodings, a version in the other's
    /// form and other versions are rejected.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        crate::codec::decode_entry(bytes)
    }

    /// An entry with every text empty and nothing allocated: something to
    /// [`decode_into`](Entry::decode_into).
    pub fn empty() -> Self {
        Self {
            index: 0,
            prev: [0; 32],
            body: EntryDraft::new(
                0,
                Actor {
                    kind: ActorKind::System,
                    id: String::new(),
                },
                "",
                "",
            ),
        }
    }

    /// [`Entry::decode`] into this entry, reusing its buffers: a reader of many leaves
    /// allocates only when one holds more or longer values than those before. On an error
    /// the entry holds parts of the refused leaf.
    pub fn decode_into(&mut self, bytes: &[u8]) -> Result<(), EntryError> {
        crate::codec::decode_entry_into(bytes, self)
    }
}
