//! Durable throughput on SQLite: sagas of 10 single steps (ready
//! futures) run through `Saga::run_journaled` into one store, 1, 10 and 100
//! at a time on one thread (`join_all` under `smol::block_on`), against the
//! same sagas without a journal. Prints sagas and steps per second, flushes
//! and commits (fsyncs) per step: what group commit buys as concurrency
//! grows. Run with `cargo bench -p saga-sqlite --bench throughput`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    missing_docs,
    reason = "a std benchmark"
)]

use std::time::Instant;

use futures_util::future::join_all;
use saga_core::journal::Start;
use saga_core::{Saga, SagaBuilder};
use saga_sqlite::Store;

const STEPS: usize = 10;

fn saga() -> Saga<String> {
    let mut builder = SagaBuilder::new();
    for _ in 0..STEPS {
        builder = builder.add_step(|| async { Ok::<_, String>(()) }, || async { Ok(()) });
    }
    builder.build()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!(
        "| concurrent sagas | sagas | sagas/s | steps/s | commits per step | in memory, sagas/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (concurrent, total) in [(1_usize, 100_usize), (10, 500), (100, 2000)] {
        let store =
            Store::open(dir.path().join(format!("bench-{concurrent}.db"))).expect("a store");
        let mut sagas: Vec<Saga<String>> = (0..concurrent).map(|_| saga()).collect();

        let started = Instant::now();
        let before = store.commits();
        for _ in 0..total / concurrent {
            let mut journals: Vec<_> = (0..concurrent)
                .map(|_| store.journal(store.new_id()).expect("a journal"))
                .collect();
            let runs = sagas
                .iter_mut()
                .zip(journals.iter_mut())
                .map(|(saga, journal)| {
                    let run = saga
                        .run_journaled(journal, Start::new("bench", 1, Vec::new()))
                        .expect("a journaled run");
                    async move { run.await.expect("the saga commits") }
                });
            smol::block_on(join_all(runs));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let commits = store.commits() - before;

        let in_memory = Instant::now();
        for _ in 0..total / concurrent {
            smol::block_on(join_all(sagas.iter_mut().map(Saga::run)));
        }
        let in_memory = in_memory.elapsed().as_secs_f64();

        let steps = (total * STEPS) as f64;
        println!(
            "| {concurrent} | {total} | {:.0} | {:.0} | {:.3} | {:.0} |",
            total as f64 / elapsed,
            steps / elapsed,
            commits as f64 / steps,
            total as f64 / in_memory,
        );
    }
}
