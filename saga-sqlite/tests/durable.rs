//! `Durable`: a saga started by name and finished by the next process
//! after a crash; a definition the next process does not know is
//! quarantined and left in the store; a stuck saga reopened by an operator
//! is compensated by the next recovery.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    reason = "a std test"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use saga_core::journal::{Outcome, Registry, SagaContext, SagaState, replay};
use saga_core::{Saga, SagaBuilder};
use saga_sqlite::{Durable, NotRun, Recovered, Store, StoreErrorKind};

#[derive(Default)]
struct World {
    hang: AtomicBool,
    refuse_undo: AtomicBool,
    undone: AtomicU32,
    keys: Mutex<Vec<String>>,
}

fn registry(world: &Arc<World>) -> Registry<String> {
    let world = world.clone();
    let mut registry = Registry::new();
    registry.register(
        "pay",
        1,
        move |amount: &u64, context: &SagaContext| -> Saga<String> {
            let (pay, undo, hang) = (world.clone(), world.clone(), world.clone());
            let (amount, key) = (*amount, context.key(0));
            SagaBuilder::new()
                .add_step(
                    move || {
                        let (world, key) = (pay.clone(), key.clone());
                        async move {
                            world.keys.lock().unwrap().push(key);
                            let _ = amount;
                            Ok::<_, String>(())
                        }
                    },
                    move || {
                        let world = undo.clone();
                        async move {
                            if world.refuse_undo.load(Ordering::SeqCst) {
                                return Err(String::from("the bank is closed"));
                            }
                            world.undone.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                    },
                )
                .add_step(
                    move || {
                        let world = hang.clone();
                        async move {
                            if world.hang.load(Ordering::SeqCst) {
                                std::future::pending::<()>().await;
                            }
                            Err::<(), _>(String::from("card declined"))
                        }
                    },
                    || async { Ok(()) },
                )
                .build()
        },
    );
    registry
}

/// Polls `run` until saga `id` has `records` records in the store (its
/// writer commits in its own thread), then drops it, as a crash would.
fn die_after(
    durable: &Durable<String>,
    id: saga_core::journal::SagaId,
    run: impl Future<Output = Result<(), saga_core::journal::DurableError<String>>>,
    records: usize,
) {
    let mut run = Box::pin(run);
    let mut cx = Context::from_waker(Waker::noop());
    while durable.store().records(id).unwrap().len() < records {
        assert!(Pin::new(&mut run).as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_saga_started_by_name_is_finished_by_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let world = Arc::new(World::default());
    world.hang.store(true, Ordering::SeqCst);
    let id = {
        let durable = Durable::new(Store::open(&path).unwrap(), registry(&world));
        let (id, run) = durable.start("pay", &40_u64).unwrap();
        // Until the second step hangs: then the process "dies".
        die_after(&durable, id, run, 4);
        id
    };
    world.hang.store(false, Ordering::SeqCst);
    let durable = Durable::new(Store::open(&path).unwrap(), registry(&world));
    let recovered = smol::block_on(durable.recover()).unwrap();
    assert_eq!(recovered.len(), 1);
    let (recovered_id, Recovered::Ran(Err(error))) = &recovered[0] else {
        panic!("resumed and compensated: {recovered:?}");
    };
    assert_eq!(*recovered_id, id);
    assert!(error.saga().unwrap().is_fully_compensated(), "{error}");
    assert_eq!(world.undone.load(Ordering::SeqCst), 1);
    // The key is the same in both processes: the saga id and the step.
    assert_eq!(*world.keys.lock().unwrap(), [format!("{id}-0")]);
    let history = replay(&durable.store().records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
    assert!(durable.store().unfinished().unwrap().is_empty());
}

#[test]
fn an_unknown_definition_is_quarantined_and_left_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let world = Arc::new(World::default());
    world.hang.store(true, Ordering::SeqCst);
    let durable = Durable::new(Store::open(&path).unwrap(), registry(&world));
    let (id, run) = durable.start("pay", &1_u64).unwrap();
    die_after(&durable, id, run, 2);
    drop(durable);

    let nobody = Durable::new(Store::open(&path).unwrap(), Registry::<String>::new());
    let recovered = smol::block_on(nobody.recover()).unwrap();
    let [(quarantined, Recovered::NotRun(NotRun::Quarantined(why)))] = &recovered[..] else {
        panic!("quarantined: {recovered:?}");
    };
    assert_eq!(*quarantined, id);
    assert!(why.to_string().contains("pay"), "{why}");
    assert_eq!(nobody.store().unfinished().unwrap(), [id]);
    assert!(world.keys.lock().unwrap().len() <= 1);
    assert!(matches!(
        nobody.start("pay", &1_u64),
        Err(NotRun::Quarantined(_))
    ));
}

#[test]
fn a_stuck_saga_reopened_by_an_operator_is_compensated_by_the_next_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let world = Arc::new(World::default());
    world.refuse_undo.store(true, Ordering::SeqCst);
    let durable = Durable::new(
        Store::open(dir.path().join("sagas.db")).unwrap(),
        registry(&world),
    );
    let (id, run) = durable.start("pay", &5_u64).unwrap();
    let error = smol::block_on(run).unwrap_err();
    assert!(!error.saga().unwrap().is_fully_compensated());
    let summary = durable.store().list().unwrap();
    assert_eq!(summary[0].state, Ok(SagaState::Finished(Outcome::Stuck)));
    assert!(summary[0].last_error.as_deref().unwrap().contains("bank"));

    // Reopening a saga that is not stuck is refused.
    let (other, run) = durable.start("pay", &6_u64).unwrap();
    let _ = smol::block_on(run);
    world.refuse_undo.store(false, Ordering::SeqCst);
    let (done, run) = durable.start("pay", &7_u64).unwrap();
    let _ = smol::block_on(run);
    let refused = durable.store().reopen(done).unwrap_err();
    assert_eq!(
        refused.kind(),
        StoreErrorKind::Finished(Outcome::Compensated)
    );

    // The bank opens again; the operator reopens both stuck sagas.
    durable.store().reopen(id).unwrap();
    durable.store().reopen(other).unwrap();
    let before = world.undone.load(Ordering::SeqCst);
    let recovered = smol::block_on(durable.recover()).unwrap();
    assert_eq!(recovered.len(), 2);
    for (_, recovered) in &recovered {
        let Recovered::Ran(Err(error)) = recovered else {
            panic!("compensated again: {recovered:?}");
        };
        assert!(error.saga().unwrap().is_fully_compensated(), "{error}");
    }
    assert_eq!(world.undone.load(Ordering::SeqCst), before + 2);
    let history = replay(&durable.store().records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Compensated));
}

/// A flow that books a room for its input's guest, then charges for the
/// room's number; the charge hangs while `hang` is set, and fails while
/// `refuse` is set. Each action tags its value with `process`.
fn flow_registry(
    process: &'static str,
    hang: bool,
    refuse: bool,
    log: &Arc<Mutex<Vec<String>>>,
) -> Registry<String> {
    let (charged, undone) = (log.clone(), log.clone());
    let mut registry = Registry::new();
    registry.register_flow("stay", 1, move |context: &SagaContext| {
        let (charged, undone, key) = (charged.clone(), undone.clone(), context.key(1));
        SagaBuilder::new()
            .action_retry(saga_core::Retry::attempts(2))
            .input::<String>()
            .then(
                move |guest: &String| {
                    let room = format!("room for {guest} ({process})");
                    async move { Ok::<_, String>(room) }
                },
                move |(_, room): (&String, &String)| {
                    let (log, room) = (undone.clone(), room.clone());
                    async move {
                        log.lock().unwrap().push(format!("released {room}"));
                        Ok(())
                    }
                },
            )
            .saved()
            .then(
                move |(_, room): (&String, &String)| {
                    let (log, room, key) = (charged.clone(), room.clone(), key.clone());
                    async move {
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        if refuse {
                            return Err(String::from("card declined"));
                        }
                        log.lock().unwrap().push(format!("charged {room} as {key}"));
                        Ok::<_, String>(room.len() as u64)
                    }
                },
                |_| async { Ok(()) },
            )
            .saved()
            .build()
    });
    registry
}

#[test]
fn a_flow_started_by_name_is_finished_by_the_next_process_with_the_values_it_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = Arc::new(Mutex::new(Vec::new()));
    let id = {
        let durable = Durable::new(
            Store::open(&path).unwrap(),
            flow_registry("first", true, false, &log),
        );
        let (id, run) = durable.start("stay", &String::from("Ada")).unwrap();
        // Created, the room's start and success, the charge's start.
        die_after(&durable, id, run, 4);
        id
    };
    let durable = Durable::new(
        Store::open(&path).unwrap(),
        flow_registry("second", false, false, &log),
    );
    let recovered = smol::block_on(durable.recover()).unwrap();
    let [(recovered_id, Recovered::Ran(Ok(())))] = &recovered[..] else {
        panic!("resumed and committed: {recovered:?}");
    };
    assert_eq!(*recovered_id, id);
    // The charge read the room the first process booked: the room was not
    // booked again.
    assert_eq!(
        *log.lock().unwrap(),
        [format!("charged room for Ada (first) as {id}-1")]
    );
    let history = replay(&durable.store().records(id).unwrap()).unwrap();
    assert_eq!(history.state(), SagaState::Finished(Outcome::Committed));
    assert_eq!(history.step(0).action_attempts, 1);
    assert_eq!(history.step(1).action_attempts, 2);
}

