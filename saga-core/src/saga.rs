//! [`Saga`]: a built list of steps, ready to run any number of times.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::pin::Pin;

use crate::marker::SagaKind;
use crate::plan::Plan;
use crate::run::Scratch;
use crate::{CompensationMode, Run, Step, TimedOut};

/// A saga: an ordered list of steps, run with [`Saga::run`].
///
/// Built by [`SagaBuilder`](crate::SagaBuilder). `Saga<E>` holds `Send`
/// steps, so it and its run future are `Send` (when `E` is) and can be spawned
/// on a multi-threaded runtime. [`LocalSaga<E>`] is the same API for steps
/// that are not `Send` (`Rc`, `RefCell`, single-threaded executors).
///
/// A saga can be run again once a run completed; each run starts every step
/// afresh.
///
/// # Examples
///
/// ```
/// use saga_core::{Saga, SagaBuilder};
///
/// let mut saga: Saga<&str> = SagaBuilder::new()
///     .add_step(|| async { Ok(1) }, || async { Ok(()) })
///     .build();
/// assert_eq!(saga.len(), 1);
/// assert!(smol::block_on(saga.run()).is_ok());
/// assert!(smol::block_on(saga.run()).is_ok()); // and again
/// ```
pub struct Saga<E, S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static> {
    pub(crate) steps: Vec<Pin<Box<S>>>,
    pub(crate) plan: Plan<E, S>,
    scratch: Scratch<E>,
    clock: Option<SagaClock<E, S>>,
}

/// The saga's timers, boxed once at build, and how a timeout becomes an `E`.
pub(crate) struct SagaClock<E, S: ?Sized + SagaKind<E>> {
    pub(crate) timers: Box<S::Timers>,
    pub(crate) timed_out: fn(TimedOut) -> E,
}

/// A [`Saga`] whose steps, observer, classifier and sleeper need not be
/// `Send` (or `Sync`): built with
/// [`SagaBuilder::new_local`](crate::SagaBuilder::new_local), same API. Its
/// run future is not `Send`; run it on a single-threaded executor.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use saga_core::{LocalSaga, SagaBuilder};
///
/// let count = Rc::new(Cell::new(0));
/// let (up, down) = (count.clone(), count.clone());
/// let mut saga: LocalSaga<()> = SagaBuilder::new_local()
///     .add_step(
///         move || { let up = up.clone(); async move { up.set(up.get() + 1); Ok(()) } },
///         move || { let down = down.clone(); async move { down.set(down.get() - 1); Ok(()) } },
///     )
///     .build();
/// smol::block_on(saga.run()).unwrap();
/// assert_eq!(count.get(), 1);
/// ```
pub type LocalSaga<E> = Saga<E, dyn Step<E> + 'static>;

impl<E, S: ?Sized + SagaKind<E>> Saga<E, S> {
    pub(crate) fn from_parts(
        steps: Vec<Pin<Box<S>>>,
        plan: Plan<E, S>,
        scratch: Scratch<E>,
        clock: Option<SagaClock<E, S>>,
    ) -> Self {
        Saga {
            steps,
            plan,
            scratch,
            clock,
        }
    }

    /// Runs the saga: the actions in order, and on failure the compensations
    /// in reverse. Resolves to `Ok(())` when every action succeeded.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future stops the saga where it stands, without
    /// compensating (Rust has no async drop): the step in flight is reset
    /// (its future dropped) and earlier steps stay applied. To keep a saga
    /// running to the end, spawn it with a runtime adapter
    /// (`saga_tokio::spawn`) rather than racing it in a `select!`.
    pub fn run(&mut self) -> Run<'_, E, S> {
        let timers = self
            .clock
            .as_mut()
            .map(|clock| (&mut *clock.timers, clock.timed_out));
        Run::new(
            Pin::new(&mut self.steps[..]),
            &self.plan,
            &mut self.scratch,
            timers,
        )
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// `true` when the saga has no steps (it then always succeeds).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The index range of each parallel group, in order.
    pub fn parallel_groups(&self) -> impl ExactSizeIterator<Item = core::ops::Range<usize>> + '_ {
        self.plan.groups.iter().map(|group| group.members.clone())
    }

    /// The name of each step, in order (`None` for unnamed steps).
    pub fn step_names(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        self.steps.iter().map(|step| step.name())
    }

    /// What the backward phase does when a compensation fails.
    pub fn compensation_mode(&self) -> CompensationMode {
        self.plan.compensation_mode
    }

    /// The fingerprint of the saga's shape, as a [journal](crate::journal)
    /// records it: how many steps, their names, what each compensates and
    /// saves, and the parallel groups. Retry and timeout policies are not
    /// part of it. It is stable across builds and platforms.
    ///
    /// ```
    /// use saga_core::{FnStep, Saga, SagaBuilder};
    ///
    /// fn trip(hotel: &'static str) -> Saga<String> {
    ///     let book = FnStep::new(|| async { Ok::<_, String>(()) }, || async { Ok(()) });
    ///     SagaBuilder::new().step(book.named(hotel)).build()
    /// }
    ///
    /// assert_eq!(trip("hotel").fingerprint(), trip("hotel").fingerprint());
    /// assert_ne!(trip("hotel").fingerprint(), trip("inn").fingerprint());
    /// ```
    pub fn fingerprint(&self) -> u64 {
        crate::journal::fingerprint(&self.steps[..], &self.plan.groups)
    }

    /// Which steps keep a value that cannot be saved to a journal (typed
    /// steps without a codec): a durable saga must have none.
    pub fn unsaved_outputs(&self) -> impl Iterator<Item = usize> + '_ {
        crate::journal::unsaved(&self.steps[..])
    }
}

impl<E, S: ?Sized + SagaKind<E>> fmt::Debug for Saga<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("steps", &self.steps.len())
            .field("classify", &self.plan.classify.is_some())
            .field("compensation_mode", &self.plan.compensation_mode)
            .field("groups", &self.plan.groups)
            .field("observed", &self.plan.observer.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}
