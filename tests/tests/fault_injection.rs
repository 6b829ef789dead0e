//! Exhaustive fault injection, checked against the reference model in
//! `support`: every saga of 1 to 6 pysagas-form steps, with
//!
//! - every failing action position, or none (n + 1 choices),
//! - every subset of failing compensations (2^n),
//! - both compensation modes (`StopOnError`, `ContinueOnError`),
//! - both failed-step policies (`compensate_failed_action` true / false),
//!
//! with steps suspending 0 to 2 times (varied deterministically per case and
//! step). That is sum over n of (n + 1) * 2^n * 2 * 2 = 3,072 cases, each run on
//! all six executors (18,432 runs). A second, smaller sweep covers the
//! classifier: every failing position and kind of failing step, each error
//! compensated or propagated.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use saga_core::{CompensationMode, Recovery};
use support::{Exec, Kind, Shape, StepSpec, check_shape, model};

const MAX_STEPS: usize = 6;
const MODES: [CompensationMode; 2] = [
    CompensationMode::StopOnError,
    CompensationMode::ContinueOnError,
];

/// Every case of the main sweep.
fn main_cases() -> Vec<Shape> {
    let mut cases = Vec::new();
    for n in 1..=MAX_STEPS {
        for fail_at in std::iter::once(None).chain((0..n).map(Some)) {
            for undo_mask in 0..(1u32 << n) {
                for mode in MODES {
                    for compensate_failed in [true, false] {
                        let case = cases.len();
                        let steps = (0..n)
                            .map(|i| StepSpec {
                                kind: Kind::Fn { compensate_failed },
                                action_fails: fail_at == Some(i),
                                undo_fails: undo_mask & (1 << i) != 0,
                                recovery: Recovery::Compensate,
                                action_yields: ((case + i) % 3) as u32,
                                undo_yields: ((case + 2 * i + 1) % 3) as u32,
                            })
                            .collect();
                        cases.push(Shape {
                            steps,
                            mode,
                            classifier: false,
                        });
                    }
                }
            }
        }
    }
    cases
}

/// Every case of the classifier sweep: `n` ok steps whose compensations all
/// succeed, one failing step of each kind at each position, the classifier
/// compensating or propagating its error; the failing step's own compensation
/// fails or not.
fn classifier_cases() -> Vec<Shape> {
    let kinds = support::KINDS;
    let mut cases = Vec::new();
    for n in 1..=MAX_STEPS {
        for fail_at in 0..n {
            for kind in kinds {
                for recovery in [Recovery::Compensate, Recovery::Retry, Recovery::Propagate] {
                    for own_undo_fails in [false, true] {
                        let case = cases.len();
                        let steps = (0..n)
                            .map(|i| StepSpec {
                                kind: if i == fail_at {
                                    kind
                                } else {
                                    Kind::Fn {
                                        compensate_failed: true,
                                    }
                                },
                                action_fails: i == fail_at,
                                undo_fails: i == fail_at && own_undo_fails,
                                recovery: if i == fail_at {
                                    recovery
                                } else {
                                    Recovery::Compensate
                                },
                                action_yields: ((case + i) % 3) as u32,
                                undo_yields: ((case + i + 2) % 3) as u32,
                            })
                            .collect();
                        cases.push(Shape {
                            steps,
                            mode: CompensationMode::StopOnError,
                            classifier: true,
                        });
                    }
                }
            }
        }
    }
    cases
}

/// Runs every case on `exec` (all in one task) and returns the mismatches.
fn run_all(exec: Exec, cases: Vec<Shape>) -> Vec<String> {
    exec.block_on(async move {
        let mut failures = Vec::new();
        for shape in &cases {
            if let Err(difference) = check_shape(shape).await {
                failures.push(difference);
            }
        }
        failures
    })
}

fn sweep(cases: &[Shape]) {
    for exec in Exec::ALL {
        let failures = run_all(exec, cases.to_vec());
        assert!(
            failures.is_empty(),
            "{} of {} cases differ from the model on {exec:?}; the first:\n{}",
            failures.len(),
            cases.len(),
            failures[0]
        );
    }
}

#[test]
fn every_fault_combination_matches_the_model() {
    let cases = main_cases();
    let expected: usize = (1..=MAX_STEPS).map(|n| (n + 1) * (1 << n) * 2 * 2).sum();
    assert_eq!(cases.len(), expected);
    assert_eq!(cases.len(), 3072);
    println!(
        "fault injection: {} cases x {} executors = {} runs",
        cases.len(),
        Exec::ALL.len(),
        cases.len() * Exec::ALL.len()
    );
    // The sweep reaches every kind of outcome the model knows.
    let outcomes: Vec<_> = cases.iter().map(model).collect();
    assert!(outcomes.iter().any(|o| o.result.is_ok()));
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(&o.result, Err(r) if r.fully_compensated))
    );
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(&o.result, Err(r) if r.compensation_errors.len() >= 3))
    );
    assert!(outcomes
        .iter()
        .any(|o| matches!(&o.result, Err(r) if r.compensation_errors.len() == 1 && r.uncompensated.len() == 6)));
    sweep(&cases);
}

#[test]
fn every_classifier_decision_matches_the_model() {
    let cases = classifier_cases();
    assert_eq!(cases.len(), 21 * 7 * 3 * 2);
    println!(
        "classifier sweep: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    sweep(&cases);
}

#[test]
fn the_check_notices_a_wrong_answer() {
    // The comparison is not vacuous: for a shape whose model changes when one
    // step's compensation is made to fail instead (or not), the real run of
    // the original shape does not match the mutated model.
    let mut sensitive = 0;
    for shape in main_cases().iter().step_by(7) {
        let mut mutated = shape.clone();
        mutated.steps[0].undo_fails = !mutated.steps[0].undo_fails;
        let wrong = model(&mutated);
        if wrong != model(shape) {
            sensitive += 1;
            let observed = support::block_on(support::run_shape(shape));
            assert_ne!(observed, wrong, "{shape:?}");
        }
    }
    assert!(sensitive > 100, "only {sensitive} sensitive cases");
}
