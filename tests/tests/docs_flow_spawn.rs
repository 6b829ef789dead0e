//! Flows run in the background, tested from their documentation only:
//! `FlowRun::catch_panics`, `rt::detach_flow` / `rt::FlowHandle` /
//! `rt::FinishedFlow` / `rt::Lost`, `saga_tokio::spawn_flow`,
//! `saga_async_std::spawn_flow`, and `Flow` as a `Send` struct field.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
extern crate alloc;

use alloc::sync::Arc;
use std::sync::Mutex;

use saga_core::rt::{FinishedFlow, FlowHandle, Lost, detach_flow};
use saga_core::{
    Aborted, Flow, FlowError, InFlight, Panicked, Recovery, Retry, SagaBuilder, StepPolicy,
    StopReason,
};
use smol::channel::{Receiver, Sender, unbounded};

type Log = Arc<Mutex<Vec<&'static str>>>;
/// The values of a failed run of [`gated`]: the input and three step values.
type Vals = (((u32, Option<u32>), Option<u32>), Option<u32>);
type Gated = Flow<String, u32, u32, Vals>;
type GatedHandle = FlowHandle<String, u32, u32, Vals>;
/// The result and the failed run's values of [`panicking`].
type PanicOut = ((u32, u32), u32);
type PanicVals = ((u32, Option<u32>), Option<u32>);

fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<&'static str> {
    log.lock().unwrap().clone()
}

/// Fails the test instead of hanging when `future` takes too long.
async fn within<T>(future: impl Future<Output = T>) -> T {
    smol::future::or(future, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("timed out")
    })
    .await
}

/// Three `then` steps:
/// 0. `n * 10`;
/// 1. waits at a gate: says so on `started`, then waits for `release`;
///    returns `n + 1`;
/// 2. fails with `"odd"` for an odd input, else returns `n * 100`.
///
/// Each logs its action and compensation. The result is the sum of the values.
fn gated(log: &Log, started: Sender<()>, release: Receiver<()>) -> Gated {
    let (l0a, l0c, l1a, l1c, l2a, l2c) = (
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
        log.clone(),
    );
    SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            move |n: &u32| {
                l0a.lock().unwrap().push("a0");
                let n = *n;
                async move { Ok(n * 10) }
            },
            move |_: (&u32, &u32)| {
                l0c.lock().unwrap().push("c0");
                async { Ok(()) }
            },
        )
        .then(
            move |(n, _): (&u32, &u32)| {
                l1a.lock().unwrap().push("a1");
                let n = *n;
                let started = started.clone();
                let release = release.clone();
                async move {
                    started.send(()).await.unwrap();
                    release.recv().await.unwrap();
                    Ok(n + 1)
                }
            },
            move |_| {
                l1c.lock().unwrap().push("c1");
                async { Ok(()) }
            },
        )
        .then(
            move |((n, _), _): ((&u32, &u32), &u32)| {
                l2a.lock().unwrap().push("a2");
                let n = *n;
                async move {
                    if n % 2 == 1 {
                        Err(String::from("odd"))
                    } else {
                        Ok(n * 100)
                    }
                }
            },
            move |_| {
                l2c.lock().unwrap().push("c2");
                async { Ok(()) }
            },
        )
        .build_with(|(((_, a), b), c)| a + b + c)
}

/// A flow whose step 1 panics (a `then_option` step, so it is compensated
/// too, with `None`), after step 0 succeeded.
fn panicking(log: &Log) -> Flow<String, u32, PanicOut, PanicVals> {
    let (l0c, l1c) = (log.clone(), log.clone());
    SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n + 1) }
            },
            move |_| {
                l0c.lock().unwrap().push("c0");
                async { Ok(()) }
            },
        )
        .then_option(
            |(n, _): (&u32, &u32)| {
                let n = *n;
                async move {
                    if n > 0 {
                        panic!("bug in step 1");
                    }
                    Ok(7u32)
                }
            },
            move |(_, own): ((&u32, &u32), Option<&u32>)| {
                l1c.lock()
                    .unwrap()
                    .push(if own.is_none() { "c1 none" } else { "c1 some" });
                async { Ok(()) }
            },
        )
        .build()
}

type Spawner = fn(Gated, u32) -> GatedHandle;

fn on_smol(flow: Gated, input: u32) -> GatedHandle {
    let (task, handle) = detach_flow(flow, input);
    smol::spawn(task).detach();
    handle
}

