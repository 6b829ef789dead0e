//! Rules 2, 3 and 6: compensations run one at a time in reverse order; the
//! failing step's own compensation (pysagas form) runs first; typed steps are
//! not compensated when their own action failed; compensation failures stop
//! the backward phase or are collected, and are always reported.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use saga_core::{CompensationMode, FnStep, SagaBuilder, TypedStep};
use support::{
    Event, Ledger, TestError, act, on_every_executor, recording_step, simple_saga, undo,
};

#[test]
fn compensations_run_in_reverse_after_the_failing_step() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 5, Some(3), 2);
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.acted(), [0, 1, 2, 3]);
        // Step 3 (pysagas form) is compensated first, although its action failed.
        assert_eq!(ledger.undone(), [3, 2, 1, 0]);
        assert_eq!(error.failed_step(), 3);
        assert_eq!(*error.error(), TestError::Action(3));
        assert!(error.is_fully_compensated());
        assert_eq!(error.compensated_count(), 4);
        assert!(error.compensation_errors().is_empty());
        assert_eq!(error.uncompensated_steps().count(), 0);
    });
}

#[test]
fn compensations_run_one_at_a_time() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 4, Some(3), 3);
        saga.run().await.unwrap_err();
        let backward: Vec<Event> = ledger
            .events()
            .into_iter()
            .skip_while(|e| !matches!(e, Event::Undo(_)))
            .collect();
        let expected: Vec<Event> = (0..4)
            .rev()
            .flat_map(|i| [Event::Undo(i), Event::UndoDone(i)])
            .collect();
        assert_eq!(backward, expected);
    });
}

#[test]
fn first_step_failing_compensates_only_itself() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 3, Some(0), 1);
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.acted(), [0]);
        assert_eq!(ledger.undone(), [0]);
        assert_eq!(error.compensated_count(), 1);
        assert!(error.is_fully_compensated());
    });
}

#[test]
fn fn_step_can_skip_its_own_failed_action() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let (a, c) = (ledger.clone(), ledger.clone());
        let mut saga = SagaBuilder::new()
            .step(recording_step(&ledger, 0, 1, false, false))
            .step(
                FnStep::new(
                    move || act(a.clone(), 1, 1, true, ()),
                    move || undo(c.clone(), 1, 1, false),
                )
                .compensate_failed_action(false),
            )
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [0]);
        assert_eq!(error.compensated_count(), 1);
        assert!(error.is_fully_compensated());
    });
}

#[test]
fn typed_steps_are_not_compensated_when_their_action_failed() {
    on_every_executor(|| async {
        for by_ref in [false, true] {
            let ledger = Ledger::new();
            let (a, c) = (ledger.clone(), ledger.clone());
            let builder = SagaBuilder::new()
                .step(recording_step(&ledger, 0, 1, false, false))
                .step(recording_step(&ledger, 1, 0, false, false));
            let builder = if by_ref {
                builder.add_typed_step_ref(
                    move || act(a.clone(), 2, 1, true, 7u32),
                    move |_: &u32| undo(c.clone(), 2, 0, false),
                )
            } else {
                builder.add_typed_step(
                    move || act(a.clone(), 2, 1, true, 7u32),
                    move |_: u32| undo(c.clone(), 2, 0, false),
                )
            };
            let error = builder.build().run().await.unwrap_err();
            assert_eq!(error.failed_step(), 2);
            assert_eq!(ledger.undone(), [1, 0], "by_ref = {by_ref}");
            assert_eq!(error.compensated_count(), 2);
            assert!(error.is_fully_compensated());
        }
    });
}

