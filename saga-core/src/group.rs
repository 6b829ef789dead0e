//! [`ParallelGroup`]: steps whose actions run concurrently inside one run,
//! and [`GroupBuilder`], which adds them.

use core::fmt;
use core::future::Future;
use core::ops::Range;

use crate::marker::{ByRef, ByValue, SagaKind, StepSlot};
use crate::{AllowedIn, FnStep, InFlight, SagaBuilder, Step, StepPolicy, TypedStep, Untimed};

/// Settings of a group of steps whose actions run concurrently, added with
/// [`SagaBuilder::parallel_with`](crate::SagaBuilder::parallel_with).
///
/// Members are polled together inside the one run future (nothing is
/// spawned), each with a waker of its own, so a wake-up polls only the member
/// that was woken. When a member fails, the others run to completion by
/// default ([`InFlight::Finish`]: nothing in flight is abandoned) or are cut
/// short ([`InFlight::CutShort`]: they then count as failed and possibly
/// applied). Then every member that ran is compensated (each by its own
/// failed-action rule), then the steps before the group, in reverse.
///
/// # Examples
///
/// ```
/// use saga_core::{InFlight, ParallelGroup, SagaBuilder};
///
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .parallel_with(ParallelGroup::new().limit(2).on_failure(InFlight::CutShort), |group| {
///         group
///             .add_step(|| async { Ok(()) }, || async { Ok(()) })
///             .add_step(|| async { Err::<(), _>("hotel full") }, || async { Ok(()) })
///             .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     })
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(error.failed_step(), 2);
/// assert!(error.is_fully_compensated());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ParallelGroup {
    limit: Option<usize>,
    on_failure: InFlight,
}

impl ParallelGroup {
    /// All members at once; the others finish when one fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `limit` members in flight at a time (at least 1); members
    /// start in order as others finish. Also bounds how many of its members
    /// are compensated at once under
    /// [`CompensationMode::ConcurrentGroups`](crate::CompensationMode::ConcurrentGroups);
    /// [`CompensationMode::Concurrent`](crate::CompensationMode::Concurrent)
    /// compensates every step at once, whatever the limits.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit.max(1));
        self
    }

    /// What happens to the members in flight when one fails: let them finish
    /// (the default), or cut them short.
    pub fn on_failure(mut self, in_flight: InFlight) -> Self {
        self.on_failure = in_flight;
        self
    }

    pub(crate) fn spec(self, members: Range<usize>) -> GroupSpec {
        let width = members.len();
        GroupSpec {
            limit: self.limit.map_or(width, |limit| limit.min(width)),
            on_failure: self.on_failure,
            members,
        }
    }
}

/// A group as a saga stores it: its members' indices and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSpec {
    pub(crate) members: Range<usize>,
    pub(crate) limit: usize,
    pub(crate) on_failure: InFlight,
}

