//! Test vectors and logs shared by unit tests.

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

/// A log of `n` system entries whose subjects cycle over 3 tags, each with its
/// `subject_prev`.
pub(crate) fn cycling_log(n: u64) -> crate::MemStore {
    let mut store = crate::MemStore::new();
    let mut state = crate::LogState::new();
    let mut last = std::collections::HashMap::new();
    let drafts: Vec<_> = (0..n)
        .map(|i| {
            let mut d = crate::EntryDraft::new(
                i,
                crate::Actor {
                    kind: crate::ActorKind::System,
                    id: "s".into(),
                },
                "x",
                "done",
            );
            let tag = crate::SubjectTag([(i % 3) as u8; 32]);
            d.subject = Some(tag);
            d.subject_prev = last.insert(tag, i);
            d
        })
        .collect();
    if n > 0 {
        store.append(&mut state, drafts).expect("appends");
    }
    store
}
