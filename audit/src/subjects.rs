//! The verifier's check of the subject chains: each entry about a subject must name the
//! subject's latest earlier entry.
//!
//! The check keeps each subject's latest index in a hash table and looks one tag up per
//! entry, so it sits on the hot path of every audit. Two costs dominated it: the hash and
//! the cache miss. Tags are 32-byte HMAC outputs in an honest log, but an export under
//! audit is untrusted input: a fixed fast hash would let a crafted file pile its tags into
//! one probe sequence and make verification quadratic. So the hash is a folded multiply
//! (the construction of `foldhash` and `ahash`'s fallback) keyed with 256 random bits drawn
//! from the operating system for each verification: a file cannot aim at keys it never
//! sees (SipHash, std's default, cost about three times as much per tag). The cache miss
//! (one random access into megabytes of table per entry) is avoided by applying links in
//! batches ordered by table position, see [`SubjectChains`].

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

impl Keys {
    /// Fresh keys from the operating system's random generator.
    fn random() -> Result<Self, ring::error::Unspecified> {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed)?;
        Ok(Self(words(&seed)))
    }

    /// The tag's keyed hash: each half of the tag folded with two keys, then the two
    /// results folded together, so that every input bit reaches every output bit.
    #[inline(always)]
    fn hash(&self, tag: &SubjectTag) -> u64 {
        let [w0, w1, w2, w3] = words(&tag.0);
        let [k0, k1, k2, k3] = self.0;
        fold(fold(w0 ^ k0, w1 ^ k1), fold(w2 ^ k2, w3 ^ k3))
    }
}

/// 32 bytes as four little-endian words.
#[inline(always)]
fn words(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (w, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
    out
}

/// One entry's subject link, waiting in a batch.
#[derive(Clone, Copy)]
struct Pending {
    hash: u64,
    tag: SubjectTag,
    index: u64,
    subject_prev: Option<u64>,
}

/// The first subject link that does not point at the subject's latest earlier entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainFault {
    /// The entry whose `subject_prev` is wrong.
    pub(crate) index: u64,
    /// The subject's latest earlier entry (what `subject_prev` should say).
    pub(crate) expected: Option<u64>,
    /// What it says.
    pub(crate) found: Option<u64>,
}

/// A slot of the open-addressing table: a tag and its latest index (`EMPTY` = free).
#[derive(Clone, Copy)]
struct Slot {
    tag: SubjectTag,
    latest: u64,
}

/// No entry has this index: an export holds at most `u64::MAX` entries, numbered below it.
const EMPTY: u64 = u64::MAX;

/// Entries per batch. A batch spans about this many table slots' worth of the table, so
/// its sweep touches memory in address order instead of one random cache miss per entry.
const BATCH: usize = 1 << 15;

/// Checks every subject chain of a log streamed in index order: each entry with a subject
/// must name in `subject_prev` the latest earlier entry with the same subject.
///
/// A table of each subject's latest index, looked up once per entry, misses the cache on
/// nearly every entry of a large log (one random access into megabytes). So links wait in
/// batches; a batch is ordered by table position (a stable counting sort, so one subject's
/// entries stay in index order) and applied as one sweep through the table. Each subject
/// still sees its entries in index order, so every fault found is the one the entry-by-entry
/// check finds, and the first fault is the one with the lowest index.
pub(crate) struct SubjectChains {
    keys: Keys,
    /// Open addressing, linear probing, indexed by the top `bits` of the hash.
    slots: Vec<Slot>,
    bits: u32,
    used: usize,
    pending: Vec<Pending>,
    sorted: Vec<Pending>,
    batch: usize,
    first: Option<ChainFault>,
}

impl SubjectChains {
    /// An empty checker with fresh random hash keys.
    pub(crate) fn new() -> Result<Self, ring::error::Unspecified> {
        Self::with_batch(BATCH)
    }

    fn with_batch(batch: usize) -> Result<Self, ring::error::Unspecified> {
        Ok(Self {
            keys: Keys::random()?,
            slots: Vec::new(),
            bits: 0,
            used: 0,
            pending: Vec::with_capacity(batch),
            sorted: Vec::with_capacity(batch),
            batch,
            first: None,
        })
    }

    fn empty() -> Slot {
        Slot {
            tag: SubjectTag([0; 32]),
            latest: EMPTY,
        }
    }

    /// Notes entry `index` about `tag`, which names `subject_prev` as the subject's
    /// previous entry. Entries must come in index order.
    #[inline]
    pub(crate) fn note(&mut self, tag: SubjectTag, index: u64, subject_prev: Option<u64>) {
        let hash = self.keys.hash(&tag);
        self.pending.push(Pending {
            hash,
            tag,
            index,
            subject_prev,
        });
        if self.pending.len() >= self.batch {
            self.apply();
        }
    }

