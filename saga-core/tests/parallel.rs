//! Parallel groups and concurrent compensation: members polled together in
//! the one run future, each woken on its own, failures handled by policy.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use std::future::{Future, pending, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use saga_core::{
    AbortHandle, CompensationMode, Handling, InFlight, ParallelGroup, Recovery, Retry, SagaBuilder,
    SagaError, StepPolicy, StopReason, TypedStep,
};
use support::{FakeClock, Gate, TestError, Yield, block_on_clock};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn push(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

/// An action that logs `"do {i}"`, waits for `wait`, then logs `"done {i}"`
/// and succeeds, or fails when `fail`.
fn action(
    log: &Log,
    i: usize,
    wait: Option<Gate>,
    fail: bool,
) -> impl FnMut() -> Pin<Box<dyn Future<Output = Result<(), TestError>> + Send>> + Send + 'static {
    let log = log.clone();
    move || {
        let (log, wait) = (log.clone(), wait.clone());
        Box::pin(async move {
            push(&log, format!("do {i}"));
            if let Some(gate) = wait {
                gate.wait().await;
            }
            push(&log, format!("done {i}"));
            if fail {
                Err(TestError::Transient(i as u32))
            } else {
                Ok(())
            }
        })
    }
}

/// A compensation that logs `"undo {i}"`, or fails when `fail`.
fn undo(
    log: &Log,
    i: usize,
    fail: bool,
) -> impl FnMut() -> std::future::Ready<Result<(), TestError>> + Send + 'static {
    let log = log.clone();
    move || {
        push(&log, format!("undo {i}"));
        ready(if fail {
            Err(TestError::Undo(i as u32))
        } else {
            Ok(())
        })
    }
}

#[derive(Default)]
struct Flag(std::sync::atomic::AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls a future by hand, and tells whether it was woken since.
struct Manual<F> {
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
    polls: usize,
}

impl<F: Future> Manual<F> {
    fn new(future: F) -> Self {
        Manual {
            future: Box::pin(future),
            flag: Arc::default(),
            polls: 0,
        }
    }

    fn poll(&mut self) -> Poll<F::Output> {
        self.flag.0.store(false, Ordering::SeqCst);
        self.polls += 1;
        let waker = Waker::from(self.flag.clone());
        self.future.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn woken(&self) -> bool {
        self.flag.0.load(Ordering::SeqCst)
    }
}

#[test]
fn a_failed_member_lets_the_others_finish_then_everything_that_ran_is_compensated() {
    let log = log();
    let (a, b) = (Gate::new(), Gate::new());
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, None, false), undo(&log, 0, false))
        .parallel(|group| {
            group
                .add_step(
                    action(&log, 1, Some(a.clone()), false),
                    undo(&log, 1, false),
                )
                .add_step(action(&log, 2, None, true), undo(&log, 2, false))
                .add_step(
                    action(&log, 3, Some(b.clone()), false),
                    undo(&log, 3, false),
                )
        })
        .add_step(action(&log, 4, None, false), undo(&log, 4, false))
        .build();
    assert_eq!(saga.parallel_groups().collect::<Vec<_>>(), vec![1..4_usize]);

    let mut run = Manual::new(saga.run());
    assert!(run.poll().is_pending());
    assert_eq!(
        entries(&log),
        ["do 0", "done 0", "do 1", "do 2", "done 2", "do 3"]
    );

    a.open();
    assert!(run.woken());
    assert!(run.poll().is_pending(), "member 3 is still in flight");
    assert_eq!(entries(&log).last().unwrap(), "done 1");

    b.open();
    assert!(run.woken());
    let Poll::Ready(result) = run.poll() else {
        panic!("the run completes")
    };
    let error = result.unwrap_err();
    assert_eq!(error.failed_step(), 2);
    assert_eq!(*error.error(), TestError::Transient(2));
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 4);
    assert_eq!(
        entries(&log)[7..],
        ["done 3", "undo 3", "undo 2", "undo 1", "undo 0"],
        "the group's members in reverse, then the steps before it; step 4 never ran"
    );
    // Each gate was polled once while closed and once when open: nothing is
    // polled without a wake-up, and nothing after it finished.
    assert_eq!((a.polls(), b.polls()), (2, 2));
}

