//! Deferred disclosure of covert access (`docs/audit-log.md`, "Deferred disclosure of
//! covert access"): an access under a statutory rule with a `disclosure` is logged with a
//! deferred tag ([`audit::deferred_tag`]) in place of the citizen's, and a pending row in
//! `Tree::Meta` (key `deferred.` || big-endian index) remembers whose it is until the vault
//! appends its disclosure: when the deadline passes ([`Vault::disclose_due`]) or an
//! operator records that the secrecy was lifted ([`Vault::lift_deferred`]).
//!
//! The pending row (removed in the disclosure's commit) is
//! `VaultKeys::seal_private(body)` (its first byte 0x02): encrypted and authenticated, because it names
//! the person a covert access was about, which neither the store nor a backup may tell.
//! The body: `0x01 || flags (1: bit 0 a deadline, bit 1 erased) || deadline (8, big-endian
//! ms, 0 without one) || opening (32) || u32be length || citizen id || the sealed note of
//! the entry's texts` (sealed for the citizen's tag and the entry's index, so at disclosure
//! it becomes the citizen's `AuditSubjects` row as is). The citizen's erasure rewrites it
//! with bit 1 set, the citizen's subject tag (32 bytes) in place of their id and no note:
//! nothing in it names the person any more, and the vault still discloses the entry at its
//! deadline, into the erased subject's chain. A row written before rows were encrypted is
//! that body with the record MAC appended; it is read as it is and rewritten encrypted at
//! open ([`encrypt_legacy`]).

use audit::{Actor, ActorKind, Deferral, EntryDraft, SubjectTag};
use policies::{Basis, Decision, Disclosure as RuleDisclosure, FieldName, Outcome, PolicySet};

use super::log;
use super::notes::CallerTexts;
use super::ops::{citizen_id, record_err};
use super::{Vault, VaultError};
use crate::auth::VaultKeys;
use crate::codec::CodecError;
use crate::storage::{Storage, Tree, WriteBatch};

/// The prefix of the pending rows' keys in `Tree::Meta`.
const PREFIX: &[u8] = b"deferred.";
/// The pending row's body format byte (also the first byte of a legacy row, which is the
/// body with the record MAC; an encrypted row starts with `auth::PRIVATE_ROW`).
const ROW_FORMAT: u8 = 1;
/// The record kind named when a pending row fails its MAC.
const KIND: &str = "deferred disclosure";
/// The most disclosures one call of [`Vault::disclose_due`] appends.
pub const MAX_DISCLOSURES_PER_ROUND: usize = 64;
/// The longest lift reference accepted, in bytes.
pub const MAX_LIFT_REFERENCE: usize = 200;

/// A deferred access disclosed to its citizen: the event the vault must notify the
/// citizen of (the notifications outbox takes it from [`Vault::disclose_due`] and
/// [`Vault::lift_deferred`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disclosure {
    /// The citizen the access was about; `None` if they were erased before it (the
    /// disclosure then joins their erased subject's chain, and nobody is told).
    pub citizen: Option<String>,
    /// The deferred access entry's index.
    pub deferred_index: u64,
    /// The disclosure entry's index.
    pub disclosure_index: u64,
    /// Disclosed because an operator recorded that the secrecy was lifted (else the
    /// deadline passed).
    pub lifted: bool,
}

/// What the engine needs to log an access as deferred.
pub(super) struct Deferring {
    pub(super) citizen: String,
    pub(super) tag: SubjectTag,
    pub(super) opening: [u8; 32],
}

/// A pending row, decoded.
struct Pending {
    /// The citizen id, or their subject tag once they were erased.
    citizen: Whose,
    opening: [u8; 32],
    disclose_at: Option<u64>,
    note: Vec<u8>,
}

/// Whom a pending row is about.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Whose {
    Citizen(String),
    /// An erased citizen, by the subject tag their chain ran under.
    Erased(SubjectTag),
}

impl Whose {
    fn is(&self, citizen: &str) -> bool {
        matches!(self, Whose::Citizen(c) if c == citizen)
    }
}

