//! Per-run cost of the saga engine against hand-written code, on the same
//! step closures (see `common/mod.rs`), and the cost of building a saga.
//!
//! Groups (one per path and kind of future): `success-ready`,
//! `success-pending`, `failure-ready`, `failure-pending`, each with
//! `N = 1, 10, 100, 10000` steps, and `build`. Variants:
//!
//! - `static`: one concrete closure type, awaited in sequence, a manual
//!   rollback loop (the limit);
//! - `dynamic`: boxed closures returning boxed futures, a manual rollback
//!   `Vec` (what users write instead of a library);
//! - `engine`: `SagaBuilder::add_step`, built once, run many times;
//! - `engine-build+run`: the same, built (and dropped) for every run;
//! - `engine-typed`: `add_typed_step` (compensation takes the value);
//! - `engine-typed-ref`: `add_typed_step_ref` (compensation borrows it);
//! - `engine-user-step`: a hand-written `saga_core::Step` implementation;
//! - `engine-observer`: `engine` with a no-op `saga_core::Observer` attached
//!   (every method the trait's empty default);
//! - `engine-timeout`: `engine` with a sleeper whose sleep never completes
//!   and an action and a compensation timeout of an hour (armed on every
//!   attempt, never fired);
//! - `engine-concurrent-undo`: `engine` with
//!   `CompensationMode::Concurrent` (failure groups only: a successful run
//!   compensates nothing). The engine at `75b470a` settles a failure on the
//!   sequential fast path (no retry, no observer, no timeout) with its
//!   sequential backward loop whatever the mode, so this variant times like
//!   `engine` there; it shows when that changes.
//! - `floor-dyn-step`: the floor under any engine that stores its steps as
//!   `Pin<Box<dyn Step + Send>>`: the `engine` steps (the same `FnStep`s
//!   over the same closures), type-erased, driven by the simplest loop (poll
//!   each action to `Ready`; on `Err`, poll the compensations of the steps
//!   that ran, the failed one included, in reverse). No engine, no
//!   bookkeeping;
//! - `floor-dyn-step-observer`: the same loop plus the observer calls the
//!   engine makes (`saga_started`, `action_started` and `action_succeeded`
//!   or `action_failed` per step, `compensation_started` and
//!   `compensation_succeeded` per compensation, `saga_finished`, each step's
//!   `StepRef` named through `Step::name()`), through a
//!   `Box<dyn Observer + Send + Sync>` holding the no-op observer. The calls
//!   are checked against a recording of the engine's before the groups run.
//!   `StepRef` is `#[non_exhaustive]`, so the runs are timed inside an
//!   observer call of a one-step saga, on the `StepRef` it was given
//!   (`common::with_step_ref`), with criterion's `iter_custom`;
//! - `floor-user-step`: the `floor-dyn-step` loop over the `engine-user-step`
//!   steps (`CounterStep`, no futures).
//!
//! Every variant's first run is checked (outcome, failed step, counter)
//! before it is measured.
//!
//! Run with `cargo bench -p saga-tests --bench overhead`; summarise with
//! `python3 tests/benches/summarize.py` (see its header for the arguments).
//! criterion filters pick variants, e.g. `-- 'success-ready/engine'`.
//!
//! With `tracing` on in `saga-core` (a span per run, an event per
//! transition, no subscriber installed), keeping each run's results under
//! its own criterion baseline name:
//!
//! ```sh
//! cargo bench -p saga-tests --bench overhead -- --save-baseline plain
//! cargo bench -p saga-tests --bench overhead --features saga-core/tracing -- --save-baseline tracing
//! python3 tests/benches/summarize.py --baseline plain --baseline tracing
//! ```
//!
//! (`target/criterion` is read by default, or `$CARGO_TARGET_DIR/criterion`
//! when that is set; a directory can also be given.)
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

mod common;

use core::hint::black_box;
use core::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{
    Counter, DynStep, Failed, Observed, SIZES, block_on, check_floor_calls, concurrent_undo_saga,
    dynamic_steps, floor_fn_steps, floor_observer, floor_user_steps, fn_saga, observer_saga,
    run_dynamic, run_floor, run_static, static_steps, timeout_saga, typed_ref_saga, typed_saga,
    user_step_saga, with_step_ref,
};
use saga_core::{Saga, SagaError};

