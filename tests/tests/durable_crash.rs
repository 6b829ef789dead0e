//! Crash at every write point, in process: for each saga shape (success,
//! a failure at each step, a failing compensation, a parallel group,
//! retries), the run's journal loses power at its k-th flush (every record
//! not yet flushed is lost, and the run is dropped where it stood), the saga
//! is built again and resumed from what was durable; and the resumed run
//! loses power again at each of its own flushes, and is resumed once more.
//! A world outside the saga (a ledger keyed by step, as a downstream system
//! keyed by the saga id and step would keep it) checks the books:
//!
//! - every saga ends committed, compensated, or stuck (with its message);
//! - committed: every step applied; compensated: nothing left applied;
//!   stuck: only what the failed compensation left;
//! - no compensation runs for a step whose action never started, and each
//!   compensation of an action that succeeded receives the value it
//!   returned (one cut short by a crash receives `None`, and undoes by its
//!   key);
//! - an action runs at most as many times as its retry policy allows
//!   attempts (the write-ahead gate means no attempt runs unrecorded, and a
//!   resumed run numbers its attempts after those recorded);
//! - the outcome is the uncrashed run's, or `Compensated` when a crash cut
//!   short an action that its policy does not allow to run again.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use saga_core::journal::{
    DurableError, Event, MemoryJournal, Outcome, Record, SagaState, Start, replay,
};
use saga_core::{CompensationMode, Retry, Saga, SagaBuilder, TypedStep};

#[derive(Clone, Debug)]
struct Shape {
    name: &'static str,
    steps: usize,
    group: Option<Range<usize>>,
    // This step's action always fails.
    fails: Option<usize>,
    // This step's action fails on its first run ever, then succeeds.
    flaky: Option<usize>,
    // This step's compensation always fails.
    compensation_fails: Option<usize>,
    attempts: u32,
    mode: CompensationMode,
}

impl Shape {
    fn new(name: &'static str, steps: usize) -> Self {
        Shape {
            name,
            steps,
            group: None,
            fails: None,
            flaky: None,
            compensation_fails: None,
            attempts: 1,
            mode: CompensationMode::StopOnError,
        }
    }
}