fn key(index: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn bad(message: &'static str) -> VaultError {
    VaultError::from(CodecError::Decode {
        what: KIND,
        message: message.to_owned(),
    })
}

fn encode(p: &Pending) -> Vec<u8> {
    let (erased, who): (u8, &[u8]) = match &p.citizen {
        Whose::Citizen(c) => (0, c.as_bytes()),
        Whose::Erased(tag) => (2, &tag.0),
    };
    let mut out = Vec::with_capacity(46 + who.len() + p.note.len());
    out.push(ROW_FORMAT);
    out.push(u8::from(p.disclose_at.is_some()) | erased);
    out.extend_from_slice(&p.disclose_at.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&p.opening);
    crate::keys::push_lp(&mut out, who);
    out.extend_from_slice(&p.note);
    out
}

fn decode(value: &[u8]) -> Result<Pending, VaultError> {
    let (&[format, flags], rest) = value
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("too short"))?;
    if format != ROW_FORMAT || flags > 3 {
        return Err(bad("unknown format"));
    }
    let (at, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("ends inside the deadline"))?;
    let (opening, rest) = rest
        .split_first_chunk::<32>()
        .ok_or_else(|| bad("ends inside the opening"))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("ends inside a length"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad("too long"))?;
    let (citizen, note) = rest
        .split_at_checked(len)
        .ok_or_else(|| bad("ends inside the citizen id"))?;
    let citizen = if flags & 2 == 0 {
        Whose::Citizen(
            std::str::from_utf8(citizen)
                .map_err(|_| bad("the citizen id is not UTF-8"))?
                .to_owned(),
        )
    } else {
        Whose::Erased(SubjectTag(
            citizen
                .try_into()
                .map_err(|_| bad("an erased citizen's tag is not 32 bytes"))?,
        ))
    };
    Ok(Pending {
        citizen,
        opening: *opening,
        disclose_at: (flags & 1 == 1).then(|| u64::from_be_bytes(*at)),
        note: note.to_vec(),
    })
}

/// The stored form of pending row `p` under key `k`.
fn seal(keys: &VaultKeys, k: &[u8], p: &Pending) -> Result<Vec<u8>, VaultError> {
    keys.seal_private(Tree::Meta, k, &zeroize::Zeroizing::new(encode(p)))
        .map_err(VaultError::internal)
}

/// Stages the pending row of the deferred entry `index` (in the access's commit).
pub(super) fn stage_pending(
    batch: &mut WriteBatch,
    keys: &VaultKeys,
    index: u64,
    d: &Deferring,
    disclose_at: Option<u64>,
    note: Vec<u8>,
) -> Result<(), VaultError> {
    let k = key(index);
    let p = Pending {
        citizen: Whose::Citizen(d.citizen.clone()),
        opening: d.opening,
        disclose_at,
        note,
    };
    let sealed = seal(keys, &k, &p)?;
    batch.put(Tree::Meta, k, sealed);
    Ok(())
}

/// Every pending row: the deferred entry's index, the row, and whether it is a legacy
/// (MAC-only) row.
fn pending_rows(
    store: &dyn Storage,
    keys: &VaultKeys,
) -> Result<Vec<(u64, Pending, bool)>, VaultError> {
    let mut end = PREFIX.to_vec();
    end.push(0xff);
    let mut out = Vec::new();
    for (k, v) in store.scan(Tree::Meta, PREFIX, Some(&end), usize::MAX)? {
        let index = k
            .get(PREFIX.len()..)
            .and_then(|i| <[u8; 8]>::try_from(i).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| bad("malformed key"))?;
        let (p, legacy) = open_row(keys, &k, &v)?;
        out.push((index, p, legacy));
    }
    Ok(out)
}

/// The pending row stored under `k`, once it authenticates, and whether it is a legacy
/// (MAC-only) row.
fn open_row(keys: &VaultKeys, k: &[u8], stored: &[u8]) -> Result<(Pending, bool), VaultError> {
    let (body, legacy) = keys
        .open_private_or_legacy(KIND, Tree::Meta, k, stored)
        .map_err(VaultError::internal)?;
    Ok((decode(&body)?, legacy))
}

