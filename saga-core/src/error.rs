//! [`SagaError`]: what failed, and exactly what was and was not compensated.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::Recovery;

/// The error of a failed saga run.
///
/// It reports the original action error ([`error`](SagaError::error)), the
/// step that failed ([`failed_step`](SagaError::failed_step), and its
/// [name](SagaError::failed_step_name)), what the engine did about it
/// ([`recovery`](SagaError::recovery)), how many attempts were made, whether
/// it timed out or was aborted, the other members of a parallel group that
/// failed too ([`concurrent_failures`](SagaError::concurrent_failures)),
/// every compensation that failed, with its step
/// ([`compensation_errors`](SagaError::compensation_errors)), and the steps
/// left applied ([`uncompensated_steps`](SagaError::uncompensated_steps)).
/// When [`is_fully_compensated`](SagaError::is_fully_compensated) is `true`,
/// nothing the saga did is left applied.
///
/// # Examples
///
/// ```
/// use saga_core::SagaBuilder;
///
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Err("refund service down") })
///     .add_step(|| async { Err::<(), _>("out of stock") }, || async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(*error.error(), "out of stock");
/// assert_eq!(error.failed_step(), 1);
/// assert!(!error.is_fully_compensated());
/// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
/// assert_eq!(error.compensation_errors()[0].step(), 0);
/// assert_eq!(
///     error.to_string(),
///     "step 1 failed: out of stock; compensation of step 0 failed: refund service down; \
///      1 step left uncompensated",
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SagaError<E> {
    // Boxed: a `Result<_, SagaError<E>>` stays one pointer wide (the happy
    // path pays nothing for a rich report); a failed run allocates it once.
    report: Box<Report<E>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Report<E> {
    failure: StepFailure<E>,
    failed_step_name: Option<String>,
    recovery: Recovery,
    aborted: bool,
    deadline: bool,
    compensated: usize,
    // Every step in `0..k` is left applied: kept as a range, not a list.
    never_compensated: Range<usize>,
    // Other steps left applied, ascending once the run completed.
    left_applied: Vec<usize>,
    // Other members of the failed parallel group whose action failed.
    concurrent_failures: Vec<StepFailure<E>>,
    // In the order they happened.
    compensation_errors: Vec<StepFailure<E>>,
}

impl<E> SagaError<E> {
    pub(crate) fn new(failure: StepFailure<E>, name: Option<&str>, recovery: Recovery) -> Self {
        let report = Report {
            failure,
            failed_step_name: name.map(String::from),
            recovery,
            aborted: false,
            deadline: false,
            compensated: 0,
            never_compensated: 0..0,
            left_applied: Vec::new(),
            concurrent_failures: Vec::new(),
            compensation_errors: Vec::new(),
        };
        SagaError {
            report: Box::new(report),
        }
    }

    pub(crate) fn record_aborted(&mut self) {
        self.report.aborted = true;
    }

    pub(crate) fn record_deadline(&mut self) {
        self.report.deadline = true;
    }

    pub(crate) fn record_concurrent_failure(&mut self, failure: StepFailure<E>) {
        self.report.concurrent_failures.push(failure);
    }

    pub(crate) fn record_compensated(&mut self) {
        self.report.compensated += 1;
    }

    pub(crate) fn record_compensation_error(&mut self, mut failure: StepFailure<E>) {
        failure.compensation = true;
        self.report.left_applied.push(failure.step);
        self.report.compensation_errors.push(failure);
    }

    pub(crate) fn record_never_compensated(&mut self, steps: Range<usize>) {
        self.report.never_compensated = steps;
    }

    pub(crate) fn record_left_applied(&mut self, step: usize) {
        self.report.left_applied.push(step);
    }

    /// Puts the report in its final order.
    pub(crate) fn finish(&mut self) {
        self.report.left_applied.sort_unstable();
        self.report
            .concurrent_failures
            .sort_by_key(StepFailure::step);
    }

    /// The action error that made the saga fail.
    pub fn error(&self) -> &E {
        &self.report.failure.error
    }

    /// The action error that made the saga fail, by value.
    pub fn into_error(self) -> E {
        self.report.failure.error
    }

    /// The index of the step whose action failed (0 is the first step added).
    /// After an abort or a deadline, the step that was in flight, or else the
    /// one that would have run next.
    pub fn failed_step(&self) -> usize {
        self.report.failure.step
    }

    /// The name of the step whose action failed, when it has one.
    pub fn failed_step_name(&self) -> Option<&str> {
        self.report.failed_step_name.as_deref()
    }

    /// What the engine did after the action failed:
    /// [`Recovery::Compensate`] (also after retries ran out, and after an
    /// abort), or [`Recovery::Propagate`] when the saga's classifier returned
    /// the error without compensating. Never [`Recovery::Retry`].
    pub fn recovery(&self) -> Recovery {
        self.report.recovery
    }

    /// How many attempts the failed step's action made (0 when the saga was
    /// aborted or timed out before it started).
    pub fn attempts(&self) -> u32 {
        self.report.failure.attempts
    }

    /// `true` when the failure was a timeout: the failed step's last attempt,
    /// or the whole saga, ran out of time.
    pub fn timed_out(&self) -> bool {
        self.report.failure.timed_out || self.report.deadline
    }

    /// `true` when the run was stopped by its [`AbortHandle`](crate::AbortHandle).
    pub fn aborted(&self) -> bool {
        self.report.aborted
    }

    /// `true` when every step that needed compensation was compensated, so
    /// nothing the saga did is left applied.
    pub fn is_fully_compensated(&self) -> bool {
        self.uncompensated_count() == 0
    }

    /// How many compensations ran to success.
    pub fn compensated_count(&self) -> usize {
        self.report.compensated
    }

    /// The other members of the failed parallel group whose actions failed
    /// too (by step), after the first failure.
    pub fn concurrent_failures(&self) -> &[StepFailure<E>] {
        &self.report.concurrent_failures
    }

    /// Every compensation that failed after its retries, in the order they
    /// failed (descending step order when compensations run one at a time).
    pub fn compensation_errors(&self) -> &[StepFailure<E>] {
        &self.report.compensation_errors
    }

    /// The steps left (possibly) applied, in ascending order: those whose
    /// compensation failed, those never compensated because the backward
    /// phase stopped or the error was propagated, and steps cut short (by a
    /// timeout, an abort or a failed group) that do not compensate failed
    /// actions.
    pub fn uncompensated_steps(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.report
            .never_compensated
            .clone()
            .chain(self.report.left_applied.iter().copied())
    }

    /// How many steps are left applied: the length of
    /// [`uncompensated_steps`](SagaError::uncompensated_steps).
    pub fn uncompensated_count(&self) -> usize {
        self.report.never_compensated.len() + self.report.left_applied.len()
    }
}

impl<E: fmt::Debug> fmt::Debug for SagaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        f.debug_struct("SagaError")
            .field("failure", &report.failure)
            .field("failed_step_name", &report.failed_step_name)
            .field("recovery", &report.recovery)
            .field("aborted", &report.aborted)
            .field("deadline", &report.deadline)
            .field("compensated", &report.compensated)
            .field("never_compensated", &report.never_compensated)
            .field("left_applied", &report.left_applied)
            .field("concurrent_failures", &report.concurrent_failures)
            .field("compensation_errors", &report.compensation_errors)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for SagaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.report.failure.step)?;
        if let Some(name) = &self.report.failed_step_name {
            write!(f, " ({name})")?;
        }
        write!(f, " failed: {}", self.report.failure.error)?;
        if self.report.failure.attempts > 1 {
            write!(f, " (after {} attempts)", self.report.failure.attempts)?;
        }
        if self.report.aborted {
            f.write_str(", saga aborted")?;
        }
        if let [first, rest @ ..] = self.report.concurrent_failures.as_slice() {
            write!(f, "; step {} failed too: {}", first.step, first.error)?;
            if !rest.is_empty() {
                write!(f, " (and {} more)", rest.len())?;
            }
        }
        f.write_str("; ")?;
        let left = self.uncompensated_count();
        let steps = if left == 1 { "step" } else { "steps" };
        if self.report.recovery == Recovery::Propagate {
            return write!(
                f,
                "propagated without compensation, {left} {steps} left applied"
            );
        }
        if let [first, rest @ ..] = self.report.compensation_errors.as_slice() {
            write!(
                f,
                "compensation of step {} failed: {}",
                first.step, first.error
            )?;
            if !rest.is_empty() {
                write!(f, " (and {} more compensation errors)", rest.len())?;
            }
            return write!(f, "; {left} {steps} left uncompensated");
        }
        match (left, self.report.compensated) {
            (0, 0) => f.write_str("nothing needed compensation"),
            (0, 1) => f.write_str("fully compensated (1 step)"),
            (0, done) => write!(f, "fully compensated ({done} steps)"),
            (left, done) => write!(f, "{done} compensated, {left} {steps} left applied"),
        }
    }
}

impl<E> core::error::Error for SagaError<E>
where
    E: core::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.report.failure.error)
    }
}

/// One step's failure: its index, its last error, how many attempts were
/// made, and whether the last one timed out. Reported for compensations that
/// failed ([`SagaError::compensation_errors`]) and for the other failed
/// members of a parallel group ([`SagaError::concurrent_failures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure<E> {
    pub(crate) step: usize,
    pub(crate) error: E,
    pub(crate) attempts: u32,
    pub(crate) timed_out: bool,
    // A compensation's failure rather than an action's.
    pub(crate) compensation: bool,
}

impl<E> StepFailure<E> {
    /// The index of the step.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The last attempt's error.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The last attempt's error, by value.
    pub fn into_error(self) -> E {
        self.error
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `true` when the last attempt ran out of time.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl<E: fmt::Display> fmt::Display for StepFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.compensation {
            f.write_str("compensation of ")?;
        }
        write!(f, "step {} failed: {}", self.step, self.error)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl<E> core::error::Error for StepFailure<E>
where
    E: core::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}
