//! Retries, backoff, timeouts, error routing and abort, on a virtual clock
//! whose sleeper records every requested duration (no real time), plus a
//! few runs on smol's real timer.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use std::future::{pending, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use saga_core::{
    AbortHandle, CompensationMode, Handling, InFlight, Recovery, Retry, SagaBuilder, SagaError,
    StepPolicy, TypedStep,
};
use support::{FakeClock, TestError, Yield, block_on_clock, try_drive};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A closure that fails with `error(call)` for its first `fails` calls,
/// counting its calls.
fn failing_first(
    calls: &Arc<AtomicU32>,
    fails: u32,
    error: fn(u32) -> TestError,
) -> impl FnMut() -> std::future::Ready<Result<(), TestError>> + Send + 'static {
    let calls = calls.clone();
    move || {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        ready(if call < fails {
            Err(error(call))
        } else {
            Ok(())
        })
    }
}

/// An action that fails with `Transient(call)` for its first `fails` calls.
fn flaky(
    calls: &Arc<AtomicU32>,
    fails: u32,
) -> impl FnMut() -> std::future::Ready<Result<(), TestError>> + Send + 'static {
    failing_first(calls, fails, TestError::Transient)
}

/// A compensation that fails with `Undo(call)` for its first `fails` calls.
fn flaky_undo(
    calls: &Arc<AtomicU32>,
    fails: u32,
) -> impl FnMut() -> std::future::Ready<Result<(), TestError>> + Send + 'static {
    failing_first(calls, fails, TestError::Undo)
}

fn ok() -> std::future::Ready<Result<(), TestError>> {
    ready(Ok(()))
}

fn fatal() -> std::future::Ready<Result<(), TestError>> {
    ready(Err(TestError::Fatal))
}

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

fn calls(counter: &Arc<AtomicU32>) -> u32 {
    counter.load(Ordering::SeqCst)
}

#[test]
fn exponential_backoff_waits_the_exact_sequence_then_succeeds() {
    let clock = FakeClock::new();
    let attempts = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(5).exponential(ms(10), ms(50)))
        .add_step(flaky(&attempts, 4), ok)
        .build();

    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(calls(&attempts), 5);
    assert_eq!(clock.requested(), [10, 20, 40, 50].map(ms));
    assert_eq!(clock.now(), ms(120));
}

#[test]
fn constant_backoff_goes_through_the_jitter_source() {
    let clock = FakeClock::new();
    let attempts = counter();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let retry = Retry::attempts(3).constant(ms(100)).jitter(move |delay| {
        log.lock().unwrap().push(delay);
        delay / 4
    });
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .add_step_with(flaky(&attempts, 2), ok, StepPolicy::new().retry(retry))
        .build();

    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(*seen.lock().unwrap(), [ms(100), ms(100)]);
    assert_eq!(clock.requested(), [ms(25), ms(25)]);
}

#[test]
fn exhausted_retries_compensate_and_report_the_last_error_and_attempts() {
    let clock = FakeClock::new();
    let (first, second, undo0, undo1) = (counter(), counter(), counter(), counter());
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(3).constant(ms(5)))
        .add_step(flaky(&first, 0), flaky_undo(&undo0, 0))
        .add_step(flaky(&second, 10), flaky_undo(&undo1, 0))
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert_eq!(*error.error(), TestError::Transient(2));
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.handling(), Handling::Compensated);
    assert!(error.is_fully_compensated());
    assert_eq!((calls(&first), calls(&second)), (1, 3));
    // The failing pysagas-style step is compensated once, then step 0.
    assert_eq!((calls(&undo1), calls(&undo0)), (1, 1));
    assert_eq!(clock.requested(), [ms(5), ms(5)]);
    assert_eq!(
        error.to_string(),
        "step 1 failed: Transient(2) (after 3 attempts); fully compensated (2 steps)"
    );
}

