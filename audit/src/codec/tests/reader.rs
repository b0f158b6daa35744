//! The strict reader refuses every non-canonical form, as the reference model does.

use super::*;
#[test]
fn non_canonical_integer_is_rejected() {
    for v in VERSIONS {
        let bytes = encode_as(&sample(), v).unwrap();
        // "v" is one byte (2 or 3); rewrite it in the two-byte form 0x18 0x0v.
        let at = value_at(&bytes, "v");
        assert_eq!(u64::from(bytes[at]), v);
        let mut long = bytes[..at].to_vec();
        long.extend_from_slice(&[0x18, v as u8]);
        long.extend_from_slice(&bytes[at + 1..]);
        assert!(matches!(
            decode_entry(&long),
            Err(EntryError::Malformed { .. })
        ));
        assert!(!agree(&long));
    }
}

#[test]
fn trailing_bytes_unknown_versions_and_the_other_versions_form_are_rejected() {
    for v in VERSIONS {
        let mut bytes = encode_as(&sample(), v).unwrap();
        let at = value_at(&bytes, "v");
        for other in [0x00, 0x01, 0x07, 0x17] {
            let mut b = bytes.clone();
            b[at] = other;
            assert_eq!(
                decode_entry(&b),
                Err(EntryError::Invalid {
                    field: "v",
                    rule: "unknown entry version"
                })
            );
            assert!(!agree(&b));
        }
        // A map carrying v = 3, an array carrying v = 2.
        let mut b = bytes.clone();
        b[at] = (MAP_VERSION + ARRAY_VERSION - v) as u8;
        let want = Err(EntryError::Invalid {
            field: "v",
            rule: FORM_RULE,
        });
        assert_eq!(decode_entry(&b), want);
        assert_eq!(reference_decode(&b), want);
        assert!(decode_links(&b).is_err());
        bytes.push(0);
        assert!(decode_entry(&bytes).is_err());
        assert!(!agree(&bytes));
    }
}

/// Each version's head with the other version's inner forms (an array entry with map
/// pairs, a map entry with array pairs) is refused, naming the field.
#[test]
fn pairs_must_have_the_form_of_their_entry() {
    let e = sample();
    let (v2, v3) = (
        encode_as(&e, MAP_VERSION).unwrap(),
        encode_as(&e, ARRAY_VERSION).unwrap(),
    );
    // The v3 entry with the actor as the map {0: kind, 1: id}.
    let at = value_at(&v3, "actor");
    let mut b = v3[..at].to_vec();
    b.extend_from_slice(b"\xa2\x00\x66agency\x01\x6atax-office");
    b.extend_from_slice(&v3[skip(&v3, at)..]);
    assert_eq!(
        decode_entry(&b),
        Err(malformed("item 4 (`actor`): expected an array of 2 items"))
    );
    assert!(!agree(&b));
    // The v2 entry with the withheld item as the array [field, reason].
    let at = value_at(&v2, "withheld");
    let mut b = v2[..at].to_vec();
    b.extend_from_slice(b"\x81\x82\x66income\x6ano_consent");
    b.extend_from_slice(&v2[skip(&v2, at)..]);
    assert_eq!(
        decode_entry(&b),
        Err(malformed(
            "the value of key 13 (`withheld`): expected a map of 2 pairs"
        ))
    );
    assert!(!agree(&b));
    // v3 with a 3-item actor, v2 with a 1-pair actor.
    let at = value_at(&v3, "actor");
    let mut b = v3.clone();
    b[at] = 0x83;
    assert!(!agree(&b));
    let at = value_at(&v2, "actor");
    let mut b = v2.clone();
    b[at] = 0xa1;
    assert!(!agree(&b));
}

/// Every substitution, deletion and insertion of one byte in three valid encodings of
/// each version is accepted or rejected exactly as the reference model does (all are
/// rejected but the few that spell another valid entry, e.g. another time or flag).
#[test]
fn every_single_byte_change_is_judged_like_the_reference() {
    for v in VERSIONS {
        for e in [sample(), citizen(), minimal()] {
            let bytes = encode_as(&e, v).expect("valid");
            let mut accepted = 0;
            for pos in 0..=bytes.len() {
                for b in 0..=255u8 {
                    let mut ins = bytes.clone();
                    ins.insert(pos, b);
                    accepted += usize::from(agree(&ins));
                    if pos < bytes.len() && bytes[pos] != b {
                        let mut sub = bytes.clone();
                        sub[pos] = b;
                        accepted += usize::from(agree(&sub));
                    }
                }
                if pos < bytes.len() {
                    let mut del = bytes.clone();
                    del.remove(pos);
                    accepted += usize::from(agree(&del));
                    assert!(!agree(&bytes[..pos]), "a prefix is never an entry");
                }
            }
            assert!(accepted > 0, "some changes spell another valid entry");
        }
    }
}

