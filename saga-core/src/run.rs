//! [`Run`]: the poll-driven state machine of one saga run.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::saga::Policy;
use crate::sleep::{Slot, Timers};
use crate::{
    AbortHandle, Aborted, CompensationMode, InFlight, Recovery, SagaError, Step, TimedOut,
};

/// The future of one saga run, returned by [`Saga::run`](crate::Saga::run).
///
/// A small state machine over the saga's steps: an index, a phase, an
/// attempt count and the error being built. It holds no step futures itself
/// (each step keeps its own in flight, and timers live in the saga),
/// allocates nothing per poll, and never recurses, so sagas of any length run
/// on a small stack.
///
/// It is `Unpin`, and `Send` when the saga's steps and `E` are.
///
/// # Cancel safety
///
/// Dropping a `Run` before it completes stops the saga without compensating:
/// the step in flight is [reset](Step::reset), so its future is dropped, and
/// the steps already applied stay applied. Poll it to completion, use an
/// [`AbortHandle`] to stop it with compensation, or spawn it with a runtime
/// adapter.
///
/// # Panics
///
/// Polling a `Run` after it returned `Ready` panics.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Run<'a, E, S: ?Sized + Step<E> = dyn Step<E> + Send + 'static> {
    steps: &'a mut [Pin<Box<S>>],
    policy: &'a Policy<E>,
    clock: Option<Clock<'a, E>>,
    abort: Option<Abort<E>>,
    phase: Phase,
    // Set when the forward phase ended in failure; completed by the backward phase.
    failure: Option<SagaError<E>>,
    // The last failed action attempt's error, kept while waiting to retry.
    last_error: Option<E>,
    // An abort arrived and the action in flight is allowed to finish.
    draining: bool,
    started: bool,
}

/// The saga's timers, as a run borrows them.
pub(crate) struct Clock<'a, E> {
    pub(crate) timers: Pin<&'a mut (dyn Timers + 'static)>,
    pub(crate) timed_out: fn(TimedOut) -> E,
}

struct Abort<E> {
    handle: AbortHandle,
    aborted: fn(Aborted) -> E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    // `attempt` counts the attempts made, the one in flight included.
    Forward {
        step: usize,
        attempt: u32,
        stage: Stage,
    },
    // Steps `0..remaining` are still to compensate, the last one first.
    Backward {
        remaining: usize,
        attempt: u32,
        stage: Stage,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Running,
    BackingOff,
}

/// Why the forward phase was stopped from outside the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Aborted,
    Deadline,
}

/// What the failed step's last action attempt did, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    // No attempt ran in this run.
    NotStarted,
    // The attempt succeeded (an abort then stopped the saga).
    Applied,
    // The attempt returned an error.
    Failed,
    // The attempt was dropped before it finished: possibly applied.
    CutShort,
}

/// How an attempt ended badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    // It returned an error.
    Failed,
    // Its timeout elapsed and it was cut short.
    TimedOut,
    // It was cut short from outside (see `Run::fail_in_flight`).
    CutShort,
}

impl<'a, E, S: ?Sized + Step<E>> Run<'a, E, S> {
    pub(crate) fn new(
        steps: &'a mut [Pin<Box<S>>],
        policy: &'a Policy<E>,
        clock: Option<Clock<'a, E>>,
    ) -> Self {
        Run {
            steps,
            policy,
            clock,
            abort: None,
            phase: Phase::Forward {
                step: 0,
                attempt: 0,
                stage: Stage::Start,
            },
            failure: None,
            last_error: None,
            draining: false,
            started: false,
        }
    }

