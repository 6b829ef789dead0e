//! Compile-time checks of the auto traits the contract promises: a `Saga`, its
//! builder and its run future are `Send` (tokio multi-thread can spawn a run),
//! with an observer, a classifier and a sleeper too; the run future is
//! `Unpin`; `SagaError<E>` is `Send + Sync` when `E` is. A `LocalSaga`'s run
//! need not be `Send`: it only has to run on a local executor, and its steps,
//! observer, classifier and sleeper need not be `Send` either. If any of these
//! regress, this file stops compiling.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::{
    CompensationMode, FnStep, LocalSaga, Observer, Recovery, Retry, Run, Saga, SagaBuilder,
    SagaError, StepFailure, StepRef, TimedOut, TypedStep,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}
fn send_future<F: Future + Send>(_: &F) {}
fn unpin_future<F: Future + Unpin>(_: &F) {}

#[derive(Debug)]
struct SendError(#[allow(dead_code)] String);

impl From<TimedOut> for SendError {
    fn from(_: TimedOut) -> Self {
        SendError("timed out".into())
    }
}

/// An observer that records every step it hears of, behind `R`: an
/// `Arc<Mutex<..>>` for a `Saga`, an `Rc<RefCell<..>>` for a `LocalSaga`.
struct Heard<R>(R);

impl Observer<SendError> for Heard<Arc<Mutex<Vec<String>>>> {
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, _: &SendError) {
        let entry = format!("step {} failed (attempt {attempt})", step.index);
        self.0.lock().unwrap().push(entry);
    }
}

impl Observer<SendError> for Heard<Rc<RefCell<Vec<String>>>> {
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, _: &SendError) {
        let entry = format!("step {} failed (attempt {attempt})", step.index);
        self.0.borrow_mut().push(entry);
    }
}

#[test]
fn saga_types_are_send() {
    send::<Saga<SendError>>();
    send::<SagaBuilder<SendError>>();
    send::<Run<'static, SendError>>();
    unpin::<Run<'static, SendError>>();
    send::<SagaError<SendError>>();
    sync::<SagaError<SendError>>();
    send::<StepFailure<SendError>>();
    sync::<StepFailure<SendError>>();
    send::<Recovery>();
    sync::<CompensationMode>();
}

#[test]
fn run_futures_are_send_and_unpin_in_practice() {
    let mut saga = SagaBuilder::new()
        .add_step(|| async { Ok::<_, SendError>(()) }, || async { Ok(()) })
        .step(FnStep::new(
            || async { Ok::<_, SendError>(1u8) },
            || async { Ok(()) },
        ))
        .step(TypedStep::by_ref(
            || async { Ok::<_, SendError>(String::from("id")) },
            |_: &String| async { Ok(()) },
        ))
        .classify(|_: &SendError| Recovery::Compensate)
        .build();
    let run = saga.run();
    send_future(&run);
    unpin_future(&run);
    support::block_on(run).unwrap();

    // And it really is spawned on a multi-thread runtime.
    let runtime = support::multi_thread_runtime();
    let handle = runtime.spawn(async move {
        let result = saga.run().await;
        (saga, result)
    });
    let (saga, result) = runtime.block_on(handle).unwrap();
    assert!(result.is_ok());
    // A saga moves between threads.
    std::thread::spawn(move || drop(saga)).join().unwrap();
}

#[test]
fn the_error_crosses_threads_and_boxes() {
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(SendError("no".into())) },
            || async { Ok(()) },
        )
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    let error = std::thread::spawn(move || error).join().unwrap();
    assert_eq!(error.failed_step(), 0);

    // `SagaError<E>` is a `std::error::Error` when `E` is.
    let mut saga = SagaBuilder::new()
        .add_step(
            || async { Err::<(), _>(support::TestError::Action(0)) },
            || async { Ok(()) },
        )
        .build();
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        Box::new(support::block_on(saga.run()).unwrap_err());
    assert!(boxed.source().is_some());
}

