//! The two examples of the pysagas README, ported: a counter `[10, 20]` that
//! two steps add 30 to. On success it ends `[40, 50]`; when every `add` fails
//! after changing the counter, it ends `[10, 20]`, every time (pysagas 0.0.3
//! printed `[10, 50]` about one run in twelve).
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::sync::{Arc, Mutex};

use saga_core::{Saga, SagaBuilder};
use support::Yield;

const AMOUNT: i32 = 30;

type Counter = Arc<Mutex<[i32; 2]>>;

#[derive(Debug, PartialEq, Eq)]
struct Failed(&'static str);

/// `add(amount, index)`: adds to the counter, then raises when `fail`. The
/// actions and compensations suspend `yields` times, so that a concurrent
/// engine (like pysagas's `asyncio.gather`) would interleave them.
fn readme_saga(counter: &Counter, fail: bool, yields: u32) -> Saga<Failed> {
    let add = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                Yield(yields).await;
                counter.lock().unwrap()[index] += AMOUNT;
                Yield(yields).await;
                if fail {
                    Err(Failed("error occurred"))
                } else {
                    Ok(())
                }
            }
        }
    };
    let decrement = |index: usize| {
        let counter = counter.clone();
        move || {
            let counter = counter.clone();
            async move {
                Yield(yields).await;
                counter.lock().unwrap()[index] -= AMOUNT;
                Ok(())
            }
        }
    };
    SagaBuilder::new()
        .add_step(add(0), decrement(0))
        .add_step(add(1), decrement(1))
        .build()
}

#[test]
fn simple_example_ends_at_40_50() {
    support::on_every_executor(|| async {
        let counter: Counter = Arc::new(Mutex::new([10, 20]));
        let mut saga = readme_saga(&counter, false, 1);
        saga.run().await.unwrap();
        assert_eq!(*counter.lock().unwrap(), [40, 50]);
    });
}

#[test]
fn failure_example_ends_at_10_20_every_time() {
    support::on_every_executor(|| async {
        for run in 0..1000u32 {
            let counter: Counter = Arc::new(Mutex::new([10, 20]));
            let mut saga = readme_saga(&counter, true, run % 3);
            let error = saga.run().await.unwrap_err();
            assert_eq!(*counter.lock().unwrap(), [10, 20], "run {run}");
            assert_eq!(error.failed_step(), 0, "step 1 never starts");
            assert_eq!(*error.error(), Failed("error occurred"));
            assert!(error.is_fully_compensated());
            assert_eq!(error.compensated_count(), 1);
        }
    });
}

#[test]
fn failure_example_1000_concurrent_sagas_on_tokio_multi_thread() {
    // 1000 sagas at once on the multi-thread runtime, each with its own counter,
    // stepping through real worker threads and task switches.
    let runtime = support::multi_thread_runtime();
    let counters: Vec<Counter> = (0..1000).map(|_| Arc::new(Mutex::new([10, 20]))).collect();
    let handles: Vec<_> = counters
        .iter()
        .enumerate()
        .map(|(run, counter)| {
            let counter = counter.clone();
            runtime.spawn(async move {
                let mut saga = readme_saga(&counter, true, 0);
                for _ in 0..(run % 4) {
                    tokio::task::yield_now().await;
                }
                let error = saga.run().await.unwrap_err();
                tokio::task::yield_now().await;
                assert!(error.is_fully_compensated());
            })
        })
        .collect();
    runtime.block_on(async {
        for handle in handles {
            handle.await.unwrap();
        }
    });
    for counter in counters {
        assert_eq!(*counter.lock().unwrap(), [10, 20]);
    }
}

#[test]
fn the_same_saga_run_many_times() {
    // A built saga keeps no state between runs: running the failing saga
    // again leaves the counter where it started, the succeeding one adds 30
    // each time.
    let counter: Counter = Arc::new(Mutex::new([10, 20]));
    let mut failing = readme_saga(&counter, true, 1);
    let mut succeeding = readme_saga(&counter, false, 1);
    for _ in 0..10 {
        support::block_on(failing.run()).unwrap_err();
        assert_eq!(*counter.lock().unwrap(), [10, 20]);
    }
    for round in 1..=3 {
        support::block_on_adversarial(succeeding.run()).unwrap();
        assert_eq!(*counter.lock().unwrap(), [10 + 30 * round, 20 + 30 * round]);
    }
}
