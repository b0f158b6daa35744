//! The key ring: the unsealed KEKs and which one wraps new keys.

use std::collections::BTreeMap;

use super::RecordError;
use crate::keys::Kek;

/// The unsealed master keys: every KEK of the data directory and which one wraps new keys.
pub struct KeyRing {
    keks: BTreeMap<u32, Kek>,
    current: u32,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kek_ids", &self.keks.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keks` whose current one is `current` (which must be among them).
    pub fn new(keks: Vec<Kek>, current: u32) -> Result<Self, RecordError> {
        let keks: BTreeMap<u32, Kek> = keks.into_iter().map(|k| (k.id(), k)).collect();
        if !keks.contains_key(&current) {
            return Err(RecordError::KekUnavailable { kek_id: current });
        }
        Ok(KeyRing { keks, current })
    }

    /// The KEK with `id`.
    pub fn get(&self, id: u32) -> Result<&Kek, RecordError> {
        self.keks
            .get(&id)
            .ok_or(RecordError::KekUnavailable { kek_id: id })
    }

    /// The KEK that wraps new keys.
    pub fn current(&self) -> &Kek {
        // Invariant: `new`, `insert_current` and `remove` keep `current` in the map.
        self.keks
            .get(&self.current)
            .expect("current KEK is in the ring")
    }

    /// The ids held, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    pub(crate) fn insert_current(&mut self, kek: Kek) {
        self.current = kek.id();
        self.keks.insert(kek.id(), kek);
    }

    pub(crate) fn remove(&mut self, id: u32) {
        if id != self.current {
            self.keks.remove(&id);
        }
    }
}
