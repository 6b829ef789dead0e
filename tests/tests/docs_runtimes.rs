//! Tests of `saga-tokio`, `saga-async-std` and `saga_core::rt` written from the
//! root README and the crates' rustdoc only (no implementation, no other
//! tests): every assertion checks a promise those documents make.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test"
)]

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use saga_async_std::AsyncStdSleeper;
use saga_core::rt::{CatchPanics, Finished, Lost, SagaHandle};
use saga_core::{
    Aborted, InFlight, Observer, Panicked, Recovery, Retry, Saga, SagaBuilder, SagaError,
    StepPolicy, StepRef, StopReason, TimedOut,
};
use saga_tokio::TokioSleeper;

type Log = Arc<Mutex<Vec<String>>>;
type Outcome = Result<(), SagaError<String>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A step closure that records `entry` and succeeds.
fn rec(
    log: &Log,
    entry: &'static str,
) -> impl FnMut() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let log = log.clone();
    move || {
        log.lock().unwrap().push(entry.into());
        std::future::ready(Ok(()))
    }
}

/// A step closure that counts its calls and fails with `error`.
fn failing(
    calls: &Arc<AtomicU32>,
    error: &'static str,
) -> impl FnMut() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(error.into()))
    }
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// The four ways of running a saga that catch panics.

#[derive(Clone, Copy, Debug)]
enum Runner {
    Tokio,
    AsyncStd,
    SmolDetach,
    CatchPanicsInPlace,
}

const RUNNERS: [Runner; 4] = [
    Runner::Tokio,
    Runner::AsyncStd,
    Runner::SmolDetach,
    Runner::CatchPanicsInPlace,
];

fn spawn_on(runner: Runner, saga: Saga<String>) -> Result<(Saga<String>, Outcome), Lost> {
    let split = |finished: Finished<String>| (finished.saga, finished.result);
    match runner {
        Runner::Tokio => tokio_rt()
            .block_on(async { saga_tokio::spawn(saga).await })
            .map(split),
        Runner::AsyncStd => async_std::task::block_on(saga_async_std::spawn(saga)).map(split),
        Runner::SmolDetach => {
            let (task, handle) = saga_core::rt::detach(saga);
            smol::spawn(task).detach();
            smol::block_on(handle).map(split)
        }
        Runner::CatchPanicsInPlace => {
            let mut saga = saga;
            let result = smol::block_on(CatchPanics::new(saga.run()));
            Ok((saga, result))
        }
    }
}

fn run_on(runner: Runner, saga: Saga<String>) -> Outcome {
    spawn_on(runner, saga)
        .unwrap_or_else(|lost| panic!("{runner:?}: lost: {lost}"))
        .1
}

// ---------------------------------------------------------------------------
// Adapters' spawn: outcome, handle, reuse.

#[test]
fn spawn_compensates_in_reverse_and_hands_the_saga_back() {
    for runner in RUNNERS {
        let log = log();
        let calls = Arc::new(AtomicU32::new(0));
        let saga = SagaBuilder::new()
            .add_step(rec(&log, "book flight"), rec(&log, "cancel flight"))
            .add_step(rec(&log, "book hotel"), rec(&log, "cancel hotel"))
            .add_step(failing(&calls, "no cars"), rec(&log, "cancel car"))
            .build();
        let (saga, result) = spawn_on(runner, saga).unwrap();
        let error = result.unwrap_err();
        assert_eq!(error.error(), "no cars", "{runner:?}");
        assert_eq!(error.failed_step(), 2, "{runner:?}");
        assert_eq!(error.reason(), StopReason::Failed, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(
            entries(&log),
            [
                "book flight",
                "book hotel",
                "cancel car",
                "cancel hotel",
                "cancel flight"
            ],
            "{runner:?}"
        );
        // The saga is handed back and runs again.
        let (_, again) = spawn_on(runner, saga).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{runner:?}");
        assert!(again.is_err());
    }
}

#[test]
fn spawn_success_is_ok() {
    for runner in RUNNERS {
        let log = log();
        let saga = SagaBuilder::<String>::new()
            .add_step(rec(&log, "a"), rec(&log, "undo a"))
            .build();
        assert!(run_on(runner, saga).is_ok(), "{runner:?}");
        assert_eq!(entries(&log), ["a"], "{runner:?}");
    }
}

#[test]
fn tokio_spawn_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let log = log();
    let saga = SagaBuilder::<String>::new()
        .add_step(rec(&log, "a"), rec(&log, "undo a"))
        .build();
    let finished = rt.block_on(async { saga_tokio::spawn(saga).await.unwrap() });
    assert!(finished.result.is_ok());
    assert_eq!(entries(&log), ["a"]);
}

#[test]
fn tokio_spawn_outside_a_runtime_panics() {
    let saga = SagaBuilder::<String>::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(saga_tokio::spawn(saga));
    }));
    assert!(outcome.is_err(), "spawn outside a tokio runtime must panic");
}

#[test]
fn handles_are_send_sync_unpin() {
    fn check<T: Send + Sync + Unpin>() {}
    check::<SagaHandle<String>>();
    check::<saga_core::rt::FlowHandle<String, u32, u32, (u32, u32)>>();
    check::<Lost>();
}

