//! Contract checks written from the public docs only (the root README and
//! the crates' rustdoc): the numbered rules of saga-core's crate docs and the
//! pinned surface (`SagaBuilder::new().add_step(..).build()`, `saga.run()`,
//! `SagaError`'s accessors and traits, `Send` sagas and a local variant).
//! Each test names the rule it checks; none relies on the implementation.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    reason = "a std test"
)]

use std::cell::RefCell;
use std::future::{Future, pending};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use saga_core::journal::{
    Event, Journal, JournalError, MemoryJournal, Outcome, Quarantined, Record, Refused,
    ReplayError, SagaState, Start, replay,
};
use saga_core::{
    AbortHandle, CompensationMode, FnStep, Handling, InFlight, ParallelGroup, Recovery, Retry,
    Saga, SagaBuilder, SagaError, StepPolicy, StopReason, Timed, TypedStep,
};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// An action or compensation that logs `entry`, yields once, then returns `result`.
fn logged(
    log: &Log,
    entry: &'static str,
    fail: bool,
) -> impl FnMut() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + 'static {
    let log = log.clone();
    move || {
        let log = log.clone();
        Box::pin(async move {
            log.lock().unwrap().push(format!("{entry} start"));
            smol::future::yield_now().await;
            log.lock().unwrap().push(format!("{entry} end"));
            if fail {
                Err(format!("{entry} failed"))
            } else {
                Ok(())
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The pinned surface
// ---------------------------------------------------------------------------

#[test]
fn surface_readme_counter_goes_back_to_10_20() {
    let counter = Arc::new(Mutex::new([10, 20]));
    let add = |index: usize, fail: bool| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                counter.lock().unwrap()[index] += 30;
                if fail { Err("error occurred") } else { Ok(()) }
            }
        }
    };
    let decrement = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                counter.lock().unwrap()[index] -= 30;
                Ok(())
            }
        }
    };
    let mut saga = SagaBuilder::new()
        .add_step(add(0, false), decrement(0))
        .add_step(add(1, true), decrement(1))
        .build();
    let result: Result<(), SagaError<&str>> = smol::block_on(saga.run());
    let error = result.unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(*error.error(), "error occurred");
    assert_eq!(*counter.lock().unwrap(), [10, 20]);
    assert_eq!(error.into_error(), "error occurred");
}

#[derive(Debug, Clone, PartialEq)]
struct MyError(&'static str);
impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for MyError {}

#[test]
fn surface_error_is_debug_display_and_error() {
    fn is_error<T: core::error::Error + Send + Sync + 'static>(_: &T) {}
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            || async { Err::<(), _>(MyError("out of stock")) },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    is_error(&error);
    let shown = error.to_string();
    assert!(shown.contains("out of stock"), "{shown}");
    assert!(shown.contains("step 1"), "{shown}");
    assert!(!format!("{error:?}").is_empty());
    let boxed: Box<dyn core::error::Error> = Box::new(error);
    assert!(boxed.to_string().contains("out of stock"));
}

#[test]
fn surface_saga_and_run_are_send_and_spawn_on_tokio_multi_thread() {
    fn is_send<T: Send>(_: &T) {}
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(
            move || {
                let d = d.clone();
                async move {
                    tokio::task::yield_now().await;
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            || async { Ok(()) },
        )
        .build();
    is_send(&saga);
    is_send(&saga.run());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let saga = runtime
        .block_on(async move {
            tokio::spawn(async move {
                let result = saga.run().await;
                (saga, result)
            })
            .await
        })
        .unwrap();
    assert!(saga.1.is_ok());
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn surface_local_variant_takes_non_send_steps() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    let mut saga = SagaBuilder::new_local()
        .add_step(
            move || {
                a.borrow_mut().push("do 0");
                async { Ok(()) }
            },
            move || {
                b.borrow_mut().push("undo 0");
                async { Ok(()) }
            },
        )
        .add_step(
            move || {
                c.borrow_mut().push("do 1");
                async { Err::<(), _>("no") }
            },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*log.borrow(), ["do 0", "do 1", "undo 0"]);
}

// ---------------------------------------------------------------------------
// Rules 1 and 2: order
// ---------------------------------------------------------------------------

#[test]
fn rule_1_next_action_starts_only_after_previous_returned_ok() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", false))
        .add_step(logged(&log, "a1", false), logged(&log, "c1", false))
        .add_step(logged(&log, "a2", false), logged(&log, "c2", false))
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(
        entries(&log),
        [
            "a0 start", "a0 end", "a1 start", "a1 end", "a2 start", "a2 end"
        ]
    );
}

#[test]
fn rule_2_later_actions_never_start_compensations_one_at_a_time_in_reverse() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", false))
        .add_step(logged(&log, "a1", false), logged(&log, "c1", false))
        .add_step(logged(&log, "a2", true), logged(&log, "c2", false))
        .add_step(logged(&log, "a3", false), logged(&log, "c3", false))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 2);
    assert_eq!(error.reason(), StopReason::Failed);
    assert_eq!(error.handling(), Handling::Compensated);
    let log = entries(&log);
    assert!(
        !log.iter()
            .any(|e| e.starts_with("a3") || e.starts_with("c3"))
    );
    assert_eq!(
        log[6..],
        [
            "c2 start", "c2 end", "c1 start", "c1 end", "c0 start", "c0 end"
        ]
    );
}

// ---------------------------------------------------------------------------
// Rule 3: the failing step's own compensation
// ---------------------------------------------------------------------------

