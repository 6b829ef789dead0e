//! Throughput: five-step sagas on tokio's multi-thread runtime, in sagas per
//! second. `cargo bench -p saga-tests --bench throughput` runs 1,000,000
//! sagas per scenario; run any other way (`cargo test --benches`) it runs
//! 20,000, and `SAGA_THROUGHPUT_SAGAS` sets the count.
//!
//! Scenarios:
//! - `reused`: one long-lived task per slot, each building its saga once and
//!   running it again and again; steps ready at once (engine + runtime);
//! - `reused, pending`: the same with steps that return `Pending` once, so
//!   every step goes through tokio's scheduler;
//! - `spawned`: one `tokio::spawn` per saga, built inside the task (build +
//!   run + spawn), in waves of `SLOTS` tasks.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

mod common;

use std::time::Instant;

use common::{Counter, fn_saga};

const STEPS: usize = 5;
/// Concurrent tasks (and counters; a counter is used by one task at a time).
const SLOTS: usize = 1_000;

fn sagas() -> usize {
    if let Ok(count) = std::env::var("SAGA_THROUGHPUT_SAGAS") {
        return count.parse().expect("SAGA_THROUGHPUT_SAGAS is a number");
    }
    // `cargo bench` passes `--bench`; `cargo test` does not.
    if std::env::args().any(|arg| arg == "--bench") {
        1_000_000
    } else {
        20_000
    }
}

fn report(scenario: &str, sagas: usize, seconds: f64) {
    println!(
        "| {scenario} | {sagas} | {seconds:.3} | {:.0} |",
        sagas as f64 / seconds
    );
}

async fn reused<const PENDING: bool>(counters: &'static [Counter], sagas: usize) -> f64 {
    let per_task = sagas / counters.len();
    let start = Instant::now();
    let tasks: Vec<_> = counters
        .iter()
        .map(|counter| {
            tokio::spawn(async move {
                let mut saga = fn_saga::<PENDING>(counter, STEPS, false);
                for _ in 0..per_task {
                    saga.run().await.expect("the saga succeeds");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task completes");
    }
    start.elapsed().as_secs_f64()
}

async fn spawned(counters: &'static [Counter], sagas: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..sagas / counters.len() {
        let tasks: Vec<_> = counters
            .iter()
            .map(|counter| {
                tokio::spawn(async move {
                    fn_saga::<false>(counter, STEPS, false)
                        .run()
                        .await
                        .expect("the saga succeeds");
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("the task completes");
        }
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    let sagas = sagas().max(SLOTS) / SLOTS * SLOTS;
    let counters: &'static [Counter] = Vec::leak((0..SLOTS).map(|_| Counter::default()).collect());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("a tokio runtime");
    let workers = runtime.metrics().num_workers();
    println!(
        "## Throughput: {STEPS}-step sagas, tokio multi-thread ({workers} workers), {SLOTS} concurrent tasks\n"
    );
    println!("| scenario | sagas | seconds | sagas per second |");
    println!("| --- | ---: | ---: | ---: |");
    let seconds = runtime.block_on(reused::<false>(counters, sagas));
    report("reused saga per task, ready steps", sagas, seconds);
    let seconds = runtime.block_on(reused::<true>(counters, sagas));
    report("reused saga per task, steps pending once", sagas, seconds);
    let seconds = runtime.block_on(spawned(counters, sagas));
    report("one spawn + build + run per saga", sagas, seconds);
    let expected = (3 * sagas / SLOTS * STEPS) as u64;
    for counter in counters {
        assert_eq!(counter.get(), expected, "every step ran once per saga");
    }
}
