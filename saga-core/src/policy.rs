//! What the engine does with errors, retries, timeouts and aborts.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::retry::{Retry, RetrySpec};

/// What happens after an action failed: the decision of a saga's error
/// classifier (see [`SagaBuilder::classify`](crate::SagaBuilder::classify)).
/// [`SagaError::handling`](crate::SagaError::handling) reports what came of
/// the decision that ended the forward phase ([`Handling`](crate::Handling)).
///
/// This is pysagas's `exceptions=`, made explicit. Unlike pysagas, the
/// default retries by the step's policy (one attempt, unless configured)
/// and then compensates, and a propagated error still reports exactly which
/// steps were left applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// A transient error: attempt the action again while its retry policy
    /// allows, then compensate (the default).
    #[default]
    Retry,
    /// Undo what was done at once, without retrying: compensations run in
    /// reverse.
    Compensate,
    /// Return the error at once, compensating nothing: every step that ran
    /// is reported as left applied.
    Propagate,
}

/// How the backward phase runs compensations, and what it does when one
/// still fails after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CompensationMode {
    /// One at a time, in reverse; stop at the first failed compensation,
    /// which and every step before it are reported as left applied (the
    /// default). Safest when an earlier undo may depend on a later one.
    #[default]
    StopOnError,
    /// One at a time, in reverse; go on past a failed compensation and
    /// collect every error.
    ContinueOnError,
    /// The members of each parallel group concurrently (within the group's
    /// limit), the groups and single steps in reverse; collect every error.
    ConcurrentGroups,
    /// Every compensation at once; collect every error.
    Concurrent,
}

/// What an abort does to the action in flight (see
/// [`AbortHandle`](crate::AbortHandle)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum InFlight {
    /// Let it finish, then compensate it (if it succeeded, or per the step's
    /// failed-action rule if it failed) and everything before it (the
    /// default: nothing in flight is abandoned).
    #[default]
    Finish,
    /// Drop it at once; it counts as failed and possibly applied, and is
    /// compensated when its step compensates failed actions.
    CutShort,
}

/// The timing of a policy that never waits (immediate retries, no timeout),
/// and of a builder without a sleeper. The default of [`Retry`],
/// [`StepPolicy`] and [`SagaBuilder`](crate::SagaBuilder); every builder
/// accepts an `Untimed` policy. See [the timing of a
/// saga](crate::SagaBuilder#timing-what-needs-a-sleeper).
#[derive(Debug, Clone, Copy)]
pub enum Untimed {}

/// The timing of a policy that waits (a backoff or a timeout), and of a
/// builder that has a sleeper ([`SagaBuilder::sleeper`](crate::SagaBuilder::sleeper),
/// or a runtime adapter's `builder()`). Only a `Timed` builder accepts a
/// `Timed` policy. See [the timing of a
/// saga](crate::SagaBuilder#timing-what-needs-a-sleeper).
#[derive(Debug, Clone, Copy)]
pub enum Timed {}

/// `P: AllowedIn<T>`: a policy whose timing is `P` ([`Untimed`] or
/// [`Timed`]) can be given to a builder whose timing is `T`. An untimed
/// policy is allowed in every builder, generic ones included; a timed one
/// only in a builder with a sleeper. Sealed.
///
/// Only a function that passes on a policy of any timing needs to name it;
/// see [the timing of a saga](crate::SagaBuilder#timing-what-needs-a-sleeper).
///
/// # Examples
///
/// ```
/// use saga_core::marker::SagaKind;
/// use saga_core::{AllowedIn, Retry, SagaBuilder};
///
/// /// Sets the default action retry policy of any builder that can take it.
/// fn retried<E, S: ?Sized + SagaKind<E>, T, P: AllowedIn<T>>(
///     builder: SagaBuilder<E, S, T>,
///     retry: Retry<P>,
/// ) -> SagaBuilder<E, S, T> {
///     builder.action_retry(retry)
/// }
///
/// let builder = retried(SagaBuilder::new(), Retry::attempts(3));
/// let mut saga = builder.add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) }).build();
/// assert!(smol::block_on(saga.run()).is_ok());
/// ```
#[diagnostic::on_unimplemented(
    message = "this waits (a retry backoff or a timeout), but the builder has no sleeper: its timing is `{T}`, not `Timed`",
    label = "waits, so it needs a sleeper",
    note = "give the builder a timer before this call: `.sleeper(|duration| runtime_sleep(duration))`, or start from a runtime adapter's `builder()`",
    note = "`Retry::attempts(n)` without `.constant(..)` or `.exponential(..)` retries at once and needs no sleeper",
    note = "in a function generic over the builder's timing, take a `SagaBuilder<E, S, Timed>` to add a backoff or a timeout"
)]
pub trait AllowedIn<T>: sealed::Sealed {}

impl<T> AllowedIn<T> for Untimed {}
impl AllowedIn<Timed> for Timed {}

pub(crate) use or::Or;

mod or {
    /// `R: Or<T>`: the timing of a policy of timing `T` once a part of timing
    /// `R` is added, `Timed` if either is. Not nameable outside the crate: an
    /// untimed part keeps any timing `T`, so a generic `StepPolicy<T>` takes
    /// immediate retries with no bound.
    pub trait Or<T>: super::sealed::Sealed {
        /// `Timed` if `Self` or `T` is.
        type Output;
    }

    impl<T> Or<T> for super::Untimed {
        type Output = T;
    }

