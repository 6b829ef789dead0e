//! The journal stage of a durable run (rules 13 and 14): a record for each
//! transition, the write-ahead gate before each attempt's first poll, the
//! last record and flush, and where a run resumed from a [`History`]
//! starts. A run without a journal never enters this file.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::task::{Context, Poll};

use super::observe::Transition;
use super::scratch::{Outcome as Member, Panic, Stage};
use super::{Ending, Interrupted, Kind, Phase, Run};
use crate::journal::{
    Event, History, Journal, JournalError, Outcome, Progress, Record, SagaState, Unwind,
};
use crate::marker::{SagaKind, StepTable};
use crate::{Crashed, Handling, Restored, SagaError, StepOutput, StopReason};

/// What a durable run holds of its journal.
pub(crate) struct Link<'a, E, J: ?Sized> {
    journal: &'a mut J,
    next_seq: u64,
    // Records were appended since the last flush that returned `Ready`.
    owed: bool,
    // The journal failed: nothing more is appended, no attempt starts.
    error: Option<JournalError>,
    // The `Created` record of a new saga, appended at the first poll.
    created: Option<Event>,
    // The journal a resumed run continues.
    history: Option<&'a History>,
    finished: bool,
    describe: fn(&E) -> String,
    report: fn(&SagaError<E>) -> String,
    crashed: fn(Crashed) -> E,
}

impl<'a, E, J: ?Sized + Journal> Link<'a, E, J> {
    pub(crate) fn new(
        journal: &'a mut J,
        start: Result<Event, &'a History>,
        describe: fn(&E) -> String,
        report: fn(&SagaError<E>) -> String,
        crashed: fn(Crashed) -> E,
    ) -> Box<Self> {
        let (next_seq, created, history) = match start {
            Ok(created) => (0, Some(created), None),
            Err(history) => (history.next_seq(), None, Some(history)),
        };
        Box::new(Link {
            journal,
            next_seq,
            owed: false,
            error: None,
            created,
            history,
            finished: false,
            describe,
            report,
            crashed,
        })
    }

    fn append(&mut self, event: Event) {
        if self.error.is_some() {
            return;
        }
        let record = Record {
            seq: self.next_seq,
            event,
        };
        match self.journal.append(&record) {
            Ok(()) => {
                self.next_seq += 1;
                self.owed = true;
            }
            Err(error) => self.error = Some(error),
        }
    }

