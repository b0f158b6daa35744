//! C2SP tlog-tiles (`docs/audit-log.md`, "Tiles"): tile and entry-bundle paths, a tile's
//! bytes read from a stored log at a tree size, the root recomputed from hash tiles, and
//! a verifier of a whole log fetched as tiles. No I/O: the caller brings the store or the
//! fetch function.

use std::fmt::Display;

use crate::export::{LeafChecker, Summary, VerifyError, VerifyErrorKind, PROGRESS_EVERY};
use crate::hash::{empty_root, leaf_hash, node_hash, Hash, HASH_LEN};
use crate::note::{NoteVerifier, SignedCheckpoint};
use crate::tree::{LogRead, TreeError};

/// Hashes in a full tile (and entries in a full bundle).
pub const TILE_WIDTH: u16 = 256;
/// Tree levels a tile spans: the hashes of level-`L` tiles are at tree height `8 * L`.
pub const TILE_HEIGHT: u8 = 8;
/// The highest level a tile path may name.
pub const MAX_TILE_LEVEL: u8 = 63;
/// The longest entry an entry bundle can carry (its length is a big-endian uint16).
pub const MAX_BUNDLE_ENTRY_LEN: usize = u16::MAX as usize;
/// The checkpoint's path under the log's prefix.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// What a tile holds: Merkle tree hashes of one tile level, or entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileLevel {
    /// Hashes of tree height `8 * level` (`tile/<L>/...`).
    Hashes(u8),
    /// An entry bundle (`tile/entries/...`): the leaves of the level-0 tile of the same
    /// index and width.
    Entries,
}

/// One tile or entry bundle: its level, index within the level and width (1..=256;
/// 256 is a full tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileId {
    level: TileLevel,
    index: u64,
    width: u16,
}

/// A tile path that does not follow C2SP tlog-tiles exactly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tile path {path:?}: {reason}; a tile path is tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>] (C2SP tlog-tiles)")]
pub struct TilePathError {
    /// The path given (its first 200 bytes).
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TilePathError {
    fn new(path: &str, reason: &'static str) -> Self {
        let mut end = path.len().min(200);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            path: path[..end].to_owned(),
            reason,
        }
    }

    /// A stable error code.
    pub fn code(&self) -> &'static str {
        "audit.tile_path"
    }
}

/// Why a tile's bytes could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// The tile does not exist at this tree size: some of its hashes or entries lie at or
    /// beyond the size.
    #[error("{path} is not in the tree of {size} entries: request only the tiles a signed checkpoint's size covers")]
    NotInTree {
        /// The tile's path.
        path: String,
        /// The tree size.
        size: u64,
    },
    /// An entry too long for the bundle format.
    #[error("entry {index} is {len} bytes, more than an entry bundle can carry ({MAX_BUNDLE_ENTRY_LEN})")]
    EntryTooLong {
        /// The entry's index.
        index: u64,
        /// Its length.
        len: usize,
    },
    /// A leaf below the tree size is missing from the store.
    #[error("leaf {index} is missing from the log store")]
    MissingLeaf {
        /// Its index.
        index: u64,
    },
    /// Reading the tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl TileError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotInTree { .. } => "audit.tile_not_in_tree",
            Self::EntryTooLong { .. } => "audit.bundle_entry_too_long",
            Self::MissingLeaf { .. } => "audit.missing_leaf",
            Self::Tree(e) => e.code(),
        }
    }
}

impl TileId {
    /// The tile of `level`, `index` and `width` (1..=256).
    pub fn new(level: TileLevel, index: u64, width: u16) -> Option<Self> {
        let level_ok = match level {
            TileLevel::Hashes(l) => l <= MAX_TILE_LEVEL,
            TileLevel::Entries => true,
        };
        (level_ok && (1..=TILE_WIDTH).contains(&width)).then_some(Self {
            level,
            index,
            width,
        })
    }

    /// The tile of `level` and `index` as the tree of `size` entries has it: full, or
    /// partial with the width the size gives; `None` when the tree has none of its hashes.
    pub fn at_size(level: TileLevel, index: u64, size: u64) -> Option<Self> {
        let height = match level {
            TileLevel::Hashes(l) => u32::from(l) * u32::from(TILE_HEIGHT),
            TileLevel::Entries => 0,
        };
        let nodes = size.checked_shr(height).unwrap_or(0);
        let before = index.checked_mul(u64::from(TILE_WIDTH))?;
        let width = nodes.checked_sub(before)?.min(u64::from(TILE_WIDTH));
        Self::new(level, index, u16::try_from(width).ok()?)
    }

