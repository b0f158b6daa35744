//! The self-contained export file (format version 1, `docs/audit-log.md`) and its
//! streaming offline verifier.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};

use crate::codec::{decode_links, EntryLinks};
use crate::entry::{deferred_tag, Deferral, Entry, SubjectTag, DISCLOSURE_GRACE_MS};
use crate::entry::{EntryError, MAX_ENTRY_LEN};
use crate::hash::{leaf_hash, Frontier, Hash};
use crate::note::{NoteError, NoteVerifier, SignedCheckpoint};
use crate::subjects::SubjectChains;
use crate::tree::{root, LogRead, TreeError};

/// The first 8 bytes of an export file.
pub const MAGIC: &[u8; 8] = b"VLTAUDIT";
/// The export format version written by this crate.
pub const FORMAT_VERSION: u8 = 1;
/// The longest verifier key accepted in a file.
pub const MAX_VKEY_LEN: usize = 4096;
/// The longest checkpoint note accepted in a file.
pub const MAX_NOTE_LEN: usize = 65536;

/// How often (in entries) the verifiers report progress.
pub(crate) const PROGRESS_EVERY: u64 = 1 << 16;

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the log failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A leaf below the checkpoint size is missing from the store.
    #[error("leaf {index} is missing from the log store")]
    MissingLeaf {
        /// Its index.
        index: u64,
    },
    /// The store's tree does not match the checkpoint to export.
    #[error("the stored log does not match the checkpoint of size {size}: sign a checkpoint of this log first")]
    CheckpointMismatch {
        /// Checkpoint size.
        size: u64,
    },
    /// The key string or the note is too long for the format.
    #[error("the verifier key or the checkpoint note is too long for the export format")]
    TooLong,
    /// Writing failed.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes the export of the first `signed.checkpoint.size` leaves of `store`.
pub fn write(
    store: &impl LogRead,
    signed: &SignedCheckpoint,
    vkey: &str,
    mut out: impl Write,
) -> Result<(), ExportError> {
    let size = signed.checkpoint.size;
    if root(store, size)? != signed.checkpoint.root {
        return Err(ExportError::CheckpointMismatch { size });
    }
    let vkey_len = u16::try_from(vkey.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_VKEY_LEN)
        .ok_or(ExportError::TooLong)?;
    let note_len = u32::try_from(signed.note_text.len())
        .ok()
        .filter(|l| *l as usize <= MAX_NOTE_LEN)
        .ok_or(ExportError::TooLong)?;
    out.write_all(MAGIC)?;
    out.write_all(&[FORMAT_VERSION])?;
    out.write_all(&vkey_len.to_be_bytes())?;
    out.write_all(vkey.as_bytes())?;
    out.write_all(&note_len.to_be_bytes())?;
    out.write_all(signed.note_text.as_bytes())?;
    out.write_all(&size.to_be_bytes())?;
    for index in 0..size {
        let leaf = store
            .leaf(index)
            .map_err(TreeError::from)?
            .ok_or(ExportError::MissingLeaf { index })?;
        let len = u32::try_from(leaf.len()).map_err(|_| ExportError::TooLong)?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(&leaf)?;
    }
    out.flush()?;
    Ok(())
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The log's origin (key name).
    pub origin: String,
    /// Number of entries verified (= checkpoint size).
    pub size: u64,
    /// The verified root.
    pub root: Hash,
    /// The signed checkpoint note.
    pub note_text: String,
    /// Every deferred entry of the log (version 6), in index order, with its disclosure.
    pub deferred: Vec<DeferredEntry>,
    /// The time of the log's last entry (ms since the epoch), if it has one.
    pub last_time_ms: Option<u64>,
}

/// A deferred entry (`Deferral::Deferred`) found by the verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferredEntry {
    /// Its index.
    pub index: u64,
    /// Its deadline (ms since the epoch); `None`: disclosed only when lifted.
    pub disclose_at: Option<u64>,
    /// The index of the entry that disclosed it, if any.
    pub disclosed_by: Option<u64>,
}

impl Summary {
    /// The deferred entries not disclosed although the log's last entry is at least
    /// [`DISCLOSURE_GRACE_MS`] past their deadline (`docs/audit-log.md`).
    pub fn overdue(&self) -> Vec<&DeferredEntry> {
        let Some(now) = self.last_time_ms else {
            return Vec::new();
        };
        self.deferred
            .iter()
            .filter(|d| {
                d.disclosed_by.is_none()
                    && d.disclose_at
                        .is_some_and(|at| at.saturating_add(DISCLOSURE_GRACE_MS) <= now)
            })
            .collect()
    }
}

