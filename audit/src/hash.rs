//! RFC 9162 §2.1.1 hashing: leaf hash = SHA-256(0x00 || data), node hash =
//! SHA-256(0x01 || left || right).

use ring::digest::{digest, Context, SHA256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Length in bytes of every hash of the log.
pub const HASH_LEN: usize = 32;

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    to_hash(digest(&SHA256, b"").as_ref())
}

/// The leaf hash of `data` (the exact stored leaf bytes).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish().as_ref())
}

/// The interior node hash of two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    to_hash(digest(&SHA256, &buf).as_ref())
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