#[test]
fn rule_3_add_step_compensates_its_own_failed_action_first() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", false))
        .add_step(logged(&log, "a1", true), logged(&log, "c1", false))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 2);
    let log = entries(&log);
    assert_eq!(log[4..], ["c1 start", "c1 end", "c0 start", "c0 end"]);
}

#[test]
fn rule_3_typed_step_is_not_compensated_when_its_action_failed() {
    let log = log();
    let (l0, l1) = (log.clone(), log.clone());
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", false))
        .add_typed_step(
            || async { Err::<u32, String>("typed failed".into()) },
            move |_: u32| {
                l0.lock().unwrap().push("typed undo".into());
                async { Ok(()) }
            },
        )
        .add_typed_step_ref(
            || async { Ok::<u32, String>(1) },
            move |_: &u32| {
                l1.lock().unwrap().push("never".into());
                async { Ok(()) }
            },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    let log = entries(&log);
    assert!(!log.contains(&"typed undo".to_string()), "{log:?}");
    assert_eq!(log[2..], ["c0 start", "c0 end"]);
}

#[test]
fn rule_3_per_step_override_both_ways() {
    let log = log();
    let l0 = log.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    // A pysagas step told not to compensate its failed action, and a typed step
    // (by_option) told to.
    let mut saga = SagaBuilder::new()
        .step(TypedStep::by_option(
            || async { Ok::<u32, String>(5) },
            move |value: Option<u32>| {
                s.lock().unwrap().push(value);
                async { Ok(()) }
            },
        ))
        .step(
            FnStep::new(
                || async { Err::<(), String>("fn failed".into()) },
                move || {
                    l0.lock().unwrap().push("fn undo".into());
                    async { Ok(()) }
                },
            )
            .compensate_failed_action(false),
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(entries(&log).is_empty(), "{:?}", entries(&log));
    assert_eq!(*seen.lock().unwrap(), [Some(5)]);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut saga = SagaBuilder::new()
        .step(TypedStep::by_option(
            || async { Err::<u32, String>("typed failed".into()) },
            move |value: Option<u32>| {
                s.lock().unwrap().push(value);
                async { Ok(()) }
            },
        ))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*seen.lock().unwrap(), [None]);
}

// ---------------------------------------------------------------------------
// Rule 4: typed data
// ---------------------------------------------------------------------------

#[test]
fn rule_4_compensation_receives_the_value_by_value_and_by_reference() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let (g0, g1) = (got.clone(), got.clone());
    let mut saga = SagaBuilder::new()
        .add_typed_step(
            || async { Ok::<u32, String>(7) },
            move |order: u32| {
                g0.lock().unwrap().push(format!("value {order}"));
                async { Ok(()) }
            },
        )
        .add_typed_step_ref(
            || async { Ok::<String, String>("R-1".into()) },
            move |id: &String| {
                g1.lock().unwrap().push(format!("ref {id}"));
                async { Ok(()) }
            },
        )
        .add_step(
            || async { Err::<(), _>("boom".to_string()) },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*got.lock().unwrap(), ["ref R-1", "value 7"]);
}

// ---------------------------------------------------------------------------
// Rule 5: the classifier
// ---------------------------------------------------------------------------

fn counting_failure(
    calls: &Arc<AtomicUsize>,
    error: &'static str,
) -> impl FnMut() -> std::future::Ready<Result<(), &'static str>> + Send + 'static {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err(error))
    }
}

#[test]
fn rule_5_classifier_compensate_retry_propagate_and_the_result_says_which() {
    let run = |recovery: Recovery| {
        let calls = Arc::new(AtomicUsize::new(0));
        let undone = Arc::new(AtomicUsize::new(0));
        let u = undone.clone();
        let mut saga = SagaBuilder::new()
            .action_retry(Retry::attempts(3))
            .add_step(
                || async { Ok(()) },
                move || {
                    u.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                },
            )
            .add_step(counting_failure(&calls, "disk"), || async { Ok(()) })
            .classify(move |_: &&str| recovery)
            .build();
        let error = smol::block_on(saga.run()).unwrap_err();
        (
            error,
            calls.load(Ordering::SeqCst),
            undone.load(Ordering::SeqCst),
        )
    };
    let (error, calls, undone) = run(Recovery::Retry);
    assert_eq!((calls, undone), (3, 1));
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.handling(), Handling::Compensated);
    assert!(error.is_fully_compensated());

    let (error, calls, undone) = run(Recovery::Compensate);
    assert_eq!((calls, undone), (1, 1));
    assert_eq!(error.attempts(), 1);
    assert_eq!(error.handling(), Handling::Compensated);

    let (error, calls, undone) = run(Recovery::Propagate);
    assert_eq!((calls, undone), (1, 0));
    assert_eq!(error.handling(), Handling::Propagated);
    assert!(!error.is_fully_compensated());
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    assert!(error.to_string().contains("propagated"), "{error}");
}

#[test]
fn rule_5_default_without_classifier_compensates_every_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let undone = Arc::new(AtomicBool::new(false));
    let u = undone.clone();
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                u.store(true, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(counting_failure(&calls, "x"), || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Compensated);
    assert!(undone.load(Ordering::SeqCst));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Rule 6: compensation failures
// ---------------------------------------------------------------------------

#[test]
fn rule_6_stop_on_error_is_default_and_reports_the_rest_uncompensated() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", false))
        .add_step(logged(&log, "a1", false), logged(&log, "c1", true))
        .add_step(logged(&log, "a2", true), logged(&log, "c2", false))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(*error.error(), "a2 failed");
    assert_eq!(error.failed_step(), 2);
    assert!(!error.is_fully_compensated());
    assert!(!entries(&log).iter().any(|e| e.starts_with("c0")));
    assert_eq!(error.compensation_errors().len(), 1);
    assert_eq!(error.compensation_errors()[0].step(), 1);
    assert_eq!(*error.compensation_errors()[0].error(), "c1 failed");
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
}

