//! One step's attempts in a lane: starting each attempt, its timeout, what
//! a failed attempt leads to (the classifier, a retry now or after a
//! backoff, or the step's end), and cutting an attempt short from outside.

use crate::marker::StepTable;
use core::task::{Context, Poll};
use core::time::Duration;

use super::forward::member;
use super::observe::Transition;
use super::scratch::{Lane, Outcome, Stage};
use super::{Calling, Ending, Interrupted, Kind, Run};
use crate::marker::SagaKind;
use crate::retry::RetrySpec;
use crate::sleep::{Slot, Timers};
use crate::{Recovery, StepFailure, StopReason};

/// What failed an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    // The step returned an error, or timed out.
    Returned,
    // A panic (see `Run::fail_in_flight`).
    Panicked,
    // A crash before a restart left it with no outcome.
    Crashed,
}

/// How a lane's step ended.
pub(super) enum AttemptEnd<E> {
    Succeeded,
    Failed(StepFailure<E>, Recovery, Ending),
    // Cut short because another member of its group failed: no error of its own.
    Cancelled,
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// Starts the first attempt at `kind` of `step`, in `lane`.
    #[inline(always)]
    pub(super) fn start_attempt(&mut self, lane: usize, step: usize, kind: Kind) {
        // Step spans and events live inside the run's span, and only when a
        // subscriber enabled it: otherwise a step pays one branch for them.
        #[cfg(feature = "tracing")]
        let _entered = (!self.span.is_disabled()).then(|| {
            let action = kind == Kind::Action;
            let name = self.steps.step_name(step);
            let span = crate::trace::step_span(&self.span, step, name, action);
            self.scratch.lanes[lane].span = span.clone();
            span.entered()
        });
        self.scratch.occupy(lane, step, kind);
        if self.durable.is_some() {
            return self.start_durable_attempt(lane, step, kind);
        }
        self.begin_attempt(lane, step, 1, kind);
    }

    /// Starts attempt number `attempt + 1` of the step in `lane`.
    fn begin_retry(&mut self, lane: usize, step: usize, attempt: u32, kind: Kind) {
        let slot = &mut self.scratch.lanes[lane];
        slot.attempt = attempt + 1;
        slot.stage = Stage::Running;
        self.begin_attempt(lane, step, attempt + 1, kind);
    }

    /// The lane holds `attempt` of its step, running: its timer, and the
    /// observer told.
    #[inline(always)]
    pub(super) fn begin_attempt(&mut self, lane: usize, step: usize, attempt: u32, kind: Kind) {
        if self.timers.is_some() {
            self.start_lane_timer(lane, step, kind, attempt);
        }
        self.transition(step, Transition::Started(kind, attempt));
        self.hold_for_journal(lane);
    }

    /// Starts the timeout of the attempt in `lane`, if its step has one.
    #[inline(never)]
    fn start_lane_timer(&mut self, lane: usize, step: usize, kind: Kind, attempt: u32) {
        let policy = self.plan.step(step);
        let timeout = match kind {
            Kind::Action => policy.action_timeout(),
            Kind::Compensation => policy.compensation_timeout(),
        };
        let (Some(timeout), Some(timers)) = (timeout, self.timers.as_deref_mut()) else {
            return;
        };
        // Should the sleeper panic before an action's first attempt began,
        // nothing of the step ran (see `fail_in_flight`).
        self.calling = match (kind, attempt) {
            (Kind::Action, 1) => Calling::FirstTimer(lane),
            _ => Calling::Sleeper(Some(lane)),
        };
        timers.start(Slot::Lane(lane), timeout);
        self.calling = Calling::Nothing;
    }

