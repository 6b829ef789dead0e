//! The public API as a newcomer meets it, written from the README and the
//! rustdoc alone: inference, timing markers, parallel groups, local sagas,
//! shared abort handles, detached runs, repeat injection and the error report.

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    // The docs' own spelling: `.sleeper(|duration| smol::Timer::after(duration))`.
    clippy::redundant_closure,
    clippy::single_range_in_vec_init,
    clippy::async_yields_async
)]

use std::cell::{Cell, RefCell};
use std::error::Error as StdError;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::marker::{SagaKind, StepSlot};
use saga_core::testing::{Repeat, repeat_fn};
use saga_core::{
    AbortHandle, Aborted, AllowedIn, CompensationMode, FnStep, GroupBuilder, Handling, InFlight,
    LocalSaga, Observer, Panicked, ParallelGroup, Recovery, Retry, Saga, SagaBuilder, StepPolicy,
    StepRef, StopReason, Timed, TimedOut, TypedStep,
};

type BoxError = Box<dyn StdError + Send + Sync>;

/// A generous bound, so that a broken promise fails instead of hanging.
const BOUND: Duration = Duration::from_secs(20);

/// Runs `future` on smol, failing (not hanging) after `BOUND`.
fn smol_bounded<F: Future>(future: F) -> F::Output {
    smol::block_on(smol::future::or(async { Some(future.await) }, async {
        smol::Timer::after(BOUND).await;
        None
    }))
    .expect("did not finish within the bound")
}

/// A hand-written error enum with a variant for each interrupt.
#[derive(Debug, PartialEq)]
enum AppError {
    Declined,
    Aborted,
    Panicked(String),
    TimedOut,
}
impl From<Aborted> for AppError {
    fn from(_: Aborted) -> Self {
        AppError::Aborted
    }
}
impl From<Panicked> for AppError {
    fn from(panic: Panicked) -> Self {
        AppError::Panicked(panic.message().into())
    }
}
impl From<TimedOut> for AppError {
    fn from(_: TimedOut) -> Self {
        AppError::TimedOut
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// An action or a compensation, boxed so that helpers can return it.
type BoxedClosure = Box<
    dyn FnMut() -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + 'static,
>;

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

// ---------------------------------------------------------------- inference

#[test]
fn fn_step_made_with_let_then_added() {
    let step = FnStep::new(|| async { Ok::<(), String>(()) }, || async { Ok(()) });
    let step = step.named("reserve");
    let failing = FnStep::new(
        || async { Err::<(), _>(String::from("no")) },
        || async { Ok(()) },
    );
    let mut saga = SagaBuilder::new().step(step).step(failing).build();
    assert_eq!(saga.len(), 2);
    assert_eq!(
        saga.step_names().collect::<Vec<_>>(),
        [Some("reserve"), None]
    );
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.failed_step_name(), None);
    assert!(error.is_fully_compensated());
}

#[test]
fn typed_steps_made_with_let() {
    let log: Log = Log::default();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let by_value = TypedStep::by_value(
        || async { Ok::<u32, String>(7) },
        move |id| {
            let log = l1.clone();
            async move {
                log.lock().unwrap().push(format!("value {id}"));
                Ok(())
            }
        },
    );
    let by_ref = TypedStep::by_ref(
        || async { Ok::<_, String>(String::from("r-1")) },
        move |id| {
            let (log, id) = (l2.clone(), id.clone());
            async move {
                log.lock().unwrap().push(format!("ref {id}"));
                Ok(())
            }
        },
    )
    .named("by ref");
    // A by-option step whose own action fails: compensated with `None`.
    let by_option = TypedStep::by_option(
        || async { Err::<u8, _>(String::from("partly booked")) },
        move |value: Option<u8>| {
            let log = l3.clone();
            async move {
                log.lock().unwrap().push(format!("option {value:?}"));
                Ok(())
            }
        },
    );
    let mut saga = SagaBuilder::new()
        .step(by_value)
        .step(by_ref)
        .step(by_option)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 2);
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 3);
    assert_eq!(entries(&log), ["option None", "ref r-1", "value 7"]);
}

#[test]
fn typed_by_option_gets_some_after_success() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let step = TypedStep::by_option(
        || async { Ok::<u8, &'static str>(3) },
        move |value| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(value);
                Ok(())
            }
        },
    );
    let mut saga = SagaBuilder::new()
        .step(step)
        .add_step(|| async { Err::<(), _>("later") }, || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*seen.lock().unwrap(), [Some(3)]);
}

#[test]
fn builder_new_infers_error_from_first_step() {
    // No turbofish: E flows from the first step that names it.
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            || async { Err::<(), _>(AppError::Declined) },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(*error.error(), AppError::Declined);
}

#[test]
fn builder_infers_error_from_classifier_and_settings_before_steps() {
    let mut saga = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .action_timeout(Duration::from_secs(5))
        .classify(|error| match error {
            AppError::Declined => Recovery::Compensate,
            _ => Recovery::Retry,
        })
        .add_step(
            || async { Err::<(), _>(AppError::Declined) },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Compensated);
}

#[test]
fn builder_infers_error_from_the_saga_type() {
    let mut saga: Saga<String> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
}

#[test]
fn annotation_needed_when_every_step_returns_ok() {
    // The documented case for naming E: nothing else does.
    let mut saga = SagaBuilder::<AppError>::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    let mut tokio_saga = saga_tokio::builder::<AppError>()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert!(runtime.block_on(tokio_saga.run()).is_ok());
}

// ---------------------------------------------------------- timing markers

/// Three attempts for every action, in any saga (from the builder docs).
fn with_retries<E, S, T>(builder: SagaBuilder<E, S, T>) -> SagaBuilder<E, S, T>
where
    S: ?Sized + SagaKind<E>,
{
    builder.action_retry(Retry::attempts(3))
}