#[test]
fn cut_short_drops_the_members_in_flight_and_compensates_them_by_their_rule() {
    let log = log();
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (hung, hung_typed) = (dropped.clone(), dropped.clone());
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, None, false), undo(&log, 0, false))
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .add_step(
                        move || {
                            let guard = Counted(hung.clone());
                            async move {
                                let _guard = guard;
                                pending::<()>().await;
                                Ok::<(), TestError>(())
                            }
                        },
                        undo(&log, 1, false),
                    )
                    .add_step(
                        || async {
                            Yield(2).await;
                            Err::<(), _>(TestError::Fatal)
                        },
                        undo(&log, 2, false),
                    )
                    .step(TypedStep::by_ref(
                        move || {
                            let guard = Counted(hung_typed.clone());
                            async move {
                                let _guard = guard;
                                pending::<()>().await;
                                Ok::<u32, TestError>(3)
                            }
                        },
                        |_: &u32| ready(Ok(())),
                    ))
            },
        )
        .build();

    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 2);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "both hung members were dropped"
    );
    // Member 1 (pysagas form) is compensated as possibly applied; the typed
    // member 3 cannot be, and is reported as left applied.
    assert_eq!(
        entries(&log),
        ["do 0", "done 0", "undo 2", "undo 1", "undo 0"]
    );
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [3]);
    assert!(
        error.concurrent_failures().is_empty(),
        "cancelled members have no error of their own"
    );
}

#[test]
fn a_concurrency_limit_bounds_the_members_in_flight() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let starts = log();
    let mut saga = SagaBuilder::new()
        .parallel_with(ParallelGroup::new().limit(2), |mut group| {
            for i in 0..5 {
                let (running, most, starts) = (running.clone(), most.clone(), starts.clone());
                group = group.add_step(
                    move || {
                        let (running, most, starts) =
                            (running.clone(), most.clone(), starts.clone());
                        async move {
                            push(&starts, format!("{i}"));
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            Yield(1 + i % 3).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok::<(), TestError>(())
                        }
                    },
                    || ready(Ok(())),
                );
            }
            group
        })
        .build();
    assert_eq!(smol::block_on(saga.run()), Ok(()));
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(entries(&starts), ["0", "1", "2", "3", "4"]);
}

#[test]
fn members_woken_in_any_order_are_polled_only_when_woken() {
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let log = log();
        let gates = [Gate::new(), Gate::new(), Gate::new()];
        let mut saga = SagaBuilder::new()
            .parallel(|group| {
                gates.iter().enumerate().fold(group, |group, (i, gate)| {
                    group.add_step(
                        action(&log, i, Some(gate.clone()), false),
                        undo(&log, i, false),
                    )
                })
            })
            .build();
        let mut run = Manual::new(saga.run());
        assert!(run.poll().is_pending());
        for (opened, &i) in order.iter().enumerate() {
            gates[i].open();
            assert!(run.woken(), "{order:?}: opening gate {i} wakes the run");
            let done = opened == 2;
            assert_eq!(run.poll().is_ready(), done, "{order:?}");
            // Only the woken member was polled again.
            for (j, gate) in gates.iter().enumerate() {
                let opened_before = order[..=opened].contains(&j);
                assert_eq!(
                    gate.polls(),
                    1 + usize::from(opened_before),
                    "{order:?}: gate {j}"
                );
            }
        }
        assert_eq!(run.polls, 4);
        let dones: Vec<String> = order.iter().map(|i| format!("done {i}")).collect();
        assert_eq!(entries(&log)[3..], dones[..], "{order:?}");
    }
}

#[test]
fn typed_outputs_work_inside_groups() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut saga = SagaBuilder::new()
        .parallel(|mut group| {
            for i in 0..3_u32 {
                let received = received.clone();
                group = group.step(TypedStep::by_ref(
                    move || async move {
                        Yield(3 - i as usize).await;
                        Ok::<_, TestError>(format!("booking-{i}"))
                    },
                    move |booking: &String| {
                        received.lock().unwrap().push(booking.clone());
                        ready(Ok(()))
                    },
                ));
            }
            group
        })
        .add_step(|| ready(Err::<(), _>(TestError::Fatal)), || ready(Ok(())))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(
        *received.lock().unwrap(),
        ["booking-2", "booking-1", "booking-0"]
    );
}

#[test]
fn several_failed_members_are_all_reported() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(action(&log, 0, None, true), undo(&log, 0, false))
                .add_step(action(&log, 1, None, false), undo(&log, 1, false))
                .add_step(action(&log, 2, None, true), undo(&log, 2, false))
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 0);
    let others: Vec<usize> = error
        .concurrent_failures()
        .iter()
        .map(|f| f.step())
        .collect();
    assert_eq!(others, [2]);
    assert_eq!(
        *error.concurrent_failures()[0].error(),
        TestError::Transient(2)
    );
    assert!(error.is_fully_compensated());
    assert_eq!(
        error.to_string(),
        "step 0 failed: Transient(0); step 2 failed too: Transient(2); fully compensated (3 steps)"
    );
}

