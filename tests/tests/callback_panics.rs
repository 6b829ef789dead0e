//! A panic in a user callback (the classifier, a retry's jitter function, an
//! observer method, the sleeper) is a failed attempt of the step the callback
//! was serving, with the error `E::from(Panicked)` carrying the panic
//! message, exactly as if that step had panicked; the panicking callback is
//! not called again for the rest of that run, and the run then compensates
//! what was applied. Checked on detached runs (`saga_tokio::spawn` on tokio
//! multi-thread and current-thread, `saga_async_std::spawn`, and
//! `saga_core::rt::detach` on smol), and under `rt::CatchPanics`.
//!
//! Also pinned here, as decisions that must keep holding: a step's own panic
//! under `CatchPanics` (which every adapter's `spawn` wraps the run in) is
//! a failed attempt like any other, classified and retried by policy.
//!
//! Every run is awaited on a thread of its own under a 10 s watchdog, so a
//! run that never ends fails its test instead of hanging the suite. Every
//! panicking callback also stops panicking after `VALVE` calls, so an engine
//! that keeps calling it ends the run and fails on the call count instead
//! of spinning.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod runtime_support;

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use runtime_support::{Error, TEST_PANIC, quiet_test_panics};
use saga_core::rt::{CatchPanics, Finished, Lost};
use saga_core::{Observer, Recovery, Retry, Saga, SagaBuilder, SagaError, StepPolicy, StepRef};

/// How long a run may take before its test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(10);

/// A panicking callback panics on its first `VALVE` calls only.
const VALVE: u32 = 20;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// What the actions and compensations did, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, entry: &str) {
        self.0.lock().unwrap().push(entry.to_owned());
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// An action or compensation that logs `entry` and returns `result`.
fn call(
    log: &Log,
    entry: &'static str,
    result: Result<(), Error>,
) -> impl FnMut() -> Ready<Result<(), Error>> + Send + 'static {
    let log = log.clone();
    move || {
        log.push(entry);
        ready(result.clone())
    }
}

