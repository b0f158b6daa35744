//! C2SP tlog-witness v1.0.0 `add-checkpoint`: the request body a log sends and a witness
//! parses, the witness's checks with the status codes the spec gives, and the log's check
//! of the cosignature a witness returns.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::cosignature::CosignatureVerifier;
use crate::hash::{empty_root, Hash};
use crate::note::{split_note, Checkpoint, NoteVerifier};
use crate::proof::verify_consistency;

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body a witness reads.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// The `Content-Type` of a 409 answer's body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The body of `POST <prefix>/add-checkpoint`: `old <size>`, the proof's hashes in base64
/// one per line, a blank line, the checkpoint note.
pub fn add_checkpoint_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for h in proof {
        body.push_str(&B64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// A parsed `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the log believes the witness has.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint, a signed note.
    pub note: &'a str,
}

/// Why a witness refuses a request, with the spec's status codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// 400: the request is malformed, or the old size is above the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no valid signature by a key the witness trusts for the origin.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the witness does not know the checkpoint's origin.
    #[error("unknown log `{0}`: this witness is not configured for it")]
    UnknownLog(String),
    /// 409: the old size is not the size of the witness's latest cosigned checkpoint.
    #[error("conflict: the witness's latest cosigned checkpoint of this log has size {size}")]
    Conflict {
        /// The witness's size.
        size: u64,
    },
    /// 422: the checkpoint is not consistent with what the witness has cosigned.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Unprocessable(_) => 422,
        }
    }

    /// The response body: the size and a newline for 409, the message otherwise.
    pub fn body(&self) -> String {
        match self {
            Self::Conflict { size } => format!("{size}\n"),
            other => format!("{other}\n"),
        }
    }
}

fn bad(reason: &str) -> Refusal {
    Refusal::BadRequest(reason.to_owned())
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses an `add-checkpoint` body (400 on any malformation).
pub fn parse_add_checkpoint(body: &str) -> Result<AddCheckpoint<'_>, Refusal> {
    if body.len() > MAX_REQUEST_LEN {
        return Err(bad("request body larger than 64 KiB"));
    }
    let (head, note) = body
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line between the proof and the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(parse_decimal)
        .ok_or_else(|| bad("the first line must be `old <size>` (decimal, no leading zeros)"))?;
    let mut proof = Vec::new();
    for line in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let raw = B64
            .decode(line)
            .map_err(|_| bad("a consistency proof line is not base64"))?;
        let h = Hash::try_from(raw.as_slice())
            .map_err(|_| bad("a consistency proof line is not a 32-byte hash"))?;
        proof.push(h);
    }
    Ok(AddCheckpoint {
        old_size: old,
        proof,
        note,
    })
}

/// What a witness remembers of one log: its latest cosigned checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessedLog {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// The witness's checks of `req`, in the spec's order. `logs` are the keys it trusts;
/// `latest` answers its latest cosigned checkpoint of an origin (`None`: never cosigned).
/// On success, the checkpoint to record (atomically with the check) and cosign, and the
/// note text a cosignature covers.
pub fn check_add_checkpoint<'a>(
    req: &AddCheckpoint<'a>,
    logs: &[NoteVerifier],
    latest: impl FnOnce(&str) -> Option<WitnessedLog>,
) -> Result<(Checkpoint, &'a str), Refusal> {
    let (text, _) = split_note(req.note).map_err(|e| bad(&format!("the checkpoint: {e}")))?;
    let origin = text.split('\n').next().unwrap_or_default();
    let trusted: Vec<&NoteVerifier> = logs.iter().filter(|v| v.name() == origin).collect();
    if trusted.is_empty() {
        return Err(Refusal::UnknownLog(origin.to_owned()));
    }
    let mut signed = false;
    for v in trusted {
        match v.verify(req.note) {
            Ok(_) => signed = true,
            Err(crate::NoteError::NotSignedByKey { .. }) => {}
            Err(e) => return Err(Refusal::Forbidden(e.to_string())),
        }
    }
    if !signed {
        return Err(Refusal::Forbidden(format!(
            "no signature by a key this witness trusts for `{origin}`"
        )));
    }
    let checkpoint = Checkpoint::parse(text).map_err(|e| bad(&e.to_string()))?;
    if req.old_size > checkpoint.size {
        return Err(bad("the old size is larger than the checkpoint's size"));
    }
    let known = latest(origin);
    let known_size = known.as_ref().map_or(0, |k| k.size);
    if req.old_size != known_size {
        return Err(Refusal::Conflict { size: known_size });
    }
    if checkpoint.size == 0 && checkpoint.root != empty_root() {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    match known {
        None => {
            if !req.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "a proof from size 0 must be empty".into(),
                ));
            }
        }
        Some(k) if k.size == 0 => {
            if !req.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "a proof from size 0 must be empty".into(),
                ));
            }
        }
        Some(k) => verify_consistency(k.size, checkpoint.size, &k.root, &checkpoint.root, &req.proof)
            .map_err(|e| {
                Refusal::Unprocessable(format!(
                    "the checkpoint is not consistent with the one this witness cosigned at size {}: {e}",
                    k.size
                ))
            })?,
    }
    Ok((checkpoint, text))
}

