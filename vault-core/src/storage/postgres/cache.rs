//! The writer's read cache: what the database answered to gets and scans, kept in memory.
//! Only the store holding the lease has one: while it holds the lease no other process
//! writes, so the database changes only through its own commits, and each commit updates
//! the cache (`after_durable`) before the overlay lets go of the group.
//!
//! A read that missed fills the cache only if no commit touched its tree while it ran
//! (the tree's generation is unchanged), so a value read just before a commit never
//! outlives it. Memory is bounded: two generations of entries, the older dropped whole when
//! the newer fills half the budget (a hit in the older moves the entry to the newer).

use std::collections::HashMap;
use std::sync::Mutex;

use super::super::group::NetWrites;
use super::super::{lock, Entries, Tree};

/// Bytes counted per entry besides its key and value.
const OVERHEAD: usize = 64;

/// A scan's identity: tree, bounds, direction.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ScanKey {
    tree: Tree,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    reverse: bool,
}

/// The rows a scan read from the database, as many as it asked for (`asked`).
#[derive(Clone)]
struct ScanRows {
    asked: usize,
    rows: Entries,
}

/// Two generations of a map, bounded in bytes.
struct Generations<K, V> {
    new: HashMap<K, V>,
    old: HashMap<K, V>,
    new_bytes: usize,
    budget: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Generations<K, V> {
    fn new(budget: usize) -> Self {
        Self {
            new: HashMap::new(),
            old: HashMap::new(),
            new_bytes: 0,
            budget,
        }
    }

    fn get(&mut self, key: &K, size: impl Fn(&K, &V) -> usize) -> Option<V> {
        if let Some(v) = self.new.get(key) {
            return Some(v.clone());
        }
        let v = self.old.remove(key)?;
        self.insert(key.clone(), v.clone(), size);
        Some(v)
    }

    fn insert(&mut self, key: K, value: V, size: impl Fn(&K, &V) -> usize) {
        self.new_bytes += size(&key, &value);
        self.old.remove(&key);
        self.new.insert(key, value);
        if self.new_bytes > self.budget / 2 {
            self.old = std::mem::take(&mut self.new);
            self.new_bytes = 0;
        }
    }

    fn remove(&mut self, key: &K) {
        self.new.remove(key);
        self.old.remove(key);
    }

    fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.new.retain(|k, _| keep(k));
        self.old.retain(|k, _| keep(k));
    }
}

struct Inner {
    /// Per tree (by index), the number of commits that touched it.
    generation: Vec<u64>,
    gets: Generations<(Tree, Vec<u8>), Option<Vec<u8>>>,
    scans: Generations<ScanKey, ScanRows>,
}

/// The read cache of the writer's store.
pub(super) struct ReadCache {
    inner: Mutex<Inner>,
}

fn get_size(k: &(Tree, Vec<u8>), v: &Option<Vec<u8>>) -> usize {
    k.1.len() + v.as_ref().map_or(0, Vec::len) + OVERHEAD
}

fn scan_size(k: &ScanKey, v: &ScanRows) -> usize {
    k.start.len()
        + k.end.as_ref().map_or(0, Vec::len)
        + v.rows
            .iter()
            .map(|(k, v)| k.len() + v.len() + OVERHEAD)
            .sum::<usize>()
        + OVERHEAD
}

/// What a reader noted before it went to the database.
#[derive(Clone, Copy)]
pub(super) struct Ticket(u64);

impl ReadCache {
    /// A cache of at most about `budget` bytes (values, keys and overhead); a quarter for
    /// scans.
    pub(super) fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                generation: vec![0; Tree::ALL.len()],
                gets: Generations::new(budget - budget / 4),
                scans: Generations::new(budget / 4),
            }),
        }
    }

    /// The cached value of `key` (`Some(None)`: known absent), and a ticket for filling it.
    pub(super) fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, Ticket> {
        let mut inner = lock(&self.inner);
        let ticket = Ticket(inner.generation[tree.index()]);
        inner
            .gets
            .get(&(tree, key.to_vec()), get_size)
            .ok_or(ticket)
    }

    /// Remembers what the database answered for `key`, unless a commit touched the tree
    /// since `ticket`.
    pub(super) fn fill_get(&self, ticket: Ticket, tree: Tree, key: &[u8], value: Option<Vec<u8>>) {
        let mut inner = lock(&self.inner);
        if inner.generation[tree.index()] == ticket.0 {
            inner.gets.insert((tree, key.to_vec()), value, get_size);
        }
    }

    /// The cached rows of a scan that asked for at least `want` rows (or found all there
    /// were), and a ticket for filling it.
    pub(super) fn scan(
        &self,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        want: usize,
    ) -> Result<Entries, Ticket> {
        let mut inner = lock(&self.inner);
        let ticket = Ticket(inner.generation[tree.index()]);
        let key = ScanKey {
            tree,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            reverse,
        };
        match inner.scans.get(&key, scan_size) {
            Some(hit) if hit.asked >= want || hit.rows.len() < hit.asked => {
                Ok(hit.rows.into_iter().take(want).collect())
            }
            _ => Err(ticket),
        }
    }

    /// Remembers a scan's rows, unless a commit touched the tree since `ticket`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fill_scan(
        &self,
        ticket: Ticket,
        tree: Tree,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        asked: usize,
        rows: &Entries,
    ) {
        let mut inner = lock(&self.inner);
        if inner.generation[tree.index()] == ticket.0 {
            let key = ScanKey {
                tree,
                start: start.to_vec(),
                end: end.map(<[u8]>::to_vec),
                reverse,
            };
            inner.scans.insert(
                key,
                ScanRows {
                    asked,
                    rows: rows.clone(),
                },
                scan_size,
            );
        }
    }

    /// A committed group: its values replace the cached ones, and the scans of every tree
    /// it touched are dropped.
    pub(super) fn committed(&self, writes: &NetWrites<'_>) {
        let mut inner = lock(&self.inner);
        let mut touched = [false; Tree::ALL.len()];
        for ((tree, key), value) in writes {
            touched[tree.index()] = true;
            let k = (*tree, key.to_vec());
            // Only keys already cached are updated: a commit does not fill the cache with
            // what nobody read (the log's leaves, say).
            let cached = inner.gets.new.contains_key(&k) || inner.gets.old.contains_key(&k);
            if cached {
                inner.gets.remove(&k);
                inner.gets.insert(k, value.map(<[u8]>::to_vec), get_size);
            }
        }
        for (i, t) in touched.iter().enumerate() {
            if *t {
                inner.generation[i] += 1;
            }
        }
        inner.scans.retain(|k| !touched[k.tree.index()]);
    }
}
