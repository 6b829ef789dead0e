//! [`SagaBuilder`]: collects steps and settings, then builds a [`Saga`].

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::time::Duration;

use crate::marker::SagaKind;
use crate::plan::Plan;
use crate::run::Scratch;
use crate::saga::SagaClock;
use crate::sleep::{SleeperTimers, Timers};
use crate::typed_step::{ByRef, ByValue};
use crate::{
    AllowedIn, CompensationMode, FnStep, GroupBuilder, InFlight, Observer, ParallelGroup, Recovery,
    Retry, Saga, Sleeper, Step, StepPolicy, Timed, TimedOut, TypedStep, Untimed,
};

/// Builds a [`Saga`]: steps in the order they run, plus saga-wide settings.
///
/// `SagaBuilder::new()` builds a `Saga<E>` of `Send` steps;
/// [`SagaBuilder::new_local()`](SagaBuilder::new_local) builds a
/// [`LocalSaga<E>`](crate::LocalSaga) whose steps need not be `Send`.
/// Building allocates one box per step plus the list; running allocates
/// nothing more on success.
///
/// # Examples
///
/// The pysagas README, ported: two steps that add to a counter and take it
/// back; the second fails, and the counter ends where it started.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use saga_core::SagaBuilder;
///
/// let counter = Arc::new(Mutex::new([10, 20]));
/// let add = |index: usize, fail: bool| {
///     let counter = counter.clone();
///     move || {
///         let counter = counter.clone();
///         async move {
///             counter.lock().unwrap()[index] += 30;
///             if fail { Err("error occurred") } else { Ok(()) }
///         }
///     }
/// };
/// let decrement = |index: usize| {
///     let counter = counter.clone();
///     move || {
///         let counter = counter.clone();
///         async move { counter.lock().unwrap()[index] -= 30; Ok(()) }
///     }
/// };
///
/// let mut saga = SagaBuilder::new()
///     .add_step(add(0, true), decrement(0))
///     .add_step(add(1, true), decrement(1))
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(error.failed_step(), 0);
/// assert!(error.is_fully_compensated());
/// assert_eq!(*counter.lock().unwrap(), [10, 20]);
/// ```
#[doc = include_str!("doc/builder.md")]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SagaBuilder<E, S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static, T = Untimed> {
    pub(crate) steps: Vec<Pin<Box<S>>>,
    pub(crate) plan: Plan<E, S>,
    // The sleeper, given its timer slots by `build`.
    pub(crate) clock: Option<SagaClock<E, S>>,
    timing: PhantomData<fn() -> T>,
}

/// A [`SagaBuilder`] for a [`LocalSaga`](crate::LocalSaga): its steps,
/// observer, classifier and sleeper need not be `Send` (or `Sync`).
pub type LocalSagaBuilder<E> = SagaBuilder<E, dyn Step<E> + 'static>;

/// The boxed step type a saga stores: `dyn Step<E> + Send` in a
/// [`Saga`], `dyn Step<E>` in a [`LocalSaga`](crate::LocalSaga). Sealed.
#[diagnostic::on_unimplemented(
    message = "`{T}` cannot be stored as a `{Self}`",
    label = "this step is not `Send` (or not `'static`), or its error type differs",
    note = "a `Saga` is `Send`, so its steps must be `Send + 'static`; build a `LocalSaga` with `SagaBuilder::new_local()` for steps that are not"
)]
pub trait StepSlot<T>: sealed::Sealed {
    /// Boxes and pins `step` as this slot type.
    #[doc(hidden)]
    fn pin_box(step: T) -> Pin<Box<Self>>;
}

mod sealed {
    use crate::Step;

    pub trait Sealed {}
    impl<E> Sealed for dyn Step<E> + Send + 'static {}
    impl<E> Sealed for dyn Step<E> + 'static {}
}

impl<E, T: Step<E> + Send + 'static> StepSlot<T> for dyn Step<E> + Send + 'static {
    fn pin_box(step: T) -> Pin<Box<Self>> {
        Box::pin(step)
    }
}