#[test]
fn malformed_reasons_name_what_was_expected_and_found() {
    assert_eq!(
        Reader::new(b"\x61x").uint(),
        Err(Fault::Type {
            expected: MAJOR_UINT,
            found: MAJOR_TEXT
        })
    );
    assert_eq!(
        EntryError::from(Fault::Type {
            expected: MAJOR_UINT,
            found: MAJOR_TEXT
        })
        .to_string(),
        "entry bytes are not a canonical entry of version 2, 3, 4, 5 or 6: expected an unsigned \
         integer, found a text string"
    );
    assert_eq!(Reader::new(b"\x18\x17").uint(), Err(Fault::NotShortest));
    assert_eq!(
        Reader::new(b"\x1f").uint(),
        Err(Fault::IndefiniteOrReserved)
    );
    assert_eq!(Reader::new(b"\x19\x01").uint(), Err(Fault::EndsEarly));
    assert_eq!(
        Reader::new(b"\x03").key(Map::Entry, 2),
        Err(Fault::Key(Map::Entry, 2))
    );
    assert_eq!(
        Reader::new(b"").key(Map::Entry, 2),
        Err(Fault::Key(Map::Entry, 2))
    );
    assert_eq!(
        EntryError::from(Fault::Key(Map::Entry, 2)).to_string(),
        "entry bytes are not a canonical entry of version 2, 3, 4, 5 or 6: expected the key 2 \
         (`time`) next"
    );
    // In version 3 a wrong value names its item; in version 2 its key.
    let bytes = encode_as(&minimal(), ARRAY_VERSION).expect("valid");
    let at = value_at(&bytes, "initiator");
    let mut b = bytes.clone();
    b[at] = 0x00;
    assert_eq!(
        decode_entry(&b).map_err(|e| e.to_string()),
        Err(
            "entry bytes are not a canonical entry of version 2, 3, 4, 5 or 6: item 5 \
             (`initiator`): expected a text string, found an unsigned integer"
                .into()
        )
    );
    let mut b = bytes.clone();
    b[value_at(&bytes, "actor") + 1] = 0x40;
    assert_eq!(
        decode_entry(&b),
        Err(malformed(
            "item 0 (`actor.kind`): expected a text string, found a byte string"
        ))
    );
    let mut b = bytes.clone();
    b[value_at(&bytes, "review")] = 0xf6;
    assert_eq!(
        decode_entry(&b),
        Err(malformed("item 19 (`review`): expected a boolean"))
    );
    let v2 = encode_as(&minimal(), MAP_VERSION).expect("valid");
    let at = value_at(&v2, "initiator");
    let mut b = v2.clone();
    b[at] = 0x00;
    assert_eq!(
        decode_entry(&b),
        Err(malformed(
            "the value of key 5 (`initiator`): expected a text string, found an \
             unsigned integer"
        ))
    );
    let mut b = v2.clone();
    b[at - 1] = 0x06;
    assert_eq!(
        decode_entry(&b),
        Err(malformed("expected the key 5 (`initiator`) next"))
    );
    // Neither version's head; nothing at all; a byte after the entry.
    for head in [0xb3, 0xb5, 0x93, 0x96, 0x00, 0xbf, 0x9f] {
        let mut b = bytes.clone();
        b[0] = head;
        assert_eq!(decode_entry(&b), Err(EntryError::from(Fault::Entry)));
    }
    assert_eq!(decode_entry(b""), Err(EntryError::from(Fault::EndsEarly)));
    let mut b = bytes.clone();
    b.push(0xf6);
    assert_eq!(decode_entry(&b), Err(EntryError::from(Fault::Trailing)));
}

/// Rewrites the head of the field `key` (its shortest form) in every wider form: only
/// the shortest decodes, as for the reference model.
fn only_shortest_head_decodes(e: &Entry, v: u64, key: &str, major: u8, value: u64) {
    let bytes = encode_as(e, v).expect("valid");
    let at = value_at(&bytes, key);
    let forms = heads(major, value);
    assert_eq!(&bytes[at..at + forms[0].len()], forms[0].as_slice());
    for (i, form) in forms.iter().enumerate() {
        let mut b = bytes[..at].to_vec();
        b.extend_from_slice(form);
        b.extend_from_slice(&bytes[at + forms[0].len()..]);
        assert_eq!(agree(&b), i == 0, "v{v}: {key} = {value} in form {i}");
    }
}