fn ok(log: &Log, entry: &'static str) -> impl FnMut() -> Ready<Result<(), Error>> + Send + 'static {
    call(log, entry, Ok(()))
}

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

fn calls(counter: &Arc<AtomicU32>) -> u32 {
    counter.load(Ordering::SeqCst)
}

/// Counts a call; `true` while the callback should still panic.
fn trips(counter: &AtomicU32) -> bool {
    counter.fetch_add(1, Ordering::SeqCst) < VALVE
}

/// Asserts that `error` is `E::from(Panicked)` of a panic whose message
/// contains `message`.
#[track_caller]
fn assert_panicked(error: &SagaError<Error>, message: &str) {
    match error.error() {
        Error::Panicked(text) if text.contains(message) => {}
        other => panic!("expected the panic {message:?}, got {other:?} in {error:?}"),
    }
}

/// `f()` on a thread of its own; panics if it takes longer than
/// [`WATCHDOG`] (the thread is then left behind), and passes a panic of `f`
/// on.
fn watched<T: Send + 'static>(what: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = sender.send(f());
    });
    match receiver.recv_timeout(WATCHDOG) {
        Ok(output) => output,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: no outcome within {WATCHDOG:?} (hung)"),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}

/// The executors a detached saga runs on.
#[derive(Debug, Clone, Copy)]
enum Exec {
    /// `saga_tokio::spawn` on a two-worker multi-thread runtime.
    TokioMultiThread,
    /// `saga_tokio::spawn` on a current-thread runtime.
    TokioCurrentThread,
    /// `saga_async_std::spawn`.
    AsyncStd,
    /// `saga_core::rt::detach`, its task spawned on smol.
    Smol,
}

fn spawn_and_join(exec: Exec, saga: Saga<Error>) -> Result<Finished<Error>, Lost> {
    match exec {
        Exec::TokioMultiThread | Exec::TokioCurrentThread => {
            let mut builder = match exec {
                Exec::TokioMultiThread => {
                    let mut builder = tokio::runtime::Builder::new_multi_thread();
                    builder.worker_threads(2);
                    builder
                }
                _ => tokio::runtime::Builder::new_current_thread(),
            };
            let runtime = builder.enable_all().build().unwrap();
            runtime.block_on(async { saga_tokio::spawn(saga).await })
        }
        Exec::AsyncStd => async_std::task::block_on(saga_async_std::spawn(saga)),
        Exec::Smol => {
            let (task, handle) = saga_core::rt::detach(saga);
            smol::spawn(task).detach();
            smol::block_on(handle)
        }
    }
}

/// Spawns `saga` on `exec` and returns its report: the handle must resolve
/// (within the watchdog) to a finished saga whose run failed.
fn failed_run(exec: Exec, saga: Saga<Error>) -> SagaError<Error> {
    let outcome = watched(format!("a saga spawned on {exec:?}"), move || {
        spawn_and_join(exec, saga)
    });
    let finished = outcome.unwrap_or_else(|lost| panic!("{exec:?}: {lost}"));
    finished
        .result
        .expect_err("a run whose callback panicked fails")
}

/// `saga.run()` under `CatchPanics`, on smol, within the watchdog.
fn run_catching_panics(saga: Saga<Error>) -> Result<(), SagaError<Error>> {
    watched("a run under CatchPanics".into(), move || {
        let mut saga = saga;
        smol::block_on(CatchPanics::new(saga.run()))
    })
}

/// An observer that records every call, and panics at the call described as
/// `trip` (on its first [`VALVE`] occurrences).
struct Tripwire {
    trip: &'static str,
    trips: AtomicU32,
    events: Mutex<Vec<String>>,
}

impl Tripwire {
    fn new(trip: &'static str) -> Arc<Self> {
        Arc::new(Tripwire {
            trip,
            trips: AtomicU32::new(0),
            events: Mutex::new(Vec::new()),
        })
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    fn record(&self, event: String) {
        let tripped = event == self.trip;
        self.events.lock().unwrap().push(event);
        if tripped && trips(&self.trips) {
            panic!("{TEST_PANIC} observer at {}", self.trip);
        }
    }
}

impl Observer<Error> for Tripwire {
    fn saga_started(&self, steps: usize) {
        self.record(format!("saga started ({steps})"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<Error>>) {
        self.record(format!("saga finished (ok: {})", result.is_ok()));
    }
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.record(format!("act {} #{attempt}", step.index));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.record(format!("acted {} #{attempt}", step.index));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.record(format!("act failed {} #{attempt}: {error:?}", step.index));
    }
    fn action_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.record(format!("act retry {} #{next} in {delay:?}", step.index));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.record(format!("undo {} #{attempt}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.record(format!("undone {} #{attempt}", step.index));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &Error) {
        self.record(format!("undo failed {} #{attempt}: {error:?}", step.index));
    }
    fn compensation_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.record(format!("undo retry {} #{next} in {delay:?}", step.index));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.record(format!("aborted at {}", step.index));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.record(format!("deadline passed at {}", step.index));
    }
}

// ---------------------------------------------------------------------------
// Callback panics on detached runs, one scenario per callback
// ---------------------------------------------------------------------------

/// The classifier panics on every error (it plays `|_| unreachable!()`):
/// step 1's failure becomes that panic, with no retry, and steps 1 and 0 are
/// undone.
fn a_panicking_classifier_fails_the_step_it_classified_without_retry(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let classified = counter();
    let counted = classified.clone();
    let saga = SagaBuilder::new()
        .action_retry(Retry::attempts(3))
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(
            call(&log, "act 1", Err(Error::Failed("declined"))),
            ok(&log, "undo 1"),
        )
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .classify(move |_error: &Error| -> Recovery {
            if trips(&counted) {
                panic!("{TEST_PANIC} classifier");
            }
            Recovery::Compensate
        })
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(calls(&classified), 1, "the classifier is asked once");
    assert_panicked(&error, "test panic: classifier");
    assert_eq!(error.failed_step(), 1);
    assert_eq!(
        error.attempts(),
        1,
        "no retry after the classifier panicked"
    );
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(error.compensated_count(), 2);
    assert_eq!(log.entries(), ["act 0", "act 1", "undo 1", "undo 0"]);
}

/// The jitter function panics: the step fails with that panic after its one
/// attempt, and is undone with the step before it.
fn a_panicking_jitter_function_fails_the_step_after_one_attempt(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let jittered = counter();
    let counted = jittered.clone();
    let retry = Retry::attempts(3)
        .constant(Duration::from_millis(1))
        .jitter(move |delay| {
            if trips(&counted) {
                panic!("{TEST_PANIC} jitter");
            }
            delay
        });
    let saga = SagaBuilder::new()
        .sleeper(smol::Timer::after)
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step_with(
            call(&log, "act 1", Err(Error::Busy)),
            ok(&log, "undo 1"),
            StepPolicy::new().retry(retry),
        )
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(calls(&jittered), 1, "the jitter function is called once");
    assert_panicked(&error, "test panic: jitter");
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(log.entries(), ["act 0", "act 1", "undo 1", "undo 0"]);
}

/// The observer's `action_started` panics for step 1: the run fails at
/// step 1, the observer hears nothing more, and step 0 is undone.
fn a_panicking_action_started_fails_that_step_and_silences_the_observer(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let observer = Tripwire::new("act 1 #1");
    let saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(ok(&log, "act 1"), ok(&log, "undo 1"))
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .observer(observer.clone())
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(
        observer.events(),
        ["saga started (3)", "act 0 #1", "acted 0 #1", "act 1 #1"],
        "the observer is not called again after it panicked"
    );
    assert_panicked(&error, "test panic: observer at act 1 #1");
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    let entries = log.entries();
    assert_eq!(entries.first().map(String::as_str), Some("act 0"));
    assert_eq!(
        entries.last().map(String::as_str),
        Some("undo 0"),
        "{entries:?}"
    );
    assert!(!entries.iter().any(|entry| entry == "act 2"), "{entries:?}");
}

/// The observer's `saga_started` panics: it is called once, and the run
/// fails at step 0 before any action starts, with nothing to undo.
fn a_panicking_saga_started_fails_the_run_before_any_action(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let observer = Tripwire::new("saga started (2)");
    let saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(ok(&log, "act 1"), ok(&log, "undo 1"))
        .observer(observer.clone())
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(observer.events(), ["saga started (2)"]);
    assert_panicked(&error, "test panic: observer at saga started (2)");
    assert_eq!(error.failed_step(), 0);
    assert_eq!(error.compensated_count(), 0);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert!(log.entries().is_empty(), "{:?}", log.entries());
}

/// The sleeper panics when asked for step 1's timeout, before step 1's
/// action is called: the saga stops before step 1 (nothing of it ran, so
/// nothing of it is compensated), step 2 never starts, step 0 is undone.
fn a_panicking_sleeper_fails_the_step_whose_timer_it_was_asked_for(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let slept = counter();
    let counted = slept.clone();
    let sleeper = move |duration: Duration| -> smol::Timer {
        if trips(&counted) {
            panic!("{TEST_PANIC} sleeper");
        }
        smol::Timer::after(duration)
    };
    let saga = SagaBuilder::new()
        .sleeper(sleeper)
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step_with(
            ok(&log, "act 1"),
            ok(&log, "undo 1"),
            StepPolicy::new().timeout(Duration::from_secs(5)),
        )
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(calls(&slept), 1, "the sleeper is asked once");
    assert_panicked(&error, "test panic: sleeper");
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 0, "step 1 never began");
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(error.compensated_count(), 1, "only step 0 was undone");
    assert_eq!(error.reason(), saga_core::StopReason::Panicked);
    assert_eq!(log.entries(), ["act 0", "undo 0"]);
}

/// The sleeper panics when asked for step 1's retry backoff: step 1 fails
/// with that panic after its one attempt, and is undone with step 0.
fn a_sleeper_panicking_for_a_backoff_fails_the_step_that_was_retrying(exec: Exec) {
    quiet_test_panics();
    let log = Log::default();
    let slept = counter();
    let counted = slept.clone();
    let sleeper = move |duration: Duration| -> smol::Timer {
        if trips(&counted) {
            panic!("{TEST_PANIC} sleeper");
        }
        smol::Timer::after(duration)
    };
    let saga = SagaBuilder::new()
        .sleeper(sleeper)
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step_with(
            call(&log, "act 1", Err(Error::Busy)),
            ok(&log, "undo 1"),
            StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_millis(1))),
        )
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .build();

    let error = failed_run(exec, saga);
    assert_eq!(calls(&slept), 1, "the sleeper is asked once");
    assert_panicked(&error, "test panic: sleeper");
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(log.entries(), ["act 0", "act 1", "undo 1", "undo 0"]);
}

