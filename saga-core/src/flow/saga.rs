//! [`Flow`]: a built saga whose steps pass values along, run with an input
//! and returning a result; [`FlowRun`], the future of one run.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use crate::flow::{FlowError, FlowKind, FlowTable};
use crate::marker::StepTable;
use crate::plan::Plan;
use crate::run::Scratch;
use crate::saga::SagaClock;
use crate::{AbortHandle, Aborted, CompensationMode, Run, Step};

/// A saga whose steps pass values along: built once by a
/// [`FlowBuilder`](crate::FlowBuilder), run any number of times, each run
/// with an input `I` of its own, resolving to a result `O` or a
/// [`FlowError<E, P>`](FlowError).
///
/// Everything a [`Saga`](crate::Saga) does, a flow does the same way (it is
/// the same engine): the rules, policies, groups, the classifier, observers,
/// aborts. What it adds is data: each run's input and values live in the
/// flow for that run only, and are handed out (the result, or the failed
/// run's values) or dropped when it ends, so no run sees another's.
///
/// Building a flow allocates one box for all its steps (they live in one
/// struct, each step's future inline) and the run's bookkeeping; a
/// successful run allocates nothing.
///
/// `Flow` holds `Send` steps, so it and its run future are `Send` (when `E`
/// and the values are); [`LocalFlow`] is the same API for steps that are
/// not. The type names no closure, so a flow can be a field:
///
/// ```
/// use saga_core::{Flow, SagaBuilder};
///
/// struct Service {
///     // Input `u32`; result `String`; a failed run's values: the input and
///     // the one step's value.
///     order: Flow<String, u32, String, (u32, Option<u64>)>,
/// }
///
/// let service = Service {
///     order: SagaBuilder::new()
///         .input::<u32>()
///         .then(|quantity: &u32| { let quantity = *quantity; async move { Ok(u64::from(quantity) * 250) } }, |_| async { Ok(()) })
///         .build_with(|(quantity, cents)| format!("{quantity} for {cents} cents")),
/// };
/// let mut order = service.order;
/// assert_eq!(smol::block_on(order.run(4)).unwrap(), "4 for 1000 cents");
/// assert_eq!(smol::block_on(order.run(1)).unwrap(), "1 for 250 cents");
///
/// // A task that owns the flow and awaits a run is `Send`: spawn it on any
/// // multi-threaded executor. (As for a `Saga`, the compiler cannot see
/// // that when the error type holds a lifetime, such as `&'static str`.)
/// let task = smol::spawn(async move {
///     let receipt = order.run(2).await;
///     (order, receipt)
/// });
/// let (_order, receipt) = smol::block_on(task);
/// assert_eq!(receipt.unwrap(), "2 for 500 cents");
/// ```
pub struct Flow<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P> = dyn Step<E> + Send + 'static> {
    pub(super) table: Pin<Box<S::Table>>,
    pub(super) plan: Plan<E, S>,
    pub(super) scratch: Scratch<E>,
    pub(super) clock: Option<SagaClock<E, S>>,
}

