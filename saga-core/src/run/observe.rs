//! Transitions, for the observer and the `tracing` feature. Reporting one
//! never changes what the run does; an observer that panics is not called
//! again in that run (see `Run::fail_in_flight`).

use crate::marker::StepTable;
use core::time::Duration;

use super::{Calling, Kind, Run};
use crate::marker::SagaKind;
use crate::{Observer, StepRef};

/// A transition, for the observer (and `tracing`).
pub(super) enum Transition<'e, E> {
    Started(Kind, u32),
    Succeeded(Kind, u32),
    Failed(Kind, u32, &'e E),
    // An action attempt cut short because another member of its group failed.
    CutShort(u32),
    Retried(Kind, u32, Duration),
    Aborted,
    DeadlinePassed,
}

impl<E, S: ?Sized + SagaKind<E>, B: ?Sized + StepTable<E>> Run<'_, E, S, B> {
    #[inline(always)]
    pub(super) fn transition(&mut self, step: usize, transition: Transition<'_, E>) {
        // Nothing hears it: one branch, for a run without a journal, an
        // observer or a `tracing` span.
        if self.unheard {
            return;
        }
        self.tell(step, transition);
    }

    #[inline(never)]
    fn tell(&mut self, step: usize, transition: Transition<'_, E>) {
        if self.durable.is_some() {
            self.journal_transition(step, &transition);
        }
        #[cfg(feature = "tracing")]
        if !self.span.is_disabled() {
            crate::trace::transition(transition_label(&transition));
        }
        let Some(observer) = self.observer else {
            return;
        };
        let at = StepRef {
            index: step,
            name: self.steps.step_name(step),
        };
        self.calling = Calling::Observer;
        notify(observer, at, transition);
        self.calling = Calling::Nothing;
    }
}

#[inline(always)]
fn notify<E, O>(observer: &O, at: StepRef<'_>, transition: Transition<'_, E>)
where
    O: ?Sized + Observer<E>,
{
    match transition {
        Transition::Started(Kind::Action, attempt) => observer.action_started(at, attempt),
        Transition::Started(Kind::Compensation, attempt) => {
            observer.compensation_started(at, attempt)
        }
        Transition::Succeeded(Kind::Action, attempt) => observer.action_succeeded(at, attempt),
        Transition::Succeeded(Kind::Compensation, attempt) => {
            observer.compensation_succeeded(at, attempt)
        }
        Transition::Failed(Kind::Action, attempt, error) => {
            observer.action_failed(at, attempt, error)
        }
        Transition::Failed(Kind::Compensation, attempt, error) => {
            observer.compensation_failed(at, attempt, error)
        }
        Transition::CutShort(attempt) => observer.action_cut_short(at, attempt),
        Transition::Retried(Kind::Action, next, delay) => observer.action_retried(at, next, delay),
        Transition::Retried(Kind::Compensation, next, delay) => {
            observer.compensation_retried(at, next, delay)
        }
        Transition::Aborted => observer.aborted(at),
        Transition::DeadlinePassed => observer.deadline_passed(at),
    }
}

#[cfg(feature = "tracing")]
fn transition_label<E>(transition: &Transition<'_, E>) -> (&'static str, u32) {
    match *transition {
        Transition::Started(Kind::Action, attempt) => ("action started", attempt),
        Transition::Started(Kind::Compensation, attempt) => ("compensation started", attempt),
        Transition::Succeeded(Kind::Action, attempt) => ("action succeeded", attempt),
        Transition::Succeeded(Kind::Compensation, attempt) => ("compensation succeeded", attempt),
        Transition::Failed(Kind::Action, attempt, _) => ("action failed", attempt),
        Transition::Failed(Kind::Compensation, attempt, _) => ("compensation failed", attempt),
        Transition::CutShort(attempt) => ("action cut short", attempt),
        Transition::Retried(Kind::Action, next, _) => ("action retried", next),
        Transition::Retried(Kind::Compensation, next, _) => ("compensation retried", next),
        Transition::Aborted => ("aborted", 0),
        Transition::DeadlinePassed => ("deadline passed", 0),
    }
}
