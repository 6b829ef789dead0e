//! Crash at every write point, for flows: a flow whose steps read the
//! values before them (two steps, a parallel group of two members reading
//! the second step's value, and a last step reading the group's), in every
//! failure shape, loses power at each flush of its journal (every record
//! not yet flushed is lost, the run dropped where it stood), is built again
//! and resumed from what was durable, and may lose power again at each
//! flush of the resumed run. A world outside the flow checks:
//!
//! - every flow ends committed, compensated, or stuck with a reason;
//!   committed: every step applied, and the result is the uncrashed run's;
//!   compensated: nothing left applied; stuck: only what the failing
//!   compensation left;
//! - every action reads the values the actions before it returned, also
//!   after a restart (they come from the journal: a rebuilt flow's actions
//!   tag their values with the process they ran in, so a value recomputed
//!   instead of restored is seen);
//! - every compensation of an action that succeeded receives the value it
//!   returned (one cut short by a crash receives `None`);
//! - no compensation for an action that never started, and no action runs
//!   more often than its retry policy allows.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use saga_core::journal::{
    DurableError, Event, MemoryJournal, Outcome, Record, Refused, SagaState, replay,
};
use saga_core::{CompensationMode, Flow, Retry, SagaBuilder};

const STEPS: usize = 5;

#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    fails: Option<usize>,
    flaky: Option<usize>,
    compensation_fails: Option<usize>,
    attempts: u32,
    mode: CompensationMode,
}

impl Shape {
    fn new(name: &'static str) -> Self {
        Shape {
            name,
            fails: None,
            flaky: None,
            compensation_fails: None,
            attempts: 1,
            mode: CompensationMode::StopOnError,
        }
    }
}