#[test]
fn the_classifier_routes_each_error() {
    for (error_kind, expected_calls, expected_recovery) in [
        // Transient errors are retried per policy, then compensated.
        (0, 4, Recovery::Compensate),
        // Business errors are compensated at once.
        (1, 1, Recovery::Compensate),
        // Infrastructure errors propagate without compensation.
        (2, 1, Recovery::Propagate),
    ] {
        let attempts = counter();
        let undo = counter();
        let action = {
            let attempts = attempts.clone();
            move || {
                attempts.fetch_add(1, Ordering::SeqCst);
                ready(Err::<(), _>(match error_kind {
                    0 => TestError::Transient(0),
                    1 => TestError::Fatal,
                    _ => TestError::Undo(0),
                }))
            }
        };
        let mut saga = SagaBuilder::new()
            .action_retry(Retry::attempts(4))
            .add_step(ok, flaky_undo(&undo, 0))
            .add_step(action, ok)
            .classify(|error: &TestError| match error {
                TestError::Transient(_) => Recovery::Retry,
                TestError::Fatal => Recovery::Compensate,
                _ => Recovery::Propagate,
            })
            .build();

        let error = smol::block_on(saga.run()).unwrap_err();
        assert_eq!(calls(&attempts), expected_calls, "error kind {error_kind}");
        assert_eq!(error.attempts(), expected_calls);
        assert_eq!(
            error.handling() == Handling::Propagated,
            expected_recovery == Recovery::Propagate
        );
        let propagated = expected_recovery == Recovery::Propagate;
        assert_eq!(calls(&undo), u32::from(!propagated));
        assert_eq!(error.is_fully_compensated(), !propagated);
        if propagated {
            assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
        }
    }
}

#[test]
fn immediate_retries_need_no_sleeper() {
    let attempts = counter();
    let mut saga = SagaBuilder::new()
        .add_step_with(
            flaky(&attempts, 2),
            ok,
            StepPolicy::new().retry(Retry::attempts(3)),
        )
        .build();
    assert_eq!(smol::block_on(saga.run()), Ok(()));
    assert_eq!(calls(&attempts), 3);
}

#[test]
fn a_step_policy_overrides_the_saga_default() {
    let (a, b) = (counter(), counter());
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step_with(
            flaky(&a, 10),
            ok,
            StepPolicy::new().retry(Retry::attempts(4)),
        )
        .build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().attempts(), 4);

    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(flaky(&b, 10), ok)
        .build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().attempts(), 2);
    assert_eq!((calls(&a), calls(&b)), (4, 2));
}

#[test]
fn a_compensation_failing_twice_then_succeeding_under_three_attempts_is_fully_compensated() {
    let clock = FakeClock::new();
    let undo = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .compensation_retry(Retry::attempts(3).exponential(ms(1), ms(100)))
        .add_step(ok, flaky_undo(&undo, 2))
        .add_step(fatal, ok)
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 2);
    assert!(error.compensation_errors().is_empty());
    assert_eq!(calls(&undo), 3);
    assert_eq!(clock.requested(), [ms(1), ms(2)]);
}

#[test]
fn a_compensation_that_gives_up_stops_or_continues_with_attempts_reported() {
    for mode in [
        CompensationMode::StopOnError,
        CompensationMode::ContinueOnError,
    ] {
        let (undo0, undo1, undo2) = (counter(), counter(), counter());
        let mut saga = SagaBuilder::new()
            .compensation_retry(Retry::attempts(2))
            .compensation_mode(mode)
            .add_step(ok, flaky_undo(&undo0, 0))
            .add_step(ok, flaky_undo(&undo1, 99))
            .add_step(fatal, flaky_undo(&undo2, 0))
            .build();

        let error = smol::block_on(saga.run()).unwrap_err();
        let [failed] = error.compensation_errors() else {
            panic!("one compensation error")
        };
        assert_eq!((failed.step(), failed.attempts()), (1, 2));
        assert_eq!(*failed.error(), TestError::Undo(1));
        assert_eq!(calls(&undo1), 2);
        assert_eq!(calls(&undo2), 1);
        match mode {
            CompensationMode::StopOnError => {
                assert_eq!(calls(&undo0), 0);
                assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
            }
            _ => {
                assert_eq!(calls(&undo0), 1);
                assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
            }
        }
    }
}

#[test]
fn a_by_value_compensation_is_attempted_once_whatever_the_policy() {
    let undo = counter();
    let calls_made = undo.clone();
    let mut saga = SagaBuilder::new()
        .compensation_retry(Retry::attempts(5))
        .add_typed_step(
            || ready(Ok::<_, TestError>(7_u32)),
            move |value: u32| {
                calls_made.fetch_add(1, Ordering::SeqCst);
                ready(Err(TestError::Undo(value)))
            },
        )
        .add_step(fatal, ok)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(calls(&undo), 1);
    assert_eq!(error.compensation_errors()[0].attempts(), 1);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
}