/// Checks one engine run's outcome and what it did to the counter.
fn check_engine(
    result: Result<(), SagaError<Failed>>,
    counter: &Counter,
    before: u64,
    steps: usize,
    fail: bool,
    failed_step_compensated: bool,
) {
    let steps = steps as u64;
    match result {
        Ok(()) => {
            assert!(!fail, "the failing saga succeeded");
            assert_eq!(counter.get(), before + steps);
        }
        Err(error) => {
            assert!(fail, "the succeeding saga failed: {error:?}");
            assert_eq!(error.failed_step() as u64, steps - 1);
            assert!(error.is_fully_compensated());
            // Only the failed step's own increment may remain.
            let left = u64::from(!failed_step_compensated);
            assert_eq!(counter.get(), before + left);
        }
    }
}

/// Checks one hand-written run's outcome and what it did to the counter.
fn check_manual(
    result: Result<(), (usize, Failed)>,
    counter: &Counter,
    before: u64,
    steps: usize,
    fail: bool,
) {
    match result {
        Ok(()) => {
            assert!(!fail, "the failing run succeeded");
            assert_eq!(counter.get(), before + steps as u64);
        }
        Err((failed_step, Failed)) => {
            assert!(fail, "the succeeding run failed");
            assert_eq!(failed_step, steps - 1);
            assert_eq!(counter.get(), before);
        }
    }
}

fn engine_variant(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut saga: Saga<Failed>,
    counter: &Counter,
    steps: usize,
    fail: bool,
    failed_step_compensated: bool,
) {
    let before = counter.get();
    check_engine(
        block_on(saga.run()),
        counter,
        before,
        steps,
        fail,
        failed_step_compensated,
    );
    group.bench_with_input(BenchmarkId::new(name, steps), &steps, |b, _| {
        b.iter(|| block_on(saga.run()));
    });
}

/// A floor variant without an observer: [`run_floor`] on `list`.
fn floor_variant(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut list: Vec<DynStep>,
    counter: &Counter,
    steps: usize,
    fail: bool,
) {
    let before = counter.get();
    check_manual(block_on(run_floor(&mut list)), counter, before, steps, fail);
    group.bench_with_input(BenchmarkId::new(name, steps), &steps, |b, _| {
        b.iter(|| block_on(run_floor(&mut list)));
    });
}

/// A floor variant with the observer calls: [`Observed::run`], timed inside
/// [`with_step_ref`] (`iter_custom`: the clock starts and stops inside the
/// job, around the `iters` runs, so the one-step saga that lends the
/// `StepRef` is not timed).
fn floor_observed_variant(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    observed: Observed,
    counter: &'static Counter,
    steps: usize,
    fail: bool,
) {
    let observed = Arc::new(Mutex::new(observed));
    let before = counter.get();
    let first = Arc::clone(&observed);
    let result = with_step_ref(move |at| first.lock().expect("not poisoned").run(at));
    check_manual(result, counter, before, steps, fail);
    group.bench_with_input(BenchmarkId::new(name, steps), &steps, |b, _| {
        b.iter_custom(|iters| {
            let observed = Arc::clone(&observed);
            with_step_ref(move |at| {
                let mut observed = observed.lock().expect("not poisoned");
                let start = Instant::now();
                for _ in 0..iters {
                    let _ = black_box(observed.run(at));
                }
                start.elapsed()
            })
        });
    });
}

