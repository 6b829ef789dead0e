//! Attachments do not change behaviour: every shape runs twice, plain and
//! with a counting `Observer` (`SagaBuilder::observer`), timeouts that never
//! fire (a sleeper that never wakes, with `action_timeout`,
//! `compensation_timeout` and `saga_timeout`) and `Run::abortable` with a
//! handle, and the two runs must have the same step log, the same
//! `SagaError` (`==`, every accessor, `Display`) and the same peak
//! concurrency (`support::Measured`). When they differ, each attachment is
//! run alone too, and the message says which ones change the run.
//!
//! The attached run is also checked to have really been attached: the
//! observer saw one run start and finish, one `action_started` per action
//! attempt and one `compensation_started` per compensation attempt in the
//! log, and the sleeper was asked for at least one sleep.
//!
//! Shapes, each in the four compensation modes, each on all six executors:
//!
//! - **sequential**: 1 to 5 pysagas-form steps x every failing action or
//!   none x every subset of failing compensations x both failed-step
//!   policies: 640 shapes;
//! - **grouped**: every split of 2 to 4 steps into single steps and groups
//!   of 2 or 3 (with a group) x no failure, one failing single step or every
//!   non-empty subset of one group's members x every subset of failing
//!   compensations x both failed-step policies: 1,696 shapes;
//! - **classifier**: a failing step of each of the 7 kinds at each position
//!   of 1 to 6 steps x `Compensate` / `Retry` / `Propagate` x its own
//!   compensation failing or not: 882 shapes;
//! - **retries**: a step, a group of 2 whose members succeed, fail once,
//!   twice or always, a last step failing or not x action attempts unset, 2,
//!   3 x compensations failing their first 0 to 2 attempts x compensation
//!   attempts unset, 2, 3: 864 shapes;
//! - **limited groups**: a step, a group of 3 limited to 1 or 2, a failing
//!   step, compensations failing varied: 16 shapes;
//! - **abort points**: an abort as one step's first action attempt starts,
//!   at every step of 1 to 4 single steps and of a step, a group of 2 or 3
//!   and a step, with failures and retries varied: 134 shapes. Both runs
//!   are abortable; where the rules are plain about it (the aborting step's
//!   block is not the last and nothing fails), the run must fail as aborted,
//!   and no later block may start.
//!
//! That is 4,232 shapes, 16,928 cases, 33,856 runs per executor.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use saga_core::{CompensationMode, Recovery, SagaError};
use support::{
    Attach, Block, Event, Exec, Flaky, GroupShape, KINDS, Kind, MODES, Shape, StepSpec, TestError,
    Trace, run_traced, splits,
};

/// A shape, and the step whose first action attempt aborts the run.
#[derive(Debug, Clone)]
struct Case {
    shape: GroupShape,
    abort_at: Option<usize>,
}

/// Each shape in the four modes.
fn in_every_mode(shapes: Vec<(GroupShape, Option<usize>)>) -> Vec<Case> {
    shapes
        .into_iter()
        .flat_map(|(shape, abort_at)| {
            MODES.into_iter().map(move |mode| Case {
                shape: GroupShape {
                    mode,
                    ..shape.clone()
                },
                abort_at,
            })
        })
        .collect()
}

fn singles(steps: Vec<StepSpec>, classifier: bool) -> GroupShape {
    GroupShape::sequential(&Shape {
        steps,
        mode: CompensationMode::StopOnError,
        classifier,
    })
}

fn sequential_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    for n in 1..=5usize {
        for fail_at in std::iter::once(None).chain((0..n).map(Some)) {
            for undo_mask in 0..(1u32 << n) {
                for compensate_failed in [true, false] {
                    let case = shapes.len();
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
                    shapes.push((singles(steps, false), None));
                }
            }
        }
    }
    shapes
}

fn grouped_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    for n in 2..=4usize {
        for blocks in splits(n) {
            if blocks.iter().all(|&block| block == Block::Single) {
                continue;
            }
            // No failure, each single step, each non-empty subset of a group.
            let mut masks = vec![0u32];
            let mut start = 0;
            for &block in &blocks {
                let w = block.width();
                for subset in 1..(1u32 << w) {
                    masks.push(subset << start);
                }
                start += w;
            }
            for action_mask in masks {
                for undo_mask in 0..(1u32 << n) {
                    for compensate_failed in [true, false] {
                        let case = shapes.len();
                        let steps = (0..n)
                            .map(|i| StepSpec {
                                kind: Kind::Fn { compensate_failed },
                                action_fails: action_mask & (1 << i) != 0,
                                undo_fails: undo_mask & (1 << i) != 0,
                                recovery: Recovery::Compensate,
                                action_yields: ((case + i) % 3) as u32,
                                undo_yields: ((case + 2 * i + 1) % 3) as u32,
                            })
                            .collect();
                        shapes.push((
                            GroupShape {
                                blocks: blocks.clone(),
                                ..singles(steps, false)
                            },
                            None,
                        ));
                    }
                }
            }
        }
    }
    shapes
}

