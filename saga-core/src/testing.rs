//! Checking that steps are idempotent, by repeat injection.
//!
//! A saga engine may run an action or a compensation more than once: a retry
//! after a timeout re-runs an attempt that may already have happened, and a
//! crash-recovering orchestrator replays what it cannot prove finished. Steps
//! should therefore be *idempotent*: running one twice in a row must leave
//! the world as running it once does. Repeat injection (as in
//! oxidecomputer's steno) checks that: run every action and every
//! compensation twice, then compare the outcome with a plain run.
//!
//! - [`Repeat`] wraps any [`Step`]: each successful attempt of the inner
//!   step's action (and compensation) is immediately followed by another.
//! - [`repeat_fn`] wraps one closure (an action, or a no-input compensation)
//!   so each call runs its future twice, for a step you do not wrap whole.
//!
//! An [`FnStep`](crate::FnStep) runs its compensation again when asked
//! after it succeeded, so [`Repeat`] repeats both halves of it. A
//! [`TypedStep`](crate::TypedStep) lets go of its action's value once its
//! compensation succeeded (nothing is left to undo), so `Repeat` repeats a
//! typed step's action but runs its compensation once.
//!
//! A step whose outcome differs (the counter moved twice, the seat was booked
//! twice) is not safe to retry. Both are `no_std`, like the rest of the crate;
//! they are meant for tests.
//!
//! # Examples
//!
//! The check: the same saga, built once as it is and once with each step
//! repeated, must leave the world in the same state, whether it succeeds or
//! compensates.
//!
//! ```
//! use std::collections::HashSet;
//! use std::sync::{Arc, Mutex};
//! use saga_core::testing::Repeat;
//! use saga_core::{FnStep, SagaBuilder, Step};
//!
//! /// Seats booked so far.
//! type Seats = Arc<Mutex<HashSet<&'static str>>>;
//!
//! /// Books seat 12A (a set insert: idempotent) and frees it again.
//! fn book(seats: &Seats) -> impl Step<&'static str> + Send + 'static {
//!     let (booked, freed) = (seats.clone(), seats.clone());
//!     FnStep::new(
//!         move || {
//!             let seats = booked.clone();
//!             async move { seats.lock().unwrap().insert("12A"); Ok(()) }
//!         },
//!         move || {
//!             let seats = freed.clone();
//!             async move { seats.lock().unwrap().remove("12A"); Ok(()) }
//!         },
//!     )
//! }
//!
//! /// The seats left booked by a run, with `book` repeated or not, followed
//! /// by a step that fails when `fail`.
//! fn outcome(repeat: bool, fail: bool) -> Vec<&'static str> {
//!     let seats = Seats::default();
//!     let builder = SagaBuilder::new();
//!     let builder = if repeat {
//!         builder.step(Repeat::new(book(&seats)))
//!     } else {
//!         builder.step(book(&seats))
//!     };
//!     let meal = move || async move { if fail { Err("no meal") } else { Ok(()) } };
//!     let mut saga = builder.add_step(meal, || async { Ok(()) }).build();
//!     let _ = smol::block_on(saga.run());
//!     let mut seats: Vec<_> = seats.lock().unwrap().iter().copied().collect();
//!     seats.sort();
//!     seats
//! }
//!
//! for fail in [false, true] {
//!     assert_eq!(outcome(true, fail), outcome(false, fail), "booking is idempotent");
//! }
//! ```

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use crate::Step;

/// Repeat injection for a [`Step`]: runs each action attempt of the inner step
/// `times` times in a row (twice with [`Repeat::new`]), and each compensation
/// attempt too, reporting the result of the last run.
///
/// A failing run is not repeated: its error is returned at once, so the
/// saga's failure handling is unchanged. A compensation is repeated only when
/// the inner step [retries compensations](Step::retries_compensation) (a
/// by-value typed step consumes its value in one attempt).
///
/// The repeated runs go through the [`Step`] protocol: after `Ready`, the next
/// call starts a new attempt, for actions and compensations alike (an
/// [`FnStep`](crate::FnStep) re-runs either; a [`TypedStep`](crate::TypedStep)
/// re-runs its action, but its compensation only until it succeeded, as its
/// value is then gone). [`repeat_fn`] does the same for a single closure.
///
/// # Examples
///
/// A step that charges a card with no idempotency key charges twice under
/// repeat injection; keyed by order, it charges once:
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::{Arc, Mutex};
/// use saga_core::{FnStep, SagaBuilder};
/// use saga_core::testing::Repeat;
///
/// // Not idempotent: every attempt appends a charge.
/// let charges = Arc::new(Mutex::new(Vec::new()));
/// let log = charges.clone();
/// let charge = FnStep::new(
///     move || {
///         let log = log.clone();
///         async move { log.lock().unwrap().push(("order-7", 30)); Ok::<_, ()>(()) }
///     },
///     || async { Ok(()) },
/// );
/// let mut saga = SagaBuilder::new().step(Repeat::new(charge)).build();
/// smol::block_on(saga.run()).unwrap();
/// assert_eq!(charges.lock().unwrap().len(), 2); // found: charged twice
///
/// // Idempotent: the charge is keyed by order.
/// let charged = Arc::new(Mutex::new(HashSet::new()));
/// let set = charged.clone();
/// let charge = FnStep::new(
///     move || {
///         let set = set.clone();
///         async move { set.lock().unwrap().insert(("order-7", 30)); Ok::<_, ()>(()) }
///     },
///     || async { Ok(()) },
/// );
/// let mut saga = SagaBuilder::new().step(Repeat::new(charge)).build();
/// smol::block_on(saga.run()).unwrap();
/// assert_eq!(charged.lock().unwrap().len(), 1); // passes
/// ```
pub struct Repeat<S> {
    inner: Pin<Box<S>>,
    times: u32,
    // Successful runs of the current attempt so far.
    done: u32,
}