#[test]
fn a_timed_out_action_is_cut_short_and_compensated_as_possibly_applied() {
    let clock = FakeClock::new();
    let undo = counter();
    let dropped = Arc::new(AtomicUsize::new(0));
    let guard = DropCounter(dropped.clone());
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_timeout(ms(100))
        .add_step(
            move || {
                let guard = guard.clone();
                async move {
                    let _guard = guard;
                    pending::<()>().await;
                    Ok(())
                }
            },
            flaky_undo(&undo, 0),
        )
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert_eq!(*error.error(), TestError::TimedOut);
    assert!(error.timed_out());
    assert!(error.is_fully_compensated());
    assert_eq!(calls(&undo), 1);
    assert_eq!(clock.requested(), [ms(100)]);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the hung action was dropped"
    );
}

#[test]
fn a_timed_out_typed_action_is_reported_as_left_applied() {
    let clock = FakeClock::new();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .add_step(ok, ok)
        .step_with(
            TypedStep::by_ref(
                || async {
                    pending::<()>().await;
                    Ok::<u32, TestError>(1)
                },
                |_: &u32| ok(),
            ),
            StepPolicy::new().timeout(ms(30)),
        )
        .build();

    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert!(error.timed_out());
    assert_eq!(error.compensated_count(), 1);
    assert!(!error.is_fully_compensated());
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1]);
}

#[test]
fn a_timed_out_attempt_is_retried() {
    let clock = FakeClock::new();
    let attempts = counter();
    let counted = attempts.clone();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_timeout(ms(50))
        .action_retry(Retry::attempts(2).constant(ms(7)))
        .add_step(
            move || {
                let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        pending::<()>().await;
                    }
                    Ok(())
                }
            },
            ok,
        )
        .build();
    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(calls(&attempts), 2);
    // Timeout of attempt 1, backoff, timeout of attempt 2 (stopped when it succeeded).
    assert_eq!(clock.requested(), [ms(50), ms(7), ms(50)]);
}

#[test]
fn a_timed_out_compensation_is_retried() {
    let clock = FakeClock::new();
    let undo = counter();
    let counted = undo.clone();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .compensation_timeout(ms(20))
        .compensation_retry(Retry::attempts(3))
        .add_step(ok, move || {
            let call = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if call < 2 {
                    pending::<()>().await;
                }
                Ok(())
            }
        })
        .add_step(fatal, ok)
        .build();
    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert!(
        !error.timed_out(),
        "the action failed; only compensations timed out"
    );
    assert_eq!(calls(&undo), 3);
}

#[test]
fn a_compensation_that_keeps_timing_out_is_reported() {
    let clock = FakeClock::new();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .compensation_timeout(ms(20))
        .add_step(ok, || async {
            pending::<()>().await;
            Ok(())
        })
        .add_step(fatal, ok)
        .build();
    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    let failed = &error.compensation_errors()[0];
    assert!(failed.timed_out());
    assert_eq!(*failed.error(), TestError::TimedOut);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
}

#[test]
fn the_saga_deadline_stops_the_forward_phase_but_not_compensation() {
    let clock = FakeClock::new();
    let undo = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .saga_timeout(ms(100))
        .compensation_retry(Retry::attempts(2).constant(ms(500)))
        .add_step(ok, flaky_undo(&undo, 1))
        .add_step(
            || async {
                pending::<()>().await;
                Ok(())
            },
            ok,
        )
        .add_step(ok, ok)
        .build();
    let error = block_on_clock(&clock, saga.run()).unwrap_err();
    assert!(error.timed_out());
    assert_eq!(error.failed_step(), 1);
    assert_eq!(*error.error(), TestError::TimedOut);
    // Compensation took longer than the deadline, and still completed.
    assert!(error.is_fully_compensated());
    assert_eq!(calls(&undo), 2);
    assert_eq!(clock.now(), ms(600));
}

#[derive(Debug, Clone)]
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Net effect per step: +1 per applied action, -1 per compensation.
fn books(n: usize) -> Arc<Vec<AtomicI32>> {
    Arc::new((0..n).map(|_| AtomicI32::new(0)).collect())
}

type Report = Result<(), SagaError<TestError>>;