fn classifier_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    for n in 1..=6usize {
        for fail_at in 0..n {
            for kind in KINDS {
                for recovery in [Recovery::Compensate, Recovery::Retry, Recovery::Propagate] {
                    for own_undo_fails in [false, true] {
                        let case = shapes.len();
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
                        shapes.push((singles(steps, true), None));
                    }
                }
            }
        }
    }
    shapes
}

fn retry_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    let n = 4;
    // Each member: 0 = ok, 1 = fails once, 2 = fails twice, 3 = always fails.
    for behaviours in 0..16u32 {
        for action_attempts in [None, Some(2), Some(3)] {
            for undo_flaky in 0..3u32 {
                for compensation_attempts in [None, Some(2), Some(3)] {
                    for last_fails in [false, true] {
                        let case = shapes.len();
                        let mut steps = Vec::new();
                        let mut flaky = Vec::new();
                        for i in 0..n {
                            let behaviour = if (1..=2).contains(&i) {
                                behaviours / 4u32.pow((i - 1) as u32) % 4
                            } else if i == n - 1 && last_fails {
                                3
                            } else {
                                0
                            };
                            steps.push(StepSpec {
                                kind: KINDS[(case + i) % KINDS.len()],
                                action_fails: behaviour == 3,
                                undo_fails: false,
                                recovery: Recovery::Compensate,
                                action_yields: ((case + i) % 3) as u32,
                                undo_yields: ((case + i + 1) % 2) as u32,
                            });
                            flaky.push(Flaky {
                                action: behaviour % 3,
                                undo: undo_flaky,
                            });
                        }
                        shapes.push((
                            GroupShape {
                                steps,
                                blocks: vec![Block::Single, Block::Group(2), Block::Single],
                                flaky,
                                limits: Vec::new(),
                                action_attempts,
                                compensation_attempts,
                                mode: CompensationMode::StopOnError,
                                classifier: false,
                            },
                            None,
                        ));
                    }
                }
            }
        }
    }
    shapes
}

fn limited_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    for limit in [1, 2] {
        for variant in 0..8usize {
            let steps = (0..5)
                .map(|i| StepSpec {
                    kind: KINDS[(variant + i) % KINDS.len()],
                    action_fails: i == 4,
                    undo_fails: (variant + i) % 4 == 0,
                    action_yields: if (1..=3).contains(&i) { 0 } else { 1 },
                    undo_yields: ((variant + i) % 3) as u32,
                    ..StepSpec::ok()
                })
                .collect();
            shapes.push((
                GroupShape {
                    blocks: vec![Block::Single, Block::Group(3), Block::Single],
                    limits: vec![None, Some(limit), None],
                    compensation_attempts: [None, Some(2)][variant % 2],
                    ..singles(steps, false)
                },
                None,
            ));
        }
    }
    shapes
}

fn abort_shapes() -> Vec<(GroupShape, Option<usize>)> {
    let mut shapes = Vec::new();
    // 1 to 4 single steps; the last fails or not; compensations failing
    // varied; an abort at every step.
    for n in 1..=4usize {
        for last_fails in [false, true] {
            for undo_variant in 0..4usize {
                for abort_at in 0..n {
                    let case = shapes.len();
                    let steps = (0..n)
                        .map(|i| StepSpec {
                            kind: KINDS[(case + i) % KINDS.len()],
                            action_fails: last_fails && i == n - 1,
                            undo_fails: match undo_variant {
                                0 => false,
                                1 => true,
                                2 => i % 2 == 0,
                                _ => i == 0,
                            },
                            action_yields: ((case + i) % 3) as u32,
                            undo_yields: ((case + i + 1) % 3) as u32,
                            ..StepSpec::ok()
                        })
                        .collect();
                    shapes.push((singles(steps, false), Some(abort_at)));
                }
            }
        }
    }
    // A step, a group of 2 or 3, a step; no failure, the last step failing,
    // or the group's last member failing (once, with 2 attempts, or
    // always); an abort at every step.
    for w in [2usize, 3] {
        let n = w + 2;
        for failure in 0..3usize {
            for undo_fails in [false, true] {
                for abort_at in 0..n {
                    let case = shapes.len();
                    let failing = match failure {
                        0 => None,
                        1 => Some(n - 1),
                        _ => Some(w),
                    };
                    let steps = (0..n)
                        .map(|i| StepSpec {
                            kind: KINDS[(case + i) % KINDS.len()],
                            action_fails: failing == Some(i) && case % 2 == 0,
                            undo_fails: undo_fails && i % 2 == 1,
                            action_yields: ((case + i) % 3) as u32,
                            undo_yields: ((case + i + 1) % 3) as u32,
                            ..StepSpec::ok()
                        })
                        .collect();
                    let flaky = (0..n)
                        .map(|i| Flaky {
                            action: u32::from(failing == Some(i) && case % 2 == 1),
                            undo: 0,
                        })
                        .collect();
                    shapes.push((
                        GroupShape {
                            blocks: vec![Block::Single, Block::Group(w), Block::Single],
                            flaky,
                            action_attempts: Some(2),
                            ..singles(steps, false)
                        },
                        Some(abort_at),
                    ));
                }
            }
        }
    }
    shapes
}

