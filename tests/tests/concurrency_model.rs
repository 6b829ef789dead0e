//! Concurrency against the reference model: every step built from a shape is
//! `support::Measured`, which counts the action and compensation attempts in
//! flight (from the first poll to `Ready`) and suspends every compensation
//! attempt once, so that compensations the engine runs together overlap.
//! `support::model_peaks` predicts the peaks from the `CompensationMode`
//! documentation: one compensation at a time in `StopOnError` and
//! `ContinueOnError`; in `ConcurrentGroups` the members of a group together
//! (within its limit), blocks one after another (so 1 for a saga of single
//! steps); in `Concurrent` every compensation at once, groups or not. Every
//! case also checks the log and the report (`support::compare_grouped`).
//!
//! - **Sequential shapes in the concurrent modes**
//!   (`every_sequential_fault_matches_the_model_concurrent_groups` and
//!   `..._concurrent`): the fault-injection sweep of `fault_injection.rs`
//!   (1 to 6 pysagas-form steps x every failing action or none x every
//!   subset of failing compensations x both failed-step policies, 0 to 2
//!   suspensions) in `ConcurrentGroups` and in `Concurrent`: 1,536 cases per
//!   mode.
//! - **The classifier sweep in the other three modes**
//!   (`every_classifier_decision_matches_the_model_in_every_mode`): the 882
//!   cases of `fault_injection.rs` in `ContinueOnError`, `ConcurrentGroups`
//!   and `Concurrent`: 2,646 cases.
//! - **Compensation retries in sagas of single steps**
//!   (`every_sequential_compensation_retry_matches_the_model`): 2 to 4 steps,
//!   the last failing, each compensation succeeding, failing once, twice or
//!   always, compensation attempts unset, 2 or 3, every step kind (varied per
//!   case), in the four modes: 4,032 cases.
//! - **Limited groups** (`every_limited_group_matches_the_model`): a step, a
//!   group of 2 to 4 with every limit from 1 to its width, a last step that
//!   fails or not, every subset of failing compensations; and two limited
//!   groups of 2 or 3 before a failing step; in `StopOnError`,
//!   `ContinueOnError` and `ConcurrentGroups`: 2,904 cases. Not in
//!   `Concurrent`: the documentation says both that a group's limit "also
//!   bounds concurrent compensation of the group" and that `Concurrent` runs
//!   "every compensation at once", so the model does not pin that.
//!
//! Every case runs on all six executors. Worked examples pin the peaks of
//! small sagas; two tests check that the gauge counts what it should and
//! that the peak check notices a wrong prediction.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use saga_core::{CompensationMode, Recovery, Step};
use support::{
    Attach, Block, Exec, Flaky, GroupShape, KINDS, Kind, Ledger, MODES, Measured, Peaks, Shape,
    StepSpec, check_grouped, model_grouped, model_peaks, run_traced,
};

const MAX_STEPS: usize = 6;

/// A saga of single steps.
fn singles(steps: Vec<StepSpec>, mode: CompensationMode, classifier: bool) -> GroupShape {
    GroupShape::sequential(&Shape {
        steps,
        mode,
        classifier,
    })
}

/// The main fault-injection sweep of `fault_injection.rs`, in `mode`.
fn sequential_cases(mode: CompensationMode) -> Vec<GroupShape> {
    let mut cases = Vec::new();
    for n in 1..=MAX_STEPS {
        for fail_at in std::iter::once(None).chain((0..n).map(Some)) {
            for undo_mask in 0..(1u32 << n) {
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
                    cases.push(singles(steps, mode, false));
                }
            }
        }
    }
    cases
}