/// Immediate compensation retries too, with the other generic default.
fn with_undo_retries<E, S, T>(builder: SagaBuilder<E, S, T>) -> SagaBuilder<E, S, T>
where
    S: ?Sized + SagaKind<E>,
{
    builder.compensation_retry(Retry::attempts(2))
}

/// A policy of any timing, passed on: bounded by `AllowedIn`.
fn with_policy<E, S: ?Sized + SagaKind<E>, T, P: AllowedIn<T>>(
    builder: SagaBuilder<E, S, T>,
    retry: Retry<P>,
) -> SagaBuilder<E, S, T> {
    builder.action_retry(retry)
}

/// A backoff and a deadline: only for a builder that has a sleeper.
fn patient<E, S>(builder: SagaBuilder<E, S, Timed>) -> SagaBuilder<E, S, Timed>
where
    S: ?Sized + SagaKind<E>,
{
    builder
        .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
        .saga_timeout(Duration::from_secs(30))
}

async fn busy() -> Result<(), String> {
    Err(String::from("busy"))
}

#[test]
fn immediate_retries_accepted_by_every_builder() {
    let mut plain = with_undo_retries(with_retries(SagaBuilder::new()))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(plain.run()).unwrap_err().attempts(), 3);

    let mut local = with_retries(SagaBuilder::new_local())
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(local.run()).unwrap_err().attempts(), 3);

    let timed = SagaBuilder::new().sleeper(|duration| smol::Timer::after(duration));
    let mut timed = patient(with_retries(timed))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(timed.run()).unwrap_err().attempts(), 3);

    let local_timed = SagaBuilder::new_local().sleeper(|duration| smol::Timer::after(duration));
    let mut local_timed = patient(with_retries(local_timed))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(local_timed.run()).unwrap_err().attempts(), 3);

    let mut tokio_saga = with_retries(saga_tokio::builder())
        .add_step(busy, || async { Ok(()) })
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert_eq!(
        runtime.block_on(tokio_saga.run()).unwrap_err().attempts(),
        3
    );

    let mut async_std_saga = patient(with_retries(saga_async_std::builder()))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(
        async_std::task::block_on(async_std_saga.run())
            .unwrap_err()
            .attempts(),
        3
    );
}

#[test]
fn allowed_in_helper_takes_untimed_anywhere_and_timed_after_sleeper() {
    let mut plain = with_policy(SagaBuilder::new(), Retry::attempts(2))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(plain.run()).unwrap_err().attempts(), 2);

    let timed = SagaBuilder::new().sleeper(|duration| smol::Timer::after(duration));
    let mut timed = with_policy(timed, Retry::attempts(4).constant(Duration::from_millis(1)))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(timed.run()).unwrap_err().attempts(), 4);

    let timed = SagaBuilder::new().sleeper(|duration| smol::Timer::after(duration));
    let mut timed = with_policy(timed, Retry::attempts(2))
        .add_step(busy, || async { Ok(()) })
        .build();
    assert_eq!(smol::block_on(timed.run()).unwrap_err().attempts(), 2);
}

#[test]
fn step_policies_of_immediate_retries_in_any_builder_and_group() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group.add_step_with(
                move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>("flaky") }
                },
                || async { Ok(()) },
                StepPolicy::new()
                    .retry(Retry::attempts(3))
                    .compensation_retry(Retry::attempts(2)),
            )
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn timeouts_after_sleeper_cut_a_pending_action_short() {
    let mut saga = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .step_with(
            FnStep::new(std::future::pending::<Result<(), AppError>>, || async {
                Ok(())
            }),
            StepPolicy::new().timeout(Duration::from_millis(5)),
        )
        .build();
    let error = smol_bounded(saga.run()).unwrap_err();
    assert_eq!(error.reason(), StopReason::TimedOut);
    assert!(error.timed_out());
    assert_eq!(*error.error(), AppError::TimedOut);
    assert!(error.is_fully_compensated());
}

// ---------------------------------------------------------- parallel groups

/// A future that resolves once `count` reached `target`: only concurrent
/// members can get past it.
async fn meet(count: Arc<AtomicUsize>, target: usize) {
    count.fetch_add(1, Ordering::SeqCst);
    while count.load(Ordering::SeqCst) < target {
        smol::future::yield_now().await;
    }
}

#[test]
fn group_members_run_concurrently() {
    let count = Arc::new(AtomicUsize::new(0));
    let member = |count: Arc<AtomicUsize>| {
        move || {
            let count = count.clone();
            async move {
                meet(count, 3).await;
                Ok::<(), String>(())
            }
        }
    };
    let (a, b, c) = (
        member(count.clone()),
        member(count.clone()),
        member(count.clone()),
    );
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(a, || async { Ok(()) })
                .add_step(b, || async { Ok(()) })
                .add_step(c, || async { Ok(()) })
        })
        .build();
    assert_eq!(saga.parallel_groups().collect::<Vec<_>>(), [0..3]);
    assert!(smol_bounded(saga.run()).is_ok());
}

fn logged(log: &Log, name: &'static str, fail: bool) -> (BoxedClosure, BoxedClosure) {
    let (log, undo_log) = (log.clone(), log.clone());
    (
        Box::new(move || {
            let log = log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(name.to_string());
                if fail {
                    Err(format!("{name} failed"))
                } else {
                    Ok(())
                }
            }) as std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        }),
        Box::new(move || {
            let log = undo_log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(format!("undo {name}"));
                Ok(())
            }) as std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        }),
    )
}

