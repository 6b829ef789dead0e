//! Rule 9: dropping a run future mid-saga stops it without compensating. The
//! step in flight has its future dropped, nothing leaks, nothing panics, and
//! the saga can run again afterwards.
#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use futures_util::future::{Either, select};
use saga_core::{FnStep, Saga, SagaBuilder};
use support::{Event, Ledger, Live, TestError, Yield, act, on_every_executor, undo};

const STEPS: usize = 5;
const YIELDS: u32 = 2;

/// Five steps whose actions and compensations suspend `YIELDS` times. Every
/// in-flight future holds a tracker of `futures`, every step closure one of
/// `steps`. When `fail_last`, the last action fails.
fn tracked_saga(ledger: &Ledger, futures: &Live, steps: &Live, fail_last: bool) -> Saga<TestError> {
    let mut builder = SagaBuilder::new();
    for i in 0..STEPS {
        let (a, c) = (ledger.clone(), ledger.clone());
        let (fa, fc) = (futures.clone(), futures.clone());
        let (sa, sc) = (steps.track(), steps.track());
        let fails = fail_last && i == STEPS - 1;
        builder = builder.step(support::Checked::new(
            ledger,
            i,
            FnStep::new(
                move || {
                    let _ = &sa;
                    let (a, guard) = (a.clone(), fa.track());
                    async move {
                        let result = act(a, i, YIELDS, fails, ()).await;
                        drop(guard);
                        result
                    }
                },
                move || {
                    let _ = &sc;
                    let (c, guard) = (c.clone(), fc.track());
                    async move {
                        let result = undo(c, i, YIELDS, false).await;
                        drop(guard);
                        result
                    }
                },
            ),
        ));
    }
    builder.build()
}

fn forward() -> Vec<Event> {
    (0..STEPS)
        .flat_map(|i| [Event::Action(i), Event::ActionDone(i)])
        .collect()
}

fn full_failure() -> Vec<Event> {
    let mut events = forward();
    events.extend(
        (0..STEPS)
            .rev()
            .flat_map(|i| [Event::Undo(i), Event::UndoDone(i)]),
    );
    events
}

/// Polls a fresh run of `saga` `polls` times (each must be `Pending`), then
/// drops it.
fn poll_then_drop(saga: &mut Saga<TestError>, polls: usize) {
    let mut run = saga.run();
    let mut cx = Context::from_waker(Waker::noop());
    for poll in 0..polls {
        assert!(
            Pin::new(&mut run).poll(&mut cx).is_pending(),
            "poll {poll} of {polls} finished the run"
        );
    }
    drop(run);
}

#[test]
fn dropping_mid_forward_at_every_poll_point() {
    let (ledger, futures, steps) = (Ledger::new(), Live::default(), Live::default());
    let mut saga = tracked_saga(&ledger, &futures, &steps, false);
    assert_eq!(steps.count(), 2 * STEPS);

    let (result, total) = support::block_on_counting(saga.run());
    result.unwrap();
    assert!(total > STEPS, "every step suspends at least once");
    assert_eq!(ledger.take(), forward());

    for polls in 0..total {
        poll_then_drop(&mut saga, polls);
        let events = ledger.take();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Undo(_))),
            "a compensation ran after a drop at poll {polls}: {events:?}"
        );
        // Exactly the prefix of the forward phase reached, the last action cut short.
        let forward = forward();
        assert_eq!(events, forward[..events.len()]);
        if polls > 0 {
            assert!(
                matches!(events.last(), Some(Event::Action(_))),
                "{events:?}"
            );
        }
        assert_eq!(
            futures.count(),
            0,
            "the in-flight future survived a drop at poll {polls}"
        );

        // The saga runs again, from the start.
        support::block_on_adversarial(saga.run()).unwrap();
        assert_eq!(ledger.take(), forward);
        assert_eq!(futures.count(), 0);
    }
    assert_eq!(steps.count(), 2 * STEPS);
    drop(saga);
    assert_eq!(steps.count(), 0, "the steps leaked");
    assert_eq!(ledger.violations(), Vec::<String>::new());
}

#[test]
fn dropping_mid_backward_at_every_poll_point() {
    let (ledger, futures, steps) = (Ledger::new(), Live::default(), Live::default());
    let mut saga = tracked_saga(&ledger, &futures, &steps, true);

    let (result, total) = support::block_on_counting(saga.run());
    assert!(result.unwrap_err().is_fully_compensated());
    assert!(total > 2 * STEPS, "every action and compensation suspends");
    assert_eq!(ledger.take(), full_failure());

    for polls in 0..total {
        poll_then_drop(&mut saga, polls);
        let events = ledger.take();
        // What ran is a prefix of a full failing run: after the drop, no
        // further compensation started.
        assert_eq!(
            events,
            full_failure()[..events.len()],
            "drop at poll {polls}"
        );
        assert_eq!(
            futures.count(),
            0,
            "the in-flight future survived a drop at poll {polls}"
        );

        let error = support::block_on(saga.run()).unwrap_err();
        assert!(error.is_fully_compensated());
        assert_eq!(ledger.take(), full_failure());
    }
    drop(saga);
    assert_eq!((steps.count(), futures.count()), (0, 0));
    assert_eq!(ledger.violations(), Vec::<String>::new());
}

#[test]
fn dropping_in_a_race_on_every_executor() {
    // The run loses a `select` against a timer-free `Yield(k)`, for every k:
    // the way a `select!` or a timeout cancels it on a real runtime.
    on_every_executor(|| async {
        let (ledger, futures, steps) = (Ledger::new(), Live::default(), Live::default());
        let mut saga = tracked_saga(&ledger, &futures, &steps, true);
        for k in 0..(2 * STEPS as u32 * YIELDS) {
            match select(saga.run(), Yield(k)).await {
                Either::Left((result, _)) => {
                    // Only when the engine needs fewer polls than suspensions.
                    assert!(result.unwrap_err().is_fully_compensated());
                    assert_eq!(ledger.take(), full_failure());
                    continue;
                }
                Either::Right(((), run)) => drop(run),
            }
            let events = ledger.take();
            assert_eq!(events, full_failure()[..events.len()], "k = {k}");
            assert_eq!(futures.count(), 0);
            let error = saga.run().await.unwrap_err();
            assert!(error.is_fully_compensated());
            assert_eq!(ledger.take(), full_failure());
        }
        drop(saga);
        assert_eq!((steps.count(), futures.count()), (0, 0));
        assert_eq!(ledger.violations(), Vec::<String>::new());
    });
}

#[test]
fn dropping_an_unpolled_or_finished_run_changes_nothing() {
    let (ledger, futures, steps) = (Ledger::new(), Live::default(), Live::default());
    let mut saga = tracked_saga(&ledger, &futures, &steps, false);
    drop(saga.run());
    assert!(ledger.events().is_empty());
    support::block_on(saga.run()).unwrap();
    assert_eq!(ledger.take(), forward());
    assert_eq!(futures.count(), 0);
}
