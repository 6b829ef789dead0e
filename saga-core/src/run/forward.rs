//! The forward phase: the blocks of a saga (single steps and parallel
//! groups) run as waves of lanes; interrupts (abort, deadline) and panics
//! outside any step halt it; the failed block decides what is left to undo.

use crate::marker::StepTable;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use super::attempt::AttemptEnd;
use super::observe::Transition;
use super::scratch::{Lane, Outcome, Stage};
use super::wakers::WORD;
use super::{Ending, Interrupted, Kind, Phase, Run, Wave};
use crate::marker::SagaKind;
use crate::sleep::Slot;
use crate::{Handling, InFlight, Recovery, SagaError, StepFailure, StopReason};

/// Where `step`'s outcome is kept while its wave runs.
#[inline]
pub(super) fn member(wave: &Wave, step: usize) -> usize {
    if wave.sequence { 0 } else { step - wave.start }
}

impl Ending {
    fn outcome(self) -> Outcome {
        match self {
            Ending::Failed => Outcome::Failed,
            Ending::TimedOut | Ending::CutShort => Outcome::CutShort,
            Ending::Unstarted => Outcome::NotStarted,
        }
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// The forward wave from `start`: a parallel group, or the single steps
    /// up to the next group.
    pub(super) fn forward_wave(&mut self, start: usize) -> Phase {
        if start == self.steps.step_count() {
            return Phase::Done;
        }
        let plan = self.plan;
        let wave = match plan.group_of(start) {
            Some(group) => Wave {
                start,
                end: group.members.end,
                next: start,
                limit: group.limit,
                sequence: false,
                cut_short_on_failure: group.on_failure == InFlight::CutShort,
                halted: false,
            },
            None => Wave {
                start,
                end: plan
                    .groups
                    .get(plan.group_index(start))
                    .map_or(self.steps.step_count(), |group| group.members.start),
                next: start,
                limit: 1,
                sequence: true,
                cut_short_on_failure: false,
                halted: false,
            },
        };
        self.scratch
            .outcomes
            .reset(if wave.sequence { 1 } else { wave.end - start });
        self.scratch.reset_pool();
        self.wave = wave;
        Phase::Forward
    }

    /// The block of `wave` that failed: a group, or the one step of a
    /// sequence that ran last (none when it was stopped before its first).
    fn block(wave: Wave) -> (usize, usize) {
        match wave.sequence {
            true => (wave.next.saturating_sub(1).max(wave.start), wave.next),
            false => (wave.start, wave.end),
        }
    }

    /// Runs blocks until every step in flight waits (`Pending`) or the
    /// forward phase is over (`Ready`).
    #[inline(never)]
    pub(super) fn poll_forward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Registers for an abort or the deadline once per poll; between
        // steps, a look at the abort flag is enough.
        let mut registered = false;
        loop {
            if let Some(error) = self.stray_failure.take() {
                self.fail_stray(error);
            }
            if self.watch {
                if let Some(deadline) = self.interrupted(&mut registered, cx) {
                    self.interrupt_forward(deadline);
                }
            }
            let ended = if self.wave.sequence {
                if self.run_sequence(cx).is_pending() {
                    return Poll::Pending;
                }
                true
            } else {
                self.start_members();
                self.poll_lanes(cx)
            };
            let wave = &self.wave;
            if self.scratch.busy == 0 && (wave.halted || wave.next == wave.end) {
                self.finish_forward_wave(*wave);
                if self.phase == Phase::Forward {
                    continue;
                }
                // Nothing looks at the abort handle any more.
                if let Some(abort) = &mut self.abort {
                    abort.handle.detach();
                }
                return Poll::Ready(());
            }
            if !ended {
                return Poll::Pending;
            }
        }
    }

    /// Starts the members the wave has room for.
    fn start_members(&mut self) {
        loop {
            let wave = &self.wave;
            if wave.halted || wave.next == wave.end {
                break;
            }
            let (step, member) = (wave.next, member(wave, wave.next));
            if self.durable.is_some() && self.applied_before_restart(step) {
                self.wave.next += 1;
                self.scratch.outcomes[member] = Outcome::Applied;
                continue;
            }
            let Some(lane) = self.scratch.claim(wave.limit) else {
                break;
            };
            self.wave.next += 1;
            self.scratch.outcomes[member] = Outcome::Running;
            self.scratch.mark(lane);
            self.start_attempt(lane, step, Kind::Action);
        }
    }