/// What is wrong with an export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// The trusted verifier key given to the verifier is malformed.
    #[error("the verifier key given is invalid: {0}")]
    BadKey(NoteError),
    /// Not an export file.
    #[error("not an audit export file (bad magic bytes)")]
    BadMagic,
    /// An export version this verifier does not know.
    #[error("export format version {0} is not supported; use a newer vault-cli")]
    UnsupportedVersion(u8),
    /// A header field is out of range or not UTF-8.
    #[error("malformed export header: {0}")]
    BadHeader(&'static str),
    /// The key embedded in the file is not the trusted one.
    #[error("the export names another verifier key than the one given")]
    KeyMismatch,
    /// The checkpoint note does not verify or parse.
    #[error("the checkpoint is not validly signed: {0}")]
    Checkpoint(NoteError),
    /// The number of entries differs from the signed size (truncation or padding).
    #[error("the export holds {file} entries but the signed checkpoint covers {checkpoint}")]
    SizeMismatch {
        /// Count in the file.
        file: u64,
        /// Signed size.
        checkpoint: u64,
    },
    /// The file ends inside or before an entry.
    #[error("the export ends before this entry is complete (truncated)")]
    Truncated,
    /// An entry's length prefix is 0 or above the maximum.
    #[error("the entry length {0} is out of range")]
    BadLength(u32),
    /// The entry does not decode.
    #[error("the entry does not decode: {0}")]
    Decode(EntryError),
    /// The entry carries another index than its position.
    #[error("the entry at this position carries index {found}")]
    IndexMismatch {
        /// The index it carries.
        found: u64,
    },
    /// The entry's `prev` is not the leaf hash of the entry before it.
    #[error("the entry's prev hash does not match the previous entry (chain broken here)")]
    ChainBreak,
    /// The entry was altered: the next entry and the signed tree both record another hash.
    #[error("the entry was altered: its hash differs from what the next entry and the signed tree record")]
    AlteredEntry,
    /// The entry's `subject_prev` is not the latest earlier entry with its subject.
    #[error("the entry's subject_prev is {found:?} but the latest earlier entry with its subject is {expected:?}")]
    SubjectChain {
        /// What the log says it should be.
        expected: Option<u64>,
        /// What the entry says.
        found: Option<u64>,
    },
    /// A disclosure (version 6) does not disclose what it names.
    #[error("the disclosure is invalid: {0}")]
    Disclosure(&'static str),
    /// The recomputed tree root differs from the signed one.
    #[error("the entries do not add up to the signed root")]
    RootMismatch,
    /// Bytes follow the last entry (reported at index = the signed size).
    #[error("unexpected data after the last signed entry")]
    TrailingData,
    /// Reading failed.
    #[error("reading the export failed: {0}")]
    Io(std::io::Error),
    /// The operating system's random generator failed (it keys the subject table).
    #[error("the operating system's random generator failed; try again")]
    Random,
    /// A resource of a tiled log could not be fetched (`tiles::verify`).
    #[error("fetching {path} failed: {message}")]
    Fetch {
        /// The resource's path under the log's prefix.
        path: String,
        /// What the fetch function reported.
        message: String,
    },
    /// A tile, entry bundle or checkpoint of a tiled log is malformed.
    #[error("{path} is malformed: {reason}")]
    BadTile {
        /// The resource's path under the log's prefix.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry's leaf hash differs from its hash in the level-0 tile.
    #[error("the entry's leaf hash differs from its hash in the level-0 tile: the entry bundle or the tile was altered")]
    TileMismatch,
    /// The hash tiles of levels 1 and up do not give the signed root (the entries do).
    #[error("the hash tiles do not add up to the signed root, although the entries do: the server serves inconsistent tiles")]
    TreeTiles,
}

/// A failed verification: what is wrong and, when it is about an entry, the first bad
/// entry's index.
#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", index.map(|i| format!("entry {i}: ")).unwrap_or_default())]
pub struct VerifyError {
    /// The first bad entry, if the failure is about an entry.
    pub index: Option<u64>,
    /// What is wrong.
    pub kind: VerifyErrorKind,
}

impl VerifyError {
    pub(crate) fn at(index: u64, kind: VerifyErrorKind) -> Self {
        Self {
            index: Some(index),
            kind,
        }
    }

    pub(crate) fn file(kind: VerifyErrorKind) -> Self {
        Self { index: None, kind }
    }

    /// A stable error code.
    pub fn code(&self) -> &'static str {
        use VerifyErrorKind as K;
        match &self.kind {
            K::BadKey(_) => "audit.verify.bad_key",
            K::BadMagic => "audit.verify.bad_magic",
            K::UnsupportedVersion(_) => "audit.verify.unsupported_version",
            K::BadHeader(_) => "audit.verify.bad_header",
            K::KeyMismatch => "audit.verify.key_mismatch",
            K::Checkpoint(_) => "audit.verify.checkpoint",
            K::SizeMismatch { .. } => "audit.verify.size_mismatch",
            K::Truncated => "audit.verify.truncated",
            K::BadLength(_) => "audit.verify.bad_length",
            K::Decode(_) => "audit.verify.decode",
            K::IndexMismatch { .. } => "audit.verify.index_mismatch",
            K::ChainBreak => "audit.verify.chain_break",
            K::AlteredEntry => "audit.verify.altered_entry",
            K::SubjectChain { .. } => "audit.verify.subject_chain",
            K::Disclosure(_) => "audit.verify.disclosure",
            K::RootMismatch => "audit.verify.root_mismatch",
            K::TrailingData => "audit.verify.trailing_data",
            K::Io(_) => "audit.verify.io",
            K::Random => "audit.verify.random",
            K::Fetch { .. } => "audit.verify.fetch",
            K::BadTile { .. } => "audit.verify.bad_tile",
            K::TileMismatch => "audit.verify.tile_mismatch",
            K::TreeTiles => "audit.verify.tree_tiles",
        }
    }
}

fn read_exact_or(
    r: &mut impl Read,
    buf: &mut [u8],
    eof: impl FnOnce() -> VerifyError,
) -> Result<(), VerifyError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            eof()
        } else {
            VerifyError::file(VerifyErrorKind::Io(e))
        }
    })
}

