//! An observer that panics is muted for the rest of the run, and its panic
//! is charged where `rt::CatchPanics` documents it: to the attempt whose
//! failure (or retry) it was being told of.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use saga_core::rt::CatchPanics;
use saga_core::{Observer, Panicked, Retry, Run, SagaBuilder, SagaError, StepRef};

#[derive(Debug, PartialEq)]
enum Error {
    Busy,
    Panicked,
}

impl From<Panicked> for Error {
    fn from(_: Panicked) -> Self {
        Error::Panicked
    }
}

/// Runs `run` to completion under `CatchPanics`: each panic fails what was
/// panicking with `Error::Panicked`.
fn drive(run: Run<'_, Error>) -> Result<(), SagaError<Error>> {
    smol::block_on(CatchPanics::new(run))
}

#[derive(Default)]
struct PanicsOn {
    failed: AtomicU32,
    retried: AtomicU32,
    calls: AtomicU32,
    on_failed: bool,
}

impl Observer<Error> for PanicsOn {
    fn action_started(&self, _: StepRef<'_>, _: u32) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
    fn action_failed(&self, _: StepRef<'_>, _: u32, _: &Error) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.failed.fetch_add(1, Ordering::SeqCst);
        if self.on_failed {
            panic!("observer: action_failed");
        }
    }
    fn action_retried(&self, _: StepRef<'_>, _: u32, _: std::time::Duration) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.retried.fetch_add(1, Ordering::SeqCst);
        if !self.on_failed {
            panic!("observer: action_retried");
        }
    }
}

fn failing_then_ok(
    attempts: &Arc<AtomicU32>,
) -> impl FnMut() -> std::future::Ready<Result<(), Error>> + Send + 'static {
    let attempts = attempts.clone();
    move || {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if attempt == 1 {
            Err(Error::Busy)
        } else {
            Ok(())
        })
    }
}

#[test]
fn a_panic_while_told_of_a_failure_replaces_that_error_and_the_retry_policy_still_applies() {
    std::panic::set_hook(Box::new(|_| {}));
    let observer = Arc::new(PanicsOn {
        on_failed: true,
        ..PanicsOn::default()
    });
    let attempts = Arc::new(AtomicU32::new(0));
    let undone = Arc::new(AtomicU32::new(0));
    let undo = undone.clone();
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(failing_then_ok(&attempts), move || {
            undo.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(()))
        })
        .observer(observer.clone())
        .build();
    // Attempt 1 fails, the observer panics while told; the attempt's error
    // becomes the panic, which the policy retries; attempt 2 succeeds.
    assert!(drive(saga.run()).is_ok());
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(undone.load(Ordering::SeqCst), 0);
    // Started once and failed once: muted from the panic on.
    assert_eq!(observer.failed.load(Ordering::SeqCst), 1);
    assert_eq!(observer.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_panic_while_told_of_a_retry_ends_that_step_with_the_panic() {
    std::panic::set_hook(Box::new(|_| {}));
    let observer = Arc::new(PanicsOn::default());
    let attempts = Arc::new(AtomicU32::new(0));
    let undone = Arc::new(AtomicU32::new(0));
    let undo = undone.clone();
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(3))
        .add_step(|| std::future::ready(Ok(())), || std::future::ready(Ok(())))
        .add_step(failing_then_ok(&attempts), move || {
            undo.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(()))
        })
        .observer(observer.clone())
        .build();
    let error = drive(saga.run()).unwrap_err();
    assert_eq!(*error.error(), Error::Panicked);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 1, "no retry after the panic");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(undone.load(Ordering::SeqCst), 1);
    assert_eq!(observer.retried.load(Ordering::SeqCst), 1);
}