impl<E, T: Step<E> + 'static> StepSlot<T> for dyn Step<E> + 'static {
    fn pin_box(step: T) -> Pin<Box<Self>> {
        Box::pin(step)
    }
}

impl<E> SagaBuilder<E> {
    /// An empty builder for a `Send` [`Saga`].
    pub fn new() -> Self {
        Self::empty()
    }

    /// Gives the saga a timer, which unlocks retry backoff and timeouts
    /// (without one, asking for them does not compile). Any
    /// `Fn(Duration) -> impl Future` is a [`Sleeper`]; the runtime adapters
    /// provide theirs. A timeout fails a step with `E::from(TimedOut)`, hence
    /// the bound. The sleeper and its sleeps must be `Send`, as a `Saga` is
    /// (a [`LocalSagaBuilder`]'s need not be).
    ///
    /// The sleeper is boxed once, here, and `build` gives it one timer slot
    /// per step that can be in flight at a time; runs reuse them and
    /// allocate nothing to keep time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use saga_core::{Retry, SagaBuilder, TimedOut};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Error { Busy, TimedOut }
    /// impl From<TimedOut> for Error {
    ///     fn from(_: TimedOut) -> Self { Error::TimedOut }
    /// }
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .sleeper(|duration| smol::Timer::after(duration))
    ///     .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
    ///     .action_timeout(Duration::from_millis(50))
    ///     .add_step(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(*error.error(), Error::Busy);
    /// assert_eq!(error.attempts(), 3);
    /// ```
    pub fn sleeper<Z>(self, sleeper: Z) -> SagaBuilder<E, dyn Step<E> + Send + 'static, Timed>
    where
        E: From<TimedOut>,
        Z: Sleeper + Send + 'static,
        Z::Sleep: Send + 'static,
    {
        self.timed(Box::new(SleeperTimers::new(sleeper)))
    }
}

impl<E> LocalSagaBuilder<E> {
    /// An empty builder for a [`LocalSaga`](crate::LocalSaga), whose steps
    /// need not be `Send`.
    pub fn new_local() -> Self {
        Self::empty()
    }

    /// [`SagaBuilder::sleeper`] for a [`LocalSaga`](crate::LocalSaga): the
    /// sleeper and its sleeps need not be `Send`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use std::time::Duration;
    /// use saga_core::{Retry, SagaBuilder, TimedOut};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Error { Busy, TimedOut }
    /// impl From<TimedOut> for Error {
    ///     fn from(_: TimedOut) -> Self { Error::TimedOut }
    /// }
    ///
    /// let slept = Rc::new(Cell::new(Duration::ZERO));
    /// let total = slept.clone();
    /// let mut saga = SagaBuilder::new_local()
    ///     .sleeper(move |duration| {
    ///         total.set(total.get() + duration);
    ///         smol::Timer::after(duration)
    ///     })
    ///     .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
    ///     .add_step(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.attempts(), 3);
    /// assert_eq!(slept.get(), Duration::from_millis(2)); // before attempts 2 and 3
    /// ```
    pub fn sleeper<Z>(self, sleeper: Z) -> SagaBuilder<E, dyn Step<E> + 'static, Timed>
    where
        E: From<TimedOut>,
        Z: Sleeper + 'static,
        Z::Sleep: 'static,
    {
        self.timed(Box::new(SleeperTimers::new(sleeper)))
    }
}

impl<E> Default for SagaBuilder<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, S: ?Sized + SagaKind<E>> SagaBuilder<E, S> {
    fn empty() -> Self {
        SagaBuilder {
            steps: Vec::new(),
            plan: Plan::default(),
            clock: None,
            timing: PhantomData,
        }
    }

    fn timed(self, timers: Box<S::Timers>) -> SagaBuilder<E, S, Timed>
    where
        E: From<TimedOut>,
    {
        SagaBuilder {
            steps: self.steps,
            plan: self.plan,
            clock: Some(SagaClock {
                timers,
                timed_out: E::from,
            }),
            timing: PhantomData,
        }
    }
}