    /// Attaches an [`AbortHandle`]: after [`abort`](AbortHandle::abort), the
    /// run starts no further action and compensates what was applied (see
    /// [`InFlight`] for the action in flight). The run then fails with
    /// `E::from(Aborted)`, or with the in-flight action's own error when it
    /// failed while finishing; [`SagaError::aborted`] is `true` either way.
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
    /// retried). The run then goes on by the saga's rules when polled again.
    ///
    /// This is how a runtime adapter turns a panic inside a step into a
    /// failed step: it polls the run under `catch_unwind` and, on a panic,
    /// calls `fail_in_flight(E::from(Panicked::new(message)))`. It does
    /// nothing on a run that completed.
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
    /// # std::panic::set_hook(Box::new(|_| {}));
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
        match self.phase {
            Phase::Forward {
                step,
                attempt,
                stage,
            } if step < self.steps.len() => match stage {
                Stage::Running => {
                    self.steps[step].as_mut().cancel();
                    self.stop_timer(Slot::Step);
                    self.after_action_error(step, attempt, error, Ending::CutShort);
                }
                Stage::Start => {
                    self.fail(step, error, 0, Recovery::Compensate, Outcome::NotStarted);
                    self.mark(None, Ending::Failed);
                }
                Stage::BackingOff => {
                    self.fail(step, error, attempt, Recovery::Compensate, Outcome::Failed);
                    self.mark(None, Ending::Failed);
                }
            },
            Phase::Backward {
                remaining,
                attempt,
                stage,
            } if remaining > 0 => {
                let step = remaining - 1;
                if stage == Stage::Running {
                    self.steps[step].as_mut().cancel();
                }
                self.stop_timer(Slot::Step);
                self.after_compensation_error(step, attempt.max(1), error, Ending::CutShort);
            }
            _ => {}
        }
    }

    fn start_timer(&mut self, slot: Slot, duration: Option<Duration>) {
        if let Some(clock) = &mut self.clock {
            match duration {
                Some(duration) => clock.timers.as_mut().start(slot, duration),
                None => clock.timers.as_mut().stop(slot),
            }
        }
    }

    fn stop_timer(&mut self, slot: Slot) {
        if let Some(clock) = &mut self.clock {
            clock.timers.as_mut().stop(slot);
        }
    }

    fn poll_timer(&mut self, slot: Slot, cx: &mut Context<'_>) -> bool {
        self.clock
            .as_mut()
            .is_some_and(|clock| clock.timers.as_mut().poll_elapsed(slot, cx).is_ready())
    }

    fn timed_out_error(&self) -> Option<E> {
        self.clock.as_ref().map(|clock| (clock.timed_out)(TimedOut))
    }

    fn poll_interrupt(&mut self, cx: &mut Context<'_>) -> Option<Interrupt> {
        if self.poll_timer(Slot::Saga, cx) {
            return Some(Interrupt::Deadline);
        }
        let abort = self.abort.as_ref()?;
        abort.handle.poll_aborted(cx).then_some(Interrupt::Aborted)
    }

    fn interrupt_error(&self, interrupt: Interrupt) -> Option<E> {
        match interrupt {
            Interrupt::Aborted => self.abort.as_ref().map(|abort| (abort.aborted)(Aborted)),
            Interrupt::Deadline => self.timed_out_error(),
        }
    }

    /// Starts action attempt number `attempt` of `step`, with its timeout.
    fn begin_action(&mut self, step: usize, attempt: u32) {
        let timeout = self.policy.step(step).action_timeout();
        self.start_timer(Slot::Step, timeout);
        self.phase = Phase::Forward {
            step,
            attempt,
            stage: Stage::Running,
        };
    }

    /// Starts compensation attempt number `attempt` of `step`, with its timeout.
    fn begin_compensation(&mut self, step: usize, attempt: u32) {
        let timeout = self.policy.step(step).compensation_timeout();
        self.start_timer(Slot::Step, timeout);
        self.phase = Phase::Backward {
            remaining: step + 1,
            attempt,
            stage: Stage::Running,
        };
    }

    /// Ends the forward phase at `step`: records the failure, then compensates
    /// (or propagates).
    fn fail(&mut self, step: usize, error: E, attempts: u32, recovery: Recovery, outcome: Outcome) {
        self.stop_timer(Slot::Step);
        self.stop_timer(Slot::Saga);
        self.last_error = None;
        let current = &self.steps[step];
        let compensates_failure = current.compensates_failed_action();
        let mut failure = SagaError::new(error, step, current.name(), recovery);
        failure.record_attempts(attempts);
        // Steps `0..remaining` need compensation, this one first when included.
        let remaining = match outcome {
            Outcome::NotStarted => step,
            Outcome::Applied => step + 1,
            Outcome::Failed | Outcome::CutShort => step + usize::from(compensates_failure),
        };
        if outcome == Outcome::CutShort && !compensates_failure {
            failure.record_failed_step_left_applied();
        }
        self.phase = match recovery {
            Recovery::Propagate => {
                failure.record_never_compensated(0..remaining);
                Phase::Done
            }
            Recovery::Retry | Recovery::Compensate => Phase::Backward {
                remaining,
                attempt: 0,
                stage: Stage::Start,
            },
        };
        self.failure = Some(failure);
    }

    fn mark(&mut self, interrupt: Option<Interrupt>, ending: Ending) {
        if let Some(failure) = &mut self.failure {
            if self.draining || interrupt == Some(Interrupt::Aborted) {
                failure.record_aborted();
            }
            if ending == Ending::TimedOut || interrupt == Some(Interrupt::Deadline) {
                failure.record_timed_out();
            }
        }
    }

    /// An action attempt failed (or timed out): retry it, or end the forward phase.
    fn after_action_error(&mut self, step: usize, attempt: u32, error: E, ending: Ending) {
        let outcome = match ending {
            Ending::Failed => Outcome::Failed,
            Ending::TimedOut | Ending::CutShort => Outcome::CutShort,
        };
        if self.draining {
            // Aborted while this attempt finished: no retry.
            self.fail(step, error, attempt, Recovery::Compensate, outcome);
            return self.mark(None, ending);
        }
        let recovery = self.policy.recovery_for(&error);
        let retry = self.policy.step(step).action_retry();
        if recovery == Recovery::Retry {
            if let Some(retry) = retry.filter(|retry| attempt < retry.max_attempts()) {
                let delay = retry.delay_before(attempt + 1);
                if delay.is_zero() || self.clock.is_none() {
                    return self.begin_action(step, attempt + 1);
                }
                self.start_timer(Slot::Step, Some(delay));
                self.last_error = Some(error);
                self.phase = Phase::Forward {
                    step,
                    attempt,
                    stage: Stage::BackingOff,
                };
                return;
            }
        }
        let recovery = match recovery {
            Recovery::Propagate => Recovery::Propagate,
            Recovery::Retry | Recovery::Compensate => Recovery::Compensate,
        };
        self.fail(step, error, attempt, recovery, outcome);
        self.mark(None, ending);
    }

    fn poll_forward(
        &mut self,
        step: usize,
        attempt: u32,
        stage: Stage,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if step == self.steps.len() {
            self.stop_timer(Slot::Saga);
            self.phase = Phase::Done;
            return Poll::Ready(());
        }
        if !self.draining {
            if let Some(interrupt) = self.poll_interrupt(cx) {
                let finish = interrupt == Interrupt::Aborted
                    && self.policy.on_abort == InFlight::Finish
                    && stage == Stage::Running;
                if finish {
                    self.draining = true;
                } else {
                    return self.interrupt_forward(step, attempt, stage, interrupt);
                }
            }
        }
        match stage {
            Stage::Start => {
                self.steps[step].as_mut().reset();
                self.begin_action(step, 1);
            }
            Stage::BackingOff => {
                if !self.poll_timer(Slot::Step, cx) {
                    return Poll::Pending;
                }
                self.last_error = None;
                self.begin_action(step, attempt + 1);
            }
            Stage::Running => match self.steps[step].as_mut().poll_action(cx) {
                Poll::Ready(Ok(())) if self.draining => {
                    // Aborted while it finished: it is applied, so it is undone too.
                    let Some(error) = self.interrupt_error(Interrupt::Aborted) else {
                        unreachable!("draining only starts with an abort handle")
                    };
                    self.fail(step, error, attempt, Recovery::Compensate, Outcome::Applied);
                    self.mark(Some(Interrupt::Aborted), Ending::Failed);
                }
                Poll::Ready(Ok(())) => {
                    self.stop_timer(Slot::Step);
                    self.phase = Phase::Forward {
                        step: step + 1,
                        attempt: 0,
                        stage: Stage::Start,
                    };
                }
                Poll::Ready(Err(error)) => {
                    self.stop_timer(Slot::Step);
                    self.after_action_error(step, attempt, error, Ending::Failed);
                }
                Poll::Pending => {
                    if !self.poll_timer(Slot::Step, cx) {
                        return Poll::Pending;
                    }
                    self.steps[step].as_mut().cancel();
                    let Some(error) = self.timed_out_error() else {
                        unreachable!("a step timer only runs with a clock")
                    };
                    self.after_action_error(step, attempt, error, Ending::TimedOut);
                }
            },
        }
        Poll::Ready(())
    }

    /// An abort or the saga deadline stops the forward phase at `step`.
    fn interrupt_forward(
        &mut self,
        step: usize,
        attempt: u32,
        stage: Stage,
        interrupt: Interrupt,
    ) -> Poll<()> {
        let Some(interrupt_error) = self.interrupt_error(interrupt) else {
            unreachable!("interrupts only come from an abort handle or a clock")
        };
        match stage {
            // Nothing of this step ran in this run.
            Stage::Start => self.fail(
                step,
                interrupt_error,
                0,
                Recovery::Compensate,
                Outcome::NotStarted,
            ),
            // The last attempt failed; report its error.
            Stage::BackingOff => {
                let error = self.last_error.take().unwrap_or(interrupt_error);
                self.fail(step, error, attempt, Recovery::Compensate, Outcome::Failed);
            }
            Stage::Running => {
                self.steps[step].as_mut().cancel();
                self.fail(
                    step,
                    interrupt_error,
                    attempt,
                    Recovery::Compensate,
                    Outcome::CutShort,
                );
            }
        }
        self.mark(Some(interrupt), Ending::Failed);
        Poll::Ready(())
    }

    fn poll_backward(
        &mut self,
        remaining: usize,
        attempt: u32,
        stage: Stage,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Some(step) = remaining.checked_sub(1) else {
            self.phase = Phase::Done;
            return Poll::Ready(());
        };
        match stage {
            Stage::Start => self.begin_compensation(step, 1),
            Stage::BackingOff => {
                if !self.poll_timer(Slot::Step, cx) {
                    return Poll::Pending;
                }
                self.begin_compensation(step, attempt + 1);
            }
            Stage::Running => match self.steps[step].as_mut().poll_compensate(cx) {
                Poll::Ready(Ok(())) => {
                    self.stop_timer(Slot::Step);
                    if let Some(failure) = &mut self.failure {
                        failure.record_compensated();
                    }
                    self.phase = Phase::Backward {
                        remaining: step,
                        attempt: 0,
                        stage: Stage::Start,
                    };
                }
                Poll::Ready(Err(error)) => {
                    self.stop_timer(Slot::Step);
                    self.after_compensation_error(step, attempt, error, Ending::Failed);
                }
                Poll::Pending => {
                    if !self.poll_timer(Slot::Step, cx) {
                        return Poll::Pending;
                    }
                    self.steps[step].as_mut().cancel();
                    let Some(error) = self.timed_out_error() else {
                        unreachable!("a step timer only runs with a clock")
                    };
                    self.after_compensation_error(step, attempt, error, Ending::TimedOut);
                }
            },
        }
        Poll::Ready(())
    }

    /// A compensation attempt failed (or timed out): retry it, or give up on it.
    fn after_compensation_error(&mut self, step: usize, attempt: u32, error: E, ending: Ending) {
        let retry = self
            .policy
            .step(step)
            .compensation_retry()
            .filter(|_| self.steps[step].retries_compensation());
        if let Some(retry) = retry.filter(|retry| attempt < retry.max_attempts()) {
            let delay = retry.delay_before(attempt + 1);
            if delay.is_zero() || self.clock.is_none() {
                return self.begin_compensation(step, attempt + 1);
            }
            self.start_timer(Slot::Step, Some(delay));
            self.phase = Phase::Backward {
                remaining: step + 1,
                attempt,
                stage: Stage::BackingOff,
            };
            return;
        }
        let Some(failure) = &mut self.failure else {
            unreachable!("the backward phase always has a failure to report")
        };
        failure.record_compensation_error(step, error, attempt, ending == Ending::TimedOut);
        self.phase = match self.policy.compensation_mode {
            CompensationMode::StopOnError => {
                failure.record_never_compensated(0..step);
                Phase::Done
            }
            CompensationMode::ContinueOnError => Phase::Backward {
                remaining: step,
                attempt: 0,
                stage: Stage::Start,
            },
        };
    }
}