/// Checks a witness's `add-checkpoint` answer: the lines of `response` that each carry a
/// valid cosignature on `note` by `witness`, ready to append to the note (other lines, of
/// other keys or malformed, are dropped). An answer without one is an error naming why.
pub fn accept_cosignature(
    note: &str,
    response: &str,
    witness: &CosignatureVerifier,
) -> Result<String, String> {
    if !response.ends_with('\n') || response.len() > MAX_REQUEST_LEN {
        return Err("the answer is not signature lines ending in a newline".into());
    }
    let mut accepted = String::new();
    let mut last_error = None;
    for line in response.split_inclusive('\n') {
        match witness.verify(&format!("{note}{line}")) {
            Ok(Some(_)) => accepted.push_str(line),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    match (accepted.is_empty(), last_error) {
        (false, _) => Ok(accepted),
        (true, Some(e)) => Err(format!("the witness's cosignature does not verify: {e}")),
        (true, None) => Err("the answer carries no cosignature by the witness's key".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::CosignatureSigner;
    use crate::note::NoteSigner;
    use crate::{consistency_proof, root, Actor, ActorKind, EntryDraft, LogState, MemStore};

    fn log_of(n: u64, action: &str) -> MemStore {
        let mut store = MemStore::new();
        let mut state = LogState::new();
        let actor = Actor {
            kind: ActorKind::System,
            id: "s".into(),
        };
        let drafts = (0..n)
            .map(|i| EntryDraft::new(i, actor.clone(), action, "done"))
            .collect();
        store.append(&mut state, drafts).unwrap();
        store
    }

    fn note(signer: &NoteSigner, store: &MemStore, size: u64) -> String {
        let c = Checkpoint {
            origin: signer.name().into(),
            size,
            root: root(store, size).unwrap(),
        };
        signer.sign(&c.body()).unwrap()
    }

    #[test]
    fn the_witness_follows_the_log_and_refuses_forks_and_rollbacks() {
        let signer = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let logs = [NoteVerifier::parse(&signer.verifier_key()).unwrap()];
        let store = log_of(20, "a");
        let mut known: Option<WitnessedLog> = None;
        let add = |old: u64, proof: Vec<Hash>, note: &str, known: &mut Option<WitnessedLog>| {
            let body = add_checkpoint_body(old, &proof, note);
            let req = parse_add_checkpoint(&body).unwrap();
            let r = check_add_checkpoint(&req, &logs, |_| known.clone());
            if let Ok((c, _)) = &r {
                *known = Some(WitnessedLog {
                    size: c.size,
                    root: c.root,
                });
            }
            r.map(|(c, _)| c.size)
        };
        assert_eq!(add(0, vec![], &note(&signer, &store, 5), &mut known), Ok(5));
        // A stale old size gets the witness's size.
        assert_eq!(
            add(0, vec![], &note(&signer, &store, 9), &mut known),
            Err(Refusal::Conflict { size: 5 })
        );
        let proof = consistency_proof(&store, 5, 9).unwrap();
        assert_eq!(add(5, proof, &note(&signer, &store, 9), &mut known), Ok(9));
        // A rollback is a bad request; a fork fails the proof.
        assert_eq!(
            add(9, vec![], &note(&signer, &store, 5), &mut known)
                .unwrap_err()
                .status(),
            400
        );
        let fork = log_of(20, "b");
        let proof = consistency_proof(&fork, 9, 12).unwrap();
        assert_eq!(
            add(9, proof, &note(&signer, &fork, 12), &mut known)
                .unwrap_err()
                .status(),
            422
        );
        // The same size with another root.
        assert_eq!(
            add(9, vec![], &note(&signer, &fork, 9), &mut known)
                .unwrap_err()
                .status(),
            422
        );
        // Another log's key: unknown origin; the right origin signed by another key: 403.
        let other = NoteSigner::from_seed("example.com/other", &[1; 32]).unwrap();
        assert_eq!(
            add(9, vec![], &note(&other, &store, 12), &mut known)
                .unwrap_err()
                .status(),
            404
        );
        let impostor = NoteSigner::from_seed("example.com/log", &[2; 32]).unwrap();
        assert_eq!(
            add(9, vec![], &note(&impostor, &store, 12), &mut known)
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(known.map(|k| k.size), Some(9));
    }

    #[test]
    fn malformed_requests_are_bad_requests_and_answers_are_checked() {
        for body in [
            "",
            "old 01\n\nx",
            "old 1\nnot base64!\n\nx",
            "new 1\n\nx",
            "old 1\nAAAA\n\nx",
        ] {
            assert_eq!(
                parse_add_checkpoint(body).unwrap_err().status(),
                400,
                "{body:?}"
            );
        }
        let signer = NoteSigner::from_seed("example.com/log", &[1; 32]).unwrap();
        let store = log_of(3, "a");
        let note = note(&signer, &store, 3);
        let text = &note[..note.rfind("\n\n").unwrap() + 1];
        let w = CosignatureSigner::from_seed("w.example", &[3; 32]).unwrap();
        let v = CosignatureVerifier::parse(&w.verifier_key()).unwrap();
        let line = w.cosign(text, 7);
        assert_eq!(accept_cosignature(&note, &line, &v), Ok(line.clone()));
        let other = CosignatureSigner::from_seed("w.example", &[4; 32]).unwrap();
        assert!(accept_cosignature(&note, &other.cosign(text, 7), &v).is_err());
        assert!(accept_cosignature(&note, "garbage", &v).is_err());
        // Lines of other keys, or malformed ones, are not passed on.
        let noisy = format!("{}{line}\u{2014} w.example AAAA\n", other.cosign(text, 7));
        assert_eq!(accept_cosignature(&note, &noisy, &v), Ok(line.clone()));
    }
}