/// One module per executor, one test per scenario in each.
macro_rules! on_every_runtime {
    ($($scenario:ident),* $(,)?) => {
        on_every_runtime!(@exec tokio_multi_thread, TokioMultiThread, $($scenario),*);
        on_every_runtime!(@exec tokio_current_thread, TokioCurrentThread, $($scenario),*);
        on_every_runtime!(@exec async_std_spawn, AsyncStd, $($scenario),*);
        on_every_runtime!(@exec smol_detach, Smol, $($scenario),*);
    };
    (@exec $module:ident, $exec:ident, $($scenario:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario(super::Exec::$exec);
                }
            )*
        }
    };
}

on_every_runtime!(
    a_panicking_classifier_fails_the_step_it_classified_without_retry,
    a_panicking_jitter_function_fails_the_step_after_one_attempt,
    a_panicking_action_started_fails_that_step_and_silences_the_observer,
    a_panicking_saga_started_fails_the_run_before_any_action,
    a_panicking_sleeper_fails_the_step_whose_timer_it_was_asked_for,
    a_sleeper_panicking_for_a_backoff_fails_the_step_that_was_retrying,
);

// ---------------------------------------------------------------------------
// Under CatchPanics
// ---------------------------------------------------------------------------

#[test]
fn an_observer_whose_saga_started_panics_is_called_once_under_catch_panics() {
    quiet_test_panics();
    let log = Log::default();
    let observer = Tripwire::new("saga started (2)");
    let saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(ok(&log, "act 1"), ok(&log, "undo 1"))
        .observer(observer.clone())
        .build();

    let error = run_catching_panics(saga).unwrap_err();
    assert_eq!(observer.events(), ["saga started (2)"]);
    assert_panicked(&error, "test panic: observer at saga started (2)");
    assert_eq!(error.failed_step(), 0);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert!(log.entries().is_empty(), "{:?}", log.entries());
}