#[test]
fn integers_and_lengths_must_use_their_shortest_head() {
    let edges = [
        0,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX),
        1 << 32,
        u64::MAX,
    ];
    for v in VERSIONS {
        for value in edges {
            let mut e = minimal();
            e.time_ms = value;
            only_shortest_head_decodes(&e, v, "time", MAJOR_UINT, value);
            let mut e = sample();
            e.index = value.max(1);
            e.subject_prev = Some(value.max(1) - 1);
            only_shortest_head_decodes(&e, v, "index", MAJOR_UINT, value.max(1));
            only_shortest_head_decodes(&e, v, "subject_prev", MAJOR_UINT, value.max(1) - 1);
        }
        for len in [0usize, 1, 23, 24, 255, 256, 4096] {
            let mut e = minimal();
            e.justification = Some("j".repeat(len));
            only_shortest_head_decodes(&e, v, "justification", MAJOR_TEXT, len as u64);
            e.requested = vec!["f".into(); len.min(1024)];
            only_shortest_head_decodes(&e, v, "requested", MAJOR_ARRAY, len.min(1024) as u64);
            e.withheld = withheld(&vec![("f", "r"); len.min(1024)]);
            only_shortest_head_decodes(&e, v, "withheld", MAJOR_ARRAY, len.min(1024) as u64);
        }
    }
}

#[test]
fn indefinite_and_reserved_heads_are_rejected() {
    for v in VERSIONS {
        let bytes = encode_as(&minimal(), v).expect("valid");
        // "time": 0 is 0x00.
        let at = value_at(&bytes, "time");
        assert_eq!(bytes[at], 0x00);
        for info in 28..=31u8 {
            let mut b = bytes.clone();
            b[at] = info;
            assert!(!agree(&b));
            assert!(matches!(
                decode_entry(&b),
                Err(EntryError::Malformed { .. })
            ));
        }
        // "action": "x" as an indefinite-length text of one chunk.
        let at = value_at(&bytes, "action");
        assert_eq!(&bytes[at..at + 2], b"\x61x");
        let mut b = bytes[..at].to_vec();
        b.extend_from_slice(b"\x7f\x61x\xff");
        b.extend_from_slice(&bytes[at + 2..]);
        assert!(!agree(&b));
        // The entry, the actor and a list as indefinite-length containers.
        let mut b = bytes.clone();
        b[0] |= 0x1f;
        b.push(0xff);
        assert!(!agree(&b));
        let at_actor = value_at(&bytes, "actor");
        let end = skip(&bytes, at_actor);
        let mut b = bytes[..at_actor].to_vec();
        b.push(bytes[at_actor] | 0x1f);
        b.extend_from_slice(&bytes[at_actor + 1..end]);
        b.push(0xff);
        b.extend_from_slice(&bytes[end..]);
        assert!(!agree(&b));
        let at_list = value_at(&bytes, "requested");
        let mut b = bytes[..at_list].to_vec();
        b.extend_from_slice(b"\x9f\xff");
        b.extend_from_slice(&bytes[at_list + 1..]);
        assert!(!agree(&b));
        // A tagged value (tag 0 on the time) and a byte string where text is expected.
        let at_time = value_at(&bytes, "time");
        let mut b = bytes[..at_time].to_vec();
        b.push(0xc0);
        b.extend_from_slice(&bytes[at_time..]);
        assert!(!agree(&b));
        let mut b = bytes.clone();
        b[at] = 0x41;
        assert!(!agree(&b));
    }
}

/// An entry of `target` encoded bytes in the form of version `v` (its justification
/// pads it), serialised without the encoder's rules.
fn entry_of_len(v: u64, target: usize) -> (Entry, Vec<u8>) {
    let mut e = minimal();
    e.requested = vec!["r".repeat(MAX_TEXT_LEN); 255];
    e.justification = Some("j".repeat(1000));
    let short = raw(&e, v).len();
    e.justification = Some("j".repeat(1000 + target - short));
    let bytes = raw(&e, v);
    assert_eq!(bytes.len(), target);
    (e, bytes)
}

#[test]
fn an_entry_of_exactly_1_mib_is_accepted_and_one_byte_more_is_refused() {
    for v in VERSIONS {
        let (e, bytes) = entry_of_len(v, MAX_ENTRY_LEN);
        assert_eq!(encode_as(&e, v).as_ref(), Ok(&bytes));
        assert_eq!(decode_entry(&bytes), Ok(e));
        let (e, bytes) = entry_of_len(v, MAX_ENTRY_LEN + 1);
        assert_eq!(encode_as(&e, v), Err(too_large()));
        assert_eq!(decode_entry(&bytes), Err(too_large()));
        assert!(decode_links(&bytes).is_err());
        assert!(!agree(&bytes));
    }
}
