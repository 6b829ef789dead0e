//! [`FlowBuilder`]: a saga builder whose steps read the input and the
//! values of the steps before them.

use alloc::borrow::Cow;
use core::fmt;
use core::future::Future;
use core::time::Duration;

use crate::flow::{
    Bare, Chain, Flow, FlowCell, FlowGroupBuilder, FlowKind, Group, LastStep, Mapped, Members,
    NoMembers, Plain, Start, TableSlot, Then,
};
use crate::marker::{ByOption, ByRef, SagaKind};
use crate::{
    AllowedIn, CompensationMode, FnStep, InFlight, Observer, ParallelGroup, Recovery, Retry,
    SagaBuilder, Sleeper, Step, StepPolicy, Timed, TimedOut,
};

impl<E, S: ?Sized + SagaKind<E>, T> SagaBuilder<E, S, T> {
    /// Turns this builder into a [`FlowBuilder`]: a saga whose runs each take
    /// an input `I` (use `()` for none), whose steps read the input and the
    /// values of the steps before them, and which returns a result.
    ///
    /// The settings made so far are kept, and the steps added so far run
    /// first (they read nothing and add no value).
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut flow = SagaBuilder::new()
    ///     .input::<&'static str>()
    ///     .then(|city: &&str| { let city = *city; async move { Ok::<_, String>(format!("flight to {city}")) } }, |_| async { Ok(()) })
    ///     .then(|(city, flight)| { let hotel = format!("hotel in {city} after the {flight}"); async move { Ok(hotel) } }, |_| async { Ok(()) })
    ///     .build_with(|((_, flight), hotel)| [flight, hotel]);
    ///
    /// let trip = smol::block_on(flow.run("Lisbon")).unwrap();
    /// assert_eq!(trip, ["flight to Lisbon", "hotel in Lisbon after the flight to Lisbon"]);
    /// ```
    pub fn input<I: 'static>(mut self) -> FlowBuilder<E, S, T, Start<I, S>> {
        let steps = core::mem::take(&mut self.steps);
        let count = steps.len();
        FlowBuilder {
            saga: self,
            chain: Start::new(steps),
            count,
        }
    }
}

// The chains the step methods return, named for their signatures.
type ThenByRef<C, A, U, AF, UF, V> = Then<C, FlowCell<A, U, AF, UF, V, ByRef>>;
type ThenByOption<C, A, U, AF, UF, V> = Then<C, FlowCell<A, U, AF, UF, V, ByOption>>;
type PlainFn<C, A, U, AF, UF> = Plain<C, FnStep<A, U, AF, UF>>;

