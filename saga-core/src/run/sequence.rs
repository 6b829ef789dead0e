//! Waves that run one step at a time, in lane 0 with the run's own waker:
//! single steps forward, and compensations one at a time (the sequential
//! modes, and single steps under `ConcurrentGroups`). Waves of several
//! steps side by side are `forward.rs`'s and `backward.rs`'s. Both use the
//! same lane driver (`start_attempt`, `poll_attempt` with its timeout,
//! `attempt_failed`, and `poll_lane` for panics and backoffs); here the
//! success path is inline, so that a step costs little more than its own
//! poll.

use crate::marker::StepTable;
use core::task::{Context, Poll};

use super::attempt::AttemptEnd;
use super::scratch::{Outcome, Stage};
use super::{Kind, Run};
use crate::marker::SagaKind;
use crate::sleep::Slot;

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// A forward sequence of single steps; an abort or the deadline is
    /// looked at before each. `Ready` when the wave is finished or halted.
    #[inline(always)]
    pub(super) fn run_sequence(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let lane = &self.scratch.lanes.first;
            let (step, attempt) = match lane.stage {
                Stage::Free => {
                    let step = self.wave.next;
                    if self.wave.halted || step == self.wave.end {
                        return Poll::Ready(());
                    }
                    // Before the next step of the wave (the next wave's
                    // first is looked at by `poll_forward`).
                    if self.watch {
                        let deadline =
                            self.plan.saga_timeout.is_some() && self.timer_elapsed(Slot::Saga, cx);
                        if deadline || self.abort_landed() {
                            self.interrupt_forward(deadline);
                            return Poll::Ready(());
                        }
                    }
                    self.wave.next = step + 1;
                    self.scratch.outcomes.single = Outcome::Running;
                    self.start_attempt(0, step, Kind::Action);
                    if self.durable.is_some() {
                        // Through the write-ahead gate first (`poll_lane`).
                        continue;
                    }
                    (step, 1)
                }
                Stage::Running if lane.panic.is_none() => (lane.step, lane.attempt),
                // A panic to settle, or a backoff.
                _ => {
                    let step = lane.step;
                    let Poll::Ready(end) = self.poll_lane(0, cx) else {
                        return Poll::Pending;
                    };
                    self.end_member(end, step);
                    continue;
                }
            };
            let (mut step, mut attempt) = (step, attempt);
            loop {
                #[cfg(feature = "tracing")]
                let _entered = self.enter_lane_span(0);
                match self.poll_attempt(0, step, Kind::Action, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => {
                        let next = self.wave.next;
                        let quiet = self.quiet && !self.watch && !self.wave.halted;
                        if quiet && next != self.wave.end {
                            // Nothing sees lane 0 between two steps (no
                            // observer, timer or subscriber, nothing to
                            // interrupt): the next step's first attempt
                            // takes it over, as a release and a start would.
                            self.wave.next = next + 1;
                            let lane = &mut self.scratch.lanes.first;
                            (lane.step, lane.attempt) = (next, 1);
                            (step, attempt) = (next, 1);
                            continue;
                        }
                        self.attempt_succeeded(0, step, Kind::Action, attempt);
                    }
                    Poll::Ready(Err((error, ending))) => {
                        if let Some(end) = self.attempt_failed(0, step, attempt, error, ending) {
                            self.end_member(end, step);
                        }
                    }
                }
                break;
            }
        }
    }

    /// A backward wave that compensates one step at a time (a deadline does
    /// not bound compensations). `Ready` when the
    /// wave is to be looked at again: finished or halted.
    #[inline(always)]
    pub(super) fn run_one_by_one_back(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let lane = &self.scratch.lanes.first;
            let (step, attempt) = match lane.stage {
                Stage::Free => {
                    let Some(step) = self.next_to_compensate() else {
                        return Poll::Ready(());
                    };
                    self.wave.next = step;
                    self.start_attempt(0, step, Kind::Compensation);
                    if self.durable.is_some() {
                        continue;
                    }
                    (step, 1)
                }
                Stage::Running if lane.panic.is_none() => (lane.step, lane.attempt),
                _ => {
                    let Poll::Ready(end) = self.poll_lane(0, cx) else {
                        return Poll::Pending;
                    };
                    self.end_compensation(end);
                    continue;
                }
            };
            #[cfg(feature = "tracing")]
            let _entered = self.enter_lane_span(0);
            match self.poll_attempt(0, step, Kind::Compensation, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {
                    self.attempt_succeeded(0, step, Kind::Compensation, attempt);
                    self.end_compensation(AttemptEnd::Succeeded);
                }
                Poll::Ready(Err((error, ending))) => {
                    if let Some(end) = self.attempt_failed(0, step, attempt, error, ending) {
                        self.end_compensation(end);
                    }
                }
            }
        }
    }
}