    /// What the tile holds.
    pub fn level(&self) -> TileLevel {
        self.level
    }

    /// The tile's index within its level.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The number of hashes (or entries) in the tile, 1..=256.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile is full (256 wide).
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The tree height of the tile's hashes (0 for an entry bundle).
    fn height(&self) -> u32 {
        match self.level {
            TileLevel::Hashes(l) => u32::from(l) * u32::from(TILE_HEIGHT),
            TileLevel::Entries => 0,
        }
    }

    /// The first hash's index at the tile's height.
    fn first(&self) -> Option<u64> {
        self.index.checked_mul(u64::from(TILE_WIDTH))
    }

    /// The number of entries the tile's hashes span from the start of the log: the tree
    /// size at and above which the tile exists (`None` beyond any 64-bit size).
    pub fn end(&self) -> Option<u64> {
        let nodes = self.first()?.checked_add(u64::from(self.width))?;
        let span = 1u64.checked_shl(self.height())?;
        nodes.checked_mul(span)
    }

    /// The tile's path under the log's prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn path(&self) -> String {
        let mut path = String::from("tile/");
        match self.level {
            TileLevel::Hashes(l) => path.push_str(&l.to_string()),
            TileLevel::Entries => path.push_str("entries"),
        }
        let mut groups = Vec::with_capacity(7);
        let mut n = self.index;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            let x = if i + 1 < groups.len() { "x" } else { "" };
            path.push_str(&format!("/{x}{g:03}"));
        }
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }

    /// Parses a path under the log's prefix (`tile/...`), strictly: exactly the paths
    /// [`TileId::path`] writes.
    pub fn parse(path: &str) -> Result<Self, TilePathError> {
        let err = |reason| TilePathError::new(path, reason);
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| err("it does not start with tile/"))?;
        let (level, rest) = rest
            .split_once('/')
            .ok_or_else(|| err("the tile index is missing"))?;
        let level = if level == "entries" {
            TileLevel::Entries
        } else {
            let l = decimal(level)
                .and_then(|l| u8::try_from(l).ok())
                .filter(|l| *l <= MAX_TILE_LEVEL)
                .ok_or_else(|| {
                    err("the level must be `entries` or 0 to 63 in decimal without leading zeros")
                })?;
            TileLevel::Hashes(l)
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w = decimal(width)
                    .and_then(|w| u16::try_from(w).ok())
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or_else(|| {
                        err("a partial width must be 1 to 255 in decimal without leading zeros")
                    })?;
                (index, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let mut n = 0u64;
        let mut groups = index.split('/').peekable();
        let mut first = true;
        while let Some(group) = groups.next() {
            let last = groups.peek().is_none();
            let digits = if last {
                group
            } else {
                group.strip_prefix('x').ok_or_else(|| {
                    err("every index element but the last must be `x` and 3 digits")
                })?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("each index element must have exactly 3 digits"));
            }
            if first && !last && digits == "000" {
                return Err(err("the index has a leading zero element (x000)"));
            }
            first = false;
            let g: u64 = digits
                .parse()
                .map_err(|_| err("each index element must have exactly 3 digits"))?;
            n = n
                .checked_mul(1000)
                .and_then(|n| n.checked_add(g))
                .ok_or_else(|| err("the index is too large"))?;
        }
        Self::new(level, n, width).ok_or_else(|| err("the level or width is out of range"))
    }
}

/// A decimal number in ASCII without sign or leading zeros.
fn decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

/// The bytes of `tile` in the tree of the first `size` leaves of `log`: the concatenated
/// hashes, or for an entry bundle each leaf with its big-endian uint16 length. The tile
/// must lie wholly inside the size ([`TileId::end`] <= `size`), else
/// [`TileError::NotInTree`]: a partial tile of any width up to what the size holds is
/// served, so a client holding an older checkpoint finds the partial tiles of its size.
pub fn tile_bytes(log: &impl LogRead, tile: TileId, size: u64) -> Result<Vec<u8>, TileError> {
    let not_in_tree = || TileError::NotInTree {
        path: tile.path(),
        size,
    };
    let end = tile.end().ok_or_else(not_in_tree)?;
    if end > size {
        return Err(not_in_tree());
    }
    // `end` fits in 64 bits, so these do too, and the height is at most 56.
    let first = tile.first().ok_or_else(not_in_tree)?;
    let width = u64::from(tile.width);
    match tile.level {
        TileLevel::Hashes(_) => {
            let height = u8::try_from(tile.height()).map_err(|_| not_in_tree())?;
            let hashes = log
                .nodes(height, first, first + width)
                .map_err(TreeError::from)?;
            if hashes.len() as u64 != width {
                return Err(TileError::Tree(TreeError::MissingNode {
                    level: height,
                    index: first + hashes.len() as u64,
                }));
            }
            Ok(hashes.concat())
        }
        TileLevel::Entries => {
            let leaves = log.leaves(first, first + width).map_err(TreeError::from)?;
            if leaves.len() as u64 != width {
                return Err(TileError::MissingLeaf {
                    index: first + leaves.len() as u64,
                });
            }
            encode_bundle(first, &leaves)
        }
    }
}