/// A compensation that holds a gauge while it waits on `gate`.
fn gauged_undo(
    running: &Arc<AtomicUsize>,
    most: &Arc<AtomicUsize>,
    gate: Gate,
    fail: bool,
) -> impl FnMut() -> Pin<Box<dyn Future<Output = Result<(), TestError>> + Send>> + Send + 'static {
    let (running, most) = (running.clone(), most.clone());
    move || {
        let (running, most, gate) = (running.clone(), most.clone(), gate.clone());
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            gate.wait().await;
            running.fetch_sub(1, Ordering::SeqCst);
            if fail {
                Err(TestError::Undo(0))
            } else {
                Ok(())
            }
        })
    }
}

fn compensation_concurrency(mode: CompensationMode) -> (usize, SagaError<TestError>) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gates: Vec<Gate> = (0..5).map(|_| Gate::new()).collect();
    let ok = || ready(Ok::<(), TestError>(()));
    let mut saga = SagaBuilder::new()
        .compensation_mode(mode)
        .add_step(ok, gauged_undo(&running, &most, gates[0].clone(), false))
        .parallel(|group| {
            (1..4).fold(group, |group, i| {
                group.add_step(ok, gauged_undo(&running, &most, gates[i].clone(), i != 2))
            })
        })
        .add_step(
            || ready(Err::<(), _>(TestError::Fatal)),
            gauged_undo(&running, &most, gates[4].clone(), false),
        )
        .build();
    let mut run = Manual::new(saga.run());
    let mut result = run.poll();
    // Open the gates one by one, last step first, until the run completes.
    for gate in gates.iter().rev().cycle().take(50) {
        if result.is_ready() {
            break;
        }
        gate.open();
        result = run.poll();
    }
    let Poll::Ready(result) = result else {
        panic!("the run completes")
    };
    (most.load(Ordering::SeqCst), result.unwrap_err())
}

#[test]
fn compensation_modes_run_one_at_a_time_per_group_or_all_at_once() {
    let (most, error) = compensation_concurrency(CompensationMode::ContinueOnError);
    assert_eq!(most, 1);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1, 3]);

    let (most, error) = compensation_concurrency(CompensationMode::StopOnError);
    assert_eq!(most, 1);
    // Stopped at member 3, the first to fail backward: it and all before it are left.
    assert_eq!(
        error.uncompensated_steps().collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(error.compensated_count(), 1);

    let (most, error) = compensation_concurrency(CompensationMode::ConcurrentGroups);
    assert_eq!(most, 3, "the group's three members at once");
    let failed: Vec<usize> = error
        .compensation_errors()
        .iter()
        .map(|f| f.step())
        .collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(error.compensated_count(), 3);

    let (most, error) = compensation_concurrency(CompensationMode::Concurrent);
    assert_eq!(most, 5, "every compensation at once");
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(error.compensated_count(), 3);
}

#[test]
fn a_propagated_member_failure_leaves_everything_that_ran_applied() {
    let log = log();
    let mut saga = SagaBuilder::new()
        .add_step(action(&log, 0, None, false), undo(&log, 0, false))
        .parallel(|group| {
            group
                .add_step(action(&log, 1, None, false), undo(&log, 1, false))
                .add_step(action(&log, 2, None, true), undo(&log, 2, false))
        })
        .classify(|_: &TestError| Recovery::Propagate)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Propagated);
    assert!(entries(&log).iter().all(|entry| !entry.starts_with("undo")));
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn an_abort_during_a_group_finishes_or_cuts_short_the_members() {
    for in_flight in [InFlight::Finish, InFlight::CutShort] {
        let log = log();
        let gate = Gate::new();
        let abort = AbortHandle::new();
        let mut saga = SagaBuilder::new()
            .on_abort(in_flight)
            .add_step(action(&log, 0, None, false), undo(&log, 0, false))
            .parallel(|group| {
                group
                    .add_step(
                        action(&log, 1, Some(gate.clone()), false),
                        undo(&log, 1, false),
                    )
                    .add_step(action(&log, 2, None, false), undo(&log, 2, false))
            })
            .add_step(action(&log, 3, None, false), undo(&log, 3, false))
            .build();
        let mut run = Manual::new(saga.run().abortable(&abort));
        assert!(run.poll().is_pending());
        abort.abort();
        assert!(run.woken());
        let result = match in_flight {
            InFlight::Finish => {
                assert!(run.poll().is_pending(), "member 1 is allowed to finish");
                gate.open();
                run.poll()
            }
            _ => run.poll(),
        };
        let Poll::Ready(result) = result else {
            panic!("{in_flight:?}: the run completes")
        };
        let error = result.unwrap_err();
        assert!(error.aborted());
        assert_eq!(*error.error(), TestError::Aborted);
        assert_eq!(error.reason(), StopReason::Aborted);
        // Finished, member 1 leaves the group done: the saga stopped before
        // step 3; cut short, it is where the saga stopped.
        let (stopped_at, attempts) = match in_flight {
            InFlight::Finish => (3, 0),
            _ => (1, 1),
        };
        assert_eq!(error.failed_step(), stopped_at);
        assert_eq!(error.attempts(), attempts);
        assert!(error.is_fully_compensated());
        let done_1 = entries(&log).contains(&"done 1".to_owned());
        assert_eq!(done_1, in_flight == InFlight::Finish);
        assert_eq!(
            entries(&log)
                .iter()
                .filter(|e| e.starts_with("undo"))
                .count(),
            3
        );
        assert!(!entries(&log).contains(&"do 3".to_owned()));
    }
}

