//! The free texts of audit entries (`docs/audit-log.md`, "Free texts"; `docs/keys.md`):
//! what a caller writes (the official behind a request, a justification) never enters a
//! leaf. The leaf carries a salted commitment to each text ([`audit::Commitment`]); the
//! texts and their salts are sealed for the citizen the entry is about, as the value of
//! the entry's `AuditSubjects` row (key `tag || index`), in the same commit as the entry.
//! The seal is AES-256-GCM under the citizen's note key (derived from the tag key, which
//! erasure destroys) with a fresh random nonce, the row key in the associated data. An
//! entry without a subject keeps only the commitments: its texts are not stored.

use audit::{Commitment, EntryDraft, SubjectTag, TextField, SALT_LEN};

use super::VaultError;
use crate::codec::CodecError;
use crate::keys::{self, NoteKey, NONCE_LEN, TAG_LEN};

/// The format byte of a sealed note.
const NOTE_FORMAT_V1: u8 = 1;
/// The label at the start of a note's associated data.
const NOTE_AD_LABEL: &[u8] = b"vault-audit-note-v1";

/// One free text of an audit entry and the salt of its commitment: with them, anyone
/// holding the leaf checks the text ([`Commitment::matches`]).
#[derive(Clone, PartialEq, Eq)]
pub struct EntryText {
    /// The entry field the text is committed as.
    pub field: TextField,
    /// The text.
    pub text: String,
    /// The commitment's salt.
    pub salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for EntryText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryText")
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

/// The free texts a caller supplied with a request, not yet committed.
#[derive(Clone, Debug, Default)]
pub(super) struct CallerTexts {
    /// The official behind the request (the request's `initiator`).
    pub(super) official: Option<String>,
    /// The request's justification.
    pub(super) justification: Option<String>,
    /// The reference of the decision that lifted a deferred access's secrecy (committed
    /// into the disclosure's `deferral`, which the draft must already carry).
    pub(super) lift: Option<String>,
}

impl CallerTexts {
    /// Commits each text into `draft` (`official`, `justification_commitment`, a
    /// disclosure's `lift`) under a fresh random salt, and returns the texts with their
    /// salts.
    pub(super) fn commit_into(self, draft: &mut EntryDraft) -> Result<Vec<EntryText>, VaultError> {
        let mut out = Vec::new();
        for (field, text) in [
            (TextField::Official, self.official),
            (TextField::Justification, self.justification),
            (TextField::Lift, self.lift),
        ] {
            let Some(text) = text else { continue };
            let mut salt = [0u8; SALT_LEN];
            keys::fill_random(&mut salt).map_err(VaultError::internal)?;
            let c = Commitment::to_text(field, &salt, &text);
            match field {
                TextField::Official => draft.official = Some(c),
                TextField::Justification => draft.justification_commitment = Some(c),
                TextField::Lift => match &mut draft.deferral {
                    Some(audit::Deferral::Disclosure { lift, .. }) => *lift = Some(c),
                    _ => {
                        return Err(VaultError::internal(
                            "a lift reference committed into an entry that is no disclosure",
                        ))
                    }
                },
            }
            out.push(EntryText { field, text, salt });
        }
        Ok(out)
    }
}

fn field_byte(field: TextField) -> u8 {
    match field {
        TextField::Official => 1,
        TextField::Justification => 2,
        TextField::Lift => 3,
    }
}

/// The associated data of the note of the entry `index` about `tag`: the label, then the
/// row's key.
fn associated_data(tag: &SubjectTag, index: u64) -> Vec<u8> {
    let mut ad = Vec::with_capacity(4 + NOTE_AD_LABEL.len() + 40);
    keys::push_lp(&mut ad, NOTE_AD_LABEL);
    ad.extend_from_slice(&super::log::subject_key(tag, index));
    ad
}

/// Seals `texts` for the entry `index` about `tag`:
/// `0x01 || nonce (12) || AES-256-GCM(texts)`, the texts each `field (1 byte: 1 official,
/// 2 justification, 3 lift) || salt (32) || u32be length || UTF-8 text`.
pub(super) fn seal(
    key: &NoteKey,
    tag: &SubjectTag,
    index: u64,
    texts: &[EntryText],
) -> Result<Vec<u8>, VaultError> {
    let nonce = keys::random_nonce().map_err(VaultError::internal)?;
    let mut out = Vec::with_capacity(
        1 + NONCE_LEN + TAG_LEN + texts.iter().map(|t| 37 + t.text.len()).sum::<usize>(),
    );
    out.push(NOTE_FORMAT_V1);
    out.extend_from_slice(&nonce);
    let from = out.len();
    for t in texts {
        out.push(field_byte(t.field));
        out.extend_from_slice(&t.salt);
        keys::push_lp(&mut out, t.text.as_bytes());
    }
    keys::aead_seal_in_place(
        key.secret_bytes(),
        &nonce,
        &associated_data(tag, index),
        &mut out,
        from,
    );
    Ok(out)
}

fn bad(message: &str) -> VaultError {
    VaultError::from(CodecError::Decode {
        what: "audit note",
        message: message.to_owned(),
    })
}

/// Opens the note of the entry `index` about `tag` (an empty value: no texts).
pub(super) fn open(
    key: &NoteKey,
    tag: &SubjectTag,
    index: u64,
    sealed: &[u8],
) -> Result<Vec<EntryText>, VaultError> {
    if sealed.is_empty() {
        return Ok(Vec::new());
    }
    let (&format, rest) = sealed.split_first().ok_or_else(|| bad("empty"))?;
    if format != NOTE_FORMAT_V1 {
        return Err(bad("unknown format byte"));
    }
    let (nonce, body) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(|| bad("shorter than its nonce"))?;
    let plain = keys::aead_open(
        key.secret_bytes(),
        nonce,
        &associated_data(tag, index),
        body,
    )
    .ok_or_else(|| bad("failed its integrity check (altered, moved or under another key)"))?;
    let mut rest: &[u8] = &plain;
    let mut out = Vec::new();
    while let Some((&kind, after)) = rest.split_first() {
        let field = match kind {
            1 => TextField::Official,
            2 => TextField::Justification,
            3 => TextField::Lift,
            _ => return Err(bad("unknown text field")),
        };
        let (salt, after) = after
            .split_first_chunk::<SALT_LEN>()
            .ok_or_else(|| bad("ends inside a salt"))?;
        let (len, after) = after
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("ends inside a length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad("text too long"))?;
        let (text, after) = after
            .split_at_checked(len)
            .ok_or_else(|| bad("ends inside a text"))?;
        let text = std::str::from_utf8(text).map_err(|_| bad("text is not UTF-8"))?;
        out.push(EntryText {
            field,
            text: text.to_owned(),
            salt: *salt,
        });
        rest = after;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TagKey;

    fn texts() -> Vec<EntryText> {
        vec![
            EntryText {
                field: TextField::Official,
                text: "dr. Saar".into(),
                salt: [1; 32],
            },
            EntryText {
                field: TextField::Justification,
                text: "unconscious patient".into(),
                salt: [2; 32],
            },
        ]
    }

    #[test]
    fn a_note_opens_only_under_its_key_and_at_its_row() {
        let key = TagKey::generate(0).unwrap().note_key();
        let other = TagKey::generate(0).unwrap().note_key();
        let tag = SubjectTag([5; 32]);
        let sealed = seal(&key, &tag, 7, &texts()).unwrap();
        assert_eq!(open(&key, &tag, 7, &sealed).unwrap(), texts());
        assert!(open(&other, &tag, 7, &sealed).is_err());
        assert!(open(&key, &tag, 8, &sealed).is_err());
        assert!(open(&key, &SubjectTag([6; 32]), 7, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(open(&key, &tag, 7, &flipped).is_err());
        assert!(open(&key, &tag, 7, &[]).unwrap().is_empty());
        // The text is not in the sealed bytes, and two seals of the same texts differ.
        assert!(!sealed.windows(8).any(|w| w == b"dr. Saar"));
        assert_ne!(seal(&key, &tag, 7, &texts()).unwrap(), sealed);
    }

    #[test]
    fn committed_texts_match_their_commitments_and_get_fresh_salts() {
        let mut draft = EntryDraft::new(
            0,
            audit::Actor {
                kind: audit::ActorKind::Agency,
                id: "a".into(),
            },
            "access",
            "granted",
        );
        let texts = CallerTexts {
            official: Some("dr. Saar".into()),
            justification: Some("unconscious patient".into()),
            lift: None,
        }
        .commit_into(&mut draft)
        .unwrap();
        assert_eq!(texts.len(), 2);
        assert_ne!(texts[0].salt, texts[1].salt);
        let official = draft.official.unwrap();
        assert!(official.matches(TextField::Official, &texts[0].salt, "dr. Saar"));
        let j = draft.justification_commitment.unwrap();
        assert!(j.matches(
            TextField::Justification,
            &texts[1].salt,
            "unconscious patient"
        ));
        assert_eq!(draft.justification, None);
        assert_eq!(draft.initiator, None);
    }
}