#[test]
fn group_failure_compensates_every_member_that_ran_then_earlier_steps() {
    let log = Log::default();
    let (before, undo_before) = logged(&log, "before", false);
    let (m1, u1) = logged(&log, "m1", false);
    let (m2, u2) = logged(&log, "m2", true);
    let (m3, u3) = logged(&log, "m3", false);
    let (after, undo_after) = logged(&log, "after", false);
    let mut saga = SagaBuilder::new()
        .add_step(before, undo_before)
        .parallel(|group| group.add_step(m1, u1).add_step(m2, u2).add_step(m3, u3))
        .add_step(after, undo_after)
        .build();
    assert_eq!(saga.parallel_groups().collect::<Vec<_>>(), [1..4]);
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 2);
    assert_eq!(error.reason(), StopReason::Failed);
    assert!(error.is_fully_compensated());
    // All three members ran (the failed one is pysagas-style: compensated too),
    // then the step before the group.
    assert_eq!(error.compensated_count(), 4);
    let log = entries(&log);
    assert!(!log.contains(&"after".to_string()));
    assert_eq!(log.last().map(String::as_str), Some("undo before"));
    let mut undos: Vec<_> = log[4..7].to_vec();
    undos.sort();
    assert_eq!(undos, ["undo m1", "undo m2", "undo m3"]);
}

#[test]
fn group_limit_one_starts_members_in_order_and_skips_the_rest() {
    let log = Log::default();
    let (m0, u0) = logged(&log, "m0", false);
    let (m1, u1) = logged(&log, "m1", true);
    let (m2, u2) = logged(&log, "m2", false);
    let mut saga = SagaBuilder::new()
        .parallel_with(ParallelGroup::new().limit(1), |group| {
            group.add_step(m0, u0).add_step(m1, u1).add_step(m2, u2)
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
    let log = entries(&log);
    assert_eq!(&log[..2], ["m0", "m1"]);
    assert!(!log.contains(&"m2".to_string()), "{log:?}");
    assert_eq!(error.compensated_count(), 2);
}

#[test]
fn group_cut_short_stops_a_member_pending_forever() {
    let undone = Arc::new(AtomicUsize::new(0));
    let counter = undone.clone();
    let mut saga = SagaBuilder::new()
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    .add_step(std::future::pending::<Result<(), String>>, move || {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async { Ok(()) }
                    })
                    .add_step(
                        || async {
                            smol::future::yield_now().await;
                            Err::<(), _>(String::from("hotel full"))
                        },
                        || async { Ok(()) },
                    )
            },
        )
        .build();
    let error = smol_bounded(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert_eq!(*error.error(), "hotel full");
    assert!(error.is_fully_compensated());
    // The member cut short may have partly happened: compensated.
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

#[test]
fn group_reports_every_failed_member() {
    let count = Arc::new(AtomicUsize::new(0));
    let failing = |name: &'static str, count: Arc<AtomicUsize>| {
        move || {
            let count = count.clone();
            async move {
                meet(count, 2).await;
                Err::<(), _>(String::from(name))
            }
        }
    };
    let (a, b) = (failing("a", count.clone()), failing("b", count.clone()));
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .step(FnStep::new(a, || async { Ok(()) }).named("first"))
                .step(FnStep::new(b, || async { Ok(()) }).named("second"))
        })
        .build();
    let error = smol_bounded(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(error.concurrent_failures().len(), 1);
    let other = &error.concurrent_failures()[0];
    assert_ne!(other.step(), error.failed_step());
    let display = error.to_string();
    assert!(display.contains("failed too"), "{display}");
    assert!(
        display.contains("(first)") && display.contains("(second)"),
        "{display}"
    );
}

/// A helper that adds members to any group of a `Send` saga (from the docs).
fn bookings(group: GroupBuilder<&'static str>) -> GroupBuilder<&'static str> {
    group
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_typed_step(|| async { Ok(7) }, |_id: u32| async { Ok(()) })
}

#[test]
fn group_builder_documented_methods() {
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .parallel(|group| {
            bookings(group)
                .add_typed_step_ref(
                    || async { Ok(String::from("seat 12A")) },
                    |_seat: &String| async { Ok(()) },
                )
                .step(FnStep::new(|| async { Ok(()) }, || async { Ok(()) }).named("car"))
                .step_with(
                    TypedStep::by_option(|| async { Ok(1) }, |_: Option<i32>| async { Ok(()) }),
                    StepPolicy::new().retry(Retry::attempts(2)),
                )
                .add_step_with(
                    || async { Err::<(), _>("no trains") },
                    || async { Ok(()) },
                    StepPolicy::new().retry(Retry::attempts(3)),
                )
        })
        .build();
    assert_eq!(saga.parallel_groups().collect::<Vec<_>>(), [1..7]);
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 6);
    assert_eq!(error.attempts(), 3);
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 7);
}

#[test]
fn group_builder_in_a_timed_saga_takes_timeouts() {
    let mut saga = SagaBuilder::new()
        .sleeper(|duration| smol::Timer::after(duration))
        .parallel(|group| {
            group
                .add_step_with(
                    std::future::pending::<Result<(), AppError>>,
                    || async { Ok(()) },
                    StepPolicy::new().timeout(Duration::from_millis(5)),
                )
                .add_step(|| async { Ok(()) }, || async { Ok(()) })
        })
        .build();
    let error = smol_bounded(saga.run()).unwrap_err();
    assert_eq!(error.reason(), StopReason::TimedOut);
    assert!(error.is_fully_compensated());
}

#[test]
fn concurrent_group_compensation_mode() {
    let log = Log::default();
    let (a, ua) = logged(&log, "a", false);
    let (b, ub) = logged(&log, "b", true);
    let mut saga = SagaBuilder::new()
        .compensation_mode(CompensationMode::ConcurrentGroups)
        .parallel(|group| group.add_step(a, ua).add_step(b, ub))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(error.compensated_count(), 2);
}

// -------------------------------------------------------------- local sagas