    /// Whether every record appended so far is durable (polling the flush
    /// when it is not).
    fn poll_durable(&mut self, cx: &mut Context<'_>) -> bool {
        if self.error.is_some() {
            return false;
        }
        if !self.owed {
            return true;
        }
        match self.journal.poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.owed = false;
                true
            }
            Poll::Ready(Err(error)) => {
                self.error = Some(error);
                false
            }
            Poll::Pending => false,
        }
    }

    /// What the journal says of `step`, when the run resumed.
    fn before_restart(&self, step: usize) -> Option<&'a crate::journal::StepHistory> {
        self.history.map(|history| history.step(step))
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// The journal failed: the run is to stop (see `JournaledRun`).
    pub(crate) fn journal_error(&mut self) -> Option<JournalError> {
        self.durable.as_mut()?.error.take()
    }

    /// Appends the record of a transition.
    #[inline(never)]
    pub(super) fn journal_transition(&mut self, step: usize, transition: &Transition<'_, E>) {
        let Some(link) = self.durable.as_deref_mut() else {
            return;
        };
        let index = step as u32;
        let event = match *transition {
            Transition::Started(Kind::Action, attempt) => Event::ActionStarted {
                step: index,
                attempt,
            },
            Transition::Started(Kind::Compensation, attempt) => Event::CompensationStarted {
                step: index,
                attempt,
            },
            Transition::Succeeded(Kind::Action, _) => {
                let output = match self.steps.output(step) {
                    StepOutput::Saved => {
                        let mut bytes = Vec::new();
                        self.steps.save_output(step, &mut bytes);
                        Some(bytes)
                    }
                    _ => None,
                };
                Event::ActionSucceeded {
                    step: index,
                    output,
                }
            }
            Transition::Succeeded(Kind::Compensation, _) => {
                Event::CompensationSucceeded { step: index }
            }
            Transition::Failed(kind, attempt, error) => {
                let message = (link.describe)(error);
                match kind {
                    Kind::Action => Event::ActionFailed {
                        step: index,
                        attempt,
                        message,
                    },
                    Kind::Compensation => Event::CompensationFailed {
                        step: index,
                        attempt,
                        message,
                    },
                }
            }
            Transition::CutShort(attempt) => Event::ActionFailed {
                step: index,
                attempt,
                message: String::from("cut short"),
            },
            Transition::Retried(kind, attempt, _) => Event::Retrying {
                step: index,
                compensation: kind == Kind::Compensation,
                attempt,
            },
            // The `Unwinding` record says why.
            Transition::Aborted | Transition::DeadlinePassed => return,
        };
        link.append(event);
    }

    /// An attempt was just started in `lane`: with a journal, its record
    /// must be durable before its first poll.
    #[inline(always)]
    pub(super) fn hold_for_journal(&mut self, lane: usize) {
        if self.durable.is_some() {
            self.scratch.lanes[lane].stage = Stage::Journaling;
        }
    }

    /// The write-ahead gate of the attempt in `lane`: `true` once every
    /// record is durable. The flush is polled with the waker of whichever
    /// lane asks; once it is durable, every other lane waiting for it is
    /// marked to be polled (and the run woken), so none is left waiting.
    pub(super) fn journal_gate(&mut self, lane: usize, cx: &mut Context<'_>) -> bool {
        let Some(link) = self.durable.as_deref_mut() else {
            return true;
        };
        let owed = link.owed;
        if !link.poll_durable(cx) {
            return false;
        }
        if owed {
            if let Some(wakers) = &self.scratch.wakers {
                let mut others = false;
                for other in 0..self.scratch.lanes.len() {
                    if other != lane && self.scratch.lanes[other].stage == Stage::Journaling {
                        wakers.mark(other);
                        others = true;
                    }
                }
                if others {
                    cx.waker().wake_by_ref();
                }
            }
        }
        true
    }

    /// The run starts with a journal: a new saga's `Created` record, or
    /// where a resumed one stands.
    #[cold]
    #[inline(never)]
    pub(super) fn start_durable(&mut self) -> Phase {
        let Some(link) = self.durable.as_deref_mut() else {
            return self.forward_wave(0);
        };
        if let Some(created) = link.created.take() {
            link.append(created);
            return self.forward_wave(0);
        }
        let Some(history) = link.history else {
            return self.forward_wave(0);
        };
        self.restore_steps(history);
        match history.state() {
            SagaState::Forward => self.resume_forward(history),
            SagaState::Unwinding => {
                let (step, why) = history.unwinding().unwrap_or((0, Unwind::Failed));
                self.resume_backward(history, step, why)
            }
            // `resume` refuses a finished saga.
            _ => Phase::Done,
        }
    }

    /// Puts back, in each step, what its action left before the restart.
    fn restore_steps(&mut self, history: &History) {
        for step in 0..history.steps_mentioned().min(self.steps.step_count()) {
            let before = history.step(step);
            let restored = match before.action {
                Progress::Succeeded => Restored::Succeeded(before.output.as_deref()),
                Progress::NotStarted => continue,
                // Re-run forward, or compensated: either way it may have
                // happened. A step re-run starts afresh from its action.
                _ => Restored::Attempted,
            };
            // `resume` checked that every step restores.
            let _ = self.steps.as_mut().restore(step, restored);
        }
    }

    /// Resumes going forward: from the first block not wholly applied, or
    /// backward when an action of that block had failed for good.
    fn resume_forward(&mut self, history: &History) -> Phase {
        let count = self.steps.step_count();
        let mut start = 0;
        while start < count {
            let end = self
                .plan
                .group_of(start)
                .map_or(start + 1, |g| g.members.end);
            let action = |step: usize| history.step(step).action;
            if let Some(failed) = (start..end).find(|&step| action(step) == Progress::Failed) {
                return self.resume_backward(history, failed, Unwind::Failed);
            }
            if (start..end).any(|step| action(step) != Progress::Succeeded) {
                break;
            }
            start = end;
        }
        self.forward_wave(start)
    }

    /// Resumes compensating: the block the crashed run had reached is the
    /// failed block, its members' outcomes as the journal tells them (an
    /// attempt with no outcome is cut short, rule 7), and the saga unwinds
    /// from there by rule 3.
    fn resume_backward(&mut self, history: &History, failed: usize, why: Unwind) -> Phase {
        let Some(link) = self.durable.as_deref() else {
            return Phase::Done;
        };
        let error = (link.crashed)(match history.last_error() {
            Some(message) => Crashed::recorded(message),
            None => Crashed::new(),
        });
        let reason = match why {
            Unwind::Aborted => StopReason::Aborted,
            Unwind::Deadline => StopReason::Deadline,
            Unwind::Panicked => StopReason::Panicked,
            Unwind::Failed | Unwind::Propagated => StopReason::Failed,
            #[allow(unreachable_patterns, reason = "`Unwind` is non-exhaustive")]
            _ => StopReason::Failed,
        };
        let handling = match why {
            Unwind::Propagated => Handling::Propagated,
            _ => Handling::Compensated,
        };
        let attempts = history.step(failed).action_attempts;
        let failure = self.step_failure(failed, error, attempts, false, reason);
        self.failure = Some(SagaError::new(failure, handling));
        if let Unwind::Aborted | Unwind::Deadline = why {
            self.interrupt = Some(Interrupted {
                deadline: why == Unwind::Deadline,
            });
        }
        // The highest step that was started is in the failed block.
        let started = (0..history.steps_mentioned().min(self.steps.step_count()))
            .rev()
            .find(|&step| history.step(step).action != Progress::NotStarted);
        let Some(last) = started else {
            if history.state() == SagaState::Forward {
                self.record_unwinding();
            }
            return Phase::Done;
        };
        let start = self.plan.group_of(last).map_or(last, |g| g.members.start);
        let _ = self.forward_wave(start);
        let mut wave = self.wave;
        for step in wave.start..=last.max(wave.start) {
            let member = super::forward::member(&wave, step);
            self.scratch.outcomes[member] = match history.step(step).action {
                Progress::Succeeded => Member::Applied,
                Progress::Failed => Member::Failed,
                Progress::NotStarted => Member::NotStarted,
                _ => Member::CutShort,
            };
        }
        wave.next = if wave.sequence { last + 1 } else { wave.end };
        wave.halted = true;
        self.wave = wave;
        self.finish_forward_wave(wave);
        self.phase
    }

    /// Appends why the saga unwinds, unless the journal says it already
    /// does.
    pub(super) fn record_unwinding(&mut self) {
        let Some(link) = self.durable.as_deref_mut() else {
            return;
        };
        if link
            .history
            .is_some_and(|h| h.state() == SagaState::Unwinding)
        {
            return;
        }
        let Some(failure) = &self.failure else {
            return;
        };
        let reason = match (self.interrupt, failure.handling(), failure.reason()) {
            (Some(Interrupted { deadline: true }), ..) => Unwind::Deadline,
            (Some(Interrupted { deadline: false }), ..) => Unwind::Aborted,
            (None, Handling::Propagated, _) => Unwind::Propagated,
            (None, _, StopReason::Panicked) => Unwind::Panicked,
            _ => Unwind::Failed,
        };
        link.append(Event::Unwinding {
            step: failure.failed_step() as u32,
            reason,
        });
    }

    /// The first attempt `start_attempt` makes at `kind` of `step`: after a
    /// restart, the one after those the journal holds with no outcome.
    /// `None`: an action the crash cut short that its retry policy does not
    /// allow to run again.
    #[inline(never)]
    pub(super) fn first_attempt(&self, step: usize, kind: Kind) -> Option<u32> {
        let Some(before) = self.durable.as_deref().and_then(|l| l.before_restart(step)) else {
            return Some(1);
        };
        let (progress, attempts) = match kind {
            Kind::Action => (before.action, before.action_attempts),
            Kind::Compensation => (before.compensation, before.compensation_attempts),
        };
        match progress {
            Progress::InFlight | Progress::Retrying | Progress::Failed => {}
            _ => return Some(1),
        }
        let allowed = match kind {
            Kind::Action => (self.plan.step(step).action_retry()).map_or(1, |r| r.max_attempts()),
            // A compensation with no outcome is always run again.
            Kind::Compensation => u32::MAX,
        };
        (attempts < allowed).then_some(attempts + 1)
    }

    /// The crash cut short the action in `lane` for good: it fails as cut
    /// short at its next poll, without running.
    pub(super) fn fail_crashed(&mut self, lane: usize) {
        let Some(link) = self.durable.as_deref() else {
            return;
        };
        let error = (link.crashed)(Crashed::new());
        let step = self.scratch.lanes[lane].step;
        let attempts = link.before_restart(step).map_or(1, |b| b.action_attempts);
        let slot = &mut self.scratch.lanes[lane];
        slot.attempt = attempts;
        slot.panic = Some(Panic {
            error,
            ending: Ending::CutShort,
            last: true,
            announced: false,
            crashed: true,
        });
    }

    /// Whether step `step`'s compensation ended before a restart, so that
    /// it is not run again: one that succeeded is counted, one that failed
    /// for good ends as if it failed now. Always `false` without a journal.
    #[inline]
    pub(super) fn settled_before_restart(&mut self, step: usize) -> bool {
        self.durable.is_some() && self.settle_from_before_restart(step)
    }

    #[inline(never)]
    fn settle_from_before_restart(&mut self, step: usize) -> bool {
        match self.compensated_before_restart(step) {
            None => false,
            Some(true) => {
                if let Some(failure) = &mut self.failure {
                    failure.record_compensated();
                }
                true
            }
            Some(false) => {
                let failed = self.failed_before_restart(step);
                self.end_compensation(super::attempt::AttemptEnd::Failed(
                    failed,
                    crate::Recovery::Compensate,
                    super::Ending::Failed,
                ));
                true
            }
        }
    }

    /// Whether the journal says `step`'s compensation already ended (it is
    /// not started again): `Some(true)` succeeded, `Some(false)` failed.
    fn compensated_before_restart(&self, step: usize) -> Option<bool> {
        let before = self.durable.as_deref()?.before_restart(step)?;
        match before.compensation {
            Progress::Succeeded => Some(true),
            Progress::Failed => Some(false),
            _ => None,
        }
    }

    /// A compensation that had failed for good before the restart, in the
    /// report as it was: with its recorded message.
    pub(super) fn failed_before_restart(&mut self, step: usize) -> crate::StepFailure<E> {
        let Some(link) = self.durable.as_deref() else {
            unreachable!("only a resumed run has failed compensations from before")
        };
        let attempts = link
            .before_restart(step)
            .map_or(1, |b| b.compensation_attempts);
        let message = link.history.and_then(History::last_error).unwrap_or("");
        let error = (link.crashed)(Crashed::recorded(message));
        let mut failure = self.step_failure(step, error, attempts, false, StopReason::Failed);
        failure.compensation = true;
        failure
    }

    /// The run ended: its `Finished` record, durable before the result is
    /// returned. `false` while the flush is pending or the journal failed.
    #[cold]
    #[inline(never)]
    pub(super) fn close_journal(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(link) = self.durable.as_deref_mut() else {
            return true;
        };
        if !link.finished {
            link.finished = true;
            let (outcome, message) = match &mut self.failure {
                None => (Outcome::Committed, String::new()),
                Some(failure) => {
                    failure.finish();
                    let outcome = match failure.handling() == Handling::Compensated
                        && failure.is_fully_compensated()
                    {
                        true => Outcome::Compensated,
                        false => Outcome::Stuck,
                    };
                    (outcome, (link.report)(failure))
                }
            };
            link.append(Event::Finished { outcome, message });
        }
        link.poll_durable(cx)
    }
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    /// Starts an attempt in `lane` (just occupied) with a journal: the
    /// first one after those the journal holds, or a crash's failure.
    #[inline(never)]
    pub(super) fn start_durable_attempt(&mut self, lane: usize, step: usize, kind: Kind) {
        match self.first_attempt(step, kind) {
            Some(attempt) => {
                self.scratch.lanes[lane].attempt = attempt;
                self.begin_attempt(lane, step, attempt, kind);
            }
            None => self.fail_crashed(lane),
        }
    }

    /// Whether the journal says `step`'s action succeeded before the
    /// restart (it is not run again).
    #[inline(never)]
    pub(super) fn applied_before_restart(&self, step: usize) -> bool {
        let before = self.durable.as_deref().and_then(|l| l.before_restart(step));
        before.is_some_and(|before| before.action == Progress::Succeeded)
    }
}