fn on_tokio(flow: Gated, input: u32) -> GatedHandle {
    saga_tokio::spawn_flow(flow, input)
}

fn on_tokio_detached(flow: Gated, input: u32) -> GatedHandle {
    let (task, handle) = detach_flow(flow, input);
    drop(tokio::spawn(task));
    handle
}

fn on_async_std(flow: Gated, input: u32) -> GatedHandle {
    saga_async_std::spawn_flow(flow, input)
}

// ---------------------------------------------------------------- scenarios

/// Success, then the flow comes back in `FinishedFlow` and runs again with a
/// new input: its first run's values are not seen by the second.
async fn success_and_again(spawn: Spawner) {
    let log = new_log();
    let (started, started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    for _ in 0..3 {
        release.send(()).await.unwrap();
    }

    let finished: FinishedFlow<_, _, _, _> = within(spawn(flow, 2)).await.unwrap();
    assert_eq!(finished.result.unwrap(), 20 + 3 + 200);
    assert_eq!(entries(&log), ["a0", "a1", "a2"]);
    started_rx.recv().await.unwrap();

    let again = within(spawn(finished.flow, 4)).await.unwrap();
    assert_eq!(again.result.unwrap(), 40 + 5 + 400);

    // And it also runs in place once handed back.
    let mut flow = again.flow;
    assert_eq!(within(flow.run(6)).await.unwrap(), 60 + 7 + 600);
}

/// A failed run: the report and the values, compensated in reverse.
async fn failure_values(spawn: Spawner) {
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    release.send(()).await.unwrap();

    let finished = within(spawn(flow, 3)).await.unwrap();
    let error: FlowError<String, Vals> = finished.result.unwrap_err();
    assert_eq!(error.report().failed_step(), 2);
    assert_eq!(error.report().reason(), StopReason::Failed);
    assert_eq!(error.report().error(), "odd");
    assert!(error.report().is_fully_compensated());
    assert!(!error.report().aborted());
    assert_eq!(*error.values(), (((3, Some(30)), Some(4)), None));
    // `then`: the failed step's own compensation does not run.
    assert_eq!(entries(&log), ["a0", "a1", "a2", "c1", "c0"]);
}

/// A dropped handle does not stop the run: it goes on to its end, and
/// compensates.
async fn dropped_handle(spawn: Spawner) {
    let log = new_log();
    let (started, started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    let handle = spawn(flow, 5);
    within(started_rx.recv()).await.unwrap();
    drop(handle);
    release.send(()).await.unwrap();
    // Wait for the compensation of step 0, the last thing the run does.
    within(async {
        loop {
            if entries(&log).last() == Some(&"c0") {
                break;
            }
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(entries(&log), ["a0", "a1", "a2", "c1", "c0"]);
}

/// `abort` while step 1 is in flight (the default `InFlight::Finish`): step 1
/// finishes, step 2 never starts, steps 1 and 0 are compensated, the report
/// says aborted, the error is `E::from(Aborted)`, and the values are there.
async fn abort_in_flight(spawn: Spawner, through_abort_handle: bool) {
    let log = new_log();
    let (started, started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    let handle = spawn(flow, 2);
    within(started_rx.recv()).await.unwrap();
    if through_abort_handle {
        let remote = handle.abort_handle();
        std::thread::spawn(move || remote.abort()).join().unwrap();
    } else {
        handle.abort();
    }
    assert!(!handle.is_finished());
    release.send(()).await.unwrap();

    let finished = within(handle).await.unwrap();
    let error = finished.result.unwrap_err();
    assert!(error.report().aborted());
    assert_eq!(error.report().reason(), StopReason::Aborted);
    assert_eq!(error.report().error(), &String::from(Aborted));
    assert_eq!(error.report().failed_step(), 2);
    assert_eq!(error.report().attempts(), 0);
    assert_eq!(error.report().compensated_count(), 2);
    assert!(error.report().is_fully_compensated());
    assert_eq!(*error.values(), (((2, Some(20)), Some(3)), None));
    assert_eq!(entries(&log), ["a0", "a1", "c1", "c0"]);

    // The flow is handed back and runs again, not aborted.
    let mut flow = finished.flow;
    release.send(()).await.unwrap();
    assert_eq!(within(flow.run(2)).await.unwrap(), 20 + 3 + 200);
}

/// The `abort_handle` keeps working after the `FlowHandle` was dropped: the
/// run still compensates.
async fn abort_handle_outlives_dropped_handle(spawn: Spawner) {
    let log = new_log();
    let (started, started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    let handle = spawn(flow, 2);
    let remote = handle.abort_handle();
    drop(handle);
    within(started_rx.recv()).await.unwrap();
    remote.abort();
    release.send(()).await.unwrap();
    within(async {
        while entries(&log).last() != Some(&"c0") {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(entries(&log), ["a0", "a1", "c1", "c0"]);
}

/// `is_finished` is false while the run waits, true once it ended (before the
/// handle is awaited).
async fn is_finished(spawn: Spawner) {
    let log = new_log();
    let (started, started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    let handle = spawn(flow, 2);
    within(started_rx.recv()).await.unwrap();
    assert!(!handle.is_finished());
    release.send(()).await.unwrap();
    within(async {
        while !handle.is_finished() {
            smol::Timer::after(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(entries(&log), ["a0", "a1", "a2"]);
    let finished = within(handle).await.unwrap();
    assert_eq!(finished.result.unwrap(), 20 + 3 + 200);
}

/// `abort` after the run finished changes nothing ("unless the saga had
/// already finished", `SagaHandle::abort`, which `FlowHandle::abort` is).
async fn abort_after_finish(spawn: Spawner) {
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    release.send(()).await.unwrap();
    let handle = spawn(flow, 2);
    within(async {
        while !handle.is_finished() {
            smol::Timer::after(Duration::from_millis(2)).await;
        }
    })
    .await;
    handle.abort();
    let finished = within(handle).await.unwrap();
    assert_eq!(finished.result.unwrap(), 20 + 3 + 200);
    assert_eq!(entries(&log), ["a0", "a1", "a2"]);
}

type PanicFlow = Flow<String, u32, PanicOut, PanicVals>;

/// A panicking step of a spawned flow is a failed step: `E::from(Panicked)`,
/// `StopReason::Panicked`, and what was applied is compensated.
fn check_panicked(result: Result<PanicOut, FlowError<String, PanicVals>>, log: &Log) {
    let error = result.unwrap_err();
    assert_eq!(error.report().error(), "panicked: bug in step 1");
    assert_eq!(
        *error.report().error(),
        String::from(Panicked::new("bug in step 1"))
    );
    assert_eq!(error.report().reason(), StopReason::Panicked);
    assert_eq!(error.report().failed_step(), 1);
    assert!(error.report().is_fully_compensated());
    assert_eq!(error.report().compensated_count(), 2);
    assert_eq!(*error.values(), ((1, Some(2)), None));
    assert_eq!(entries(log), ["c1 none", "c0"]);
}

async fn panic_then_run_again(
    finished: FinishedFlow<String, u32, PanicOut, PanicVals>,
    log: &Log,
) -> PanicFlow {
    check_panicked(finished.result, log);
    let mut flow = finished.flow;
    // Input 0 does not panic: the flow runs again with a new input.
    assert_eq!(within(flow.run(0)).await.unwrap(), ((0, 1), 7));
    flow
}

// ------------------------------------------------------------ catch_panics

#[test]
fn catch_panics_action_panic_is_a_failed_step() {
    let log = new_log();
    let mut flow = panicking(&log);
    let result = smol::block_on(flow.run(1).catch_panics());
    check_panicked(result, &log);
    // The flow is usable again.
    assert_eq!(smol::block_on(flow.run(0)).unwrap(), ((0, 1), 7));
}

#[test]
fn catch_panics_then_step_is_not_compensated_after_its_panic() {
    let log = new_log();
    let (l0c, l1c) = (log.clone(), log.clone());
    let mut flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            move |_| {
                l0c.lock().unwrap().push("c0");
                async { Ok(()) }
            },
        )
        .then(
            |_: (&u32, &u32)| async {
                if true {
                    panic!("boom");
                }
                Ok(0u32)
            },
            move |_| {
                l1c.lock().unwrap().push("c1");
                async { Ok(()) }
            },
        )
        .build();
    let error = smol::block_on(flow.run(9).catch_panics()).unwrap_err();
    assert_eq!(error.report().error(), "panicked: boom");
    assert_eq!(error.report().reason(), StopReason::Panicked);
    assert_eq!(*error.values(), ((9, Some(9)), None));
    // `then`'s compensation runs only when its action succeeded.
    assert_eq!(entries(&log), ["c0"]);
}

#[test]
fn catch_panics_compensation_panic_is_a_failed_compensation() {
    let mut flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async {
                if true {
                    panic!("refund bug");
                }
                Ok(())
            },
        )
        .then(
            |_: (&u32, &u32)| async { Err::<u32, _>(String::from("declined")) },
            |_| async { Ok(()) },
        )
        .build();
    let error = smol::block_on(flow.run(1).catch_panics()).unwrap_err();
    assert_eq!(error.report().error(), "declined");
    assert_eq!(error.report().reason(), StopReason::Failed);
    assert!(!error.report().is_fully_compensated());
    assert_eq!(error.report().compensation_errors().len(), 1);
    assert_eq!(error.report().compensation_errors()[0].step(), 0);
    assert_eq!(
        error.report().compensation_errors()[0].error(),
        "panicked: refund bug"
    );
    assert_eq!(
        error.report().uncompensated_steps().collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(*error.values(), ((1, Some(1)), None));
}

#[test]
fn catch_panics_retried_panic_is_retried_by_policy() {
    // "a panicking action counts as failed and possibly applied, so it is
    // retried or compensated like any failed action".
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let mut flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            move |n: &u32| {
                let attempt = {
                    let mut calls = counter.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                let n = *n;
                async move {
                    if attempt < 3 {
                        panic!("flaky");
                    }
                    Ok(n * 2)
                }
            },
            |_| async { Ok(()) },
        )
        .policy(StepPolicy::new().retry(Retry::attempts(3)))
        .build_with(|(_, doubled)| doubled);
    assert_eq!(smol::block_on(flow.run(21).catch_panics()).unwrap(), 42);
    assert_eq!(*calls.lock().unwrap(), 3);
}

#[test]
fn catch_panics_classifier_panic_fails_for_good() {
    // The classifier panics: the attempt fails for good (no retry), the
    // error is `E::from(Panicked)`, and what was applied is compensated.
    let log = new_log();
    let l0c = log.clone();
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let mut flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            move |_| {
                l0c.lock().unwrap().push("c0");
                async { Ok(()) }
            },
        )
        .then(
            move |_: (&u32, &u32)| {
                *counter.lock().unwrap() += 1;
                async { Err::<u32, _>(String::from("declined")) }
            },
            |_| async { Ok(()) },
        )
        .action_retry(Retry::attempts(3))
        .classify(|_: &String| -> Recovery { panic!("classifier bug") })
        .build();
    let error = smol::block_on(flow.run(1).catch_panics()).unwrap_err();
    assert_eq!(error.report().error(), "panicked: classifier bug");
    assert_eq!(error.report().reason(), StopReason::Panicked);
    assert_eq!(error.report().failed_step(), 1);
    assert_eq!(error.report().attempts(), 1);
    assert_eq!(*calls.lock().unwrap(), 1);
    assert!(error.report().is_fully_compensated());
    assert_eq!(entries(&log), ["c0"]);
}

#[test]
fn catch_panics_with_an_enum_error() {
    #[derive(Debug, PartialEq)]
    enum Error {
        Panicked(String),
    }
    impl From<Panicked> for Error {
        fn from(panic: Panicked) -> Self {
            Error::Panicked(panic.message().into())
        }
    }
    let mut flow = SagaBuilder::<Error>::new()
        .input::<u32>()
        .then_option(
            |_: &u32| async {
                if true {
                    panic!("enum bug");
                }
                Ok(1u32)
            },
            |_| async { Ok(()) },
        )
        .build();
    let error = smol::block_on(flow.run(3).catch_panics()).unwrap_err();
    assert_eq!(*error.report().error(), Error::Panicked("enum bug".into()));
    assert_eq!(error.report().compensated_count(), 1);
    assert_eq!(*error.values(), (3, None));
}

// --------------------------------------------------------------- detach_flow

#[test]
fn detach_flow_doc_example_on_smol() {
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n * 2) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, doubled)| doubled);
    let (task, handle) = detach_flow(flow, 21);
    smol::spawn(task).detach();
    let finished = smol::block_on(handle).expect("the executor is still running");
    assert_eq!(finished.result.unwrap(), 42);
    let (task, handle) = detach_flow(finished.flow, 1);
    smol::spawn(task).detach();
    assert_eq!(smol::block_on(handle).unwrap().result.unwrap(), 2);
}

#[test]
fn detach_flow_task_polled_in_place() {
    // "the future to spawn on any executor": also `block_on` itself.
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    release.try_send(()).unwrap();
    let (task, handle) = detach_flow(flow, 2);
    assert!(!handle.is_finished());
    smol::block_on(task);
    assert!(handle.is_finished());
    let finished = smol::block_on(handle).unwrap();
    assert_eq!(finished.result.unwrap(), 223);
}

#[test]
fn detach_flow_dropped_task_is_lost() {
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (_release, release_rx) = unbounded();
    let flow = gated(&log, started, release_rx);
    let (task, handle) = detach_flow(flow, 2);
    // Poll it until step 1 waits at the gate, then drop it.
    let mut task = Box::pin(task);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(task.as_mut().poll(&mut cx).is_pending());
    drop(task);
    assert!(handle.is_finished());
    let lost: Lost = smol::block_on(handle).unwrap_err();
    assert!(!lost.is_panic());
    // Stopped where it stood, without compensating.
    assert_eq!(entries(&log), ["a0", "a1"]);
}

#[test]
fn detach_flow_task_never_polled_then_dropped_is_lost() {
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (_release, release_rx) = unbounded();
    let (task, handle) = detach_flow(gated(&log, started, release_rx), 2);
    drop(task);
    assert!(handle.is_finished());
    assert!(!smol::block_on(handle).unwrap_err().is_panic());
    assert!(entries(&log).is_empty());
}

#[test]
#[should_panic]
fn flow_handle_polled_again_after_ready_panics() {
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async { Ok(()) },
        )
        .build();
    let (task, mut handle) = detach_flow(flow, 1);
    smol::block_on(task);
    let mut cx = Context::from_waker(Waker::noop());
    let first = Pin::new(&mut handle).poll(&mut cx);
    assert!(matches!(first, Poll::Ready(Ok(_))));
    // Documented: "When polled again after it returned Ready" it panics.
    let _ = Pin::new(&mut handle).poll(&mut cx);
}

#[test]
fn detach_flow_catches_panics() {
    let log = new_log();
    let (task, handle) = detach_flow(panicking(&log), 1);
    smol::spawn(task).detach();
    let finished = smol::block_on(handle).unwrap();
    smol::block_on(async {
        panic_then_run_again(finished, &log).await;
    });
}

#[test]
fn detach_flow_panic_outside_any_step_is_lost_with_is_panic() {
    // `Lost`: "(or the task panicked outside any step)"; `Lost::is_panic`:
    // "true when the task was dropped by a panic outside any step". The
    // result map of `build_with` is not a step.
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, n): (u32, u32)| -> u32 {
            if n > 0 {
                panic!("bug in the map");
            }
            n
        });
    let (task, handle) = detach_flow(flow, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let joined = rt.block_on(async { tokio::spawn(task).await });
    assert!(handle.is_finished());
    let _ = joined; // Whether the spawned future itself panics is not documented.
    let lost = smol::block_on(handle).unwrap_err();
    assert!(lost.is_panic());
}

#[test]
fn smol_scenarios() {
    smol::block_on(async {
        success_and_again(on_smol).await;
        failure_values(on_smol).await;
        dropped_handle(on_smol).await;
        abort_in_flight(on_smol, false).await;
        abort_in_flight(on_smol, true).await;
        abort_handle_outlives_dropped_handle(on_smol).await;
        is_finished(on_smol).await;
        abort_after_finish(on_smol).await;
    });
}

#[test]
fn detach_flow_abort_cuts_short_with_values() {
    // `InFlight::CutShort`: the pending action is cut short; a `then` step
    // cut short has no value to undo and is reported as left applied.
    let log = new_log();
    let l0c = log.clone();
    let flow = SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok(n + 100) }
            },
            move |_| {
                l0c.lock().unwrap().push("c0");
                async { Ok(()) }
            },
        )
        .then(
            |_: (&u32, &u32)| core::future::pending::<Result<u32, String>>(),
            |_| async { Ok(()) },
        )
        .on_abort(InFlight::CutShort)
        .build();
    let (task, handle) = detach_flow(flow, 1);
    smol::spawn(task).detach();
    smol::block_on(async {
        smol::Timer::after(Duration::from_millis(20)).await;
        assert!(!handle.is_finished());
        handle.abort();
        let error = within(handle).await.unwrap().result.unwrap_err();
        assert!(error.report().aborted());
        assert_eq!(error.report().reason(), StopReason::Aborted);
        assert_eq!(error.report().failed_step(), 1);
        assert_eq!(error.report().error(), "aborted");
        assert_eq!(
            error.report().uncompensated_steps().collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(*error.values(), ((1, Some(101)), None));
    });
    assert_eq!(entries(&log), ["c0"]);
}

#[test]
fn detach_flow_boxed_error_downcasts_the_panic() {
    type BoxError = Box<dyn core::error::Error + Send + Sync>;
    let flow = SagaBuilder::<BoxError>::new()
        .input::<u32>()
        .then_option(
            |_: &u32| async {
                if true {
                    panic!("boxed bug");
                }
                Ok(1u32)
            },
            |_| async { Ok(()) },
        )
        .build();
    let (task, handle) = detach_flow(flow, 1);
    smol::spawn(task).detach();
    let error = smol::block_on(handle).unwrap().result.unwrap_err();
    let panic = error.report().error().downcast_ref::<Panicked>().unwrap();
    assert_eq!(panic.message(), "boxed bug");
    assert_eq!(error.report().compensated_count(), 1);
}

// -------------------------------------------------------------------- tokio

#[tokio::test]
async fn tokio_current_thread_scenarios() {
    success_and_again(on_tokio).await;
    failure_values(on_tokio).await;
    dropped_handle(on_tokio).await;
    abort_in_flight(on_tokio, false).await;
    abort_in_flight(on_tokio, true).await;
    abort_handle_outlives_dropped_handle(on_tokio).await;
    is_finished(on_tokio).await;
    abort_after_finish(on_tokio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_multi_thread_scenarios() {
    success_and_again(on_tokio).await;
    failure_values(on_tokio).await;
    dropped_handle(on_tokio).await;
    abort_in_flight(on_tokio, false).await;
    abort_in_flight(on_tokio, true).await;
    abort_handle_outlives_dropped_handle(on_tokio).await;
    is_finished(on_tokio).await;
    abort_after_finish(on_tokio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_detach_flow_scenarios() {
    success_and_again(on_tokio_detached).await;
    failure_values(on_tokio_detached).await;
    dropped_handle(on_tokio_detached).await;
    abort_in_flight(on_tokio_detached, true).await;
    is_finished(on_tokio_detached).await;
}

#[tokio::test]
async fn tokio_spawn_flow_panicking_step_current_thread() {
    let log = new_log();
    let finished = saga_tokio::spawn_flow(panicking(&log), 1).await.unwrap();
    let flow = panic_then_run_again(finished, &log).await;
    // And it can be spawned again.
    let again = saga_tokio::spawn_flow(flow, 0).await.unwrap();
    assert_eq!(again.result.unwrap(), ((0, 1), 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_spawn_flow_panicking_step_multi_thread() {
    let log = new_log();
    let finished = saga_tokio::spawn_flow(panicking(&log), 1).await.unwrap();
    panic_then_run_again(finished, &log).await;
}

#[tokio::test]
async fn tokio_spawn_flow_doc_example() {
    let flow = saga_tokio::saga_core::SagaBuilder::<String>::new()
        .input::<u32>()
        .then(
            |nights: &u32| {
                let nights = *nights;
                async move { Ok(nights * 90) }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, price)| price);
    let finished = saga_tokio::spawn_flow(flow, 2).await.unwrap();
    assert_eq!(finished.result.unwrap(), 180);
    let again = saga_tokio::spawn_flow(finished.flow, 3).await.unwrap();
    assert_eq!(again.result.unwrap(), 270);
}

#[test]
fn tokio_runtime_shut_down_mid_run_is_lost() {
    for multi in [false, true] {
        let log = new_log();
        let (started, started_rx) = unbounded();
        let (_release, release_rx) = unbounded();
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
        };
        let handle = {
            let _guard = rt.enter();
            saga_tokio::spawn_flow(gated(&log, started, release_rx), 2)
        };
        rt.block_on(async { within(started_rx.recv()).await.unwrap() });
        assert!(!handle.is_finished());
        drop(rt);
        assert!(handle.is_finished());
        let lost = smol::block_on(handle).unwrap_err();
        assert!(!lost.is_panic());
        assert!(!lost.to_string().is_empty());
        // Stopped where it stood, without compensating.
        assert_eq!(entries(&log), ["a0", "a1"]);
    }
}

// ---------------------------------------------------------------- async-std

#[test]
fn async_std_scenarios() {
    async_std::task::block_on(async {
        success_and_again(on_async_std).await;
        failure_values(on_async_std).await;
        dropped_handle(on_async_std).await;
        abort_in_flight(on_async_std, false).await;
        abort_in_flight(on_async_std, true).await;
        abort_handle_outlives_dropped_handle(on_async_std).await;
        is_finished(on_async_std).await;
        abort_after_finish(on_async_std).await;
    });
}

#[test]
fn async_std_spawn_flow_panicking_step() {
    let log = new_log();
    async_std::task::block_on(async {
        let finished = saga_async_std::spawn_flow(panicking(&log), 1)
            .await
            .unwrap();
        let flow = panic_then_run_again(finished, &log).await;
        let again = saga_async_std::spawn_flow(flow, 0).await.unwrap();
        assert_eq!(again.result.unwrap(), ((0, 1), 7));
    });
}

// ------------------------------------------------------ Send, fields, types

fn assert_send<T: Send>(_: &T) {}
fn assert_send_sync_unpin<T: Send + Sync + Unpin>() {}

struct Service {
    order: Flow<String, u32, String, (u32, Option<u64>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_as_a_field_and_a_send_task() {
    let service = Service {
        order: SagaBuilder::new()
            .input::<u32>()
            .then(
                |quantity: &u32| {
                    let quantity = *quantity;
                    async move { Ok(u64::from(quantity) * 250) }
                },
                |_| async { Ok(()) },
            )
            .build_with(|(quantity, cents)| format!("{quantity} for {cents} cents")),
    };
    let mut order = service.order;
    assert_eq!(order.run(4).await.unwrap(), "4 for 1000 cents");

    let task = async move {
        let receipt = order.run(2).await;
        (order, receipt)
    };
    assert_send(&task);
    let (mut order, receipt) = tokio::spawn(task).await.unwrap();
    assert_eq!(receipt.unwrap(), "2 for 500 cents");

    // The run future of a flow is `Send`, under catch_panics and abortable too.
    let abort = saga_core::AbortHandle::new();
    {
        let run = order.run(1).catch_panics().abortable(&abort);
        assert_send(&run);
        assert_eq!(run.await.unwrap(), "1 for 250 cents");
    }

    // A service holding a flow is itself `Send`, and so is moving it.
    let service = Service { order };
    assert_send(&service);
    let (task, handle) = detach_flow(service.order, 3);
    assert_send(&task);
    assert_send(&handle);
    tokio::spawn(task);
    let finished = handle.await.unwrap();
    assert_send(&finished);
    assert_eq!(finished.result.unwrap(), "3 for 750 cents");
}

#[test]
fn flow_handle_is_send_sync_unpin() {
    // `FlowHandle` is "what SagaHandle is for a saga", which "is Send and
    // Sync when E is Send, and Unpin".
    assert_send_sync_unpin::<FlowHandle<String, u32, u32, Vals>>();
    assert_send_sync_unpin::<saga_tokio::FlowHandle<String, u32, String, (u32, Option<u64>)>>();
    assert_send_sync_unpin::<saga_async_std::FlowHandle<String, u32, u32, Vals>>();
    assert_send_sync_unpin::<Lost>();
}

#[test]
fn lost_is_an_error() {
    let (task, handle) = detach_flow(
        SagaBuilder::<String>::new()
            .input::<u32>()
            .then(
                |n: &u32| {
                    let n = *n;
                    async move { Ok(n) }
                },
                |_| async { Ok(()) },
            )
            .build(),
        1,
    );
    drop(task);
    let lost = smol::block_on(handle).unwrap_err();
    let boxed: Box<dyn core::error::Error + Send + Sync> = Box::new(lost);
    assert!(!boxed.to_string().is_empty());
    let copy = lost;
    assert_eq!(copy, lost);
}

#[test]
#[should_panic]
fn tokio_spawn_flow_outside_a_runtime_panics() {
    // `spawn_flow` is "as spawn runs a saga", and `spawn` panics "When called
    // outside a tokio runtime".
    let log = new_log();
    let (started, _started_rx) = unbounded();
    let (_release, release_rx) = unbounded();
    drop(saga_tokio::spawn_flow(gated(&log, started, release_rx), 2));
}