/// Every pending row: the deferred entry's index and the row.
fn pending(store: &dyn Storage, keys: &VaultKeys) -> Result<Vec<(u64, Pending)>, VaultError> {
    Ok(pending_rows(store, keys)?
        .into_iter()
        .map(|(i, p, _)| (i, p))
        .collect())
}

/// Rewrites pending rows written before rows were encrypted in their encrypted form (at
/// open); returns how many.
pub(super) fn encrypt_legacy(store: &dyn Storage, keys: &VaultKeys) -> Result<usize, VaultError> {
    let mut batch = WriteBatch::new();
    let mut n = 0;
    for (index, p, legacy) in pending_rows(store, keys)? {
        if legacy {
            let k = key(index);
            let sealed = seal(keys, &k, &p)?;
            batch.put(Tree::Meta, k, sealed);
            n += 1;
        }
    }
    if n > 0 {
        store.commit(batch)?;
    }
    Ok(n)
}

/// Stages, at `citizen`'s erasure, the rewrite of their pending rows without their id or
/// texts: each keeps its deadline and opening, and the subject tag `tag` their chain ran
/// under, so that the entry is still disclosed when due (nobody is told: nobody is left).
/// Without a tag (a citizen never given keys has no deferred entry) they are removed.
pub(super) fn stage_forget(
    store: &dyn Storage,
    keys: &VaultKeys,
    batch: &mut WriteBatch,
    citizen: &str,
    tag: Option<&SubjectTag>,
) -> Result<(), VaultError> {
    for (index, p) in pending(store, keys)? {
        if !p.citizen.is(citizen) {
            continue;
        }
        let k = key(index);
        match tag {
            Some(tag) => {
                let erased = Pending {
                    citizen: Whose::Erased(*tag),
                    opening: p.opening,
                    disclose_at: p.disclose_at,
                    note: Vec::new(),
                };
                let sealed = seal(keys, &k, &erased)?;
                batch.put(Tree::Meta, k, sealed);
            }
            None => batch.delete(Tree::Meta, k),
        }
    }
    Ok(())
}

/// When the citizen learns of an access decided as `decision` (`found`: the fields the
/// vault holds, which alone are released): `None` at once; else the latest disclosure of
/// the deferring statutory rules it released a field under.
pub(super) fn deferral_of(
    policy: &PolicySet,
    decision: &Decision<'_>,
    found: impl Fn(&FieldName) -> bool,
) -> Option<RuleDisclosure> {
    let mut out: Option<RuleDisclosure> = None;
    for d in &decision.fields {
        let Outcome::Released(Basis::Statutory { rule_id, .. }) = d.outcome else {
            continue;
        };
        if !found(d.field) {
            continue;
        }
        let rule = policy.statutory_rules().find(|r| r.id == *rule_id);
        if let Some(later) = rule.and_then(|r| r.disclosure) {
            out = Some(out.map_or(later, |o| o.later(later)));
        }
    }
    out
}

impl Vault {
    /// The clock deadlines are judged by: the system clock, shifted in tests (feature
    /// `test-hooks`) by [`Vault::dangerous_advance_clock`] and by the seconds in the file
    /// [`super::DANGEROUS_CLOCK_OFFSET_FILE`] of the data directory, read at each use.
    pub(super) fn deferral_clock_ms(&self) -> u64 {
        let (_, now_ms) = super::now_parts();
        now_ms.saturating_add(self.clock_offset_secs().saturating_mul(1000))
    }

    #[cfg(not(feature = "test-hooks"))]
    fn clock_offset_secs(&self) -> u64 {
        0
    }