    /// Drives the step in `lane` through its attempts, until it ends.
    #[inline(never)]
    pub(super) fn poll_lane(&mut self, lane: usize, cx: &mut Context<'_>) -> Poll<AttemptEnd<E>> {
        #[cfg(feature = "tracing")]
        let _entered = self.enter_lane_span(lane);
        loop {
            let Lane {
                step,
                kind,
                attempt,
                stage,
                ..
            } = self.scratch.lanes[lane];
            match stage {
                Stage::Free => return Poll::Ready(AttemptEnd::Succeeded),
                Stage::Journaling => {
                    if !self.journal_gate(lane, cx) {
                        return Poll::Pending;
                    }
                    self.scratch.lanes[lane].stage = Stage::Running;
                }
                Stage::BackingOff => {
                    // Without a clock (the sleeper panicked), retry at once.
                    if self.timers.is_some() && !self.timer_elapsed(Slot::Lane(lane), cx) {
                        return Poll::Pending;
                    }
                    self.begin_retry(lane, step, attempt, kind);
                }
                Stage::Running => {
                    let panic = match self.scratch.lanes[lane].panic.is_some() {
                        true => {
                            // Cancelled while the lane holds the panic: should
                            // that panic too, the attempt keeps its first.
                            self.cancel_attempt(lane, step);
                            self.scratch.lanes[lane].panic.take()
                        }
                        false => None,
                    };
                    let (error, ending, last, crashed) = match panic {
                        Some(panic) => {
                            if !panic.announced {
                                let failed = Transition::Failed(kind, attempt, &panic.error);
                                self.announce_failure(lane, step, failed, panic.last);
                            }
                            (panic.error, panic.ending, panic.last, panic.crashed)
                        }
                        None => match self.poll_attempt(lane, step, kind, cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Ok(())) => {
                                self.attempt_succeeded(lane, step, kind, attempt);
                                return Poll::Ready(AttemptEnd::Succeeded);
                            }
                            Poll::Ready(Err((error, ending))) => {
                                let end = self.attempt_failed(lane, step, attempt, error, ending);
                                match end {
                                    Some(end) => return Poll::Ready(end),
                                    None => continue,
                                }
                            }
                        },
                    };
                    self.stop_lane_timer(lane);
                    let cause = match crashed {
                        true => Cause::Crashed,
                        false => Cause::Panicked,
                    };
                    if let Some(end) = self.after_error(lane, error, ending, last, cause) {
                        return Poll::Ready(end);
                    }
                }
            }
        }
    }

    /// Enters the span of the step in `lane`, when the run is traced.
    #[cfg(feature = "tracing")]
    #[inline(always)]
    pub(super) fn enter_lane_span(&self, lane: usize) -> Option<tracing::span::EnteredSpan> {
        (!self.span.is_disabled()).then(|| self.scratch.lanes[lane].span.clone().entered())
    }

    /// The attempt in `lane` succeeded: the step ends. Its success is
    /// recorded before the observer hears of it, so that it still counts
    /// should the observer panic.
    #[inline(always)]
    pub(super) fn attempt_succeeded(&mut self, lane: usize, step: usize, kind: Kind, attempt: u32) {
        self.stop_lane_timer(lane);
        self.scratch.release(lane);
        match kind {
            Kind::Action => {
                self.scratch.outcomes[member(&self.wave, step)] = Outcome::Applied;
            }
            Kind::Compensation => {
                if let Some(failure) = &mut self.failure {
                    failure.record_compensated();
                }
            }
        }
        self.transition(step, Transition::Succeeded(kind, attempt));
    }

    /// The attempt in `lane` returned an error or timed out: a retry begins
    /// (`None`), or the step ends.
    #[inline(never)]
    pub(super) fn attempt_failed(
        &mut self,
        lane: usize,
        step: usize,
        attempt: u32,
        error: E,
        ending: Ending,
    ) -> Option<AttemptEnd<E>> {
        let kind = self.scratch.lanes[lane].kind;
        self.announce_failure(lane, step, Transition::Failed(kind, attempt, &error), false);
        self.stop_lane_timer(lane);
        self.after_error(lane, error, ending, false, Cause::Returned)
    }

    /// Tells the observer of a failed attempt (or of its retry). Should the
    /// observer panic, the attempt fails with the panic instead of the
    /// error it was told of, for good when `last` (see `fail_in_flight`).
    fn announce_failure(
        &mut self,
        lane: usize,
        step: usize,
        transition: Transition<'_, E>,
        last: bool,
    ) {
        self.failing_lane = Some((lane, last));
        self.transition(step, transition);
        self.failing_lane = None;
    }

    /// Polls the attempt in flight; `Err` with how it ended badly.
    #[inline(always)]
    pub(super) fn poll_attempt(
        &mut self,
        lane: usize,
        step: usize,
        kind: Kind,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), (E, Ending)>> {
        self.calling = Calling::Step(lane);
        let steps = self.steps.as_mut();
        let polled = match kind {
            Kind::Action => steps.poll_action(step, cx),
            Kind::Compensation => steps.poll_compensate(step, cx),
        };
        self.calling = Calling::Nothing;
        match polled {
            Poll::Ready(result) => Poll::Ready(result.map_err(|error| (error, Ending::Failed))),
            Poll::Pending => {
                if self.timers.is_none() || !self.timer_elapsed(Slot::Lane(lane), cx) {
                    return Poll::Pending;
                }
                self.cancel_attempt(lane, step);
                let Some(error) = self.timed_out_error() else {
                    unreachable!("a lane timer only runs with a clock")
                };
                Poll::Ready(Err((error, Ending::TimedOut)))
            }
        }
    }

    /// Cancels the attempt in flight: dropping its future runs the step's
    /// code, which may panic too.
    fn cancel_attempt(&mut self, lane: usize, step: usize) {
        self.calling = Calling::Step(lane);
        self.steps.as_mut().cancel(step);
        self.calling = Calling::Nothing;
    }

    #[inline(always)]
    fn stop_lane_timer(&mut self, lane: usize) {
        if self.timers.is_some() {
            self.set_timer(Slot::Lane(lane), None);
        }
    }

    /// An attempt failed (by `cause`): schedule a retry (`None`), or end
    /// the lane. A `last` attempt is never retried.
    fn after_error(
        &mut self,
        lane: usize,
        error: E,
        ending: Ending,
        last: bool,
        cause: Cause,
    ) -> Option<AttemptEnd<E>> {
        let Lane {
            step,
            kind,
            attempt,
            ..
        } = self.scratch.lanes[lane];
        let plan = self.plan;
        let policy = plan.step(step);
        let (retry, recovery) = match kind {
            Kind::Action => {
                let recovery = if last {
                    Recovery::Compensate
                } else {
                    self.recovery_for(lane, &error)
                };
                let retry = policy
                    .action_retry()
                    .filter(|_| recovery == Recovery::Retry);
                // Once the block failed or the run was interrupted (also by
                // an abort that landed during this very attempt), no new
                // action attempt starts.
                let stopped = self.wave.halted || self.abort_landed();
                (retry.filter(|_| !stopped), recovery)
            }
            Kind::Compensation => {
                let retries = self.steps.retries_compensation(step);
                let retry = policy.compensation_retry().filter(|_| retries);
                (retry, Recovery::Compensate)
            }
        };
        let timed_out = ending == Ending::TimedOut;
        if let Some(retry) = retry.filter(|retry| !last && attempt < retry.max_attempts()) {
            let delay = self.retry_delay(lane, retry, attempt + 1);
            let retried = Transition::Retried(kind, attempt + 1, delay);
            self.announce_failure(lane, step, retried, true);
            if delay.is_zero() || self.timers.is_none() {
                self.begin_retry(lane, step, attempt, kind);
            } else {
                self.set_timer(Slot::Lane(lane), Some(delay));
                let slot = &mut self.scratch.lanes[lane];
                slot.stage = Stage::BackingOff;
                slot.last_error = Some((error, timed_out));
            }
            return None;
        }
        self.scratch.release(lane);
        let recovery = match recovery {
            Recovery::Propagate => Recovery::Propagate,
            Recovery::Retry | Recovery::Compensate => Recovery::Compensate,
        };
        let reason = match (cause, timed_out) {
            (Cause::Crashed, _) => StopReason::Crashed,
            (Cause::Panicked, _) => StopReason::Panicked,
            (Cause::Returned, true) => StopReason::TimedOut,
            (Cause::Returned, false) => StopReason::Failed,
        };
        // An attempt that never began is not counted: the saga stopped
        // before the step.
        let attempts = attempt - u32::from(ending == Ending::Unstarted);
        let mut failure = self.step_failure(step, error, attempts, timed_out, reason);
        failure.compensation = kind == Kind::Compensation;
        Some(AttemptEnd::Failed(failure, recovery, ending))
    }

    /// The classifier's decision (retry by policy when there is none, and
    /// compensate once it panicked).
    fn recovery_for(&mut self, lane: usize, error: &E) -> Recovery {
        let Some(classify) = self.plan.classify.as_deref() else {
            return Recovery::Retry;
        };
        if self.classifier_muted {
            return Recovery::Compensate;
        }
        self.calling = Calling::Classifier(lane);
        let recovery = classify(error);
        self.calling = Calling::Nothing;
        recovery
    }

    /// The wait before `attempt`, through the policy's jitter function
    /// unless it panicked.
    fn retry_delay(&mut self, lane: usize, retry: &RetrySpec, attempt: u32) -> Duration {
        let delay = retry.backoff_before(attempt);
        match retry.jitter() {
            Some(jitter) if !self.jitter_muted && !delay.is_zero() => {
                self.calling = Calling::Jitter(lane);
                let delay = jitter(delay);
                self.calling = Calling::Nothing;
                delay
            }
            _ => delay,
        }
    }

    /// Ends the lane's step from outside. A running attempt is cut short: it
    /// fails with `error`, or without one is merely cancelled. An attempt
    /// waiting to be retried fails with `error`, or else its last error.
    pub(super) fn stop_lane(&mut self, lane: usize, error: Option<E>) -> AttemptEnd<E> {
        let Lane {
            step,
            kind,
            attempt,
            stage,
            ..
        } = self.scratch.lanes[lane];
        if let Stage::Running | Stage::Journaling = stage {
            // Before the lane is freed: should dropping the attempt panic,
            // the lane still fails (see `fail_in_flight`).
            self.cancel_attempt(lane, step);
        }
        self.stop_lane_timer(lane);
        let last_error = self.scratch.lanes[lane].last_error.take();
        self.scratch.release(lane);
        // An error given is the interrupt's.
        let interrupt = self
            .interrupt
            .map_or(StopReason::Aborted, Interrupted::reason);
        let (error, timed_out, ending, reason) = match (stage, last_error) {
            (Stage::Free, _) => return AttemptEnd::Cancelled,
            (Stage::BackingOff, Some((last, timed_out))) => match error {
                Some(error) => {
                    // The retry the observer was told of will not happen.
                    self.transition(step, Transition::Failed(kind, attempt, &error));
                    (error, false, Ending::Failed, interrupt)
                }
                None if timed_out => (last, true, Ending::Failed, StopReason::TimedOut),
                None => (last, false, Ending::Failed, StopReason::Failed),
            },
            (_, _) => {
                let Some(error) = error else {
                    self.transition(step, Transition::CutShort(attempt));
                    return AttemptEnd::Cancelled;
                };
                self.transition(step, Transition::Failed(kind, attempt, &error));
                (error, false, Ending::CutShort, interrupt)
            }
        };
        let mut failure = self.step_failure(step, error, attempt, timed_out, reason);
        failure.compensation = kind == Kind::Compensation;
        AttemptEnd::Failed(failure, Recovery::Compensate, ending)
    }
}