/// A step whose action logs `entry` and then panics with `TEST_PANIC entry`.
fn panicking(
    log: &Log,
    entry: &'static str,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>> + Send + 'static
{
    let log = log.clone();
    move || {
        let log = log.clone();
        Box::pin(async move {
            log.push(entry);
            if true {
                panic!("{TEST_PANIC} {entry}");
            }
            Ok(())
        })
    }
}

#[test]
fn a_panicking_step_under_catch_panics_fails_with_its_message_and_is_compensated() {
    quiet_test_panics();
    let log = Log::default();
    let saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(panicking(&log, "act 1"), ok(&log, "undo 1"))
        .add_step(ok(&log, "act 2"), ok(&log, "undo 2"))
        .build();

    let error = run_catching_panics(saga).unwrap_err();
    assert_panicked(&error, "test panic: act 1");
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(log.entries(), ["act 0", "act 1", "undo 1", "undo 0"]);
}

#[test]
fn catch_panics_polled_by_hand_makes_a_step_panic_a_failed_step_that_is_compensated() {
    quiet_test_panics();
    let log = Log::default();
    let mut saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(panicking(&log, "act 1"), ok(&log, "undo 1"))
        .build();

    // Polled as an executor would, with no `catch_unwind` of our own: the
    // panic goes no further than `CatchPanics`, and as every step is ready
    // at once, the first poll runs the saga to its end.
    let mut run = pin!(CatchPanics::new(saga.run()));
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(result) = run.as_mut().poll(&mut cx) else {
        panic!("a saga of ready steps is pending");
    };
    let error = result.unwrap_err();
    assert_panicked(&error, "test panic: act 1");
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    // The panicking action was attempted once, then compensated.
    assert_eq!(log.entries(), ["act 0", "act 1", "undo 1", "undo 0"]);
}

#[test]
fn a_step_panic_is_classified_and_retried_like_any_action_error() {
    quiet_test_panics();
    let log = Log::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let classified = seen.clone();
    let attempts = counter();
    let counted = attempts.clone();
    let inner_log = log.clone();
    let saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(
            move || {
                let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                let log = inner_log.clone();
                async move {
                    log.push("act 0");
                    if first {
                        panic!("{TEST_PANIC} first attempt");
                    }
                    Ok::<(), Error>(())
                }
            },
            ok(&log, "undo 0"),
        )
        .classify(move |error: &Error| {
            classified.lock().unwrap().push(error.clone());
            Recovery::Retry
        })
        .build();

    assert_eq!(run_catching_panics(saga), Ok(()));
    assert_eq!(calls(&attempts), 2, "the panicked attempt was retried");
    assert_eq!(
        *seen.lock().unwrap(),
        [Error::Panicked(format!("{TEST_PANIC} first attempt"))],
        "the classifier saw the step's panic as its error"
    );
    assert_eq!(log.entries(), ["act 0", "act 0"]);
}

#[test]
fn a_panicking_compensation_under_catch_panics_is_a_failed_compensation_retried_by_policy() {
    quiet_test_panics();
    let log = Log::default();
    let undo_calls = counter();
    let counted = undo_calls.clone();
    let saga = SagaBuilder::new()
        .compensation_retry(Retry::attempts(2))
        .add_step(ok(&log, "act 0"), move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("{TEST_PANIC} undo 0");
            }
            ready(Ok::<(), Error>(()))
        })
        .add_step(
            call(&log, "act 1", Err(Error::Failed("declined"))),
            ok(&log, "undo 1"),
        )
        .build();

    let error = run_catching_panics(saga).unwrap_err();
    assert_eq!(*error.error(), Error::Failed("declined"));
    assert_eq!(calls(&undo_calls), 2, "retried after its panic");
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(error.compensated_count(), 2);
    assert!(error.compensation_errors().is_empty());
}

