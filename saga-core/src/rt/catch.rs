//! [`CatchPanics`]: a saga run in which a panicking step is a failed step.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::panic::AssertUnwindSafe;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::panic::catch_unwind;

use crate::marker::{SagaKind, StepTable};
use crate::{Panicked, Run, SagaError, Step};

/// A saga [`Run`] in which a panicking action or compensation counts as a
/// failed one, so the saga compensates instead of unwinding.
///
/// It polls the run under `std::panic::catch_unwind`. When a step panics,
/// the attempt in flight is cancelled and fails with `E::from(Panicked)`,
/// which carries the panic message: a panicking action counts as failed and
/// possibly applied, so it is retried or compensated like any failed action;
/// a panicking compensation counts as a failed compensation. The panic goes
/// no further than this future. [`detach`](super::detach) (and so the
/// runtime adapters' `spawn`) wraps every run in it; wrap a run yourself to
/// get the same when you `.await` it in place.
///
/// What a panic fails, with `E::from(Panicked)`, depends on what panicked:
///
/// | what panicked | what fails |
/// | --- | --- |
/// | a step's action or compensation | that attempt, [cancelled](crate::Step::cancel) first: an action counts as failed and possibly applied (retried by its policy, then compensated), a compensation as failed (retried by its policy) |
/// | the classifier, or a retry's jitter function | the attempt it was deciding about, for good: no retry; the classifier is not asked again in this run (its errors are compensated) nor the jitter function (delays are used as computed) |
/// | the sleeper (starting or polling a timer) | the attempt it was timing, cut short, for good; the run keeps no more time (no timeout, retries without waiting). Starting the timeout of an action's first attempt, before the action is called: that step never began, and the saga stops before it (it is not compensated). For the saga's deadline: the forward phase, as below |
/// | the observer | it is not called again in this run. Told of an attempt's failure (or its retry), that attempt fails with the panic instead (for good, when told of a retry); told of anything else, the forward phase fails with the panic: no further action starts, those in flight finish, and the saga compensates. While compensating, or once the run finished, nothing else changes |
///
/// Either way the run goes on: a callback that panics every time is called
/// at most once per run, so the run always ends. An attempt whose
/// cancellation panics too (a future that panics again as it is dropped)
/// fails with its first panic.
///
/// The panic hook still runs (by default it prints the panic to stderr). A
/// program built with `panic = "abort"` cannot catch panics: it aborts as
/// usual.
///
/// # Cancel safety
///
/// The same as [`Run`]'s: dropping it stops the saga without compensating.
///
/// # Examples
///
/// ```
/// use saga_core::rt::CatchPanics;
/// use saga_core::{Panicked, SagaBuilder};
///
/// #[derive(Debug, PartialEq)]
/// struct Error(String);
/// impl From<Panicked> for Error {
///     fn from(panic: Panicked) -> Self { Error(panic.message().into()) }
/// }
///
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .add_step(
///         || async { if true { panic!("bug in step 1") } Ok::<_, Error>(()) },
///         || async { Ok(()) },
///     )
///     .build();
///
/// let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
/// assert_eq!(*error.error(), Error("bug in step 1".into()));
/// assert!(error.is_fully_compensated()); // steps 1 and 0 were undone
/// ```
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct CatchPanics<
    'a,
    E,
    S: ?Sized + SagaKind<E> = dyn Step<E> + Send + 'static,
    B: ?Sized + StepTable<E> = [Pin<Box<S>>],
> {
    run: Run<'a, E, S, B>,
}

impl<'a, E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> CatchPanics<'a, E, S, B> {
    /// Wraps a run (as returned by `Saga::run`, possibly made
    /// [abortable](crate::Run::abortable)).
    pub fn new(run: Run<'a, E, S, B>) -> Self {
        CatchPanics { run }
    }
}

impl<E: From<Panicked>, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Future
    for CatchPanics<'_, E, S, B>
{
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Run` is `Unpin`, and so is this future.
        poll_catching(&mut self.get_mut().run, cx, E::from)
    }
}

/// Polls `run`, failing what panicked (with `from` of the panic) and polling
/// again until the run is pending or done.
pub(crate) fn poll_catching<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>>(
    run: &mut Run<'_, E, S, B>,
    cx: &mut Context<'_>,
    from: fn(Panicked) -> E,
) -> Poll<Result<(), SagaError<E>>> {
    if run.completed() {
        // Polled after completion: the run's own panic says so, uncaught.
        return Pin::new(run).poll(cx);
    }
    loop {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *run).poll(cx))) {
            Ok(poll) => return poll,
            // The step that panicked fails; poll again to go on from there.
            Err(payload) => {
                let panic = Panicked::from_payload(&*payload);
                run.fail_in_flight(from(panic));
            }
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> fmt::Debug for CatchPanics<'_, E, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatchPanics")
            .field("run", &self.run)
            .finish()
    }
}
