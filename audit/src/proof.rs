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
            if f_n != 0 {
                let t = f_n.trailing_zeros();
                f_n >>= t;
                s_n >>= t;
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
    let t = f_n.trailing_ones();
    f_n >>= t;
    s_n >>= t;
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n != 0 {
                let t = f_n.trailing_zeros();
                f_n >>= t;
                s_n >>= t;
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{consistency_proof, inclusion_proof, root};
    use crate::{EntryDraft, LogRead, MemStore, StoreError};

    fn vector_files(dir: &str) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(p).expect("test data directory is readable") {
                let p = e.expect("directory entry").path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "json") {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/tlog")
                .join(dir),
            &mut out,
        );
        out.sort();
        out
    }

    fn b64(v: &Value) -> Vec<u8> {
        B64.decode(v.as_str().unwrap_or(""))
            .expect("vector field is base64")
    }

    fn proof_of(v: &Value) -> Vec<Vec<u8>> {
        v["proof"]
            .as_array()
            .map(|a| a.iter().map(b64).collect())
            .unwrap_or_default()
    }

    fn load(p: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("vector readable"))
            .expect("vector is JSON")
    }

    #[test]
    fn every_inclusion_vector_gives_the_expected_outcome() {
        let files = vector_files("inclusion");
        assert!(files.len() >= 80, "only {} inclusion vectors", files.len());
        let (mut ok, mut rejected) = (0, 0);
        for f in &files {
            let v = load(f);
            let got = verify_inclusion(
                &b64(&v["leafHash"]),
                v["leafIdx"].as_u64().expect("leafIdx"),
                v["treeSize"].as_u64().expect("treeSize"),
                &proof_of(&v),
                &b64(&v["root"]),
            );
            let want_err = v["wantErr"].as_bool().expect("wantErr");
            assert_eq!(got.is_err(), want_err, "{}: {got:?}", f.display());
            if want_err {
                rejected += 1;
            } else {
                ok += 1;
            }
        }
        assert!(
            ok >= 5 && rejected >= 70,
            "{ok} accepted, {rejected} rejected"
        );
    }

    #[test]
    fn every_consistency_vector_gives_the_expected_outcome() {
        let files = vector_files("consistency");
        assert!(
            files.len() >= 90,
            "only {} consistency vectors",
            files.len()
        );
        for f in &files {
            let v = load(f);
            let got = verify_consistency(
                v["size1"].as_u64().expect("size1"),
                v["size2"].as_u64().expect("size2"),
                &b64(&v["root1"]),
                &b64(&v["root2"]),
                &proof_of(&v),
            );
            let want_err = v["wantErr"].as_bool().expect("wantErr");
            assert_eq!(got.is_err(), want_err, "{}: {got:?}", f.display());
        }
    }

    #[test]
    fn error_kinds_name_what_is_wrong() {
        let h = [7u8; 32];
        assert_eq!(
            verify_inclusion(&h, 3, 3, &[h], &h),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            verify_inclusion(&h[..31], 0, 1, &[] as &[Hash], &h),
            Err(ProofError::BadHashLength { len: 31 })
        );
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[] as &[Hash], &h[..0]),
            Err(ProofError::BadHashLength { len: 0 })
        );
        assert_eq!(
            verify_inclusion(&h, 0, 2, &[h, h], &h),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_inclusion(&h, 0, 3, &[h], &h),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[] as &[Hash], &[8u8; 32]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 0, &h, &h, &[] as &[Hash]),
            Err(ProofError::BadSizes {
                first: 0,
                second: 0
            })
        );
        assert_eq!(
            verify_consistency(2, 1, &h, &h, &[] as &[Hash]),
            Err(ProofError::BadSizes {
                first: 2,
                second: 1
            })
        );
        assert_eq!(
            verify_consistency(1, 2, &h, &h, &[] as &[Hash]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_consistency(3, 4, &h[..1], &h, &[h]),
            Err(ProofError::BadHashLength { len: 1 })
        );
        assert_eq!(
            verify_consistency(3, 4, &h, &h[..2], &[h]),
            Err(ProofError::BadHashLength { len: 2 })
        );
        assert_eq!(
            verify_consistency(1, 1, &h, &h, &[h]),
            Err(ProofError::WrongLength)
        );
        assert_eq!(
            verify_consistency(1, 1, &h, &[1u8; 32], &[] as &[Hash]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(verify_consistency(1, 1, &h, &h, &[] as &[Hash]), Ok(()));
        assert_eq!(parse_hash(&h), Ok(h));
        assert_eq!(
            parse_hash(&[0u8; 33]),
            Err(ProofError::BadHashLength { len: 33 })
        );
        for e in [
            ProofError::IndexOutOfRange { index: 0, size: 0 },
            ProofError::BadSizes {
                first: 0,
                second: 0,
            },
            ProofError::BadHashLength { len: 0 },
            ProofError::WrongLength,
            ProofError::RootMismatch,
        ] {
            assert!(e.code().starts_with("audit.proof."));
        }
    }

    /// Reference model: RFC 9162 §2.1.1 MTH by its recursive definition over leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => crate::hash::empty_root(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (MemStore, Vec<Hash>) {
        let mut store = MemStore::new();
        let mut state = crate::LogState::new();
        let drafts: Vec<_> = (0..n)
            .map(|i| {
                EntryDraft::new(
                    i,
                    crate::Actor {
                        kind: crate::ActorKind::System,
                        id: "t".into(),
                    },
                    "x",
                    "done",
                )
            })
            .collect();
        for chunk in drafts.chunks(97) {
            store
                .append(&mut state, chunk.to_vec())
                .expect("valid drafts append");
        }
        let hashes = (0..n)
            .map(|i| {
                store
                    .node(0, i)
                    .expect("mem store never fails")
                    .expect("leaf hash stored")
            })
            .collect();
        (store, hashes)
    }

    #[test]
    fn stored_roots_match_the_reference_for_every_size_up_to_300() {
        let (store, hashes) = build(300);
        for n in 0..=300u64 {
            assert_eq!(
                root(&store, n).expect("root"),
                mth(&hashes[..n as usize]),
                "size {n}"
            );
        }
        let leaf = store.leaf(5).expect("read").expect("leaf");
        assert_eq!(leaf_hash(&leaf), hashes[5]);
    }

    #[test]
    fn every_proof_in_small_trees_verifies_and_matches_sizes() {
        let (store, hashes) = build(70);
        for n in 1..=70u64 {
            let r = root(&store, n).expect("root");
            for i in 0..n {
                let p = inclusion_proof(&store, i, n).expect("proof");
                assert_eq!(verify_inclusion(&hashes[i as usize], i, n, &p, &r), Ok(()));
                if n > 1 {
                    let r1 = root(&store, n - 1).expect("root");
                    assert!(verify_inclusion(&hashes[i as usize], i, n - 1, &p, &r1).is_err());
                }
            }
            for m in 1..=n {
                let p = consistency_proof(&store, m, n).expect("proof");
                let rm = root(&store, m).expect("root");
                assert_eq!(verify_consistency(m, n, &rm, &r, &p), Ok(()), "{m}->{n}");
                if m < n {
                    assert!(verify_consistency(m, n, &r, &rm, &p).is_err());
                    let rm1 = root(&store, m + 1).expect("root");
                    if m + 1 < n {
                        assert!(verify_consistency(m + 1, n, &rm1, &r, &p).is_err());
                    }
                    let rn1 = root(&store, n - 1).expect("root");
                    if m < n - 1 {
                        assert!(verify_consistency(m, n - 1, &rm, &rn1, &p).is_err());
                    }
                }
            }
        }
    }

    /// Sizes up to 5,000 are tested; damaged sizes stay within the stored tree so that
    /// every claimed size is checked against that size's genuine root.
    const BIG: u64 = 5010;

    /// One tree shared by the property tests.
    fn big() -> &'static (MemStore, Vec<Hash>) {
        static TREE: std::sync::OnceLock<(MemStore, Vec<Hash>)> = std::sync::OnceLock::new();
        TREE.get_or_init(|| build(BIG))
    }

    #[derive(Debug, Clone)]
    enum Damage {
        Flip { at: usize, bit: u8 },
        Remove { at: usize },
        Add { at: usize },
        Size { delta: i8 },
        Index { delta: i8 },
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
            any::<usize>().prop_map(|at| Damage::Remove { at }),
            any::<usize>().prop_map(|at| Damage::Add { at }),
            prop_oneof![Just(-1i8), Just(1), Just(2), Just(-2)]
                .prop_map(|delta| Damage::Size { delta }),
            prop_oneof![Just(-1i8), Just(1)].prop_map(|delta| Damage::Index { delta }),
        ]
    }

    /// Applies damage; returns false when it cannot change anything (empty proof).
    fn apply(d: &Damage, proof: &mut Vec<Hash>, a: &mut u64, b: &mut u64) -> bool {
        match *d {
            Damage::Flip { at, bit } => {
                if proof.is_empty() {
                    return false;
                }
                let n = proof.len();
                proof[at % n][at % 32] ^= 1 << bit;
            }
            Damage::Remove { at } => {
                if proof.is_empty() {
                    return false;
                }
                let n = proof.len();
                proof.remove(at % n);
            }
            Damage::Add { at } => {
                let n = proof.len() + 1;
                proof.insert(at % n, [at as u8; 32]);
            }
            Damage::Size { delta } => *b = b.wrapping_add_signed(i64::from(delta)),
            Damage::Index { delta } => *a = a.wrapping_add_signed(i64::from(delta)),
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn inclusion_proofs_verify_and_any_damage_is_rejected(
            size in 1u64..=5000, idx in any::<u64>(), d in damage()
        ) {
            let (store, hashes) = big();
            let index = idx % size;
            let r = root(store, size).expect("root");
            let mut proof = inclusion_proof(store, index, size).expect("proof");
            prop_assert_eq!(verify_inclusion(&hashes[index as usize], index, size, &proof, &r), Ok(()));
            let (mut i2, mut s2) = (index, size);
            if apply(&d, &mut proof, &mut i2, &mut s2) {
                // The leaf hash stays the one at the original index.
                let leaf = hashes[index as usize];
                let target_root = if s2 == size || s2 == 0 || s2 > BIG { r } else { root(store, s2).expect("root") };
                prop_assert!(verify_inclusion(&leaf, i2, s2, &proof, &target_root).is_err(), "{:?}", d);
            }
        }

        #[test]
        fn consistency_proofs_verify_and_any_damage_is_rejected(
            a in 1u64..=5000, b in 1u64..=5000, d in damage()
        ) {
            let (store, _) = big();
            let (m, n) = (a.min(b), a.max(b));
            let (rm, rn) = (root(store, m).expect("root"), root(store, n).expect("root"));
            let mut proof = consistency_proof(store, m, n).expect("proof");
            prop_assert_eq!(verify_consistency(m, n, &rm, &rn, &proof), Ok(()));
            let (mut m2, mut n2) = (m, n);
            if apply(&d, &mut proof, &mut m2, &mut n2) {
                // Claimed sizes are checked against the genuine roots of those sizes.
                let genuine = |s: u64, fallback: Hash| if s == 0 || s > BIG { fallback } else { root(store, s).expect("root") };
                let (rm2, rn2) = (genuine(m2, rm), genuine(n2, rn));
                let accepted = verify_consistency(m2, n2, &rm2, &rn2, &proof).is_ok();
                // Only a size change onto equal sizes with an empty proof can be valid.
                let legit = m2 == n2 && m2 != 0 && proof.is_empty();
                prop_assert_eq!(accepted, legit, "{:?} {} {}", d, m2, n2);
            }
        }
    }

    #[test]
    fn store_errors_surface_from_proof_generation() {
        struct Broken;
        impl LogRead for Broken {
            fn leaf(&self, _: u64) -> Result<Option<Vec<u8>>, StoreError> {
                Err(StoreError::new("disk on fire"))
            }
            fn node(&self, _: u8, _: u64) -> Result<Option<Hash>, StoreError> {
                Err(StoreError::new("disk on fire"))
            }
        }
        assert_eq!(
            inclusion_proof(&Broken, 0, 2).map_err(|e| e.code()),
            Err("audit.store")
        );
        let (store, _) = build(4);
        assert_eq!(
            root(&store, 5).map_err(|e| e.code()),
            Err("audit.missing_node")
        );
        assert_eq!(
            consistency_proof(&store, 0, 4).map_err(|e| e.code()),
            Err("audit.bad_proof_request")
        );
    }
}
