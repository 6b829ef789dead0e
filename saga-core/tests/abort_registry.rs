//! One `AbortHandle` attached to several runs, driven by hand, each run with a
//! waker of its own that counts its wake-ups: which runs an abort wakes,
//! within the handle's table and beyond it, and that runs that ended leave
//! nothing behind.
//!
//! saga-core's own tests build without `std` (`cargo test -p saga-core`),
//! which is the `no_std` registry: the table only, runs beyond it not woken.
//! In the workspace (`cargo test --workspace`) the runtime adapters turn
//! `std` on, and runs beyond the table are woken as well; each test asserts
//! what its build promises.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::future::pending;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use saga_core::{AbortHandle, Aborted, InFlight, Run, Saga, SagaBuilder, SagaError};

/// With `std`, runs beyond the table are registered (and woken) too.
const UNBOUNDED: bool = cfg!(feature = "std");

#[derive(Debug, PartialEq)]
enum Error {
    Aborted,
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

/// Counts a waker's wake-ups.
#[derive(Debug, Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker of its own, and how often it was woken.
fn counting_waker() -> (Waker, Arc<Wakes>) {
    let wakes = Arc::new(Wakes::default());
    (Waker::from(wakes.clone()), wakes)
}

fn woken(wakes: &Wakes) -> usize {
    wakes.0.load(Ordering::SeqCst)
}

/// Step 0 succeeds (its compensation counted in `undone`); step 1's action
/// never finishes and is cut short by an abort.
fn hanging_saga(undone: &Arc<AtomicUsize>) -> Saga<Error> {
    let undone = undone.clone();
    SagaBuilder::new()
        .add_step(
            || async { Ok(()) },
            move || {
                undone.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        )
        .add_step(pending::<Result<(), Error>>, || async { Ok(()) })
        .on_abort(InFlight::CutShort)
        .build()
}

fn poll(run: &mut Run<'_, Error>, waker: &Waker) -> Poll<Result<(), SagaError<Error>>> {
    Pin::new(run).poll(&mut Context::from_waker(waker))
}

fn sagas(count: usize, undone: &Arc<AtomicUsize>) -> Vec<Saga<Error>> {
    (0..count).map(|_| hanging_saga(undone)).collect()
}

/// Polls each run once with its waker: each waits in step 1.
fn start_all(runs: &mut [Run<'_, Error>], wakers: &[(Waker, Arc<Wakes>)]) {
    for (run, (waker, _)) in runs.iter_mut().zip(wakers) {
        assert!(poll(run, waker).is_pending());
    }
}

/// Polls each run to its end (the abort is seen at the poll), checking it
/// was aborted and compensated.
fn finish_all(runs: &mut [Run<'_, Error>], wakers: &[(Waker, Arc<Wakes>)]) {
    for (run, (waker, _)) in runs.iter_mut().zip(wakers) {
        let Poll::Ready(Err(error)) = poll(run, waker) else {
            panic!("an aborted run whose action hangs did not end at its next poll");
        };
        assert!(error.aborted());
        assert_eq!(*error.error(), Error::Aborted);
        assert!(error.is_fully_compensated());
    }
}

#[test]
fn within_capacity_every_run_is_woken_once() {
    for capacity in [1, 4, 64, 65, 130] {
        let undone = Arc::new(AtomicUsize::new(0));
        let mut sagas = sagas(capacity, &undone);
        let handle = AbortHandle::with_capacity(capacity);
        let wakers: Vec<_> = (0..capacity).map(|_| counting_waker()).collect();
        let mut runs: Vec<_> = sagas
            .iter_mut()
            .map(|s| s.run().abortable(&handle))
            .collect();
        start_all(&mut runs, &wakers);
        assert_eq!(handle.attached_runs(), capacity);
        assert!(wakers.iter().all(|(_, wakes)| woken(wakes) == 0));

        handle.abort();
        let counts: Vec<_> = wakers.iter().map(|(_, wakes)| woken(wakes)).collect();
        assert!(
            counts.iter().all(|&n| n == 1),
            "capacity {capacity}: {counts:?}"
        );
        finish_all(&mut runs, &wakers);
        assert_eq!(undone.load(Ordering::SeqCst), capacity);
        assert_eq!(handle.attached_runs(), 0);
        drop(runs);
        assert_eq!(
            handle.registry_slots(),
            capacity,
            "nothing beyond the table"
        );
    }
}

#[test]
fn beyond_capacity_runs_are_woken_with_std_and_see_the_abort_at_their_next_poll_without() {
    for (capacity, count) in [(0, 3), (1, 5), (2, 5), (64, 70)] {
        let undone = Arc::new(AtomicUsize::new(0));
        let mut sagas = sagas(count, &undone);
        let handle = AbortHandle::with_capacity(capacity);
        let wakers: Vec<_> = (0..count).map(|_| counting_waker()).collect();
        let mut runs: Vec<_> = sagas
            .iter_mut()
            .map(|s| s.run().abortable(&handle))
            .collect();
        start_all(&mut runs, &wakers);
        // The first `capacity` runs polled got the table's slots.
        let expected = if UNBOUNDED { count } else { capacity };
        assert_eq!(handle.attached_runs(), expected);

        handle.abort();
        for (run, (_, wakes)) in wakers.iter().enumerate() {
            let expected = usize::from(UNBOUNDED || run < capacity);
            assert_eq!(woken(wakes), expected, "capacity {capacity}, run {run}");
        }
        finish_all(&mut runs, &wakers);
        assert_eq!(undone.load(Ordering::SeqCst), count);
        assert_eq!(handle.attached_runs(), 0);
    }
}

#[test]
fn a_run_beyond_capacity_takes_a_slot_freed_by_a_run_that_ended() {
    let undone = Arc::new(AtomicUsize::new(0));
    let mut sagas = sagas(2, &undone);
    let handle = AbortHandle::new(); // one slot
    let (first_waker, first_wakes) = counting_waker();
    let (second_waker, second_wakes) = counting_waker();
    let [first, second] = &mut sagas[..] else {
        unreachable!()
    };
    let mut first = first.run().abortable(&handle);
    let mut second = second.run().abortable(&handle);
    assert!(poll(&mut first, &first_waker).is_pending());
    assert!(poll(&mut second, &second_waker).is_pending());
    assert_eq!(handle.attached_runs(), if UNBOUNDED { 2 } else { 1 });

    drop(first); // dropped mid-saga: it detaches
    assert_eq!(handle.attached_runs(), usize::from(UNBOUNDED));
    // Without `std`, the second run claims the freed slot at this poll.
    assert!(poll(&mut second, &second_waker).is_pending());
    assert_eq!(handle.attached_runs(), 1);

    handle.abort();
    assert_eq!(
        woken(&first_wakes),
        0,
        "a dropped run's waker is never woken"
    );
    assert_eq!(woken(&second_wakes), 1);
    let Poll::Ready(Err(error)) = poll(&mut second, &second_waker) else {
        panic!("the second run did not end");
    };
    assert!(error.aborted() && error.is_fully_compensated());
}

#[test]
fn a_slot_reused_by_a_later_run_wakes_only_that_run() {
    let undone = Arc::new(AtomicUsize::new(0));
    let handle = AbortHandle::new();
    let (early_waker, early_wakes) = counting_waker();
    let (late_waker, late_wakes) = counting_waker();

    // A run that ends well in the same slot.
    let mut quick: Saga<Error> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    let mut run = quick.run().abortable(&handle);
    assert!(matches!(poll(&mut run, &early_waker), Poll::Ready(Ok(()))));
    // The forward phase ended: detached, before the run is even dropped.
    assert_eq!(handle.attached_runs(), 0);
    drop(run);

    // And one dropped while it waited.
    let mut hanging = hanging_saga(&undone);
    let mut run = hanging.run().abortable(&handle);
    assert!(poll(&mut run, &early_waker).is_pending());
    assert_eq!(handle.attached_runs(), 1);
    drop(run);
    assert_eq!(handle.attached_runs(), 0);

    let mut run = hanging.run().abortable(&handle);
    assert!(poll(&mut run, &late_waker).is_pending());
    handle.abort();
    assert_eq!(woken(&early_wakes), 0, "a finished run's waker was woken");
    assert_eq!(woken(&late_wakes), 1);
    assert!(matches!(poll(&mut run, &late_waker), Poll::Ready(Err(e)) if e.aborted()));
    assert_eq!(
        undone.load(Ordering::SeqCst),
        1,
        "only the last run compensated"
    );
}

#[test]
fn a_new_waker_replaces_the_registered_one() {
    for capacity in [1, 0] {
        // Capacity 0: the slab with `std`; without it the run is never
        // registered, and nothing is woken.
        let undone = Arc::new(AtomicUsize::new(0));
        let mut saga = hanging_saga(&undone);
        let handle = AbortHandle::with_capacity(capacity);
        let (old_waker, old_wakes) = counting_waker();
        let (new_waker, new_wakes) = counting_waker();
        let mut run = saga.run().abortable(&handle);
        assert!(poll(&mut run, &old_waker).is_pending());
        for _ in 0..3 {
            assert!(poll(&mut run, &new_waker).is_pending());
        }
        handle.abort();
        let registered = UNBOUNDED || capacity > 0;
        assert_eq!(woken(&old_wakes), 0);
        assert_eq!(woken(&new_wakes), usize::from(registered));
        assert!(matches!(poll(&mut run, &new_waker), Poll::Ready(Err(e)) if e.aborted()));
    }
}

#[test]
fn an_abort_before_the_first_poll_stops_every_run_before_its_first_action() {
    let started = Arc::new(AtomicUsize::new(0));
    let handle = AbortHandle::with_capacity(2);
    handle.abort();
    for _ in 0..5 {
        let started = started.clone();
        let mut saga: Saga<Error> = SagaBuilder::new()
            .add_step(
                move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                },
                || async { Ok(()) },
            )
            .build();
        let (waker, wakes) = counting_waker();
        let Poll::Ready(Err(error)) = poll(&mut saga.run().abortable(&handle), &waker) else {
            panic!("an aborted run did not stop at once");
        };
        assert!(error.aborted());
        assert_eq!((error.failed_step(), error.compensated_count()), (0, 0));
        assert_eq!(woken(&wakes), 0);
    }
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(handle.attached_runs(), 0);
}

#[test]
fn many_runs_one_after_another_leave_the_registry_as_it_was() {
    let handle = AbortHandle::with_capacity(3);
    let (waker, wakes) = counting_waker();
    let mut saga: Saga<Error> = SagaBuilder::new()
        .add_step(|| async { Ok(()) }, || async { Ok(()) })
        .build();
    for _ in 0..10_000 {
        assert!(matches!(
            poll(&mut saga.run().abortable(&handle), &waker),
            Poll::Ready(Ok(()))
        ));
    }
    assert_eq!(handle.attached_runs(), 0);
    assert_eq!(handle.registry_slots(), 3);
    handle.abort();
    assert_eq!(woken(&wakes), 0);
}

#[test]
fn the_handle_is_clone_send_sync_debug_and_default() {
    fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + Default>() {}
    assert_traits::<AbortHandle>();
    let handle = AbortHandle::default();
    let clone = handle.clone();
    clone.abort();
    assert!(handle.is_aborted());
    let debug = format!("{handle:?}");
    assert!(debug.contains("aborted: true"), "{debug}");
}

#[test]
fn rounds_of_runs_beyond_capacity_reuse_the_same_room() {
    let undone = Arc::new(AtomicUsize::new(0));
    let handle = AbortHandle::new();
    let mut sagas = sagas(10, &undone);
    let wakers: Vec<_> = (0..10).map(|_| counting_waker()).collect();
    let mut room = None;
    for _ in 0..100 {
        let mut runs: Vec<_> = sagas
            .iter_mut()
            .map(|s| s.run().abortable(&handle))
            .collect();
        start_all(&mut runs, &wakers);
        assert_eq!(handle.attached_runs(), if UNBOUNDED { 10 } else { 1 });
        drop(runs); // mid-saga
        assert_eq!(handle.attached_runs(), 0);
        let slots = handle.registry_slots();
        assert_eq!(*room.get_or_insert(slots), slots, "the registry grew");
    }
    handle.abort();
    assert!(wakers.iter().all(|(_, wakes)| woken(wakes) == 0));
    assert_eq!(
        undone.load(Ordering::SeqCst),
        0,
        "dropped runs do not compensate"
    );
}
