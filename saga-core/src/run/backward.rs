//! The backward phase: which waves compensate which steps (one at a time,
//! a group at a time, or all at once, by the compensation mode), and what a
//! compensation that still fails stops.

use crate::marker::StepTable;
use core::task::{Context, Poll};

use super::attempt::AttemptEnd;
use super::{Kind, Phase, Run, Wave};
use crate::CompensationMode;
use crate::marker::SagaKind;

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// The backward wave over the steps below `end`.
    pub(super) fn backward_wave(&mut self, end: usize) -> Phase {
        let Some(last) = end.checked_sub(1) else {
            return Phase::Done;
        };
        let plan = self.plan;
        let (start, limit) = match plan.compensation_mode {
            CompensationMode::Concurrent => (0, self.scratch.lane_count()),
            CompensationMode::ConcurrentGroups => match plan.group_of(last) {
                Some(group) => (group.members.start, group.limit),
                // The single steps down to the group before them.
                None => {
                    let before = plan.group_index(last).checked_sub(1);
                    let start = before.map_or(0, |group| plan.groups[group].members.end);
                    (start, 1)
                }
            },
            // `StopOnError`, `ContinueOnError`: one at a time, last first.
            _ => (0, 1),
        };
        self.scratch.reset_pool();
        self.wave = Wave {
            start,
            end,
            next: end,
            limit,
            sequence: false,
            cut_short_on_failure: false,
            halted: false,
        };
        Phase::Backward
    }

    /// Compensates until every compensation in flight waits (`Pending`) or
    /// the backward phase is over (`Ready`).
    #[inline(never)]
    pub(super) fn poll_backward(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let ended = if self.wave.limit == 1 {
                if self.run_one_by_one_back(cx).is_pending() {
                    return Poll::Pending;
                }
                true
            } else {
                self.start_compensations();
                self.poll_lanes(cx)
            };
            let wave = &self.wave;
            if self.scratch.busy == 0 && (wave.halted || wave.next == wave.start) {
                self.finish_backward_wave(*wave);
                if self.phase == Phase::Backward {
                    continue;
                }
                return Poll::Ready(());
            }
            if !ended {
                return Poll::Pending;
            }
        }
    }

    /// Starts the compensations the wave has room for, last step first.
    fn start_compensations(&mut self) {
        while let Some(step) = self.next_to_compensate() {
            let Some(lane) = self.scratch.claim(self.wave.limit) else {
                break;
            };
            self.wave.next = step;
            self.scratch.mark(lane);
            self.start_attempt(lane, step, Kind::Compensation);
        }
    }

    /// The next step of the wave to compensate, skipping those that need
    /// none; `None` once the wave has none left to start, or halted.
    pub(super) fn next_to_compensate(&mut self) -> Option<usize> {
        loop {
            let wave = &self.wave;
            if wave.halted || wave.next == wave.start {
                return None;
            }
            let step = wave.next - 1;
            if self.needs_compensation(step) && !self.settled_before_restart(step) {
                return Some(step);
            }
            self.wave.next = step;
        }
    }

    /// A compensation of the backward wave ended.
    pub(super) fn end_compensation(&mut self, end: AttemptEnd<E>) {
        let Some(failure) = &mut self.failure else {
            unreachable!("the backward phase always has a failure to report")
        };
        match end {
            // A success was counted as it happened (`attempt_succeeded`).
            AttemptEnd::Succeeded => {}
            AttemptEnd::Cancelled => failure.record_compensated(),
            AttemptEnd::Failed(error, ..) => {
                failure.record_compensation_error(error);
                if self.plan.compensation_mode == CompensationMode::StopOnError {
                    self.wave.halted = true;
                }
            }
        }
    }

    fn finish_backward_wave(&mut self, wave: Wave) {
        if !wave.halted {
            self.phase = self.backward_wave(wave.start);
            return;
        }
        // Stopped at a failed compensation: everything still to compensate
        // stays applied. Below the failed block that is every step, kept as
        // a range; members of the failed block are listed one by one.
        let (block_start, _) = self.failed_block.unwrap_or((wave.next, wave.next));
        let below = wave.next.min(block_start);
        let members: alloc::vec::Vec<usize> = (below..wave.next)
            .filter(|&step| self.needs_compensation(step))
            .collect();
        if let Some(failure) = &mut self.failure {
            failure.record_never_compensated(0..below);
            members
                .into_iter()
                .for_each(|step| failure.record_left_applied(step));
        }
        self.phase = Phase::Done;
    }
}
