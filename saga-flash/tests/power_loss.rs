//! Power cuts at every write and every erase of the flash, torn writes and
//! torn erases included: for each saga shape (success, a failure at each
//! step, a failing compensation, a parallel group, retries), a saga runs
//! journaled to a simulated NOR flash that already holds other sagas'
//! records (finished ones, whose sectors get reclaimed during the run, and
//! an unfinished one that must survive everything). The power is cut at
//! write or erase `k` (left not begun, half done, or done in disorder),
//! the device reboots (the flash is mounted again, the saga's records are
//! replayed and the saga resumed with `Saga::resume`), the power is cut
//! again at each write or erase of the resumed run, and the device reboots
//! once more and finishes. After a saga finishes, its device reclaims the
//! flash, and the power may be cut there too. All of it on 5 sectors of
//! 512 bytes written in 4-byte words, and again (second cuts torn one way)
//! on 3 sectors of 1 KiB written in 8-byte words.
//!
//! A world outside the saga (a ledger keyed by step) checks the books:
//!
//! - every saga ends committed, compensated, or stuck with a reason, and
//!   once finished it never looks unfinished again (a reclaim cut short
//!   brings no record back);
//! - committed: every step applied; compensated: nothing left applied;
//!   stuck: the failing compensation's step left applied;
//! - no compensation runs for a step whose action never started, and each
//!   one of an action that succeeded receives the value it returned;
//! - an action runs at most as many times as its retry policy allows;
//! - the unfinished bystander saga's records are intact after every
//!   reboot;
//! - the outcome is the uncut run's, or `Compensated` when a cut stopped an
//!   action that its policy does not allow to run again.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use saga_core::journal::{DurableError, Event, Outcome, Record, SagaId, SagaState, Start, replay};
use saga_core::{CompensationMode, Retry, Saga, SagaBuilder, TypedStep};
use saga_flash::sim::{SimFlash, Tear};
use saga_flash::{Error, FlashStore};

const SAGA: SagaId = SagaId(100);
const BYSTANDER: SagaId = SagaId(7);
const TEARS: [Tear; 3] = [Tear::Before, Tear::Partial, Tear::Noise];

#[derive(Clone, Debug)]
struct Shape {
    name: &'static str,
    steps: usize,
    parallel: Option<Range<usize>>,
    /// This step's action always fails.
    failing: Option<usize>,
    /// This step's action fails the first time it runs, then succeeds.
    flaky: Option<usize>,
    /// This step's compensation always fails.
    failing_undo: Option<usize>,
    attempts: u32,
    mode: CompensationMode,
}

fn shape(name: &'static str, steps: usize) -> Shape {
    Shape {
        name,
        steps,
        parallel: None,
        failing: None,
        flaky: None,
        failing_undo: None,
        attempts: 1,
        mode: CompensationMode::StopOnError,
    }
}

fn shapes() -> Vec<Shape> {
    let mut all = vec![shape("success", 3)];
    all.extend((0..3).map(|step| Shape {
        failing: Some(step),
        ..shape("a failure", 3)
    }));
    all.push(Shape {
        failing: Some(2),
        failing_undo: Some(0),
        ..shape("a failing compensation", 3)
    });
    all.push(Shape {
        failing: Some(3),
        failing_undo: Some(1),
        mode: CompensationMode::ContinueOnError,
        ..shape("a failing compensation, continued", 4)
    });
    all.push(Shape {
        parallel: Some(1..4),
        ..shape("a parallel group", 5)
    });
    all.push(Shape {
        parallel: Some(1..4),
        failing: Some(2),
        ..shape("a failing group member", 5)
    });
    all.push(Shape {
        parallel: Some(1..4),
        failing: Some(4),
        mode: CompensationMode::Concurrent,
        ..shape("a failure after a group, compensated concurrently", 5)
    });
    all.push(Shape {
        flaky: Some(1),
        attempts: 3,
        ..shape("retries", 3)
    });
    all.push(Shape {
        failing: Some(1),
        attempts: 2,
        ..shape("retries that run out", 3)
    });
    all
}

/// The ledger of a downstream system, keyed by step.
#[derive(Clone, Default, Debug)]
struct Ledger {
    actions: BTreeMap<usize, u32>,
    undos: BTreeMap<usize, u32>,
    applied: BTreeSet<usize>,
    wrong: Vec<String>,
}

