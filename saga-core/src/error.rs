//! [`SagaError`]: what failed, and exactly what was and was not compensated.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// The error of a failed saga run: where and why the saga stopped, and
/// exactly what was and was not compensated.
///
/// It reports the error that stopped the saga ([`error`](SagaError::error)),
/// where it stopped ([`failed_step`](SagaError::failed_step), and that step's
/// [name](SagaError::failed_step_name)), why ([`reason`](SagaError::reason)),
/// what the engine did about it ([`handling`](SagaError::handling)), how
/// many attempts were made, the other members of a parallel group that
/// failed too ([`concurrent_failures`](SagaError::concurrent_failures)),
/// every compensation that failed, with its step
/// ([`compensation_errors`](SagaError::compensation_errors)), and the steps
/// left applied ([`uncompensated_steps`](SagaError::uncompensated_steps)).
/// When [`is_fully_compensated`](SagaError::is_fully_compensated) is `true`,
/// nothing the saga did is left applied.
///
/// # Where and why the saga stopped
///
/// | what happened | [`reason`](SagaError::reason) | [`failed_step`](SagaError::failed_step) | [`error`](SagaError::error) | [`attempts`](SagaError::attempts) | `Display` starts with | the observer saw |
/// | --- | --- | --- | --- | --- | --- | --- |
/// | an action returned `Err` (after its retries, or as the classifier decided) | [`Failed`](StopReason::Failed) | that step | its last error | attempts made | `step 1 (name) failed: ` | `action_failed` |
/// | an action's last attempt ran out of time | [`TimedOut`](StopReason::TimedOut) | that step | `E::from(TimedOut)` | attempts made | `step 1 (name) failed: ` | `action_failed` |
/// | an action panicked, or a callback deciding about it (runtime adapters catch panics) | [`Panicked`](StopReason::Panicked) | that step | `E::from(Panicked)` | attempts made | `step 1 (name) failed: ` | `action_failed` |
/// | the sleeper, starting the timeout of an action's first attempt (the action was never called) | [`Panicked`](StopReason::Panicked) | that step | `E::from(Panicked)` | 0 | `stopped before step 2 (name): ` | nothing of that step |
/// | a panic outside any step (an observer told of something other than a failure, the sleeper timing the deadline) | [`Panicked`](StopReason::Panicked) | the lowest step in flight, else the first that never started | `E::from(Panicked)` | that step's attempts so far, or 0 | `step 1 (name) failed: `, or with 0 attempts `stopped before step 2 (name): ` | nothing more from the observer that panicked |
/// | an abort cut the action in flight short ([`InFlight::CutShort`](crate::InFlight::CutShort)), or ended its wait for a retry | [`Aborted`](StopReason::Aborted) | that step | `E::from(Aborted)` | attempts made | `step 1 (name) cut short: ` | `aborted`, then `action_failed` |
/// | an abort with no action in flight, or whose action in flight then succeeded | [`Aborted`](StopReason::Aborted) | the first step that never started | `E::from(Aborted)` | 0 | `stopped before step 2 (name): ` | `aborted` |
/// | the saga's deadline, with an action in flight (always cut short) or waiting for a retry | [`Deadline`](StopReason::Deadline) | that step | `E::from(TimedOut)` | attempts made | `step 1 (name) cut short: ` | `deadline_passed`, then `action_failed` |
/// | the saga's deadline, with no action in flight | [`Deadline`](StopReason::Deadline) | the first step that never started | `E::from(TimedOut)` | 0 | `stopped before step 2 (name): ` | `deadline_passed` |
/// | a resumed durable run found an action attempt cut short by a crash, with no attempt left in its retry policy | [`Crashed`](StopReason::Crashed) | that step | `E::from(Crashed)` | attempts made | `step 1 (name) failed: ` | `action_failed` |
///
/// When an abort lets the action in flight finish ([`InFlight::Finish`](crate::InFlight::Finish),
/// the default) and it fails on its own, the saga stopped because of that
/// failure: [`Failed`](StopReason::Failed), with the action's own error, and
/// [`aborted`](SagaError::aborted) is `true`; no retry starts after the
/// abort. The observer hears `aborted` when the run notices it: before the
/// action's `action_failed` when the action was still pending, after it when
/// the abort landed in the very poll in which the action failed. An abort or a deadline that
/// lands while the last step is in flight and lets it succeed is too late
/// to stop anything: the run succeeds. In a parallel group, the first member
/// failure observed is the one reported here; the others are
/// [`concurrent_failures`](SagaError::concurrent_failures). The observer
/// receives the same report in [`Observer::saga_finished`](crate::Observer::saga_finished).
///
/// # `Display`
///
/// One line, in this order, parts separated by `"; "`; a step is written
/// `step 3`, or `step 3 (name)` when it has a name:
///
/// 1. where it stopped, as in the table above: `stopped before step 2: `
///    when that step never started (no attempt), `step 1 cut short: ` for an
///    abort or the deadline, `step 1 failed: ` otherwise; then the error;
///    then ` (after 3 attempts)` when there was more than one attempt; then
///    `, saga aborted` or `, saga deadline passed` when an abort or the
///    deadline landed but the saga stopped for another reason;
/// 2. each other member of the group that failed: `step 4 (name) failed too: error`,
///    with ` (after 3 attempts)` when it was retried;
/// 3. how it ended:
///    - `propagated without compensation, 2 steps left applied` when the
///      classifier propagated the error;
///    - each failed compensation, `compensation of step 0 (name) failed: error`
///      (with ` (after 3 attempts)` when retried), then
///      `1 step left uncompensated` / `2 steps left uncompensated`;
///    - otherwise `nothing needed compensation`, `fully compensated (1 step)`,
///      `fully compensated (3 steps)`, or `2 compensated, 1 step left applied`
///      (a step cut short that does not compensate a failed action).
///
/// # Examples
///
/// ```
/// use saga_core::{FnStep, SagaBuilder, StopReason};
///
/// let mut saga = SagaBuilder::new()
///     .step(
///         FnStep::new(|| async { Ok(()) }, || async { Err("refund service down") })
///             .named("charge card"),
///     )
///     .add_step(|| async { Err::<(), _>("out of stock") }, || async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(saga.run()).unwrap_err();
/// assert_eq!(*error.error(), "out of stock");
/// assert_eq!(error.reason(), StopReason::Failed);
/// assert_eq!(error.failed_step(), 1);
/// assert!(!error.is_fully_compensated());
/// assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
/// assert_eq!(error.compensation_errors()[0].step(), 0);
/// assert_eq!(error.compensation_errors()[0].name(), Some("charge card"));
/// assert_eq!(
///     error.to_string(),
///     "step 1 failed: out of stock; compensation of step 0 (charge card) failed: \
///      refund service down; 1 step left uncompensated",
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
    handling: Handling,
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

