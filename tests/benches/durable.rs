//! What a journal costs per step: the same saga (the `engine` steps of
//! `overhead`) run without a journal, and with `Saga::run_journaled` into
//!
//! - `journal-discard`: a journal that drops every record and whose flush
//!   is ready at once (the engine's journal stage alone: building each
//!   record, the write-ahead gate);
//! - `journal-bytes`: a journal that encodes each record
//!   (`Record::to_bytes`'s bytes, through `Codec::encode`) into a buffer it
//!   reuses, as a store writes them;
//! - `journal-memory`: `MemoryJournal`, which keeps every record;
//!
//! on the success and the failure path (the last step fails, every step is
//! compensated), with ready futures. Groups `durable-{success,failure}-ready`,
//! at 1, 10 and 100 steps. Run with `cargo bench -p saga-tests --bench durable`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

mod common;

use core::task::{Context, Poll};

use common::{Counter, block_on, fn_saga};
use criterion::{BenchmarkId, Criterion, Throughput};
use saga_core::journal::{Codec, Journal, JournalError, MemoryJournal, Record, Start};

/// Drops every record; durable at once.
struct Discard;

impl Journal for Discard {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        core::hint::black_box(record);
        Ok(())
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        Poll::Ready(Ok(()))
    }
}

/// Encodes every record into a reused buffer; durable at once.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Journal for Bytes {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        record.encode(&mut self.0);
        Ok(())
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), JournalError>> {
        self.0.clear();
        Poll::Ready(Ok(()))
    }
}

fn start() -> Start {
    Start::new("bench", 1, Vec::new())
}

fn group(c: &mut Criterion, fail: bool) {
    let path = if fail { "failure" } else { "success" };
    let mut group = c.benchmark_group(format!("durable-{path}-ready"));
    for steps in [1_usize, 10, 100] {
        group.throughput(Throughput::Elements(steps as u64));
        let counter = Counter::leak();
        let mut saga = fn_saga::<false>(counter, steps, fail);
        assert_eq!(block_on(saga.run()).is_ok(), !fail);
        group.bench_with_input(BenchmarkId::new("engine", steps), &steps, |b, _| {
            b.iter(|| block_on(saga.run()))
        });

        let mut discard = Discard;
        let first = block_on(saga.run_journaled(&mut discard, start()).unwrap());
        assert_eq!(first.is_ok(), !fail);
        group.bench_with_input(
            BenchmarkId::new("journal-discard", steps),
            &steps,
            |b, _| b.iter(|| block_on(saga.run_journaled(&mut discard, start()).unwrap())),
        );

        let mut bytes = Bytes::default();
        group.bench_with_input(BenchmarkId::new("journal-bytes", steps), &steps, |b, _| {
            b.iter(|| block_on(saga.run_journaled(&mut bytes, start()).unwrap()))
        });

        group.bench_with_input(BenchmarkId::new("journal-memory", steps), &steps, |b, _| {
            b.iter(|| {
                let mut journal = MemoryJournal::new();
                let result = block_on(saga.run_journaled(&mut journal, start()).unwrap());
                (result, journal)
            })
        });
    }
    group.finish();
}

fn success(c: &mut Criterion) {
    group(c, false);
}

fn failure(c: &mut Criterion) {
    group(c, true);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .nresamples(10_000)
        .warm_up_time(core::time::Duration::from_millis(500))
        .measurement_time(core::time::Duration::from_secs(2))
        .configure_from_args()
}

criterion::criterion_group! {
    name = benches;
    config = config();
    targets = success, failure
}
criterion::criterion_main!(benches);