// The timeouts take any builder and bound its timing (rather than living in
// an impl for `Timed` builders), so that asking one of a builder without a
// sleeper reports that, not a missing method.
impl<E, S: ?Sized + SagaKind<E>, T> SagaBuilder<E, S, T> {
    /// The saga's default timeout for each action attempt; a step's own
    /// [`StepPolicy`] overrides it. A timed-out attempt is cut short, counts
    /// as failed and possibly applied, and fails with `E::from(TimedOut)`,
    /// which the classifier sees like any error (so it can be retried).
    ///
    /// Needs a [`sleeper`](SagaBuilder::sleeper) (`Timed: AllowedIn<T>` says
    /// so; see [timing](SagaBuilder#timing-what-needs-a-sleeper)).
    pub fn action_timeout(mut self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.plan.defaults.action_timeout = Some(timeout);
        self
    }

    /// The saga's default timeout for each compensation attempt; a step's own
    /// [`StepPolicy`] overrides it. A timed-out attempt counts as failed and
    /// is retried per the compensation retry policy. Needs a
    /// [`sleeper`](SagaBuilder::sleeper).
    pub fn compensation_timeout(mut self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.plan.defaults.compensation_timeout = Some(timeout);
        self
    }

    /// A deadline for the saga's forward phase, counted from the first poll:
    /// when it passes, the action in flight is cut short (it counts as failed
    /// and possibly applied), no further action starts, and the saga
    /// compensates with the error `E::from(TimedOut)`. Compensations are not
    /// subject to it (they are bounded by their own timeouts and retries), so
    /// a deadline never leaves work half undone. Needs a
    /// [`sleeper`](SagaBuilder::sleeper).
    pub fn saga_timeout(mut self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.plan.saga_timeout = Some(timeout);
        self
    }
}

impl<E, S: ?Sized + SagaKind<E>, T> SagaBuilder<E, S, T> {
    /// Adds a step of any type implementing [`Step`]: your own, or a
    /// configured [`FnStep`] or [`TypedStep`].
    pub fn step<X>(mut self, step: X) -> Self
    where
        S: StepSlot<X>,
    {
        self.steps.push(S::pin_box(step));
        self
    }

    /// Adds a step with retry and timeout settings of its own, which
    /// override the saga's defaults field by field.
    ///
    /// A policy with a backoff or a timeout is only accepted once the builder
    /// has a [`sleeper`](SagaBuilder::sleeper).
    pub fn step_with<X, P>(mut self, step: X, policy: StepPolicy<P>) -> Self
    where
        S: StepSlot<X>,
        P: AllowedIn<T>,
    {
        self.plan
            .overrides
            .push((self.steps.len(), policy.into_data()));
        self.step(step)
    }

    /// [`add_step`](SagaBuilder::add_step) with a [`StepPolicy`] of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use saga_core::{Retry, SagaBuilder, StepPolicy};
    ///
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let counter = calls.clone();
    /// let mut saga = SagaBuilder::new()
    ///     .add_step_with(
    ///         move || {
    ///             // Fails twice, then succeeds: immediate retries need no timer.
    ///             let call = counter.fetch_add(1, Ordering::SeqCst);
    ///             async move { if call < 2 { Err("flaky") } else { Ok(()) } }
    ///         },
    ///         || async { Ok(()) },
    ///         StepPolicy::new().retry(Retry::attempts(3)),
    ///     )
    ///     .build();
    ///
    /// assert!(smol::block_on(saga.run()).is_ok());
    /// assert_eq!(calls.load(Ordering::SeqCst), 3);
    /// ```
    pub fn add_step_with<A, C, AF, CF, V, P>(
        self,
        action: A,
        compensation: C,
        policy: StepPolicy<P>,
    ) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut() -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<FnStep<A, C, AF, CF>>,
        P: AllowedIn<T>,
    {
        self.step_with(FnStep::new(action, compensation), policy)
    }

    /// The saga's default retry policy for actions (one attempt unless set);
    /// a step's own [`StepPolicy`] overrides it. Which errors are retried is
    /// up to the [classifier](SagaBuilder::classify): by default, all.
    pub fn action_retry<P>(mut self, retry: Retry<P>) -> Self
    where
        P: AllowedIn<T>,
    {
        self.plan.defaults.action_retry = Some(retry.into_spec());
        self
    }

