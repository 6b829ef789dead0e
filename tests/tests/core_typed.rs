//! Rule 4: an action's value reaches its compensation, by value, by reference
//! or as an `Option`, with no runtime type lookups.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use saga_core::{SagaBuilder, TypedStep};
use support::{Live, TestError, Tracker, Yield, on_every_executor};

/// A value that is neither `Copy` nor `Clone`: a compensation that receives it
/// by value really received the action's one instance.
#[derive(Debug, PartialEq, Eq)]
struct Reservation {
    id: String,
    seats: u32,
}

type Log = Arc<Mutex<Vec<String>>>;

#[test]
fn by_value_hands_over_the_actions_value() {
    on_every_executor(|| async {
        let log: Log = Arc::default();
        let l = log.clone();
        let mut saga = SagaBuilder::new()
            .add_typed_step(
                || async {
                    Yield(1).await;
                    Ok::<_, TestError>(Reservation {
                        id: "r-1".into(),
                        seats: 2,
                    })
                },
                move |reservation: Reservation| {
                    let l = l.clone();
                    async move {
                        Yield(1).await;
                        l.lock()
                            .unwrap()
                            .push(format!("{}x{}", reservation.id, reservation.seats));
                        Ok(())
                    }
                },
            )
            .add_step(
                || async { Err::<(), _>(TestError::Action(1)) },
                || async { Ok(()) },
            )
            .build();
        let error = saga.run().await.unwrap_err();
        assert!(error.is_fully_compensated());
        assert_eq!(*log.lock().unwrap(), ["r-1x2"]);
    });
}

#[test]
fn by_ref_lends_the_actions_value() {
    on_every_executor(|| async {
        let log: Log = Arc::default();
        let l = log.clone();
        let mut saga = SagaBuilder::new()
            .add_typed_step_ref(
                || async {
                    Ok::<_, TestError>(Reservation {
                        id: "r-2".into(),
                        seats: 3,
                    })
                },
                move |reservation: &Reservation| {
                    let (l, id) = (l.clone(), reservation.id.clone());
                    async move {
                        Yield(2).await;
                        l.lock().unwrap().push(id);
                        Ok(())
                    }
                },
            )
            .add_step(
                || async { Err::<(), _>(TestError::Action(1)) },
                || async { Ok(()) },
            )
            .build();
        saga.run().await.unwrap_err();
        assert_eq!(*log.lock().unwrap(), ["r-2"]);
    });
}

#[test]
fn by_option_gets_some_after_success() {
    on_every_executor(|| async {
        let log: Log = Arc::default();
        let l = log.clone();
        let mut saga = SagaBuilder::new()
            .step(TypedStep::by_option(
                || async { Ok::<_, TestError>(41u64) },
                move |value: Option<u64>| {
                    l.lock().unwrap().push(format!("{value:?}"));
                    async { Ok(()) }
                },
            ))
            .add_step(
                || async { Err::<(), _>(TestError::Action(1)) },
                || async { Ok(()) },
            )
            .build();
        saga.run().await.unwrap_err();
        assert_eq!(*log.lock().unwrap(), ["Some(41)"]);
    });
}

#[test]
fn each_compensation_gets_its_own_steps_value() {
    on_every_executor(|| async {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut builder = SagaBuilder::new();
        for i in 0..6u32 {
            let l = log.clone();
            builder = match i % 3 {
                0 => builder.add_typed_step(
                    move || async move { Ok::<_, TestError>(i * 100) },
                    move |v: u32| {
                        l.lock().unwrap().push((i, v));
                        async { Ok(()) }
                    },
                ),
                1 => builder.add_typed_step_ref(
                    move || async move { Ok::<_, TestError>(i * 100) },
                    move |v: &u32| {
                        l.lock().unwrap().push((i, *v));
                        async { Ok(()) }
                    },
                ),
                _ => builder.step(TypedStep::by_option(
                    move || async move { Ok::<_, TestError>(i * 100) },
                    move |v: Option<u32>| {
                        l.lock()
                            .unwrap()
                            .push((i, v.expect("the action succeeded")));
                        async { Ok(()) }
                    },
                )),
            };
        }
        let mut saga = builder
            .add_step(
                || async { Err::<(), _>(TestError::Action(6)) },
                || async { Ok(()) },
            )
            .build();
        saga.run().await.unwrap_err();
        let expected: Vec<(u32, u32)> = (0..6).rev().map(|i| (i, i * 100)).collect();
        assert_eq!(*log.lock().unwrap(), expected);
    });
}

#[test]
fn a_second_run_compensates_with_the_second_runs_value() {
    on_every_executor(|| async {
        let runs = Arc::new(AtomicU32::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (runs.clone(), log.clone());
        let mut saga = SagaBuilder::new()
            .add_typed_step(
                move || {
                    let r = r.clone();
                    async move { Ok::<_, TestError>(r.fetch_add(1, Ordering::SeqCst)) }
                },
                move |run: u32| {
                    l.lock().unwrap().push(run);
                    async { Ok(()) }
                },
            )
            .add_step(
                || async { Err::<(), _>(TestError::Action(1)) },
                || async { Ok(()) },
            )
            .build();
        for _ in 0..3 {
            saga.run().await.unwrap_err();
        }
        assert_eq!(*log.lock().unwrap(), [0, 1, 2]);
    });
}

#[test]
fn values_are_dropped_not_leaked() {
    // The value of a typed step lives in the step: it is dropped when consumed
    // by a by-value compensation, when the step is reset for the next run, or
    // with the saga.
    let live = Live::default();
    let l = live.clone();
    let mut saga = SagaBuilder::new()
        .add_typed_step(
            move || {
                let tracker = l.track();
                async move { Ok::<Tracker, TestError>(tracker) }
            },
            |tracker: Tracker| {
                drop(tracker);
                async { Ok(()) }
            },
        )
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    support::block_on(saga.run()).unwrap();
    assert_eq!(
        live.count(),
        1,
        "the successful run's value is kept by its step"
    );
    support::block_on(saga.run()).unwrap();
    assert_eq!(live.count(), 1, "the previous run's value was dropped");
    drop(saga);
    assert_eq!(live.count(), 0);
}

#[test]
fn a_by_ref_value_is_dropped_after_its_compensation() {
    let live = Live::default();
    let l = live.clone();
    let mut saga = SagaBuilder::new()
        .add_typed_step_ref(
            move || {
                let tracker = l.track();
                async move { Ok::<Tracker, TestError>(tracker) }
            },
            |_: &Tracker| async { Ok(()) },
        )
        .add_step(
            || async { Err::<(), _>(TestError::Action(1)) },
            || async { Ok(()) },
        )
        .build();
    support::block_on(saga.run()).unwrap_err();
    assert_eq!(live.count(), 0);
}