#[test]
fn dropping_the_handle_does_not_stop_the_saga() {
    // tokio: the spawned saga runs its compensation after the handle is gone.
    let rt = tokio_rt();
    rt.block_on(async {
        let (undone, mut done) = tokio::sync::mpsc::unbounded_channel();
        let saga = SagaBuilder::new()
            .add_step(
                || async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(())
                },
                move || {
                    let undone = undone.clone();
                    async move {
                        undone.send("refunded").unwrap();
                        Ok(())
                    }
                },
            )
            .add_step(
                || async { Err::<(), _>(String::from("declined")) },
                || async { Ok(()) },
            )
            .build();
        drop(saga_tokio::spawn(saga));
        let got = tokio::time::timeout(Duration::from_secs(2), done.recv()).await;
        assert_eq!(got.unwrap(), Some("refunded"));
    });

    // async-std and smol.
    for runner in [Runner::AsyncStd, Runner::SmolDetach] {
        let (undone, done) = std::sync::mpsc::channel::<&'static str>();
        let undone = Mutex::new(undone);
        let saga = SagaBuilder::new()
            .add_step(
                || async {
                    async_std::task::sleep(Duration::from_millis(10)).await;
                    Ok(())
                },
                move || {
                    undone.lock().unwrap().send("refunded").unwrap();
                    async { Ok(()) }
                },
            )
            .add_step(
                || async { Err::<(), _>(String::from("declined")) },
                || async { Ok(()) },
            )
            .build();
        match runner {
            Runner::AsyncStd => drop(saga_async_std::spawn(saga)),
            _ => {
                let (task, handle) = saga_core::rt::detach(saga);
                smol::spawn(task).detach();
                drop(handle);
            }
        }
        assert_eq!(
            done.recv_timeout(Duration::from_secs(2)),
            Ok("refunded"),
            "{runner:?}"
        );
    }
}

#[test]
fn is_finished_is_false_while_running_and_true_after() {
    let rt = tokio_rt();
    rt.block_on(async {
        let saga = SagaBuilder::<String>::new()
            .add_step(
                || async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok(())
                },
                || async { Ok(()) },
            )
            .build();
        let handle = saga_tokio::spawn(saga);
        assert!(!handle.is_finished());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(handle.is_finished());
        assert!(handle.await.unwrap().result.is_ok());
    });
}

/// Abort with `InFlight::CutShort`: the pending action is cut short, then
/// compensated; the error is `E::from(Aborted)` (downcastable in a box).
#[test]
fn abort_cuts_short_and_compensates() {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let build = |log: &Log| {
        let l = log.clone();
        SagaBuilder::<BoxError>::new()
            .add_step(std::future::pending::<Result<(), BoxError>>, move || {
                l.lock().unwrap().push("undo 0".into());
                async { Ok(()) }
            })
            .on_abort(InFlight::CutShort)
            .build()
    };
    // tokio
    let log1 = log();
    let error = tokio_rt().block_on(async {
        let handle = saga_tokio::spawn(build(&log1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        handle.abort();
        handle.await.unwrap().result.unwrap_err()
    });
    // async-std
    let log2 = log();
    let error2 = async_std::task::block_on(async {
        let handle = saga_async_std::spawn(build(&log2));
        async_std::task::sleep(Duration::from_millis(5)).await;
        handle.abort_handle().abort();
        handle.await.unwrap().result.unwrap_err()
    });
    for (error, log) in [(error, log1), (error2, log2)] {
        assert!(error.aborted());
        assert_eq!(error.reason(), StopReason::Aborted);
        assert!(error.error().downcast_ref::<Aborted>().is_some());
        assert_eq!(error.failed_step(), 0);
        assert_eq!(error.attempts(), 1);
        assert!(error.is_fully_compensated());
        assert_eq!(entries(&log), ["undo 0"]);
        assert_eq!(
            error.to_string(),
            "step 0 cut short: aborted; fully compensated (1 step)"
        );
    }
}

/// Abort with the default `InFlight::Finish`: the action in flight finishes,
/// no further action starts, what was applied is compensated.
#[test]
fn abort_lets_the_action_in_flight_finish() {
    let log = log();
    let l = log.clone();
    let saga = SagaBuilder::<String>::new()
        .add_step(
            move || {
                let l = l.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    l.lock().unwrap().push("0 done".into());
                    Ok(())
                }
            },
            rec(&log, "undo 0"),
        )
        .add_step(rec(&log, "1 started"), rec(&log, "undo 1"))
        .build();
    let error = tokio_rt().block_on(async {
        let handle = saga_tokio::spawn(saga);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let remote = handle.abort_handle();
        tokio::spawn(async move { remote.abort() }).await.unwrap();
        handle.await.unwrap().result.unwrap_err()
    });
    assert!(error.aborted());
    assert_eq!(error.reason(), StopReason::Aborted);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 0);
    assert_eq!(error.error(), "aborted");
    assert_eq!(entries(&log), ["0 done", "undo 0"]);
    assert_eq!(
        error.to_string(),
        "stopped before step 1: aborted; fully compensated (1 step)"
    );
}

#[test]
fn abort_after_the_saga_finished_changes_nothing() {
    let rt = tokio_rt();
    rt.block_on(async {
        let saga = SagaBuilder::<String>::new()
            .add_step(|| async { Ok(()) }, || async { Ok(()) })
            .build();
        let handle = saga_tokio::spawn(saga);
        while !handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle.abort();
        assert!(handle.await.unwrap().result.is_ok());
    });
}