    /// The saga's default retry policy for compensations (one attempt unless
    /// set); a step's own [`StepPolicy`] overrides it. Every compensation
    /// error is retried while attempts remain.
    ///
    /// # Examples
    ///
    /// A compensation that fails twice, then succeeds, under a 3-attempt
    /// policy: the saga ends fully compensated.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use saga_core::{Retry, SagaBuilder};
    ///
    /// let undo_calls = Arc::new(AtomicU32::new(0));
    /// let counter = undo_calls.clone();
    /// let mut saga = SagaBuilder::new()
    ///     .compensation_retry(Retry::attempts(3))
    ///     .add_step(|| async { Ok(()) }, move || {
    ///         let call = counter.fetch_add(1, Ordering::SeqCst);
    ///         async move { if call < 2 { Err("refund service down") } else { Ok(()) } }
    ///     })
    ///     .add_step(|| async { Err::<(), _>("out of stock") }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert!(error.is_fully_compensated());
    /// assert_eq!(undo_calls.load(Ordering::SeqCst), 3);
    /// ```
    pub fn compensation_retry<P>(mut self, retry: Retry<P>) -> Self
    where
        P: AllowedIn<T>,
    {
        self.plan.defaults.compensation_retry = Some(retry.into_spec());
        self
    }

    /// Adds a parallel group: the steps that `members` adds run concurrently
    /// (all at once), and the saga goes on once all of them succeeded. See
    /// [`ParallelGroup`] for what happens when one fails.
    ///
    /// `members` receives a [`GroupBuilder`], which adds steps with the same
    /// methods as this builder (per-step policies included) and nothing else:
    /// saga-wide settings and nested groups do not compile inside a group.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use saga_core::SagaBuilder;
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let step = |name: &'static str, fail: bool| {
    ///     let (log, undo_log) = (log.clone(), log.clone());
    ///     (
    ///         move || {
    ///             let log = log.clone();
    ///             async move {
    ///                 log.lock().unwrap().push(name);
    ///                 if fail { Err("no rooms") } else { Ok(()) }
    ///             }
    ///         },
    ///         move || {
    ///             let log = undo_log.clone();
    ///             async move { log.lock().unwrap().push("undo"); Ok(()) }
    ///         },
    ///     )
    /// };
    /// let ((flight, undo_flight), (hotel, undo_hotel)) = (step("flight", false), step("hotel", true));
    /// let mut saga = SagaBuilder::new()
    ///     .parallel(|group| group.add_step(flight, undo_flight).add_step(hotel, undo_hotel))
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.failed_step(), 1);
    /// assert_eq!(error.compensated_count(), 2); // both members ran, both undone
    /// assert_eq!(*log.lock().unwrap(), ["flight", "hotel", "undo", "undo"]);
    /// ```
    pub fn parallel<F>(self, members: F) -> Self
    where
        F: FnOnce(GroupBuilder<E, S, T>) -> GroupBuilder<E, S, T>,
    {
        self.parallel_with(ParallelGroup::new(), members)
    }

    /// [`parallel`](SagaBuilder::parallel) with settings: a concurrency
    /// limit, and what happens to the members in flight when one fails.
    pub fn parallel_with<F>(self, group: ParallelGroup, members: F) -> Self
    where
        F: FnOnce(GroupBuilder<E, S, T>) -> GroupBuilder<E, S, T>,
    {
        let start = self.steps.len();
        let mut built = members(GroupBuilder::new(self)).into_saga();
        let end = built.steps.len();
        if end > start {
            built.plan.groups.push(group.spec(start..end));
        }
        built
    }

    /// What an [abort](crate::AbortHandle) does to the action in flight: let
    /// it finish (the default) or cut it short.
    pub fn on_abort(mut self, in_flight: InFlight) -> Self {
        self.plan.on_abort = in_flight;
        self
    }

    /// Adds a pysagas-style step: an action, and a compensation that takes no
    /// input. The action's value is dropped. The compensation also runs when
    /// this step's own action failed (it may have partly happened); see
    /// [`FnStep`] to change that or to name the step.
    pub fn add_step<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut() -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<FnStep<A, C, AF, CF>>,
    {
        self.step(FnStep::new(action, compensation))
    }

    /// Adds a step whose action returns a value that its compensation
    /// consumes: `compensation: FnMut(T) -> impl Future<Output = Result<(), E>>`.
    /// A failed action is not compensated (it has no value); see
    /// [`TypedStep::by_option`] for a compensation that also covers it.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_typed_step(
    ///         || async { Ok::<u32, &str>(7) },
    ///         |order_id: u32| async move { assert_eq!(order_id, 7); Ok(()) },
    ///     )
    ///     .add_step(|| async { Err::<(), _>("shipping failed") }, || async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert!(error.is_fully_compensated());
    /// assert_eq!(error.compensated_count(), 2);
    /// ```
    pub fn add_typed_step<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut(V) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, V, ByValue>>,
    {
        self.step(TypedStep::by_value(action, compensation))
    }

    /// Adds a step whose action returns a value that its compensation
    /// borrows: `compensation: FnMut(&T) -> impl Future<Output = Result<(), E>>`.
    /// The returned future cannot borrow the value; clone what it needs.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_typed_step_ref(
    ///         || async { Ok::<String, &str>("reservation-1".into()) },
    ///         |id: &String| {
    ///             let id = id.clone();
    ///             async move { assert_eq!(id, "reservation-1"); Ok(()) }
    ///         },
    ///     )
    ///     .add_step(|| async { Err::<(), _>("payment failed") }, || async { Ok(()) })
    ///     .build();
    ///
    /// assert!(smol::block_on(saga.run()).unwrap_err().is_fully_compensated());
    /// ```
    pub fn add_typed_step_ref<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut(&V) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, V, ByRef>>,
    {
        self.step(TypedStep::by_ref(action, compensation))
    }

    /// What the backward phase does when a compensation fails: stop there
    /// (the default) or continue and collect every error.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::{CompensationMode, SagaBuilder};
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
    ///     .add_step(|| async { Ok(()) }, || async { Err::<(), _>("undo 1 failed") })
    ///     .add_step(|| async { Err::<(), _>("boom") }, || async { Ok(()) })
    ///     .compensation_mode(CompensationMode::ContinueOnError)
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.compensated_count(), 2); // steps 2 and 0
    /// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
    /// ```
    pub fn compensation_mode(mut self, mode: CompensationMode) -> Self {
        self.plan.compensation_mode = mode;
        self
    }

    /// Builds the saga: sizes the lanes (one per step that can be in flight
    /// at a time), their wakers and timers, once for every run.
    pub fn build(mut self) -> Saga<E, S> {
        let steps = core::mem::take(&mut self.steps);
        let (plan, scratch, clock) = self.into_run_parts(steps.len());
        Saga::from_parts(steps, plan, scratch, clock)
    }

    /// Sizes the lanes, their wakers and timers for `steps` steps: what a
    /// saga and a flow keep besides their steps.
    pub(crate) fn into_run_parts(self, steps: usize) -> RunParts<E, S> {
        let lanes = self.plan.lanes(steps);
        let scratch = Scratch::new(lanes, self.plan.widest_group());
        let mut clock = self.clock;
        if let Some(clock) = &mut clock {
            clock.timers.set_lanes(lanes);
        }
        (self.plan, scratch, clock)
    }
}