#[test]
fn rule_6_continue_on_error_collects_every_error() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(logged(&log, "a0", false), logged(&log, "c0", true))
        .add_step(logged(&log, "a1", false), logged(&log, "c1", false))
        .add_step(logged(&log, "a2", false), logged(&log, "c2", true))
        .add_step(logged(&log, "a3", true), logged(&log, "c3", false))
        .compensation_mode(CompensationMode::ContinueOnError)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    let steps: Vec<usize> = error
        .compensation_errors()
        .iter()
        .map(|f| f.step())
        .collect();
    assert_eq!(steps, [2, 0]);
    assert!(entries(&log).contains(&"c1 end".to_string()));
    assert!(!error.is_fully_compensated());
    let mut left: Vec<usize> = error.uncompensated_steps().collect();
    left.sort_unstable();
    assert_eq!(left, [0, 2]);
    let shown = error.to_string();
    assert!(
        shown.contains("c2 failed") && shown.contains("c0 failed"),
        "{shown}"
    );
}

#[test]
fn rule_6_compensation_is_retried_by_policy() {
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let mut saga = SagaBuilder::new()
        .compensation_retry(Retry::attempts(3))
        .add_step(
            || async { Ok(()) },
            move || {
                let n = t.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err("flaky") } else { Ok(()) } }
            },
        )
        .add_step(|| async { Err::<(), _>("boom") }, || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert!(error.compensation_errors().is_empty());
    assert_eq!(tries.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------
// Rules 7 and 9: cut short, drop, abort
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Clone)]
enum Err7 {
    Aborted,
    TimedOut,
}
impl From<saga_core::Aborted> for Err7 {
    fn from(_: saga_core::Aborted) -> Self {
        Err7::Aborted
    }
}
impl From<saga_core::TimedOut> for Err7 {
    fn from(_: saga_core::TimedOut) -> Self {
        Err7::TimedOut
    }
}

#[test]
fn rule_7_abort_cut_short_counts_as_failed_and_is_compensated() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let (u0, u1) = (undone.clone(), undone.clone());
    let abort = AbortHandle::new();
    let mut saga = SagaBuilder::<Err7>::new()
        .add_step(
            || async { Ok(()) },
            move || {
                u0.lock().unwrap().push(0);
                async { Ok(()) }
            },
        )
        .add_step(pending::<Result<(), Err7>>, move || {
            u1.lock().unwrap().push(1);
            async { Ok(()) }
        })
        .on_abort(InFlight::CutShort)
        .build();
    let (result, ()) = smol::block_on(smol::future::zip(saga.run().abortable(&abort), async {
        for _ in 0..3 {
            smol::future::yield_now().await;
        }
        abort.abort();
    }));
    let error = result.unwrap_err();
    assert!(error.aborted());
    assert_eq!(error.reason(), StopReason::Aborted);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(*error.error(), Err7::Aborted);
    assert!(error.is_fully_compensated());
    assert_eq!(*undone.lock().unwrap(), [1, 0]);
}

#[test]
fn rule_7_timeout_cuts_short_and_compensates_per_rule_3() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut saga = SagaBuilder::<Err7>::new()
        .sleeper(smol::Timer::after)
        .add_step(
            || async { Ok(()) },
            move || {
                u0.lock().unwrap().push(0);
                async { Ok(()) }
            },
        )
        .add_step_with(
            pending::<Result<(), Err7>>,
            move || {
                u1.lock().unwrap().push(1);
                async { Ok(()) }
            },
            StepPolicy::new().timeout(Duration::from_millis(20)),
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.reason(), StopReason::TimedOut);
    assert!(error.timed_out());
    assert_eq!(*error.error(), Err7::TimedOut);
    assert_eq!(*undone.lock().unwrap(), [1, 0]);
}