fn header_eof() -> VerifyError {
    VerifyError::file(VerifyErrorKind::BadHeader("file ends inside the header"))
}

/// Reads and checks the header; returns the signed checkpoint and the entry count.
fn read_header(
    r: &mut impl Read,
    verifier: &NoteVerifier,
    vkey: &str,
) -> Result<(SignedCheckpoint, u64), VerifyError> {
    let mut magic = [0u8; 9];
    read_exact_or(r, &mut magic, header_eof)?;
    if &magic[..8] != MAGIC {
        return Err(VerifyError::file(VerifyErrorKind::BadMagic));
    }
    if magic[8] != FORMAT_VERSION {
        return Err(VerifyError::file(VerifyErrorKind::UnsupportedVersion(
            magic[8],
        )));
    }
    let mut len2 = [0u8; 2];
    read_exact_or(r, &mut len2, header_eof)?;
    let vkey_len = usize::from(u16::from_be_bytes(len2));
    if vkey_len == 0 || vkey_len > MAX_VKEY_LEN {
        return Err(VerifyError::file(VerifyErrorKind::BadHeader(
            "verifier key length out of range",
        )));
    }
    let mut embedded = vec![0u8; vkey_len];
    read_exact_or(r, &mut embedded, header_eof)?;
    if embedded != vkey.as_bytes() {
        return Err(VerifyError::file(VerifyErrorKind::KeyMismatch));
    }
    let mut len4 = [0u8; 4];
    read_exact_or(r, &mut len4, header_eof)?;
    let note_len = u32::from_be_bytes(len4) as usize;
    if note_len == 0 || note_len > MAX_NOTE_LEN {
        return Err(VerifyError::file(VerifyErrorKind::BadHeader(
            "checkpoint note length out of range",
        )));
    }
    let mut note = vec![0u8; note_len];
    read_exact_or(r, &mut note, header_eof)?;
    let note = String::from_utf8(note).map_err(|_| {
        VerifyError::file(VerifyErrorKind::BadHeader("checkpoint note is not UTF-8"))
    })?;
    let signed = SignedCheckpoint::parse(&note, verifier)
        .map_err(|e| VerifyError::file(VerifyErrorKind::Checkpoint(e)))?;
    let mut len8 = [0u8; 8];
    read_exact_or(r, &mut len8, header_eof)?;
    let count = u64::from_be_bytes(len8);
    if count != signed.checkpoint.size {
        return Err(VerifyError::file(VerifyErrorKind::SizeMismatch {
            file: count,
            checkpoint: signed.checkpoint.size,
        }));
    }
    Ok((signed, count))
}

/// Evidence gathered while streaming, resolved into the first bad index.
struct Evidence {
    /// First entry whose `prev` does not match, and the tree with that `prev` taken as the
    /// true hash of the entry before it.
    first_break: Option<(u64, Frontier)>,
    /// The subject chains (checked in batches; asked for their first fault at the end).
    subjects: SubjectChains,
}

impl Evidence {
    /// The earliest error among the gathered evidence; `alt_root_ok` tells whether the tree
    /// with the first break's `prev` substituted matches the signed root (`None` when the
    /// stream did not reach the end).
    fn resolve(&mut self, alt_root_ok: Option<bool>) -> Option<VerifyError> {
        let subject = self.subjects.first_fault().map(|f| {
            VerifyError::at(
                f.index,
                VerifyErrorKind::SubjectChain {
                    expected: f.expected,
                    found: f.found,
                },
            )
        });
        let chain = self.first_break.as_ref().map(|(j, _)| {
            if alt_root_ok == Some(true) {
                VerifyError::at(j - 1, VerifyErrorKind::AlteredEntry)
            } else {
                VerifyError::at(*j, VerifyErrorKind::ChainBreak)
            }
        });
        match (chain, subject) {
            (Some(c), Some(s)) => Some(if c.index < s.index { c } else { s }),
            (c, s) => c.or(s),
        }
    }
}

/// The per-entry checks of a log read in index order, whatever carries the leaves (an
/// export file, tiles): strict decoding, index sequence, hash chain, subject chains and
/// the root, blaming the first bad entry (`docs/audit-log.md`, "Verification").
pub(crate) struct LeafChecker {
    frontier: Frontier,
    /// The leaf hash of the last entry pushed, not yet in `frontier`.
    pending: Option<Hash>,
    evidence: Evidence,
    /// The deferred entries seen, in index order, with their tags.
    deferred: Vec<(DeferredEntry, SubjectTag)>,
    /// The time of the last entry pushed.
    last_time_ms: Option<u64>,
}

/// What [`LeafChecker::finish`] hands to the summary.
pub(crate) struct Findings {
    pub(crate) deferred: Vec<DeferredEntry>,
    pub(crate) last_time_ms: Option<u64>,
}