    impl<T> Or<T> for super::Timed {
        type Output = super::Timed;
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Untimed {}
    impl Sealed for super::Timed {}
}

/// Retry and timeout settings for one step, overriding the saga's defaults
/// field by field. Added with
/// [`SagaBuilder::step_with`](crate::SagaBuilder::step_with) or
/// [`add_step_with`](crate::SagaBuilder::add_step_with).
///
/// Like [`Retry`], it records whether it needs a timer: a timeout or a backoff
/// makes it `StepPolicy<Timed>`, which only a saga with a sleeper accepts
/// (see [timing](crate::SagaBuilder#timing-what-needs-a-sleeper)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_core::{Retry, SagaBuilder, StepPolicy, TimedOut};
///
/// #[derive(Debug)]
/// struct Error(&'static str);
/// impl From<TimedOut> for Error {
///     fn from(_: TimedOut) -> Self { Error("timed out") }
/// }
///
/// let policy = StepPolicy::new()
///     .retry(Retry::attempts(3).constant(Duration::from_millis(1)))
///     .compensation_retry(Retry::attempts(5))
///     .timeout(Duration::from_secs(2));
///
/// let mut saga = SagaBuilder::new()
///     .sleeper(|duration| smol::Timer::after(duration))
///     .add_step_with(|| async { Ok::<_, Error>(()) }, || async { Ok(()) }, policy)
///     .build();
/// assert!(smol::block_on(saga.run()).is_ok());
/// ```
pub struct StepPolicy<T = Untimed> {
    data: PolicyData,
    timing: PhantomData<fn() -> T>,
}

/// Per-step or saga-wide settings with the timing marker erased.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyData {
    // Boxed: most sagas set none, and a saga stays small to move.
    pub(crate) action_retry: Option<Box<RetrySpec>>,
    pub(crate) compensation_retry: Option<Box<RetrySpec>>,
    pub(crate) action_timeout: Option<Duration>,
    pub(crate) compensation_timeout: Option<Duration>,
}

impl StepPolicy<Untimed> {
    /// A policy that overrides nothing.
    pub fn new() -> Self {
        StepPolicy {
            data: PolicyData::default(),
            timing: PhantomData,
        }
    }
}

impl Default for StepPolicy<Untimed> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> StepPolicy<T> {
    fn retime<U>(self) -> StepPolicy<U> {
        StepPolicy {
            data: self.data,
            timing: PhantomData,
        }
    }

    /// How the step's action is retried. The policy becomes `Timed` if
    /// `retry` waits, and stays as it was if it retries at once (`R::Output`
    /// is the policy's timing then: `Timed` if either is).
    pub fn retry<R: Or<T>>(mut self, retry: Retry<R>) -> StepPolicy<R::Output> {
        self.data.action_retry = Some(retry.into_spec());
        self.retime()
    }

    /// How the step's compensation is retried; timing as for
    /// [`retry`](StepPolicy::retry).
    pub fn compensation_retry<R: Or<T>>(mut self, retry: Retry<R>) -> StepPolicy<R::Output> {
        self.data.compensation_retry = Some(retry.into_spec());
        self.retime()
    }

    /// Cuts each action attempt short after `timeout`; it then counts as
    /// failed (and possibly applied) with the error `E::from(TimedOut)`.
    pub fn timeout(mut self, timeout: Duration) -> StepPolicy<Timed> {
        self.data.action_timeout = Some(timeout);
        self.retime()
    }

    /// Cuts each compensation attempt short after `timeout`; it then counts
    /// as failed with the error `E::from(TimedOut)`.
    pub fn compensation_timeout(mut self, timeout: Duration) -> StepPolicy<Timed> {
        self.data.compensation_timeout = Some(timeout);
        self.retime()
    }

    pub(crate) fn into_data(self) -> PolicyData {
        self.data
    }
}

impl<T> fmt::Debug for StepPolicy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepPolicy")
            .field("action_retry", &self.data.action_retry)
            .field("compensation_retry", &self.data.compensation_retry)
            .field("action_timeout", &self.data.action_timeout)
            .field("compensation_timeout", &self.data.compensation_timeout)
            .finish()
    }
}

/// The settings of one step as a run sees them: the step's own, else the
/// saga's default.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effective<'a> {
    step: Option<&'a PolicyData>,
    saga: &'a PolicyData,
}

impl<'a> Effective<'a> {
    pub(crate) fn lookup(
        overrides: &'a [(usize, PolicyData)],
        saga: &'a PolicyData,
        step: usize,
    ) -> Self {
        let step = overrides
            .binary_search_by_key(&step, |(index, _)| *index)
            .ok()
            .map(|found| &overrides[found].1);
        Effective { step, saga }
    }

    fn pick<V>(&self, field: impl Fn(&'a PolicyData) -> Option<V>) -> Option<V> {
        self.step.and_then(&field).or_else(|| field(self.saga))
    }

    pub(crate) fn action_retry(&self) -> Option<&'a RetrySpec> {
        self.pick(|data| data.action_retry.as_deref())
    }

    pub(crate) fn compensation_retry(&self) -> Option<&'a RetrySpec> {
        self.pick(|data| data.compensation_retry.as_deref())
    }

    pub(crate) fn action_timeout(&self) -> Option<Duration> {
        self.pick(|data| data.action_timeout)
    }

    pub(crate) fn compensation_timeout(&self) -> Option<Duration> {
        self.pick(|data| data.compensation_timeout)
    }
}

/// Per-step overrides, sorted by step index.
pub(crate) type Overrides = Vec<(usize, PolicyData)>;
