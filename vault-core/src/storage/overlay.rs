//! The batches applied but not yet in the backend, as reads see them: per tree, the latest
//! queued write of each key. Readers look here first and merge it over the backend's own
//! data; the group commit (`group.rs`) drops a group's entries once the backend holds it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Entries, StorageError, Tree, WriteBatch};

/// One key's latest write among the queued batches.
pub(crate) struct Staged {
    /// Ticket of the batch that wrote it last.
    ticket: u64,
    /// The value, `None` for a delete.
    value: Option<Vec<u8>>,
}

/// Per tree (by [`Tree::index`]), the latest queued write of each key.
pub(crate) struct Overlay {
    trees: Vec<BTreeMap<Vec<u8>, Staged>>,
}

impl Default for Overlay {
    fn default() -> Self {
        Self {
            trees: Tree::ALL.iter().map(|_| BTreeMap::new()).collect(),
        }
    }
}

impl Overlay {
    /// Records every write of the batch with ticket `ticket` (a later write to a key wins).
    pub(crate) fn stage(&mut self, ticket: u64, batch: &WriteBatch) {
        for write in batch.writes() {
            let (tree, key, value) = write.parts();
            self.trees[tree.index()].insert(
                key.to_vec(),
                Staged {
                    ticket,
                    value: value.map(<[u8]>::to_vec),
                },
            );
        }
    }

    /// The queued write of `key`: `Some(None)` for a delete, `None` if no queued batch
    /// writes it (then the backend has the value).
    pub(crate) fn get(&self, tree: Tree, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.trees[tree.index()]
            .get(key)
            .map(|staged| staged.value.clone())
    }

    /// The queued writes of `tree` with keys in `start..upper`, in ascending key order.
    pub(crate) fn range<'o>(
        &'o self,
        tree: Tree,
        start: &[u8],
        upper: Bound<&[u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'o Vec<u8>, &'o Staged)> + 'o {
        self.trees[tree.index()].range::<[u8], _>((Bound::Included(start), upper))
    }

    /// Drops the entries of `batches` that no batch after ticket `target` rewrote: the
    /// backend holds them now.
    pub(crate) fn settle<'b>(
        &mut self,
        batches: impl Iterator<Item = &'b WriteBatch>,
        target: u64,
    ) {
        for write in batches.flat_map(WriteBatch::writes) {
            let (tree, key, _) = write.parts();
            let staged = &mut self.trees[tree.index()];
            if staged.get(key).is_some_and(|s| s.ticket <= target) {
                staged.remove(key);
            }
        }
    }

    /// True when no write is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.trees.iter().all(BTreeMap::is_empty)
    }
}

/// Merges a backend's range with the overlay's range over the same bounds, in scan order
/// (descending when `reverse`): an overlay entry replaces the backend's value for its key,
/// an overlay delete hides it. Stops after `limit` entries or at the backend's first error.
pub(crate) fn merge<'o, K, V>(
    base: impl Iterator<Item = Result<(K, V), StorageError>>,
    staged: impl Iterator<Item = (&'o Vec<u8>, &'o Staged)>,
    limit: usize,
    reverse: bool,
) -> Result<Entries, StorageError>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut base = base.peekable();
    let mut staged = staged.peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        if let Some(Err(_)) = base.peek() {
            if let Some(Err(e)) = base.next() {
                return Err(e);
            }
        }
        let base_key = match base.peek() {
            Some(Ok((k, _))) => Some(k.as_ref()),
            _ => None,
        };
        let order = match (base_key, staged.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(b), Some((s, _))) if reverse => s.as_slice().cmp(b),
            (Some(b), Some((s, _))) => b.cmp(s.as_slice()),
        };
        if order == Ordering::Less {
            if let Some(Ok((k, v))) = base.next() {
                out.push((k.as_ref().to_vec(), v.as_ref().to_vec()));
            }
            continue;
        }
        if order == Ordering::Equal {
            base.next();
        }
        if let Some((k, s)) = staged.next() {
            if let Some(v) = &s.value {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(out)
}
