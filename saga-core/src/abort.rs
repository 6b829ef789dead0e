//! [`AbortHandle`]: stop running sagas from elsewhere and have them undo what
//! they did.
//!
//! A handle keeps the waker of every run attached to it, so that `abort`
//! wakes them all:
//!
//! - first in a table of `capacity` slots (one unless
//!   [`AbortHandle::with_capacity`] says otherwise), each an `AtomicWaker`
//!   that one run claims for itself in a bitmap. Lock-free, and the same with
//!   and without `std`; a slot has a single registrant (its run) and any
//!   number of concurrent wakers, which is what an `AtomicWaker` supports.
//! - with `std`, the runs that find the table full go to a slab behind a
//!   mutex, which grows to the most runs attached at once and no further
//!   (vacant entries are reused).
//! - without `std`, safe `core` has nothing to share a growable structure
//!   between threads with (only atomics and `AtomicWaker`), so runs that find
//!   the table full register nothing: they try for a slot again at each poll,
//!   and meanwhile see an abort at their next poll (when their step in flight
//!   wakes them). A slot shared by those runs was not chosen: none of them
//!   could take its own waker back out without maybe taking another's, so a
//!   finished run's waker could stay there and be woken for a later run.
//!
//! A run registers once, keeps its slot (or slab key) and re-registers only
//! when it is polled with a waker that would not wake the one it registered.
//! It gives the slot back when its forward phase ends or when it is dropped,
//! taking its waker out first: an abort that starts after that never wakes
//! it (one already under way may still wake a waker it took while the run
//! was attached). Nothing foreign (no waker's clone, wake or drop) runs under
//! the mutex: a waker dropped there could drop a task holding another run
//! attached to the same handle, which would lock it again.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::{Context, Waker};

use futures_util::task::AtomicWaker;

/// A cloneable, `Send + Sync` handle that aborts saga runs.
///
/// Attach it to a run with [`Run::abortable`](crate::Run::abortable). After
/// [`abort`](AbortHandle::abort), the run starts no further action, deals
/// with the action in flight per the saga's [`InFlight`](crate::InFlight)
/// policy (let it finish by default, or cut it short), and compensates
/// everything applied, in reverse. The run then fails with
/// `E::from(Aborted)` and [`SagaError::aborted`](crate::SagaError::aborted)
/// is `true`. An action cut short counts as failed and possibly applied
/// (rule 7 of the [crate docs](crate#the-rules)); compensations already
/// under way are never interrupted by an abort.
///
/// An abort is permanent: a run given an aborted handle stops before its
/// first action.
///
/// # One handle, many runs
///
/// Any number of runs, concurrent or one after another, may share a handle
/// (and its clones), like a shutdown token: `abort` stops every run attached
/// at the time and every later one. Each attached run is woken by `abort`, so
/// a run whose action waits (even forever) notices at once, and cuts it short
/// under [`InFlight::CutShort`](crate::InFlight::CutShort). A run registers
/// with the handle at its first poll and leaves it when its forward phase
/// ends or it is dropped, so a long-lived handle holds only the runs in
/// flight, never the finished ones.
///
/// How many runs `abort` wakes depends on `std`:
///
/// - A handle has a table of slots, each claimed lock-free by one attached
///   run (one slot unless made [`with_capacity`](AbortHandle::with_capacity)).
///   A slot costs a run no allocation, with or without `std`.
/// - With saga-core's `std` feature (which the runtime adapters turn on),
///   runs beyond the table go to a list behind a mutex, which grows to the
///   most runs ever attached at once (an allocation each time it grows, none
///   while it has room): every attached run is woken, however many.
/// - Without `std`, runs beyond the table are not registered: each tries
///   again for a slot at every poll and, until it gets one, sees an abort
///   only when it is next polled (when its step in flight wakes it). Give a
///   handle shared by several runs a capacity of at least the most runs
///   attached at once; both builds then behave the same.
///
/// It uses atomics, so it needs a target with pointer-sized atomics.
///
/// # Examples
///
/// ```
/// use saga_core::{AbortHandle, Aborted, SagaBuilder};
///
/// #[derive(Debug, PartialEq)]
/// enum Error { Aborted }
/// impl From<Aborted> for Error {
///     fn from(_: Aborted) -> Self { Error::Aborted }
/// }
///
/// let abort = AbortHandle::new();
/// let trigger = abort.clone();
/// let mut saga = SagaBuilder::<Error>::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .add_step(
///         move || {
///             trigger.abort(); // an abort arrives while step 1 runs
///             async { Ok(()) }
///         },
///         || async { Ok(()) },
///     )
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
/// assert!(error.aborted());
/// assert_eq!(*error.error(), Error::Aborted);
/// assert_eq!(error.failed_step(), 2); // stopped before step 2 started
/// assert_eq!(error.attempts(), 0);
/// assert_eq!(error.compensated_count(), 2); // steps 1 and 0
/// ```
///
/// One handle stops several runs whose actions never finish:
///
/// ```
/// use saga_core::{AbortHandle, Aborted, InFlight, Saga, SagaBuilder};
/// use smol::future::{yield_now, zip};
///
/// #[derive(Debug)]
/// struct Stopped;
/// impl From<Aborted> for Stopped {
///     fn from(_: Aborted) -> Self { Stopped }
/// }
///
/// let build = || -> Saga<Stopped> {
///     SagaBuilder::new()
///         .add_step(|| async { Ok(()) }, || async { Ok(()) })
///         .add_step(std::future::pending::<Result<(), Stopped>>, || async { Ok(()) })
///         .on_abort(InFlight::CutShort)
///         .build()
/// };
/// let (mut a, mut b) = (build(), build());
/// let shutdown = AbortHandle::new();
/// let ((a, b), ()) = smol::block_on(zip(
///     zip(a.run().abortable(&shutdown), b.run().abortable(&shutdown)),
///     async {
///         yield_now().await; // both runs now wait in step 1
///         shutdown.abort();
///     },
/// ));
/// for result in [a, b] {
///     let error = result.unwrap_err();
///     assert!(error.aborted() && error.is_fully_compensated());
/// }
/// ```
#[derive(Clone, Default)]
pub struct AbortHandle {
    inner: Arc<AbortState>,
}

