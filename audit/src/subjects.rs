//! The verifier's table of each subject's latest entry index, behind a fast keyed hash.
//!
//! The verifier looks up one subject tag per entry, so the table's hash is on the hot
//! path of every audit. Tags are 32-byte HMAC outputs in an honest log, but an export under
//! audit is untrusted input: a fixed fast hash would let a crafted file pile its tags into
//! one bucket chain and make verification quadratic. So the hash is a folded multiply (the
//! construction of `foldhash` and `ahash`'s fallback) keyed with 256 random bits drawn
//! from the operating system for each table: a file cannot aim at keys it never sees.
//! SipHash, std's default, costs about three times as much per tag here.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use ring::rand::{SecureRandom, SystemRandom};

use crate::entry::SubjectTag;

/// Multiplies two words into 128 bits and folds the halves together.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Four secret words, one per word of the tag.
#[derive(Clone, Copy)]
struct Keys([u64; 4]);

impl BuildHasher for Keys {
    type Hasher = TagHasher;

    fn build_hasher(&self) -> TagHasher {
        TagHasher {
            keys: self.0,
            state: 0,
        }
    }
}

/// Hashes exactly what [`Key`] feeds it: the tag's four words, once.
struct TagHasher {
    keys: [u64; 4],
    state: u64,
}

impl Hasher for TagHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.state
    }

    /// General bytes (not used by [`Key`], kept correct for any other caller): 8-byte
    /// words, the tail zero-padded, and the length folded in.
    fn write(&mut self, bytes: &[u8]) {
        for (i, c) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            let (k, m) = (self.keys[i % 4], self.keys[(i + 1) % 4]);
            self.state = fold(self.state ^ u64::from_le_bytes(w) ^ k, m | 1);
        }
        self.state = fold(self.state ^ bytes.len() as u64, self.keys[0] | 1);
    }

    #[inline(always)]
    fn write_u128(&mut self, i: u128) {
        // Called twice per tag: words (0, 1), then (2, 3).
        let (lo, hi) = (i as u64, (i >> 64) as u64);
        let [k0, k1, k2, k3] = self.keys;
        self.state = fold(lo ^ k0 ^ self.state, hi ^ k1).rotate_left(23) ^ fold(lo ^ k2, hi ^ k3);
    }
}

/// A tag as a table key: hashes as two 128-bit words.
#[derive(PartialEq, Eq)]
struct Key(SubjectTag);

impl Hash for Key {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.0 .0.split_at(16);
        let word = |s: &[u8]| {
            let mut w = [0u8; 16];
            w.copy_from_slice(s);
            u128::from_le_bytes(w)
        };
        state.write_u128(word(a));
        state.write_u128(word(b));
    }
}

/// Each subject's latest index so far.
pub(crate) struct LatestBySubject {
    map: HashMap<Key, u64, Keys>,
}

impl LatestBySubject {
    /// An empty table with fresh random hash keys.
    pub(crate) fn new() -> Result<Self, ring::error::Unspecified> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed)?;
        let mut keys = [0u64; 4];
        for (k, c) in keys.iter_mut().zip(seed.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            *k = u64::from_le_bytes(w);
        }
        Ok(Self {
            map: HashMap::with_hasher(Keys(keys)),
        })
    }

    /// Records `index` as `tag`'s latest entry; returns the one it replaces.
    #[inline]
    pub(crate) fn replace(&mut self, tag: SubjectTag, index: u64) -> Option<u64> {
        self.map.insert(Key(tag), index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The table answers like a plain `HashMap` (the reference model), whatever the
        /// tags: random, or equal but for one byte (so every word of the hash is used).
        #[test]
        fn answers_like_a_plain_map(
            ops in proptest::collection::vec((0u8..32, any::<u8>(), 0usize..4), 1..400)
        ) {
            let mut table = LatestBySubject::new().expect("random");
            let mut model = std::collections::HashMap::new();
            for (i, (pos, byte, base)) in ops.into_iter().enumerate() {
                let mut tag = [base as u8; 32];
                tag[usize::from(pos)] = byte;
                let i = i as u64;
                prop_assert_eq!(table.replace(SubjectTag(tag), i), model.insert(tag, i));
            }
        }
    }

    /// Tags that differ in one word only still spread over the table's buckets.
    #[test]
    fn tags_differing_in_any_one_word_get_distinct_hashes() {
        let table = LatestBySubject::new().expect("random");
        for word in 0..4 {
            let mut seen = std::collections::HashSet::new();
            for v in 0..10_000u64 {
                let mut tag = [0u8; 32];
                tag[word * 8..word * 8 + 8].copy_from_slice(&v.to_le_bytes());
                seen.insert(table.map.hasher().hash_one(Key(SubjectTag(tag))));
            }
            assert!(seen.len() > 9_990, "word {word}: {} distinct", seen.len());
        }
    }
}
