//! Events read from the audit log (`docs/notifications.md`, "Events from the log"): each
//! endpoint's [`Stream`] after its stored cursor, the tag rows that name the citizen
//! behind a log subject tag, and the merge of what a stream holds with the outbox's queued
//! rows in one queue order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::PoisonError;

use audit::SubjectTag;

use super::{
    citizen_event_type, endpoint_part, events_of, key_subject, open_row, seal_row, Config, Event,
    Notifier, Row, WebhookTarget, ERASURE_ACTION, SCAN_WINDOW,
};
use crate::auth::VaultKeys;
use crate::engine::{log, Vault, VaultError};
use crate::envelope::CitizenId;
use crate::storage::{Storage, Tree, WriteBatch};

const CURSOR: u8 = b'c';
const TAG: u8 = b't';
const CURSOR_KIND: &str = "notification cursor";
const TAG_KIND: &str = "notified citizen";

/// Log entries read for delivery in one round, at most.
const READ_WINDOW: usize = 4096;
/// Events read from the log and not yet delivered, per endpoint, at most: reading waits
/// while an endpoint holds more.
const HELD_MAX: usize = SCAN_WINDOW;
/// Citizens whose outbox tag row is known, kept in memory (emptied when full).
const TAG_CACHE: usize = 65_536;

/// The citizen a stored tag row names, and their subject hash in queue keys.
#[derive(Clone)]
pub(super) struct Known {
    pub(super) citizen: String,
    pub(super) hash: [u8; 8],
}

/// An endpoint's events read from the log and not yet delivered.
pub(super) struct Stream {
    /// The cursor as stored.
    pub(super) stored: u64,
    /// The next log index to read.
    pub(super) next: u64,
    /// Events read and not handed out yet, under the key their queued row would have (so
    /// they sort with the rows, and attempts name them the same way).
    pub(super) held: BTreeMap<Vec<u8>, Row>,
    /// Events handed out in an attempt whose result is not recorded yet.
    pub(super) flying: BTreeMap<Vec<u8>, Row>,
    /// The subject hashes of `flying`, with their counts: their later events wait.
    pub(super) flying_subjects: HashMap<[u8; 8], u32>,
}

impl Stream {
    pub(super) fn at(index: u64) -> Stream {
        Stream {
            stored: index,
            next: index,
            held: BTreeMap::new(),
            flying: BTreeMap::new(),
            flying_subjects: HashMap::new(),
        }
    }

    /// Events read from the log and not delivered.
    pub(super) fn pending(&self) -> u64 {
        (self.held.len() + self.flying.len()) as u64
    }

    /// Moves an event handed out in an attempt to `flying`.
    pub(super) fn fly(&mut self, key: &[u8]) {
        if let Some((k, row)) = self.held.remove_entry(key) {
            *self.flying_subjects.entry(key_subject(&k)).or_default() += 1;
            self.flying.insert(k, row);
        }
    }

    /// Takes an event out (its attempt ended), wherever it is.
    pub(super) fn take(&mut self, key: &[u8]) -> Option<Row> {
        if let Some(row) = self.flying.remove(key) {
            let subject = key_subject(key);
            if let Some(n) = self.flying_subjects.get_mut(&subject) {
                *n -= 1;
                if *n == 0 {
                    self.flying_subjects.remove(&subject);
                }
            }
            return Some(row);
        }
        self.held.remove(key)
    }

    /// Every event of an entry below it is delivered or a queued row.
    pub(super) fn cursor(&self) -> u64 {
        [self.held.keys().next(), self.flying.keys().next()]
            .into_iter()
            .flatten()
            .filter_map(|k| key_position(k))
            .fold(self.next, u64::min)
    }
}

/// A queue entry a delivery round looks at: a stored row (sealed), or an event read from
/// the log.
pub(super) enum Queued<'a> {
    Stored(Vec<u8>),
    Held(&'a Row),
}

