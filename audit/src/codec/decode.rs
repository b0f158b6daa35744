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
            deferral: w.deferral,
        },
    })
}

/// Replaces `s` by the checked text `bytes`, keeping its buffer.
fn set(s: &mut String, bytes: &[u8]) -> Result<(), Fault> {
    s.clear();
    s.push_str(std::str::from_utf8(bytes).map_err(|_| Fault::Utf8)?);
    Ok(())
}

fn set_opt(o: &mut Option<String>, bytes: Option<&[u8]>) -> Result<(), Fault> {
    match (o.as_mut(), bytes) {
        (_, None) => *o = None,
        (Some(s), Some(b)) => set(s, b)?,
        (None, Some(b)) => *o = Some(owned(b)?),
    }
    Ok(())
}

fn set_texts(v: &mut Vec<String>, items: Items<'_>) -> Result<(), Fault> {
    let mut r = Reader::new(items.bytes);
    let len = usize::try_from(items.len).unwrap_or(usize::MAX);
    v.truncate(len);
    for i in 0..len {
        let t = r.text()?;
        match v.get_mut(i) {
            Some(s) => set(s, t)?,
            None => v.push(owned(t)?),
        }
    }
    Ok(())
}

fn set_withheld<const KEYED: bool>(
    v: &mut Vec<Withheld>,
    items: Items<'_>,
) -> Result<(), EntryError> {
    let mut r = Reader::new(items.bytes);
    let len = usize::try_from(items.len).unwrap_or(usize::MAX);
    v.truncate(len);
    for i in 0..len {
        let (field, reason) = r.pair::<KEYED>(Map::Withheld, 13)?;
        match v.get_mut(i) {
            Some(w) => {
                set(&mut w.field, field)?;
                set(&mut w.reason, reason)?;
            }
            None => v.push(Withheld {
                field: owned(field)?,
                reason: owned(reason)?,
            }),
        }
    }
    Ok(())
}

/// [`decode_entry`] into `out`, reusing its buffers (a reader of many entries allocates
/// only when an entry holds more or longer values than the ones before). On an error,
/// `out` holds parts of the refused entry.
pub(crate) fn decode_entry_into(bytes: &[u8], out: &mut Entry) -> Result<(), EntryError> {
    let (w, kind) = decode_view(bytes)?;
    out.index = w.index;
    out.prev = *w.prev;
    let b = &mut out.body;
    b.time_ms = w.time;
    b.actor.kind = kind;
    set(&mut b.actor.id, w.actor_id)?;
    set_opt(&mut b.initiator, w.initiator)?;
    set(&mut b.action, w.action)?;
    set_opt(&mut b.processing, w.processing)?;
    set_opt(&mut b.purpose, w.purpose)?;
    set_texts(&mut b.requested, w.requested)?;
    set_texts(&mut b.released, w.released)?;
    if w.keyed {
        set_withheld::<true>(&mut b.withheld, w.withheld)?;
    } else {
        set_withheld::<false>(&mut b.withheld, w.withheld)?;
    }
    set_opt(&mut b.legal_basis, w.legal_basis)?;
    set_opt(&mut b.legal_reference, w.legal_reference)?;
    set_opt(&mut b.consent_id, w.consent_id)?;
    set(&mut b.decision, w.decision)?;
    set_opt(&mut b.justification, w.justification)?;
    b.justification_commitment = w.justification_commitment.map(|c| Commitment(*c));
    b.official = w.official.map(|c| Commitment(*c));
    b.review = w.review;
    b.subject = w.subject.map(|t| SubjectTag(*t));
    b.subject_prev = w.subject_prev;
    b.policy_set = w.policy_set.copied();
    match (b.claim.as_mut(), w.claim) {
        (_, None) => b.claim = None,
        (Some(c), Some(v)) => {
            set_opt(&mut c.legal_basis, v.legal_basis)?;
            c.justified = v.justified;
        }
        (None, Some(v)) => {
            b.claim = Some(Claim {
                legal_basis: owned_opt(v.legal_basis)?,
                justified: v.justified,
            })
        }
    }
    b.terms = w
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
        .transpose()?;
    b.deferral = w.deferral;
    Ok(())
}
