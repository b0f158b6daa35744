//! Test vectors shared by unit tests.

/// The RFC 6962 roots for sizes 0..=8 of the standard eight leaves.
pub(crate) fn rfc6962_roots() -> Vec<crate::Hash> {
    include_str!("../testdata/tlog/notes-and-roots.txt")
        .lines()
        .filter_map(|l| l.strip_prefix("size"))
        .map(|l| {
            let (_, hex_root) = l.split_once(' ').expect("vector line has a root");
            let bytes = hex::decode(hex_root).expect("vector root is hex");
            <crate::Hash>::try_from(bytes.as_slice()).expect("vector root is 32 bytes")
        })
        .collect()
}