    /// The fault with the lowest index among all entries noted so far, if any.
    pub(crate) fn first_fault(&mut self) -> Option<ChainFault> {
        self.apply();
        self.first
    }

    /// Applies the pending batch in table order.
    fn apply(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let need = (self.used + self.pending.len()) * 2;
        let slots = self.slots.len().max(need.next_power_of_two());
        if slots != self.slots.len() {
            self.resize(slots);
        }
        // Stable counting sort by the top bits of the hash (the table position's high
        // bits): 2^REGION_BITS regions, each a contiguous stretch of the table.
        const REGION_BITS: u32 = 10;
        let shift = 64 - REGION_BITS;
        let mut starts = [0usize; 1 << REGION_BITS];
        for p in &self.pending {
            starts[(p.hash >> shift) as usize] += 1;
        }
        let mut sum = 0;
        for s in starts.iter_mut() {
            let count = *s;
            *s = sum;
            sum += count;
        }
        // Every slot of `sorted[..n]` is overwritten below; it is filled only when it grows
        // (not cleared and refilled each batch: that was a 2 MB write per batch).
        let n = self.pending.len();
        self.sorted.resize(
            self.sorted.len().max(n),
            Pending {
                hash: 0,
                tag: SubjectTag([0; 32]),
                index: 0,
                subject_prev: None,
            },
        );
        for p in &self.pending {
            let region = (p.hash >> shift) as usize;
            self.sorted[starts[region]] = *p;
            starts[region] += 1;
        }
        self.pending.clear();
        let sorted = std::mem::take(&mut self.sorted);
        for p in &sorted[..n] {
            let expected = self.replace(p.hash, p.tag, p.index);
            if expected != p.subject_prev {
                let fault = ChainFault {
                    index: p.index,
                    expected,
                    found: p.subject_prev,
                };
                // A batch runs in table order: keep the lowest index.
                self.first = self
                    .first
                    .into_iter()
                    .chain([fault])
                    .min_by_key(|f| f.index);
            }
        }
        self.sorted = sorted;
    }

    /// Sets `tag`'s latest index; returns the previous one.
    #[inline]
    fn replace(&mut self, hash: u64, tag: SubjectTag, index: u64) -> Option<u64> {
        let mask = self.slots.len() - 1;
        let mut at = (hash >> (64 - self.bits)) as usize;
        for _ in 0..self.slots.len() {
            let slot = &mut self.slots[at];
            if slot.latest == EMPTY {
                *slot = Slot { tag, latest: index };
                self.used += 1;
                return None;
            }
            if slot.tag == tag {
                return Some(std::mem::replace(&mut slot.latest, index));
            }
            at = (at + 1) & mask;
        }
        unreachable!("invariant: `apply` keeps the table at most half full, so a slot is free")
    }

    /// Rebuilds the table with `slots` slots (a power of two, at least 2) and re-inserts
    /// every subject.
    fn resize(&mut self, slots: usize) {
        self.bits = slots.max(2).trailing_zeros();
        let old = std::mem::replace(&mut self.slots, vec![Self::empty(); 1 << self.bits]);
        self.used = 0;
        for slot in old.into_iter().filter(|s| s.latest != EMPTY) {
            let hash = self.keys.hash(&slot.tag);
            self.replace(hash, slot.tag, slot.latest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference model: a plain map of each subject's latest index, entry by entry;
    /// the first entry whose link differs.
    fn reference(links: &[(SubjectTag, Option<u64>)]) -> Option<ChainFault> {
        let mut latest = std::collections::HashMap::new();
        for (i, (tag, found)) in links.iter().enumerate() {
            let expected = latest.insert(*tag, i as u64);
            if expected != *found {
                return Some(ChainFault {
                    index: i as u64,
                    expected,
                    found: *found,
                });
            }
        }
        None
    }

    /// A log of `n` entries over `subjects` tags with correct links (tags differ in one
    /// byte, so every word of the hash matters).
    fn honest(n: usize, subjects: usize, seed: u64) -> Vec<(SubjectTag, Option<u64>)> {
        let mut latest = std::collections::HashMap::new();
        let mut r = seed | 1;
        (0..n)
            .map(|i| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                let s = (r % subjects as u64) as usize;
                let mut tag = [0x5a; 32];
                tag[s % 32] = (s / 32) as u8;
                let tag = SubjectTag(tag);
                (tag, latest.insert(tag, i as u64))
            })
            .collect()
    }

    fn check(links: &[(SubjectTag, Option<u64>)], batch: usize) -> Option<ChainFault> {
        let mut chains = SubjectChains::with_batch(batch).expect("random");
        for (i, (tag, prev)) in links.iter().enumerate() {
            chains.note(*tag, i as u64, *prev);
        }
        chains.first_fault()
    }

    proptest! {
        /// Any batch size, any edits of the links: the first fault is the reference
        /// model's (and none on an honest log).
        #[test]
        fn first_fault_matches_the_entry_by_entry_model(
            n in 1usize..600,
            subjects in 1usize..300,
            seed in any::<u64>(),
            batch in 1usize..70,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3), 0..4),
        ) {
            let mut links = honest(n, subjects, seed);
            prop_assert_eq!(check(&links, batch), None);
            for (at, how) in edits {
                let i = at.index(n);
                links[i].1 = match how {
                    0 => None,
                    1 => Some(i.saturating_sub(1) as u64),
                    _ => links[i].1.map(|p| p / 2),
                };
            }
            prop_assert_eq!(check(&links, batch), reference(&links));
        }
    }

