//! An observer recording every event reproduces the exact transition
//! sequence of a run.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::{
    AbortHandle, CompensationMode, FnStep, Observer, Retry, SagaBuilder, SagaError, StepRef,
};
use support::{TestError, Yield};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn at(step: StepRef<'_>) -> String {
    match step.name {
        Some(name) => format!("{}:{name}", step.index),
        None => step.index.to_string(),
    }
}

impl Observer<TestError> for Recorder {
    fn saga_started(&self, steps: usize) {
        self.push(format!("saga started ({steps})"));
    }
    fn saga_finished(&self, result: Result<(), &SagaError<TestError>>) {
        self.push(match result {
            Ok(()) => "saga succeeded".into(),
            Err(error) => format!("saga failed at {}", error.failed_step()),
        });
    }
    fn action_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("act {} #{attempt}", at(step)));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("acted {} #{attempt}", at(step)));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &TestError) {
        self.push(format!("act failed {} #{attempt}: {error}", at(step)));
    }
    fn action_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.push(format!("act retry {} #{next} in {delay:?}", at(step)));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undo {} #{attempt}", at(step)));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undone {} #{attempt}", at(step)));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &TestError) {
        self.push(format!("undo failed {} #{attempt}: {error}", at(step)));
    }
    fn compensation_retried(&self, step: StepRef<'_>, next: u32, delay: Duration) {
        self.push(format!("undo retry {} #{next} in {delay:?}", at(step)));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.push(format!("aborted at {}", at(step)));
    }
}

fn ok() -> std::future::Ready<Result<(), TestError>> {
    ready(Ok(()))
}

fn fail() -> std::future::Ready<Result<(), TestError>> {
    ready(Err(TestError::Fatal))
}

#[test]
fn success() {
    let recorder = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok, ok)
        .step(
            FnStep::new(
                || async {
                    Yield(2).await;
                    Ok::<(), TestError>(())
                },
                ok,
            )
            .named("pay"),
        )
        .observer(recorder.clone())
        .build();
    assert_eq!(smol::block_on(saga.run()), Ok(()));
    assert_eq!(
        recorder.take(),
        [
            "saga started (2)",
            "act 0 #1",
            "acted 0 #1",
            "act 1:pay #1",
            "acted 1:pay #1",
            "saga succeeded"
        ]
    );
}

#[test]
fn failure_with_retries_and_compensation() {
    let recorder = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .add_step(ok, ok)
        .add_step(fail, ok)
        .action_retry(Retry::attempts(2))
        .observer(recorder.clone())
        .build();
    assert!(smol::block_on(saga.run()).is_err());
    assert_eq!(
        recorder.take(),
        [
            "saga started (2)",
            "act 0 #1",
            "acted 0 #1",
            "act 1 #1",
            "act failed 1 #1: Fatal",
            "act retry 1 #2 in 0ns",
            "act 1 #2",
            "act failed 1 #2: Fatal",
            "undo 1 #1",
            "undone 1 #1",
            "undo 0 #1",
            "undone 0 #1",
            "saga failed at 1",
        ]
    );
}

#[test]
fn compensation_failure() {
    let recorder = Arc::new(Recorder::default());
    let undo_fails = || ready(Err(TestError::Undo(0)));
    let mut saga = SagaBuilder::new()
        .add_step(ok, ok)
        .add_step(ok, undo_fails)
        .add_step(fail, ok)
        .compensation_retry(Retry::attempts(2))
        .compensation_mode(CompensationMode::StopOnError)
        .observer(recorder.clone())
        .build();
    assert!(smol::block_on(saga.run()).is_err());
    assert_eq!(
        recorder.take()[6..],
        [
            "act failed 2 #1: Fatal",
            "undo 2 #1",
            "undone 2 #1",
            "undo 1 #1",
            "undo failed 1 #1: Undo(0)",
            "undo retry 1 #2 in 0ns",
            "undo 1 #2",
            "undo failed 1 #2: Undo(0)",
            "saga failed at 2",
        ]
    );
}

#[test]
fn parallel_group() {
    let recorder = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .parallel(|group| {
            group
                .add_step(
                    || async {
                        Yield(1).await;
                        Ok::<(), TestError>(())
                    },
                    ok,
                )
                .add_step(fail, ok)
                .add_step(ok, ok)
        })
        .observer(recorder.clone())
        .build();
    assert!(smol::block_on(saga.run()).is_err());
    assert_eq!(
        recorder.take(),
        [
            "saga started (3)",
            "act 0 #1",
            "act 1 #1",
            "act 2 #1",
            "act failed 1 #1: Fatal",
            "acted 2 #1",
            "acted 0 #1",
            "undo 2 #1",
            "undone 2 #1",
            "undo 1 #1",
            "undone 1 #1",
            "undo 0 #1",
            "undone 0 #1",
            "saga failed at 1",
        ]
    );
}

#[test]
fn abort() {
    let recorder = Arc::new(Recorder::default());
    let abort = AbortHandle::new();
    let trigger = abort.clone();
    let mut saga = SagaBuilder::new()
        .add_step(
            move || {
                trigger.abort();
                ok()
            },
            ok,
        )
        .add_step(ok, ok)
        .observer(recorder.clone())
        .build();
    let error = smol::block_on(saga.run().abortable(&abort)).unwrap_err();
    assert!(error.aborted());
    assert_eq!(
        recorder.take(),
        [
            "saga started (2)",
            "act 0 #1",
            "acted 0 #1",
            "aborted at 1",
            "undo 0 #1",
            "undone 0 #1",
            "saga failed at 1"
        ]
    );
}