impl<'a> Queued<'a> {
    pub(super) fn open(&self, keys: &VaultKeys, key: &[u8]) -> Result<Cow<'a, Row>, VaultError> {
        match self {
            Queued::Stored(v) => open_row(keys, key, v).map(Cow::Owned),
            Queued::Held(r) => Ok(Cow::Borrowed(*r)),
        }
    }
}

/// `rows` (stored, in key order) and `held` (read from the log, in key order), merged in
/// key order, lazily (a round stops once its deliveries are full).
pub(super) fn merge_queue<'a>(
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    held: impl Iterator<Item = (&'a Vec<u8>, &'a Row)>,
) -> impl Iterator<Item = (Cow<'a, [u8]>, Queued<'a>)> {
    let mut rows = rows.into_iter().peekable();
    let mut held = held.peekable();
    std::iter::from_fn(move || {
        let from_log = match (rows.peek(), held.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((rk, _)), Some((hk, _))) => *hk < rk,
        };
        if from_log {
            held.next()
                .map(|(k, r)| (Cow::Borrowed(k.as_slice()), Queued::Held(r)))
        } else {
            rows.next().map(|(k, v)| (Cow::Owned(k), Queued::Stored(v)))
        }
    })
}

pub(super) fn cursor_key(target: &WebhookTarget) -> Vec<u8> {
    let mut k = vec![CURSOR];
    endpoint_part(&mut k, target);
    k
}

pub(super) fn tag_key(keys: &VaultKeys, tag: &SubjectTag) -> Vec<u8> {
    let mut k = vec![TAG];
    k.extend_from_slice(&keys.outbox_tag(&tag.0));
    k
}

/// The citizen id a tag row holds, if it is what the vault wrote.
fn open_tag(keys: &VaultKeys, key: &[u8], stored: &[u8]) -> Option<String> {
    let plain = keys
        .open_private(TAG_KIND, Tree::Outbox, key, stored)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

pub(super) fn seal_cursor(keys: &VaultKeys, key: &[u8], at: u64) -> Result<Vec<u8>, VaultError> {
    keys.seal_private(Tree::Outbox, key, &at.to_be_bytes())
        .map_err(VaultError::internal)
}

pub(super) fn open_cursor(keys: &VaultKeys, key: &[u8], stored: &[u8]) -> Result<u64, VaultError> {
    let bytes = keys.open_private(CURSOR_KIND, Tree::Outbox, key, stored)?;
    let at: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::internal("a notification cursor is not 8 bytes"))?;
    Ok(u64::from_be_bytes(at))
}

/// The position in a queued row's key.
fn key_position(key: &[u8]) -> Option<u64> {
    let len = usize::from(*key.get(1)?);
    let at = 2 + len;
    Some(u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?))
}

/// A queued row's endpoint part (with its `q`) and subject hash: who waits behind it.
fn queue_subject(key: &[u8]) -> (Vec<u8>, [u8; 8]) {
    let end = key
        .get(1)
        .map_or(0, |&len| 2 + usize::from(len))
        .min(key.len());
    (key[..end].to_vec(), key_subject(key))
}

impl Notifier {
    /// Records tag rows committed by [`Notifier::stage`] (after the commit is applied, so
    /// that a failed commit leaves none believed stored).
    pub(in crate::engine) fn tags_stored(
        &self,
        keys: &VaultKeys,
        fresh: Vec<(SubjectTag, String)>,
    ) {
        for (tag, citizen) in fresh {
            let hash = keys.outbox_subject(&citizen);
            self.remember(tag, Known { citizen, hash });
        }
    }

    /// Keeps `known` in the tag cache (emptied first when full).
    fn remember(&self, tag: SubjectTag, known: Known) {
        let mut tags = self.tags();
        if tags.len() >= TAG_CACHE {
            tags.clear();
        }
        tags.insert(tag, known);
    }

