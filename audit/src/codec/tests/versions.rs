//! Round trips of every version, the version-2 fixtures, what version 3 drops, and what
//! version 4 changes (commitments in place of free texts).

use super::*;

#[test]
fn version_2_leaves_written_by_the_old_encoder_still_decode() {
    for (hex_text, e) in v2_fixtures() {
        let bytes = hex::decode(hex_text.trim()).expect("fixture is hex");
        assert_eq!(bytes[..3], [0xb4, 0x00, 0x02], "a map with v = 2");
        assert_decodes_to(&bytes, &e);
        // The tests' version-2 encoder is the old one, byte for byte.
        assert_eq!(encode_as(&e, MAP_VERSION), Ok(bytes));
    }
}

#[test]
fn round_trip_is_identity_and_fields_are_in_canonical_order() {
    let e = sample();
    let bytes = encode_as(&e, ARRAY_VERSION).unwrap();
    assert_eq!(decode_entry(&bytes).unwrap(), e);
    // Array of 20 items: "v" = 3, "index" = 9, "time" (a 64-bit head).
    assert_eq!(&bytes[..4], &[0x94, 0x03, 0x09, 0x1b]);
    // The actor is [kind, id], each withheld item [field, reason].
    let at = value_at(&bytes, "actor");
    assert_eq!(&bytes[at..at + 8], b"\x82\x66agency");
    let at = value_at(&bytes, "withheld");
    assert_eq!(&bytes[at..at + 9], b"\x81\x82\x66income");
    // Version 2: map of 20 pairs: key 0 ("v") = 2, key 1 ("index") = 9, key 2 ("time").
    let v2 = encode_as(&e, MAP_VERSION).unwrap();
    assert_eq!(decode_entry(&v2).unwrap(), e);
    assert_eq!(&v2[..6], &[0xb4, 0x00, 0x02, 0x01, 0x09, 0x02]);
    for (key, name) in ENTRY_FIELDS.iter().take(20).enumerate() {
        assert_eq!(v2[value_at(&v2, name) - 1], key as u8, "{name}");
    }
    let at = value_at(&v2, "actor");
    assert_eq!(&v2[at..at + 9], b"\xa2\x00\x66agency");
}

/// Version 3 is version 2 without its keys: 20 entry keys, 2 actor keys and 2 per
/// withheld item fewer, every value byte the same; so the benchmark's typical access
/// entry needs one SHA-256 block fewer for its leaf hash.
#[test]
fn version_3_drops_exactly_the_key_bytes_of_version_2() {
    for e in [sample(), citizen(), minimal(), typical_access()] {
        let v2 = encode_as(&e, MAP_VERSION).expect("valid");
        let v3 = encode_as(&e, ARRAY_VERSION).expect("valid");
        assert_eq!(v2.len() - v3.len(), 22 + 2 * e.withheld.len());
        for name in ENTRY_FIELDS.iter().take(20).skip(1) {
            let (a2, a3) = (value_at(&v2, name), value_at(&v3, name));
            let (e2, e3) = (skip(&v2, a2), skip(&v3, a3));
            // The actor and the withheld items lose their keys; every other value
            // is the same bytes.
            let keys = match *name {
                "actor" => 2,
                "withheld" => 2 * e.withheld.len(),
                _ => 0,
            };
            assert_eq!(e2 - a2, e3 - a3 + keys, "{name}");
            if keys == 0 {
                assert_eq!(v2[a2..e2], v3[a3..e3], "{name}");
            }
        }
    }
    // SHA-256 of 0x00 || leaf: 64-byte blocks, at least 9 bytes of padding.
    let blocks = |leaf: &[u8]| (1 + leaf.len() + 9).div_ceil(64);
    let e = typical_access();
    let (v2, v3) = (
        encode_as(&e, MAP_VERSION).expect("valid"),
        encode_as(&e, ARRAY_VERSION).expect("valid"),
    );
    assert_eq!((v2.len(), blocks(&v2)), (251, 5));
    assert_eq!((v3.len(), blocks(&v3)), (227, 4));
}

#[test]
fn samples_round_trip_and_their_links_are_read() {
    for v in VERSIONS {
        for e in [sample(), citizen(), minimal(), typical_access()] {
            let bytes = encode_as(&e, v).expect("valid");
            assert_decodes_to(&bytes, &e);
        }
    }
}

/// `e` as version 4 writes it: the justification as a commitment, the official too.
fn committed(mut e: Entry) -> Entry {
    if let Some(text) = e.justification.take() {
        e.justification_commitment = Some(Commitment::to_text(
            TextField::Justification,
            &[1; 32],
            &text,
        ));
    }
    e.official = Some(Commitment::to_text(TextField::Official, &[2; 32], "dr who"));
    e
}