/// A [`Flow`] whose steps, values, observer, classifier and sleeper need not
/// be `Send`: started from
/// [`SagaBuilder::new_local`](crate::SagaBuilder::new_local). Its run future
/// is not `Send`.
pub type LocalFlow<E, I, O, P> = Flow<E, I, O, P, dyn Step<E> + 'static>;

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Flow<E, I, O, P, S> {
    pub(crate) fn from_parts(
        table: Pin<Box<S::Table>>,
        plan: Plan<E, S>,
        scratch: Scratch<E>,
        clock: Option<SagaClock<E, S>>,
    ) -> Self {
        Flow {
            table,
            plan,
            scratch,
            clock,
        }
    }

    /// Runs the flow with `input`: the actions in order, each reading the
    /// input and the values before it, and on failure the compensations in
    /// reverse. Resolves to the result (the values, mapped by
    /// [`build_with`](crate::FlowBuilder::build_with)'s map) when every
    /// action succeeded.
    ///
    /// # Cancel safety
    ///
    /// As [`Saga::run`](crate::Saga::run): dropping the future stops the
    /// run without compensating; the run's input and values are dropped
    /// with it.
    pub fn run(&mut self, input: I) -> FlowRun<'_, E, I, O, P, S> {
        let run = self.start(input);
        FlowRun {
            run,
            done: false,
            #[cfg(feature = "std")]
            panics: None,
        }
    }

    /// A run of the engine with `input`.
    pub(super) fn start(&mut self, input: I) -> Run<'_, E, S, S::Table> {
        self.table.as_mut().start(input);
        self.engine()
    }

    /// A run of the engine, the input already set.
    pub(super) fn engine(&mut self) -> Run<'_, E, S, S::Table> {
        let timers = self
            .clock
            .as_mut()
            .map(|clock| (&mut *clock.timers, clock.timed_out));
        Run::new(self.table.as_mut(), &self.plan, &mut self.scratch, timers)
    }

    /// The number of steps (each member of a group is one).
    pub fn len(&self) -> usize {
        self.table.step_count()
    }

    /// `true` when the flow has no steps (a run then returns its input,
    /// mapped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index range of each parallel group, in order.
    pub fn parallel_groups(&self) -> impl ExactSizeIterator<Item = core::ops::Range<usize>> + '_ {
        self.plan.groups.iter().map(|group| group.members.clone())
    }

    /// The name of each step, in order (`None` for unnamed steps).
    pub fn step_names(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        (0..self.len()).map(|index| self.table.step_name(index))
    }

    /// What the backward phase does when a compensation fails.
    pub fn compensation_mode(&self) -> CompensationMode {
        self.plan.compensation_mode
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> fmt::Debug for Flow<E, I, O, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("steps", &self.len())
            .field("classify", &self.plan.classify.is_some())
            .field("compensation_mode", &self.plan.compensation_mode)
            .field("groups", &self.plan.groups)
            .field("observed", &self.plan.observer.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}

/// The future of one [`Flow`] run, returned by [`Flow::run`]: a saga
/// [`Run`] that hands out the run's values when it ends.
///
/// # Panics
///
/// Polling it after it returned `Ready` panics, as a [`Run`] does.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct FlowRun<'a, E, I, O, P, S: ?Sized + FlowKind<E, I, O, P> = dyn Step<E> + Send + 'static>
{
    run: Run<'a, E, S, S::Table>,
    // The values were handed out.
    done: bool,
    // Set by `catch_panics`: how a panic becomes an `E`.
    #[cfg(feature = "std")]
    panics: Option<fn(crate::Panicked) -> E>,
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> FlowRun<'_, E, I, O, P, S> {
    /// Attaches an [`AbortHandle`], as [`Run::abortable`] does.
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.run.attach_abort(handle);
        self
    }

    /// Makes a panic in a step or a callback a failure of what panicked, as
    /// [`rt::CatchPanics`](crate::rt::CatchPanics) does for a saga's run:
    /// the run goes on by the saga's rules (compensating what was applied),
    /// and the error is `E::from(Panicked)`. With the `std` feature.
    ///
    /// # Examples
    ///
    /// ```
    /// use saga_core::{Panicked, SagaBuilder};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Error(String);
    /// impl From<Panicked> for Error {
    ///     fn from(panic: Panicked) -> Self { Error(panic.message().into()) }
    /// }
    ///
    /// let mut flow = SagaBuilder::new()
    ///     .input::<u32>()
    ///     .then(|n: &u32| { let n = *n; async move { Ok::<_, Error>(n + 1) } }, |_| async { Ok(()) })
    ///     // `then_option`: a panicking action may have partly happened, so it
    ///     // is compensated too (with `None`).
    ///     .then_option(|_| async { if true { panic!("bug in step 1") } Ok(0u32) }, |_| async { Ok(()) })
    ///     .build();
    ///
    /// let error = smol::block_on(flow.run(1).catch_panics()).unwrap_err();
    /// assert_eq!(*error.report().error(), Error("bug in step 1".into()));
    /// assert!(error.report().is_fully_compensated());
    /// assert_eq!(error.report().compensated_count(), 2);
    /// assert_eq!(*error.values(), ((1, Some(2)), None));
    /// ```
    #[cfg(feature = "std")]
    pub fn catch_panics(mut self) -> Self
    where
        E: From<crate::Panicked>,
    {
        self.panics = Some(E::from);
        self
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Unpin for FlowRun<'_, E, I, O, P, S> {}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Future for FlowRun<'_, E, I, O, P, S> {
    type Output = Result<O, FlowError<E, P>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        #[cfg(feature = "std")]
        let result = match this.panics {
            Some(from) => ready!(crate::rt::poll_catching(&mut this.run, cx, from)),
            None => ready!(Pin::new(&mut this.run).poll(cx)),
        };
        #[cfg(not(feature = "std"))]
        let result = ready!(Pin::new(&mut this.run).poll(cx));
        this.done = true;
        let table = this.run.steps_mut();
        Poll::Ready(match result {
            Ok(()) => Ok(table.finish()),
            Err(report) => Err(FlowError::new(report, table.values())),
        })
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> Drop for FlowRun<'_, E, I, O, P, S> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped mid-run: its input and values go with it.
            drop(self.run.steps_mut().values());
        }
    }
}

impl<E, I, O, P, S: ?Sized + FlowKind<E, I, O, P>> fmt::Debug for FlowRun<'_, E, I, O, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowRun").field("run", &self.run).finish()
    }
}
