//! The blocks of a saga (single steps and parallel groups) run forward as
//! waves of lanes, and are compensated backward the same way.

use alloc::vec::Vec;
use core::task::{Context, Poll};

use super::observe::Transition;
use super::scratch::{Lane, Outcome, Stage};
use super::{Interrupted, Kind, LaneEnd, Phase, Run, Wave};
use crate::group::GroupSpec;
use crate::lanes::{LaneWakers, WORD};
use crate::sleep::Slot;
use crate::{CompensationMode, InFlight, Recovery, SagaError, Step, StepFailure};

impl<'a, E, S: ?Sized + Step<E>> Run<'a, E, S> {
    /// The group containing `step`, if any.
    pub(super) fn group_of(&self, step: usize) -> Option<&'a GroupSpec> {
        let groups: &'a [GroupSpec] = self.groups;
        let found = groups.partition_point(|group| group.members.end <= step);
        groups
            .get(found)
            .filter(|group| group.members.contains(&step))
    }

    pub(super) fn forward_wave(&mut self, start: usize) -> Phase {
        if start == self.steps.len() {
            return Phase::Done;
        }
        if self.fast && self.interrupt.is_none() {
            self.cursor = start;
            self.resumed = false;
            return Phase::Sequential;
        }
        self.lanes_wave(start)
    }

    /// The forward wave over the block at `start`, in the lanes machinery.
    pub(super) fn lanes_wave(&mut self, start: usize) -> Phase {
        let (end, limit, on_failure) = match self.group_of(start) {
            Some(group) => (group.members.end, group.limit, group.on_failure),
            None => (start + 1, 1, InFlight::Finish),
        };
        self.scratch.outcomes.reset(end - start);
        self.reset_pool();
        Phase::Forward(Wave {
            start,
            end,
            next: start,
            limit,
            on_failure,
            halted: false,
        })
    }

    /// The backward wave over the block that ends at `end`.
    pub(super) fn backward_wave(&mut self, end: usize) -> Phase {
        let Some(last) = end.checked_sub(1) else {
            return Phase::Done;
        };
        let sequential = matches!(
            self.policy.compensation_mode,
            CompensationMode::StopOnError | CompensationMode::ContinueOnError
        );
        if self.fast && sequential {
            // Only the failed step may not need compensation: leave it out
            // here, so that the fast path compensates all it passes.
            self.cursor = match self.failed_block {
                Some((step, block_end)) if block_end == end && !self.needs_compensation(step) => {
                    step
                }
                _ => end,
            };
            return Phase::SequentialBack;
        }
        let group = self.group_of(last);
        let (start, limit) = match self.policy.compensation_mode {
            CompensationMode::Concurrent => (0, self.scratch.lanes()),
            CompensationMode::ConcurrentGroups => {
                group.map_or((last, 1), |group| (group.members.start, group.limit))
            }
            _ => (group.map_or(last, |group| group.members.start), 1),
        };
        self.reset_pool();
        Phase::Backward(Wave {
            start,
            end,
            next: end,
            limit,
            on_failure: InFlight::Finish,
            halted: false,
        })
    }

    pub(super) fn outcome_mut(&mut self, step: usize, start: usize) -> &mut Outcome {
        &mut self.scratch.outcomes[step - start]
    }

    /// Whether `step` is to be compensated: every step before the failed
    /// block, and the members of the failed block that ran (by rule 3).
    pub(super) fn needs_compensation(&self, step: usize) -> bool {
        match self.failed_block {
            Some((start, end)) if (start..end).contains(&step) => match self.scratch.outcomes
                [step - start]
            {
                Outcome::Applied => true,
                Outcome::Failed | Outcome::CutShort => self.steps[step].compensates_failed_action(),
                Outcome::NotStarted | Outcome::Running => false,
            },
            _ => true,
        }
    }

    /// Records an action failure: the first is the saga's error, later ones
    /// (in the same parallel group) are concurrent failures.
    pub(super) fn record_failure(&mut self, failure: StepFailure<E>, recovery: Recovery) {
        match &mut self.failure {
            Some(first) => first.record_concurrent_failure(failure),
            None => {
                let name = self.steps[failure.step].name();
                self.failure = Some(SagaError::new(failure, name, recovery));
            }
        }
    }

    /// The wave in progress. Waves live only in `self.phase`, never in a
    /// local copy, so that a panic in a step (see `fail_in_flight`) cannot
    /// lose an update.
    pub(super) fn wave(&self) -> Wave {
        match self.phase {
            Phase::Forward(wave) | Phase::Backward(wave) => wave,
            Phase::Start
            | Phase::Sequential
            | Phase::SequentialBack
            | Phase::Done
            | Phase::Reported => {
                unreachable!("no wave outside the forward and backward phases")
            }
        }
    }

    pub(super) fn update_wave(&mut self, update: impl FnOnce(&mut Wave)) {
        if let Phase::Forward(wave) | Phase::Backward(wave) = &mut self.phase {
            update(wave);
        }
    }

    /// How many of the wave's lanes have a step in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.scratch.busy
    }

    pub(super) fn lowest_in_flight(&self) -> Option<usize> {
        (0..self.scratch.lanes.len())
            .map(|lane| &self.scratch.lanes[lane])
            .filter(|lane| lane.stage != Stage::Free)
            .map(|lane| lane.step)
            .min()
    }

    /// Polls the steps in flight that were woken (the one step of a single
    /// step wave at every poll); returns whether one of them ended.
    pub(super) fn poll_lanes(&mut self, kind: Kind, cx: &mut Context<'_>) -> bool {
        let mut ended = false;
        if self.wave().limit == 1 {
            if self.scratch.lanes[0].stage != Stage::Free {
                ended |= self.poll_and_end(0, kind, cx);
            }
            return ended;
        }
        let words = self.scratch.wakers.as_ref().map_or(0, LaneWakers::words);
        for word in 0..words {
            let mut woken = self
                .scratch
                .wakers
                .as_ref()
                .map_or(0, |wakers| wakers.take_word(word));
            while woken != 0 {
                let lane = word * WORD + woken.trailing_zeros() as usize;
                woken &= woken - 1;
                if self.scratch.lanes[lane].stage != Stage::Free {
                    ended |= self.poll_and_end(lane, kind, cx);
                }
            }
        }
        ended
    }

    pub(super) fn poll_and_end(&mut self, lane: usize, kind: Kind, cx: &mut Context<'_>) -> bool {
        let step = self.scratch.lanes[lane].step;
        let Poll::Ready(end) = self.poll_lane_in(lane, kind, cx) else {
            return false;
        };
        match kind {
            Kind::Action => self.end_member(end, step),
            Kind::Compensation => self.end_compensation(end),
        }
        true
    }

    /// A compensation of the backward wave ended.
    pub(super) fn end_compensation(&mut self, end: LaneEnd<E>) {
        let Some(failure) = &mut self.failure else {
            unreachable!("the backward phase always has a failure to report")
        };
        match end {
            LaneEnd::Succeeded | LaneEnd::Cancelled => failure.record_compensated(),
            LaneEnd::Failed(error, ..) => {
                failure.record_compensation_error(error);
                if self.policy.compensation_mode == CompensationMode::StopOnError {
                    self.update_wave(|wave| wave.halted = true);
                }
            }
        }
    }

    /// A member of the forward wave ended.
    pub(super) fn end_member(&mut self, end: LaneEnd<E>, step: usize) {
        let wave = self.wave();
        let outcome = match end {
            LaneEnd::Succeeded => Outcome::Applied,
            LaneEnd::Cancelled => Outcome::CutShort,
            LaneEnd::Failed(failure, recovery, ending) => {
                self.record_failure(failure, recovery);
                ending.outcome()
            }
        };
        *self.outcome_mut(step, wave.start) = outcome;
        let failed = matches!(outcome, Outcome::Failed | Outcome::CutShort);
        if failed && !wave.halted {
            self.update_wave(|wave| wave.halted = true);
            if wave.on_failure == InFlight::CutShort {
                self.stop_members(false);
            }
        }
    }

    /// Stops the members in flight. Those waiting to retry fail with their
    /// last error. Running ones are cut short: after an interrupt (when it
    /// cuts), each fails with the interrupt's error; after a sibling failed,
    /// they are cancelled with no error of their own.
    pub(super) fn stop_members(&mut self, interrupted: bool) {
        for lane in 0..self.scratch.lanes.len() {
            let Lane { step, stage, .. } = self.scratch.lanes[lane];
            let error = match stage {
                Stage::Free => continue,
                Stage::BackingOff => None,
                Stage::Running if !interrupted => None,
                Stage::Running => match self.interrupt {
                    Some(interrupt)
                        if interrupt.deadline || self.policy.on_abort == InFlight::CutShort =>
                    {
                        self.interrupt_error(interrupt.deadline)
                    }
                    // Aborted with `InFlight::Finish`: let it finish.
                    _ => continue,
                },
            };
            let end = self.stop_lane(lane, error);
            self.end_member(end, step);
        }
    }

    /// Starts what can start, polls what was woken. `Ready` when a step
    /// ended (so more may start, or the wave may be over); steps that just
    /// started were polled already, so they are no reason to poll again.
    pub(super) fn poll_forward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(error) = self.stray_failure.take() {
            let wave = self.wave();
            let step = self
                .lowest_in_flight()
                .unwrap_or(wave.next.min(wave.end - 1));
            let failure = StepFailure {
                step,
                error,
                attempts: 0,
                timed_out: false,
                compensation: false,
            };
            self.record_failure(failure, Recovery::Compensate);
            self.update_wave(|wave| wave.halted = true);
        }
        if self.interrupt.is_none() {
            if let Some(deadline) = self.poll_interrupt(cx) {
                self.interrupt_forward(deadline);
            }
        }
        let mut progress = false;
        loop {
            let wave = self.wave();
            if wave.halted || wave.next == wave.end {
                break;
            }
            let Some(lane) = self.claim_lane() else {
                break;
            };
            self.update_wave(|wave| wave.next += 1);
            *self.outcome_mut(wave.next, wave.start) = Outcome::Running;
            self.start_lane(lane, wave.next, Kind::Action);
        }
        if let Some(wakers) = &self.scratch.wakers {
            wakers.register(cx.waker());
        }
        progress |= self.poll_lanes(Kind::Action, cx);
        let wave = self.wave();
        if self.in_flight() == 0 && (wave.halted || wave.next == wave.end) {
            self.finish_forward_wave(wave);
            return Poll::Ready(());
        }
        if progress {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// `Some(deadline)` when the deadline passed or the run was aborted.
    pub(super) fn poll_interrupt(&mut self, cx: &mut Context<'_>) -> Option<bool> {
        if self.poll_timer(Slot::Saga, cx) {
            return Some(true);
        }
        let abort = self.abort.as_ref()?;
        abort.handle.poll_aborted(cx).then_some(false)
    }

    pub(super) fn interrupt_forward(&mut self, deadline: bool) {
        let wave = self.wave();
        let step = self
            .lowest_in_flight()
            .unwrap_or(wave.next.min(wave.end - 1));
        let attempts = (0..self.scratch.lanes.len())
            .map(|lane| &self.scratch.lanes[lane])
            .find(|lane| lane.stage != Stage::Free && lane.step == step)
            .map_or(0, |lane| lane.attempt);
        self.interrupt = Some(Interrupted {
            deadline,
            step,
            attempts,
        });
        self.set_timer(Slot::Saga, None);
        self.transition(
            step,
            if deadline {
                Transition::DeadlinePassed
            } else {
                Transition::Aborted
            },
        );
        self.update_wave(|wave| wave.halted = true);
        self.stop_members(true);
    }

    pub(super) fn finish_forward_wave(&mut self, wave: Wave) {
        if self.failure.is_none() {
            if let Some(interrupted) = self.interrupt {
                // Interrupted, and every member in flight finished well.
                let Some(error) = self.interrupt_error(interrupted.deadline) else {
                    unreachable!("interrupts only come from an abort handle or a clock")
                };
                let failure = StepFailure {
                    step: interrupted.step,
                    error,
                    attempts: interrupted.attempts,
                    timed_out: false,
                    compensation: false,
                };
                self.record_failure(failure, Recovery::Compensate);
            }
        }
        let Some(failure) = &mut self.failure else {
            self.phase = self.forward_wave(wave.end);
            return;
        };
        if let Some(interrupted) = self.interrupt {
            if interrupted.deadline {
                failure.record_deadline();
            } else {
                failure.record_aborted();
            }
        }
        let propagate = failure.recovery() == Recovery::Propagate;
        self.set_timer(Slot::Saga, None);
        self.failed_block = Some((wave.start, wave.end));
        let mut left_applied = Vec::new();
        for step in wave.start..wave.end {
            let outcome = self.scratch.outcomes[step - wave.start];
            let compensable = self.needs_compensation(step);
            // Cut short with no compensation to undo it, or propagated: left applied.
            let cut_short =
                outcome == Outcome::CutShort && !self.steps[step].compensates_failed_action();
            if cut_short || (propagate && compensable) {
                left_applied.push(step);
            }
        }
        if let Some(failure) = &mut self.failure {
            left_applied
                .into_iter()
                .for_each(|step| failure.record_left_applied(step));
            if propagate {
                failure.record_never_compensated(0..wave.start);
            }
        }
        self.phase = if propagate {
            Phase::Done
        } else {
            self.backward_wave(wave.end)
        };
    }

    pub(super) fn poll_backward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut progress = false;
        loop {
            let wave = self.wave();
            if wave.halted || wave.next == wave.start {
                break;
            }
            let step = wave.next - 1;
            if self.needs_compensation(step) {
                let Some(lane) = self.claim_lane() else {
                    break;
                };
                self.update_wave(|wave| wave.next = step);
                self.start_lane(lane, step, Kind::Compensation);
            } else {
                self.update_wave(|wave| wave.next = step);
            }
        }
        if let Some(wakers) = &self.scratch.wakers {
            wakers.register(cx.waker());
        }
        progress |= self.poll_lanes(Kind::Compensation, cx);
        let wave = self.wave();
        if self.in_flight() > 0 || (wave.next > wave.start && !wave.halted) {
            return if progress {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        if wave.halted {
            // Stopped at a failed compensation: the rest stays applied.
            let left: Vec<usize> = (wave.start..wave.next)
                .filter(|&step| self.needs_compensation(step))
                .collect();
            if let Some(failure) = &mut self.failure {
                failure.record_never_compensated(0..wave.start);
                left.into_iter()
                    .for_each(|step| failure.record_left_applied(step));
            }
            self.phase = Phase::Done;
        } else {
            self.phase = self.backward_wave(wave.start);
        }
        Poll::Ready(())
    }
}