#[test]
fn members_retry_and_time_out_on_timers_of_their_own() {
    let clock = FakeClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let flaky = |fails: usize| {
        let calls = calls.clone();
        let attempts = Arc::new(AtomicUsize::new(0));
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            ready(if attempt < fails {
                Err(TestError::Transient(attempt as u32))
            } else {
                Ok(())
            })
        }
    };
    let mut saga = SagaBuilder::new()
        .sleeper(clock.sleeper())
        .parallel(|group| {
            group
                .add_step_with(
                    flaky(2),
                    || ready(Ok(())),
                    StepPolicy::new().retry(Retry::attempts(3).constant(Duration::from_millis(10))),
                )
                .add_step_with(
                    flaky(1),
                    || ready(Ok(())),
                    StepPolicy::new().retry(Retry::attempts(2).constant(Duration::from_millis(25))),
                )
                .add_step_with(
                    || async {
                        Yield(1).await;
                        Ok::<(), TestError>(())
                    },
                    || ready(Ok(())),
                    StepPolicy::new().timeout(Duration::from_millis(100)),
                )
        })
        .build();
    assert_eq!(block_on_clock(&clock, saga.run()), Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let mut requested = clock.requested();
    requested.sort();
    assert_eq!(requested, [10, 10, 25, 100].map(Duration::from_millis));
    assert_eq!(
        clock.now(),
        Duration::from_millis(25),
        "the retries waited side by side"
    );
}

#[test]
fn groups_run_on_real_executors() {
    let run_on = |block_on: &dyn Fn(Pin<Box<dyn Future<Output = ()>>>)| {
        let log = log();
        let logged = log.clone();
        block_on(Box::pin(async move {
            let mut saga = SagaBuilder::new()
                .parallel(|mut group| {
                    for (i, ms) in [30_u64, 10, 20].into_iter().enumerate() {
                        let log = logged.clone();
                        group = group.add_step(
                            move || {
                                let log = log.clone();
                                async move {
                                    smol::Timer::after(Duration::from_millis(ms)).await;
                                    push(&log, format!("done {i}"));
                                    Ok::<(), TestError>(())
                                }
                            },
                            || ready(Ok(())),
                        );
                    }
                    group
                })
                .build();
            assert_eq!(saga.run().await, Ok(()));
        }));
        entries(&log)
    };
    let expected = ["done 1", "done 2", "done 0"];
    assert_eq!(run_on(&|future| smol::block_on(future)), expected);
    assert_eq!(
        run_on(&|future| async_std::task::block_on(future)),
        expected
    );
}

#[test]
fn wide_groups_and_concurrent_compensation_of_many_steps() {
    // Lanes are claimed and polled in constant time each, so these run in
    // linear time (the benchmarks measure it; here they must just finish).
    let compensated = Arc::new(AtomicUsize::new(0));
    let undo = || {
        let compensated = compensated.clone();
        move || {
            let compensated = compensated.clone();
            async move {
                Yield(1).await;
                compensated.fetch_add(1, Ordering::SeqCst);
                Ok::<(), TestError>(())
            }
        }
    };
    let mut saga = SagaBuilder::new()
        .compensation_mode(CompensationMode::Concurrent)
        .parallel(|mut group| {
            for _ in 0..5_000 {
                group = group.add_step(
                    || async {
                        Yield(1).await;
                        Ok::<(), TestError>(())
                    },
                    undo(),
                );
            }
            group
        });
    for _ in 0..15_000 {
        saga = saga.add_step(|| ready(Ok::<(), TestError>(())), undo());
    }
    let mut saga = saga
        .add_step(|| ready(Err::<(), _>(TestError::Fatal)), undo())
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(compensated.load(Ordering::SeqCst), 20_001);
}