struct RcObserver(Rc<RefCell<Vec<String>>>);
impl Observer<String> for RcObserver {
    fn action_failed(&self, step: StepRef<'_>, _: u32, error: &String) {
        self.0
            .borrow_mut()
            .push(format!("step {} failed: {error}", step.index));
    }
}

#[test]
fn local_saga_takes_rc_steps_observer_classifier_and_sleeper() {
    let state = Rc::new(RefCell::new(Vec::<String>::new()));
    let events = Rc::new(RefCell::new(Vec::new()));
    let slept = Rc::new(Cell::new(0u32));
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    let (seen, sleeps) = (events.clone(), slept.clone());
    let mut saga: LocalSaga<String> = SagaBuilder::new_local()
        .observer(RcObserver(events.clone()))
        .classify(move |error: &String| {
            seen.borrow_mut().push(format!("classified {error}"));
            Recovery::Retry
        })
        .add_step(
            move || {
                let state = s1.clone();
                async move {
                    state.borrow_mut().push("booked".into());
                    Ok(())
                }
            },
            move || {
                let state = s2.clone();
                async move {
                    state.borrow_mut().push("cancelled".into());
                    Ok(())
                }
            },
        )
        .step(FnStep::new(
            move || {
                let state = s3.clone();
                async move {
                    state.borrow_mut().push("tried".into());
                    Err::<(), String>("declined".into())
                }
            },
            || async { Ok(()) },
        ))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*state.borrow(), ["booked", "tried", "cancelled"]);
    assert_eq!(
        *events.borrow(),
        ["step 1 failed: declined", "classified declined"]
    );
    assert_eq!(slept.get(), 0);
    drop(sleeps);
}

#[test]
fn local_timed_saga_with_rc_sleeper_and_group_of_rc_steps() {
    #[derive(Debug, PartialEq)]
    enum Error {
        Busy,
        TimedOut,
    }
    impl From<TimedOut> for Error {
        fn from(_: TimedOut) -> Self {
            Error::TimedOut
        }
    }
    let slept = Rc::new(Cell::new(0u32));
    let sleeps = slept.clone();
    let undone = Rc::new(Cell::new(0u32));
    let (u1, u2) = (undone.clone(), undone.clone());
    let mut saga = SagaBuilder::new_local()
        .sleeper(move |duration| {
            sleeps.set(sleeps.get() + 1);
            smol::Timer::after(duration)
        })
        .action_retry(Retry::attempts(2).constant(Duration::from_millis(1)))
        .parallel(|group| {
            group
                .add_step(
                    || async { Ok(()) },
                    move || {
                        u1.set(u1.get() + 1);
                        async { Ok(()) }
                    },
                )
                .add_step(
                    || async { Err::<(), _>(Error::Busy) },
                    move || {
                        u2.set(u2.get() + 1);
                        async { Ok(()) }
                    },
                )
        })
        .build();
    let error = smol_bounded(saga.run()).unwrap_err();
    assert_eq!(*error.error(), Error::Busy);
    assert_eq!(error.attempts(), 2);
    assert!(error.is_fully_compensated());
    assert_eq!(undone.get(), 2);
    assert!(slept.get() >= 1);
}

#[test]
fn local_saga_aborted_through_a_shared_handle() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let undone = Rc::new(Cell::new(false));
    let flag = undone.clone();
    let mut saga = SagaBuilder::new_local()
        .add_step(
            || async { Ok(()) },
            move || {
                flag.set(true);
                async { Ok(()) }
            },
        )
        .add_step(
            move || {
                trigger.abort();
                async { Ok::<(), &'static str>(()) }
            },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted());
    assert_eq!(error.reason(), StopReason::Aborted);
    assert_eq!(*error.error(), "aborted");
    assert_eq!(error.failed_step(), 2);
    assert_eq!(error.attempts(), 0);
    assert!(undone.get());
    assert_eq!(
        error.to_string(),
        "stopped before step 2: aborted; fully compensated (2 steps)"
    );
}

// ------------------------------------------------------------- abort handle

/// A saga whose step 1 waits forever; `started` counts runs that got there.
fn forever(started: Arc<AtomicUsize>) -> Saga<String> {
    SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<(), String>>()
            },
            || async { Ok(()) },
        )
        .on_abort(InFlight::CutShort)
        .build()
}

const RUNS: usize = 200;

fn abort_many_on_smol(shutdown: AbortHandle) {
    let started = Arc::new(AtomicUsize::new(0));
    let results = smol_bounded(async {
        let tasks: Vec<_> = (0..RUNS)
            .map(|_| {
                let (started, shutdown) = (started.clone(), shutdown.clone());
                smol::spawn(async move {
                    let mut saga = forever(started);
                    saga.run().abortable(&shutdown).await
                })
            })
            .collect();
        while started.load(Ordering::SeqCst) < RUNS {
            smol::Timer::after(Duration::from_millis(1)).await;
        }
        shutdown.abort();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await);
        }
        results
    });
    assert_eq!(results.len(), RUNS);
    for result in results {
        let error = result.unwrap_err();
        assert!(error.aborted());
        assert_eq!(error.reason(), StopReason::Aborted);
        assert_eq!(error.failed_step(), 1);
        assert!(error.is_fully_compensated());
    }
}

#[test]
fn one_handle_stops_200_runs_on_smol() {
    abort_many_on_smol(AbortHandle::new());
}

#[test]
fn one_handle_with_capacity_stops_200_runs_on_smol() {
    abort_many_on_smol(AbortHandle::with_capacity(RUNS));
}

#[test]
fn one_handle_with_small_capacity_stops_200_runs_with_std() {
    // With std, runs beyond the table go to a list and are woken as well.
    abort_many_on_smol(AbortHandle::with_capacity(3));
}

