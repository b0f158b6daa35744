//! Pure verifiers of RFC 9162 inclusion (§2.1.3.2) and consistency (§2.1.4.2) proofs.
//!
//! Hashes are taken as byte slices so that malformed input (an empty or short hash, as in
//! the transparency-dev failure vectors) is rejected here rather than by each caller.

use crate::hash::{node_hash, Hash};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not inside a tree of {size} leaves")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The first size of a consistency proof is 0 or larger than the second.
    #[error("consistency between sizes {first} and {second} cannot be proven (need 0 < first <= second)")]
    BadSizes {
        /// First (older) size.
        first: u64,
        /// Second (newer) size.
        second: u64,
    },
    /// A hash is not 32 bytes long.
    #[error("a hash is {len} bytes long, not 32")]
    BadHashLength {
        /// Its length.
        len: usize,
    },
    /// The proof has the wrong number of hashes for the index and sizes.
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    /// The recomputed root differs from the expected one.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

impl ProofError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::IndexOutOfRange { .. } => "audit.proof.index_out_of_range",
            Self::BadSizes { .. } => "audit.proof.bad_sizes",
            Self::BadHashLength { .. } => "audit.proof.bad_hash_length",
            Self::WrongLength => "audit.proof.wrong_length",
            Self::RootMismatch => "audit.proof.root_mismatch",
        }
    }
}

/// Converts a byte slice to a hash, rejecting any length but 32.
pub fn parse_hash(bytes: &[u8]) -> Result<Hash, ProofError> {
    <Hash>::try_from(bytes).map_err(|_| ProofError::BadHashLength { len: bytes.len() })
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_hash: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf = parse_hash(leaf_hash)?;
    let root = parse_hash(root)?;
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = leaf;
    for p in proof {
        let p = parse_hash(p.as_ref())?;
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(&p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `second` leaves with root `second_root` extends the tree of
/// `first` leaves with root `first_root`. A proof from size 0 is rejected (it proves
/// nothing).
pub fn verify_consistency<P: AsRef<[u8]>>(
    first: u64,
    second: u64,
    first_root: &[u8],
    second_root: &[u8],
    proof: &[P],
) -> Result<(), ProofError> {
    if first == 0 || first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let first_root = parse_hash(first_root)?;
    let second_root = parse_hash(second_root)?;
    let mut hashes = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        hashes.push(first_root);
    }
    for p in proof {
        hashes.push(parse_hash(p.as_ref())?);
    }
    let Some((seed, rest)) = hashes.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != first_root || sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