    #[cfg(feature = "test-hooks")]
    fn clock_offset_secs(&self) -> u64 {
        let file = std::fs::read_to_string(self.dir.join(super::DANGEROUS_CLOCK_OFFSET_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        file.saturating_add(self.clock_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Moves the clock deadlines are judged by `secs` seconds forward (tests only).
    #[cfg(feature = "test-hooks")]
    pub fn dangerous_advance_clock(&self, secs: u64) {
        self.clock_offset
            .fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }

    /// The deferred entries not yet disclosed: each index with its deadline (ms since the
    /// epoch; `None`: until lifted).
    pub fn deferred_pending(&self) -> Result<Vec<(u64, Option<u64>)>, VaultError> {
        Ok(pending(&*self.store, &self.keys)?
            .into_iter()
            .map(|(i, p)| (i, p.disclose_at))
            .collect())
    }

    /// Discloses every deferred entry whose deadline has passed (at most
    /// [`MAX_DISCLOSURES_PER_ROUND`] a call, oldest first): each one a disclosure entry in
    /// its citizen's chain, committed with the rows that put the deferred entry in their
    /// history. Called every second by the background task of the node that writes
    /// ([`Vault::start_background_signer`]). Returns the disclosures made, for the
    /// citizens' notifications.
    pub fn disclose_due(&self) -> Result<Vec<Disclosure>, VaultError> {
        let now = self.deferral_clock_ms();
        let due: Vec<u64> = pending(&*self.store, &self.keys)?
            .into_iter()
            .filter(|(_, p)| p.disclose_at.is_some_and(|at| at <= now))
            .map(|(i, _)| i)
            .take(MAX_DISCLOSURES_PER_ROUND)
            .collect();
        let mut out = Vec::new();
        for index in due {
            match self.disclose(index, None) {
                Ok(d) => out.push(d),
                // Lifted meanwhile, or its citizen erased.
                Err(VaultError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Discloses the deferred entry `index` at once because an operator recorded that a
    /// court or prosecutor lifted its secrecy; `reference` (the decision's reference, at
    /// most [`MAX_LIFT_REFERENCE`] bytes) is committed in the disclosure entry and sealed
    /// for the citizen. Returns the disclosure, for the citizen's notification.
    pub fn lift_deferred(&self, index: u64, reference: &str) -> Result<Disclosure, VaultError> {
        let reference = reference.trim();
        if reference.is_empty() || reference.len() > MAX_LIFT_REFERENCE {
            return Err(VaultError::bad(
                "invalid_reference",
                "the lift's reference (the court's or prosecutor's decision) must be 1 to 200 \
                 bytes"
                    .to_owned(),
            ));
        }
        self.disclose(index, Some(reference))
    }

    /// Appends the disclosure of the deferred entry `index`; `NotFound` (nothing written)
    /// if it is no pending deferred entry, or its citizen is gone.
    fn disclose(&self, index: u64, lift: Option<&str>) -> Result<Disclosure, VaultError> {
        let not_found = || VaultError::NotFound {
            what: "deferred entry not yet disclosed",
        };
        let records = self.unsealed.records();
        let now = self.deferral_clock_ms();
        let (out, disclosure_index) = self.transact(|tx| {
            // Read again under the writer lock: a lift and the deadline may race.
            let k = key(index);
            let Some(stored) = tx.store().get(Tree::Meta, &k)? else {
                return Err(not_found());
            };
            let (p, _) = open_row(&self.keys, &k, &stored)?;
            // The citizen's tag and note key, or only the tag of an erased citizen.
            let (id, tag, note_key) = match &p.citizen {
                Whose::Citizen(c) => {
                    let id = citizen_id(c)?;
                    let Some((tag, note_key)) = records
                        .subject_keys(tx.store(), None, &id)
                        .map_err(record_err)?
                    else {
                        // Erasure rewrites the rows; a row left without its citizen stays
                        // (the deferred entry shows as overdue to auditors).
                        return Err(not_found());
                    };
                    (Some(id), tag, Some(note_key))
                }
                Whose::Erased(tag) => (None, *tag, None),
            };
            tx.batch.delete(Tree::Meta, k);
            let (actor, initiator) = match lift {
                Some(_) => (
                    Actor {
                        kind: ActorKind::Operator,
                        id: "operator".to_owned(),
                    },
                    "lifted",
                ),
                None => (
                    Actor {
                        kind: ActorKind::System,
                        id: "vault".to_owned(),
                    },
                    "deadline",
                ),
            };
            let mut draft = EntryDraft::new(now, actor, audit::DISCLOSE_ACTION, "done");
            draft.processing = Some("administration".to_owned());
            draft.initiator = Some(initiator.to_owned());
            draft.subject = Some(tag);
            draft.deferral = Some(Deferral::Disclosure {
                of: index,
                opening: p.opening,
                lift: None,
            });
            // The deferred entry joins the citizen's history with its sealed texts (an
            // erased citizen's: with none, like the rest of their history).
            tx.batch.put(
                Tree::AuditSubjects,
                log::subject_key(&tag, index).to_vec(),
                p.note,
            );
            let texts = CallerTexts {
                lift: lift.map(str::to_owned),
                ..CallerTexts::default()
            };
            tx.entry_with_texts(draft, texts, note_key)?;
            // The citizen is told now (`access.disclosed`), in the disclosure's commit.
            if let Some(id) = &id {
                tx.notify_about(id);
            }
            Ok(id.map(|id| id.as_str().to_owned()))
        })?;
        Ok(Disclosure {
            citizen: out,
            deferred_index: index,
            disclosure_index,
            lifted: lift.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PRIVATE_ROW;
    use crate::storage::sled::SledStore;

    fn row() -> Pending {
        Pending {
            citizen: Whose::Citizen("EE38001010001".to_owned()),
            opening: [5u8; 32],
            disclose_at: Some(1_800_000_000_000),
            note: b"sealed note".to_vec(),
        }
    }

    /// A pending row is stored encrypted: no byte of the citizen id or the opening; an edit
    /// is refused; a row of the earlier MAC-only form is read and rewritten encrypted.
    #[test]
    fn pending_rows_are_encrypted_and_legacy_rows_are_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::create(tmp.path().join("store")).unwrap();
        let keys = VaultKeys::derive(&[9u8; 32]);
        let mut batch = WriteBatch::new();
        let d = Deferring {
            citizen: "EE38001010001".to_owned(),
            tag: SubjectTag([1u8; 32]),
            opening: row().opening,
        };
        stage_pending(&mut batch, &keys, 7, &d, row().disclose_at, row().note).unwrap();
        // The earlier form, as a version before encryption wrote it.
        let legacy = keys.records().seal(Tree::Meta, &key(8), encode(&row()));
        batch.put(Tree::Meta, key(8), legacy.clone());
        store.commit(batch).unwrap();

        let stored = store.get(Tree::Meta, &key(7)).unwrap().unwrap();
        assert_eq!(stored[0], PRIVATE_ROW);
        assert!(!stored.windows(13).any(|w| w == b"EE38001010001"));
        assert!(!stored.windows(32).any(|w| w == [5u8; 32]));
        let rows = pending_rows(&store, &keys).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0, rows[0].2), (7, false));
        assert_eq!((rows[1].0, rows[1].2), (8, true));
        for (_, p, _) in &rows {
            assert!(p.citizen.is("EE38001010001"));
            assert_eq!(p.opening, [5u8; 32]);
            assert_eq!(p.disclose_at, Some(1_800_000_000_000));
            assert_eq!(p.note, b"sealed note");
        }

        assert_eq!(encrypt_legacy(&store, &keys).unwrap(), 1);
        assert_eq!(encrypt_legacy(&store, &keys).unwrap(), 0);
        let rewritten = store.get(Tree::Meta, &key(8)).unwrap().unwrap();
        assert_eq!(rewritten[0], PRIVATE_ROW);
        assert!(!rewritten.windows(13).any(|w| w == b"EE38001010001"));
        assert!(pending_rows(&store, &keys)
            .unwrap()
            .iter()
            .all(|(_, p, legacy)| !legacy && p.citizen.is("EE38001010001")));

        // An edited row, or one moved to another index, is refused.
        let mut edited = stored.clone();
        edited[20] ^= 1;
        assert!(open_row(&keys, &key(7), &edited).is_err());
        assert!(open_row(&keys, &key(9), &stored).is_err());
        let mut b = WriteBatch::new();
        b.put(Tree::Meta, key(7), edited);
        store.commit(b).unwrap();
        assert!(pending(&store, &keys).is_err());
    }
}