#[derive(Default)]
struct AbortState {
    aborted: AtomicBool,
    table: Table,
    #[cfg(feature = "std")]
    slab: std::sync::Mutex<Slab>,
}

impl AbortHandle {
    /// A handle that has not aborted, with room in its table for one run
    /// (see [`with_capacity`](AbortHandle::with_capacity)).
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle that has not aborted, whose table has a slot for each of
    /// `capacity` runs attached at once.
    ///
    /// Without `std`, that is how many runs [`abort`](AbortHandle::abort)
    /// wakes (any more see the abort at their next poll); with `std`, how
    /// many runs register without taking a lock (any more are kept in a list
    /// behind a mutex, and woken as well). The table is allocated here, once
    /// (a capacity of one, the default, fits in the handle itself); runs
    /// allocate nothing for their slots.
    pub fn with_capacity(capacity: usize) -> Self {
        AbortHandle {
            inner: Arc::new(AbortState {
                aborted: AtomicBool::new(false),
                table: Table::new(capacity),
                #[cfg(feature = "std")]
                slab: std::sync::Mutex::default(),
            }),
        }
    }

    /// Aborts every run this handle is attached to (and any later run given
    /// it), and wakes them.
    pub fn abort(&self) {
        let state = &*self.inner;
        // Released by the slots' and the slab's synchronisation: a run that
        // registers after the wake-ups below sees the flag when it looks
        // again (see `Attachment::poll_aborted`).
        state.aborted.store(true, Ordering::Release);
        state.table.wake_all();
        #[cfg(feature = "std")]
        state.wake_slab();
    }

    /// `true` once [`abort`](AbortHandle::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.inner.aborted.load(Ordering::Acquire)
    }

    /// How many runs are registered with the handle now (in its table, and
    /// with `std` beyond it). For tests: a run that ended is not counted.
    #[doc(hidden)]
    pub fn attached_runs(&self) -> usize {
        let attached = self.inner.table.claimed();
        #[cfg(feature = "std")]
        let attached = attached + self.inner.slab().len;
        attached
    }

    /// How many runs the handle has room for without allocating: its
    /// table's capacity, and with `std` the slab's allocated entries (what
    /// the most runs attached at once made it grow to). For tests: it must
    /// not grow with the number of runs that ended.
    #[doc(hidden)]
    pub fn registry_slots(&self) -> usize {
        let slots = self.inner.table.capacity;
        #[cfg(feature = "std")]
        let slots = slots + self.inner.slab().entries.capacity();
        slots
    }

    /// What a run keeps of the handle: the handle and, once it registered,
    /// its slot.
    pub(crate) fn attach(&self) -> Attachment {
        Attachment {
            handle: self.clone(),
            slot: Slot::None,
            waker: None,
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("aborted", &self.is_aborted())
            .field("attached_runs", &self.attached_runs())
            .finish()
    }
}

