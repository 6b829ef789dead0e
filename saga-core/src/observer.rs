//! [`Observer`]: hooks at every transition of a run, for logs, metrics and a
//! saga log of your own.

use alloc::sync::Arc;
use core::time::Duration;

use crate::SagaError;

/// A step as an observer sees it: its index and its name, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StepRef<'a> {
    /// The step's index (0 is the first step added).
    pub index: usize,
    /// The step's name, when it has one.
    pub name: Option<&'a str>,
}

/// Receives every transition of a saga run, in order. Every method does
/// nothing by default; implement those you need.
///
/// An observer gets shared references only and is called between
/// transitions, so it cannot change what the run does: a saga runs the same
/// with or without one (and with or without the `tracing` feature). An
/// observer that panics is a bug: the panic unwinds out of the run's `poll`,
/// and under `rt::CatchPanics` (or a runtime adapter's `spawn`) the observer
/// is not called again in that run and, before the compensations, the run
/// fails with the panic (see the table on `rt::CatchPanics`). It is `no_std`: a
/// recorder, a logger or a metrics sink all fit. Set one with
/// [`SagaBuilder::observer`](crate::SagaBuilder::observer); a saga without
/// one pays a single branch per transition.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use saga_core::{Observer, SagaBuilder, StepRef};
///
/// #[derive(Default)]
/// struct Log(Mutex<Vec<String>>);
///
/// impl Observer<&'static str> for Log {
///     fn action_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
///         self.0.lock().unwrap().push(format!("done {}", step.index));
///     }
///     fn action_failed(&self, step: StepRef<'_>, _attempt: u32, error: &&'static str) {
///         self.0.lock().unwrap().push(format!("{} failed: {error}", step.index));
///     }
///     fn compensation_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
///         self.0.lock().unwrap().push(format!("undone {}", step.index));
///     }
/// }
///
/// let log = Arc::new(Log::default());
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Ok(()) })
///     .add_step(|| async { Err::<(), _>("boom") }, || async { Ok(()) })
///     .observer(log.clone())
///     .build();
/// let _ = smol::block_on(saga.run());
/// assert_eq!(*log.0.lock().unwrap(), ["done 0", "1 failed: boom", "undone 1", "undone 0"]);
/// ```
pub trait Observer<E> {
    /// A run started; the saga has `steps` steps.
    fn saga_started(&self, steps: usize) {
        let _ = steps;
    }

    /// A run finished, with this result.
    fn saga_finished(&self, result: Result<(), &SagaError<E>>) {
        let _ = result;
    }

    /// An action attempt started (attempts count from 1).
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        let _ = (step, attempt);
    }

    /// An action attempt succeeded.
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        let _ = (step, attempt);
    }

    /// An action attempt failed or timed out, or was cut short by an abort
    /// (`E::from(Aborted)`), the saga's deadline (`E::from(TimedOut)`) or a
    /// panic (`E::from(Panicked)`), with this error.
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        let _ = (step, attempt, error);
    }

    /// An action attempt was cut short because another member of its
    /// parallel group failed (see
    /// [`ParallelGroup::on_failure`](crate::ParallelGroup::on_failure)); it
    /// has no error of its own.
    fn action_cut_short(&self, step: StepRef<'_>, attempt: u32) {
        let _ = (step, attempt);
    }

    /// A failed action will be attempted again (attempt number `next_attempt`)
    /// after `delay`.
    fn action_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        let _ = (step, next_attempt, delay);
    }

    /// A compensation attempt started.
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        let _ = (step, attempt);
    }

    /// A compensation attempt succeeded.
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        let _ = (step, attempt);
    }

    /// A compensation attempt failed or timed out, with this error.
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        let _ = (step, attempt, error);
    }

    /// A failed compensation will be attempted again after `delay`.
    fn compensation_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        let _ = (step, next_attempt, delay);
    }

    /// The run was aborted through its [`AbortHandle`](crate::AbortHandle)
    /// while `step` was in flight or next.
    fn aborted(&self, step: StepRef<'_>) {
        let _ = step;
    }

    /// The saga's deadline passed while `step` was in flight or next.
    fn deadline_passed(&self, step: StepRef<'_>) {
        let _ = step;
    }
}

/// A shared observer: keep one clone to read what it recorded.
impl<E, O: Observer<E> + ?Sized> Observer<E> for Arc<O> {
    fn saga_started(&self, steps: usize) {
        (**self).saga_started(steps);
    }

    fn saga_finished(&self, result: Result<(), &SagaError<E>>) {
        (**self).saga_finished(result);
    }

    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        (**self).action_started(step, attempt);
    }

    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        (**self).action_succeeded(step, attempt);
    }

    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        (**self).action_failed(step, attempt, error);
    }

    fn action_cut_short(&self, step: StepRef<'_>, attempt: u32) {
        (**self).action_cut_short(step, attempt);
    }

    fn action_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        (**self).action_retried(step, next_attempt, delay);
    }

    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        (**self).compensation_started(step, attempt);
    }

    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        (**self).compensation_succeeded(step, attempt);
    }

    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &E) {
        (**self).compensation_failed(step, attempt, error);
    }

    fn compensation_retried(&self, step: StepRef<'_>, next_attempt: u32, delay: Duration) {
        (**self).compensation_retried(step, next_attempt, delay);
    }

    fn aborted(&self, step: StepRef<'_>) {
        (**self).aborted(step);
    }

    fn deadline_passed(&self, step: StepRef<'_>) {
        (**self).deadline_passed(step);
    }
}