/// Builds a [`Flow`]: a saga whose runs each take an input, whose steps read
/// the input and the values returned by the steps before them, and which
/// returns a result. Made by [`SagaBuilder::input`].
///
/// # What a step reads
///
/// Each step's action receives references to the input and to every value
/// before it, nested left to right: after an input `Trip` and steps
/// returning `Flight` and `Hotel`, the next action receives
/// `((&Trip, &Flight), &Hotel)`, destructured as `|((trip, flight), hotel)|`.
/// Its compensation receives the same and its own value:
/// `(((&Trip, &Flight), &Hotel), &Payment)` for the step after. A parallel
/// group adds one entry, its members' values nested the same way, and its
/// members read only what is before the group. So a step can only read
/// values that exist when it starts: reading a later step's value, or a
/// sibling's in the same group, does not compile.
///
/// The closures receive references, and the futures they return cannot
/// borrow them: clone or copy what the future needs (as in
/// [`TypedStep::by_ref`](crate::TypedStep::by_ref)). Values must be
/// `'static`, and `Send` in a `Flow` (not in a [`LocalFlow`](crate::LocalFlow),
/// started from [`SagaBuilder::new_local`]; to name its error type there,
/// write `LocalSagaBuilder::<E>::new_local()`).
///
/// Every value of a run is kept until the run ends, so that every later
/// action and compensation (retried or not) reads the same value; then the
/// values are handed out (to [`build_with`](FlowBuilder::build_with)'s map,
/// or in the [`FlowError`](crate::FlowError) of a failed run) or dropped. A
/// retried action reads the same values as its first attempt.
///
/// # Examples
///
/// A trip: the hotel is booked for the flight's dates, the payment covers
/// both, and the run returns the itinerary.
///
/// ```
/// use saga_core::SagaBuilder;
///
/// #[derive(Clone)]
/// struct Trip { nights: u32 }
/// struct Flight { id: String, arrives: u32 }
/// #[derive(Debug, PartialEq)]
/// struct Itinerary { flight: String, hotel: String, paid: u32 }
///
/// let mut flow = SagaBuilder::new()
///     .input::<Trip>()
///     .then(
///         |trip: &Trip| { let _ = trip; async { Ok::<_, String>(Flight { id: "FL-1".into(), arrives: 12 }) } },
///         |(_, flight): (&Trip, &Flight)| { let _id = flight.id.clone(); async { Ok(()) } },
///     )
///     .named("book flight")
///     .then(
///         |(trip, flight)| { let (from, to) = (flight.arrives, flight.arrives + trip.nights); async move { Ok(format!("HT-{from}-{to}")) } },
///         |_| async { Ok(()) },
///     )
///     .named("book hotel")
///     .then(
///         |((trip, _), _)| { let amount = 100 * trip.nights; async move { Ok(amount) } },
///         |_| async { Ok(()) },
///     )
///     .named("charge card")
///     .build_with(|(((_, flight), hotel), paid)| Itinerary { flight: flight.id, hotel, paid });
///
/// let itinerary = smol::block_on(flow.run(Trip { nights: 3 })).unwrap();
/// assert_eq!(itinerary, Itinerary { flight: "FL-1".into(), hotel: "HT-12-15".into(), paid: 300 });
/// assert_eq!(flow.step_names().collect::<Vec<_>>(), [Some("book flight"), Some("book hotel"), Some("charge card")]);
/// ```
///
/// Reading a value that does not exist yet does not compile: here the
/// first step's compensation is fine, but a step cannot read its own value
/// in its action.
///
/// ```compile_fail,E0308
/// use saga_core::SagaBuilder;
///
/// let flow = SagaBuilder::new()
///     .input::<u32>()
///     .then(|(input, own): (&u32, &u32)| async move { Ok::<u32, ()>(0) }, |_| async { Ok(()) });
/// ```
///
/// A helper generic over the flow before it, which adds a step reading an
/// earlier value by its type, is written with [`Pick`](crate::marker::Pick)
/// and [`Appends`](crate::marker::Appends) (see `Pick`).
#[must_use = "a builder does nothing until `build` is called"]
pub struct FlowBuilder<E, S: ?Sized + SagaKind<E>, T, C> {
    saga: SagaBuilder<E, S, T>,
    chain: C,
    // How many steps `chain` holds.
    count: usize,
}