// ---------------------------------------------------------------------------
// Lost.

fn pending_saga() -> Saga<String> {
    SagaBuilder::<String>::new()
        .add_step(std::future::pending::<Result<(), String>>, || async {
            Ok(())
        })
        .build()
}

#[test]
fn tokio_runtime_shutdown_reports_lost() {
    let rt = tokio_rt();
    let handle = {
        let _entered = rt.enter();
        saga_tokio::spawn(pending_saga())
    };
    rt.block_on(tokio::task::yield_now());
    assert!(!handle.is_finished());
    drop(rt);
    assert!(handle.is_finished(), "lost counts as finished");
    let lost = smol::block_on(handle).unwrap_err();
    assert!(!lost.is_panic());
}

#[test]
fn detach_task_dropped_reports_lost() {
    let (task, handle) = saga_core::rt::detach(pending_saga());
    drop(task);
    let lost = smol::block_on(handle).unwrap_err();
    assert!(!lost.is_panic());
    // polled, then dropped mid-saga
    let (task, handle) = saga_core::rt::detach(pending_saga());
    let mut task = Box::pin(task);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(task.as_mut().poll(&mut cx).is_pending());
    drop(task);
    assert_eq!(smol::block_on(handle).unwrap_err(), lost);
}

/// A step future that panics when polled, and again when dropped.
struct PanicTwice;
impl Future for PanicTwice {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        panic!("first panic")
    }
}
impl Drop for PanicTwice {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("panic while dropped");
        }
    }
}

/// `CatchPanics`: "An attempt whose cancellation panics too (a future that
/// panics again as it is dropped) fails with its first panic." The task is
/// not lost.
#[test]
fn a_step_that_panics_again_while_dropped_fails_with_its_first_panic() {
    for runner in [Runner::Tokio, Runner::AsyncStd, Runner::SmolDetach] {
        let log = log();
        let saga = SagaBuilder::<String>::new()
            .add_step(|| PanicTwice, rec(&log, "undo a"))
            .build();
        let (_, result) = spawn_on(runner, saga).expect("not lost");
        let error = result.unwrap_err();
        assert_eq!(error.error(), "panicked: first panic", "{runner:?}");
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(entries(&log), ["undo a"], "{runner:?}");
    }
}

#[test]
fn handle_polled_after_ready_panics() {
    let saga = SagaBuilder::<String>::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let (task, mut handle) = saga_core::rt::detach(saga);
    smol::block_on(task);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut handle).poll(&mut cx).is_ready());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Pin::new(&mut handle).poll(&mut cx);
    }));
    assert!(again.is_err());
}

// ---------------------------------------------------------------------------
// Panics in steps.

#[test]
fn a_panicking_step_is_a_failed_step_and_compensated() {
    for runner in RUNNERS {
        let log = log();
        let saga = SagaBuilder::<String>::new()
            .add_step(rec(&log, "a"), rec(&log, "undo a"))
            .add_step(
                || async {
                    if true {
                        panic!("bug in step 1")
                    }
                    Ok(())
                },
                rec(&log, "undo b"),
            )
            .add_step(rec(&log, "c"), rec(&log, "undo c"))
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.error(), "panicked: bug in step 1", "{runner:?}");
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.failed_step(), 1, "{runner:?}");
        assert_eq!(error.attempts(), 1, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        // a pysagas-style step is compensated even when its action failed
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
        assert_eq!(
            error.to_string(),
            "step 1 failed: panicked: bug in step 1; fully compensated (2 steps)",
            "{runner:?}"
        );
    }
}

#[test]
fn a_panicking_action_is_retried_by_its_policy() {
    for runner in RUNNERS {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let saga = SagaBuilder::<String>::new()
            .action_retry(Retry::attempts(2))
            .add_step(
                move || {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            panic!("flaky")
                        }
                        Ok(())
                    }
                },
                || async { Ok(()) },
            )
            .build();
        assert!(run_on(runner, saga).is_ok(), "{runner:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{runner:?}");
    }
}

#[test]
fn a_panicking_compensation_is_a_failed_compensation() {
    for runner in RUNNERS {
        // Once, retried by policy: fully compensated.
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let fails = Arc::new(AtomicU32::new(0));
        let saga = SagaBuilder::<String>::new()
            .compensation_retry(Retry::attempts(2))
            .add_step(
                || async { Ok(()) },
                move || {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            panic!("refund bug")
                        }
                        Ok(())
                    }
                },
            )
            .add_step(failing(&fails, "declined"), || async { Ok(()) })
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.error(), "declined", "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{runner:?}");

        // Always, no retry: reported with the panic message.
        let saga = SagaBuilder::<String>::new()
            .add_step(
                || async { Ok(()) },
                || async {
                    if true {
                        panic!("refund bug")
                    }
                    Ok(())
                },
            )
            .add_step(failing(&fails, "declined"), || async { Ok(()) })
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.reason(), StopReason::Failed, "{runner:?}");
        assert!(!error.is_fully_compensated(), "{runner:?}");
        assert_eq!(error.compensation_errors().len(), 1, "{runner:?}");
        assert_eq!(error.compensation_errors()[0].step(), 0, "{runner:?}");
        assert_eq!(
            error.compensation_errors()[0].error(),
            "panicked: refund bug",
            "{runner:?}"
        );
        assert_eq!(
            error.uncompensated_steps().collect::<Vec<_>>(),
            [0],
            "{runner:?}"
        );
    }
}