#[test]
fn version_4_round_trips_with_commitments_in_items_18_and_20() {
    for e in [sample(), citizen(), minimal(), typical_access()] {
        let e = committed(e);
        let bytes = encode_as(&e, COMMITMENT_VERSION).expect("valid");
        // An array of 21 items, "v" = 4.
        assert_eq!(&bytes[..2], &[0x95, 0x04]);
        assert_decodes_to(&bytes, &e);
        let at = value_at(&bytes, "official");
        assert_eq!(&bytes[at..at + 2], b"\x58\x20");
        assert_eq!(bytes[at + 2..at + 34], e.official.expect("set").0);
        assert_eq!(skip(&bytes, at), bytes.len());
        // Without commitments, both items are null.
        let mut bare = e.clone();
        bare.justification_commitment = None;
        bare.official = None;
        let bytes = encode_as(&bare, COMMITMENT_VERSION).expect("valid");
        assert_eq!(bytes[value_at(&bytes, "justification")], NULL);
        assert_eq!(*bytes.last().expect("not empty"), NULL);
        assert_decodes_to(&bytes, &bare);
    }
}

#[test]
fn versions_4_and_5_never_write_a_free_text_and_older_versions_no_commitment() {
    let e = citizen();
    assert!(e.justification.is_some());
    assert_eq!(
        encode_entry(&e),
        Err(EntryError::Invalid {
            field: "justification",
            rule: "versions 4 to 6 carry a commitment to the justification, never its text",
        })
    );
    let e = committed(citizen());
    for v in VERSIONS {
        assert_eq!(
            encode_as(&e, v),
            Err(EntryError::Invalid {
                field: "justification",
                rule: "only versions 4 to 6 carry commitments",
            })
        );
    }
    // A text where a commitment is, a commitment of another length, v = 3 in 21 items.
    let bytes = encode_as(&e, COMMITMENT_VERSION).expect("valid");
    let at = value_at(&bytes, "justification");
    let text = [&bytes[..at], b"\x61j", &bytes[skip(&bytes, at)..]].concat();
    assert!(matches!(
        decode_entry(&text),
        Err(EntryError::Malformed { .. })
    ));
    let short = [&bytes[..at], b"\x41\x00", &bytes[skip(&bytes, at)..]].concat();
    assert!(matches!(
        decode_entry(&short),
        Err(EntryError::Malformed { .. })
    ));
    let mut v3 = bytes.clone();
    v3[1] = 3;
    assert_eq!(
        decode_entry(&v3),
        Err(EntryError::Invalid {
            field: "v",
            rule: FORM_RULE
        })
    );
}

/// Version 5 is version 4 and three more items (the policy set, the claim, the consent
/// terms), each `null` when absent; version 4 cannot carry them.
#[test]
fn version_5_round_trips_with_its_provenance_in_items_21_to_23() {
    for e in [sample(), citizen(), minimal(), typical_access()] {
        let mut e = committed(e);
        let bare = encode_as(&e, PROVENANCE_VERSION).expect("valid");
        assert_eq!(&bare[..3], &[0x98, 24, 0x05]);
        assert_eq!(&bare[bare.len() - 3..], &[NULL, NULL, NULL]);
        assert_decodes_to(&bare, &e);
        e.policy_set = Some([9; 32]);
        e.claim = Some(Claim {
            legal_basis: Some("vital_interest".into()),
            justified: true,
        });
        e.terms = Some(Terms {
            agency: "general_hospital".into(),
            valid_from: 1,
            expires_at: u64::MAX,
            max_uses: Some(0),
            data_life: None,
            supersedes: Some("x".into()),
        });
        let bytes = encode_as(&e, PROVENANCE_VERSION).expect("valid");
        assert_decodes_to(&bytes, &e);
        let at = value_at(&bytes, "policy_set");
        assert_eq!(&bytes[at..at + 2], b"\x58\x20");
        assert_eq!(
            encode_as(&e, COMMITMENT_VERSION),
            Err(EntryError::Invalid {
                field: "policy_set",
                rule: "only versions 5 and 6 carry the policy set, claim and terms",
            })
        );
    }
}

/// Version 6 is version 5 and the deferral (item 24), `null` on every other entry; the
/// two shapes round-trip and older versions cannot carry it.
#[test]
fn version_6_round_trips_with_its_deferral_in_item_24() {
    let mut e = committed(sample());
    let bare = encode_entry(&e).expect("valid");
    assert_eq!(&bare[..3], &[0x98, 25, 0x06]);
    assert_eq!(*bare.last().expect("not empty"), NULL);
    assert_decodes_to(&bare, &e);
    e.subject = Some(SubjectTag([5; 32]));
    e.subject_prev = None;
    for d in [
        Deferral::Deferred { disclose_at: None },
        Deferral::Deferred {
            disclose_at: Some(1 << 40),
        },
    ] {
        e.deferral = Some(d);
        let bytes = encode_entry(&e).expect("valid");
        assert_decodes_to(&bytes, &e);
        assert_eq!(
            encode_as(&e, PROVENANCE_VERSION),
            Err(EntryError::Invalid {
                field: "deferral",
                rule: "only version 6 carries a deferral",
            })
        );
    }
    e.subject_prev = Some(0);
    assert!(encode_entry(&e).is_err(), "a deferred tag is used once");
    e.action = "access.disclose".into();
    e.deferral = Some(Deferral::Disclosure {
        of: 0,
        opening: [1; 32],
        lift: Some(Commitment([2; 32])),
    });
    let bytes = encode_entry(&e).expect("valid");
    assert_decodes_to(&bytes, &e);
    e.action = "access".into();
    assert!(
        encode_entry(&e).is_err(),
        "a disclosure's action is access.disclose"
    );
}