impl<S> Repeat<S> {
    /// Wraps `step` so each of its action and compensation attempts runs twice.
    pub fn new(step: S) -> Self {
        Self::times(step, 2)
    }

    /// Wraps `step` so each of its action and compensation attempts runs
    /// `times` times.
    ///
    /// # Panics
    ///
    /// When `times` is zero.
    pub fn times(step: S, times: u32) -> Self {
        assert!(times > 0, "a step must run at least once");
        Repeat {
            inner: Box::pin(step),
            times,
            done: 0,
        }
    }

    /// How many times each attempt runs.
    pub fn repeats(&self) -> u32 {
        self.times
    }
}

impl<S> fmt::Debug for Repeat<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repeat")
            .field("times", &self.times)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<E, S: Step<E>> Step<E> for Repeat<S> {
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        loop {
            let result = ready!(this.inner.as_mut().poll_action(cx));
            this.done += 1;
            if result.is_err() || this.done >= this.times {
                this.done = 0;
                return Poll::Ready(result);
            }
        }
    }

    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let this = self.get_mut();
        let times = if this.inner.retries_compensation() {
            this.times
        } else {
            1
        };
        loop {
            let result = ready!(this.inner.as_mut().poll_compensate(cx));
            this.done += 1;
            if result.is_err() || this.done >= times {
                this.done = 0;
                return Poll::Ready(result);
            }
        }
    }

    fn reset(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.done = 0;
        this.inner.as_mut().reset();
    }

    fn cancel(self: Pin<&mut Self>) {
        let this = self.get_mut();
        this.done = 0;
        this.inner.as_mut().cancel();
    }

    fn compensates_failed_action(&self) -> bool {
        self.inner.compensates_failed_action()
    }

    fn retries_compensation(&self) -> bool {
        self.inner.retries_compensation()
    }

    fn name(&self) -> Option<&str> {
        self.inner.name()
    }
}

/// Repeat injection for one closure: returns a closure whose futures run
/// `f`'s future twice in a row (the second only when the first succeeded),
/// resolving to the last result. Use it on an action, or on a no-input
/// compensation, of [`SagaBuilder::add_step`](crate::SagaBuilder::add_step).
///
/// Each call works on a clone of `f`, so `f` must be `Clone` (a closure that
/// captures `Arc`s is).
///
/// # Examples
///
/// A compensation that refunds without checking whether it already did
/// refunds twice:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use saga_core::SagaBuilder;
/// use saga_core::testing::repeat_fn;
///
/// let balance = Arc::new(Mutex::new(100));
/// let (pay, refund) = (balance.clone(), balance.clone());
/// let mut saga = SagaBuilder::new()
///     .add_step(
///         move || {
///             let pay = pay.clone();
///             async move { *pay.lock().unwrap() -= 30; Ok(()) }
///         },
///         repeat_fn(move || {
///             let refund = refund.clone();
///             async move { *refund.lock().unwrap() += 30; Ok(()) }
///         }),
///     )
///     .add_step(|| async { Err::<(), _>("out of stock") }, || async { Ok(()) })
///     .build();
/// smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(*balance.lock().unwrap(), 130); // found: refunded twice
/// ```
pub fn repeat_fn<F, Fut, T, E>(f: F) -> impl FnMut() -> Repeated<F, Fut> + Clone
where
    F: FnMut() -> Fut + Clone,
    Fut: Future<Output = Result<T, E>>,
{
    move || Repeated {
        f: f.clone(),
        left: 2,
        current: None,
    }
}

/// The future of a closure wrapped by [`repeat_fn`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Repeated<F, Fut> {
    f: F,
    left: u32,
    current: Option<Pin<Box<Fut>>>,
}

impl<F, Fut> fmt::Debug for Repeated<F, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repeated")
            .field("left", &self.left)
            .field("in_flight", &self.current.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, Fut, T, E> Future for Repeated<F, Fut>
where
    F: FnMut() -> Fut + Unpin,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Repeated` is `Unpin`: the inner future is pinned in its own box.
        let this = self.get_mut();
        loop {
            let current = this.current.get_or_insert_with(|| Box::pin((this.f)()));
            let result = ready!(current.as_mut().poll(cx));
            this.current = None;
            this.left = this.left.saturating_sub(1);
            if result.is_err() || this.left == 0 {
                return Poll::Ready(result);
            }
        }
    }
}
