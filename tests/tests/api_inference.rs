//! The public API as a new user writes it from the README and the rustdoc:
//! steps made with `let` before a builder sees them, closures with no
//! annotations beyond the action's error type, helpers generic over the
//! builder, and spawned sagas whose error type is what an application already
//! has. Every test compiles against the real signatures (a bound that stops
//! inference, or a marker that a generic helper cannot satisfy, makes this
//! file stop compiling) and then runs, checking what the saga did.
//!
//! What must *not* compile (a backoff or a timeout without a sleeper) is
//! checked by the `compile_fail` doctests in `SagaBuilder`'s docs.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::marker::SagaKind;
use saga_core::{
    AbortHandle, Aborted, AllowedIn, FnStep, Handling, InFlight, LocalSaga, Panicked, Recovery,
    Retry, Saga, SagaBuilder, SagaError, StepPolicy, Timed, TimedOut, TypedStep, Untimed,
};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// An application error, with the interrupts it must be able to report.
#[derive(Debug, PartialEq)]
enum Error {
    Busy,
    Declined,
    TimedOut,
    Aborted,
}

impl Error {
    fn is_transient(&self) -> bool {
        matches!(self, Error::Busy | Error::TimedOut)
    }
}

impl From<TimedOut> for Error {
    fn from(_: TimedOut) -> Self {
        Error::TimedOut
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

/// Counts the calls of an action that fails `failures` times with `Busy`.
fn flaky(
    calls: &Arc<AtomicU32>,
    failures: u32,
) -> impl FnMut() -> std::future::Ready<Result<(), Error>> + Send + 'static {
    let calls = calls.clone();
    move || {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if call < failures {
            Err(Error::Busy)
        } else {
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------
// Steps made with `let`
// ---------------------------------------------------------------------------

/// `FnStep::new` on its own: the compensation's `Ok(())` takes the action's
/// error type, and the step's future types are known before any builder
/// sees it (it can be printed, named, kept in a variable).
#[test]
fn fn_step_made_with_let() {
    let log = log();
    let undo = log.clone();
    let step = FnStep::new(
        || async { Err::<(), Error>(Error::Declined) },
        move || {
            let undo = undo.clone();
            async move {
                undo.lock().unwrap().push("undone".to_owned());
                Ok(())
            }
        },
    );
    let step = step.named("charge card");
    assert_eq!(
        format!("{step:?}"),
        r#"FnStep { name: Some("charge card"), compensate_failed_action: true, state: "Idle", .. }"#
    );

    let mut saga = SagaBuilder::new().step(step).build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(*error.error(), Error::Declined);
    assert_eq!(error.failed_step_name(), Some("charge card"));
    assert_eq!(entries(&log), ["undone"]);
}

/// A step's type is complete when it is made, before (or without) any
/// builder: it can be checked for `Send`, printed, kept. Without the bounds
/// on `FnStep::new`, the compensation's future type and its error type would
/// stay unknown until the step is added to a saga, so this did not compile.
#[test]
fn fn_step_stands_alone() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let step = FnStep::new(|| async { Ok::<(), Error>(()) }, || async { Ok(()) });
    assert_send(&step);
    let step = step.named("reserve");
    assert!(format!("{step:?}").contains(r#"name: Some("reserve")"#));
    let typed = TypedStep::by_ref(
        || async { Ok::<_, Error>(7_u32) },
        |seat| {
            let seat = *seat;
            async move {
                if seat == 7 {
                    Ok(())
                } else {
                    Err(Error::Declined)
                }
            }
        },
    );
    assert_send(&typed);
    assert!(format!("{typed:?}").contains("Idle"));
}

/// The README's own shape, `FnStep::new(|| async { Ok::<(), Error>(()) }, ||
/// async { Ok(()) })`, with the builder chained on `.named(..)` and
/// `.compensate_failed_action(..)`.
#[test]
fn fn_step_chained_settings_with_let() {
    let step = FnStep::new(|| async { Ok::<(), Error>(()) }, || async { Ok(()) })
        .named("reserve")
        .compensate_failed_action(false);
    let failing = FnStep::new(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) });
    let mut saga = SagaBuilder::new().step(step).step(failing).build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());
}

/// A compensation that uses `?` on a call of another error type: the
/// conversion target is the action's error type, known from the bounds.
#[test]
fn fn_step_compensation_with_question_mark() {
    #[derive(Debug)]
    struct RefundFailed;
    impl From<RefundFailed> for Error {
        fn from(_: RefundFailed) -> Self {
            Error::Declined
        }
    }
    async fn refund() -> Result<(), RefundFailed> {
        Ok(())
    }

    let step = FnStep::new(
        || async { Err::<(), Error>(Error::Busy) },
        || async {
            refund().await?;
            Ok(())
        },
    );
    let mut saga = SagaBuilder::new().step(step).build();
    assert!(
        smol::block_on(saga.run())
            .unwrap_err()
            .is_fully_compensated()
    );
}

/// `TypedStep::by_ref` with an unannotated compensation: `id` is `&String`,
/// from the action's `Ok::<_, String>(..)`.
#[test]
fn typed_step_by_ref_made_with_let() {
    let log = log();
    let cancelled = log.clone();
    let step = TypedStep::by_ref(
        || async { Ok::<_, String>(String::from("booking-42")) },
        move |id| {
            let (log, id) = (cancelled.clone(), id.clone());
            async move {
                log.lock().unwrap().push(id);
                Ok(())
            }
        },
    )
    .named("book flight");

    let mut saga = SagaBuilder::new()
        .step(step)
        .add_step(
            || async { Err::<(), _>(String::from("no hotel")) },
            || async { Ok(()) },
        )
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert!(error.is_fully_compensated());
    assert_eq!(entries(&log), ["booking-42"]);
}

/// `TypedStep::by_value`: the compensation's argument is the action's value,
/// and methods can be called on it with no annotation.
#[test]
fn typed_step_by_value_made_with_let() {
    let log = log();
    let cancelled = log.clone();
    let step = TypedStep::by_value(
        || async { Ok::<_, Error>(vec![String::from("seat 1A"), String::from("seat 1B")]) },
        move |seats| {
            let log = cancelled.clone();
            async move {
                log.lock().unwrap().push(format!("{} seats", seats.len()));
                Ok(())
            }
        },
    );
    let mut saga = SagaBuilder::new()
        .step(step)
        .add_step(
            || async { Err::<(), _>(Error::Declined) },
            || async { Ok(()) },
        )
        .build();
    assert!(
        smol::block_on(saga.run())
            .unwrap_err()
            .is_fully_compensated()
    );
    assert_eq!(entries(&log), ["2 seats"]);
}

/// `TypedStep::by_option`: the compensation matches on `Option<u32>` with no
/// annotation; a failed action is compensated with `None`.
#[test]
fn typed_step_by_option_made_with_let() {
    let log = log();
    let cancelled = log.clone();
    let step = TypedStep::by_option(
        || async { Err::<u32, _>(Error::Declined) },
        move |order| {
            let log = cancelled.clone();
            async move {
                let entry = match order {
                    Some(order) => format!("cancel {}", order + 1),
                    None => "nothing to cancel".to_owned(),
                };
                log.lock().unwrap().push(entry);
                Ok(())
            }
        },
    )
    .named("order");
    let mut saga = SagaBuilder::new().step(step).build();
    assert!(
        smol::block_on(saga.run())
            .unwrap_err()
            .is_fully_compensated()
    );
    assert_eq!(entries(&log), ["nothing to cancel"]);
}

/// Steps returned from functions, as an application would organize them.
#[test]
fn steps_returned_from_functions() {
    fn reserve() -> impl saga_core::Step<String> + Send + 'static {
        FnStep::new(|| async { Ok::<_, String>(()) }, || async { Ok(()) }).named("reserve")
    }
    fn charge(log: Log) -> impl saga_core::Step<String> + Send + 'static {
        TypedStep::by_ref(
            || async { Err::<u64, _>(String::from("declined")) },
            move |amount| {
                let (log, amount) = (log.clone(), *amount);
                async move {
                    log.lock().unwrap().push(format!("refund {amount}"));
                    Ok(())
                }
            },
        )
    }
    let log = log();
    let mut saga = SagaBuilder::new()
        .step(reserve())
        .step(charge(log.clone()))
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.error(), "declined");
    assert!(entries(&log).is_empty()); // a failed typed step has no value to refund
}

