//! The observer is told when a parallel group cuts a member short:
//! `Observer::action_cut_short(step, attempt)`, an attempt that ended because
//! another member of its group failed, with no error of its own.
//!
//! Written against that method before it exists: this file does not compile
//! until `Observer` has it, so it is kept apart from the other tests.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use std::future::{pending, ready};
use std::sync::{Arc, Mutex};

use saga_core::{InFlight, Observer, ParallelGroup, SagaBuilder, SagaError, StepRef};
use support::{FakeClock, TestError, Yield, block_on_clock};

/// Records every transition as a line of text.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
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
        self.push(format!("act {} #{attempt}", step.index));
    }
    fn action_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("acted {} #{attempt}", step.index));
    }
    fn action_failed(&self, step: StepRef<'_>, attempt: u32, error: &TestError) {
        self.push(format!("act failed {} #{attempt}: {error:?}", step.index));
    }
    fn action_cut_short(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("cut short {} #{attempt}", step.index));
    }
    fn compensation_started(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undo {} #{attempt}", step.index));
    }
    fn compensation_succeeded(&self, step: StepRef<'_>, attempt: u32) {
        self.push(format!("undone {} #{attempt}", step.index));
    }
    fn compensation_failed(&self, step: StepRef<'_>, attempt: u32, error: &TestError) {
        self.push(format!("undo failed {} #{attempt}: {error:?}", step.index));
    }
    fn aborted(&self, step: StepRef<'_>) {
        self.push(format!("aborted at {}", step.index));
    }
    fn deadline_passed(&self, step: StepRef<'_>) {
        self.push(format!("deadline passed at {}", step.index));
    }
}

fn ok() -> std::future::Ready<Result<(), TestError>> {
    ready(Ok(()))
}

#[test]
fn a_group_member_cut_short_by_another_members_failure_is_reported_as_cut_short() {
    let recorder = Arc::new(Recorder::default());
    let mut saga = SagaBuilder::new()
        .parallel_with(
            ParallelGroup::new().on_failure(InFlight::CutShort),
            |group| {
                group
                    // Member B: never completes on its own.
                    .add_step(pending::<Result<(), TestError>>, ok)
                    // Member A: fails once B is in flight.
                    .add_step(
                        || async {
                            Yield(1).await;
                            Err::<(), _>(TestError::Fatal)
                        },
                        ok,
                    )
            },
        )
        .observer(recorder.clone())
        .build();

    // No timers: a member left waiting would be a lost wake-up, which fails
    // the test instead of hanging it.
    let error = block_on_clock(&FakeClock::new(), saga.run()).unwrap_err();
    assert_eq!(*error.error(), TestError::Fatal);
    assert_eq!(error.failed_step(), 1);
    assert!(error.is_fully_compensated());

    let events = recorder.events();
    assert_eq!(
        events[..5],
        [
            "saga started (2)",
            "act 0 #1",
            "act 1 #1",
            "act failed 1 #1: Fatal",
            "cut short 0 #1",
        ],
        "{events:?}"
    );
    assert!(
        !events.iter().any(|event| event.starts_with("act failed 0")),
        "the member cut short has no error of its own: {events:?}"
    );
    // Then both members are compensated (each pysagas-style), and the run ends.
    let mut undo: Vec<&str> = events[5..events.len() - 1]
        .iter()
        .map(String::as_str)
        .collect();
    undo.sort_unstable();
    assert_eq!(
        undo,
        ["undo 0 #1", "undo 1 #1", "undone 0 #1", "undone 1 #1"],
        "{events:?}"
    );
    assert_eq!(events.last().unwrap(), "saga failed at 1");
}