#[test]
fn one_handle_stops_200_runs_on_tokio_multi_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let shutdown = AbortHandle::new();
    let started = Arc::new(AtomicUsize::new(0));
    let results = runtime.block_on(async {
        tokio::time::timeout(BOUND, async {
            let tasks: Vec<_> = (0..RUNS)
                .map(|_| {
                    let (started, shutdown) = (started.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let mut saga = forever(started);
                        saga.run().abortable(&shutdown).await
                    })
                })
                .collect();
            while started.load(Ordering::SeqCst) < RUNS {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            shutdown.abort();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        })
        .await
        .expect("did not finish within the bound")
    });
    for result in results {
        let error = result.unwrap_err();
        assert!(error.aborted() && error.is_fully_compensated());
    }
}

#[test]
fn abort_handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + Default + std::fmt::Debug>() {}
    check::<AbortHandle>();
    let handle = AbortHandle::default();
    assert!(!handle.is_aborted());
    let clone = handle.clone();
    clone.abort();
    assert!(handle.is_aborted());
}

#[test]
fn abort_before_attaching_stops_before_the_first_action() {
    let shutdown = AbortHandle::with_capacity(4);
    shutdown.abort();
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let mut saga = SagaBuilder::new()
        .add_step(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            },
            || async { Ok(()) },
        )
        .build();
    for _ in 0..3 {
        let error = smol::block_on(saga.run().abortable(&shutdown)).unwrap_err();
        assert!(error.aborted());
        assert_eq!(error.failed_step(), 0);
        assert_eq!(error.attempts(), 0);
        assert_eq!(error.reason(), StopReason::Aborted);
        assert!(error.is_fully_compensated());
        assert!(
            error.to_string().starts_with("stopped before step 0: "),
            "{error}"
        );
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn handle_outlives_finished_runs_and_serves_later_ones() {
    let shutdown = AbortHandle::new();
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok::<(), String>(()) }, || async { Ok(()) })
        .build();
    // Many runs one after another on a capacity-one handle: each leaves it.
    for _ in 0..50 {
        assert!(smol::block_on(saga.run().abortable(&shutdown)).is_ok());
    }
    // Then two concurrent runs on the same capacity-one handle, aborted.
    let started = Arc::new(AtomicUsize::new(0));
    let (mut a, mut b) = (forever(started.clone()), forever(started.clone()));
    let (ra, rb) = smol_bounded(smol::future::zip(
        smol::future::zip(a.run().abortable(&shutdown), b.run().abortable(&shutdown)),
        async {
            while started.load(Ordering::SeqCst) < 2 {
                smol::future::yield_now().await;
            }
            shutdown.abort();
        },
    ))
    .0;
    assert!(ra.unwrap_err().aborted());
    assert!(rb.unwrap_err().aborted());
}

// ----------------------------------------------------- spawn, detach, handle

fn two_steps<E: Send + 'static>(fail: E) -> Saga<E> {
    let mut fail = Some(fail);
    SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            move || {
                let error = fail.take();
                async move {
                    match error {
                        Some(error) => Err(error),
                        None => Ok(()),
                    }
                }
            },
            || async { Ok(()) },
        )
        .build()
}

fn pending_saga<E: Send + 'static>() -> Saga<E> {
    SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(std::future::pending::<Result<(), E>>, || async { Ok(()) })
        .on_abort(InFlight::CutShort)
        .build()
}

#[test]
fn tokio_spawn_with_three_error_types() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let finished = saga_tokio::spawn(two_steps(String::from("declined")))
            .await
            .unwrap();
        let error = finished.result.unwrap_err();
        assert_eq!(error.error(), "declined");
        assert!(error.is_fully_compensated());
        // The saga is handed back: it runs again (and now succeeds).
        let again = saga_tokio::spawn(finished.saga).await.unwrap();
        assert!(again.result.is_ok());

        let boxed: BoxError = "declined".into();
        let error = saga_tokio::spawn(two_steps(boxed))
            .await
            .unwrap()
            .into_result()
            .unwrap_err();
        assert_eq!(error.error().to_string(), "declined");

        let error = saga_tokio::spawn(two_steps(AppError::Declined))
            .await
            .unwrap()
            .into_result()
            .unwrap_err();
        assert_eq!(*error.error(), AppError::Declined);
        assert!(error.is_fully_compensated());
    });
}

#[test]
fn tokio_spawn_abort_with_three_error_types() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(BOUND, async {
            let handle = saga_tokio::spawn(pending_saga::<String>());
            tokio::time::sleep(Duration::from_millis(5)).await;
            handle.abort();
            let error = handle.await.unwrap().result.unwrap_err();
            assert!(error.aborted() && error.is_fully_compensated());
            assert_eq!(error.error(), "aborted");

            let handle = saga_tokio::spawn(pending_saga::<BoxError>());
            handle.abort();
            let error = handle.await.unwrap().result.unwrap_err();
            assert!(error.aborted());
            assert!(error.error().downcast_ref::<Aborted>().is_some());

            let handle = saga_tokio::spawn(pending_saga::<AppError>());
            handle.abort_handle().abort();
            let error = handle.await.unwrap().result.unwrap_err();
            assert!(error.aborted());
            assert_eq!(*error.error(), AppError::Aborted);
            assert_eq!(error.reason(), StopReason::Aborted);
        })
        .await
        .expect("did not finish within the bound");
    });
}

#[test]
fn tokio_spawn_200_handles_aborted() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(BOUND, async {
            let started = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..RUNS)
                .map(|_| saga_tokio::spawn(forever(started.clone())))
                .collect();
            while started.load(Ordering::SeqCst) < RUNS {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // One shared handle would be ideal; here every run's own.
            let aborts: Vec<AbortHandle> = handles.iter().map(|h| h.abort_handle()).collect();
            for abort in &aborts {
                abort.abort();
            }
            for handle in handles {
                let error = handle.await.unwrap().result.unwrap_err();
                assert!(error.aborted() && error.is_fully_compensated());
            }
        })
        .await
        .expect("did not finish within the bound");
    });
}

