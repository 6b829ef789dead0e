//! [`Run`]: the poll-driven state machine of one saga run.

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::saga::Policy;
use crate::{CompensationMode, Recovery, SagaError, Step};

/// The future of one saga run, returned by [`Saga::run`](crate::Saga::run).
///
/// A small state machine over the saga's steps: an index, a phase and the
/// error being built. It holds no step futures itself (each step keeps its
/// own in flight), allocates nothing per poll, and never recurses, so sagas
/// of any length run on a small stack.
///
/// It is `Unpin`, and `Send` when the saga's steps and `E` are.
///
/// # Cancel safety
///
/// Dropping a `Run` before it completes stops the saga without compensating:
/// the step in flight is [reset](Step::reset), so its future is dropped, and
/// the steps already applied stay applied. Poll it to completion (or spawn it
/// with a runtime adapter) to get backward recovery.
///
/// # Panics
///
/// Polling a `Run` after it returned `Ready` panics.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Run<'a, E, S: ?Sized + Step<E> = dyn Step<E> + Send + 'static> {
    steps: &'a mut [Pin<Box<S>>],
    policy: &'a Policy<E>,
    phase: Phase,
    // Set when an action failed; completed by the backward phase.
    failure: Option<SagaError<E>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    // The action of this step is to run next (or is in flight).
    Forward { step: usize, started: bool },
    // Steps `0..remaining` are still to compensate, the last one first.
    Backward { remaining: usize },
    Done,
}

impl<'a, E, S: ?Sized + Step<E>> Run<'a, E, S> {
    pub(crate) fn new(steps: &'a mut [Pin<Box<S>>], policy: &'a Policy<E>) -> Self {
        Run {
            steps,
            policy,
            phase: Phase::Forward {
                step: 0,
                started: false,
            },
            failure: None,
        }
    }

    fn poll_forward(&mut self, step: usize, started: bool, cx: &mut Context<'_>) -> Poll<()> {
        let Some(current) = self.steps.get_mut(step) else {
            self.phase = Phase::Done;
            return Poll::Ready(());
        };
        if !started {
            current.as_mut().reset();
            self.phase = Phase::Forward {
                step,
                started: true,
            };
        }
        let Poll::Ready(result) = current.as_mut().poll_action(cx) else {
            return Poll::Pending;
        };
        match result {
            Ok(()) => {
                self.phase = Phase::Forward {
                    step: step + 1,
                    started: false,
                };
            }
            Err(error) => {
                let recovery = self.policy.recovery_for(&error);
                let mut failure = SagaError::new(error, step, current.name(), recovery);
                // The failing step first, when its compensation covers a failed action.
                let remaining = step + usize::from(current.compensates_failed_action());
                self.phase = match recovery {
                    Recovery::Propagate => {
                        failure.record_never_compensated(0..remaining);
                        Phase::Done
                    }
                    Recovery::Compensate => Phase::Backward { remaining },
                };
                self.failure = Some(failure);
            }
        }
        Poll::Ready(())
    }

    fn poll_backward(&mut self, remaining: usize, cx: &mut Context<'_>) -> Poll<()> {
        let Some(step) = remaining.checked_sub(1) else {
            self.phase = Phase::Done;
            return Poll::Ready(());
        };
        let Poll::Ready(result) = self.steps[step].as_mut().poll_compensate(cx) else {
            return Poll::Pending;
        };
        let failure = self
            .failure
            .as_mut()
            .expect("the backward phase always has a failure to report");
        self.phase = Phase::Backward { remaining: step };
        match result {
            Ok(()) => failure.record_compensated(),
            Err(error) => {
                failure.record_compensation_error(step, error);
                if self.policy.compensation_mode == CompensationMode::StopOnError {
                    failure.record_never_compensated(0..step);
                    self.phase = Phase::Done;
                }
            }
        }
        Poll::Ready(())
    }
}

// The run never pins its fields (the steps are pinned in their own boxes), so
// it is `Unpin` whatever `E` is.
impl<E, S: ?Sized + Step<E>> Unpin for Run<'_, E, S> {}

impl<E, S: ?Sized + Step<E>> Future for Run<'_, E, S> {
    type Output = Result<(), SagaError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let progress = match this.phase {
                Phase::Forward { step, started } => this.poll_forward(step, started, cx),
                Phase::Backward { remaining } => this.poll_backward(remaining, cx),
                Phase::Done => panic!("saga `Run` polled after it completed"),
            };
            if progress.is_pending() {
                return Poll::Pending;
            }
            if this.phase == Phase::Done {
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
            Phase::Forward {
                step,
                started: true,
            } => Some(step),
            Phase::Backward { remaining } => remaining.checked_sub(1),
            _ => None,
        };
        if let Some(step) = in_flight.and_then(|step| self.steps.get_mut(step)) {
            step.as_mut().reset();
        }
    }
}

impl<E, S: ?Sized + Step<E>> fmt::Debug for Run<'_, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("steps", &self.steps.len())
            .field("phase", &self.phase)
            .field("failed", &self.failure.is_some())
            .finish()
    }
}
