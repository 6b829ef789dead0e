//! saga-tokio turns panics into failed steps: a panicking action is
//! compensated, a panicking compensation is reported, blocking steps' panics
//! become errors, and a step that panics twice (when polled, then when
//! dropped) is contained. The
//! runtime keeps working after each. Current-thread and multi-thread.

#[macro_use]
mod runtime_support;

on_tokio!(
    panicking_action_is_compensated,
    panicking_compensation_is_reported,
    blocking_steps_and_their_panics,
    double_panic_in_a_step_is_contained,
);
