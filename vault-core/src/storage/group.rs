//! The group commit, for any backend (`docs/storage.md`, "Durability").
//!
//! [`GroupCommit::apply`] queues a batch with the next ticket and puts its writes in the
//! [`Overlay`] that every read sees. [`GroupCommit::wait_durable`] makes tickets durable:
//! one thread at a time becomes the leader, takes the queued batches (a group), has the
//! backend make their net writes durable ([`Durability::make_durable`]), releases every
//! waiter the group covers, lets go of the lead (a parked waiter may lead the next group
//! at once), then lets the backend finish ([`Durability::after_durable`], groups one at a
//! time in ticket order) and drops the group from the overlay. Waiters park (threads) or register a waker
//! ([`GroupCommit::poll_durable`]) with their ticket and are woken only by the step that
//! covers them. A failed step poisons the store: every later call returns
//! [`StorageError::Poisoned`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::overlay::Overlay;
use super::{lock, CommitTicket, StorageError, Tree, WriteBatch};

/// What a backend does with a group of batches. The group commit calls `make_durable` from
/// one leader at a time, for groups in ticket order, and never for an empty group.
pub(crate) trait Durability {
    /// Makes `writes` (the net effect of the group's batches, in key order) durable, all or
    /// nothing: once it returns `Ok`, the group's waiters are released. An error poisons
    /// the store.
    fn make_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError>;

    /// Runs after the group's waiters are released, for groups in ticket order, one at a
    /// time; the next group's [`Durability::make_durable`] may run at the same time, on
    /// another thread ([`GroupCommit::wait_finished`] waits for this). Reads see the group
    /// through the overlay until it returns. An error poisons the store (the group stays
    /// durable).
    fn after_durable(&self, writes: &NetWrites<'_>) -> Result<(), StorageError>;
}

/// The net effect of batches: per (tree, key), its last write (`None`: a delete).
pub(crate) type NetWrites<'b> = BTreeMap<(Tree, &'b [u8]), Option<&'b [u8]>>;

/// The net effect of batches in order: the last write of each key, in key order.
pub(crate) fn net_writes<'b>(batches: impl Iterator<Item = &'b WriteBatch>) -> NetWrites<'b> {
    let mut net = BTreeMap::new();
    for write in batches.flat_map(WriteBatch::writes) {
        let (tree, key, value) = write.parts();
        net.insert((tree, key), value);
    }
    net
}

/// A leader takes queued batches in groups of at most this many bytes of keys and values
/// (at least one batch): it bounds what one step writes before its waiters are released
/// and before the next step can start.
pub(crate) const GROUP_BYTES: usize = 256 * 1024;

/// The longest a leader waits for applies already under way to join its group. Only spent
/// while other threads are inside `apply`: a lone committer never waits.
const GATHER_WINDOW: Duration = Duration::from_micros(500);

fn batch_bytes(batch: &WriteBatch) -> usize {
    batch
        .writes()
        .iter()
        .map(|w| {
            let (_, key, value) = w.parts();
            key.len() + value.map_or(0, <[u8]>::len)
        })
        .sum()
}

/// The batches applied but not yet in the backend, and the lock that orders applies.
#[derive(Default)]
struct Pending {
    /// The last ticket handed out.
    last: u64,
    /// The queued batches with their tickets, in ticket order.
    queue: VecDeque<(u64, WriteBatch)>,
    /// What reads see of the queued batches.
    overlay: Overlay,
}

/// The overlay, read-locked: a reader holds it across its overlay look-up and its backend
/// read, so that a batch is always found whole in one or the other.
pub(crate) struct OverlayRead<'a>(RwLockReadGuard<'a, Pending>);

impl std::ops::Deref for OverlayRead<'_> {
    type Target = Overlay;

    fn deref(&self) -> &Overlay {
        &self.0.overlay
    }
}

/// State of the durability steps, guarded by one mutex.
#[derive(Debug, Default)]
struct DurableState {
    /// Every batch with a ticket at or below this is durable.
    durable: u64,
    /// A leader is running a step.
    leading: bool,
    /// Threads parked in `wait_durable` while a leader works, with their tickets.
    parked: Vec<(u64, std::thread::Thread)>,
    /// Async waiters (`poll_durable`) with their tickets.
    wakers: Vec<(u64, Waker)>,
}

/// The queued batches a leader takes for one durability step.
struct Group {
    /// Once the group is durable, every ticket up to this one is.
    target: u64,
    /// The batches, in ticket order (empty: nothing was queued).
    batches: Vec<(u64, WriteBatch)>,
}

/// Wakes and removes the waiters whose ticket is at or below `durable`.
fn release<T>(waiters: &mut Vec<(u64, T)>, durable: u64, wake: impl Fn(&T)) {
    waiters.retain(|(ticket, waiter)| {
        let covered = *ticket <= durable;
        if covered {
            wake(waiter);
        }
        !covered
    });
}