// ---------------------------------------------------------------------------
// Where the builder's error type comes from
// ---------------------------------------------------------------------------

/// The pinned form: `SagaBuilder::new().add_step(action, compensation).build()`
/// and `saga.run().await -> Result<(), SagaError<E>>`, `E` from the step.
#[test]
fn error_type_from_the_first_step() {
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(Error::Declined) },
            || async { Ok(()) },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let result: Result<(), SagaError<Error>> = smol::block_on(saga.run());
    assert_eq!(*result.unwrap_err().error(), Error::Declined);
}

/// Settings before any step: a sleeper (a closure whose future is an async
/// block), timeouts, retries, and a classifier that matches on the error.
#[test]
fn error_type_from_a_later_step_after_settings() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut saga = SagaBuilder::new()
        .sleeper(|duration| async move {
            smol::Timer::after(duration).await;
        })
        .action_timeout(Duration::from_secs(5))
        .saga_timeout(Duration::from_secs(5))
        .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
        .classify(|error| match error {
            Error::Busy | Error::TimedOut => Recovery::Retry,
            Error::Declined | Error::Aborted => Recovery::Compensate,
        })
        .add_step(flaky(&calls, 2), || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A classifier after the steps may call methods on an unannotated error:
/// `E` is known by then.
#[test]
fn classifier_after_the_steps_needs_no_annotation() {
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(Error::Declined) },
            || async { Ok(()) },
        )
        .classify(|error| {
            if error.is_transient() {
                Recovery::Retry
            } else {
                Recovery::Propagate
            }
        })
        .build();
    let error = smol::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Propagated);
}