const BITS: usize = usize::BITS as usize;

/// The lock-free part of the registry: `capacity` wakers, each claimed by
/// one run through a bit of `claims`. Slot 0 and the first word of bits live
/// inline, so that a handle of capacity 1 is one allocation.
struct Table {
    capacity: usize,
    // Bit `i % BITS` of word `i / BITS`: slot `i` belongs to a run.
    first_claims: AtomicUsize,
    more_claims: Box<[AtomicUsize]>,
    first: AtomicWaker,
    more: Box<[AtomicWaker]>,
}

impl Default for Table {
    fn default() -> Self {
        Table::new(1)
    }
}

impl Table {
    fn new(capacity: usize) -> Self {
        let words = capacity.div_ceil(BITS);
        Table {
            capacity,
            first_claims: AtomicUsize::new(0),
            more_claims: (1..words).map(|_| AtomicUsize::new(0)).collect(),
            first: AtomicWaker::new(),
            more: (1..capacity).map(|_| AtomicWaker::new()).collect(),
        }
    }

    fn claims(&self, word: usize) -> &AtomicUsize {
        match word {
            0 => &self.first_claims,
            _ => &self.more_claims[word - 1],
        }
    }

    fn slot(&self, index: usize) -> &AtomicWaker {
        match index {
            0 => &self.first,
            _ => &self.more[index - 1],
        }
    }

    /// A free slot, now the caller's; `None` when all are taken.
    fn claim(&self) -> Option<usize> {
        for word in 0..self.capacity.div_ceil(BITS) {
            let in_word = (self.capacity - word * BITS).min(BITS);
            let mask = if in_word == BITS {
                usize::MAX
            } else {
                (1 << in_word) - 1
            };
            let claims = self.claims(word);
            let mut current = claims.load(Ordering::Relaxed);
            loop {
                let free = !current & mask;
                if free == 0 {
                    break;
                }
                let bit = free & free.wrapping_neg();
                // Acquire: the previous owner emptied the slot before it let
                // go of it (`release`).
                match claims.compare_exchange_weak(
                    current,
                    current | bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(word * BITS + bit.trailing_zeros() as usize),
                    Err(now) => current = now,
                }
            }
        }
        None
    }

    /// Gives slot `index` back, empty: the waker it held is taken out first
    /// (and returned, to be dropped by the caller), so that the next owner
    /// starts from nothing.
    fn release(&self, index: usize) -> Option<Waker> {
        let waker = self.slot(index).take();
        self.claims(index / BITS)
            .fetch_and(!(1 << (index % BITS)), Ordering::Release);
        waker
    }

    fn wake_all(&self) {
        (0..self.capacity).for_each(|index| self.slot(index).wake());
    }

    fn claimed(&self) -> usize {
        (0..self.capacity.div_ceil(BITS))
            .map(|word| self.claims(word).load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

/// The runs beyond the table, with `std`: a slab of wakers keyed by the
/// entry each run was given, with a list of vacant entries threaded through
/// it. It grows to the most runs registered at once and is reused.
#[cfg(feature = "std")]
#[derive(Default)]
struct Slab {
    entries: alloc::vec::Vec<Entry>,
    // The first vacant entry; `entries.len()` when there is none.
    vacant: usize,
    // Occupied entries.
    len: usize,
}

#[cfg(feature = "std")]
enum Entry {
    // The next vacant entry.
    Vacant(usize),
    // A run's; its waker is taken out by `abort`.
    Occupied(Option<Waker>),
}

#[cfg(feature = "std")]
impl Slab {
    fn insert(&mut self, waker: Waker) -> usize {
        let entry = Entry::Occupied(Some(waker));
        let key = match self.entries.get(self.vacant) {
            Some(&Entry::Vacant(next)) => {
                let key = self.vacant;
                self.entries[key] = entry;
                self.vacant = next;
                key
            }
            // `vacant` is `entries.len()`: no vacant entry.
            _ => {
                self.entries.push(entry);
                self.vacant = self.entries.len();
                self.entries.len() - 1
            }
        };
        self.len += 1;
        key
    }

    /// Puts `waker` in `key`'s entry; returns the one it replaces.
    fn replace(&mut self, key: usize, waker: Waker) -> Option<Waker> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(slot)) => slot.replace(waker),
            _ => Some(waker),
        }
    }

