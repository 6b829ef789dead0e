//! What passing values costs: a 10-step saga whose steps each read the
//! value of the step before them (a `Flow`), against the same saga passing
//! nothing and hand-written code threading the values through.
//!
//! Groups `flow-success-ready`, `flow-success-pending`, `flow-failure-ready`,
//! `flow-failure-pending` (the last step fails; every step is compensated,
//! the failed one as its kind says). Each step's action adds one to the
//! value it reads (after one `Pending` in the pending groups); each
//! compensation reads its step's value. Variants, each on the same futures:
//!
//! - `static-threaded`: one concrete closure type, the value threaded by
//!   hand, a manual rollback loop (the limit);
//! - `dynamic-threaded`: boxed closures returning boxed futures, the value
//!   threaded by hand, a manual rollback `Vec` of (compensation, value)
//!   (what users write instead of a library);
//! - `saga-no-data`: `SagaBuilder::add_step`, the same steps passing nothing;
//! - `flow`: `SagaBuilder::input::<u64>()` and `then`, each action reading
//!   the value before it, each compensation its own, the run returning the
//!   last value.
//!
//! Every variant's first run is checked before it is measured. Run with
//! `cargo bench -p saga-tests --bench flow`.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

mod common;

use core::future::Future;
use core::hint::black_box;
use core::pin::Pin;
use core::time::Duration;

use common::{Failed, YieldOnce, block_on};
use criterion::{Criterion, Throughput};
use saga_core::{Flow, Saga, SagaBuilder};

const STEPS: u64 = 10;

async fn act<const PENDING: bool>(value: u64, fail: bool) -> Result<u64, Failed> {
    if PENDING {
        YieldOnce::default().await;
    }
    if fail { Err(Failed) } else { Ok(value + 1) }
}

async fn undo<const PENDING: bool>(value: u64) -> Result<(), Failed> {
    if PENDING {
        YieldOnce::default().await;
    }
    black_box(value);
    Ok(())
}

/// The flow: ten `then` steps, step `i` reading step `i - 1`'s value.
fn flow<const PENDING: bool>(fail: bool) -> Flow<Failed, u64, u64, impl Sized> {
    macro_rules! then {
        ($builder:expr, $fail:expr) => {
            $builder.then(
                move |(_, value)| act::<PENDING>(*value, $fail),
                |(_, own)| undo::<PENDING>(*own),
            )
        };
    }
    let builder = SagaBuilder::new().input::<u64>().then(
        |value: &u64| act::<PENDING>(*value, false),
        |(_, own): (&u64, &u64)| undo::<PENDING>(*own),
    );
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, false);
    let builder = then!(builder, fail);
    builder.build_with(|(_, last)| last)
}

/// The same ten steps passing nothing.
fn no_data<const PENDING: bool>(fail: bool) -> Saga<Failed> {
    let mut builder = SagaBuilder::new();
    for index in 0..STEPS {
        let fails = fail && index == STEPS - 1;
        builder = builder.add_step(
            move || async move { act::<PENDING>(index, fails).await.map(drop) },
            move || undo::<PENDING>(index),
        );
    }
    builder.build()
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Failed>> + Send>>;
type Action = Box<dyn FnMut(u64) -> BoxFuture<u64> + Send>;
type Undo = Box<dyn FnMut(u64) -> BoxFuture<()> + Send>;

fn dynamic_steps<const PENDING: bool>(fail: bool) -> Vec<(Action, Undo)> {
    (0..STEPS)
        .map(|index| {
            let fails = fail && index == STEPS - 1;
            (
                Box::new(move |value| Box::pin(act::<PENDING>(value, fails)) as BoxFuture<u64>)
                    as Action,
                Box::new(|value| Box::pin(undo::<PENDING>(value)) as BoxFuture<()>) as Undo,
            )
        })
        .collect()
}

/// Threads the value by hand; compensates what succeeded, in reverse.
async fn run_dynamic(steps: &mut [(Action, Undo)], input: u64) -> Result<u64, Failed> {
    let mut rollback: Vec<(&mut Undo, u64)> = Vec::with_capacity(steps.len());
    let mut value = input;
    for (action, compensation) in steps.iter_mut() {
        match action(value).await {
            Ok(next) => {
                rollback.push((compensation, next));
                value = next;
            }
            Err(error) => {
                while let Some((compensation, value)) = rollback.pop() {
                    compensation(value).await?;
                }
                return Err(error);
            }
        }
    }
    Ok(value)
}

/// One concrete closure type, the value threaded by hand.
async fn run_static<const PENDING: bool>(input: u64, fail: bool) -> Result<u64, Failed> {
    let mut applied = [0u64; STEPS as usize];
    let mut value = input;
    for index in 0..STEPS as usize {
        match act::<PENDING>(value, fail && index == STEPS as usize - 1).await {
            Ok(next) => {
                applied[index] = next;
                value = next;
            }
            Err(error) => {
                for value in applied[..index].iter().rev() {
                    undo::<PENDING>(*value).await?;
                }
                return Err(error);
            }
        }
    }
    Ok(value)
}

fn group<const PENDING: bool>(c: &mut Criterion, fail: bool) {
    let path = if fail { "failure" } else { "success" };
    let futures = if PENDING { "pending" } else { "ready" };
    let mut group = c.benchmark_group(format!("flow-{path}-{futures}"));
    group.throughput(Throughput::Elements(STEPS));
    let expected = if fail { None } else { Some(7 + STEPS) };

    assert_eq!(block_on(run_static::<PENDING>(7, fail)).ok(), expected);
    group.bench_function("static-threaded", |b| {
        b.iter(|| block_on(run_static::<PENDING>(black_box(7), fail)))
    });

    let mut steps = dynamic_steps::<PENDING>(fail);
    assert_eq!(block_on(run_dynamic(&mut steps, 7)).ok(), expected);
    group.bench_function("dynamic-threaded", |b| {
        b.iter(|| block_on(run_dynamic(&mut steps, black_box(7))))
    });

    let mut saga = no_data::<PENDING>(fail);
    assert_eq!(block_on(saga.run()).is_ok(), !fail);
    group.bench_function("saga-no-data", |b| b.iter(|| block_on(saga.run())));

    let mut flow = flow::<PENDING>(fail);
    let first = block_on(flow.run(7));
    assert_eq!(first.as_ref().ok().copied(), expected);
    if let Err(error) = first {
        assert_eq!(error.report().failed_step(), STEPS as usize - 1);
        assert!(error.report().is_fully_compensated());
        assert_eq!(error.report().compensated_count(), STEPS as usize - 1);
    }
    group.bench_function("flow", |b| b.iter(|| block_on(flow.run(black_box(7)))));
    group.finish();
}

fn success_ready(c: &mut Criterion) {
    group::<false>(c, false);
}

fn success_pending(c: &mut Criterion) {
    group::<true>(c, false);
}

fn failure_ready(c: &mut Criterion) {
    group::<false>(c, true);
}

fn failure_pending(c: &mut Criterion) {
    group::<true>(c, true);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .nresamples(10_000)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

criterion::criterion_group! {
    name = benches;
    config = config();
    targets = success_ready, success_pending, failure_ready, failure_pending
}
criterion::criterion_main!(benches);