/// An entry bundle of `leaves`, the first being entry `first_index`: each leaf as a
/// big-endian uint16 length and its bytes. The vault's own leaves stay far below the
/// limit (the store keeps each leaf under 8 KiB).
pub fn encode_bundle(first_index: u64, leaves: &[Vec<u8>]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::with_capacity(leaves.iter().map(|l| 2 + l.len()).sum());
    for (index, leaf) in (first_index..).zip(leaves) {
        let len = u16::try_from(leaf.len()).map_err(|_| TileError::EntryTooLong {
            index,
            len: leaf.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(leaf);
    }
    Ok(out)
}

/// The entries of a bundle, in order; on malformed bytes, the position of the entry
/// that does not fit and why.
pub fn parse_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, (usize, &'static str)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<2>() else {
            return Err((out.len(), "the bundle ends inside an entry's length"));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if len > rest.len() {
            return Err((out.len(), "the bundle ends inside an entry"));
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry);
        bytes = rest;
    }
    Ok(out)
}

/// The hashes of a hash tile of `width` hashes, or why the bytes are not one.
fn split_hashes(bytes: &[u8], width: u16) -> Result<Vec<Hash>, String> {
    if bytes.len() != usize::from(width) * HASH_LEN {
        return Err(format!(
            "a tile of width {width} is {} bytes, this one is {}",
            usize::from(width) * HASH_LEN,
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Why [`root_from_tiles`] could not compute a root.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TilesRootError<E> {
    /// The tile could not be had.
    #[error("fetching {path} failed: {source}")]
    Fetch {
        /// The tile's path.
        path: String,
        /// The fetch function's error.
        source: E,
    },
    /// The tile's bytes are not `width` hashes.
    #[error("{path} is malformed: {reason}")]
    Malformed {
        /// The tile's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The root of the tree of `size` entries from its hash tiles, as a tiles client
/// computes it: each maximal complete subtree of the size is one hash of a tile, or the
/// Merkle hash of consecutive hashes of one tile. `tile(id)` returns a tile's bytes; only
/// tiles the size holds are asked for (at most two per level).
pub fn root_from_tiles<E>(
    size: u64,
    tile: &mut dyn FnMut(TileId) -> Result<Vec<u8>, E>,
) -> Result<Hash, TilesRootError<E>> {
    let mut parts = Vec::with_capacity(64);
    let mut pos = 0u64;
    let mut cached: Option<(TileId, Vec<Hash>)> = None;
    for height in (0..64u32).rev() {
        if size & (1u64 << height) == 0 {
            continue;
        }
        let level = height / u32::from(TILE_HEIGHT);
        let below = height % u32::from(TILE_HEIGHT);
        let tile_height = level * u32::from(TILE_HEIGHT);
        let start = pos >> tile_height;
        let count = 1usize << below;
        // level <= 7: heights are below 64.
        let tile_level = TileLevel::Hashes(level as u8);
        let tile_index = start / u64::from(TILE_WIDTH);
        let offset = (start % u64::from(TILE_WIDTH)) as usize;
        let id = TileId::at_size(tile_level, tile_index, size).ok_or_else(|| {
            TilesRootError::Malformed {
                path: format!("tile at level {level}, index {tile_index}"),
                reason: "not in the tree (internal error)".into(),
            }
        })?;
        let hashes = match &cached {
            Some((c, h)) if *c == id => h.clone(),
            _ => {
                let bytes = tile(id).map_err(|source| TilesRootError::Fetch {
                    path: id.path(),
                    source,
                })?;
                let h =
                    split_hashes(&bytes, id.width).map_err(|reason| TilesRootError::Malformed {
                        path: id.path(),
                        reason,
                    })?;
                cached = Some((id, h.clone()));
                h
            }
        };
        let mut layer = hashes
            .get(offset..offset + count)
            .ok_or_else(|| TilesRootError::Malformed {
                path: id.path(),
                reason: "the tile is narrower than the tree size needs".into(),
            })?
            .to_vec();
        while layer.len() > 1 {
            layer = layer
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        parts.extend(layer);
        pos += 1u64 << height;
    }
    let mut iter = parts.into_iter().rev();
    Ok(match iter.next() {
        None => empty_root(),
        Some(last) => iter.fold(last, |acc, left| node_hash(&left, &acc)),
    })
}

/// Verifies a log served as tiles against the trusted verifier key `vkey`. `fetch(path)`
/// returns the resource at `path` under the log's prefix (`checkpoint`, `tile/...`).
/// Fetches the checkpoint and checks its signature, then every entry bundle and level-0
/// tile of its size: each entry's leaf hash must be its hash in the level-0 tile, and the
/// entries must pass the checks [`crate::export::verify`] makes (strict decoding, index,
/// hash chain, subject chains, root); finally the root recomputed from the hash tiles of
/// the higher levels must be the signed one too. `progress(done, total)` is called now
/// and then. Errors name the first bad entry, like the export verifier's.
pub fn verify<E: Display>(
    vkey: &str,
    fetch: &mut dyn FnMut(&str) -> Result<Vec<u8>, E>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary, VerifyError> {
    let verifier =
        NoteVerifier::parse(vkey).map_err(|e| VerifyError::file(VerifyErrorKind::BadKey(e)))?;
    let fetch_err = |path: &str, e: E| {
        VerifyError::file(VerifyErrorKind::Fetch {
            path: path.to_owned(),
            message: e.to_string(),
        })
    };
    let note = fetch(CHECKPOINT_PATH).map_err(|e| fetch_err(CHECKPOINT_PATH, e))?;
    let note = String::from_utf8(note).map_err(|_| {
        VerifyError::file(VerifyErrorKind::BadTile {
            path: CHECKPOINT_PATH.into(),
            reason: "it is not UTF-8".into(),
        })
    })?;
    let signed = SignedCheckpoint::parse(&note, &verifier)
        .map_err(|e| VerifyError::file(VerifyErrorKind::Checkpoint(e)))?;
    let size = signed.checkpoint.size;
    progress(0, size);

    let mut checker = LeafChecker::new()?;
    let mut index = 0u64;
    while index < size {
        let n = index / u64::from(TILE_WIDTH);
        let (Some(bundle_id), Some(tile_id)) = (
            TileId::at_size(TileLevel::Entries, n, size),
            TileId::at_size(TileLevel::Hashes(0), n, size),
        ) else {
            break; // unreachable: index < size
        };
        let bundle_path = bundle_id.path();
        let tile_path = tile_id.path();
        let bundle = fetch(&bundle_path).map_err(|e| checker.stop(fetch_err(&bundle_path, e)))?;
        let tile = fetch(&tile_path).map_err(|e| checker.stop(fetch_err(&tile_path, e)))?;
        let hashes = split_hashes(&tile, tile_id.width).map_err(|reason| {
            checker.stop(VerifyError::file(VerifyErrorKind::BadTile {
                path: tile_path.clone(),
                reason,
            }))
        })?;
        let entries = parse_bundle(&bundle).map_err(|(k, reason)| {
            checker.stop(VerifyError::at(
                index + k as u64,
                VerifyErrorKind::BadTile {
                    path: bundle_path.clone(),
                    reason: reason.into(),
                },
            ))
        })?;
        if entries.len() != usize::from(bundle_id.width) {
            let at = index + entries.len().min(usize::from(bundle_id.width)) as u64;
            return Err(checker.stop(VerifyError::at(
                at,
                VerifyErrorKind::BadTile {
                    path: bundle_path,
                    reason: format!(
                        "it holds {} entries, its width is {}",
                        entries.len(),
                        bundle_id.width
                    ),
                },
            )));
        }
        for (leaf, want) in entries.into_iter().zip(&hashes) {
            let hash = leaf_hash(leaf);
            if hash != *want {
                return Err(checker.stop(VerifyError::at(index, VerifyErrorKind::TileMismatch)));
            }
            checker.push(leaf, hash)?;
            index += 1;
            if index.is_multiple_of(PROGRESS_EVERY) {
                progress(index, size);
            }
        }
    }
    let want = signed.checkpoint.root;
    let findings = checker.finish(&want)?;
    let from_tiles = root_from_tiles(size, &mut |id| fetch(&id.path())).map_err(|e| match e {
        TilesRootError::Fetch { path, source } => fetch_err(&path, source),
        TilesRootError::Malformed { path, reason } => {
            VerifyError::file(VerifyErrorKind::BadTile { path, reason })
        }
    })?;
    if from_tiles != want {
        return Err(VerifyError::file(VerifyErrorKind::TreeTiles));
    }
    progress(size, size);
    Ok(Summary {
        origin: signed.checkpoint.origin,
        size,
        root: want,
        note_text: signed.note_text,
        deferred: findings.deferred,
        last_time_ms: findings.last_time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{root, sign_checkpoint, Entry, MemStore, NoteSigner};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::OnceLock;

    /// A log of `n` entries whose subjects cycle over 3 tags.
    fn log(n: u64) -> MemStore {
        crate::testvectors::cycling_log(n)
    }

    pub(super) fn big_log() -> &'static MemStore {
        static LOG: OnceLock<MemStore> = OnceLock::new();
        LOG.get_or_init(|| log(70_000))
    }

    /// Every tile and bundle of the tree of `size` entries.
    fn all_tiles(size: u64) -> Vec<TileId> {
        let mut out = Vec::new();
        for level in (0..=7u8).map(TileLevel::Hashes).chain([TileLevel::Entries]) {
            let mut n = 0;
            while let Some(t) = TileId::at_size(level, n, size) {
                out.push(t);
                n += 1;
            }
        }
        out
    }

    #[test]
    fn paths_follow_the_spec_examples() {
        let t = |l, n, w| TileId::new(l, n, w).expect("valid");
        assert_eq!(
            t(TileLevel::Hashes(0), 1_234_067, 256).path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(t(TileLevel::Hashes(1), 0, 256).path(), "tile/1/000");
        assert_eq!(
            t(TileLevel::Hashes(2), 1000, 1).path(),
            "tile/2/x001/000.p/1"
        );
        assert_eq!(
            t(TileLevel::Entries, 273, 112).path(),
            "tile/entries/273.p/112"
        );
        assert_eq!(
            t(TileLevel::Hashes(63), u64::MAX, 255).path(),
            "tile/63/x018/x446/x744/x073/x709/x551/615.p/255"
        );
        for id in [
            t(TileLevel::Hashes(0), 1_234_067, 256),
            t(TileLevel::Hashes(5), 999, 17),
            t(TileLevel::Entries, 1000, 256),
            t(TileLevel::Entries, u64::MAX, 1),
            t(TileLevel::Hashes(63), 0, 255),
        ] {
            assert_eq!(TileId::parse(&id.path()), Ok(id));
        }
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        for (path, why) in [
            ("", "tile/"),
            ("tiles/0/000", "tile/"),
            ("tile/0", "missing"),
            ("tile/00/000", "level"),
            ("tile/01/000", "level"),
            ("tile/64/000", "level"),
            ("tile/-1/000", "level"),
            ("tile/+1/000", "level"),
            ("tile/entry/000", "level"),
            ("tile/0/00", "3 digits"),
            ("tile/0/0000", "3 digits"),
            ("tile/0/+12", "3 digits"),
            ("tile/0/x000/001", "leading zero"),
            ("tile/0/001/001", "`x`"),
            ("tile/0/x001", "3 digits"),
            ("tile/0/x001/", "3 digits"),
            ("tile/0/000.p/0", "width"),
            ("tile/0/000.p/256", "width"),
            ("tile/0/000.p/08", "width"),
            ("tile/0/000.p/", "width"),
            ("tile/0/000.p/5/", "width"),
            ("tile/0/000.p/5/001", "width"),
            ("tile/0/000/", "`x`"),
            ("tile/0/x018/x446/x744/x073/x709/x551/616", "too large"),
            ("tile/0/x001/x018/x446/x744/x073/x709/x551/615", "too large"),
        ] {
            let err = TileId::parse(path).expect_err(path);
            assert!(err.reason.contains(why), "{path}: {err}");
            assert!(err.to_string().contains("tile/<L>/<N>"), "{err}");
        }
        // The middle x000 after a non-zero group is fine.
        assert!(TileId::parse("tile/0/x001/x000/001").is_ok());
        let long = format!("tile/{}", "é".repeat(300));
        assert!(TileId::parse(&long).expect_err("refused").path.len() <= 200);
    }

    #[test]
    fn a_tree_of_70000_has_the_tiles_the_spec_lists() {
        let tiles = all_tiles(70_000);
        let count = |level, full: bool| {
            tiles
                .iter()
                .filter(|t| t.level == level && t.is_full() == full)
                .map(|t| t.width)
                .collect::<Vec<_>>()
        };
        assert_eq!(count(TileLevel::Hashes(0), true).len(), 273);
        assert_eq!(count(TileLevel::Hashes(0), false), vec![112]);
        assert_eq!(count(TileLevel::Hashes(1), true).len(), 1);
        assert_eq!(count(TileLevel::Hashes(1), false), vec![17]);
        assert_eq!(count(TileLevel::Hashes(2), false), vec![1]);
        assert!(count(TileLevel::Hashes(2), true).is_empty());
        assert!(tiles
            .iter()
            .all(|t| matches!(t.level, TileLevel::Hashes(0..=2) | TileLevel::Entries)));
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        let tiles = all_tiles(256);
        let paths: Vec<_> = tiles.iter().map(TileId::path).collect();
        assert_eq!(paths, ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]);
        assert!(all_tiles(0).is_empty());
    }

    #[test]
    fn tiles_hold_the_reference_trees_hashes_and_leaves() {
        let store = big_log();
        for size in [
            0u64, 1, 2, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 70_000,
        ] {
            for id in all_tiles(size) {
                let bytes = tile_bytes(store, id, size).expect("in the tree");
                let first = id.index * 256;
                match id.level {
                    TileLevel::Hashes(l) => {
                        let hashes = split_hashes(&bytes, id.width).expect("width");
                        for (i, h) in (first..).zip(&hashes) {
                            let want = store.node(8 * l, i).expect("reads").expect("complete");
                            assert_eq!(*h, want, "{} at {size}", id.path());
                        }
                    }
                    TileLevel::Entries => {
                        let entries = parse_bundle(&bytes).expect("parses");
                        assert_eq!(entries.len(), usize::from(id.width));
                        for (i, e) in (first..).zip(entries) {
                            assert_eq!(Some(e), store.leaf_bytes(i));
                        }
                    }
                }
            }
            let from_tiles =
                root_from_tiles::<TileError>(size, &mut |id| tile_bytes(store, id, size))
                    .expect("computes");
            assert_eq!(from_tiles, root(store, size).expect("root"), "size {size}");
        }
    }

    #[test]
    fn a_tile_beyond_the_size_does_not_exist() {
        let store = big_log();
        let t = |l, n, w| TileId::new(l, n, w).expect("valid");
        for (id, size) in [
            (t(TileLevel::Hashes(0), 0, 256), 255),
            (t(TileLevel::Hashes(0), 0, 1), 0),
            (t(TileLevel::Entries, 0, 2), 1),
            (t(TileLevel::Hashes(1), 0, 1), 255),
            (t(TileLevel::Hashes(1), 1, 18), 70_000),
            (t(TileLevel::Hashes(0), 273, 113), 70_000),
            (t(TileLevel::Hashes(8), 0, 1), u64::MAX),
            (t(TileLevel::Hashes(63), u64::MAX, 1), u64::MAX),
            (t(TileLevel::Entries, u64::MAX, 1), u64::MAX),
        ] {
            let err = tile_bytes(store, id, size).expect_err("refused");
            assert!(matches!(err, TileError::NotInTree { .. }), "{err}");
            assert!(err.to_string().contains(&id.path()), "{err}");
        }
        // A partial tile narrower than the size's is served: its bytes are a prefix of
        // the full tile's, the same at every later size.
        let narrow = tile_bytes(store, t(TileLevel::Hashes(0), 273, 5), 70_000).expect("in");
        let wide = tile_bytes(store, t(TileLevel::Hashes(0), 273, 112), 70_000).expect("in");
        assert_eq!(narrow[..], wide[..5 * 32]);
    }

    #[test]
    fn bundles_round_trip_and_refuse_long_entries() {
        let leaves = vec![vec![1u8], vec![], vec![7; 65_535]];
        let bundle = encode_bundle(10, &leaves).expect("encodes");
        let parsed = parse_bundle(&bundle).expect("parses");
        assert_eq!(parsed, leaves.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let err = encode_bundle(10, &[vec![0], vec![0; 65_536]]).expect_err("too long");
        assert!(matches!(
            err,
            TileError::EntryTooLong {
                index: 11,
                len: 65_536
            }
        ));
        assert_eq!(parse_bundle(&[0, 2, 1]).expect_err("short").0, 0);
        assert_eq!(parse_bundle(&[0, 1, 1, 0]).expect_err("short").0, 1);
    }

    /// A log of `n` entries with its signed checkpoint, served as a map of paths.
    fn served(n: u64) -> (HashMap<String, Vec<u8>>, String) {
        let store = log(n);
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(&store, &signer, n, None).expect("signs");
        let mut files = HashMap::new();
        files.insert("checkpoint".to_owned(), signed.note_text.into_bytes());
        for id in all_tiles(n) {
            files.insert(id.path(), tile_bytes(&store, id, n).expect("tile"));
        }
        (files, signer.verifier_key())
    }

    fn run(files: &HashMap<String, Vec<u8>>, vkey: &str) -> Result<Summary, VerifyError> {
        verify(
            vkey,
            &mut |p: &str| files.get(p).cloned().ok_or("404 not found"),
            &mut |_, _| {},
        )
    }

    #[test]
    fn a_served_log_verifies_from_its_tiles() {
        for n in [0u64, 1, 255, 256, 257, 600] {
            let (files, vkey) = served(n);
            let s = run(&files, &vkey).expect("verifies");
            assert_eq!(s.size, n);
        }
        let (files, vkey) = served(600);
        let mut calls = Vec::new();
        verify(
            &vkey,
            &mut |p: &str| files.get(p).cloned().ok_or("404"),
            &mut |d, t| calls.push((d, t)),
        )
        .expect("verifies");
        assert_eq!(calls, [(0, 600), (600, 600)]);
    }

    #[test]
    fn an_altered_bundle_is_blamed_on_its_entry() {
        let (mut files, vkey) = served(600);
        let bundle = files.get_mut("tile/entries/001").expect("served");
        // Entry 256 + 3: skip three entries, then flip a byte inside the fourth.
        let mut at = 0;
        for _ in 0..3 {
            at += 2 + usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
        }
        bundle[at + 10] ^= 1;
        let err = run(&files, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(259), "audit.verify.tile_mismatch"),
            "{err}"
        );
        assert!(err.to_string().starts_with("entry 259: "), "{err}");
    }

    #[test]
    fn an_entry_altered_in_bundle_and_tile_is_caught_by_the_chain() {
        let (mut files, vkey) = served(300);
        let store = log(300);
        let mut e = Entry::decode(store.leaf_bytes(5).expect("leaf")).expect("decodes");
        e.action = "y".into();
        let mut leaves: Vec<Vec<u8>> = (0..256)
            .map(|i| store.leaf_bytes(i).expect("leaf").to_vec())
            .collect();
        leaves[5] = e.encode().expect("encodes");
        files.insert(
            "tile/entries/000".into(),
            encode_bundle(0, &leaves).expect("bundle"),
        );
        let tile: Vec<u8> = leaves.iter().flat_map(|l| leaf_hash(l)).collect();
        files.insert("tile/0/000".into(), tile);
        let err = run(&files, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(5), "audit.verify.altered_entry"),
            "{err}"
        );
    }

    #[test]
    fn tiles_that_disagree_with_the_checkpoint_are_refused() {
        let (mut files, vkey) = served(70_000 / 100);
        // A level-1 tile that is wrong while the entries are right.
        let (path, tile) = files
            .iter_mut()
            .find(|(p, _)| p.starts_with("tile/1/"))
            .expect("a level-1 tile");
        let path = path.clone();
        tile[0] ^= 1;
        let err = run(&files, &vkey).expect_err("detected");
        assert_eq!(err.code(), "audit.verify.tree_tiles", "{path}: {err}");
        // A missing resource and a bad key.
        let (mut files, vkey) = served(10);
        files.remove("tile/0/000.p/10");
        let err = run(&files, &vkey).expect_err("detected");
        assert!(
            err.to_string()
                .contains("fetching tile/0/000.p/10 failed: 404"),
            "{err}"
        );
        let (files, _) = served(10);
        let other = NoteSigner::from_seed("t.example/log", &[4; 32]).expect("key");
        let err = run(&files, &other.verifier_key()).expect_err("detected");
        assert_eq!(err.code(), "audit.verify.checkpoint", "{err}");
        // A bundle with one entry too many.
        let (mut files, vkey) = served(10);
        files
            .get_mut("tile/entries/000.p/10")
            .expect("served")
            .extend_from_slice(&[0, 1, 0]);
        let err = run(&files, &vkey).expect_err("detected");
        assert_eq!(
            (err.index, err.code()),
            (Some(10), "audit.verify.bad_tile"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_root_from_tiles_is_the_trees_root(size in 0u64..=70_000) {
            let store = big_log();
            let from_tiles = root_from_tiles::<TileError>(size, &mut |id| {
                tile_bytes(store, id, size)
            })
            .expect("computes");
            prop_assert_eq!(from_tiles, root(store, size).expect("root"));
        }

        #[test]
        fn paths_round_trip(level in prop_oneof![(0u8..=63).prop_map(TileLevel::Hashes), Just(TileLevel::Entries)],
                            index in any::<u64>(), width in 1u16..=256) {
            let id = TileId::new(level, index, width).expect("valid");
            prop_assert_eq!(TileId::parse(&id.path()), Ok(id));
        }

        #[test]
        fn parsing_never_panics_and_accepts_only_canonical_paths(s in "tile/[0-9a-z./x]{0,30}") {
            if let Ok(id) = TileId::parse(&s) {
                prop_assert_eq!(id.path(), s);
            }
        }
    }
}

/// Interop with Cloudflare azul's `tlog_tiles` (a port of Go's `sumdb/tlog`): its tile
/// paths (Go's form, `tile/8/<L>/...`, which C2SP tlog-tiles drops the height from), its
/// tree hash and proofs computed through its `TileHashReader` over our tiles, and its
/// checkpoint parser on our checkpoint.
#[cfg(test)]
mod interop {
    use super::*;
    use crate::{inclusion_proof, root, sign_checkpoint, MemStore, NoteSigner};

    struct Reader<'a> {
        store: &'a MemStore,
        size: u64,
    }

    impl tlog_tiles::TileReader for Reader<'_> {
        fn height(&self) -> u8 {
            TILE_HEIGHT
        }

        fn read_tiles(
            &self,
            tiles: &[tlog_tiles::Tile],
        ) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
            tiles
                .iter()
                .map(|t| {
                    let w = u16::try_from(t.width()).expect("width fits");
                    let id = TileId::new(TileLevel::Hashes(t.level()), t.level_index(), w)
                        .expect("valid tile");
                    Ok(tile_bytes(self.store, id, self.size).expect("in the tree"))
                })
                .collect()
        }

        fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
    }

    fn go_path(ours: &str) -> String {
        ours.replacen("tile/entries/", "tile/8/data/", 1)
            .replacen("tile/", "tile/8/", 1)
            .replacen("tile/8/8/data/", "tile/8/data/", 1)
    }

    #[test]
    fn tile_paths_match_tlog_tiles() {
        for (l, n, w) in [
            (0u8, 0u64, 256u32),
            (0, 1_234_067, 256),
            (1, 999, 17),
            (2, 1000, 1),
            (5, 7, 255),
        ] {
            let ours = TileId::new(TileLevel::Hashes(l), n, w as u16).expect("valid");
            let theirs = tlog_tiles::Tile::new(8, l, n, w, false);
            assert_eq!(go_path(&ours.path()), theirs.path());
            let parsed = tlog_tiles::Tile::from_path(&go_path(&ours.path())).expect("parses");
            assert_eq!(
                (parsed.level(), parsed.level_index(), parsed.width()),
                (l, n, w)
            );
            let data = TileId::new(TileLevel::Entries, n, w as u16).expect("valid");
            let mut theirs = theirs;
            theirs.set_is_data();
            assert_eq!(go_path(&data.path()), theirs.path());
        }
    }

    #[test]
    fn tlog_tiles_computes_our_root_and_proofs_from_our_tiles() {
        let store = super::tests::big_log();
        for size in [1u64, 255, 256, 257, 65_536, 70_000] {
            let want = root(store, size).expect("root");
            let reader = Reader { store, size };
            let hr = tlog_tiles::TileHashReader::new(size, tlog_tiles::Hash(want), &reader);
            let got = tlog_tiles::tree_hash(size, &hr).expect("tree hash");
            assert_eq!(got.0, want, "size {size}");
            for index in [0, size / 2, size - 1] {
                let proof = tlog_tiles::prove_record(size, index, &hr).expect("proves");
                let leaf = crate::leaf_hash(store.leaf_bytes(index).expect("leaf"));
                tlog_tiles::check_record(&proof, size, got, index, tlog_tiles::Hash(leaf))
                    .expect("their proof checks");
                let ours = inclusion_proof(store, index, size).expect("ours");
                let theirs: Vec<Hash> = proof.iter().map(|h| h.0).collect();
                assert_eq!(theirs, ours, "inclusion {index} in {size}");
            }
        }
    }

    #[test]
    fn tlog_tiles_parses_our_checkpoint() {
        let store = super::tests::big_log();
        let signer = NoteSigner::from_seed("t.example/log", &[3; 32]).expect("key");
        let signed = sign_checkpoint(store, &signer, 70_000, None).expect("signs");
        let body = signed
            .note_text
            .split("\n\n")
            .next()
            .expect("body")
            .to_owned()
            + "\n";
        let cp = tlog_tiles::Checkpoint::from_bytes(body.as_bytes()).expect("parses");
        assert_eq!(cp.origin(), "t.example/log");
        assert_eq!(cp.size(), 70_000);
        assert_eq!(cp.hash().0, signed.checkpoint.root);
    }
}
