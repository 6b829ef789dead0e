//! The sequential fast path: a saga of single steps, without timeouts or an
//! observer, runs as a plain loop over its steps; the first failure hands
//! over to the lanes machinery.

use core::task::{Context, Poll};

use super::scratch::{Outcome, Stage};
use super::{Ending, Kind, Phase, Run, Wave};
use crate::{AbortHandle, CompensationMode, InFlight, Recovery, Step, StepFailure};

impl<E, S: ?Sized + Step<E>> Run<'_, E, S> {
    /// Runs actions one after the other while they succeed at once or suspend;
    /// a failure hands over to the lanes machinery (retries, compensation).
    #[inline(always)]
    pub(super) fn poll_sequential(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let resumed = core::mem::take(&mut self.resumed);
        if let Some(abort) = &self.abort {
            if abort.handle.poll_aborted(cx) {
                self.sequential_aborted(resumed);
                return Poll::Ready(());
            }
        }
        let Run {
            steps,
            cursor,
            abort,
            resumed,
            ..
        } = self;
        let abort = abort.as_ref().map(|abort| &abort.handle);
        let mut failed = None;
        while let Some(current) = steps.get_mut(*cursor) {
            match current.as_mut().poll_action(cx) {
                Poll::Ready(Ok(())) => *cursor += 1,
                Poll::Ready(Err(error)) => {
                    failed = Some(error);
                    break;
                }
                Poll::Pending => {
                    *resumed = true;
                    return Poll::Pending;
                }
            }
            // An abort stops the saga before its next action.
            if abort.is_some_and(AbortHandle::is_aborted) {
                self.sequential_aborted(false);
                return Poll::Ready(());
            }
        }
        match failed {
            None => self.phase = Phase::Done,
            Some(error) => self.sequential_failed(self.cursor, Kind::Action, error),
        }
        Poll::Ready(())
    }

    /// An abort reached the fast path: the lanes machinery handles it, with
    /// the step at the cursor in flight (`in_flight`) or not started.
    #[cold]
    #[inline(never)]
    pub(super) fn sequential_aborted(&mut self, in_flight: bool) {
        if self.cursor == self.steps.len() {
            self.phase = Phase::Done;
        } else if in_flight {
            self.enter_lane(self.cursor, Kind::Action);
        } else {
            self.phase = self.lanes_wave(self.cursor);
        }
    }

    /// Compensates steps one after the other, last first, while they succeed
    /// at once or suspend; a failure hands over to the lanes machinery.
    #[inline]
    pub(super) fn poll_sequential_back(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Every step below the cursor needs compensation (see `backward_wave`).
        let Run {
            steps,
            cursor,
            compensated,
            ..
        } = self;
        let mut failed = None;
        for current in steps[..*cursor].iter_mut().rev() {
            match current.as_mut().poll_compensate(cx) {
                Poll::Ready(Ok(())) => {
                    *cursor -= 1;
                    *compensated += 1;
                }
                Poll::Ready(Err(error)) => {
                    failed = Some(error);
                    break;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.flush_compensated();
        match failed {
            None => self.phase = Phase::Done,
            Some(error) => self.sequential_failed(self.cursor - 1, Kind::Compensation, error),
        }
        Poll::Ready(())
    }

    /// Moves the fast path's count of compensations into the report.
    pub(super) fn flush_compensated(&mut self) {
        if let Some(failure) = &mut self.failure {
            failure.record_compensated_many(core::mem::take(&mut self.compensated));
        }
    }

    /// Moves `step`'s attempt in flight from the fast path into lane 0, as if
    /// the lanes machinery had started it.
    #[cold]
    pub(super) fn enter_lane(&mut self, step: usize, kind: Kind) {
        let wave = Wave {
            start: step,
            end: step + 1,
            next: if kind == Kind::Action { step + 1 } else { step },
            limit: 1,
            on_failure: InFlight::Finish,
            halted: false,
        };
        self.phase = match kind {
            Kind::Action => {
                self.scratch.outcomes.reset(1);
                self.scratch.outcomes[0] = Outcome::Running;
                Phase::Forward(wave)
            }
            Kind::Compensation => Phase::Backward(wave),
        };
        let lane = &mut self.scratch.lanes[0];
        lane.step = step;
        lane.attempt = 1;
        lane.stage = Stage::Running;
        self.scratch.busy = 1;
    }

    /// The fast path met a failure: hand the attempt to lane 0 and let the
    /// general machinery decide (retry, compensate, report).
    #[cold]
    #[inline(never)]
    pub(super) fn sequential_failed(&mut self, step: usize, kind: Kind, error: E) {
        // Nothing to retry and nothing to classify: settle it here.
        let policy = self.policy.step(step);
        let retry = match kind {
            Kind::Action => self.policy.classify.is_some() || policy.action_retry().is_some(),
            Kind::Compensation => policy.compensation_retry().is_some(),
        };
        if !retry {
            return self.settle_failure(step, kind, error);
        }
        self.enter_lane(step, kind);
        self.polling = Some(0);
        let end = self.after_attempt_error(0, kind, false, error, Ending::Failed);
        self.polling = None;
        if let Some(end) = end {
            match kind {
                Kind::Action => self.end_member(end, step),
                Kind::Compensation => self.end_compensation(end),
            }
        }
    }

    /// A failure with no retry to make: recorded as the lanes machinery would,
    /// and the fast path goes on (backward), or the run ends.
    #[cold]
    #[inline(never)]
    fn settle_failure(&mut self, step: usize, kind: Kind, error: E) {
        let failure = StepFailure {
            step,
            error,
            attempts: 1,
            timed_out: false,
            compensation: false,
        };
        match kind {
            Kind::Action => {
                self.record_failure(failure, Recovery::Compensate);
                // The failing step first, when it compensates a failed action.
                self.cursor = step + usize::from(self.steps[step].compensates_failed_action());
                self.phase = Phase::SequentialBack;
            }
            Kind::Compensation => {
                let stop = self.policy.compensation_mode == CompensationMode::StopOnError;
                let Some(report) = &mut self.failure else {
                    unreachable!("the backward phase always has a failure to report")
                };
                report.record_compensation_error(failure);
                if stop {
                    report.record_never_compensated(0..step);
                    self.phase = Phase::Done;
                } else {
                    self.cursor = step;
                }
            }
        }
    }
}