fn all_cases() -> Vec<Case> {
    let shapes: Vec<_> = [
        sequential_shapes(),
        grouped_shapes(),
        classifier_shapes(),
        retry_shapes(),
        limited_shapes(),
        abort_shapes(),
    ]
    .into_iter()
    .flatten()
    .collect();
    in_every_mode(shapes)
}

/// What differs between two runs of the same shape.
fn differences(plain: &Trace, other: &Trace) -> Vec<String> {
    let mut differ = Vec::new();
    if plain.events != other.events {
        differ.push("the step logs".to_owned());
    }
    let display =
        |result: &Result<(), SagaError<TestError>>| result.as_ref().err().map(ToString::to_string);
    if plain.result != other.result {
        differ.push(format!(
            "the reports ({:?} / {:?})",
            plain.result, other.result
        ));
    }
    let accessors = |result: &Result<(), SagaError<TestError>>| {
        result.as_ref().err().map(|error| {
            (
                *error.error(),
                error.failed_step(),
                error.failed_step_name().map(str::to_owned),
                (error.handling(), error.reason()),
                error.attempts(),
                error.timed_out(),
                error.aborted(),
                error.is_fully_compensated(),
                error.compensated_count(),
                error.uncompensated_steps().collect::<Vec<_>>(),
                error
                    .concurrent_failures()
                    .iter()
                    .map(|f| (f.step(), *f.error(), f.attempts(), f.timed_out()))
                    .collect::<Vec<_>>(),
                error
                    .compensation_errors()
                    .iter()
                    .map(|f| (f.step(), *f.error(), f.attempts(), f.timed_out()))
                    .collect::<Vec<_>>(),
            )
        })
    };
    if accessors(&plain.result) != accessors(&other.result) {
        differ.push("the report's accessors".to_owned());
    }
    if display(&plain.result) != display(&other.result) {
        differ.push(format!(
            "the reports' Display ({:?} / {:?})",
            display(&plain.result),
            display(&other.result)
        ));
    }
    if plain.peaks != other.peaks {
        differ.push(format!(
            "the peak concurrency ({:?} / {:?})",
            plain.peaks, other.peaks
        ));
    }
    differ
}

/// The block of step `step`.
fn block_of(shape: &GroupShape, step: usize) -> usize {
    shape
        .blocks_ranges()
        .iter()
        .position(|(range, _)| range.contains(&step))
        .expect("a step of the shape")
}

/// What the rules say about an abort point that was reached: no later block
/// starts; and when the aborting step's block is not the last and no action
/// fails before or in it, the run fails as aborted.
fn check_abort(case: &Case, trace: &Trace) -> Result<(), String> {
    let Some(at) = case.abort_at else {
        return Ok(());
    };
    if !trace.events.contains(&Event::Action(at)) {
        return Ok(());
    }
    let shape = &case.shape;
    let block = block_of(shape, at);
    let later: Vec<usize> = trace
        .events
        .iter()
        .filter_map(|event| match *event {
            Event::Action(step) if block_of(shape, step) > block => Some(step),
            _ => None,
        })
        .collect();
    if !later.is_empty() {
        return Err(format!(
            "steps {later:?} started after the abort at step {at}"
        ));
    }
    let ranges = shape.blocks_ranges();
    let fails =
        |i: usize| shape.steps[i].action_fails || shape.flaky.get(i).is_some_and(|f| f.action > 0);
    let plain = block + 1 < ranges.len() && !(0..ranges[block].0.end).any(fails);
    if plain {
        match &trace.result {
            Err(error) if error.aborted() && *error.error() == TestError::Aborted => {}
            other => return Err(format!("aborted at step {at}, the run returned {other:?}")),
        }
    }
    Ok(())
}

