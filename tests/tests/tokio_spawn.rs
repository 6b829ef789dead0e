//! saga-tokio's `spawn`: dropping the handle never stops a saga, aborting
//! through it compensates, the saga comes back to run again, and a runtime
//! that shuts down mid-saga makes the handle report `Lost`. Each scenario
//! runs on a current-thread and on a multi-thread runtime.

#[macro_use]
mod runtime_support;

on_tokio!(
    dropped_handle_still_compensates,
    dropped_handle_still_completes,
    abort_mid_action_finishes_it_then_compensates,
    abort_cuts_hanging_action_short,
    finished_saga_runs_again,
);

use runtime_support::{Error, Signal};
use saga_core::SagaBuilder;
use tokio::runtime::{Builder, Runtime};

/// A runtime shut down while step 1 hangs: the handle, awaited on another
/// runtime, reports the saga lost (not a panic, not a success).
fn shutdown_loses_the_saga(runtime: Runtime) {
    let started = Signal::new();
    let signal = started.clone();
    let saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            move || {
                signal.set();
                core::future::pending::<Result<(), Error>>()
            },
            || async { Ok(()) },
        )
        .build();
    let handle = {
        let _in_runtime = runtime.enter();
        saga_tokio::spawn(saga)
    };
    runtime.block_on(started.wait());
    assert!(!handle.is_finished());
    drop(runtime);

    assert!(handle.is_finished());
    let other = Builder::new_current_thread().build().unwrap();
    let lost = other.block_on(handle).unwrap_err();
    assert!(!lost.is_panic());
}

#[test]
fn shutdown_loses_the_saga_current_thread() {
    shutdown_loses_the_saga(Builder::new_current_thread().build().unwrap());
}

#[test]
fn shutdown_loses_the_saga_multi_thread() {
    shutdown_loses_the_saga(
        Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    );
}