#[test]
fn tokio_spawn_panicking_step_is_a_failed_step() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let saga = SagaBuilder::new()
            .add_step(|| async { Ok(()) }, || async { Ok(()) })
            .add_step(
                || async {
                    if true {
                        panic!("bug in step 1")
                    }
                    Ok::<_, AppError>(())
                },
                || async { Ok(()) },
            )
            .build();
        let error = saga_tokio::spawn(saga).await.unwrap().result.unwrap_err();
        assert_eq!(*error.error(), AppError::Panicked("bug in step 1".into()));
        assert_eq!(error.reason(), StopReason::Panicked);
        assert!(error.is_fully_compensated());
    });
}

#[test]
fn tokio_dropped_handle_keeps_the_saga_running() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (undone, done) = std::sync::mpsc::channel();
    runtime.block_on(async {
        let gate = go.clone();
        let saga = SagaBuilder::new()
            .add_step(
                || async { Ok(()) },
                move || {
                    let undone = undone.clone();
                    async move {
                        undone.send("refunded").unwrap();
                        Ok(())
                    }
                },
            )
            .add_step(
                move || {
                    let gate = gate.clone();
                    async move {
                        while !gate.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err::<(), _>(String::from("card declined"))
                    }
                },
                || async { Ok(()) },
            )
            .build();
        let handle = saga_tokio::spawn(saga);
        assert!(!handle.is_finished());
        drop(handle);
        go.store(true, Ordering::SeqCst);
    });
    // The runtime is still alive here: its workers finish the saga.
    assert_eq!(done.recv_timeout(BOUND), Ok("refunded"));
    drop(runtime);
}

#[test]
fn tokio_runtime_shutdown_reports_lost() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let handle = runtime.block_on(async {
        let handle = saga_tokio::spawn(forever(started.clone()));
        while started.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        handle
    });
    drop(runtime);
    let lost = smol_bounded(handle).unwrap_err();
    assert!(!lost.is_panic());
    assert!(!lost.to_string().is_empty());
}

#[test]
fn async_std_spawn_with_three_error_types_and_abort() {
    async_std::task::block_on(async {
        async_std::future::timeout(BOUND, async {
            let error = saga_async_std::spawn(two_steps(String::from("declined")))
                .await
                .unwrap()
                .into_result()
                .unwrap_err();
            assert_eq!(error.error(), "declined");

            let boxed: BoxError = "declined".into();
            let error = saga_async_std::spawn(two_steps(boxed))
                .await
                .unwrap()
                .into_result()
                .unwrap_err();
            assert_eq!(error.error().to_string(), "declined");

            let error = saga_async_std::spawn(two_steps(AppError::Declined))
                .await
                .unwrap()
                .into_result()
                .unwrap_err();
            assert_eq!(*error.error(), AppError::Declined);

            let handle = saga_async_std::spawn(pending_saga::<AppError>());
            handle.abort();
            let error = handle.await.unwrap().result.unwrap_err();
            assert!(error.aborted() && error.is_fully_compensated());
            assert_eq!(*error.error(), AppError::Aborted);

            let handle = saga_async_std::spawn(pending_saga::<BoxError>());
            handle.abort();
            let error = handle.await.unwrap().result.unwrap_err();
            assert!(error.error().downcast_ref::<Aborted>().is_some());
        })
        .await
        .expect("did not finish within the bound");
    });
}

#[test]
fn async_std_spawn_200_aborted() {
    async_std::task::block_on(async {
        async_std::future::timeout(BOUND, async {
            let started = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..RUNS)
                .map(|_| saga_async_std::spawn(forever(started.clone())))
                .collect();
            while started.load(Ordering::SeqCst) < RUNS {
                async_std::task::sleep(Duration::from_millis(1)).await;
            }
            for handle in &handles {
                handle.abort();
            }
            for handle in handles {
                let error = handle.await.unwrap().result.unwrap_err();
                assert!(error.aborted() && error.is_fully_compensated());
            }
        })
        .await
        .expect("did not finish within the bound");
    });
}

#[test]
fn async_std_dropped_handle_keeps_the_saga_running() {
    let (undone, done) = std::sync::mpsc::channel();
    let saga = SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                let undone = undone.clone();
                async move {
                    undone.send("refunded").unwrap();
                    Ok(())
                }
            },
        )
        .add_step(
            || async {
                async_std::task::sleep(Duration::from_millis(5)).await;
                Err::<(), _>(String::from("card declined"))
            },
            || async { Ok(()) },
        )
        .build();
    drop(saga_async_std::spawn(saga));
    assert_eq!(done.recv_timeout(BOUND), Ok("refunded"));
}

#[test]
fn detach_on_smol_with_three_error_types() {
    let (task, handle) = saga_core::rt::detach(two_steps(String::from("declined")));
    smol::spawn(task).detach();
    let finished = smol_bounded(handle).unwrap();
    assert!(finished.result.unwrap_err().is_fully_compensated());
    let (task, handle) = saga_core::rt::detach(finished.saga);
    smol::spawn(task).detach();
    assert!(smol_bounded(handle).unwrap().result.is_ok());

    let boxed: BoxError = "declined".into();
    let (task, handle) = saga_core::rt::detach(two_steps(boxed));
    smol::spawn(task).detach();
    assert_eq!(
        smol_bounded(handle)
            .unwrap()
            .into_result()
            .unwrap_err()
            .error()
            .to_string(),
        "declined"
    );

    let (task, handle) = saga_core::rt::detach(pending_saga::<AppError>());
    smol::spawn(task).detach();
    handle.abort();
    let error = smol_bounded(handle).unwrap().into_result().unwrap_err();
    assert_eq!(*error.error(), AppError::Aborted);
    assert!(error.aborted() && error.is_fully_compensated());
}