    /// Frees `key`'s entry; returns its waker.
    fn remove(&mut self, key: usize) -> Option<Waker> {
        let entry = self.entries.get_mut(key)?;
        if let Entry::Vacant(_) = entry {
            return None;
        }
        let Entry::Occupied(waker) = core::mem::replace(entry, Entry::Vacant(self.vacant)) else {
            return None; // matched above
        };
        self.vacant = key;
        self.len -= 1;
        if self.len == 0 {
            // Nobody left: start again from the first entry (the
            // allocation stays).
            self.entries.clear();
            self.vacant = 0;
        }
        waker
    }

    /// Moves the wakers of entries `from..` into `batch` until it is full;
    /// returns how many it moved and where to go on from (`None`: the end).
    fn take_wakers(&mut self, from: usize, batch: &mut [Option<Waker>]) -> (usize, Option<usize>) {
        let mut taken = 0;
        for (key, entry) in self.entries.iter_mut().enumerate().skip(from) {
            if taken == batch.len() {
                return (taken, Some(key));
            }
            if let Entry::Occupied(waker @ Some(_)) = entry {
                batch[taken] = waker.take();
                taken += 1;
            }
        }
        (taken, None)
    }
}

#[cfg(feature = "std")]
impl AbortState {
    /// The slab, also after a panic while it was locked (none of its updates
    /// leave it inconsistent).
    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.slab
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the runs in the slab, a batch at a time, outside the lock.
    fn wake_slab(&self) {
        const BATCH: usize = 32;
        let mut batch: [Option<Waker>; BATCH] = Default::default();
        let mut from = 0;
        loop {
            let (taken, next) = self.slab().take_wakers(from, &mut batch);
            batch[..taken]
                .iter_mut()
                .filter_map(Option::take)
                .for_each(Waker::wake);
            match next {
                Some(next) => from = next,
                None => break,
            }
        }
    }
}

/// Where a run's waker is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    // Nowhere: not registered yet, or no room (without `std`).
    None,
    Table(usize),
    #[cfg(feature = "std")]
    Slab(usize),
}

/// A run's attachment to an [`AbortHandle`]: the handle, the slot its waker
/// is registered in, and that waker (to tell whether a poll's waker differs).
/// Dropping it detaches the run.
pub(crate) struct Attachment {
    handle: AbortHandle,
    slot: Slot,
    waker: Option<Waker>,
}

impl Attachment {
    /// `true` once the handle aborted.
    pub(crate) fn is_aborted(&self) -> bool {
        self.handle.is_aborted()
    }

    /// Registers the run's waker (at the first call, and again only when it
    /// changed), then reports whether it must abort.
    pub(crate) fn poll_aborted(&mut self, cx: &mut Context<'_>) -> bool {
        if self.is_aborted() {
            return true;
        }
        let waker = cx.waker();
        if (self.waker.as_ref()).is_some_and(|registered| registered.will_wake(waker)) {
            // Registered, and nothing takes it out but `abort`, which set the
            // flag first.
            return false;
        }
        let state = &*self.handle.inner;
        match self.slot {
            Slot::Table(index) => state.table.slot(index).register(waker),
            #[cfg(feature = "std")]
            Slot::Slab(key) => {
                let waker = waker.clone();
                let replaced = state.slab().replace(key, waker);
                drop(replaced);
            }
            Slot::None => match state.table.claim() {
                Some(index) => {
                    self.slot = Slot::Table(index);
                    state.table.slot(index).register(waker);
                }
                #[cfg(feature = "std")]
                None => {
                    let waker = waker.clone();
                    self.slot = Slot::Slab(state.slab().insert(waker));
                }
                // No room: try again at the next poll.
                #[cfg(not(feature = "std"))]
                None => return false,
            },
        }
        self.waker = Some(waker.clone());
        // An abort between the first look and the registration: its wake-up
        // may have missed the slot, but the flag it set first is seen here
        // (through the slot's or the slab's synchronisation).
        self.is_aborted()
    }

    /// Takes the run's waker out of the handle and frees its slot; the run
    /// registers again if polled for an abort later.
    pub(crate) fn detach(&mut self) {
        let state = &*self.handle.inner;
        let removed = match core::mem::replace(&mut self.slot, Slot::None) {
            Slot::None => None,
            Slot::Table(index) => state.table.release(index),
            #[cfg(feature = "std")]
            Slot::Slab(key) => state.slab().remove(key),
        };
        // Dropped outside the lock.
        drop(removed);
        self.waker = None;
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.detach();
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("handle", &self.handle)
            .field("slot", &self.slot)
            .finish()
    }
}
