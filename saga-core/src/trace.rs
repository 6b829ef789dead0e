//! The `tracing` feature: a span per saga run, and an event per transition.

use tracing::{Level, Span};

/// The span a run is polled in.
pub(crate) fn saga_span(steps: usize) -> Span {
    tracing::span!(Level::INFO, "saga", steps)
}

/// One transition of a step, as a `tracing` event inside the step's span.
pub(crate) fn transition(step: usize, name: Option<&str>, (what, attempt): (&'static str, u32)) {
    let span = tracing::span!(Level::DEBUG, "saga_step", step, name = name.unwrap_or(""));
    let _entered = span.enter();
    tracing::event!(Level::DEBUG, attempt, "{what}");
}
