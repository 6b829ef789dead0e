//! [`FlowError`]: a failed flow run's report, and the values it produced.

use alloc::boxed::Box;
use core::fmt;

use crate::SagaError;

/// What a failed [`Flow`](crate::Flow) run returns: the
/// [report](FlowError::report) of a plain saga (where and why it stopped,
/// what was compensated), and the run's [values](FlowError::values): the
/// input, and each step's value where its action produced one.
///
/// A step's value is there when its action succeeded, whether or not it was
/// compensated since; [`SagaError::uncompensated_steps`] says which steps
/// are left applied, so the values of those are what an operator needs to
/// finish by hand.
///
/// A failed run allocates the report and the values, a box each; a
/// successful run allocates nothing.
///
/// `Display` and [`source`](core::error::Error::source) are the report's,
/// `Debug` shows the report and leaves the values out (they need not be
/// `Debug`), and `From<FlowError<E, P>> for SagaError<E>` drops the values, so `?`
/// works in a function returning `SagaError<E>`.
///
/// # Examples
///
/// ```
/// use saga_core::SagaBuilder;
///
/// let mut flow = SagaBuilder::new()
///     .input::<u32>()
///     .then(|order: &u32| { let order = *order; async move { Ok(order * 10) } }, |_| async { Ok(()) })
///     .then(|_| async { Err::<u32, _>("out of stock") }, |_| async { Ok(()) })
///     .build();
///
/// let error = smol::block_on(flow.run(7)).unwrap_err();
/// assert_eq!(error.report().failed_step(), 1);
/// assert!(error.report().is_fully_compensated());
/// // The input, the first step's value, and no value from the second.
/// assert_eq!(*error.values(), ((7, Some(70)), None));
/// ```
pub struct FlowError<E, P> {
    report: SagaError<E>,
    // Boxed, as the report is: a `Result<_, FlowError<E, P>>` stays two
    // pointers wide however many values the flow has.
    values: Box<P>,
}

impl<E, P> FlowError<E, P> {
    pub(crate) fn new(report: SagaError<E>, values: P) -> Self {
        FlowError {
            report,
            values: Box::new(values),
        }
    }

    /// Where and why the run stopped, and what was compensated.
    pub fn report(&self) -> &SagaError<E> {
        &self.report
    }

    /// The run's input and each step's value (`None` where the action
    /// produced none), nested as the steps read them.
    pub fn values(&self) -> &P {
        &self.values
    }

    /// The report, without the values.
    pub fn into_report(self) -> SagaError<E> {
        self.report
    }

    /// The report and the values.
    pub fn into_parts(self) -> (SagaError<E>, P) {
        (self.report, *self.values)
    }
}

impl<E, P> From<FlowError<E, P>> for SagaError<E> {
    fn from(error: FlowError<E, P>) -> Self {
        error.report
    }
}

// The values need not be `Debug` (nor `Send`, `Sync`) for the error to be
// `unwrap`ped or boxed as an error: they are read with `values()`.
impl<E: fmt::Debug, P> fmt::Debug for FlowError<E, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowError")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Display, P> fmt::Display for FlowError<E, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.report, f)
    }
}

impl<E: core::error::Error + 'static, P> core::error::Error for FlowError<E, P> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        core::error::Error::source(&self.report)
    }
}