type World = Arc<Mutex<Ledger>>;

fn fork(world: &World) -> World {
    Arc::new(Mutex::new(world.lock().unwrap().clone()))
}

fn build(shape: &Shape, world: &World) -> Saga<String> {
    let step = |index: usize| {
        let (act_world, undo_world) = (world.clone(), world.clone());
        let (failing, flaky) = (shape.failing == Some(index), shape.flaky == Some(index));
        let undo_fails = shape.failing_undo == Some(index);
        TypedStep::by_option(
            move || {
                let world = act_world.clone();
                async move {
                    let run = {
                        let mut ledger = world.lock().unwrap();
                        let runs = ledger.actions.entry(index).or_default();
                        *runs += 1;
                        *runs
                    };
                    smol::future::yield_now().await;
                    if failing || (flaky && run == 1) {
                        return Err(format!("step {index} said no"));
                    }
                    world.lock().unwrap().applied.insert(index);
                    Ok(format!("receipt {index}"))
                }
            },
            // `None`: the action was cut short and may have happened.
            move |receipt: Option<String>| {
                let world = undo_world.clone();
                async move {
                    let mut ledger = world.lock().unwrap();
                    *ledger.undos.entry(index).or_default() += 1;
                    if !ledger.actions.contains_key(&index) {
                        ledger
                            .wrong
                            .push(format!("step {index} undone, never started"));
                    }
                    if receipt
                        .as_ref()
                        .is_some_and(|receipt| *receipt != format!("receipt {index}"))
                    {
                        ledger
                            .wrong
                            .push(format!("step {index} undone with {receipt:?}"));
                    }
                    if undo_fails {
                        return Err(format!("undo {index} said no"));
                    }
                    ledger.applied.remove(&index);
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
        match &shape.parallel {
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

fn created(seq: u64, definition: &str, parameters: usize) -> Record {
    let event = Event::Created {
        definition: definition.into(),
        version: 1,
        fingerprint: 9,
        parameters: vec![0xA5; parameters],
    };
    Record { seq, event }
}

fn bystander() -> Vec<Record> {
    let started = Event::ActionStarted {
        step: 0,
        attempt: 1,
    };
    vec![
        created(0, "bystander", 60),
        Record {
            seq: 1,
            event: started,
        },
    ]
}

/// A flash holding four finished sagas and one unfinished (the
/// bystander), as the device left it before the saga under test.
fn prepared<const W: usize, const E: usize>(sectors: usize) -> SimFlash<W, E> {
    let store = FlashStore::mount(SimFlash::<W, E>::new(sectors)).unwrap();
    for id in 0..4 {
        let id = SagaId(id);
        let records = [
            created(0, "filler", 100),
            Record {
                seq: 1,
                event: Event::ActionStarted {
                    step: 0,
                    attempt: 1,
                },
            },
            Record {
                seq: 2,
                event: Event::ActionSucceeded {
                    step: 0,
                    output: None,
                },
            },
            Record {
                seq: 3,
                event: Event::Finished {
                    outcome: Outcome::Committed,
                    message: String::new(),
                },
            },
        ];
        for record in &records {
            store.append(id, record).unwrap();
        }
        if id.0 == 1 {
            for record in &bystander() {
                store.append(BYSTANDER, record).unwrap();
            }
        }
    }
    store.into_flash().unwrap().reboot()
}

/// What one boot of the device did.
struct Boot<const W: usize, const E: usize> {
    /// The power was cut.
    cut: bool,
    /// It was cut during an erase.
    erase_cut: bool,
    /// The saga's records, once it was seen finished.
    finished: Option<Vec<Record>>,
    /// The flash, after the reboot that follows.
    flash: SimFlash<W, E>,
}

/// One boot: mount, check the bystander, start or resume the saga (or
/// nothing if it finished), reclaim once it finished; the power is cut at
/// write or erase `cut`, if any.
fn boot<const W: usize, const E: usize>(
    shape: &Shape,
    world: &World,
    mut flash: SimFlash<W, E>,
    cut: Option<(u64, Tear)>,
    seen_finished: bool,
    case: &str,
) -> Boot<W, E> {
    let planned = cut.is_some();
    if let Some((op, tear)) = cut {
        flash.cut_power_at(op, tear);
        flash.seed(op * 3 + 1);
    }
    let store = FlashStore::mount(flash).unwrap_or_else(|error| panic!("{case}: mount: {error}"));
    assert_eq!(
        store.records(BYSTANDER),
        Ok(bystander()),
        "{case}: the bystander"
    );
    assert!(store.unfinished().unwrap().contains(&BYSTANDER), "{case}");
    let mut finished = None;
    let records = match store.records(SAGA) {
        Ok(records) => records,
        Err(Error::Reclaimed(_)) => {
            assert!(seen_finished, "{case}: reclaimed before it finished");
            Vec::new()
        }
        Err(error) => panic!("{case}: {error}"),
    };
    let history = (!records.is_empty())
        .then(|| replay(&records).unwrap_or_else(|error| panic!("{case}: {error}")));
    let done = history
        .as_ref()
        .is_some_and(|history| matches!(history.state(), SagaState::Finished(_)));
    if seen_finished {
        assert!(
            done || records.is_empty(),
            "{case}: a finished saga came back unfinished"
        );
        assert!(!store.unfinished().unwrap().contains(&SAGA), "{case}");
    }
    let mut cut = false;
    if done {
        finished = Some(records);
    } else if !seen_finished {
        let mut saga = build(shape, world);
        let mut journal = store.journal(SAGA).unwrap();
        let result = match &history {
            None => {
                assert!(
                    world.lock().unwrap().actions.is_empty(),
                    "{case}: ran unrecorded"
                );
                let run = saga
                    .run_journaled(&mut journal, Start::new(shape.name, 1, vec![]))
                    .unwrap();
                smol::block_on(run)
            }
            Some(history) => {
                let run = saga
                    .resume(&mut journal, history)
                    .unwrap_or_else(|error| panic!("{case}: {error}"));
                smol::block_on(run)
            }
        };
        drop(journal);
        match result {
            Err(DurableError::Journal(error)) => {
                assert!(planned, "{case}: {error}");
                cut = true;
            }
            _ => finished = Some(store.records(SAGA).unwrap()),
        }
    }
    // A run cut short by the power ends above; one that finished, or a
    // saga found finished, goes on to reclaim.
    if finished.is_some() && !cut {
        if let Err(error) = store.reclaim() {
            assert!(planned, "{case}: reclaim: {error}");
            cut = true;
        }
    }
    let flash = store.into_flash().unwrap();
    Boot {
        cut: cut || flash.is_dead(),
        erase_cut: flash.cut_hit_erase(),
        finished,
        flash: flash.reboot(),
    }
}

fn check(shape: &Shape, ledger: &Ledger, records: &[Record], clean: Outcome, case: &str) {
    let history = replay(records).unwrap_or_else(|error| panic!("{case}: {error}"));
    let SagaState::Finished(end) = history.state() else {
        panic!("{case}: not finished");
    };
    let Some(Event::Finished { message, .. }) = records.last().map(|record| &record.event) else {
        panic!("{case}: no Finished record last");
    };
    assert!(ledger.wrong.is_empty(), "{case}: {:?}", ledger.wrong);
    for (step, runs) in &ledger.actions {
        assert!(
            *runs <= shape.attempts,
            "{case}: step {step} ran {runs} times"
        );
    }
    match end {
        Outcome::Committed => {
            assert_eq!(ledger.applied.len(), shape.steps, "{case}: {ledger:?}");
            assert!(message.is_empty(), "{case}");
        }
        Outcome::Compensated => assert!(ledger.applied.is_empty(), "{case}: {ledger:?}"),
        Outcome::Stuck => {
            assert!(!message.is_empty(), "{case}: stuck without a reason");
            let failing = shape
                .failing_undo
                .unwrap_or_else(|| panic!("{case}: stuck: {message}"));
            assert!(ledger.applied.contains(&failing), "{case}: {ledger:?}");
        }
        other => panic!("{case}: ended {other}"),
    }
    let cut_short = records.iter().any(|record| {
        matches!(&record.event, Event::ActionFailed { message, .. } if message.contains("crash"))
    });
    assert!(
        end == clean || (cut_short && end == Outcome::Compensated),
        "{case}: ended {end}, uncut {clean}"
    );
}

/// Every shape, the power cut at each write and erase (each torn the three
/// ways), then at each of the next boot's (each torn the ways in `then`):
/// (first cuts, second cuts, cuts at an erase).
fn sweep<const W: usize, const E: usize>(sectors: usize, then_tears: &[Tear]) -> (u64, u64, u64) {
    let base = prepared::<W, E>(sectors);
    let (mut cases, mut second_cuts, mut erases_cut) = (0_u64, 0_u64, 0_u64);
    for shape in shapes() {
        let world = World::default();
        let clean = boot(&shape, &world, base.clone(), None, false, shape.name);
        assert!(!clean.cut, "{}", shape.name);
        let records = clean.finished.expect("the uncut run finishes");
        let Some(Event::Finished {
            outcome: clean_end, ..
        }) = records.last().map(|record| record.event.clone())
        else {
            unreachable!();
        };
        check(
            &shape,
            &world.lock().unwrap(),
            &records,
            clean_end,
            shape.name,
        );

        for tear in TEARS {
            for first in 0.. {
                let case = format!("{}, cut at op {first} ({tear:?})", shape.name);
                let world = World::default();
                let one = boot(
                    &shape,
                    &world,
                    base.clone(),
                    Some((first, tear)),
                    false,
                    &case,
                );
                if !one.cut {
                    break;
                }
                cases += 1;
                if one.erase_cut {
                    erases_cut += 1;
                }
                // The next boot loses power at each of its writes and
                // erases in turn (torn each of the three ways), then once
                // not at all.
                for &then in then_tears {
                    for second in 0.. {
                        let case = format!("{case}, then at op {second} ({then:?})");
                        let world = fork(&world);
                        let mut seen = one.finished.clone();
                        let two = boot(
                            &shape,
                            &world,
                            one.flash.clone(),
                            Some((second, then)),
                            seen.is_some(),
                            &case,
                        );
                        seen = seen.or(two.finished.clone());
                        let mut last = two.flash.clone();
                        if two.cut {
                            second_cuts += 1;
                            erases_cut += u64::from(two.erase_cut);
                            let three =
                                boot(&shape, &world, two.flash, None, seen.is_some(), &case);
                            assert!(!three.cut, "{case}");
                            seen = seen.or(three.finished);
                            last = three.flash;
                        }
                        // One more boot finds the saga finished and runs nothing.
                        let before = world.lock().unwrap().clone();
                        let four = boot(&shape, &world, last, None, true, &case);
                        assert!(!four.cut, "{case}");
                        assert_eq!(world.lock().unwrap().actions, before.actions, "{case}");
                        let records = seen.unwrap_or_else(|| panic!("{case}: never finished"));
                        check(&shape, &world.lock().unwrap(), &records, clean_end, &case);
                        if !two.cut {
                            break;
                        }
                    }
                }
            }
        }
    }
    (cases, second_cuts, erases_cut)
}

#[test]
fn a_saga_survives_a_power_cut_at_every_write_and_erase() {
    let started = Instant::now();
    let (cases, second_cuts, erases_cut) = sweep::<4, 512>(5, &TEARS);
    let total = cases + second_cuts;
    println!(
        "power-loss cases, 4-byte words, 5 sectors of 512 bytes: {total} ({cases} first cuts, {second_cuts} second cuts, {erases_cut} of all at an erase) in {:?}",
        started.elapsed()
    );
    assert!(cases > 300, "{cases} cases");
    assert!(erases_cut > 0, "no cut fell on an erase");
}

#[test]
fn the_same_with_8_byte_words_and_3_sectors_of_1_kib() {
    let started = Instant::now();
    let (cases, second_cuts, erases_cut) = sweep::<8, 1024>(3, &[Tear::Noise]);
    let total = cases + second_cuts;
    println!(
        "power-loss cases, 8-byte words, 3 sectors of 1 KiB: {total} ({cases} first cuts, {second_cuts} second cuts, {erases_cut} of all at an erase) in {:?}",
        started.elapsed()
    );
    assert!(cases > 300, "{cases} cases");
    assert!(erases_cut > 0, "no cut fell on an erase");
}