    /// Polls the steps in flight that were woken (the one step of a wave
    /// that runs one at a time, at every poll); returns whether one ended.
    pub(super) fn poll_lanes(&mut self, cx: &mut Context<'_>) -> bool {
        let side_by_side = self.wave.limit > 1;
        let Some(wakers) = self.scratch.wakers.as_ref().filter(|_| side_by_side) else {
            return self.scratch.lanes[0].stage != Stage::Free && self.poll_and_end(0, cx);
        };
        wakers.register(cx.waker());
        let mut ended = false;
        for word in 0..wakers.words() {
            let Some(wakers) = self.scratch.wakers.as_ref() else {
                break;
            };
            let mut marked = wakers.take_word(word);
            while marked != 0 {
                let lane = word * WORD + marked.trailing_zeros() as usize;
                marked &= marked - 1;
                let Some(wakers) = self.scratch.wakers.as_ref() else {
                    break;
                };
                if !wakers.take_woken(lane) || self.scratch.lanes[lane].stage == Stage::Free {
                    continue;
                }
                let waker = wakers.waker(lane).clone();
                ended |= self.poll_and_end(lane, &mut Context::from_waker(&waker));
            }
        }
        ended
    }

    fn poll_and_end(&mut self, lane: usize, cx: &mut Context<'_>) -> bool {
        let Lane { step, kind, .. } = self.scratch.lanes[lane];
        let Poll::Ready(end) = self.poll_lane(lane, cx) else {
            return false;
        };
        match kind {
            Kind::Action => self.end_member(end, step),
            Kind::Compensation => self.end_compensation(end),
        }
        true
    }

    /// A member of the forward wave ended.
    #[inline(never)]
    pub(super) fn end_member(&mut self, end: AttemptEnd<E>, step: usize) {
        let outcome = match end {
            AttemptEnd::Succeeded => Outcome::Applied,
            AttemptEnd::Cancelled => Outcome::CutShort,
            AttemptEnd::Failed(failure, recovery, ending) => {
                self.record_failure(failure, recovery);
                ending.outcome()
            }
        };
        let wave = &self.wave;
        let (member, halted) = (member(wave, step), wave.halted);
        self.scratch.outcomes[member] = outcome;
        if outcome != Outcome::Applied && !halted {
            self.halt_forward(false);
        }
    }

    /// Records an action failure: the first is the saga's error, later ones
    /// (in the same parallel group) are concurrent failures.
    fn record_failure(&mut self, failure: StepFailure<E>, recovery: Recovery) {
        match &mut self.failure {
            Some(first) => first.record_concurrent_failure(failure),
            None => {
                let handling = match recovery {
                    Recovery::Propagate => Handling::Propagated,
                    Recovery::Retry | Recovery::Compensate => Handling::Compensated,
                };
                self.failure = Some(SagaError::new(failure, handling));
            }
        }
    }

    /// No new action starts. Members waiting to retry end (with the
    /// interrupt's error, or their last one); running members are cut short
    /// when the interrupt or the group's policy says so, else they finish.
    fn halt_forward(&mut self, interrupted: bool) {
        self.wave.halted = true;
        let cut_short_on_failure = self.wave.cut_short_on_failure;
        let deadline = self.interrupt.is_some_and(|interrupt| interrupt.deadline);
        for lane in 0..self.scratch.lane_count() {
            let Lane { step, stage, .. } = self.scratch.lanes[lane];
            let error = match stage {
                Stage::Free => continue,
                Stage::BackingOff if interrupted => self.interrupt_error(deadline),
                Stage::BackingOff => None,
                Stage::Running | Stage::Journaling if !interrupted => match cut_short_on_failure {
                    true => None,
                    false => continue,
                },
                Stage::Running | Stage::Journaling => {
                    match deadline || self.plan.on_abort == InFlight::CutShort {
                        true => self.interrupt_error(deadline),
                        // Aborted with `InFlight::Finish`: let it finish.
                        false => continue,
                    }
                }
            };
            let end = self.stop_lane(lane, error);
            self.end_member(end, step);
        }
    }

    /// Where a failure that belongs to no lane is charged: the lowest step in
    /// flight, or else the next one.
    fn current_step(&self) -> (usize, u32) {
        let wave = &self.wave;
        let next = (wave.next.min(wave.end - 1), 0);
        self.scratch.lowest_in_flight().unwrap_or(next)
    }

