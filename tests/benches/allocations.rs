//! Allocation counts per build and per run, counted by a global allocator
//! (`stats_alloc`), and the size in bytes of the run future and of the step
//! types. Prints two tables; `cargo bench -p saga-tests --bench allocations`.
//! The `engine (add_step, no-op observer)` rows are `engine (add_step)` with a
//! `saga_core::Observer` that does nothing attached; a line after the table
//! says whether its runs allocate as much as without it.
//!
//! "allocs" counts `alloc` calls, "reallocs" `realloc` calls (a `Vec`
//! growing in place or by moving). A run is counted from the call that makes
//! its future to the drop of its result.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core,
    missing_docs
)]

mod common;

use core::future::Future;
use core::mem::{size_of, size_of_val};
use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

use common::{
    BoxFuture, Counter, CounterStep, Failed, SIZES, StepFn, action, block_on, compensation,
    dynamic_steps, fn_saga, fn_step, observer_saga, run_dynamic, run_static, static_steps,
    typed_ref_saga, typed_ref_step, typed_saga, typed_step, user_step_saga,
};
use saga_core::{Run, Saga, SagaError};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations made by `f` (on this single thread).
fn count<T>(f: impl FnOnce() -> T) -> (usize, usize, T) {
    let region = Region::new(GLOBAL);
    let output = f();
    let change = region.change();
    (change.allocations, change.reallocations, output)
}

fn cell((allocs, reallocs): (usize, usize)) -> String {
    if reallocs == 0 {
        format!("{allocs}")
    } else {
        format!("{allocs} + {reallocs} realloc")
    }
}

/// One table row: build, then run on the success and failure paths, with
/// ready and pending futures. Returns the run cells.
fn row<B, R, O>(name: &str, steps: usize, mut build: B, mut run: R) -> Vec<String>
where
    B: FnMut(&'static Counter, usize, bool, bool) -> O,
    R: FnMut(&mut O),
{
    let counter = Counter::leak();
    let (allocs, reallocs, _built) = count(|| build(counter, steps, false, false));
    let built = (allocs, reallocs);
    let mut runs = Vec::new();
    for (fail, pending) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut built = build(counter, steps, fail, pending);
        run(&mut built); // warm: the first run is measured like the others
        let (allocs, reallocs, ()) = count(|| run(&mut built));
        runs.push(cell((allocs, reallocs)));
    }
    println!(
        "| {name} | {steps} | {} | {} | {} | {} | {} |",
        cell(built),
        runs[0],
        runs[1],
        runs[2],
        runs[3]
    );
    runs
}

/// Builds with ready or pending futures.
fn pick<T>(pending: bool, ready: impl FnOnce() -> T, pending_build: impl FnOnce() -> T) -> T {
    if pending { pending_build() } else { ready() }
}

/// The static steps have one type per kind of future, so their row is
/// counted by hand.
fn static_row(steps: usize) {
    let counter = Counter::leak();
    let (allocs, reallocs, _built) = count(|| static_steps::<false>(counter, steps, false));
    let mut runs = vec![cell((allocs, reallocs))];
    for fail in [false, true] {
        let mut ready = static_steps::<false>(counter, steps, fail);
        let (allocs, reallocs, _) = count(|| block_on(run_static(&mut ready)));
        runs.push(cell((allocs, reallocs)));
        let mut pending = static_steps::<true>(counter, steps, fail);
        let (allocs, reallocs, _) = count(|| block_on(run_static(&mut pending)));
        runs.push(cell((allocs, reallocs)));
    }
    println!("| static | {steps} | {} |", runs.join(" | "));
}

