//! Random saga shapes, checked against the reference model: mixes of
//! `FnStep` (either failed-action policy), `TypedStep` by value, by reference
//! and by option, and hand-written steps; random failing actions and
//! compensations, classifier decisions, the four compensation modes and
//! suspensions; logs, reports and the peak concurrency.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use proptest::prelude::*;
use saga_core::{CompensationMode, Recovery};
use support::{Exec, Kind, Shape, StepSpec, check_shape, model};

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        any::<bool>().prop_map(|compensate_failed| Kind::Fn { compensate_failed }),
        Just(Kind::ByValue),
        Just(Kind::ByRef),
        Just(Kind::ByOption),
        any::<bool>().prop_map(|compensate_failed| Kind::Custom { compensate_failed }),
    ]
}

fn step() -> impl Strategy<Value = StepSpec> {
    (
        kind(),
        prop::bool::weighted(0.12),
        prop::bool::weighted(0.25),
        prop_oneof![
            2 => Just(Recovery::Compensate),
            1 => Just(Recovery::Retry),
            1 => Just(Recovery::Propagate)
        ],
        0u32..4,
        0u32..4,
    )
        .prop_map(
            |(kind, action_fails, undo_fails, recovery, action_yields, undo_yields)| StepSpec {
                kind,
                action_fails,
                undo_fails,
                recovery,
                action_yields,
                undo_yields,
            },
        )
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(step(), 0..16),
        prop_oneof![
            Just(CompensationMode::StopOnError),
            Just(CompensationMode::ContinueOnError),
            Just(CompensationMode::ConcurrentGroups),
            Just(CompensationMode::Concurrent),
        ],
        any::<bool>(),
    )
        .prop_map(|(steps, mode, classifier)| Shape {
            steps,
            mode,
            classifier,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_shapes_match_the_model(shape in shape()) {
        for exec in Exec::ALL {
            let checked = shape.clone();
            let result = exec.block_on(async move { check_shape(&checked).await });
            prop_assert!(result.is_ok(), "on {:?}: {}", exec, result.unwrap_err());
        }
    }

    #[test]
    fn running_a_shape_again_gives_the_same_outcome(shape in shape()) {
        let ledger = support::Ledger::new();
        let mut saga = support::build_shape(&shape, &ledger);
        let expected = model(&shape);
        let grouped = support::GroupShape::sequential(&shape);
        let peaks = support::model_peaks(&grouped, &expected);
        for run in 0..3 {
            let result = support::block_on_adversarial(saga.run())
                .map_err(|error| support::Report::of(&error));
            let observed = support::Outcome { events: ledger.take(), result };
            let compared = support::compare_grouped(&grouped, &expected, &observed);
            prop_assert!(compared.is_ok(), "run {}: {}", run, compared.unwrap_err());
            prop_assert_eq!(ledger.take_peaks(), peaks, "the peak concurrency of run {}", run);
        }
        prop_assert_eq!(ledger.violations(), Vec::<String>::new());
    }
}

#[test]
fn the_protocol_checker_sees_violations() {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use saga_core::Step;

    let ledger = support::Ledger::new();
    let mut cx = Context::from_waker(Waker::noop());
    let inner = support::recording_step(&ledger, 0, 0, false, false);
    let mut step = pin!(support::Checked::new(&ledger, 0, inner));
    // Compensating before acting is reported.
    let _ = step.as_mut().poll_compensate(&mut cx);
    assert_eq!(ledger.violations().len(), 1);
    // The protocol's order: nothing more is reported.
    let _ = step.as_mut().poll_action(&mut cx);
    let _ = step.as_mut().poll_compensate(&mut cx);
    assert_eq!(ledger.violations().len(), 1);
    // A second compensation after a successful one is reported.
    let _ = step.as_mut().poll_compensate(&mut cx);
    assert_eq!(ledger.violations().len(), 2);
}