/// Runs a 5-step saga (each step applies its effect, then yields twice;
/// compensations yield once, then undo), aborting before poll `abort_at`.
fn run_aborted_at(abort_at: usize, in_flight: InFlight, typed: bool) -> (Report, Vec<i32>) {
    let books = books(5);
    let mut builder = SagaBuilder::new().on_abort(in_flight);
    for index in 0..5 {
        let (up, down) = (books.clone(), books.clone());
        let action = move || {
            let books = up.clone();
            async move {
                books[index].fetch_add(1, Ordering::SeqCst);
                Yield(2).await;
                Ok::<_, TestError>(index)
            }
        };
        builder = if typed {
            builder.step(TypedStep::by_ref(action, move |&index: &usize| {
                let books = down.clone();
                async move {
                    Yield(1).await;
                    books[index].fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            }))
        } else {
            builder.add_step(action, move || {
                let books = down.clone();
                async move {
                    Yield(1).await;
                    books[index].fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            })
        };
    }
    let mut saga = builder.build();
    let abort = AbortHandle::new();
    let run = saga.run().abortable(&abort);
    let report = try_drive(
        run,
        &mut |poll| {
            if poll == abort_at {
                abort.abort();
            }
            true
        },
        None,
    )
    .expect("never dropped");
    let net = books
        .iter()
        .map(|entry| entry.load(Ordering::SeqCst))
        .collect();
    (report, net)
}

#[test]
fn abort_at_every_poll_point_balances_the_books() {
    for typed in [false, true] {
        for in_flight in [InFlight::Finish, InFlight::CutShort] {
            let mut outcomes = std::collections::BTreeSet::new();
            for abort_at in 0..40 {
                let (report, net) = run_aborted_at(abort_at, in_flight, typed);
                let context = format!("abort at poll {abort_at}, {in_flight:?}, typed: {typed}");
                match report {
                    Ok(()) => assert_eq!(net, [1; 5], "{context}"),
                    Err(error) => {
                        assert!(error.aborted(), "{context}");
                        assert_eq!(*error.error(), TestError::Aborted, "{context}");
                        // The books balance: exactly the steps the report lists are left applied.
                        let left: Vec<usize> = error.uncompensated_steps().collect();
                        let applied: Vec<usize> = (0..5).filter(|&i| net[i] != 0).collect();
                        assert_eq!(left, applied, "{context}: net {net:?}");
                        assert!(net.iter().all(|&n| n == 0 || n == 1), "{context}");
                        if in_flight == InFlight::Finish || !typed {
                            assert!(error.is_fully_compensated(), "{context}");
                        }
                        outcomes.insert((error.failed_step(), error.uncompensated_count()));
                    }
                }
            }
            // The sweep really hit every step.
            let failed_steps: std::collections::BTreeSet<_> =
                outcomes.iter().map(|(step, _)| *step).collect();
            assert_eq!(
                failed_steps.len(),
                5,
                "{in_flight:?}, typed: {typed}: {outcomes:?}"
            );
            if typed && in_flight == InFlight::CutShort {
                assert!(
                    outcomes.iter().any(|(_, left)| *left == 1),
                    "a typed step cut short is left applied"
                );
            }
        }
    }
}

#[test]
fn abort_with_finish_lets_the_action_complete_and_undoes_it() {
    let (report, net) = run_aborted_at(1, InFlight::Finish, false);
    let error = report.unwrap_err();
    // Step 0 finished well: the saga stopped before step 1 started.
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.attempts(), 0);
    assert_eq!(error.compensated_count(), 1);
    assert_eq!(net, [0; 5]);
}

#[test]
fn abort_with_cut_short_drops_the_action_in_flight() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let guard = DropCounter(dropped.clone());
    let finished = counter();
    let done = finished.clone();
    let mut saga = SagaBuilder::new()
        .on_abort(InFlight::CutShort)
        .add_step(
            move || {
                let (guard, done) = (guard.clone(), done.clone());
                async move {
                    let _guard = guard;
                    Yield(3).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            ok,
        )
        .build();
    let abort = AbortHandle::new();
    let run = saga.run().abortable(&abort);
    let mut polls_seen = 0;
    let report = try_drive(
        run,
        &mut |poll| {
            polls_seen = poll;
            if poll == 1 {
                abort.abort();
            }
            true
        },
        None,
    )
    .unwrap();
    let error = report.unwrap_err();
    assert!(error.aborted());
    assert_eq!(calls(&finished), 0, "the action never finished");
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "its future was dropped");
    assert!(error.is_fully_compensated());
    assert_eq!(polls_seen, 1);
}

#[test]
fn an_abort_before_the_first_poll_runs_nothing() {
    let attempts = counter();
    let mut saga = SagaBuilder::new().add_step(flaky(&attempts, 0), ok).build();
    let abort = AbortHandle::new();
    abort.abort();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert_eq!(calls(&attempts), 0);
    assert_eq!(
        (
            error.failed_step(),
            error.attempts(),
            error.compensated_count()
        ),
        (0, 0, 0)
    );
    assert!(error.is_fully_compensated());
}

#[test]
fn an_abort_during_backoff_reports_the_abort() {
    let clock = FakeClock::new();
    let attempts = counter();
    let undo = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(10).constant(ms(1000)))
        .add_step(flaky(&attempts, 99), flaky_undo(&undo, 0))
        .build();
    let abort = AbortHandle::new();
    let run = saga.run().abortable(&abort);
    let trigger = abort.clone();
    let report = try_drive(
        run,
        &mut |poll| {
            if poll == 2 {
                trigger.abort();
            }
            true
        },
        Some(&clock),
    )
    .unwrap();
    let error = report.unwrap_err();
    assert!(error.aborted());
    // Nothing was in flight: the abort itself ended the step.
    assert_eq!(*error.error(), TestError::Aborted);
    assert_eq!(error.attempts(), 2);
    assert_eq!(
        calls(&undo),
        1,
        "the failed pysagas-style step is compensated"
    );
}