/// A future that panics when polled, and again when dropped.
struct PanicsTwice;

impl Future for PanicsTwice {
    type Output = Result<(), Error>;

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        panic!("{TEST_PANIC} first");
    }
}

impl Drop for PanicsTwice {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("{TEST_PANIC} while dropped");
        }
    }
}

/// An action whose future panics, then panics again as it is cancelled:
/// the attempt fails with its first panic, and the run goes on to
/// compensate; the task is not lost.
#[test]
fn an_action_that_panics_again_while_dropped_fails_with_its_first_panic() {
    quiet_test_panics();
    let log = Log::default();
    let saga = SagaBuilder::new()
        .add_step(ok(&log, "act 0"), ok(&log, "undo 0"))
        .add_step(|| PanicsTwice, ok(&log, "undo 1"))
        .build();

    let finished = spawn_and_join(Exec::Smol, saga).expect("the run is not lost");
    let error = finished.result.unwrap_err();
    assert_panicked(&error, "test panic: first");
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 1);
    assert!(error.is_fully_compensated(), "{error:?}");
    assert_eq!(log.entries(), ["act 0", "undo 1", "undo 0"]);
}

/// An error type whose `From<Panicked>` itself panics: the engine cannot
/// make an error of a step's panic.
#[derive(Debug)]
struct Unconvertible;

impl From<saga_core::Panicked> for Unconvertible {
    fn from(_: saga_core::Panicked) -> Self {
        panic!("{TEST_PANIC} no error for a panic");
    }
}

impl From<saga_core::Aborted> for Unconvertible {
    fn from(_: saga_core::Aborted) -> Self {
        Unconvertible
    }
}

/// A panic the run cannot turn into a failed step (here, out of the error
/// type's `From<Panicked>`) ends the detached task: the handle says the
/// saga was lost to a panic, and the executor goes on.
#[test]
fn a_panic_out_of_from_panicked_loses_the_task_to_a_panic() {
    quiet_test_panics();
    let saga = SagaBuilder::<Unconvertible>::new()
        .add_step(
            || -> Ready<Result<(), Unconvertible>> { panic!("{TEST_PANIC} step") },
            || ready(Ok(())),
        )
        .build();
    let lost = watched("from-panicked".into(), move || {
        let (task, handle) = saga_core::rt::detach(saga);
        smol::block_on(async move {
            smol::spawn(task).detach();
            handle.await
        })
    })
    .map(|_| ())
    .expect_err("the task is lost");
    assert!(lost.is_panic(), "{lost}");
    assert!(
        lost.to_string().contains("panicked outside any step"),
        "{lost}"
    );
}
