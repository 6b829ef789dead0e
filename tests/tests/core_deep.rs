//! No recursion per step: a 100,000-step saga runs and compensates on a thread
//! with a 256 KiB stack, on the noop-waker executor. (Nothing here measures
//! time; a recursive engine overflows the stack, a quadratic one shows up as a
//! test that takes minutes.)
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use saga_core::{CompensationMode, Saga, SagaBuilder};
use support::Yield;

const STEPS: usize = 100_000;
const STACK: usize = 256 * 1024;

/// Runs `f` on a thread with a 256 KiB stack and returns its result.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("small stack".into())
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn a small-stack thread")
        .join()
        .expect("the small-stack thread panicked (a stack overflow aborts the process instead)")
}

/// `STEPS` steps over one shared depth: action `i` checks the depth is `i` and
/// makes it `i + 1`; compensation `i` checks it is `i + 1` and makes it `i`.
/// So every action runs in order and every compensation in reverse order, or
/// a step records a violation. Step `fail_at` fails after applying.
fn deep_saga(
    depth: &Arc<AtomicUsize>,
    violations: &Arc<AtomicUsize>,
    fail_at: Option<usize>,
    undo_fails: bool,
    yields: u32,
) -> Saga<usize> {
    let mut builder = SagaBuilder::new();
    if undo_fails {
        builder = builder.compensation_mode(CompensationMode::ContinueOnError);
    }
    for i in 0..STEPS {
        let (d, v) = (depth.clone(), violations.clone());
        let (dc, vc) = (depth.clone(), violations.clone());
        builder = builder.add_step(
            move || {
                if d.swap(i + 1, Ordering::SeqCst) != i {
                    v.fetch_add(1, Ordering::SeqCst);
                }
                async move {
                    Yield(yields).await;
                    if fail_at == Some(i) { Err(i) } else { Ok(()) }
                }
            },
            move || {
                if !undo_fails && dc.swap(i, Ordering::SeqCst) != i + 1 {
                    vc.fetch_add(1, Ordering::SeqCst);
                }
                async move {
                    Yield(yields).await;
                    if undo_fails { Err(i) } else { Ok(()) }
                }
            },
        );
    }
    builder.build()
}

#[test]
fn a_100_000_step_saga_succeeds_on_a_small_stack() {
    on_small_stack(|| {
        let depth = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let mut saga = deep_saga(&depth, &violations, None, false, 0);
        assert_eq!(saga.len(), STEPS);
        let (result, polls) = support::block_on_counting(saga.run());
        result.unwrap();
        assert_eq!(polls, 1, "ready steps never make the run pending");
        assert_eq!(depth.load(Ordering::SeqCst), STEPS);
        assert_eq!(violations.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_100_000_step_saga_compensates_on_a_small_stack() {
    on_small_stack(|| {
        let depth = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let mut saga = deep_saga(&depth, &violations, Some(STEPS - 1), false, 0);
        let error = support::block_on(saga.run()).unwrap_err();
        assert_eq!(error.failed_step(), STEPS - 1);
        assert!(error.is_fully_compensated());
        assert_eq!(error.compensated_count(), STEPS);
        assert_eq!(depth.load(Ordering::SeqCst), 0);
        assert_eq!(violations.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_100_000_step_saga_that_suspends_in_every_step() {
    // Every action and compensation suspends once: the run resumes where it
    // stood (no rescans from step 0), at most one poll per suspension.
    on_small_stack(|| {
        let depth = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let mut saga = deep_saga(&depth, &violations, Some(STEPS - 1), false, 1);
        let (result, polls) = support::block_on_counting(saga.run());
        assert!(result.unwrap_err().is_fully_compensated());
        // At most one poll per suspension (core_order pins it to exactly one).
        assert!(polls <= 2 * STEPS + 1, "{polls} polls");
        assert_eq!(violations.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_100_000_step_saga_collecting_every_compensation_error() {
    on_small_stack(|| {
        let depth = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicUsize::new(0));
        let mut saga = deep_saga(&depth, &violations, Some(STEPS - 1), true, 0);
        let error = support::block_on(saga.run()).unwrap_err();
        assert_eq!(error.compensation_errors().len(), STEPS);
        assert_eq!(error.uncompensated_count(), STEPS);
        assert!(error.uncompensated_steps().eq(0..STEPS));
        assert!(
            error
                .compensation_errors()
                .iter()
                .map(|e| e.step())
                .eq((0..STEPS).rev())
        );
        assert_eq!(violations.load(Ordering::SeqCst), 0);
        drop(error);
        drop(saga); // dropping 100,000 steps does not recurse either
    });
}