/// What a saga or a flow keeps besides its steps.
pub(crate) type RunParts<E, S> = (Plan<E, S>, Scratch<E>, Option<SagaClock<E, S>>);

/// The callbacks of a `Send` [`Saga`]: `Send + Sync`, so that the saga and
/// its run future are `Send`.
impl<E, T> SagaBuilder<E, dyn Step<E> + Send + 'static, T> {
    /// Sets the observer that receives every transition of every run (see
    /// [`Observer`]); it replaces any earlier one. It must be `Send + Sync`,
    /// as a `Saga` is (a [`LocalSagaBuilder`]'s need not be).
    pub fn observer<O>(mut self, observer: O) -> Self
    where
        O: Observer<E> + Send + Sync + 'static,
    {
        self.plan.observer = Some(Box::new(observer));
        self
    }

    /// Decides, per action error, whether to retry the action (by its retry
    /// policy, then compensate), compensate at once, or propagate the error
    /// without compensating (pysagas's `exceptions=`). Without a classifier
    /// every error is [`Recovery::Retry`]: retried while the step's policy
    /// allows (by default it allows one attempt), then compensated. It must
    /// be `Send + Sync`, as a `Saga` is (a [`LocalSagaBuilder`]'s need not
    /// be).
    ///
    /// # Examples
    ///
    /// Only business errors are compensated; an infrastructure error is
    /// returned at once and the report says what was left applied.
    ///
    /// ```
    /// use saga_core::{Handling, Recovery, SagaBuilder};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Error { Declined, Disk }
    ///
    /// let mut saga = SagaBuilder::new()
    ///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
    ///     .add_step(|| async { Err::<(), _>(Error::Disk) }, || async { Ok(()) })
    ///     .classify(|error: &Error| match error {
    ///         Error::Declined => Recovery::Compensate,
    ///         Error::Disk => Recovery::Propagate,
    ///     })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.handling(), Handling::Propagated);
    /// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    /// ```
    pub fn classify<F>(mut self, classify: F) -> Self
    where
        F: Fn(&E) -> Recovery + Send + Sync + 'static,
    {
        self.plan.classify = Some(Box::new(classify));
        self
    }
}

