//! saga-async-std's sleeper on async-std's real timer: action and
//! compensation timeouts, retries with backoff, the saga deadline. Small
//! durations; assertions on attempts and reports, never on wall-clock time.

#[macro_use]
mod runtime_support;

on_async_std!(
    timed_out_action_is_retried,
    retries_run_out_with_backoff,
    timed_out_compensation_is_retried,
    saga_deadline_compensates,
);