impl<E, S: ?Sized + SagaKind<E>, T, C: Chain<E>> FlowBuilder<E, S, T, C> {
    /// Adds a step whose action reads the input and every value before it and
    /// returns a value of its own, which later steps read. Its compensation
    /// reads the same, and its own value: it runs only when the action
    /// succeeded (see [`then_option`](FlowBuilder::then_option) for one that
    /// also undoes a failed action). The compensation can be retried by
    /// policy: the value is kept for every attempt.
    ///
    /// An action cut short (by a timeout, an abort with
    /// [`InFlight::CutShort`], its group's failure, or a panic caught by
    /// `FlowRun::catch_panics`) may have partly
    /// happened but has no value to undo: the step is then reported as left
    /// applied ([`SagaError::uncompensated_steps`](crate::SagaError::uncompensated_steps)).
    /// Use `then_option` for a step whose compensation can undo a partial
    /// action.
    #[allow(
        clippy::type_complexity,
        reason = "the closures' and futures' types, each named once"
    )]
    pub fn then<A, U, AF, UF, V>(
        self,
        action: A,
        compensation: U,
    ) -> FlowBuilder<E, S, T, ThenByRef<C, A, U, AF, UF, V>>
    where
        A: for<'a> FnMut(C::Refs<'a>) -> AF,
        AF: Future<Output = Result<V, E>>,
        U: for<'a> FnMut((C::Refs<'a>, &'a V)) -> UF,
        UF: Future<Output = Result<(), E>>,
        V: 'static,
    {
        self.push_cell(FlowCell::new(action, compensation))
    }

    /// [`then`](FlowBuilder::then), with a compensation that also runs when
    /// the action failed or was cut short (it may have partly happened),
    /// receiving `None` for its own value then, and `Some` after a success.
    /// Like `then`'s, and unlike
    /// [`TypedStep::by_option`](crate::TypedStep::by_option)'s, it can be
    /// retried by policy: the value is kept for every attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use saga_core::SagaBuilder;
    ///
    /// let undone = Arc::new(Mutex::new(Vec::new()));
    /// let log = undone.clone();
    /// let mut flow = SagaBuilder::new()
    ///     .input::<u32>()
    ///     .then_option(
    ///         |_: &u32| async { Err::<u32, _>("timed out after writing") },
    ///         move |(input, own): (&u32, Option<&u32>)| {
    ///             log.lock().unwrap().push((*input, own.copied()));
    ///             async { Ok(()) }
    ///         },
    ///     )
    ///     .build();
    ///
    /// assert!(smol::block_on(flow.run(5)).is_err());
    /// assert_eq!(*undone.lock().unwrap(), [(5, None)]);
    /// ```
    #[allow(
        clippy::type_complexity,
        reason = "the closures' and futures' types, each named once"
    )]
    pub fn then_option<A, U, AF, UF, V>(
        self,
        action: A,
        compensation: U,
    ) -> FlowBuilder<E, S, T, ThenByOption<C, A, U, AF, UF, V>>
    where
        A: for<'a> FnMut(C::Refs<'a>) -> AF,
        AF: Future<Output = Result<V, E>>,
        U: for<'a> FnMut((C::Refs<'a>, Option<&'a V>)) -> UF,
        UF: Future<Output = Result<(), E>>,
        V: 'static,
    {
        self.push_cell(FlowCell::new(action, compensation))
    }

    fn push_cell<X>(self, cell: X) -> FlowBuilder<E, S, T, Then<C, X>> {
        FlowBuilder {
            saga: self.saga,
            chain: Then::new(self.chain, cell),
            count: self.count + 1,
        }
    }

    /// Adds a plain step of any type implementing [`Step`]: it reads no
    /// value and adds none.
    pub fn step<X: Step<E>>(self, step: X) -> FlowBuilder<E, S, T, Plain<C, X>> {
        FlowBuilder {
            saga: self.saga,
            chain: Plain::new(self.chain, Bare::new(step)),
            count: self.count + 1,
        }
    }

    /// [`step`](FlowBuilder::step) with a [`StepPolicy`] of its own.
    pub fn step_with<X: Step<E>, P>(
        mut self,
        step: X,
        policy: StepPolicy<P>,
    ) -> FlowBuilder<E, S, T, Plain<C, X>>
    where
        P: AllowedIn<T>,
    {
        self.saga.plan.set_override(self.count, policy.into_data());
        self.step(step)
    }

    /// Adds a pysagas-style step, as [`SagaBuilder::add_step`]: it reads no
    /// value and adds none.
    pub fn add_step<A, U, AF, UF, V>(
        self,
        action: A,
        compensation: U,
    ) -> FlowBuilder<E, S, T, PlainFn<C, A, U, AF, UF>>
    where
        A: FnMut() -> AF,
        AF: Future<Output = Result<V, E>>,
        U: FnMut() -> UF,
        UF: Future<Output = Result<(), E>>,
    {
        self.step(FnStep::new(action, compensation))
    }

    /// Adds a parallel group, as [`SagaBuilder::parallel`]: its members run
    /// concurrently, each reading the values before the group (not each
    /// other's), and the group adds one entry to what later steps read: its
    /// members' values, nested left to right (`&A` for one member, `(&A, &B)`
    /// for two, then `((&A, &B), &C)`). A group has at least one member: an
    /// empty one does not compile. Its members are added with `then` and
    /// `then_option` (see [`FlowGroupBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::SagaBuilder;
    ///
    /// let mut flow = SagaBuilder::<()>::new()
    ///     .input::<u32>()
    ///     .parallel(|group| {
    ///         group
    ///             .then(|n: &u32| { let n = *n; async move { Ok(n + 1) } }, |_| async { Ok(()) })
    ///             .then(|n: &u32| { let n = *n; async move { Ok(n * 2) } }, |_| async { Ok(()) })
    ///     })
    ///     .then(|(n, (plus, times))| { let sum = n + plus + times; async move { Ok(sum) } }, |_| async { Ok(()) })
    ///     .build_with(|(_, sum)| sum);
    ///
    /// assert_eq!(smol::block_on(flow.run(10)).unwrap(), 10 + 11 + 20);
    /// ```
    ///
    /// A member cannot read its sibling's value:
    ///
    /// ```compile_fail,E0308
    /// use saga_core::SagaBuilder;
    ///
    /// let flow = SagaBuilder::<()>::new()
    ///     .input::<u32>()
    ///     .parallel(|group| {
    ///         group
    ///             .then(|n: &u32| { let n = *n; async move { Ok(n + 1) } }, |_| async { Ok(()) })
    ///             .then(|(n, sibling): (&u32, &u32)| async move { Ok(0u32) }, |_| async { Ok(()) })
    ///     });
    /// ```
    pub fn parallel<F, M>(self, members: F) -> FlowBuilder<E, S, T, Group<C, M>>
    where
        F: FnOnce(FlowGroupBuilder<E, S, T, C, NoMembers>) -> FlowGroupBuilder<E, S, T, C, M>,
        M: Members<E, C>,
    {
        self.parallel_with(ParallelGroup::new(), members)
    }

    /// [`parallel`](FlowBuilder::parallel) with settings, as
    /// [`SagaBuilder::parallel_with`].
    pub fn parallel_with<F, M>(
        self,
        group: ParallelGroup,
        members: F,
    ) -> FlowBuilder<E, S, T, Group<C, M>>
    where
        F: FnOnce(FlowGroupBuilder<E, S, T, C, NoMembers>) -> FlowGroupBuilder<E, S, T, C, M>,
        M: Members<E, C>,
    {
        let start = self.count;
        let built = members(FlowGroupBuilder::new(self.saga, start));
        let (mut saga, members, end) = built.into_parts();
        if end > start {
            saga.plan.groups.push(group.spec(start..end));
        }
        FlowBuilder {
            saga,
            chain: Group::new(self.chain, members),
            count: end,
        }
    }

    /// Names the step added last by [`then`](FlowBuilder::then) or
    /// [`then_option`](FlowBuilder::then_option), for errors and events. It
    /// does not compile after a plain step (name it with
    /// [`FnStep::named`](crate::FnStep::named) and add it with
    /// [`step`](FlowBuilder::step)) or a group (name its members inside it).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self
    where
        C: LastStep,
    {
        self.chain.name_last(name.into());
        self
    }

    /// Saves the value of the step added last by [`then`](FlowBuilder::then)
    /// or [`then_option`](FlowBuilder::then_option) in a durable run's
    /// journal ([`Flow::run_journaled`]), so that after a crash
    /// [`Flow::resume`] hands the later steps, and the step's compensation,
    /// the value the original action returned. A durable flow needs it on
    /// every step that returns a value (its [`output`](crate::Step::output)
    /// is [`StepOutput::Unsaved`](crate::StepOutput::Unsaved) otherwise).
    ///
    /// ```
    /// use saga_core::{SagaBuilder, StepOutput};
    ///
    /// let flow = SagaBuilder::new()
    ///     .input::<u32>()
    ///     .then(|n: &u32| { let n = *n; async move { Ok::<_, String>(n * 2) } }, |_| async { Ok(()) })
    ///     .saved()
    ///     .build();
    /// assert_eq!(flow.unsaved_outputs().count(), 0);
    /// ```
    pub fn saved(mut self) -> Self
    where
        C: LastStep,
        C::Value: crate::journal::Codec,
    {
        self.chain.save_last();
        self
    }

    /// Gives the step added last by [`then`](FlowBuilder::then) or
    /// [`then_option`](FlowBuilder::then_option) retry and timeout settings
    /// of its own (a plain step gets its policy from
    /// [`step_with`](FlowBuilder::step_with)),
    /// which override the saga's defaults field by field (as
    /// [`SagaBuilder::add_step_with`] does). A policy with a backoff or a
    /// timeout needs a [`sleeper`](FlowBuilder::sleeper) first.
    ///
    /// # Examples
    ///
    /// A retried action reads the same values as its first attempt:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use saga_core::{Retry, SagaBuilder, StepPolicy};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let mut flow = SagaBuilder::new()
    ///     .input::<u32>()
    ///     .then(move |order: &u32| {
    ///         let attempt = { let mut log = log.lock().unwrap(); log.push(*order); log.len() };
    ///         async move { if attempt < 3 { Err("busy") } else { Ok(attempt) } }
    ///     }, |_| async { Ok(()) })
    ///     .policy(StepPolicy::new().retry(Retry::attempts(3)))
    ///     .build();
    ///
    /// assert_eq!(smol::block_on(flow.run(42)).unwrap(), (42, 3));
    /// assert_eq!(*seen.lock().unwrap(), [42, 42, 42]);
    /// ```
    pub fn policy<P>(mut self, policy: StepPolicy<P>) -> Self
    where
        C: LastStep,
        P: AllowedIn<T>,
    {
        self.saga
            .plan
            .set_override(self.count - 1, policy.into_data());
        self
    }

    /// Builds the flow; a successful run returns every value, owned and
    /// nested as the steps read them (`((input, a), b)`). See
    /// [`build_with`](FlowBuilder::build_with) to return something else.
    pub fn build(self) -> Flow<E, C::Input, C::Values, C::Partial, S>
    where
        S: FlowKind<E, C::Input, C::Values, C::Partial>,
        S::Table: TableSlot<Mapped<C, fn(C::Values) -> C::Values>>,
    {
        self.build_with(core::convert::identity as fn(C::Values) -> C::Values)
    }

    /// Builds the flow; a successful run returns `map` of its values (owned,
    /// nested as the steps read them). `map` runs once the saga is over: a
    /// panic in it unwinds out of the run's `poll`, even under
    /// `FlowRun::catch_panics` (a detached run reports it as `rt::Lost`).
    pub fn build_with<M, O>(self, map: M) -> Flow<E, C::Input, O, C::Partial, S>
    where
        M: FnMut(C::Values) -> O,
        S: FlowKind<E, C::Input, O, C::Partial>,
        S::Table: TableSlot<Mapped<C, M>>,
    {
        let (plan, scratch, clock) = self.saga.into_run_parts(self.count);
        let table = <S::Table as TableSlot<_>>::pin_box(Mapped {
            chain: self.chain,
            map,
        });
        Flow::from_parts(table, plan, scratch, clock)
    }
}

