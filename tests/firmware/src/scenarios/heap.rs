//! The allocation contract on the device, counted by the global allocator:
//! a successful run of a prebuilt saga allocates nothing (plain, typed and
//! group steps, pending futures, an observer, a sleeper with a backoff, an
//! abort handle); a failed run allocates its report and nothing else; and
//! once the sagas and reports are dropped, the heap is back where it was.

use alloc::string::String;
use alloc::sync::Arc;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll};
use core::time::Duration;

use saga_core::{AbortHandle, Observer, Retry, Saga, SagaBuilder, StepPolicy, StepRef};

use crate::exec::{TickSleeper, Yield};
use crate::heap::{HEAP, Stats};
use crate::support::{Error, check, check_eq, drive};

/// An observer that only counts, so it allocates nothing itself.
#[derive(Debug, Default)]
struct Counting(AtomicU32);

impl Observer<Error> for Counting {
    fn action_succeeded(&self, _: StepRef<'_>, _: u32) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn compensation_succeeded(&self, _: StepRef<'_>, _: u32) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A step's future: `yields` self-waking `Pending`s, then it counts itself
/// in `done` and fails if asked to. Allocates nothing.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
struct Counted {
    done: Arc<AtomicU32>,
    yields: Yield,
    fails: bool,
}

impl Future for Counted {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if Pin::new(&mut self.yields).poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(if self.fails {
            Err(Error::Step("failed"))
        } else {
            Ok(())
        })
    }
}

fn counted(
    done: &Arc<AtomicU32>,
    yields: u32,
    fails: bool,
) -> impl FnMut() -> Counted + Send + use<> {
    let done = done.clone();
    move || Counted {
        done: done.clone(),
        yields: Yield(yields),
        fails,
    }
}

/// A saga of every kind of step: plain, typed by value and by reference, a
/// parallel group, with pending futures and an observer; its last plain
/// step fails when `fails`.
fn mixed_saga(done: &Arc<AtomicU32>, undone: &Arc<AtomicU32>, fails: bool) -> Saga<Error> {
    let (by_value, by_ref) = (undone.clone(), undone.clone());
    let mut builder = SagaBuilder::new();
    for index in 0..6 {
        builder = builder.add_step(counted(done, index % 3, false), counted(undone, 1, false));
    }
    builder
        .add_typed_step(
            || async {
                Yield(1).await;
                Ok(7u32)
            },
            move |value: u32| {
                let undone = by_value.clone();
                async move {
                    undone.fetch_add(value - 6, Ordering::Relaxed);
                    Ok(())
                }
            },
        )
        .add_typed_step_ref(
            || async { Ok("reservation-1") },
            move |_: &&'static str| {
                let undone = by_ref.clone();
                async move {
                    undone.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            },
        )
        .parallel(|group| {
            group
                .add_step(counted(done, 2, false), counted(undone, 0, false))
                .add_step(counted(done, 3, false), counted(undone, 0, false))
                .add_step(counted(done, 1, false), counted(undone, 0, false))
        })
        .add_step(counted(done, 1, fails), counted(undone, 0, false))
        .observer(Counting::default())
        .build()
}

/// What `f` did to the heap: the counters before and after, and its output.
fn measure<T>(f: impl FnOnce() -> T) -> (Stats, Stats, T) {
    let before = HEAP.stats();
    let output = f();
    (before, HEAP.stats(), output)
}

fn allocations(before: &Stats, after: &Stats) -> usize {
    after.allocations - before.allocations + after.reallocations - before.reallocations
}

pub fn run() -> Result<(), String> {
    let baseline = HEAP.stats();
    let (done, undone) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));

    // Success: nothing allocated, nothing left behind, run after run.
    let mut saga = mixed_saga(&done, &undone, false);
    for round in 0..3 {
        let (before, after, result) = measure(|| drive("mixed success", saga.run()));
        check!(result?.is_ok(), "round {round}: the mixed saga failed");
        check_eq!(
            allocations(&before, &after),
            0,
            "allocations in a successful run"
        );
        check_eq!(after.used, before.used, "heap used across a successful run");
    }
    check_eq!(done.load(Ordering::Relaxed), 3 * 10, "actions run");

    // Failure: the report, one allocation, freed with it.
    let mut failing = mixed_saga(&done, &undone, true);
    let before = HEAP.stats();
    let (_, during, result) = measure(|| drive("mixed failure", failing.run()));
    let error = result?.err().ok_or("the failing mixed saga succeeded")?;
    check!(
        error.is_fully_compensated(),
        "not fully compensated: {}",
        error
    );
    check_eq!(undone.load(Ordering::Relaxed), 12, "compensations run");
    check_eq!(
        allocations(&before, &during),
        1,
        "allocations in a failed run"
    );
    drop(error);
    let after = HEAP.stats();
    check_eq!(
        after.used,
        before.used,
        "heap used once the report is dropped"
    );
    check_eq!(after.live_blocks(), before.live_blocks(), "live blocks");

    // A sleeper, a backoff and timeouts: runs allocate nothing to keep time.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let mut timed = SagaBuilder::new()
        .sleeper(TickSleeper)
        .action_timeout(Duration::from_millis(100))
        .saga_timeout(Duration::from_millis(1000))
        .add_step_with(
            move || {
                let call = counter.fetch_add(1, Ordering::Relaxed);
                core::future::ready(if call % 2 == 0 {
                    Err(Error::Step("busy"))
                } else {
                    Ok(())
                })
            },
            counted(&undone, 0, false),
            StepPolicy::new().retry(Retry::attempts(2).constant(Duration::from_millis(3))),
        )
        .add_step(counted(&done, 2, false), counted(&undone, 0, false))
        .build();
    for _ in 0..2 {
        let (before, after, result) = measure(|| drive("timed success", timed.run()));
        check!(result?.is_ok(), "the timed saga failed");
        check_eq!(
            allocations(&before, &after),
            0,
            "allocations in a timed run"
        );
        check_eq!(after.used, before.used, "heap used across a timed run");
    }
    check_eq!(calls.load(Ordering::Relaxed), 4, "timed attempts");

    // An abort handle, made beforehand: an abortable run allocates nothing.
    let handle = AbortHandle::new();
    let (before, after, result) = measure(|| drive("abortable", saga.run().abortable(&handle)));
    check!(result?.is_ok(), "the abortable run failed");
    check_eq!(
        allocations(&before, &after),
        0,
        "allocations in an abortable run"
    );

    // Everything dropped: the heap is back at the scenario's start.
    drop((saga, failing, timed, handle, done, undone, calls));
    let end = HEAP.stats();
    check_eq!(
        end.used,
        baseline.used,
        "heap used after dropping the sagas"
    );
    check_eq!(end.live_blocks(), baseline.live_blocks(), "live blocks");
    Ok(())
}
