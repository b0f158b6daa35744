//! Builders shared by the integration tests.

use std::collections::HashMap;

#[path = "../support/drafts.rs"]
#[allow(dead_code)] // this binary uses part of the shared drafts
mod support;

use support::add_access_request;

use audit::{
    leaf_hash, node_hash, sign_checkpoint, Actor, ActorKind, Commitment, EntryDraft, Hash, LogRead,
    LogState, MemStore, NoteSigner, SignedCheckpoint, StoreError, SubjectTag, TextField, Withheld,
};

/// The Go test key of golang.org/x/mod/sumdb/note (PeterNeumann).
pub(crate) const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

/// The seed of the Go test key (the payload after the 0x01 type byte).
pub(crate) fn go_seed() -> [u8; 32] {
    *NoteSigner::from_private_key_string(GO_SKEY)
        .expect("Go test key parses")
        .seed_bytes()
}

/// A varied, realistic draft; `seed` changes the content (another log).
pub(crate) fn draft(i: u64, seed: u8, subjects: &mut HashMap<SubjectTag, u64>) -> EntryDraft {
    let kinds = [
        ActorKind::Agency,
        ActorKind::Citizen,
        ActorKind::Operator,
        ActorKind::Auditor,
        ActorKind::System,
    ];
    let kind = kinds[(i % 5) as usize];
    let id = if kind == ActorKind::Citizen {
        String::new()
    } else {
        format!("actor-{}", i % 3)
    };
    let mut d = EntryDraft::new(
        1_767_225_600_000 + i * 1_000 + u64::from(seed),
        Actor { kind, id },
        ["access", "record.write", "consent.grant", "erasure"][(i % 4) as usize],
        ["granted", "partial", "refused", "done"][(i % 4) as usize],
    );
    if i % 6 != 5 {
        let tag = SubjectTag([(i % 7) as u8 ^ seed; 32]);
        d.subject = Some(tag);
        d.subject_prev = subjects.get(&tag).copied();
        subjects.insert(tag, i);
    }
    if i.is_multiple_of(4) {
        add_access_request(&mut d, "benefit assessment", format!("c-{i}"));
    }
    if i % 10 == 3 {
        d.legal_reference = Some("Act 12 s.4".into());
        d.justification_commitment = Some(emergency_commitment(seed));
        d.review = true;
    }
    d
}

/// The commitment the drafts carry for the justification "emergency" (version 4): salt
/// `[seed; 32]`.
pub(crate) fn emergency_commitment(seed: u8) -> Commitment {
    Commitment::to_text(TextField::Justification, &[seed; 32], "emergency")
}

/// A log of `n` entries appended in batches of `batch`.
pub(crate) fn build_log(n: u64, seed: u8, batch: usize) -> (MemStore, LogState) {
    let mut store = MemStore::new();
    let mut state = LogState::new();
    let mut subjects = HashMap::new();
    let drafts: Vec<_> = (0..n).map(|i| draft(i, seed, &mut subjects)).collect();
    for chunk in drafts.chunks(batch) {
        store
            .append(&mut state, chunk.to_vec())
            .expect("valid drafts append");
    }
    (store, state)
}

pub(crate) fn signer() -> NoteSigner {
    NoteSigner::from_seed("example.com/consent-log", &go_seed()).expect("valid name")
}

/// A signed export of a fresh log of `n` entries; returns the file and the verifier key.
pub(crate) fn export_of(n: u64, seed: u8) -> (Vec<u8>, String, MemStore, SignedCheckpoint) {
    let (store, state) = build_log(n, seed, 17);
    let s = signer();
    let signed = sign_checkpoint(&store, &s, state.size(), None).expect("signs");
    let mut file = Vec::new();
    audit::export::write(&store, &signed, &s.verifier_key(), &mut file).expect("exports");
    (file, s.verifier_key(), store, signed)
}