/// The saga-wide settings, as [`SagaBuilder`]'s.
impl<E, S: ?Sized + SagaKind<E>, T, C> FlowBuilder<E, S, T, C> {
    fn map_saga<U>(
        self,
        f: impl FnOnce(SagaBuilder<E, S, T>) -> SagaBuilder<E, S, U>,
    ) -> FlowBuilder<E, S, U, C> {
        FlowBuilder {
            saga: f(self.saga),
            chain: self.chain,
            count: self.count,
        }
    }

    /// [`SagaBuilder::action_timeout`].
    pub fn action_timeout(self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.map_saga(|saga| saga.action_timeout(timeout))
    }

    /// [`SagaBuilder::compensation_timeout`].
    pub fn compensation_timeout(self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.map_saga(|saga| saga.compensation_timeout(timeout))
    }

    /// [`SagaBuilder::saga_timeout`].
    pub fn saga_timeout(self, timeout: Duration) -> Self
    where
        Timed: AllowedIn<T>,
    {
        self.map_saga(|saga| saga.saga_timeout(timeout))
    }

    /// [`SagaBuilder::action_retry`].
    pub fn action_retry<P: AllowedIn<T>>(self, retry: Retry<P>) -> Self {
        self.map_saga(|saga| saga.action_retry(retry))
    }