/// The attached run was attached: its observer saw the run, and its sleeper
/// was asked for a sleep.
fn check_attached(trace: &Trace) -> Result<(), String> {
    let count = |wanted: fn(&Event) -> bool| trace.events.iter().filter(|e| wanted(e)).count();
    let tallied = trace.tallied.expect("an observer");
    let actions = count(|e| matches!(e, Event::Action(_)));
    let undos = count(|e| matches!(e, Event::Undo(_)));
    if (
        tallied.runs_started,
        tallied.runs_finished,
        tallied.actions_started,
        tallied.compensations_started,
    ) != (1, 1, actions, undos)
    {
        return Err(format!(
            "the observer saw {tallied:?} of a run with {actions} action attempts and {undos} \
             compensation attempts"
        ));
    }
    if trace.sleeps == Some(0) {
        return Err("the sleeper was never asked for a sleep".to_owned());
    }
    Ok(())
}

/// Runs `case` plain and with everything attached; `Err` says what differs
/// (and, then, which attachment alone changes the run).
async fn compare(case: &Case) -> Result<(), String> {
    let shape = &case.shape;
    let plain = run_traced(shape, Attach::NONE, case.abort_at).await;
    let attached = run_traced(shape, Attach::ALL, case.abort_at).await;
    let context = |what: String| {
        format!(
            "{what}\nin {:?}, abort at {:?}, shape {shape:#?}\nplain log {:?}\nattached log {:?}",
            shape.mode, case.abort_at, plain.events, attached.events
        )
    };
    for trace in [&plain, &attached] {
        if !trace.violations.is_empty() {
            return Err(context(format!(
                "the engine broke the Step protocol: {:?}",
                trace.violations
            )));
        }
        check_abort(case, trace).map_err(context)?;
    }
    check_attached(&attached).map_err(context)?;
    let differ = differences(&plain, &attached);
    if differ.is_empty() {
        return Ok(());
    }
    let mut alone = Vec::new();
    for (name, attach) in [
        (
            "the observer",
            Attach {
                observer: true,
                ..Attach::NONE
            },
        ),
        (
            "the timeouts",
            Attach {
                timeouts: true,
                ..Attach::NONE
            },
        ),
        (
            "the abort handle",
            Attach {
                abortable: true,
                ..Attach::NONE
            },
        ),
    ] {
        let single = run_traced(shape, attach, case.abort_at).await;
        if !differences(&plain, &single).is_empty() {
            alone.push(name);
        }
    }
    Err(context(format!(
        "attached (plain / attached), {} differ in {:?}; alone, {alone:?} change the run",
        differ.join(", "),
        shape.mode
    )))
}

#[test]
fn attachments_do_not_change_behaviour() {
    let cases = all_cases();
    assert_eq!(
        cases.len(),
        (640 + 1_696 + 882 + 864 + 16 + 134) * MODES.len()
    );
    assert_eq!(cases.len(), 16_928);
    // Every kind of shape is there, and aborts that the rules pin.
    assert!(cases.iter().any(|c| c.shape.classifier));
    assert!(cases.iter().any(|c| !c.shape.limits.is_empty()));
    assert!(
        cases
            .iter()
            .any(|c| c.shape.compensation_attempts.is_some())
    );
    assert!(cases.iter().filter(|c| c.abort_at.is_some()).count() > 500);
    println!(
        "differential: {} cases x 2 runs x {} executors",
        cases.len(),
        Exec::ALL.len()
    );
    // Every executor runs before anything is asserted, so a failure says
    // where (and how often) the runs differ.
    let mut summary = Vec::new();
    let mut first = None;
    for exec in Exec::ALL {
        let run = cases.clone();
        let mut failures: Vec<(usize, String)> = exec.block_on(async move {
            let mut failures = Vec::new();
            for (index, case) in run.iter().enumerate() {
                if let Err(difference) = compare(case).await {
                    failures.push((index, difference));
                }
            }
            failures
        });
        if failures.is_empty() {
            continue;
        }
        let by_mode: Vec<(CompensationMode, usize)> = MODES
            .into_iter()
            .map(|mode| {
                let count = failures
                    .iter()
                    .filter(|(index, _)| cases[*index].shape.mode == mode)
                    .count();
                (mode, count)
            })
            .filter(|&(_, count)| count > 0)
            .collect();
        let groupless = failures
            .iter()
            .filter(|(index, _)| {
                cases[*index]
                    .shape
                    .blocks
                    .iter()
                    .all(|b| *b == Block::Single)
            })
            .count();
        summary.push(format!(
            "{} on {exec:?} (by mode {by_mode:?}; {groupless} of them without a group)",
            failures.len()
        ));
        first.get_or_insert(failures.swap_remove(0).1);
    }
    assert!(
        summary.is_empty(),
        "of {} cases, these behave differently with attachments: {}; the first:\n{}",
        cases.len(),
        summary.join(", "),
        first.unwrap_or_default()
    );
}