#[test]
fn detach_task_dropped_reports_lost() {
    // Never polled.
    let (task, handle) = saga_core::rt::detach(two_steps(String::from("x")));
    drop(task);
    assert!(handle.is_finished());
    let lost = smol_bounded(handle).unwrap_err();
    assert!(!lost.is_panic());

    // Polled into a step that waits forever, then dropped.
    let started = Arc::new(AtomicUsize::new(0));
    let (task, handle) = saga_core::rt::detach(forever(started.clone()));
    let mut task = Box::pin(task);
    smol::block_on(async {
        let _ = smol::future::poll_once(task.as_mut()).await;
    });
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert!(!handle.is_finished());
    drop(task);
    assert!(smol_bounded(handle).is_err());
}

#[test]
fn detach_dropped_handle_keeps_the_saga_running() {
    let undone = Arc::new(AtomicUsize::new(0));
    let counter = undone.clone();
    let saga = SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(
            || async {
                smol::future::yield_now().await;
                Err::<(), _>(String::from("declined"))
            },
            || async { Ok(()) },
        )
        .build();
    let (task, handle) = saga_core::rt::detach(saga);
    drop(handle);
    smol_bounded(task);
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

#[test]
fn saga_handle_is_send_sync_unpin_and_run_is_send() {
    fn check<T: Send + Sync + Unpin>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let (task, handle) = saga_core::rt::detach(two_steps(AppError::Declined));
    check(&handle);
    send(&task);
    let mut saga = two_steps(String::from("x"));
    let run = saga.run();
    send(&run);
}

// ------------------------------------------------------------------ testing

#[test]
fn repeat_finds_a_non_idempotent_action() {
    let charges = Arc::new(AtomicUsize::new(0));
    let counter = charges.clone();
    let charge = FnStep::new(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ()>(()) }
        },
        || async { Ok(()) },
    );
    let repeated = Repeat::new(charge);
    assert_eq!(repeated.repeats(), 2);
    let mut saga = SagaBuilder::new().step(repeated).build();
    smol::block_on(saga.run()).unwrap();
    assert_eq!(charges.load(Ordering::SeqCst), 2);
}

#[test]
fn repeat_times_repeats_actions_and_compensations() {
    let (done, undone) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (d, u) = (done.clone(), undone.clone());
    let step = FnStep::new(
        move || {
            d.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, &'static str>(()) }
        },
        move || {
            u.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
    );
    let step = Repeat::times(step, 3);
    assert_eq!(step.repeats(), 3);
    let mut saga = SagaBuilder::new()
        .step(step)
        .add_step(|| async { Err::<(), _>("later") }, || async { Ok(()) })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(done.load(Ordering::SeqCst), 3);
    assert_eq!(undone.load(Ordering::SeqCst), 3);
}

#[test]
#[should_panic]
fn repeat_times_zero_panics() {
    let step = FnStep::new(|| async { Ok::<_, ()>(()) }, || async { Ok(()) });
    let _ = Repeat::times(step, 0);
}

#[test]
fn repeat_does_not_repeat_a_failing_attempt() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let step = FnStep::new(
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("declined") }
        },
        || async { Ok(()) },
    );
    let mut saga = SagaBuilder::new().step(Repeat::new(step)).build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.attempts(), 1);
    assert_eq!(tries.load(Ordering::SeqCst), 1);
}

#[test]
fn repeat_of_by_value_step_compensates_once() {
    let undone = Arc::new(AtomicUsize::new(0));
    let counter = undone.clone();
    let step = TypedStep::by_value(
        || async { Ok::<u32, &'static str>(1) },
        move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
    );
    let mut saga = SagaBuilder::new()
        .step(Repeat::new(step))
        .add_step(|| async { Err::<(), _>("later") }, || async { Ok(()) })
        .build();
    assert!(
        smol::block_on(saga.run())
            .unwrap_err()
            .is_fully_compensated()
    );
    assert_eq!(undone.load(Ordering::SeqCst), 1);
}

#[test]
fn repeat_fn_on_action_and_compensation() {
    let balance = Arc::new(Mutex::new(100));
    let (pay, refund) = (balance.clone(), balance.clone());
    let mut saga = SagaBuilder::new()
        .add_step(
            repeat_fn(move || {
                let pay = pay.clone();
                async move {
                    *pay.lock().unwrap() -= 30;
                    Ok(())
                }
            }),
            repeat_fn(move || {
                let refund = refund.clone();
                async move {
                    *refund.lock().unwrap() += 30;
                    Ok(())
                }
            }),
        )
        .add_step(
            || async { Err::<(), _>("out of stock") },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(*balance.lock().unwrap(), 100); // twice each way
}

#[test]
fn repeat_fn_second_run_only_after_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut saga = SagaBuilder::new()
        .add_step(
            repeat_fn(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("no") }
            }),
            || async { Ok(()) },
        )
        .build();
    smol::block_on(saga.run()).unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn repeat_in_a_local_saga_and_a_group() {
    let seen = Rc::new(Cell::new(0));
    let counter = seen.clone();
    let step = FnStep::new(
        move || {
            counter.set(counter.get() + 1);
            async { Ok::<(), ()>(()) }
        },
        || async { Ok(()) },
    );
    let mut saga = SagaBuilder::new_local()
        .parallel(|group| group.step(Repeat::new(step)))
        .build();
    smol::block_on(saga.run()).unwrap();
    assert_eq!(seen.get(), 2);
}

// ------------------------------------------------------------------ markers

