//! RFC 9162 §2.1.1 hashing: leaf hash = SHA-256(0x00 || data), node hash =
//! SHA-256(0x01 || left || right).
//!
//! Both run the SHA-256 block function (`sha2::block_api::compress256`, SHA-NI when the
//! CPU has it) over the message and its FIPS 180-4 padding written here, without a
//! streaming context: verifying a log is two digests per entry, and a general-purpose
//! digest's set-up and buffering cost as much as a block (docs/DESIGN.md §9).

use ring::digest::{digest, SHA256};
use sha2::block_api::compress256;

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Length in bytes of every hash of the log.
pub const HASH_LEN: usize = 32;

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b"").as_ref())
}

/// The leaf hash of `data` (the exact stored leaf bytes).
pub fn leaf_hash(data: &[u8]) -> Hash {
    // Entries up to 502 bytes (typical ones are about 230) are padded into four or eight
    // blocks on the stack and compressed in one call, which loads and stores the state
    // once: a call per block cost a fifth of the tree hashing.
    if data.len() + 1 + 9 <= 4 * 64 {
        return leaf_hash_in::<4>(data);
    }
    if data.len() + 1 + 9 <= 8 * 64 {
        return leaf_hash_in::<8>(data);
    }
    // Longer leaves: the first block is the 0x00 prefix and 63 bytes of data, the data's
    // later full blocks are compressed where they lie, and the rest goes to the padded tail.
    let Some((head, rest)) = data.split_at_checked(63) else {
        return leaf_hash_in::<8>(data); // not reached: shorter data returned above
    };
    let mut state = H0;
    let mut first = [0u8; 64];
    first[1..].copy_from_slice(head);
    compress256(&mut state, core::slice::from_ref(&first));
    let mut blocks = rest.chunks_exact(64);
    for block in &mut blocks {
        let block: &[u8; 64] = block
            .try_into()
            .expect("invariant: chunks_exact yields 64-byte chunks");
        compress256(&mut state, core::slice::from_ref(block));
    }
    finish(state, blocks.remainder(), data.len() as u64 + 1)
}

/// [`leaf_hash`] of data whose padded message fits in `N` blocks.
#[inline(always)]
fn leaf_hash_in<const N: usize>(data: &[u8]) -> Hash {
    let mut blocks = [[0u8; 64]; N];
    let n = data.len() + 1;
    let used = (n + 9).div_ceil(64);
    let bytes = blocks.as_flattened_mut();
    bytes[1..n].copy_from_slice(data);
    bytes[n] = 0x80;
    bytes[used * 64 - 8..used * 64].copy_from_slice(&(n as u64 * 8).to_be_bytes());
    let mut state = H0;
    compress256(&mut state, &blocks[..used]);
    output(&state)
}

/// Compresses the last `tail.len()` (< 64) message bytes with the padding of a
/// `total`-byte message and returns the digest.
#[inline(always)]
fn finish(mut state: [u32; 8], tail: &[u8], total: u64) -> Hash {
    let mut last = [[0u8; 64]; 2];
    let n = tail.len();
    let blocks = if n + 9 <= 64 { 1 } else { 2 };
    let bytes = last.as_flattened_mut();
    bytes[..n].copy_from_slice(tail);
    bytes[n] = 0x80;
    bytes[blocks * 64 - 8..blocks * 64].copy_from_slice(&(total * 8).to_be_bytes());
    compress256(&mut state, &last[..blocks]);
    output(&state)
}

/// The interior node hash of two children: 65 bytes, two blocks.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    blocks[1][1] = 0x80;
    blocks[1][56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    let mut state = H0;
    compress256(&mut state, &blocks);
    output(&state)
}

/// The digest of a final state: its words, big-endian.
fn output(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; HASH_LEN];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(bytes);
    out
}

/// The right edge of a Merkle tree: the hashes of its maximal complete subtrees, left to
/// right (sizes = the set bits of the tree size, high to low). Appending is amortised O(1)
/// hashes; the root is O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds a frontier from its subtree hashes; `nodes.len()` must equal the number of
    /// set bits of `size`.
    pub(crate) fn from_parts(size: u64, nodes: Vec<Hash>) -> Self {
        debug_assert_eq!(nodes.len(), size.count_ones() as usize);
        Self { size, nodes }
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; calls `on_node(level, index, hash)` for every subtree that
    /// becomes complete (level 0 is the leaf itself).
    pub(crate) fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(u8, u64, Hash)) {
        let index = self.size;
        on_node(0, index, leaf);
        let mut hash = leaf;
        let mut level = 0u8;
        let mut count = self.size;
        while count & 1 == 1 {
            let left = self
                .nodes
                .pop()
                .expect("invariant: one frontier node per set bit of the size");
            hash = node_hash(&left, &hash);
            level += 1;
            count >>= 1;
            on_node(level, index >> level, hash);
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// The tree root (RFC 9162 MTH) of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_root_matches_rfc6962_vectors_for_every_size() {
        let leaves: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let roots = crate::testvectors::rfc6962_roots();
        let mut f = Frontier::default();
        assert_eq!(f.root(), roots[0]);
        for (i, leaf) in leaves.iter().enumerate() {
            f.push(leaf_hash(leaf));
            assert_eq!(f.root(), roots[i + 1], "size {}", i + 1);
        }
    }

    /// The in-place padding against ring's SHA-256, across every block boundary.
    #[test]
    fn leaf_and_node_hashes_match_ring_for_every_length() {
        let data: Vec<u8> = (0..1100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=data.len() {
            let mut prefixed = vec![0x00];
            prefixed.extend_from_slice(&data[..len]);
            let want = digest(&SHA256, &prefixed);
            assert_eq!(&leaf_hash(&data[..len])[..], want.as_ref(), "length {len}");
        }
        let (left, right) = ([0xa5; 32], *b"0123456789abcdef0123456789abcdeF");
        let mut node = vec![0x01];
        node.extend_from_slice(&left);
        node.extend_from_slice(&right);
        assert_eq!(
            &node_hash(&left, &right)[..],
            digest(&SHA256, &node).as_ref()
        );
    }

    #[test]
    fn push_reports_every_newly_complete_subtree() {
        let mut f = Frontier::default();
        let mut seen = Vec::new();
        for i in 0..8u8 {
            f.push_with(leaf_hash(&[i]), |l, idx, _| seen.push((l, idx)));
        }
        let levels: Vec<_> = seen.iter().filter(|(l, _)| *l > 0).copied().collect();
        assert_eq!(
            levels,
            vec![(1, 0), (1, 1), (2, 0), (1, 2), (1, 3), (2, 1), (3, 0)]
        );
    }
}