#[test]
fn a_saga_with_timers_can_run_again() {
    let clock = FakeClock::new();
    let attempts = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .action_retry(Retry::attempts(2).constant(ms(3)))
        .action_timeout(ms(1000))
        .add_step(flaky(&attempts, 1), ok)
        .build();
    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(calls(&attempts), 3);
}

#[test]
fn real_timers_on_smol() {
    let attempts = counter();
    let mut saga = SagaBuilder::new()
        .sleeper(smol::Timer::after)
        .action_retry(Retry::attempts(3).exponential(ms(1), ms(4)))
        .add_step(flaky(&attempts, 2), ok)
        .step_with(
            saga_core::FnStep::new(
                || async {
                    pending::<()>().await;
                    Ok::<(), TestError>(())
                },
                ok,
            ),
            StepPolicy::new().timeout(ms(10)).retry(Retry::never()),
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(calls(&attempts), 3);
    assert!(error.timed_out());
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
}

/// Runs `run` to completion under `rt::CatchPanics`, as a runtime adapter
/// does (each panic fails what was panicking with `TestError::Fatal`), and
/// counts the panics it caught.
fn run_catching_panics(
    run: saga_core::Run<'_, TestError>,
) -> (Result<(), SagaError<TestError>>, usize) {
    use std::cell::Cell;
    use std::sync::Once;

    thread_local! {
        // `Some` while this thread counts its panics (and keeps them quiet).
        static PANICS: Cell<Option<usize>> = const { Cell::new(None) };
    }
    static COUNT_PANICS: Once = Once::new();
    COUNT_PANICS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match PANICS.get() {
            Some(count) => PANICS.set(Some(count + 1)),
            None => previous(info),
        }));
    });
    PANICS.set(Some(0));
    let result = smol::block_on(saga_core::rt::CatchPanics::new(run));
    let panics = PANICS.take().unwrap_or_default();
    (result, panics)
}

#[test]
fn a_panicking_step_fails_and_a_panicking_compensation_is_retried() {
    let undo = counter();
    let counted = undo.clone();
    let mut saga = SagaBuilder::new()
        .compensation_retry(Retry::attempts(2))
        .add_step(ok, move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("compensation bug");
            }
            ok()
        })
        .add_step(
            || async {
                Yield(1).await;
                if true {
                    panic!("action bug");
                }
                Ok(())
            },
            ok,
        )
        .build();
    let (result, panics) = run_catching_panics(saga.run());
    let error = result.unwrap_err();
    assert_eq!(panics, 2);
    assert_eq!(*error.error(), TestError::Fatal);
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    assert_eq!(calls(&undo), 2);
    // The run is still usable: a new run works.
    assert!(run_catching_panics(saga.run()).0.is_err());
}