#[test]
fn catch_panics_doc_example_with_a_custom_error() {
    #[derive(Debug, PartialEq)]
    struct Error(String);
    impl From<Panicked> for Error {
        fn from(panic: Panicked) -> Self {
            Error(panic.message().into())
        }
    }
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            || async {
                if true {
                    panic!("bug in step 1")
                }
                Ok::<_, Error>(())
            },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(*error.error(), Error("bug in step 1".into()));
    assert!(error.is_fully_compensated());
    // A non-string payload gets a placeholder message.
    let mut saga = SagaBuilder::new()
        .add_step(
            || async {
                if true {
                    std::panic::panic_any(42_u8)
                }
                Ok::<_, Error>(())
            },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(CatchPanics::new(saga.run())).unwrap_err();
    assert_eq!(error.reason(), StopReason::Panicked);
    assert!(!error.error().0.is_empty());
}

#[test]
fn catch_panics_wraps_an_abortable_run() {
    let handle = saga_core::AbortHandle::new();
    handle.abort();
    let mut saga = pending_saga();
    let error = smol::block_on(CatchPanics::new(saga.run().abortable(&handle))).unwrap_err();
    assert!(error.aborted());
    assert_eq!(error.failed_step(), 0);
}

// ---------------------------------------------------------------------------
// Panics in callbacks: classifier, jitter, sleeper, observer.

#[test]
fn a_panicking_classifier_fails_the_attempt_for_good() {
    for runner in RUNNERS {
        let log = log();
        let calls = Arc::new(AtomicU32::new(0));
        let asked = Arc::new(AtomicU32::new(0));
        let a = asked.clone();
        let saga = SagaBuilder::<String>::new()
            .action_retry(Retry::attempts(3))
            .classify(move |_: &String| -> Recovery {
                a.fetch_add(1, Ordering::SeqCst);
                panic!("classifier bug")
            })
            .add_step(rec(&log, "a"), rec(&log, "undo a"))
            .add_step(failing(&calls, "declined"), rec(&log, "undo b"))
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: classifier bug", "{runner:?}");
        assert_eq!(error.failed_step(), 1, "{runner:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{runner:?}: no retry");
        assert_eq!(asked.load(Ordering::SeqCst), 1, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
    }
}

#[test]
fn a_panicking_jitter_fails_the_attempt_for_good() {
    for runner in RUNNERS {
        let log = log();
        let calls = Arc::new(AtomicU32::new(0));
        let jittered = Arc::new(AtomicU32::new(0));
        let j = jittered.clone();
        let saga = SagaBuilder::<String>::new()
            .sleeper(AsyncStdSleeper::new())
            .action_retry(
                Retry::attempts(3)
                    .constant(Duration::from_millis(1))
                    .jitter(move |_| -> Duration {
                        j.fetch_add(1, Ordering::SeqCst);
                        panic!("jitter bug")
                    }),
            )
            .add_step(rec(&log, "a"), rec(&log, "undo a"))
            .add_step(failing(&calls, "declined"), rec(&log, "undo b"))
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: jitter bug", "{runner:?}");
        assert_eq!(error.failed_step(), 1, "{runner:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{runner:?}: no retry");
        assert_eq!(jittered.load(Ordering::SeqCst), 1, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
    }
}

/// `CatchPanics`: the sleeper "starting the timeout of an action's first
/// attempt, before the action is called: that step never began, and the
/// saga stops before it (it is not compensated)".
#[test]
fn a_sleeper_panicking_at_a_first_timeout_stops_the_saga_before_that_step() {
    for runner in RUNNERS {
        let log = log();
        let slept = Arc::new(AtomicU32::new(0));
        let s = slept.clone();
        let saga = SagaBuilder::<String>::new()
            .sleeper(move |_: Duration| -> std::future::Ready<()> {
                s.fetch_add(1, Ordering::SeqCst);
                panic!("sleeper bug")
            })
            .action_timeout(Duration::from_secs(5))
            .add_step(
                || async {
                    async_std::task::sleep(Duration::from_millis(20)).await;
                    Ok(())
                },
                rec(&log, "undo a"),
            )
            .add_step(rec(&log, "b"), rec(&log, "undo b"))
            .build();
        let error = run_on(runner, saga).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: sleeper bug", "{runner:?}");
        assert_eq!(error.failed_step(), 0, "{runner:?}");
        assert_eq!(error.attempts(), 0, "{runner:?}");
        assert_eq!(slept.load(Ordering::SeqCst), 1, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(error.compensated_count(), 0, "{runner:?}");
        assert!(
            error.to_string().starts_with("stopped before step 0: "),
            "{runner:?}: {error}"
        );
        assert!(entries(&log).is_empty(), "{runner:?}");
    }
}

/// An observer that records its calls and panics on the one named.
struct Panicky {
    calls: Log,
    on: &'static str,
}
impl Panicky {
    fn note(&self, what: String) {
        let first = what.split(' ').next().unwrap() == self.on;
        self.calls.lock().unwrap().push(what);
        if first {
            panic!("observer bug");
        }
    }
}
impl Observer<String> for Panicky {
    fn saga_started(&self, _steps: usize) {
        self.note("saga_started".into());
    }
    fn saga_finished(&self, _result: Result<(), &SagaError<String>>) {
        self.note("saga_finished".into());
    }
    fn action_started(&self, step: StepRef<'_>, _attempt: u32) {
        self.note(format!("action_started {}", step.index));
    }
    fn action_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        self.note(format!("action_succeeded {}", step.index));
    }
    fn action_failed(&self, step: StepRef<'_>, _attempt: u32, _error: &String) {
        self.note(format!("action_failed {}", step.index));
    }
    fn action_retried(&self, step: StepRef<'_>, _next: u32, _delay: Duration) {
        self.note(format!("action_retried {}", step.index));
    }
    fn compensation_started(&self, step: StepRef<'_>, _attempt: u32) {
        self.note(format!("compensation_started {}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, _attempt: u32) {
        self.note(format!("compensation_succeeded {}", step.index));
    }
}

fn observed(
    on: &'static str,
    retry: u32,
    log: &Log,
    calls: &Log,
    fails: &Arc<AtomicU32>,
) -> Saga<String> {
    SagaBuilder::<String>::new()
        .action_retry(Retry::attempts(retry))
        .observer(Panicky {
            calls: calls.clone(),
            on,
        })
        .add_step(rec(log, "a"), rec(log, "undo a"))
        .add_step(failing(fails, "declined"), rec(log, "undo b"))
        .add_step(rec(log, "c"), rec(log, "undo c"))
        .build()
}

#[test]
fn an_observer_panicking_on_a_start_fails_the_forward_phase() {
    for runner in RUNNERS {
        let (log, calls, fails) = (log(), log(), Arc::new(AtomicU32::new(0)));
        let error =
            run_on(runner, observed("action_started", 1, &log, &calls, &fails)).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: observer bug", "{runner:?}");
        // step 0 was in flight: it finishes, and is compensated
        assert_eq!(error.failed_step(), 0, "{runner:?}");
        assert_eq!(
            fails.load(Ordering::SeqCst),
            0,
            "{runner:?}: no further action"
        );
        assert_eq!(entries(&log), ["a", "undo a"], "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        // not called again in this run
        assert_eq!(
            entries(&calls),
            ["saga_started", "action_started 0"],
            "{runner:?}"
        );
    }
}

#[test]
fn an_observer_panicking_on_a_failure_replaces_the_error() {
    for runner in RUNNERS {
        let (log, calls, fails) = (log(), log(), Arc::new(AtomicU32::new(0)));
        let error = run_on(runner, observed("action_failed", 1, &log, &calls, &fails)).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: observer bug", "{runner:?}");
        assert_eq!(error.failed_step(), 1, "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
        assert_eq!(
            entries(&calls).last().map(String::as_str),
            Some("action_failed 1"),
            "{runner:?}: not called again"
        );
    }
}

#[test]
fn an_observer_panicking_on_a_retry_fails_the_attempt_for_good() {
    for runner in RUNNERS {
        let (log, calls, fails) = (log(), log(), Arc::new(AtomicU32::new(0)));
        let error =
            run_on(runner, observed("action_retried", 3, &log, &calls, &fails)).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.error(), "panicked: observer bug", "{runner:?}");
        assert_eq!(error.failed_step(), 1, "{runner:?}");
        assert_eq!(fails.load(Ordering::SeqCst), 1, "{runner:?}: no retry");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
    }
}

#[test]
fn an_observer_panicking_while_compensating_changes_nothing() {
    for runner in RUNNERS {
        let (log, calls, fails) = (log(), log(), Arc::new(AtomicU32::new(0)));
        let error = run_on(
            runner,
            observed("compensation_started", 1, &log, &calls, &fails),
        )
        .unwrap_err();
        assert_eq!(error.reason(), StopReason::Failed, "{runner:?}");
        assert_eq!(error.error(), "declined", "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(entries(&log), ["a", "undo b", "undo a"], "{runner:?}");
        assert_eq!(
            entries(&calls).last().map(String::as_str),
            Some("compensation_started 1"),
            "{runner:?}: not called again"
        );
    }
}

#[test]
fn an_observer_panicking_once_finished_changes_nothing() {
    for runner in RUNNERS {
        let log = log();
        let calls = log.clone();
        let saga = SagaBuilder::<String>::new()
            .observer(Panicky {
                calls,
                on: "saga_finished",
            })
            .add_step(rec(&log, "a"), rec(&log, "undo a"))
            .build();
        assert!(run_on(runner, saga).is_ok(), "{runner:?}");
    }
}

#[test]
fn an_observer_panicking_at_the_saga_start() {
    for runner in RUNNERS {
        let (log, calls, fails) = (log(), log(), Arc::new(AtomicU32::new(0)));
        let error = run_on(runner, observed("saga_started", 1, &log, &calls, &fails)).unwrap_err();
        assert_eq!(error.reason(), StopReason::Panicked, "{runner:?}");
        assert_eq!(error.failed_step(), 0, "{runner:?}");
        assert_eq!(error.attempts(), 0, "{runner:?}");
        assert!(entries(&log).is_empty(), "{runner:?}");
        assert!(error.is_fully_compensated(), "{runner:?}");
        assert_eq!(
            error.to_string(),
            "stopped before step 0: panicked: observer bug; nothing needed compensation",
            "{runner:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Sleepers really wait (short real durations: tokio's test-util, needed for a
// paused clock, is not a feature the suite enables).

#[test]
fn backoff_waits_on_each_runtime_timer() {
    let delays = Log::default();
    struct Delays(Log);
    impl Observer<String> for Delays {
        fn action_retried(&self, _: StepRef<'_>, next: u32, delay: Duration) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{next}:{}", delay.as_millis()));
        }
    }
    let retry =
        Retry::attempts(4).exponential(Duration::from_millis(15), Duration::from_millis(40));
    // 15 + 30 + 40 = 85 ms of waits.
    let calls = Arc::new(AtomicU32::new(0));
    let build = |b: SagaBuilder<String, dyn saga_core::Step<String> + Send, saga_core::Timed>| {
        b.action_retry(retry.clone())
            .observer(Delays(delays.clone()))
            .add_step(failing(&calls, "busy"), || async { Ok(()) })
            .build()
    };
    let tokio_saga = build(saga_tokio::builder());
    let start = Instant::now();
    let error = tokio_rt()
        .block_on(async { saga_tokio::spawn(tokio_saga).await })
        .unwrap()
        .result
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(error.attempts(), 4);
    assert!(elapsed >= Duration::from_millis(85), "tokio: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "tokio: {elapsed:?}");

    let start = Instant::now();
    let error = async_std::task::block_on(saga_async_std::spawn(build(saga_async_std::builder())))
        .unwrap()
        .result
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(error.attempts(), 4);
    assert!(
        elapsed >= Duration::from_millis(85),
        "async-std: {elapsed:?}"
    );

    // AsyncStdSleeper needs no runtime context: on smol.
    let mut saga = build(SagaBuilder::new().sleeper(AsyncStdSleeper::new()));
    let start = Instant::now();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 4);
    assert!(start.elapsed() >= Duration::from_millis(85), "smol");

    assert_eq!(calls.load(Ordering::SeqCst), 12);
    assert_eq!(
        entries(&delays),
        [
            "2:15", "3:30", "4:40", "2:15", "3:30", "4:40", "2:15", "3:30", "4:40"
        ]
    );
}

#[test]
fn action_timeout_waits_then_fails_with_timed_out() {
    #[derive(Debug, PartialEq)]
    enum Error {
        TimedOut,
    }
    impl From<TimedOut> for Error {
        fn from(_: TimedOut) -> Self {
            Error::TimedOut
        }
    }
    let build = |b: SagaBuilder<Error, dyn saga_core::Step<Error> + Send, saga_core::Timed>| {
        b.add_step_with(
            std::future::pending::<Result<(), Error>>,
            || async { Ok(()) },
            StepPolicy::new()
                .timeout(Duration::from_millis(30))
                .retry(Retry::attempts(2).constant(Duration::from_millis(10))),
        )
        .build()
    };
    let mut tokio_saga = build(saga_tokio::builder());
    let start = Instant::now();
    let error = tokio_rt().block_on(tokio_saga.run()).unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(*error.error(), Error::TimedOut);
    assert!(error.timed_out());
    assert_eq!(error.reason(), StopReason::TimedOut);
    assert_eq!(error.attempts(), 2);
    assert!(elapsed >= Duration::from_millis(70), "tokio: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "tokio: {elapsed:?}");

    let mut saga = build(saga_async_std::builder());
    let start = Instant::now();
    let error = async_std::task::block_on(saga.run()).unwrap_err();
    let elapsed = start.elapsed();
    assert!(error.timed_out());
    assert_eq!(error.attempts(), 2);
    assert!(
        elapsed >= Duration::from_millis(70),
        "async-std: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "async-std: {elapsed:?}");
}

#[test]
fn saga_timeout_is_a_deadline_under_spawn() {
    let log = log();
    let saga = SagaBuilder::<String>::new()
        .sleeper(TokioSleeper::new())
        .saga_timeout(Duration::from_millis(40))
        .add_step(rec(&log, "a"), rec(&log, "undo a"))
        .add_step(
            std::future::pending::<Result<(), String>>,
            rec(&log, "undo b"),
        )
        .build();
    let start = Instant::now();
    let error = tokio_rt()
        .block_on(async { saga_tokio::spawn(saga).await })
        .unwrap()
        .result
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(error.reason(), StopReason::Deadline);
    assert!(error.timed_out());
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.error(), "timed out");
    assert!(error.is_fully_compensated());
    assert_eq!(entries(&log), ["a", "undo b", "undo a"]);
    assert_eq!(
        error.to_string(),
        "step 1 cut short: timed out; fully compensated (2 steps)"
    );
}

// ---------------------------------------------------------------------------
// Blocking steps.

#[test]
fn tokio_blocking_runs_off_the_runtime_thread() {
    let here = std::thread::current().id();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let mut saga = SagaBuilder::<String>::new()
        .add_step(
            saga_tokio::blocking(move || {
                *s.lock().unwrap() = Some(std::thread::current().id());
                Ok(())
            }),
            saga_tokio::blocking(|| Ok(())),
        )
        .build();
    tokio_rt().block_on(saga.run()).unwrap();
    let seen = seen.lock().unwrap().unwrap();
    assert_ne!(seen, here);
}

#[test]
fn async_std_blocking_runs_off_the_caller_thread() {
    let here = std::thread::current().id();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let mut saga = SagaBuilder::<String>::new()
        .add_step(
            saga_async_std::blocking(move || {
                *s.lock().unwrap() = Some(std::thread::current().id());
                Ok(())
            }),
            saga_async_std::blocking(|| Ok(())),
        )
        .build();
    async_std::task::block_on(saga.run()).unwrap();
    assert_ne!(seen.lock().unwrap().unwrap(), here);
}

#[test]
fn blocking_panic_is_a_failed_attempt_without_catch_panics() {
    let log = log();
    let l = log.clone();
    let mut saga = SagaBuilder::<String>::new()
        .add_step(
            || async { Ok(()) },
            move || {
                l.lock().unwrap().push("undo 0".into());
                async { Ok(()) }
            },
        )
        .add_step(
            saga_tokio::blocking(|| -> Result<(), String> { panic!("sdk bug") }),
            saga_tokio::blocking(|| Ok(())),
        )
        .build();
    let error = tokio_rt().block_on(saga.run()).unwrap_err();
    assert_eq!(error.error(), "panicked: sdk bug");
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(entries(&log), ["undo 0"]);

    let mut saga = SagaBuilder::<String>::new()
        .add_step(
            saga_async_std::blocking(|| -> Result<(), String> { panic!("sdk bug") }),
            saga_async_std::blocking(|| Ok(())),
        )
        .build();
    let error = async_std::task::block_on(saga.run()).unwrap_err();
    assert_eq!(error.error(), "panicked: sdk bug");
}

#[test]
fn blocking_each_attempt_calls_f_again() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let mut saga = SagaBuilder::<String>::new()
        .action_retry(Retry::attempts(3))
        .add_step(
            saga_tokio::blocking(move || {
                c.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(String::from("busy"))
            }),
            saga_tokio::blocking(|| Ok(())),
        )
        .build();
    let error = tokio_rt().block_on(saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn blocking_cut_short_by_a_timeout_runs_to_its_end() {
    for which in ["tokio", "async-std"] {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let f = move || {
            std::thread::sleep(Duration::from_millis(150));
            d.store(true, Ordering::SeqCst);
            Ok::<(), String>(())
        };
        let start = Instant::now();
        let error = if which == "tokio" {
            let rt = tokio_rt();
            let mut saga = saga_tokio::builder::<String>()
                .action_timeout(Duration::from_millis(20))
                .add_step(saga_tokio::blocking(f), saga_tokio::blocking(|| Ok(())))
                .build();
            let error = rt.block_on(saga.run()).unwrap_err();
            std::mem::forget(rt); // keep the pool alive: f must finish anyway
            error
        } else {
            let mut saga = saga_async_std::builder::<String>()
                .action_timeout(Duration::from_millis(20))
                .add_step(
                    saga_async_std::blocking(f),
                    saga_async_std::blocking(|| Ok(())),
                )
                .build();
            async_std::task::block_on(saga.run()).unwrap_err()
        };
        assert!(start.elapsed() < Duration::from_millis(140), "{which}");
        assert!(error.timed_out(), "{which}");
        assert!(error.is_fully_compensated(), "{which}");
        assert!(!done.load(Ordering::SeqCst), "{which}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(done.load(Ordering::SeqCst), "{which}: f ran to its end");
    }
}

#[test]
fn blocking_steps_under_spawn() {
    let log = log();
    let (l1, l2) = (log.clone(), log.clone());
    let saga = SagaBuilder::<String>::new()
        .add_step(
            saga_async_std::blocking(move || {
                l1.lock().unwrap().push("charged".into());
                Ok(())
            }),
            saga_async_std::blocking(move || {
                l2.lock().unwrap().push("refunded".into());
                Ok(())
            }),
        )
        .add_step(
            saga_async_std::blocking(|| Err::<(), _>(String::from("declined"))),
            saga_async_std::blocking(|| Ok(())),
        )
        .build();
    let error = run_on(Runner::AsyncStd, saga).unwrap_err();
    assert_eq!(error.error(), "declined");
    assert_eq!(entries(&log), ["charged", "refunded"]);
}

// ---------------------------------------------------------------------------
// Flows.

#[test]
fn spawn_flow_on_each_runtime_hands_the_flow_back() {
    let build = || {
        SagaBuilder::<String>::new()
            .input::<u32>()
            .then(
                |nights: &u32| {
                    let nights = *nights;
                    async move { Ok(nights * 90) }
                },
                |_| async { Ok(()) },
            )
            .build_with(|(_, price)| price)
    };
    let rt = tokio_rt();
    let finished = rt
        .block_on(async { saga_tokio::spawn_flow(build(), 2).await })
        .unwrap();
    assert_eq!(finished.result.unwrap(), 180);
    let again = rt
        .block_on(async { saga_tokio::spawn_flow(finished.flow, 3).await })
        .unwrap();
    assert_eq!(again.into_result().unwrap(), 270);

    let finished = async_std::task::block_on(saga_async_std::spawn_flow(build(), 1)).unwrap();
    assert_eq!(finished.result.unwrap(), 90);

    let (task, handle) = saga_core::rt::detach_flow(build(), 4);
    smol::spawn(task).detach();
    assert_eq!(smol::block_on(handle).unwrap().result.unwrap(), 360);
}

#[test]
fn spawn_flow_panic_and_abort() {
    let rt = tokio_rt();
    // a panicking step
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move {
                    if n > 0 {
                        panic!("flow bug")
                    }
                    Ok(n)
                }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, n)| n);
    let finished = rt
        .block_on(async { saga_tokio::spawn_flow(flow, 1).await })
        .unwrap();
    let error = finished.result.unwrap_err();
    assert_eq!(error.report().reason(), StopReason::Panicked);
    assert_eq!(error.report().error(), "panicked: flow bug");

    // abort, cutting the action short
    let undone = Arc::new(AtomicBool::new(false));
    let u = undone.clone();
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |_: &u32| std::future::pending::<Result<u32, String>>(),
            move |_| {
                u.store(true, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .on_abort(InFlight::CutShort)
        .build_with(|(_, n)| n);
    let error = rt.block_on(async {
        let handle = saga_tokio::spawn_flow(flow, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!handle.is_finished());
        handle.abort();
        handle.await.unwrap().result.unwrap_err()
    });
    assert!(error.report().aborted());
    assert_eq!(error.report().error(), "aborted");
    // a typed flow step whose action was cut short is not compensated
    assert!(!undone.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------
// The errors' Display and std::error::Error.

#[test]
fn panicked_display_and_error() {
    let panic = Panicked::new("index out of bounds");
    assert_eq!(panic.message(), "index out of bounds");
    assert_eq!(panic.to_string(), "panicked: index out of bounds");
    assert_eq!(String::from(panic.clone()), panic.to_string());
    assert!(panic.source().is_none());
    let boxed: Box<dyn std::error::Error + Send + Sync> = panic.clone().into();
    assert_eq!(boxed.to_string(), "panicked: index out of bounds");
    assert_eq!(boxed.downcast_ref::<Panicked>(), Some(&panic));

    let from_str = Panicked::from_payload(&"a str");
    assert_eq!(from_str.message(), "a str");
    let from_string = Panicked::from_payload(&String::from("a string"));
    assert_eq!(from_string.message(), "a string");
    let other = Panicked::from_payload(&42_u32);
    assert!(!other.message().is_empty());
    assert_ne!(other.message(), "42");
}

#[test]
fn aborted_and_timed_out_display_and_error() {
    assert_eq!(Aborted.to_string(), "aborted");
    assert_eq!(String::from(Aborted), "aborted");
    assert_eq!(<&str>::from(Aborted), "aborted");
    assert!(Aborted.source().is_none());
    assert_eq!(TimedOut.to_string(), "timed out");
    assert_eq!(String::from(TimedOut), "timed out");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Aborted.into();
    assert!(boxed.downcast_ref::<Aborted>().is_some());
    let boxed: Box<dyn std::error::Error + Send + Sync> = TimedOut.into();
    assert!(boxed.downcast_ref::<TimedOut>().is_some());
}

#[test]
fn lost_display_and_error() {
    let (task, handle) = saga_core::rt::detach(pending_saga());
    drop(task);
    let lost = smol::block_on(handle).unwrap_err();
    let text = lost.to_string();
    assert!(!text.is_empty());
    assert!(lost.source().is_none());
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(lost);
    assert_eq!(boxed.to_string(), text);
    let copy = lost;
    assert_eq!(copy, lost);
    assert!(!format!("{lost:?}").is_empty());
}

#[test]
fn spawned_errors_with_box_and_an_enum() {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let saga = SagaBuilder::<BoxError>::new()
        .add_step(
            || async {
                if true {
                    panic!("boxed bug")
                }
                Ok(())
            },
            || async { Ok(()) },
        )
        .build();
    let error = tokio_rt()
        .block_on(async { saga_tokio::spawn(saga).await })
        .unwrap()
        .result
        .unwrap_err();
    let panic = error.error().downcast_ref::<Panicked>().expect("downcast");
    assert_eq!(panic.message(), "boxed bug");

    #[derive(Debug)]
    enum Error {
        Aborted,
        Panicked(String),
    }
    impl From<Aborted> for Error {
        fn from(_: Aborted) -> Self {
            Error::Aborted
        }
    }
    impl From<Panicked> for Error {
        fn from(panic: Panicked) -> Self {
            Error::Panicked(panic.message().into())
        }
    }
    let saga = SagaBuilder::<Error>::new()
        .add_step(std::future::pending::<Result<(), Error>>, || async {
            Ok(())
        })
        .on_abort(InFlight::CutShort)
        .build();
    let error = async_std::task::block_on(async {
        let handle = saga_async_std::spawn(saga);
        handle.abort();
        handle.await.unwrap().result.unwrap_err()
    });
    assert!(matches!(error.error(), Error::Aborted));
    let saga = SagaBuilder::<Error>::new()
        .add_step(
            || async {
                if true {
                    panic!("enum bug")
                }
                Ok(())
            },
            || async { Ok(()) },
        )
        .build();
    let error = async_std::task::block_on(saga_async_std::spawn(saga))
        .unwrap()
        .result
        .unwrap_err();
    assert!(matches!(error.error(), Error::Panicked(m) if m == "enum bug"));
}
