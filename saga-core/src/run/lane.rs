//! The lanes: each step in flight occupies one, whose driver makes its
//! attempts (timeout, retry, backoff) and reports how the step ended.

use core::task::{Context, Poll};

use super::observe::Transition;
use super::scratch::{Lane, Stage};
use super::{Ending, Kind, LaneEnd, Run};
use crate::sleep::Slot;
use crate::{Recovery, Step, StepFailure};

impl<E, S: ?Sized + Step<E>> Run<'_, E, S> {
    /// Polls the step in `lane`, with the lane's own waker when the wave
    /// runs several steps side by side (and the run's waker otherwise).
    pub(super) fn poll_lane_in(
        &mut self,
        lane: usize,
        kind: Kind,
        cx: &mut Context<'_>,
    ) -> Poll<LaneEnd<E>> {
        let wave = self.wave();
        match self.scratch.wakers.as_ref().filter(|_| wave.limit > 1) {
            Some(wakers) => {
                let waker = wakers.waker(lane).clone();
                self.poll_lane(lane, kind, wave.halted, &mut Context::from_waker(&waker))
            }
            None => self.poll_lane(lane, kind, wave.halted, cx),
        }
    }

    /// A free lane, when the wave may start one more step.
    pub(super) fn claim_lane(&mut self) -> Option<usize> {
        if self.scratch.busy == self.wave().limit {
            return None;
        }
        if self.scratch.lanes[0].stage == Stage::Free {
            return Some(0);
        }
        if let Some(lane) = self.scratch.spare.pop() {
            return Some(lane);
        }
        let lane = self.scratch.fresh;
        self.scratch.fresh += 1;
        (lane < self.scratch.lanes.len()).then_some(lane)
    }

    /// A wave starts: every lane is free, and taken in index order again.
    pub(super) fn reset_pool(&mut self) {
        self.scratch.spare.clear();
        self.scratch.fresh = 1;
    }

    /// Frees a lane whose step ended.
    pub(super) fn release_lane(&mut self, lane: usize) {
        let slot = &mut self.scratch.lanes[lane];
        if slot.stage == Stage::Free {
            return;
        }
        slot.stage = Stage::Free;
        slot.panicked = None;
        self.scratch.busy -= 1;
        if lane != 0 {
            self.scratch.spare.push(lane);
        }
    }

    /// Starts the action or the compensation of `step` in `lane`.
    pub(super) fn start_lane(&mut self, lane: usize, step: usize, kind: Kind) {
        #[cfg(feature = "tracing")]
        let _entered = {
            let action = kind == Kind::Action;
            let span = crate::trace::step_span(&self.span, step, self.steps[step].name(), action);
            self.scratch.lanes[lane].span = span.clone();
            span.entered()
        };
        // Taken before anything that may panic, so `fail_in_flight` finds it.
        let slot = &mut self.scratch.lanes[lane];
        slot.step = step;
        slot.attempt = 1;
        slot.stage = Stage::Running;
        self.scratch.busy += 1;
        self.polling = Some(lane);
        self.begin_attempt(lane, step, 1, kind);
        if let Some(wakers) = &self.scratch.wakers {
            wakers.mark(lane);
        }
        self.polling = None;
    }

    pub(super) fn begin_attempt(&mut self, lane: usize, step: usize, attempt: u32, kind: Kind) {
        let policy = self.policy.step(step);
        let timeout = match kind {
            Kind::Action => policy.action_timeout(),
            Kind::Compensation => policy.compensation_timeout(),
        };
        self.set_timer(Slot::Lane(lane), timeout);
        let slot = &mut self.scratch.lanes[lane];
        slot.step = step;
        slot.attempt = attempt;
        slot.stage = Stage::Running;
        slot.last_error = None;
        self.transition(step, Transition::Started(kind, attempt));
    }

    /// Drives the step in `lane` through its attempts.
    pub(super) fn poll_lane(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        cx: &mut Context<'_>,
    ) -> Poll<LaneEnd<E>> {
        #[cfg(feature = "tracing")]
        let _entered = self.scratch.lanes[lane].span.clone().entered();
        self.polling = Some(lane);
        let end = self.drive_lane(lane, kind, halted, cx);
        self.polling = None;
        end
    }

    pub(super) fn drive_lane(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        cx: &mut Context<'_>,
    ) -> Poll<LaneEnd<E>> {
        loop {
            let Lane {
                step,
                attempt,
                stage,
                ..
            } = self.scratch.lanes[lane];
            match stage {
                Stage::Free => return Poll::Ready(LaneEnd::Succeeded),
                Stage::BackingOff => {
                    if !self.poll_timer(Slot::Lane(lane), cx) {
                        return Poll::Pending;
                    }
                    self.begin_attempt(lane, step, attempt + 1, kind);
                }
                Stage::Running => {
                    let (error, ending) =
                        if let Some(error) = self.scratch.lanes[lane].panicked.take() {
                            self.steps[step].as_mut().cancel();
                            (error, Ending::CutShort)
                        } else {
                            let current = self.steps[step].as_mut();
                            let polled = match kind {
                                Kind::Action => current.poll_action(cx),
                                Kind::Compensation => current.poll_compensate(cx),
                            };
                            match polled {
                                Poll::Ready(Ok(())) => {
                                    self.set_timer(Slot::Lane(lane), None);
                                    self.release_lane(lane);
                                    self.transition(step, Transition::Succeeded(kind, attempt));
                                    return Poll::Ready(LaneEnd::Succeeded);
                                }
                                Poll::Ready(Err(error)) => (error, Ending::Failed),
                                Poll::Pending => {
                                    if !self.poll_timer(Slot::Lane(lane), cx) {
                                        return Poll::Pending;
                                    }
                                    self.steps[step].as_mut().cancel();
                                    let Some(error) = self.timed_out_error() else {
                                        unreachable!("a lane timer only runs with a clock")
                                    };
                                    (error, Ending::TimedOut)
                                }
                            }
                        };
                    self.set_timer(Slot::Lane(lane), None);
                    self.transition(step, Transition::Failed(kind, attempt, &error));
                    if let Some(end) = self.after_attempt_error(lane, kind, halted, error, ending) {
                        return Poll::Ready(end);
                    }
                }
            }
        }
    }

    /// An attempt failed: schedule a retry (`None`), or end the lane.
    pub(super) fn after_attempt_error(
        &mut self,
        lane: usize,
        kind: Kind,
        halted: bool,
        error: E,
        ending: Ending,
    ) -> Option<LaneEnd<E>> {
        let Lane { step, attempt, .. } = self.scratch.lanes[lane];
        let policy = self.policy.step(step);
        let (retry, recovery) = match kind {
            Kind::Action => {
                let recovery = self.policy.recovery_for(&error);
                let retry = policy
                    .action_retry()
                    .filter(|_| recovery == Recovery::Retry);
                (retry, recovery)
            }
            Kind::Compensation => {
                let retries = self.steps[step].retries_compensation();
                (
                    policy.compensation_retry().filter(|_| retries),
                    Recovery::Compensate,
                )
            }
        };
        // Once the block failed or the run was interrupted, no new attempt starts.
        let retry = retry.filter(|retry| {
            attempt < retry.max_attempts() && (kind == Kind::Compensation || !halted)
        });
        let timed_out = ending == Ending::TimedOut;
        if let Some(retry) = retry {
            let delay = retry.delay_before(attempt + 1);
            self.transition(step, Transition::Retried(kind, attempt + 1, delay));
            if delay.is_zero() || self.clock.is_none() {
                self.begin_attempt(lane, step, attempt + 1, kind);
            } else {
                self.set_timer(Slot::Lane(lane), Some(delay));
                let slot = &mut self.scratch.lanes[lane];
                slot.stage = Stage::BackingOff;
                slot.last_error = Some((error, timed_out));
            }
            return None;
        }
        self.release_lane(lane);
        let recovery = match recovery {
            Recovery::Propagate => Recovery::Propagate,
            Recovery::Retry | Recovery::Compensate => Recovery::Compensate,
        };
        let failure = StepFailure {
            step,
            error,
            attempts: attempt,
            timed_out,
            compensation: false,
        };
        Some(LaneEnd::Failed(failure, recovery, ending))
    }

    /// Ends the lane's step from outside: cuts a running attempt short (it
    /// fails with `error`, or is merely cancelled without one), or gives up
    /// retrying (it fails with its last error).
    pub(super) fn stop_lane(&mut self, lane: usize, error: Option<E>) -> LaneEnd<E> {
        let Lane {
            step,
            attempt,
            stage,
            ..
        } = self.scratch.lanes[lane];
        self.set_timer(Slot::Lane(lane), None);
        self.release_lane(lane);
        let last_error = self.scratch.lanes[lane].last_error.take();
        let (error, timed_out, ending) = match (stage, last_error, error) {
            (Stage::BackingOff, Some((error, timed_out)), _) => (error, timed_out, Ending::Failed),
            (Stage::Free, ..) => return LaneEnd::Cancelled,
            (_, _, error) => {
                self.steps[step].as_mut().cancel();
                match error {
                    Some(error) => (error, false, Ending::CutShort),
                    None => return LaneEnd::Cancelled,
                }
            }
        };
        let failure = StepFailure {
            step,
            error,
            attempts: attempt,
            timed_out,
            compensation: false,
        };
        LaneEnd::Failed(failure, Recovery::Compensate, ending)
    }
}