/// Before the steps, a classifier that calls a method on the error names its
/// type on the parameter (nothing else has named `E` yet); no turbofish.
#[test]
fn classifier_before_the_steps_names_its_parameter() {
    let mut saga = SagaBuilder::new()
        .classify(|error: &Error| {
            if error.is_transient() {
                Recovery::Retry
            } else {
                Recovery::Propagate
            }
        })
        .add_step(
            || async { Err::<(), _>(Error::Declined) },
            || async { Ok(()) },
        )
        .build();
    assert_eq!(
        smol::block_on(saga.run()).unwrap_err().handling(),
        Handling::Propagated
    );
}

/// A group first: its members name `E`.
#[test]
fn error_type_from_a_group_member() {
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(|| async { Ok(()) }, || async { Ok(()) })
                .add_step(|| async { Err::<(), _>(Error::Busy) }, || async { Ok(()) })
        })
        .build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().failed_step(), 1);
}

/// A step policy: `E` from the step it comes with.
#[test]
fn error_type_with_a_step_policy() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut saga = SagaBuilder::new()
        .add_step_with(
            flaky(&calls, 1),
            || async { Ok(()) },
            StepPolicy::new().retry(Retry::attempts(2)),
        )
        .step_with(
            FnStep::new(|| async { Ok::<(), Error>(()) }, || async { Ok(()) }),
            StepPolicy::new().compensation_retry(Retry::attempts(2)),
        )
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Steps that never name `E` (every one returns `Ok(())`): the saga's type
/// names it, or the turbofish does. Both are the minimal forms.
#[test]
fn error_type_named_once_when_no_step_names_it() {
    let abort = AbortHandle::new();
    abort.abort();
    let mut typed: Saga<Error> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let error = smol::block_on(typed.run().abortable(&abort)).unwrap_err();
    assert_eq!(*error.error(), Error::Aborted);

    let mut turbofish = SagaBuilder::<Error>::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let error = smol::block_on(turbofish.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted());
}

/// A local builder infers `E` the same way.
#[test]
fn local_builder_infers_the_error_type() {
    let step = FnStep::new(
        || async { Err::<(), _>(String::from("no")) },
        || async { Ok(()) },
    );
    let mut saga: LocalSaga<String> = SagaBuilder::new_local().step(step).build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().error(), "no");
}

// ---------------------------------------------------------------------------
// Helpers generic over the builder
// ---------------------------------------------------------------------------

/// Immediate retries for any builder: `Send` or local, with or without a
/// sleeper. No bound on the timing marker; the step type is any kind.
fn with_retries<E, S: ?Sized + SagaKind<E>, T>(
    builder: SagaBuilder<E, S, T>,
) -> SagaBuilder<E, S, T> {
    builder
        .action_retry(Retry::attempts(3))
        .compensation_retry(Retry::attempts(2))
}

/// A step with an immediate-retry policy, for any `Send` builder.
fn with_flaky_step<T>(
    builder: SagaBuilder<Error, dyn saga_core::Step<Error> + Send, T>,
    calls: &Arc<AtomicU32>,
) -> SagaBuilder<Error, dyn saga_core::Step<Error> + Send, T> {
    builder.add_step_with(
        flaky(calls, 1),
        || async { Ok(()) },
        StepPolicy::new().retry(Retry::attempts(2)),
    )
}