#[test]
fn rule_7_abort_lets_the_action_in_flight_finish_by_default() {
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let undone = Arc::new(AtomicUsize::new(0));
    let u = undone.clone();
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut saga = SagaBuilder::<Err7>::new()
        .add_step(
            move || {
                let (f, trigger) = (f.clone(), trigger.clone());
                async move {
                    trigger.abort();
                    for _ in 0..3 {
                        smol::future::yield_now().await;
                    }
                    f.store(true, Ordering::SeqCst);
                    Ok(())
                }
            },
            move || {
                u.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert!(finished.load(Ordering::SeqCst));
    assert!(error.aborted());
    assert_eq!(error.failed_step(), 1);
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

#[test]
fn rule_9_dropping_the_run_stops_without_compensating() {
    let undone = Arc::new(AtomicUsize::new(0));
    let (u0, u1) = (undone.clone(), undone.clone());
    let later = Arc::new(AtomicBool::new(false));
    let l = later.clone();
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                u0.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(pending::<Result<(), String>>, move || {
            u1.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .add_step(
            move || {
                l.store(true, Ordering::SeqCst);
                async { Ok(()) }
            },
            || async { Ok(()) },
        )
        .build();
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    drop(run);
    assert_eq!(undone.load(Ordering::SeqCst), 0);
    assert!(!later.load(Ordering::SeqCst));
    // The saga can still run afterwards (the step in flight was reset).
    let mut run = saga.run();
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
}

#[test]
fn rule_9_spawned_saga_keeps_running_when_its_handle_is_dropped() {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let saga: Saga<String> = SagaBuilder::new()
        .add_step(
            move || {
                let d = d.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    d.store(true, Ordering::SeqCst);
                    Ok(())
                }
            },
            || async { Ok(()) },
        )
        .build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handle = saga_tokio::spawn(saga);
        drop(handle);
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    assert!(done.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------
// Rule 8: parallel groups
// ---------------------------------------------------------------------------

/// A member that records it started, then yields until `peers` members
/// started (up to 50 times), then records whether it saw them all.
fn rendezvous(
    started: &Arc<AtomicUsize>,
    peers: usize,
    saw_all: &Arc<AtomicUsize>,
    fail: bool,
) -> impl FnMut() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + 'static {
    let (started, saw_all) = (started.clone(), saw_all.clone());
    move || {
        let (started, saw_all) = (started.clone(), saw_all.clone());
        Box::pin(async move {
            started.fetch_add(1, Ordering::SeqCst);
            for _ in 0..50 {
                if started.load(Ordering::SeqCst) >= peers {
                    break;
                }
                smol::future::yield_now().await;
            }
            if started.load(Ordering::SeqCst) >= peers {
                saw_all.fetch_add(1, Ordering::SeqCst);
            }
            if fail {
                Err("member failed".into())
            } else {
                Ok(())
            }
        })
    }
}

#[test]
fn rule_8_members_run_concurrently_others_finish_then_all_compensated_then_earlier() {
    let log = log();
    let started = Arc::new(AtomicUsize::new(0));
    let saw_all = Arc::new(AtomicUsize::new(0));
    let (l0, l1, l2) = (log.clone(), log.clone(), log.clone());
    let slow_done = Arc::new(AtomicBool::new(false));
    let sd = slow_done.clone();
    let (s, w) = (started.clone(), saw_all.clone());
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                l0.lock().unwrap().push("undo before".to_string());
                async { Ok(()) }
            },
        )
        .parallel(|group| {
            let mut slow = rendezvous(&s, 2, &w, false);
            group
                .add_step(rendezvous(&s, 2, &w, true), move || {
                    l1.lock().unwrap().push("undo failed member".to_string());
                    async { Ok(()) }
                })
                .add_step(
                    move || {
                        let inner = slow();
                        let sd = sd.clone();
                        async move {
                            inner.await?;
                            for _ in 0..5 {
                                smol::future::yield_now().await;
                            }
                            sd.store(true, Ordering::SeqCst);
                            Ok(())
                        }
                    },
                    move || {
                        l2.lock().unwrap().push("undo slow member".to_string());
                        async { Ok(()) }
                    },
                )
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(saw_all.load(Ordering::SeqCst), 2, "members did not overlap");
    assert!(
        slow_done.load(Ordering::SeqCst),
        "the other member was not allowed to finish"
    );
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    let log = entries(&log);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2], "undo before");
    let groups: Vec<_> = saga.parallel_groups().collect();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0], 1..3);
}

#[test]
fn rule_8_cut_short_policy_drops_the_other_members_and_compensates_them() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let (u0, u1) = (undone.clone(), undone.clone());
    let mut saga = SagaBuilder::new()
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .add_step(pending::<Result<(), String>>, move || {
                        u0.lock().unwrap().push("hanging");
                        async { Ok(()) }
                    })
                    .add_step(
                        || async {
                            smol::future::yield_now().await;
                            Err::<(), _>("fails".to_string())
                        },
                        move || {
                            u1.lock().unwrap().push("failed");
                            async { Ok(()) }
                        },
                    )
            },
        )
        .build();
    let error = smol::block_on(async {
        smol::future::or(async { Some(saga.run().await) }, async {
            smol::Timer::after(Duration::from_secs(2)).await;
            None
        })
        .await
    })
    .expect("the hanging member was not cut short");
    let error = error.unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    let mut undone = undone.lock().unwrap().clone();
    undone.sort_unstable();
    assert_eq!(undone, ["failed", "hanging"]);
}

#[test]
fn rule_8_concurrent_compensation_mode_runs_them_together_and_collects_every_error() {
    let started = Arc::new(AtomicUsize::new(0));
    let saw_all = Arc::new(AtomicUsize::new(0));
    let (s, w) = (started.clone(), saw_all.clone());
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(|| async { Ok(()) }, rendezvous(&s, 2, &w, true))
                .add_step(|| async { Ok(()) }, rendezvous(&s, 2, &w, true))
        })
        .add_step(
            || async { Err::<(), _>("boom".to_string()) },
            || async { Ok(()) },
        )
        .compensation_mode(CompensationMode::ConcurrentGroups)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(
        saw_all.load(Ordering::SeqCst),
        2,
        "compensations did not overlap"
    );
    let mut steps: Vec<usize> = error
        .compensation_errors()
        .iter()
        .map(|f| f.step())
        .collect();
    steps.sort_unstable();
    assert_eq!(steps, [0, 1]);
    assert!(!error.is_fully_compensated());
}

// ---------------------------------------------------------------------------
// Rule 10: edges
// ---------------------------------------------------------------------------