/// The classifier sweep of `fault_injection.rs`, in `mode`.
fn classifier_cases(mode: CompensationMode) -> Vec<GroupShape> {
    let mut cases = Vec::new();
    for n in 1..=MAX_STEPS {
        for fail_at in 0..n {
            for kind in KINDS {
                for recovery in [Recovery::Compensate, Recovery::Retry, Recovery::Propagate] {
                    for own_undo_fails in [false, true] {
                        let case = cases.len();
                        let steps = (0..n)
                            .map(|i| StepSpec {
                                kind: if i == fail_at { kind } else { KINDS[0] },
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
                        cases.push(singles(steps, mode, true));
                    }
                }
            }
        }
    }
    cases
}

/// 2 to 4 single steps, the last failing; each compensation succeeds (0),
/// fails once (1), twice (2) or always (3); compensation attempts unset, 2
/// or 3; kinds varied per case; each shape in the four modes.
fn retry_cases() -> Vec<GroupShape> {
    let mut cases = Vec::new();
    let mut shapes = 0usize;
    for n in 2..=4usize {
        for behaviours in 0..4u32.pow(n as u32) {
            for compensation_attempts in [None, Some(2), Some(3)] {
                let case = shapes;
                shapes += 1;
                let mut steps = Vec::new();
                let mut flaky = Vec::new();
                for i in 0..n {
                    let behaviour = behaviours / 4u32.pow(i as u32) % 4;
                    steps.push(StepSpec {
                        kind: KINDS[(case + i) % KINDS.len()],
                        action_fails: i == n - 1,
                        undo_fails: behaviour == 3,
                        recovery: Recovery::Compensate,
                        action_yields: ((case + i) % 2) as u32,
                        undo_yields: ((case + 2 * i) % 3) as u32,
                    });
                    flaky.push(Flaky {
                        action: 0,
                        undo: behaviour % 3,
                    });
                }
                for mode in MODES {
                    let mut shape = singles(steps.clone(), mode, false);
                    shape.flaky = flaky.clone();
                    shape.compensation_attempts = compensation_attempts;
                    cases.push(shape);
                }
            }
        }
    }
    cases
}

/// Limited groups (see the file's documentation), in `StopOnError`,
/// `ContinueOnError` and `ConcurrentGroups`. Group members' actions never
/// suspend and succeed (the model's condition for a limit below the width).
fn limited_cases() -> Vec<GroupShape> {
    const LIMITED_MODES: [CompensationMode; 3] = [
        CompensationMode::StopOnError,
        CompensationMode::ContinueOnError,
        CompensationMode::ConcurrentGroups,
    ];
    let mut cases = Vec::new();
    let step = |case: usize, i: usize, in_group: bool, fails: bool, undo_fails: bool| StepSpec {
        kind: KINDS[(case + i) % KINDS.len()],
        action_fails: fails,
        undo_fails,
        recovery: Recovery::Compensate,
        action_yields: if in_group { 0 } else { ((case + i) % 3) as u32 },
        undo_yields: ((case + 2 * i + 1) % 3) as u32,
    };
    // A step, a group of `w` limited to `limit`, a last step.
    for w in 2..=4usize {
        let n = w + 2;
        for limit in 1..=w {
            for last_fails in [true, false] {
                for undo_mask in 0..(1u32 << n) {
                    for mode in LIMITED_MODES {
                        let case = cases.len();
                        let steps = (0..n)
                            .map(|i| {
                                let in_group = (1..=w).contains(&i);
                                let fails = i == n - 1 && last_fails;
                                step(case, i, in_group, fails, undo_mask & (1 << i) != 0)
                            })
                            .collect();
                        cases.push(GroupShape {
                            steps,
                            blocks: vec![Block::Single, Block::Group(w), Block::Single],
                            flaky: Vec::new(),
                            limits: vec![None, Some(limit), None],
                            action_attempts: None,
                            compensation_attempts: None,
                            mode,
                            classifier: false,
                        });
                    }
                }
            }
        }
    }
    // Two limited groups of 2 or 3, then a failing step; compensations
    // failing (first attempts or always) varied per case.
    for w1 in [2usize, 3] {
        for w2 in [2usize, 3] {
            for l1 in 1..=w1 {
                for l2 in 1..=w2 {
                    for variant in 0..8usize {
                        for mode in LIMITED_MODES {
                            let case = cases.len();
                            let n = w1 + w2 + 1;
                            let steps = (0..n)
                                .map(|i| {
                                    let undo_fails = (variant + i) % 5 == 0;
                                    step(case, i, i < n - 1, i == n - 1, undo_fails)
                                })
                                .collect();
                            let flaky = (0..n)
                                .map(|i| Flaky {
                                    action: 0,
                                    undo: ((variant + 3 * i) % 4 / 2) as u32,
                                })
                                .collect();
                            cases.push(GroupShape {
                                steps,
                                blocks: vec![Block::Group(w1), Block::Group(w2), Block::Single],
                                flaky,
                                limits: vec![Some(l1), Some(l2), None],
                                action_attempts: None,
                                compensation_attempts: [None, Some(2)][variant % 2],
                                mode,
                                classifier: false,
                            });
                        }
                    }
                }
            }
        }
    }
    cases
}

/// Runs every case on `exec` (all in one task) and returns the mismatches,
/// by case index.
fn run_all(exec: Exec, cases: Vec<GroupShape>) -> Vec<(usize, String)> {
    exec.block_on(async move {
        let mut failures = Vec::new();
        for (index, shape) in cases.iter().enumerate() {
            if let Err(difference) = check_grouped(shape).await {
                failures.push((index, difference));
            }
        }
        failures
    })
}

fn sweep(cases: &[GroupShape]) {
    // Every executor runs before anything is asserted, so a failure says
    // where (and how often) the runs differ from the model.
    let mut summary = Vec::new();
    let mut first = None;
    for exec in Exec::ALL {
        let mut failures = run_all(exec, cases.to_vec());
        if failures.is_empty() {
            continue;
        }
        let peaks_only = failures
            .iter()
            .filter(|(_, failure)| failure.starts_with("the peak concurrency differs"))
            .count();
        let by_mode: Vec<(CompensationMode, usize)> = MODES
            .into_iter()
            .map(|mode| {
                let count = failures
                    .iter()
                    .filter(|(index, _)| cases[*index].mode == mode)
                    .count();
                (mode, count)
            })
            .filter(|&(_, count)| count > 0)
            .collect();
        summary.push(format!(
            "{} on {exec:?} ({peaks_only} of them in the peak concurrency only; by mode \
             {by_mode:?})",
            failures.len()
        ));
        first.get_or_insert(failures.swap_remove(0).1);
    }
    assert!(
        summary.is_empty(),
        "of {} cases, these differ from the model: {}; the first:\n{}",
        cases.len(),
        summary.join(", "),
        first.unwrap_or_default()
    );
}

/// The peaks the model predicts for each case.
fn predicted(cases: &[GroupShape]) -> Vec<Peaks> {
    cases
        .iter()
        .map(|shape| model_peaks(shape, &model_grouped(shape)))
        .collect()
}

fn sequential_sweep(mode: CompensationMode) {
    let cases = sequential_cases(mode);
    assert_eq!(cases.len(), 1_536, "sequential cases in {mode:?}");
    let peaks = predicted(&cases);
    // The sweep predicts both "nothing to compensate" and overlaps as wide
    // as the saga (or 1 in `ConcurrentGroups`).
    assert!(peaks.iter().any(|p| p.compensations == 0));
    let widest = peaks.iter().map(|p| p.compensations).max().unwrap();
    match mode {
        CompensationMode::ConcurrentGroups => assert_eq!(widest, 1),
        _ => assert_eq!(widest, MAX_STEPS),
    }
    println!(
        "sequential shapes in {mode:?}: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    sweep(&cases);
}

#[test]
fn every_sequential_fault_matches_the_model_concurrent_groups() {
    sequential_sweep(CompensationMode::ConcurrentGroups);
}

#[test]
fn every_sequential_fault_matches_the_model_concurrent() {
    sequential_sweep(CompensationMode::Concurrent);
}

#[test]
fn every_classifier_decision_matches_the_model_in_every_mode() {
    let cases: Vec<GroupShape> = [
        CompensationMode::ContinueOnError,
        CompensationMode::ConcurrentGroups,
        CompensationMode::Concurrent,
    ]
    .into_iter()
    .flat_map(classifier_cases)
    .collect();
    assert_eq!(cases.len(), 21 * 7 * 3 * 2 * 3);
    assert_eq!(cases.len(), 2_646);
    println!(
        "classifier sweep in three more modes: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    sweep(&cases);
}

#[test]
fn every_sequential_compensation_retry_matches_the_model() {
    let cases = retry_cases();
    assert_eq!(cases.len(), (16 + 64 + 256) * 3 * 4);
    assert_eq!(cases.len(), 4_032);
    let reports: Vec<_> = cases
        .iter()
        .map(model_grouped)
        .filter_map(|o| o.result.err())
        .collect();
    // Retries that rescued compensations, and ones that did not.
    assert!(
        reports
            .iter()
            .any(|r| r.fully_compensated && r.compensated_count == 4)
    );
    assert!(reports.iter().any(|r| r.compensation_errors.len() >= 2));
    println!(
        "compensation retries in sagas of single steps: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    sweep(&cases);
}

#[test]
fn every_limited_group_matches_the_model() {
    let cases = limited_cases();
    assert_eq!(cases.len(), (2 * 16 + 3 * 32 + 4 * 64) * 2 * 3 + 25 * 8 * 3);
    assert_eq!(cases.len(), 2_904);
    // Every limit is the peak of some case in `ConcurrentGroups`, and no
    // case predicts more than its group's limit.
    let peaks = predicted(&cases);
    for limit in 1..=4 {
        assert!(
            cases.iter().zip(&peaks).any(|(shape, p)| {
                shape.mode == CompensationMode::ConcurrentGroups
                    && shape.limits.contains(&Some(limit))
                    && p.compensations == limit
            }),
            "no case reaches a peak of {limit}"
        );
    }
    println!(
        "limited groups: {} cases x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    sweep(&cases);
}

/// `n` single steps, the last failing, nothing suspending: every step is
/// compensated.
fn plain(n: usize, mode: CompensationMode) -> GroupShape {
    let steps = (0..n)
        .map(|i| StepSpec {
            action_fails: i == n - 1,
            ..StepSpec::ok()
        })
        .collect();
    singles(steps, mode, false)
}

/// Runs `shape` on every executor with `attach` and returns the peaks, after
/// checking the log and the report against the model.
fn peaks_everywhere(shape: &GroupShape, attach: Attach) -> Vec<(Exec, Peaks)> {
    Exec::ALL
        .into_iter()
        .map(|exec| {
            let checked = shape.clone();
            let trace = exec.block_on(async move { run_traced(&checked, attach, None).await });
            let expected = model_grouped(shape);
            if let Err(difference) = support::compare_grouped(shape, &expected, &trace.outcome()) {
                panic!("on {exec:?}: {difference}");
            }
            (exec, trace.peaks)
        })
        .collect()
}

fn assert_peaks(shape: &GroupShape, attach: Attach, compensations: usize) {
    for (exec, peaks) in peaks_everywhere(shape, attach) {
        assert_eq!(
            peaks.compensations, compensations,
            "the most compensations in flight at once on {exec:?} in {:?} with {attach:?}: \
             {peaks:?}",
            shape.mode
        );
        assert_eq!(peaks.overall, peaks.actions.max(peaks.compensations));
    }
}

#[test]
fn concurrent_mode_compensates_a_saga_of_single_steps_all_at_once() {
    // Four single steps, the last fails: all four are compensated, at once,
    // whatever is attached (every attachment is run before asserting, so a
    // failure says which ones differ).
    let shape = plain(4, CompensationMode::Concurrent);
    assert_eq!(model_peaks(&shape, &model_grouped(&shape)).compensations, 4);
    let observed: Vec<(Attach, Vec<(Exec, Peaks)>)> = [
        Attach::NONE,
        Attach {
            observer: true,
            ..Attach::NONE
        },
        Attach {
            timeouts: true,
            ..Attach::NONE
        },
    ]
    .into_iter()
    .map(|attach| (attach, peaks_everywhere(&shape, attach)))
    .collect();
    let wrong: Vec<(Attach, Exec, usize)> = observed
        .iter()
        .flat_map(|(attach, peaks)| {
            peaks
                .iter()
                .filter(|(_, peaks)| peaks.compensations != 4)
                .map(|(exec, peaks)| (*attach, *exec, peaks.compensations))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "not 4 compensations in flight at once (attachments, executor, peak): {wrong:?}"
    );
}

#[test]
fn concurrent_groups_mode_compensates_single_steps_one_at_a_time() {
    let shape = plain(4, CompensationMode::ConcurrentGroups);
    assert_peaks(&shape, Attach::NONE, 1);
    assert_peaks(&shape, Attach::ALL, 1);
}

#[test]
fn the_sequential_modes_compensate_one_at_a_time_even_in_groups() {
    // Step 0, a group of 3, step 4 fails: five compensations, one at a time.
    for mode in [
        CompensationMode::StopOnError,
        CompensationMode::ContinueOnError,
    ] {
        let mut shape = plain(5, mode);
        shape.blocks = vec![Block::Single, Block::Group(3), Block::Single];
        assert_peaks(&shape, Attach::NONE, 1);
    }
}

#[test]
fn concurrent_groups_mode_compensates_a_group_together_within_its_limit() {
    // Step 0, a group of 4 limited to 1..=4, step 5 fails.
    for limit in 1..=4 {
        let mut shape = plain(6, CompensationMode::ConcurrentGroups);
        shape.blocks = vec![Block::Single, Block::Group(4), Block::Single];
        shape.limits = vec![None, Some(limit), None];
        assert_peaks(&shape, Attach::NONE, limit);
    }
    // No limit: the four members together; in `Concurrent`, all six steps.
    let mut shape = plain(6, CompensationMode::ConcurrentGroups);
    shape.blocks = vec![Block::Single, Block::Group(4), Block::Single];
    assert_peaks(&shape, Attach::NONE, 4);
    shape.mode = CompensationMode::Concurrent;
    assert_peaks(&shape, Attach::NONE, 6);
}

#[test]
fn the_gauge_counts_attempts_from_their_first_poll_to_ready() {
    // Two measured compensations driven by hand: each suspends once before
    // its step is polled, so both are in flight until each is polled again.
    let ledger = Ledger::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut a = pin!(Measured::new(
        &ledger,
        support::recording_step(&ledger, 0, 0, false, false),
        None
    ));
    let mut b = Box::pin(Measured::new(
        &ledger,
        support::recording_step(&ledger, 1, 1, false, false),
        None,
    ));
    assert!(a.as_mut().poll_action(&mut cx).is_ready());
    assert!(b.as_mut().poll_action(&mut cx).is_pending());
    assert_eq!(ledger.in_flight(), (1, 0));
    assert!(b.as_mut().poll_action(&mut cx).is_ready());
    assert_eq!(ledger.in_flight(), (0, 0));
    assert!(a.as_mut().poll_compensate(&mut cx).is_pending());
    assert!(b.as_mut().poll_compensate(&mut cx).is_pending());
    assert_eq!(ledger.in_flight(), (0, 2));
    assert_eq!(ledger.undone(), Vec::<usize>::new());
    assert_eq!(a.as_mut().poll_compensate(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(ledger.in_flight(), (0, 1));
    // `b` suspends once more (its own yield), then is cancelled.
    assert!(b.as_mut().poll_compensate(&mut cx).is_pending());
    b.as_mut().cancel();
    assert_eq!(ledger.in_flight(), (0, 0));
    assert_eq!(
        ledger.peaks(),
        Peaks {
            actions: 1,
            compensations: 2,
            overall: 2
        }
    );
    // A new attempt is counted afresh, and a dropped one ends.
    assert!(b.as_mut().poll_compensate(&mut cx).is_pending());
    assert_eq!(ledger.in_flight(), (0, 1));
    drop(b);
    assert_eq!(ledger.in_flight(), (0, 0));
    assert_eq!(ledger.take_peaks().compensations, 2);
    assert_eq!(ledger.peaks(), Peaks::default());
}

#[test]
fn the_peak_check_notices_a_wrong_prediction() {
    // Not vacuous: shapes with groups run in one mode do not match the peaks
    // the model predicts for them in another mode, whenever those differ.
    let mut sensitive = 0;
    let mut shape = plain(6, CompensationMode::ConcurrentGroups);
    shape.blocks = vec![Block::Single, Block::Group(3), Block::Group(2)];
    for fail_at in 0..6 {
        for undo_mask in [0u32, 0b10_0101] {
            for (mode, other) in [
                (
                    CompensationMode::ConcurrentGroups,
                    CompensationMode::Concurrent,
                ),
                (
                    CompensationMode::ConcurrentGroups,
                    CompensationMode::StopOnError,
                ),
                (
                    CompensationMode::ContinueOnError,
                    CompensationMode::ConcurrentGroups,
                ),
            ] {
                for (i, step) in shape.steps.iter_mut().enumerate() {
                    step.action_fails = i == fail_at;
                    step.undo_fails = undo_mask & (1 << i) != 0;
                }
                shape.mode = mode;
                let mut wrong = shape.clone();
                wrong.mode = other;
                let wrong = model_peaks(&wrong, &model_grouped(&shape));
                if wrong == model_peaks(&shape, &model_grouped(&shape)) {
                    continue;
                }
                sensitive += 1;
                let observed = support::block_on(run_traced(&shape, Attach::NONE, None)).peaks;
                assert_ne!(observed, wrong, "{shape:?} predicted as if in {other:?}");
            }
        }
    }
    assert!(sensitive >= 20, "only {sensitive} sensitive cases");
}