#[derive(Default, Debug, Clone)]
struct World {
    // Which process (run of `drive`) this is: values carry it.
    process: u32,
    action_runs: BTreeMap<usize, u32>,
    // What each step's last successful action returned.
    returned: BTreeMap<usize, String>,
    // What is applied now (a compensation that ran removed it).
    applied: BTreeMap<usize, String>,
    wrong: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

/// What step `index` returns, having read `before` (what it reads must be
/// what the steps before it returned in whichever process ran them).
async fn act(world: Shared, shape: Shape, index: usize, before: String) -> Result<String, String> {
    let (runs, process) = {
        let mut world = world.lock().unwrap();
        let returned = |step: usize| world.returned.get(&step).cloned().unwrap_or_default();
        let expected = match index {
            0 => String::from("7"),
            1 => returned(0),
            2 | 3 => returned(1),
            _ => format!("{}+{}", returned(2), returned(3)),
        };
        if before != expected {
            world.wrong.push(format!(
                "step {index} read {before:?}, the steps before it returned {expected:?}"
            ));
        }
        let runs = world.action_runs.entry(index).or_default();
        *runs += 1;
        (*runs, world.process)
    };
    smol::future::yield_now().await;
    if shape.fails == Some(index) || (shape.flaky == Some(index) && runs == 1) {
        return Err(format!("step {index} refused"));
    }
    let value = format!("{before}|{index}@{process}");
    let mut world = world.lock().unwrap();
    world.returned.insert(index, value.clone());
    world.applied.insert(index, value.clone());
    Ok(value)
}

/// Undoes step `index`, given the value its action returned (`None` when
/// it failed or was cut short).
async fn undo(
    world: Shared,
    shape: Shape,
    index: usize,
    value: Option<String>,
) -> Result<(), String> {
    let mut world = world.lock().unwrap();
    if !world.action_runs.contains_key(&index) {
        world
            .wrong
            .push(format!("step {index} compensated, never started"));
    }
    // A compensation may run again (a crash lost its outcome): it always
    // receives the value its action returned.
    if let Some(value) = &value
        && world.returned.get(&index) != Some(value)
    {
        let returned = world.returned.get(&index).cloned();
        world.wrong.push(format!(
            "step {index} compensated with {value:?}, its action returned {returned:?}"
        ));
    }
    if shape.compensation_fails == Some(index) {
        return Err(format!("undo {index} refused"));
    }
    world.applied.remove(&index);
    Ok(())
}

type Values = (
    (
        ((u32, Option<String>), Option<String>),
        (Option<String>, Option<String>),
    ),
    Option<String>,
);
type Trip = Flow<String, u32, String, Values>;

fn build(shape: Shape, world: &Shared) -> Trip {
    let w = world.clone();
    let (w0, w1, w2, w3, w4) = (w.clone(), w.clone(), w.clone(), w.clone(), w.clone());
    let (u0, u1, u2, u3, u4) = (w.clone(), w.clone(), w.clone(), w.clone(), w);
    SagaBuilder::new()
        .action_retry(Retry::attempts(shape.attempts))
        .compensation_mode(shape.mode)
        .input::<u32>()
        .then_option(
            move |n: &u32| act(w0.clone(), shape, 0, n.to_string()),
            move |(_, value): (&u32, Option<&String>)| undo(u0.clone(), shape, 0, value.cloned()),
        )
        .saved()
        .then_option(
            move |(_, a): (&u32, &String)| act(w1.clone(), shape, 1, a.clone()),
            move |(_, value): ((&u32, &String), Option<&String>)| {
                undo(u1.clone(), shape, 1, value.cloned())
            },
        )
        .saved()
        .parallel(|group| {
            group
                .then_option(
                    move |(_, b): ((&u32, &String), &String)| act(w2.clone(), shape, 2, b.clone()),
                    move |(_, value)| undo(u2.clone(), shape, 2, value.cloned()),
                )
                .saved()
                .then_option(
                    move |(_, b): ((&u32, &String), &String)| act(w3.clone(), shape, 3, b.clone()),
                    move |(_, value)| undo(u3.clone(), shape, 3, value.cloned()),
                )
                .saved()
        })
        .then_option(
            move |(_, (c, d)): (_, (&String, &String))| {
                act(w4.clone(), shape, 4, format!("{c}+{d}"))
            },
            move |(_, value)| undo(u4.clone(), shape, 4, value.cloned()),
        )
        .saved()
        .build_with(|(_, last)| last)
}

fn shapes() -> Vec<Shape> {
    let mut shapes = vec![Shape::new("success")];
    for step in 0..STEPS {
        shapes.push(Shape {
            fails: Some(step),
            ..Shape::new("a failure")
        });
    }
    shapes.push(Shape {
        fails: Some(4),
        compensation_fails: Some(1),
        ..Shape::new("a failing compensation")
    });
    shapes.push(Shape {
        fails: Some(4),
        compensation_fails: Some(2),
        mode: CompensationMode::ContinueOnError,
        ..Shape::new("a failing member compensation, continued")
    });
    shapes.push(Shape {
        fails: Some(4),
        mode: CompensationMode::Concurrent,
        ..Shape::new("compensated concurrently")
    });
    shapes.push(Shape {
        flaky: Some(3),
        attempts: 3,
        ..Shape::new("retries")
    });
    shapes
}

/// Runs the flow afresh (`records` empty) or resumed from `records`, in a
/// new process of `world`, losing power at flush `crash_at`: whether it
/// crashed, the result of a finished run, and the durable records.
fn drive(
    shape: Shape,
    world: &Shared,
    records: &[Record],
    crash_at: Option<u64>,
) -> (bool, Option<Result<String, String>>, Vec<Record>) {
    world.lock().unwrap().process += 1;
    let mut flow = build(shape, world);
    let mut journal = MemoryJournal::from_records(records.to_vec());
    if let Some(flushes) = crash_at {
        journal.fail_after(flushes);
    }
    let result = if records.is_empty() {
        let run = flow
            .run_journaled(&mut journal, shape.name, 1, 7)
            .expect("every value is saved");
        smol::block_on(run)
    } else {
        let history = replay(records).expect("a durable prefix replays");
        let run = flow
            .resume(&mut journal, &history)
            .expect("the flow is resumable");
        smol::block_on(run)
    };
    let (crashed, result) = match result {
        Err(DurableError::Journal(_)) => (true, None),
        Err(DurableError::Saga(error)) => (false, Some(Err(error.to_string()))),
        Err(other) => panic!("{other}"),
        Ok(result) => (false, Some(Ok(result))),
    };
    journal.lose_power();
    (crashed, result, journal.durable().to_vec())
}

fn fork(world: &Shared) -> Shared {
    Shared::new(Mutex::new(world.lock().unwrap().clone()))
}

fn check(
    shape: Shape,
    world: &World,
    records: &[Record],
    result: &Option<Result<String, String>>,
    clean: (Outcome, usize),
    case: &str,
) {
    let history = replay(records).unwrap_or_else(|error| panic!("{case}: {error}"));
    let SagaState::Finished(end) = history.state() else {
        panic!("{case}: the flow did not finish");
    };
    assert!(world.wrong.is_empty(), "{case}: {:?}", world.wrong);
    for (&step, &runs) in &world.action_runs {
        assert!(
            runs <= shape.attempts,
            "{case}: step {step} ran {runs} times"
        );
    }
    let crash_failed = records.iter().any(|record| {
        matches!(&record.event, Event::ActionFailed { message, .. } if message.contains("crash"))
    });
    match end {
        Outcome::Committed => {
            assert_eq!(world.applied.len(), STEPS, "{case}: {world:?}");
            // The result is the last value, built from every value before
            // it as the actions returned them: one part per step.
            let result = result.clone().expect("a finished run").expect("committed");
            assert_eq!(result, world.applied[&4], "{case}");
            assert_eq!(result.matches('|').count(), clean.1, "{case}: {result}");
        }
        Outcome::Compensated => {
            assert!(world.applied.is_empty(), "{case}: left {:?}", world.applied);
        }
        Outcome::Stuck => {
            let failing = shape
                .compensation_fails
                .expect("stuck only on a failing undo");
            assert!(world.applied.contains_key(&failing), "{case}: {world:?}");
        }
        other => panic!("{case}: {other}"),
    }
    assert!(
        end == clean.0 || (crash_failed && end == Outcome::Compensated),
        "{case}: ended {end}, uncrashed {}",
        clean.0
    );
}

#[test]
fn a_flow_resumed_after_losing_power_at_any_flush_reads_the_values_its_steps_returned() {
    let mut cases = 0;
    for shape in shapes() {
        let world = Shared::default();
        let (crashed, result, records) = drive(shape, &world, &[], None);
        assert!(!crashed);
        let SagaState::Finished(outcome) = replay(&records).unwrap().state() else {
            panic!("{}: unfinished", shape.name);
        };
        let parts = match &result {
            Some(Ok(value)) => value.matches('|').count(),
            _ => 0,
        };
        let clean = (outcome, parts);
        check(
            shape,
            &world.lock().unwrap(),
            &records,
            &result,
            clean,
            shape.name,
        );
        let mut first = 0;
        loop {
            let world = Shared::default();
            let (crashed, _, durable) = drive(shape, &world, &[], Some(first));
            if !crashed {
                break;
            }
            cases += 1;
            if durable.is_empty() {
                assert!(world.lock().unwrap().action_runs.is_empty());
                first += 1;
                continue;
            }
            let mut second = 0;
            loop {
                let case = format!("{}, power lost at flush {first}, then {second}", shape.name);
                let world = fork(&world);
                let (crashed, mut result, mut last) = drive(shape, &world, &durable, Some(second));
                if crashed {
                    cases += 1;
                    let from = if last.len() > durable.len() {
                        last.clone()
                    } else {
                        durable.clone()
                    };
                    let (crashed, finished_result, finished) = drive(shape, &world, &from, None);
                    assert!(!crashed, "{case}");
                    (result, last) = (finished_result, finished);
                }
                check(shape, &world.lock().unwrap(), &last, &result, clean, &case);
                if !crashed {
                    break;
                }
                second += 1;
            }
            first += 1;
        }
        assert!(first >= 3, "{}: {first} flushes", shape.name);
    }
    println!("flow crash cases: {cases}");
    assert!(cases > 100, "{cases} cases");
}

#[test]
fn a_flow_step_that_is_not_saved_refuses_a_journaled_run() {
    let mut flow = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n + 1) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .then(
            |(_, m): (&u32, &u32)| {
                let m = *m;
                async move { Ok::<_, String>(m + 1) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_eq!(flow.unsaved_outputs().collect::<Vec<_>>(), [1]);
    let mut journal = MemoryJournal::new();
    let refused = flow.run_journaled(&mut journal, "pair", 1, 1).unwrap_err();
    assert_eq!(refused, Refused::Unsaved { step: 1 });
    assert!(journal.durable().is_empty() && journal.pending().is_empty());
}

#[test]
fn a_journal_whose_parameters_are_not_the_flows_input_is_refused() {
    let world = Shared::default();
    let shape = Shape::new("success");
    let (_, _, mut records) = drive(shape, &world, &[], Some(2));
    assert!(!records.is_empty());
    let Event::Created { parameters, .. } = &mut records[0].event else {
        panic!("the first record creates the saga");
    };
    parameters.truncate(1);
    let history = replay(&records).unwrap();
    let mut flow = build(shape, &world);
    let mut journal = MemoryJournal::from_records(records.clone());
    let refused = flow.resume(&mut journal, &history).unwrap_err();
    assert!(matches!(refused, Refused::Parameters(_)), "{refused:?}");
    assert!(refused.to_string().contains("parameters"), "{refused}");
    assert_eq!(journal.durable().len(), records.len());
    assert!(journal.pending().is_empty());
}

#[test]
fn saving_a_flow_steps_value_changes_its_fingerprint() {
    // The fingerprint sees which steps save a value: a flow step that
    // starts saving its value is a new shape.
    let saved = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n) }
            },
            |_| async { Ok(()) },
        )
        .saved()
        .build();
    let unsaved = SagaBuilder::new()
        .input::<u32>()
        .then(
            |n: &u32| {
                let n = *n;
                async move { Ok::<_, String>(n) }
            },
            |_| async { Ok(()) },
        )
        .build();
    assert_ne!(saved.fingerprint(), unsaved.fingerprint());
}