#[derive(Default, Debug)]
struct World {
    action_runs: BTreeMap<usize, u32>,
    compensation_runs: BTreeMap<usize, u32>,
    applied: BTreeSet<usize>,
    wrong: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn build(shape: &Shape, world: &Shared) -> Saga<String> {
    let step = |index: usize| {
        let (world, undo_world, shape) = (world.clone(), world.clone(), shape.clone());
        let undo_fails = shape.compensation_fails == Some(index);
        TypedStep::by_option(
            move || {
                let (world, shape) = (world.clone(), shape.clone());
                async move {
                    let runs = {
                        let mut world = world.lock().unwrap();
                        let runs = world.action_runs.entry(index).or_default();
                        *runs += 1;
                        *runs
                    };
                    smol::future::yield_now().await;
                    if shape.fails == Some(index) || (shape.flaky == Some(index) && runs == 1) {
                        return Err(format!("step {index} refused"));
                    }
                    world.lock().unwrap().applied.insert(index);
                    Ok(format!("value {index}"))
                }
            },
            // `None`: the action was cut short (by a crash, here) and may
            // have happened; the undo goes by the step's key.
            move |value: Option<String>| {
                let world = undo_world.clone();
                let fails = undo_fails;
                async move {
                    let mut world = world.lock().unwrap();
                    *world.compensation_runs.entry(index).or_default() += 1;
                    if !world.action_runs.contains_key(&index) {
                        world
                            .wrong
                            .push(format!("step {index} compensated, never started"));
                    }
                    if value
                        .as_ref()
                        .is_some_and(|value| *value != format!("value {index}"))
                    {
                        world
                            .wrong
                            .push(format!("step {index} compensated with {value:?}"));
                    }
                    if fails {
                        return Err(format!("undo {index} refused"));
                    }
                    world.applied.remove(&index);
                    Ok(())
                }
            },
        )
        .saved()
    };
    let mut builder = SagaBuilder::new()
        .action_retry(Retry::attempts(shape.attempts))
        .compensation_mode(shape.mode);
    let mut index = 0;
    while index < shape.steps {
        match &shape.group {
            Some(group) if group.start == index => {
                let members = group.clone();
                builder = builder.parallel(|mut parallel| {
                    for member in members {
                        parallel = parallel.step(step(member));
                    }
                    parallel
                });
                index = group.end;
            }
            _ => {
                builder = builder.step(step(index));
                index += 1;
            }
        }
    }
    builder.build()
}

fn shapes() -> Vec<Shape> {
    let mut shapes = vec![Shape::new("success", 3)];
    for step in 0..3 {
        shapes.push(Shape {
            fails: Some(step),
            ..Shape::new("a failure", 3)
        });
    }
    shapes.push(Shape {
        fails: Some(2),
        compensation_fails: Some(0),
        ..Shape::new("a failing compensation", 3)
    });
    shapes.push(Shape {
        fails: Some(3),
        compensation_fails: Some(1),
        mode: CompensationMode::ContinueOnError,
        ..Shape::new("a failing compensation, continued", 4)
    });
    shapes.push(Shape {
        group: Some(1..4),
        ..Shape::new("a parallel group", 5)
    });
    shapes.push(Shape {
        group: Some(1..4),
        fails: Some(2),
        ..Shape::new("a failing group member", 5)
    });
    shapes.push(Shape {
        group: Some(1..4),
        fails: Some(4),
        mode: CompensationMode::Concurrent,
        ..Shape::new("a failure after a group, compensated concurrently", 5)
    });
    shapes.push(Shape {
        flaky: Some(1),
        attempts: 3,
        ..Shape::new("retries", 3)
    });
    shapes.push(Shape {
        fails: Some(1),
        attempts: 2,
        ..Shape::new("retries that run out", 3)
    });
    shapes
}

/// Runs the saga afresh (`records` empty) or resumed from `records`, its
/// journal failing at flush `crash_at` (the power is lost there): whether
/// it crashed, and the records that are durable after it.
fn drive(
    shape: &Shape,
    world: &Shared,
    records: &[Record],
    crash_at: Option<u64>,
) -> (bool, Vec<Record>) {
    let mut saga = build(shape, world);
    let mut journal = MemoryJournal::from_records(records.to_vec());
    if let Some(flushes) = crash_at {
        journal.fail_after(flushes);
    }
    let result = if records.is_empty() {
        let run = saga
            .run_journaled(&mut journal, Start::new(shape.name, 1, vec![]))
            .expect("no step keeps an unsaved value");
        smol::block_on(run)
    } else {
        let history = replay(records).expect("a durable prefix replays");
        let run = saga
            .resume(&mut journal, &history)
            .expect("the saga is resumable");
        smol::block_on(run)
    };
    let crashed = matches!(result, Err(DurableError::Journal(_)));
    journal.lose_power();
    (crashed, journal.durable().to_vec())
}

/// The world as it stands, for a run that goes on from it.
fn fork(world: &Shared) -> Shared {
    let world = world.lock().unwrap();
    Shared::new(Mutex::new(World {
        action_runs: world.action_runs.clone(),
        compensation_runs: world.compensation_runs.clone(),
        applied: world.applied.clone(),
        wrong: world.wrong.clone(),
    }))
}

fn outcome(records: &[Record]) -> (Outcome, String) {
    match &records.last().expect("a finished journal").event {
        Event::Finished { outcome, message } => (*outcome, message.clone()),
        other => panic!("the journal ends with {other:?}"),
    }
}

fn check(shape: &Shape, world: &World, records: &[Record], clean: Outcome, case: &str) {
    let history = replay(records).unwrap_or_else(|error| panic!("{case}: {error}"));
    let SagaState::Finished(end) = history.state() else {
        panic!("{case}: the saga did not finish");
    };
    let (_, message) = outcome(records);
    assert!(world.wrong.is_empty(), "{case}: {:?}", world.wrong);
    for (&step, &runs) in &world.action_runs {
        assert!(
            runs <= shape.attempts,
            "{case}: step {step}'s action ran {runs} times, {} allowed",
            shape.attempts
        );
    }
    let crash_failed = records.iter().any(|record| {
        matches!(&record.event, Event::ActionFailed { message, .. } if message.contains("crash"))
    });
    match end {
        Outcome::Committed => {
            assert_eq!(world.applied.len(), shape.steps, "{case}: {world:?}");
            assert!(message.is_empty());
        }
        Outcome::Compensated => {
            assert!(world.applied.is_empty(), "{case}: left {:?}", world.applied);
        }
        Outcome::Stuck => {
            assert!(!message.is_empty(), "{case}: stuck without a reason");
            let Some(failing) = shape.compensation_fails else {
                panic!("{case}: stuck: {message}");
            };
            assert!(world.applied.contains(&failing), "{case}: {world:?}");
        }
        Outcome::Abandoned => panic!("{case}: nobody abandoned it"),
        _ => panic!("{case}: an unknown outcome"),
    }
    assert!(
        end == clean || (crash_failed && end == Outcome::Compensated),
        "{case}: ended {end}, uncrashed {clean}, crash-failed: {crash_failed}"
    );
}

#[test]
fn a_saga_resumed_after_losing_power_at_any_flush_finishes_with_the_books_right() {
    let mut cases = 0;
    for shape in shapes() {
        // The uncrashed run: its outcome, and how many flushes it makes.
        let world = Shared::default();
        let (crashed, records) = drive(&shape, &world, &[], None);
        assert!(!crashed);
        let (clean, _) = outcome(&records);
        check(&shape, &world.lock().unwrap(), &records, clean, shape.name);
        let mut first = 0;
        loop {
            let world = Shared::default();
            let (crashed, durable) = drive(&shape, &world, &[], Some(first));
            if !crashed {
                break;
            }
            cases += 1;
            if durable.is_empty() {
                // Power lost before the first record was durable: the saga
                // never started, and nothing ran.
                assert!(world.lock().unwrap().action_runs.is_empty());
                first += 1;
                continue;
            }
            // The resumed run loses power at each of its flushes in turn
            // (and is resumed once more), then once not at all.
            let mut second = 0;
            loop {
                let case = format!("{}, power lost at flush {first}, then {second}", shape.name);
                let world = fork(&world);
                let (crashed, mut last) = drive(&shape, &world, &durable, Some(second));
                if crashed {
                    cases += 1;
                    if last.len() > durable.len() {
                        let (crashed, finished) = drive(&shape, &world, &last, None);
                        assert!(!crashed);
                        last = finished;
                    } else {
                        // Nothing more became durable: resume from before.
                        let (_, finished) = drive(&shape, &world, &durable, None);
                        last = finished;
                    }
                }
                check(&shape, &world.lock().unwrap(), &last, clean, &case);
                if !crashed {
                    break;
                }
                second += 1;
            }
            first += 1;
        }
        assert!(first >= 2, "{}: {first} flushes", shape.name);
    }
    println!("crash cases: {cases}");
    assert!(cases > 200, "{cases} cases");
}
