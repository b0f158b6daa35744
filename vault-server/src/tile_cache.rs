//! A bounded cache of full tiles (C2SP tlog-tiles): the bytes at a full tile's path never
//! change, so a repeat is answered from memory, without a permit, a thread or a store read.
//! Two generations of at most [`GENERATION_BYTES`] each: when the current one is full it
//! becomes the old one and the older is dropped; a hit in the old one moves it up.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use vault_core::audit::TileId;

/// Bytes of tiles one generation holds (two generations: at most twice this).
pub(crate) const GENERATION_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Generations {
    current: HashMap<TileId, Bytes>,
    current_bytes: usize,
    old: HashMap<TileId, Bytes>,
}

/// The cache (`AppState::tiles`).
#[derive(Default)]
pub(crate) struct TileCache {
    inner: Mutex<Generations>,
}

impl TileCache {
    /// The bytes of `id`, if cached.
    pub(crate) fn get(&self, id: &TileId) -> Option<Bytes> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = g.current.get(id) {
            return Some(b.clone());
        }
        let b = g.old.remove(id)?;
        Self::insert(&mut g, *id, b.clone());
        Some(b)
    }

    /// Keeps the bytes of `id` if it is a full tile (partial ones are not kept: each new
    /// checkpoint size makes new ones).
    pub(crate) fn put(&self, id: TileId, bytes: Bytes) {
        if !id.is_full() || bytes.len() > GENERATION_BYTES {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Self::insert(&mut g, id, bytes);
    }

    fn insert(g: &mut Generations, id: TileId, bytes: Bytes) {
        if g.current_bytes + bytes.len() > GENERATION_BYTES {
            g.old = std::mem::take(&mut g.current);
            g.current_bytes = 0;
        }
        g.current_bytes += bytes.len();
        if let Some(previous) = g.current.insert(id, bytes) {
            g.current_bytes -= previous.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::audit::TileLevel;

    #[test]
    fn full_tiles_are_kept_within_two_generations_and_partial_ones_not() {
        let cache = TileCache::default();
        let full = |i| TileId::new(TileLevel::Hashes(0), i, 256).unwrap();
        let partial = TileId::new(TileLevel::Hashes(0), 0, 7).unwrap();
        cache.put(partial, Bytes::from(vec![1; 7 * 32]));
        assert!(cache.get(&partial).is_none());
        let tile = Bytes::from(vec![2u8; 8192]);
        let per_generation = (GENERATION_BYTES / 8192) as u64;
        for i in 0..per_generation * 3 {
            cache.put(full(i), tile.clone());
        }
        // The last two generations' worth are kept, the first is gone.
        assert!(cache.get(&full(0)).is_none());
        assert_eq!(cache.get(&full(per_generation * 3 - 1)), Some(tile.clone()));
        assert!(cache.get(&full(per_generation + 1)).is_some());
        let g = cache.inner.lock().unwrap();
        assert!(g.current_bytes <= GENERATION_BYTES);
        assert!(g.old.values().map(Bytes::len).sum::<usize>() <= GENERATION_BYTES);
    }
}