fn engine_row(
    name: &str,
    steps: usize,
    build: fn(&'static Counter, usize, bool, bool) -> Saga<Failed>,
) -> Vec<String> {
    row(name, steps, build, |saga| {
        let _ = block_on(saga.run());
    })
}

fn allocation_table() {
    println!("## Allocations (calls to the global allocator)\n");
    println!(
        "| variant | N | build | run: success, ready | run: success, pending | run: failure, ready | run: failure, pending |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    // (N, runs without an observer, runs with the no-op one) where they differ.
    let mut observer_differs = Vec::new();
    for steps in SIZES {
        static_row(steps);
        row(
            "dynamic",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || dynamic_steps::<false>(counter, steps, fail),
                    || dynamic_steps::<true>(counter, steps, fail),
                )
            },
            |list| {
                let _ = block_on(run_dynamic(list));
            },
        );
        let plain = engine_row(
            "engine (add_step)",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || fn_saga::<false>(counter, steps, fail),
                    || fn_saga::<true>(counter, steps, fail),
                )
            },
        );
        let observed = engine_row(
            "engine (add_step, no-op observer)",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || observer_saga::<false>(counter, steps, fail),
                    || observer_saga::<true>(counter, steps, fail),
                )
            },
        );
        if plain != observed {
            observer_differs.push((steps, plain, observed));
        }
        engine_row(
            "engine (add_typed_step)",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || typed_saga::<false>(counter, steps, fail),
                    || typed_saga::<true>(counter, steps, fail),
                )
            },
        );
        engine_row(
            "engine (add_typed_step_ref)",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || typed_ref_saga::<false>(counter, steps, fail),
                    || typed_ref_saga::<true>(counter, steps, fail),
                )
            },
        );
        engine_row(
            "engine (user Step)",
            steps,
            |counter, steps, fail, pending| {
                pick(
                    pending,
                    || user_step_saga::<false>(counter, steps, fail),
                    || user_step_saga::<true>(counter, steps, fail),
                )
            },
        );
    }
    println!();
    if observer_differs.is_empty() {
        println!(
            "No-op observer: the same allocations per run as `engine (add_step)`, for every N and path."
        );
    } else {
        for (steps, plain, observed) in observer_differs {
            println!(
                "No-op observer, N = {steps}: runs allocate {} with it, against {} without.",
                observed.join(" / "),
                plain.join(" / ")
            );
        }
    }
}

fn future_size<F: Future>(future: &F) -> usize {
    size_of_val(future)
}

fn size_table() {
    let counter = Counter::leak();
    println!("\n## Sizes in bytes\n");
    println!("| type | ready futures | pending-once futures |");
    println!("| --- | ---: | ---: |");
    println!(
        "| `saga_core::Run<'_, Failed>` (the run future) | {} | {} |",
        size_of::<Run<'static, Failed>>(),
        size_of::<Run<'static, Failed>>()
    );
    println!(
        "| `Result<(), SagaError<Failed>>` (its output) | {} | {} |",
        size_of::<Result<(), SagaError<Failed>>>(),
        size_of::<Result<(), SagaError<Failed>>>()
    );
    println!(
        "| `Saga<Failed>` (excluding the steps' boxes) | {} | {} |",
        size_of::<Saga<Failed>>(),
        size_of::<Saga<Failed>>()
    );
    println!(
        "| `FnStep` (add_step) with the bench closures | {} | {} |",
        size_of_val(&fn_step::<false>(counter, false)),
        size_of_val(&fn_step::<true>(counter, false))
    );
    println!(
        "| `TypedStep<.., ByValue>` (add_typed_step) | {} | {} |",
        size_of_val(&typed_step::<false>(counter, false)),
        size_of_val(&typed_step::<true>(counter, false))
    );
    println!(
        "| `TypedStep<.., ByRef>` (add_typed_step_ref) | {} | {} |",
        size_of_val(&typed_ref_step::<false>(counter, false)),
        size_of_val(&typed_ref_step::<true>(counter, false))
    );
    println!(
        "| `CounterStep` (user `Step` impl) | {} | {} |",
        size_of::<CounterStep<false>>(),
        size_of::<CounterStep<true>>()
    );
    println!(
        "| action future (one async block) | {} | {} |",
        future_size(&action::<false>(counter, false).call()),
        future_size(&action::<true>(counter, false).call())
    );
    println!(
        "| compensation future | {} | {} |",
        future_size(&compensation::<false>(counter).call()),
        future_size(&compensation::<true>(counter).call())
    );
    let mut ready = static_steps::<false>(counter, 1, false);
    let mut pending = static_steps::<true>(counter, 1, false);
    println!(
        "| static hand-written run future | {} | {} |",
        future_size(&run_static(&mut ready)),
        future_size(&run_static(&mut pending))
    );
    let mut ready = dynamic_steps::<false>(counter, 1, false);
    let mut pending = dynamic_steps::<true>(counter, 1, false);
    println!(
        "| dynamic hand-written run future (+ a `Box` per step future) | {} | {} |",
        future_size(&run_dynamic(&mut ready)),
        future_size(&run_dynamic(&mut pending))
    );
    println!(
        "| `Pin<Box<dyn Future>>` (dynamic, per step future) | {} | {} |",
        size_of::<BoxFuture>(),
        size_of::<BoxFuture>()
    );
}

fn main() {
    allocation_table();
    size_table();
}