#[test]
fn a_recovered_flow_that_fails_compensates_with_the_value_the_first_process_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sagas.db");
    let log = Arc::new(Mutex::new(Vec::new()));
    {
        let durable = Durable::new(
            Store::open(&path).unwrap(),
            flow_registry("first", true, false, &log),
        );
        let (id, run) = durable.start("stay", &String::from("Grace")).unwrap();
        die_after(&durable, id, run, 4);
    }
    let durable = Durable::new(
        Store::open(&path).unwrap(),
        flow_registry("second", false, true, &log),
    );
    let recovered = smol::block_on(durable.recover()).unwrap();
    let [(_, Recovered::Ran(Err(error)))] = &recovered[..] else {
        panic!("resumed and compensated: {recovered:?}");
    };
    assert!(error.saga().unwrap().is_fully_compensated(), "{error}");
    assert_eq!(*log.lock().unwrap(), ["released room for Grace (first)"]);
}

#[test]
fn a_flow_definition_builds_no_saga_and_a_flow_with_an_unsaved_value_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut registry = flow_registry("only", false, false, &log);
    registry.register_flow("unsaved", 1, |_: &SagaContext| {
        SagaBuilder::new()
            .input::<u32>()
            .then(
                |n: &u32| {
                    let n = *n;
                    async move { Ok::<_, String>(n) }
                },
                |_| async { Ok(()) },
            )
            .build()
    });
    let context = SagaContext::new(saga_core::journal::SagaId(1));
    let parameters = registry.encode_parameters(&String::from("Ada"));
    assert!(matches!(
        registry.build("stay", 1, &parameters, &context),
        Err(saga_core::journal::Quarantined::NotASaga { .. })
    ));
    let durable = Durable::new(Store::open(dir.path().join("sagas.db")).unwrap(), registry);
    let refused = durable.start("unsaved", &1_u32).err().expect("refused");
    assert!(
        matches!(
            refused,
            NotRun::Refused(saga_core::journal::Refused::Unsaved { step: 0 })
        ),
        "{refused}"
    );
    assert!(durable.store().list().unwrap().is_empty());
}
