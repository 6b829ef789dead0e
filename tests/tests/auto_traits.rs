//! Compile-time checks of the auto traits the contract promises: a `Saga`, its
//! builder and its run future are `Send` (tokio multi-thread can spawn a run);
//! the run future is `Unpin`; `SagaError<E>` is `Send + Sync` when `E` is. A
//! `LocalSaga`'s run need not be `Send`: it only has to run on a local
//! executor. If any of these regress, this file stops compiling.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use saga_core::{
    CompensationMode, FnStep, LocalSaga, Recovery, Run, Saga, SagaBuilder, SagaError, StepFailure,
    TypedStep,
};

fn send<T: Send>() {}
fn sync<T: Sync>() {}
fn unpin<T: Unpin>() {}
fn send_future<F: Future + Send>(_: &F) {}
fn unpin_future<F: Future + Unpin>(_: &F) {}

#[derive(Debug)]
struct SendError(#[allow(dead_code)] String);

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