#[test]
fn rule_10_zero_steps_succeed() {
    let mut saga: Saga<String> = SagaBuilder::new().build();
    assert!(saga.is_empty());
    assert!(smol::block_on(saga.run()).is_ok());
}

#[test]
fn rule_10_polled_after_completion_panics_with_a_clear_message() {
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut run).poll(&mut cx).is_ready());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = Pin::new(&mut run).poll(&mut cx);
    }))
    .expect_err("a second poll did not panic");
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let lower = message.to_lowercase();
    assert!(
        lower.contains("poll") && (lower.contains("complet") || lower.contains("after")),
        "unclear message: {message:?}"
    );
}

#[test]
fn rule_10_a_saga_runs_again_after_a_run_completed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let fail = Arc::new(AtomicBool::new(true));
    let f = fail.clone();
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(
            move || {
                c.fetch_add(1, Ordering::SeqCst);
                let fail = f.load(Ordering::SeqCst);
                async move {
                    if fail {
                        Err("first".to_string())
                    } else {
                        Ok(())
                    }
                }
            },
            || async { Ok(()) },
        )
        .build();
    assert!(smol::block_on(saga.run()).is_err());
    fail.store(false, Ordering::SeqCst);
    assert!(smol::block_on(saga.run()).is_ok());
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------------------
// Rule 11: time
// ---------------------------------------------------------------------------

#[test]
fn rule_11_waiting_policies_are_timed_and_immediate_retries_need_no_sleeper() {
    fn timed_retry(_: &Retry<Timed>) {}
    fn timed_policy(_: &StepPolicy<Timed>) {}
    timed_retry(&Retry::attempts(2).constant(Duration::from_millis(1)));
    timed_retry(
        &Retry::attempts(2).exponential(Duration::from_millis(1), Duration::from_millis(4)),
    );
    timed_policy(&StepPolicy::new().timeout(Duration::from_secs(1)));
    // Immediate retries compile and work without a sleeper.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(counting_failure(&calls, "x"), || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().attempts(), 2);
    // With a sleeper (any Fn(Duration) -> impl Future), backoff waits.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut saga = SagaBuilder::new()
        .sleeper(|d: Duration| smol::Timer::after(d))
        .action_retry(Retry::attempts(3).constant(Duration::from_millis(15)))
        .add_step(counting_failure(&calls, "x"), || async { Ok(()) })
        .build();
    let t = std::time::Instant::now();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 3);
    assert!(
        t.elapsed() >= Duration::from_millis(30),
        "{:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Rule 12: observers
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);
impl saga_core::Observer<String> for Recorder {
    fn saga_started(&self, steps: usize) {
        self.0.lock().unwrap().push(format!("saga started {steps}"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<String>>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("saga finished ok={}", result.is_ok()));
    }
    fn action_started(&self, step: saga_core::StepRef<'_>, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("action {} start {attempt}", step.index));
    }
    fn action_succeeded(&self, step: saga_core::StepRef<'_>, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("action {} ok {attempt}", step.index));
    }
    fn action_failed(&self, step: saga_core::StepRef<'_>, attempt: u32, _: &String) {
        self.0
            .lock()
            .unwrap()
            .push(format!("action {} failed {attempt}", step.index));
    }
    fn action_retried(&self, step: saga_core::StepRef<'_>, next: u32, _: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("action {} retry {next}", step.index));
    }
    fn compensation_started(&self, step: saga_core::StepRef<'_>, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("comp {} start {attempt}", step.index));
    }
    fn compensation_succeeded(&self, step: saga_core::StepRef<'_>, attempt: u32) {
        self.0
            .lock()
            .unwrap()
            .push(format!("comp {} ok {attempt}", step.index));
    }
    fn compensation_failed(&self, step: saga_core::StepRef<'_>, attempt: u32, _: &String) {
        self.0
            .lock()
            .unwrap()
            .push(format!("comp {} failed {attempt}", step.index));
    }
    fn compensation_retried(&self, step: saga_core::StepRef<'_>, next: u32, _: Duration) {
        self.0
            .lock()
            .unwrap()
            .push(format!("comp {} retry {next}", step.index));
    }
    fn aborted(&self, step: saga_core::StepRef<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("aborted {}", step.index));
    }
}

fn observed_saga(observer: Option<Arc<Recorder>>, log: &Log) -> Saga<String> {
    let flaky = Arc::new(AtomicUsize::new(0));
    let builder = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .compensation_retry(Retry::attempts(2))
        .add_step(logged(log, "a0", false), {
            let flaky = flaky.clone();
            move || {
                let n = flaky.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err("once".to_string())
                    } else {
                        Ok(())
                    }
                }
            }
        })
        .add_step(logged(log, "a1", true), logged(log, "c1", false));
    match observer {
        Some(observer) => builder.observer(observer).build(),
        None => builder.build(),
    }
}

#[test]
fn rule_12_observer_sees_every_transition_and_never_changes_the_outcome() {
    let recorder = Arc::new(Recorder::default());
    let (with_log, without_log) = (log(), log());
    let mut with = observed_saga(Some(recorder.clone()), &with_log);
    let mut without = observed_saga(None, &without_log);
    let a = smol::block_on(with.run()).unwrap_err();
    let b = smol::block_on(without.run()).unwrap_err();
    assert_eq!(a.to_string(), b.to_string());
    assert_eq!(a, b);
    assert_eq!(entries(&with_log), entries(&without_log));
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "saga started 2",
            "action 0 start 1",
            "action 0 ok 1",
            "action 1 start 1",
            "action 1 failed 1",
            "action 1 retry 2",
            "action 1 start 2",
            "action 1 failed 2",
            "comp 1 start 1",
            "comp 1 ok 1",
            "comp 0 start 1",
            "comp 0 failed 1",
            "comp 0 retry 2",
            "comp 0 start 2",
            "comp 0 ok 2",
            "saga finished ok=false",
        ]
    );
}