#[test]
fn local_sagas_run_on_local_executors() {
    // `Rc` steps: neither the saga nor its run is `Send`, and neither needs to be.
    let count = Rc::new(Cell::new(0));
    let (up, down) = (count.clone(), count.clone());
    let mut saga: LocalSaga<SendError> = SagaBuilder::new_local()
        .add_step(
            move || {
                let up = up.clone();
                async move {
                    up.set(up.get() + 1);
                    Ok(())
                }
            },
            move || {
                let down = down.clone();
                async move {
                    down.set(down.get() - 1);
                    Ok(())
                }
            },
        )
        .add_step(
            || async { Err::<(), _>(SendError("stop".into())) },
            || async { Ok(()) },
        )
        .build();
    let run = saga.run();
    unpin_future(&run);
    assert!(support::block_on(run).is_err());
    assert!(smol::block_on(saga.run()).is_err());
    assert!(futures_util::FutureExt::now_or_never(saga.run()).is_some());
    assert_eq!(count.get(), 0);
}

#[test]
fn a_saga_with_an_observer_a_classifier_and_a_sleeper_is_send() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let mut saga = SagaBuilder::new()
        .sleeper(smol::Timer::after)
        .action_retry(Retry::attempts(2).constant(Duration::from_millis(1)))
        .add_step(
            || async { Err::<(), _>(SendError("busy".into())) },
            || async { Ok(()) },
        )
        .observer(Heard(heard.clone()))
        .classify(|_: &SendError| Recovery::Retry)
        .build();
    send::<Saga<SendError>>();
    let run = saga.run();
    send_future(&run);
    unpin_future(&run);
    drop(run);

    // The sleeper is smol's timer, which needs no particular runtime.
    let runtime = support::multi_thread_runtime();
    let handle = runtime.spawn(async move {
        let result = saga.run().await;
        (saga, result)
    });
    let (saga, result) = runtime.block_on(handle).unwrap();
    assert_eq!(result.unwrap_err().attempts(), 2);
    assert_eq!(
        *heard.lock().unwrap(),
        ["step 0 failed (attempt 1)", "step 0 failed (attempt 2)"]
    );
    std::thread::spawn(move || drop(saga)).join().unwrap();
}

#[test]
fn a_local_saga_takes_an_observer_a_classifier_and_a_sleeper_that_are_not_send() {
    // All three share one `Rc<RefCell<..>>`, which is neither `Send` nor
    // `Sync`: a `LocalSaga` does not ask for either.
    let log = Rc::new(RefCell::new(Vec::new()));
    let (classified, slept) = (log.clone(), log.clone());
    let undone = Rc::new(Cell::new(0));
    let undo = undone.clone();
    let mut saga: LocalSaga<SendError> = SagaBuilder::new_local()
        .sleeper(move |duration: Duration| {
            slept.borrow_mut().push(format!("slept {duration:?}"));
            smol::Timer::after(duration)
        })
        .action_retry(Retry::attempts(3).constant(Duration::from_millis(1)))
        .add_step(
            || async { Ok(()) },
            move || {
                undo.set(undo.get() + 1);
                async { Ok(()) }
            },
        )
        .add_step(
            || async { Err::<(), _>(SendError("busy".into())) },
            || async { Ok(()) },
        )
        .observer(Heard(log.clone()))
        .classify(move |_: &SendError| {
            let mut log = classified.borrow_mut();
            let seen = log
                .iter()
                .filter(|entry| entry.starts_with("classified"))
                .count();
            log.push(String::from("classified"));
            // Retry once, then give up and compensate.
            if seen == 0 {
                Recovery::Retry
            } else {
                Recovery::Compensate
            }
        })
        .build();

    for _ in 0..2 {
        log.borrow_mut().clear();
        let run = saga.run();
        unpin_future(&run);
        let error = smol::block_on(run).unwrap_err();
        assert_eq!(error.failed_step(), 1);
        assert_eq!(error.attempts(), 2);
        assert!(error.is_fully_compensated());
        assert_eq!(
            *log.borrow(),
            [
                "step 1 failed (attempt 1)",
                "classified",
                "slept 1ms",
                "step 1 failed (attempt 2)",
                "classified",
            ]
        );
    }
    assert_eq!(undone.get(), 2);
}
