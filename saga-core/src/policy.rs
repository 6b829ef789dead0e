//! What the engine does with an action error, and with a compensation error.

/// What happens after an action failed: the decision of a saga's error
/// classifier (see [`SagaBuilder::classify`](crate::SagaBuilder::classify)),
/// and what [`SagaError::recovery`](crate::SagaError::recovery) reports.
///
/// This is pysagas's `exceptions=`: errors it lists are compensated, others
/// propagate. Unlike pysagas, the default compensates every error, and a
/// propagated error still reports exactly which steps were left applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Recovery {
    /// Undo what was done: compensations run in reverse (the default).
    #[default]
    Compensate,
    /// Return the error at once, compensating nothing: every step that ran
    /// is reported as left uncompensated.
    Propagate,
}

/// What the backward phase does when a compensation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CompensationMode {
    /// Stop at the first failed compensation; it and every earlier step are
    /// reported as not compensated (the default). Safest when a later undo may
    /// depend on an earlier one having succeeded.
    #[default]
    StopOnError,
    /// Go on with the remaining compensations and collect every error.
    ContinueOnError,
}