    /// [`SagaBuilder::compensation_retry`].
    pub fn compensation_retry<P: AllowedIn<T>>(self, retry: Retry<P>) -> Self {
        self.map_saga(|saga| saga.compensation_retry(retry))
    }

    /// [`SagaBuilder::on_abort`].
    pub fn on_abort(self, in_flight: InFlight) -> Self {
        self.map_saga(|saga| saga.on_abort(in_flight))
    }

    /// [`SagaBuilder::compensation_mode`].
    pub fn compensation_mode(self, mode: CompensationMode) -> Self {
        self.map_saga(|saga| saga.compensation_mode(mode))
    }
}

impl<E, C> FlowBuilder<E, dyn Step<E> + Send + 'static, crate::Untimed, C> {
    /// [`SagaBuilder::sleeper`].
    pub fn sleeper<Z>(self, sleeper: Z) -> FlowBuilder<E, dyn Step<E> + Send + 'static, Timed, C>
    where
        E: From<TimedOut>,
        Z: Sleeper + Send + 'static,
        Z::Sleep: Send + 'static,
    {
        self.map_saga(|saga| saga.sleeper(sleeper))
    }
}

impl<E, C> FlowBuilder<E, dyn Step<E> + 'static, crate::Untimed, C> {
    /// [`SagaBuilder::sleeper`], for a [`LocalFlow`](crate::LocalFlow).
    pub fn sleeper<Z>(self, sleeper: Z) -> FlowBuilder<E, dyn Step<E> + 'static, Timed, C>
    where
        E: From<TimedOut>,
        Z: Sleeper + 'static,
        Z::Sleep: 'static,
    {
        self.map_saga(|saga| saga.sleeper(sleeper))
    }
}