impl LeafChecker {
    /// A checker for a log starting at entry 0.
    pub(crate) fn new() -> Result<Self, VerifyError> {
        Ok(Self {
            frontier: Frontier::default(),
            pending: None,
            evidence: Evidence {
                first_break: None,
                subjects: SubjectChains::new()
                    .map_err(|_| VerifyError::file(VerifyErrorKind::Random))?,
            },
            deferred: Vec::new(),
            last_time_ms: None,
        })
    }

    /// Records a deferred entry, or checks a disclosure against the deferred entry it
    /// names (`docs/audit-log.md`, "Verification").
    fn deferral(&mut self, links: &EntryLinks) -> Result<(), &'static str> {
        let (Some(deferral), Some(subject)) = (links.deferral, links.subject) else {
            return Ok(());
        };
        match deferral {
            Deferral::Deferred { disclose_at } => {
                self.deferred.push((
                    DeferredEntry {
                        index: links.index,
                        disclose_at,
                        disclosed_by: None,
                    },
                    subject,
                ));
                Ok(())
            }
            Deferral::Disclosure { of, opening, lift } => {
                let at = self
                    .deferred
                    .binary_search_by_key(&of, |(d, _)| d.index)
                    .map_err(|_| "it names an entry that is not a deferred entry")?;
                let (entry, tag) = &mut self.deferred[at]; // in range: found
                if entry.disclosed_by.is_some() {
                    return Err("it names a deferred entry disclosed before");
                }
                if deferred_tag(&subject, &opening) != *tag {
                    return Err(
                        "its opening does not open the deferred entry's tag with its subject",
                    );
                }
                if lift.is_none()
                    && entry
                        .disclose_at
                        .is_none_or(|deadline| links.time_ms < deadline)
                {
                    return Err("it discloses without a lift before the deferred entry's deadline");
                }
                entry.disclosed_by = Some(links.index);
                Ok(())
            }
        }
    }

    /// The number of entries pushed so far (the index the next one must carry).
    pub(crate) fn next_index(&self) -> u64 {
        self.frontier.size() + u64::from(self.pending.is_some())
    }

    /// Checks the next entry, `leaf`, whose hash is `hash`. On an error the log is not
    /// checked further: the error is the earliest one known.
    pub(crate) fn push(&mut self, leaf: &[u8], hash: Hash) -> Result<(), VerifyError> {
        let links = match decode_links(leaf) {
            Ok(l) => l,
            Err(e) => {
                let i = self.next_index();
                return Err(self.stop(VerifyError::at(i, VerifyErrorKind::Decode(e))));
            }
        };
        self.push_links(links, hash)
    }

    /// [`LeafChecker::push`] for an entry already decoded: its links and leaf hash.
    #[inline(always)]
    pub(crate) fn push_links(&mut self, links: EntryLinks, hash: Hash) -> Result<(), VerifyError> {
        let i = self.next_index();
        if links.index != i {
            return Err(self.stop(VerifyError::at(
                i,
                VerifyErrorKind::IndexMismatch { found: links.index },
            )));
        }
        let expected_prev = self.pending.unwrap_or([0u8; 32]);
        let mut new_alt = None;
        if links.prev != expected_prev {
            if i == 0 {
                return Err(VerifyError::at(0, VerifyErrorKind::ChainBreak));
            }
            if self.evidence.first_break.is_none() {
                let mut alt = self.frontier.clone();
                alt.push(links.prev);
                new_alt = Some(alt);
            }
        }
        if let Some(tag) = links.subject {
            self.evidence.subjects.note(tag, i, links.subject_prev);
        }
        if let Err(reason) = self.deferral(&links) {
            return Err(self.stop(VerifyError::at(i, VerifyErrorKind::Disclosure(reason))));
        }
        self.last_time_ms = Some(links.time_ms);
        self.flush_pending();
        if let Some(alt) = new_alt {
            self.evidence.first_break = Some((i, alt));
        }
        self.pending = Some(hash);
        Ok(())
    }

    fn flush_pending(&mut self) {
        if let Some(h) = self.pending.take() {
            self.frontier.push(h);
            if let Some((_, alt)) = &mut self.evidence.first_break {
                alt.push(h);
            }
        }
    }

    /// An error found at the current entry that stops the check: earlier evidence (always
    /// about earlier entries) is reported first.
    pub(crate) fn stop(&mut self, err: VerifyError) -> VerifyError {
        self.evidence.resolve(None).unwrap_or(err)
    }

    /// Ends the check once every entry is pushed: the chains' evidence, then the root
    /// against the signed `want`.
    pub(crate) fn finish(mut self, want: &Hash) -> Result<Findings, VerifyError> {
        self.flush_pending();
        let count = self.frontier.size();
        let alt_ok = self
            .evidence
            .first_break
            .as_ref()
            .map(|(_, alt)| alt.root() == *want);
        if let Some(err) = self.evidence.resolve(alt_ok) {
            return Err(err);
        }
        if self.frontier.root() != *want {
            return Err(match count.checked_sub(1) {
                Some(last) => VerifyError::at(last, VerifyErrorKind::RootMismatch),
                None => VerifyError::file(VerifyErrorKind::RootMismatch),
            });
        }
        Ok(Findings {
            deferred: self.deferred.into_iter().map(|(d, _)| d).collect(),
            last_time_ms: self.last_time_ms,
        })
    }
}