/// Adds `count` steps made by `make` (from the marker docs).
fn repeated<E, S, T, X>(
    mut builder: SagaBuilder<E, S, T>,
    count: usize,
    make: impl Fn(usize) -> X,
) -> SagaBuilder<E, S, T>
where
    S: ?Sized + SagaKind<E> + StepSlot<X>,
{
    for i in 0..count {
        builder = builder.step(make(i));
    }
    builder
}

fn run_twice<E, S: ?Sized + SagaKind<E>>(saga: &mut Saga<E, S>) -> bool {
    smol::block_on(saga.run()).is_ok() && smol::block_on(saga.run()).is_ok()
}

#[test]
fn marker_helpers_work_on_both_kinds() {
    let step = |_| FnStep::new(|| async { Ok::<(), ()>(()) }, || async { Ok(()) });
    let mut saga = repeated(SagaBuilder::new(), 3, step).build();
    let mut local = repeated(SagaBuilder::new_local(), 2, step).build();
    assert_eq!((saga.len(), local.len()), (3, 2));
    assert!(run_twice(&mut saga));
    assert!(run_twice(&mut local));
    let timed = SagaBuilder::new().sleeper(|duration| smol::Timer::after(duration));
    let step = |_| FnStep::new(|| async { Ok::<(), AppError>(()) }, || async { Ok(()) });
    let mut timed = repeated(timed, 4, step).build();
    assert!(run_twice(&mut timed));
}

#[test]
fn local_builder_with_turbofish_and_placeholder() {
    // `SagaBuilder::<Error, _>::new_local()` as the SagaKind docs write it.
    let (classifier, sleeper) = (Rc::new(()), Rc::new(()));
    let mut saga = SagaBuilder::<AppError, _>::new_local()
        .classify(move |_: &AppError| {
            let _ = &classifier;
            Recovery::Compensate
        })
        .sleeper(move |duration: Duration| {
            let _ = &sleeper;
            smol::Timer::after(duration)
        })
        .add_step(
            || async { Err::<(), _>(AppError::Declined) },
            || async { Ok(()) },
        )
        .build();
    assert!(smol::block_on(saga.run()).is_err());
}

// ---------------------------------------------------------------- SagaError

#[test]
fn saga_error_basics_in_a_propagated_run() {
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .step(
            FnStep::new(
                || async { Err::<(), _>(String::from("disk")) },
                || async { Ok(()) },
            )
            .named("write"),
        )
        .classify(|_: &String| Recovery::Propagate)
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Propagated);
    assert_eq!(error.failed_step(), 1);
    assert_eq!(error.reason(), StopReason::Failed);
    assert!(!error.is_fully_compensated());
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        error.to_string(),
        "step 1 (write) failed: disk; propagated without compensation, 2 steps left applied"
    );
}

/// An abort that lands during an attempt which completes in the same poll
/// (no `Pending` in between): "After `abort`, the run starts no further
/// action", and `aborted()` is "`true` when the run was aborted ... while
/// going forward, whether or not the abort is what stopped it".
#[test]
fn abort_in_an_attempt_ready_at_once_stops_retries_and_is_reported() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut saga = SagaBuilder::new()
        .action_retry(Retry::attempts(2))
        .add_step(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                trigger.abort();
                async { Err::<(), _>(String::from("busy")) }
            },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted(), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
    assert!(error.is_fully_compensated());
    assert_eq!(
        error.to_string(),
        "step 0 failed: busy, saga aborted; fully compensated (1 step)"
    );
}

/// The same with one attempt allowed: the run fails on its own, and the
/// table says `Failed`, the action's error, and `aborted` is `true`.
#[test]
fn abort_in_a_failing_attempt_ready_at_once_is_reported() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            move || {
                let trigger = trigger.clone();
                async move {
                    trigger.abort();
                    Err::<(), _>(String::from("declined"))
                }
            },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert_eq!(error.reason(), StopReason::Failed);
    assert!(error.aborted(), "{error}");
    assert!(error.to_string().contains(", saga aborted"), "{error}");
}

/// The action in flight when the abort lands fails on its own, with one
/// attempt allowed: `Failed`, the action's error, and `aborted()` true.
#[test]
fn abort_while_action_in_flight_then_it_fails_reports_aborted() {
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .add_step(
            move || {
                let trigger = trigger.clone();
                async move {
                    trigger.abort();
                    smol::future::yield_now().await;
                    Err::<(), _>(String::from("declined"))
                }
            },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let error = smol_bounded(saga.run().abortable(&abort)).unwrap_err();
    assert_eq!(error.reason(), StopReason::Failed);
    assert_eq!(error.error(), "declined");
    assert_eq!(error.failed_step(), 1);
    assert!(error.aborted(), "{error}");
    assert!(error.is_fully_compensated());
    assert!(error.to_string().contains(", saga aborted"), "{error}");
}

/// An abort from another task while the action waits, which then fails.
#[test]
fn abort_from_outside_while_action_in_flight_then_it_fails() {
    let abort = AbortHandle::new();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = release.clone();
    let mut saga = SagaBuilder::new()
        .add_step(
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                async move {
                    while !gate.load(Ordering::SeqCst) {
                        smol::future::yield_now().await;
                    }
                    Err::<(), _>(String::from("declined"))
                }
            },
            || async { Ok(()) },
        )
        .action_retry(Retry::attempts(3))
        .build();
    let (result, ()) = smol_bounded(smol::future::zip(saga.run().abortable(&abort), async {
        while started.load(Ordering::SeqCst) < 1 {
            smol::future::yield_now().await;
        }
        abort.abort();
        release.store(true, Ordering::SeqCst);
    }));
    let error = result.unwrap_err();
    assert!(error.aborted(), "{error}");
    // After the abort, no further attempt starts.
    assert_eq!(started.load(Ordering::SeqCst), 1, "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
}