/// Re-frames an export with the given entries (and optionally another count).
pub(crate) fn reframe(file: &[u8], leaves: &[Vec<u8>], count: Option<u64>) -> Vec<u8> {
    let (header_len, _) = layout(file);
    let mut out = file[..header_len - 8].to_vec();
    out.extend_from_slice(&count.unwrap_or(leaves.len() as u64).to_be_bytes());
    for l in leaves {
        out.extend_from_slice(&(l.len() as u32).to_be_bytes());
        out.extend_from_slice(l);
    }
    out
}

/// The header length and each entry's byte range (length prefix included).
pub(crate) fn layout(file: &[u8]) -> (usize, Vec<std::ops::Range<usize>>) {
    let be = |r: std::ops::Range<usize>| file[r].iter().fold(0usize, |a, b| a << 8 | *b as usize);
    let vkey_len = be(9..11);
    let note_at = 11 + vkey_len;
    let note_len = be(note_at..note_at + 4);
    let header = note_at + 4 + note_len + 8;
    let count = be(header - 8..header);
    let mut ranges = Vec::new();
    let mut pos = header;
    for _ in 0..count {
        let len = be(pos..pos + 4);
        ranges.push(pos..pos + 4 + len);
        pos += 4 + len;
    }
    (header, ranges)
}

/// The leaves of an export.
pub(crate) fn leaves(file: &[u8]) -> Vec<Vec<u8>> {
    layout(file)
        .1
        .into_iter()
        .map(|r| file[r.start + 4..r.end].to_vec())
        .collect()
}

/// The export of `export_of(12, 0)` written by the entry format version 2 encoder, before
/// version 3 existed (`audit/testdata/entry-v2/README.md`), and its verifier key.
pub(crate) fn v2_export() -> (&'static [u8], &'static str) {
    (
        include_bytes!("../../testdata/entry-v2/export-12.vltaudit"),
        include_str!("../../testdata/entry-v2/export-12.vkey").trim_end(),
    )
}

/// A log store over leaf bytes of any entry version (appended by nothing but the test),
/// hashing each subtree when asked: for small logs.
pub(crate) struct LeafStore(pub(crate) Vec<Vec<u8>>);

impl LeafStore {
    /// RFC 9162 MTH of the leaves `start..start + len`, `len` a power of two.
    fn subtree(&self, start: usize, len: usize) -> Hash {
        if len == 1 {
            return leaf_hash(&self.0[start]);
        }
        let half = len / 2;
        node_hash(
            &self.subtree(start, half),
            &self.subtree(start + half, half),
        )
    }
}

impl LogRead for LeafStore {
    fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .cloned())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        let len = 1usize.checked_shl(u32::from(level));
        let start = len.and_then(|len| usize::try_from(index).ok()?.checked_mul(len));
        Ok(match (start, len) {
            (Some(start), Some(len))
                if start
                    .checked_add(len)
                    .is_some_and(|end| end <= self.0.len()) =>
            {
                Some(self.subtree(start, len))
            }
            _ => None,
        })
    }
}

/// The version-2 log of [`v2_export`] continued by this code with `more` entries (so in
/// version 4; the drafts continue `draft(i, 0, ..)`, subject chains cross the upgrade),
/// and its signed export.
pub(crate) fn mixed_export(more: u64) -> (Vec<u8>, String, LeafStore) {
    let (v2_file, _) = v2_export();
    let mut store = LeafStore(leaves(v2_file));
    let old = store.0.len() as u64;
    let mut state = LogState::load(&store, old).expect("the fixture's tree loads");
    let mut subjects = HashMap::new();
    for i in 0..old {
        draft(i, 0, &mut subjects);
    }
    let drafts: Vec<_> = (old..old + more)
        .map(|i| draft(i, 0, &mut subjects))
        .collect();
    let plan = state.plan(drafts).expect("valid drafts");
    state.apply(&plan).expect("fresh plan");
    store
        .0
        .extend(plan.leaves.into_iter().map(|(_, leaf)| leaf));
    let s = signer();
    let signed = sign_checkpoint(&store, &s, state.size(), None).expect("signs");
    let mut file = Vec::new();
    audit::export::write(&store, &signed, &s.verifier_key(), &mut file).expect("exports");
    (file, s.verifier_key(), store)
}
