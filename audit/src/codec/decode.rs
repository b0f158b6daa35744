//! The owning decode: an [`Entry`] from leaf bytes, through the strict reader.

use super::reader::{decode_view, Fault, Items, Map, Reader};
use crate::commitment::Commitment;
use crate::entry::{Actor, Claim, Entry, EntryDraft, EntryError, SubjectTag, Terms, Withheld};

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

/// Strictly decodes an entry of any version read.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    let (w, kind) = decode_view(bytes)?;
    let withheld = if w.keyed {
        owned_withheld::<true>(w.withheld)?
    } else {
        owned_withheld::<false>(w.withheld)?
    };
    Ok(Entry {
        index: w.index,
        prev: *w.prev,
        body: EntryDraft {
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
            justification_commitment: w.justification_commitment.map(|c| Commitment(*c)),
            official: w.official.map(|c| Commitment(*c)),
            review: w.review,
            subject: w.subject.map(|t| SubjectTag(*t)),
            subject_prev: w.subject_prev,
            policy_set: w.policy_set.copied(),
            claim: w
                .claim
                .map(|c| -> Result<Claim, Fault> {
                    Ok(Claim {
                        legal_basis: owned_opt(c.legal_basis)?,
                        justified: c.justified,
                    })
                })
                .transpose()?,
            terms: w
                .terms
                .map(|t| -> Result<Terms, Fault> {
                    Ok(Terms {
                        agency: owned(t.agency)?,
                        valid_from: t.valid_from,
                        expires_at: t.expires_at,
                        max_uses: t.max_uses,
                        data_life: t.data_life,
                        supersedes: owned_opt(t.supersedes)?,
                    })
                })
                .transpose()?,
        },
    })
}
