//! Property tests against the reference model.

use proptest::prelude::*;

use super::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => "[a-z._-]{1,12}",
        6 => ".{1,20}",
        2 => Just(String::new()),
        1 => (4095usize..=4097).prop_map(|n| "t".repeat(n)),
    ]
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..30,
        any::<u64>(),
        250u64..70_000,
        (1u64 << 32) - 3..(1 << 32) + 3
    ]
}

fn any_kind() -> impl Strategy<Value = ActorKind> {
    prop_oneof![
        Just(ActorKind::Agency),
        Just(ActorKind::Citizen),
        Just(ActorKind::Auditor),
        Just(ActorKind::Operator),
        Just(ActorKind::System),
    ]
}

/// Entries of every shape, most valid, some breaking a field rule.
fn any_entry() -> impl Strategy<Value = Entry> {
    let texts = || proptest::collection::vec(any_text(), 0..4);
    let opt = || proptest::option::of(any_text());
    (
        (
            any_u64(),
            any_u64(),
            any_kind(),
            any_text(),
            any_text(),
            any_text(),
        ),
        (opt(), opt(), opt(), opt(), opt(), opt(), opt()),
        (
            texts(),
            texts(),
            proptest::collection::vec((any_text(), any_text()), 0..3),
        ),
        (
            any::<bool>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any_u64()),
            any::<[u8; 32]>(),
        ),
    )
        .prop_map(|(a, b, c, d)| {
            let (index, time_ms, kind, id, action, decision) = a;
            let (
                initiator,
                processing,
                purpose,
                legal_basis,
                legal_reference,
                consent_id,
                justification,
            ) = b;
            let (requested, released, withheld) = c;
            let (review, subject, subject_prev, prev) = d;
            Entry {
                index,
                prev,
                body: EntryDraft {
                    time_ms,
                    actor: Actor {
                        kind,
                        id: if kind == ActorKind::Citizen && id.len() < 5 {
                            String::new()
                        } else {
                            id
                        },
                    },
                    initiator,
                    action,
                    processing,
                    purpose,
                    requested,
                    released,
                    withheld: withheld
                        .into_iter()
                        .map(|(field, reason)| Withheld { field, reason })
                        .collect(),
                    legal_basis,
                    legal_reference,
                    consent_id,
                    decision,
                    justification,
                    justification_commitment: None,
                    official: None,
                    review,
                    subject: subject.map(SubjectTag),
                    subject_prev,
                    policy_set: None,
                    claim: None,
                    terms: None,
                    deferral: None,
                },
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A valid entry round-trips in both versions; an invalid one is refused by the
    /// encoders, and its canonical bytes by the decoder and the reference, all with
    /// the same error.
    #[test]
    fn decode_inverts_encode_and_rules_match_the_reference(
        e in any_entry(),
        v in prop::sample::select(VERSIONS.to_vec()),
    ) {
        match encode_as(&e, v) {
            Ok(bytes) => {
                prop_assert_eq!(decode_entry(&bytes), Ok(e.clone()));
                prop_assert_eq!(reference_decode(&bytes), Ok(e));
            }
            Err(err) => {
                let bytes = raw(&e, v);
                prop_assert_eq!(decode_entry(&bytes), Err(err.clone()));
                prop_assert_eq!(reference_decode(&bytes).map(|_| ()), Err(err));
            }
        }
    }

    /// Any few substitutions, insertions and deletions of bytes in a valid encoding of
    /// either version: the decoder accepts exactly when the reference model does, with
    /// the same entry.
    #[test]
    fn mutated_bytes_are_judged_like_the_reference(
        e in any_entry(),
        v in prop::sample::select(VERSIONS.to_vec()),
        edits in proptest::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..5),
    ) {
        let Ok(mut bytes) = encode_as(&e, v) else { return Ok(()) };
        for (kind, at, b) in edits {
            match kind {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                1 => bytes.insert(at.index(bytes.len() + 1), b),
                _ if !bytes.is_empty() => {
                    bytes.remove(at.index(bytes.len()));
                }
                _ => {}
            }
        }
        agree(&bytes);
    }
}