    /// The citizen behind a log subject tag, if a tag row names one.
    fn citizen_of(
        &self,
        store: &dyn Storage,
        keys: &VaultKeys,
        tag: &SubjectTag,
    ) -> Result<Option<Known>, VaultError> {
        if let Some(k) = self.tags().get(tag) {
            return Ok(Some(k.clone()));
        }
        let key = tag_key(keys, tag);
        let Some(stored) = store.get(Tree::Outbox, &key)? else {
            return Ok(None);
        };
        let Some(citizen) = open_tag(keys, &key, &stored) else {
            // Not what the vault wrote: the event is dropped (counted failed), never signed.
            self.stats().failed += 1;
            return Ok(None);
        };
        let hash = keys.outbox_subject(&citizen);
        let known = Known { citizen, hash };
        self.remember(*tag, known.clone());
        Ok(Some(known))
    }

    /// Stages the citizen's tag row unless it is known to be stored (see [`Notifier::stage`]).
    pub(super) fn stage_tag(
        &self,
        store: &dyn Storage,
        batch: &mut WriteBatch,
        keys: &VaultKeys,
        tag: SubjectTag,
        citizen: &CitizenId,
        fresh: &mut Vec<(SubjectTag, String)>,
    ) -> Result<(), VaultError> {
        if !self.tags().contains_key(&tag) && !fresh.iter().any(|(t, _)| *t == tag) {
            let key = tag_key(keys, &tag);
            let stored = store.get(Tree::Outbox, &key)?;
            // A row that fails its check (edited offline) is written again.
            let sound =
                stored.and_then(|v| open_tag(keys, &key, &v)).as_deref() == Some(citizen.as_str());
            if sound {
                self.tags_stored(keys, vec![(tag, citizen.as_str().to_owned())]);
            } else {
                let sealed = keys
                    .seal_private(Tree::Outbox, &key, citizen.as_str().as_bytes())
                    .map_err(VaultError::internal)?;
                batch.put(Tree::Outbox, key, sealed);
                fresh.push((tag, citizen.as_str().to_owned()));
            }
        }
        Ok(())
    }
}

impl Vault {
    /// The log's size now (entries applied; the writer lock is held only to read it).
    pub(super) fn log_size(&self) -> u64 {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .log
            .size()
    }

    /// The log's size once every entry below it is durable: events are handed out only for
    /// those, so that none is sent for a change a failed durability step (a crash) undoes.
    /// Waits for the store's durability step under way (it shares the accesses' fsync) or
    /// leads one; fails when the store has failed.
    pub(super) fn durable_log_size(&self) -> Result<u64, VaultError> {
        let (size, applied) = {
            let w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            (w.log.size(), w.applied)
        };
        if let Some(ticket) = applied {
            self.store.wait_durable(ticket)?;
        }
        Ok(size)
    }

    /// Reads the entries below `size` after each live endpoint's stream into it: up to
    /// [`READ_WINDOW`] entries, for a stream holding fewer than [`HELD_MAX`] events.
    pub(super) fn read_streams(
        &self,
        streams: &mut HashMap<WebhookTarget, Stream>,
        config: &Config,
        size: u64,
    ) -> Result<(), VaultError> {
        let reads = |t: &WebhookTarget, s: &Stream| config.live(t) && s.held.len() < HELD_MAX;
        let Some(from) = streams
            .iter()
            .filter(|(t, s)| s.next < size && reads(t, s))
            .map(|(_, s)| s.next)
            .min()
        else {
            return Ok(());
        };
        let to = size.min(from.saturating_add(READ_WINDOW as u64));
        let leaves =
            log::leaves(&*self.store, from, to, READ_WINDOW).map_err(log::store_failure)?;
        // A citizen with an event waiting for a retry gets their next ones as rows, behind
        // it, so that they do not hold the cursor back until the retry.
        let waiting: HashSet<(Vec<u8>, [u8; 8])> = self
            .notifier
            .retry()
            .keys()
            .map(|k| queue_subject(k))
            .collect();
        let mut rows = WriteBatch::new();
        let mut stored = 0u64;
        let mut scratch = audit::Entry::empty();
        let mut reading: Vec<WebhookTarget> = Vec::new();
        for (index, leaf) in leaves {
            reading.clear();
            reading.extend(
                streams
                    .iter()
                    .filter(|(t, s)| s.next == index && reads(t, s))
                    .map(|(t, _)| t.clone()),
            );
            if reading.is_empty() {
                continue;
            }
            for ev in self.events_in(index, &leaf, &mut scratch)? {
                if reading.contains(&ev.target) {
                    if let Some(s) = streams.get_mut(&ev.target) {
                        let (key, row) = ev.row(&self.keys, index);
                        if !waiting.is_empty() && waiting.contains(&queue_subject(&key)) {
                            rows.put(Tree::Outbox, key.clone(), seal_row(&self.keys, &key, &row)?);
                            stored += 1;
                        } else {
                            s.held.insert(key, row);
                        }
                    }
                }
            }
            for t in &reading {
                if let Some(s) = streams.get_mut(t) {
                    s.next = index + 1;
                }
            }
        }
        if !rows.is_empty() {
            self.store.apply(rows)?;
            self.notifier.stats().queued += stored;
        }
        Ok(())
    }