    /// A panic outside any step fails the forward phase.
    fn fail_stray(&mut self, error: E) {
        let (step, attempts) = self.current_step();
        let failure = self.step_failure(step, error, attempts, false, StopReason::Panicked);
        self.record_failure(failure, Recovery::Compensate);
        self.halt_forward(false);
    }

    /// `Some(deadline)` when the deadline passed or the run was aborted.
    fn interrupted(&mut self, registered: &mut bool, cx: &mut Context<'_>) -> Option<bool> {
        if self.plan.saga_timeout.is_some() && self.timer_elapsed(Slot::Saga, cx) {
            return Some(true);
        }
        let abort = &mut self.abort.as_mut()?.handle;
        let aborted = if *registered {
            abort.is_aborted()
        } else {
            *registered = true;
            abort.poll_aborted(cx)
        };
        aborted.then_some(false)
    }

    pub(super) fn interrupt_forward(&mut self, deadline: bool) {
        let (step, _) = self.current_step();
        self.interrupt = Some(Interrupted { deadline });
        self.watch = false;
        self.set_timer(Slot::Saga, None);
        let transition = match deadline {
            true => Transition::DeadlinePassed,
            false => Transition::Aborted,
        };
        self.transition(step, transition);
        self.halt_forward(true);
    }

    /// The forward wave ended: on to the next block, or to unwinding.
    #[inline]
    pub(super) fn finish_forward_wave(&mut self, wave: Wave) {
        match self.failure.is_none() && self.interrupt.is_none() {
            true => self.phase = self.forward_wave(wave.end),
            false => self.end_forward(wave),
        }
    }

    /// [`finish_forward_wave`](Self::finish_forward_wave) after a failure
    /// or an interrupt.
    #[inline(never)]
    fn end_forward(&mut self, wave: Wave) {
        if let Some(failure) = self.failure.as_ref().filter(|_| self.abort_landed()) {
            // An abort landed during the poll in which the block failed: the
            // saga stopped because of that failure, with the abort noted.
            let step = failure.failed_step();
            self.interrupt = Some(Interrupted { deadline: false });
            self.watch = false;
            self.transition(step, Transition::Aborted);
        }
        if let (None, Some(interrupted)) = (&self.failure, self.interrupt) {
            // Interrupted, and every member in flight finished well: the saga
            // stops before its first step that never started, if any is left.
            let stop = match wave.sequence {
                true => wave.next,
                false => (wave.start..wave.end)
                    .find(|&step| self.scratch.outcomes[step - wave.start] == Outcome::NotStarted)
                    .unwrap_or(wave.end),
            };
            if stop < self.steps.step_count() {
                let Some(error) = self.interrupt_error(interrupted.deadline) else {
                    unreachable!("interrupts only come from an abort handle or a clock")
                };
                let reason = interrupted.reason();
                let failure = self.step_failure(stop, error, 0, false, reason);
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
        let propagate = failure.handling() == Handling::Propagated;
        if self.durable.is_some() {
            self.record_unwinding();
        }
        self.set_timer(Slot::Saga, None);
        let (start, end) = Self::block(wave);
        self.failed_block = Some((start, end));
        let mut left_applied = Vec::new();
        for step in start..end {
            let outcome = self.scratch.outcomes[step - start];
            // Cut short with no compensation to undo it, or propagated: left applied.
            let cut_short =
                outcome == Outcome::CutShort && !self.steps.compensates_failed_action(step);
            if cut_short || (propagate && self.needs_compensation(step)) {
                left_applied.push(step);
            }
        }
        if let Some(failure) = &mut self.failure {
            left_applied
                .into_iter()
                .for_each(|step| failure.record_left_applied(step));
            if propagate {
                failure.record_never_compensated(0..start);
            }
        }
        self.phase = if propagate {
            Phase::Done
        } else {
            self.backward_wave(end)
        };
    }

    /// Whether `step` is to be compensated: every step before the failed
    /// block, and the members of the failed block that ran (by rule 3).
    pub(super) fn needs_compensation(&self, step: usize) -> bool {
        match self.failed_block {
            Some((start, end)) if (start..end).contains(&step) => {
                match self.scratch.outcomes[step - start] {
                    Outcome::Applied => true,
                    Outcome::Failed | Outcome::CutShort => {
                        self.steps.compensates_failed_action(step)
                    }
                    Outcome::NotStarted | Outcome::Running => false,
                }
            }
            _ => true,
        }
    }
}