/// Why a saga stopped going forward: what [`SagaError::error`] stands for.
/// See [`SagaError`] for the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// An action returned an error, after its retries (or as the classifier
    /// decided): the error is that action's.
    Failed,
    /// An action's last attempt ran out of time: the error is
    /// `E::from(TimedOut)`.
    TimedOut,
    /// An action, or a callback of the run (classifier, jitter function,
    /// observer, sleeper), panicked and a runtime adapter caught it: the
    /// error is `E::from(Panicked)`.
    Panicked,
    /// The run's [`AbortHandle`](crate::AbortHandle) aborted it: the error is
    /// `E::from(Aborted)`.
    Aborted,
    /// The saga's deadline ([`SagaBuilder::saga_timeout`](crate::SagaBuilder::saga_timeout))
    /// passed: the error is `E::from(TimedOut)`.
    Deadline,
    /// The process running a durable saga stopped during an action attempt
    /// that the step's retry policy does not allow to run again, and a
    /// resumed run counted it as cut short: the error is
    /// `E::from(Crashed)` (see [`Crashed`](crate::Crashed)).
    Crashed,
}

/// What the engine did once the saga stopped: the report's side of the
/// classifier's [`Recovery`](crate::Recovery) decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Handling {
    /// The backward phase ran: compensations undid what was applied
    /// ([`SagaError::is_fully_compensated`] says whether all of it).
    Compensated,
    /// The classifier returned [`Recovery::Propagate`](crate::Recovery::Propagate):
    /// nothing was compensated, and every step that ran is left applied.
    Propagated,
}

