//! Round trips of both versions, the version-2 fixtures, and what version 3 drops.

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
    let bytes = encode_entry(&e).unwrap();
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
    for (key, name) in ENTRY_FIELDS.iter().enumerate() {
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
        let v3 = encode_entry(&e).expect("valid");
        assert_eq!(v2.len() - v3.len(), 22 + 2 * e.withheld.len());
        for name in ENTRY_FIELDS.iter().skip(1) {
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
        encode_entry(&e).expect("valid"),
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
