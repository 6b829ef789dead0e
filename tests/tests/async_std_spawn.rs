//! saga-async-std's `spawn`: dropping the handle never stops a saga, aborting
//! through it compensates, and the saga comes back to run again.

#[macro_use]
mod runtime_support;

on_async_std!(
    dropped_handle_still_compensates,
    dropped_handle_still_completes,
    abort_mid_action_finishes_it_then_compensates,
    abort_cuts_hanging_action_short,
    finished_saga_runs_again,
);