/// Adds the members of a parallel group: what the closure given to
/// [`SagaBuilder::parallel`] or [`SagaBuilder::parallel_with`] receives and
/// returns.
///
/// It has the builder's methods that add a step, with the same signatures and
/// the same meaning (a member's own [`StepPolicy`] included), and nothing
/// else: settings that are the whole saga's (the classifier, the
/// compensation mode, the observer, the sleeper, default retries and
/// timeouts, what an abort does) are set on the [`SagaBuilder`], outside the
/// group, and groups do not nest. Each step it adds is a member, in order.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use saga_core::{FnStep, GroupBuilder, Retry, SagaBuilder, StepPolicy, TypedStep};
///
/// /// A helper that adds two members to any group of a `Send` saga.
/// fn bookings(group: GroupBuilder<&'static str>) -> GroupBuilder<&'static str> {
///     group
///         .add_step(|| async { Ok(()) }, || async { Ok(()) })
///         .add_typed_step(|| async { Ok(7) }, |_id: u32| async { Ok(()) })
/// }
///
/// let mut saga = SagaBuilder::new()
///     .parallel(|group| {
///         bookings(group)
///             .add_typed_step_ref(
///                 || async { Ok(String::from("seat 12A")) },
///                 |_seat: &String| async { Ok(()) },
///             )
///             .step(FnStep::new(|| async { Ok(()) }, || async { Ok(()) }).named("car"))
///             .step_with(
///                 TypedStep::by_option(|| async { Ok(1) }, |_: Option<i32>| async { Ok(()) }),
///                 StepPolicy::new().retry(Retry::attempts(2)),
///             )
///             .add_step_with(
///                 || async { Err::<(), _>("no trains") },
///                 || async { Ok(()) },
///                 StepPolicy::new().retry(Retry::attempts(3)),
///             )
///     })
///     .build();
///
/// assert_eq!(saga.parallel_groups().collect::<Vec<_>>(), [0..6]);
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(error.failed_step(), 5);
/// assert_eq!(error.attempts(), 3);
/// assert!(error.is_fully_compensated());
/// ```
///
/// Saga-wide settings are not there:
///
/// ```compile_fail,E0599
/// use saga_core::{Recovery, SagaBuilder};
///
/// let saga = SagaBuilder::new()
///     .parallel(|group| {
///         group
///             .add_step(|| async { Err::<(), _>("boom") }, || async { Ok(()) })
///             .classify(|_: &&str| Recovery::Propagate)
///     })
///     .build();
/// ```
///
/// Nor are nested groups:
///
/// ```compile_fail,E0599
/// use saga_core::SagaBuilder;
///
/// let saga = SagaBuilder::new()
///     .parallel(|group| {
///         group
///             .add_step(|| async { Ok::<(), &str>(()) }, || async { Ok(()) })
///             .parallel(|inner| inner.add_step(|| async { Ok(()) }, || async { Ok(()) }))
///     })
///     .build();
/// ```
#[must_use = "a group builder must be returned to its saga builder"]
pub struct GroupBuilder<E, S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static, T = Untimed> {
    // The saga's builder, of which only the methods that add a step are
    // reachable here.
    saga: SagaBuilder<E, S, T>,
}

impl<E, S: ?Sized + SagaKind<E>, T> GroupBuilder<E, S, T> {
    pub(crate) fn new(saga: SagaBuilder<E, S, T>) -> Self {
        GroupBuilder { saga }
    }

    pub(crate) fn into_saga(self) -> SagaBuilder<E, S, T> {
        self.saga
    }

    /// Adds a member of any type implementing [`Step`], as
    /// [`SagaBuilder::step`] does.
    pub fn step<X>(self, step: X) -> Self
    where
        S: StepSlot<X>,
    {
        GroupBuilder::new(self.saga.step(step))
    }

    /// Adds a member with retry and timeout settings of its own, as
    /// [`SagaBuilder::step_with`] does.
    pub fn step_with<X, P>(self, step: X, policy: StepPolicy<P>) -> Self
    where
        S: StepSlot<X>,
        P: AllowedIn<T>,
    {
        GroupBuilder::new(self.saga.step_with(step, policy))
    }

    /// Adds a pysagas-style member, as [`SagaBuilder::add_step`] does.
    pub fn add_step<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut() -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<FnStep<A, C, AF, CF>>,
    {
        GroupBuilder::new(self.saga.add_step(action, compensation))
    }

    /// [`add_step`](GroupBuilder::add_step) with a [`StepPolicy`] of its own,
    /// as [`SagaBuilder::add_step_with`] does.
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
        GroupBuilder::new(self.saga.add_step_with(action, compensation, policy))
    }

    /// Adds a member whose compensation consumes its action's value, as
    /// [`SagaBuilder::add_typed_step`] does.
    pub fn add_typed_step<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut(V) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, V, ByValue>>,
    {
        GroupBuilder::new(self.saga.add_typed_step(action, compensation))
    }

    /// Adds a member whose compensation borrows its action's value, as
    /// [`SagaBuilder::add_typed_step_ref`] does.
    pub fn add_typed_step_ref<A, C, AF, CF, V>(self, action: A, compensation: C) -> Self
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        C: FnMut(&V) -> CF,
        CF: Future<Output = Result<(), E>>,
        S: StepSlot<TypedStep<A, C, AF, CF, V, ByRef>>,
    {
        GroupBuilder::new(self.saga.add_typed_step_ref(action, compensation))
    }
}

impl<E, S: ?Sized + SagaKind<E>, T> fmt::Debug for GroupBuilder<E, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("saga", &self.saga)
            .finish()
    }
}
