//! 10^6 seals show no repeated (key, nonce) pair.

use std::collections::HashSet;

use vault_core::envelope::{self, FieldContext};
use vault_core::keys::Dek;

use crate::keys_support::*;

#[test]
fn a_million_seals_never_repeat_a_key_nonce_pair() {
    const SEALS: usize = 1_000_000;
    const PER_KEY: usize = 250_000;
    let citizen = cid("c1");
    let mut seen: HashSet<(u32, [u8; 12])> = HashSet::with_capacity(SEALS);
    let mut dek = Dek::generate(1).unwrap();
    for i in 0..SEALS {
        if i > 0 && i % PER_KEY == 0 {
            dek = Dek::generate(dek.id() + 1).unwrap();
        }
        let ctx = FieldContext {
            citizen: &citizen,
            category: "tax",
            field: "income",
            record_version: i as u64,
        };
        let sealed = envelope::seal(&dek, &ctx, b"42").unwrap();
        let nonce: [u8; 12] = sealed[5..17].try_into().unwrap();
        let gen = u32::from_be_bytes(sealed[1..5].try_into().unwrap());
        assert_eq!(gen, dek.id());
        assert!(
            seen.insert((gen, nonce)),
            "repeated (key, nonce) at seal {i}"
        );
    }
    assert_eq!(seen.len(), SEALS);
}