#[test]
fn rule_12_observer_sees_the_abort() {
    let recorder = Arc::new(Recorder::default());
    let abort = AbortHandle::new();
    abort.abort();
    let mut saga: Saga<Err7> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .observer(ObserveErr7(recorder.clone()))
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted());
    let seen = recorder.0.lock().unwrap().clone();
    assert!(seen.iter().any(|e| e.starts_with("aborted")), "{seen:?}");
    assert!(!seen.iter().any(|e| e.starts_with("action")), "{seen:?}");
}

struct ObserveErr7(Arc<Recorder>);
impl saga_core::Observer<Err7> for ObserveErr7 {
    fn aborted(&self, step: saga_core::StepRef<'_>) {
        saga_core::Observer::<String>::aborted(&*self.0, step);
    }
    fn action_started(&self, step: saga_core::StepRef<'_>, attempt: u32) {
        saga_core::Observer::<String>::action_started(&*self.0, step, attempt);
    }
}

// ---------------------------------------------------------------------------
// Rules 13-15: durability, with the core's MemoryJournal
// ---------------------------------------------------------------------------

/// A journal whose durable records are shared, so that a step can look.
#[derive(Default, Clone)]
struct Shared {
    durable: Arc<Mutex<Vec<Record>>>,
    pending: Vec<Record>,
}
impl Journal for Shared {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.pending.push(record.clone());
        Ok(())
    }
    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        self.durable.lock().unwrap().append(&mut self.pending);
        Poll::Ready(Ok(()))
    }
}

fn started_is_durable(durable: &Arc<Mutex<Vec<Record>>>, compensation: bool, step: u32) -> bool {
    durable.lock().unwrap().iter().any(|r| match r.event {
        Event::ActionStarted { step: s, .. } => !compensation && s == step,
        Event::CompensationStarted { step: s, .. } => compensation && s == step,
        _ => false,
    })
}

#[test]
fn rule_13_started_record_is_durable_before_the_attempt_is_polled() {
    let journal = Shared::default();
    let durable = journal.durable.clone();
    let checks = Arc::new(Mutex::new(Vec::new()));
    let probe = |compensation: bool, step: u32, fail: bool| {
        let (durable, checks) = (durable.clone(), checks.clone());
        move || {
            let (durable, checks) = (durable.clone(), checks.clone());
            async move {
                checks
                    .lock()
                    .unwrap()
                    .push(started_is_durable(&durable, compensation, step));
                if fail { Err("no".to_string()) } else { Ok(()) }
            }
        }
    };
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(probe(false, 0, false), probe(true, 0, false))
        .add_step(probe(false, 1, true), probe(true, 1, false))
        .build();
    let mut journal = journal;
    let run = saga
        .run_journaled(&mut journal, Start::new("probe", 1, vec![]))
        .unwrap();
    assert!(smol::block_on(run).is_err());
    assert_eq!(*checks.lock().unwrap(), [true; 4]);
    let records = durable.lock().unwrap().clone();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64);
    }
    assert!(matches!(records[0].event, Event::Created { .. }));
    let history = replay(&records).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

fn two_step_records() -> Vec<Record> {
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let mut journal = MemoryJournal::new();
    let run = saga
        .run_journaled(&mut journal, Start::new("pair", 1, vec![]))
        .unwrap();
    smol::block_on(run).unwrap();
    journal.durable().to_vec()
}

#[test]
fn rule_13_a_gap_or_an_illegal_transition_refuses_to_resume() {
    let records = two_step_records();
    assert!(replay(&records).is_ok());
    let mut gap = records.clone();
    gap.remove(2);
    assert!(
        matches!(replay(&gap), Err(ReplayError::Gap { .. })),
        "{:?}",
        replay(&gap)
    );

    // Step 1 succeeding before it started.
    let illegal = vec![
        records[0].clone(),
        Record {
            seq: 1,
            event: Event::ActionSucceeded {
                step: 1,
                output: None,
            },
        },
    ];
    assert!(matches!(replay(&illegal), Err(ReplayError::Illegal { .. })));

    let mut not_created = records;
    not_created.remove(0);
    assert!(replay(&not_created).is_err());
    assert!(matches!(replay(&[]), Err(ReplayError::Empty)));
}

fn crash_at_step_1(retry: u32, undone: &Arc<Mutex<Vec<String>>>, hang: bool) -> Saga<String> {
    let (u0, u1) = (undone.clone(), undone.clone());
    SagaBuilder::new()
        .action_retry(Retry::attempts(retry))
        .step(
            TypedStep::by_value(
                || async { Ok::<u32, String>(42) },
                move |value: u32| {
                    u0.lock().unwrap().push(format!("undo 0 got {value}"));
                    async { Ok(()) }
                },
            )
            .saved(),
        )
        .add_step(
            move || async move {
                if hang {
                    pending::<()>().await;
                }
                Ok::<_, String>(())
            },
            move || {
                u1.lock().unwrap().push("undo 1".to_string());
                async { Ok(()) }
            },
        )
        .build()
}