/// A policy of any timing, passed on: bounded with `AllowedIn`.
fn with_policy<E, S: ?Sized + SagaKind<E>, T, P: AllowedIn<T>>(
    builder: SagaBuilder<E, S, T>,
    retry: Retry<P>,
) -> SagaBuilder<E, S, T> {
    builder.action_retry(retry)
}

/// A backoff and timeouts, for builders that have a sleeper.
fn with_backoff<E, S: ?Sized + SagaKind<E>>(
    builder: SagaBuilder<E, S, Timed>,
) -> SagaBuilder<E, S, Timed> {
    builder
        .action_retry(
            Retry::attempts(3).exponential(Duration::from_millis(1), Duration::from_millis(2)),
        )
        .compensation_timeout(Duration::from_secs(5))
        .saga_timeout(Duration::from_secs(5))
}

/// A step policy of any timing, with immediate retries added.
fn retried<T>(policy: StepPolicy<T>) -> StepPolicy<T> {
    policy.retry(Retry::attempts(3))
}

#[test]
fn generic_helper_on_a_builder_without_sleeper() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut saga = with_retries(SagaBuilder::new())
        .add_step(flaky(&calls, 2), || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn generic_helper_on_a_builder_with_sleeper() {
    let calls = Arc::new(AtomicU32::new(0));
    let builder = SagaBuilder::new().sleeper(smol::Timer::after);
    let mut saga = with_backoff(with_retries(builder))
        .add_step(flaky(&calls, 2), || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn generic_helper_on_a_local_builder() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut saga = with_retries(SagaBuilder::new_local())
        .add_step(flaky(&calls, 2), || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn generic_helper_adding_a_step_with_a_policy() {
    let (plain, timed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut saga = with_flaky_step(SagaBuilder::new(), &plain).build();
    assert!(smol::block_on(saga.run()).is_ok());
    let builder = SagaBuilder::new().sleeper(smol::Timer::after);
    let mut saga = with_flaky_step(builder, &timed).build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(
        (plain.load(Ordering::SeqCst), timed.load(Ordering::SeqCst)),
        (2, 2)
    );
}

#[test]
fn generic_helper_passing_on_a_policy_of_any_timing() {
    let (immediate, waiting) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut saga = with_policy(SagaBuilder::new(), Retry::attempts(2))
        .add_step(flaky(&immediate, 1), || async { Ok(()) })
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    let builder = SagaBuilder::new().sleeper(smol::Timer::after);
    let mut saga = with_policy(
        builder,
        Retry::attempts(2).constant(Duration::from_millis(1)),
    )
    .add_step(flaky(&waiting, 1), || async { Ok(()) })
    .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(
        (
            immediate.load(Ordering::SeqCst),
            waiting.load(Ordering::SeqCst)
        ),
        (2, 2)
    );
}

#[test]
fn generic_helper_over_a_step_policy() {
    let (plain, timed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let untimed: StepPolicy<Untimed> = retried(StepPolicy::new());
    let mut saga = SagaBuilder::new()
        .add_step_with(flaky(&plain, 2), || async { Ok(()) }, untimed)
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    // A timeout makes the policy `Timed`; the immediate retry keeps it so.
    let policy: StepPolicy<Timed> = retried(StepPolicy::new().timeout(Duration::from_secs(5)));
    let mut saga = SagaBuilder::new()
        .sleeper(smol::Timer::after)
        .add_step_with(flaky(&timed, 2), || async { Ok(()) }, policy)
        .build();
    assert!(smol::block_on(saga.run()).is_ok());
    assert_eq!(
        (plain.load(Ordering::SeqCst), timed.load(Ordering::SeqCst)),
        (3, 3)
    );
}

/// The passing twins of the `compile_fail` doctests on `SagaBuilder`: the
/// same backoff and timeouts compile once the builder has a sleeper (so those
/// doctests fail for the missing sleeper, not for something else).
#[test]
fn backoff_and_timeouts_compile_with_a_sleeper() {
    let mut saga = SagaBuilder::new()
        .sleeper(smol::Timer::after)
        .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
        .action_timeout(Duration::from_secs(1))
        .add_step(
            || async { Err::<(), _>(String::from("busy")) },
            || async { Ok(()) },
        )
        .add_step_with(
            || async { Err::<(), _>(String::from("busy")) },
            || async { Ok(()) },
            StepPolicy::new().timeout(Duration::from_secs(1)),
        )
        .build();
    assert_eq!(smol::block_on(saga.run()).unwrap_err().attempts(), 3);
}

// ---------------------------------------------------------------------------
// Spawning with the error types applications have
// ---------------------------------------------------------------------------

type BoxError = Box<dyn StdError + Send + Sync>;

fn interrupts_are_errors<T: StdError + Send + Sync + 'static>() {}

#[test]
fn interrupts_are_send_sync_static_errors() {
    interrupts_are_errors::<Aborted>();
    interrupts_are_errors::<Panicked>();
    interrupts_are_errors::<TimedOut>();
    assert_eq!(String::from(Aborted), "aborted");
    assert_eq!(String::from(TimedOut), "timed out");
    assert_eq!(String::from(Panicked::new("oops")), "panicked: oops");
    assert_eq!(<&str>::from(Aborted), "aborted");
    assert_eq!(<&str>::from(TimedOut), "timed out");
}

/// A saga whose second step panics, and whose first records its undo.
fn panicking_saga<E: Send + 'static>(log: &Log) -> Saga<E> {
    let undo = log.clone();
    SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                let undo = undo.clone();
                async move {
                    undo.lock().unwrap().push("undone".to_owned());
                    Ok(())
                }
            },
        )
        .add_step(
            || async {
                if true {
                    panic!("bug in step 1");
                }
                Ok(())
            },
            || async { Ok(()) },
        )
        .build()
}

#[tokio::test]
async fn tokio_spawn_with_string() {
    let log = log();
    let finished = saga_tokio::spawn(panicking_saga::<String>(&log))
        .await
        .unwrap();
    let error = finished.result.unwrap_err();
    assert_eq!(error.error(), "panicked: bug in step 1");
    assert!(error.is_fully_compensated());
    assert_eq!(entries(&log), ["undone"]);
}

#[tokio::test]
async fn tokio_spawn_with_boxed_error() {
    let log = log();
    let finished = saga_tokio::spawn(panicking_saga::<BoxError>(&log))
        .await
        .unwrap();
    let error = finished.result.unwrap_err();
    let panic = error
        .error()
        .downcast_ref::<Panicked>()
        .expect("the panic, boxed");
    assert_eq!(panic.message(), "bug in step 1");
    assert!(error.is_fully_compensated());
}

#[tokio::test]
async fn tokio_spawn_aborted_with_boxed_error() {
    let saga = SagaBuilder::new()
        .add_step(std::future::pending::<Result<(), BoxError>>, || async {
            Ok(())
        })
        .on_abort(InFlight::CutShort)
        .build();
    let handle = saga_tokio::spawn(saga);
    handle.abort();
    let error = handle.await.unwrap().result.unwrap_err();
    assert!(error.aborted());
    assert!(error.error().downcast_ref::<Aborted>().is_some());
}

#[tokio::test]
async fn tokio_builder_and_spawn_with_string() {
    let saga = saga_tokio::builder()
        .add_step_with(
            std::future::pending::<Result<(), String>>,
            || async { Ok(()) },
            StepPolicy::new().timeout(Duration::from_millis(1)),
        )
        .build();
    let error = saga_tokio::spawn(saga).await.unwrap().result.unwrap_err();
    assert!(error.timed_out());
    assert_eq!(error.error(), "timed out");
}

#[test]
fn async_std_spawn_with_string_and_boxed_error() {
    async_std::task::block_on(async {
        let log = log();
        let error = saga_async_std::spawn(panicking_saga::<String>(&log))
            .await
            .unwrap()
            .result
            .unwrap_err();
        assert_eq!(error.error(), "panicked: bug in step 1");
        let error = saga_async_std::spawn(panicking_saga::<BoxError>(&log))
            .await
            .unwrap()
            .result
            .unwrap_err();
        assert!(error.error().downcast_ref::<Panicked>().is_some());
        assert_eq!(entries(&log), ["undone", "undone"]);
    });
}

#[test]
fn detach_on_smol_with_string() {
    let log = log();
    let (task, handle) = saga_core::rt::detach(panicking_saga::<String>(&log));
    smol::spawn(task).detach();
    let error = smol::block_on(handle).unwrap().result.unwrap_err();
    assert_eq!(error.error(), "panicked: bug in step 1");
    assert!(error.is_fully_compensated());
}

/// `blocking` steps with a `String` error: a panic in the function is a
/// failed attempt whose error is the panic's message.
#[tokio::test]
async fn blocking_step_with_string() {
    let mut saga = SagaBuilder::new()
        .add_step(
            saga_tokio::blocking(|| -> Result<(), String> { panic!("sync bug") }),
            saga_tokio::blocking(|| Ok(())),
        )
        .build();
    let error = saga.run().await.unwrap_err();
    assert_eq!(error.error(), "panicked: sync bug");
}
