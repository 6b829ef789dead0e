//! [`Saga`]: a built list of steps, ready to run any number of times.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::pin::Pin;

use core::time::Duration;

use crate::group::GroupSpec;
use crate::policy::{Effective, Overrides, PolicyData};
use crate::run::{Clock, Scratch};
use crate::sleep::Timers;
use crate::{CompensationMode, InFlight, Observer, Recovery, Run, Step, TimedOut};

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
pub struct Saga<E, S: ?Sized = dyn Step<E> + Send + 'static> {
    steps: Vec<Pin<Box<S>>>,
    policy: Policy<E>,
    groups: Vec<GroupSpec>,
    scratch: Scratch<E>,
    clock: Option<SagaClock<E>>,
    // Whether runs may take the sequential fast path: decided once, here.
    fast: bool,
}

/// The saga's timers, boxed once at build, and how a timeout becomes an `E`.
pub(crate) struct SagaClock<E> {
    pub(crate) timers: Box<dyn Timers>,
    pub(crate) timed_out: fn(TimedOut) -> E,
}

/// A [`Saga`] whose steps need not be `Send`: built with
/// [`SagaBuilder::new_local`](crate::SagaBuilder::new_local), same API.
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

/// Decides what a failed action's error leads to.
pub(crate) type Classifier<E> = Box<dyn Fn(&E) -> Recovery + Send + Sync>;

/// The saga-wide settings a run reads.
pub(crate) struct Policy<E> {
    pub(crate) classify: Option<Classifier<E>>,
    pub(crate) compensation_mode: CompensationMode,
    pub(crate) on_abort: InFlight,
    pub(crate) defaults: PolicyData,
    pub(crate) overrides: Overrides,
    pub(crate) saga_timeout: Option<Duration>,
    pub(crate) observer: Option<Box<dyn Observer<E> + Send + Sync>>,
}

impl<E> Policy<E> {
    pub(crate) fn recovery_for(&self, error: &E) -> Recovery {
        self.classify
            .as_ref()
            .map_or(Recovery::Retry, |classify| classify(error))
    }

    pub(crate) fn step(&self, step: usize) -> Effective<'_> {
        Effective::lookup(&self.overrides, &self.defaults, step)
    }

    /// Whether any action or compensation, or the saga, has a timeout: then
    /// every attempt needs a timer, and the sequential fast path is off.
    pub(crate) fn has_timeouts(&self) -> bool {
        let timed = |data: &PolicyData| {
            data.action_timeout.is_some() || data.compensation_timeout.is_some()
        };
        self.saga_timeout.is_some()
            || timed(&self.defaults)
            || self.overrides.iter().any(|(_, data)| timed(data))
    }
}

impl<E> Default for Policy<E> {
    fn default() -> Self {
        Policy {
            classify: None,
            compensation_mode: CompensationMode::default(),
            on_abort: InFlight::default(),
            defaults: PolicyData::default(),
            overrides: Overrides::new(),
            saga_timeout: None,
            observer: None,
        }
    }
}

impl<E, S: ?Sized + Step<E>> Saga<E, S> {
    pub(crate) fn from_parts(
        steps: Vec<Pin<Box<S>>>,
        policy: Policy<E>,
        groups: Vec<GroupSpec>,
        scratch: Scratch<E>,
        clock: Option<SagaClock<E>>,
    ) -> Self {
        // Single steps, no per-attempt timer (backoff only follows a
        // failure, in the lanes machinery), nothing observing transitions.
        let fast = !policy.has_timeouts()
            && groups.is_empty()
            && policy.observer.is_none()
            && cfg!(not(feature = "tracing"));
        Saga {
            steps,
            policy,
            groups,
            scratch,
            clock,
            fast,
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
        let clock = self.clock.as_mut().map(|clock| Clock {
            timers: &mut *clock.timers,
            timed_out: clock.timed_out,
        });
        Run::new(
            &mut self.steps,
            &self.policy,
            &self.groups,
            &mut self.scratch,
            clock,
            self.fast,
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
        self.groups.iter().map(|group| group.members.clone())
    }

    /// The name of each step, in order (`None` for unnamed steps).
    pub fn step_names(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        self.steps.iter().map(|step| step.name())
    }

    /// What the backward phase does when a compensation fails.
    pub fn compensation_mode(&self) -> CompensationMode {
        self.policy.compensation_mode
    }
}

impl<E, S: ?Sized> fmt::Debug for Saga<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("steps", &self.steps.len())
            .field("classify", &self.policy.classify.is_some())
            .field("compensation_mode", &self.policy.compensation_mode)
            .field("groups", &self.groups)
            .field("observed", &self.policy.observer.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}