fn crash(saga: &mut Saga<String>, journal: &mut MemoryJournal) {
    let mut run = saga
        .run_journaled(journal, Start::new("crash", 1, vec![]))
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    drop(run);
    journal.lose_power();
}

#[test]
fn rule_14_cut_short_attempt_is_rerun_when_retry_allows() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let mut journal = MemoryJournal::new();
    crash(&mut crash_at_step_1(2, &undone, true), &mut journal);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Forward);
    let mut saga = crash_at_step_1(2, &undone, false);
    let run = saga.resume(&mut journal, &history).unwrap();
    assert!(smol::block_on(run).is_ok());
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(1).action_attempts, 2);
    assert_eq!(
        history.step(0).action_attempts,
        1,
        "a succeeded action ran again"
    );
    assert!(undone.lock().unwrap().is_empty());
}

#[test]
fn rule_14_cut_short_attempt_without_retry_is_compensated_and_typed_value_restored() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let mut journal = MemoryJournal::new();
    crash(&mut crash_at_step_1(1, &undone, true), &mut journal);
    let history = replay(journal.durable()).unwrap();
    let mut saga = crash_at_step_1(1, &undone, false);
    let run = saga.resume(&mut journal, &history).unwrap();
    let error = smol::block_on(run).unwrap_err();
    let report = error.saga().expect("a saga error");
    assert_eq!(report.reason(), StopReason::Crashed);
    assert_eq!(report.failed_step(), 1);
    assert!(report.is_fully_compensated());
    // Rule 3: step 1's compensation takes no input, so it is compensated;
    // step 0's compensation receives the value the original action returned.
    assert_eq!(*undone.lock().unwrap(), ["undo 1", "undo 0 got 42"]);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

#[test]
fn rule_14_compensation_with_no_outcome_is_run_again() {
    let build = |hang: bool, calls: &Arc<AtomicUsize>| -> Saga<String> {
        let calls = calls.clone();
        SagaBuilder::new()
            .add_step(
                || async { Ok(()) },
                move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if hang {
                            pending::<()>().await;
                        }
                        Ok(())
                    }
                },
            )
            .add_step(
                || async { Err::<(), _>("boom".to_string()) },
                || async { Ok(()) },
            )
            .build()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let mut journal = MemoryJournal::new();
    {
        let mut saga = build(true, &calls);
        let mut run = saga
            .run_journaled(&mut journal, Start::new("c", 1, vec![]))
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    }
    journal.lose_power();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Unwinding);
    let mut saga = build(false, &calls);
    let error = smol::block_on(saga.resume(&mut journal, &history).unwrap()).unwrap_err();
    assert!(error.saga().unwrap().is_fully_compensated());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let history = replay(journal.durable()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

#[test]
fn rule_15_changed_shape_or_finished_saga_is_refused_never_run() {
    let undone = Arc::new(Mutex::new(Vec::new()));
    let mut journal = MemoryJournal::new();
    crash(&mut crash_at_step_1(1, &undone, true), &mut journal);
    let history = replay(journal.durable()).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut other: Saga<String> = SagaBuilder::new()
        .add_step(
            move || {
                r.store(true, Ordering::SeqCst);
                async { Ok(()) }
            },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let before = journal.durable().len();
    let Err(refused) = other.resume(&mut journal, &history) else {
        panic!("a changed shape was resumed");
    };
    assert!(
        matches!(refused, Refused::FingerprintChanged { .. }),
        "{refused:?}"
    );
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(journal.durable().len() + journal.pending().len(), before);

    let finished = two_step_records();
    let history = replay(&finished).unwrap();
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let mut journal = MemoryJournal::from_records(finished);
    assert!(matches!(
        saga.resume(&mut journal, &history).err(),
        Some(Refused::Finished(Outcome::Committed))
    ));
}

// ---------------------------------------------------------------------------
// Rules 13-15 on saga-sqlite
// ---------------------------------------------------------------------------

#[test]
fn sqlite_rule_13_started_is_committed_before_the_action_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(saga_sqlite::Store::open(dir.path().join("s.db")).unwrap());
    let id = store.new_id();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (st, se) = (store.clone(), seen.clone());
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(
            move || {
                let records = st.records(id).unwrap();
                se.lock().unwrap().push(
                    records
                        .iter()
                        .any(|r| matches!(r.event, Event::ActionStarted { step: 0, .. })),
                );
                async { Ok(()) }
            },
            || async { Ok(()) },
        )
        .build();
    let mut journal = store.journal(id).unwrap();
    let run = saga
        .run_journaled(&mut journal, Start::new("w", 1, vec![]))
        .unwrap();
    smol::block_on(run).unwrap();
    drop(saga);
    assert_eq!(*seen.lock().unwrap(), [true]);
    let history = replay(&store.records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
}

fn sqlite_definition(
    undone: &Arc<Mutex<Vec<String>>>,
    hang: Arc<AtomicBool>,
) -> impl Fn(&u32, &saga_core::journal::SagaContext) -> Saga<String> + Send + Sync + 'static {
    let undone = undone.clone();
    move |value: &u32, _context| {
        let (value, u0, u1, hang) = (*value, undone.clone(), undone.clone(), hang.clone());
        SagaBuilder::new()
            .step(
                TypedStep::by_value(
                    move || async move { Ok::<u32, String>(value) },
                    move |got: u32| {
                        u0.lock().unwrap().push(format!("undo 0 got {got}"));
                        async { Ok(()) }
                    },
                )
                .saved(),
            )
            .add_step(
                move || {
                    let hang = hang.load(Ordering::SeqCst);
                    async move {
                        if hang {
                            pending::<()>().await;
                        }
                        Ok::<_, String>(())
                    }
                },
                move || {
                    u1.lock().unwrap().push("undo 1".to_string());
                    async { Ok(()) }
                },
            )
            .build()
    }
}

#[test]
fn sqlite_rules_14_15_recover_compensates_restores_values_and_quarantines_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let undone = Arc::new(Mutex::new(Vec::new()));
    let (id, orphan) = {
        let mut registry = saga_core::journal::Registry::new();
        registry.register(
            "trip",
            1,
            sqlite_definition(&undone, Arc::new(AtomicBool::new(true))),
        );
        registry.register(
            "orphan",
            1,
            sqlite_definition(&undone, Arc::new(AtomicBool::new(true))),
        );
        let durable = saga_sqlite::Durable::new(saga_sqlite::Store::open(&path).unwrap(), registry);
        assert!(smol::block_on(durable.recover()).unwrap().is_empty());
        let mut cx = Context::from_waker(Waker::noop());
        let (id, run) = durable.start("trip", &7_u32).ok().unwrap();
        let mut run = Box::pin(run);
        let (orphan, orphan_run) = durable.start("orphan", &8_u32).ok().unwrap();
        let mut orphan_run = Box::pin(orphan_run);
        // Poll until both hang in step 1 (the writer thread commits the records).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let _ = run.as_mut().poll(&mut cx);
            let _ = orphan_run.as_mut().poll(&mut cx);
            let a = durable.store().records(id).unwrap();
            let b = durable.store().records(orphan).unwrap();
            let hung = |r: &[Record]| {
                r.iter()
                    .any(|r| matches!(r.event, Event::ActionStarted { step: 1, .. }))
            };
            if hung(&a) && hung(&b) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        (id, orphan)
    };
    assert!(undone.lock().unwrap().is_empty());
    // The next process knows "trip" (its step 1 no longer hangs) but not "orphan".
    let mut registry = saga_core::journal::Registry::new();
    registry.register(
        "trip",
        1,
        sqlite_definition(&undone, Arc::new(AtomicBool::new(false))),
    );
    let durable = saga_sqlite::Durable::new(saga_sqlite::Store::open(&path).unwrap(), registry);
    let recovered = smol::block_on(durable.recover()).unwrap();
    assert_eq!(recovered.len(), 2);
    for (saga, outcome) in &recovered {
        if *saga == id {
            match outcome {
                saga_sqlite::Recovered::Ran(Err(error)) => {
                    let report = error.saga().expect("a saga error");
                    assert_eq!(report.reason(), StopReason::Crashed);
                    assert!(report.is_fully_compensated());
                }
                _ => panic!("trip was not recovered and compensated"),
            }
        } else {
            assert_eq!(*saga, orphan);
            assert!(matches!(
                outcome,
                saga_sqlite::Recovered::NotRun(saga_sqlite::NotRun::Quarantined(
                    Quarantined::UnknownDefinition { .. }
                ))
            ));
        }
    }
    assert_eq!(*undone.lock().unwrap(), ["undo 1", "undo 0 got 7"]);
    assert_eq!(durable.store().unfinished().unwrap(), [orphan]);
}

