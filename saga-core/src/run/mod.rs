//! [`Run`]: the poll-driven state machine of one saga run.
//!
//! A run walks the saga's blocks (a single step, or a parallel group) forward,
//! then, on failure, backward. Each step in flight occupies a *lane*: a
//! small driver of its attempts (timeout, retry, backoff). A single step uses
//! lane 0 and the run's own waker; a parallel group or a concurrent backward
//! phase uses several lanes, each with a waker of its own, so that only the
//! woken steps are polled.

mod fast;
mod lane;
mod observe;
mod scratch;
mod waves;

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

pub(crate) use scratch::Scratch;
use scratch::{Lane, Outcome, Stage};

use crate::group::GroupSpec;
use crate::saga::Policy;
use crate::sleep::{Slot, Timers};
use crate::{AbortHandle, Aborted, InFlight, Recovery, SagaError, Step, StepFailure, TimedOut};

/// The future of one saga run, returned by [`Saga::run`](crate::Saga::run).
///
/// A small state machine over the saga's steps. It holds no step futures
/// itself (each step keeps its own in flight, and timers and wakers live in
/// the saga), allocates nothing per poll, and never recurses, so sagas of any
/// length run on a small stack.
///
/// It is `Unpin`, and `Send` when the saga's steps and `E` are.
///
/// # Cancel safety
///
/// Dropping a `Run` before it completes stops the saga without compensating:
/// the steps in flight are [reset](Step::reset), so their futures are
/// dropped, and the steps already applied stay applied. Poll it to
/// completion, use an [`AbortHandle`] to stop it with compensation, or spawn
/// it with a runtime adapter.
///
/// # Panics
///
/// Polling a `Run` after it returned `Ready` panics.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Run<'a, E, S: ?Sized + Step<E> = dyn Step<E> + Send + 'static> {
    steps: &'a mut [Pin<Box<S>>],
    policy: &'a Policy<E>,
    groups: &'a [GroupSpec],
    scratch: &'a mut Scratch<E>,
    clock: Option<Clock<'a, E>>,
    abort: Option<Abort<E>>,
    phase: Phase,
    // Set at the first failure of the forward phase; completed backward.
    failure: Option<SagaError<E>>,
    // The block whose members' outcomes are in `scratch.outcomes`.
    failed_block: Option<(usize, usize)>,
    interrupt: Option<Interrupted>,
    // A panic reported by `fail_in_flight` outside any lane.
    stray_failure: Option<E>,
    // The lane being polled, for `fail_in_flight`.
    polling: Option<usize>,
    // Single steps, no clock, abort handle or observer: the sequential fast
    // path applies (the general lanes machinery takes over on a failure).
    fast: bool,
    // The fast path's position (see `Phase::Sequential`), kept up to date
    // before each step is polled so that `fail_in_flight` finds it.
    cursor: usize,
    // Compensations the fast path completed, not yet in the report.
    compensated: usize,
    // The fast path returned `Pending`: the step at `cursor` is in flight.
    resumed: bool,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The saga's timers, as a run borrows them.
pub(crate) struct Clock<'a, E> {
    pub(crate) timers: &'a mut (dyn Timers + 'static),
    pub(crate) timed_out: fn(TimedOut) -> E,
}

struct Abort<E> {
    handle: AbortHandle,
    aborted: fn(Aborted) -> E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    // The fast path: single steps, no clock, abort or observer. Steps
    // `cursor..` are to run; `cursor` may be in flight.
    Sequential,
    // The fast path backward: steps `0..cursor` are to compensate.
    SequentialBack,
    Forward(Wave),
    Backward(Wave),
    // Finished; the result is yet to be returned.
    Done,
    // The result was returned.
    Reported,
}

/// The steps `start..end` being run (forward) or compensated (backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wave {
    start: usize,
    end: usize,
    // Forward: the next member to start, ascending. Backward: steps
    // `start..next` are still to start, the last one first.
    next: usize,
    // At most this many steps in flight (in lanes `0..limit`).
    limit: usize,
    on_failure: InFlight,
    // No new step starts: a member failed, or the run was interrupted.
    halted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Action,
    Compensation,
}

/// An abort or a deadline, and where it found the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interrupted {
    deadline: bool,
    step: usize,
    attempts: u32,
}

/// How an attempt ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    // It returned an error.
    Failed,
    // Its timeout elapsed and it was cut short.
    TimedOut,
    // It panicked, or was interrupted, and was cut short.
    CutShort,
}

