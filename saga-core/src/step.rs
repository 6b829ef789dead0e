//! The [`Step`] trait: one action and its compensation, driven by polling.

use alloc::vec::Vec;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::journal::DecodeError;

/// One step of a saga: an action and the compensation that undoes it.
///
/// `Step` is poll-based, like [`Future`](core::future::Future): the engine owns
/// no futures of its own, it asks the step to drive whatever it has in flight.
/// That keeps the in-flight future inside the step (no allocation per run) and
/// keeps typed outputs private to the step (the compensation reads them, nobody
/// else needs to). The trait is object safe, so a saga stores its steps as
/// `Pin<Box<dyn Step<E> + Send>>`.
///
/// Most users never implement it: [`SagaBuilder::add_step`](crate::SagaBuilder::add_step)
/// and the typed-step methods wrap closures in [`FnStep`](crate::FnStep) and
/// [`TypedStep`](crate::TypedStep). Implement it for a type of your own when a
/// step is naturally a state machine, or to avoid closures altogether.
///
/// # The protocol
///
/// The engine follows these rules, and an implementation may rely on them:
///
/// 1. [`poll_action`](Step::poll_action) drives the action: when none is in
///    flight, it starts an attempt; it returns `Ready` once that attempt
///    finished. After `Ready`, the next call starts a new attempt: a retry,
///    or the first attempt of a new run (nothing is called in between, so an
///    attempt replaces whatever the step kept from an earlier one).
/// 2. [`poll_compensate`](Step::poll_compensate) is only called after the
///    last action attempt returned `Ready(Ok(()))`, or failed or was cut short
///    while [`compensates_failed_action`](Step::compensates_failed_action) is
///    `true`. It drives the compensation of that attempt. After
///    `Ready(Err(_))`, the next call starts a new compensation attempt (a
///    retry), unless [`retries_compensation`](Step::retries_compensation) is
///    `false`. After `Ready(Ok(()))`, the next call runs the compensation
///    again, or returns `Ready(Ok(()))` at once when nothing is left to undo
///    (a typed step drops its value once compensated).
/// 3. To cut an attempt short (a timeout, or an abort that does not wait),
///    the engine stops polling it and calls [`cancel`](Step::cancel). A
///    cancelled action counts as failed and possibly applied; a cancelled
///    compensation as failed.
/// 4. When a run is dropped mid-step, the engine calls [`reset`](Step::reset)
///    to drop what was in flight. Nothing else calls it: a new run needs no
///    reset (rule 1).
///
/// # Examples
///
/// A step that reserves a seat and releases it, written as a small state
/// machine over `futures_util::future::Ready` (any future works):
///
/// ```
/// use core::pin::Pin;
/// use core::task::{Context, Poll};
/// use std::sync::{Arc, Mutex};
/// use saga_core::{SagaBuilder, Step};
///
/// struct Reserve {
///     seats: Arc<Mutex<u32>>,
///     reserved: bool,
/// }
///
/// impl Step<&'static str> for Reserve {
///     fn poll_action(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
///         let this = self.get_mut();
///         let mut seats = this.seats.lock().unwrap();
///         if *seats == 0 {
///             return Poll::Ready(Err("sold out"));
///         }
///         *seats -= 1;
///         this.reserved = true;
///         Poll::Ready(Ok(()))
///     }
///
///     fn poll_compensate(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
///         let this = self.get_mut();
///         if this.reserved {
///             *this.seats.lock().unwrap() += 1;
///             this.reserved = false;
///         }
///         Poll::Ready(Ok(()))
///     }
///
///     fn reset(self: Pin<&mut Self>) {
///         self.get_mut().reserved = false;
///     }
///
///     fn cancel(self: Pin<&mut Self>) {
///         // Nothing is ever in flight: every poll completes at once.
///     }
///
///     fn name(&self) -> Option<&str> {
///         Some("reserve seat")
///     }
/// }
///
/// let seats = Arc::new(Mutex::new(1));
/// let mut saga = SagaBuilder::new()
///     .step(Reserve { seats: seats.clone(), reserved: false })
///     .add_step(|| async { Err::<(), _>("payment declined") }, || async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(*error.error(), "payment declined");
/// assert!(error.is_fully_compensated());
/// assert_eq!(*seats.lock().unwrap(), 1); // the seat was given back
/// ```
pub trait Step<E> {
    /// Drives the action: starts an attempt when none is in flight, and
    /// returns `Ready` with its result when the attempt finished.
    fn poll_action(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>>;

    /// Drives the compensation of the last action attempt: starts one when none
    /// is in flight, and returns `Ready` with its result when it finished.
    fn poll_compensate(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>>;

    /// Drops whatever is in flight and any output kept from an earlier
    /// attempt: the engine calls it when a run is dropped mid-step, so that
    /// the step's future is dropped then rather than at its next run.
    fn reset(self: Pin<&mut Self>);

    /// Drops the action or compensation attempt in flight, keeping what a
    /// later compensation needs: a cancelled action may have partly happened,
    /// so [`poll_compensate`](Step::poll_compensate) must still undo it (when
    /// this step compensates failed actions), and a cancelled compensation can
    /// be attempted again.
    fn cancel(self: Pin<&mut Self>);

    /// Whether the engine compensates this step when its own action failed.
    ///
    /// `true` by default: a failed action may have partly happened (rule 3 of
    /// the [crate docs](crate#the-rules)), and [`poll_compensate`](Step::poll_compensate) can still decide that
    /// there is nothing to undo.
    fn compensates_failed_action(&self) -> bool {
        true
    }

    /// Whether a failed compensation can be attempted again (`true` by
    /// default). A step whose compensation consumes the action's value
    /// returns `false`, and is then compensated at most once per run whatever
    /// the retry policy.
    fn retries_compensation(&self) -> bool {
        true
    }

    /// A human-readable name, used in errors and events.
    fn name(&self) -> Option<&str> {
        None
    }

    /// Whether the step keeps a value from its action for its compensation,
    /// and whether it can save that value in a
    /// [journal](crate::journal) ([`StepOutput::Nothing`] by default).
    fn output(&self) -> StepOutput {
        StepOutput::Nothing
    }

    /// Appends the encoded value of the last successful action to `out`,
    /// for a step whose [`output`](Step::output) is [`StepOutput::Saved`]
    /// (nothing by default).
    fn save_output(&self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// Puts the step back in the state its action left it in before a
    /// restart, instead of running the action: a saga resumed from its journal calls it
    /// before it compensates the step (or runs the steps after it).
    ///
    /// The default does nothing, which is right for a step whose
    /// compensation does not depend on what its action left behind.
    fn restore(self: Pin<&mut Self>, restored: Restored<'_>) -> Result<(), DecodeError> {
        let _ = restored;
        Ok(())
    }
}

/// What a step keeps from its action, for [`Step::output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepOutput {
    /// Nothing its compensation reads.
    Nothing,
    /// A value, which it can save to a journal and restore from it.
    Saved,
    /// A value it cannot save (a typed step without a codec): a durable
    /// saga cannot resume such a step.
    Unsaved,
}

/// How a step's action ended before a restart, for [`Step::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restored<'a> {
    /// It succeeded; its saved value, if it saves one.
    Succeeded(Option<&'a [u8]>),
    /// It was started and has no recorded outcome, or it failed: it may
    /// have partly happened.
    Attempted,
}