/// Verifies an export offline against the trusted verifier key `vkey`: header, key,
/// checkpoint signature, size, every entry's strict decoding, index sequence, hash chain,
/// subject chains and the tree root. `progress(done, total)` is called now and then.
pub fn verify(
    reader: impl Read,
    vkey: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, VerifyError> {
    verify_each(reader, vkey, progress, &mut |_, _| {})
}

/// [`verify`], handing each entry's index and exact leaf bytes to `each` once they decoded
/// strictly and carry their position, in index order. The log is genuine only if the
/// result is `Ok`: `each` sees entries before the signed root is checked, so a caller
/// keeps what it learns until then (`vault-cli audit replay`).
pub fn verify_each(
    reader: impl Read,
    vkey: &str,
    progress: &mut dyn FnMut(u64, u64),
    each: &mut dyn FnMut(u64, &[u8]),
) -> Result<Summary, VerifyError> {
    verify_with(reader, vkey, progress, &mut Leaves(each))
}

/// [`verify`], handing each entry, decoded, to `each` in index order (the same entry
/// value, its buffers reused from leaf to leaf: copy what is kept). Each leaf is decoded
/// once, for the verifier and for the caller. As with [`verify_each`], the log is genuine
/// only if the result is `Ok`.
pub fn verify_entries(
    reader: impl Read,
    vkey: &str,
    progress: &mut dyn FnMut(u64, u64),
    each: &mut dyn FnMut(&Entry),
) -> Result<Summary, VerifyError> {
    let mut entries = Entries {
        scratch: Entry::empty(),
        each,
    };
    verify_with(reader, vkey, progress, &mut entries)
}

/// What the verifier does with each leaf: decode what it checks, then hand it on.
trait Visit {
    fn links(&mut self, leaf: &[u8]) -> Result<EntryLinks, EntryError>;
    fn visit(&mut self, index: u64, leaf: &[u8]);
}

/// [`verify_each`]'s visitor: the links only, the leaf bytes handed on.
struct Leaves<'a>(&'a mut dyn FnMut(u64, &[u8]));

impl Visit for Leaves<'_> {
    #[inline(always)]
    fn links(&mut self, leaf: &[u8]) -> Result<EntryLinks, EntryError> {
        decode_links(leaf)
    }

    #[inline(always)]
    fn visit(&mut self, index: u64, leaf: &[u8]) {
        (self.0)(index, leaf)
    }
}

/// [`verify_entries`]'s visitor: the whole entry, decoded once into `scratch`.
struct Entries<'a> {
    scratch: Entry,
    each: &'a mut dyn FnMut(&Entry),
}

impl Visit for Entries<'_> {
    fn links(&mut self, leaf: &[u8]) -> Result<EntryLinks, EntryError> {
        self.scratch.decode_into(leaf)?;
        Ok(EntryLinks {
            index: self.scratch.index,
            time_ms: self.scratch.time_ms,
            deferral: self.scratch.deferral,
            prev: self.scratch.prev,
            subject: self.scratch.subject,
            subject_prev: self.scratch.subject_prev,
        })
    }

    fn visit(&mut self, _: u64, _: &[u8]) {
        (self.each)(&self.scratch)
    }
}