    #[test]
    fn a_large_log_grows_the_table_and_keeps_every_chain() {
        let links = honest(200_000, 50_000, 7);
        assert_eq!(check(&links, BATCH), None);
        let mut bad = links.clone();
        bad[150_001].1 = None;
        bad[199_999].1 = Some(3);
        assert_eq!(check(&bad, BATCH), reference(&bad));
        assert!(reference(&bad).is_some());
    }

    /// Links wait until a batch is full (then the batch is applied at once) or a fault is
    /// asked for.
    #[test]
    fn links_are_applied_in_whole_batches() {
        let links = honest(25, 5, 3);
        let mut chains = SubjectChains::with_batch(10).expect("random");
        for (i, (tag, prev)) in links.iter().enumerate() {
            chains.note(*tag, i as u64, *prev);
            assert_eq!(chains.pending.len(), (i + 1) % 10, "after entry {i}");
        }
        assert_eq!(chains.first_fault(), None);
        assert!(chains.pending.is_empty());
        assert_eq!(chains.used, 5);
        // The default batch is large (it is what makes the sweep pay off).
        let mut chains = SubjectChains::new().expect("random");
        for (i, (tag, prev)) in links.iter().enumerate() {
            chains.note(*tag, i as u64, *prev);
        }
        assert_eq!(chains.pending.len(), links.len());
    }

    /// The table is a power of two at most half full once a batch is in: exactly 1,024
    /// links of 1,024 subjects fit 2,048 slots; 600 subjects in 1,000 links too.
    #[test]
    fn the_table_stays_at_most_half_full() {
        for (n, subjects, slots) in [(1024, 4096, 2048), (1000, 600, 2048)] {
            let mut links = honest(n, subjects, 11);
            if subjects > n {
                // One entry per subject: all distinct tags.
                for (i, l) in links.iter_mut().enumerate() {
                    let mut tag = [0u8; 32];
                    tag[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    *l = (SubjectTag(tag), None);
                }
            }
            let mut chains = SubjectChains::with_batch(n).expect("random");
            for (i, (tag, prev)) in links.iter().enumerate() {
                chains.note(*tag, i as u64, *prev);
            }
            assert!(chains.pending.is_empty(), "one full batch, applied");
            assert_eq!(chains.first_fault(), None);
            assert_eq!(chains.slots.len(), slots, "{n} links");
            assert!(2 * chains.used <= chains.slots.len());
        }
    }

    /// Flipping any one bit of a tag changes about half of the hash's bits, and nearly
    /// always the top bits that choose the table position: what keeps tags that differ
    /// little (or chosen by a file's author, who does not know the keys) spread out.
    #[test]
    fn every_tag_bit_reaches_the_whole_hash() {
        let keys = Keys::random().expect("random");
        let mut r = 0x0123_4567_89ab_cdefu64;
        let (mut changed_bits, mut flips, mut top_unchanged) = (0u64, 0u64, 0u64);
        for _ in 0..300 {
            let mut tag = [0u8; 32];
            for c in tag.chunks_mut(8) {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                c.copy_from_slice(&r.to_le_bytes());
            }
            let base = keys.hash(&SubjectTag(tag));
            for bit in 0..256 {
                let mut t = tag;
                t[bit / 8] ^= 1 << (bit % 8);
                let diff = base ^ keys.hash(&SubjectTag(t));
                changed_bits += u64::from(diff.count_ones());
                top_unchanged += u64::from(diff >> 48 == 0);
                flips += 1;
            }
        }
        let mean = changed_bits as f64 / flips as f64;
        assert!((30.0..34.0).contains(&mean), "mean bits changed {mean}");
        assert!(
            top_unchanged * 1000 < flips,
            "top 16 bits unchanged {top_unchanged}/{flips}"
        );
    }
}