impl Ending {
    fn outcome(self) -> Outcome {
        match self {
            Ending::Failed => Outcome::Failed,
            Ending::TimedOut | Ending::CutShort => Outcome::CutShort,
        }
    }
}

enum LaneEnd<E> {
    Succeeded,
    Failed(StepFailure<E>, Recovery, Ending),
    // Cut short because another member of its group failed: no error of its own.
    Cancelled,
}

impl<'a, E, S: ?Sized + Step<E>> Run<'a, E, S> {
    pub(crate) fn new(
        steps: &'a mut [Pin<Box<S>>],
        policy: &'a Policy<E>,
        groups: &'a [GroupSpec],
        scratch: &'a mut Scratch<E>,
        clock: Option<Clock<'a, E>>,
        fast: bool,
    ) -> Self {
        Run {
            steps,
            policy,
            groups,
            scratch,
            clock,
            abort: None,
            phase: Phase::Start,
            failure: None,
            failed_block: None,
            interrupt: None,
            stray_failure: None,
            polling: None,
            fast,
            cursor: 0,
            compensated: 0,
            resumed: false,
            #[cfg(feature = "tracing")]
            span: tracing::Span::none(),
        }
    }

    /// Attaches an [`AbortHandle`]: after [`abort`](AbortHandle::abort), the
    /// run starts no further action and compensates what was applied (see
    /// [`InFlight`] for the actions in flight). The run then fails with
    /// `E::from(Aborted)`, or with an in-flight action's own error when it
    /// failed while finishing; [`SagaError::aborted`] is `true` either way.
    /// Compensations are never interrupted by an abort.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub fn abortable(mut self, handle: &AbortHandle) -> Self
    where
        E: From<Aborted>,
    {
        self.abort = Some(Abort {
            handle: handle.clone(),
            aborted: E::from,
        });
        self
    }

    /// Fails the attempt in flight with `error`, as if it had returned it,
    /// except that it is first [cancelled](Step::cancel): an action counts as
    /// failed and possibly applied, a compensation as failed (and may be
    /// retried). The run goes on by the saga's rules when polled again.
    ///
    /// This is how a runtime adapter turns a panic inside a step into a
    /// failed step: it polls the run under `catch_unwind` and, on a panic,
    /// calls `fail_in_flight(E::from(Panicked::from_payload(..)))`. When the
    /// panic did not come from a step (an observer, say), the forward phase
    /// stops starting steps and fails with `error`; while compensating, and
    /// on a completed run, it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::panic::{AssertUnwindSafe, catch_unwind};
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    /// use saga_core::{Panicked, SagaBuilder};
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Error(String);
    /// impl From<Panicked> for Error {
    ///     fn from(panic: Panicked) -> Self { Error(panic.message().to_owned()) }
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
    /// let mut run = pin!(saga.run());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let result = loop {
    ///     match catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut cx))) {
    ///         Ok(Poll::Ready(result)) => break result,
    ///         Ok(Poll::Pending) => {}
    ///         Err(payload) => {
    ///             let panic = Panicked::from_payload(payload.as_ref());
    ///             run.as_mut().get_mut().fail_in_flight(Error::from(panic));
    ///         }
    ///     }
    /// };
    /// let error = result.unwrap_err();
    /// assert_eq!(*error.error(), Error("bug in step 1".into()));
    /// assert!(error.is_fully_compensated());
    /// ```
    pub fn fail_in_flight(&mut self, error: E) {
        let lane = self
            .polling
            .take()
            .filter(|&lane| self.scratch.lanes[lane].stage != Stage::Free);
        match (lane, self.phase) {
            (Some(lane), Phase::Forward(_) | Phase::Backward(_)) => {
                self.scratch.lanes[lane].panicked = Some(error);
                if let Some(wakers) = &self.scratch.wakers {
                    wakers.mark(lane);
                }
            }
            (None, Phase::Sequential) if self.cursor < self.steps.len() => {
                self.enter_lane(self.cursor, Kind::Action);
                self.scratch.lanes[0].panicked = Some(error);
            }
            (None, Phase::SequentialBack) if self.cursor > 0 => {
                self.flush_compensated();
                self.enter_lane(self.cursor - 1, Kind::Compensation);
                self.scratch.lanes[0].panicked = Some(error);
            }
            (None, Phase::Start | Phase::Forward(_)) => self.stray_failure = Some(error),
            _ => {}
        }
    }

    pub(super) fn set_timer(&mut self, slot: Slot, duration: Option<Duration>) {
        if let Some(clock) = &mut self.clock {
            match duration {
                Some(duration) => clock.timers.start(slot, duration),
                None => clock.timers.stop(slot),
            }
        }
    }