#[test]
fn by_option_compensates_a_failed_action_with_none() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a0, c0, a1, c1) = (
            ledger.clone(),
            ledger.clone(),
            ledger.clone(),
            ledger.clone(),
        );
        let (s0, s1) = (seen.clone(), seen.clone());
        let mut saga = SagaBuilder::new()
            .step(TypedStep::by_option(
                move || act(a0.clone(), 0, 1, false, 10u32),
                move |value: Option<u32>| {
                    s0.lock().unwrap().push((0, value));
                    undo(c0.clone(), 0, 1, false)
                },
            ))
            .step(TypedStep::by_option(
                move || act(a1.clone(), 1, 1, true, 11u32),
                move |value: Option<u32>| {
                    s1.lock().unwrap().push((1, value));
                    undo(c1.clone(), 1, 1, false)
                },
            ))
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [1, 0]);
        assert_eq!(*seen.lock().unwrap(), [(1, None), (0, Some(10))]);
        assert_eq!(error.compensated_count(), 2);
    });
}

/// Five steps; step 4's action fails; the compensations of `failing` fail.
fn saga_with_failing_undos(
    ledger: &Ledger,
    failing: &[usize],
    mode: CompensationMode,
) -> saga_core::Saga<TestError> {
    let mut builder = SagaBuilder::new().compensation_mode(mode);
    for i in 0..5 {
        builder = builder.step(recording_step(ledger, i, 1, i == 4, failing.contains(&i)));
    }
    builder.build()
}

#[test]
fn stop_on_error_is_the_default_and_reports_what_is_left() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = saga_with_failing_undos(&ledger, &[2], CompensationMode::default());
        assert_eq!(saga.compensation_mode(), CompensationMode::StopOnError);
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [4, 3, 2]);
        assert_eq!(error.compensated_count(), 2);
        assert!(!error.is_fully_compensated());
        let errors = error.compensation_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].step(), 2);
        assert_eq!(*errors[0].error(), TestError::Undo(2));
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(error.uncompensated_count(), 3);
        assert_eq!(
            error.to_string(),
            "step 4 failed: action 4 failed; compensation of step 2 failed: undo 2 failed; \
             3 steps left uncompensated"
        );
    });
}

#[test]
fn continue_on_error_runs_every_compensation_and_collects_errors() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = saga_with_failing_undos(&ledger, &[1, 3], CompensationMode::ContinueOnError);
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [4, 3, 2, 1, 0]);
        assert_eq!(error.compensated_count(), 3);
        assert!(!error.is_fully_compensated());
        let steps: Vec<usize> = error
            .compensation_errors()
            .iter()
            .map(|e| e.step())
            .collect();
        assert_eq!(steps, [3, 1], "in the order they ran");
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            error.to_string(),
            "step 4 failed: action 4 failed; compensation of step 3 failed: undo 3 failed; \
             compensation of step 1 failed: undo 1 failed; 2 steps left uncompensated"
        );
        let last = error.compensation_errors()[1].clone();
        assert_eq!(
            last.to_string(),
            "compensation of step 1 failed: undo 1 failed"
        );
        assert_eq!(last.into_error(), TestError::Undo(1));
    });
}

#[test]
fn the_failing_steps_own_compensation_can_fail_too() {
    for mode in [
        CompensationMode::StopOnError,
        CompensationMode::ContinueOnError,
    ] {
        let ledger = Ledger::new();
        let mut saga = saga_with_failing_undos(&ledger, &[4], mode);
        let error = support::block_on(saga.run()).unwrap_err();
        let stop = mode == CompensationMode::StopOnError;
        assert_eq!(
            ledger.undone(),
            if stop { vec![4] } else { vec![4, 3, 2, 1, 0] }
        );
        let left: Vec<usize> = error.uncompensated_steps().collect();
        assert_eq!(left, if stop { vec![0, 1, 2, 3, 4] } else { vec![4] });
        assert_eq!(error.compensated_count(), if stop { 0 } else { 4 });
    }
}

