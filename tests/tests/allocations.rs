//! The allocation contract, counted by a global allocator (`stats_alloc`):
//! building allocates one box per step plus the step list (which grows by
//! doubling, so also `log2(N)` reallocations); a run allocates nothing on the
//! success path and one box (the error report) on the failure path, whatever
//! its length, with ready and with pending futures. An abort handle adds
//! nothing to a run: a run alone on its handle uses the handle's inline slot,
//! and runs sharing one handle beyond it only grow the handle's list to the
//! most runs attached at once (reused by later runs).
//!
//! The counts are process-wide, so everything is checked from one `main`,
//! without the test harness (`harness = false`): its own threads allocate
//! now and then, which a count of the whole process would see.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::alloc::System;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use common::{
    Counter, Failed, YieldOnce, block_on, fn_saga, typed_ref_saga, typed_saga, user_step_saga,
};
use saga_core::{AbortHandle, Aborted, Saga, SagaBuilder};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// `(allocations, reallocations)` made by `f`, and its output.
fn count<T>(f: impl FnOnce() -> T) -> (usize, usize, T) {
    let region = Region::new(GLOBAL);
    let output = f();
    let change = region.change();
    (change.allocations, change.reallocations, output)
}

/// How many times a `Vec` of fat pointers grows from empty to `steps`
/// elements by pushing: capacity 4, then doubling.
fn growths(steps: usize) -> usize {
    let mut capacity = 4;
    let mut growths = 0;
    while capacity < steps {
        capacity *= 2;
        growths += 1;
    }
    growths
}