#[test]
fn the_differential_notices_a_difference() {
    // Not vacuous: two runs that do differ (a compensation failing in one
    // of them, or another mode) are told apart on every count the test
    // compares.
    let mut shape = singles(
        (0..3)
            .map(|i| StepSpec {
                action_fails: i == 2,
                undo_yields: 1,
                ..StepSpec::ok()
            })
            .collect(),
        false,
    );
    shape.mode = CompensationMode::ContinueOnError;
    let plain = support::block_on(run_traced(&shape, Attach::NONE, None));
    let mut failing = shape.clone();
    failing.steps[0].undo_fails = true;
    let other = support::block_on(run_traced(&failing, Attach::NONE, None));
    let differ = differences(&plain, &other);
    assert!(differ.iter().any(|d| d.starts_with("the reports (")));
    assert!(differ.iter().any(|d| d.starts_with("the reports' Display")));
    assert!(differ.contains(&"the report's accessors".to_owned()));
    // The same compensations, all at once: only the peaks differ.
    let mut together = shape.clone();
    together.blocks = vec![Block::Group(2), Block::Single];
    let grouped = support::block_on(run_traced(&together, Attach::NONE, None));
    together.mode = CompensationMode::ConcurrentGroups;
    let concurrent = support::block_on(run_traced(&together, Attach::NONE, None));
    assert_eq!(grouped.peaks.compensations, 1);
    let differ = differences(&grouped, &concurrent);
    assert!(
        differ.iter().any(|d| d.starts_with("the peak concurrency")),
        "{differ:?}"
    );
    // A run that aborts differs in its log too.
    let aborted = support::block_on(run_traced(&shape, Attach::NONE, Some(1)));
    let differ = differences(&plain, &aborted);
    assert!(differ.contains(&"the step logs".to_owned()), "{differ:?}");
    assert!(
        check_abort(
            &Case {
                shape: shape.clone(),
                abort_at: Some(1)
            },
            &aborted
        )
        .is_ok()
    );
    // The attached run's checks notice a run that was not attached.
    let mut unattached = support::block_on(run_traced(&shape, Attach::ALL, None));
    assert!(check_attached(&unattached).is_ok());
    unattached.sleeps = Some(0);
    assert!(check_attached(&unattached).is_err());
}

/// `shape` with each single step made a parallel group of one member.
fn singles_as_groups(shape: &GroupShape) -> GroupShape {
    let blocks = shape
        .blocks
        .iter()
        .map(|block| match block {
            Block::Single => Block::Group(1),
            group => *group,
        })
        .collect();
    GroupShape {
        blocks,
        ..shape.clone()
    }
}

#[test]
fn single_steps_run_as_groups_of_one_would() {
    // A run of single steps is driven one step at a time in lane 0; a group
    // of one member by the loops that drive members side by side. Both must
    // follow the same rules: the same log, report and peak concurrency for
    // every shape that has a single step, with or without attachments.
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|case| case.shape.blocks.contains(&Block::Single))
        .collect();
    assert!(cases.len() > 10_000, "{} cases", cases.len());
    for exec in [Exec::Noop, Exec::Adversarial] {
        let run = cases.clone();
        let failures: Vec<String> = exec.block_on(async move {
            let mut failures = Vec::new();
            for case in &run {
                let grouped = singles_as_groups(&case.shape);
                for attach in [Attach::NONE, Attach::ALL] {
                    let sequence = run_traced(&case.shape, attach, case.abort_at).await;
                    let groups = run_traced(&grouped, attach, case.abort_at).await;
                    let differ = differences(&sequence, &groups);
                    if !differ.is_empty() {
                        failures.push(format!(
                            "{:?} with {attach:?}: {} differ\n{:#?}",
                            case.shape.mode,
                            differ.join(", "),
                            case
                        ));
                    }
                }
            }
            failures
        });
        assert!(
            failures.is_empty(),
            "{} of {} cases differ on {exec:?}; the first: {}",
            failures.len(),
            cases.len(),
            failures[0]
        );
    }
}