#[test]
fn sqlite_rule_15_changed_fingerprint_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let undone = Arc::new(Mutex::new(Vec::new()));
    let id = {
        let mut registry = saga_core::journal::Registry::new();
        registry.register(
            "trip",
            1,
            sqlite_definition(&undone, Arc::new(AtomicBool::new(true))),
        );
        let durable = saga_sqlite::Durable::new(saga_sqlite::Store::open(&path).unwrap(), registry);
        let mut cx = Context::from_waker(Waker::noop());
        let (id, run) = durable.start("trip", &7_u32).ok().unwrap();
        let mut run = Box::pin(run);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let _ = run.as_mut().poll(&mut cx);
            let records = durable.store().records(id).unwrap();
            if records
                .iter()
                .any(|r| matches!(r.event, Event::ActionStarted { step: 1, .. }))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        id
    };
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut registry = saga_core::journal::Registry::<String>::new();
    registry.register(
        "trip",
        1,
        move |_: &u32, _: &saga_core::journal::SagaContext| {
            let r = r.clone();
            SagaBuilder::new()
                .add_step(
                    move || {
                        r.store(true, Ordering::SeqCst);
                        async { Ok(()) }
                    },
                    || async { Ok(()) },
                )
                .build()
        },
    );
    let durable = saga_sqlite::Durable::new(saga_sqlite::Store::open(&path).unwrap(), registry);
    let recovered = smol::block_on(durable.recover()).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].0, id);
    assert!(matches!(
        recovered[0].1,
        saga_sqlite::Recovered::NotRun(saga_sqlite::NotRun::Quarantined(
            Quarantined::FingerprintChanged { .. }
        ))
    ));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(durable.store().unfinished().unwrap(), [id]);
}

#[test]
fn rule_14_idempotency_key_is_the_saga_id_and_the_step() {
    let context = saga_core::journal::SagaContext::new(saga_core::journal::SagaId(0xabc));
    let again = saga_core::journal::SagaContext::new(saga_core::journal::SagaId(0xabc));
    let other = saga_core::journal::SagaContext::new(saga_core::journal::SagaId(0xabd));
    assert_eq!(context.key(1), again.key(1));
    assert_ne!(context.key(1), context.key(2));
    assert_ne!(context.key(1), other.key(1));
}