// The run never pins its fields (steps and timers are pinned in their own
// boxes), so it is `Unpin` whatever `E` is.
impl<E, S: ?Sized + Step<E>> Unpin for Run<'_, E, S> {}

impl<E, S: ?Sized + Step<E>> Future for Run<'_, E, S> {
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.started && this.phase != Phase::Done {
            this.started = true;
            let deadline = this.policy.saga_timeout;
            this.start_timer(Slot::Saga, deadline);
        }
        loop {
            let progress = match this.phase {
                Phase::Forward {
                    step,
                    attempt,
                    stage,
                } => this.poll_forward(step, attempt, stage, cx),
                Phase::Backward {
                    remaining,
                    attempt,
                    stage,
                } => this.poll_backward(remaining, attempt, stage, cx),
                Phase::Done => panic!("saga `Run` polled after it completed"),
            };
            if progress.is_pending() {
                return Poll::Pending;
            }
            if this.phase == Phase::Done {
                this.stop_timer(Slot::Step);
                // Leave `Done` behind so that a further poll panics.
                return Poll::Ready(match this.failure.take() {
                    None => Ok(()),
                    Some(failure) => Err(failure),
                });
            }
        }
    }
}

impl<E, S: ?Sized + Step<E>> Drop for Run<'_, E, S> {
    fn drop(&mut self) {
        // Cancelled mid-step: drop what is in flight now, not at the next run.
        let in_flight = match self.phase {
            Phase::Forward { step, stage, .. } if stage != Stage::Start => Some(step),
            Phase::Backward {
                remaining, stage, ..
            } if stage != Stage::Start => remaining.checked_sub(1),
            _ => None,
        };
        if let Some(step) = in_flight.and_then(|step| self.steps.get_mut(step)) {
            step.as_mut().reset();
        }
        self.stop_timer(Slot::Step);
        self.stop_timer(Slot::Saga);
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