fn verify_with(
    reader: impl Read,
    vkey: &str,
    progress: &mut dyn FnMut(u64, u64),
    visitor: &mut impl Visit,
) -> Result<Summary, VerifyError> {
    let verifier =
        NoteVerifier::parse(vkey).map_err(|e| VerifyError::file(VerifyErrorKind::BadKey(e)))?;
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let (signed, count) = read_header(&mut r, &verifier, vkey)?;
    progress(0, count);

    let mut checker = LeafChecker::new()?;
    let mut buf = Vec::with_capacity(4096);
    for i in 0..count {
        let mut len4 = [0u8; 4];
        if let Err(e) = read_exact_or(&mut r, &mut len4, || {
            VerifyError::at(i, VerifyErrorKind::Truncated)
        }) {
            return Err(checker.stop(e));
        }
        let len = u32::from_be_bytes(len4);
        if len == 0 || len as usize > MAX_ENTRY_LEN {
            return Err(checker.stop(VerifyError::at(i, VerifyErrorKind::BadLength(len))));
        }
        // The leaf is read in place from the reader's buffer when it holds the whole
        // entry (no copy), else copied into `buf`.
        let len = len as usize;
        let in_place = r.buffer().get(..len).is_some();
        let leaf: &[u8] = if in_place {
            &r.buffer()[..len] // in range: `in_place`
        } else {
            buf.resize(len, 0);
            if let Err(e) = read_exact_or(&mut r, &mut buf, || {
                VerifyError::at(i, VerifyErrorKind::Truncated)
            }) {
                return Err(checker.stop(e));
            }
            &buf
        };
        let i = checker.next_index();
        let links = match visitor.links(leaf) {
            Ok(l) => l,
            Err(e) => return Err(checker.stop(VerifyError::at(i, VerifyErrorKind::Decode(e)))),
        };
        checker.push_links(links, leaf_hash(leaf))?;
        visitor.visit(i, leaf);
        if in_place {
            r.consume(len);
        }
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1, count);
        }
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(checker.stop(VerifyError::at(count, VerifyErrorKind::TrailingData))),
        Err(e) => return Err(VerifyError::file(VerifyErrorKind::Io(e))),
    }
    progress(count, count);
    let want = signed.checkpoint.root;
    let findings = checker.finish(&want)?;
    Ok(Summary {
        origin: signed.checkpoint.origin,
        size: count,
        root: want,
        note_text: signed.note_text,
        deferred: findings.deferred,
        last_time_ms: findings.last_time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::SubjectTag;
    use crate::{sign_checkpoint, Entry, MemStore, NoteSigner};

    /// An export of `n` entries whose subjects cycle over 3 tags; `edit` may change entries
    /// (re-encoded canonically) before framing.
    fn export(n: u64, edit: impl Fn(&mut Vec<Entry>)) -> (Vec<u8>, String) {
        let store = crate::testvectors::cycling_log(n);
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(&store, &signer, n, None).expect("signs");
        let mut file = Vec::new();
        write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
        let mut entries: Vec<Entry> = (0..n)
            .map(|i| Entry::decode(store.leaf_bytes(i).expect("leaf")).expect("decodes"))
            .collect();
        edit(&mut entries);
        let header: usize = file.len()
            - (0..n)
                .map(|i| 4 + store.leaf_bytes(i).expect("leaf").len())
                .sum::<usize>();
        file.truncate(header);
        for e in &entries {
            let b = e.encode().unwrap_or_else(|_| b"\xff".to_vec());
            file.extend_from_slice(&(b.len() as u32).to_be_bytes());
            file.extend_from_slice(&b);
        }
        (file, signer.verifier_key())
    }

    fn run(file: &[u8], vkey: &str) -> Result<Summary, VerifyError> {
        verify(file, vkey, &mut |_, _| {})
    }

    /// Both visiting verifiers see every entry, in order, as the owning decoder reads its
    /// leaf, and judge the log as `verify` does.
    #[test]
    fn the_visiting_verifiers_hand_on_every_entry_and_judge_alike() {
        let (file, vkey) = export(40, |_| {});
        let mut leaves = Vec::new();
        let each = verify_each(file.as_slice(), &vkey, &mut |_, _| {}, &mut |i, leaf| {
            leaves.push((i, Entry::decode(leaf).expect("decodes")));
        });
        let mut entries = Vec::new();
        let all = verify_entries(file.as_slice(), &vkey, &mut |_, _| {}, &mut |e| {
            entries.push((e.index, e.clone()));
        });
        let whole = run(&file, &vkey).expect("verifies");
        assert_eq!(each.expect("verifies"), whole);
        assert_eq!(all.expect("verifies"), whole);
        assert_eq!(leaves.len(), 40);
        assert_eq!(leaves, entries);
        let (bad, _) = export(40, |e| e[7].action = "y".into());
        assert_eq!(
            verify_entries(bad.as_slice(), &vkey, &mut |_, _| {}, &mut |_| {}).map_err(|e| e.index),
            run(&bad, &vkey).map_err(|e| e.index)
        );
    }

    #[test]
    fn progress_is_reported_every_65536_entries_and_at_both_ends() {
        let (file, vkey) = export(65_537, |_| {});
        let mut calls = Vec::new();
        verify(file.as_slice(), &vkey, &mut |d, t| calls.push((d, t))).expect("verifies");
        assert_eq!(calls, vec![(0, 65_537), (65_536, 65_537), (65_537, 65_537)]);
        let (file, vkey) = export(3, |_| {});
        let mut calls = Vec::new();
        verify(file.as_slice(), &vkey, &mut |d, t| calls.push((d, t))).expect("verifies");
        assert_eq!(calls, vec![(0, 3), (3, 3)]);
    }

    #[test]
    fn altered_content_is_blamed_on_the_altered_entry() {
        for k in [0u64, 5, 10, 18, 19] {
            let (file, vkey) = export(20, |e| e[k as usize].action = "y".into());
            let err = run(&file, &vkey).expect_err("detected");
            assert_eq!(err.index, Some(k), "{err}");
            let want = if k == 19 {
                "audit.verify.root_mismatch"
            } else {
                "audit.verify.altered_entry"
            };
            assert_eq!(err.code(), want);
        }
    }

    #[test]
    fn a_replaced_prev_is_blamed_on_its_own_entry() {
        for k in [1u64, 7, 19] {
            let (file, vkey) = export(20, |e| e[k as usize].prev[0] ^= 1);
            let err = run(&file, &vkey).expect_err("detected");
            assert_eq!(
                (err.index, err.code()),
                (Some(k), "audit.verify.chain_break"),
                "{err}"
            );
        }
        let (file, vkey) = export(20, |e| e[0].prev[0] ^= 1);
        assert_eq!(run(&file, &vkey).expect_err("detected").index, Some(0));
    }

    #[test]
    fn a_changed_subject_link_is_reported_as_such_at_its_entry() {
        // Entry 7's subject_prev points to 1 instead of 4: a subject-chain error at 7,
        // which wins the tie with the altered-entry evidence at 7.
        let (file, vkey) = export(20, |e| e[7].subject_prev = Some(1));
        let err = run(&file, &vkey).expect_err("detected");
        assert_eq!(err.index, Some(7));
        assert!(
            matches!(
                err.kind,
                VerifyErrorKind::SubjectChain {
                    expected: Some(4),
                    found: Some(1)
                }
            ),
            "{err}"
        );
        // A subject tag changed at 4 breaks the chain of entry 7 (its old subject); the
        // entry to blame is 4.
        let (file, vkey) = export(20, |e| {
            e[4].subject = Some(SubjectTag([9; 32]));
            e[4].subject_prev = None;
        });
        let err = run(&file, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(4), "audit.verify.altered_entry"),
            "{err}"
        );
    }

    #[test]
    fn earlier_evidence_wins_over_a_later_stop() {
        // Entry 3 altered (evidence at 4), then entry 9 undecodable: the chain break is
        // reported, not the later decode error.
        let (file, vkey) = export(20, |e| {
            e[3].action = "y".into();
            e[9].action.clear();
        });
        let err = run(&file, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(4), "audit.verify.chain_break"),
            "{err}"
        );
        // Only the decode error: it is reported.
        let (file, vkey) = export(20, |e| e[9].action.clear());
        let err = run(&file, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(9), "audit.verify.decode"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_entry_lengths_are_refused_before_reading() {
        let (file, vkey) = export(5, |_| {});
        // Find entry 0's length prefix: the first entry follows the 8-byte count.
        let vkey_len = usize::from(u16::from_be_bytes([file[9], file[10]]));
        let note_at = 11 + vkey_len;
        let note_len =
            u32::from_be_bytes(file[note_at..note_at + 4].try_into().expect("4 bytes")) as usize;
        let first = note_at + 4 + note_len + 8;
        for bad in [0u32, (MAX_ENTRY_LEN + 1) as u32, u32::MAX] {
            let mut f = file.clone();
            f[first..first + 4].copy_from_slice(&bad.to_be_bytes());
            let err = run(&f, &vkey).expect_err("refused");
            assert_eq!(err.index, Some(0));
            assert!(
                matches!(err.kind, VerifyErrorKind::BadLength(l) if l == bad),
                "{err}"
            );
        }
        // Exactly the maximum is a valid length: this file just ends before it.
        let mut f = file.clone();
        f[first..first + 4].copy_from_slice(&(MAX_ENTRY_LEN as u32).to_be_bytes());
        let err = run(&f, &vkey).expect_err("refused");
        assert!(
            matches!(
                (err.index, &err.kind),
                (Some(0), VerifyErrorKind::Truncated)
            ),
            "{err}"
        );
    }

    /// The header's two lengths: 0 and above the maximum are refused as a bad header
    /// before anything is read; exactly the maximum is read (the file is padded so that
    /// it can be; it then fails for what it read, not for the length).
    #[test]
    fn out_of_range_header_lengths_are_refused_before_reading() {
        let (mut file, vkey) = export(2, |_| {});
        file.resize(file.len() + MAX_NOTE_LEN + 16, 0);
        let with = |at: usize, len: &[u8]| {
            let mut f = file.clone();
            f[at..at + len.len()].copy_from_slice(len);
            run(&f, &vkey).expect_err("refused")
        };
        for bad in [0u16, MAX_VKEY_LEN as u16 + 1, u16::MAX] {
            let err = with(9, &bad.to_be_bytes());
            assert!(
                matches!(err.kind, VerifyErrorKind::BadHeader(m) if m.contains("verifier key")),
                "{bad}: {err}"
            );
        }
        let err = with(9, &(MAX_VKEY_LEN as u16).to_be_bytes());
        assert!(matches!(err.kind, VerifyErrorKind::KeyMismatch), "{err}");
        let note_at = 11 + usize::from(u16::from_be_bytes([file[9], file[10]]));
        for bad in [0u32, MAX_NOTE_LEN as u32 + 1, u32::MAX] {
            let err = with(note_at, &bad.to_be_bytes());
            assert!(
                matches!(err.kind, VerifyErrorKind::BadHeader(m) if m.contains("checkpoint note")),
                "{bad}: {err}"
            );
        }
        let err = with(note_at, &(MAX_NOTE_LEN as u32).to_be_bytes());
        assert!(
            !matches!(err.kind, VerifyErrorKind::BadHeader(m) if m.contains("out of range")),
            "{err}"
        );
    }

    #[test]
    fn an_empty_log_exports_and_verifies() {
        let store = MemStore::new();
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(&store, &signer, 0, None).expect("signs");
        let mut file = Vec::new();
        write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
        let s = run(&file, &signer.verifier_key()).expect("verifies");
        assert_eq!((s.size, s.root), (0, crate::empty_root()));
    }

    /// A signed export of `drafts` appended to an empty log.
    fn export_of(drafts: Vec<crate::EntryDraft>) -> (Vec<u8>, String) {
        let mut store = MemStore::new();
        let mut state = crate::LogState::new();
        let n = drafts.len() as u64;
        store.append(&mut state, drafts).expect("appends");
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(&store, &signer, n, None).expect("signs");
        let mut file = Vec::new();
        write(&store, &signed, &signer.verifier_key(), &mut file).expect("exports");
        (file, signer.verifier_key())
    }

    fn system_at(time_ms: u64, action: &str) -> crate::EntryDraft {
        crate::EntryDraft::new(
            time_ms,
            crate::Actor {
                kind: crate::ActorKind::System,
                id: "vault".into(),
            },
            action,
            "done",
        )
    }

    const CITIZEN: SubjectTag = SubjectTag([0xc1; 32]);
    const OPENING: [u8; 32] = [0x0e; 32];

    /// Entry 0 about the citizen, entry 1 deferred until `deadline`, entry 2 at `later`,
    /// and, if `disclose` gives its time, opening and lift, entry 3 disclosing entry 1.
    fn deferral_log(
        deadline: Option<u64>,
        later: u64,
        disclose: Option<(u64, [u8; 32], Option<crate::Commitment>)>,
    ) -> Vec<crate::EntryDraft> {
        let mut first = system_at(0, "x");
        first.subject = Some(CITIZEN);
        let mut deferred = system_at(1_000, "access");
        deferred.subject = Some(deferred_tag(&CITIZEN, &OPENING));
        deferred.deferral = Some(Deferral::Deferred {
            disclose_at: deadline,
        });
        let mut drafts = vec![first, deferred, system_at(later, "x")];
        if let Some((time, opening, lift)) = disclose {
            let mut d = system_at(time, "access.disclose");
            d.subject = Some(CITIZEN);
            d.subject_prev = Some(0);
            d.deferral = Some(Deferral::Disclosure {
                of: 1,
                opening,
                lift,
            });
            drafts.push(d);
        }
        drafts
    }

    #[test]
    fn deferred_entries_are_listed_and_overdue_only_an_hour_past_their_deadline() {
        let (file, vkey) = export_of(deferral_log(
            Some(5_000),
            5_000 + DISCLOSURE_GRACE_MS - 1,
            None,
        ));
        let s = run(&file, &vkey).expect("verifies");
        assert_eq!(
            s.deferred,
            vec![DeferredEntry {
                index: 1,
                disclose_at: Some(5_000),
                disclosed_by: None
            }]
        );
        assert!(s.overdue().is_empty());
        let (file, vkey) = export_of(deferral_log(Some(5_000), 5_000 + DISCLOSURE_GRACE_MS, None));
        let s = run(&file, &vkey).expect("verifies");
        assert_eq!(s.overdue().len(), 1);
        // Until lifted: never overdue.
        let (file, vkey) = export_of(deferral_log(None, u64::MAX >> 12, None));
        assert!(run(&file, &vkey).expect("verifies").overdue().is_empty());
    }

    #[test]
    fn a_disclosure_verifies_only_if_it_opens_the_deferred_tag_after_the_deadline_or_lifted() {
        let lift = Some(crate::Commitment([7; 32]));
        let (file, vkey) = export_of(deferral_log(
            Some(5_000),
            6_000,
            Some((6_000, OPENING, None)),
        ));
        let s = run(&file, &vkey).expect("a disclosure at its deadline verifies");
        assert_eq!(s.deferred[0].disclosed_by, Some(3));
        assert!(s.overdue().is_empty());
        let (file, vkey) = export_of(deferral_log(None, 2_000, Some((2_000, OPENING, lift))));
        assert!(run(&file, &vkey).is_ok(), "a lift discloses at any time");
        for (deadline, disclose, what) in [
            (
                Some(5_000),
                (4_999, OPENING, None),
                "before the deadline without a lift",
            ),
            (None, (9_000, OPENING, None), "until lifted, without a lift"),
            (
                Some(5_000),
                (6_000, [0x0f; 32], None),
                "with another opening",
            ),
        ] {
            let (file, vkey) = export_of(deferral_log(deadline, 2_000, Some(disclose)));
            let err = run(&file, &vkey).expect_err(what);
            assert_eq!(
                (err.index, err.code()),
                (Some(3), "audit.verify.disclosure"),
                "{what}"
            );
        }
        // A disclosure naming an entry that is not deferred, or one disclosed before.
        let mut drafts = deferral_log(Some(5_000), 6_000, Some((6_000, OPENING, None)));
        let mut again = drafts[3].clone();
        again.subject_prev = Some(3);
        drafts.push(again);
        let err = run_drafts(drafts).expect_err("disclosed twice");
        assert_eq!(
            (err.index, err.code()),
            (Some(4), "audit.verify.disclosure")
        );
        let mut drafts = deferral_log(Some(5_000), 6_000, Some((6_000, OPENING, None)));
        drafts[3].deferral = Some(Deferral::Disclosure {
            of: 2,
            opening: OPENING,
            lift: None,
        });
        let err = run_drafts(drafts).expect_err("not a deferred entry");
        assert_eq!(
            (err.index, err.code()),
            (Some(3), "audit.verify.disclosure")
        );
    }

    fn run_drafts(drafts: Vec<crate::EntryDraft>) -> Result<Summary, VerifyError> {
        let (file, vkey) = export_of(drafts);
        run(&file, &vkey)
    }
}