fn runs<const PENDING: bool>(c: &mut Criterion, fail: bool) {
    let path = if fail { "failure" } else { "success" };
    let futures = if PENDING { "pending" } else { "ready" };
    for steps in [1, 3] {
        check_floor_calls::<PENDING>(steps, fail);
    }
    let mut group = c.benchmark_group(format!("{path}-{futures}"));
    for steps in SIZES {
        group.throughput(Throughput::Elements(steps as u64));

        let counter = Counter::leak();
        let mut static_list = static_steps::<PENDING>(counter, steps, fail);
        let before = counter.get();
        check_manual(
            block_on(run_static(&mut static_list)),
            counter,
            before,
            steps,
            fail,
        );
        group.bench_with_input(BenchmarkId::new("static", steps), &steps, |b, _| {
            b.iter(|| block_on(run_static(&mut static_list)));
        });
        drop(static_list);

        let counter = Counter::leak();
        let mut dynamic_list = dynamic_steps::<PENDING>(counter, steps, fail);
        let before = counter.get();
        check_manual(
            block_on(run_dynamic(&mut dynamic_list)),
            counter,
            before,
            steps,
            fail,
        );
        group.bench_with_input(BenchmarkId::new("dynamic", steps), &steps, |b, _| {
            b.iter(|| block_on(run_dynamic(&mut dynamic_list)));
        });
        drop(dynamic_list);

        let counter = Counter::leak();
        let saga = fn_saga::<PENDING>(counter, steps, fail);
        engine_variant(&mut group, "engine", saga, counter, steps, fail, true);

        let counter = Counter::leak();
        let before = counter.get();
        let result = block_on(fn_saga::<PENDING>(counter, steps, fail).run());
        check_engine(result, counter, before, steps, fail, true);
        group.bench_with_input(
            BenchmarkId::new("engine-build+run", steps),
            &steps,
            |b, _| {
                b.iter(|| block_on(fn_saga::<PENDING>(counter, steps, fail).run()));
            },
        );

        let counter = Counter::leak();
        let saga = typed_saga::<PENDING>(counter, steps, fail);
        engine_variant(
            &mut group,
            "engine-typed",
            saga,
            counter,
            steps,
            fail,
            false,
        );

        let counter = Counter::leak();
        let saga = typed_ref_saga::<PENDING>(counter, steps, fail);
        engine_variant(
            &mut group,
            "engine-typed-ref",
            saga,
            counter,
            steps,
            fail,
            false,
        );

        let counter = Counter::leak();
        let saga = user_step_saga::<PENDING>(counter, steps, fail);
        engine_variant(
            &mut group,
            "engine-user-step",
            saga,
            counter,
            steps,
            fail,
            true,
        );

        let counter = Counter::leak();
        let saga = observer_saga::<PENDING>(counter, steps, fail);
        engine_variant(
            &mut group,
            "engine-observer",
            saga,
            counter,
            steps,
            fail,
            true,
        );

        let counter = Counter::leak();
        let saga = timeout_saga::<PENDING>(counter, steps, fail);
        engine_variant(
            &mut group,
            "engine-timeout",
            saga,
            counter,
            steps,
            fail,
            true,
        );

        let counter = Counter::leak();
        let list = floor_fn_steps::<PENDING>(counter, steps, fail);
        floor_variant(&mut group, "floor-dyn-step", list, counter, steps, fail);

        let counter = Counter::leak();
        let observed = Observed::new(
            floor_fn_steps::<PENDING>(counter, steps, fail),
            floor_observer(),
        );
        floor_observed_variant(
            &mut group,
            "floor-dyn-step-observer",
            observed,
            counter,
            steps,
            fail,
        );

        let counter = Counter::leak();
        let list = floor_user_steps::<PENDING>(counter, steps, fail);
        floor_variant(&mut group, "floor-user-step", list, counter, steps, fail);

        if fail {
            let counter = Counter::leak();
            let saga = concurrent_undo_saga::<PENDING>(counter, steps, fail);
            engine_variant(
                &mut group,
                "engine-concurrent-undo",
                saga,
                counter,
                steps,
                fail,
                true,
            );
        }
    }
    group.finish();
}

fn success_ready(c: &mut Criterion) {
    runs::<false>(c, false);
}

fn success_pending(c: &mut Criterion) {
    runs::<true>(c, false);
}

fn failure_ready(c: &mut Criterion) {
    runs::<false>(c, true);
}

fn failure_pending(c: &mut Criterion) {
    runs::<true>(c, true);
}

/// Build cost alone: the result is dropped outside the measurement.
fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    let counter = Counter::leak();
    for steps in SIZES {
        group.throughput(Throughput::Elements(steps as u64));
        group.bench_with_input(BenchmarkId::new("static", steps), &steps, |b, &n| {
            b.iter_with_large_drop(|| static_steps::<false>(counter, n, false));
        });
        group.bench_with_input(BenchmarkId::new("dynamic", steps), &steps, |b, &n| {
            b.iter_with_large_drop(|| dynamic_steps::<false>(counter, n, false));
        });
        group.bench_with_input(BenchmarkId::new("engine", steps), &steps, |b, &n| {
            b.iter_with_large_drop(|| fn_saga::<false>(counter, n, false));
        });
        group.bench_with_input(BenchmarkId::new("engine-typed", steps), &steps, |b, &n| {
            b.iter_with_large_drop(|| typed_saga::<false>(counter, n, false));
        });
        group.bench_with_input(
            BenchmarkId::new("engine-user-step", steps),
            &steps,
            |b, &n| {
                b.iter_with_large_drop(|| user_step_saga::<false>(counter, n, false));
            },
        );
    }
    group.finish();
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
    targets = success_ready, success_pending, failure_ready, failure_pending, build
}
criterion::criterion_main!(benches);