    pub(super) fn poll_timer(&mut self, slot: Slot, cx: &mut Context<'_>) -> bool {
        self.clock
            .as_mut()
            .is_some_and(|clock| clock.timers.poll_elapsed(slot, cx).is_ready())
    }

    pub(super) fn timed_out_error(&self) -> Option<E> {
        self.clock.as_ref().map(|clock| (clock.timed_out)(TimedOut))
    }

    /// The error an interrupt fails steps with.
    pub(super) fn interrupt_error(&self, deadline: bool) -> Option<E> {
        if deadline {
            self.timed_out_error()
        } else {
            self.abort.as_ref().map(|abort| (abort.aborted)(Aborted))
        }
    }
}

// The run never pins its fields (steps and timers are pinned in their own
// boxes), so it is `Unpin` whatever `E` is.
impl<E, S: ?Sized + Step<E>> Unpin for Run<'_, E, S> {}

impl<E, S: ?Sized + Step<E>> Future for Run<'_, E, S> {
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // The fast path first, in a small frame: a step that suspends comes
        // back here on every wake-up.
        let fast = match this.phase {
            Phase::Sequential => this.poll_sequential(cx),
            Phase::SequentialBack => this.poll_sequential_back(cx),
            _ => Poll::Ready(()),
        };
        if fast.is_pending() {
            return Poll::Pending;
        }
        this.poll_general(cx)
    }
}

impl<E, S: ?Sized + Step<E>> Run<'_, E, S> {
    /// Everything but the fast path: starting, the lanes machinery, and
    /// completing with the report.
    #[inline(never)]
    fn poll_general(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SagaError<E>>> {
        let this = self;
        #[cfg(feature = "tracing")]
        let _entered = {
            if this.phase == Phase::Start {
                this.span = crate::trace::saga_span(this.steps.len());
            }
            this.span.clone().entered()
        };
        loop {
            let progress = match this.phase {
                Phase::Start => {
                    if let Some(observer) = this.policy.observer.as_deref() {
                        observer.saga_started(this.steps.len());
                    }
                    let deadline = this.policy.saga_timeout;
                    this.set_timer(Slot::Saga, deadline);
                    this.phase = this.forward_wave(0);
                    Poll::Ready(())
                }
                Phase::Sequential => this.poll_sequential(cx),
                Phase::SequentialBack => this.poll_sequential_back(cx),
                Phase::Forward(_) => this.poll_forward(cx),
                Phase::Backward(_) => this.poll_backward(cx),
                Phase::Done => Poll::Ready(()),
                Phase::Reported => panic!("saga `Run` polled after it completed"),
            };
            if progress.is_pending() {
                return Poll::Pending;
            }
            if this.phase == Phase::Done {
                // `Reported` stays behind, so that a further poll panics.
                this.phase = Phase::Reported;
                this.set_timer(Slot::Saga, None);
                let result = match this.failure.take() {
                    None => Ok(()),
                    Some(mut failure) => {
                        failure.finish();
                        Err(failure)
                    }
                };
                if let Some(observer) = this.policy.observer.as_deref() {
                    observer.saga_finished(result.as_ref().map(drop));
                }
                return Poll::Ready(result);
            }
        }
    }
}

impl<E, S: ?Sized + Step<E>> Drop for Run<'_, E, S> {
    fn drop(&mut self) {
        // Dropped mid-step: drop what is in flight now, not at the next run.
        let in_flight = match self.phase {
            Phase::Sequential => Some(self.cursor),
            Phase::SequentialBack => self.cursor.checked_sub(1),
            _ => None,
        };
        if let Some(step) = in_flight.and_then(|step| self.steps.get_mut(step)) {
            step.as_mut().reset();
        }
        if let Phase::Forward(_) | Phase::Backward(_) = self.phase {
            for lane in 0..self.scratch.lanes.len() {
                let Lane { step, stage, .. } = self.scratch.lanes[lane];
                if stage != Stage::Free {
                    self.release_lane(lane);
                    if let Some(step) = self.steps.get_mut(step) {
                        step.as_mut().reset();
                    }
                }
                self.set_timer(Slot::Lane(lane), None);
            }
        }
        self.set_timer(Slot::Saga, None);
    }
}

impl<E, S: ?Sized + Step<E>> fmt::Debug for Run<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("steps", &self.steps.len())
            .field("phase", &self.phase)
            .field("failed", &self.failure.is_some())
            .field("abortable", &self.abort.is_some())
            .field("timed", &self.clock.is_some())
            .finish()
    }
}