#[test]
fn every_compensation_failing_in_continue_mode() {
    let ledger = Ledger::new();
    let mut saga =
        saga_with_failing_undos(&ledger, &[0, 1, 2, 3, 4], CompensationMode::ContinueOnError);
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(ledger.undone(), [4, 3, 2, 1, 0]);
    assert_eq!(error.compensated_count(), 0);
    assert_eq!(
        error.uncompensated_steps().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let steps: Vec<usize> = error
        .compensation_errors()
        .iter()
        .map(|e| e.step())
        .collect();
    assert_eq!(steps, [4, 3, 2, 1, 0]);
}

#[test]
fn a_successful_run_compensates_nothing() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = simple_saga(&ledger, 4, None, 1);
        saga.run().await.unwrap();
        assert!(ledger.undone().is_empty());
    });
}

/// A step whose action or compensation fails its first `failures` attempts,
/// recording every attempt, and checked against the Step protocol.
fn flaky(
    ledger: &Ledger,
    index: usize,
    action_failures: u32,
    undo_failures: u32,
) -> support::Checked<impl saga_core::Step<TestError> + Send + 'static> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let (a, c) = (ledger.clone(), ledger.clone());
    let (acts, undos) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    support::Checked::new(
        ledger,
        index,
        FnStep::new(
            move || {
                let fail = acts.fetch_add(1, Ordering::SeqCst) < action_failures;
                act(a.clone(), index, 1, fail, ())
            },
            move || {
                let fail = undos.fetch_add(1, Ordering::SeqCst) < undo_failures;
                undo(c.clone(), index, 1, fail)
            },
        ),
    )
}

#[test]
fn a_retried_compensation_that_succeeds_leaves_nothing_applied() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = SagaBuilder::new()
            .compensation_retry(saga_core::Retry::attempts(3))
            .step(flaky(&ledger, 0, 0, 2))
            .step(flaky(&ledger, 1, 1, 0))
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [1, 0, 0, 0]);
        assert!(error.is_fully_compensated());
        assert_eq!(error.compensated_count(), 2);
        assert!(ledger.violations().is_empty(), "{:?}", ledger.violations());
    });
}

#[test]
fn a_compensation_failing_every_retry_is_reported() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = SagaBuilder::new()
            .compensation_retry(saga_core::Retry::attempts(2))
            .step(flaky(&ledger, 0, 0, 5))
            .step(flaky(&ledger, 1, 1, 0))
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.undone(), [1, 0, 0]);
        assert!(!error.is_fully_compensated());
        assert_eq!(error.compensation_errors().len(), 1);
        assert_eq!(error.compensation_errors()[0].step(), 0);
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
        assert!(ledger.violations().is_empty(), "{:?}", ledger.violations());
    });
}

#[test]
fn a_retried_action_runs_again_and_only_the_last_attempt_counts() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let mut saga = SagaBuilder::new()
            .action_retry(saga_core::Retry::attempts(3))
            .step(flaky(&ledger, 0, 2, 0))
            .step(flaky(&ledger, 1, 0, 0))
            .build();
        saga.run().await.unwrap();
        assert_eq!(ledger.acted(), [0, 0, 0, 1]);
        assert!(ledger.undone().is_empty());
        assert!(ledger.violations().is_empty(), "{:?}", ledger.violations());
    });
}

#[test]
fn a_failed_by_value_compensation_is_never_silently_retried() {
    // A by-value compensation consumed its value in its one attempt: under a
    // retry policy it is not attempted again, and its failure is reported
    // (rule 6), not turned into a success.
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        let mut saga = SagaBuilder::new()
            .compensation_retry(saga_core::Retry::attempts(3))
            .step(support::Checked::new(
                &ledger,
                0,
                TypedStep::by_value(
                    || async { Ok::<_, TestError>(5u8) },
                    move |_: u8| {
                        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async { Err(TestError::Undo(0)) }
                    },
                ),
            ))
            .step(flaky(&ledger, 1, 1, 0))
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(!error.is_fully_compensated());
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0]);
        assert!(ledger.violations().is_empty(), "{:?}", ledger.violations());
    });
}
