//! [`SagaError`]: what failed, and exactly what was and was not compensated.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::Recovery;

/// The error of a failed saga run.
///
/// It reports the original action error ([`error`](SagaError::error)), the
/// step that failed ([`failed_step`](SagaError::failed_step)), what the
/// engine did about it ([`recovery`](SagaError::recovery)), every compensation
/// that failed, with its step ([`compensation_errors`](SagaError::compensation_errors)),
/// and the steps left uncompensated ([`uncompensated_steps`](SagaError::uncompensated_steps)).
/// When [`is_fully_compensated`](SagaError::is_fully_compensated) is `true`,
/// nothing the saga did is left applied.
///
/// # Examples
///
/// ```
/// use saga_core::SagaBuilder;
///
/// let mut saga = SagaBuilder::new()
///     .add_step(|| async { Ok(()) }, || async { Err::<(), _>("refund service down") })
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaError<E> {
    error: E,
    failed_step: usize,
    failed_step_name: Option<String>,
    recovery: Recovery,
    attempts: u32,
    timed_out: bool,
    aborted: bool,
    compensated: usize,
    // Steps whose compensation never started: a prefix `0..k`, kept as a range.
    never_compensated: Range<usize>,
    // The failed step was cut short and is not compensated: possibly applied.
    failed_step_left_applied: bool,
    // In the order they happened, which is descending step order.
    compensation_errors: Vec<CompensationError<E>>,
}

impl<E> SagaError<E> {
    pub(crate) fn new(
        error: E,
        failed_step: usize,
        failed_step_name: Option<&str>,
        recovery: Recovery,
    ) -> Self {
        SagaError {
            error,
            failed_step,
            failed_step_name: failed_step_name.map(String::from),
            recovery,
            attempts: 0,
            timed_out: false,
            aborted: false,
            compensated: 0,
            never_compensated: 0..0,
            failed_step_left_applied: false,
            compensation_errors: Vec::new(),
        }
    }

    pub(crate) fn record_attempts(&mut self, attempts: u32) {
        self.attempts = attempts;
    }

    pub(crate) fn record_timed_out(&mut self) {
        self.timed_out = true;
    }

    pub(crate) fn record_aborted(&mut self) {
        self.aborted = true;
    }

    pub(crate) fn record_failed_step_left_applied(&mut self) {
        self.failed_step_left_applied = true;
    }

    pub(crate) fn record_compensated(&mut self) {
        self.compensated += 1;
    }

    pub(crate) fn record_compensation_error(
        &mut self,
        step: usize,
        error: E,
        attempts: u32,
        timed_out: bool,
    ) {
        self.compensation_errors.push(CompensationError {
            step,
            error,
            attempts,
            timed_out,
        });
    }

    pub(crate) fn record_never_compensated(&mut self, steps: Range<usize>) {
        self.never_compensated = steps;
    }

    /// The action error that made the saga fail.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The action error that made the saga fail, by value.
    pub fn into_error(self) -> E {
        self.error
    }

    /// The index of the step whose action failed (0 is the first step added).
    pub fn failed_step(&self) -> usize {
        self.failed_step
    }

    /// The name of the step whose action failed, when it has one.
    pub fn failed_step_name(&self) -> Option<&str> {
        self.failed_step_name.as_deref()
    }

    /// What the engine did after the action failed:
    /// [`Recovery::Compensate`] (also after retries ran out, and after an
    /// abort), or [`Recovery::Propagate`] when the saga's classifier returned
    /// the error without compensating. Never [`Recovery::Retry`].
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// How many attempts the failed step's action made (0 when the saga was
    /// aborted or timed out before it started).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `true` when the failure was a timeout: the failed step's last attempt,
    /// or the whole saga, ran out of time.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// `true` when the run was stopped by its [`AbortHandle`](crate::AbortHandle).
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// `true` when every step that needed compensation was compensated, so
    /// nothing the saga did is left applied.
    pub fn is_fully_compensated(&self) -> bool {
        self.uncompensated_count() == 0
    }

    /// How many compensations ran to success.
    pub fn compensated_count(&self) -> usize {
        self.compensated
    }

    /// Every compensation that failed, in the order they ran (descending step
    /// order).
    pub fn compensation_errors(&self) -> &[CompensationError<E>] {
        &self.compensation_errors
    }

    /// The steps left (possibly) applied, in ascending order: those whose
    /// compensation failed, those never compensated because the backward
    /// phase stopped or the error was propagated, and the failed step when it
    /// was cut short (by a timeout or an abort) and does not compensate failed
    /// actions.
    pub fn uncompensated_steps(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let failed_step = self.failed_step_left_applied.then_some(self.failed_step);
        let compensation_errors = self.compensation_errors.iter().rev();
        self.never_compensated
            .clone()
            .chain(compensation_errors.map(CompensationError::step))
            .chain(failed_step)
    }

    /// How many steps are left applied: the length of
    /// [`uncompensated_steps`](SagaError::uncompensated_steps).
    pub fn uncompensated_count(&self) -> usize {
        self.never_compensated.len()
            + self.compensation_errors.len()
            + usize::from(self.failed_step_left_applied)
    }
}

impl<E: fmt::Display> fmt::Display for SagaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.failed_step)?;
        if let Some(name) = &self.failed_step_name {
            write!(f, " ({name})")?;
        }
        write!(f, " failed: {}", self.error)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        if self.aborted {
            f.write_str(" (aborted)")?;
        }
        f.write_str("; ")?;
        let left = self.uncompensated_count();
        let steps = if left == 1 { "step" } else { "steps" };
        if self.recovery == Recovery::Propagate {
            return write!(
                f,
                "propagated without compensation, {left} {steps} left applied"
            );
        }
        match self.compensation_errors.as_slice() {
            [] if left > 0 => {
                let done = self.compensated;
                write!(f, "{done} compensated, {left} {steps} left applied")
            }
            [] if self.compensated == 0 => f.write_str("nothing needed compensation"),
            [] => {
                let n = self.compensated;
                write!(
                    f,
                    "fully compensated ({n} {})",
                    if n == 1 { "step" } else { "steps" }
                )
            }
            [first, rest @ ..] => {
                write!(f, "{first}")?;
                if !rest.is_empty() {
                    write!(f, " (and {} more compensation errors)", rest.len())?;
                }
                write!(f, "; {left} {steps} left uncompensated")
            }
        }
    }
}

impl<E> core::error::Error for SagaError<E>
where
    E: core::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A compensation that failed after its retries: its step, its last error,
/// and how many attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompensationError<E> {
    step: usize,
    error: E,
    attempts: u32,
    timed_out: bool,
}

impl<E> CompensationError<E> {
    /// The index of the step whose compensation failed.
    pub fn step(&self) -> usize {
        self.step
    }

    /// How many compensation attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `true` when the last attempt ran out of time.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The compensation's error.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The compensation's error, by value.
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for CompensationError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compensation of step {} failed: {}",
            self.step, self.error
        )?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl<E> core::error::Error for CompensationError<E>
where
    E: core::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.error)
    }
}
