//! The `tracing` feature: a span per saga run, a span per step (entered while
//! the step is polled), and an event per transition.

use tracing::{Level, Span};

/// The span of one run, entered on every poll.
pub(crate) fn saga_span(steps: usize) -> Span {
    tracing::span!(Level::INFO, "saga", steps)
}

/// The span of one step's action or compensation, inside the run's span.
pub(crate) fn step_span(saga: &Span, step: usize, name: Option<&str>, action: bool) -> Span {
    let phase = if action { "action" } else { "compensation" };
    let name = name.unwrap_or("");
    tracing::span!(parent: saga, Level::INFO, "saga_step", step, name, phase)
}

/// One transition, as an event in the current (step or saga) span.
pub(crate) fn transition((what, attempt): (&'static str, u32)) {
    tracing::event!(Level::DEBUG, attempt, "{what}");
}