    /// The events of the log entry `index` (its leaf) that endpoints read from the log:
    /// none for an entry without a citizen's tag row (a deferred access, whose tag is used
    /// once; an erased citizen's), nor for the kinds staged as rows.
    /// `entry` is scratch space, reused across calls.
    fn events_in(
        &self,
        index: u64,
        leaf: &[u8],
        entry: &mut audit::Entry,
    ) -> Result<Vec<Event>, VaultError> {
        entry.decode_into(leaf).map_err(|e| {
            VaultError::internal(format!("the log's entry {index} does not decode: {e}"))
        })?;
        let Some(tag) = entry.subject else {
            return Ok(Vec::new());
        };
        if entry.action == ERASURE_ACTION
            || matches!(entry.deferral, Some(audit::Deferral::Deferred { .. }))
            || citizen_event_type(&entry.action, &entry.decision, entry.review).is_none()
        {
            return Ok(Vec::new());
        }
        let Some(known) = self.notifier.citizen_of(&*self.store, &self.keys, &tag)? else {
            return Ok(Vec::new());
        };
        let mut events = events_of(&entry.body, index, &known.citizen);
        events.retain(|e| !e.scheduled);
        for e in &mut events {
            e.subject_hash = Some(known.hash);
        }
        Ok(events)
    }

    /// Ends `target`'s stream at the entry `until` (its disabling): the events it holds and
    /// those of its entries not read yet become queued rows, kept for when the endpoint is
    /// set again, and its cursor goes.
    pub(super) fn stream_to_rows(
        &self,
        target: &WebhookTarget,
        until: u64,
    ) -> Result<(), VaultError> {
        let Some(mut stream) = self.notifier.streams().remove(target) else {
            return Ok(());
        };
        loop {
            let mut batch = WriteBatch::new();
            let rows = stream.pending();
            stream.flying_subjects.clear();
            let events = std::mem::take(&mut stream.held)
                .into_iter()
                .chain(std::mem::take(&mut stream.flying));
            for (k, row) in events {
                batch.put(Tree::Outbox, k.clone(), seal_row(&self.keys, &k, &row)?);
            }
            let done = stream.next >= until;
            if done {
                batch.delete(Tree::Outbox, cursor_key(target));
            }
            self.store.commit(batch)?;
            self.notifier.stats().queued += rows;
            if done {
                return Ok(());
            }
            let to = until.min(stream.next.saturating_add(READ_WINDOW as u64));
            let leaves = log::leaves(&*self.store, stream.next, to, READ_WINDOW)
                .map_err(log::store_failure)?;
            if leaves.is_empty() {
                stream.next = until;
            }
            for (index, leaf) in leaves {
                for ev in self.events_in(index, &leaf, &mut audit::Entry::empty())? {
                    if ev.target == *target {
                        let (key, row) = ev.row(&self.keys, index);
                        stream.held.insert(key, row);
                    }
                }
                stream.next = index + 1;
            }
        }
    }
}