/// The callbacks of a [`LocalSaga`](crate::LocalSaga): they need not be
/// `Send` or `Sync`.
impl<E, T> SagaBuilder<E, dyn Step<E> + 'static, T> {
    /// [`SagaBuilder::observer`] for a [`LocalSaga`](crate::LocalSaga): the
    /// observer need not be `Send` or `Sync`.
    pub fn observer<O>(mut self, observer: O) -> Self
    where
        O: Observer<E> + 'static,
    {
        self.plan.observer = Some(Box::new(observer));
        self
    }

    /// [`SagaBuilder::classify`] for a [`LocalSaga`](crate::LocalSaga): the
    /// classifier need not be `Send` or `Sync`.
    ///
    /// # Examples
    ///
    /// A classifier and an observer that share an `Rc<RefCell<..>>`:
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use saga_core::{Handling, Observer, Recovery, SagaBuilder, StepRef};
    ///
    /// struct Log(Rc<RefCell<Vec<String>>>);
    /// impl Observer<&'static str> for Log {
    ///     fn action_failed(&self, step: StepRef<'_>, _: u32, error: &&'static str) {
    ///         self.0.borrow_mut().push(format!("step {} failed: {error}", step.index));
    ///     }
    /// }
    ///
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let seen = log.clone();
    /// let mut saga = SagaBuilder::new_local()
    ///     .add_step(|| async { Err::<(), _>("disk") }, || async { Ok(()) })
    ///     .observer(Log(log.clone()))
    ///     .classify(move |error: &&'static str| {
    ///         seen.borrow_mut().push(format!("classified {error}"));
    ///         Recovery::Propagate
    ///     })
    ///     .build();
    ///
    /// let error = smol::block_on(saga.run()).unwrap_err();
    /// assert_eq!(error.handling(), Handling::Propagated);
    /// // The observer hears of the failure, then the classifier decides.
    /// assert_eq!(*log.borrow(), ["step 0 failed: disk", "classified disk"]);
    /// ```
    pub fn classify<F>(mut self, classify: F) -> Self
    where
        F: Fn(&E) -> Recovery + 'static,
    {
        self.plan.classify = Some(Box::new(classify));
        self
    }
}

impl<E, S: ?Sized + SagaKind<E>, T> fmt::Debug for SagaBuilder<E, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("steps", &self.steps.len())
            .field("classify", &self.plan.classify.is_some())
            .field("compensation_mode", &self.plan.compensation_mode)
            .field("groups", &self.plan.groups)
            .field("observed", &self.plan.observer.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}