/// A ticket that this store did not hand out.
#[derive(Debug, thiserror::Error)]
#[error("commit ticket {0} was not issued by this store")]
struct ForeignTicket(u64);

/// Counts a thread inside `apply` for as long as it lives.
struct Applying<'a>(&'a AtomicU64);

impl<'a> Applying<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Applying(counter)
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The queue, the overlay, the leader and its waiters, and the poison flag of one store.
#[derive(Default)]
pub(crate) struct GroupCommit {
    /// Orders applies and assigns tickets; the queued batches and their overlay.
    pending: RwLock<Pending>,
    /// The last ticket handed out (updated under `pending`'s write lock).
    issued: AtomicU64,
    state: Mutex<DurableState>,
    poisoned: AtomicBool,
    /// Threads inside `apply`: a leader about to take its group lets them finish, up to
    /// [`GATHER_WINDOW`], so its group covers them.
    applying: AtomicU64,
    /// Groups made durable so far.
    steps: AtomicU64,
    /// Held by the thread finishing a durable group (`after_durable`), taken while it still
    /// leads: groups are finished one at a time, in ticket order, while the next leader
    /// already makes its own group durable.
    finish_turn: Mutex<()>,
}

impl GroupCommit {
    /// `Poisoned` once a durability step has failed.
    pub(crate) fn check_poisoned(&self) -> Result<(), StorageError> {
        if self.is_poisoned() {
            Err(StorageError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// True once a durability step has failed.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// The last ticket handed out.
    pub(crate) fn issued(&self) -> CommitTicket {
        CommitTicket(self.issued.load(Ordering::SeqCst))
    }

    /// How many groups were made durable.
    #[cfg(any(test, feature = "test-hooks"))]
    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// The overlay, for a read that then consults the backend while holding it.
    pub(crate) fn overlay(&self) -> Result<OverlayRead<'_>, StorageError> {
        self.check_poisoned()?;
        Ok(OverlayRead(self.pending_read()))
    }

    fn pending_read(&self) -> RwLockReadGuard<'_, Pending> {
        // A panic while holding it leaves whole batches behind (each staged under the lock).
        self.pending
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending_write(&self) -> RwLockWriteGuard<'_, Pending> {
        self.pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a validated batch with the next ticket; reads see it from now on.
    pub(crate) fn apply(&self, batch: WriteBatch) -> Result<CommitTicket, StorageError> {
        let _applying = Applying::enter(&self.applying);
        let mut pending = self.pending_write();
        self.check_poisoned()?;
        let ticket = pending.last + 1;
        if !batch.is_empty() {
            pending.overlay.stage(ticket, &batch);
            pending.queue.push_back((ticket, batch));
        }
        pending.last = ticket;
        self.issued.store(ticket, Ordering::SeqCst);
        Ok(CommitTicket(ticket))
    }

    /// Gives a batch the next ticket without queueing it: `write` puts it in the backend
    /// at once, under the lock that orders applies. A failure poisons the store.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn apply_unqueued(
        &self,
        batch: WriteBatch,
        write: impl FnOnce(&WriteBatch) -> Result<(), StorageError>,
    ) -> Result<CommitTicket, StorageError> {
        let mut pending = self.pending_write();
        self.check_poisoned()?;
        if let Err(e) = write(&batch) {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(e);
        }
        pending.last += 1;
        self.issued.store(pending.last, Ordering::SeqCst);
        Ok(CommitTicket(pending.last))
    }

    fn check_issued(&self, ticket: CommitTicket) -> Result<(), StorageError> {
        if ticket > self.issued() {
            return Err(StorageError::backend(
                "waiting for durability",
                ForeignTicket(ticket.0),
            ));
        }
        Ok(())
    }

    /// Poisons the store and releases every waiter (they see `Poisoned`). Also after a
    /// panic in the backend ([`unwound`]), so no waiter parks forever behind a dead leader.
    fn fail(&self, state: &mut DurableState) {
        self.poisoned.store(true, Ordering::SeqCst);
        for (_, t) in state.parked.drain(..) {
            t.unpark();
        }
        for (_, w) in state.wakers.drain(..) {
            w.wake();
        }
    }

    /// Returns once every batch up to `ticket` is durable, leading steps with `backend`
    /// while no other thread does.
    pub(crate) fn wait_durable(
        &self,
        ticket: CommitTicket,
        backend: &impl Durability,
    ) -> Result<(), StorageError> {
        self.check_issued(ticket)?;
        let me = std::thread::current();
        let mut state = lock(&self.state);
        loop {
            self.check_poisoned()?;
            if state.durable >= ticket.0 {
                return Ok(());
            }
            if state.leading {
                // Park until a leader finds this ticket durable, or picks this thread to
                // lead the next step: one wake-up per waiter and step.
                if !state.parked.iter().any(|(_, t)| t.id() == me.id()) {
                    state.parked.push((ticket.0, me.clone()));
                }
                drop(state);
                std::thread::park();
                state = lock(&self.state);
                continue;
            }
            // Become the leader: everything applied before the group is taken is covered.
            state.leading = true;
            state.parked.retain(|(_, t)| t.id() != me.id());
            drop(state);
            // Applies already under way finish first and ride on this step instead of
            // waiting for the next one.
            let gather_until = Instant::now() + GATHER_WINDOW;
            while self.applying.load(Ordering::SeqCst) > 0 && Instant::now() < gather_until {
                std::thread::yield_now();
            }
            // 1. The commit: the backend makes the group's net writes durable.
            let group = self.take_queued_group();
            let net = net_writes(group.batches.iter().map(|(_, b)| b));
            let made_durable = if group.batches.is_empty() {
                Ok(())
            } else {
                unwound("making a group durable", || backend.make_durable(&net))
            };
            state = lock(&self.state);
            if let Err(e) = made_durable {
                state.leading = false;
                self.fail(&mut state);
                return Err(e);
            }
            if !group.batches.is_empty() {
                self.steps.fetch_add(1, Ordering::SeqCst);
            }
            state.durable = state.durable.max(group.target);
            let durable = state.durable;
            release(&mut state.wakers, durable, Waker::wake_by_ref);
            release(&mut state.parked, durable, std::thread::Thread::unpark);
            drop(state);
            // 2. The backend finishes the group. The turn is taken while this thread still
            // leads, so groups reach the backend in ticket order; then the lead is let go,
            // and a waiter still parked makes the next group durable while this thread
            // finishes this one.
            let turn = lock(&self.finish_turn);
            state = lock(&self.state);
            state.leading = false;
            if let Some((_, next)) = state.parked.first() {
                next.unpark();
            }
            drop(state);
            let finished = if group.batches.is_empty() {
                Ok(())
            } else {
                unwound("finishing a durable group", || backend.after_durable(&net)).map(|()| {
                    self.pending_write()
                        .overlay
                        .settle(group.batches.iter().map(|(_, b)| b), group.target);
                })
            };
            drop(turn);
            state = lock(&self.state);
            if let Err(e) = finished {
                // What the backend holds is unknown; the group is durable, and a restart
                // recovers it.
                self.fail(&mut state);
                return if state.durable >= ticket.0 {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        }
    }

    /// Returns once every group made durable so far has been finished by the backend
    /// ([`Durability::after_durable`]). A backend calls it from `make_durable` before work
    /// that needs every earlier group in place (the sled backend's checkpoint).
    pub(crate) fn wait_finished(&self) {
        drop(lock(&self.finish_turn));
    }

    /// `Ready` once `ticket` is durable (or the store is poisoned), else registers `waker`
    /// for the step that covers it. Never leads a step.
    pub(crate) fn poll_durable(
        &self,
        ticket: CommitTicket,
        waker: &Waker,
    ) -> Poll<Result<(), StorageError>> {
        if let Err(e) = self.check_issued(ticket) {
            return Poll::Ready(Err(e));
        }
        let mut state = lock(&self.state);
        if let Err(e) = self.check_poisoned() {
            return Poll::Ready(Err(e));
        }
        if state.durable >= ticket.0 {
            return Poll::Ready(Ok(()));
        }
        if !state
            .wakers
            .iter()
            .any(|(t, w)| *t == ticket.0 && w.will_wake(waker))
        {
            state.wakers.push((ticket.0, waker.clone()));
        }
        Poll::Pending
    }

    /// Takes the oldest queued batches (up to [`GROUP_BYTES`]) for a durability step. An
    /// empty queue means every ticket issued is durable once earlier groups are (they were
    /// made durable by earlier leaders, one at a time).
    fn take_queued_group(&self) -> Group {
        let mut pending = self.pending_write();
        let mut bytes = 0;
        let mut take = 0;
        for (_, batch) in &pending.queue {
            let b = batch_bytes(batch);
            if take > 0 && bytes + b > GROUP_BYTES {
                break;
            }
            bytes += b;
            take += 1;
        }
        if take == 0 {
            return Group {
                target: pending.last,
                batches: Vec::new(),
            };
        }
        let batches: Vec<(u64, WriteBatch)> = pending.queue.drain(..take).collect();
        Group {
            target: batches.last().map_or(0, |(t, _)| *t),
            batches,
        }
    }

    /// True when nothing is queued and the overlay is empty.
    #[cfg(test)]
    pub(crate) fn is_settled(&self) -> bool {
        let pending = self.pending_read();
        pending.queue.is_empty() && pending.overlay.is_empty()
    }
}

/// A durability step's panic (a bug in a backend) caught and turned into an error, so that
/// the leader poisons the store and releases every waiter instead of leaving them parked
/// behind a leader that is gone.
fn unwound(
    operation: &'static str,
    step: impl FnOnce() -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|_| {
        Err(StorageError::backend(
            operation,
            Panicked("the durability step panicked; the store is poisoned until restarted"),
        ))
    })
}

/// The error of a durability step that panicked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Panicked(&'static str);