impl<E> SagaError<E> {
    pub(crate) fn new(failure: StepFailure<E>, handling: Handling) -> Self {
        let report = Report {
            failure,
            handling,
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

    /// The error that stopped the saga: the failed action's, or the one made
    /// for a timeout, a panic, an abort or the deadline (see
    /// [`reason`](SagaError::reason)).
    pub fn error(&self) -> &E {
        &self.report.failure.error
    }

    /// The error that stopped the saga, by value.
    pub fn into_error(self) -> E {
        self.report.failure.error
    }

    /// Where the saga stopped (0 is the first step added): the step whose
    /// action failed, timed out, panicked or was cut short; after an abort or
    /// the deadline with no action cut short, the first step that never
    /// started ([`attempts`](SagaError::attempts) is then 0).
    pub fn failed_step(&self) -> usize {
        self.report.failure.step
    }

    /// The name of the step where the saga stopped, when it has one.
    pub fn failed_step_name(&self) -> Option<&str> {
        self.report.failure.name()
    }

    /// Why the saga stopped (see the table on [`SagaError`]).
    pub fn reason(&self) -> StopReason {
        self.report.failure.reason
    }

    /// What the engine did once the saga stopped: compensated (also after
    /// retries ran out, a timeout, an abort or a panic), or propagated the
    /// error without compensating, as the classifier decided.
    pub fn handling(&self) -> Handling {
        self.report.handling
    }

    /// How many attempts the action of [`failed_step`](SagaError::failed_step)
    /// made, counting one cut short (0 when the saga stopped before it
    /// started).
    pub fn attempts(&self) -> u32 {
        self.report.failure.attempts
    }

    /// `true` when the saga stopped because of a timeout: the failed step's
    /// last attempt, or the whole saga, ran out of time.
    pub fn timed_out(&self) -> bool {
        self.report.failure.timed_out || self.report.deadline
    }

    /// `true` when the run was aborted through its
    /// [`AbortHandle`](crate::AbortHandle) while going forward, whether or
    /// not the abort is what stopped it (an action in flight may have failed
    /// on its own). An abort that lands once the saga is compensating
    /// changes nothing (compensations are never interrupted) and is not
    /// reported.
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
            .field("handling", &report.handling)
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

/// A step as `Display` writes it: `step 3`, or `step 3 (name)`.
struct StepLabel<'a>(usize, Option<&'a str>);

impl fmt::Display for StepLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.0)?;
        match self.1 {
            Some(name) => write!(f, " ({name})"),
            None => Ok(()),
        }
    }
}

/// ` (after 3 attempts)`, when there was more than one.
struct AfterAttempts(u32);

impl fmt::Display for AfterAttempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 | 1 => Ok(()),
            attempts => write!(f, " (after {attempts} attempts)"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for SagaError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        let failure = &report.failure;
        let label = failure.label();
        let interrupted = matches!(failure.reason, StopReason::Aborted | StopReason::Deadline);
        match (failure.attempts, interrupted) {
            (0, _) => write!(f, "stopped before {label}: ")?,
            (_, true) => write!(f, "{label} cut short: ")?,
            (_, false) => write!(f, "{label} failed: ")?,
        }
        write!(f, "{}{}", failure.error, AfterAttempts(failure.attempts))?;
        if !interrupted && report.aborted {
            f.write_str(", saga aborted")?;
        } else if !interrupted && report.deadline {
            f.write_str(", saga deadline passed")?;
        }
        for other in &report.concurrent_failures {
            write!(f, "; {} failed too: {}", other.label(), other.error)?;
            write!(f, "{}", AfterAttempts(other.attempts))?;
        }
        f.write_str("; ")?;
        let left = self.uncompensated_count();
        let steps = if left == 1 { "step" } else { "steps" };
        if report.handling == Handling::Propagated {
            return write!(
                f,
                "propagated without compensation, {left} {steps} left applied"
            );
        }
        if !report.compensation_errors.is_empty() {
            for undo in &report.compensation_errors {
                write!(f, "compensation of {} failed: {}", undo.label(), undo.error)?;
                write!(f, "{}; ", AfterAttempts(undo.attempts))?;
            }
            return write!(f, "{left} {steps} left uncompensated");
        }
        match (left, report.compensated) {
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

/// One step's failure: its index and name, its last error, how many
/// attempts were made, and whether the last one timed out. Reported for
/// compensations that failed ([`SagaError::compensation_errors`]) and for
/// the other failed members of a parallel group
/// ([`SagaError::concurrent_failures`]).
///
/// Its `Display` is `step 3 (name) failed: error (after 2 attempts)` for an
/// action, `compensation of step 3 (name) failed: error` for a compensation
/// (the name and the attempts only when there is one, and more than one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure<E> {
    pub(crate) step: usize,
    pub(crate) name: Option<String>,
    pub(crate) error: E,
    pub(crate) attempts: u32,
    pub(crate) timed_out: bool,
    // Why the step stopped, when it is the saga's failure.
    pub(crate) reason: StopReason,
    // A compensation's failure rather than an action's.
    pub(crate) compensation: bool,
}

impl<E> StepFailure<E> {
    /// The index of the step.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The step's name, when it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
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

    /// `true` when the step's own timeout cut its last attempt short (the
    /// saga's deadline is reported by [`SagaError::timed_out`]).
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    fn label(&self) -> StepLabel<'_> {
        StepLabel(self.step, self.name())
    }
}

impl<E: fmt::Display> fmt::Display for StepFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.compensation {
            f.write_str("compensation of ")?;
        }
        write!(f, "{} failed: {}", self.label(), self.error)?;
        write!(f, "{}", AfterAttempts(self.attempts))
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