impl<E, T, C> FlowBuilder<E, dyn Step<E> + Send + 'static, T, C> {
    /// [`SagaBuilder::observer`].
    pub fn observer<O: Observer<E> + Send + Sync + 'static>(self, observer: O) -> Self {
        self.map_saga(|saga| saga.observer(observer))
    }

    /// [`SagaBuilder::classify`].
    pub fn classify<F>(self, classify: F) -> Self
    where
        F: Fn(&E) -> Recovery + Send + Sync + 'static,
    {
        self.map_saga(|saga| saga.classify(classify))
    }
}

impl<E, T, C> FlowBuilder<E, dyn Step<E> + 'static, T, C> {
    /// [`SagaBuilder::observer`], for a [`LocalFlow`](crate::LocalFlow).
    pub fn observer<O: Observer<E> + 'static>(self, observer: O) -> Self {
        self.map_saga(|saga| saga.observer(observer))
    }

    /// [`SagaBuilder::classify`], for a [`LocalFlow`](crate::LocalFlow).
    pub fn classify<F>(self, classify: F) -> Self
    where
        F: Fn(&E) -> Recovery + 'static,
    {
        self.map_saga(|saga| saga.classify(classify))
    }
}

impl<E, S: ?Sized + SagaKind<E>, T, C> fmt::Debug for FlowBuilder<E, S, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowBuilder")
            .field("steps", &self.count)
            .field("saga", &self.saga)
            .finish_non_exhaustive()
    }
}