type Build = fn(&'static Counter, usize, bool) -> Saga<Failed>;

const KINDS: [(&str, Build, Build); 4] = [
    ("add_step", fn_saga::<false>, fn_saga::<true>),
    ("add_typed_step", typed_saga::<false>, typed_saga::<true>),
    (
        "add_typed_step_ref",
        typed_ref_saga::<false>,
        typed_ref_saga::<true>,
    ),
    ("user Step", user_step_saga::<false>, user_step_saga::<true>),
];

fn main() {
    building_allocates_a_box_per_step_and_running_allocates_nothing();
    a_named_failed_step_costs_one_allocation_for_its_name();
    abortable_runs_allocate_nothing_once_the_handle_has_room();
    a_flow_is_one_box_and_a_successful_run_allocates_nothing();
    println!("allocation contract: ok");
}

fn building_allocates_a_box_per_step_and_running_allocates_nothing() {
    for steps in [0, 1, 4, 5, 10, 100, 1_000] {
        for (kind, ready, pending) in KINDS {
            let counter = Counter::leak();
            let (allocs, reallocs, saga) = count(|| ready(counter, steps, false));
            let list = usize::from(steps > 0);
            assert_eq!(
                allocs,
                steps + list,
                "{kind}, {steps} steps: build allocations"
            );
            assert!(
                reallocs <= growths(steps),
                "{kind}, {steps} steps: {reallocs} reallocations, expected at most {}",
                growths(steps)
            );
            drop(saga);

            for (build, futures) in [(ready, "ready"), (pending, "pending")] {
                for fail in [false, true] {
                    if fail && steps == 0 {
                        continue;
                    }
                    let mut saga = build(counter, steps, fail);
                    for run in 0..2 {
                        let (allocs, reallocs, result) = count(|| block_on(saga.run()));
                        assert_eq!(result.is_err(), fail);
                        // Success allocates nothing; failure, the error's report box.
                        assert_eq!(
                            (allocs, reallocs),
                            (usize::from(fail), 0),
                            "{kind}, {steps} steps, {futures} futures, failing: {fail}, run {run}"
                        );
                    }
                }
            }
        }
    }
}

fn a_named_failed_step_costs_one_allocation_for_its_name() {
    // The report box, plus the failed step's name.
    let mut saga: Saga<Failed> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .step(
            saga_core::FnStep::new(|| async { Err::<(), _>(Failed) }, || async { Ok(()) })
                .named("fails"),
        )
        .build();
    let (allocs, reallocs, result) = count(|| block_on(saga.run()));
    let error = result.unwrap_err();
    assert_eq!(error.failed_step_name(), Some("fails"));
    assert_eq!(allocs, 2, "the report box and the name");
    assert_eq!(reallocs, 0);
}

/// The error of the abortable sagas.
#[derive(Debug)]
struct Stop;

impl From<Aborted> for Stop {
    fn from(_: Aborted) -> Self {
        Stop
    }
}

/// Three steps whose actions and compensations are pending once.
fn pending_saga() -> Saga<Stop> {
    let step = || async {
        YieldOnce::default().await;
        Ok(())
    };
    (0..3)
        .fold(SagaBuilder::new(), |builder, _| {
            builder.add_step(step, step)
        })
        .build()
}

fn abortable_runs_allocate_nothing_once_the_handle_has_room() {
    // A run alone on its handle (as `rt::detach` gives each run): the
    // handle's inline slot, nothing allocated.
    let mut saga = pending_saga();
    for _ in 0..3 {
        let handle = AbortHandle::new();
        let (allocs, reallocs, result) = count(|| block_on(saga.run().abortable(&handle)));
        assert!(result.is_ok());
        assert_eq!((allocs, reallocs), (0, 0), "a run alone on its handle");
    }

    // 64 runs at once on one handle: 63 beyond its slot go to its list,
    // which grows once (to 64 entries, by doubling) and is reused by the
    // next 64 runs and by runs one at a time.
    const AT_ONCE: usize = 64;
    let handle = AbortHandle::new();
    let mut sagas: Vec<_> = (0..AT_ONCE).map(|_| pending_saga()).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for round in 0..3 {
        let mut runs: Vec<_> = sagas
            .iter_mut()
            .map(|saga| Some(saga.run().abortable(&handle)))
            .collect();
        let (allocs, reallocs, ()) = count(|| {
            while runs.iter().any(Option::is_some) {
                for slot in runs.iter_mut() {
                    if let Some(run) = slot {
                        if let Poll::Ready(result) = Pin::new(run).poll(&mut cx) {
                            assert!(result.is_ok());
                            *slot = None;
                        }
                    }
                }
            }
        });
        if round == 0 {
            assert_eq!(allocs, 1, "the handle's list, first grown");
            assert!(reallocs <= growths(AT_ONCE - 1), "{reallocs} reallocations");
        } else {
            assert_eq!(
                (allocs, reallocs),
                (0, 0),
                "round {round}: the list has room"
            );
        }
        assert_eq!(handle.attached_runs(), 0);
    }
    let (allocs, reallocs, result) = count(|| block_on(sagas[0].run().abortable(&handle)));
    assert!(result.is_ok());
    assert_eq!((allocs, reallocs), (0, 0), "a run on a shared handle");
}

/// A failed run's values: the input, then each step's.
type TripValues = (((bool, Option<u64>), Option<u64>), Option<usize>);

/// A flow of three steps passing numbers, the last failing when the input
/// says so.
fn trip_flow() -> saga_core::Flow<Failed, bool, usize, TripValues> {
    SagaBuilder::new()
        .input::<bool>()
        .then(
            |_: &bool| async { Ok(7u64) },
            |_: (&bool, &u64)| async { Ok(()) },
        )
        .then(
            |(_, id)| {
                let id = *id;
                async move { Ok(id * 2) }
            },
            |_| async { Ok(()) },
        )
        .then(
            |((fail, _), _)| {
                let fail = *fail;
                async move { if fail { Err(Failed) } else { Ok(3usize) } }
            },
            |_| async { Ok(()) },
        )
        .build_with(|(_, last)| last)
}

fn a_flow_is_one_box_and_a_successful_run_allocates_nothing() {
    // One box for the three steps, where a saga has one per step and the
    // list.
    let (flow_allocs, _, mut flow) = count(trip_flow);
    let counter = Counter::leak();
    let (saga_allocs, _, saga) = count(|| fn_saga::<false>(counter, 3, false));
    drop(saga);
    assert_eq!(
        (flow_allocs, saga_allocs),
        (1, 4),
        "a flow: one box for all its steps"
    );
    for run in 0..3 {
        let (allocs, reallocs, result) = count(|| block_on(flow.run(false)));
        assert_eq!(result.ok(), Some(3));
        assert_eq!(
            (allocs, reallocs),
            (0, 0),
            "a successful flow run, run {run}"
        );
        let (allocs, reallocs, result) = count(|| block_on(flow.run(true)));
        let error = result.unwrap_err();
        assert_eq!(*error.values(), (((true, Some(7)), Some(14)), None));
        assert_eq!(
            (allocs, reallocs),
            (2, 0),
            "a failed flow run: the report and the values, run {run}"
        );
    }
}
