//! Rule 5: every action error compensates by default; a classifier can route
//! an error to `Propagate`, which returns at once, compensates nothing, and
//! reports the steps left applied.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use saga_core::{FnStep, Handling, Recovery, SagaBuilder, TypedStep};
use support::{Ledger, TestError, act, on_every_executor, recording_step, undo};

fn propagate_saga(
    ledger: &Ledger,
    typed_last: bool,
    calls: &Arc<AtomicUsize>,
) -> saga_core::Saga<TestError> {
    let (a, c) = (ledger.clone(), ledger.clone());
    let mut builder = SagaBuilder::new()
        .step(recording_step(ledger, 0, 1, false, false))
        .step(recording_step(ledger, 1, 1, false, false));
    builder = if typed_last {
        builder.step(TypedStep::by_value(
            move || act(a.clone(), 2, 1, true, ()),
            move |()| undo(c.clone(), 2, 1, false),
        ))
    } else {
        builder.step(recording_step(ledger, 2, 1, true, false))
    };
    let calls = calls.clone();
    builder
        .classify(move |error: &TestError| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(
                *error,
                TestError::Action(2),
                "the classifier sees the action error"
            );
            Recovery::Propagate
        })
        .build()
}

#[test]
fn propagate_returns_at_once_and_compensates_nothing() {
    on_every_executor(|| async {
        let ledger = Ledger::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut saga = propagate_saga(&ledger, false, &calls);
        let error = saga.run().await.unwrap_err();
        assert_eq!(ledger.acted(), [0, 1, 2]);
        assert!(ledger.undone().is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(error.handling(), Handling::Propagated);
        assert_eq!(error.failed_step(), 2);
        assert_eq!(error.compensated_count(), 0);
        assert!(error.compensation_errors().is_empty());
        // The failing pysagas-form step may have partly happened: it is left applied too.
        assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1, 2]);
        assert!(!error.is_fully_compensated());
        assert_eq!(
            error.to_string(),
            "step 2 failed: action 2 failed; propagated without compensation, 3 steps left applied"
        );
    });
}

#[test]
fn propagate_from_a_typed_step_leaves_only_earlier_steps() {
    let ledger = Ledger::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut saga = propagate_saga(&ledger, true, &calls);
    let error = support::block_on(saga.run()).unwrap_err();
    assert!(ledger.undone().is_empty());
    assert_eq!(error.uncompensated_steps().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(error.uncompensated_count(), 2);
}

#[test]
fn propagate_from_a_step_that_never_needed_compensation() {
    // The first step is a typed step that failed: nothing happened, nothing
    // is left applied, even though the error was propagated.
    let mut saga = SagaBuilder::new()
        .add_typed_step(
            || async { Err::<u8, _>(TestError::Action(0)) },
            |_: u8| async { Ok(()) },
        )
        .classify(|_: &TestError| Recovery::Propagate)
        .build();
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Propagated);
    assert_eq!(error.uncompensated_count(), 0);
    assert!(error.is_fully_compensated());
}

#[test]
fn the_classifier_decides_per_error() {
    on_every_executor(|| async {
        // Step i fails; the classifier compensates errors of even steps only.
        for failing in 0..4 {
            let ledger = Ledger::new();
            let mut builder = SagaBuilder::new().classify(|error: &TestError| match *error {
                TestError::Action(step) if step % 2 == 0 => Recovery::Compensate,
                _ => Recovery::Propagate,
            });
            for i in 0..4 {
                builder = builder.step(recording_step(&ledger, i, 0, i == failing, false));
            }
            let error = builder.build().run().await.unwrap_err();
            if failing % 2 == 0 {
                assert_eq!(error.handling(), Handling::Compensated);
                assert_eq!(ledger.undone(), (0..=failing).rev().collect::<Vec<_>>());
                assert!(error.is_fully_compensated());
            } else {
                assert_eq!(error.handling(), Handling::Propagated);
                assert!(ledger.undone().is_empty());
                assert_eq!(
                    error.uncompensated_steps().collect::<Vec<_>>(),
                    (0..=failing).collect::<Vec<_>>()
                );
            }
        }
    });
}

#[test]
fn compensate_is_the_default() {
    // With no classifier and no retry policy, an action error compensates
    // (the default decision, `Retry`, allows one attempt, then compensates).
    let ledger = Ledger::new();
    let mut saga = support::simple_saga(&ledger, 3, Some(2), 0);
    let error = support::block_on(saga.run()).unwrap_err();
    assert_eq!(error.handling(), Handling::Compensated);
    assert_eq!(ledger.undone(), [2, 1, 0]);
}

#[test]
fn a_classifier_answering_compensate_changes_nothing() {
    let with = Ledger::new();
    let without = Ledger::new();
    let mut a = SagaBuilder::new()
        .step(recording_step(&with, 0, 0, false, false))
        .step(recording_step(&with, 1, 0, true, true))
        .classify(|_: &TestError| Recovery::Compensate)
        .build();
    let mut b = SagaBuilder::new()
        .step(recording_step(&without, 0, 0, false, false))
        .step(recording_step(&without, 1, 0, true, true))
        .build();
    let ea = support::block_on(a.run()).unwrap_err();
    let eb = support::block_on(b.run()).unwrap_err();
    assert_eq!(with.events(), without.events());
    assert_eq!(ea, eb);
}

#[test]
fn the_classifier_sees_only_action_errors_and_only_once() {
    on_every_executor(|| async {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let ledger = Ledger::new();
        let (a, u) = (ledger.clone(), ledger.clone());
        let mut saga = SagaBuilder::new()
            .step(recording_step(&ledger, 0, 1, false, true))
            .step(
                FnStep::new(
                    move || act(a.clone(), 1, 1, true, ()),
                    move || undo(u.clone(), 1, 1, true),
                )
                .named("second"),
            )
            .compensation_mode(saga_core::CompensationMode::ContinueOnError)
            .classify(move |error: &TestError| {
                c.fetch_add(1, Ordering::SeqCst);
                assert!(matches!(error, TestError::Action(_)));
                Recovery::Compensate
            })
            .build();
        let error = saga.run().await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(error.compensation_errors().len(), 2);

        // A successful run never asks the classifier.
        let mut ok = SagaBuilder::new()
            .step(recording_step(&ledger, 0, 1, false, false))
            .classify(|_: &TestError| panic!("asked about a success"))
            .build();
        ok.run().await.unwrap();
    });
}
